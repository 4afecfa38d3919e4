package retry

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestParsePushbackTrailer(t *testing.T) {
	stop := pushback{present: true, stop: true}
	wait := func(d time.Duration) pushback { return pushback{present: true, delay: d} }
	for _, tc := range []struct {
		values []string
		want   pushback
	}{
		{nil, pushback{}},
		{[]string{"300"}, wait(300 * time.Millisecond)},
		{[]string{"0"}, wait(0)},
		{[]string{"000250"}, wait(250 * time.Millisecond)},
		{[]string{"-1"}, stop},
		{[]string{"abc"}, stop},
		{[]string{""}, stop},
		{[]string{"+5"}, stop},
		{[]string{" 5"}, stop},
		{[]string{"1.5"}, stop},
		{[]string{"100", "200"}, stop},
		{[]string{"9223372036854"}, wait(9223372036854 * time.Millisecond)},
		{[]string{"9223372036855"}, wait(math.MaxInt64)},
		{[]string{"99999999999999999999999999"}, wait(math.MaxInt64)},
	} {
		if got := parsePushbackTrailer(tc.values); got != tc.want {
			t.Errorf("parsePushbackTrailer(%q) = %+v, want %+v", tc.values, got, tc.want)
		}
	}
}

func withDetails(t testing.TB, details ...proto.Message) *status.Status {
	t.Helper()
	st := status.New(codes.ResourceExhausted, "slow down")
	for _, d := range details {
		var err error
		st, err = st.WithDetails(protoadapt.MessageV1Of(d))
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func retryInfo(d *durationpb.Duration) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: d}
}

func TestParseRetryInfo(t *testing.T) {
	stop := pushback{present: true, stop: true}
	garbled := status.FromProto(&spb.Status{Code: 8, Details: []*anypb.Any{{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: []byte{0xff, 0xff}}}})
	for _, tc := range []struct {
		name string
		st   *status.Status
		want pushback
	}{
		{"no details", status.New(codes.Unavailable, ""), pushback{}},
		{"nil status", nil, pushback{}},
		{"other detail", withDetails(t, &errdetails.QuotaFailure{}), pushback{}},
		{"1.5s", withDetails(t, retryInfo(&durationpb.Duration{Seconds: 1, Nanos: 5e8})), pushback{present: true, delay: 1500 * time.Millisecond}},
		{"zero", withDetails(t, retryInfo(&durationpb.Duration{})), pushback{present: true}},
		{"no delay field", withDetails(t, retryInfo(nil)), pushback{}},
		{"negative", withDetails(t, retryInfo(&durationpb.Duration{Seconds: -1})), stop},
		{"invalid nanos", withDetails(t, retryInfo(&durationpb.Duration{Nanos: 2e9})), stop},
		{"two RetryInfo", withDetails(t, retryInfo(durationpb.New(time.Second)), retryInfo(durationpb.New(time.Second))), stop},
		{"garbled", garbled, stop},
	} {
		if got := parseRetryInfo(tc.st); got != tc.want {
			t.Errorf("%s: parseRetryInfo = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestServerPushbackCombines(t *testing.T) {
	ri := withDetails(t, retryInfo(durationpb.New(2*time.Second)))
	plain := status.New(codes.Unavailable, "")
	for _, tc := range []struct {
		name    string
		st      *status.Status
		trailer metadata.MD
		want    pushback
	}{
		{"neither", plain, nil, pushback{}},
		{"trailer only", plain, metadata.Pairs(PushbackTrailer, "300"), pushback{present: true, delay: 300 * time.Millisecond}},
		{"RetryInfo only", ri, nil, pushback{present: true, delay: 2 * time.Second}},
		{"both: the longer wins", ri, metadata.Pairs(PushbackTrailer, "300"), pushback{present: true, delay: 2 * time.Second}},
		{"trailer says stop", ri, metadata.Pairs(PushbackTrailer, "-1"), pushback{present: true, stop: true}},
	} {
		if got := serverPushback(tc.st, tc.trailer); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// FuzzPushbackTrailer checks the documented rule on arbitrary trailer
// values: digits only → that many ms (saturating), anything else → stop.
func FuzzPushbackTrailer(f *testing.F) {
	for _, s := range []string{"300", "0", "-1", "abc", "", "1,2", "9223372036855", "00", "+1", "١٢"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		values := strings.Split(raw, ",") // a comma separates repeated values
		got := parsePushbackTrailer(values)
		if !got.present {
			t.Fatalf("%q: a value is always present", values)
		}
		digits := len(values) == 1 && values[0] != "" && strings.Trim(values[0], "0123456789") == ""
		if got.stop == digits {
			t.Fatalf("%q: stop = %v, want %v", values, got.stop, !digits)
		}
		if got.stop {
			return
		}
		if got.delay < 0 {
			t.Fatalf("%q: negative delay %v", values, got.delay)
		}
		if ms, err := strconv.ParseInt(values[0], 10, 64); err == nil && ms <= math.MaxInt64/int64(time.Millisecond) {
			if got.delay != time.Duration(ms)*time.Millisecond {
				t.Fatalf("%q: delay %v, want %dms", values, got.delay, ms)
			}
		} else if got.delay != math.MaxInt64 {
			t.Fatalf("%q: out-of-range value must saturate, got %v", values, got.delay)
		}
	})
}

// FuzzRetryInfo feeds arbitrary google.rpc.Status bytes (as received in
// grpc-status-details-bin) to the RetryInfo parser and the classifier: they
// must never panic, and a delay they accept is never negative.
func FuzzRetryInfo(f *testing.F) {
	seed := func(details ...proto.Message) []byte {
		st := withDetails(f, details...)
		b, err := proto.Marshal(st.Proto())
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed())
	f.Add(seed(retryInfo(durationpb.New(300 * time.Millisecond))))
	f.Add(seed(retryInfo(&durationpb.Duration{Seconds: -5})))
	f.Add(seed(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "project:x"}}}))
	f.Add(seed(retryInfo(durationpb.New(time.Second)), &errdetails.QuotaFailure{}))
	f.Add([]byte{0x1a, 0x03, 0x0a, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var sp spb.Status
		if proto.Unmarshal(b, &sp) != nil {
			return
		}
		st := status.FromProto(&sp)
		got := parseRetryInfo(st)
		if got.present && !got.stop && got.delay < 0 {
			t.Fatalf("negative delay %v", got.delay)
		}
		_ = Classify(st, nil)
	})
}
