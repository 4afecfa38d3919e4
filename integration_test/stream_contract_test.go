package integration_test

// Rules of retry.Stream's contract that the differential test
// (differential_test.go) found broken, each in its smallest form.

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// trailerSignal is a client stats handler that closes arrived when the
// first response trailer reaches the client's transport (after every
// message of that response, which arrive in order before it).
type trailerSignal struct {
	once    sync.Once
	arrived chan struct{}
}

func (h *trailerSignal) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *trailerSignal) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *trailerSignal) HandleConn(context.Context, stats.ConnStats) {}
func (h *trailerSignal) HandleRPC(_ context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.InTrailer); ok {
		h.once.Do(func() { close(h.arrived) })
	}
}

// TestStreamLocalSendErrorEndsCall: a send the client itself refuses (over
// grpc.MaxCallSendMsgSize) ends the call: SendMsg returns the error, and
// RecvMsg returns it too (as a *retry.Error, StopLocal), even when the
// server's messages and status had already arrived; grpc.OnFinish runs
// once, with the same error.
func TestStreamLocalSendErrorEndsCall(t *testing.T) {
	s := &stubServer{}
	s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		for _, m := range []string{"a", "b"} {
			if err := stream.Send(&inferencev1.ChatResponse{Text: m}); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "server's own end")
	}
	sig := &trailerSignal{arrived: make(chan struct{})}
	c := dialStream(t, s, streamPolicy(), grpc.WithStatsHandler(sig))
	ctx := streamCtx(t, 10*time.Second)
	var (
		mu       sync.Mutex
		finished []error
	)
	stream, err := c.Chat(ctx, grpc.MaxCallSendMsgSize(100), grpc.OnFinish(func(err error) {
		mu.Lock()
		finished = append(finished, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sig.arrived:
	case <-ctx.Done():
		t.Fatal("the server's trailer never arrived")
	}
	sendErr := stream.Send(&inferencev1.ChatRequest{Text: strings.Repeat("x", 200)})
	if status.Code(sendErr) != codes.ResourceExhausted {
		t.Fatalf("Send of a message over the send limit: %v, want ResourceExhausted", sendErr)
	}
	m, err := stream.Recv()
	if err == nil || err == io.EOF {
		t.Fatalf("Recv after the refused send = %q, %v; want the send's error", m.GetText(), err)
	}
	wantStreamStop(t, err, codes.ResourceExhausted, retry.StopLocal, 1)
	if got, want := status.Convert(err).Message(), status.Convert(sendErr).Message(); got != want {
		t.Fatalf("Recv's status message %q, want the send's %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 1 || status.Code(finished[0]) != codes.ResourceExhausted {
		t.Fatalf("OnFinish ran with %v, want once with the send's error", finished)
	}
}
