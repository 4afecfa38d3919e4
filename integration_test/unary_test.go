package integration_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// --- helpers ---

// fastPolicy retries quickly and exactly: 1ms doubling to 10ms, no jitter,
// and no retry budget, so that each test sees its calls' own retry logic
// alone (TestDefaultBudgetStopsRetryStorm covers the default budget).
func fastPolicy() retry.Policy {
	return retry.Policy{
		InitialBackoff: time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	}
}

// dial starts s and returns a client whose unary calls go through
// retry.Unary(p), with gRPC's own retries off.
func dial(t *testing.T, s *stubServer, p retry.Policy) inferencev1.InferenceServiceClient {
	t.Helper()
	return s.start(t, grpc.WithChainUnaryInterceptor(retry.Unary(p)), grpc.WithDisableRetry())
}

// callCtx returns a context with a timeout of d, canceled at cleanup.
func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// retryErr returns err as a *retry.Error, failing the test if it is not one.
func retryErr(t *testing.T, err error) *retry.Error {
	t.Helper()
	var e *retry.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *retry.Error", err, err)
	}
	return e
}

// wantStop checks err's code and its *retry.Error's Reason and Attempts.
func wantStop(t *testing.T, err error, code codes.Code, reason retry.StopReason, attempts int) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("status.Code(err) = %v, want %v (err: %v)", got, code, err)
	}
	e := retryErr(t, err)
	if e.Reason != reason || e.Attempts != attempts {
		t.Fatalf("Reason %v after %d attempt(s), want %v after %d (err: %v)", e.Reason, e.Attempts, reason, attempts, err)
	}
}

func wantCalls(t *testing.T, s *stubServer, method string, want int) {
	t.Helper()
	if got := s.calls(method); got != want {
		t.Fatalf("server saw %d call(s) of %s, want %d", got, method, want)
	}
}

// hookLog records OnRetry events.
type hookLog struct {
	mu sync.Mutex
	ev []retry.RetryEvent
}

func (h *hookLog) record(e retry.RetryEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ev = append(h.ev, e)
}

func (h *hookLog) events() []retry.RetryEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ev)
}

func (h *hookLog) delays() []time.Duration {
	var ds []time.Duration
	for _, e := range h.events() {
		ds = append(ds, e.Delay)
	}
	return ds
}

func reply(req *inferencev1.GenerateRequest) *inferencev1.GenerateResponse {
	return &inferencev1.GenerateResponse{Text: "ok:" + req.GetPrompt()}
}

// step is what a handler does on one attempt: a non-nil error fails it.
type step func(ctx context.Context) error

func fail(code codes.Code, msg string) step {
	return func(context.Context) error { return status.Error(code, msg) }
}

var unavailable = fail(codes.Unavailable, "backend restarting")

func pushback(values ...string) step {
	return func(ctx context.Context) error {
		return pushbackErr(ctx, codes.Unavailable, "overloaded, pushback", values...)
	}
}

func withDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) step {
	return func(context.Context) error { return detailsErr(code, msg, details...) }
}

// script makes Generate run steps[n-1] on its n-th arrival and answer OK
// after the steps (or when the step returns nil).
func script(s *stubServer, steps ...step) {
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if n := s.attempt(ctx); n >= 1 && n <= len(steps) && steps[n-1] != nil {
			if err := steps[n-1](ctx); err != nil {
				return nil, err
			}
		}
		return reply(req), nil
	}
}

// always makes Generate run st on every arrival.
func always(s *stubServer, st step) {
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if err := st(ctx); err != nil {
			return nil, err
		}
		return reply(req), nil
	}
}

// failFirstPerPrompt makes Generate fail the first n attempts of each
// distinct prompt with Unavailable.
func failFirstPerPrompt(n int) func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	var mu sync.Mutex
	seen := make(map[string]int)
	return func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		mu.Lock()
		seen[req.GetPrompt()]++
		k := seen[req.GetPrompt()]
		mu.Unlock()
		if k <= n {
			return nil, status.Errorf(codes.Unavailable, "first attempt of %q fails", req.GetPrompt())
		}
		return reply(req), nil
	}
}

// within runs f and returns its error, failing the test at once if f has
// not returned after d. f is then left running: it is for bounds that only
// a wrong behaviour (a wait of an hour, a retry that never ends) breaks,
// so that such a test fails on its own rather than by the test binary's
// timeout.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("call still blocked after %v", d)
		return nil
	}
}

func generate(ctx context.Context, c inferencev1.InferenceServiceClient, opts ...grpc.CallOption) error {
	resp, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "p"}, opts...)
	if err == nil && resp.GetText() != "ok:p" {
		return fmt.Errorf("response %q, want %q", resp.GetText(), "ok:p")
	}
	return err
}

// --- attempt counts ---

func TestTransientFailuresThenOK(t *testing.T) {
	for k := 0; k <= 3; k++ {
		t.Run(fmt.Sprintf("failures=%d", k), func(t *testing.T) {
			s := &stubServer{}
			steps := make([]step, k)
			for i := range steps {
				steps[i] = unavailable
			}
			script(s, steps...)
			p := fastPolicy()
			p.MaxAttempts = 4
			c := dial(t, s, p)
			if err := generate(callCtx(t, 10*time.Second), c); err != nil {
				t.Fatalf("Generate: %v, want OK", err)
			}
			wantCalls(t, s, methodGenerate, k+1)
		})
	}
}

func TestAlwaysUnavailableStopsAtMaxAttempts(t *testing.T) {
	s := &stubServer{}
	always(s, unavailable)
	p := fastPolicy()
	p.MaxAttempts = 3
	c := dial(t, s, p)
	err := generate(callCtx(t, 10*time.Second), c)
	wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 3)
	wantCalls(t, s, methodGenerate, 3)
}

func TestPermanentCodesNotRetried(t *testing.T) {
	for code := codes.Code(1); code <= codes.Unauthenticated; code++ {
		switch code {
		case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
			continue
		}
		t.Run(code.String(), func(t *testing.T) {
			s := &stubServer{}
			msg := "permanent failure: " + code.String()
			always(s, fail(code, msg))
			c := dial(t, s, fastPolicy())
			err := generate(callCtx(t, 10*time.Second), c)
			wantStop(t, err, code, retry.StopPermanent, 1)
			if got := status.Convert(err).Message(); got != msg {
				t.Fatalf("message %q, want %q", got, msg)
			}
			wantCalls(t, s, methodGenerate, 1)
		})
	}
}

// --- pushback ---

func TestPushbackTrailerDelaysRetry(t *testing.T) {
	s := &stubServer{}
	script(s, pushback("300"))
	var h hookLog
	p := fastPolicy()
	p.OnRetry = h.record
	c := dial(t, s, p)
	if err := generate(callCtx(t, 10*time.Second), c); err != nil {
		t.Fatalf("Generate: %v, want OK", err)
	}
	ts := s.times(methodGenerate)
	if len(ts) != 2 {
		t.Fatalf("server saw %d calls, want 2", len(ts))
	}
	if gap := ts[1].Sub(ts[0]); gap < 300*time.Millisecond {
		t.Fatalf("second attempt arrived %v after the first, want >= 300ms", gap)
	}
	ev := h.events()
	if len(ev) != 1 || ev[0].Delay != 300*time.Millisecond || !ev[0].Pushback {
		t.Fatalf("OnRetry events %+v, want one with Delay 300ms, Pushback true", ev)
	}
}

func TestPushbackRestartsBackoffExponent(t *testing.T) {
	s := &stubServer{}
	script(s, unavailable, pushback("300"), unavailable)
	var h hookLog
	p := retry.Policy{
		MaxAttempts:    4,
		InitialBackoff: 5 * time.Millisecond,
		MaxBackoff:     time.Second,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry:        h.record,
	}
	c := dial(t, s, p)
	if err := generate(callCtx(t, 10*time.Second), c); err != nil {
		t.Fatalf("Generate: %v, want OK", err)
	}
	wantCalls(t, s, methodGenerate, 4)
	ev := h.events()
	wantDelays := []time.Duration{5 * time.Millisecond, 300 * time.Millisecond, 5 * time.Millisecond}
	wantPushback := []bool{false, true, false}
	if len(ev) != len(wantDelays) {
		t.Fatalf("OnRetry events %+v, want %d", ev, len(wantDelays))
	}
	for i, e := range ev {
		if e.Delay != wantDelays[i] || e.Pushback != wantPushback[i] || e.Attempt != i+1 {
			t.Fatalf("OnRetry event %d: Attempt %d Delay %v Pushback %v, want Attempt %d Delay %v Pushback %v (all delays %v)",
				i, e.Attempt, e.Delay, e.Pushback, i+1, wantDelays[i], wantPushback[i], h.delays())
		}
	}
}

func TestPushbackDoNotRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
	}{
		{"negative", pushback("-1")},
		{"not a number", pushback("abc")},
		{"empty", pushback("")},
		{"two values", pushback("10", "20")},
		{"fraction", pushback("1.5")},
		{"RetryInfo negative", withDetails(codes.Unavailable, "overloaded", retryInfo(-time.Second))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			always(s, tc.step)
			c := dial(t, s, fastPolicy())
			err := generate(callCtx(t, 10*time.Second), c)
			wantStop(t, err, codes.Unavailable, retry.StopPushback, 1)
			wantCalls(t, s, methodGenerate, 1)
		})
	}
}

func TestRetryInfoHonoured(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
		want time.Duration
	}{
		{"Unavailable with RetryInfo", withDetails(codes.Unavailable, "later", retryInfo(250*time.Millisecond)), 250 * time.Millisecond},
		{"ResourceExhausted with RetryInfo", withDetails(codes.ResourceExhausted, "slow down", retryInfo(250*time.Millisecond)), 250 * time.Millisecond},
		{"trailer and RetryInfo: the longer wins", func(ctx context.Context) error {
			if err := setPushback(ctx, "100"); err != nil {
				return err
			}
			return retryInfoErr(codes.Unavailable, "later", 250*time.Millisecond)
		}, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			script(s, tc.step)
			var h hookLog
			p := fastPolicy()
			p.OnRetry = h.record
			c := dial(t, s, p)
			if err := generate(callCtx(t, 10*time.Second), c); err != nil {
				t.Fatalf("Generate: %v, want OK", err)
			}
			ts := s.times(methodGenerate)
			if len(ts) != 2 {
				t.Fatalf("server saw %d calls, want 2", len(ts))
			}
			if gap := ts[1].Sub(ts[0]); gap < tc.want {
				t.Fatalf("second attempt arrived %v after the first, want >= %v", gap, tc.want)
			}
			if ev := h.events(); len(ev) != 1 || ev[0].Delay != tc.want || !ev[0].Pushback {
				t.Fatalf("OnRetry events %+v, want one with Delay %v, Pushback true", ev, tc.want)
			}
		})
	}
}

func TestPushbackBeyondDeadlineReturnsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		step        step
		maxPushback time.Duration
	}{
		// 60s is beyond the default MaxPushback (30s), which would stop
		// with StopPushbackTooLong first: raise it to reach the deadline rule.
		{"trailer 60000, MaxPushback 2m", pushback("60000"), 2 * time.Minute},
		{"trailer 10000, default MaxPushback", pushback("10000"), 0},
		{"RetryInfo 10s", withDetails(codes.Unavailable, "later", retryInfo(10*time.Second)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			script(s, tc.step)
			p := fastPolicy()
			p.MaxPushback = tc.maxPushback
			c := dial(t, s, p)
			start := time.Now()
			err := generate(callCtx(t, 2*time.Second), c)
			elapsed := time.Since(start)
			wantStop(t, err, codes.Unavailable, retry.StopDeadline, 1)
			if elapsed >= time.Second {
				t.Fatalf("returned after %v, want well before the 2s deadline", elapsed)
			}
			wantCalls(t, s, methodGenerate, 1)
		})
	}
}

func TestPushbackBeyondMaxPushbackStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
	}{
		{"trailer 5000", pushback("5000")},
		{"RetryInfo 5s", withDetails(codes.Unavailable, "later", retryInfo(5*time.Second))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			script(s, tc.step)
			p := fastPolicy()
			p.MaxPushback = time.Second
			c := dial(t, s, p)
			start := time.Now()
			err := generate(callCtx(t, time.Minute), c)
			elapsed := time.Since(start)
			wantStop(t, err, codes.Unavailable, retry.StopPushbackTooLong, 1)
			if elapsed >= 2500*time.Millisecond {
				t.Fatalf("returned after %v, want at once (the pushback was 5s)", elapsed)
			}
			wantCalls(t, s, methodGenerate, 1)
		})
	}
}

// --- deadline and cancellation ---

func TestBackoffBeyondDeadlineReturnsAtOnce(t *testing.T) {
	s := &stubServer{}
	always(s, unavailable)
	p := retry.Policy{InitialBackoff: time.Second, Jitter: retry.NoJitter, Budget: retry.NoBudget}
	c := dial(t, s, p)
	start := time.Now()
	err := generate(callCtx(t, 500*time.Millisecond), c)
	elapsed := time.Since(start)
	wantStop(t, err, codes.Unavailable, retry.StopDeadline, 1)
	if elapsed >= 500*time.Millisecond {
		t.Fatalf("returned after %v, want before the 500ms deadline", elapsed)
	}
	wantCalls(t, s, methodGenerate, 1)
}

func TestCancelDuringWaitReturnsCanceled(t *testing.T) {
	s := &stubServer{}
	always(s, unavailable)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hooks atomic.Int32
	p := retry.Policy{
		InitialBackoff: time.Hour,
		MaxBackoff:     time.Hour,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		OnRetry: func(retry.RetryEvent) {
			hooks.Add(1)
			cancel() // OnRetry runs before the wait
		},
	}
	c := dial(t, s, p)
	// A wait that ignored the cancel would block for the whole hour.
	err := within(t, 10*time.Second, func() error { return generate(ctx, c) })
	wantStop(t, err, codes.Canceled, retry.StopCanceled, 1)
	if n := hooks.Load(); n != 1 {
		t.Fatalf("OnRetry called %d times, want 1", n)
	}
	s.barrier(t)
	wantCalls(t, s, methodGenerate, 1)
}

// TestNoAttemptStartsAfterDeadline: with a constant 50ms backoff and a
// 300ms deadline, every attempt starts before the deadline, and the call
// stops retrying only when no further attempt could start before it.
func TestNoAttemptStartsAfterDeadline(t *testing.T) {
	s := &stubServer{}
	always(s, unavailable)
	p := retry.Policy{
		MaxAttempts:    100,
		InitialBackoff: 50 * time.Millisecond,
		Multiplier:     1,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	}
	// The time each attempt starts, taken by an interceptor under ours just
	// before the attempt goes to gRPC: the server's arrival times would add
	// the machine's scheduling delays to the client's decision.
	var (
		mu     sync.Mutex
		starts []time.Time
	)
	record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c := s.start(t, grpc.WithChainUnaryInterceptor(retry.Unary(p), record), grpc.WithDisableRetry())
	s.warm(t) // connecting would take some of the deadline
	deadline := time.Now().Add(300 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	err := generate(ctx, c)
	returned := time.Now()
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("status.Code(err) = %v, want Unavailable or DeadlineExceeded (err: %v)", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The call decided to stop before it returned: then, a retry after the
	// 50ms backoff could not have started 1ms before the deadline. (How
	// many attempts fit depends on the machine's speed.)
	if room := deadline.Sub(returned); room > 51*time.Millisecond {
		t.Fatalf("the call returned after %d attempt(s) with %v left before the deadline, room for a retry after the 50ms backoff", len(starts), room)
	}
	for i, at := range starts {
		if !at.Before(deadline) {
			t.Errorf("attempt %d of %d started %v after the deadline", i+1, len(starts), at.Sub(deadline))
		}
	}
}

// --- per-attempt timeout and the caller's deadline ---

func TestPerAttemptTimeoutRetries(t *testing.T) {
	for _, tc := range []struct {
		name          string
		policyTimeout time.Duration
		opts          []grpc.CallOption
	}{
		{"policy PerAttemptTimeout", 100 * time.Millisecond, nil},
		{"per-call WithPerAttemptTimeout", 0, []grpc.CallOption{retry.WithPerAttemptTimeout(100 * time.Millisecond)}},
		{"per-call overrides the policy's", time.Hour, []grpc.CallOption{retry.WithPerAttemptTimeout(100 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			cut := make(chan struct{})
			script(s, func(ctx context.Context) error {
				<-ctx.Done() // hang until the attempt is cut
				close(cut)
				return status.FromContextError(ctx.Err()).Err()
			})
			var h hookLog
			p := fastPolicy()
			p.PerAttemptTimeout = tc.policyTimeout
			p.OnRetry = h.record
			c := dial(t, s, p)
			// Connect first: the attempt's 100ms would otherwise also cover
			// connecting the channel, and a loaded machine can spend it all
			// there, before the attempt reaches the server.
			s.warm(t)
			ctx := callCtx(t, 10*time.Second)
			start := time.Now()
			if err := within(t, 5*time.Second, func() error { return generate(ctx, c, tc.opts...) }); err != nil {
				t.Fatalf("Generate: %v, want OK", err)
			}
			if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
				t.Fatalf("returned after %v, before the first attempt's 100ms timeout", elapsed)
			}
			// Attempt 1 hangs and is cut by the timeout, then retried. On a
			// loaded machine a later attempt, answered at once, can also
			// miss its 100ms: each cut is retried the same way.
			ev := h.events()
			if len(ev) == 0 {
				t.Fatal("no retry: the hung attempt was not cut")
			}
			for _, e := range ev {
				if e.Code != codes.DeadlineExceeded || e.Class != retry.Timeout {
					t.Fatalf("OnRetry events %+v, want only DeadlineExceeded of class Timeout", ev)
				}
			}
			if got := s.calls(methodGenerate); got < 2 || got > len(ev)+1 {
				t.Fatalf("server saw %d attempt(s) for %d retries, want 2 or more, at most one per retry after the first", got, len(ev))
			}
			select {
			case <-cut:
			case <-time.After(5 * time.Second):
				t.Fatal("the server never saw the first attempt cut")
			}
		})
	}
}

// TestCallerContextNotRetried: the caller's own deadline or cancellation
// ending an attempt is returned at once, never retried.
func TestCallerContextNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline bool // else: cancel once the server has the attempt
		wantCode codes.Code
	}{
		{"deadline", true, codes.DeadlineExceeded},
		{"cancel", false, codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			arrived := make(chan struct{}, 100)
			observed := make(chan int, 100)
			always(s, func(ctx context.Context) error {
				arrived <- struct{}{}
				<-ctx.Done() // never answers: only the caller's context ends the attempt
				observed <- s.attempt(ctx)
				return status.FromContextError(ctx.Err()).Err()
			})
			var hooks atomic.Int32
			p := fastPolicy() // no per-attempt timeout
			p.OnRetry = func(retry.RetryEvent) { hooks.Add(1) }
			c := dial(t, s, p)
			var ctx context.Context
			if tc.deadline {
				ctx = callCtx(t, 200*time.Millisecond)
			} else {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
				go func() {
					<-arrived
					cancel()
				}()
			}
			err := within(t, 10*time.Second, func() error { return generate(ctx, c) })
			wantStop(t, err, tc.wantCode, retry.StopCanceled, 1)
			// Count only once the server has seen the attempt end, and
			// after a barrier, so that a retry on its way would be counted.
			select {
			case n := <-observed:
				if n != 1 {
					t.Fatalf("first attempt to end on the server was number %d", n)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the server never saw the first attempt end")
			}
			s.barrier(t)
			wantCalls(t, s, methodGenerate, 1)
			if n := hooks.Load(); n != 0 {
				t.Fatalf("OnRetry called %d times, want 0", n)
			}
		})
	}
}

// --- retry metadata and the OnRetry hook ---

func TestPreviousAttemptsHeader(t *testing.T) {
	s := &stubServer{}
	script(s, unavailable, unavailable)
	c := dial(t, s, fastPolicy())
	if err := generate(callCtx(t, 10*time.Second), c); err != nil {
		t.Fatalf("Generate: %v, want OK", err)
	}
	got := s.headers(methodGenerate, retry.PreviousAttemptsHeader)
	want := [][]string{nil, {"1"}, {"2"}}
	if len(got) != len(want) {
		t.Fatalf("%s on %d attempts: %q, want %q", retry.PreviousAttemptsHeader, len(got), got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%s per attempt %q, want %q", retry.PreviousAttemptsHeader, got, want)
		}
	}
}

func TestOnRetryOnlyOnRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		setup       func(s *stubServer)
		maxAttempts int
		wantErr     codes.Code
		wantEvents  int
	}{
		{"two failures then OK", func(s *stubServer) { script(s, unavailable, unavailable) }, 4, codes.OK, 2},
		{"permanent failure", func(s *stubServer) { always(s, fail(codes.NotFound, "no such model")) }, 4, codes.NotFound, 0},
		{"every attempt fails", func(s *stubServer) { always(s, unavailable) }, 3, codes.Unavailable, 2},
		{"first attempt OK", func(s *stubServer) { script(s) }, 4, codes.OK, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			tc.setup(s)
			var h hookLog
			p := fastPolicy()
			p.MaxAttempts = tc.maxAttempts
			p.OnRetry = h.record
			c := dial(t, s, p)
			err := generate(callCtx(t, 10*time.Second), c)
			if status.Code(err) != tc.wantErr {
				t.Fatalf("Generate: %v, want code %v", err, tc.wantErr)
			}
			ev := h.events()
			if len(ev) != tc.wantEvents {
				t.Fatalf("OnRetry called %d times (%+v), want %d", len(ev), ev, tc.wantEvents)
			}
			for i, e := range ev {
				if e.Method != methodGenerate || e.Attempt != i+1 || e.Code != codes.Unavailable ||
					e.Class != retry.Transient || status.Code(e.Err) != codes.Unavailable || e.Pushback {
					t.Fatalf("OnRetry event %d: %+v", i, e)
				}
			}
		})
	}
}

// --- the final error ---

func TestFinalErrorIsLastAttempt(t *testing.T) {
	errInfo := &errdetails.ErrorInfo{Reason: "MODEL_OVERLOADED", Domain: "inference.example"}
	for _, tc := range []struct {
		name         string
		steps        []step
		maxAttempts  int
		wantCode     codes.Code
		wantMsg      string
		wantReason   retry.StopReason
		wantAttempts int
		wantClass    retry.Class
		wantDetails  []proto.Message
	}{
		{
			name: "max attempts, last one rate limited",
			steps: []step{
				fail(codes.Unavailable, "attempt 1"),
				fail(codes.Unavailable, "attempt 2"),
				withDetails(codes.ResourceExhausted, "attempt 3", retryInfo(time.Millisecond), errInfo),
			},
			maxAttempts: 3, wantCode: codes.ResourceExhausted, wantMsg: "attempt 3",
			wantReason: retry.StopMaxAttempts, wantAttempts: 3, wantClass: retry.RateLimited,
			wantDetails: []proto.Message{retryInfo(time.Millisecond), errInfo},
		},
		{
			name: "permanent after a retry",
			steps: []step{
				fail(codes.Unavailable, "attempt 1"),
				withDetails(codes.NotFound, "attempt 2", errInfo),
			},
			maxAttempts: 4, wantCode: codes.NotFound, wantMsg: "attempt 2",
			wantReason: retry.StopPermanent, wantAttempts: 2, wantClass: retry.Permanent,
			wantDetails: []proto.Message{errInfo},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			// After the steps, keep failing with the last one.
			steps := slices.Clone(tc.steps)
			for len(steps) < tc.maxAttempts+1 {
				steps = append(steps, steps[len(steps)-1])
			}
			script(s, steps...)
			p := fastPolicy()
			p.MaxAttempts = tc.maxAttempts
			c := dial(t, s, p)
			err := generate(callCtx(t, 10*time.Second), c)
			wantStop(t, err, tc.wantCode, tc.wantReason, tc.wantAttempts)
			if e := retryErr(t, err); e.Class != tc.wantClass {
				t.Fatalf("Class %v, want %v", e.Class, tc.wantClass)
			}
			st, ok := status.FromError(err)
			if !ok || st.Code() != tc.wantCode || st.Message() != tc.wantMsg {
				t.Fatalf("status.FromError: %v %v %q, want a status %v %q", ok, st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
			details := status.Convert(err).Details()
			if len(details) != len(tc.wantDetails) {
				t.Fatalf("details %v, want %v", details, tc.wantDetails)
			}
			for i, d := range details {
				m, ok := d.(proto.Message)
				if !ok || !proto.Equal(m, tc.wantDetails[i]) {
					t.Fatalf("detail %d: %v, want %v", i, d, tc.wantDetails[i])
				}
			}
			wantCalls(t, s, methodGenerate, tc.wantAttempts)
		})
	}
}

// --- spent quota ---

func TestSpentQuota(t *testing.T) {
	for _, tc := range []struct {
		name      string
		step      step
		wantCalls int
	}{
		{"QuotaFailure alone is permanent", withDetails(codes.ResourceExhausted, "quota spent", quotaFailure()), 1},
		{"QuotaFailure with RetryInfo is retried", withDetails(codes.ResourceExhausted, "quota, later", quotaFailure(), retryInfo(time.Millisecond)), 2},
		{"QuotaFailure with pushback trailer is retried", func(ctx context.Context) error {
			if err := setPushback(ctx, "1"); err != nil {
				return err
			}
			return detailsErr(codes.ResourceExhausted, "quota, later", quotaFailure())
		}, 2},
		{"ResourceExhausted without details is retried", fail(codes.ResourceExhausted, "slow down"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			script(s, tc.step)
			c := dial(t, s, fastPolicy())
			err := generate(callCtx(t, 10*time.Second), c)
			if tc.wantCalls == 1 {
				wantStop(t, err, codes.ResourceExhausted, retry.StopPermanent, 1)
			} else if err != nil {
				t.Fatalf("Generate: %v, want OK after a retry", err)
			}
			wantCalls(t, s, methodGenerate, tc.wantCalls)
		})
	}
}

// --- method scoping ---

func TestMethodScoping(t *testing.T) {
	for _, tc := range []struct {
		name             string
		methods          []string
		wantToolRetried  bool
		wantGenerateRetr bool
	}{
		{"Generate only", []string{methodGenerate}, false, true},
		{"service prefix", []string{"/inference.v1.InferenceService/"}, true, true},
		{"CallTool only", []string{methodCallTool}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			script(s, unavailable, unavailable)
			const toolMsg = "tool backend down"
			s.CallToolF = func(context.Context, *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
				return nil, status.Error(codes.Unavailable, toolMsg)
			}
			p := fastPolicy()
			p.MaxAttempts = 3
			p.Methods = tc.methods
			c := dial(t, s, p)
			ctx := callCtx(t, 10*time.Second)

			err := generate(ctx, c)
			if tc.wantGenerateRetr {
				if err != nil {
					t.Fatalf("Generate: %v, want OK after retries", err)
				}
				wantCalls(t, s, methodGenerate, 3)
			} else {
				wantUntouched(t, err, "backend restarting")
				wantCalls(t, s, methodGenerate, 1)
			}

			_, err = c.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "send_email"})
			if tc.wantToolRetried {
				wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 3)
				wantCalls(t, s, methodCallTool, 3)
			} else {
				wantUntouched(t, err, toolMsg)
				wantCalls(t, s, methodCallTool, 1)
			}
		})
	}
}

// wantUntouched checks that err is the server's raw Unavailable error with
// message msg, not wrapped by the retry interceptor.
func wantUntouched(t *testing.T, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != msg {
		t.Fatalf("error %v, want the server's Unavailable %q", err, msg)
	}
	var e *retry.Error
	if errors.As(err, &e) {
		t.Fatalf("error %v is a *retry.Error, want the raw error of an untouched call", err)
	}
}

// --- per-call options ---

func TestPerCallOptions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []grpc.CallOption
		wantCalls int
		check     func(t *testing.T, err error)
	}{
		{"none: the policy's 5", nil, 5, func(t *testing.T, err error) {
			wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 5)
		}},
		{"WithMaxAttempts(2)", []grpc.CallOption{retry.WithMaxAttempts(2)}, 2, func(t *testing.T, err error) {
			wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 2)
		}},
		{"last option wins", []grpc.CallOption{retry.WithMaxAttempts(3), retry.WithMaxAttempts(1)}, 1, func(t *testing.T, err error) {
			wantStop(t, err, codes.Unavailable, retry.StopMaxAttempts, 1)
		}},
		{"Disable", []grpc.CallOption{retry.Disable()}, 1, func(t *testing.T, err error) {
			wantUntouched(t, err, "backend restarting")
		}},
		{"WithMaxAttempts(0)", []grpc.CallOption{retry.WithMaxAttempts(0)}, 0, func(t *testing.T, err error) {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v, want InvalidArgument", err)
			}
		}},
		{"WithPerAttemptTimeout(-1)", []grpc.CallOption{retry.WithPerAttemptTimeout(-1)}, 0, func(t *testing.T, err error) {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v, want InvalidArgument", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stubServer{}
			always(s, unavailable)
			p := fastPolicy()
			p.MaxAttempts = 5
			c := dial(t, s, p)
			err := generate(callCtx(t, 10*time.Second), c, tc.opts...)
			tc.check(t, err)
			wantCalls(t, s, methodGenerate, tc.wantCalls)
		})
	}
}

// --- idempotency key ---

func TestIdempotencyKey(t *testing.T) {
	const header = "x-idempotency-key"
	s := &stubServer{}
	s.GenerateF = failFirstPerPrompt(2)
	p := fastPolicy()
	p.IdempotencyHeader = header
	c := dial(t, s, p)
	ctx := callCtx(t, 10*time.Second)
	for _, prompt := range []string{"a", "b"} {
		if _, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt}); err != nil {
			t.Fatalf("Generate(%q): %v, want OK", prompt, err)
		}
	}
	// A key of the caller's own is kept, not replaced nor doubled.
	callerCtx := metadata.AppendToOutgoingContext(ctx, header, "caller-key-1")
	if _, err := c.Generate(callerCtx, &inferencev1.GenerateRequest{Prompt: "c"}); err != nil {
		t.Fatalf("Generate(c): %v, want OK", err)
	}

	// Disable: no key.
	if err := generate(ctx, c, retry.Disable()); status.Code(err) != codes.Unavailable {
		t.Fatalf("Generate with Disable: %v, want the first attempt's Unavailable", err)
	}
	if got := s.headers(methodGenerate, header); len(got) != 10 || got[9] != nil {
		t.Fatalf("%s per arrival %q, want none on the 10th (Disable)", header, got)
	}

	keys := s.headers(methodGenerate, header)[:9]
	if len(keys) != 9 {
		t.Fatalf("server saw %d calls, want 3 calls × 3 attempts", len(keys))
	}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for call := range 3 {
		for attempt := range 3 {
			got := keys[3*call+attempt]
			if len(got) != 1 {
				t.Fatalf("call %d attempt %d: %s = %q, want one value", call+1, attempt+1, header, got)
			}
			if call < 2 && !hex32.MatchString(got[0]) {
				t.Fatalf("call %d attempt %d: key %q, want 32 hex digits", call+1, attempt+1, got[0])
			}
			if call == 2 && got[0] != "caller-key-1" {
				t.Fatalf("call 3 attempt %d: key %q, want the caller's %q", attempt+1, got[0], "caller-key-1")
			}
			if got[0] != keys[3*call][0] {
				t.Fatalf("call %d: keys per attempt %q, want the same on every attempt", call+1, keys[3*call:3*call+3])
			}
		}
	}
	if keys[0][0] == keys[3][0] {
		t.Fatalf("calls 1 and 2 share the key %q, want a new key per call", keys[0][0])
	}
}

// --- concurrency ---

func TestConcurrentCalls(t *testing.T) {
	const n = 300
	s := &stubServer{}
	s.GenerateF = failFirstPerPrompt(1)
	var hooks atomic.Int64
	p := fastPolicy()
	p.OnRetry = func(retry.RetryEvent) { hooks.Add(1) }
	c := dial(t, s, p)
	ctx := callCtx(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			prompt := fmt.Sprintf("prompt-%03d", i)
			resp, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt})
			if err != nil {
				t.Errorf("Generate(%q): %v", prompt, err)
				return
			}
			if want := "ok:" + prompt; resp.GetText() != want {
				t.Errorf("Generate(%q) = %q, want %q", prompt, resp.GetText(), want)
			}
		})
	}
	wg.Wait()
	wantCalls(t, s, methodGenerate, 2*n)
	if got := hooks.Load(); got != n {
		t.Fatalf("OnRetry called %d times, want %d", got, n)
	}
}

// TestDefaultBudgetRetriesReplicaLoss is a replica lost with calls in
// flight: 300 concurrent calls through one default client, half of them
// failing their first attempt, every retry succeeding. The default budget
// charges only retries that fail, so every call succeeds.
func TestDefaultBudgetRetriesReplicaLoss(t *testing.T) {
	const n = 300
	s := &stubServer{}
	first := failFirstPerPrompt(1)
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		var i int
		fmt.Sscanf(req.GetPrompt(), "prompt-%d", &i)
		if i%2 == 0 {
			return first(ctx, req) // the half that was on the lost replica
		}
		return reply(req), nil
	}
	p := fastPolicy()
	p.Budget = nil // the default
	c := dial(t, s, p)
	ctx := callCtx(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: fmt.Sprintf("prompt-%03d", i)}); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	wantCalls(t, s, methodGenerate, n+n/2)
}

// TestDefaultBudgetStopsRetriesThatFail is the start of an outage: 300
// concurrent calls through one default client, every attempt failing. The
// calls in flight each get one retry (the budget cannot tell an outage from
// a burst until retries fail), but once failed retries have spent the
// credit (3 retries) no call gets a third attempt: whatever the timing, at
// most 2 third attempts and 1 fourth.
func TestDefaultBudgetStopsRetriesThatFail(t *testing.T) {
	const n = 300
	s := &stubServer{}
	s.GenerateF = func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	p := fastPolicy()
	p.Budget = nil
	c := dial(t, s, p)
	ctx := callCtx(t, 30*time.Second)
	var budgetStops atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: fmt.Sprint(i)})
			var e *retry.Error
			if !errors.As(err, &e) || status.Code(err) != codes.Unavailable || e.Reason != retry.StopBudget && e.Reason != retry.StopMaxAttempts {
				t.Errorf("call %d: %v, want Unavailable stopped by the budget or the attempts", i, err)
			}
			if e != nil && e.Reason == retry.StopBudget {
				budgetStops.Add(1)
			}
		})
	}
	wg.Wait()
	if got := s.calls(methodGenerate); got < n+1 || got > 2*n+3 {
		t.Fatalf("server saw %d attempts, want between %d and %d", got, n+1, 2*n+3)
	}
	if budgetStops.Load() < n-1 {
		t.Fatalf("%d calls stopped by the budget, want at least %d", budgetStops.Load(), n-1)
	}
}
