package retry

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A6MaxAttempts is gRFC A6's client-side limit on maxAttempts: a service
// config asking for more attempts (retries or hedges) gets this many, as
// in every gRPC implementation.
const A6MaxAttempts = 5

// ParseOptions changes how ParseServiceConfig reads a service config. The
// zero value follows gRFC A6 and grpc-go.
type ParseOptions struct {
	// AllowMoreAttempts keeps a maxAttempts above 5 as written, instead of
	// clamping it to 5 as gRFC A6 does (grpc-go's grpc.WithMaxCallAttempts
	// raises the same limit). This package has no limit of its own: the
	// budget and the caller's deadline bound what a large value can do.
	AllowMoreAttempts bool

	// Budget is the budget of every route when the config has no
	// retryThrottling (with one, each client gets its own NewThrottle from
	// it). Nil, the default, leaves Route.Policy.Budget nil: the routes of
	// a client share one default budget (see Routes), which limits retries
	// in an outage where gRPC would not. NoBudget makes the routes retry
	// exactly as grpc-go would with the same config.
	Budget Budget
}

// ServiceConfig is the retry part of a gRPC service config, read by
// ParseServiceConfig: one route per methodConfig entry, the shared retry
// throttling, and notes on what was clamped, adjusted or ignored. It is
// immutable and safe for concurrent use.
type ServiceConfig struct {
	routes   []configRoute
	notes    []Note
	throttle *throttleConfig
	budget   Budget
	opts     ParseOptions
}

// configRoute is one methodConfig entry with names, as parsed.
type configRoute struct {
	path   string // "methodConfig[i]"
	names  []configName
	kind   routeKind
	policy Policy // without Budget
	codes  codeSet
	// wrote is maxAttempts as written, when it differs from
	// policy.MaxAttempts (clamped).
	wrote int64
}

type configName struct {
	path string // "methodConfig[i].name[j]"
	name string // "", "/service/" or "/service/method"
}

type routeKind uint8

const (
	routeNone  routeKind = iota // neither retryPolicy nor hedgingPolicy
	routeRetry                  // retryPolicy
	routeHedge                  // hedgingPolicy
)

type throttleConfig struct {
	maxTokens, tokenRatio float64
}

// Note is something ParseServiceConfig wants its reader to know about a
// config it accepted: a value it clamped or adjusted (maxAttempts above 5),
// or a field it ignored (an unknown or misspelled field, one that this
// package does not apply). Notes are where a config that "does nothing"
// usually shows why.
type Note struct {
	Path string // the JSON path, e.g. "methodConfig[1].retryPolicy.maxAttempts"
	Text string // what was done and why, e.g. "10 clamped to 5, gRFC A6's client-side limit (...)"
}

// String returns "<Path>: <Text>".
func (n Note) String() string { return displayPath(n.Path) + ": " + n.Text }

// ServiceConfigError reports a service config that ParseServiceConfig
// rejects: the JSON path of the offending value and the rule it breaks.
type ServiceConfigError struct {
	Path  string // e.g. "methodConfig[2].retryPolicy.maxAttempts"; "" for the document itself
	Value string // the offending value as JSON (shortened), or ""
	Rule  string // the rule, e.g. "must be at least 2 (gRFC A6)"
}

// Error returns "retry: invalid service config: <Path>: <Rule>[, got <Value>]".
func (e *ServiceConfigError) Error() string {
	s := "retry: invalid service config: " + displayPath(e.Path) + ": " + e.Rule
	if e.Value != "" {
		s += ", got " + e.Value
	}
	return s
}

// ParseServiceConfig reads the retry settings of a gRPC service config (the
// JSON of grpc.WithDefaultServiceConfig, or of a DNS TXT record) into
// routes, one per methodConfig entry, following gRFC A6 and grpc-go's
// parser: ParseOptions{}.Parse(js).
//
// It reads:
//
//   - methodConfig[].name: {"service": s, "method": m} is the route name
//     "/s/m", {"service": s} is "/s/" (every method of s without an entry
//     of its own), {} is "" (the default); a name may appear once in the
//     whole config. An entry without names applies to nothing and is
//     skipped, with a note.
//   - retryPolicy: maxAttempts (2 or more; above 5 clamped to 5, with a
//     note, unless ParseOptions.AllowMoreAttempts), initialBackoff,
//     maxBackoff (both above 0), backoffMultiplier (at least 1 here, where
//     gRPC allows any value above 0), retryableStatusCodes (non-empty):
//     the listed codes are retried, every other code is returned at once.
//     A listed RESOURCE_EXHAUSTED keeps this package's refinement (a spent
//     quota, see Classify, is not retried). Backoff is full jitter, the
//     formula of A6's text.
//   - hedgingPolicy: maxAttempts (as above), hedgingDelay ("0s" or absent:
//     every attempt at once), nonFatalStatusCodes (optional): Policy.Hedging,
//     where the non-fatal codes send the next hedge and any other code ends
//     the call. An entry with both retryPolicy and hedgingPolicy is an
//     error (A6).
//   - timeout: Policy.Timeout, a deadline on the whole call (all attempts
//     and waits), never on each attempt. It must be above 0.
//   - retryThrottling: maxTokens in (0, 1000], tokenRatio above 0 (up to 3
//     decimal places, as A6 says; more are truncated, with a note): every
//     client built from the config gets its own NewThrottle(maxTokens,
//     tokenRatio), shared by all its routes, as gRPC keeps one per channel.
//     Calls of methods that no entry matches pass through the interceptors
//     untouched, so, unlike in gRPC, their successes do not refill it.
//
// An entry with neither retryPolicy nor hedgingPolicy still matches its
// methods, as in gRPC: they are not retried (Policy.MaxAttempts 1), and its
// timeout applies.
//
// Status codes are names in any case ("UNAVAILABLE", "unavailable", with a
// note, as grpc-go accepts only upper case) or numbers (14). Durations are gRPC's JSON form, decimal seconds with up to
// 9 fractional digits and the suffix "s" ("0.1s", ".1s", "2s"); any other
// form is an error. Field names are matched regardless of case, as grpc-go
// does, with a note when they differ from the spec's spelling. Fields that
// this package does not apply (waitForReady, maxRequestMessageBytes,
// maxResponseMessageBytes) and unknown fields are ignored with a note;
// load-balancing and health-check settings are ignored silently.
//
// Errors are *ServiceConfigError naming the JSON path and the rule, e.g.
//
//	retry: invalid service config: methodConfig[2].retryPolicy.maxAttempts: must be at least 2 (gRFC A6), got 1
//
// ParseServiceConfig reads untrusted input safely: it never panics, and
// rejects documents nested deeper than 256 levels.
//
// # One retry layer
//
// Install the result with sc.DialOptions() (or RoutesDialOptions(sc.Routes())),
// which adds grpc.WithDisableRetry(): grpc-go then ignores the retryPolicy
// of any service config it is given (by grpc.WithDefaultServiceConfig or
// by the resolver), so the same policy is not applied twice, inside every
// attempt of ours. If the same JSON is also given to
// grpc.WithDefaultServiceConfig (for its load-balancing or waitForReady
// settings), grpc-go still applies its timeout, to each attempt our
// interceptor sends: since every attempt starts within our whole-call
// deadline, which is the same timeout, the result is the same. A timeout
// in a service config that the resolver delivers applies the same way,
// per attempt, in addition to ours.
func ParseServiceConfig(js []byte) (*ServiceConfig, error) {
	return ParseOptions{}.Parse(js)
}

// Parse is ParseServiceConfig with the options o.
func (o ParseOptions) Parse(js []byte) (*ServiceConfig, error) {
	if o.Budget != nil {
		if err := o.Budget.validate(); err != nil {
			return nil, &ServiceConfigError{Rule: "ParseOptions.Budget: " + err.Error()}
		}
	}
	doc, err := decodeJSON(js)
	if err != nil {
		return nil, err
	}
	p := &configParser{sc: &ServiceConfig{budget: o.Budget, opts: o}, opts: o, seen: map[string]string{}}
	if err := p.document(doc); err != nil {
		return nil, err
	}
	return p.sc, nil
}

// Routes returns the config's routes, one per methodConfig entry with
// names, in the config's order. Every call returns new routes that the
// caller may change; if the config has retryThrottling, every call also
// makes a new Throttle, shared by the routes it returns: one per client,
// as gRPC keeps one per channel.
func (c *ServiceConfig) Routes() Routes {
	b := c.budget
	if c.throttle != nil {
		b = NewThrottle(c.throttle.maxTokens, c.throttle.tokenRatio)
	}
	rs := make(Routes, len(c.routes))
	for i, r := range c.routes {
		names := make([]string, len(r.names))
		for j, n := range r.names {
			names[j] = n.name
		}
		p := r.policy
		p.Budget = b
		rs[i] = Route{Names: names, Policy: p}
	}
	return rs
}

// Notes returns what the parser clamped, adjusted or ignored, entry by
// entry in the order of the document (nil if nothing).
func (c *ServiceConfig) Notes() []Note { return append([]Note(nil), c.notes...) }

// DialOptions returns RoutesDialOptions(c.Routes()): the interceptors of
// the config's routes, with a throttle of their own if the config has
// retryThrottling, and grpc.WithDisableRetry().
func (c *ServiceConfig) DialOptions() []grpc.DialOption {
	return RoutesDialOptions(c.Routes())
}

// configParser holds the state of one parse.
type configParser struct {
	sc   *ServiceConfig
	opts ParseOptions
	seen map[string]string // route name → path of the name that set it
}

func (p *configParser) note(path, format string, args ...any) {
	p.sc.notes = append(p.sc.notes, Note{Path: path, Text: fmt.Sprintf(format, args...)})
}

func bad(path string, v *jvalue, rule string) error {
	e := &ServiceConfigError{Path: path, Rule: rule}
	if v != nil {
		e.Value = v.snippet()
	}
	return e
}

// field is a member of an object that the parser knows.
type field struct {
	path string
	val  *jvalue // nil when absent or null
}

// object reads the members of the object v at path: the known ones (by
// their spec names, matched regardless of case as grpc-go does) into the
// result, with a note when a key's case differs; quiet ones are skipped
// silently; anything else is noted as ignored. A key given twice is an
// error.
func (p *configParser) object(v *jvalue, path string, known []string, quiet ...string) (map[string]field, error) {
	if v.kind != jObject {
		return nil, bad(path, v, "must be a JSON object")
	}
	out := make(map[string]field, len(known))
	written := map[string]string{} // known name → key as written
	for _, m := range v.members {
		mpath := joinPath(path, m.key)
		name := ""
		for _, k := range known {
			if strings.EqualFold(m.key, k) {
				name = k
				break
			}
		}
		if name == "" {
			p.ignored(m.key, mpath, known, quiet)
			continue
		}
		if prev, dup := written[name]; dup {
			rule := "duplicate key"
			if prev != m.key {
				rule = fmt.Sprintf("duplicate key (also %q): gRPC reads field names regardless of case, so the two are the same field", prev)
			}
			return nil, bad(mpath, nil, rule)
		}
		written[name] = m.key
		if m.key != name {
			p.note(mpath, "read as %q: grpc-go matches field names regardless of case, but other gRPC implementations read only %q", name, name)
		}
		f := field{path: joinPath(path, name)}
		if m.val.kind != jNull {
			f.val = m.val
		}
		out[name] = f
	}
	return out, nil
}

// ignored notes an unknown member, unless it is one of quiet.
func (p *configParser) ignored(key, path string, known, quiet []string) {
	for _, q := range quiet {
		if strings.EqualFold(key, q) {
			return
		}
	}
	squash := strings.ReplaceAll(key, "_", "")
	for _, k := range known {
		if strings.EqualFold(squash, k) || nearName(strings.ToLower(squash), strings.ToLower(k)) {
			p.note(path, "unknown field, ignored as gRPC ignores it: the field is spelled %q", k)
			return
		}
	}
	p.note(path, "unknown field, ignored")
}

var (
	topFields      = []string{"methodConfig", "retryThrottling"}
	topQuiet       = []string{"loadBalancingPolicy", "loadBalancingConfig", "healthCheckConfig", "connectionScaling"}
	methodFields   = []string{"name", "timeout", "retryPolicy", "hedgingPolicy", "waitForReady", "maxRequestMessageBytes", "maxResponseMessageBytes"}
	nameFields     = []string{"service", "method"}
	retryFields    = []string{"maxAttempts", "initialBackoff", "maxBackoff", "backoffMultiplier", "retryableStatusCodes"}
	hedgeFields    = []string{"maxAttempts", "hedgingDelay", "nonFatalStatusCodes"}
	throttleFields = []string{"maxTokens", "tokenRatio"}
)

func (p *configParser) document(doc *jvalue) error {
	top, err := p.object(doc, "", topFields, topQuiet...)
	if err != nil {
		return err
	}
	if f := top["methodConfig"]; f.val != nil {
		if f.val.kind != jArray {
			return bad(f.path, f.val, "must be a JSON array of method configs")
		}
		for i, mc := range f.val.elems {
			if err := p.methodConfig(mc, f.path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	if len(p.sc.routes) == 0 {
		p.note(joinPath("", "methodConfig"), "no method config with a name: no method is retried")
	}
	if f := top["retryThrottling"]; f.val != nil {
		if err := p.throttling(f.val, f.path); err != nil {
			return err
		}
	} else if p.opts.Budget == nil && p.anyRetries() {
		p.note(joinPath("", "retryThrottling"), "absent: retries are limited by this package's default budget, shared by the routes of a client, where gRPC would not limit them (ParseOptions.Budget = NoBudget retries as gRPC does)")
	}
	return nil
}

func (p *configParser) anyRetries() bool {
	for _, r := range p.sc.routes {
		if r.kind != routeNone {
			return true
		}
	}
	return false
}

func (p *configParser) methodConfig(v *jvalue, path string) error {
	if v.kind == jNull {
		p.note(path, "null entry, skipped")
		return nil
	}
	f, err := p.object(v, path, methodFields)
	if err != nil {
		return err
	}
	r := configRoute{path: path}

	// Names first: their rules are gRPC's, whatever the policy.
	if nf := f["name"]; nf.val != nil {
		if nf.val.kind != jArray {
			return bad(nf.path, nf.val, "must be a JSON array of names")
		}
		for j, nv := range nf.val.elems {
			n, err := p.name(nv, nf.path+"["+strconv.Itoa(j)+"]")
			if err != nil {
				return err
			}
			r.names = append(r.names, n)
		}
	}

	rp, hp := f["retryPolicy"], f["hedgingPolicy"]
	switch {
	case rp.val != nil && hp.val != nil:
		return bad(path, nil, "has both retryPolicy and hedgingPolicy: a method config may have one of them (gRFC A6)")
	case rp.val != nil:
		if err := p.retryPolicy(rp.val, rp.path, &r); err != nil {
			return err
		}
	case hp.val != nil:
		if err := p.hedgingPolicy(hp.val, hp.path, &r); err != nil {
			return err
		}
	default:
		r.kind = routeNone
		r.policy = Policy{MaxAttempts: 1, Classify: neverRetry}
	}

	if tf := f["timeout"]; tf.val != nil {
		d, err := p.duration(tf.val, tf.path)
		if err != nil {
			return err
		}
		if d <= 0 {
			return bad(tf.path, tf.val, "must be greater than 0 (gRPC would fail every call at once)")
		}
		r.policy.Timeout = d
	}
	if wf := f["waitForReady"]; wf.val != nil {
		if wf.val.kind != jBool {
			return bad(wf.path, wf.val, "must be true or false")
		}
		p.note(wf.path, "not applied by this package: give the same JSON to grpc.WithDefaultServiceConfig, or use grpc.WaitForReady, for it")
	}
	for _, k := range []string{"maxRequestMessageBytes", "maxResponseMessageBytes"} {
		if mf := f[k]; mf.val != nil {
			if n, ok := mf.val.integer(); !ok || n < 0 {
				return bad(mf.path, mf.val, "must be a whole number of bytes, 0 or more")
			}
			p.note(mf.path, "not applied by this package: give the same JSON to grpc.WithDefaultServiceConfig for it")
		}
	}

	if f["name"].val == nil || len(r.names) == 0 {
		p.note(path, "no name: the entry applies to no method and is skipped, as in gRPC (a name {} makes it the default for every method)")
		return nil
	}
	p.sc.routes = append(p.sc.routes, r)
	return nil
}

func (p *configParser) name(v *jvalue, path string) (configName, error) {
	if v.kind != jObject {
		return configName{}, bad(path, v, `must be a JSON object such as {"service": "package.Service", "method": "Method"}`)
	}
	f, err := p.object(v, path, nameFields)
	if err != nil {
		return configName{}, err
	}
	part := func(k string) (string, error) {
		fv := f[k]
		if fv.val == nil {
			return "", nil
		}
		if fv.val.kind != jString {
			return "", bad(fv.path, fv.val, "must be a JSON string")
		}
		if !validNamePart(fv.val.text) {
			return "", bad(fv.path, fv.val, `must not contain "/", white space, control characters or invalid UTF-8: such a name never matches a method (a service is "package.Service", a method "Method")`)
		}
		return fv.val.text, nil
	}
	svc, err := part("service")
	if err != nil {
		return configName{}, err
	}
	method, err := part("method")
	if err != nil {
		return configName{}, err
	}
	n := configName{path: path}
	switch {
	case svc == "" && method != "":
		return configName{}, bad(path, nil, fmt.Sprintf("method %q needs a service: a name with an empty service is the default entry, and must have no method", method))
	case svc == "":
		n.name = ""
	default:
		n.name = "/" + svc + "/" + method
	}
	if prev, dup := p.seen[n.name]; dup {
		return configName{}, bad(path, nil, fmt.Sprintf("duplicate name %s, also %s: each name may appear once in a service config", describeName(n.name), prev))
	}
	p.seen[n.name] = path
	return n, nil
}

// describeName renders a route name for messages.
func describeName(n string) string {
	if n == "" {
		return "{} (the default)"
	}
	return n
}

func (p *configParser) retryPolicy(v *jvalue, path string, r *configRoute) error {
	f, err := p.object(v, path, retryFields)
	if err != nil {
		return err
	}
	r.kind = routeRetry
	if err := p.maxAttempts(f["maxAttempts"], path, r); err != nil {
		return err
	}
	var backoff [2]time.Duration
	for i, k := range []string{"initialBackoff", "maxBackoff"} {
		bf := f[k]
		if bf.val == nil {
			return bad(joinPath(path, k), nil, "required, a duration greater than 0 (gRFC A6)")
		}
		d, err := p.duration(bf.val, bf.path)
		if err != nil {
			return err
		}
		if d <= 0 {
			return bad(bf.path, bf.val, "must be greater than 0 (gRFC A6)")
		}
		backoff[i] = d
	}
	r.policy.InitialBackoff, r.policy.MaxBackoff = backoff[0], backoff[1]
	if backoff[0] > backoff[1] {
		r.policy.InitialBackoff = backoff[1]
		p.note(joinPath(path, "initialBackoff"), "%v is above maxBackoff %v: every backoff is %v, as in gRPC", backoff[0], backoff[1], backoff[1])
	}
	mf := f["backoffMultiplier"]
	if mf.val == nil {
		return bad(joinPath(path, "backoffMultiplier"), nil, "required, a number greater than 0 (gRFC A6)")
	}
	m, ok := mf.val.number()
	switch {
	case !ok:
		return bad(mf.path, mf.val, "must be a finite JSON number")
	case m <= 0:
		return bad(mf.path, mf.val, "must be greater than 0 (gRFC A6)")
	case m < 1:
		return bad(mf.path, mf.val, "must be at least 1 in this package, which does not shrink backoffs (gRFC A6 allows any value above 0)")
	}
	r.policy.Multiplier = m
	r.policy.Jitter = FullJitter
	set, err := p.codes(f["retryableStatusCodes"], joinPath(path, "retryableStatusCodes"), true)
	if err != nil {
		return err
	}
	r.codes = set
	r.policy.Classify = set.classify
	return nil
}

func (p *configParser) hedgingPolicy(v *jvalue, path string, r *configRoute) error {
	f, err := p.object(v, path, hedgeFields)
	if err != nil {
		return err
	}
	r.kind = routeHedge
	if err := p.maxAttempts(f["maxAttempts"], path, r); err != nil {
		return err
	}
	h := &Hedging{Delay: -1} // A6: absent or "0s", every attempt at once
	if df := f["hedgingDelay"]; df.val != nil {
		d, err := p.duration(df.val, df.path)
		if err != nil {
			return err
		}
		if d < 0 {
			return bad(df.path, df.val, "must not be negative")
		}
		if d > 0 {
			h.Delay = d
		}
	} else {
		p.note(joinPath(path, "hedgingDelay"), "absent: every attempt is sent at once, as gRFC A6 says of a delay of \"0s\"")
	}
	r.policy.Hedging = h
	set, err := p.codes(f["nonFatalStatusCodes"], joinPath(path, "nonFatalStatusCodes"), false)
	if err != nil {
		return err
	}
	r.codes = set
	r.policy.Classify = set.classify
	return nil
}

// maxAttempts reads the maxAttempts of the policy at path into r.
func (p *configParser) maxAttempts(f field, path string, r *configRoute) error {
	if f.val == nil {
		return bad(joinPath(path, "maxAttempts"), nil, "required, a whole number of 2 or more (gRFC A6)")
	}
	n, ok := f.val.integer()
	switch {
	case !ok:
		return bad(f.path, f.val, "must be a whole number (a JSON integer)")
	case n < 2:
		return bad(f.path, f.val, "must be at least 2 (gRFC A6)")
	case n > A6MaxAttempts && !p.opts.AllowMoreAttempts:
		r.policy.MaxAttempts = A6MaxAttempts
		r.wrote = n
		p.note(f.path, "%d clamped to %d, gRFC A6's client-side limit (ParseOptions.AllowMoreAttempts keeps %d)", n, A6MaxAttempts, n)
	case n > math.MaxInt32:
		return bad(f.path, f.val, "must be at most 2147483647")
	default:
		r.policy.MaxAttempts = int(n)
	}
	return nil
}

func (p *configParser) duration(v *jvalue, path string) (time.Duration, error) {
	if v.kind != jString {
		hint := ""
		if v.kind == jNumber {
			hint = ` (a duration is a JSON string: "` + v.text + `s")`
		}
		return 0, bad(path, v, durationRule+hint)
	}
	d, ok := parseJSONDuration(v.text)
	if !ok {
		return 0, bad(path, v, durationRule+durationHint(v.text))
	}
	return d, nil
}

// codes reads a list of status codes; required lists must not be empty.
func (p *configParser) codes(f field, path string, required bool) (codeSet, error) {
	if f.val == nil {
		if required {
			return 0, bad(path, nil, "required, a non-empty list of status codes (gRFC A6)")
		}
		return 0, nil
	}
	if f.val.kind != jArray {
		return 0, bad(f.path, f.val, "must be a JSON array of status codes")
	}
	if required && len(f.val.elems) == 0 {
		return 0, bad(f.path, f.val, "must not be empty (gRFC A6)")
	}
	var set codeSet
	for i, e := range f.val.elems {
		epath := f.path + "[" + strconv.Itoa(i) + "]"
		c, rule := statusCode(e)
		if rule != "" {
			return 0, bad(epath, e, rule)
		}
		if e.kind == jString && e.text != codeNames[c] {
			p.note(epath, "read as %q: grpc-go accepts only the upper-case name, and rejects the whole config if given it", codeNames[c])
		}
		if c == codes.OK {
			p.note(epath, "OK is not a failure: listing it has no effect")
			continue
		}
		set |= 1 << c
	}
	return set, nil
}

func (p *configParser) throttling(v *jvalue, path string) error {
	f, err := p.object(v, path, throttleFields)
	if err != nil {
		return err
	}
	tf, rf := f["maxTokens"], f["tokenRatio"]
	if tf.val == nil {
		return bad(joinPath(path, "maxTokens"), nil, "required, a number in (0, 1000]")
	}
	maxTokens, ok := tf.val.number()
	if !ok || maxTokens <= 0 || maxTokens > 1000 {
		return bad(tf.path, tf.val, "must be a number in (0, 1000] (grpc-go's range)")
	}
	if rf.val == nil {
		return bad(joinPath(path, "tokenRatio"), nil, "required, a number greater than 0 (gRFC A6)")
	}
	ratio, ok := rf.val.number()
	if !ok || ratio <= 0 {
		return bad(rf.path, rf.val, "must be a number greater than 0 (gRFC A6)")
	}
	// A6 supports 3 decimal places; gRPC's C++ and Java parsers drop the
	// rest. The tiny epsilon keeps 0.3 (0.29999...) at 0.3.
	truncated := math.Floor(ratio*1000+1e-6) / 1000
	if truncated <= 0 {
		return bad(rf.path, rf.val, "must be at least 0.001: gRFC A6 supports 3 decimal places")
	}
	if truncated != ratio && math.Abs(truncated-ratio) > 1e-12 {
		p.note(rf.path, "%v truncated to %v: gRFC A6 supports 3 decimal places", ratio, truncated)
	}
	if truncated > maxTokens {
		p.note(rf.path, "%v is above maxTokens: one success refills the bucket, the same as %v", truncated, maxTokens)
		truncated = maxTokens
	}
	p.sc.throttle = &throttleConfig{maxTokens: maxTokens, tokenRatio: truncated}
	return nil
}

// codeSet is a set of status codes, bit c for code c (0 to 16).
type codeSet uint32

func (s codeSet) has(c codes.Code) bool { return c < 32 && s&(1<<c) != 0 }

// list returns the codes of s by name, in code order.
func (s codeSet) list() []string {
	var names []string
	for c := codes.Code(0); int(c) < len(codeNames); c++ {
		if s.has(c) {
			names = append(names, codeNames[c])
		}
	}
	return names
}

// classify is the classification of a route read from a service config:
// the codes of s are retried (or, for hedging, are non-fatal), with their
// class from CodeClass (Transient for the codes CodeClass calls Permanent),
// and every other code is Permanent. A listed RESOURCE_EXHAUSTED that is a
// spent quota (see Classify) stays Permanent.
func (s codeSet) classify(st *status.Status, trailer metadata.MD) Class {
	c := st.Code()
	if !s.has(c) {
		return Permanent
	}
	if c == codes.ResourceExhausted && isSpentQuota(st, trailer) {
		return Permanent
	}
	if cl := CodeClass(c); cl != Permanent {
		return cl
	}
	return Transient
}

// neverRetry is the classification of an entry without a retry or hedging
// policy: nothing is retried, and nothing is charged to a budget.
func neverRetry(*status.Status, metadata.MD) Class { return Permanent }
