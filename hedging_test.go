package retry

import (
	"context"
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
	th.failed(time.Now(), false, false, false) // at half: no more retries
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

func TestTimedHedgeLoadGuard(t *testing.T) {
	e := newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
	for i := range hedgeGuardBurst {
		if !e.allowTimedHedge() {
			t.Fatalf("hedge %d of the burst refused", i+1)
		}
	}
	if e.allowTimedHedge() {
		t.Fatal("a hedge beyond the burst allowed without calls")
	}
	for range 19 {
		e.observe(time.Millisecond)
	}
	if e.allowTimedHedge() {
		t.Fatal("19 calls at 5% earned a hedge")
	}
	e.observe(time.Millisecond)
	if !e.allowTimedHedge() || e.allowTimedHedge() {
		t.Fatal("20 calls at 5% must earn exactly one hedge")
	}
}

func TestLatencyEstimatorConcurrent(t *testing.T) {
	e := newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 3000 {
				e.observe(time.Duration(g*1000+i) * time.Microsecond)
				e.hedgeDelay()
				e.allowTimedHedge()
			}
		})
	}
	wg.Wait()
	if d, ok := e.hedgeDelay(); !ok || d <= 0 || d > 12*time.Millisecond {
		t.Fatalf("estimate %v, %v", d, ok)
	}
	if tk := e.tokens.Load(); tk < 0 || tk > hedgeGuardBurst*milli {
		t.Fatalf("guard tokens %d out of bounds", tk)
	}
}

func mdPairs(kv ...string) metadata.MD {
	if len(kv) == 0 {
		return nil
	}
	return metadata.Pairs(kv...)
}
