package retry

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Explain returns, in words, the policy that applies to method (a full
// method name, "/package.Service/Method") under the routes, and why: which
// route matched (an exact method name, the method's service, or the
// default), or that none did and the call passes through untouched, with
// hints at near misses (a service named in another case or package, a
// method name with a typo). The first line is the verdict; the lines after
// it, indented, give the details.
//
// Explain does not build interceptors; it is safe to call on invalid
// routes, whose first error it reports.
func (r Routes) Explain(method string) string {
	if err := r.Validate(); err != nil {
		return method + ": the routes are invalid: " + err.Error()
	}
	var names []entryName
	for i, rt := range r {
		for j, n := range rt.Names {
			kind, _ := parseRouteName(n)
			names = append(names, entryName{
				name: n, kind: kind, route: i,
				label: fmt.Sprintf("Routes[%d].Names[%d] %q", i, j, n),
				where: fmt.Sprintf("Routes[%d].Names[%d]", i, j),
			})
		}
	}
	e, ok := lookupName(names, method)
	var b strings.Builder
	if !ok {
		b.WriteString(method + ": no route matches; calls pass through untouched (one attempt, no timeout, error unchanged)")
		writeHints(&b, method, names, false)
		return b.String()
	}
	p := r[e.route].Policy
	full := p.withDefaults()
	fmt.Fprintf(&b, "%s: Routes[%d] applies (%s): %s", method, e.route, matchReason(e.kind, "route"), policySummary(full))
	line := func(format string, args ...any) { fmt.Fprintf(&b, "\n  "+format, args...) }
	line("matched by %s", e.label)
	switch {
	case full.Hedging != nil:
		line("attempts: up to %d in all, the first included, hedged", full.MaxAttempts)
		line("hedge delay: %s", hedgeDelay(full.Hedging))
	case full.MaxAttempts == 1:
		line("attempts: 1, never retried")
	default:
		line("attempts: up to %d in all, the first included", full.MaxAttempts)
		line("backoff: %v, ×%v per retry, at most %v; %v jitter", full.InitialBackoff, full.Multiplier, full.MaxBackoff, full.Jitter)
	}
	if full.MaxAttempts > 1 {
		if p.Classify == nil {
			line("retried: UNAVAILABLE, RESOURCE_EXHAUSTED (except a spent quota) and an attempt's DEADLINE_EXCEEDED, by the default Classify (codes.go); every other code is returned at once")
		} else {
			line("retried: what the route's Policy.Classify says")
		}
	}
	if full.PerAttemptTimeout > 0 {
		line("per-attempt timeout: %v", full.PerAttemptTimeout)
	}
	line("timeout: %s", timeoutWords(full.Timeout))
	if full.MaxAttempts > 1 {
		line("budget: %s", routesBudget(r, e.route))
	}
	if e.kind != nameMethod {
		writeHints(&b, method, names, e.kind == nameService)
	}
	return b.String()
}

// Explain returns, in words, the policy that the config gives method (a
// full method name, "/package.Service/Method"), and why: which
// methodConfig entry matched (an exact method name, the method's service,
// or the default entry {}), or that none did and calls pass through
// untouched, with hints at near misses (a service named in another case or
// package, a method name with a typo, a service name that includes the
// method), and the notes about that entry (a clamped maxAttempts, say).
// The first line is the verdict; the lines after it, indented, give the
// details. It is the one-line check of "my service config does nothing".
func (c *ServiceConfig) Explain(method string) string {
	names := c.entryNames()
	e, ok := lookupName(names, method)
	var b strings.Builder
	if !ok {
		b.WriteString(method + ": no entry matches; calls pass through untouched (one attempt, no timeout, error unchanged)")
		writeHints(&b, method, names, false)
		return b.String()
	}
	r := c.routes[e.route]
	fmt.Fprintf(&b, "%s: %s applies (%s): %s", method, r.path, matchReason(e.kind, "entry"), c.summary(r))
	line := func(format string, args ...any) { fmt.Fprintf(&b, "\n  "+format, args...) }
	line("matched by %s", e.label)
	p := r.policy.withDefaults()
	clamp := ""
	if r.wrote != 0 {
		clamp = fmt.Sprintf(" (maxAttempts %d clamped to %d, gRFC A6's client-side limit; ParseOptions.AllowMoreAttempts keeps it)", r.wrote, p.MaxAttempts)
	}
	switch r.kind {
	case routeNone:
		line("attempts: 1: the entry has no retryPolicy or hedgingPolicy, so its methods are not retried, even if a service or default entry has one")
	case routeRetry:
		line("attempts: up to %d in all, the first included%s", p.MaxAttempts, clamp)
		line("backoff: %v, ×%v per retry, at most %v; full jitter (each wait uniform in [0, backoff), gRFC A6)", p.InitialBackoff, p.Multiplier, p.MaxBackoff)
		line("retried: %s; every other code is returned at once", codeWords(r.codes))
	case routeHedge:
		line("attempts: up to %d in all, the first included, hedged%s", p.MaxAttempts, clamp)
		line("hedge delay: %s", hedgeDelay(p.Hedging))
		if r.codes == 0 {
			line("non-fatal codes: none: any failure ends the call")
		} else {
			line("non-fatal codes: %s send the next hedge at once; any other code ends the call", codeWords(r.codes))
		}
	}
	line("timeout: %s", timeoutWords(p.Timeout))
	if r.kind != routeNone {
		line("budget: %s", c.budgetWords())
	}
	for _, n := range c.notes {
		if under(n.Path, r.path) || (r.kind != routeNone && under(n.Path, "retryThrottling")) {
			line("note: %s", n)
		}
	}
	if e.kind != nameMethod {
		writeHints(&b, method, names, e.kind == nameService)
	}
	return b.String()
}

// String describes the config: one line per route (its JSON path, names
// and policy), then the budget and the notes. It is what the retry-config
// command prints.
func (c *ServiceConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d route(s)", len(c.routes))
	if len(c.routes) > 0 {
		b.WriteString(", budget: " + c.budgetWords())
	}
	for _, r := range c.routes {
		var ns []string
		for _, n := range r.names {
			ns = append(ns, nameJSON(n.name))
		}
		fmt.Fprintf(&b, "\n%s %s: %s", r.path, strings.Join(ns, ", "), c.summary(r))
	}
	if len(c.notes) > 0 {
		b.WriteString("\nnotes:")
		for _, n := range c.notes {
			b.WriteString("\n  " + n.String())
		}
	}
	return b.String()
}

// under reports whether the JSON path p is path or inside it.
func under(p, path string) bool {
	return p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[")
}

func (c *ServiceConfig) entryNames() []entryName {
	var names []entryName
	for i, r := range c.routes {
		for _, n := range r.names {
			kind, _ := parseRouteName(n.name)
			names = append(names, entryName{name: n.name, kind: kind, route: i, label: n.path + " " + nameJSON(n.name), where: n.path})
		}
	}
	return names
}

// summary is the one-line policy of a route read from a config.
func (c *ServiceConfig) summary(r configRoute) string {
	var s string
	switch r.kind {
	case routeNone:
		s = "not retried (no retryPolicy or hedgingPolicy)"
	case routeRetry:
		s = fmt.Sprintf("retried, up to %d attempts, on %s, backoff %v ×%v up to %v",
			r.policy.MaxAttempts, strings.Join(r.codes.list(), ", "), r.policy.InitialBackoff, r.policy.Multiplier, r.policy.MaxBackoff)
	case routeHedge:
		s = fmt.Sprintf("hedged, up to %d attempts, %s", r.policy.MaxAttempts, hedgeDelay(r.policy.Hedging))
		if r.codes != 0 {
			s += ", non-fatal " + strings.Join(r.codes.list(), ", ")
		}
	}
	if r.policy.Timeout > 0 {
		s += fmt.Sprintf(", timeout %v", r.policy.Timeout)
	}
	return s
}

func (c *ServiceConfig) budgetWords() string {
	switch {
	case c.throttle != nil:
		return fmt.Sprintf("retryThrottling (maxTokens %v, tokenRatio %v): one throttle per client, shared by all its routes; retries and hedges stop while the tokens are at most %v",
			c.throttle.maxTokens, c.throttle.tokenRatio, c.throttle.maxTokens/2)
	case c.budget == NoBudget:
		return "none (ParseOptions.Budget is NoBudget): retried as gRPC would"
	case c.budget != nil:
		return fmt.Sprintf("ParseOptions.Budget (%T), shared by all the routes", c.budget)
	}
	return "the default budget, one per client shared by all its routes (the config has no retryThrottling)"
}

// codeWords lists the codes of s, with the spent-quota refinement.
func codeWords(s codeSet) string {
	names := s.list()
	for i, n := range names {
		if n == "RESOURCE_EXHAUSTED" {
			names[i] = n + " (except a spent quota: a QuotaFailure detail without pushback or RetryInfo)"
		}
	}
	return strings.Join(names, ", ")
}

// policySummary is the one-line policy of a route (defaults applied).
func policySummary(p Policy) string {
	var s string
	switch {
	case p.Hedging != nil:
		s = fmt.Sprintf("hedged, up to %d attempts, %s", p.MaxAttempts, hedgeDelay(p.Hedging))
	case p.MaxAttempts == 1:
		s = "not retried"
	default:
		s = fmt.Sprintf("retried, up to %d attempts, backoff %v ×%v up to %v", p.MaxAttempts, p.InitialBackoff, p.Multiplier, p.MaxBackoff)
	}
	if p.Timeout > 0 {
		s += fmt.Sprintf(", timeout %v", p.Timeout)
	}
	return s
}

func hedgeDelay(h *Hedging) string {
	switch {
	case h.Delay < 0:
		return "every attempt at once"
	case h.Delay == 0:
		return "one hedge each time a learned delay passes"
	}
	return fmt.Sprintf("one more attempt every %v", h.Delay)
}

func timeoutWords(d time.Duration) string {
	if d <= 0 {
		return "none of the route's own (the caller's deadline, if any, bounds the call)"
	}
	return d.String() + " for the whole call (all attempts and waits); an earlier deadline of the caller's stays"
}

// routesBudget describes the budget of route i among r.
func routesBudget(r Routes, i int) string {
	b := r[i].Policy.Budget
	var shared []string
	for j, rt := range r {
		if j != i && rt.Policy.Budget == b {
			shared = append(shared, "Routes["+strconv.Itoa(j)+"]")
		}
	}
	var s string
	switch {
	case b == nil:
		s = "the routes' shared default budget, one per RoutesDialOptions (or per interceptor)"
	case b == NoBudget:
		return "none (NoBudget)"
	default:
		s = fmt.Sprintf("the route's own %T", b)
	}
	if len(shared) > 0 {
		s += ", shared with " + strings.Join(shared, ", ")
	}
	return s
}

// matchReason says why a name of kind k applies to a method; noun is what
// holds the names: "route" or "entry" (of a service config).
func matchReason(k nameKind, noun string) string {
	switch k {
	case nameMethod:
		return "it names the method exactly"
	case nameService:
		return "it names the method's service, and no " + noun + " names the method"
	}
	return "the default " + noun + ": no " + noun + " names the method or its service"
}

// nameJSON renders a route name as the service config's name object.
func nameJSON(n string) string {
	svc, method, _ := strings.Cut(strings.TrimPrefix(n, "/"), "/")
	switch {
	case n == "":
		return "{}"
	case method == "":
		return fmt.Sprintf(`{"service": %q}`, svc)
	}
	return fmt.Sprintf(`{"service": %q, "method": %q}`, svc, method)
}

// entryName is one name of a route, for Explain.
type entryName struct {
	name  string
	kind  nameKind
	route int
	label string // how Explain cites it: where and the name
	where string // where it is: "Routes[1].Names[0]" or "methodConfig[1].name[0]"
}

// lookupName finds the name that applies to method, as gRPC and the
// router do: the exact method, then its service, then the default.
func lookupName(names []entryName, method string) (entryName, bool) {
	var svc, def *entryName
	service := ""
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		service = method[:i+1]
	}
	for i := range names {
		n := &names[i]
		switch {
		case n.kind == nameMethod && n.name == method:
			return *n, true
		case n.kind == nameService && n.name == service:
			svc = n
		case n.kind == nameDefault:
			def = n
		}
	}
	if svc != nil {
		return *svc, true
	}
	if def != nil {
		return *def, true
	}
	return entryName{}, false
}

// writeHints writes the near misses of method among names: names that
// differ from it in case, package, or by a typo. serviceMatched says the
// method's service has an entry (so only method names are compared).
func writeHints(b *strings.Builder, method string, names []entryName, serviceMatched bool) {
	var hints []string
	add := func(format string, args ...any) {
		h := fmt.Sprintf(format, args...)
		if !slices.Contains(hints, h) {
			hints = append(hints, h)
		}
	}
	svc, meth, ok := parseFullMethod(method)
	if !ok {
		add(`%q is not a full method name "/package.Service/Method": gRPC matches entries by full name`, method)
		bare := strings.Trim(method, "/")
		for _, n := range names {
			if n.kind == nameMethod {
				s, m, _ := parseFullMethod(n.name)
				if m == bare || s+"/"+m == bare {
					add("did you mean %s? (%s)", n.name, n.where)
				}
			}
		}
	} else {
		for _, n := range names {
			if n.kind != nameMethod {
				continue
			}
			s, m, _ := parseFullMethod(n.name)
			if s == svc && m != meth {
				if strings.EqualFold(m, meth) {
					add("%s names method %s, which differs in case: names are case-sensitive", n.where, m)
				} else if nearName(m, meth) {
					add("%s names method %s, close to %s: a typo?", n.where, m, meth)
				}
			}
		}
		if !serviceMatched {
			// Entries naming this very method in another service first: they
			// are the nearest misses.
			ordered := slices.Clone(names)
			slices.SortStableFunc(ordered, func(a, b entryName) int {
				_, ma, _ := parseFullMethod(a.name)
				_, mb, _ := parseFullMethod(b.name)
				switch {
				case ma == meth && mb != meth:
					return -1
				case mb == meth && ma != meth:
					return 1
				}
				return 0
			})
			done := map[string]bool{} // services already hinted at
			for _, n := range ordered {
				if n.kind == nameDefault {
					continue
				}
				s, m, _ := strings.Cut(strings.TrimPrefix(n.name, "/"), "/")
				if s == svc || done[s] {
					continue // the service has an exact entry for another method, or was hinted at
				}
				what := "service " + s
				if m == meth {
					what = n.name
				}
				switch {
				case strings.EqualFold(s, svc):
					add("%s names %s, whose service differs in case from %s: names are case-sensitive", n.where, what, svc)
				case lastSegment(s) == lastSegment(svc):
					add("%s names %s, in another package than %s: a service name includes its package", n.where, what, svc)
				case s == svc+"."+meth:
					add("%s names service %s, the method's full name: write {\"service\": %q, \"method\": %q}", n.where, s, svc, meth)
				case nearName(s, svc):
					add("%s names %s, whose service is close to %s: a typo?", n.where, what, svc)
				case m == meth:
					add("%s names %s: the same method in another service", n.where, what)
				default:
					continue
				}
				done[s] = true
			}
		}
	}
	if len(hints) == 0 && !serviceMatched {
		var svcs []string
		for _, n := range names {
			if n.kind == nameDefault {
				continue
			}
			s, _, _ := strings.Cut(strings.TrimPrefix(n.name, "/"), "/")
			if !slices.Contains(svcs, s) {
				svcs = append(svcs, s)
			}
		}
		switch {
		case len(names) == 0:
			add("the config names no method, service or default entry")
		case len(svcs) == 0:
			// Only a default entry: it matched, nothing to hint.
		case len(svcs) <= 5:
			add("the config names service(s) %s", strings.Join(svcs, ", "))
		default:
			add("the config names services %s and %d more", strings.Join(svcs[:5], ", "), len(svcs)-5)
		}
	}
	for _, h := range hints {
		b.WriteString("\n  hint: " + h)
	}
}

func lastSegment(s string) string {
	return s[strings.LastIndexByte(s, '.')+1:]
}

// nearName reports whether a and b are different names within a small edit
// distance (at most 2, or 1 for short names): a likely typo.
func nearName(a, b string) bool {
	if a == b || len(a) > 256 || len(b) > 256 {
		return false
	}
	limit := 2
	if utf8.RuneCountInString(a) < 6 || utf8.RuneCountInString(b) < 6 {
		limit = 1
	}
	return editDistance([]rune(a), []rune(b)) <= limit
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
