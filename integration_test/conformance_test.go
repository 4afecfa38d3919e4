package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Behaviours that follow gRFC A6 as grpc-go's built-in retry applies it,
// and the per-call meaning of gRPC's call options.

// headersThenUnavailable is a Generate handler that sends response headers
// (x-model: m1) and then fails with Unavailable.
func headersThenUnavailable(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	if err := grpc.SendHeader(ctx, metadata.Pairs("x-model", "m1")); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unavailable, "failed after headers")
}

// TestUnaryNotRetriedAfterResponseHeaders: a unary call commits once
// response headers arrive; a handler that sends headers and then fails runs
// once.
func TestUnaryNotRetriedAfterResponseHeaders(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = headersThenUnavailable
	c := dial(t, s, fastPolicy())
	var hdr metadata.MD
	_, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}, grpc.Header(&hdr))
	wantStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
	wantCalls(t, s, methodGenerate, 1)
	if got := hdr.Get("x-model"); len(got) != 1 || got[0] != "m1" {
		t.Fatalf("the caller's grpc.Header got %v, want the attempt's headers", hdr)
	}
}

// TestUnaryCommitWithInterceptorCaptures: the same commit rule when the
// caller asks for no headers or trailer, so that the interceptor reads its
// own captures: a handler that sends headers and then fails runs once; a
// trailers-only failure is retried.
func TestUnaryCommitWithInterceptorCaptures(t *testing.T) {
	t.Run("headers, then Unavailable", func(t *testing.T) {
		s := &stubServer{}
		s.GenerateF = headersThenUnavailable
		c := dial(t, s, fastPolicy())
		_, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
		wantStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
		wantCalls(t, s, methodGenerate, 1)
	})
	t.Run("trailers-only Unavailable", func(t *testing.T) {
		s := &stubServer{}
		script(s, unavailable)
		c := dial(t, s, fastPolicy())
		if err := generate(callCtx(t, 10*time.Second), c); err != nil {
			t.Fatalf("Generate: %v, want OK after a retry", err)
		}
		wantCalls(t, s, methodGenerate, 2)
	})
}

// TestStreamTrailerAndContextCommit: a stream's Trailer() or Context()
// commits it, as grpc-go's does: an attempt that then fails, retryably and
// before any response header, is not retried (StopCommitted). Without
// either call the same failure is retried.
func TestStreamTrailerAndContextCommit(t *testing.T) {
	for _, call := range []string{"Trailer", "Context", "neither"} {
		t.Run(call, func(t *testing.T) {
			s := &stubServer{}
			read := make(chan struct{})
			s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
				if s.attempt(stream.Context()) == 1 {
					select { // fail once the caller has (or has not) made its call
					case <-read:
					case <-stream.Context().Done():
						return stream.Context().Err()
					}
					return status.Error(codes.Unavailable, "trailers-only failure")
				}
				return sendTokens(stream, req.GetPrompt(), 0, 2)
			}
			c := dialStream(t, s, streamPolicy())
			stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
			if err != nil {
				t.Fatal(err)
			}
			switch call {
			case "Trailer":
				if md := stream.Trailer(); len(md) != 0 {
					t.Fatalf("Trailer() before the end = %v, want none", md)
				}
			case "Context":
				if err := stream.Context().Err(); err != nil {
					t.Fatalf("Context().Err() of a live stream = %v", err)
				}
			}
			close(read)
			got, err := recvTokens(stream)
			if call != "neither" {
				if len(got) != 0 {
					t.Fatalf("tokens %q after a committed attempt failed", got)
				}
				wantStreamStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
				wantArrivals(t, s, methodStreamGenerate, 1)
				return
			}
			if err != nil || !slices.Equal(got, wantTokenList("p", 0, 2)) {
				t.Fatalf("tokens %q, end %v; want %q, OK after a retry", got, err, wantTokenList("p", 0, 2))
			}
			wantArrivals(t, s, methodStreamGenerate, 2)
		})
	}
}

// TestUnaryResponseOverReceiveLimitNotRetried: a response larger than the
// client's receive limit fails on the client (ResourceExhausted) after the
// server did the work; retrying would only repeat the work.
func TestUnaryResponseOverReceiveLimitNotRetried(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return &inferencev1.GenerateResponse{Text: strings.Repeat("x", 5<<20)}, nil
	}
	c := s.start(t, grpc.WithChainUnaryInterceptor(retry.Unary(fastPolicy())), grpc.WithDisableRetry(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
	_, err := c.Generate(callCtx(t, 30*time.Second), &inferencev1.GenerateRequest{Prompt: "p"})
	if e := retryErr(t, err); status.Code(err) != codes.ResourceExhausted || e.Attempts != 1 || e.Reason != retry.StopLocal {
		t.Fatalf("got %v (reason %v), want ResourceExhausted, StopLocal after 1 attempt", err, e.Reason)
	}
	wantCalls(t, s, methodGenerate, 1)
}

// TestUnaryRequestOverSendLimitNotRetried: a request over the client's
// send limit never leaves the client; no retry can change that.
func TestUnaryRequestOverSendLimitNotRetried(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return reply(req), nil
	}
	c := dial(t, s, fastPolicy())
	_, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: strings.Repeat("x", 2048)}, grpc.MaxCallSendMsgSize(1024))
	if e := retryErr(t, err); status.Code(err) != codes.ResourceExhausted || e.Attempts != 1 || e.Reason != retry.StopLocal {
		t.Fatalf("got %v (reason %v), want ResourceExhausted, StopLocal after 1 attempt", err, e.Reason)
	}
	if n := s.calls(methodGenerate); n > 1 {
		t.Fatalf("server saw %d attempts, want at most 1", n)
	}
}

// TestStreamSendOverLimitFailsAtOnce: a client-stream message over the send
// limit is refused by SendMsg itself, as grpc-go does, and ends the call.
func TestStreamSendOverLimitFailsAtOnce(t *testing.T) {
	s := &stubServer{}
	s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
		for {
			if _, err := stream.Recv(); err != nil {
				return err
			}
		}
	}
	var finished atomic.Int32
	c := dialStream(t, s, streamPolicy())
	stream, err := c.Ingest(streamCtx(t, 10*time.Second), grpc.MaxCallSendMsgSize(1024), grpc.OnFinish(func(error) { finished.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte("small")}); err != nil {
		t.Fatalf("first Send: %v", err)
	}
	err = stream.Send(&inferencev1.IngestRequest{Chunk: make([]byte, 2048)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Send over the limit = %v, want ResourceExhausted at once", err)
	}
	_, err = stream.CloseAndRecv()
	if e := retryErr(t, err); status.Code(err) != codes.ResourceExhausted || e.Reason != retry.StopLocal || e.Attempts != 1 {
		t.Fatalf("CloseAndRecv = %v (reason %v), want ResourceExhausted, StopLocal after 1 attempt", err, e.Reason)
	}
	if n := s.calls(methodIngest); n > 1 {
		t.Fatalf("server saw %d attempts, want at most 1 (the client ends the stream itself)", n)
	}
	if n := finished.Load(); n != 1 {
		t.Fatalf("OnFinish ran %d times, want once", n)
	}
}

// TestOnFinishOncePerCall: grpc.OnFinish runs once per logical call, with
// the call's outcome, however many attempts it made.
func TestOnFinishOncePerCall(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = failFirstPerPrompt(2)
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		if s.attempt(stream.Context()) < 3 {
			return status.Error(codes.Unavailable, "not yet")
		}
		return sendTokens(stream, req.GetPrompt(), 0, 2)
	}
	c := s.start(t, retry.DialOptions(fastPolicy())...)
	var mu sync.Mutex
	var got []error
	onFinish := grpc.OnFinish(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, err)
	})
	if _, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}, onFinish); err != nil {
		t.Fatal(err)
	}
	stream, err := c.StreamGenerate(callCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "q"}, onFinish)
	if err != nil {
		t.Fatal(err)
	}
	if toks, err := recvTokens(stream); err != nil || len(toks) != 2 {
		t.Fatalf("tokens %v, %v", toks, err)
	}
	// A call that fails reports its final error once.
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	_, ferr := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "r"}, onFinish)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0] != nil || got[1] != nil || status.Code(got[2]) != codes.Unavailable {
		t.Fatalf("OnFinish saw %v; want nil, nil, Unavailable (once per call; 3 attempts each)", got)
	}
	if !errors.Is(got[2], ferr) && got[2] != ferr {
		t.Fatalf("OnFinish got %v, the caller got %v", got[2], ferr)
	}
	wantCalls(t, s, methodGenerate, 3+4)
}

// TestCallOptionsShowTheAnsweringAttempt: grpc.Header, grpc.Trailer and
// grpc.Peer describe the attempt the caller got its answer from.
func TestCallOptionsShowTheAnsweringAttempt(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		n := s.attempt(ctx)
		grpc.SetTrailer(ctx, metadata.Pairs("x-attempt", fmt.Sprint(n)))
		if n < 3 {
			return nil, status.Error(codes.Unavailable, "not yet")
		}
		grpc.SetHeader(ctx, metadata.Pairs("x-attempt-header", fmt.Sprint(n)))
		return reply(req), nil
	}
	c := dial(t, s, fastPolicy())
	var hdr, trl metadata.MD
	var p peer.Peer
	if _, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}, grpc.Header(&hdr), grpc.Trailer(&trl), grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	if h, tr := hdr.Get("x-attempt-header"), trl.Get("x-attempt"); len(h) != 1 || h[0] != "3" || len(tr) != 1 || tr[0] != "3" {
		t.Fatalf("header %v, trailer %v; want those of attempt 3", hdr, trl)
	}
	// Every attempt goes to the one bufconn server: the peer of attempt 3
	// is that server's address.
	if p.Addr == nil || p.Addr.String() != "bufconn" {
		t.Fatalf("grpc.Peer got %+v, want the server's address (bufconn)", p)
	}
}

// TestMaxRetryRPCBufferSizeSetsTheReplayBuffer: gRPC's own call option for
// the retry buffer sets the stream's replay buffer.
func TestMaxRetryRPCBufferSizeSetsTheReplayBuffer(t *testing.T) {
	for _, tc := range []struct {
		limit    int
		attempts int
	}{{1 << 20, 2}, {10, 1}} {
		s := &stubServer{}
		s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
			n := 0
			for {
				if _, err := stream.Recv(); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				n++
			}
			if s.attempt(stream.Context()) == 1 {
				return status.Error(codes.Unavailable, "first attempt fails")
			}
			return stream.SendAndClose(&inferencev1.IngestResponse{Chunks: int64(n)})
		}
		c := dialStream(t, s, streamPolicy())
		stream, err := c.Ingest(streamCtx(t, 10*time.Second), grpc.MaxRetryRPCBufferSize(tc.limit))
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&inferencev1.IngestRequest{Chunk: make([]byte, 100)})
		res, err := stream.CloseAndRecv()
		if tc.attempts == 2 && (err != nil || res.GetChunks() != 1) {
			t.Fatalf("limit %d: %v, %v; want the message replayed on a second attempt", tc.limit, res, err)
		}
		if tc.attempts == 1 {
			wantStreamStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
		}
		wantArrivals(t, s, methodIngest, tc.attempts)
	}
}

// TestReplayBufferCountsAsGRPC: the replay buffer counts each message as
// gRPC counts its retry buffer: serialized size plus the 5-byte prefix,
// and a message that fits exactly is kept.
func TestReplayBufferCountsAsGRPC(t *testing.T) {
	msg := &inferencev1.IngestRequest{Chunk: make([]byte, 100)}
	size := proto.Size(msg) + 5
	for _, tc := range []struct {
		limit    int
		attempts int
	}{{size, 2}, {size - 1, 1}} {
		s := &stubServer{}
		s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
			for {
				if _, err := stream.Recv(); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
			}
			if s.attempt(stream.Context()) == 1 {
				return status.Error(codes.Unavailable, "first attempt fails")
			}
			return stream.SendAndClose(&inferencev1.IngestResponse{})
		}
		p := streamPolicy()
		p.MaxReplayBytes = tc.limit
		stream, err := dialStream(t, s, p).Ingest(streamCtx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(msg)
		_, err = stream.CloseAndRecv()
		if (err == nil) != (tc.attempts == 2) {
			t.Fatalf("limit %d for a %d-byte message: %v", tc.limit, size, err)
		}
		wantArrivals(t, s, methodIngest, tc.attempts)
	}
}

// TestBidiReplayDoesNotBlockReceiving: a server that answers each message as
// it reads it, and whose first attempt fails before answering, gets the
// replayed messages while the caller keeps receiving the answers: the
// replay never waits on answers that nobody drains. (Replaying 16 MiB from
// inside Recv hung here until the deadline.)
func TestBidiReplayDoesNotBlockReceiving(t *testing.T) {
	const n, size = 256, 64 << 10
	s := &stubServer{}
	firstRead := make(chan struct{})
	var once sync.Once
	s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		if s.attempt(stream.Context()) == 1 {
			// Read a good part of the messages, answer none, fail.
			for i := 0; i < n/2; i++ {
				if _, err := stream.Recv(); err != nil {
					return err
				}
				if i == 0 {
					once.Do(func() { close(firstRead) })
				}
			}
			return status.Error(codes.Unavailable, "replica lost before answering")
		}
		return chatEcho(stream)
	}
	p := streamPolicy()
	p.MaxReplayBytes = 32 << 20
	stream, err := dialStream(t, s, p).Chat(streamCtx(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		pad := strings.Repeat("x", size)
		for i := range n {
			if err := stream.Send(&inferencev1.ChatRequest{Text: fmt.Sprintf("%04d%s", i, pad)}); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	<-firstRead
	for i := range n {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i, n, err)
		}
		if got := m.GetText()[:4]; got != fmt.Sprintf("%04d", i) {
			t.Fatalf("answer %d is for message %s", i, got)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the answers: %v, want io.EOF", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	wantArrivals(t, s, methodChat, 2)
}

// TestReplayBufferReleased: messages kept for replay are released when the
// stream commits (the first one included) and when the caller's context
// ends.
func TestReplayBufferReleased(t *testing.T) {
	collected := func(w weak.Pointer[inferencev1.ChatRequest]) bool {
		for range 5 {
			runtime.GC()
			if w.Value() == nil {
				return true
			}
		}
		return false
	}
	t.Run("at commit", func(t *testing.T) {
		s := &stubServer{ChatF: chatEcho}
		stream, err := dialStream(t, s, streamPolicy()).Chat(streamCtx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		m1, m2 := &inferencev1.ChatRequest{Text: "one"}, &inferencev1.ChatRequest{Text: "two"}
		w1, w2 := weak.Make(m1), weak.Make(m2)
		if err := stream.Send(m1); err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(m2); err != nil {
			t.Fatal(err)
		}
		m1, m2 = nil, nil
		if _, err := stream.Recv(); err != nil { // commits
			t.Fatal(err)
		}
		if !collected(w1) || !collected(w2) {
			t.Fatal("a message sent before commit is still held after commit")
		}
		stream.CloseSend()
		for {
			if _, err := stream.Recv(); err != nil {
				break
			}
		}
	})
	t.Run("when the caller's context ends", func(t *testing.T) {
		s := &stubServer{}
		s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
			<-stream.Context().Done() // never answers
			return stream.Context().Err()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		finished := make(chan struct{})
		stream, err := dialStream(t, s, streamPolicy()).Chat(ctx, grpc.OnFinish(func(error) { close(finished) }))
		if err != nil {
			t.Fatal(err)
		}
		m := &inferencev1.ChatRequest{Text: "kept"}
		w := weak.Make(m)
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
		m = nil
		cancel()
		<-finished // the call is over (nobody receives)
		if !collected(w) {
			t.Fatal("a kept message is still held after the caller's context ended")
		}
		runtime.KeepAlive(stream)
	})
}

// TestNoWaitIsCutByTheDeadline: with deadlines of 50-500ms and a server
// that fails every attempt at once, a call ends with the server's own code
// (Unavailable), never with a DeadlineExceeded of a wait: if the deadline
// comes, it comes during an attempt that really started. Holds on a loaded
// machine: a timer that fires late ends the call with the last error too.
func TestNoWaitIsCutByTheDeadline(t *testing.T) {
	s := &stubServer{}
	s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	var retries sync.Map // prompt → OnRetry events
	p := retry.Policy{
		MaxAttempts:    100,
		InitialBackoff: 5 * time.Millisecond,
		MaxBackoff:     80 * time.Millisecond,
		Budget:         retry.NoBudget,
		OnRetry: func(ev retry.RetryEvent) {
			v, _ := retries.LoadOrStore(ev.Context.Value(promptKey{}), new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
		},
	}
	c := dial(t, s, p)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			prompt := fmt.Sprint(i)
			ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), promptKey{}, prompt), time.Duration(50+i*450/200)*time.Millisecond)
			defer cancel()
			_, err := c.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt})
			e := retryErr(t, err)
			switch status.Code(err) {
			case codes.Unavailable:
			case codes.DeadlineExceeded:
				// Only an attempt that was running may end in the
				// deadline: every retry decided was made.
				decided := 0
				if v, ok := retries.Load(prompt); ok {
					decided = int(v.(*atomic.Int32).Load())
				}
				if decided != e.Attempts-1 {
					t.Errorf("call %d: %v after %d attempts and %d retries decided: a wait ended in DeadlineExceeded", i, err, e.Attempts, decided)
				}
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

type promptKey struct{}

// TestStatusOnly: with StatusOnly a unary call reads nothing but the status:
// RetryInfo is honoured, a pushback trailer is not seen, and a failure after
// response headers is retried (unless the caller asked for the headers,
// which the interceptor then reads).
func TestStatusOnly(t *testing.T) {
	p := fastPolicy()
	p.StatusOnly = true
	t.Run("RetryInfo", func(t *testing.T) {
		s := &stubServer{}
		s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
			if s.attempt(ctx) == 1 {
				return nil, retry.RetryAfter(ctx, codes.ResourceExhausted, "busy", 150*time.Millisecond)
			}
			return reply(req), nil
		}
		if _, err := dial(t, s, p).Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}); err != nil {
			t.Fatal(err)
		}
		if times := s.times(methodGenerate); len(times) != 2 || times[1].Sub(times[0]) < 150*time.Millisecond {
			t.Fatalf("arrivals %v, want the retry at least 150ms after the first", times)
		}
	})
	t.Run("pushback trailer not seen", func(t *testing.T) {
		s := &stubServer{}
		s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
			if s.attempt(ctx) == 1 {
				return nil, retry.DoNotRetry(ctx, codes.Unavailable, "draining")
			}
			return reply(req), nil
		}
		if _, err := dial(t, s, p).Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}); err != nil {
			t.Fatalf("%v: the trailer's do-not-retry is not read with StatusOnly", err)
		}
		wantCalls(t, s, methodGenerate, 2)
	})
	t.Run("headers", func(t *testing.T) {
		s := &stubServer{}
		s.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
			if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(retry.PreviousAttemptsHeader)) == 0 {
				grpc.SendHeader(ctx, metadata.Pairs("x", "y"))
				return nil, status.Error(codes.Unavailable, "after headers")
			}
			return reply(req), nil
		}
		c := dial(t, s, p)
		if _, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "p"}); err != nil {
			t.Fatalf("%v: without the headers a failure after them is retried", err)
		}
		var hdr metadata.MD
		_, err := c.Generate(callCtx(t, 10*time.Second), &inferencev1.GenerateRequest{Prompt: "q"}, grpc.Header(&hdr))
		if e := retryErr(t, err); e.Reason != retry.StopCommitted {
			t.Fatalf("with the caller's grpc.Header: %v, want StopCommitted", err)
		}
	})
}
