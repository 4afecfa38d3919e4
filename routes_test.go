package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry/interceptor"
)

const (
	svcName   = "/pkg.Svc/"
	methodA   = "/pkg.Svc/A"
	methodB   = "/pkg.Svc/B"
	otherC    = "/other.Svc/C"
	fastDelay = time.Millisecond
)

// fastRoute returns a policy with MaxAttempts n that retries at once on a
// fake clock, without a budget unless one is set later.
func fastRoute(n int, clk clock) Policy {
	return Policy{MaxAttempts: n, InitialBackoff: fastDelay, Jitter: NoJitter, Budget: NoBudget, clock: clk}
}

// callRouted makes one unary call of method through the compiled routes
// against an invoker that always fails with err, and returns the attempts
// the invoker saw and the call's error.
func callRouted(t *testing.T, d *router, method string, err error, opts ...grpc.CallOption) (int, error) {
	t.Helper()
	attempts := 0
	invoker := func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		if m != method {
			t.Errorf("invoker got method %q, want %q", m, method)
		}
		attempts++
		return err
	}
	got := interceptor.Unary(d)(context.Background(), method, nil, nil, nil, invoker, opts...)
	return attempts, got
}

func mustCompileRoutes(t *testing.T, r Routes) *router {
	t.Helper()
	d, err := r.compile()
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return d
}

// TestRoutesMatchLikeGRPC: an exact method name wins over its service,
// which wins over the default; a method matching nothing passes through
// untouched (one attempt, the invoker's error itself, not a *Error).
func TestRoutesMatchLikeGRPC(t *testing.T) {
	clk := newFakeClock()
	routes := Routes{
		{Names: []string{""}, Policy: fastRoute(4, clk)},
		{Names: []string{svcName}, Policy: fastRoute(3, clk)},
		{Names: []string{methodA}, Policy: fastRoute(2, clk)},
	}
	unavailable := status.Error(codes.Unavailable, "down")
	// The order of the routes does not matter: try every rotation.
	for rot := range routes {
		r := append(append(Routes{}, routes[rot:]...), routes[:rot]...)
		d := mustCompileRoutes(t, r)
		for _, tc := range []struct {
			method string
			want   int
		}{
			{methodA, 2},          // exact
			{methodB, 3},          // service
			{otherC, 4},           // default
			{"/pkg.Svc/A/x", 4},   // not the exact name nor in the service: default
			{"/pkg.Svcx/A", 4},    // a service prefix is not the service
			{"/pkg.Svc.Sub/A", 4}, // nor is a longer service name
		} {
			n, err := callRouted(t, d, tc.method, unavailable)
			if n != tc.want {
				t.Errorf("rotation %d: %s made %d attempts, want %d", rot, tc.method, n, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Attempts != tc.want || e.Reason != StopMaxAttempts || status.Code(err) != codes.Unavailable {
				t.Errorf("rotation %d: %s: error %v, want a *Error after %d attempts keeping Unavailable", rot, tc.method, err, tc.want)
			}
		}
	}

	noDefault := mustCompileRoutes(t, routes[1:])
	n, err := callRouted(t, noDefault, otherC, unavailable)
	if n != 1 || err != unavailable {
		t.Fatalf("unmatched method: %d attempts, error %#v; want 1 attempt and the invoker's own error", n, err)
	}
}

// TestRoutesKeepEachRoutesPolicy: Failed, Wait and the hooks are those of
// the route that Begin chose, call after call, interleaved.
func TestRoutesKeepEachRoutesPolicy(t *testing.T) {
	clkA, clkB := newFakeClock(), newFakeClock()
	var retriedA, retriedB []string
	pa := fastRoute(3, clkA)
	pa.InitialBackoff = 7 * time.Millisecond
	pa.OnRetry = func(ev RetryEvent) { retriedA = append(retriedA, ev.Method) }
	pb := fastRoute(2, clkB)
	pb.InitialBackoff = 11 * time.Millisecond
	pb.OnRetry = func(ev RetryEvent) { retriedB = append(retriedB, ev.Method) }
	d := mustCompileRoutes(t, Routes{{Names: []string{methodA}, Policy: pa}, {Names: []string{svcName}, Policy: pb}})

	unavailable := status.Error(codes.Unavailable, "down")
	for range 2 {
		if n, _ := callRouted(t, d, methodA, unavailable); n != 3 {
			t.Fatalf("A: %d attempts, want 3", n)
		}
		if n, _ := callRouted(t, d, methodB, unavailable); n != 2 {
			t.Fatalf("B: %d attempts, want 2", n)
		}
	}
	if got := fmt.Sprint(clkA.Sleeps()); got != "[7ms 14ms 7ms 14ms]" {
		t.Errorf("A's waits %s, want its own backoff [7ms 14ms 7ms 14ms]", got)
	}
	if got := fmt.Sprint(clkB.Sleeps()); got != "[11ms 11ms]" {
		t.Errorf("B's waits %s, want its own backoff [11ms 11ms]", got)
	}
	if len(retriedA) != 4 || len(retriedB) != 2 || retriedA[0] != methodA || retriedB[0] != methodB {
		t.Errorf("OnRetry: A saw %v, B saw %v", retriedA, retriedB)
	}
}

// TestRoutesShareOneBudget: routes without a Budget share one (the
// default), made once per compile; a route with its own keeps it.
func TestRoutesShareOneBudget(t *testing.T) {
	own := NewThrottle(10, 0.1)
	r := Routes{
		{Names: []string{methodA}},
		{Names: []string{svcName}},
		{Names: []string{otherC}, Policy: Policy{Budget: own}},
	}
	d := mustCompileRoutes(t, r)
	a, svc, c := d.exact[methodA], d.service[svcName], d.exact[otherC]
	if a.Budget == nil || a.Budget != svc.Budget {
		t.Fatalf("routes without a Budget got %p and %p, want one shared budget", a.Budget, svc.Budget)
	}
	if _, ok := a.Budget.(*CreditBudget); !ok {
		t.Fatalf("shared budget is %T, want the default *CreditBudget", a.Budget)
	}
	if c.Budget != own {
		t.Fatalf("route with its own Budget got %T %p, want its own", c.Budget, c.Budget)
	}
	if d2 := mustCompileRoutes(t, r); d2.exact[methodA].Budget == a.Budget {
		t.Fatalf("two compiles share a budget; each set of interceptors should have its own")
	}
	if r[0].Policy.Budget != nil {
		t.Fatalf("compile changed the caller's Routes")
	}
}

// TestRoutesSharedBudgetDrainsAcrossMethods: the shared budget is one
// budget in behaviour too: failed retries of one method use up the
// retries of another.
func TestRoutesSharedBudgetDrainsAcrossMethods(t *testing.T) {
	clk := newFakeClock()
	p := fastRoute(10, clk)
	p.Budget = nil
	d := mustCompileRoutes(t, Routes{{Names: []string{methodA}, Policy: p}, {Names: []string{methodB}, Policy: p}})
	unavailable := status.Error(codes.Unavailable, "down")
	nA, _ := callRouted(t, d, methodA, unavailable)
	nB, err := callRouted(t, d, methodB, unavailable)
	var e *Error
	if nA >= 10 || nB != 1 || !errors.As(err, &e) || e.Reason != StopBudget {
		t.Fatalf("A made %d attempts, then B %d (%v); want A stopped by the budget and B denied its first retry", nA, nB, err)
	}
}

func TestRoutesCallOptions(t *testing.T) {
	clk := newFakeClock()
	d := mustCompileRoutes(t, Routes{{Names: []string{svcName}, Policy: fastRoute(4, clk)}})
	unavailable := status.Error(codes.Unavailable, "down")
	if n, _ := callRouted(t, d, methodA, unavailable, WithMaxAttempts(2)); n != 2 {
		t.Errorf("WithMaxAttempts(2): %d attempts", n)
	}
	if n, err := callRouted(t, d, methodA, unavailable, Disable()); n != 1 || err != unavailable {
		t.Errorf("Disable(): %d attempts, %v", n, err)
	}
	if _, err := callRouted(t, d, methodA, unavailable, WithMaxAttempts(0)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("WithMaxAttempts(0): %v, want InvalidArgument", err)
	}
}

// TestRoutesStream: the stream interceptor routes too; an unmatched stream
// is the streamer's own.
func TestRoutesStream(t *testing.T) {
	clk := newFakeClock()
	d := mustCompileRoutes(t, Routes{{Names: []string{methodA}, Policy: fastRoute(3, clk)}})
	for _, tc := range []struct {
		method string
		want   int
	}{{methodA, 3}, {methodB, 1}} {
		attempts := 0
		streamer := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			attempts++
			return nil, status.Error(codes.Unavailable, "down")
		}
		_, err := interceptor.Stream(d)(context.Background(), &grpc.StreamDesc{ServerStreams: true}, nil, tc.method, streamer)
		if attempts != tc.want || status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %d stream attempts (%v), want %d", tc.method, attempts, err, tc.want)
		}
	}
}

func TestRoutesValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes Routes
		route  int
		field  string
		rule   string
	}{
		{"no names", Routes{{}}, 0, "Names", "at least one"},
		{"bare method", Routes{{Names: []string{"Generate"}}}, 0, "Names[0]", "/package.Service/Method"},
		{"no leading slash", Routes{{Names: []string{"pkg.Svc/M"}}}, 0, "Names[0]", "/package.Service/Method"},
		{"service without trailing slash", Routes{{Names: []string{"/pkg.Svc"}}}, 0, "Names[0]", "/package.Service/"},
		{"extra slash", Routes{{Names: []string{"/pkg.Svc/M/x"}}}, 0, "Names[0]", `no "/" inside`},
		{"empty service", Routes{{Names: []string{"//M"}}}, 0, "Names[0]", "/package.Service/Method"},
		{"root", Routes{{Names: []string{"/"}}}, 0, "Names[0]", "/package.Service/Method"},
		{"space", Routes{{Names: []string{"/pkg.Svc /M"}}}, 0, "Names[0]", "white space"},
		{"invalid UTF-8", Routes{{Names: []string{"/pkg.Svc/\xff"}}}, 0, "Names[0]", "invalid UTF-8"},
		{"control character", Routes{{Names: []string{"/pkg.Svc\x00/"}}}, 0, "Names[0]", "control characters"},
		{"duplicate across routes", Routes{{Names: []string{methodA}}, {Names: []string{methodB, methodA}}}, 1, "Names[1]", "duplicate name, also Routes[0].Names[0]"},
		{"duplicate default", Routes{{Names: []string{""}}, {Names: []string{""}}}, 1, "Names[0]", "duplicate"},
		{"duplicate within", Routes{{Names: []string{svcName, svcName}}}, 0, "Names[1]", "duplicate name, also Routes[0].Names[0]"},
		{"methods set", Routes{{Names: []string{svcName}, Policy: Policy{Methods: []string{methodA}}}}, 0, "Policy.Methods", "must be empty"},
		{"invalid policy", Routes{{Names: []string{methodA}}, {Names: []string{methodB}, Policy: Policy{Multiplier: 0.5}}}, 1, "Policy.Multiplier", "at least 1"},
		{"invalid budget", Routes{{Names: []string{methodA}, Policy: Policy{Budget: NewThrottle(0, 1)}}}, 0, "Policy.Budget", "maxTokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.routes.Validate()
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("Validate() = %v, want a *RouteError", err)
			}
			if re.Route != tc.route || re.Field != tc.field || !strings.Contains(re.Rule, tc.rule) {
				t.Fatalf("Validate() = %q: Routes[%d].%s, want Routes[%d].%s with a rule containing %q", err, re.Route, re.Field, tc.route, tc.field, tc.rule)
			}
			if want := fmt.Sprintf("retry: invalid Routes[%d].%s ", tc.route, tc.field); !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("message %q does not start with %q", err, want)
			}
			var pe *PolicyError
			if strings.HasPrefix(tc.field, "Policy.") && tc.field != "Policy.Methods" && !errors.As(err, &pe) {
				t.Fatalf("an invalid policy's error does not unwrap to its *PolicyError")
			}
			for name, build := range map[string]func(){
				"RoutesUnary":       func() { RoutesUnary(tc.routes) },
				"RoutesStream":      func() { RoutesStream(tc.routes) },
				"RoutesDialOptions": func() { RoutesDialOptions(tc.routes) },
			} {
				func() {
					defer func() {
						if p, _ := recover().(*RouteError); p == nil || p.Error() != err.Error() {
							t.Errorf("%s did not panic with the *RouteError", name)
						}
					}()
					build()
				}()
			}
		})
	}
}

func TestRoutesValidAccepts(t *testing.T) {
	for _, r := range []Routes{
		nil,
		{{Names: []string{""}}},
		{{Names: []string{"/Svc/M", "/Svc/", "/a.b.c.Svc/Method_1", ""}}},
		{{Names: []string{methodA}}, {Names: []string{svcName}}, {Names: []string{"/pkg.Svc2/"}}},
	} {
		if err := r.Validate(); err != nil {
			t.Errorf("%v: %v", r, err)
		}
		RoutesDialOptions(r) // does not panic
	}
}

// TestRoutesConcurrent runs calls of several methods at once through one
// compiled set of routes (for the race detector).
func TestRoutesConcurrent(t *testing.T) {
	clk := newFakeClock()
	d := mustCompileRoutes(t, Routes{
		{Names: []string{methodA}, Policy: fastRoute(2, clk)},
		{Names: []string{svcName}, Policy: fastRoute(3, clk)},
		{Names: []string{""}, Policy: Policy{MaxAttempts: 1}},
	})
	methods := []string{methodA, methodB, otherC}
	want := map[string]int{methodA: 2, methodB: 3, otherC: 1}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 50 {
				m := methods[(g+i+rand.IntN(3))%3]
				attempts := 0
				invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					attempts++
					return status.Error(codes.Unavailable, "down")
				}
				_ = interceptor.Unary(d)(context.Background(), m, nil, nil, nil, invoker)
				if attempts != want[m] {
					done <- fmt.Errorf("%s: %d attempts, want %d", m, attempts, want[m])
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
