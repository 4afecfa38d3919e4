package retry

import (
	"context"
	"time"

	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// Hedging decisions. The interceptor sends the attempts; the policy decides
// when a hedge may go (the delay, learned or fixed), whether it may (the
// budget, the attempts, the deadline, the server's pushback), and what a
// failure means: a Permanent class ends the call, anything else allows the
// next hedge at once (or after the server's pushback).

// Defaults of the zero Hedging.
const (
	DefaultMaxExtraLoad  = 0.05
	DefaultHedgeMinDelay = time.Millisecond
)

// HedgeHeader is the request header that marks a hedge: every attempt of a
// hedged call but the first carries it, with the number of attempts sent
// before it (as grpc-previous-rpc-attempts, which it also carries). A server
// can use it, with Policy.IdempotencyHeader's key, to drop work that another
// attempt of the same call is already doing.
const HedgeHeader = interceptor.HedgeHeader

// beginHedged sets up a hedged call: the delay of its hedges, and whether
// its attempts must be timed to learn the delay.
func (c *compiled) beginHedged(method string, call *interceptor.Call) {
	call.Hedging = true
	h := c.Hedging
	switch {
	case h.Delay > 0:
		call.HedgeDelay = h.Delay
	case h.Delay < 0:
		call.HedgeDelay = 0 // every attempt at once
	default:
		call.Timed = true
		call.HedgeDelay = -1 // warming up: hedge only on failures
		if d, ok := c.hedgeMethod(method).est.hedgeDelay(); ok {
			call.HedgeDelay = d
		}
	}
}

// methodHedge is a hedging policy's state for one method: the load guard
// of its hedges sent on time and, for a learned delay, the estimator of
// its latencies.
type methodHedge struct {
	guard *loadGuard
	est   *latencyEstimator // nil for a fixed delay
}

// hedgeMethod returns method's hedging state, nil if it has none: the
// policy does not hedge, sends every attempt at once (Delay < 0), or has a
// fixed delay and NoBudget (nothing bounds its hedges but MaxAttempts).
func (c *compiled) hedgeMethod(method string) *methodHedge {
	if c.Hedging == nil || c.Hedging.Delay < 0 || c.Hedging.Delay > 0 && c.Budget == NoBudget {
		return nil
	}
	if m, ok := c.latencies.Load(method); ok {
		return m.(*methodHedge)
	}
	m := &methodHedge{guard: newLoadGuard(c.Hedging)}
	if c.Hedging.Delay == 0 {
		m.est = newLatencyEstimator(c.Hedging)
	}
	v, _ := c.latencies.LoadOrStore(method, m)
	return v.(*methodHedge)
}

// hedgeSucceeded is Done for a hedged call that succeeded: the call earns
// its share of the load guard and, with a learned delay, teaches the
// estimator how long the call's first attempt took. When a hedge sent on
// time won, the first attempt was still running: it had run for at least
// the hedges' delays plus the winner's time, and that lower bound is what
// is learned, as a lower bound (learning the winner's time instead would
// miss the slow attempts that hedging cuts short, and bias the delay low).
func (c *compiled) hedgeSucceeded(call *interceptor.Call) {
	m := c.hedgeMethod(call.Method)
	if m == nil {
		return
	}
	m.guard.earn()
	if m.est == nil || !call.Timed {
		return
	}
	d := call.Elapsed
	if s, _ := call.State.(*callState); call.Winner > 1 && call.HedgeDelay > 0 && (s == nil || !s.firstFailed && s.hedgesFailed == 0) {
		// Every attempt was sent on time, attempt n at (n-1) delays: the
		// first had run this long when the winner answered.
		m.est.observeBound(d + time.Duration(call.Winner-1)*call.HedgeDelay)
		return
	}
	m.est.observe(d)
}

// attemptFailed notes that attempt n of a hedged call failed.
func (s *callState) attemptFailed(n int) {
	if n > 1 {
		s.hedgesFailed++
	} else {
		s.firstFailed = true
	}
}

// hedgesRanOut charges the budget for the attempts of a hedged call still
// in flight when the caller's deadline ended it: they ran out of time with
// it, as the attempt that reported, but the interceptor reports only one.
// The first attempt is charged as a first attempt's timeout, each hedge as
// a retry that failed; so a blackhole, where every attempt ends at the
// deadline, drains the budget whichever attempt reports first.
func (c *compiled) hedgesRanOut(call *interceptor.Call, s *callState, now time.Time) {
	hedges := call.Attempts - 1 - s.hedgesFailed
	if !s.firstFailed {
		c.Budget.failed(now, attemptFailure{timeout: true})
	}
	for range hedges {
		c.Budget.failed(now, attemptFailure{retry: true, timeout: true})
	}
	s.firstFailed, s.hedgesFailed = true, call.Attempts-1
}

// hedgeFailed is Failed for a hedged call, after the checks common to both
// (the caller's context, a local error, a Permanent class).
func (c *compiled) hedgeFailed(ctx context.Context, call *interceptor.Call, s *callState, o interceptor.Outcome, pb pushback, now, deadline time.Time, hasDeadline bool, stop func(StopReason) (time.Duration, error)) (time.Duration, error) {
	noMore := func(r StopReason) (time.Duration, error) {
		if s.hedgeStop == 0 {
			s.hedgeStop = r
		}
		if o.Alone {
			return stop(s.hedgeStop)
		}
		return -1, nil
	}
	if s.hedgeStop != 0 {
		return noMore(s.hedgeStop)
	}
	if o.Committed {
		return noMore(StopCommitted)
	}
	if pb.stop {
		return noMore(StopPushback)
	}
	if call.Attempts >= call.MaxAttempts {
		return noMore(StopMaxAttempts)
	}
	var delay time.Duration
	if pb.present {
		if pb.delay > c.MaxPushback {
			return noMore(StopPushbackTooLong)
		}
		delay = pb.delay
	}
	if hasDeadline && !now.Add(delay+deadlineMargin).Before(deadline) {
		return noMore(StopDeadline)
	}
	s.replacing = true
	return delay, nil
}

// Hedge decides whether one more attempt of a hedged call may be sent now.
func (c *compiled) Hedge(ctx context.Context, call *interceptor.Call, alone bool) (bool, error) {
	s := c.state(call)
	replacing := s.replacing
	s.replacing = false
	refuse := func(r StopReason) (bool, error) {
		if !alone {
			return false, nil
		}
		if s.hedgeStop != 0 {
			r = s.hedgeStop
		}
		return false, c.gaveUp(ctx, call, &Error{Err: s.lastErr, Attempts: call.Attempts, Reason: r, Class: s.lastClass, Pushback: s.pushback})
	}
	if s.hedgeStop != 0 {
		return refuse(s.hedgeStop)
	}
	if call.Attempts >= call.MaxAttempts {
		return refuse(StopMaxAttempts)
	}
	now := c.clock.Now()
	if deadline, ok := ctx.Deadline(); ok && !now.Add(deadlineMargin).Before(deadline) {
		return refuse(StopDeadline)
	}
	event := func(k HedgeKind) {
		if c.Metrics != nil {
			c.Metrics.hedge(ctx, call, k)
		}
		if c.OnHedge == nil {
			return
		}
		ev := HedgeEvent{Context: ctx, Method: call.Method, Kind: k, Attempt: call.Attempts + 1}
		if replacing && s.lastErr != nil {
			ev.Err, ev.Code, ev.Class = s.lastErr, status.Code(s.lastErr), s.lastClass
		} else {
			ev.Delay = call.HedgeDelay
		}
		c.OnHedge(ev)
	}
	if !c.Budget.tryRetry(now) {
		s.denied++
		event(HedgeDenied)
		return refuse(StopBudget)
	}
	if !replacing {
		if m := c.hedgeMethod(call.Method); m != nil && !m.guard.allow(now, call.HedgeDelay) {
			s.denied++
			event(HedgeDenied)
			return refuse(StopBudget)
		}
	}
	event(HedgeSent)
	return true, nil
}
