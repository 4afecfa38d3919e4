package retry

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// hedgedCall begins a hedged call of p's policy and returns it.
func hedgedCall(t *testing.T, c *compiled, attempts int) *interceptor.Call {
	t.Helper()
	call := &interceptor.Call{}
	if ok, err := c.Begin(context.Background(), "/test.Service/Method", nil, call); !ok || err != nil {
		t.Fatalf("Begin = %v, %v", ok, err)
	}
	call.Attempts = attempts
	return call
}

func TestHedgeDecisions(t *testing.T) {
	clk := newFakeClock()
	pol := Policy{MaxAttempts: 3, Hedging: &Hedging{Delay: 50 * time.Millisecond}, Budget: NoBudget, MaxPushback: time.Second, clock: clk}
	c := mustCompile(pol)
	ctx := context.Background()
	fail := func(call *interceptor.Call, st *status.Status, alone bool, kv ...string) (time.Duration, error) {
		return c.Failed(ctx, call, interceptor.Outcome{Err: st.Err(), Trailer: mdPairs(kv...), Attempt: call.Attempts, Alone: alone})
	}
	t.Run("begin", func(t *testing.T) {
		call := hedgedCall(t, c, 0)
		if !call.Hedging || call.HedgeDelay != 50*time.Millisecond || call.Timed {
			t.Fatalf("call %+v", call)
		}
		all := mustCompile(Policy{Hedging: &Hedging{Delay: -1}})
		if call := hedgedCall(t, all, 0); call.HedgeDelay != 0 {
			t.Fatalf("a negative Delay must send every attempt at once: %v", call.HedgeDelay)
		}
		learn := mustCompile(Policy{Hedging: &Hedging{}})
		if call := hedgedCall(t, learn, 0); call.HedgeDelay >= 0 || !call.Timed {
			t.Fatalf("a learned delay must not hedge on time while warming up, and time its attempts: %+v", call)
		}
	})
	t.Run("a non-fatal failure allows the next hedge at once", func(t *testing.T) {
		call := hedgedCall(t, c, 1)
		if d, err := fail(call, unavailable, false); d != 0 || err != nil {
			t.Fatalf("Failed = %v, %v", d, err)
		}
		if ok, err := c.Hedge(ctx, call, false); !ok || err != nil {
			t.Fatalf("Hedge = %v, %v", ok, err)
		}
	})
	t.Run("a permanent failure ends the call", func(t *testing.T) {
		call := hedgedCall(t, c, 2)
		_, err := fail(call, status.New(codes.NotFound, "no"), false)
		if e := stopOf(t, err); e.Reason != StopPermanent || status.Code(err) != codes.NotFound {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("pushback delays the next hedge", func(t *testing.T) {
		call := hedgedCall(t, c, 1)
		if d, err := fail(call, unavailable, false, PushbackTrailer, "300"); d != 300*time.Millisecond || err != nil {
			t.Fatalf("Failed = %v, %v", d, err)
		}
	})
	t.Run("do-not-retry pushback stops hedges, and ends the call when alone", func(t *testing.T) {
		call := hedgedCall(t, c, 2)
		if d, err := fail(call, unavailable, false, PushbackTrailer, "-1"); d >= 0 || err != nil {
			t.Fatalf("Failed = %v, %v; want no more hedges, the call going on", d, err)
		}
		if ok, err := c.Hedge(ctx, call, false); ok || err != nil {
			t.Fatalf("Hedge = %v, %v; want refused", ok, err)
		}
		_, err := fail(call, status.New(codes.ResourceExhausted, "busy"), true)
		if e := stopOf(t, err); e.Reason != StopPushback || status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("last failure: %v (%v); want its own status, stopped by the earlier pushback", err, e.Reason)
		}
	})
	t.Run("max attempts", func(t *testing.T) {
		call := hedgedCall(t, c, 3)
		if d, err := fail(call, unavailable, false); d >= 0 || err != nil {
			t.Fatalf("Failed = %v, %v", d, err)
		}
		if _, err := fail(call, unavailable, true); stopOf(t, err).Reason != StopMaxAttempts {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		dctx, cancel := context.WithDeadline(ctx, clk.Now().Add(200*time.Millisecond))
		defer cancel()
		call := hedgedCall(t, c, 1)
		_, err := c.Failed(dctx, call, interceptor.Outcome{Err: unavailable.Err(), Trailer: mdPairs(PushbackTrailer, "250"), Attempt: 1, Alone: true})
		if e := stopOf(t, err); e.Reason != StopDeadline || status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v", err)
		}
	})
}

func TestHedgeBudgetAndEvents(t *testing.T) {
	var mu sync.Mutex
	var events []HedgeEvent
	th := NewThrottle(2, 1)
	c := mustCompile(Policy{MaxAttempts: 3, Hedging: &Hedging{Delay: time.Millisecond}, Budget: th,
		OnHedge: func(ev HedgeEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() }})
	ctx := context.Background()
	call := hedgedCall(t, c, 1)
	if ok, _ := c.Hedge(ctx, call, false); !ok {
		t.Fatal("a full throttle refused a hedge")
	}
	call.Attempts = 2
	th.failed(time.Now(), attemptFailure{}) // at half: no more retries
	if ok, err := c.Hedge(ctx, call, false); ok || err != nil {
		t.Fatalf("Hedge = %v, %v; want refused, the call going on", ok, err)
	}
	c.Failed(ctx, call, interceptor.Outcome{Err: unavailable.Err(), Attempt: 2})
	ok, err := c.Hedge(ctx, call, true)
	if e := stopOf(t, err); ok || e.Reason != StopBudget || status.Code(err) != codes.Unavailable {
		t.Fatalf("Hedge alone = %v, %v; want the call ended with the last failure, StopBudget", ok, err)
	}
	var report CallReport
	call.State.(*callState).report = &report
	c.Done(ctx, call, err)
	if report.Denied != 2 || report.Attempts != 2 || !report.Hedged || report.Reason != StopBudget {
		t.Fatalf("report %+v", report)
	}
	mu.Lock()
	defer mu.Unlock()
	kinds := []HedgeKind{}
	for _, ev := range events {
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) != 3 || kinds[0] != HedgeSent || kinds[1] != HedgeDenied || kinds[2] != HedgeDenied ||
		events[0].Delay != time.Millisecond || events[2].Err == nil || events[2].Code != codes.Unavailable {
		t.Fatalf("events %+v", events)
	}
}

func TestLatencyBuckets(t *testing.T) {
	for d := time.Duration(1); d < 15*time.Minute; d = d*9/8 + 1 {
		i := bucketOf(d)
		top := bucketTop(i)
		if d > 2*time.Microsecond && (top < d || float64(top) > float64(d)*1.126) {
			t.Fatalf("%v: bucket %d tops at %v", d, i, top)
		}
		if i > 0 && bucketTop(i-1) >= d && d > 2*time.Microsecond {
			t.Fatalf("%v: the bucket below (%d) already reaches it", d, i-1)
		}
	}
	if bucketOf(0) != 0 || bucketOf(1<<50) != latencyBuckets-1 {
		t.Fatal("out-of-range latencies must fall in the end buckets")
	}
}

func TestLatencyEstimate(t *testing.T) {
	e := newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
	for i := range latencyWarmUp - 1 {
		e.observe(time.Duration(i+1) * time.Millisecond)
	}
	if _, ok := e.hedgeDelay(); ok {
		t.Fatal("an estimate before the warm-up")
	}
	// 1000 latencies, 1ms to 1000ms: the 95th percentile is 950ms.
	e = newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
	for i := range 1000 {
		e.observe(time.Duration((i*37)%1000+1) * time.Millisecond)
	}
	d, ok := e.hedgeDelay()
	if !ok || d < 950*time.Millisecond || d > 950*time.Millisecond*1126/1000 {
		t.Fatalf("p95 of 1..1000ms estimated at %v", d)
	}
	// Latencies move up tenfold: within two windows the estimate follows.
	for range 2 * latencyWindow {
		e.observe(5 * time.Second)
	}
	if d, _ := e.hedgeDelay(); d < 5*time.Second || d > 6*time.Second {
		t.Fatalf("after a shift to 5s: %v", d)
	}
	// The floor.
	e = newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: 3 * time.Millisecond})
	for range 100 {
		e.observe(10 * time.Microsecond)
	}
	if d, _ := e.hedgeDelay(); d != 3*time.Millisecond {
		t.Fatalf("floor: %v", d)
	}
}

// TestLoadGuard: hedges due at once are limited by the tokens; after the
// burst window, none until a success; each success earns MaxExtraLoad of a
// hedge, up to what 200 calls earn.
func TestLoadGuard(t *testing.T) {
	const delay = 80 * time.Millisecond // a burst window of 10ms
	t0 := time.Now()
	g := newLoadGuard(&Hedging{MaxExtraLoad: 0.05})
	for i := range 10 {
		if !g.allow(t0.Add(time.Duration(i)*time.Millisecond), delay) {
			t.Fatalf("hedge %d of a burst of 10 refused", i+1)
		}
	}
	if g.allow(t0.Add(9*time.Millisecond), delay) {
		t.Fatal("an 11th hedge allowed: the guard holds 10")
	}
	for range 19 {
		g.earn()
	}
	if g.allow(t0.Add(20*time.Millisecond), delay) {
		t.Fatal("19 successes at 5% earned a hedge")
	}
	g.earn()
	if !g.allow(t0.Add(20*time.Millisecond), delay) || g.allow(t0.Add(20*time.Millisecond), delay) {
		t.Fatal("20 successes at 5% must earn exactly one hedge")
	}

	// A full guard: past the window, no hedge until a success.
	g = newLoadGuard(&Hedging{MaxExtraLoad: 0.05})
	if !g.allow(t0, delay) || !g.allow(t0.Add(10*time.Millisecond), delay) {
		t.Fatal("hedges within the window refused")
	}
	if g.allow(t0.Add(11*time.Millisecond), delay) {
		t.Fatal("a hedge past the window allowed with no success since the first")
	}
	g.earn()
	if !g.allow(t0.Add(time.Second), delay) {
		t.Fatal("a hedge refused after a success")
	}
	for range 1000 {
		g.earn()
	}
	if got := g.tokens.Load(); got != 10*milli {
		t.Fatalf("a guard at 5%% holds %d milli-hedges, want 10000", got)
	}
	if g := newLoadGuard(&Hedging{MaxExtraLoad: 0.5}); g.burst != 100*milli {
		t.Fatalf("a guard at 50%% holds %d milli-hedges, want what 200 calls earn (100000)", g.burst)
	}
}

// TestHedgeLoadGuardScope: the guard holds the hedges sent on time of a
// learned delay and of a fixed one (with a budget), never a hedge that
// replaces a failed attempt; a fixed delay with NoBudget, and every
// attempt at once (Delay < 0), have none.
func TestHedgeLoadGuardScope(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		h       Hedging
		budget  Budget
		guarded bool
	}{
		{"learned", Hedging{}, nil, true},
		{"fixed", Hedging{Delay: 80 * time.Millisecond}, nil, true},
		{"fixed, throttle", Hedging{Delay: 80 * time.Millisecond}, NewThrottle(10, 0.1), true},
		{"fixed, NoBudget", Hedging{Delay: 80 * time.Millisecond}, NoBudget, false},
		{"every attempt at once", Hedging{Delay: -1}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			c := mustCompile(Policy{MaxAttempts: 3, Hedging: &tc.h, Budget: tc.budget, clock: clk})
			// One hedge sent on time; 100ms later, with no call having
			// succeeded, another call's hedge is due.
			if ok, err := c.Hedge(ctx, hedgedCall(t, c, 1), false); !ok || err != nil {
				t.Fatalf("first hedge: %v, %v", ok, err)
			}
			clk.Sleep(ctx, 100*time.Millisecond)
			var denied []HedgeKind
			c.OnHedge = func(ev HedgeEvent) { denied = append(denied, ev.Kind) }
			call := hedgedCall(t, c, 1)
			ok, err := c.Hedge(ctx, call, false)
			if err != nil || ok == tc.guarded || len(denied) != 1 || denied[0] == HedgeDenied != tc.guarded {
				t.Fatalf("second hedge on time: %v, %v, events %v; want refused: %v", ok, err, denied, tc.guarded)
			}
			// A hedge that replaces a failed attempt is the budget's.
			if d, err := c.Failed(ctx, call, interceptor.Outcome{Err: unavailable.Err(), Attempt: 1, Alone: true}); d != 0 || err != nil {
				t.Fatalf("Failed = %v, %v", d, err)
			}
			if ok, err := c.Hedge(ctx, call, true); !ok || err != nil {
				t.Fatalf("a hedge replacing a failure: %v, %v", ok, err)
			}
		})
	}
}

// observed returns how many samples the estimator of method holds at d's
// bucket: exact latencies and lower bounds.
func observed(c *compiled, d time.Duration) (exact, bounds uint64) {
	return c.hedgeMethod("/test.Service/Method").est.count(bucketOf(d))
}

// learned returns how many exact latencies the estimator of method holds
// at d's bucket, and fails the test if it holds lower bounds there.
func learned(t *testing.T, c *compiled, d time.Duration) uint64 {
	t.Helper()
	exact, bounds := observed(c, d)
	if bounds != 0 {
		t.Fatalf("%d lower bounds at %v", bounds, d)
	}
	return exact
}

// TestLearnedDelaySamples: one sample per successful call, the first
// attempt's time; when a hedge sent on time won, the time the first attempt
// had run by then; timed-out attempts too, fast failures never.
func TestLearnedDelaySamples(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	c := mustCompile(Policy{MaxAttempts: 3, Hedging: &Hedging{}, PerAttemptTimeout: time.Second, clock: clk})
	succeed := func(winner int, elapsed time.Duration, failFirst bool) {
		call := hedgedCall(t, c, winner)
		if failFirst {
			c.Failed(ctx, call, interceptor.Outcome{Err: unavailable.Err(), Attempt: 1, Elapsed: time.Millisecond})
		}
		call.Winner, call.Elapsed = winner, elapsed
		c.Done(ctx, call, nil)
	}
	// Warm-up: no delay on time before 20 samples.
	for i := range latencyWarmUp {
		if call := hedgedCall(t, c, 0); call.HedgeDelay >= 0 {
			t.Fatalf("a delay after %d samples: %v", i, call.HedgeDelay)
		}
		succeed(1, 100*time.Millisecond, false)
	}
	d := hedgedCall(t, c, 0).HedgeDelay
	if d < 100*time.Millisecond || d > 113*time.Millisecond {
		t.Fatalf("delay %v after 20 calls of 100ms", d)
	}
	// The second attempt, sent on time, won after 30ms: the first had run
	// d + 30ms, a lower bound of its latency.
	succeed(2, 30*time.Millisecond, false)
	if exact, bounds := observed(c, d+30*time.Millisecond); exact != 0 || bounds != 1 || learned(t, c, 30*time.Millisecond) != 0 {
		t.Fatal("a hedge's win was not learned as a lower bound, the first attempt's time so far")
	}
	// After a failure the winner was not sent on time: its own time. The
	// fast failure itself is not a sample.
	succeed(2, 40*time.Millisecond, true)
	if learned(t, c, 40*time.Millisecond) != 1 || learned(t, c, time.Millisecond) != 0 {
		t.Fatal("a win after a failure: want the winner's time, and no sample of the fast failure")
	}
	// An attempt cut by its per-attempt timeout, the caller's deadline
	// still far: a sample of at least that long.
	dctx, cancel := context.WithDeadline(ctx, clk.Now().Add(time.Minute))
	defer cancel()
	call := hedgedCall(t, c, 1)
	c.Failed(dctx, call, interceptor.Outcome{Err: status.Error(codes.DeadlineExceeded, "attempt timeout"), Attempt: 1, Elapsed: time.Second, Alone: true})
	if learned(t, c, time.Second) != 1 {
		t.Fatal("a timed-out attempt was not learned")
	}
	// A failed call teaches nothing and earns nothing.
	before := c.hedgeMethod("/test.Service/Method").guard.tokens.Load()
	c.Done(ctx, call, unavailable.Err())
	if c.hedgeMethod("/test.Service/Method").est.total.Load() != latencyWarmUp+3 || c.hedgeMethod("/test.Service/Method").guard.tokens.Load() != before {
		t.Fatal("a failed call changed the estimate or the guard")
	}

	// No ceiling: multi-second calls are hedged after their own p95.
	slow := mustCompile(Policy{Hedging: &Hedging{}, clock: clk})
	for i := range 200 {
		call := hedgedCall(t, slow, 1)
		call.Winner, call.Elapsed = 1, time.Duration(30+i%10)*time.Second
		slow.Done(ctx, call, nil)
	}
	if d := hedgedCall(t, slow, 0).HedgeDelay; d < 39*time.Second || d > 45*time.Second {
		t.Fatalf("calls of 30s to 39s: delay %v, want about 39s", d)
	}
}

// TestHedgesRanOut: when the caller's deadline ends a hedged call, every
// attempt in flight ran out of time, whichever reports: the first is
// charged as a first attempt's timeout, each hedge as a failed retry, and
// none twice.
func TestHedgesRanOut(t *testing.T) {
	for _, reporter := range []int{1, 3} {
		clk := newFakeClock()
		b := &recordingBudget{}
		c := mustCompile(Policy{MaxAttempts: 4, Hedging: &Hedging{Delay: 10 * time.Millisecond}, Budget: b, clock: clk})
		ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(50*time.Millisecond))
		call := hedgedCall(t, c, 3)
		// Attempt 2 failed earlier and was charged then.
		c.Failed(ctx, call, interceptor.Outcome{Err: unavailable.Err(), Attempt: 2})
		b.charges = nil
		clk.Sleep(ctx, 50*time.Millisecond)
		_, err := c.Failed(ctx, call, interceptor.Outcome{Err: status.Error(codes.DeadlineExceeded, "deadline"), Attempt: reporter})
		if e := stopOf(t, err); e.Reason != StopCanceled {
			t.Fatalf("reporter %d: %v", reporter, err)
		}
		if want := []string{"first timeout", "retry timeout"}; !slices.Equal(sorted(b.charges), want) {
			t.Errorf("reporter %d: charged %v, want %v (attempts 1 and 3; 2 was charged when it failed)", reporter, b.charges, want)
		}
		cancel()
	}
	// A caller that cancels is not charged for the attempts it cancels.
	clk := newFakeClock()
	b := &recordingBudget{}
	c := mustCompile(Policy{MaxAttempts: 4, Hedging: &Hedging{Delay: 10 * time.Millisecond}, Budget: b, clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Failed(ctx, hedgedCall(t, c, 3), interceptor.Outcome{Err: status.Error(codes.Canceled, "canceled"), Attempt: 1})
	if len(b.charges) != 0 {
		t.Errorf("a cancelled call charged %v", b.charges)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// recordingBudget allows everything and records the failures it is told.
type recordingBudget struct {
	mu      sync.Mutex
	charges []string
}

func (b *recordingBudget) success()                {}
func (b *recordingBudget) tryRetry(time.Time) bool { return true }
func (b *recordingBudget) validate() error         { return nil }
func (b *recordingBudget) failed(_ time.Time, f attemptFailure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kind := "first"
	if f.retry {
		kind = "retry"
	}
	if f.timeout {
		kind += " timeout"
	}
	b.charges = append(b.charges, kind)
}

// TestHedgeStateConcurrent: recording, estimating and guarding from many
// goroutines at once (run with -race).
func TestHedgeStateConcurrent(t *testing.T) {
	e := newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
	g := newLoadGuard(&Hedging{MaxExtraLoad: 0.05})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 3000 {
				e.observe(time.Duration(w*1000+i) * time.Microsecond)
				e.hedgeDelay()
				g.earn()
				g.allow(time.Now(), time.Millisecond)
			}
		})
	}
	wg.Wait()
	if d, ok := e.hedgeDelay(); !ok || d <= 0 || d > 12*time.Millisecond {
		t.Fatalf("estimate %v, %v", d, ok)
	}
	if tk := g.tokens.Load(); tk < 0 || tk > g.burst {
		t.Fatalf("guard tokens %d out of [0, %d]", tk, g.burst)
	}
}

func mdPairs(kv ...string) metadata.MD {
	if len(kv) == 0 {
		return nil
	}
	return metadata.Pairs(kv...)
}

// BenchmarkHedgedDone is the decision code's part of a hedged call that
// succeeds at once (Begin and Done): for a learned delay, one histogram
// sample and the load guard; run with -cpu 1,2 to see contention.
func BenchmarkHedgedDone(b *testing.B) {
	for _, h := range []Hedging{{}, {Delay: 50 * time.Millisecond}} {
		name := "learned"
		if h.Delay > 0 {
			name = "fixed"
		}
		b.Run(name, func(b *testing.B) {
			c := mustCompile(Policy{MaxAttempts: 2, Hedging: &h})
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var call interceptor.Call
				for pb.Next() {
					call = interceptor.Call{}
					c.Begin(ctx, "/test.Service/Method", nil, &call)
					call.Attempts, call.Winner, call.Elapsed = 1, 1, 20*time.Millisecond
					c.Done(ctx, &call, nil)
				}
			})
		})
	}
}
