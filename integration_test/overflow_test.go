package integration_test

// A send that outgrows the replay buffer after the attempt has failed,
// against grpc-go's built-in retry.

import (
	"context"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// sendProbe is a stream interceptor placed under retry.Stream: it sees
// each attempt's SendMsg results and reports when the first attempt's
// SendMsg has returned io.EOF (gRPC's sign that the attempt is over).
type sendProbe struct {
	once    sync.Once
	eof     chan struct{}
	attempt int
	mu      sync.Mutex
}

func newSendProbe() *sendProbe { return &sendProbe{eof: make(chan struct{})} }

func (p *sendProbe) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.attempt++
	n := p.attempt
	p.mu.Unlock()
	return &probedStream{ClientStream: cs, p: p, n: n}, nil
}

type probedStream struct {
	grpc.ClientStream
	p *sendProbe
	n int
}

func (s *probedStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err == io.EOF && s.n == 1 {
		s.p.once.Do(func() { close(s.p.eof) })
	}
	return err
}

// beginCounter counts the attempts a client begins (stats.Begin, which
// grpc-go's retry reports synchronously as it starts an attempt).
type beginCounter struct{ n atomic.Int64 }

func (b *beginCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b *beginCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (b *beginCounter) HandleConn(context.Context, stats.ConnStats) {}
func (b *beginCounter) HandleRPC(_ context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.Begin); ok {
		b.n.Add(1)
	}
}

// TestOverflowAfterAttemptFailed: a client stream whose first attempt
// failed (trailers-only, Unavailable) before the caller's send that
// outgrows the replay buffer is retried, as grpc-go's retry does: SendMsg
// finds the failed attempt, settles its end (the retry replays the kept
// messages onto a new attempt), and only then sends the big message and
// commits, to the new attempt. (Committing the dead attempt instead failed
// the call with StopCommitted although nothing of it reached the caller.)
func TestOverflowAfterAttemptFailed(t *testing.T) {
	t.Run("grpc-go", func(t *testing.T) { overflowAfterAttemptFailed(t, builtin) })
	t.Run("ours", func(t *testing.T) { overflowAfterAttemptFailed(t, ours) })
}

// overflowAfterAttemptFailed: the first attempt fails on arrival; the
// caller sends small messages until its client has seen that failure, then
// one that outgrows the replay buffer, and expects the retried attempt to
// get all of them.
func overflowAfterAttemptFailed(t *testing.T, im impl) {
	const limit = 256 << 10
	s := &stubServer{}
	firstDone := make(chan struct{})
	s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
		if s.attempt(stream.Context()) == 1 {
			defer close(firstDone)
			return status.Error(codes.Unavailable, "overloaded at the door")
		}
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
	// How the client is seen to have noticed the first attempt's end:
	// grpc-go's SendMsg then retries at once (the second attempt
	// arrives); ours marks the attempt over when its SendMsg returns
	// io.EOF (seen by a probe under retry.Stream).
	probe := newSendProbe()
	var c inferencev1.InferenceServiceClient
	noticed := func() bool {
		select {
		case <-probe.eof:
			return true
		default:
			return false
		}
	}
	if im == builtin {
		begins := &beginCounter{}
		c = s.start(t, grpc.WithDefaultServiceConfig(builtinServiceConfig(4)), grpc.WithStatsHandler(begins))
		noticed = func() bool { return begins.n.Load() >= 2 }
	} else {
		p := streamPolicy()
		p.MaxReplayBytes = limit
		c = dialStream(t, s, p, grpc.WithChainStreamInterceptor(probe.intercept))
	}
	ctx := streamCtx(t, 10*time.Second)
	stream, err := c.Ingest(ctx, grpc.MaxRetryRPCBufferSize(limit))
	if err != nil {
		t.Fatal(err)
	}
	<-firstDone
	var chunks, bytes int64
	for !noticed() {
		if ctx.Err() != nil || chunks*8 > limit/2 {
			t.Fatalf("the client did not notice the first attempt's end after %d sends (server saw %d attempts)", chunks, s.calls(methodIngest))
		}
		if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte("x")}); err != nil {
			t.Fatalf("small send: %v", err)
		}
		chunks++
		bytes++
		runtime.Gosched() // let the transport's reader keep up with the sends
	}
	big := []byte(strings.Repeat("b", limit))
	if err := stream.Send(&inferencev1.IngestRequest{Chunk: big}); err != nil && err != io.EOF {
		t.Fatalf("big send: %v", err)
	}
	chunks++
	bytes += int64(len(big))
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v; want the retried attempt's answer (%d chunks, %d bytes), as grpc-go's retry gives", err, chunks, bytes)
	}
	if resp.GetChunks() != chunks || resp.GetBytes() != bytes {
		t.Fatalf("server got %d chunks, %d bytes; want %d, %d", resp.GetChunks(), resp.GetBytes(), chunks, bytes)
	}
	wantArrivals(t, s, methodIngest, 2)
}
