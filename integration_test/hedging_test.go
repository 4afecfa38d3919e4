package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// hedgePolicy hedges after delay, up to attempts, without a budget.
func hedgePolicy(delay time.Duration, attempts int) retry.Policy {
	return retry.Policy{MaxAttempts: attempts, Hedging: &retry.Hedging{Delay: delay}, Budget: retry.NoBudget}
}

// attemptScript makes GenerateF run script[n-1] for attempt n of a call,
// numbered by the attempt's own header (x-retry-hedge), not by the order
// in which attempts reach the server (on a busy machine a hedge can arrive
// first), and records how each ended.
type attemptScript struct {
	mu        sync.Mutex
	cancelled map[string][]int // attempts whose context ended before they answered
	ended     chan struct{}    // gets a value when an attempt's handler returns
	script    []func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error)
}

// waitEnded waits for n attempts' handlers to return (the server side of a
// cancelled attempt ends after the client's).
func (a *attemptScript) waitEnded(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-a.endedChan():
		case <-time.After(10 * time.Second):
			t.Fatalf("an attempt's handler did not return within 10s")
		}
	}
}

func (a *attemptScript) endedChan() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended == nil {
		a.ended = make(chan struct{}, 1000)
	}
	return a.ended
}

func (a *attemptScript) handler(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	ended := a.endedChan()
	n := incomingHedgeNumber(ctx)
	f := a.script[min(n, len(a.script))-1]
	defer func() { ended <- struct{}{} }()
	res, err := f(ctx, req)
	if ctx.Err() != nil {
		a.mu.Lock()
		if a.cancelled == nil {
			a.cancelled = make(map[string][]int)
		}
		a.cancelled[req.GetPrompt()] = append(a.cancelled[req.GetPrompt()], n)
		a.mu.Unlock()
	}
	return res, err
}

func (a *attemptScript) cancelledOf(prompt string) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.cancelled[prompt]...)
}

// hang answers only when its context ends (the loser of a race).
func hang(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// answer answers at once with text, the header x-answer and the trailer
// x-answer set to text.
func answer(text string) func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	return func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-answer", text))
		grpc.SetTrailer(ctx, metadata.Pairs("x-answer", text))
		return &inferencev1.GenerateResponse{Text: text}, nil
	}
}

func failWith(code codes.Code, kv ...string) func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	return func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if len(kv) > 0 {
			grpc.SetTrailer(ctx, metadata.Pairs(kv...))
		}
		return nil, status.Errorf(code, "scripted %v", code)
	}
}

// TestHedgeWinsAndTheLoserIsCancelled: the first attempt hangs, the hedge
// answers: the caller gets the hedge's reply, headers, trailer and peer,
// the first attempt's server context ends, and the hedge carries the
// attempt headers.
func TestHedgeWinsAndTheLoserIsCancelled(t *testing.T) {
	checkNoLeaks(t)
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){hang, answer("second")}}
	s := &stubServer{GenerateF: script.handler}
	c := dial(t, s, hedgePolicy(20*time.Millisecond, 2))
	s.barrier(t) // a connection is up: the call's timing is the hedge's
	var hdr, trl metadata.MD
	var p peer.Peer
	var report retry.CallReport
	res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"},
		grpc.Header(&hdr), grpc.Trailer(&trl), grpc.Peer(&p), retry.WithReport(&report))
	if err != nil || res.GetText() != "second" {
		t.Fatalf("got %v, %v; want the hedge's reply", res, err)
	}
	if hdr.Get("x-answer")[0] != "second" || trl.Get("x-answer")[0] != "second" || p.Addr == nil {
		t.Fatalf("captures: header %v, trailer %v, peer %v; want the winner's", hdr, trl, p)
	}
	script.waitEnded(t, 2)
	if got := script.cancelledOf("p"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("attempts cancelled on the server: %v, want [1]", got)
	}
	if report.Attempts != 2 || report.Winner != 2 || !report.Hedged || report.Code != codes.OK {
		t.Fatalf("report %+v", report)
	}
	// On a busy machine the hedge may even reach the server first: the
	// script numbers attempts by their headers.
	var hedges []string
	for _, a := range s.arrivalsOf(methodGenerate) {
		hedges = append(hedges, fmt.Sprint(a.MD.Get(retry.HedgeHeader))+fmt.Sprint(a.MD.Get(retry.PreviousAttemptsHeader)))
	}
	slices.Sort(hedges)
	if !slices.Equal(hedges, []string{"[1][1]", "[][]"}) {
		t.Fatalf("attempt headers (hedge, previous attempts): %v", hedges)
	}
}

// TestHedgeNotSentWhenTheFirstAnswersInTime: no hedge before the delay.
func TestHedgeNotSentWhenTheFirstAnswersInTime(t *testing.T) {
	checkNoLeaks(t)
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){answer("first")}}
	s := &stubServer{GenerateF: script.handler}
	c := dial(t, s, hedgePolicy(time.Hour, 3))
	for i := range 20 {
		res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: fmt.Sprint(i)})
		if err != nil || res.GetText() != "first" {
			t.Fatalf("got %v, %v", res, err)
		}
	}
	wantCalls(t, s, methodGenerate, 20)
}

// TestHedgeFatalCodeEndsTheCall: a Permanent code from any attempt ends the
// call with that status and cancels the others.
func TestHedgeFatalCodeEndsTheCall(t *testing.T) {
	checkNoLeaks(t)
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){hang, failWith(codes.InvalidArgument)}}
	s := &stubServer{GenerateF: script.handler}
	c := dial(t, s, hedgePolicy(20*time.Millisecond, 2))
	_, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
	if e := retryErr(t, err); status.Code(err) != codes.InvalidArgument || e.Reason != retry.StopPermanent || e.Attempts != 2 {
		t.Fatalf("got %v (%v, %d attempts), want InvalidArgument, StopPermanent after 2", err, e.Reason, e.Attempts)
	}
	script.waitEnded(t, 2)
	if got := script.cancelledOf("p"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("cancelled: %v, want [1]", got)
	}
	wantCalls(t, s, methodGenerate, 2)
}

// TestHedgeFailureSendsTheNextAtOnce: a non-fatal failure sends the next
// hedge at once, without waiting for the (here, hour-long) delay.
func TestHedgeFailureSendsTheNextAtOnce(t *testing.T) {
	checkNoLeaks(t)
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){failWith(codes.Unavailable), failWith(codes.ResourceExhausted), answer("third")}}
	s := &stubServer{GenerateF: script.handler}
	c := dial(t, s, hedgePolicy(time.Hour, 4))
	res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
	if err != nil || res.GetText() != "third" {
		t.Fatalf("got %v, %v", res, err)
	}
	wantCalls(t, s, methodGenerate, 3)
}

// TestHedgePushback: a pushback of n ms delays the next hedge by n ms; a
// "do not retry" pushback stops further hedges.
func TestHedgePushback(t *testing.T) {
	checkNoLeaks(t)
	t.Run("delay", func(t *testing.T) {
		script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){failWith(codes.Unavailable, retry.PushbackTrailer, "200"), answer("second")}}
		s := &stubServer{GenerateF: script.handler}
		c := dial(t, s, hedgePolicy(time.Hour, 4))
		if _, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}); err != nil {
			t.Fatal(err)
		}
		if times := s.times(methodGenerate); len(times) != 2 || times[1].Sub(times[0]) < 200*time.Millisecond {
			t.Fatalf("arrivals %v, want 2, the second at least 200ms after the first", times)
		}
	})
	t.Run("do not retry", func(t *testing.T) {
		script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){failWith(codes.Unavailable, retry.PushbackTrailer, "-1"), answer("second")}}
		s := &stubServer{GenerateF: script.handler}
		c := dial(t, s, hedgePolicy(time.Hour, 4))
		_, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
		if e := retryErr(t, err); status.Code(err) != codes.Unavailable || e.Reason != retry.StopPushback || e.Attempts != 1 {
			t.Fatalf("got %v (%v)", err, e.Reason)
		}
		wantCalls(t, s, methodGenerate, 1)
	})
}

// TestHedgeAllFail: when every attempt fails, the call ends once they all
// have, with the last failure's status.
func TestHedgeAllFail(t *testing.T) {
	checkNoLeaks(t)
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){failWith(codes.Unavailable), failWith(codes.ResourceExhausted), failWith(codes.Unavailable)}}
	s := &stubServer{GenerateF: script.handler}
	var report retry.CallReport
	c := dial(t, s, hedgePolicy(time.Millisecond, 3))
	_, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}, retry.WithReport(&report))
	e := retryErr(t, err)
	if e.Attempts != 3 || e.Reason != retry.StopMaxAttempts || status.Code(err) == codes.OK {
		t.Fatalf("got %v (%v, %d attempts)", err, e.Reason, e.Attempts)
	}
	if report.Winner != 0 || report.Attempts != 3 || report.Reason != retry.StopMaxAttempts {
		t.Fatalf("report %+v", report)
	}
	wantCalls(t, s, methodGenerate, 3)
}

// TestHedgesArePaidFromTheBudget: a hedge the budget refuses is not sent,
// and the attempt in flight goes on.
func TestHedgesArePaidFromTheBudget(t *testing.T) {
	checkNoLeaks(t)
	th := retry.NewThrottle(2, 1) // one failure leaves 1 token of 2: no retries
	denied := make(chan struct{})
	var once sync.Once
	p := hedgePolicy(time.Millisecond, 3)
	p.Budget = th
	var events []retry.HedgeEvent
	var mu sync.Mutex
	p.OnHedge = func(ev retry.HedgeEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		if ev.Kind == retry.HedgeDenied {
			once.Do(func() { close(denied) })
		}
	}
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if req.GetPrompt() == "spend" {
			return nil, status.Error(codes.Unavailable, "a failure the throttle counts")
		}
		select {
		case <-denied: // answer once the call's hedge has been refused
		case <-ctx.Done():
		}
		return answer("first")(ctx, req)
	}
	// Spend the throttle to its threshold, with a failure of a client that
	// shares the budget and does not retry.
	spender := p
	spender.Hedging, spender.MaxAttempts, spender.OnHedge = nil, 1, nil
	if _, err := dial(t, s, spender).Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "spend"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("spend: %v", err)
	}
	c := dial(t, s, p)
	if th.Tokens() != 1 {
		t.Fatalf("throttle has %v tokens, want 1 (no retries)", th.Tokens())
	}
	var report retry.CallReport
	res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}, retry.WithReport(&report))
	if err != nil || res.GetText() != "first" {
		t.Fatalf("got %v, %v; want the first attempt's answer", res, err)
	}
	if report.Attempts != 1 || report.Denied < 1 {
		t.Fatalf("report %+v, want 1 attempt and a hedge denied", report)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range events {
		if ev.Kind == retry.HedgeSent {
			t.Fatalf("a hedge was sent with an empty budget: %+v", events)
		}
	}
	wantCalls(t, s, methodGenerate, 2) // spend, and the call's first attempt
}

// TestHedgedCallsConcurrently: hundreds of hedged calls at once, with
// random slow first attempts: every caller gets the reply to its own
// request, and every attempt has returned when the test ends (goleak).
func TestHedgedCallsConcurrently(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	var slow sync.Map
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if _, loaded := slow.LoadOrStore(req.GetPrompt(), true); !loaded && rand.IntN(4) == 0 {
			return hang(ctx, req) // this call's first attempt is a straggler
		}
		return reply(req), nil
	}
	c := dial(t, s, hedgePolicy(10*time.Millisecond, 3))
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			prompt := fmt.Sprintf("prompt-%d", i)
			res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: prompt})
			if err != nil || res.GetText() != reply(&inferencev1.GenerateRequest{Prompt: prompt}).GetText() {
				t.Errorf("call %d: %v, %v", i, res, err)
			}
		})
	}
	wg.Wait()
}

// TestHedgeRefusedWithNothingInFlightEndsTheCall: when the only attempt
// has failed and the budget refuses the hedge that would replace it, the
// call ends at once with that failure (it does not wait for its deadline).
func TestHedgeRefusedWithNothingInFlightEndsTheCall(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	p := hedgePolicy(time.Hour, 2)
	p.Budget = retry.NewThrottle(1, 0.1) // the first failure leaves it empty
	c := dial(t, s, p)
	var report retry.CallReport
	start := time.Now()
	_, err := c.Generate(callCtx(t, time.Hour), &inferencev1.GenerateRequest{Prompt: "p"}, retry.WithReport(&report))
	if e := retryErr(t, err); e.Reason != retry.StopBudget || status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable stopped by the budget", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("the call took %v: it waited for its deadline", d)
	}
	if report.Denied != 1 || report.Attempts != 1 {
		t.Fatalf("report %+v", report)
	}
}

// hedgeNumber returns the attempt number of a hedged call's attempt from
// its request headers: 1 for the first, n+1 for the hedge that carries
// x-retry-hedge n.
func hedgeNumber(md metadata.MD) int {
	v := md.Get(retry.HedgeHeader)
	if len(v) == 0 {
		return 1
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return -1
	}
	return n + 1
}

// incomingHedgeNumber is hedgeNumber of a server handler's request.
func incomingHedgeNumber(ctx context.Context) int {
	md, _ := metadata.FromIncomingContext(ctx)
	return hedgeNumber(md)
}

// outgoingHedgeNumber is hedgeNumber of a client attempt's context.
func outgoingHedgeNumber(ctx context.Context) int {
	md, _ := metadata.FromOutgoingContext(ctx)
	return hedgeNumber(md)
}

// raceCall is what the attempts of one call in
// TestHedgeLoserCancelledWhenTheWinnerEndsAsTheOtherStarts tell each other.
type raceCall struct {
	release   chan struct{} // the first attempt's handler answers once closed
	firstDone chan struct{} // closed once the first attempt's invoker returned
	hedgeDone chan struct{} // closed once the hedge's invoker returned
}

type raceCallKey struct{}

func raceCallOf(ctx context.Context) *raceCall {
	rc, _ := ctx.Value(raceCallKey{}).(*raceCall)
	return rc
}

// TestHedgeLoserCancelledWhenTheWinnerEndsAsTheOtherStarts: an attempt that
// is being started while another wins is cancelled all the same, so the
// call returns with the winner's reply at once, not at its deadline.
//
// "first wins": the first attempt's reply is received while the hedge is
// being sent (the hook that reports the hedge waits for it), so the winner
// is decided while the hedge's context is being made. "all at once": with
// every attempt sent at once, the hedge wins while the first attempt is
// still starting. The loser's handler hangs until its context ends; the
// deadline is 10s, so a loser left running shows as a call of 10s (and,
// under -race, as a data race on the loser's cancel function).
func TestHedgeLoserCancelledWhenTheWinnerEndsAsTheOtherStarts(t *testing.T) {
	checkNoLeaks(t)
	for _, tc := range []struct {
		name   string
		delay  time.Duration
		winner int
	}{
		{"first wins", time.Millisecond, 1},
		{"all at once", -1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls sync.Map // prompt → *raceCall
			s := &stubServer{}
			s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
				v, ok := calls.Load(req.GetPrompt())
				if !ok {
					return reply(req), nil // the warm-up call
				}
				rc := v.(*raceCall)
				n := incomingHedgeNumber(ctx)
				if n != tc.winner {
					return hang(ctx, req)
				}
				if n == 1 {
					select {
					case <-rc.release:
					case <-ctx.Done():
						return nil, status.FromContextError(ctx.Err()).Err()
					}
				}
				return &inferencev1.GenerateResponse{Text: fmt.Sprint("attempt ", n)}, nil
			}
			p := hedgePolicy(tc.delay, 2)
			p.OnHedge = func(ev retry.HedgeEvent) {
				if rc := raceCallOf(ev.Context); rc != nil && ev.Kind == retry.HedgeSent && tc.winner == 1 {
					close(rc.release)
					<-rc.firstDone // the winner's answer is in while the hedge starts
				}
			}
			// Runs inside the retry interceptor, once per attempt.
			inner := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				rc := raceCallOf(ctx)
				if rc == nil {
					return invoker(ctx, method, req, reply, cc, opts...)
				}
				n := outgoingHedgeNumber(ctx)
				if tc.winner == 2 && n == 1 {
					select { // the hedge wins while the first attempt starts
					case <-rc.hedgeDone:
					case <-ctx.Done():
					}
				}
				err := invoker(ctx, method, req, reply, cc, opts...)
				if n == 1 {
					close(rc.firstDone)
				} else {
					close(rc.hedgeDone)
				}
				return err
			}
			c := s.start(t, grpc.WithChainUnaryInterceptor(retry.Unary(p), inner), grpc.WithDisableRetry())
			if _, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "warm-up"}, retry.Disable(), grpc.WaitForReady(true)); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			const callsN, workers = 300, 4
			const deadline = 10 * time.Second
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := w; i < callsN; i += workers {
						prompt := fmt.Sprint("call-", i)
						rc := &raceCall{release: make(chan struct{}), firstDone: make(chan struct{}), hedgeDone: make(chan struct{})}
						calls.Store(prompt, rc)
						ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), raceCallKey{}, rc), deadline)
						start := time.Now()
						res, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt})
						took := time.Since(start)
						cancel()
						if want := fmt.Sprint("attempt ", tc.winner); err != nil || res.GetText() != want {
							t.Errorf("%s: got %v, %v; want %q", prompt, res, err, want)
							return
						}
						if took > deadline/2 {
							t.Errorf("%s: the call took %v (deadline %v): its loser was not cancelled", prompt, took, deadline)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// leakCheckFrom returns a check that fails t unless every goroutine started
// since leakCheckFrom was called has ended, the client's and the server's
// alike (goroutines that exist now, such as the connection's, are
// ignored). Call it once the connection is up (after s.barrier), and the
// check after each call.
func leakCheckFrom(t *testing.T) func() {
	opt := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		var err error
		for range 10 { // goleak waits about 0.4s each time: 4s for a loaded machine
			if err = goleak.Find(opt); err == nil {
				return
			}
		}
		t.Fatalf("goroutines outlived the call: %v", err)
	}
}

// arrivals counts, per call (by prompt), the attempts that reached the
// server, and tells when n have.
type arrivals struct {
	n     int
	mu    sync.Mutex
	count map[string]int
	all   map[string]chan struct{}
}

func newArrivals(n int) *arrivals {
	return &arrivals{n: n, count: map[string]int{}, all: map[string]chan struct{}{}}
}

// arrive records an attempt of call and returns a channel closed once n
// attempts of call have arrived.
func (a *arrivals) arrive(call string) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.all[call]
	if ch == nil {
		ch = make(chan struct{})
		a.all[call] = ch
	}
	a.count[call]++
	if a.count[call] == a.n {
		close(ch)
	}
	return ch
}

// TestHedgeLosersCancelledPromptly: once an attempt wins, the call returns
// with its reply at once and the server sees the other attempts' contexts
// end soon after, whichever attempt wins; no goroutine outlives the call.
func TestHedgeLosersCancelledPromptly(t *testing.T) {
	checkNoLeaks(t)
	const attempts, bound = 3, 2 * time.Second // a bound for a loaded machine; the deadline is 10s
	for winner := 1; winner <= attempts; winner++ {
		t.Run(fmt.Sprint("winner ", winner), func(t *testing.T) {
			arrived := newArrivals(attempts)
			answered := make(chan time.Time, 1)
			lost := make(chan time.Time, attempts)
			s := &stubServer{}
			s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
				n := incomingHedgeNumber(ctx)
				select {
				case <-arrived.arrive(req.GetPrompt()): // every attempt is in flight
				case <-ctx.Done():
					lost <- time.Now()
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				if n == winner {
					answered <- time.Now()
					return &inferencev1.GenerateResponse{Text: fmt.Sprint("attempt ", n)}, nil
				}
				<-ctx.Done()
				lost <- time.Now()
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			c := dial(t, s, hedgePolicy(time.Millisecond, attempts))
			s.barrier(t)
			leaks := leakCheckFrom(t)
			res, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
			returned := time.Now()
			if want := fmt.Sprint("attempt ", winner); err != nil || res.GetText() != want {
				t.Fatalf("got %v, %v; want %q", res, err, want)
			}
			won := <-answered
			if d := returned.Sub(won); d > bound {
				t.Fatalf("the call returned %v after its winner answered", d)
			}
			for range attempts - 1 {
				select {
				case at := <-lost:
					if d := at.Sub(returned); d > bound {
						t.Fatalf("a loser's context ended %v after the call returned", d)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a loser's context did not end within 10s of the call")
				}
			}
			leaks()
		})
	}
}

// TestHedgeRepliesNeverMixed: both attempts of every call answer at the
// same moment, each with its own reply, header and trailer; the loser's
// answer, finishing after the winner's, is discarded. Each of hundreds of
// concurrent calls gets one attempt's reply, header and trailer, all from
// the same attempt (with -race: no attempt writes into another's).
func TestHedgeRepliesNeverMixed(t *testing.T) {
	checkNoLeaks(t)
	arrived := newArrivals(2)
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		n := incomingHedgeNumber(ctx)
		select {
		case <-arrived.arrive(req.GetPrompt()):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		tag := fmt.Sprint(n)
		grpc.SetHeader(ctx, metadata.Pairs("x-attempt", tag))
		grpc.SetTrailer(ctx, metadata.Pairs("x-attempt", tag))
		// Replies of different lengths: a reply written over another shows.
		return &inferencev1.GenerateResponse{Text: req.GetPrompt() + "/" + strings.Repeat(tag, 10*n)}, nil
	}
	c := dial(t, s, hedgePolicy(time.Millisecond, 2))
	s.barrier(t)
	var wins [3]atomic.Int32
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			prompt := fmt.Sprint("call-", i)
			var hdr, trl metadata.MD
			res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: prompt}, grpc.Header(&hdr), grpc.Trailer(&trl))
			if err != nil {
				t.Errorf("%s: %v", prompt, err)
				return
			}
			h, tr := hdr.Get("x-attempt"), trl.Get("x-attempt")
			if len(h) != 1 || len(tr) != 1 || h[0] != tr[0] {
				t.Errorf("%s: header %v, trailer %v: want one attempt's", prompt, h, tr)
				return
			}
			n, _ := strconv.Atoi(h[0])
			if want := prompt + "/" + strings.Repeat(h[0], 10*n); res.GetText() != want {
				t.Errorf("%s: reply %q with the header and trailer of attempt %s", prompt, res.GetText(), h[0])
				return
			}
			if n == 1 || n == 2 {
				wins[n].Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("wins: first attempt %d, hedge %d", wins[1].Load(), wins[2].Load())
}

// TestHedgeIdempotencyKeyOnEveryAttempt: with IdempotencyHeader, every
// attempt of a hedged call, whether sent on time or to replace a failed
// one, carries the same key, and another call carries another.
func TestHedgeIdempotencyKeyOnEveryAttempt(t *testing.T) {
	checkNoLeaks(t)
	const header = "x-idempotency-key"
	script := &attemptScript{script: []func(context.Context, *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error){
		hang,                        // 1: slow, a hedge is sent on time
		failWith(codes.Unavailable), // 2: fails, replaced at once
		answer("third"),
	}}
	s := &stubServer{GenerateF: script.handler}
	p := hedgePolicy(time.Millisecond, 3)
	p.IdempotencyHeader = header
	c := dial(t, s, p)
	s.barrier(t)
	keys := map[string]bool{}
	for i, prompt := range []string{"p", "q"} {
		if res, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: prompt}); err != nil || res.GetText() != "third" {
			t.Fatalf("%s: got %v, %v", prompt, res, err)
		}
		s.barrier(t) // every attempt sent has been recorded (a loser may be cancelled before its handler runs)
		got := s.headers(methodGenerate, header)[3*i:]
		if len(got) != 3 {
			t.Fatalf("%s: %d attempts reached the server, want 3", prompt, len(got))
		}
		for _, v := range got {
			if len(v) != 1 || v[0] != got[0][0] || len(v[0]) != 32 {
				t.Fatalf("%s: keys %v: want one 32-digit key on every attempt", prompt, got)
			}
		}
		keys[got[0][0]] = true
	}
	if len(keys) != 2 {
		t.Fatalf("two calls carried keys %v: want a key of their own each", keys)
	}
}

// failOrder makes the attempts of a hedged call, all in flight, fail in a
// given order, each with a code of its own: an attempt fails only once the
// client has handled the failure before it (the policy's Classify, which
// the client calls as it handles a failure, tells the server).
type failOrder struct {
	order   []int // attempt numbers, in the order they fail
	arrived *arrivals
	mu      sync.Mutex
	handled []chan struct{} // handled[i] is closed once the i-th failure was classified
}

func newFailOrder(order ...int) *failOrder {
	f := &failOrder{order: order, arrived: newArrivals(len(order))}
	for range order {
		f.handled = append(f.handled, make(chan struct{}))
	}
	return f
}

// failCodes are the codes of attempts 1, 2 and 3.
var failCodes = [...]codes.Code{1: codes.Unavailable, 2: codes.ResourceExhausted, 3: codes.Aborted}

// fail is the server side of attempt n: it waits until every attempt is in
// flight and the failure before its own was handled, then returns its
// error.
func (f *failOrder) fail(ctx context.Context, call string, n int) error {
	i := slices.Index(f.order, n)
	waits := []<-chan struct{}{f.arrived.arrive(call)}
	if i > 0 {
		waits = append(waits, f.handled[i-1])
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return status.Errorf(failCodes[n], "attempt %d", n)
}

// classify is the policy's Classify: every scripted failure is transient,
// and its handling is told to the next attempt to fail.
func (f *failOrder) classify(st *status.Status, _ metadata.MD) retry.Class {
	var n int
	if _, err := fmt.Sscanf(st.Message(), "attempt %d", &n); err == nil {
		if i := slices.Index(f.order, n); i >= 0 {
			f.mu.Lock()
			select {
			case <-f.handled[i]:
			default:
				close(f.handled[i])
			}
			f.mu.Unlock()
		}
	}
	return retry.Transient
}

// TestHedgeAllFailLastStatusWins: when every attempt fails, the call's
// error has the status (code and message) of the last attempt to fail,
// whichever attempt that is.
func TestHedgeAllFailLastStatusWins(t *testing.T) {
	checkNoLeaks(t)
	for _, order := range [][]int{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			f := newFailOrder(order...)
			s := &stubServer{}
			s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
				return nil, f.fail(ctx, req.GetPrompt(), incomingHedgeNumber(ctx))
			}
			p := hedgePolicy(time.Millisecond, 3)
			p.Classify = f.classify
			c := dial(t, s, p)
			s.barrier(t)
			leaks := leakCheckFrom(t)
			_, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
			last := order[len(order)-1]
			wantStop(t, err, failCodes[last], retry.StopMaxAttempts, 3)
			if msg, want := status.Convert(err).Message(), fmt.Sprint("attempt ", last); msg != want {
				t.Fatalf("message %q, want %q", msg, want)
			}
			leaks()
		})
	}
}

// TestHedgeSentAfterTheFirstReplyWasDecoded: a hedge sent after the first
// attempt has decoded its reply into the caller's message, while that
// attempt has not yet returned (an interceptor inside the retry
// interceptor holds it), makes its own reply without reading the caller's:
// under -race, no access to the caller's reply races with the decoding.
// The first attempt's answer wins.
func TestHedgeSentAfterTheFirstReplyWasDecoded(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		if incomingHedgeNumber(ctx) > 1 {
			return hang(ctx, req)
		}
		return reply(req), nil
	}
	var hedges sync.Map // prompt → chan struct{}, closed once the call's hedge is sent
	hedgeOf := func(ctx context.Context) chan struct{} {
		md, _ := metadata.FromOutgoingContext(ctx)
		v, _ := hedges.Load(md.Get("x-prompt")[0])
		return v.(chan struct{})
	}
	p := hedgePolicy(time.Millisecond, 2)
	p.OnHedge = func(ev retry.HedgeEvent) {
		if ev.Kind == retry.HedgeSent {
			close(hedgeOf(ev.Context))
		}
	}
	inner := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if outgoingHedgeNumber(ctx) == 1 {
			select { // the reply is decoded; the attempt returns once a hedge is sent
			case <-hedgeOf(ctx):
			case <-ctx.Done():
			}
		}
		return err
	}
	c := s.start(t, grpc.WithChainUnaryInterceptor(retry.Unary(p), inner), grpc.WithDisableRetry())
	for i := range 50 {
		prompt := fmt.Sprint("call-", i)
		hedges.Store(prompt, make(chan struct{}))
		ctx := metadata.AppendToOutgoingContext(callCtx(t, 30*time.Second), "x-prompt", prompt)
		res, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt})
		if want := reply(&inferencev1.GenerateRequest{Prompt: prompt}).GetText(); err != nil || res.GetText() != want {
			t.Fatalf("%s: got %v, %v; want %q", prompt, res, err, want)
		}
	}
}
