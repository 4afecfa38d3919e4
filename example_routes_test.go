package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// One client, many methods: every method of the service is retried up to 4
// times, Generate (long, expensive) only 3, and CallTool (a tool with side
// effects) never, all through one pair of interceptors sharing one budget.
func ExampleRoutes() {
	srv := &exampleServer{
		generate: failFirst(5, codes.Unavailable, ""),
		callTool: failFirst(5, codes.Unavailable, ""),
		streamGenerate: func(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
			if attempt <= 3 {
				return status.Error(codes.Unavailable, "model loading")
			}
			return sendTokens(stream, "Hello")
		},
	}
	fast := retry.Policy{InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}
	service, generate, never := fast, fast, fast
	service.MaxAttempts, generate.MaxAttempts, never.MaxAttempts = 4, 3, 1
	routes := retry.Routes{
		{Names: []string{"/inference.v1.InferenceService/"}, Policy: service},
		{Names: []string{"/inference.v1.InferenceService/Generate"}, Policy: generate},
		{Names: []string{"/inference.v1.InferenceService/CallTool"}, Policy: never},
	}
	client, stop := serve(srv, retry.RoutesDialOptions(routes)...)
	defer stop()
	ctx := context.Background()

	_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("Generate: %v after %d attempts\n", status.Code(err), srv.attempts(methodGenerate))

	_, err = client.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "send_email"})
	fmt.Printf("CallTool: %v after %d attempt\n", status.Code(err), srv.attempts(methodCallTool))

	stream, _ := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	for {
		tok, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("StreamGenerate: %q after %d attempts\n", tok.GetToken(), srv.attempts(methodStreamGenerate))
	}
	// Output:
	// Generate: Unavailable after 3 attempts
	// CallTool: Unavailable after 1 attempt
	// StreamGenerate: "Hello" after 4 attempts
}

// A service config's retry settings, read into routes: Generate and every
// other method of the service retried on UNAVAILABLE, CallTool never (an
// entry without a retryPolicy shadows the service's). The maxAttempts of
// 10 is clamped to 5, as gRFC A6 says, and the notes say so.
func ExampleParseServiceConfig() {
	sc, err := retry.ParseServiceConfig([]byte(`{
		"methodConfig": [{
			"name": [{"service": "inference.v1.InferenceService"}],
			"timeout": "10s",
			"retryPolicy": {
				"maxAttempts": 10,
				"initialBackoff": "0.001s",
				"maxBackoff": "0.01s",
				"backoffMultiplier": 2,
				"retryableStatusCodes": ["UNAVAILABLE"]
			}
		}, {
			"name": [{"service": "inference.v1.InferenceService", "method": "CallTool"}]
		}],
		"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range sc.Notes() {
		fmt.Println("note:", n)
	}

	srv := &exampleServer{
		generate: failFirst(2, codes.Unavailable, "Hello!"),
		callTool: failFirst(1, codes.Unavailable, "sent"),
	}
	client, stop := serve(srv, sc.DialOptions()...) // includes grpc.WithDisableRetry()
	defer stop()
	ctx := context.Background()

	resp, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("Generate: %q %v after %d attempts\n", resp.GetText(), status.Code(err), srv.attempts(methodGenerate))
	_, err = client.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "send_email"})
	fmt.Printf("CallTool: %v after %d attempt\n", status.Code(err), srv.attempts(methodCallTool))
	// Output:
	// note: methodConfig[0].retryPolicy.maxAttempts: 10 clamped to 5, gRFC A6's client-side limit (ParseOptions.AllowMoreAttempts keeps 10)
	// Generate: "Hello!" OK after 3 attempts
	// CallTool: Unavailable after 1 attempt
}

// "My service config does nothing": Explain says which entry applies to a
// method, or why none does. Here the config names the service in another
// package (v1 for v2).
func ExampleServiceConfig_Explain() {
	sc, err := retry.ParseServiceConfig([]byte(`{"methodConfig": [{
		"name": [{"service": "inference.v1.InferenceService"}],
		"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
			"backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
	}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sc.Explain("/inference.v2.InferenceService/Generate"))
	fmt.Println(sc.Explain("/inference.v1.InferenceService/Generate"))
	// Output:
	// /inference.v2.InferenceService/Generate: no entry matches; calls pass through untouched (one attempt, no timeout, error unchanged)
	//   hint: methodConfig[0].name[0] names service inference.v1.InferenceService, in another package than inference.v2.InferenceService: a service name includes its package
	// /inference.v1.InferenceService/Generate: methodConfig[0] applies (it names the method's service, and no entry names the method): retried, up to 3 attempts, on UNAVAILABLE, backoff 100ms ×2 up to 1s
	//   matched by methodConfig[0].name[0] {"service": "inference.v1.InferenceService"}
	//   attempts: up to 3 in all, the first included
	//   backoff: 100ms, ×2 per retry, at most 1s; full jitter (each wait uniform in [0, backoff), gRFC A6)
	//   retried: UNAVAILABLE; every other code is returned at once
	//   timeout: none of the route's own (the caller's deadline, if any, bounds the call)
	//   budget: the default budget, one per client shared by all its routes (the config has no retryThrottling)
	//   note: retryThrottling: absent: retries are limited by this package's default budget, shared by the routes of a client, where gRPC would not limit them (ParseOptions.Budget = NoBudget retries as gRPC does)
}

// Errors name the JSON path and the rule.
func ExampleParseServiceConfig_errors() {
	for _, js := range []string{
		`{"methodConfig": [{"name": [{"service": "a.B"}], "retryPolicy": {"maxAttempts": 1}}]}`,
		`{"methodConfig": [{"name": [{"service": "a.B"}], "timeout": "100ms"}]}`,
		`{"methodConfig": [{"name": [{"service": "a.B"}]}, {"name": [{"service": "a.B"}]}]}`,
	} {
		_, err := retry.ParseServiceConfig([]byte(js))
		var sce *retry.ServiceConfigError
		if errors.As(err, &sce) {
			fmt.Printf("%s: %v\n", sce.Path, err)
		}
	}
	// Output:
	// methodConfig[0].retryPolicy.maxAttempts: retry: invalid service config: methodConfig[0].retryPolicy.maxAttempts: must be at least 2 (gRFC A6), got 1
	// methodConfig[0].timeout: retry: invalid service config: methodConfig[0].timeout: must be a duration in gRPC's JSON form: seconds with up to 9 fractional digits and the suffix "s", such as "0.1s" or "2s" (write "0.1s"), got "100ms"
	// methodConfig[1].name[0]: retry: invalid service config: methodConfig[1].name[0]: duplicate name /a.B/, also methodConfig[0].name[0]: each name may appear once in a service config
}

// ParseOptions widens what the config may ask for: AllowMoreAttempts keeps
// a maxAttempts above gRFC A6's 5, and Budget replaces the default budget
// of a config without retryThrottling (NoBudget: retry as grpc-go would).
func ExampleParseOptions() {
	js := []byte(`{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 8,
		"initialBackoff": "0.001s", "maxBackoff": "0.001s", "backoffMultiplier": 1,
		"retryableStatusCodes": ["UNAVAILABLE"]}}]}`)
	sc, err := retry.ParseOptions{AllowMoreAttempts: true, Budget: retry.NoBudget}.Parse(js)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &exampleServer{generate: failFirst(100, codes.Unavailable, "")}
	client, stop := serve(srv, sc.DialOptions()...)
	defer stop()
	_, err = client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("%v after %d attempts\n", status.Code(err), srv.attempts(methodGenerate))
	// Output:
	// Unavailable after 8 attempts
}

// Explain says which route applies to a method and what it does, or why
// no route does (here a method of the service's next version, in another
// package).
func ExampleRoutes_Explain() {
	routes := retry.Routes{
		{Names: []string{"/inference.v1.InferenceService/"}, Policy: retry.Policy{MaxAttempts: 3}},
		{Names: []string{"/inference.v1.InferenceService/CallTool"}, Policy: retry.Policy{MaxAttempts: 1}},
	}
	fmt.Println(routes.Explain("/inference.v1.InferenceService/Generate"))
	fmt.Println(routes.Explain("/inference.v1.InferenceService/CallTool"))
	fmt.Println(routes.Explain("/inference.v2.InferenceService/Generate"))
	// Output:
	// /inference.v1.InferenceService/Generate: Routes[0] applies (it names the method's service, and no route names the method): retried, up to 3 attempts, backoff 1s ×2 up to 10s
	//   matched by Routes[0].Names[0] "/inference.v1.InferenceService/"
	//   attempts: up to 3 in all, the first included
	//   backoff: 1s, ×2 per retry, at most 10s; full jitter
	//   retried: UNAVAILABLE, RESOURCE_EXHAUSTED (except a spent quota) and an attempt's DEADLINE_EXCEEDED, by the default Classify (codes.go); every other code is returned at once
	//   timeout: none of the route's own (the caller's deadline, if any, bounds the call)
	//   budget: the routes' shared default budget, one per RoutesDialOptions (or per interceptor), shared with Routes[1]
	// /inference.v1.InferenceService/CallTool: Routes[1] applies (it names the method exactly): not retried
	//   matched by Routes[1].Names[0] "/inference.v1.InferenceService/CallTool"
	//   attempts: 1, never retried
	//   timeout: none of the route's own (the caller's deadline, if any, bounds the call)
	// /inference.v2.InferenceService/Generate: no route matches; calls pass through untouched (one attempt, no timeout, error unchanged)
	//   hint: Routes[0].Names[0] names service inference.v1.InferenceService, in another package than inference.v2.InferenceService: a service name includes its package
}

// Validate names the route, the field and the rule an invalid route
// breaks; RoutesUnary, RoutesStream and RoutesDialOptions panic with the
// same error.
func ExampleRoutes_Validate() {
	for _, routes := range []retry.Routes{
		{{Names: []string{"Generate"}, Policy: retry.Policy{MaxAttempts: 3}}},
		{
			{Names: []string{"/inference.v1.InferenceService/"}},
			{Names: []string{"/inference.v1.InferenceService/Embed", "/inference.v1.InferenceService/"}},
		},
		{{Names: []string{""}, Policy: retry.Policy{Multiplier: 0.5}}},
	} {
		err := routes.Validate()
		fmt.Println(err)
		var re *retry.RouteError
		var pe *retry.PolicyError
		if errors.As(err, &re) && errors.As(err, &pe) {
			fmt.Printf("  Routes[%d], policy field %s\n", re.Route, pe.Field)
		}
	}
	// Output:
	// retry: invalid Routes[0].Names[0] "Generate": must be "/package.Service/Method", "/package.Service/" or "" (the default route), with no "/" inside service or method, and no white space, control characters or invalid UTF-8
	// retry: invalid Routes[1].Names[1] "/inference.v1.InferenceService/": duplicate name, also Routes[0].Names[0]: a name may appear in one route only
	// retry: invalid Routes[0].Policy.Multiplier 0.5: must be at least 1 (0 means the default, 2)
	//   Routes[0], policy field Multiplier
}

// RoutesUnary and RoutesStream are the two interceptors of
// RoutesDialOptions, for a client that chains its interceptors by hand.
// Built separately, each makes its own budget for the routes without one
// (RoutesDialOptions makes one for both).
func ExampleRoutesUnary() {
	srv := &exampleServer{
		generate: failFirst(1, codes.Unavailable, "Hello!"),
		streamGenerate: func(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
			if attempt <= 2 {
				return status.Error(codes.Unavailable, "model loading")
			}
			return sendTokens(stream, "Hel", "lo")
		},
	}
	fast := retry.Policy{InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}
	routes := retry.Routes{
		{Names: []string{"/inference.v1.InferenceService/"}, Policy: fast},
	}
	client, stop := serve(srv,
		grpc.WithChainUnaryInterceptor(retry.RoutesUnary(routes)),
		grpc.WithChainStreamInterceptor(retry.RoutesStream(routes)),
		grpc.WithDisableRetry(), // one retry layer, not two
	)
	defer stop()
	ctx := context.Background()

	resp, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("Generate: %q %v after %d attempts\n", resp.GetText(), status.Code(err), srv.attempts(methodGenerate))

	stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	var text string
	for {
		tok, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		text += tok.GetToken()
	}
	fmt.Printf("StreamGenerate: %q after %d attempts\n", text, srv.attempts(methodStreamGenerate))
	// Output:
	// Generate: "Hello!" OK after 2 attempts
	// StreamGenerate: "Hello" after 3 attempts
}

// The routes of a service config are plain values: add what its JSON
// cannot say (here a hook on every retry) before building the client.
func ExampleServiceConfig_Routes() {
	sc, err := retry.ParseServiceConfig([]byte(`{"methodConfig": [{
		"name": [{"service": "inference.v1.InferenceService"}],
		"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
			"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}
	}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	routes := sc.Routes() // new routes on every call: change them freely
	for i := range routes {
		routes[i].Policy.OnRetry = func(ev retry.RetryEvent) {
			fmt.Printf("retrying %s after attempt %d: %v\n", ev.Method, ev.Attempt, ev.Code)
		}
	}
	srv := &exampleServer{generate: failFirst(2, codes.Unavailable, "Hello!")}
	client, stop := serve(srv, retry.RoutesDialOptions(routes)...)
	defer stop()

	resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("Generate: %q %v\n", resp.GetText(), err)
	// Output:
	// retrying /inference.v1.InferenceService/Generate after attempt 1: Unavailable
	// retrying /inference.v1.InferenceService/Generate after attempt 2: Unavailable
	// Generate: "Hello!" <nil>
}
