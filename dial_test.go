package retry_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// grpcRetryConfig is a service config under which grpc-go itself retries
// every InferenceService method up to 4 times on Unavailable.
const grpcRetryConfig = `{"methodConfig": [{"name": [{"service": "inference.v1.InferenceService"}],
	"retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
	"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// alwaysUnavailable is a server whose every call fails with Unavailable,
// before any response for streams.
func alwaysUnavailable() *exampleServer {
	return &exampleServer{
		generate: failFirst(1<<30, codes.Unavailable, ""),
		streamGenerate: func(grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], int) error {
			return status.Error(codes.Unavailable, "down")
		},
	}
}

// recvAll reads stream to its end and returns the tokens and the final
// error (nil at io.EOF).
func recvAll(stream grpc.ServerStreamingClient[inferencev1.StreamGenerateResponse]) ([]string, error) {
	var tokens []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return tokens, nil
		}
		if err != nil {
			return tokens, err
		}
		tokens = append(tokens, m.GetToken())
	}
}

// TestDialOptionsRetriesUnaryAndStreams: a client made with DialOptions
// alone retries unary calls and streams.
func TestDialOptionsRetriesUnaryAndStreams(t *testing.T) {
	srv := &exampleServer{
		generate: failFirst(2, codes.Unavailable, "ok"),
		streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
			if attempt <= 2 {
				return status.Error(codes.Unavailable, "not yet")
			}
			return sendTokens(s, "x", "y", "z")
		},
	}
	client := start(t, srv, retry.DialOptions(testPolicy(3))...)
	ctx := testCtx(t)

	resp, err := client.Generate(ctx, &inferencev1.GenerateRequest{})
	if err != nil || resp.GetText() != "ok" || srv.attempts(methodGenerate) != 3 {
		t.Fatalf("Generate = %v, %v after %d attempts; want ok after 3", resp, err, srv.attempts(methodGenerate))
	}
	stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := recvAll(stream)
	if err != nil || !slices.Equal(tokens, []string{"x", "y", "z"}) || srv.attempts(methodStreamGenerate) != 3 {
		t.Fatalf("stream: %q, %v after %d attempts; want [x y z] after 3", tokens, err, srv.attempts(methodStreamGenerate))
	}
}

// TestDialOptionsDisableServiceConfigRetry: with DialOptions there is one
// retry layer. The server always fails; the service config asks grpc-go for
// 4 attempts, the policy for 2: the server sees exactly 2 per call, not 8.
// Without DialOptions the same service config makes grpc-go retry (4), which
// shows the config is in force.
func TestDialOptionsDisableServiceConfigRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
		want int
	}{
		{"grpc-go alone", []grpc.DialOption{grpc.WithDefaultServiceConfig(grpcRetryConfig)}, 4},
		{"DialOptions", append(retry.DialOptions(testPolicy(2)), grpc.WithDefaultServiceConfig(grpcRetryConfig)), 2},
		{"DialOptions after the config", append([]grpc.DialOption{grpc.WithDefaultServiceConfig(grpcRetryConfig)}, retry.DialOptions(testPolicy(2))...), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := alwaysUnavailable()
			client := start(t, srv, tc.opts...)
			ctx := testCtx(t)

			if _, err := client.Generate(ctx, &inferencev1.GenerateRequest{}); status.Code(err) != codes.Unavailable {
				t.Fatalf("Generate: %v, want Unavailable", err)
			}
			if n := srv.attempts(methodGenerate); n != tc.want {
				t.Errorf("unary: server saw %d attempts, want %d", n, tc.want)
			}

			stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := recvAll(stream); status.Code(err) != codes.Unavailable {
				t.Fatalf("stream: %v, want Unavailable", err)
			}
			if n := srv.attempts(methodStreamGenerate); n != tc.want {
				t.Errorf("stream: server saw %d attempts, want %d", n, tc.want)
			}
		})
	}
}

// TestDialOptionsShareOneBudget: with a nil Policy.Budget, the unary and
// stream interceptors of DialOptions draw on one default budget. Unary
// calls to a dead server put it in debt; a stream is then refused a retry
// too. Unary and Stream built separately each have their own budget, so
// there the stream still retries.
func TestDialOptionsShareOneBudget(t *testing.T) {
	p := testPolicy(2)
	p.Budget = nil // the default budget
	for _, tc := range []struct {
		name       string
		opts       []grpc.DialOption
		wantStream retry.StopReason
	}{
		{"DialOptions", retry.DialOptions(p), retry.StopBudget},
		{"Unary and Stream", []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(retry.Unary(p)),
			grpc.WithChainStreamInterceptor(retry.Stream(p)),
			grpc.WithDisableRetry(),
		}, retry.StopMaxAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The default budget starts with 3 retries and charges a
			// retry only once it has failed. calls concurrent calls
			// each get their retry (nothing has failed yet); the server
			// holds the retries until all have arrived, then fails them
			// all: the balance falls to 3 - calls = -5. Its floor earns
			// 0.05 retry a second, so it stays closed for the next 100 s
			// whatever the machine's speed (at exactly 0 the floor's
			// first milli-retry, 20 ms later, would open it again).
			const calls = 8
			var mu sync.Mutex
			retries := 0
			release := make(chan struct{})
			srv := alwaysUnavailable()
			srv.generate = func(ctx context.Context, _ int) (string, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				if len(md.Get(retry.PreviousAttemptsHeader)) > 0 {
					mu.Lock()
					if retries++; retries == calls {
						close(release)
					}
					mu.Unlock()
					select {
					case <-release:
					case <-ctx.Done():
					}
				}
				return "", status.Error(codes.Unavailable, "down")
			}
			client := start(t, srv, tc.opts...)
			ctx := testCtx(t)
			var wg sync.WaitGroup
			errs := make([]error, calls)
			for i := range calls {
				wg.Go(func() { _, errs[i] = client.Generate(ctx, &inferencev1.GenerateRequest{}) })
			}
			wg.Wait()
			for _, err := range errs {
				if e := asRetryError(t, err); e.Reason != retry.StopMaxAttempts || e.Attempts != 2 {
					t.Fatalf("concurrent call stopped with %v after %d attempt(s), want %v after 2", e.Reason, e.Attempts, retry.StopMaxAttempts)
				}
			}
			_, err := client.Generate(ctx, &inferencev1.GenerateRequest{})
			if e := asRetryError(t, err); e.Reason != retry.StopBudget {
				t.Fatalf("unary call after %d failed retries stopped with %v, want %v", calls, e.Reason, retry.StopBudget)
			}
			stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = recvAll(stream)
			if e := asRetryError(t, err); e.Reason != tc.wantStream {
				t.Fatalf("stream stopped with %v after %d attempt(s), want %v", e.Reason, e.Attempts, tc.wantStream)
			}
		})
	}
}

// TestDialOptionsPanicsOnInvalidPolicy: as Unary and Stream, with the
// *PolicyError of Validate.
func TestDialOptionsPanicsOnInvalidPolicy(t *testing.T) {
	p := retry.Policy{MaxAttempts: -1}
	defer func() {
		err, _ := recover().(error)
		var pe *retry.PolicyError
		if !errors.As(err, &pe) || pe.Field != "MaxAttempts" || err.Error() != p.Validate().Error() {
			t.Fatalf("recovered %v, want the *PolicyError %v", err, p.Validate())
		}
	}()
	retry.DialOptions(p)
	t.Fatal("DialOptions did not panic")
}

// TestDialOptionsValidPolicy: three options, and no panic for the zero
// Policy.
func TestDialOptionsValidPolicy(t *testing.T) {
	if n := len(retry.DialOptions(retry.Policy{})); n != 3 {
		t.Fatalf("DialOptions returned %d options, want 3", n)
	}
}
