package integration_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// serverEnds counts the server-side ends of stream attempts, and how many
// ended because their context was cancelled.
type serverEnds struct {
	ended     chan struct{}
	cancelled atomic.Int32
}

func newServerEnds() *serverEnds { return &serverEnds{ended: make(chan struct{}, 1000)} }

func (e *serverEnds) end(ctx context.Context) {
	if ctx.Err() != nil {
		e.cancelled.Add(1)
	}
	e.ended <- struct{}{}
}

func (e *serverEnds) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-e.ended:
		case <-time.After(10 * time.Second):
			t.Fatal("a stream attempt's handler did not return within 10s")
		}
	}
}

// TestHedgedStreamFirstTokenWins: the first attempt is slow to its first
// token (it even sends headers at once), the hedge streams at once: the
// caller gets the hedge's tokens, each once, and the first attempt is
// cancelled.
func TestHedgedStreamFirstTokenWins(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	ends := newServerEnds()
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		defer ends.end(stream.Context())
		if s.attempt(stream.Context()) == 1 {
			stream.SendHeader(metadata.Pairs("x-stage", "accepted")) // headers alone do not win
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		return sendTokens(stream, req.GetPrompt(), 0, 5)
	}
	var report retry.CallReport
	c := dialStream(t, s, hedgePolicy(20*time.Millisecond, 2))
	stream, err := c.StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"}, retry.WithReport(&report))
	if err != nil {
		t.Fatal(err)
	}
	toks, err := recvTokens(stream)
	if err != nil || !slices.Equal(toks, wantTokenList("p", 0, 5)) {
		t.Fatalf("tokens %v, %v", toks, err)
	}
	ends.wait(t, 2)
	if ends.cancelled.Load() != 1 {
		t.Fatalf("%d attempts cancelled, want the first", ends.cancelled.Load())
	}
	if report.Attempts != 2 || report.Winner != 2 || !report.Hedged {
		t.Fatalf("report %+v", report)
	}
	var hedges []string
	for _, a := range s.arrivalsOf(methodStreamGenerate) {
		hedges = append(hedges, fmt.Sprint(a.MD.Get(retry.HedgeHeader)))
	}
	slices.Sort(hedges)
	if !slices.Equal(hedges, []string{"[1]", "[]"}) {
		t.Fatalf("hedge headers %v", hedges)
	}
}

// TestHedgedBidiReplaysAndSendsToEveryAttempt: messages sent before a hedge
// are replayed onto it, later ones go to every attempt in flight; the
// winner's answers reach the caller once each, in order.
func TestHedgedBidiReplaysAndSendsToEveryAttempt(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	ends := newServerEnds()
	var mu sync.Mutex
	got := map[int][]string{}
	s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		defer ends.end(stream.Context())
		n := s.attempt(stream.Context())
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			mu.Lock()
			got[n] = append(got[n], m.GetText())
			mu.Unlock()
			if n == 2 { // the hedge answers as it reads; the first never does
				if err := stream.Send(&inferencev1.ChatResponse{Text: m.GetText()}); err != nil {
					return err
				}
			}
		}
		if n == 1 {
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		return nil
	}
	hedged := make(chan struct{})
	p := hedgePolicy(20*time.Millisecond, 2)
	p.OnHedge = func(ev retry.HedgeEvent) {
		if ev.Kind == retry.HedgeSent {
			close(hedged)
		}
	}
	stream, err := dialStream(t, s, p).Chat(streamCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b"} {
		if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
			t.Fatal(err)
		}
	}
	<-hedged // the hedge is on its way: the next message goes to both attempts
	if err := stream.Send(&inferencev1.ChatRequest{Text: "c"}); err != nil {
		t.Fatal(err)
	}
	var answers []string
	for range 3 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, m.GetText())
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if !slices.Equal(answers, []string{"a", "b", "c"}) {
		t.Fatalf("answers %v", answers)
	}
	ends.wait(t, 2)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got[1], []string{"a", "b", "c"}) || !slices.Equal(got[2], []string{"a", "b", "c"}) {
		t.Fatalf("the attempts read %v", got)
	}
}

// TestHedgedStreamFatalAndAllFail: a Permanent code from any attempt ends
// the stream; when every attempt fails, the stream ends once they all have.
func TestHedgedStreamFatalAndAllFail(t *testing.T) {
	checkNoLeaks(t)
	t.Run("fatal", func(t *testing.T) {
		s := &stubServer{}
		ends := newServerEnds()
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			defer ends.end(stream.Context())
			if s.attempt(stream.Context()) == 1 {
				<-stream.Context().Done()
				return stream.Context().Err()
			}
			return status.Error(codes.PermissionDenied, "no")
		}
		stream, err := dialStream(t, s, hedgePolicy(10*time.Millisecond, 2)).StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = recvTokens(stream)
		if e := retryErr(t, err); status.Code(err) != codes.PermissionDenied || e.Reason != retry.StopPermanent {
			t.Fatalf("got %v", err)
		}
		ends.wait(t, 2)
	})
	t.Run("all fail", func(t *testing.T) {
		s := &stubServer{}
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return status.Error(codes.Unavailable, "down")
		}
		stream, err := dialStream(t, s, hedgePolicy(time.Hour, 3)).StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = recvTokens(stream)
		if e := retryErr(t, err); status.Code(err) != codes.Unavailable || e.Reason != retry.StopMaxAttempts || e.Attempts != 3 {
			t.Fatalf("got %v", err)
		}
		wantArrivals(t, s, methodStreamGenerate, 3)
	})
}

// TestHedgedClientStream: an upload whose first attempt is slow to answer
// is answered by the hedge, which got every chunk.
func TestHedgedClientStream(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
		var n int64
		for {
			if _, err := stream.Recv(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			n++
		}
		if s.attempt(stream.Context()) == 1 {
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		return stream.SendAndClose(&inferencev1.IngestResponse{Chunks: n})
	}
	stream, err := dialStream(t, s, hedgePolicy(20*time.Millisecond, 2)).Ingest(streamCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil || res.GetChunks() != 3 {
		t.Fatalf("got %v, %v", res, err)
	}
}

// TestHedgedStreamHeaderCommitsToFirstHeaders: a caller that asks for
// headers before receiving gets the first attempt's to send them, and the
// stream is that attempt.
func TestHedgedStreamHeaderCommitsToFirstHeaders(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		n := s.attempt(stream.Context())
		if n == 1 {
			<-stream.Context().Done() // neither headers nor tokens
			return stream.Context().Err()
		}
		stream.SendHeader(metadata.Pairs("x-attempt", fmt.Sprint(n)))
		return sendTokens(stream, req.GetPrompt(), 0, 2)
	}
	stream, err := dialStream(t, s, hedgePolicy(10*time.Millisecond, 2)).StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil || fmt.Sprint(md.Get("x-attempt")) != "[2]" {
		t.Fatalf("Header = %v, %v", md, err)
	}
	if toks, err := recvTokens(stream); err != nil || !slices.Equal(toks, wantTokenList("p", 0, 2)) {
		t.Fatalf("tokens %v, %v", toks, err)
	}
}

// TestHedgedStreamsConcurrently: many hedged streams at once with random
// stragglers: every caller gets exactly its own tokens.
func TestHedgedStreamsConcurrently(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	var slow sync.Map
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		if _, loaded := slow.LoadOrStore(req.GetPrompt(), true); !loaded && rand.IntN(3) == 0 {
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		return sendTokens(stream, req.GetPrompt(), 0, 4)
	}
	c := dialStream(t, s, hedgePolicy(10*time.Millisecond, 3))
	var wg sync.WaitGroup
	for i := range 150 {
		wg.Go(func() {
			prompt := fmt.Sprintf("p%d", i)
			stream, err := c.StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: prompt})
			if err != nil {
				t.Error(err)
				return
			}
			if toks, err := recvTokens(stream); err != nil || !slices.Equal(toks, wantTokenList(prompt, 0, 4)) {
				t.Errorf("%s: %v, %v", prompt, toks, err)
			}
		})
	}
	wg.Wait()
}

// TestHedgedStreamRepliesNeverMixed: both attempts of every stream answer
// at the same moment, each with its own header, tokens and trailer. Each
// of many concurrent streams gets every token, its header and its trailer
// from one attempt.
func TestHedgedStreamRepliesNeverMixed(t *testing.T) {
	checkNoLeaks(t)
	arrived := newArrivals(2)
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		ctx := stream.Context()
		select {
		case <-arrived.arrive(req.GetPrompt()):
		case <-ctx.Done():
			return ctx.Err()
		}
		tag := fmt.Sprint(incomingHedgeNumber(ctx))
		stream.SetHeader(metadata.Pairs("x-attempt", tag))
		stream.SetTrailer(metadata.Pairs("x-attempt", tag))
		return sendTokens(stream, req.GetPrompt()+"/"+tag, 0, 4)
	}
	c := dialStream(t, s, hedgePolicy(time.Millisecond, 2))
	s.barrier(t)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			prompt := fmt.Sprint("stream-", i)
			stream, err := c.StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: prompt})
			if err != nil {
				t.Errorf("%s: %v", prompt, err)
				return
			}
			toks, err := recvTokens(stream)
			if err != nil {
				t.Errorf("%s: %v", prompt, err)
				return
			}
			hdr, _ := stream.Header()
			h, tr := hdr.Get("x-attempt"), stream.Trailer().Get("x-attempt")
			if len(h) != 1 || len(tr) != 1 || h[0] != tr[0] {
				t.Errorf("%s: header %v, trailer %v: want one attempt's", prompt, h, tr)
				return
			}
			if want := wantTokenList(prompt+"/"+h[0], 0, 4); !slices.Equal(toks, want) {
				t.Errorf("%s: tokens %v with the header and trailer of attempt %s", prompt, toks, h[0])
			}
		})
	}
	wg.Wait()
}

// TestHedgedStreamIdempotencyKeyOnEveryAttempt: every attempt of a hedged
// stream carries the call's one idempotency key.
func TestHedgedStreamIdempotencyKeyOnEveryAttempt(t *testing.T) {
	checkNoLeaks(t)
	const header = "x-idempotency-key"
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		switch incomingHedgeNumber(stream.Context()) {
		case 1: // slow: a hedge is sent on time
			<-stream.Context().Done()
			return stream.Context().Err()
		case 2: // fails: replaced at once
			return status.Error(codes.Unavailable, "down")
		}
		return sendTokens(stream, req.GetPrompt(), 0, 2)
	}
	p := hedgePolicy(time.Millisecond, 3)
	p.IdempotencyHeader = header
	c := dialStream(t, s, p)
	s.barrier(t)
	stream, err := c.StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if toks, err := recvTokens(stream); err != nil || !slices.Equal(toks, wantTokenList("p", 0, 2)) {
		t.Fatalf("tokens %v, %v", toks, err)
	}
	got := s.headers(methodStreamGenerate, header)
	if len(got) != 3 {
		t.Fatalf("%d attempts reached the server, want 3", len(got))
	}
	for _, v := range got {
		if len(v) != 1 || v[0] != got[0][0] || len(v[0]) != 32 {
			t.Fatalf("keys %v: want one 32-digit key on every attempt", got)
		}
	}
}

// TestHedgedStreamAllFailLastStatusWins: when every attempt of a stream
// fails, the stream's error has the status of the last attempt to fail.
func TestHedgedStreamAllFailLastStatusWins(t *testing.T) {
	checkNoLeaks(t)
	for _, order := range [][]int{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			f := newFailOrder(order...)
			s := &stubServer{}
			s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
				return f.fail(stream.Context(), req.GetPrompt(), incomingHedgeNumber(stream.Context()))
			}
			p := hedgePolicy(time.Millisecond, 3)
			p.Classify = f.classify
			c := dialStream(t, s, p)
			s.barrier(t)
			leaks := leakCheckFrom(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = recvTokens(stream)
			last := order[len(order)-1]
			wantStreamStop(t, err, failCodes[last], retry.StopMaxAttempts, 3)
			if msg, want := status.Convert(err).Message(), fmt.Sprint("attempt ", last); msg != want {
				t.Fatalf("message %q, want %q", msg, want)
			}
			cancel()
			leaks()
		})
	}
}

// TestHedgedStreamNoHedgePastReplayBuffer: once the messages sent outgrow
// MaxReplayBytes, no further hedge is sent, neither on time nor to replace
// a failed attempt: a new attempt could not be given those messages.
func TestHedgedStreamNoHedgePastReplayBuffer(t *testing.T) {
	checkNoLeaks(t)
	big := strings.Repeat("x", 100) // the request alone outgrows the buffer
	policy := func(delay time.Duration) retry.Policy {
		p := hedgePolicy(delay, 3)
		p.MaxReplayBytes = 64
		return p
	}
	t.Run("failure", func(t *testing.T) {
		s := &stubServer{}
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			return status.Error(codes.Unavailable, "down") // would send the next hedge at once
		}
		stream, err := dialStream(t, s, policy(time.Hour)).StreamGenerate(streamCtx(t, 30*time.Second), &inferencev1.StreamGenerateRequest{Prompt: big})
		if err != nil {
			t.Fatal(err)
		}
		_, err = recvTokens(stream)
		wantStreamStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
		wantArrivals(t, s, methodStreamGenerate, 1)
	})
	t.Run("on time", func(t *testing.T) {
		// The first attempt hangs until the call's deadline; hedges are due
		// every 10ms. A hedge sent before the request went out (a busy
		// machine) gets it like the first attempt; one sent after could
		// not be given it.
		requests := make(chan string, 3)
		s := &stubServer{}
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			requests <- req.GetPrompt()
			<-stream.Context().Done()
			return stream.Context().Err()
		}
		c := dialStream(t, s, policy(10*time.Millisecond))
		s.barrier(t)
		stream, err := c.StreamGenerate(streamCtx(t, 300*time.Millisecond), &inferencev1.StreamGenerateRequest{Prompt: big})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recvTokens(stream); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want the deadline", err)
		}
		s.barrier(t) // every attempt sent has reached the server
		for n := range s.calls(methodStreamGenerate) {
			select {
			case r := <-requests:
				if r != big {
					t.Fatalf("an attempt got the request %q", r)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("attempt %d of %d reached the server without the request: a hedge was sent past the replay buffer", n+1, s.calls(methodStreamGenerate))
			}
		}
	})
}

// TestHedgedStreamHedgeOpenedAfterTheWinIsCancelled: a hedge whose stream
// opens after another attempt won (here: held until the caller has the
// winner's first token) is cancelled as soon as it opens; it does not run
// until the stream ends.
func TestHedgedStreamHedgeOpenedAfterTheWinIsCancelled(t *testing.T) {
	checkNoLeaks(t)
	hedgeSent := make(chan struct{})
	firstToken := make(chan struct{})
	hedgeCancelled := make(chan struct{})
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		ctx := stream.Context()
		if incomingHedgeNumber(ctx) != 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		for _, w := range []chan struct{}{hedgeSent, nil, hedgeCancelled} {
			if w == nil {
				if err := sendTokens(stream, req.GetPrompt(), 0, 1); err != nil {
					return err
				}
				continue
			}
			select {
			case <-w:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return sendTokens(stream, req.GetPrompt(), 1, 3)
	}
	p := hedgePolicy(time.Millisecond, 2)
	p.OnHedge = func(ev retry.HedgeEvent) {
		if ev.Kind == retry.HedgeSent {
			close(hedgeSent)
		}
	}
	// Runs inside the retry interceptor, once per attempt.
	inner := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		hedge := outgoingHedgeNumber(ctx) > 1
		if hedge {
			select {
			case <-firstToken:
			case <-ctx.Done():
			}
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if hedge {
			go func() {
				<-ctx.Done()
				close(hedgeCancelled)
			}()
		}
		return cs, err
	}
	c := dialStream(t, s, p, grpc.WithChainStreamInterceptor(inner))
	stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	close(firstToken)
	rest, err := recvTokens(stream)
	if got := append([]string{m.GetToken()}, rest...); err != nil || !slices.Equal(got, wantTokenList("p", 0, 3)) {
		t.Fatalf("tokens %v, %v: the hedge was not cancelled when it opened", got, err)
	}
}
