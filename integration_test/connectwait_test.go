package integration_test

// Connection-aware retries (Policy.ConnectWait) over real TCP on
// 127.0.0.1: a retry waits for the channel to have a ready connection
// before it is sent. Time bounds here are lower bounds that the waits
// themselves impose, and upper bounds far above what the behaviour needs
// (a loaded machine is slow, never fast).

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// refusedAddr returns a loopback address where nothing listens: a port
// taken from the kernel and closed again, so that connecting to it is
// refused at once.
func refusedAddr(t *testing.T) string {
	t.Helper()
	lis := listenLoopback(t, "127.0.0.1:0")
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// connectPolicy retries quickly (1ms doubling to 10ms, no jitter), up to 4
// attempts, without a budget; ConnectWait and PerAttemptTimeout are the
// tests'.
func connectPolicy() retry.Policy {
	return retry.Policy{
		MaxAttempts:    4,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	}
}

// TestConnectWait: unary calls through retry.Unary to a port that refuses
// connections. The first attempt fails at once (gRPC's default for a
// channel without a connection); what the retries do depends on
// ConnectWait, PerAttemptTimeout, the deadline and grpc.WaitForReady.
func TestConnectWait(t *testing.T) {
	const deadline = 1500 * time.Millisecond
	for _, tc := range []struct {
		name     string
		policy   func(*retry.Policy)
		deadline time.Duration // 0: none
		opts     []grpc.CallOption
		code     codes.Code
		alsoCode codes.Code // tolerated too, when not OK
		reason   retry.StopReason
		attempts int
		atLeast  time.Duration // the waits' own lower bound on the call's time
		below    time.Duration // generous: the behaviour needs far less
	}{{
		// The retry waits for a connection (default ConnectWait 10s) until
		// the deadline ends the wait: the call returns the first attempt's
		// own Unavailable, not a DeadlineExceeded, and no retry is sent.
		name: "the deadline ends the wait", deadline: deadline,
		code: codes.Unavailable, reason: retry.StopDeadline, attempts: 1,
		atLeast: deadline, below: deadline + 5*time.Second,
	}, {
		// An explicit WaitForReady(false) keeps the retries from waiting:
		// all four attempts fail at once, long before the deadline. A
		// retry that waited would wait past it (ConnectWait 10s) and
		// stop with StopDeadline.
		name: "WaitForReady(false): retries do not wait", deadline: 8 * time.Second,
		opts: []grpc.CallOption{grpc.WaitForReady(false)},
		code: codes.Unavailable, reason: retry.StopMaxAttempts, attempts: 4,
		below: 8 * time.Second,
	}, {
		// Without a deadline each retry waits at most ConnectWait, then
		// is sent and fails at once: three waits of 300ms.
		name:   "no deadline: each retry waits ConnectWait",
		policy: func(p *retry.Policy) { p.ConnectWait = 300 * time.Millisecond },
		code:   codes.Unavailable, reason: retry.StopMaxAttempts, attempts: 4,
		atLeast: 3 * 300 * time.Millisecond, below: 3*300*time.Millisecond + 5*time.Second,
	}, {
		// A PerAttemptTimeout shorter than ConnectWait (default 10s) cuts
		// each wait: three waits of 200ms. (An attempt that meets the
		// channel connecting can also run out of its 200ms, which ends it
		// with DeadlineExceeded, class Timeout: retried the same way.)
		name:   "PerAttemptTimeout cuts each wait",
		policy: func(p *retry.Policy) { p.PerAttemptTimeout = 200 * time.Millisecond },
		code:   codes.Unavailable, alsoCode: codes.DeadlineExceeded, reason: retry.StopMaxAttempts, attempts: 4,
		atLeast: 3 * 200 * time.Millisecond, below: 3*200*time.Millisecond + 5*time.Second,
	}, {
		// WaitForReady(true): the first attempt waits inside gRPC for a
		// connection until the caller's deadline ends it.
		name: "WaitForReady(true): the first attempt waits for the deadline", deadline: deadline,
		opts: []grpc.CallOption{grpc.WaitForReady(true)},
		code: codes.DeadlineExceeded, reason: retry.StopCanceled, attempts: 1,
		atLeast: deadline, below: deadline + 5*time.Second,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := connectPolicy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			cc := dialTCP(t, refusedAddr(t), grpc.WithChainUnaryInterceptor(retry.Unary(p)), grpc.WithDisableRetry())
			client := inferencev1.NewInferenceServiceClient(cc)
			start := time.Now()
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.deadline > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
			}
			defer cancel()
			err := within(t, tc.below+10*time.Second, func() error {
				_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "p"}, tc.opts...)
				return err
			})
			took := time.Since(start)
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
			code := status.Code(err)
			var e *retry.Error
			if !errors.As(err, &e) || code != tc.code && (tc.alsoCode == codes.OK || code != tc.alsoCode) || e.Reason != tc.reason || e.Attempts != tc.attempts {
				t.Fatalf("%v, want %v, Reason %v after %d attempt(s)", err, tc.code, tc.reason, tc.attempts)
			}
			if took < tc.atLeast || took >= tc.below {
				t.Fatalf("the call took %v, want at least %v and less than %v", took, tc.atLeast, tc.below)
			}
		})
	}
}

// TestConnectWaitRidesOutARestart: a retry that waits for the channel
// goes out, and succeeds, once a server listens on the port again; this is
// what makes a restart cost latency rather than an error. The first
// attempt finds nothing listening; the server starts after the retry was
// decided. A retry sent at once would fail against the channel's
// reconnect backoff (about 1s), and so would every later one of the short
// backoff.
func TestConnectWaitRidesOutARestart(t *testing.T) {
	stub := &stubServer{}
	stub.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return reply(req), nil
	}
	srv := &tcpServer{stub: stub, addr: refusedAddr(t)}
	t.Cleanup(srv.stop)
	p := connectPolicy()
	retried := make(chan struct{})
	p.OnRetry = func(ev retry.RetryEvent) {
		if ev.Attempt == 1 {
			close(retried)
		}
	}
	cc := dialTCP(t, srv.addr, grpc.WithChainUnaryInterceptor(retry.Unary(p)), grpc.WithDisableRetry())
	client := inferencev1.NewInferenceServiceClient(cc)
	var report retry.CallReport
	ctx := callCtx(t, 30*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "p"}, retry.WithReport(&report))
		done <- err
	}()
	select {
	case <-retried:
	case err := <-done:
		t.Fatalf("the call ended (%v) before its first retry", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no retry after the first attempt")
	}
	srv.start(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Generate: %v, want OK once the server is back", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the call did not end after the server came back")
	}
	if report.Attempts != 2 {
		t.Fatalf("%d attempts, want 2: the first refused, the retry sent once connected", report.Attempts)
	}
	wantCalls(t, stub, methodGenerate, 1)
}
