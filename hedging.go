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
		if d, ok := c.latency(method).hedgeDelay(); ok {
			call.HedgeDelay = d
		}
	}
}

// latency returns the estimator of method's latencies, nil if the policy
// does not learn its hedge delay.
func (c *compiled) latency(method string) *latencyEstimator {
	if c.Hedging == nil || c.Hedging.Delay != 0 {
		return nil
	}
	if e, ok := c.latencies.Load(method); ok {
		return e.(*latencyEstimator)
	}
	e, _ := c.latencies.LoadOrStore(method, newLatencyEstimator(c.Hedging))
	return e.(*latencyEstimator)
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
	if !replacing {
		if e := c.latency(call.Method); e != nil && !e.allowTimedHedge() {
			s.denied++
			event(HedgeDenied)
			return refuse(StopBudget)
		}
	}
	if !c.Budget.tryRetry(now) {
		s.denied++
		event(HedgeDenied)
		return refuse(StopBudget)
	}
	event(HedgeSent)
	return true, nil
}
