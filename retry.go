package retry

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// Unary returns a unary client interceptor that retries calls under p:
//
//	grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(retry.Unary(policy)),
//		grpc.WithDisableRetry())
//
// It panics with a *PolicyError if p is invalid (see Policy.Validate), so a
// misconfigured client fails at start-up rather than silently. The
// interceptor is safe for concurrent use.
func Unary(p Policy) grpc.UnaryClientInterceptor {
	return interceptor.Unary(mustCompile(p))
}

// Stream returns a stream client interceptor that retries streams under p,
// for server-streaming, client-streaming and bidi calls alike:
//
//	grpc.NewClient(target,
//		grpc.WithChainStreamInterceptor(retry.Stream(policy)),
//		grpc.WithDisableRetry())
//
// Until a stream commits, a failed attempt is replaced by a new one on which
// every message sent so far, and CloseSend, are replayed; the caller sees one
// unbroken stream. A stream commits, and is never retried again, once a
// response message or response headers arrive, the caller calls Header,
// Trailer or Context, or the messages sent exceed Policy.MaxReplayBytes. After commit
// an error goes to the caller (as a *Error with Reason StopCommitted): no
// message is delivered twice and none is re-sent. PerAttemptTimeout bounds
// each attempt until it commits.
//
// It panics with a *PolicyError if p is invalid. The interceptor is safe for
// concurrent use; each stream is safe for one sending and one receiving
// goroutine at a time, as any gRPC stream.
func Stream(p Policy) grpc.StreamClientInterceptor {
	return interceptor.Stream(mustCompile(p))
}

func mustCompile(p Policy) *compiled {
	c, err := p.compile()
	if err != nil {
		panic(err)
	}
	return c
}

// callState is the per-call decision state, made on a call's first failure.
type callState struct {
	policy    *compiled
	backoffs  int           // backoffs since the start or the last pushback
	prevDelay time.Duration // the last backoff delay, for DecorrelatedJitter
	lastClass Class
	lastErr   error         // the last attempt's error
	pushback  time.Duration // the last attempt's server pushback delay (0: none, or "do not retry")

	// Hedged calls.
	hedgeStop StopReason // why no more hedges may be sent (0: they may)
	replacing bool       // the next hedge replaces a failed attempt (it is not sent on time)
	denied    int        // hedges the budget refused
	// Attempts whose failure was reported: the first, and hedges.
	firstFailed  bool
	hedgesFailed int

	report *CallReport // WithReport's, if given
}

// deadlineMargin is the least time a retry must have before the caller's
// deadline when it would start: a retry that could only start later is not
// made, and a wait that wakes up (late, on a busy machine) with less than
// this left ends the call with the last attempt's error.
const deadlineMargin = time.Millisecond

func (c *compiled) Begin(ctx context.Context, method string, opts []grpc.CallOption, call *interceptor.Call) (bool, error) {
	if !c.inScope(method) {
		return false, nil
	}
	call.State = c // the policy of the call, for a Decider that routes calls to policies
	call.Method = method
	call.Timeout = c.Timeout
	call.MaxAttempts = c.MaxAttempts
	call.AttemptTimeout = c.PerAttemptTimeout
	call.MaxReplayBytes = c.MaxReplayBytes
	call.ConnectWait = c.connectWait
	call.StatusOnly = c.StatusOnly
	if c.Hedging != nil {
		c.beginHedged(method, call)
	}
	for _, o := range opts {
		co, ok := o.(CallOption)
		if !ok {
			continue
		}
		switch co.set {
		case setReport:
			c.state(call).report = co.report
		case setDisable:
			return false, nil
		case setMaxAttempts:
			if co.maxAttempts < 1 {
				return false, status.Errorf(codes.InvalidArgument, "retry: WithMaxAttempts(%d): must be at least 1", co.maxAttempts)
			}
			call.MaxAttempts = co.maxAttempts
		case setAttemptTimeout:
			if co.attemptTimeout < 0 {
				return false, status.Errorf(codes.InvalidArgument, "retry: WithPerAttemptTimeout(%v): must not be negative", co.attemptTimeout)
			}
			call.AttemptTimeout = co.attemptTimeout
		}
	}
	if c.idemHeader != "" {
		if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(c.idemHeader)) == 0 {
			call.HeaderKey, call.HeaderValue = c.idemHeader, newIdempotencyKey()
		}
	}
	return true, nil
}

func newIdempotencyKey() string {
	var b [16]byte
	crand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// state returns the call's decision state, made on its first failure (so
// that a call that succeeds allocates none).
func (c *compiled) state(call *interceptor.Call) *callState {
	if s, ok := call.State.(*callState); ok {
		return s
	}
	s := callStates.Get().(*callState)
	s.policy = c
	call.State = s
	return s
}

// callStates pools the decision state of calls that failed at least once:
// Done returns it.
var callStates = sync.Pool{New: func() any { return new(callState) }}

// releaseState returns call's decision state, if any, to the pool.
func releaseState(call *interceptor.Call) {
	if s, ok := call.State.(*callState); ok {
		call.State = s.policy
		*s = callState{}
		callStates.Put(s)
	}
}

// policyOf returns the compiled policy that Begin chose for call.
func policyOf(call *interceptor.Call) *compiled {
	switch s := call.State.(type) {
	case *compiled:
		return s
	case *callState:
		return s.policy
	}
	return nil
}

// Failed decides what follows a failed attempt. The order of the checks is
// the package's contract (see the package documentation): the caller's
// context, what the client itself knows (a local error, a committed call),
// the class, the attempts, the server's pushback, the deadline, the budget.
func (c *compiled) Failed(ctx context.Context, call *interceptor.Call, o interceptor.Outcome) (time.Duration, error) {
	s := c.state(call)
	err := o.Err
	stop := func(r StopReason) (time.Duration, error) {
		return 0, c.gaveUp(ctx, call, &Error{Err: err, Attempts: call.Attempts, Reason: r, Class: s.lastClass, Pushback: s.pushback})
	}
	if o.Unstarted {
		// The caller's context ended while the next attempt waited for a
		// connection: report the last attempt's error.
		if ctx.Err() == context.Canceled {
			s.lastClass = Permanent
			err = status.FromContextError(ctx.Err()).Err()
			return stop(StopCanceled)
		}
		return stop(StopDeadline)
	}
	s.lastErr = err
	s.pushback = 0
	if call.Hedging {
		s.attemptFailed(o.Attempt)
	}
	st := status.Convert(err)
	s.lastClass = c.Classify(st, o.Trailer)
	now := c.clock.Now()
	deadline, hasDeadline := ctx.Deadline()
	if ctx.Err() != nil || hasDeadline && !now.Before(deadline) {
		// The caller's own cancellation or deadline (even if its context
		// has not noticed yet): never retried. An attempt that the
		// deadline ended without an answer still failed for the budget
		// (a retry to a backend that hangs must cost, or the budget of a
		// client whose retries all run into its deadlines never drains);
		// a cancellation did not.
		if ctx.Err() != context.Canceled && s.lastClass != Permanent && !o.Committed {
			c.Budget.failed(now, attemptFailure{retry: o.Attempt > 1, timeout: s.lastClass == Timeout, disconnected: o.Disconnected})
			if call.Hedging {
				c.hedgesRanOut(call, s, now)
			}
		}
		s.lastClass = Permanent
		return stop(StopCanceled)
	}
	if o.Local {
		return stop(StopLocal)
	}
	pb := serverPushback(st, o.Trailer)
	if pb.present && !pb.stop {
		s.pushback = pb.delay
	}
	if s.lastClass == Permanent {
		if pb.stop && !o.Committed {
			c.Budget.failed(now, attemptFailure{retry: o.Attempt > 1})
		}
		return stop(StopPermanent)
	}
	c.Budget.failed(now, attemptFailure{retry: o.Attempt > 1, committed: o.Committed, timeout: s.lastClass == Timeout, disconnected: o.Disconnected})
	if s.lastClass == Timeout && call.Timed {
		if m := c.hedgeMethod(call.Method); m != nil && m.est != nil {
			m.est.observe(o.Elapsed) // an attempt that ran out of time says how long answers take
		}
	}
	if call.Hedging {
		return c.hedgeFailed(ctx, call, s, o, pb, now, deadline, hasDeadline, stop)
	}
	if o.Committed {
		return stop(StopCommitted)
	}
	if call.Attempts >= call.MaxAttempts {
		return stop(StopMaxAttempts)
	}
	if pb.stop {
		return stop(StopPushback)
	}
	var delay time.Duration
	if pb.present {
		if pb.delay > c.MaxPushback {
			return stop(StopPushbackTooLong)
		}
		delay = pb.delay
		s.backoffs, s.prevDelay = 0, 0
	} else {
		delay = c.nextDelay(s.backoffs, s.prevDelay)
		s.backoffs++
		s.prevDelay = delay
	}
	if hasDeadline && !now.Add(delay+deadlineMargin).Before(deadline) {
		return stop(StopDeadline)
	}
	if !c.Budget.tryRetry(now) {
		return stop(StopBudget)
	}
	if c.OnRetry != nil {
		c.OnRetry(RetryEvent{
			Context:  ctx,
			Method:   call.Method,
			Attempt:  call.Attempts,
			Err:      err,
			Code:     st.Code(),
			Class:    s.lastClass,
			Delay:    delay,
			Pushback: pb.present,
		})
	}
	return delay, nil
}

// Wait sleeps for delay. A wait that the caller's deadline cuts short, or
// that wakes with less than deadlineMargin left, ends the call with the last
// attempt's error (StopDeadline), never with a DeadlineExceeded of its own;
// a cancel ends it with Canceled (StopCanceled).
func (c *compiled) Wait(ctx context.Context, call *interceptor.Call, delay time.Duration) error {
	s := c.state(call)
	err := c.clock.Sleep(ctx, delay)
	if err == nil {
		deadline, ok := ctx.Deadline()
		if !ok || c.clock.Now().Add(deadlineMargin).Before(deadline) {
			return nil
		}
		err = context.DeadlineExceeded
	}
	if err == context.DeadlineExceeded && s.lastErr != nil {
		return c.gaveUp(ctx, call, &Error{Err: s.lastErr, Attempts: call.Attempts, Reason: StopDeadline, Class: s.lastClass, Pushback: s.pushback})
	}
	return c.gaveUp(ctx, call, &Error{Err: status.FromContextError(err).Err(), Attempts: call.Attempts, Reason: StopCanceled, Class: Permanent})
}

// gaveUp reports e to the OnGiveUp hook and returns it.
func (c *compiled) gaveUp(ctx context.Context, call *interceptor.Call, e *Error) error {
	if c.OnGiveUp != nil {
		c.OnGiveUp(GiveUpEvent{
			Context:  ctx,
			Method:   call.Method,
			Attempts: e.Attempts,
			Err:      e,
			Code:     status.Code(e.Err),
			Class:    e.Class,
			Reason:   e.Reason,
		})
	}
	return e
}

// Done is told of the end of every call: it pays the budget for a success,
// teaches a learned hedge delay, and reports the call.
func (c *compiled) Done(ctx context.Context, call *interceptor.Call, err error) {
	if err == nil {
		c.Budget.success()
		if call.Hedging {
			c.hedgeSucceeded(call)
		}
	}
	if call.Hedging && call.Winner > 1 {
		if c.Metrics != nil {
			c.Metrics.hedge(ctx, call, HedgeWon)
		}
		if c.OnHedge != nil {
			c.OnHedge(HedgeEvent{Context: ctx, Method: call.Method, Kind: HedgeWon, Attempt: call.Winner})
		}
	}
	s, _ := call.State.(*callState)
	defer releaseState(call)
	if c.OnCall == nil && c.Metrics == nil && (s == nil || s.report == nil) {
		return
	}
	r := CallReport{Attempts: call.Attempts, Hedged: call.Hedging, Winner: call.Winner, Delay: call.Idle}
	if s != nil {
		r.Denied = s.denied
	}
	if err != nil {
		var e *Error // moved to the heap (errors.As takes its address): only on failures
		if errors.As(err, &e) {
			r.Reason = e.Reason
		}
	}
	r.Code = status.Code(err)
	if s != nil && s.report != nil {
		*s.report = r
	}
	if c.Metrics != nil {
		c.Metrics.callEnded(ctx, call, &r, err != nil)
	}
	if c.OnCall != nil {
		c.OnCall(CallEvent{Context: ctx, Method: call.Method, Target: call.Target(), StaticMethod: call.Static, Err: err, CallReport: r})
	}
}
