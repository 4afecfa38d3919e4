package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// The examples run against an in-memory server (examplesrv_test.go) and use
// NoJitter and 1ms backoffs so that their output is exact; real policies
// keep the default jitter and backoffs.

// A client whose calls are retried: the server fails twice with
// Unavailable, then answers.
func Example() {
	srv := &exampleServer{generate: failFirst(2, codes.Unavailable, "Hello!")}
	policy := retry.Policy{
		MaxAttempts:    4, // the first attempt and up to 3 retries
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry: func(ev retry.RetryEvent) {
			fmt.Printf("attempt %d: %v, retrying in %v\n", ev.Attempt, ev.Code, ev.Delay)
		},
	}
	client, stop := serve(srv,
		grpc.WithChainUnaryInterceptor(retry.Unary(policy)),
		grpc.WithChainStreamInterceptor(retry.Stream(policy)),
		grpc.WithDisableRetry(), // one retry layer, not two
	)
	defer stop()

	resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("response:", resp.GetText())
	// Output:
	// attempt 1: Unavailable, retrying in 1ms
	// attempt 2: Unavailable, retrying in 2ms
	// response: Hello!
}

// The zero Policy is the default policy: a Policy only needs the fields that
// differ from the defaults.
func ExamplePolicy() {
	p := retry.DefaultPolicy()
	fmt.Println("attempts:", p.MaxAttempts)
	fmt.Printf("backoff: %v ×%v up to %v, %v jitter\n", p.InitialBackoff, p.Multiplier, p.MaxBackoff, p.Jitter)
	fmt.Println("longest pushback honoured:", p.MaxPushback)
	fmt.Println("zero Policy valid:", retry.Policy{}.Validate() == nil)

	production := retry.Policy{
		MaxAttempts:       3,
		PerAttemptTimeout: 2 * time.Second,
		Methods:           []string{"/inference.v1.InferenceService/Generate"},
	}
	fmt.Println("production policy valid:", production.Validate() == nil)
	// Output:
	// attempts: 4
	// backoff: 1s ×2 up to 10s, full jitter
	// longest pushback honoured: 30s
	// zero Policy valid: true
	// production policy valid: true
}

// Per-call options override the policy for one call.
func ExampleWithMaxAttempts() {
	srv := &exampleServer{generate: failFirst(100, codes.Unavailable, "")}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		MaxAttempts:    4,
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	})...)
	defer stop()
	ctx := context.Background()
	req := &inferencev1.GenerateRequest{Prompt: "Hi"}

	_, err := client.Generate(ctx, req, retry.WithMaxAttempts(2))
	var e *retry.Error
	if errors.As(err, &e) {
		fmt.Printf("WithMaxAttempts(2): %v after %d attempts\n", status.Code(err), e.Attempts)
	}

	before := srv.attempts(methodGenerate)
	_, err = client.Generate(ctx, req, retry.Disable())
	fmt.Printf("Disable(): %v after %d attempt, error unwrapped: %v\n",
		status.Code(err), srv.attempts(methodGenerate)-before, !errors.As(err, &e))
	// Output:
	// WithMaxAttempts(2): Unavailable after 2 attempts
	// Disable(): Unavailable after 1 attempt, error unwrapped: true
}

// Methods keeps methods that are not safe to retry out of the policy: here
// Generate is retried, CallTool (a tool with side effects) is not.
func ExamplePolicy_methods() {
	srv := &exampleServer{
		generate: failFirst(1, codes.Unavailable, "text"),
		callTool: failFirst(1, codes.Unavailable, "sent"),
	}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		Methods:        []string{"/inference.v1.InferenceService/Generate"},
	})...)
	defer stop()
	ctx := context.Background()

	gen, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("Generate: %q, %v, %d attempts\n", gen.GetText(), status.Code(err), srv.attempts(methodGenerate))

	_, err = client.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "send_email"})
	fmt.Printf("CallTool: %v, %d attempt\n", status.Code(err), srv.attempts(methodCallTool))
	// Output:
	// Generate: "text", OK, 2 attempts
	// CallTool: Unavailable, 1 attempt
}

// A server-streaming call is retried until its first response: the first
// attempt fails before any token, and the caller reads every token once.
func ExampleStream() {
	srv := &exampleServer{
		streamGenerate: func(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
			if attempt == 1 {
				return status.Error(codes.Unavailable, "model loading")
			}
			return sendTokens(stream, "Hello", ",", " world")
		},
	}
	policy := retry.Policy{
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry: func(ev retry.RetryEvent) {
			fmt.Printf("attempt %d: %v before the first token, retrying\n", ev.Attempt, ev.Code)
		},
	}
	client, stop := serve(srv, grpc.WithChainStreamInterceptor(retry.Stream(policy)), grpc.WithDisableRetry())
	defer stop()

	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	for {
		tok, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("token %d: %q\n", tok.GetIndex(), tok.GetToken())
	}
	// Output:
	// attempt 1: Unavailable before the first token, retrying
	// token 0: "Hello"
	// token 1: ","
	// token 2: " world"
}

// OnRetry sees every retry: which attempt failed and how, and how long the
// call waits before the next one, and why (backoff or server pushback).
func ExamplePolicy_onRetry() {
	srv := &exampleServer{
		generate: func(ctx context.Context, attempt int) (string, error) {
			switch attempt {
			case 1:
				return "", status.Error(codes.Unavailable, "connection reset")
			case 2:
				return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "over rate limit", 3*time.Millisecond)
			}
			return "done", nil
		},
	}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry: func(ev retry.RetryEvent) {
			why := "backoff"
			if ev.Pushback {
				why = "server pushback"
			}
			fmt.Printf("%s attempt %d: %v (%v); %s %v\n", ev.Method, ev.Attempt, ev.Code, ev.Class, why, ev.Delay)
		},
	})...)
	defer stop()

	resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Println(resp.GetText(), status.Code(err))
	// Output:
	// /inference.v1.InferenceService/Generate attempt 1: Unavailable (transient); backoff 1ms
	// /inference.v1.InferenceService/Generate attempt 2: ResourceExhausted (rate-limited); server pushback 3ms
	// done OK
}

// LogRetries logs every retry to a go-grpc-middleware logging.Logger; here
// the standard adapter for log/slog (without timestamps, for the example).
// Fields the call's context carries (logging.InjectFields) are logged too.
func ExampleLogRetries() {
	handler := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	logger := slog.New(handler)
	l := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})

	srv := &exampleServer{generate: failFirst(1, codes.Unavailable, "ok")}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry:        retry.LogRetries(l),
	})...)
	defer stop()

	ctx := logging.InjectLogField(context.Background(), "request.id", "r-42")
	if _, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"}); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// level=INFO msg="retrying call" grpc.component=client grpc.service=inference.v1.InferenceService grpc.method=Generate grpc.code=Unavailable grpc.error="rpc error: code = Unavailable desc = attempt 1 failed" grpc.retry.attempt=1 grpc.retry.class=transient grpc.retry.delay=1ms grpc.retry.pushback=false request.id=r-42
}

// A server says "come back in 5ms": RetryAfter sets the
// grpc-retry-pushback-ms trailer and a google.rpc.RetryInfo detail, and the
// client waits exactly that long instead of its own backoff.
func ExampleRetryAfter() {
	srv := &exampleServer{
		generate: func(ctx context.Context, attempt int) (string, error) {
			if attempt <= 2 {
				return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "busy", 5*time.Millisecond)
			}
			return "done", nil
		},
	}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		InitialBackoff: time.Second, // the pushback replaces it
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry: func(ev retry.RetryEvent) {
			fmt.Printf("retrying in %v (server pushback: %v)\n", ev.Delay, ev.Pushback)
		},
	})...)
	defer stop()
	ctx := context.Background()
	req := &inferencev1.GenerateRequest{Prompt: "Hi"}

	// What the server sends, seen by a call that is not retried.
	var trailer metadata.MD
	_, err := client.Generate(ctx, req, retry.Disable(), grpc.Trailer(&trailer))
	fmt.Println(retry.PushbackTrailer+":", trailer.Get(retry.PushbackTrailer))
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			fmt.Println("RetryInfo.retry_delay:", ri.GetRetryDelay().AsDuration())
		}
	}

	// A retried call honours it.
	resp, err := client.Generate(ctx, req)
	fmt.Println(resp.GetText(), status.Code(err))
	// Output:
	// grpc-retry-pushback-ms: [5]
	// RetryInfo.retry_delay: 5ms
	// retrying in 5ms (server pushback: true)
	// done OK
}

// A server that sheds load says "do not retry": the client stops after one
// attempt, whatever its policy allows.
func ExampleDoNotRetry() {
	srv := &exampleServer{
		generate: func(ctx context.Context, _ int) (string, error) {
			return "", retry.DoNotRetry(ctx, codes.Unavailable, "shedding load")
		},
	}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{MaxAttempts: 4, Budget: retry.NoBudget})...)
	defer stop()

	_, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	var e *retry.Error
	if errors.As(err, &e) {
		fmt.Printf("%v after %d attempt: %v\n", status.Code(err), e.Attempts, e.Reason)
	}
	// Output:
	// Unavailable after 1 attempt: server pushback: do not retry
}

// DialOptions sets up retrying in one line: the unary and stream
// interceptors, sharing one policy and budget, and grpc-go's own retry off.
func ExampleDialOptions() {
	srv := &exampleServer{generate: failFirst(1, codes.Unavailable, "Hello!")}
	policy := retry.Policy{
		MaxAttempts:    3,
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
	}
	client, stop := serve(srv, retry.DialOptions(policy)...)
	defer stop()

	resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("%q %v after %d attempts\n", resp.GetText(), status.Code(err), srv.attempts(methodGenerate))
	// Output:
	// "Hello!" OK after 2 attempts
}

// Validate names the field that breaks a rule; Unary, Stream and
// DialOptions panic with the same *PolicyError.
func ExamplePolicy_Validate() {
	for _, p := range []retry.Policy{
		{InitialBackoff: 2 * time.Second, MaxBackoff: time.Second},
		{Multiplier: 0.5},
		{Methods: []string{"Generate"}},
	} {
		err := p.Validate()
		var pe *retry.PolicyError
		if errors.As(err, &pe) {
			fmt.Printf("%s: %v\n", pe.Field, err)
		}
	}
	// Output:
	// MaxBackoff: retry: invalid Policy.MaxBackoff 1s: must be at least InitialBackoff (2s)
	// Multiplier: retry: invalid Policy.Multiplier 0.5: must be at least 1 (0 means the default, 2)
	// Methods[0]: retry: invalid Policy.Methods[0] Generate: must be "/package.Service/Method" or a service prefix "/package.Service/"
}

// A failed call returns a *Error: status.Code sees the last attempt's code,
// errors.As gives the number of attempts and why retrying stopped.
func ExampleError() {
	srv := &exampleServer{generate: failFirst(100, codes.Unavailable, "")}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		MaxAttempts:    3,
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	})...)
	defer stop()

	_, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Println("code:", status.Code(err))
	var e *retry.Error
	if errors.As(err, &e) {
		fmt.Println("attempts:", e.Attempts)
		fmt.Println("reason:", e.Reason)
		fmt.Println("class:", e.Class)
		fmt.Println("gave up at the limit:", e.Reason == retry.StopMaxAttempts)
	}
	// Output:
	// code: Unavailable
	// attempts: 3
	// reason: max attempts
	// class: transient
	// gave up at the limit: true
}
