package retry_test

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// testPolicy retries fast and exactly, without a budget: 1ms backoff
// doubling, no jitter.
func testPolicy(maxAttempts int) retry.Policy {
	return retry.Policy{
		MaxAttempts:    maxAttempts,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// retryInfoOf returns the RetryInfo details of err's status.
func retryInfoOf(err error) []*errdetails.RetryInfo {
	var ris []*errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			ris = append(ris, ri)
		}
	}
	return ris
}

func asRetryError(t *testing.T, err error) *retry.Error {
	t.Helper()
	var e *retry.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *retry.Error", err, err)
	}
	return e
}

// TestRetryAfterWire checks what RetryAfter puts on the wire: the code and
// message, one grpc-retry-pushback-ms value rounded up to whole
// milliseconds, and one RetryInfo with the same rounded delay.
func TestRetryAfterWire(t *testing.T) {
	maxMillis := int64(math.MaxInt64/int64(time.Millisecond)) + 1 // rounded up
	for _, tc := range []struct {
		after       time.Duration
		wantTrailer string
		wantSeconds int64
		wantNanos   int32
	}{
		{0, "0", 0, 0},
		{time.Nanosecond, "1", 0, 1e6},
		{time.Millisecond, "1", 0, 1e6},
		{1500 * time.Microsecond, "2", 0, 2e6},
		{999 * time.Millisecond, "999", 0, 999e6},
		{2 * time.Second, "2000", 2, 0},
		{90*time.Second + time.Nanosecond, "90001", 90, 1e6},
		{-5 * time.Second, "0", 0, 0},
		{math.MinInt64, "0", 0, 0},
		{math.MaxInt64, strconv.FormatInt(maxMillis, 10), maxMillis / 1000, int32(maxMillis%1000) * 1e6},
	} {
		t.Run(tc.after.String(), func(t *testing.T) {
			srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
				return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "slow down", tc.after)
			}}
			client := start(t, srv, retry.DialOptions(testPolicy(1))...)
			var trailer metadata.MD
			_, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}, retry.Disable(), grpc.Trailer(&trailer))
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted || st.Message() != "slow down" {
				t.Fatalf("status %v %q, want ResourceExhausted \"slow down\"", st.Code(), st.Message())
			}
			if got := trailer.Get(retry.PushbackTrailer); !slices.Equal(got, []string{tc.wantTrailer}) {
				t.Errorf("trailer %s = %q, want [%q]", retry.PushbackTrailer, got, tc.wantTrailer)
			}
			ris := retryInfoOf(err)
			if len(ris) != 1 {
				t.Fatalf("%d RetryInfo details, want 1", len(ris))
			}
			d := ris[0].GetRetryDelay()
			if d.GetSeconds() != tc.wantSeconds || d.GetNanos() != tc.wantNanos || d.CheckValid() != nil {
				t.Errorf("RetryInfo.retry_delay = %ds %dns (valid: %v), want %ds %dns",
					d.GetSeconds(), d.GetNanos(), d.CheckValid(), tc.wantSeconds, tc.wantNanos)
			}
		})
	}
}

// TestServerHelpersOnStreams checks the trailer and status of every form of
// the helpers on a streaming handler: the *Stream forms and the context
// forms given stream.Context().
func TestServerHelpersOnStreams(t *testing.T) {
	type handler = func(grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error
	for _, tc := range []struct {
		name        string
		h           handler
		wantTrailer string
		wantRetry   bool // a RetryInfo of 7ms
	}{
		{"RetryAfterStream", func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return retry.RetryAfterStream(s, codes.Unavailable, "m", 7*time.Millisecond)
		}, "7", true},
		{"RetryAfter(stream.Context())", func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return retry.RetryAfter(s.Context(), codes.Unavailable, "m", 7*time.Millisecond)
		}, "7", true},
		{"DoNotRetryStream", func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return retry.DoNotRetryStream(s, codes.Unavailable, "m")
		}, "-1", false},
		{"DoNotRetry(stream.Context())", func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return retry.DoNotRetry(s.Context(), codes.Unavailable, "m")
		}, "-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &exampleServer{streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
				return tc.h(s)
			}}
			client := start(t, srv, grpc.WithDisableRetry())
			stream, err := client.StreamGenerate(testCtx(t), &inferencev1.StreamGenerateRequest{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Recv: %v, want Unavailable", err)
			}
			if got := stream.Trailer().Get(retry.PushbackTrailer); !slices.Equal(got, []string{tc.wantTrailer}) {
				t.Errorf("trailer = %q, want [%q]", got, tc.wantTrailer)
			}
			ris := retryInfoOf(err)
			switch {
			case tc.wantRetry && (len(ris) != 1 || ris[0].GetRetryDelay().AsDuration() != 7*time.Millisecond):
				t.Errorf("RetryInfo %v, want one of 7ms", ris)
			case !tc.wantRetry && len(ris) != 0:
				t.Errorf("RetryInfo %v, want none", ris)
			}
		})
	}
}

// TestClientHonoursRetryAfter: our client waits at least the server's
// delay, then retries, for unary calls and streams, whatever its own
// backoff, and also with codes other than ResourceExhausted.
func TestClientHonoursRetryAfter(t *testing.T) {
	const after = 40 * time.Millisecond
	for _, code := range []codes.Code{codes.ResourceExhausted, codes.Unavailable} {
		t.Run("unary/"+code.String(), func(t *testing.T) {
			srv := &exampleServer{generate: func(ctx context.Context, attempt int) (string, error) {
				if attempt == 1 {
					return "", retry.RetryAfter(ctx, code, "busy", after)
				}
				return "ok", nil
			}}
			var events []retry.RetryEvent
			p := testPolicy(3)
			p.OnRetry = func(ev retry.RetryEvent) { events = append(events, ev) }
			client := start(t, srv, retry.DialOptions(p)...)
			begin := time.Now()
			resp, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{})
			elapsed := time.Since(begin)
			if err != nil || resp.GetText() != "ok" {
				t.Fatalf("Generate = %v, %v; want ok", resp, err)
			}
			if elapsed < after {
				t.Errorf("call took %v, want at least the pushback %v", elapsed, after)
			}
			if n := srv.attempts(methodGenerate); n != 2 {
				t.Errorf("server saw %d attempts, want 2", n)
			}
			if len(events) != 1 || events[0].Delay != after || !events[0].Pushback {
				t.Errorf("retry events %+v, want one with Delay %v and Pushback", events, after)
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		srv := &exampleServer{streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
			if attempt == 1 {
				return retry.RetryAfterStream(s, codes.Unavailable, "draining", after)
			}
			return sendTokens(s, "a", "b")
		}}
		client := start(t, srv, retry.DialOptions(testPolicy(3))...)
		begin := time.Now()
		stream, err := client.StreamGenerate(testCtx(t), &inferencev1.StreamGenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var tokens []string
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			tokens = append(tokens, m.GetToken())
		}
		if elapsed := time.Since(begin); elapsed < after {
			t.Errorf("stream took %v, want at least the pushback %v", elapsed, after)
		}
		if !slices.Equal(tokens, []string{"a", "b"}) || srv.attempts(methodStreamGenerate) != 2 {
			t.Errorf("tokens %q after %d attempts, want [a b] after 2", tokens, srv.attempts(methodStreamGenerate))
		}
	})
	t.Run("not a spent quota", func(t *testing.T) {
		// A QuotaFailure detail alone makes ResourceExhausted permanent; with
		// RetryAfter's pushback it is a rate limit and is retried.
		srv := &exampleServer{generate: func(ctx context.Context, attempt int) (string, error) {
			if attempt == 1 {
				st, err := status.Convert(retry.RetryAfter(ctx, codes.ResourceExhausted, "quota", time.Millisecond)).
					WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "s"}}})
				if err != nil {
					return "", err
				}
				return "", st.Err()
			}
			return "ok", nil
		}}
		client := start(t, srv, retry.DialOptions(testPolicy(3))...)
		if _, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}); err != nil {
			t.Fatalf("Generate: %v", err)
		}
	})
}

// TestClientHonoursDoNotRetry: one attempt, Reason StopPushback, the
// server's code kept, for unary calls and streams.
func TestClientHonoursDoNotRetry(t *testing.T) {
	t.Run("unary", func(t *testing.T) {
		srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
			return "", retry.DoNotRetry(ctx, codes.Unavailable, "shedding")
		}}
		client := start(t, srv, retry.DialOptions(testPolicy(4))...)
		_, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{})
		e := asRetryError(t, err)
		if status.Code(err) != codes.Unavailable || e.Attempts != 1 || e.Reason != retry.StopPushback {
			t.Fatalf("%v: code %v, %d attempts, reason %v; want Unavailable, 1, StopPushback", err, status.Code(err), e.Attempts, e.Reason)
		}
		if len(retryInfoOf(err)) != 0 {
			t.Errorf("DoNotRetry sent a RetryInfo")
		}
		if n := srv.attempts(methodGenerate); n != 1 {
			t.Errorf("server saw %d attempts, want 1", n)
		}
	})
	t.Run("stream", func(t *testing.T) {
		srv := &exampleServer{streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			return retry.DoNotRetryStream(s, codes.ResourceExhausted, "shedding")
		}}
		client := start(t, srv, retry.DialOptions(testPolicy(4))...)
		stream, err := client.StreamGenerate(testCtx(t), &inferencev1.StreamGenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		e := asRetryError(t, err)
		if status.Code(err) != codes.ResourceExhausted || e.Attempts != 1 || e.Reason != retry.StopPushback {
			t.Fatalf("%v: code %v, %d attempts, reason %v; want ResourceExhausted, 1, StopPushback", err, status.Code(err), e.Attempts, e.Reason)
		}
		if n := srv.attempts(methodStreamGenerate); n != 1 {
			t.Errorf("server saw %d attempts, want 1", n)
		}
	})
}

// TestServerHelpersInteropGRPCGo: grpc-go's built-in retry (service config
// retryPolicy, no interceptor of ours) honours both helpers too.
func TestServerHelpersInteropGRPCGo(t *testing.T) {
	const sc = `{"methodConfig": [{"name": [{"service": "inference.v1.InferenceService"}],
		"retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
		"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}]}`
	t.Run("RetryAfter", func(t *testing.T) {
		const after = 40 * time.Millisecond
		srv := &exampleServer{generate: func(ctx context.Context, attempt int) (string, error) {
			if attempt == 1 {
				return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "busy", after)
			}
			return "ok", nil
		}}
		client := start(t, srv, grpc.WithDefaultServiceConfig(sc))
		begin := time.Now()
		if _, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}); err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if elapsed := time.Since(begin); elapsed < after {
			t.Errorf("grpc-go retried after %v, want at least %v", elapsed, after)
		}
		if n := srv.attempts(methodGenerate); n != 2 {
			t.Errorf("server saw %d attempts, want 2", n)
		}
	})
	t.Run("DoNotRetry", func(t *testing.T) {
		srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
			return "", retry.DoNotRetry(ctx, codes.Unavailable, "shedding")
		}}
		client := start(t, srv, grpc.WithDefaultServiceConfig(sc))
		if _, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("Generate: %v, want Unavailable", err)
		}
		if n := srv.attempts(methodGenerate); n != 1 {
			t.Errorf("grpc-go made %d attempts, want 1", n)
		}
	})
}

// TestServerHelpersCodeOK: code OK cannot carry an error, so the helpers
// return Internal and set no trailer.
func TestServerHelpersCodeOK(t *testing.T) {
	for name, h := range map[string]func(context.Context) error{
		"RetryAfter": func(ctx context.Context) error { return retry.RetryAfter(ctx, codes.OK, "m", time.Second) },
		"DoNotRetry": func(ctx context.Context) error { return retry.DoNotRetry(ctx, codes.OK, "m") },
	} {
		t.Run(name, func(t *testing.T) {
			srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) { return "", h(ctx) }}
			client := start(t, srv)
			var trailer metadata.MD
			_, err := client.Generate(testCtx(t), &inferencev1.GenerateRequest{}, grpc.Trailer(&trailer))
			if status.Code(err) != codes.Internal {
				t.Fatalf("err %v, want Internal", err)
			}
			if v := trailer.Get(retry.PushbackTrailer); v != nil {
				t.Errorf("trailer %q set for code OK", v)
			}
		})
	}
}

// TestServerHelpersWithoutServer: outside a gRPC server (a handler called
// directly in a unit test) the helpers still return their status, with
// RetryInfo, and do not panic; the status can take more details.
func TestServerHelpersWithoutServer(t *testing.T) {
	ctx := context.Background()
	err := retry.RetryAfter(ctx, codes.ResourceExhausted, "busy", 1500*time.Millisecond)
	if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != "busy" {
		t.Fatalf("RetryAfter = %v", err)
	}
	ris := retryInfoOf(err)
	if len(ris) != 1 || ris[0].GetRetryDelay().AsDuration() != 1500*time.Millisecond {
		t.Fatalf("RetryInfo %v, want one of 1.5s", ris)
	}
	st, derr := status.Convert(err).WithDetails(&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "example.com"})
	if derr != nil || len(st.Details()) != 2 || !proto.Equal(st.Details()[0].(*errdetails.RetryInfo), ris[0]) {
		t.Fatalf("WithDetails: %v, details %v", derr, st.Details())
	}
	if err := retry.DoNotRetry(ctx, codes.Unavailable, "no"); status.Code(err) != codes.Unavailable {
		t.Fatalf("DoNotRetry = %v", err)
	}
}
