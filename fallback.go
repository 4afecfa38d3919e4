package retry

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

// Fallback is one alternative of a fallback chain: another place to send a
// call that its primary could not serve.
type Fallback struct {
	// Name names the step in errors, events and logs (default
	// "fallback-1", "fallback-2", ... by position).
	Name string
	// Conn is where the step's calls go: typically another
	// *grpc.ClientConn (another region, another pool, a smaller model)
	// with its own retry interceptors, so that each step runs under its
	// own Policy and budget. Required. It must not route back through the
	// same Failover.
	Conn grpc.ClientConnInterface
	// Rewrite, if set, returns the request to send to this step in place
	// of the caller's (another model name, a smaller max-tokens): for a
	// unary call its request, for a stream each message it sends
	// (replayed ones included). It must not modify msg, which is the
	// caller's and may be sent to other steps, and must be safe for
	// concurrent use. A nil result sends msg unchanged. RewriteRequest
	// builds a typed one.
	Rewrite func(method string, msg any) any
	// Breaker, if set, guards this step as FailoverConfig.Breaker guards
	// the primary: while it is open the step is skipped.
	Breaker *Breaker
}

// RewriteRequest returns a Fallback.Rewrite that applies f to the requests
// of type Req and sends every other message unchanged:
//
//	Rewrite: retry.RewriteRequest(func(_ string, r *pb.GenerateRequest) *pb.GenerateRequest {
//		r = proto.CloneOf(r) // never modify the caller's request
//		r.Model, r.MaxTokens = "small", min(r.MaxTokens, 256)
//		return r
//	}),
func RewriteRequest[Req any](f func(method string, req Req) Req) func(method string, msg any) any {
	return func(method string, msg any) any {
		if r, ok := msg.(Req); ok {
			return f(method, r)
		}
		return msg
	}
}

// DefaultFailoverMinTimeLeft is the default FailoverConfig.MinTimeLeft.
const DefaultFailoverMinTimeLeft = time.Millisecond

// FailoverConfig sets up a Failover.
type FailoverConfig struct {
	// Name names the primary step, the connection the Failover is
	// installed on, in errors, events and logs (default "primary").
	Name string
	// Breaker, if set, guards the primary: while it is open, calls skip the
	// primary and go straight to the first fallback, or, without one, fail
	// fast with codes.Unavailable (a *BreakerOpenError). Share one Breaker
	// between the Failovers of connections to the same target.
	Breaker *Breaker
	// Fallbacks are the alternatives, tried in order after the primary.
	Fallbacks []Fallback
	// Methods scopes the Failover, as Policy.Methods scopes a policy
	// (default: all methods): calls to other methods go to the primary
	// only, untouched. A call that failed may have reached its server, so
	// keep methods that must not run twice out, as out of retries.
	Methods []string
	// MinTimeLeft is the least time before the caller's deadline for a
	// fallback to start (default 1ms): a step that would start with less
	// is not tried, nor are the steps after it.
	MinTimeLeft time.Duration
	// MaxReplayBytes bounds, per stream, the serialized size of the
	// messages kept to replay onto a fallback until the stream commits
	// (default 256 KiB, as Policy.MaxReplayBytes). A stream that sends
	// more keeps working on its current step but can no longer fall back.
	MaxReplayBytes int
	// OnFallback, if set, is called each time a call moves to a fallback,
	// on the calling goroutine (for a stream, the one that receives),
	// concurrently for concurrent calls; it must not block. LogFallbacks
	// makes one that logs.
	OnFallback func(FallbackEvent)
	// Metrics, if set, counts the same moves in the OpenTelemetry counter
	// retry.client.fallbacks, by method, target, the steps left and tried,
	// and the reason (see Metrics). A call that does not fall back records
	// nothing and allocates nothing for it. Default nil: not counted.
	Metrics *Metrics

	// Seam for tests: nil means the real clock.
	clock clock
}

// FallbackEvent describes a call moving to a fallback, for
// FailoverConfig.OnFallback.
type FallbackEvent struct {
	// Context is the caller's context of the call.
	Context context.Context
	// Method is the full method name, "/package.Service/Method".
	Method string
	// From and To are the steps the call leaves and goes to (0 is the
	// primary, i is Fallbacks[i-1]); FromName and ToName their names.
	From, To         int
	FromName, ToName string
	// Skipped reports that From was not tried: its breaker was open, and
	// Err is the *BreakerOpenError.
	Skipped bool
	// Err is why From ended: its error (a *Error when its connection
	// retries), or the breaker's refusal. Code and Class are its status
	// code and class; Reason is why its retrying stopped (0 when Err is
	// not a *Error). A step whose own Policy.Timeout ran out (its *Error
	// says StopCanceled, but the caller's deadline had room) shows as
	// Class Timeout and Reason StopDeadline.
	Err    error
	Code   codes.Code
	Class  Class
	Reason StopReason
}

// Failover runs calls along a fallback chain: the connection it is
// installed on (the primary), then each Fallback in order. A call moves on
// only when its step failed with a retryable class (Transient,
// RateLimited, Timeout: the retries of the step's own interceptor, or its
// budget, could not save it; Reason StopMaxAttempts, StopBudget,
// StopDeadline, StopPushback or StopPushbackTooLong; or the step's own
// Policy.Timeout ran out while the caller's deadline had room), or when
// the step's breaker is open. It never moves on after a permanent error, the caller's
// own cancellation or deadline, an error of the client's own (StopLocal),
// or once the call has committed (StopCommitted; for a stream also a
// response message received, or Header, Trailer or Context read). Every
// step runs under the caller's one context, hence its deadline; a step
// that would start with less than MinTimeLeft before it is not tried.
//
// A call that fails after more than one step returns a *FallbackError
// listing each step and why it stopped, with the last step's status for
// status.Code.
//
// A step with a Breaker is skipped while the breaker is open (see
// Breaker). When it is half-open, the call that probes it is sent with
// WithMaxAttempts(1): a backend still down costs that call one attempt
// before it moves on, not a round of retries. Only a step's own outcome
// reaches its breaker: a call that the primary's breaker skipped tells it
// nothing.
//
// A healthy call costs the Failover no allocation and, without a breaker,
// no clock reading; a breaker adds one clock reading and a few atomic
// operations (see Breaker).
//
// A Failover is safe for concurrent use; NewFailover copies its
// configuration (a Breaker is shared, not copied).
type Failover struct {
	steps          []failoverStep
	exact          map[string]bool
	prefixes       []string
	minTimeLeft    time.Duration
	maxReplayBytes int
	onFallback     func(FallbackEvent)
	metrics        *Metrics
	clock          clock
}

type failoverStep struct {
	name    string
	conn    grpc.ClientConnInterface
	rewrite func(string, any) any
	breaker *Breaker
}

// NewFailover returns the Failover set up by cfg, or a *ConfigError naming
// the first field that breaks a rule.
func NewFailover(cfg FailoverConfig) (*Failover, error) {
	bad := func(field string, value any, rule string) (*Failover, error) {
		return nil, &ConfigError{Config: "FailoverConfig", Field: field, Value: value, Rule: rule}
	}
	if cfg.MinTimeLeft < 0 {
		return bad("MinTimeLeft", cfg.MinTimeLeft, "must not be negative (0 means the default, 1ms)")
	}
	if cfg.MaxReplayBytes < 0 {
		return bad("MaxReplayBytes", cfg.MaxReplayBytes, "must not be negative (0 means the default, 256 KiB)")
	}
	f := &Failover{
		minTimeLeft:    cfg.MinTimeLeft,
		maxReplayBytes: cfg.MaxReplayBytes,
		onFallback:     cfg.OnFallback,
		metrics:        cfg.Metrics,
		clock:          cfg.clock,
	}
	if f.minTimeLeft == 0 {
		f.minTimeLeft = DefaultFailoverMinTimeLeft
	}
	if f.maxReplayBytes == 0 {
		f.maxReplayBytes = DefaultMaxReplayBytes
	}
	if f.clock == nil {
		f.clock = realClock{}
	}
	name := cfg.Name
	if name == "" {
		name = "primary"
	}
	if !cfg.Breaker.made() {
		return bad("Breaker", "a Breaker not made by NewBreaker", "must come from NewBreaker")
	}
	seen := map[string]string{name: "Name"}
	f.steps = append(f.steps, failoverStep{name: name, breaker: cfg.Breaker})
	for i, fb := range cfg.Fallbacks {
		field := "Fallbacks[" + strconv.Itoa(i) + "]"
		if cc, ok := fb.Conn.(*grpc.ClientConn); fb.Conn == nil || ok && cc == nil {
			return bad(field+".Conn", nil, "is required")
		}
		if !fb.Breaker.made() {
			return bad(field+".Breaker", "a Breaker not made by NewBreaker", "must come from NewBreaker")
		}
		n := fb.Name
		if n == "" {
			n = "fallback-" + strconv.Itoa(i+1)
		}
		if other, dup := seen[n]; dup {
			return bad(field+".Name", n, "must differ from "+other+" (step names identify steps in errors and logs)")
		}
		seen[n] = field + ".Name"
		f.steps = append(f.steps, failoverStep{name: n, conn: fb.Conn, rewrite: fb.Rewrite, breaker: fb.Breaker})
	}
	for i, m := range cfg.Methods {
		slash := strings.LastIndexByte(m, '/')
		if len(m) < 3 || m[0] != '/' || slash < 2 {
			return bad("Methods["+strconv.Itoa(i)+"]", m, `must be "/package.Service/Method" or a service prefix "/package.Service/"`)
		}
		if slash == len(m)-1 {
			f.prefixes = append(f.prefixes, m)
			continue
		}
		if f.exact == nil {
			f.exact = make(map[string]bool)
		}
		f.exact[m] = true
	}
	return f, nil
}

// UnaryInterceptor returns the Failover's unary client interceptor.
func (f *Failover) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return interceptor.FailoverUnary((*failoverDecider)(f))
}

// StreamInterceptor returns the Failover's stream client interceptor.
func (f *Failover) StreamInterceptor() grpc.StreamClientInterceptor {
	return interceptor.FailoverStream((*failoverDecider)(f), f.maxReplayBytes)
}

// DialOptions returns the dial options that install the Failover on the
// primary's connection. Put them before the primary's retry options:
//
//	fo, err := retry.NewFailover(retry.FailoverConfig{
//		Breaker:   breaker,
//		Fallbacks: []retry.Fallback{{Name: "eu-west", Conn: euWest}},
//	})
//	conn, err := grpc.NewClient(usEast, append(append(fo.DialOptions(),
//		retry.DialOptions(policy)...), grpc.WithTransportCredentials(creds))...)
//
// (creds: your credentials.TransportCredentials; RoutesDialOptions in
// place of DialOptions works the same.) gRPC runs
// chained interceptors in the order their options come, the first
// outermost (and an interceptor set with grpc.WithUnaryInterceptor before
// all of them), so the Failover then sits outside the retry interceptors:
// it sees one logical call, after its retries (and budget) have done what
// they could, and its breaker counts calls, not attempts. Installed inside
// them it would see every attempt: it would fall back after the first
// failed attempt, its breaker would count attempts, and the retry
// interceptors would retry the whole chain, multiplying what every step
// receives.
func (f *Failover) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(f.UnaryInterceptor()),
		grpc.WithChainStreamInterceptor(f.StreamInterceptor()),
	}
}

func (f *Failover) inScope(method string) bool {
	if f.exact == nil && f.prefixes == nil {
		return true
	}
	if f.exact[method] {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// failoverState is one call through a Failover, with its decision state.
type failoverState struct {
	call   interceptor.FailoverCall
	cc     *grpc.ClientConn  // the primary's channel, with Metrics only
	opts   []grpc.CallOption // the caller's call options, with Metrics only
	next   int               // the next step to consider
	cur    int               // the step in flight
	permit permit            // its breaker's leave, if it has a breaker
	stop   bool              // no further step may be tried
	steps  []StepError
	buf    [3]StepError
}

var failoverStates = sync.Pool{New: func() any { return new(failoverState) }}

// probeOpts are added to a probe's call: one attempt, so that a backend
// still down costs the probing call one attempt before its fallback.
var probeOpts = []grpc.CallOption{WithMaxAttempts(1)}

// failoverDecider is a Failover's decision code, the
// interceptor.FailoverDecider of its interceptors.
type failoverDecider Failover

// Begin starts a call.
func (f *failoverDecider) Begin(_ context.Context, method string, cc *grpc.ClientConn, opts []grpc.CallOption, stream bool) *interceptor.FailoverCall {
	if !(*Failover)(f).inScope(method) {
		return nil
	}
	s := failoverStates.Get().(*failoverState)
	s.steps = s.buf[:0]
	s.call = interceptor.FailoverCall{Method: method, Stream: stream, State: s}
	if f.metrics != nil {
		s.cc, s.opts = cc, opts // to label a fallback
	}
	return &s.call
}

// Next hands out the call's next step.
func (f *failoverDecider) Next(ctx context.Context, c *interceptor.FailoverCall) (interceptor.Route, error) {
	s := c.State.(*failoverState)
	for !s.stop && s.next < len(f.steps) {
		i := s.next
		s.next++
		st := &f.steps[i]
		if i > 0 {
			if dl, ok := ctx.Deadline(); ok && dl.Sub(f.clock.Now()) < f.minTimeLeft {
				s.steps = append(s.steps, StepError{Step: i, Name: st.name, Skipped: SkipDeadline})
				break
			}
		}
		var p permit
		if st.breaker != nil {
			var err error
			if p, err = st.breaker.allow(c.Method); err != nil {
				s.steps = append(s.steps, StepError{Step: i, Name: st.name, Err: err, Skipped: SkipBreakerOpen})
				continue
			}
		}
		if i > 0 {
			if f.onFallback != nil {
				f.fallbackEvent(ctx, c.Method, s.steps[len(s.steps)-1], i)
			}
			if f.metrics != nil {
				from := &s.steps[len(s.steps)-1]
				f.metrics.fallback(ctx, c.Method, s.cc, s.opts, from.Name, st.name, from.fallbackReason())
			}
		}
		s.cur, s.permit = i, p
		r := interceptor.Route{Conn: st.conn, Rewrite: st.rewrite}
		if p.probe {
			r.Opts = probeOpts
		}
		return r, nil
	}
	return interceptor.Route{}, s.final()
}

func (f *failoverDecider) fallbackEvent(ctx context.Context, method string, from StepError, to int) {
	ev := FallbackEvent{
		Context:  ctx,
		Method:   method,
		From:     from.Step,
		To:       to,
		FromName: from.Name,
		ToName:   f.steps[to].name,
		Skipped:  from.Skipped != 0,
		Err:      from.Err,
	}
	ev.Code = status.Code(from.Err)
	if from.Skipped != 0 {
		ev.Class, ev.Reason, _ = describeFailure(from.Err)
	} else {
		ev.Class, ev.Reason = from.class, from.reason
	}
	f.onFallback(ev)
}

// fallbackReason is the retry.fallback.reason of a call that moves on
// from the step s.
func (s *StepError) fallbackReason() string {
	if s.Skipped == SkipBreakerOpen {
		return "breaker_open"
	}
	switch s.reason {
	case StopMaxAttempts:
		return "max_attempts"
	case StopBudget:
		return "budget"
	case StopDeadline:
		return "deadline"
	case StopPushback:
		return "pushback"
	case StopPushbackTooLong:
		return "pushback_too_long"
	}
	return "failed"
}

// final returns the call's error once no further step is tried: the only
// step's error as it is, or a *FallbackError.
func (s *failoverState) final() error {
	switch len(s.steps) {
	case 0: // not reached: the primary is always considered
		return status.Error(codes.Internal, "retry: failover: no step was considered")
	case 1:
		return s.steps[0].Err
	}
	return &FallbackError{Steps: append([]StepError(nil), s.steps...)}
}

// Responded is told of a stream's first response message: the stream's
// latency, for its breaker's slow-call rule, ends there.
func (f *failoverDecider) Responded(c *interceptor.FailoverCall) {
	s := c.State.(*failoverState)
	s.permit.responded()
}

// Ended is told how the step in flight ended: it tells the step's breaker,
// records the step, and decides whether the call may move on.
func (f *failoverDecider) Ended(ctx context.Context, c *interceptor.FailoverCall, err error, committed bool) {
	s := c.State.(*failoverState)
	st := &f.steps[s.cur]
	if err == nil {
		if st.breaker != nil {
			s.permit.done(BreakerSuccess, 0)
		}
		s.stop = true
		return
	}
	now := f.clock.Now()
	class, reason, pushback := describeFailure(err)
	callerDone := ctx.Err() != nil
	if dl, ok := ctx.Deadline(); ok && !now.Before(dl) {
		callerDone = true
	}
	if reason == StopCanceled && !callerDone && status.Code(err) == codes.DeadlineExceeded {
		// The step's own time ran out (its Policy.Timeout), not the
		// caller's: a timeout of that backend, which the caller still has
		// time to get over elsewhere.
		class, reason = Timeout, StopDeadline
	}
	if st.breaker != nil {
		o := BreakerFailure
		switch {
		case callerDone:
			// The caller's own end says nothing about the backend, unless
			// its deadline ran out on a retry: the backend had failed an
			// attempt already (a retryable failure, or it would not have
			// been retried), and the retries could not save the call.
			o = BreakerIgnored
			if !errors.Is(ctx.Err(), context.Canceled) && retried(err) {
				o = BreakerFailure
			}
		case reason == StopLocal || reason == StopCanceled:
			o = BreakerIgnored
		case class == Permanent:
			o = BreakerSuccess // the backend answered
		}
		if judge := st.breaker.cfg.Outcome; judge != nil && !callerDone {
			if j := judge(err); j >= BreakerSuccess && j <= BreakerIgnored {
				o = j
			}
		}
		s.permit.done(o, pushback)
	}
	s.steps = append(s.steps, StepError{Step: s.cur, Name: st.name, Err: err, class: class, reason: reason})
	switch {
	case committed, callerDone, class == Permanent:
		s.stop = true
	case reason == StopCommitted, reason == StopLocal, reason == StopCanceled, reason == StopPermanent:
		s.stop = true
	}
}

// Done ends a call: its memory goes back to the pool.
func (f *failoverDecider) Done(_ context.Context, c *interceptor.FailoverCall, _ error) {
	s := c.State.(*failoverState)
	*s = failoverState{}
	failoverStates.Put(s)
}

// retried reports whether err is a *Error of a call that made more than
// one attempt.
func retried(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Attempts > 1
}

// describeFailure returns the class of a step's error, why its retrying
// stopped and the server's pushback: from the *Error of its retry
// interceptor if it has one, else from its status by Classify (and the
// google.rpc.RetryInfo it carries).
func describeFailure(err error) (Class, StopReason, time.Duration) {
	if err == nil {
		return Permanent, 0, 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class, e.Reason, e.Pushback
	}
	st := status.Convert(err)
	var pushback time.Duration
	if pb := parseRetryInfo(st); pb.present && !pb.stop {
		pushback = pb.delay
	}
	return Classify(st, nil), 0, pushback
}
