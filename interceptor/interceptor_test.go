package interceptor

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	pb "github.com/seed4f82f287/retry/gen/inference/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scriptedDecider retries every failure, up to maxAttempts, without waiting,
// and records what it was told.
type scriptedDecider struct {
	maxAttempts int
	mu          sync.Mutex
	failures    []error
	succeeded   int
	committed   []error
}

func (d *scriptedDecider) Begin(ctx context.Context, method string, opts []grpc.CallOption, c *Call) (bool, error) {
	c.Method, c.MaxAttempts, c.MaxReplayBytes = method, d.maxAttempts, 1<<10
	return true, nil
}

func (d *scriptedDecider) Failed(ctx context.Context, c *Call, o Outcome) (time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if o.Committed || o.Local || o.Unstarted {
		d.committed = append(d.committed, o.Err)
		return 0, o.Err
	}
	d.failures = append(d.failures, o.Err)
	if c.Attempts >= c.MaxAttempts {
		return 0, o.Err
	}
	return 0, nil
}

func (d *scriptedDecider) Wait(ctx context.Context, c *Call, delay time.Duration) error {
	return ctx.Err()
}

func (d *scriptedDecider) Done(ctx context.Context, c *Call, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.succeeded++
	}
}

func (d *scriptedDecider) Hedge(ctx context.Context, c *Call, alone bool) (bool, error) {
	return c.Attempts < c.MaxAttempts, nil
}

// chatServer runs fn for each Chat attempt, numbered from 1.
type chatServer struct {
	pb.UnimplementedInferenceServiceServer
	mu       sync.Mutex
	attempts int
	fn       func(attempt int, stream pb.InferenceService_ChatServer) error
}

func (s *chatServer) Chat(stream pb.InferenceService_ChatServer) error {
	s.mu.Lock()
	s.attempts++
	n := s.attempts
	s.mu.Unlock()
	return s.fn(n, stream)
}

func dial(t *testing.T, srv pb.InferenceServiceServer, d Decider) pb.InferenceServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	pb.RegisterInferenceServiceServer(gs, srv)
	go gs.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(Stream(d)),
		grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); gs.Stop() })
	return pb.NewInferenceServiceClient(cc)
}

// echoAll reads every client message and, on attempt ok, echoes them all
// back after CloseSend; earlier attempts fail once they have read them.
func echoAll(ok int) func(int, pb.InferenceService_ChatServer) error {
	return func(n int, stream pb.InferenceService_ChatServer) error {
		var got []string
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			got = append(got, m.GetText())
		}
		if n < ok {
			return status.Errorf(codes.Unavailable, "attempt %d fails after reading %v", n, got)
		}
		for _, g := range got {
			if err := stream.Send(&pb.ChatResponse{Text: g}); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestStreamReplaysEverySendAndCloseSend(t *testing.T) {
	d := &scriptedDecider{maxAttempts: 3}
	srv := &chatServer{fn: echoAll(3)}
	client := dial(t, srv, d)
	stream, err := client.Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := stream.Send(&pb.ChatRequest{Text: m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, m.GetText())
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("got %v, want [a b c] exactly once", got)
	}
	if srv.attempts != 3 || len(d.failures) != 2 || d.succeeded != 1 {
		t.Fatalf("server attempts %d, failures %v, successes %d", srv.attempts, d.failures, d.succeeded)
	}
}

func TestStreamNotRetriedAfterMessage(t *testing.T) {
	d := &scriptedDecider{maxAttempts: 5}
	srv := &chatServer{fn: func(n int, stream pb.InferenceService_ChatServer) error {
		if err := stream.Send(&pb.ChatResponse{Text: "first"}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "after a message")
	}}
	stream, err := dial(t, srv, d).Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetText() != "first" {
		t.Fatalf("first Recv = %v, %v", m, err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable || srv.attempts != 1 || len(d.committed) != 1 || len(d.failures) != 0 {
		t.Fatalf("err %v after %d attempts (committed %v, failures %v)", err, srv.attempts, d.committed, d.failures)
	}
}

func TestStreamNotRetriedAfterHeaders(t *testing.T) {
	d := &scriptedDecider{maxAttempts: 5}
	srv := &chatServer{fn: func(n int, stream pb.InferenceService_ChatServer) error {
		if err := stream.SendHeader(metadata.Pairs("x-model", "m1")); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "after headers")
	}}
	stream, err := dial(t, srv, d).Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable || srv.attempts != 1 || len(d.committed) != 1 {
		t.Fatalf("err %v after %d attempts (committed %v)", err, srv.attempts, d.committed)
	}
}

func TestStreamOverflowCommits(t *testing.T) {
	d := &scriptedDecider{maxAttempts: 5} // MaxReplayBytes 1 KiB
	srv := &chatServer{fn: echoAll(99)}
	stream, err := dial(t, srv, d).Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	big := string(make([]byte, 2<<10))
	if err := stream.Send(&pb.ChatRequest{Text: big}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable || srv.attempts != 1 || len(d.committed) != 1 {
		t.Fatalf("err %v after %d attempts", err, srv.attempts)
	}
	if !errors.Is(err, d.committed[0]) {
		t.Fatalf("caller got %v, decider saw %v", err, d.committed[0])
	}
}

// eofStream is a client stream whose RecvMsg ends at once with io.EOF and
// no message, as grpc-go reports some connection cuts on a unary-response
// stream.
type eofStream struct{ grpc.ClientStream }

func (eofStream) SendMsg(any) error            { return nil }
func (eofStream) CloseSend() error             { return nil }
func (eofStream) RecvMsg(any) error            { return io.EOF }
func (eofStream) Header() (metadata.MD, error) { return nil, nil }
func (eofStream) Trailer() metadata.MD         { return nil }
func (eofStream) Context() context.Context     { return context.Background() }

// okStream answers its one response.
type okStream struct{ eofStream }

func (okStream) RecvMsg(m any) error {
	m.(*pb.IngestResponse).Chunks = 7
	return nil
}

// TestUnaryResponseStreamEndingWithoutResponseFails: a client-streaming call
// whose attempt ends in io.EOF without its response did not succeed: it is
// a failure, retried like one.
func TestUnaryResponseStreamEndingWithoutResponseFails(t *testing.T) {
	d := &scriptedDecider{maxAttempts: 3}
	opened := 0
	streamer := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		opened++
		if opened == 1 {
			return eofStream{}, nil
		}
		return okStream{}, nil
	}
	desc := &grpc.StreamDesc{ClientStreams: true}
	cs, err := Stream(d)(context.Background(), desc, nil, "/inference.v1.InferenceService/Ingest", streamer)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&pb.IngestRequest{Chunk: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	var res pb.IngestResponse
	if err := cs.RecvMsg(&res); err != nil || res.Chunks != 7 {
		t.Fatalf("RecvMsg = %v (%v), want the second attempt's response", err, &res)
	}
	if opened != 2 || len(d.failures) != 1 || status.Code(d.failures[0]) != codes.Unavailable || d.succeeded != 1 {
		t.Fatalf("%d attempts, failures %v, successes %d; want the io.EOF attempt counted as an Unavailable failure", opened, d.failures, d.succeeded)
	}
}
