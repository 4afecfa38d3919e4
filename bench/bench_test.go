package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	grpcretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/seed4f82f287/retry"
	pb "github.com/seed4f82f287/retry/gen/inference/v1"
)

const streamTokens = 16

// server answers every call at once. With failFirst, the first attempt of
// every call (one carrying no attempt header of any client) fails with
// Unavailable, and retries succeed.
type server struct {
	pb.UnimplementedInferenceServiceServer
	failFirst bool
}

func (s *server) firstAttempt(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get("grpc-previous-rpc-attempts")) == 0 && len(md.Get("x-retry-attempt")) == 0
}

func (s *server) Generate(ctx context.Context, req *pb.GenerateRequest) (*pb.GenerateResponse, error) {
	if s.failFirst && s.firstAttempt(ctx) {
		return nil, status.Error(codes.Unavailable, "first attempt fails")
	}
	return &pb.GenerateResponse{Text: "a short completion of the prompt"}, nil
}

func (s *server) Ingest(stream pb.InferenceService_IngestServer) error {
	var n, size int64
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&pb.IngestResponse{Chunks: n, Bytes: size})
		}
		if err != nil {
			return err
		}
		n++
		size += int64(len(m.GetChunk()))
	}
}

func (s *server) StreamGenerate(req *pb.StreamGenerateRequest, stream pb.InferenceService_StreamGenerateServer) error {
	if s.failFirst && s.firstAttempt(stream.Context()) {
		return status.Error(codes.Unavailable, "first attempt fails")
	}
	for i := range streamTokens {
		if err := stream.Send(&pb.StreamGenerateResponse{Token: "tok", Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

// client is one way of calling the server: the floor or a retry layer.
type client struct {
	name string
	opts []grpc.DialOption
}

// A6 retryPolicy for grpc-go's built-in retry, comparable to our default.
const serviceConfig = `{"methodConfig": [{
  "name": [{"service": "inference.v1.InferenceService"}],
  "retryPolicy": {
    "maxAttempts": 4, "initialBackoff": "0.000000001s", "maxBackoff": "0.000000001s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
  }}]}`

// zeroWait policies wait (next to) nothing between attempts, so the cost of
// a retry is the machinery, not the sleep.
var zeroWait = retry.Policy{InitialBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond}

func ours(name string, p retry.Policy) client {
	return client{name, []grpc.DialOption{
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(retry.Unary(p)),
		grpc.WithChainStreamInterceptor(retry.Stream(p)),
	}}
}

func clients() []client {
	noBudget := zeroWait
	noBudget.Budget = retry.NoBudget
	throttle := zeroWait
	throttle.Budget = retry.NewThrottle(10, 0.1)
	statusOnly := zeroWait
	statusOnly.StatusOnly = true
	hedged := retry.Policy{Hedging: &retry.Hedging{Delay: time.Hour}}
	learned := retry.Policy{Hedging: &retry.Hedging{}}
	metrics := noBudget
	metrics.Metrics = newMetrics()
	mw := []grpcretry.CallOption{
		grpcretry.WithMax(4),
		grpcretry.WithBackoff(func(context.Context, uint) time.Duration { return 0 }),
		grpcretry.WithCodes(codes.Unavailable, codes.ResourceExhausted),
	}
	return []client{
		{"bare", []grpc.DialOption{grpc.WithDisableRetry()}},
		{"grpc-builtin", []grpc.DialOption{grpc.WithDefaultServiceConfig(serviceConfig)}},
		{"middleware", []grpc.DialOption{
			grpc.WithDisableRetry(),
			grpc.WithChainUnaryInterceptor(grpcretry.UnaryClientInterceptor(mw...)),
			grpc.WithChainStreamInterceptor(grpcretry.StreamClientInterceptor(mw...)),
		}},
		ours("ours-default", zeroWait), // default budget
		ours("ours-nobudget", noBudget),
		ours("ours-throttle", throttle),
		ours("ours-statusonly", statusOnly),
		ours("ours-hedged", hedged),   // a fixed hedge delay no call reaches
		ours("ours-learned", learned), // a learned hedge delay
		// ours-nobudget with Metrics on an OpenTelemetry SDK, set up by
		// DialOptions without CountTransparentRetries (so no stats
		// handler); BenchmarkMetricsCost measures that option.
		{"ours-metrics", retry.DialOptions(metrics)},
	}
}

// newMetrics returns a Metrics on an OpenTelemetry SDK whose measurements
// are kept in memory (as by any SDK between two exports).
func newMetrics() *retry.Metrics {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	m, err := retry.NewMetrics(mp)
	if err != nil {
		panic(err)
	}
	return m
}

func dial(b *testing.B, srv *server, c client) pb.InferenceServiceClient {
	b.Helper()
	return dialServer(b, srv, c.opts)
}

// dialServer serves srv over bufconn and returns a warmed-up client of it
// with opts; both end at cleanup.
func dialServer(b *testing.B, srv pb.InferenceServiceServer, opts []grpc.DialOption) pb.InferenceServiceClient {
	b.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	pb.RegisterInferenceServiceServer(gs, srv)
	go gs.Serve(lis)
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close(); gs.Stop() })
	pc := pb.NewInferenceServiceClient(cc)
	// Warm the connection up outside the measurement.
	if _, err := pc.Generate(context.Background(), &pb.GenerateRequest{Prompt: "warm-up"}); err != nil {
		b.Fatal(err)
	}
	return pc
}

var req = &pb.GenerateRequest{Prompt: "Write a haiku about retries.", MaxTokens: 64}

// unary measures one client's Generate calls against a server that fails
// the first attempt of every call if failFirst.
func unary(b *testing.B, c client, failFirst bool) {
	b.Run("client="+c.name, func(b *testing.B) {
		pc := dial(b, &server{failFirst: failFirst}, c)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := pc.Generate(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnary is the success path: every call succeeds at once.
func BenchmarkUnary(b *testing.B) {
	for _, c := range clients() {
		unary(b, c, false)
	}
}

// BenchmarkUnaryRetried is one retried call: Unavailable, then OK, with no
// wait between the attempts. Only the clients that retry every call take
// part: the bare client fails, and a budget (rightly) denies most retries
// when every call fails its first attempt.
func BenchmarkUnaryRetried(b *testing.B) {
	for _, c := range clients() {
		if c.name == "bare" || c.name == "ours-default" || c.name == "ours-throttle" {
			continue
		}
		unary(b, c, true)
	}
}

// BenchmarkUnaryParallel is the success path from many goroutines, so that
// contention on shared state (budgets) shows.
func BenchmarkUnaryParallel(b *testing.B) {
	for _, c := range clients() {
		b.Run("client="+c.name, func(b *testing.B) {
			pc := dial(b, &server{}, c)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := pc.Generate(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkServerStream is a server-streaming call of streamTokens messages.
func BenchmarkServerStream(b *testing.B) {
	for _, c := range clients() {
		b.Run("client="+c.name, func(b *testing.B) {
			pc := dial(b, &server{}, c)
			ctx := context.Background()
			sreq := &pb.StreamGenerateRequest{Prompt: req.Prompt}
			var msg pb.StreamGenerateResponse
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				stream, err := pc.StreamGenerate(ctx, sreq)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					err := stream.RecvMsg(&msg)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != streamTokens {
					b.Fatalf("%d tokens", n)
				}
			}
		})
	}
}

// BenchmarkClientStream sends chunks client messages of 64 bytes on one
// Ingest stream, all of them before the stream commits (the response comes
// after CloseSend), so ours keeps every one for replay. Comparing 16 and 256
// chunks shows what keeping them costs per message. go-grpc-middleware
// takes no part: it refuses client streams (Unimplemented).
func BenchmarkClientStream(b *testing.B) {
	chunk := &pb.IngestRequest{Chunk: make([]byte, 64)}
	for _, chunks := range []int{16, 256} {
		for _, c := range clients() {
			if c.name == "middleware" {
				continue
			}
			b.Run(fmt.Sprintf("chunks=%d/client=%s", chunks, c.name), func(b *testing.B) {
				pc := dial(b, &server{}, c)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					stream, err := pc.Ingest(ctx)
					if err != nil {
						b.Fatal(err)
					}
					for range chunks {
						if err := stream.Send(chunk); err != nil {
							b.Fatal(err)
						}
					}
					resp, err := stream.CloseAndRecv()
					if err != nil || resp.GetChunks() != int64(chunks) {
						b.Fatalf("%v, %v", resp, err)
					}
				}
			})
		}
	}
}

// BenchmarkInterceptorOnly measures a retry layer's own work on the success
// path, without the network: the unary interceptor around an invoker that
// succeeds at once. "direct" calls the invoker with no interceptor. (gRPC's
// copy of the trailer that ours asks for happens inside gRPC's invoker, so
// it shows in BenchmarkUnary, not here.)
func BenchmarkInterceptorOnly(b *testing.B) {
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		return nil
	}
	noBudget := zeroWait
	noBudget.Budget = retry.NoBudget
	withMetrics := noBudget
	withMetrics.Metrics = newMetrics()
	mw := grpcretry.UnaryClientInterceptor(grpcretry.WithMax(4), grpcretry.WithCodes(codes.Unavailable, codes.ResourceExhausted))
	for _, c := range []struct {
		name string
		ic   grpc.UnaryClientInterceptor
	}{
		{"direct", func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(ctx, method, req, reply, cc, opts...)
		}},
		{"middleware", mw},
		{"ours-default", retry.Unary(zeroWait)},
		{"ours-nobudget", retry.Unary(noBudget)},
		{"ours-metrics", retry.Unary(withMetrics)},
	} {
		b.Run("client="+c.name, func(b *testing.B) {
			ctx := context.Background()
			var reply pb.GenerateResponse
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.ic(ctx, "/inference.v1.InferenceService/Generate", req, &reply, nil, invoker); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
