package retry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/seed4f82f287/retry/interceptor"
)

// meterName is the instrumentation scope of the instruments of Metrics.
const meterName = "github.com/seed4f82f287/retry"

// Bucket boundaries given to the SDK as advice (a View overrides them).
var (
	// retryBounds are gRFC A96's for grpc.client.call.retries and
	// grpc.client.call.hedges.
	retryBounds = []float64{1, 2, 3, 4, 5}
	// transparentRetryBounds are gRFC A96's for
	// grpc.client.call.transparent_retries.
	transparentRetryBounds = []float64{1, 2, 3, 4, 5, 10}
	// latencyBounds are gRFC A66's latency buckets, in seconds, which A96
	// recommends for grpc.client.call.retry_delay.
	latencyBounds = []float64{0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006,
		0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.013,
		0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
		0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1, 2, 5, 10, 20, 50, 100}
)

// Metrics records what retrying and hedging do, per call, through an
// OpenTelemetry MeterProvider: the per-call retry instruments of gRFC A96,
// with gRPC's own names (grpc-go v1.85 does not emit them), and counters
// of budget stops and hedges of this package's own; and, set on a Failover
// and a Breaker, their fallbacks and states. Make one with NewMetrics and
// set it as Policy.Metrics (and FailoverConfig.Metrics,
// BreakerConfig.Metrics).
//
//	name                                  type       unit                 recorded
//	grpc.client.call.retries              histogram  {retry}              attempts − 1, once per retried call; never 0
//	grpc.client.call.hedges               histogram  {hedge}              attempts − 1, once per hedged call that sent a hedge; never 0
//	grpc.client.call.transparent_retries  histogram  {transparent_retry}  grpc-go's transparent retries, once per call; never 0 (DialOptions only)
//	grpc.client.call.retry_delay          histogram  s                    CallReport.Delay, once per call that made more than one attempt or waited to; may be 0
//	retry.client.budget_stops             counter    {call}               +1 when a call fails because the budget refused a retry or hedge (StopBudget)
//	retry.client.hedges.sent              counter    {hedge}              +1 when a hedge is sent
//	retry.client.hedges.won               counter    {hedge}              +1 when a call ends with a hedge's answer
//	retry.client.hedges.denied            counter    {hedge}              +1 when the budget or the MaxExtraLoad guard refuses a hedge
//	retry.client.fallbacks                counter    {fallback}           +1 when a call moves to a fallback (FailoverConfig.Metrics)
//	retry.client.breaker.state            gauge      1                    1 for each circuit's state, 0 for its other states (BreakerConfig.Metrics)
//	retry.client.breaker.opens            counter    {open}               times each circuit opened
//	retry.client.breaker.rejected         counter    {call}               calls each circuit refused (open, or half-open with a probe in flight)
//	retry.client.breaker.probes           counter    {call}               probe calls each circuit let through while half-open
//
// The histograms carry gRFC A96's recommended bucket boundaries as advice
// (a View overrides them): [1 2 3 4 5] for retries and hedges,
// [1 2 3 4 5 10] for transparent retries, and gRFC A66's latency buckets
// (0 to 100 s) for retry_delay. As gRFC A96 says, the three counts never
// report 0, while retry_delay does: a hedged call whose attempts
// overlapped until one won had no time without an attempt in flight, and
// records a retry_delay of 0. A call of one attempt that did not wait, and
// was not transparently retried, records nothing (as in gRPC C++).
//
// The per-call instruments (the first eight) have two attributes, as
// gRPC's per-call metrics (gRFC A66): grpc.method, the full method name
// without its leading slash
// ("inference.v1.InferenceService/Generate") for calls made by generated
// code (which pass grpc.StaticMethod) and "other" for any other call, so
// that a client that forwards arbitrary method names cannot make the
// metrics' cardinality grow without bound; and grpc.target, the target the
// channel was created with, in canonical form ("dns:///host:443" for
// "host:443", grpc.ClientConn.CanonicalTarget), as grpc-go's own metrics
// label it. The attribute sets are made once per method and target and
// reused.
//
// grpc.client.call.transparent_retries counts the attempts that grpc-go
// itself retried because they never reached the server application (gRPC's
// transparent retry, which stays on under grpc.WithDisableRetry). grpc-go
// reports them only to a stats.Handler, so they are counted only on clients
// set up with DialOptions or RoutesDialOptions, which then add a stats
// handler of their own (see DialOptions); with Unary and Stream (and
// RoutesUnary and RoutesStream) the instrument records nothing.
//
// Calls that a policy leaves alone (Policy.Methods, Disable, a method no
// route matches) are not measured, as they do not reach Policy.OnCall.
//
// Failover and Breaker report through a Metrics too, when it is set as
// FailoverConfig.Metrics and BreakerConfig.Metrics. retry.client.fallbacks
// counts each move of a call to a fallback that is tried (when
// FailoverConfig.OnFallback would be called), with grpc.method and
// grpc.target as above (the target of the primary's channel) and
// retry.fallback.from and retry.fallback.to, the names of the steps left
// and tried, and retry.fallback.reason, why the step left ended:
// "breaker_open" (it was skipped), "max_attempts", "budget", "deadline"
// (the caller's deadline was too close for another attempt, or the step's
// own Policy.Timeout ran out), "pushback", "pushback_too_long" (its
// StopReason), or "failed" (a retryable failure of a step whose connection
// does not retry). The breaker instruments are observed when the metrics
// are collected, from the counts the breaker keeps anyway (see
// Breaker.Stats), one series per circuit with the attributes
// retry.breaker.name (BreakerConfig.Name) and retry.breaker.group (the
// method group, "" without BreakerConfig.Group); the state gauge adds
// retry.breaker.state ("closed", "open", "half-open"). A breaker is
// reported until it is garbage-collected; give the breakers of one Metrics
// distinct names. A call that does not fall back records nothing and
// allocates nothing for either.
//
// A Metrics is safe for concurrent use and may be shared by any number of
// policies, clients, Failovers and Breakers; the zero Metrics records
// nothing.
type Metrics struct {
	// transparent: count grpc-go's transparent retries (CountTransparentRetries).
	transparent bool
	// rec is an *instruments. Being an interface, it keeps the recording
	// code (and most of OpenTelemetry's attribute package) out of the
	// binaries of programs that never call NewMetrics.
	rec recorder
}

// recorder records the instruments of Metrics.
type recorder interface {
	callEnded(ctx context.Context, call *interceptor.Call, r CallReport, failed bool)
	hedge(ctx context.Context, call *interceptor.Call, k HedgeKind)
	fallback(ctx context.Context, method string, cc *grpc.ClientConn, opts []grpc.CallOption, from, to, reason string)
	addBreaker(b *Breaker)
}

// instruments are the instruments of Metrics and the attribute sets made
// for them.
type instruments struct {
	retries      metric.Int64Histogram
	hedges       metric.Int64Histogram
	transparent  metric.Int64Histogram
	delay        metric.Float64Histogram
	budgetStops  metric.Int64Counter
	hedgesSent   metric.Int64Counter
	hedgesWon    metric.Int64Counter
	hedgesDenied metric.Int64Counter
	fallbacks    metric.Int64Counter

	breakerState    metric.Int64ObservableGauge
	breakerOpens    metric.Int64ObservableCounter
	breakerRejected metric.Int64ObservableCounter
	breakerProbes   metric.Int64ObservableCounter

	sets         sync.Map // labelKey → *labelSet
	fallbackSets sync.Map // fallbackLabels → []metric.AddOption

	mu       sync.Mutex
	breakers []weak.Pointer[Breaker] // the breakers to observe, until collected
}

// NewMetrics creates the instruments of Metrics with mp's meter named
// "github.com/seed4f82f287/retry". It returns an error if mp is nil or
// refuses to create one of the instruments.
func NewMetrics(mp metric.MeterProvider, opts ...MetricsOption) (*Metrics, error) {
	if mp == nil {
		return nil, errors.New("retry: NewMetrics: nil MeterProvider")
	}
	meter := mp.Meter(meterName)
	m := new(instruments)
	var errs [14]error
	m.retries, errs[0] = meter.Int64Histogram("grpc.client.call.retries",
		metric.WithUnit("{retry}"),
		metric.WithDescription("Number of retries during the client call. If there were no retries, 0 is not reported."),
		metric.WithExplicitBucketBoundaries(retryBounds...))
	m.transparent, errs[1] = meter.Int64Histogram("grpc.client.call.transparent_retries",
		metric.WithUnit("{transparent_retry}"),
		metric.WithDescription("Number of transparent retries during the client call. If there were no transparent retries, 0 is not reported."),
		metric.WithExplicitBucketBoundaries(transparentRetryBounds...))
	m.hedges, errs[2] = meter.Int64Histogram("grpc.client.call.hedges",
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Number of hedges during the client call. If there were no hedges, 0 is not reported."),
		metric.WithExplicitBucketBoundaries(retryBounds...))
	m.delay, errs[3] = meter.Float64Histogram("grpc.client.call.retry_delay",
		metric.WithUnit("s"),
		metric.WithDescription("Total time of delay while there is no active attempt during the client call."),
		metric.WithExplicitBucketBoundaries(latencyBounds...))
	m.budgetStops, errs[4] = meter.Int64Counter("retry.client.budget_stops",
		metric.WithUnit("{call}"),
		metric.WithDescription("Number of client calls that failed because the retry budget refused their next retry or hedge."))
	m.hedgesSent, errs[5] = meter.Int64Counter("retry.client.hedges.sent",
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Number of hedges sent."))
	m.hedgesWon, errs[6] = meter.Int64Counter("retry.client.hedges.won",
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Number of hedges whose answer was the call's."))
	m.hedgesDenied, errs[7] = meter.Int64Counter("retry.client.hedges.denied",
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Number of hedges that were due but refused by the retry budget or the hedge load guard; the attempts in flight went on."))
	m.fallbacks, errs[8] = meter.Int64Counter("retry.client.fallbacks",
		metric.WithUnit("{fallback}"),
		metric.WithDescription("Number of times a call moved to a fallback of its failover chain."))
	m.breakerState, errs[9] = meter.Int64ObservableGauge("retry.client.breaker.state",
		metric.WithUnit("1"),
		metric.WithDescription("State of a circuit breaker: 1 for the state it is in, 0 for the others."))
	m.breakerOpens, errs[10] = meter.Int64ObservableCounter("retry.client.breaker.opens",
		metric.WithUnit("{open}"),
		metric.WithDescription("Number of times a circuit breaker opened."))
	m.breakerRejected, errs[11] = meter.Int64ObservableCounter("retry.client.breaker.rejected",
		metric.WithUnit("{call}"),
		metric.WithDescription("Number of calls a circuit breaker refused while open or half-open."))
	m.breakerProbes, errs[12] = meter.Int64ObservableCounter("retry.client.breaker.probes",
		metric.WithUnit("{call}"),
		metric.WithDescription("Number of probe calls a half-open circuit breaker let through."))
	if errors.Join(errs[9:13]...) == nil {
		_, errs[13] = meter.RegisterCallback(m.observeBreakers, m.breakerState, m.breakerOpens, m.breakerRejected, m.breakerProbes)
	}
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("retry: NewMetrics: %w", err)
	}
	mt := &Metrics{rec: m}
	for _, o := range opts {
		o(mt)
	}
	return mt, nil
}

// MetricsOption configures NewMetrics.
type MetricsOption func(*Metrics)

// CountTransparentRetries makes DialOptions and RoutesDialOptions record
// grpc.client.call.transparent_retries, by installing a stats handler that
// counts the attempts grpc-go retries transparently (RPCs that never
// reached the server application). It is off by default because, on a
// client with no other stats handler, grpc-go then builds an event for
// every attempt and message: 16 allocations more per unary call over
// bufconn (bench's BenchmarkMetricsCost). On a client that already has one
// (gRPC's OpenTelemetry plugin, otelgrpc) it costs one allocation per call.
func CountTransparentRetries() MetricsOption {
	return func(m *Metrics) { m.transparent = true }
}

// labelKey identifies an attribute set: the grpc.method and grpc.target
// values.
type labelKey struct{ method, target string }

// labelSet is an attribute set made into the options the instruments take,
// so that recording allocates nothing of this package's.
type labelSet struct {
	record []metric.RecordOption
	add    []metric.AddOption
}

// labels returns the attribute set of call's method and target.
func (m *instruments) labels(call *interceptor.Call) *labelSet {
	k := labelKey{method: "other", target: call.Target()}
	if call.Static {
		k.method = strings.TrimPrefix(call.Method, "/")
	}
	if s, ok := m.sets.Load(k); ok {
		return s.(*labelSet)
	}
	return m.newLabels(k)
}

func (m *instruments) newLabels(k labelKey) *labelSet {
	opt := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("grpc.method", k.method),
		attribute.String("grpc.target", k.target),
	))
	s, _ := m.sets.LoadOrStore(k, &labelSet{
		record: []metric.RecordOption{opt},
		add:    []metric.AddOption{opt},
	})
	return s.(*labelSet)
}

// callEnded records the per-call instruments for a call that ended with r.
func (m *Metrics) callEnded(ctx context.Context, call *interceptor.Call, r *CallReport, failed bool) {
	if m.rec != nil {
		m.rec.callEnded(ctx, call, *r, failed) // a copy: a pointer would make Done's report escape
	}
}

// hedge counts a hedge sent, won or denied.
func (m *Metrics) hedge(ctx context.Context, call *interceptor.Call, k HedgeKind) {
	if m.rec != nil {
		m.rec.hedge(ctx, call, k)
	}
}

// fallback counts a call of method, made on cc with opts, moving from step
// from to step to, for reason.
func (m *Metrics) fallback(ctx context.Context, method string, cc *grpc.ClientConn, opts []grpc.CallOption, from, to, reason string) {
	if m.rec != nil {
		m.rec.fallback(ctx, method, cc, opts, from, to, reason)
	}
}

// addBreaker reports b's circuits from now on, until b is collected.
func (m *Metrics) addBreaker(b *Breaker) {
	if m.rec != nil {
		m.rec.addBreaker(b)
	}
}

func (m *instruments) callEnded(ctx context.Context, call *interceptor.Call, r CallReport, failed bool) {
	var transparent int64
	if cc, ok := ctx.Value(callCountersKey{}).(*callCounters); ok {
		transparent = cc.transparent.Load()
	}
	waited := r.Attempts > 1 || r.Delay > 0
	budgetStop := failed && r.Reason == StopBudget
	if !waited && transparent == 0 && !budgetStop {
		return // the success path: nothing to record
	}
	l := m.labels(call)
	if r.Attempts > 1 {
		if r.Hedged {
			m.hedges.Record(ctx, int64(r.Attempts-1), l.record...)
		} else {
			m.retries.Record(ctx, int64(r.Attempts-1), l.record...)
		}
	}
	if transparent > 0 {
		m.transparent.Record(ctx, transparent, l.record...)
	}
	if waited {
		m.delay.Record(ctx, r.Delay.Seconds(), l.record...)
	}
	if budgetStop {
		m.budgetStops.Add(ctx, 1, l.add...)
	}
}

func (m *instruments) hedge(ctx context.Context, call *interceptor.Call, k HedgeKind) {
	var c metric.Int64Counter
	switch k {
	case HedgeSent:
		c = m.hedgesSent
	case HedgeWon:
		c = m.hedgesWon
	case HedgeDenied:
		c = m.hedgesDenied
	default:
		return
	}
	c.Add(ctx, 1, m.labels(call).add...)
}

// fallbackLabels identifies the attribute set of a fallback.
type fallbackLabels struct{ method, target, from, to, reason string }

func (m *instruments) fallback(ctx context.Context, method string, cc *grpc.ClientConn, opts []grpc.CallOption, from, to, reason string) {
	k := fallbackLabels{method: "other", from: from, to: to, reason: reason}
	if cc != nil {
		k.target = cc.CanonicalTarget()
	}
	if interceptor.HasStaticMethod(opts) {
		k.method = strings.TrimPrefix(method, "/")
	}
	set, ok := m.fallbackSets.Load(k)
	if !ok {
		set, _ = m.fallbackSets.LoadOrStore(k, []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("grpc.method", k.method),
			attribute.String("grpc.target", k.target),
			attribute.String("retry.fallback.from", k.from),
			attribute.String("retry.fallback.to", k.to),
			attribute.String("retry.fallback.reason", k.reason),
		))})
	}
	m.fallbacks.Add(ctx, 1, set.([]metric.AddOption)...)
}

func (m *instruments) addBreaker(b *Breaker) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.breakers) == cap(m.breakers) {
		m.pruneBreakers() // bounded without collections too (a reader that never reads)
	}
	m.breakers = append(m.breakers, weak.Make(b))
}

// pruneBreakers forgets the breakers that were collected, and returns the
// others. m.mu must be held.
func (m *instruments) pruneBreakers() []*Breaker {
	var live []*Breaker
	kept := m.breakers[:0]
	for _, w := range m.breakers {
		if b := w.Value(); b != nil {
			live = append(live, b)
			kept = append(kept, w)
		}
	}
	clear(m.breakers[len(kept):])
	m.breakers = kept
	return live
}

// breakerStates are the values of the retry.breaker.state attribute.
var breakerStates = [...]BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen}

// observeBreakers observes the circuits of the breakers still in use, and
// forgets the others.
func (m *instruments) observeBreakers(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	live := m.pruneBreakers()
	m.mu.Unlock()
	for _, b := range live {
		b.eachCircuit(func(c *circuit) {
			name := attribute.String("retry.breaker.name", b.cfg.Name)
			group := attribute.String("retry.breaker.group", c.group)
			set := metric.WithAttributeSet(attribute.NewSet(name, group))
			o.ObserveInt64(m.breakerOpens, int64(c.opened.Load()), set)
			o.ObserveInt64(m.breakerRejected, int64(c.rejected.Load()), set)
			o.ObserveInt64(m.breakerProbes, int64(c.probes.Load()), set)
			state := stateOf(c.sg.Load())
			for _, s := range breakerStates {
				var v int64
				if s == state {
					v = 1
				}
				o.ObserveInt64(m.breakerState, v, metric.WithAttributeSet(attribute.NewSet(
					name, group, attribute.String("retry.breaker.state", s.String()))))
			}
		})
	}
	return nil
}

// callCounters is the context of a call made through DialOptions' interceptors
// when its policy has Metrics: the stats handler that DialOptions adds finds
// it in the context of each of the call's attempts, and counts there the
// transparent retries that grpc-go makes under them. Being the context
// itself, it costs one allocation per call.
type callCounters struct {
	context.Context
	transparent atomic.Int64
}

type callCountersKey struct{}

func (c *callCounters) Value(key any) any {
	if key == (callCountersKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// countUnary returns next, with each call's context made a callCounters.
func countUnary(next grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return next(&callCounters{Context: ctx}, method, req, reply, cc, invoker, opts...)
	}
}

// countStream returns next, with each stream's context made a callCounters.
func countStream(next grpc.StreamClientInterceptor) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return next(&callCounters{Context: ctx}, desc, cc, method, streamer, opts...)
	}
}

// countsTransparent reports whether m asks for transparent retries.
func (m *Metrics) countsTransparent() bool { return m != nil && m.transparent }

// metrics reports whether the policy of some route has Metrics that count
// transparent retries.
func (d *router) metrics() bool {
	if d.def != nil && d.def.Metrics.countsTransparent() {
		return true
	}
	for _, m := range []map[string]*compiled{d.exact, d.service} {
		for _, c := range m {
			if c.Metrics.countsTransparent() {
				return true
			}
		}
	}
	return false
}

// transparentRetries is the stats.Handler that counts grpc-go's transparent
// retries into the callCounters of the attempt's context. It ignores every
// other event, and attempts of calls made without a callCounters.
type transparentRetries struct{}

func (transparentRetries) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (transparentRetries) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if b, ok := s.(*stats.Begin); ok && b.IsTransparentRetryAttempt {
		if c, ok := ctx.Value(callCountersKey{}).(*callCounters); ok {
			c.transparent.Add(1)
		}
	}
}

func (transparentRetries) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (transparentRetries) HandleConn(context.Context, stats.ConnStats) {}
