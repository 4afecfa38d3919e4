package retry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"

	"github.com/seed4f82f287/retry/interceptor"
)

// Route gives the methods that its Names match the policy Policy. See
// Routes.
type Route struct {
	// Names are the methods the route applies to, each one of:
	//
	//	"/package.Service/Method"  that method;
	//	"/package.Service/"        every method of the service that no
	//	                           route names exactly;
	//	""                         every method that no other route matches
	//	                           (the default route).
	//
	// These are the three forms of a gRPC service config's method names
	// (see ParseServiceConfig). At least one name is required, and a name
	// may appear once in all the routes. Service and method must not
	// contain "/" or white space.
	Names []string

	// Policy is the policy of the route's methods, zero fields taking
	// their defaults as everywhere (so Policy{} retries with the default
	// policy, and Policy{MaxAttempts: 1} never retries). Its Methods must
	// be empty: Names choose the methods. A nil Budget is the budget that
	// the routes share (see Routes).
	Policy Policy
}

// Routes gives each method of a client its own policy, in one pair of
// interceptors: long generations retried with backoff, embeddings with a
// short per-attempt timeout, tool calls never retried.
//
//	routes := retry.Routes{
//		{Names: []string{"/inference.v1.InferenceService/"}, Policy: retry.Policy{MaxAttempts: 3}},
//		{Names: []string{"/inference.v1.InferenceService/CallTool"}, Policy: retry.Policy{MaxAttempts: 1}},
//	}
//	conn, err := grpc.NewClient(target, append(retry.RoutesDialOptions(routes),
//		grpc.WithTransportCredentials(creds))...) // creds: your credentials.TransportCredentials
//
// A call's method chooses its route as gRPC chooses a method config: the
// route that names the method exactly, else the route that names its
// service, else the default route (name ""). The order of the routes does
// not matter. A method that no route matches passes through the
// interceptors untouched: one attempt, its error unchanged, no timeout.
//
// Budget: the routes whose Policy.Budget is nil share one budget, made
// when the interceptors are: the default budget that a Policy with a nil
// Budget gets (see Policy.Budget), one for all those routes instead of one
// each; RoutesDialOptions makes one for both of its interceptors. A route that sets its own Budget uses that one; set the
// same Budget value in several routes to share it between them, or with
// other clients.
//
// Routes is a plain value: the interceptors copy and compile it, so
// changing it afterwards has no effect on them. The interceptors are safe
// for concurrent use.
type Routes []Route

// Validate reports the first route that breaks a rule, as a *RouteError
// naming the route, the name or policy field, and the rule: a malformed
// name, a name that appears twice, a route without names, a policy that
// sets Methods, or an invalid policy (wrapping its *PolicyError).
func (r Routes) Validate() error {
	_, err := r.compile()
	return err
}

// RouteError reports a route that breaks a rule. Routes.Validate returns
// it, and RoutesUnary, RoutesStream and RoutesDialOptions panic with it.
type RouteError struct {
	Route int    // the index of the route in Routes
	Field string // the field at fault, e.g. "Names[1]" or "Policy.Multiplier"
	Value any    // the offending value
	Rule  string // the rule it breaks
	// Err is the route's *PolicyError when its policy is invalid, else nil.
	Err error
}

// Error returns "retry: invalid Routes[<Route>].<Field> <Value>: <Rule>".
func (e *RouteError) Error() string {
	v := fmt.Sprint(e.Value)
	if s, ok := e.Value.(string); ok {
		v = strconv.Quote(s)
	}
	return fmt.Sprintf("retry: invalid Routes[%d].%s %s: %s", e.Route, e.Field, v, e.Rule)
}

// Unwrap returns the route's *PolicyError, if the policy is at fault.
func (e *RouteError) Unwrap() error { return e.Err }

// RoutesUnary returns a unary client interceptor that retries each call
// under the policy of its route (see Routes).
//
// It panics with a *RouteError if r is invalid (see Routes.Validate), so a
// misconfigured client fails at start-up. The interceptor is safe for
// concurrent use.
func RoutesUnary(r Routes) grpc.UnaryClientInterceptor {
	return interceptor.Unary(mustRoute(r))
}

// RoutesStream returns a stream client interceptor that retries each stream
// under the policy of its route (see Routes), with the commit and replay
// rules of Stream.
//
// It panics with a *RouteError if r is invalid. The interceptor is safe for
// concurrent use.
func RoutesStream(r Routes) grpc.StreamClientInterceptor {
	return interceptor.Stream(mustRoute(r))
}

// RoutesDialOptions is DialOptions for routes: the unary and stream
// interceptors of r, sharing one compiled set of routes (so the routes
// without a Budget of their own share one budget across unary calls and
// streams), and grpc.WithDisableRetry(), so that grpc-go's own retry does
// not retry inside ours:
//
//	conn, err := grpc.NewClient(target, append(retry.RoutesDialOptions(routes),
//		grpc.WithTransportCredentials(creds))...) // creds: your credentials.TransportCredentials
//
// If a route's policy has Metrics, it also adds the stats handler that
// counts grpc-go's transparent retries, as DialOptions does.
//
// It panics with a *RouteError if r is invalid. It copies r: changing r
// afterwards has no effect. retry.DialOptions(policy) is the same for a
// single policy.
func RoutesDialOptions(r Routes) []grpc.DialOption {
	d := mustRoute(r)
	return dialOptions(d, d.metrics())
}

func mustRoute(r Routes) *router {
	d, err := r.compile()
	if err != nil {
		panic(err)
	}
	return d
}

// router is compiled Routes: an interceptor.Decider that picks a call's
// compiled policy in Begin (which records it in the call's State) and
// leaves the rest of the call (Failed, Wait, Hedge, Done) to that policy. It is
// immutable after compile and safe for concurrent use.
type router struct {
	exact   map[string]*compiled // "/package.Service/Method"
	service map[string]*compiled // "/package.Service/"
	def     *compiled            // the default route, or nil
}

// nameKind is the form of a route name.
type nameKind uint8

const (
	nameDefault nameKind = iota // ""
	nameService                 // "/package.Service/"
	nameMethod                  // "/package.Service/Method"
)

func (k nameKind) String() string {
	switch k {
	case nameService:
		return "service"
	case nameMethod:
		return "exact method"
	}
	return "default"
}

// routeNameRule is the rule a route name must follow.
const routeNameRule = `must be "/package.Service/Method", "/package.Service/" or "" (the default route), with no "/" inside service or method, and no white space, control characters or invalid UTF-8`

// parseRouteName returns the kind of a route name, and false if it is
// malformed.
func parseRouteName(n string) (nameKind, bool) {
	if n == "" {
		return nameDefault, true
	}
	if n[0] != '/' {
		return 0, false
	}
	svc, method, ok := strings.Cut(n[1:], "/")
	if !ok || !validNamePart(svc) || svc == "" || strings.Contains(method, "/") {
		return 0, false
	}
	if method == "" {
		return nameService, true
	}
	if !validNamePart(method) {
		return 0, false
	}
	return nameMethod, true
}

// validNamePart reports whether s (a service or a method name) has no
// slash, white space, control character or invalid UTF-8: such a name
// could never match a method a client calls.
func validNamePart(s string) bool {
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}

// parseFullMethod returns the service and method of a full method name
// "/service/method", and false if it is not one.
func parseFullMethod(m string) (svc, method string, ok bool) {
	if len(m) == 0 || m[0] != '/' {
		return "", "", false
	}
	svc, method, ok = strings.Cut(m[1:], "/")
	if !ok || svc == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return svc, method, true
}

func (r Routes) compile() (*router, error) {
	d := &router{exact: map[string]*compiled{}, service: map[string]*compiled{}}
	type place struct{ route, name int }
	seen := map[string]place{}
	var shared Budget // made once, if some route needs it
	for i, rt := range r {
		bad := func(field string, value any, rule string) (*router, error) {
			return nil, &RouteError{Route: i, Field: field, Value: value, Rule: rule}
		}
		if len(rt.Names) == 0 {
			return bad("Names", rt.Names, "must name at least one method, service, or the default route \"\"")
		}
		if len(rt.Policy.Methods) > 0 {
			return bad("Policy.Methods", rt.Policy.Methods, "must be empty in a route: the route's Names choose its methods")
		}
		p := rt.Policy
		if p.Budget == nil {
			if shared == nil {
				shared = Policy{}.withDefaults().Budget
			}
			p.Budget = shared
		}
		c, err := p.compile()
		if err != nil {
			pe, _ := err.(*PolicyError)
			if pe == nil {
				return nil, &RouteError{Route: i, Field: "Policy", Value: "", Rule: err.Error(), Err: err}
			}
			return nil, &RouteError{Route: i, Field: "Policy." + pe.Field, Value: pe.Value, Rule: pe.Rule, Err: pe}
		}
		for j, n := range rt.Names {
			field := "Names[" + strconv.Itoa(j) + "]"
			kind, ok := parseRouteName(n)
			if !ok {
				return bad(field, n, routeNameRule)
			}
			if prev, dup := seen[n]; dup {
				return bad(field, n, fmt.Sprintf("duplicate name, also Routes[%d].Names[%d]: a name may appear in one route only", prev.route, prev.name))
			}
			seen[n] = place{i, j}
			switch kind {
			case nameDefault:
				d.def = c
			case nameService:
				d.service[n] = c
			case nameMethod:
				d.exact[n] = c
			}
		}
	}
	return d, nil
}

// pick returns the compiled policy of method, or nil if no route matches:
// the exact method, then its service, then the default.
func (d *router) pick(method string) *compiled {
	if c, ok := d.exact[method]; ok {
		return c
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		if c, ok := d.service[method[:i+1]]; ok {
			return c
		}
	}
	return d.def
}

func (d *router) Begin(ctx context.Context, method string, opts []grpc.CallOption, call *interceptor.Call) (bool, error) {
	c := d.pick(method)
	if c == nil {
		return false, nil
	}
	return c.Begin(ctx, method, opts, call)
}

func (d *router) Failed(ctx context.Context, call *interceptor.Call, o interceptor.Outcome) (time.Duration, error) {
	return policyOf(call).Failed(ctx, call, o)
}

func (d *router) Wait(ctx context.Context, call *interceptor.Call, delay time.Duration) error {
	return policyOf(call).Wait(ctx, call, delay)
}

func (d *router) Hedge(ctx context.Context, call *interceptor.Call, alone bool) (bool, error) {
	return policyOf(call).Hedge(ctx, call, alone)
}

func (d *router) Done(ctx context.Context, call *interceptor.Call, err error) {
	policyOf(call).Done(ctx, call, err)
}

var _ interceptor.Decider = (*router)(nil)
