package interceptor

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/seed4f82f287/retry/gen/inference/v1"
)

// outcomeDecider makes one attempt per call (hedged calls if hedged) and
// records each failed attempt's Outcome.
type outcomeDecider struct {
	hedged   bool
	mu       sync.Mutex
	outcomes []Outcome
}

func (d *outcomeDecider) Begin(ctx context.Context, method string, opts []grpc.CallOption, c *Call) (bool, error) {
	c.Method, c.MaxAttempts, c.MaxReplayBytes = method, 1, 1<<10
	c.Hedging, c.HedgeDelay = d.hedged, -1
	return true, nil
}

func (d *outcomeDecider) Failed(ctx context.Context, c *Call, o Outcome) (time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.outcomes = append(d.outcomes, o)
	return 0, o.Err
}

func (d *outcomeDecider) Wait(ctx context.Context, c *Call, delay time.Duration) error {
	return ctx.Err()
}
func (d *outcomeDecider) Done(ctx context.Context, c *Call, err error) {}
func (d *outcomeDecider) Hedge(ctx context.Context, c *Call, alone bool) (bool, error) {
	return false, nil
}

func (d *outcomeDecider) last(t *testing.T) Outcome {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.outcomes) == 0 {
		t.Fatal("no failed attempt was reported")
	}
	return d.outcomes[len(d.outcomes)-1]
}

// unavailableServer fails every call with Unavailable, as a live but
// overloaded server does.
type unavailableServer struct {
	pb.UnimplementedInferenceServiceServer
}

func (unavailableServer) Generate(context.Context, *pb.GenerateRequest) (*pb.GenerateResponse, error) {
	return nil, status.Error(codes.Unavailable, "overloaded")
}

func (unavailableServer) StreamGenerate(*pb.StreamGenerateRequest, pb.InferenceService_StreamGenerateServer) error {
	return status.Error(codes.Unavailable, "overloaded")
}

// TestOutcomeDisconnected: an attempt that a live server fails is reported
// with a connection (Disconnected false); once the server is gone, an
// attempt that fails for want of a connection is reported Disconnected, for
// unary calls and streams, retried and hedged alike. Over loopback TCP, so
// that the channel really loses its connection.
func TestOutcomeDisconnected(t *testing.T) {
	for _, hedged := range []bool{false, true} {
		name := "retried"
		if hedged {
			name = "hedged"
		}
		t.Run(name, func(t *testing.T) { testOutcomeDisconnected(t, hedged) })
	}
}

func testOutcomeDisconnected(t *testing.T, hedged bool) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterInferenceServiceServer(gs, unavailableServer{})
	go gs.Serve(lis)
	defer gs.Stop()

	d := &outcomeDecider{hedged: hedged}
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(Unary(d)),
		grpc.WithChainStreamInterceptor(Stream(d)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := pb.NewInferenceServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	unary := func() error {
		_, err := client.Generate(ctx, &pb.GenerateRequest{Prompt: "p"})
		return err
	}
	stream := func() error {
		s, err := client.StreamGenerate(ctx, &pb.StreamGenerateRequest{Prompt: "p"})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	calls := []struct {
		name string
		call func() error
	}{{"unary", unary}, {"stream", stream}}

	// Connected: the server answers Unavailable.
	if _, err := client.Generate(ctx, &pb.GenerateRequest{}, grpc.WaitForReady(true)); status.Code(err) != codes.Unavailable {
		t.Fatalf("warm-up call: %v, want the server's Unavailable", err)
	}
	for _, c := range calls {
		if err := c.call(); status.Code(err) != codes.Unavailable {
			t.Fatalf("%s, server up: %v, want Unavailable", c.name, err)
		}
		if o := d.last(t); o.Disconnected || status.Convert(o.Err).Message() != "overloaded" {
			t.Errorf("%s, server up: Outcome %+v, want the server's answer with Disconnected false", c.name, o)
		}
	}

	// The server goes: the channel loses its connection and cannot make a
	// new one (connection refused).
	gs.Stop()
	for s := cc.GetState(); s == connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatal("the channel still reports READY after its server stopped")
		}
	}
	for _, c := range calls {
		if err := c.call(); status.Code(err) != codes.Unavailable {
			t.Fatalf("%s, server gone: %v, want Unavailable", c.name, err)
		}
		if o := d.last(t); !o.Disconnected {
			t.Errorf("%s, server gone: Outcome %+v, want Disconnected", c.name, o)
		}
	}
}
