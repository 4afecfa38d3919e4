package retry

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is the state of a circuit breaker.
type BreakerState uint8

const (
	// BreakerClosed: calls go through, and their outcomes are counted.
	BreakerClosed BreakerState = iota
	// BreakerOpen: calls are refused (they go to the fallback, or fail fast
	// with codes.Unavailable) until the open period ends.
	BreakerOpen
	// BreakerHalfOpen: probe calls go through, one at a time; enough
	// successes in a row close the breaker, a failure opens it again.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// BreakerOutcome is what a call tells its breaker: a three-way outcome
// (see BreakerConfig.Outcome to change the default mapping).
type BreakerOutcome uint8

const (
	// BreakerSuccess: the backend answered. Calls that succeed, and calls
	// that fail with a Permanent class (NotFound, InvalidArgument, ...),
	// which the backend was up to give.
	BreakerSuccess BreakerOutcome = iota + 1
	// BreakerFailure: an infrastructure failure, a retryable class
	// (Transient, RateLimited, Timeout) however the call stopped retrying.
	BreakerFailure
	// BreakerIgnored: the call says nothing about the backend: the caller
	// cancelled it, or its deadline passed during its first attempt, or the
	// client itself refused the message (StopLocal). It counts neither
	// way. (A call whose deadline passed after a failed attempt, one that
	// the retry interceptor retried, is a failure: the backend had already
	// failed it.)
	BreakerIgnored
)

// String returns "success", "failure" or "ignored".
func (o BreakerOutcome) String() string {
	switch o {
	case BreakerSuccess:
		return "success"
	case BreakerFailure:
		return "failure"
	case BreakerIgnored:
		return "ignored"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Defaults of the zero BreakerConfig fields.
const (
	DefaultBreakerWindow      = 10 * time.Second
	DefaultBreakerBuckets     = 10
	DefaultBreakerMinCalls    = 20
	DefaultBreakerFailureRate = 0.5
	DefaultBreakerConsecutive = 20
	DefaultBreakerSlowRate    = 0.5
	DefaultBreakerOpenFor     = 5 * time.Second
	DefaultBreakerJitter      = 0.5
	DefaultBreakerProbes      = 3
	DefaultBreakerMaxPushback = 5 * time.Minute
)

// BreakerConfig sets up a Breaker. Every zero field takes its default
// (the Default* constants), so BreakerConfig{} is a usable breaker: it opens
// when 20 calls in a row have failed, or when at least 20 calls ended in
// the last 10 s and half of them failed; it stays open about 5 s, then lets
// probes through one at a time, and closes after 3 successful ones.
type BreakerConfig struct {
	// Name names the backend in events, stats and logs (e.g. its target
	// or region). Optional.
	Name string
	// Window is the span of the sliding window over which outcomes are
	// counted (default 10s), in Buckets buckets (default 10) that expire
	// one at a time. Window/Buckets must be at least 1ms.
	Window  time.Duration
	Buckets int
	// MinCalls is the least number of counted calls (successes and
	// failures; ignored outcomes do not count) in the window before
	// FailureRate or SlowRate may open the breaker (default 20).
	MinCalls int
	// FailureRate opens the breaker when failures reach this fraction of
	// the counted calls in the window (default 0.5). In (0, 1].
	FailureRate float64
	// ConsecutiveFailures opens the breaker when this many calls in a row
	// have failed, with no success between them, whatever the window says
	// (default 20; negative: off). The window remembers the healthy calls
	// of the seconds before an outage, so the failure rate reaches
	// FailureRate only after a while (5 s of a full outage with the
	// defaults); a backend that has gone shows first as a run of failures.
	ConsecutiveFailures int
	// SlowCall, if positive, makes calls that take at least this long
	// count as slow (for a stream: the time to its first response message,
	// or to its end if none came), whether they succeed or fail; the
	// breaker also opens when slow calls reach SlowRate of the counted
	// calls (default 0.5, in (0, 1]). A slow probe counts as a failed
	// one. Default 0: slowness is not watched.
	SlowCall time.Duration
	SlowRate float64
	// OpenFor is how long the breaker stays open before it lets probes
	// through (default 5s). With MaxOpenFor above OpenFor, each time the
	// probes fail and it opens again the period doubles, up to MaxOpenFor,
	// and closing restores OpenFor: fewer probes during a long outage, at
	// the price of a later return once it ends. Default MaxOpenFor:
	// OpenFor (a constant period; a probe is one call of one attempt, so
	// probing every 5 s costs the backend nothing).
	OpenFor    time.Duration
	MaxOpenFor time.Duration
	// Jitter spreads each open period uniformly over ±Jitter/2 of its
	// length (default 0.5: from 0.75 to 1.25 times), so that the clients
	// of a fleet, which saw the backend fail at the same moment, do not
	// probe it in lock-step. At most 1; negative turns jitter off.
	Jitter float64
	// Probes is the number of probe calls in a row that must succeed to
	// close the half-open breaker (default 3). Probes go one at a time:
	// while one is in flight the other calls are refused, so a backend
	// still down costs one call per open period (and a probe is sent with
	// one attempt, see Failover). A probe that fails (or is slow) opens
	// the breaker again; one whose outcome is ignored lets the next call
	// probe. A probe still unanswered after OpenFor no longer blocks the
	// next one.
	Probes int
	// MaxPushback caps how long a server's pushback holds the breaker
	// open (default 5m). A failure that carries a pushback (a
	// grpc-retry-pushback-ms or google.rpc.RetryInfo delay the retry
	// interceptor could not honour: longer than its MaxPushback, past the
	// deadline, or with no attempt or budget left) sets the least time
	// the breaker stays open if it opens; a longer pushback is capped, not
	// ignored.
	MaxPushback time.Duration
	// Group, if set, maps a full method name to its method group: each
	// group has a circuit of its own (its own state and window). Default
	// nil: one circuit for every method of the target. It is called on
	// every call, concurrently; it must be fast and return few distinct
	// groups.
	Group func(method string) string
	// Outcome, if set, overrides what a failed call tells the breaker
	// (not a call that the caller cancelled or whose deadline passed:
	// those never count against the backend). It is given the step's
	// error (a *Error when the step's connection retries); a result of 0
	// keeps the default: BreakerFailure for a retryable class,
	// BreakerSuccess for a Permanent one (the backend answered),
	// BreakerIgnored for an error of the client's own (StopLocal). Use it
	// to count, say, Internal as a failure of the backend. It is called
	// concurrently; it must be fast.
	Outcome func(err error) BreakerOutcome
	// OnStateChange, if set, is called on every change of a circuit's
	// state, on the goroutine of the call that caused it, after the
	// change; it must not block.
	OnStateChange func(BreakerEvent)
	// Metrics, if set, reports every circuit of the breaker through
	// OpenTelemetry, from the counts of Stats: its state
	// (retry.client.breaker.state), the times it opened, the calls it
	// refused and the probes it let through, labelled with Name and the
	// group (see Metrics). They are read when the metrics are collected:
	// calls pay nothing for them. Default nil: not reported.
	Metrics *Metrics

	// Seams for tests: zero values mean the real clock and math/rand/v2.
	clock clock
	rand  func() float64
}

// BreakerEvent describes a change of a breaker circuit's state.
type BreakerEvent struct {
	// Name is BreakerConfig.Name.
	Name string
	// Group is the circuit's method group ("" without BreakerConfig.Group).
	Group string
	// From and To are the states before and after.
	From, To BreakerState
	// Until is, when To is BreakerOpen, the earliest time a probe may go.
	Until time.Time
	// Successes, Failures and Slow are, when a closed breaker opens, the
	// window's counts at that moment (zero for other changes, and when a
	// failed probe reopens it).
	Successes, Failures, Slow int
}

// BreakerStats is a snapshot of a breaker circuit, for metrics.
type BreakerStats struct {
	// Name is BreakerConfig.Name.
	Name string
	// Group is the circuit's method group ("" without BreakerConfig.Group).
	Group string
	// State is the circuit's state.
	State BreakerState
	// Successes, Failures and Slow are the counts of the current window
	// (in the closed state; a breaker that closes starts a fresh window).
	Successes, Failures, Slow int
	// Opened, Rejected and Probes count, since the breaker was made, the
	// times it opened, the calls it refused and the probes it let through.
	Opened, Rejected, Probes uint64
	// Until is, when open, the earliest time a probe may go.
	Until time.Time
}

// Breaker is a circuit breaker for one backend (a target, optionally per
// method group): it watches the infrastructure failures of the calls to it
// (a run of them, and their rate over a sliding window) and, when there
// are too many, opens: calls skip the backend (to a fallback, or failing
// fast with codes.Unavailable) instead of spending the caller's time on
// it. After the open period probe calls go through, one at a time; if
// they succeed it closes.
//
// Only failures of a retryable class (Transient, RateLimited, Timeout)
// count against the backend (see BreakerOutcome): a storm of NotFound or
// InvalidArgument never opens it, nor do the caller's own cancellations.
//
// A Breaker guards the steps of a Failover (FailoverConfig.Breaker,
// Fallback.Breaker). It is safe for concurrent use, and can be shared by
// the Failovers of several connections to one backend. A healthy call
// costs it one clock reading (when the call ends, to count it in the
// window; with SlowCall, one more when it starts) and a few atomic
// operations, without a lock or an allocation: two loads of the state, a
// compare-and-swap on a counter striped over cache lines and a load of the
// run of failures. Refusals while open read the clock once and take no
// lock either; locks are taken to change the state and by the half-open
// state's probes.
type Breaker struct {
	cfg      BreakerConfig // defaults applied
	root     *circuit      // the circuit when cfg.Group is nil
	circuits sync.Map      // group → *circuit, with cfg.Group
	origin   int64
}

// NewBreaker returns a closed Breaker set up by cfg, or a *ConfigError
// naming the first field that breaks a rule.
func NewBreaker(cfg BreakerConfig) (*Breaker, error) {
	bad := func(field string, value any, rule string) (*Breaker, error) {
		return nil, &ConfigError{Config: "BreakerConfig", Field: field, Value: value, Rule: rule}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"Window", cfg.Window},
		{"SlowCall", cfg.SlowCall},
		{"OpenFor", cfg.OpenFor},
		{"MaxOpenFor", cfg.MaxOpenFor},
		{"MaxPushback", cfg.MaxPushback},
	} {
		if f.d < 0 {
			return bad(f.name, f.d, "must not be negative (0 means the default)")
		}
	}
	if cfg.Buckets < 0 {
		return bad("Buckets", cfg.Buckets, "must be at least 1 (0 means the default, 10)")
	}
	if cfg.MinCalls < 0 {
		return bad("MinCalls", cfg.MinCalls, "must be at least 1 (0 means the default, 20)")
	}
	if cfg.Probes < 0 {
		return bad("Probes", cfg.Probes, "must be at least 1 (0 means the default, 3)")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"FailureRate", cfg.FailureRate},
		{"SlowRate", cfg.SlowRate},
	} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return bad(f.name, f.v, "must be in (0, 1] (0 means the default, 0.5)")
		}
	}
	if math.IsNaN(cfg.Jitter) || cfg.Jitter > 1 {
		return bad("Jitter", cfg.Jitter, "must be at most 1 (0 means the default, 0.5; negative: none)")
	}
	c := cfg
	if c.Window == 0 {
		c.Window = DefaultBreakerWindow
	}
	if c.Buckets == 0 {
		c.Buckets = DefaultBreakerBuckets
	}
	if c.MinCalls == 0 {
		c.MinCalls = DefaultBreakerMinCalls
	}
	switch {
	case c.ConsecutiveFailures == 0:
		c.ConsecutiveFailures = DefaultBreakerConsecutive
	case c.ConsecutiveFailures < 0:
		c.ConsecutiveFailures = 0
	}
	if c.FailureRate == 0 {
		c.FailureRate = DefaultBreakerFailureRate
	}
	if c.SlowRate == 0 {
		c.SlowRate = DefaultBreakerSlowRate
	}
	switch {
	case c.OpenFor == 0 && c.MaxOpenFor == 0:
		c.OpenFor, c.MaxOpenFor = DefaultBreakerOpenFor, DefaultBreakerOpenFor
	case c.OpenFor == 0:
		c.OpenFor = min(DefaultBreakerOpenFor, c.MaxOpenFor)
	case c.MaxOpenFor == 0:
		c.MaxOpenFor = c.OpenFor
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultBreakerJitter
	case c.Jitter < 0:
		c.Jitter = 0
	}
	if c.Probes == 0 {
		c.Probes = DefaultBreakerProbes
	}
	if c.MaxPushback == 0 {
		c.MaxPushback = DefaultBreakerMaxPushback
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	if c.rand == nil {
		c.rand = randFloat64
	}
	if c.MaxOpenFor < c.OpenFor {
		return bad("MaxOpenFor", c.MaxOpenFor, "must be at least OpenFor ("+c.OpenFor.String()+")")
	}
	if c.Buckets > 1000 {
		return bad("Buckets", c.Buckets, "must be at most 1000")
	}
	if c.Window/time.Duration(c.Buckets) < time.Millisecond {
		return bad("Window", c.Window, "must be at least 1ms per bucket ("+strconv.Itoa(c.Buckets)+" buckets)")
	}
	b := &Breaker{cfg: c, origin: c.clock.Now().UnixNano()}
	if c.Group == nil {
		b.root = b.newCircuit("")
	}
	if c.Metrics != nil {
		c.Metrics.addBreaker(b)
	}
	return b, nil
}

// made reports whether b is nil or was made by NewBreaker (a zero Breaker
// has no settings to work with).
func (b *Breaker) made() bool { return b == nil || b.cfg.clock != nil }

// Config returns the breaker's settings, defaults filled in.
func (b *Breaker) Config() BreakerConfig {
	c := b.cfg
	c.clock, c.rand = nil, nil
	return c
}

func (b *Breaker) newCircuit(group string) *circuit {
	return &circuit{b: b, group: group, win: newWindow(b.origin, int64(b.cfg.Window)/int64(b.cfg.Buckets), b.cfg.Buckets)}
}

// circuit returns the circuit of method.
func (b *Breaker) circuit(method string) *circuit {
	if b.root != nil {
		return b.root
	}
	return b.group(b.cfg.Group(method))
}

func (b *Breaker) group(g string) *circuit {
	if c, ok := b.circuits.Load(g); ok {
		return c.(*circuit)
	}
	c, _ := b.circuits.LoadOrStore(g, b.newCircuit(g))
	return c.(*circuit)
}

// State returns the state of the breaker's circuit: the only one without
// BreakerConfig.Group, the circuit of group "" with it. An open breaker
// whose open period has ended reports BreakerOpen until a call comes to
// probe it.
func (b *Breaker) State() BreakerState { return b.StateOf("") }

// StateOf returns the state of the circuit of a method group (without
// BreakerConfig.Group, of the only circuit whatever the group). A group
// that has seen no call is closed.
func (b *Breaker) StateOf(group string) BreakerState {
	c := b.root
	if c == nil {
		v, ok := b.circuits.Load(group)
		if !ok {
			return BreakerClosed
		}
		c = v.(*circuit)
	}
	return stateOf(c.sg.Load())
}

// Stats returns a snapshot of every circuit of the breaker, by group.
func (b *Breaker) Stats() []BreakerStats {
	var out []BreakerStats
	b.eachCircuit(func(c *circuit) { out = append(out, c.stats()) })
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// eachCircuit calls f with every circuit of the breaker.
func (b *Breaker) eachCircuit(f func(*circuit)) {
	if b.root != nil {
		f(b.root)
		return
	}
	b.circuits.Range(func(_, v any) bool {
		f(v.(*circuit))
		return true
	})
}

// circuit is the breaker of one method group.
type circuit struct {
	b     *Breaker
	group string
	win   *window

	sg        atomic.Uint64 // generation<<2 | state; the generation changes with every state change
	openUntil atomic.Int64  // unix ns: while open, no probe before this
	hold      atomic.Int64  // unix ns: a server pushback's least end of an open period
	run       atomic.Int64  // failures in a row (closed state)

	opened, rejected, probes atomic.Uint64

	// Under mu, which is taken to change the state, and by the half-open
	// state's probes; never by a closed circuit's calls nor by the
	// refusals of an open one.
	mu       sync.Mutex
	reopens  int   // open periods since the last close, for the growing period
	probesIn int   // half-open: probes in flight (at most one, but for abandoned ones)
	probeOK  int   // half-open: successful probes
	probeAt  int64 // half-open: unix ns of the last probe let through
}

func stateOf(sg uint64) BreakerState { return BreakerState(sg & 3) }

// permit is a call's leave to go to a backend, handed back with its
// outcome.
type permit struct {
	c       *circuit
	gen     uint64 // the circuit's generation when the call was let through
	probe   bool
	start   int64 // unix ns
	replied int64 // unix ns of a stream's first response message; 0: none
}

// responded notes a stream's first response message: the call's latency,
// for the slow-call rule, ends there.
func (p *permit) responded() {
	if p.c != nil && p.c.b.cfg.SlowCall > 0 {
		p.replied = p.c.b.cfg.clock.Now().UnixNano()
	}
}

// allow asks whether a call of method may go to the backend now. A closed
// breaker reads no clock (unless it watches slow calls).
func (b *Breaker) allow(method string) (permit, error) {
	c := b.circuit(method)
	sg := c.sg.Load()
	if stateOf(sg) == BreakerClosed {
		p := permit{c: c, gen: sg >> 2}
		if b.cfg.SlowCall > 0 {
			p.start = b.cfg.clock.Now().UnixNano()
		}
		return p, nil
	}
	return c.allowSlow(b.cfg.clock.Now().UnixNano())
}

func (c *circuit) allowSlow(now int64) (permit, error) {
	sg := c.sg.Load()
	if stateOf(sg) == BreakerOpen {
		// Refusals, the common case during an outage, take no lock.
		if until := max(c.openUntil.Load(), c.hold.Load()); now < until {
			c.rejected.Add(1)
			return permit{}, &BreakerOpenError{Group: c.group, State: BreakerOpen, Until: time.Unix(0, until)}
		}
	}
	cfg := &c.b.cfg
	c.mu.Lock()
	sg = c.sg.Load()
	switch stateOf(sg) {
	case BreakerClosed:
		c.mu.Unlock()
		return permit{c: c, gen: sg >> 2, start: now}, nil // start: the clock was read anyway
	case BreakerOpen:
		if until := max(c.openUntil.Load(), c.hold.Load()); now < until {
			c.mu.Unlock()
			c.rejected.Add(1)
			return permit{}, &BreakerOpenError{Group: c.group, State: BreakerOpen, Until: time.Unix(0, until)}
		}
		c.probesIn, c.probeOK, c.probeAt = 0, 0, now
		sg = (sg>>2+1)<<2 | uint64(BreakerHalfOpen)
		c.sg.Store(sg)
		defer c.changed(BreakerOpen, BreakerHalfOpen, 0, windowCounts{})
	}
	// Half-open: one probe at a time.
	if c.probesIn > 0 {
		if now-c.probeAt < int64(cfg.OpenFor) {
			c.mu.Unlock()
			c.rejected.Add(1)
			return permit{}, &BreakerOpenError{Group: c.group, State: BreakerHalfOpen}
		}
		// The probe in flight has not answered in a whole open period (an
		// abandoned stream, say): it no longer blocks the next one.
		c.probesIn = 0
	}
	c.probesIn++
	c.probeAt = now
	c.mu.Unlock()
	c.probes.Add(1)
	return permit{c: c, gen: sg >> 2, probe: true, start: now}, nil
}

// done reports the outcome of a call that p let through, ending now, with
// the server's pushback (0 if none).
func (p permit) done(o BreakerOutcome, pushback time.Duration) {
	c := p.c
	if c == nil {
		return
	}
	cfg := &c.b.cfg
	now := cfg.clock.Now().UnixNano()
	if pushback > 0 && o == BreakerFailure {
		c.holdUntil(now + int64(min(pushback, cfg.MaxPushback)))
	}
	end := now
	if p.replied != 0 {
		end = p.replied
	}
	slow := cfg.SlowCall > 0 && time.Duration(end-p.start) >= cfg.SlowCall && o != BreakerIgnored
	if p.probe {
		c.probeDone(p, o, slow, now)
		return
	}
	sg := c.sg.Load()
	if o == BreakerIgnored || sg != p.gen<<2|uint64(BreakerClosed) {
		return // only calls let through by the current closed state count
	}
	failed := o == BreakerFailure
	c.win.add(now, failed, slow)
	var inARow int64
	if failed {
		inARow = c.run.Add(1)
	} else if c.run.Load() != 0 { // a load, no write, on the healthy path
		c.run.Store(0)
	}
	if !failed && !slow {
		return
	}
	counts, trip := c.tripped(now)
	if cf := cfg.ConsecutiveFailures; cf > 0 && inARow >= int64(cf) {
		trip = true
	}
	if trip {
		c.open(sg, now, counts)
	}
}

// holdUntil raises the least end of an open period to t.
func (c *circuit) holdUntil(t int64) {
	for {
		h := c.hold.Load()
		if h >= t || c.hold.CompareAndSwap(h, t) {
			return
		}
	}
}

// tripped reports whether the window at now calls for opening.
func (c *circuit) tripped(now int64) (windowCounts, bool) {
	cfg := &c.b.cfg
	w := c.win.counts(now)
	total := w.total()
	if total < cfg.MinCalls || total == 0 {
		return w, false
	}
	if float64(w.fail) >= cfg.FailureRate*float64(total) {
		return w, true
	}
	return w, cfg.SlowCall > 0 && float64(w.slow) >= cfg.SlowRate*float64(total)
}

// open moves the circuit from state sg (closed or half-open) to open, with
// an open period that grows with each reopening and is jittered.
func (c *circuit) open(sg uint64, now int64, counts windowCounts) {
	cfg := &c.b.cfg
	c.mu.Lock()
	if c.sg.Load() != sg {
		c.mu.Unlock()
		return // another call changed the state first
	}
	d := cfg.OpenFor
	for i := 0; i < c.reopens && d < cfg.MaxOpenFor; i++ {
		d *= 2
	}
	d = min(d, cfg.MaxOpenFor)
	if cfg.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + cfg.Jitter*(c.b.cfg.rand()-0.5)))
	}
	c.reopens++
	c.run.Store(0)
	until := now + int64(d)
	c.openUntil.Store(until)
	c.sg.Store((sg>>2+1)<<2 | uint64(BreakerOpen))
	c.opened.Add(1)
	c.mu.Unlock()
	c.changed(stateOf(sg), BreakerOpen, max(until, c.hold.Load()), counts)
}

// probeDone handles the outcome of a half-open probe.
func (c *circuit) probeDone(p permit, o BreakerOutcome, slow bool, now int64) {
	cfg := &c.b.cfg
	c.mu.Lock()
	sg := c.sg.Load()
	if sg != p.gen<<2|uint64(BreakerHalfOpen) {
		c.mu.Unlock()
		return // the circuit moved on: another probe decided
	}
	c.probesIn = max(c.probesIn-1, 0)
	switch {
	case o == BreakerIgnored:
		c.mu.Unlock()
	case o == BreakerFailure || slow:
		c.mu.Unlock()
		c.open(sg, now, windowCounts{})
	default:
		c.probeOK++
		if c.probeOK < cfg.Probes {
			c.mu.Unlock()
			return
		}
		c.win.reset()
		c.run.Store(0)
		c.reopens = 0
		c.hold.Store(0)
		c.sg.Store((sg>>2+1)<<2 | uint64(BreakerClosed))
		c.mu.Unlock()
		c.changed(BreakerHalfOpen, BreakerClosed, 0, windowCounts{})
	}
}

func (c *circuit) changed(from, to BreakerState, until int64, w windowCounts) {
	f := c.b.cfg.OnStateChange
	if f == nil {
		return
	}
	ev := BreakerEvent{Name: c.b.cfg.Name, Group: c.group, From: from, To: to, Successes: w.ok, Failures: w.fail, Slow: w.slow}
	if to == BreakerOpen {
		ev.Until = time.Unix(0, until)
	}
	f(ev)
}

func (c *circuit) stats() BreakerStats {
	sg := c.sg.Load()
	s := BreakerStats{
		Name:     c.b.cfg.Name,
		Group:    c.group,
		State:    stateOf(sg),
		Opened:   c.opened.Load(),
		Rejected: c.rejected.Load(),
		Probes:   c.probes.Load(),
	}
	if s.State == BreakerClosed {
		w := c.win.counts(c.b.cfg.clock.Now().UnixNano())
		s.Successes, s.Failures, s.Slow = w.ok, w.fail, w.slow
	}
	if s.State == BreakerOpen {
		s.Until = time.Unix(0, max(c.openUntil.Load(), c.hold.Load()))
	}
	return s
}
