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

// Hundreds of concurrent calls through a breaker as it goes through its
// states, and a fallback: every call succeeds, with one answer, while the
// race detector sees the breaker's and the chain's shared state change
// under them. The breaker's clock stands still unless the test moves it, so
// what each phase must do is exact: 100 calls during an outage open the
// breaker once; 100 calls while it is open are all refused, and the
// primary sees none; once the open period has passed, calls in two batches
// of 50 probe the recovered primary (one probe at a time, the others
// refused) until two probes have closed it; 100 more calls all go to the
// primary.
func TestFailoverConcurrent(t *testing.T) {
	clk := retry.NewTestClock()
	var tr transitions
	br := testBreaker(t, clk, retry.BreakerConfig{ConsecutiveFailures: 5, OpenFor: time.Second, Jitter: -1, Probes: 2, OnStateChange: tr.add})
	var down atomic.Bool
	down.Store(true)
	primary := &backend{
		generate: func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
			if down.Load() {
				return "", status.Error(codes.Unavailable, "region down")
			}
			return "primary", nil
		},
		streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			if down.Load() {
				return status.Error(codes.Unavailable, "region down")
			}
			return sendTokens(s, "primary")
		},
	}
	secondary := &backend{generate: answer("secondary"), streamGenerate: streamTokens("secondary")}
	policy := foPolicy
	policy.MaxAttempts = 2
	client := failoverClient(t, retry.FailoverConfig{Breaker: br, Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, policy)

	// calls makes n concurrent calls, one in four a server stream, and
	// returns how many each backend answered.
	calls := func(n int) (fromPrimary, fromSecondary int) {
		t.Helper()
		var wg sync.WaitGroup
		answers := make(chan string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%4 == 0 {
					stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
					if err != nil {
						t.Error(err)
						return
					}
					toks, err := readTokens(stream)
					if err != nil || len(toks) != 1 {
						t.Errorf("stream: %v, %v; want one token", toks, err)
						return
					}
					answers <- toks[0]
					return
				}
				resp, err := client.Generate(context.Background(), hi)
				if err != nil {
					t.Error(err)
					return
				}
				answers <- resp.GetText()
			}()
		}
		wg.Wait()
		close(answers)
		for a := range answers {
			switch a {
			case "primary":
				fromPrimary++
			case "secondary":
				fromSecondary++
			default:
				t.Errorf("answer %q", a)
			}
		}
		if fromPrimary+fromSecondary != n {
			t.Fatalf("%d of %d calls answered", fromPrimary+fromSecondary, n)
		}
		return fromPrimary, fromSecondary
	}
	seen := func() int { return primary.count(methodGenerate) + primary.count(methodStreamGenerate) }
	stats := func() retry.BreakerStats { return br.Stats()[0] }

	// The outage: every call falls back, and the failures open the breaker.
	if p, _ := calls(100); p != 0 {
		t.Fatalf("outage: %d calls answered by the primary", p)
	}
	if st := stats(); st.State != retry.BreakerOpen || st.Opened != 1 || st.Rejected != 0 {
		t.Fatalf("after the outage: %+v, want open, opened once, nothing refused yet", st)
	}

	// Open: every call is refused, goes to the secondary, and the primary
	// sees nothing.
	before := seen()
	if p, _ := calls(100); p != 0 {
		t.Fatalf("open: %d calls answered by the primary", p)
	}
	if st := stats(); st.State != retry.BreakerOpen || st.Rejected != 100 || st.Probes != 0 || seen() != before {
		t.Fatalf("while open: %+v, primary saw %d attempts; want 100 refused and none to the primary", st, seen()-before)
	}

	// Recovery: after the open period, probes one at a time; the first of
	// each batch probes, so two batches close it.
	down.Store(false)
	clk.Advance(2 * time.Second)
	calls(50)
	calls(50)
	if st := stats(); st.State != retry.BreakerClosed || st.Probes != 2 || st.Opened != 1 {
		t.Fatalf("after recovery: %+v, want closed after 2 probes", st)
	}

	// Closed again: the primary answers every call.
	before = seen()
	if p, _ := calls(100); p != 100 || seen() != before+100 {
		t.Fatalf("closed: the primary answered %d of 100 calls in %d attempts", p, seen()-before)
	}
	if got, want := tr.String(), "[closed→open open→half-open half-open→closed]"; got != want {
		t.Errorf("transitions %s, want %s", got, want)
	}
}
