package retry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// nopConn is a connection the decision tests hand out and never use.
type nopConn struct{ grpc.ClientConnInterface }

// newTestFailover returns the decision code of cfg on clk.
func newTestFailover(t *testing.T, cfg FailoverConfig, clk clock) *failoverDecider {
	t.Helper()
	cfg.clock = clk
	f, err := NewFailover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return (*failoverDecider)(f)
}

// What each way a step can end means: whether the call moves on to the
// fallback, and what the step's breaker is told.
func TestFailoverDecisionTable(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	notFound := status.Error(codes.NotFound, "no such model")
	retryErr := func(c Class, r StopReason, err error) error {
		return &Error{Err: err, Attempts: 2, Reason: r, Class: c}
	}
	sq, _ := status.New(codes.ResourceExhausted, "quota").WithDetails(quotaFailure())
	spentQuota := sq.Err()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	clk := newFakeClock()
	past, cancelPast := context.WithDeadline(context.Background(), clk.Now().Add(-time.Second)) // passed per the decision clock
	defer cancelPast()
	future, cancelFuture := context.WithDeadline(context.Background(), clk.Now().Add(time.Hour))
	defer cancelFuture()
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		err       error
		committed bool
		moves     bool
		outcome   BreakerOutcome
	}{
		{"max attempts", nil, retryErr(Transient, StopMaxAttempts, unavailable), false, true, BreakerFailure},
		{"budget", nil, retryErr(RateLimited, StopBudget, status.Error(codes.ResourceExhausted, "x")), false, true, BreakerFailure},
		{"deadline too close", future, retryErr(Timeout, StopDeadline, status.Error(codes.DeadlineExceeded, "x")), false, true, BreakerFailure},
		{"do not retry", nil, retryErr(Transient, StopPushback, unavailable), false, true, BreakerFailure},
		{"pushback too long", nil, retryErr(RateLimited, StopPushbackTooLong, unavailable), false, true, BreakerFailure},
		{"committed (retry layer)", nil, retryErr(Transient, StopCommitted, unavailable), false, false, BreakerFailure},
		{"committed (stream)", nil, unavailable, true, false, BreakerFailure},
		{"local", nil, retryErr(RateLimited, StopLocal, status.Error(codes.ResourceExhausted, "trying to send message larger than max")), false, false, BreakerIgnored},
		{"permanent", nil, retryErr(Permanent, StopPermanent, notFound), false, false, BreakerSuccess},
		{"caller cancelled", canceled, retryErr(Permanent, StopCanceled, status.Error(codes.Canceled, "x")), false, false, BreakerIgnored},
		{"caller cancelled, plain error", canceled, unavailable, false, false, BreakerIgnored},
		{"caller's deadline passed", past, status.Error(codes.DeadlineExceeded, "x"), false, false, BreakerIgnored},
		{"caller's deadline passed on the first attempt", past, &Error{Err: status.Error(codes.DeadlineExceeded, "x"), Attempts: 1, Reason: StopCanceled, Class: Permanent}, false, false, BreakerIgnored},
		{"caller's deadline passed on a retry", past, &Error{Err: status.Error(codes.DeadlineExceeded, "x"), Attempts: 2, Reason: StopCanceled, Class: Permanent}, false, false, BreakerFailure},
		{"the step's own timeout, caller has time", future, &Error{Err: status.Error(codes.DeadlineExceeded, "x"), Attempts: 1, Reason: StopCanceled, Class: Permanent}, false, true, BreakerFailure},
		{"caller cancelled a retry", canceled, &Error{Err: status.Error(codes.Canceled, "x"), Attempts: 2, Reason: StopCanceled, Class: Permanent}, false, false, BreakerIgnored},
		{"attempt's deadline, caller has time", future, status.Error(codes.DeadlineExceeded, "x"), false, true, BreakerFailure},
		{"plain unavailable", nil, unavailable, false, true, BreakerFailure},
		{"plain permanent", nil, notFound, false, false, BreakerSuccess},
		{"rate limited, plain", nil, status.Error(codes.ResourceExhausted, "x"), false, true, BreakerFailure},
		{"spent quota, plain", nil, spentQuota, false, false, BreakerSuccess},
		{"nested breaker open", nil, &BreakerOpenError{State: BreakerOpen}, false, true, BreakerFailure},
		{"nested fallback chain", nil, &FallbackError{Steps: []StepError{{Err: retryErr(Transient, StopMaxAttempts, unavailable)}}}, false, true, BreakerFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1, FailureRate: 1})
			b.cfg.clock = clk
			f := newTestFailover(t, FailoverConfig{Breaker: b, Fallbacks: []Fallback{{Conn: nopConn{}}}}, clk)
			c := f.Begin(ctx, "/s/m", nil, nil, false)
			if c == nil {
				t.Fatal("not in scope")
			}
			defer f.Done(ctx, c, nil)
			if r, err := f.Next(ctx, c); err != nil || r.Conn != nil {
				t.Fatalf("first step: %v, %v", r, err)
			}
			f.Ended(ctx, c, tc.err, tc.committed)
			r, err := f.Next(ctx, c)
			if moved := err == nil && r.Conn != nil; moved != tc.moves {
				t.Errorf("moved on: %v, want %v (err %v)", moved, tc.moves, err)
			}
			if !tc.moves && !errors.Is(err, tc.err) {
				t.Errorf("final error %v, want the step's own %v", err, tc.err)
			}
			st := b.Stats()[0]
			var got BreakerOutcome
			switch {
			case st.State == BreakerOpen:
				got = BreakerFailure
			case st.Successes == 1:
				got = BreakerSuccess
			case st.Successes == 0 && st.Failures == 0:
				got = BreakerIgnored
			}
			if got != tc.outcome {
				t.Errorf("breaker told %v (%+v), want %v", got, st, tc.outcome)
			}
		})
	}
}

// The chain's steps in order: an open breaker skips its step, the next one
// is handed out with an event naming the skipped step, a probe goes with
// one attempt, and the final error lists every step.
func TestFailoverNextSteps(t *testing.T) {
	clk := newFakeClock()
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1, OpenFor: time.Second})
	b.cfg.clock = clk
	var evs []FallbackEvent
	second, third := nopConn{}, &nopConn{}
	f := newTestFailover(t, FailoverConfig{
		Name:       "east",
		Breaker:    b,
		Fallbacks:  []Fallback{{Name: "west", Conn: second}, {Conn: third}},
		OnFallback: func(ev FallbackEvent) { evs = append(evs, ev) },
	}, clk)
	ctx := context.Background()
	run := func() ([]interceptor.Route, error) {
		c := f.Begin(ctx, "/s/m", nil, nil, false)
		defer f.Done(ctx, c, nil)
		var routes []interceptor.Route
		for {
			r, err := f.Next(ctx, c)
			if err != nil {
				return routes, err
			}
			routes = append(routes, r)
			f.Ended(ctx, c, status.Error(codes.Unavailable, "down"), false)
		}
	}
	routes, err := run()
	var fe *FallbackError
	if len(routes) != 3 || !errors.As(err, &fe) || len(fe.Steps) != 3 || fe.Steps[2].Name != "fallback-2" || fe.Steps[0].Name != "east" {
		t.Fatalf("routes %d, err %v", len(routes), err)
	}
	if len(evs) != 2 || evs[0].FromName != "east" || evs[0].ToName != "west" || evs[1].From != 1 || evs[1].To != 2 || evs[0].Skipped {
		t.Fatalf("events %+v", evs)
	}
	// The breaker is open: the primary is skipped.
	evs = nil
	routes, err = run()
	if len(routes) != 2 || !errors.As(err, &fe) || fe.Steps[0].Skipped != SkipBreakerOpen || !IsBreakerOpen(fe.Steps[0].Err) {
		t.Fatalf("routes %d, err %v", len(routes), err)
	}
	if !evs[0].Skipped || evs[0].Code != codes.Unavailable || evs[0].From != 0 || evs[0].To != 1 {
		t.Fatalf("event %+v", evs[0])
	}
	// After OpenFor the primary is probed with one attempt.
	clk.Advance(2 * time.Second)
	routes, _ = run()
	if len(routes) != 3 || len(routes[0].Opts) != 1 || routes[0].Opts[0].(CallOption).maxAttempts != 1 || routes[1].Opts != nil {
		t.Fatalf("probe routes %+v", routes)
	}
}

// With no fallback configured, the primary's error comes back unwrapped;
// with an open breaker, the breaker's error.
func TestFailoverFinalErrorShapes(t *testing.T) {
	clk := newFakeClock()
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1})
	b.cfg.clock = clk
	f := newTestFailover(t, FailoverConfig{Breaker: b}, clk)
	ctx := context.Background()
	c := f.Begin(ctx, "/s/m", nil, nil, false)
	f.Next(ctx, c)
	want := &Error{Err: status.Error(codes.Unavailable, "x"), Class: Transient, Reason: StopMaxAttempts}
	f.Ended(ctx, c, want, false)
	if _, err := f.Next(ctx, c); err != want {
		t.Fatalf("final %v, want the primary's error itself", err)
	}
	f.Done(ctx, c, want)
	c = f.Begin(ctx, "/s/m", nil, nil, false)
	_, err := f.Next(ctx, c)
	var be *BreakerOpenError
	if !errors.As(err, &be) || status.Code(err) != codes.Unavailable {
		t.Fatalf("final %v, want the breaker's", err)
	}
	f.Done(ctx, c, err)
}

// The deadline check uses the decision clock and MinTimeLeft: a fallback
// is tried with MinTimeLeft left, not with less.
func TestFailoverMinTimeLeft(t *testing.T) {
	clk := newFakeClock()
	f := newTestFailover(t, FailoverConfig{Fallbacks: []Fallback{{Conn: nopConn{}}}, MinTimeLeft: 100 * time.Millisecond}, clk)
	for _, tc := range []struct {
		left  time.Duration
		tried bool
	}{{100 * time.Millisecond, true}, {99 * time.Millisecond, false}} {
		ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(time.Hour))
		c := f.Begin(ctx, "/s/m", nil, nil, false)
		f.Next(ctx, c)
		f.Ended(ctx, c, status.Error(codes.Unavailable, "x"), false)
		clk.Advance(time.Hour - tc.left)
		r, err := f.Next(ctx, c)
		if tried := err == nil && r.Conn != nil; tried != tc.tried {
			t.Errorf("%v left: tried %v, want %v (%v)", tc.left, tried, tc.tried, err)
		}
		f.Done(ctx, c, nil)
		cancel()
	}
}

// BreakerConfig.Outcome overrides the default judgement of failed calls,
// never the caller's own end.
func TestBreakerOutcomeOverride(t *testing.T) {
	clk := newFakeClock()
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1000, ConsecutiveFailures: 2, Outcome: func(err error) BreakerOutcome {
		switch status.Code(err) {
		case codes.Internal:
			return BreakerFailure
		case codes.Unavailable:
			return BreakerIgnored
		}
		return 0
	}})
	b.cfg.clock = clk
	f := newTestFailover(t, FailoverConfig{Breaker: b}, clk)
	end := func(ctx context.Context, err error) {
		c := f.Begin(ctx, "/s/m", nil, nil, false)
		f.Next(ctx, c)
		f.Ended(ctx, c, err, false)
		f.Done(ctx, c, err)
	}
	ctx := context.Background()
	end(ctx, status.Error(codes.Unavailable, "x")) // ignored by the override
	end(ctx, status.Error(codes.NotFound, "x"))    // the default: a success
	if st := b.Stats()[0]; st.Successes != 1 || st.Failures != 0 {
		t.Fatalf("%+v", st)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	end(canceled, status.Error(codes.Internal, "x")) // the caller's: ignored whatever the override
	end(ctx, status.Error(codes.Internal, "x"))
	if b.State() != BreakerClosed {
		t.Fatal("opened after one failure in a row")
	}
	end(ctx, status.Error(codes.Internal, "x"))
	if b.State() != BreakerOpen {
		t.Fatal("Internal, a failure by the override, did not open it")
	}
}

func TestFallbackErrorText(t *testing.T) {
	e := &FallbackError{Steps: []StepError{
		{Step: 0, Name: "primary", Err: &BreakerOpenError{State: BreakerOpen}, Skipped: SkipBreakerOpen},
		{Step: 1, Name: "west", Err: status.Error(codes.Unavailable, "down")},
		{Step: 2, Name: "small", Skipped: SkipDeadline},
	}}
	want := "retry: fallback chain failed: primary: not tried (retry: circuit breaker open); west: rpc error: code = Unavailable desc = down; small: not tried (no time left before the deadline)"
	if e.Error() != want {
		t.Fatalf("got  %q\nwant %q", e.Error(), want)
	}
	if status.Code(e) != codes.Unavailable || status.Convert(e).Message() != "down" {
		t.Fatalf("status %v", status.Convert(e))
	}
	half := &BreakerOpenError{Group: "gen", State: BreakerHalfOpen}
	if half.Error() != `retry: circuit breaker for "gen" half-open, probes in flight` {
		t.Fatal(half.Error())
	}
}

// TestFallbackReason: the retry.fallback.reason of each way a step can end
// and let the call move on.
func TestFallbackReason(t *testing.T) {
	for _, tc := range []struct {
		step StepError
		want string
	}{
		{StepError{Skipped: SkipBreakerOpen}, "breaker_open"},
		{StepError{reason: StopMaxAttempts}, "max_attempts"},
		{StepError{reason: StopBudget}, "budget"},
		{StepError{reason: StopDeadline}, "deadline"},
		{StepError{reason: StopPushback}, "pushback"},
		{StepError{reason: StopPushbackTooLong}, "pushback_too_long"},
		{StepError{class: Transient}, "failed"},
	} {
		if got := tc.step.fallbackReason(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.step, got, tc.want)
		}
	}
}

// countingClock is a fakeClock that counts its readings.
type countingClock struct {
	*fakeClock
	reads atomic.Int64
}

func (c *countingClock) Now() time.Time {
	c.reads.Add(1)
	return c.fakeClock.Now()
}

// TestClockReadings: what a call reads of the clock, as the docs say. A
// healthy call through a Failover without a breaker reads none; a closed
// breaker reads one when the call ends (to count it in its window), two
// with SlowCall (its start too); a refusal while open reads one.
func TestClockReadings(t *testing.T) {
	call := func(f *failoverDecider, err error) {
		ctx := context.Background()
		c := f.Begin(ctx, "/s/m", nil, nil, false)
		if _, e := f.Next(ctx, c); e != nil {
			t.Fatal(e)
		}
		f.Ended(ctx, c, err, false)
		f.Done(ctx, c, err)
	}
	for _, tc := range []struct {
		name          string
		breaker       bool
		slowCall      time.Duration
		err           error
		breakerReads  int64
		failoverReads int64
	}{
		{"no breaker", false, 0, nil, 0, 0},
		{"closed breaker", true, 0, nil, 1, 0},
		{"closed breaker, SlowCall", true, time.Second, nil, 2, 0},
		{"closed breaker, a failure", true, 0, status.Error(codes.Unavailable, "down"), 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bclk, fclk := &countingClock{fakeClock: newFakeClock()}, &countingClock{fakeClock: newFakeClock()}
			var b *Breaker
			if tc.breaker {
				var err error
				if b, err = NewBreaker(BreakerConfig{SlowCall: tc.slowCall, clock: bclk}); err != nil {
					t.Fatal(err)
				}
				bclk.reads.Store(0) // NewBreaker reads it once, for the window's origin
			}
			f := newTestFailover(t, FailoverConfig{Breaker: b}, fclk)
			call(f, tc.err)
			if got := bclk.reads.Load(); got != tc.breakerReads {
				t.Errorf("breaker's clock read %d times, want %d", got, tc.breakerReads)
			}
			if got := fclk.reads.Load(); got != tc.failoverReads {
				t.Errorf("Failover's clock read %d times, want %d", got, tc.failoverReads)
			}
		})
	}
	// A refusal while open.
	bclk := &countingClock{fakeClock: newFakeClock()}
	b, err := NewBreaker(BreakerConfig{ConsecutiveFailures: 1, clock: bclk})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := b.allow("/s/m")
	p.done(BreakerFailure, 0)
	bclk.reads.Store(0)
	if _, err := b.allow("/s/m"); err == nil {
		t.Fatal("an open breaker let a call through")
	}
	if got := bclk.reads.Load(); got != 1 {
		t.Errorf("a refusal read the clock %d times, want 1", got)
	}
}
