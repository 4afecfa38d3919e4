package retry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// testBreaker returns a breaker on clk with fixed random draws of 0.5
// (open periods of exactly OpenFor).
func testBreaker(t testing.TB, clk *retry.TestClock, cfg retry.BreakerConfig) *retry.Breaker {
	t.Helper()
	b, err := retry.NewBreaker(retry.WithBreakerSeams(cfg, clk, retry.FixedRand(0.5)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// transitions records a breaker's state changes as "from→to".
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) add(ev retry.BreakerEvent) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, ev.From.String()+"→"+ev.To.String())
}

func (tr *transitions) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return fmt.Sprint(tr.got)
}

// The breaker opens on the primary's failures; then calls go straight to
// the fallback (the primary sees nothing) or, without one, fail fast with
// Unavailable. After OpenFor a probe (one attempt) goes to the primary:
// failing, it reopens for twice as long; succeeding Probes times, it closes.
func TestFailoverBreakerLifecycle(t *testing.T) {
	clk := retry.NewTestClock()
	var tr transitions
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 4, OpenFor: 10 * time.Second, MaxOpenFor: time.Minute, Probes: 2, OnStateChange: tr.add})
	var primaryDown atomic.Bool
	primaryDown.Store(true)
	primary := &backend{generate: func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
		if primaryDown.Load() {
			return "", status.Error(codes.Unavailable, "region down")
		}
		return "primary", nil
	}}
	secondary := &backend{generate: answer("secondary")}
	var ev events
	client := failoverClient(t, retry.FailoverConfig{
		Breaker:    br,
		Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		OnFallback: ev.add,
	}, primary, foPolicy)
	call := func() string {
		t.Helper()
		resp, err := client.Generate(context.Background(), hi)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		return resp.GetText()
	}

	for i := 0; i < 4; i++ {
		if got := call(); got != "secondary" {
			t.Fatalf("call %d answered by %q", i, got)
		}
	}
	if br.State() != retry.BreakerOpen || primary.count(methodGenerate) != 12 {
		t.Fatalf("after 4 failed calls: state %v, primary attempts %d; want open after 4×3 attempts", br.State(), primary.count(methodGenerate))
	}
	// Open: the primary is skipped.
	for i := 0; i < 10; i++ {
		call()
	}
	if n := primary.count(methodGenerate); n != 12 {
		t.Fatalf("the open breaker let %d attempts through", n-12)
	}
	evs := ev.all()
	if last := evs[len(evs)-1]; !last.Skipped || !retry.IsBreakerOpen(last.Err) || last.Code != codes.Unavailable {
		t.Fatalf("fallback event while open: %+v", last)
	}

	// Half-open after OpenFor: one probe, one attempt; still down → open
	// again, for twice as long.
	clk.Advance(10 * time.Second)
	call()
	if n := primary.count(methodGenerate); n != 13 {
		t.Fatalf("probe made %d attempts, want 1", n-12)
	}
	if br.State() != retry.BreakerOpen {
		t.Fatalf("state after a failed probe: %v", br.State())
	}
	clk.Advance(10 * time.Second)
	call()
	if n := primary.count(methodGenerate); n != 13 {
		t.Fatalf("reopened breaker let a call through after OpenFor: its period should have doubled")
	}

	// The primary is back: two successful probes close the breaker.
	primaryDown.Store(false)
	clk.Advance(10 * time.Second)
	if got := call(); got != "primary" {
		t.Fatalf("first probe answered by %q", got)
	}
	if br.State() != retry.BreakerHalfOpen {
		t.Fatalf("after one of two probes: %v", br.State())
	}
	if got := call(); got != "primary" {
		t.Fatalf("second probe answered by %q", got)
	}
	if br.State() != retry.BreakerClosed {
		t.Fatalf("after two successful probes: %v", br.State())
	}
	want := "[closed→open open→half-open half-open→open open→half-open half-open→closed]"
	if tr.String() != want {
		t.Fatalf("transitions %v, want %v", tr.String(), want)
	}
	st := br.Stats()[0]
	if st.Opened != 2 || st.Probes != 3 || st.Rejected != 11 {
		t.Fatalf("stats %+v: want 2 opens, 3 probes, 11 refusals", st)
	}
}

// Without a fallback, an open breaker fails calls fast with Unavailable
// and says why; streams too.
func TestFailoverBreakerFailsFastWithoutFallback(t *testing.T) {
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 2})
	primary := &backend{generate: always(codes.Unavailable), streamGenerate: streamFails(codes.Unavailable)}
	client := failoverClient(t, retry.FailoverConfig{Breaker: br}, primary, foPolicy)
	for i := 0; i < 2; i++ {
		if _, err := client.Generate(context.Background(), hi); status.Code(err) != codes.Unavailable || retry.IsBreakerOpen(err) {
			t.Fatalf("call %d: %v, want the primary's own Unavailable", i, err)
		}
	}
	before := primary.count(methodGenerate)
	_, err := client.Generate(context.Background(), hi)
	var be *retry.BreakerOpenError
	if !errors.As(err, &be) || status.Code(err) != codes.Unavailable || be.State != retry.BreakerOpen || be.Until.IsZero() {
		t.Fatalf("err = %v, want a *BreakerOpenError with Unavailable", err)
	}
	if st := status.Convert(err); st.Message() != "retry: circuit breaker open" {
		t.Errorf("message %q", st.Message())
	}
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if !retry.IsBreakerOpen(err) || status.Code(err) != codes.Unavailable {
		t.Fatalf("stream: %v, want the breaker's Unavailable", err)
	}
	if primary.count(methodGenerate) != before || primary.count(methodStreamGenerate) != 0 {
		t.Fatal("the open breaker let calls through")
	}
}

// Permanent errors are answers: a storm of them never opens the breaker,
// and the caller's own cancellations do not count at all.
func TestFailoverBreakerIgnoresPermanentAndCancellations(t *testing.T) {
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 5})
	var code atomic.Int32
	primary := &backend{generate: func(ctx context.Context, req *inferencev1.GenerateRequest, _ int) (string, error) {
		if req.GetPrompt() == "hang" {
			<-ctx.Done()
			return "", ctx.Err()
		}
		return "", status.Error(codes.Code(code.Load()), "no")
	}}
	client := failoverClient(t, retry.FailoverConfig{Breaker: br}, primary, foPolicy)
	for _, c := range []codes.Code{codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.FailedPrecondition, codes.Unimplemented} {
		code.Store(int32(c))
		for i := 0; i < 20; i++ {
			client.Generate(context.Background(), hi)
		}
	}
	st := br.Stats()[0]
	if st.State != retry.BreakerClosed || st.Successes != 100 || st.Failures != 0 {
		t.Fatalf("after 100 permanent errors: %+v, want closed, 100 successes", st)
	}
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 0 {
			cancel()
		} else {
			var c2 context.CancelFunc
			ctx, c2 = context.WithTimeout(ctx, time.Millisecond)
			defer c2()
		}
		client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "hang"})
		cancel()
	}
	if st2 := br.Stats()[0]; st2.Successes != 100 || st2.Failures != 0 || st2.State != retry.BreakerClosed {
		t.Fatalf("after cancelled calls: %+v, want them not counted", st2)
	}
}

// A server's pushback, longer than the retries could wait, holds the
// breaker open at least that long.
func TestFailoverBreakerPushbackHoldsOpen(t *testing.T) {
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 2, OpenFor: time.Second, MaxPushback: time.Hour})
	primary := &backend{generate: func(ctx context.Context, _ *inferencev1.GenerateRequest, _ int) (string, error) {
		return "", retry.RetryAfter(ctx, codes.ResourceExhausted, "maintenance", 10*time.Minute)
	}}
	secondary := &backend{generate: answer("secondary")}
	var ev events
	client := failoverClient(t, retry.FailoverConfig{
		Breaker:    br,
		Fallbacks:  []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		OnFallback: ev.add,
	}, primary, foPolicy)
	for i := 0; i < 2; i++ {
		client.Generate(context.Background(), hi)
	}
	var re *retry.Error
	if evs := ev.all(); len(evs) != 2 || !errors.As(evs[0].Err, &re) || re.Reason != retry.StopPushbackTooLong || re.Pushback != 10*time.Minute {
		t.Fatalf("events %+v: want the primary's *Error with its 10m pushback", evs)
	}
	if br.State() != retry.BreakerOpen {
		t.Fatalf("state %v", br.State())
	}
	before := primary.count(methodGenerate)
	clk.Advance(5 * time.Minute) // far past OpenFor, within the pushback
	client.Generate(context.Background(), hi)
	if primary.count(methodGenerate) != before {
		t.Fatal("the breaker probed before the server's pushback ran out")
	}
	clk.Advance(5*time.Minute + time.Millisecond)
	client.Generate(context.Background(), hi)
	if primary.count(methodGenerate) != before+1 {
		t.Fatalf("no probe once the pushback ran out (%d attempts)", primary.count(methodGenerate)-before)
	}
}

// A stream whose primary's breaker is open goes straight to the fallback.
func TestFailoverBreakerStream(t *testing.T) {
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 1})
	primary := &backend{streamGenerate: streamFails(codes.Unavailable)}
	secondary := &backend{streamGenerate: streamTokens("s")}
	client := failoverClient(t, retry.FailoverConfig{Breaker: br, Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, foPolicy)
	for i := 0; i < 3; i++ {
		stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if toks, err := readTokens(stream); err != nil || len(toks) != 1 {
			t.Fatalf("stream %d: %v, %v", i, toks, err)
		}
	}
	if n := primary.count(methodStreamGenerate); n != 3 {
		t.Fatalf("primary saw %d attempts, want the 3 of the first stream only", n)
	}
}

// A fallback's own breaker skips it while open.
func TestFailoverFallbackBreaker(t *testing.T) {
	clk := retry.NewTestClock()
	primary := &backend{generate: always(codes.Unavailable)}
	second := &backend{generate: always(codes.Unavailable)}
	third := &backend{generate: answer("third")}
	fb2 := fallbackTo(t, "second", second)
	fb2.Breaker = testBreaker(t, clk, retry.BreakerConfig{MinCalls: 1})
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fb2, fallbackTo(t, "third", third)}}, primary, foPolicy)
	for i := 0; i < 3; i++ {
		if resp, err := client.Generate(context.Background(), hi); err != nil || resp.GetText() != "third" {
			t.Fatalf("call %d: %q, %v", i, resp.GetText(), err)
		}
	}
	if n := second.count(methodGenerate); n != 3 {
		t.Fatalf("second saw %d attempts, want the first call's 3 only", n)
	}
}

// Method groups have circuits of their own.
func TestFailoverBreakerGroups(t *testing.T) {
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{MinCalls: 1, Group: func(m string) string {
		if m == methodGenerate {
			return "generate"
		}
		return "other"
	}})
	primary := &backend{generate: always(codes.Unavailable), streamGenerate: streamTokens("ok")}
	client := failoverClient(t, retry.FailoverConfig{Breaker: br}, primary, foPolicy)
	client.Generate(context.Background(), hi)
	if _, err := client.Generate(context.Background(), hi); !retry.IsBreakerOpen(err) {
		t.Fatalf("second Generate: %v, want the open breaker's", err)
	}
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if toks, err := readTokens(stream); err != nil || len(toks) != 1 {
		t.Fatalf("the other group's call: %v, %v", toks, err)
	}
	if br.StateOf("generate") != retry.BreakerOpen || br.StateOf("other") != retry.BreakerClosed || br.State() != retry.BreakerClosed {
		t.Fatalf("states: generate %v, other %v, \"\" %v", br.StateOf("generate"), br.StateOf("other"), br.State())
	}
	stats := br.Stats()
	if len(stats) != 2 || stats[0].Group != "generate" || stats[1].Group != "other" || stats[1].Successes != 1 {
		t.Fatalf("stats %+v", stats)
	}
}

// Hundreds of concurrent calls through a flapping primary, a breaker on
// the real clock and a fallback: every call succeeds exactly once, and the
// race detector sees the breaker's and the chain's shared state.
func TestFailoverConcurrent(t *testing.T) {
	br, err := retry.NewBreaker(retry.BreakerConfig{MinCalls: 10, OpenFor: time.Millisecond, Window: 100 * time.Millisecond, Probes: 2})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	primary := &backend{
		generate: func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
			if n.Add(1)%3 != 0 {
				return "", status.Error(codes.Unavailable, "flapping")
			}
			return "primary", nil
		},
		streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			if n.Add(1)%3 != 0 {
				return status.Error(codes.Unavailable, "flapping")
			}
			return sendTokens(s, "p")
		},
	}
	secondary := &backend{generate: answer("secondary"), streamGenerate: streamTokens("s")}
	policy := foPolicy
	policy.MaxAttempts = 2
	client := failoverClient(t, retry.FailoverConfig{Breaker: br, Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, policy)
	const calls = 400
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%4 == 0 {
				stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
				if err != nil {
					errs <- err
					return
				}
				if toks, err := readTokens(stream); err != nil || len(toks) != 1 {
					errs <- fmt.Errorf("stream: %v, %v", toks, err)
				}
				return
			}
			if _, err := client.Generate(context.Background(), hi); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := br.Stats()[0]
	if st.Successes < 0 || st.Failures < 0 || st.State > retry.BreakerHalfOpen {
		t.Fatalf("stats %+v", st)
	}
}
