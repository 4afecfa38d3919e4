package retry

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Defaults taken by the zero fields of a Policy. They follow the common best
// practice for RPCs behind a user request: three retries after the first
// attempt, exponential backoff from one second doubling to ten, full jitter,
// and only the retryable classes of codes.go retried.
const (
	DefaultMaxAttempts    = 4 // the first attempt and 3 retries
	DefaultInitialBackoff = 1 * time.Second
	DefaultMaxBackoff     = 10 * time.Second
	DefaultMultiplier     = 2.0
	DefaultMaxPushback    = 30 * time.Second
	DefaultMaxReplayBytes = 256 << 10 // 256 KiB, as grpc-go's per-RPC buffer
	DefaultConnectWait    = 10 * time.Second
)

// Policy says when and how a call is retried. The zero value is the default
// policy (see DefaultPolicy): every zero field takes its default, so
// retry.Policy{} is a sensible policy and a Policy only needs the fields that
// differ from the defaults.
//
// A Policy is a plain value: Unary and Stream copy and compile it, so changing
// a Policy after passing it to them has no effect on those interceptors.
type Policy struct {
	// MaxAttempts is the number of attempts a call may make, the first one
	// included: 1 means no retry, 4 (the default) means the first attempt and
	// up to 3 retries. Negative is invalid.
	MaxAttempts int

	// InitialBackoff is the base delay before the first retry (default 1s,
	// or MaxBackoff if that is set and shorter). The base delay before
	// retry n (n = 0 for the first) is min(InitialBackoff × Multiplier^n,
	// MaxBackoff), then jittered.
	InitialBackoff time.Duration
	// MaxBackoff caps the base delay (default 10s, or InitialBackoff if that
	// is set and longer). When both are set it must be at least
	// InitialBackoff.
	MaxBackoff time.Duration
	// Multiplier is the growth factor of the base delay (default 2). It must
	// be finite and at least 1; exactly 1 gives a constant delay.
	Multiplier float64
	// Jitter chooses how the base delay is randomised (default FullJitter).
	Jitter Jitter

	// Timeout, if positive, bounds the whole call: every attempt and every
	// wait, as a deadline on the call's context (default 0: none). An
	// earlier deadline of the caller's stays. It is what a gRPC service
	// config's per-method "timeout" means. Negative is invalid.
	Timeout time.Duration

	// PerAttemptTimeout bounds each attempt (default 0: no bound beyond the
	// caller's deadline). An attempt cut by it fails with DeadlineExceeded,
	// class Timeout, and is retried while the caller's own deadline has room.
	// For streams it bounds the time until the stream commits (first response
	// header or message); a committed stream is never cut by it.
	PerAttemptTimeout time.Duration

	// ConnectWait is the longest a retry waits for the client's channel to
	// have a ready connection before it is sent (default 10s; negative: do
	// not wait). It sends nothing: a retry after a restart or a lost
	// connection goes out once gRPC has reconnected, instead of failing at
	// once against a channel in TRANSIENT_FAILURE (gRPC's own reconnect
	// backoff is about a second at first, and grows). A restart shorter
	// than the wait then costs the call latency, not an error.
	//
	// The wait ends with the caller's deadline (the call then returns the
	// last attempt's error, StopDeadline); without a deadline a retry waits
	// at most ConnectWait, and is then sent whatever the channel's state.
	// The wait is no longer than PerAttemptTimeout either, and does not
	// count against the attempt's own PerAttemptTimeout, which starts once
	// the retry is sent. A PerAttemptTimeout shorter than the server's
	// reconnect time therefore cuts the wait, and the retry fails fast: it
	// costs no budget (a failure after which the channel has no connection
	// never does, see CreditBudget), but it spends an attempt. Set
	// PerAttemptTimeout above the reconnect time, or leave it 0, so that a
	// restart costs one retry.
	//
	// The first attempt is sent as the caller asked: gRPC's default fails it
	// at once on a channel without a connection; with the caller's
	// grpc.WaitForReady(true) every attempt, the first included, also waits
	// inside gRPC for a connection, up to the deadline or the attempt's
	// PerAttemptTimeout. A call with grpc.WaitForReady(false) set explicitly
	// does not wait on its retries either.
	ConnectWait time.Duration

	// MaxPushback is the longest server pushback (grpc-retry-pushback-ms or
	// google.rpc.RetryInfo) the client honours (default 30s). A longer
	// pushback stops retrying at once with the last attempt's error, rather
	// than holding the caller for that long.
	MaxPushback time.Duration

	// MaxReplayBytes bounds, per stream, the serialized size of the client
	// messages kept for replay until the stream commits (default 256 KiB).
	// A stream that sends more keeps working but commits: it is no longer
	// retried. Messages that are not protobuf messages cannot be measured
	// and commit the stream when sent. Negative is invalid.
	MaxReplayBytes int

	// Budget limits retries (and hedges) across every call that shares it
	// (see Budget). Nil means a fresh DefaultCreditBudget() for each
	// interceptor built from the policy (DialOptions builds one, shared by
	// its unary and stream interceptors): retries are sent on credit and
	// paid only if they fail, from 0.1 retry earned per successful call and
	// 0.05 per second, so a transient partial failure is retried in full and
	// a sustained outage costs about 1.05 attempts per call or less. Set a
	// Budget you made to share it between clients; set NoBudget to turn
	// budgeting off.
	Budget Budget

	// Classify maps a failed attempt's status and trailer to a class
	// (default: the package function Classify). Every class but Permanent is
	// retried. It is called concurrently and must not modify its arguments.
	Classify func(st *status.Status, trailer metadata.MD) Class

	// OnRetry, if set, is called once for every retry, after the decision to
	// retry and before the wait: never for the first attempt, never for a
	// failure that is returned to the caller. It is called on the calling
	// goroutine, concurrently for concurrent calls; it must not block.
	OnRetry func(RetryEvent)

	// OnHedge, if set, is called for every hedge of a hedged call (see
	// Hedging) that is sent, denied by the budget, or wins. It is called on
	// the goroutine that decides (the caller's, or a hedge timer's),
	// concurrently for concurrent calls; it must not block.
	OnHedge func(HedgeEvent)

	// OnCall, if set, is called once for every call that goes through the
	// interceptor (not those that Methods or Disable leave alone), when it
	// ends, with what it did (see CallEvent): the place for per-call
	// metrics. It is called on the calling goroutine (for streams, the one
	// that receives the end), concurrently for concurrent calls; it must not
	// block.
	OnCall func(CallEvent)

	// OnGiveUp, if set, is called once for every call that fails through
	// the interceptor (every call that returns a *Error), with the reason
	// retrying stopped: use it to count budget denials and exhausted
	// attempts. Calls that Methods or Disable leave alone do not reach it.
	// It is called on the calling goroutine (for streams, the one that
	// receives the error), concurrently for concurrent calls; it must not
	// block.
	OnGiveUp func(GiveUpEvent)

	// Metrics, if set, records per-call retry and hedging metrics through
	// OpenTelemetry: gRFC A96's grpc.client.call.retries, .hedges,
	// .transparent_retries and .retry_delay, and counters of budget stops
	// and hedges (see Metrics and NewMetrics). One Metrics may serve any
	// number of policies and clients. Nil (the default) records nothing
	// and costs nothing.
	Metrics *Metrics

	// Methods scopes the policy to some methods (default: all methods). Each
	// entry is a full method name "/package.Service/Method" or a service
	// prefix "/package.Service/". Calls to other methods pass through the
	// interceptor untouched: one attempt, error unchanged. Use it to keep
	// non-idempotent methods (a tool call with side effects) out of retries.
	Methods []string

	// IdempotencyHeader, if set, turns on idempotency keys: every logical
	// call gets one random key (32 hex digits) sent in this metadata header,
	// unchanged on every attempt, so a server can deduplicate side effects.
	// A key the caller already put in the outgoing metadata under that header
	// is kept. Header names are case-insensitive (stored lower-case); the
	// name must be a valid gRPC metadata key, not reserved ("grpc-" prefix)
	// and not binary ("-bin" suffix).
	IdempotencyHeader string

	// StatusOnly makes unary calls cost exactly what a call without the
	// interceptor costs, for servers that say when to come back in the
	// status (google.rpc.RetryInfo, which RetryAfter sends). By default
	// every unary attempt asks gRPC for its response headers and trailer
	// (grpc.Header and grpc.Trailer), which gRPC copies on every call (4
	// allocations): the headers tell whether a failure came after the
	// server started answering (then, as in gRFC A6 and grpc-go, it is not
	// retried), and the trailer carries grpc-retry-pushback-ms. With
	// StatusOnly neither is asked for (unless the caller asks, in which
	// case the interceptor reads the caller's copies), so a
	// grpc-retry-pushback-ms trailer (DoNotRetry's "-1" included) is not
	// seen, and a unary failure after response headers is retried like a
	// trailers-only one. Streams and hedged calls are not affected.
	StatusOnly bool

	// Hedging, if not nil, makes the policy hedge instead of retry (gRFC
	// A6: a method does one or the other). See Hedging.
	Hedging *Hedging

	// Seams for tests: a zero value means the real clock and math/rand/v2.
	clock clock
	rand  func() float64
}

// Hedging makes a policy hedge instead of retry (gRFC A6): the first
// attempt is sent at once and, each time the hedge delay passes without an
// answer, another one, up to Policy.MaxAttempts in all, within the caller's
// deadline. The first attempt to succeed (for a stream: to deliver a
// response message) wins and the others are cancelled. A failure whose
// class is Permanent ends the call; any other sends the next hedge at once.
// Every hedge is paid from Policy.Budget like a retry: a hedge that fails,
// or is still running when the caller's deadline ends the call, is charged
// as a failed retry, so an outage cannot turn every call into MaxAttempts
// attempts.
//
// Hedges sent on time (not those that replace a failed attempt) are also
// held by a load guard of each method: every successful call earns
// MaxExtraLoad of a hedge, up to what 200 calls earn (10 hedges at the
// default), and each hedge sent on time spends one; once one has been
// sent, another goes on time only within an eighth of the delay of it (the
// slow calls of a fan-out are due at once) or after a call of the method
// has succeeded. So a slowdown hedges about MaxExtraLoad of the calls, not
// all of them, and a blackhole, where nothing answers or fails before the
// caller's deadline, gets the hedges due at its onset and then none until
// answers come back. The guard holds a learned delay and a fixed one,
// except with NoBudget (which bounds nothing); a negative Delay, every
// attempt at once, asks for MaxAttempts attempts per call and has no
// guard (the budget still pays for them). The guard is lock-free.
//
// The zero Hedging learns its delay: Hedging{} hedges the slowest 5% of
// calls of each method.
type Hedging struct {
	// Delay is the wait before each hedge. 0 (the default) learns it, per
	// method, from its recent successful calls: how long the first attempt
	// took (or, when a hedge won, a lower bound: how long it had run by
	// then), and attempts cut by PerAttemptTimeout; fast failures are not
	// learned. The delay is the percentile 1 - MaxExtraLoad of the last
	// 1,000 to 2,000 of them, at least MinDelay and with no upper cap;
	// where that percentile falls in a gap above the bulk of the calls
	// (stragglers about as frequent as MaxExtraLoad), it is the gap's low
	// edge, if that hedges at most half a standard error more of the
	// calls (about 5 of 2,000 at the default), lower bounds not counted.
	// Until 20 calls have succeeded, hedges only replace failed attempts.
	// Negative sends every attempt at once (gRFC A6's hedgingDelay of 0).
	Delay time.Duration
	// MaxExtraLoad is the share of calls that may send a hedge on time
	// (default 0.05): a learned delay is set where about that many calls
	// are slower, and the load guard holds the hedges sent on time to it,
	// for a fixed delay too. With a fixed Delay, set it above the share
	// of calls slower than Delay (twice that leaves the guard idle in
	// steady state). Must be in (0, 0.5].
	MaxExtraLoad float64
	// MinDelay is the shortest learned delay (default 1ms).
	MinDelay time.Duration
}

// DefaultPolicy returns the policy that the zero Policy stands for, with
// every default written out: 4 attempts, 1s initial backoff doubling to 10s,
// full jitter, no per-attempt timeout, retries waiting up to 10s for a
// connection, pushback honoured up to 30s, 256 KiB of replay buffer per
// stream, classification by Classify, all methods, no idempotency key. Its
// Budget is nil (each interceptor then makes its own DefaultCreditBudget).
func DefaultPolicy() Policy {
	return Policy{
		MaxAttempts:    DefaultMaxAttempts,
		InitialBackoff: DefaultInitialBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		Multiplier:     DefaultMultiplier,
		Jitter:         FullJitter,
		ConnectWait:    DefaultConnectWait,
		MaxPushback:    DefaultMaxPushback,
		MaxReplayBytes: DefaultMaxReplayBytes,
		Classify:       Classify,
	}
}

// Validate reports the first field of p that breaks a rule, as a
// *PolicyError naming the field, its value and the rule. Zero fields are
// valid: they take their defaults.
func (p Policy) Validate() error {
	_, err := p.compile()
	return err
}

// withDefaults returns p with every zero field set to its default.
func (p Policy) withDefaults() Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	switch {
	case p.InitialBackoff == 0 && p.MaxBackoff == 0:
		p.InitialBackoff, p.MaxBackoff = DefaultInitialBackoff, DefaultMaxBackoff
	case p.InitialBackoff == 0:
		p.InitialBackoff = min(DefaultInitialBackoff, p.MaxBackoff)
	case p.MaxBackoff == 0:
		p.MaxBackoff = max(DefaultMaxBackoff, p.InitialBackoff)
	}
	if p.ConnectWait == 0 {
		p.ConnectWait = DefaultConnectWait
	}
	if p.Hedging != nil {
		h := *p.Hedging
		if h.MaxExtraLoad == 0 {
			h.MaxExtraLoad = DefaultMaxExtraLoad
		}
		if h.MinDelay == 0 {
			h.MinDelay = DefaultHedgeMinDelay
		}
		p.Hedging = &h
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	if p.MaxPushback == 0 {
		p.MaxPushback = DefaultMaxPushback
	}
	if p.MaxReplayBytes == 0 {
		p.MaxReplayBytes = DefaultMaxReplayBytes
	}
	if p.Classify == nil {
		p.Classify = Classify
	}
	if p.Budget == nil {
		p.Budget = DefaultCreditBudget()
	}
	if p.clock == nil {
		p.clock = realClock{}
	}
	if p.rand == nil {
		p.rand = randFloat64
	}
	return p
}

// compiled is a validated policy with defaults applied and lookups
// precomputed. It is immutable and shared by every call of an interceptor.
type compiled struct {
	Policy
	exactMethods   map[string]bool
	methodPrefixes []string
	idemHeader     string
	connectWait    time.Duration // 0: retries do not wait for a connection
	latencies      sync.Map      // method → *methodHedge: a hedging policy's load guard and learned delay
}

func (p Policy) compile() (*compiled, error) {
	bad := func(field string, value any, rule string) (*compiled, error) {
		return nil, &PolicyError{Field: field, Value: value, Rule: rule}
	}
	if p.MaxAttempts < 0 {
		return bad("MaxAttempts", p.MaxAttempts, "must be at least 1 (0 means the default, 4)")
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"InitialBackoff", p.InitialBackoff},
		{"MaxBackoff", p.MaxBackoff},
		{"Timeout", p.Timeout},
		{"PerAttemptTimeout", p.PerAttemptTimeout},
		{"MaxPushback", p.MaxPushback},
	} {
		if f.d < 0 {
			return bad(f.name, f.d, "must not be negative (0 means the default)")
		}
	}
	if p.MaxReplayBytes < 0 {
		return bad("MaxReplayBytes", p.MaxReplayBytes, "must not be negative (0 means the default, 256 KiB)")
	}
	if math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) {
		return bad("Multiplier", p.Multiplier, "must be a finite number")
	}
	if p.Multiplier != 0 && p.Multiplier < 1 {
		return bad("Multiplier", p.Multiplier, "must be at least 1 (0 means the default, 2)")
	}
	if p.Jitter > NoJitter {
		return bad("Jitter", p.Jitter, "must be one of FullJitter, ProportionalJitter, EqualJitter, DecorrelatedJitter, NoJitter")
	}
	if p.Budget != nil {
		if err := p.Budget.validate(); err != nil {
			return bad("Budget", p.Budget, err.Error())
		}
	}
	if h := p.Hedging; h != nil {
		if e := h.MaxExtraLoad; math.IsNaN(e) || e < 0 || e > 0.5 {
			return bad("Hedging.MaxExtraLoad", e, "must be in (0, 0.5] (0 means the default, 0.05)")
		}
		if h.MinDelay < 0 {
			return bad("Hedging.MinDelay", h.MinDelay, "must not be negative (0 means the default, 1ms)")
		}
	}
	d := p.withDefaults()
	if d.MaxBackoff < d.InitialBackoff {
		return bad("MaxBackoff", d.MaxBackoff, "must be at least InitialBackoff ("+d.InitialBackoff.String()+")")
	}
	c := &compiled{Policy: d, connectWait: max(d.ConnectWait, 0)}
	for i, m := range p.Methods {
		slash := strings.LastIndexByte(m, '/')
		if len(m) < 3 || m[0] != '/' || slash < 2 {
			return bad("Methods["+strconv.Itoa(i)+"]", m, `must be "/package.Service/Method" or a service prefix "/package.Service/"`)
		}
		if slash == len(m)-1 {
			c.methodPrefixes = append(c.methodPrefixes, m)
			continue
		}
		if c.exactMethods == nil {
			c.exactMethods = make(map[string]bool)
		}
		c.exactMethods[m] = true
	}
	if h := p.IdempotencyHeader; h != "" {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "grpc-") || strings.HasSuffix(h, "-bin") || !validHeaderName(h) {
			return bad("IdempotencyHeader", p.IdempotencyHeader, `must be a metadata key of [0-9a-z-_.], not starting "grpc-" nor ending "-bin"`)
		}
		c.idemHeader = h
	}
	return c, nil
}

func validHeaderName(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// inScope reports whether the policy applies to the full method name.
func (c *compiled) inScope(method string) bool {
	if c.exactMethods == nil && c.methodPrefixes == nil {
		return true
	}
	if c.exactMethods[method] {
		return true
	}
	for _, p := range c.methodPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}
