package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// codeScript is what the server answers, attempt by attempt, for one
// method: the codes of the first attempts, then OK.
type codeScript []codes.Code

// pushbackStop is a codeScript entry: Unavailable with grpc-retry-pushback-ms
// "-1", the server's "do not retry".
const pushbackStop = codes.Code(1000)

func (s codeScript) answer(ctx context.Context, n int) error {
	if n > len(s) {
		return nil
	}
	if s[n-1] == pushbackStop {
		return pushbackErr(ctx, codes.Unavailable, "shedding load", "-1")
	}
	return status.Errorf(s[n-1], "attempt %d", n)
}

func repeatCode(c codes.Code, n int) codeScript {
	s := make(codeScript, n)
	for i := range s {
		s[i] = c
	}
	return s
}

// retryPolicyJSON is a retryPolicy with tiny backoffs.
func retryPolicyJSON(maxAttempts int, codes ...string) string {
	return fmt.Sprintf(`{"maxAttempts": %d, "initialBackoff": "0.001s", "maxBackoff": "0.002s", "backoffMultiplier": 2, "retryableStatusCodes": [%s]}`,
		maxAttempts, strings.Join(codes, ", "))
}

const scService = "inference.v1.InferenceService"

// TestServiceConfigMatchesGRPCRetry is a differential test: for the same
// service config JSON, grpc-go's built-in retry (the config given to
// grpc.WithDefaultServiceConfig) and this package (ParseServiceConfig, then
// its DialOptions, which switch grpc-go's retry off) make the same number
// of attempts against the same scripted server, and return the same code.
// There is no retryThrottling and ParseOptions.Budget is NoBudget, so
// neither side limits retries beyond the config; backoffs are 1-2ms.
func TestServiceConfigMatchesGRPCRetry(t *testing.T) {
	const U, I = `"UNAVAILABLE"`, `"INTERNAL"`
	type call struct {
		method   string // methodGenerate, methodCallTool or methodStreamGenerate
		script   codeScript
		attempts int // what both must make
		code     codes.Code
	}
	cases := []struct {
		name   string
		config string
		calls  []call
	}{{
		name: "service-level entry",
		config: `{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"retryPolicy": ` + retryPolicyJSON(3, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Unavailable, 10), 3, codes.Unavailable},
			{methodCallTool, codeScript{codes.Unavailable}, 2, codes.OK},
			{methodStreamGenerate, repeatCode(codes.Unavailable, 10), 3, codes.Unavailable},
		},
	}, {
		name: "method-level entry overrides the service entry",
		config: `{"methodConfig": [
			{"name": [{"service": "` + scService + `"}], "retryPolicy": ` + retryPolicyJSON(4, U) + `},
			{"name": [{"service": "` + scService + `", "method": "Generate"}], "retryPolicy": ` + retryPolicyJSON(2, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Unavailable, 10), 2, codes.Unavailable},
			{methodCallTool, repeatCode(codes.Unavailable, 10), 4, codes.Unavailable},
		},
	}, {
		name: "method-level entry without a retryPolicy is not retried",
		config: `{"methodConfig": [
			{"name": [{"service": "` + scService + `"}], "retryPolicy": ` + retryPolicyJSON(4, U) + `},
			{"name": [{"service": "` + scService + `", "method": "CallTool"}], "timeout": "10s"}]}`,
		calls: []call{
			{methodCallTool, repeatCode(codes.Unavailable, 10), 1, codes.Unavailable},
			{methodGenerate, repeatCode(codes.Unavailable, 10), 4, codes.Unavailable},
		},
	}, {
		name: "default entry",
		config: `{"methodConfig": [
			{"name": [{}], "retryPolicy": ` + retryPolicyJSON(3, U) + `},
			{"name": [{"service": "other.v1.Other"}], "retryPolicy": ` + retryPolicyJSON(5, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Unavailable, 10), 3, codes.Unavailable},
			{methodStreamGenerate, codeScript{codes.Unavailable, codes.Unavailable}, 3, codes.OK},
		},
	}, {
		name: "non-retryable code",
		config: `{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"retryPolicy": ` + retryPolicyJSON(4, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Internal, 10), 1, codes.Internal},
			{methodCallTool, codeScript{codes.Unavailable, codes.InvalidArgument}, 2, codes.InvalidArgument},
			// Not retried by this package's defaults, but listed here.
			{methodGenerate, repeatCode(codes.Aborted, 10), 1, codes.Aborted},
		},
	}, {
		name: "codes this package does not retry by default, listed",
		config: `{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"retryPolicy": ` + retryPolicyJSON(4, I, `"ABORTED"`, "14") + `}]}`,
		calls: []call{
			{methodGenerate, codeScript{codes.Internal, codes.Aborted, codes.Unavailable}, 4, codes.OK},
			{methodCallTool, codeScript{codes.Internal, codes.ResourceExhausted}, 2, codes.ResourceExhausted},
		},
	}, {
		name: "maxAttempts clamped to 5",
		config: `{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"retryPolicy": ` + retryPolicyJSON(100, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Unavailable, 100), 5, codes.Unavailable},
			{methodStreamGenerate, repeatCode(codes.Unavailable, 100), 5, codes.Unavailable},
		},
	}, {
		name: "no entry matches",
		config: `{"methodConfig": [{"name": [{"service": "inference.v2.InferenceService"}],
			"retryPolicy": ` + retryPolicyJSON(4, U) + `}]}`,
		calls: []call{
			{methodGenerate, repeatCode(codes.Unavailable, 10), 1, codes.Unavailable},
		},
	}, {
		name: "server pushback: do not retry",
		config: `{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"retryPolicy": ` + retryPolicyJSON(4, U) + `}]}`,
		calls: []call{
			{methodGenerate, codeScript{codes.Unavailable, pushbackStop}, 2, codes.Unavailable},
		},
	}}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := retry.ParseOptions{Budget: retry.NoBudget}.Parse([]byte(tc.config))
			if err != nil {
				t.Fatalf("ParseServiceConfig: %v", err)
			}
			clients := []struct {
				name string
				opts []grpc.DialOption
			}{
				{"grpc-go built-in retry", []grpc.DialOption{grpc.WithDefaultServiceConfig(tc.config)}},
				{"ParseServiceConfig + retry interceptors", sc.DialOptions()},
			}
			for i, c := range tc.calls {
				var attempts [2]int
				var code [2]codes.Code
				for k, cl := range clients {
					s := scriptedServer(c.method, c.script)
					client := s.start(t, cl.opts...)
					code[k] = status.Code(invokeMethod(t, client, c.method))
					attempts[k] = s.calls(c.method)
				}
				if attempts[0] != attempts[1] || code[0] != code[1] {
					t.Errorf("call %d (%s, server %v): grpc-go made %d attempt(s) and returned %v; ours %d and %v",
						i, c.method, c.script, attempts[0], code[0], attempts[1], code[1])
				}
				if attempts[1] != c.attempts || code[1] != c.code {
					t.Errorf("call %d (%s): %d attempt(s) returning %v, want %d returning %v",
						i, c.method, attempts[1], code[1], c.attempts, c.code)
				}
			}
		})
	}
}

// scriptedServer answers method by codeScript, attempt by attempt.
func scriptedServer(method string, s codeScript) *stubServer {
	srv := &stubServer{}
	switch method {
	case methodGenerate:
		srv.GenerateF = func(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
			if err := s.answer(ctx, srv.attempt(ctx)); err != nil {
				return nil, err
			}
			return &inferencev1.GenerateResponse{Text: "ok"}, nil
		}
	case methodCallTool:
		srv.CallToolF = func(ctx context.Context, _ *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
			if err := s.answer(ctx, srv.attempt(ctx)); err != nil {
				return nil, err
			}
			return &inferencev1.CallToolResponse{Result: "ok"}, nil
		}
	case methodStreamGenerate:
		srv.StreamGenerateF = func(_ *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			ctx := stream.Context()
			if err := s.answer(ctx, srv.attempt(ctx)); err != nil {
				return err
			}
			return stream.Send(&inferencev1.StreamGenerateResponse{Token: "ok"})
		}
	}
	return srv
}

// invoke makes one call of method and returns its error (nil for OK; a
// stream is read to its end).
func invokeMethod(t *testing.T, client inferencev1.InferenceServiceClient, method string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch method {
	case methodGenerate:
		_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "p"})
		return err
	case methodCallTool:
		_, err := client.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "t"})
		return err
	case methodStreamGenerate:
		stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	t.Fatalf("no such method %s", method)
	return nil
}

// TestServiceConfigRoutesOneClient: one client, one connection, three
// methods with three policies from one service config: Generate retried
// (its own entry), StreamGenerate retried under the service entry,
// CallTool never retried; the timeout of the service entry bounds a whole
// call, not each attempt.
func TestServiceConfigRoutesOneClient(t *testing.T) {
	sc, err := retry.ParseOptions{Budget: retry.NoBudget}.Parse([]byte(`{"methodConfig": [
		{"name": [{"service": "` + scService + `"}], "timeout": "0.3s", "retryPolicy": ` + retryPolicyJSON(5, `"UNAVAILABLE"`, `"DEADLINE_EXCEEDED"`) + `},
		{"name": [{"service": "` + scService + `", "method": "Generate"}], "retryPolicy": ` + retryPolicyJSON(2, `"UNAVAILABLE"`) + `},
		{"name": [{"service": "` + scService + `", "method": "CallTool"}]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	s.CallToolF = func(ctx context.Context, _ *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	// Every attempt hangs until its deadline: a per-attempt timeout would
	// let the call retry five times; a whole-call timeout ends it.
	s.StreamGenerateF = func(_ *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		<-stream.Context().Done()
		return status.Error(codes.DeadlineExceeded, "hung")
	}
	client := s.start(t, sc.DialOptions()...)

	err = invokeMethod(t, client, methodGenerate)
	wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 2)
	err = invokeMethod(t, client, methodCallTool)
	var e *retry.Error
	if status.Code(err) != codes.Unavailable || !errors.As(err, &e) || e.Attempts != 1 {
		t.Fatalf("CallTool: %v, want Unavailable after 1 attempt", err)
	}
	start := time.Now()
	err = invokeMethod(t, client, methodStreamGenerate)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("StreamGenerate: %v, want DeadlineExceeded", err)
	}
	s.barrier(t)
	if n := s.calls(methodStreamGenerate); n != 1 {
		t.Fatalf("StreamGenerate: %d attempts, want 1: the timeout bounds the call, and the caller's own deadline is not retried", n)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Fatalf("StreamGenerate returned after %v, before its 0.3s timeout", elapsed)
	}
	wantCalls(t, s, methodGenerate, 2)
	wantCalls(t, s, methodCallTool, 1)
}

// TestServiceConfigHedgingPolicy: a hedgingPolicy read by
// ParseServiceConfig hedges (attempts carry the hedge header): a non-fatal
// code sends the next hedge at once, up to maxAttempts; a code not listed
// ends the call; "0s" sends every attempt at once. grpc-go ignores
// hedgingPolicy, so there is nothing to compare with here.
func TestServiceConfigHedgingPolicy(t *testing.T) {
	parse := func(delay string) *retry.ServiceConfig {
		t.Helper()
		sc, err := retry.ParseOptions{Budget: retry.NoBudget}.Parse([]byte(`{"methodConfig": [{"name": [{"service": "` + scService + `"}],
			"hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "` + delay + `", "nonFatalStatusCodes": ["UNAVAILABLE"]}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	for _, tc := range []struct {
		name     string
		delay    string // long: no hedge is sent on time
		code     codes.Code
		attempts int
	}{
		{"non-fatal code: next hedge at once", "10s", codes.Unavailable, 3},
		{"fatal code ends the call", "10s", codes.Internal, 1},
		{"0s: every attempt at once", "0s", codes.Unavailable, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{GenerateF: func(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
				return nil, status.Error(tc.code, "failed")
			}}
			client := s.start(t, parse(tc.delay).DialOptions()...)
			err := invokeMethod(t, client, methodGenerate)
			var e *retry.Error
			if status.Code(err) != tc.code || !errors.As(err, &e) || e.Attempts != tc.attempts {
				t.Fatalf("%v, want %v after %d attempts", err, tc.code, tc.attempts)
			}
			s.barrier(t)
			wantCalls(t, s, methodGenerate, tc.attempts)
			hedges := 0
			for _, h := range s.headers(methodGenerate, retry.HedgeHeader) {
				if len(h) > 0 {
					hedges++
				}
			}
			if hedges != tc.attempts-1 {
				t.Fatalf("%d attempts carried %s, want %d: the route must hedge, not retry", hedges, retry.HedgeHeader, tc.attempts-1)
			}
		})
	}
}
