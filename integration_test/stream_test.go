package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// TestStreamCommitRules runs the scenarios of grpc-go's TestRetryStreaming
// (gRFC A6: replay until commit, no retry after commit, pushback, replay
// buffer) on server-streaming, client-streaming and bidi calls through
// retry.Stream. Each attempt of a case runs its own server script; the
// runner also checks that exactly the scripted attempts arrived, each ran
// its script to the end, and each carried grpc-previous-rpc-attempts
// (absent, "1", "2", ...).
func TestStreamCommitRules(t *testing.T) {
	const U = codes.Unavailable
	var (
		clientAndBidi = []streamKind{clientStreaming, bidiStreaming}
		serverAndBidi = []streamKind{serverStreaming, bidiStreaming}
	)
	replayLimit := func(p *retry.Policy) { p.MaxReplayBytes = 100 }
	big := strings.Repeat("b", 200) // alone beyond MaxReplayBytes 100
	half := strings.Repeat("h", 60) // one fits in 100 bytes, two do not

	cases := []scenario{{
		name:   "non-retryable code",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sErr(codes.InvalidArgument)}},
		client: []cOp{cReq("1"), cErr(codes.InvalidArgument, retry.StopPermanent, 1)},
	}, {
		name:  "one retry replays every earlier message in order",
		kinds: clientAndBidi,
		server: [][]sOp{
			{sReq("1"), sReq("2"), sReq("3"), sErr(U)},
			{sAttempts(1), sReq("1"), sReq("2"), sReq("3"), sRes(5)},
		},
		client: []cOp{cReq("1"), cReq("2"), cReq("3"), cRes(5), cEOF()},
	}, {
		name:  "one retry replays the request",
		kinds: []streamKind{serverStreaming},
		server: [][]sOp{
			{sReq("1"), sCloseSend(), sErr(U)},
			{sAttempts(1), sReq("1"), sCloseSend(), sRes(5)},
		},
		client: []cOp{cReq("1"), cRes(5), cEOF()},
	}, {
		// Message 3 is sent after attempt 1 failed: it is kept for the
		// replay too.
		name:  "successive sends replayed",
		kinds: clientAndBidi,
		server: [][]sOp{
			{sReq("1"), sReq("2"), sSignal("attempt 1 fails"), sErr(U)},
			{sReq("1"), sReq("2"), sReq("3"), sErr(U)},
			{sReq("1"), sReq("2"), sReq("3"), sRes(5)},
		},
		client: []cOp{cReq("1"), cReq("2"), cWait("attempt 1 fails"), cReq("3"), cRes(5), cEOF()},
	}, {
		name:  "CloseSend replayed",
		kinds: []streamKind{bidiStreaming},
		server: [][]sOp{
			{sReq("1"), sReq("2"), sCloseSend(), sErr(U)},
			{sReq("1"), sReq("2"), sCloseSend(), sRes(1), sRes(3), sRes(5)},
		},
		client: []cOp{cReq("1"), cReq("2"), cCloseSend(), cRes(1), cRes(3), cRes(5), cEOF()},
	}, {
		name:  "CloseSend replayed",
		kinds: []streamKind{clientStreaming},
		server: [][]sOp{
			{sReq("1"), sReq("2"), sCloseSend(), sErr(U)},
			{sReq("1"), sReq("2"), sCloseSend(), sRes(2)},
		},
		client: []cOp{cReq("1"), cReq("2"), cCloseSend(), cRes(2), cEOF()},
	}, {
		name:  "CloseSend replayed",
		kinds: []streamKind{serverStreaming},
		server: [][]sOp{
			{sReq("1"), sCloseSend(), sErr(U)},
			{sReq("1"), sCloseSend(), sRes(1), sRes(3), sRes(5)},
		},
		client: []cOp{cReq("1"), cCloseSend(), cRes(1), cRes(3), cRes(5), cEOF()},
	}, {
		name:   "max attempts reached",
		kinds:  allKinds,
		policy: func(p *retry.Policy) { p.MaxAttempts = 3 },
		server: [][]sOp{
			{sAttempts(0), sReq("1"), sErr(U)},
			{sAttempts(1), sReq("1"), sErr(U)},
			{sAttempts(2), sReq("1"), sErr(U)},
		},
		client: []cOp{cReq("1"), cErr(U, retry.StopMaxAttempts, 3)},
	}, {
		name:   "no retry after a response message",
		kinds:  serverAndBidi,
		server: [][]sOp{{sReq("1"), sRes(3), sErr(U)}},
		client: []cOp{cReq("1"), cRes(3), cErr(U, retry.StopCommitted, 1)},
	}, {
		// A client-streaming caller gets the status, not the message,
		// when a response message is followed by an error (gRPC's
		// cardinality rule); the message still commits the stream.
		name:   "no retry after a response message",
		kinds:  []streamKind{clientStreaming},
		server: [][]sOp{{sReq("1"), sRes(3), sErr(U)}},
		client: []cOp{cReq("1"), cErr(U, retry.StopCommitted, 1)},
	}, {
		name:  "retried, then no retry after a response message",
		kinds: serverAndBidi,
		server: [][]sOp{
			{sReq("1"), sErr(U)},
			{sReq("1"), sRes(3), sErr(U)},
		},
		client: []cOp{cReq("1"), cRes(3), cErr(U, retry.StopCommitted, 2)},
	}, {
		name:   "no retry after response headers",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sHdr(), sErr(U)}},
		client: []cOp{cReq("1"), cErr(U, retry.StopCommitted, 1)},
	}, {
		name:   "no retry after response headers read by the caller",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sHdr(), sErr(U)}},
		client: []cOp{cReq("1"), cHdr("headers"), cErr(U, retry.StopCommitted, 1)},
	}, {
		// The control for the next case: a trailers-only Unavailable
		// (no response headers) is retried.
		name:   "trailers-only failure retried",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sErr(U)}, {sReq("1"), sRes(1)}},
		client: []cOp{cReq("1"), cRes(1), cEOF()},
	}, {
		// The same trailers-only failure while the caller waits in Header:
		// as grpc-go's Header does, it retries inside Header and returns
		// the headers of the attempt that sends them.
		name:  "trailers-only failure retried inside the caller's Header",
		kinds: allKinds,
		server: [][]sOp{
			{sReq("1"), sErr(U)},
			{sAttempts(1), sReq("1"), sHdr(), sRes(1)},
		},
		client: []cOp{cReq("1"), cHdr("headers"), cRes(1), cEOF()},
	}, {
		// Headers that really arrive commit the stream: a failure after
		// the caller got them is not retried.
		name:   "no retry after headers the caller's Header returned",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sHdr(), sErr(U)}},
		client: []cOp{cReq("1"), cHdr("headers"), cErr(U, retry.StopCommitted, 1)},
	}, {
		// A call that ends without headers leaves Header with nothing (no
		// error, as grpc-go); the error comes from Recv.
		name:   "Header of a call that fails without headers",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sErr(U)}, {sAttempts(1), sReq("1"), sPushback("-1"), sErr(U)}},
		client: []cOp{cReq("1"), cHdr(""), cErr(U, retry.StopPushback, 2)},
	}, {
		name:   "pushback -1: no retry",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sPushback("-1"), sErr(U)}},
		client: []cOp{cReq("1"), cErr(U, retry.StopPushback, 1)},
	}, {
		name:   "pushback xxx: no retry",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sPushback("xxx"), sErr(U)}},
		client: []cOp{cReq("1"), cErr(U, retry.StopPushback, 1)},
	}, {
		name:   "two pushback values: no retry",
		kinds:  allKinds,
		server: [][]sOp{{sReq("1"), sPushback("100", "10"), sErr(U)}},
		client: []cOp{cReq("1"), cErr(U, retry.StopPushback, 1)},
	}, {
		name:  "pushback 200ms delays the retry",
		kinds: allKinds,
		server: [][]sOp{
			{sReq("1"), sPushback("200"), sErr(U)},
			{sAttempts(1), sReq("1"), sRes(2)},
		},
		client: []cOp{cReq("1"), cRes(2), cEOF()},
		minGap: 200 * time.Millisecond,
	}, {
		name:   "message beyond MaxReplayBytes: no retry",
		kinds:  allKinds,
		policy: replayLimit,
		server: [][]sOp{{sReq(big), sErr(U)}},
		client: []cOp{cReq(big), cErr(U, retry.StopCommitted, 1)},
	}, {
		name:   "messages outgrowing MaxReplayBytes: no retry",
		kinds:  clientAndBidi,
		policy: replayLimit,
		server: [][]sOp{{sReq(half), sReq(half), sErr(U)}},
		client: []cOp{cReq(half), cReq(half), cErr(U, retry.StopCommitted, 1)},
	}, {
		name:   "message within MaxReplayBytes retried",
		kinds:  allKinds,
		policy: replayLimit,
		server: [][]sOp{{sReq(half), sErr(U)}, {sReq(half), sRes(1)}},
		client: []cOp{cReq(half), cRes(1), cEOF()},
	}}

	for _, sc := range cases {
		for _, k := range sc.kinds {
			t.Run(sc.name+"/"+k.String(), func(t *testing.T) {
				t.Parallel()
				sc.run(t, k)
			})
		}
	}
}

// TestStreamOutgrowingReplayBufferKeepsWorking: a stream that sends more
// than MaxReplayBytes commits, but goes on working when nothing fails.
func TestStreamOutgrowingReplayBufferKeepsWorking(t *testing.T) {
	p := streamPolicy()
	p.MaxReplayBytes = 100
	const n, size = 50, 10 // 500 bytes of chunks

	t.Run("Ingest", func(t *testing.T) {
		s := &stubServer{}
		s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
			var chunks, bytes int64
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					return stream.SendAndClose(&inferencev1.IngestResponse{Chunks: chunks, Bytes: bytes})
				}
				if err != nil {
					return err
				}
				chunks++
				bytes += int64(len(m.GetChunk()))
			}
		}
		c := dialStream(t, s, p)
		stream, err := c.Ingest(streamCtx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte(fmt.Sprintf("%0*d", size, i))}); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil || resp.GetChunks() != n || resp.GetBytes() != n*size {
			t.Fatalf("CloseAndRecv() = %v, %v; want %d chunks of %d bytes", resp, err, n, n*size)
		}
		wantArrivals(t, s, methodIngest, 1)
	})

	t.Run("Chat", func(t *testing.T) {
		s := &stubServer{ChatF: chatEcho}
		c := dialStream(t, s, p)
		stream, err := c.Chat(streamCtx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range n {
			m := fmt.Sprintf("%0*d", size, i)
			want = append(want, m)
			if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			if i == 0 {
				continue // the echoes are read after a few sends
			}
			if got, err := stream.Recv(); err != nil || got.GetText() != want[i-1] {
				t.Fatalf("Recv %d = %v, %v; want %q", i-1, got, err, want[i-1])
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if got, err := stream.Recv(); err != nil || got.GetText() != want[n-1] {
			t.Fatalf("last Recv = %v, %v; want %q", got, err, want[n-1])
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("Recv after the last echo: %v, want io.EOF", err)
		}
		wantArrivals(t, s, methodChat, 1)
	})
}

// chatEcho is a Chat handler that echoes every message until CloseSend.
func chatEcho(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&inferencev1.ChatResponse{Text: m.GetText()}); err != nil {
			return err
		}
	}
}

// TestStreamGenerateRetriedBeforeFirstToken: a StreamGenerate attempt that
// fails before its first token is retried transparently; the caller gets
// every token exactly once, in order.
func TestStreamGenerateRetriedBeforeFirstToken(t *testing.T) {
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		if s.attempt(stream.Context()) == 1 {
			return status.Error(codes.Unavailable, "model warming up")
		}
		return sendTokens(stream, req.GetPrompt(), 0, 5)
	}
	var log hookLog
	p := streamPolicy()
	p.OnRetry = log.record
	c := dialStream(t, s, p)
	stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvTokens(stream)
	if err != nil {
		t.Fatalf("stream ended with %v after %q, want OK", err, got)
	}
	if want := wantTokenList("p", 0, 5); !slices.Equal(got, want) {
		t.Fatalf("tokens %q, want %q", got, want)
	}
	wantArrivals(t, s, methodStreamGenerate, 2)
	if ev := log.events(); len(ev) != 1 || ev[0].Attempt != 1 || ev[0].Code != codes.Unavailable || ev[0].Method != methodStreamGenerate {
		t.Fatalf("OnRetry events %+v, want one for attempt 1, Unavailable", ev)
	}
}

// TestStreamGenerateFailureAfterTokensNotRetried: a StreamGenerate attempt
// that fails after its third token is not retried (that would repeat
// tokens): the caller gets tokens 0, 1, 2 once, then the Unavailable.
func TestStreamGenerateFailureAfterTokensNotRetried(t *testing.T) {
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		if err := sendTokens(stream, req.GetPrompt(), 0, 3); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "replica lost mid-generation")
	}
	var log hookLog
	p := streamPolicy()
	p.OnRetry = log.record
	c := dialStream(t, s, p)
	stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvTokens(stream)
	if want := wantTokenList("p", 0, 3); !slices.Equal(got, want) {
		t.Fatalf("tokens %q, want %q", got, want)
	}
	wantStreamStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
	if msg := status.Convert(err).Message(); msg != "replica lost mid-generation" {
		t.Fatalf("status message %q, want the server's", msg)
	}
	var e *retry.Error
	if errors.As(err, &e) && e.Class != retry.Transient {
		t.Fatalf("Class %v, want %v", e.Class, retry.Transient)
	}
	wantArrivals(t, s, methodStreamGenerate, 1)
	if ev := log.events(); len(ev) != 0 {
		t.Fatalf("OnRetry events %+v, want none", ev)
	}
}

// TestStreamPerAttemptTimeout: for streams PerAttemptTimeout bounds the
// time until the stream commits, never a committed stream.
func TestStreamPerAttemptTimeout(t *testing.T) {
	// Long enough that a loaded machine delivers headers sent at once
	// within the timeout.
	const timeout = 400 * time.Millisecond
	const pause = 1200 * time.Millisecond // longer than timeout
	policy := func(log *hookLog) retry.Policy {
		p := streamPolicy()
		p.PerAttemptTimeout = timeout
		p.OnRetry = log.record
		return p
	}

	t.Run("silent attempt cut and retried", func(t *testing.T) {
		t.Parallel()
		s := &stubServer{}
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			if s.attempt(stream.Context()) == 1 {
				<-stream.Context().Done() // hangs without a response
				return stream.Context().Err()
			}
			return sendTokens(stream, req.GetPrompt(), 0, 3)
		}
		var log hookLog
		c := dialStream(t, s, policy(&log))
		stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := recvTokens(stream)
		if err != nil || !slices.Equal(got, wantTokenList("p", 0, 3)) {
			t.Fatalf("tokens %q, end %v; want %q, OK", got, err, wantTokenList("p", 0, 3))
		}
		// Attempt 1 is cut by the timeout and retried. On a loaded machine
		// a later attempt can also miss the 50ms; each cut is retried the
		// same way.
		ev := log.events()
		if len(ev) == 0 {
			t.Fatal("no retry: the silent attempt was not cut")
		}
		for _, e := range ev {
			if e.Code != codes.DeadlineExceeded || e.Class != retry.Timeout {
				t.Fatalf("OnRetry events %+v, want only DeadlineExceeded of class Timeout", ev)
			}
		}
		if got := s.calls(methodStreamGenerate); got > len(ev)+1 || got < 2 {
			t.Fatalf("server saw %d attempt(s) for %d retries", got, len(ev))
		}
	})

	// The server sends a token, then pauses longer than the timeout
	// (until the caller has had the first token for pause), then ends.
	t.Run("committed stream not cut", func(t *testing.T) {
		t.Parallel()
		s := &stubServer{}
		release := make(chan struct{})
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			if err := sendTokens(stream, req.GetPrompt(), 0, 1); err != nil {
				return err
			}
			select {
			case <-release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
			return sendTokens(stream, req.GetPrompt(), 1, 3)
		}
		var log hookLog
		c := dialStream(t, s, policy(&log))
		stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("first Recv: %v", err)
		}
		<-time.After(pause) // the point: a pause longer than the timeout
		close(release)
		rest, err := recvTokens(stream)
		got := append([]string{first.GetToken()}, rest...)
		if err != nil || !slices.Equal(got, wantTokenList("p", 0, 3)) {
			t.Fatalf("tokens %q, end %v; want %q, OK", got, err, wantTokenList("p", 0, 3))
		}
		wantArrivals(t, s, methodStreamGenerate, 1)
	})

	// The stream commits when response headers arrive (Policy doc: "it
	// bounds the time until the stream commits (first response header or
	// message); a committed stream is never cut by it"): headers sent at
	// once, then a first token later than the timeout.
	t.Run("committed by response headers not cut", func(t *testing.T) {
		t.Parallel()
		s := &stubServer{}
		headersSent, release := make(chan struct{}), make(chan struct{})
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			if err := stream.SendHeader(metadata.Pairs("x-model", "m1")); err != nil {
				return err
			}
			if s.attempt(stream.Context()) == 1 {
				close(headersSent)
			}
			select {
			case <-release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
			return sendTokens(stream, req.GetPrompt(), 0, 3)
		}
		var log hookLog
		c := dialStream(t, s, policy(&log))
		ctx := streamCtx(t, 10*time.Second)
		stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			select {
			case <-headersSent:
			case <-ctx.Done():
				return
			}
			select {
			case <-time.After(pause): // the point: a pause longer than the timeout
			case <-ctx.Done():
			}
			close(release)
		}()
		got, err := recvTokens(stream)
		if err != nil || !slices.Equal(got, wantTokenList("p", 0, 3)) {
			t.Fatalf("tokens %q, end %v; want %q, OK", got, err, wantTokenList("p", 0, 3))
		}
		wantArrivals(t, s, methodStreamGenerate, 1)
	})

	// The stream commits when a response message arrives, whether or not
	// the caller has read it yet: a caller slower than the timeout to read
	// a token that arrived in time is not cut (the server sends the first
	// token at once, the rest after the caller's pause).
	t.Run("committed by an unread message not cut", func(t *testing.T) {
		t.Parallel()
		s := &stubServer{}
		sent, release := make(chan struct{}), make(chan struct{})
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			if err := sendTokens(stream, req.GetPrompt(), 0, 1); err != nil {
				return err
			}
			if s.attempt(stream.Context()) == 1 {
				close(sent)
			}
			select {
			case <-release:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
			return sendTokens(stream, req.GetPrompt(), 1, 3)
		}
		var log hookLog
		c := dialStream(t, s, policy(&log))
		ctx := streamCtx(t, 10*time.Second)
		stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-sent:
		case <-ctx.Done():
			t.Fatal("the first token was never sent")
		}
		<-time.After(pause) // the point: the caller reads after the timeout
		close(release)
		got, err := recvTokens(stream)
		if err != nil || !slices.Equal(got, wantTokenList("p", 0, 3)) {
			t.Fatalf("tokens %q, end %v; want %q, OK", got, err, wantTokenList("p", 0, 3))
		}
		wantArrivals(t, s, methodStreamGenerate, 1)
	})
}

// TestStreamCancelDuringBackoff: the caller's cancel during the wait before
// a retry (here a 1-hour backoff) ends the stream at once with Canceled.
func TestStreamCancelDuringBackoff(t *testing.T) {
	for _, k := range allKinds {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			s := &stubServer{}
			handleStreams(s, func(st serverSide) error {
				return status.Error(codes.Unavailable, "down")
			})
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			p := streamPolicy()
			p.InitialBackoff, p.MaxBackoff = time.Hour, time.Hour
			p.OnRetry = func(retry.RetryEvent) { cancel() }
			c := dialStream(t, s, p)
			cs, err := openClientSide(ctx, k, c)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := cs.send("1"); err != nil {
				t.Fatalf("send: %v", err)
			}
			_, err = cs.recv()
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("recv returned after %v, want promptly", d)
			}
			wantStreamStop(t, err, codes.Canceled, retry.StopCanceled, 1)
			s.barrier(t)
			wantArrivals(t, s, k.method(), 1)
		})
	}
}

// TestStreamCallerCancelReleasesEverything: streams the caller abandons by
// canceling its context leave no goroutine behind (client or server side),
// whether committed, never read, or between attempts.
func TestStreamCallerCancelReleasesEverything(t *testing.T) {
	t.Run("cancel after the first token", func(t *testing.T) {
		checkNoLeaks(t)
		s := &stubServer{}
		handlerDone := make(chan error, 1)
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			err := sendTokens(stream, req.GetPrompt(), 0, 1)
			if err == nil {
				<-stream.Context().Done() // more tokens "being generated"
				err = stream.Context().Err()
			}
			handlerDone <- err
			return err
		}
		c := dialStream(t, s, streamPolicy())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || m.GetToken() != "p-0" {
			t.Fatalf("first Recv = %v, %v", m, err)
		}
		cancel() // and never read again
		select {
		case err := <-handlerDone:
			if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
				t.Fatalf("server handler ended with %v, want Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server never saw the cancel")
		}
		wantArrivals(t, s, methodStreamGenerate, 1)
	})

	t.Run("cancel without ever reading", func(t *testing.T) {
		checkNoLeaks(t)
		s := &stubServer{}
		handlerDone := make(chan error, 1)
		s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
			err := chatEcho(stream)
			handlerDone <- err
			return err
		}
		c := dialStream(t, s, streamPolicy())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.Chat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "b"} {
			if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		cancel()
		select {
		case err := <-handlerDone:
			if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
				t.Fatalf("server handler ended with %v, want Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server never saw the cancel")
		}
	})

	t.Run("cancel after a failed attempt, never reading", func(t *testing.T) {
		checkNoLeaks(t)
		s := &stubServer{}
		failed := make(chan struct{})
		s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
			if _, err := stream.Recv(); err != nil {
				return err
			}
			defer close(failed)
			return status.Error(codes.Unavailable, "down")
		}
		c := dialStream(t, s, streamPolicy())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.Chat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&inferencev1.ChatRequest{Text: "a"}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		select {
		case <-failed:
		case <-time.After(10 * time.Second):
			t.Fatal("the attempt never failed")
		}
		cancel()
		s.barrier(t)
		wantArrivals(t, s, methodChat, 1)
	})

	t.Run("cancel while a retry is uncommitted", func(t *testing.T) {
		checkNoLeaks(t)
		s := &stubServer{}
		second := make(chan struct{})
		handlerDone := make(chan error, 1)
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			if s.attempt(stream.Context()) == 1 {
				return status.Error(codes.Unavailable, "down")
			}
			close(second)
			<-stream.Context().Done() // a silent second attempt
			handlerDone <- stream.Context().Err()
			return stream.Context().Err()
		}
		c := dialStream(t, s, streamPolicy())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		recvErr := make(chan error, 1)
		go func() {
			_, err := stream.Recv()
			recvErr <- err
		}()
		select {
		case <-second:
		case <-time.After(10 * time.Second):
			t.Fatal("no second attempt")
		}
		cancel()
		select {
		case err := <-recvErr:
			wantStreamStop(t, err, codes.Canceled, retry.StopCanceled, 2)
		case <-time.After(10 * time.Second):
			t.Fatal("Recv did not return after the cancel")
		}
		select {
		case err := <-handlerDone:
			if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
				t.Fatalf("server handler ended with %v, want Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server never saw the cancel")
		}
		wantArrivals(t, s, methodStreamGenerate, 2)
	})
}

// TestStreamConcurrent runs many retried streams at once through one
// interceptor (run it under -race): every caller gets exactly its own
// messages, once each.
func TestStreamConcurrent(t *testing.T) {
	t.Run("100 StreamGenerate", func(t *testing.T) {
		t.Parallel()
		const streams, tokens = 100, 5
		s := &stubServer{}
		var mu sync.Mutex
		seen := make(map[string]int)
		s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
			mu.Lock()
			seen[req.GetPrompt()]++
			k := seen[req.GetPrompt()]
			mu.Unlock()
			if k == 1 {
				return status.Errorf(codes.Unavailable, "first attempt of %q fails", req.GetPrompt())
			}
			return sendTokens(stream, req.GetPrompt(), 0, tokens)
		}
		c := dialStream(t, s, streamPolicy())
		ctx := streamCtx(t, 10*time.Second)
		var wg sync.WaitGroup
		for i := range streams {
			wg.Go(func() {
				prompt := fmt.Sprintf("prompt-%d", i)
				stream, err := c.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: prompt})
				if err != nil {
					t.Errorf("%s: %v", prompt, err)
					return
				}
				got, err := recvTokens(stream)
				if want := wantTokenList(prompt, 0, tokens); err != nil || !slices.Equal(got, want) {
					t.Errorf("%s: tokens %q, end %v; want %q, OK", prompt, got, err, want)
				}
			})
		}
		wg.Wait()
		wantArrivals(t, s, methodStreamGenerate, 2*streams)
	})

	t.Run("50 Chat", func(t *testing.T) {
		t.Parallel()
		const streams, msgs = 50, 10
		s := &stubServer{}
		var mu sync.Mutex
		seen := make(map[string]int)
		s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
			md, _ := metadata.FromIncomingContext(stream.Context())
			id := strings.Join(md.Get("x-chat"), ",")
			mu.Lock()
			seen[id]++
			k := seen[id]
			mu.Unlock()
			if k == 1 {
				if _, err := stream.Recv(); err != nil {
					return err
				}
				return status.Errorf(codes.Unavailable, "first attempt of chat %s fails", id)
			}
			return chatEcho(stream)
		}
		c := dialStream(t, s, streamPolicy())
		ctx := streamCtx(t, 10*time.Second)
		var wg sync.WaitGroup
		for i := range streams {
			wg.Go(func() {
				id := fmt.Sprint(i)
				stream, err := c.Chat(metadata.AppendToOutgoingContext(ctx, "x-chat", id))
				if err != nil {
					t.Errorf("chat %s: %v", id, err)
					return
				}
				var want []string
				for j := range msgs {
					want = append(want, fmt.Sprintf("chat-%s-msg-%d", id, j))
				}
				// One sending and one receiving goroutine.
				sendErr := make(chan error, 1)
				go func() {
					for _, m := range want {
						if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
							sendErr <- fmt.Errorf("Send(%q): %v", m, err)
							return
						}
					}
					sendErr <- stream.CloseSend()
				}()
				var got []string
				for {
					m, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Errorf("chat %s: Recv: %v after %q", id, err, got)
						break
					}
					got = append(got, m.GetText())
				}
				if err := <-sendErr; err != nil {
					t.Errorf("chat %s: %v", id, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("chat %s: got %q, want %q", id, got, want)
				}
			})
		}
		wg.Wait()
		wantArrivals(t, s, methodChat, 2*streams)
	})
}

// TestStreamBidiSendAndRecvUnderFlowControl: a Chat with one sending and
// one receiving goroutine (which the package documents as safe) where flow
// control couples the two directions: the server starts slowly, then sends
// all its answers before it reads any request. Plain gRPC handles it: the
// receiver drains the answers, the server then reads, the sender unblocks.
// Through retry.Stream it must too, while the stream is still uncommitted
// (MaxReplayBytes is large enough to keep every request for replay).
func TestStreamBidiSendAndRecvUnderFlowControl(t *testing.T) {
	const (
		window = 64 << 10 // static HTTP/2 windows (no BDP growth)
		size   = 16 << 10 // per message
		n      = 32       // 512 KiB each way, far beyond the windows
		// The server's slow start: time for the sender to fill the
		// windows and block in Send. (If it has not, the case passes
		// without proving anything: it cannot fail spuriously.)
		slowStart = 100 * time.Millisecond
	)
	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
	}{
		{"plain gRPC (control)", []grpc.CallOption{retry.Disable()}},
		{"retry.Stream", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &stubServer{ServerOptions: []grpc.ServerOption{grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window)}}
			payload := strings.Repeat("x", size)
			s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
				select {
				case <-time.After(slowStart):
				case <-stream.Context().Done():
					return stream.Context().Err()
				}
				for range n {
					if err := stream.Send(&inferencev1.ChatResponse{Text: payload}); err != nil {
						return err
					}
				}
				got := 0
				for {
					_, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						return err
					}
					got++
				}
				if got != n {
					return status.Errorf(codes.Internal, "server read %d requests, want %d", got, n)
				}
				return nil
			}
			p := streamPolicy()
			p.MaxReplayBytes = 4 << 20
			c := dialStream(t, s, p, grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window))
			ctx := streamCtx(t, 3*time.Second)
			stream, err := c.Chat(ctx, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			sendErr := make(chan error, 1)
			go func() {
				for i := range n {
					if err := stream.Send(&inferencev1.ChatRequest{Text: payload}); err != nil {
						sendErr <- fmt.Errorf("Send %d: %v", i, err)
						return
					}
				}
				sendErr <- stream.CloseSend()
			}()
			got := 0
			var recvErr error
			for {
				_, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					recvErr = err
					break
				}
				got++
			}
			if err := <-sendErr; err != nil || recvErr != nil || got != n {
				t.Fatalf("received %d of %d answers, Recv ended with %v; sender: %v (the caller's deadline ended a stalled stream)", got, n, recvErr, err)
			}
			wantArrivals(t, s, methodChat, 1)
		})
	}
}
