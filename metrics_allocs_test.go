//go:build !race

package retry_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// TestMetricsSuccessPathAllocs: a call that succeeds at once allocates
// nothing more with Metrics than without (the race detector's pools would
// blur the counts, hence the build tag).
func TestMetricsSuccessPathAllocs(t *testing.T) {
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	req, reply := &inferencev1.GenerateRequest{}, &inferencev1.GenerateResponse{}
	allocs := func(p retry.Policy) float64 {
		ic := retry.Unary(p)
		return testing.AllocsPerRun(1000, func() {
			if err := ic(context.Background(), methodGenerate, req, reply, nil, invoker, grpc.StaticMethod()); err != nil {
				t.Fatal(err)
			}
		})
	}
	without := allocs(retry.Policy{Budget: retry.NoBudget})
	with := allocs(retry.Policy{Budget: retry.NoBudget, Metrics: newMeter(t).metrics})
	t.Logf("allocations per call: %v with Metrics, %v without", with, without)
	if with != without {
		t.Errorf("a successful call allocates %v times with Metrics, %v without", with, without)
	}
}
