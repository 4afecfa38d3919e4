package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/interceptor"
)

// recorder wraps a Decider and logs what the hedge loop asks it, with the
// virtual time: the order of the questions is the contract the lab mirrors.
type recorder struct {
	interceptor.Decider
	s   *sim
	log []string
	// delay, if set, replaces the delays Failed allows (to reach the
	// caller's deadline with nothing in flight).
	delay time.Duration
}

func (r *recorder) note(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf("%v ", r.s.now)+fmt.Sprintf(format, args...))
}

func (r *recorder) Failed(ctx context.Context, c *interceptor.Call, o interceptor.Outcome) (time.Duration, error) {
	d, err := r.Decider.Failed(ctx, c, o)
	if err == nil && d >= 0 && r.delay > 0 {
		d = r.delay
	}
	switch {
	case o.Unstarted:
		r.note("failed unstarted after %d", o.Attempt)
	default:
		r.note("failed %d %v alone=%v", o.Attempt, status.Code(o.Err), o.Alone)
	}
	return d, err
}

func (r *recorder) Hedge(ctx context.Context, c *interceptor.Call, alone bool) (bool, error) {
	ok, err := r.Decider.Hedge(ctx, c, alone)
	r.note("hedge alone=%v: %v", alone, ok)
	return ok, err
}

func (r *recorder) Done(ctx context.Context, c *interceptor.Call, err error) {
	r.note("done %v attempts=%d winner=%d", status.Code(err), c.Attempts, c.Winner)
	r.Decider.Done(ctx, c, err)
}

// script is a server that answers attempt n after d[n-1] with err[n-1].
type script struct {
	d    []time.Duration
	err  []error
	sent []string
}

func (s *script) serve(c *call, now time.Duration) (time.Duration, error) {
	n := c.attempts()
	s.sent = append(s.sent, fmt.Sprintf("%v #%d", now, n))
	return s.d[n-1], s.err[n-1]
}

// playHedged plays one call of policy p against srv and returns the call
// and the log of the Decider's questions.
func playHedged(t *testing.T, p retry.Policy, srv server, deadline, stream, forceDelay time.Duration) (*call, []string) {
	t.Helper()
	s := &sim{}
	dec, _ := policySpec{budget: func() retry.Budget { return retry.NoBudget }}.decider(p, s.Now, func() float64 { return 0.5 })
	rec := &recorder{Decider: dec, s: s, delay: forceDelay}
	cl := &client{sim: s, dec: rec, srv: srv, deadline: deadline, stream: stream}
	var got *call
	cl.onDone = func(c *call) {
		if got != nil {
			t.Fatal("the call ended twice")
		}
		got = c
	}
	s.at(0, func() { cl.start() })
	s.run()
	if got == nil {
		t.Fatal("the call never ended")
	}
	return got, rec.log
}

func hedgePolicy(attempts int, delay time.Duration) retry.Policy {
	p := labPolicy(retry.NoBudget)
	p.MaxAttempts = attempts
	p.Hedging = &retry.Hedging{Delay: delay}
	return p
}

func checkLog(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("the Decider was asked:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var ms50, ms100 = 50 * time.Millisecond, 100 * time.Millisecond

func TestHedgeLoopWinner(t *testing.T) {
	// A hedge each 50ms: the second attempt, sent at 50ms, answers first (at
	// 150ms); the third was sent at 100ms. The first and third are
	// cancelled unheard.
	srv := &script{d: []time.Duration{300 * time.Millisecond, ms100, ms100}, err: []error{nil, nil, nil}}
	c, log := playHedged(t, hedgePolicy(3, ms50), srv, 0, 0, 0)
	checkLog(t, log, "50ms hedge alone=false: true", "100ms hedge alone=false: true", "150ms done OK attempts=3 winner=2")
	if !slices.Equal(srv.sent, []string{"0s #1", "50ms #2", "100ms #3"}) || !c.ok || c.end != 150*time.Millisecond || c.first != c.end {
		t.Errorf("sent %v; call ok %v, answered at %v, ended at %v", srv.sent, c.ok, c.first, c.end)
	}

	// A stream: the race is won at 150ms (its first message), the call ends
	// 2s later, when the Decider is told.
	c, log = playHedged(t, hedgePolicy(2, ms50), &script{d: []time.Duration{300 * time.Millisecond, ms100}, err: []error{nil, nil}}, 0, 2*time.Second, 0)
	checkLog(t, log, "50ms hedge alone=false: true", "2.15s done OK attempts=2 winner=2")
	if c.first != 150*time.Millisecond || c.end != 2150*time.Millisecond {
		t.Errorf("stream: first message at %v, end at %v", c.first, c.end)
	}
}

func TestHedgeLoopFailures(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	// A failure sends the next hedge at once; the timer is armed again for
	// the one after.
	srv := &script{d: []time.Duration{10 * time.Millisecond, 80 * time.Millisecond, ms100}, err: []error{unavailable, nil, nil}}
	c, log := playHedged(t, hedgePolicy(3, ms50), srv, 0, 0, 0)
	checkLog(t, log, "10ms failed 1 Unavailable alone=true", "10ms hedge alone=true: true", "60ms hedge alone=false: true", "90ms done OK attempts=3 winner=2")
	if !c.ok {
		t.Errorf("call failed: %v", c.last)
	}

	// A Permanent class ends the call at once; the attempt in flight is
	// cancelled.
	srv = &script{d: []time.Duration{300 * time.Millisecond, 10 * time.Millisecond}, err: []error{nil, status.Error(codes.NotFound, "no")}}
	c, log = playHedged(t, hedgePolicy(2, ms50), srv, 0, 0, 0)
	checkLog(t, log, "50ms hedge alone=false: true", "60ms failed 2 NotFound alone=false", "60ms done NotFound attempts=2 winner=0")
	if c.ok || c.reason != retry.StopPermanent {
		t.Errorf("call ok %v, reason %v", c.ok, c.reason)
	}

	// Every attempt failing: the last one to fail ends the call, once
	// nothing is in flight.
	srv = &script{d: []time.Duration{70 * time.Millisecond, 10 * time.Millisecond}, err: []error{unavailable, unavailable}}
	c, log = playHedged(t, hedgePolicy(2, ms50), srv, 0, 0, 0)
	checkLog(t, log, "50ms hedge alone=false: true", "60ms failed 2 Unavailable alone=false", "70ms failed 1 Unavailable alone=true", "70ms done Unavailable attempts=2 winner=0")
	if c.reason != retry.StopMaxAttempts {
		t.Errorf("reason %v, want StopMaxAttempts", c.reason)
	}
}

func TestHedgeLoopDeadline(t *testing.T) {
	// The attempts in flight at the caller's deadline end with it: the
	// first to report ends the call, the others are unheard.
	srv := &script{d: []time.Duration{time.Hour, time.Hour}, err: []error{nil, nil}}
	c, log := playHedged(t, hedgePolicy(2, ms50), srv, 200*time.Millisecond, 0, 0)
	checkLog(t, log, "50ms hedge alone=false: true", "200ms failed 1 DeadlineExceeded alone=false", "200ms done DeadlineExceeded attempts=2 winner=0")
	if c.reason != retry.StopCanceled {
		t.Errorf("reason %v, want StopCanceled", c.reason)
	}

	// Nothing in flight and a hedge to come after the deadline: the call
	// ends at the deadline with the last attempt's error.
	unavailable := status.Error(codes.Unavailable, "down")
	srv = &script{d: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}, err: []error{unavailable, nil}}
	c, log = playHedged(t, hedgePolicy(2, time.Second), srv, 200*time.Millisecond, 0, 500*time.Millisecond)
	checkLog(t, log, "10ms failed 1 Unavailable alone=true", "200ms failed unstarted after 1", "200ms done Unavailable attempts=1 winner=0")
	var e *retry.Error
	if c.reason != retry.StopDeadline || !errors.As(c.h.final, &e) || c.ic.Idle != 190*time.Millisecond {
		t.Errorf("reason %v, error %v, idle %v; want StopDeadline after 190ms idle", c.reason, c.h.final, c.ic.Idle)
	}
}

func TestHedgeLoopLearns(t *testing.T) {
	// A learned delay: no hedge on time until the estimate is warm, then
	// the calls carry the delay.
	s := &sim{}
	p := labPolicy(nil)
	p.MaxAttempts = 2
	p.Hedging = &retry.Hedging{}
	srv := serveFunc(func(c *call, _ time.Duration) (time.Duration, error) {
		return time.Duration(50+c.seq%100) * time.Millisecond, nil
	})
	f := newFleet(s, 1, policySpec{budget: func() retry.Budget { return nil }}, p, srv, 0, 1)
	var delays []time.Duration
	f.observe(nil, func(c *call) { delays = append(delays, c.ic.HedgeDelay) })
	f.openLoop(100, 0, 10*time.Second)
	s.run()
	if delays[0] >= 0 || delays[len(delays)-1] < 100*time.Millisecond || delays[len(delays)-1] > 160*time.Millisecond {
		t.Errorf("hedge delays from %v to %v; want none at first, then about the 95th percentile (145ms)", delays[0], delays[len(delays)-1])
	}
}

// row returns the named row of rows.
func row(t *testing.T, rows []policySpec, name string) policySpec {
	t.Helper()
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no row %q", name)
	return policySpec{}
}

// TestTailModel checks the tail's server and the hedge loop against what
// the model implies: percentiles without hedging, and a fixed delay (its
// load guard well above what it sends) hedging exactly the calls slower
// than it.
func TestTailModel(t *testing.T) {
	t.Parallel()
	m := tailBase
	m.straggle = 0.02
	rows := hedgeRows(m)
	// The median is an ordinary attempt's (100ms, shifted by the 2%
	// stragglers); the 99th percentile the stragglers' median (1s).
	r := runTail(1, row(t, rows, "no hedging"), m, false, 20*time.Second)
	if p50, p99 := r.percentile(0.5), r.percentile(0.99); p50 < 98*time.Millisecond || p50 > 104*time.Millisecond ||
		p99 < 900*time.Millisecond || p99 > 1100*time.Millisecond || r.extra() != 0 {
		t.Errorf("no hedging: p50 %v, p99 %v, %.3f hedges per call", p50, p99, r.extra())
	}
	for _, stream := range []bool{false, true} {
		// A fixed delay at the healthy p95 hedges 0.98 × 5% + 2% of calls
		// with two attempts.
		r = runTail(1, row(t, rows, "fixed 164ms/2"), m, stream, 20*time.Second)
		if x := r.extra(); x < 0.066 || x > 0.072 || r.denied*1000 > r.calls {
			t.Errorf("fixed 164ms/2, stream %v: %.4f hedges per call (%d of %d calls denied), want 0.069", stream, x, r.denied, r.calls)
		}
	}
}

// TestTailGoals: the learned delay cuts the 99th percentile of calls (and
// of the time to first token of streams) at least threefold, with at most
// 5% more attempts, whether 2% or 5% of attempts straggle (as many as
// MaxExtraLoad allows to hedge: the percentile of the latencies falls in
// the gap between the bulk and the stragglers). With 2%, the 99.9th too,
// its guard rarely refusing a hedge due; with 5%, the guard refuses some
// (its earnings match the stragglers), under 1% of the calls.
func TestTailGoals(t *testing.T) {
	t.Parallel()
	for _, straggle := range tailStraggles {
		m := tailBase
		m.straggle = straggle
		rows := hedgeRows(m)
		ps, denied := []float64{0.99, 0.999}, 0.001
		if straggle > 0.02 {
			ps, denied = []float64{0.99}, 0.01
		}
		for _, stream := range []bool{false, true} {
			none := runTail(1, row(t, rows, "no hedging"), m, stream, 20*time.Second)
			r := runTail(1, row(t, rows, "adaptive/2"), m, stream, 20*time.Second)
			for _, p := range ps {
				if a, b := none.percentile(p), r.percentile(p); a < 3*b {
					t.Errorf("%g%% stragglers, stream %v: p%g %v without hedging, %v learned: want at least 3x less", 100*straggle, stream, 100*p, a, b)
				}
			}
			if x := r.extra(); x > 0.05 || float64(r.denied) > denied*float64(r.calls) {
				t.Errorf("%g%% stragglers, stream %v: %.4f hedges per call, %d of %d calls denied; want ≤ 0.05 and ≤ %g%%", 100*straggle, stream, x, r.denied, r.calls, 100*denied)
			}
		}
	}
}

// TestHedgeOutageGoals: in a full outage, fast-failing or a blackhole,
// hedging sends no more attempts per call than retrying under the same
// budget, over the outage (its onset included) and in its steady state.
// Played with 10 clients instead of 50 (what is compared is per client).
func TestHedgeOutageGoals(t *testing.T) {
	t.Parallel()
	rows := hedgeOutageRows()
	for _, blackhole := range []bool{false, true} {
		for _, rate := range hedgeOutageRates {
			for _, budget := range []string{"credit", "throttle"} {
				retrying := runHedgeOutage(1, row(t, rows, "retry, "+budget), 10, rate, blackhole)
				for _, h := range []string{"fixed", "adaptive"} {
					r := runHedgeOutage(1, row(t, rows, h+", "+budget), 10, rate, blackhole)
					if r.outage() > retrying.outage() || r.steady() > retrying.steady()+0.005 {
						t.Errorf("blackhole %v, %g/s, %s: %s sends %.4f attempts per call over the outage, %.4f in steady state; retrying %.4f, %.4f",
							blackhole, rate, budget, h, r.outage(), r.steady(), retrying.outage(), retrying.steady())
					}
				}
			}
		}
	}
}
