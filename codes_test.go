package retry

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestDefaultClassTable(t *testing.T) {
	want := map[codes.Code]Class{
		codes.Unavailable:       Transient,
		codes.ResourceExhausted: RateLimited,
		codes.DeadlineExceeded:  Timeout,
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if got := Classify(status.New(c, ""), nil); got != want[c] || CodeClass(c) != want[c] {
			t.Errorf("Classify(%v) = %v, want %v", c, got, want[c])
		}
	}
}

func TestSpentQuotaIsPermanent(t *testing.T) {
	quota := &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "project:demo", Description: "daily tokens spent"}}}
	if got := Classify(withDetails(t, quota), nil); got != Permanent {
		t.Errorf("QuotaFailure without pushback: %v, want permanent", got)
	}
	if got := Classify(withDetails(t, quota), metadata.Pairs(PushbackTrailer, "500")); got != RateLimited {
		t.Errorf("QuotaFailure with pushback trailer: %v, want rate-limited", got)
	}
	if got := Classify(withDetails(t, quota, retryInfo(durationpb.New(time.Second))), nil); got != RateLimited {
		t.Errorf("QuotaFailure with RetryInfo: %v, want rate-limited", got)
	}
	if got := Classify(withDetails(t, &errdetails.ErrorInfo{Reason: "RATE"}), nil); got != RateLimited {
		t.Errorf("ResourceExhausted with another detail: %v, want rate-limited", got)
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[Class]string{Permanent: "permanent", Transient: "transient", RateLimited: "rate-limited", Timeout: "timeout", 7: "class(7)"} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d) = %q, want %q", c, got, want)
		}
	}
}
