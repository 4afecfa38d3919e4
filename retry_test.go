package retry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

var unavailable = status.New(codes.Unavailable, "backend restarting")

func exact() Policy {
	return Policy{InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, Jitter: NoJitter, MaxAttempts: 6, Budget: NoBudget}
}

func stopOf(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *retry.Error", err)
	}
	return e
}

func TestBackoffSequenceIsExact(t *testing.T) {
	mds, sleeps, err := runScript(context.Background(), exact(), fail(unavailable), fail(unavailable), fail(unavailable), fail(unavailable))
	if err != nil || len(mds) != 5 {
		t.Fatalf("err %v after %d attempts, want OK after 5", err, len(mds))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if !slices.Equal(sleeps, want) {
		t.Fatalf("sleeps %v, want %v", sleeps, want)
	}
}

func TestJitterUsesInjectedRandom(t *testing.T) {
	p := exact()
	p.Jitter = FullJitter
	p.rand = fixedRand(0.25, 0.5, 0.75)
	_, sleeps, _ := runScript(context.Background(), p, fail(unavailable), fail(unavailable), fail(unavailable))
	want := []time.Duration{250 * time.Millisecond, time.Second, 3 * time.Second}
	if !slices.Equal(sleeps, want) {
		t.Fatalf("sleeps %v, want %v", sleeps, want)
	}
}

func TestPushbackWaitsExactlyThenRestartsExponent(t *testing.T) {
	mds, sleeps, err := runScript(context.Background(), exact(),
		fail(unavailable), fail(unavailable), // backoff 1s, 2s
		fail(unavailable, PushbackTrailer, "300"), // pushback 300ms, exponent restarts
		fail(unavailable))                         // backoff 1s again
	if err != nil || len(mds) != 5 {
		t.Fatalf("err %v after %d attempts", err, len(mds))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 300 * time.Millisecond, time.Second}
	if !slices.Equal(sleeps, want) {
		t.Fatalf("sleeps %v, want %v", sleeps, want)
	}
}

func TestRetryInfoHonoured(t *testing.T) {
	st := withDetails(t, retryInfo(durationpb.New(1500*time.Millisecond)))
	mds, sleeps, _ := runScript(context.Background(), exact(), fail(st))
	if len(mds) != 2 || !slices.Equal(sleeps, []time.Duration{1500 * time.Millisecond}) {
		t.Fatalf("%d attempts, sleeps %v; want 2 attempts after 1.5s", len(mds), sleeps)
	}
}

func TestStopReasons(t *testing.T) {
	deadlineCtx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		p        Policy
		script   []outcome
		attempts int
		code     codes.Code
		reason   StopReason
	}{
		{"permanent", context.Background(), exact(), []outcome{fail(status.New(codes.InvalidArgument, "bad"))}, 1, codes.InvalidArgument, StopPermanent},
		{"max attempts", context.Background(), Policy{MaxAttempts: 3, Jitter: NoJitter}, []outcome{fail(unavailable), fail(unavailable), fail(unavailable)}, 3, codes.Unavailable, StopMaxAttempts},
		{"pushback -1", context.Background(), exact(), []outcome{fail(unavailable, PushbackTrailer, "-1")}, 1, codes.Unavailable, StopPushback},
		{"pushback beyond cap", context.Background(), Policy{MaxPushback: time.Second}, []outcome{fail(unavailable, PushbackTrailer, "1001")}, 1, codes.Unavailable, StopPushbackTooLong},
		{"pushback at cap", context.Background(), Policy{MaxPushback: time.Second, MaxAttempts: 2}, []outcome{fail(unavailable, PushbackTrailer, "1000"), fail(unavailable)}, 2, codes.Unavailable, StopMaxAttempts},
		{"backoff past deadline", deadlineCtx(), exact(), []outcome{fail(unavailable)}, 1, codes.Unavailable, StopDeadline},
		{"pushback past deadline", deadlineCtx(), exact(), []outcome{fail(unavailable, PushbackTrailer, "600")}, 1, codes.Unavailable, StopDeadline},
		{"spent quota", context.Background(), exact(), []outcome{fail(withDetails(t, quotaFailure()))}, 1, codes.ResourceExhausted, StopPermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mds, sleeps, err := runScript(tc.ctx, tc.p, tc.script...)
			e := stopOf(t, err)
			if len(mds) != tc.attempts || e.Attempts != tc.attempts || status.Code(err) != tc.code || e.Reason != tc.reason {
				t.Fatalf("%d calls, error %v (attempts %d, code %v, reason %v); want %d attempts, %v, %v",
					len(mds), err, e.Attempts, status.Code(err), e.Reason, tc.attempts, tc.code, tc.reason)
			}
			if len(sleeps) != tc.attempts-1 {
				t.Fatalf("slept %v after %d attempts", sleeps, tc.attempts)
			}
		})
	}
}

func TestCallerDeadlineExceededIsNotRetried(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	mds, _, err := runScript(ctx, Policy{PerAttemptTimeout: time.Second}, fail(status.New(codes.DeadlineExceeded, "")))
	if e := stopOf(t, err); len(mds) != 1 || e.Reason != StopCanceled || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%d attempts, %v (%v)", len(mds), err, e.Reason)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	mds, _, _ := runScript(context.Background(), exact(), fail(status.New(codes.DeadlineExceeded, "attempt timeout")))
	if len(mds) != 2 {
		t.Fatalf("%d attempts, want 2: a DeadlineExceeded while the caller has no deadline is a retryable timeout", len(mds))
	}
}

func TestHookAndHeader(t *testing.T) {
	var events []RetryEvent
	p := exact()
	p.OnRetry = func(e RetryEvent) { events = append(events, e) }
	mds, _, err := runScript(context.Background(), p, fail(unavailable), fail(unavailable, PushbackTrailer, "20"), fail(status.New(codes.NotFound, "")))
	if status.Code(err) != codes.NotFound || len(mds) != 3 {
		t.Fatalf("%v after %d attempts", err, len(mds))
	}
	if len(events) != 2 ||
		events[0] != (RetryEvent{Context: context.Background(), Method: "/test.Service/Method", Attempt: 1, Err: events[0].Err, Code: codes.Unavailable, Class: Transient, Delay: time.Second}) ||
		events[1] != (RetryEvent{Context: context.Background(), Method: "/test.Service/Method", Attempt: 2, Err: events[1].Err, Code: codes.Unavailable, Class: Transient, Delay: 20 * time.Millisecond, Pushback: true}) {
		t.Fatalf("events %+v", events)
	}
	var got []string
	for _, md := range mds {
		got = append(got, md.Get(PreviousAttemptsHeader)...)
	}
	if len(mds[0].Get(PreviousAttemptsHeader)) != 0 || !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("%s values %v, want absent then 1, 2", PreviousAttemptsHeader, got)
	}
}

func TestCallOptions(t *testing.T) {
	ctx := context.Background()
	run := func(opts ...CallOption) (int, error) {
		clk := newFakeClock()
		p := exact()
		p.clock = clk
		calls := 0
		invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, o ...grpc.CallOption) error {
			calls++
			return unavailable.Err()
		}
		var gopts []grpc.CallOption
		for _, o := range opts {
			gopts = append(gopts, o)
		}
		err := Unary(p)(ctx, "/test.Service/Method", nil, nil, nil, invoker, gopts...)
		return calls, err
	}
	if n, _ := run(WithMaxAttempts(2)); n != 2 {
		t.Errorf("WithMaxAttempts(2): %d attempts", n)
	}
	if n, err := run(Disable()); n != 1 || status.Code(err) != codes.Unavailable {
		t.Errorf("Disable(): %d attempts, %v", n, err)
	} else if errors.As(err, new(*Error)) {
		t.Errorf("Disable(): error %v is wrapped; want the attempt's own", err)
	}
	if n, err := run(WithMaxAttempts(0)); n != 0 || status.Code(err) != codes.InvalidArgument {
		t.Errorf("WithMaxAttempts(0): %d attempts, %v; want none and InvalidArgument", n, err)
	}
	if n, err := run(WithPerAttemptTimeout(-1)); n != 0 || status.Code(err) != codes.InvalidArgument {
		t.Errorf("WithPerAttemptTimeout(-1): %d attempts, %v; want none and InvalidArgument", n, err)
	}
	if n, _ := run(WithMaxAttempts(5), WithMaxAttempts(1)); n != 1 {
		t.Errorf("last option must win: %d attempts", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	p := exact()
	p.IdempotencyHeader = "x-idempotency-key"
	mds, _, _ := runScript(context.Background(), p, fail(unavailable), fail(unavailable))
	keys := map[string]bool{}
	for _, md := range mds {
		v := md.Get("x-idempotency-key")
		if len(v) != 1 || len(v[0]) != 32 {
			t.Fatalf("attempt metadata %v: want one 32-hex-digit key", md)
		}
		keys[v[0]] = true
	}
	if len(keys) != 1 {
		t.Fatalf("keys %v: want one key for every attempt of the call", keys)
	}
	mds2, _, _ := runScript(context.Background(), p)
	if keys[mds2[0].Get("x-idempotency-key")[0]] {
		t.Fatal("two calls shared a key")
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-idempotency-key", "caller-key")
	mds3, _, _ := runScript(ctx, p, fail(unavailable))
	for _, md := range mds3 {
		if v := md.Get("x-idempotency-key"); !slices.Equal(v, []string{"caller-key"}) {
			t.Fatalf("caller's key replaced: %v", v)
		}
	}
}

func TestCancelDuringWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := exact()
	p.clock = realClock{}
	p.InitialBackoff = time.Hour
	p.MaxBackoff = time.Hour
	p.OnRetry = func(RetryEvent) { cancel() }
	mds, _, err := runScript(ctx, p, fail(unavailable))
	if e := stopOf(t, err); len(mds) != 1 || status.Code(err) != codes.Canceled || e.Reason != StopCanceled {
		t.Fatalf("%d attempts, %v", len(mds), err)
	}
}

func TestCommitAndLocalErrors(t *testing.T) {
	tooBig := status.New(codes.ResourceExhausted, "trying to send message larger than max (5242880 vs. 4194304)")
	recvTooBig := status.New(codes.ResourceExhausted, "grpc: received message larger than max (5242880 vs. 4194304)")
	serverLimit := status.New(codes.ResourceExhausted, "rate limited")
	for _, tc := range []struct {
		name     string
		script   []outcome
		attempts int
		code     codes.Code
		reason   StopReason
	}{
		{"failure after response headers", []outcome{{err: unavailable.Err(), header: metadata.Pairs("x", "y")}}, 1, codes.Unavailable, StopCommitted},
		{"empty headers count as headers", []outcome{{err: unavailable.Err(), header: metadata.MD{}}}, 1, codes.Unavailable, StopCommitted},
		{"trailers-only failure is retried", []outcome{fail(unavailable), {err: unavailable.Err(), header: metadata.MD{}}}, 2, codes.Unavailable, StopCommitted},
		{"request over the send limit", []outcome{{err: tooBig.Err()}}, 1, codes.ResourceExhausted, StopLocal},
		{"response over the receive limit", []outcome{{err: recvTooBig.Err(), header: metadata.MD{}}}, 1, codes.ResourceExhausted, StopLocal},
		{"a server's ResourceExhausted is still retried", []outcome{{err: serverLimit.Err()}, {err: serverLimit.Err(), header: metadata.MD{}}}, 2, codes.ResourceExhausted, StopCommitted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mds, _, err := runScript(context.Background(), exact(), tc.script...)
			e := stopOf(t, err)
			if len(mds) != tc.attempts || e.Attempts != tc.attempts || status.Code(err) != tc.code || e.Reason != tc.reason {
				t.Fatalf("%d calls, error %v (attempts %d, reason %v); want %d attempts, %v, %v",
					len(mds), err, e.Attempts, e.Reason, tc.attempts, tc.code, tc.reason)
			}
		})
	}
}

// TestRetryMustFitTheDeadlineWithMargin: a retry is made only if it can
// start at least deadlineMargin before the caller's deadline.
func TestRetryMustFitTheDeadlineWithMargin(t *testing.T) {
	for _, tc := range []struct {
		backoff  time.Duration
		attempts int
	}{
		{498 * time.Millisecond, 2},                      // starts 2ms before the deadline
		{499*time.Millisecond + 500*time.Microsecond, 1}, // would start 0.5ms before it
	} {
		deadline := time.Now().Add(time.Hour)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		p := exact()
		p.InitialBackoff, p.MaxBackoff = tc.backoff, tc.backoff
		p.clock = &fakeClock{now: deadline.Add(-500 * time.Millisecond)}
		mds, _, err := runScript(ctx, p, fail(unavailable), fail(unavailable))
		if len(mds) != tc.attempts {
			t.Fatalf("backoff %v, 500ms before the deadline: %d attempts (%v), want %d", tc.backoff, len(mds), err, tc.attempts)
		}
		if tc.attempts == 1 {
			if e := stopOf(t, err); e.Reason != StopDeadline || status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v (%v), want the last attempt's Unavailable, StopDeadline", err, e.Reason)
			}
		}
	}
}

// TestWaitEndsWithTheLastErrorAtTheDeadline: a wait that wakes up too late
// (a loaded machine), or that the deadline cuts, ends the call with the last
// attempt's own error, never a DeadlineExceeded of the wait's making.
func TestWaitEndsWithTheLastErrorAtTheDeadline(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for name, clk := range map[string]clock{
		"woken after the deadline":     &lateClock{fakeClock: fakeClock{now: deadline.Add(-time.Second)}, late: 600 * time.Millisecond},
		"woken within the margin":      &lateClock{fakeClock: fakeClock{now: deadline.Add(-time.Second)}, late: 499*time.Millisecond + 500*time.Microsecond},
		"the deadline fires in a wait": &expiringClock{fakeClock{now: deadline.Add(-time.Second)}},
	} {
		t.Run(name, func(t *testing.T) {
			p := exact()
			p.InitialBackoff, p.MaxBackoff = 500*time.Millisecond, 500*time.Millisecond
			p.clock = clk
			var gaveUp []GiveUpEvent
			p.OnGiveUp = func(ev GiveUpEvent) { gaveUp = append(gaveUp, ev) }
			mds, _, err := runScript(ctx, p, fail(unavailable), fail(unavailable))
			e := stopOf(t, err)
			if len(mds) != 1 || e.Reason != StopDeadline || status.Code(err) != codes.Unavailable || e.Attempts != 1 {
				t.Fatalf("%d attempts, %v (%v); want the first attempt's Unavailable, StopDeadline", len(mds), err, e.Reason)
			}
			if len(gaveUp) != 1 || gaveUp[0].Reason != StopDeadline {
				t.Fatalf("OnGiveUp events %+v", gaveUp)
			}
		})
	}
}

// TestThrottleCountsWhatA6Counts: gRFC A6 counts, for throttling, failures
// with a retryable code and any pushback saying "do not retry"; grpc-go
// does not count a failure after the call committed.
func TestThrottleCountsWhatA6Counts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script outcome
		tokens float64
	}{
		{"retryable failure", fail(unavailable), 9},
		{"do-not-retry pushback on a retryable code", fail(unavailable, PushbackTrailer, "-1"), 9},
		{"do-not-retry pushback on a permanent code", fail(status.New(codes.InvalidArgument, "no"), PushbackTrailer, "-1"), 9},
		{"permanent code", fail(status.New(codes.InvalidArgument, "no")), 10},
		{"retryable failure after headers", outcome{err: unavailable.Err(), header: metadata.MD{}}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := NewThrottle(10, 0.1)
			p := exact()
			p.MaxAttempts = 1
			p.Budget = th
			runScript(context.Background(), p, tc.script)
			if th.Tokens() != tc.tokens {
				t.Fatalf("tokens %v, want %v", th.Tokens(), tc.tokens)
			}
		})
	}
}
