package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// backend is an InferenceService for the failover tests: each handler is
// given the request and the 1-based number of the call of its method, and
// every request is recorded.
type backend struct {
	inferencev1.UnimplementedInferenceServiceServer

	generate       func(ctx context.Context, req *inferencev1.GenerateRequest, n int) (string, error)
	streamGenerate func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], n int) error
	chat           func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse], n int) error
	ingest         func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse], n int) error

	mu       sync.Mutex
	calls    map[string]int
	requests []proto.Message
}

func (b *backend) arrive(method string, req proto.Message) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls == nil {
		b.calls = make(map[string]int)
	}
	b.calls[method]++
	if req != nil {
		b.requests = append(b.requests, proto.Clone(req))
	}
	return b.calls[method]
}

// count returns the calls (attempts) of method the backend has seen.
func (b *backend) count(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[method]
}

func (b *backend) received() []proto.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]proto.Message(nil), b.requests...)
}

func (b *backend) Generate(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	n := b.arrive(methodGenerate, req)
	if b.generate == nil {
		return nil, status.Error(codes.Unimplemented, "Generate")
	}
	text, err := b.generate(ctx, req, n)
	if err != nil {
		return nil, err
	}
	return &inferencev1.GenerateResponse{Text: text}, nil
}

func (b *backend) StreamGenerate(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	n := b.arrive(methodStreamGenerate, req)
	if b.streamGenerate == nil {
		return status.Error(codes.Unimplemented, "StreamGenerate")
	}
	return b.streamGenerate(req, stream, n)
}

func (b *backend) Chat(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
	n := b.arrive(methodChat, nil)
	if b.chat == nil {
		return status.Error(codes.Unimplemented, "Chat")
	}
	return b.chat(stream, n)
}

func (b *backend) Ingest(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
	n := b.arrive(methodIngest, nil)
	if b.ingest == nil {
		return status.Error(codes.Unimplemented, "Ingest")
	}
	return b.ingest(stream, n)
}

const (
	methodChat   = inferencev1.InferenceService_Chat_FullMethodName
	methodIngest = inferencev1.InferenceService_Ingest_FullMethodName
)

// always returns a Generate handler that always fails with code.
func always(code codes.Code) func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
	return func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
		return "", status.Errorf(code, "always %v", code)
	}
}

// answer returns a Generate handler that answers text.
func answer(text string) func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
	return func(context.Context, *inferencev1.GenerateRequest, int) (string, error) { return text, nil }
}

// foPolicy retries at once (1ms backoff), 3 attempts, no budget.
var foPolicy = retry.Policy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}

// connTo serves b in memory (bufconn) and returns a client connection to
// it with opts; both end at cleanup, leaving no goroutine behind.
func connTo(t testing.TB, b inferencev1.InferenceServiceServer, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, stop := serveBackend(b, opts...)
	t.Cleanup(stop)
	return cc
}

// serveBackend serves b in memory (bufconn) and returns a client
// connection to it with opts, and a function that closes the connection
// and stops the server. It panics if the client cannot be made.
func serveBackend(b inferencev1.InferenceServiceServer, opts ...grpc.DialOption) (*grpc.ClientConn, func()) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	inferencev1.RegisterInferenceServiceServer(srv, b)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		srv.Stop()
		<-served
		panic(err)
	}
	return cc, func() {
		cc.Close()
		srv.Stop()
		<-served
	}
}

// failoverClient returns a client of primary through a Failover built from
// cfg, outside the primary's retry interceptors (policy).
func failoverClient(t testing.TB, cfg retry.FailoverConfig, primary *backend, policy retry.Policy) inferencev1.InferenceServiceClient {
	t.Helper()
	fo, err := retry.NewFailover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return inferencev1.NewInferenceServiceClient(connTo(t, primary, append(fo.DialOptions(), retry.DialOptions(policy)...)...))
}

// fallbackTo returns a Fallback to b through its own retry interceptors.
func fallbackTo(t testing.TB, name string, b *backend) retry.Fallback {
	return retry.Fallback{Name: name, Conn: connTo(t, b, retry.DialOptions(foPolicy)...)}
}

// events collects FallbackEvents.
type events struct {
	mu  sync.Mutex
	evs []retry.FallbackEvent
}

func (e *events) add(ev retry.FallbackEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) all() []retry.FallbackEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]retry.FallbackEvent(nil), e.evs...)
}

var hi = &inferencev1.GenerateRequest{Prompt: "Hi", MaxTokens: 100}

func TestFailoverAfterRetries(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	secondary := &backend{generate: answer("from secondary")}
	var ev events
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		OnFallback: ev.add,
	}, primary, foPolicy)

	resp, err := client.Generate(context.Background(), hi)
	if err != nil || resp.GetText() != "from secondary" {
		t.Fatalf("Generate = %q, %v; want the secondary's answer", resp.GetText(), err)
	}
	if n := primary.count(methodGenerate); n != 3 {
		t.Errorf("primary saw %d attempts, want 3: the primary's retries run first", n)
	}
	if n := secondary.count(methodGenerate); n != 1 {
		t.Errorf("secondary saw %d calls, want 1", n)
	}
	evs := ev.all()
	if len(evs) != 1 {
		t.Fatalf("%d fallback events, want 1", len(evs))
	}
	e := evs[0]
	if e.From != 0 || e.To != 1 || e.FromName != "primary" || e.ToName != "secondary" || e.Skipped ||
		e.Code != codes.Unavailable || e.Class != retry.Transient || e.Reason != retry.StopMaxAttempts || e.Method != methodGenerate {
		t.Errorf("event %+v", e)
	}
}

// Each retryable class, once the primary's retries give up, moves the call
// to the fallback.
func TestFailoverOnEachRetryableClass(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(context.Context, *inferencev1.GenerateRequest, int) (string, error)
		policy  retry.Policy
		class   retry.Class
		reason  retry.StopReason
	}{
		{"transient", always(codes.Unavailable), foPolicy, retry.Transient, retry.StopMaxAttempts},
		{"rate-limited", always(codes.ResourceExhausted), foPolicy, retry.RateLimited, retry.StopMaxAttempts},
		{"timeout", func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
			<-ctx.Done() // hangs until the attempt's timeout
			return "", ctx.Err()
		}, func() retry.Policy { p := foPolicy; p.PerAttemptTimeout = 20 * time.Millisecond; return p }(), retry.Timeout, retry.StopMaxAttempts},
		{"the primary's own Policy.Timeout", func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
			<-ctx.Done() // hangs until the policy's timeout
			return "", ctx.Err()
		}, func() retry.Policy { p := foPolicy; p.Timeout = 20 * time.Millisecond; return p }(), retry.Timeout, retry.StopDeadline},
		{"do not retry", func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
			return "", retry.DoNotRetry(ctx, codes.Unavailable, "draining, go elsewhere")
		}, foPolicy, retry.Transient, retry.StopPushback},
		{"pushback too long", func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
			return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "come back in an hour", time.Hour)
		}, foPolicy, retry.RateLimited, retry.StopPushbackTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary := &backend{generate: tc.handler}
			secondary := &backend{generate: answer("ok")}
			var ev events
			client := failoverClient(t, retry.FailoverConfig{
				Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
				OnFallback: ev.add,
			}, primary, tc.policy)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := client.Generate(ctx, hi)
			if err != nil || resp.GetText() != "ok" {
				t.Fatalf("Generate = %q, %v", resp.GetText(), err)
			}
			evs := ev.all()
			if len(evs) != 1 || evs[0].Class != tc.class || evs[0].Reason != tc.reason {
				t.Fatalf("events %+v, want one with class %v and reason %v", evs, tc.class, tc.reason)
			}
		})
	}
}

// A retry budget that has run dry ends the primary's retrying at once
// (StopBudget), and the call still gets the fallback.
func TestFailoverAfterBudgetSpent(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	secondary := &backend{generate: answer("ok")}
	var ev events
	policy := foPolicy
	policy.Budget = retry.NewCreditBudget(retry.CreditBudgetConfig{Max: 1, NoDeposits: true, NoFloor: true})
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		OnFallback: ev.add,
	}, primary, policy)
	for i := 0; i < 2; i++ {
		if _, err := client.Generate(context.Background(), hi); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	evs := ev.all()
	if len(evs) != 2 || evs[1].Reason != retry.StopBudget {
		t.Fatalf("events %+v, want the second call to fall back with StopBudget", evs)
	}
	if n := primary.count(methodGenerate); n != 3 {
		t.Errorf("primary saw %d attempts, want 3 (2 for the first call, 1 once the budget is spent)", n)
	}
}

// A permanent error is the caller's answer: no fallback, the error as the
// primary returned it.
func TestFailoverNeverAfterPermanentError(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Internal} {
		t.Run(code.String(), func(t *testing.T) {
			primary := &backend{generate: always(code)}
			secondary := &backend{generate: answer("ok")}
			client := failoverClient(t, retry.FailoverConfig{
				Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)},
			}, primary, foPolicy)
			_, err := client.Generate(context.Background(), hi)
			var fe *retry.FallbackError
			var re *retry.Error
			if status.Code(err) != code || errors.As(err, &fe) || !errors.As(err, &re) || re.Reason != retry.StopPermanent {
				t.Fatalf("err = %v, want the primary's %v (*retry.Error, StopPermanent), not a FallbackError", err, code)
			}
			if n := secondary.count(methodGenerate); n != 0 {
				t.Fatalf("secondary saw %d calls, want 0", n)
			}
		})
	}
}

// The caller's own cancellation and deadline end the call: no fallback.
func TestFailoverNeverAfterCallerCancelOrDeadline(t *testing.T) {
	started := make(chan struct{}, 1)
	hang := func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
		started <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}
	primary := &backend{generate: hang}
	secondary := &backend{generate: answer("ok")}
	var ev events
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		OnFallback: ev.add,
	}, primary, foPolicy)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := client.Generate(ctx, hi)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = client.Generate(ctx, hi)
	<-started
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: %v, want DeadlineExceeded", err)
	}
	if n := secondary.count(methodGenerate); n != 0 || len(ev.all()) != 0 {
		t.Fatalf("secondary saw %d calls and %d fallback events, want none", n, len(ev.all()))
	}
}

// Rewrite changes the request sent to the fallback only; the caller's
// request and the primary's copy are untouched.
func TestFailoverRewrite(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	secondary := &backend{generate: func(_ context.Context, req *inferencev1.GenerateRequest, _ int) (string, error) {
		return fmt.Sprintf("%s/%d", req.GetPrompt(), req.GetMaxTokens()), nil
	}}
	fb := fallbackTo(t, "small-model", secondary)
	fb.Rewrite = retry.RewriteRequest(func(method string, r *inferencev1.GenerateRequest) *inferencev1.GenerateRequest {
		r = proto.CloneOf(r)
		r.Prompt = "[small] " + r.Prompt
		r.MaxTokens = min(r.MaxTokens, 16)
		return r
	})
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fb}}, primary, foPolicy)
	req := &inferencev1.GenerateRequest{Prompt: "Hi", MaxTokens: 100}
	resp, err := client.Generate(context.Background(), req)
	if err != nil || resp.GetText() != "[small] Hi/16" {
		t.Fatalf("Generate = %q, %v; want the rewritten request answered", resp.GetText(), err)
	}
	if req.GetPrompt() != "Hi" || req.GetMaxTokens() != 100 {
		t.Errorf("the caller's request was modified: %v", req)
	}
	for _, m := range primary.received() {
		if r := m.(*inferencev1.GenerateRequest); r.GetPrompt() != "Hi" || r.GetMaxTokens() != 100 {
			t.Errorf("primary got %v, want the caller's request", r)
		}
	}
}

// Every step runs under the caller's one deadline, and a step that would
// start with less than MinTimeLeft is not tried.
func TestFailoverSharesTheDeadline(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	var fallbackDeadline atomic.Value
	secondary := &backend{generate: func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
		dl, _ := ctx.Deadline()
		fallbackDeadline.Store(dl)
		return "ok", nil
	}}
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)},
	}, primary, foPolicy)
	deadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if _, err := client.Generate(ctx, hi); err != nil {
		t.Fatal(err)
	}
	got, _ := fallbackDeadline.Load().(time.Time)
	if got.IsZero() || got.After(deadline.Add(time.Second)) || got.Before(deadline.Add(-30*time.Second)) {
		t.Fatalf("fallback's deadline %v, want the caller's %v", got, deadline)
	}

	// With less time left than MinTimeLeft, the fallback is not tried.
	lateClient := failoverClient(t, retry.FailoverConfig{
		Fallbacks:   []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		MinTimeLeft: time.Hour,
	}, primary, foPolicy)
	before := secondary.count(methodGenerate)
	_, err := lateClient.Generate(ctx, hi)
	var fe *retry.FallbackError
	if !errors.As(err, &fe) || len(fe.Steps) != 2 || fe.Steps[1].Skipped != retry.SkipDeadline || fe.Steps[1].Err != nil {
		t.Fatalf("err = %v, want a FallbackError whose second step was skipped for the deadline", err)
	}
	if status.Code(err) != codes.Unavailable || secondary.count(methodGenerate) != before {
		t.Fatalf("code %v, secondary calls %d → %d; want the primary's Unavailable and no fallback call", status.Code(err), before, secondary.count(methodGenerate))
	}
	if !strings.Contains(err.Error(), "secondary: not tried (no time left before the deadline)") {
		t.Errorf("error text %q does not say why the fallback was not tried", err)
	}
}

// When every step fails, the error lists them all and keeps the last
// step's status; a permanent error at a fallback ends the chain.
func TestFailoverAllStepsFail(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	second := &backend{generate: always(codes.Unavailable)}
	third := &backend{generate: always(codes.ResourceExhausted)}
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks: []retry.Fallback{fallbackTo(t, "second", second), fallbackTo(t, "third", third)},
	}, primary, foPolicy)
	_, err := client.Generate(context.Background(), hi)
	var fe *retry.FallbackError
	if !errors.As(err, &fe) || len(fe.Steps) != 3 {
		t.Fatalf("err = %v, want a FallbackError of 3 steps", err)
	}
	for i, want := range []string{"primary", "second", "third"} {
		if s := fe.Steps[i]; s.Step != i || s.Name != want || s.Skipped != 0 || s.Err == nil {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("status.Code = %v, want the last step's ResourceExhausted", status.Code(err))
	}
	var re *retry.Error
	if !errors.As(err, &re) || re.Attempts != 3 || re.Class != retry.RateLimited {
		t.Errorf("errors.As(*retry.Error) = %+v, want the last step's", re)
	}
	for _, part := range []string{"primary: rpc error: code = Unavailable", "second: rpc error: code = Unavailable", "third: rpc error: code = ResourceExhausted"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}

	// A permanent error at the second step: the third is not tried.
	second.generate = always(codes.NotFound)
	before := third.count(methodGenerate)
	_, err = client.Generate(context.Background(), hi)
	if !errors.As(err, &fe) || len(fe.Steps) != 2 || status.Code(err) != codes.NotFound || third.count(methodGenerate) != before {
		t.Fatalf("err = %v; want a 2-step FallbackError with NotFound and no call to the third", err)
	}
}

// Methods keeps other methods out of the Failover: their errors are the
// primary's, untouched.
func TestFailoverMethodsScope(t *testing.T) {
	primary := &backend{generate: always(codes.Unavailable)}
	secondary := &backend{generate: answer("ok")}
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		Methods:   []string{methodStreamGenerate},
	}, primary, foPolicy)
	_, err := client.Generate(context.Background(), hi)
	var re *retry.Error
	if status.Code(err) != codes.Unavailable || !errors.As(err, &re) || secondary.count(methodGenerate) != 0 {
		t.Fatalf("err = %v, secondary %d; want the primary's error and no fallback", err, secondary.count(methodGenerate))
	}
}

// grpc.OnFinish runs once per logical call, with the caller's result,
// however many steps it took.
func TestFailoverOnFinishOnce(t *testing.T) {
	primary := &backend{
		generate: always(codes.Unavailable),
		streamGenerate: func(_ *inferencev1.StreamGenerateRequest, _ grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			return status.Error(codes.Unavailable, "down")
		},
	}
	secondary := &backend{
		generate: answer("ok"),
		streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			return sendTokens(s, "a")
		},
	}
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)},
	}, primary, foPolicy)
	var finishes []error
	var mu sync.Mutex
	onFinish := grpc.OnFinish(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		finishes = append(finishes, err)
	})
	if _, err := client.Generate(context.Background(), hi, onFinish); err != nil {
		t.Fatal(err)
	}
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"}, onFinish)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finishes) != 2 || finishes[0] != nil || finishes[1] != nil {
		t.Fatalf("OnFinish calls %v, want one nil per call", finishes)
	}
}

func TestFailoverConfigErrors(t *testing.T) {
	conn := connTo(t, &backend{})
	for _, tc := range []struct {
		cfg   retry.FailoverConfig
		field string
	}{
		{retry.FailoverConfig{Fallbacks: []retry.Fallback{{Name: "x"}}}, "Fallbacks[0].Conn"},
		{retry.FailoverConfig{Fallbacks: []retry.Fallback{{Name: "primary", Conn: conn}}}, "Fallbacks[0].Name"},
		{retry.FailoverConfig{Fallbacks: []retry.Fallback{{Conn: conn}, {Name: "fallback-1", Conn: conn}}}, "Fallbacks[1].Name"},
		{retry.FailoverConfig{MinTimeLeft: -time.Second}, "MinTimeLeft"},
		{retry.FailoverConfig{MaxReplayBytes: -1}, "MaxReplayBytes"},
		{retry.FailoverConfig{Methods: []string{"Generate"}}, "Methods[0]"},
		{retry.FailoverConfig{Fallbacks: []retry.Fallback{{Conn: (*grpc.ClientConn)(nil)}}}, "Fallbacks[0].Conn"},
		{retry.FailoverConfig{Breaker: new(retry.Breaker)}, "Breaker"},
		{retry.FailoverConfig{Fallbacks: []retry.Fallback{{Conn: conn, Breaker: &retry.Breaker{}}}}, "Fallbacks[0].Breaker"},
	} {
		_, err := retry.NewFailover(tc.cfg)
		var ce *retry.ConfigError
		if !errors.As(err, &ce) || ce.Config != "FailoverConfig" || ce.Field != tc.field || !strings.Contains(err.Error(), "FailoverConfig."+tc.field) {
			t.Errorf("NewFailover(%+v) = %v, want a ConfigError on %s", tc.cfg, err, tc.field)
		}
	}
	for _, tc := range []struct {
		cfg   retry.BreakerConfig
		field string
	}{
		{retry.BreakerConfig{Window: -1}, "Window"},
		{retry.BreakerConfig{Window: time.Millisecond, Buckets: 10}, "Window"},
		{retry.BreakerConfig{Buckets: -1}, "Buckets"},
		{retry.BreakerConfig{Buckets: 1001}, "Buckets"},
		{retry.BreakerConfig{MinCalls: -1}, "MinCalls"},
		{retry.BreakerConfig{FailureRate: 1.5}, "FailureRate"},
		{retry.BreakerConfig{SlowRate: -0.1}, "SlowRate"},
		{retry.BreakerConfig{OpenFor: time.Minute, MaxOpenFor: time.Second}, "MaxOpenFor"},
		{retry.BreakerConfig{Jitter: 2}, "Jitter"},
		{retry.BreakerConfig{Probes: -3}, "Probes"},
		{retry.BreakerConfig{SlowCall: -time.Second}, "SlowCall"},
		{retry.BreakerConfig{MaxPushback: -time.Second}, "MaxPushback"},
	} {
		_, err := retry.NewBreaker(tc.cfg)
		var ce *retry.ConfigError
		if !errors.As(err, &ce) || ce.Config != "BreakerConfig" || ce.Field != tc.field {
			t.Errorf("NewBreaker(%+v) = %v, want a ConfigError on %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := retry.NewBreaker(retry.BreakerConfig{}); err != nil {
		t.Errorf("zero BreakerConfig: %v", err)
	}
	if _, err := retry.NewFailover(retry.FailoverConfig{}); err != nil {
		t.Errorf("zero FailoverConfig: %v", err)
	}
}
