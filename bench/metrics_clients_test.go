package bench

import (
	"context"
	"io"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	pb "github.com/seed4f82f287/retry/gen/inference/v1"
)

// BenchmarkMetricsCost measures what Metrics and CountTransparentRetries
// add to a call over bufconn (the README's Metrics "Cost" table), on the
// clients of metricsClients:
//
//	go test -run '^$' -bench BenchmarkMetricsCost -benchmem -benchtime 2000x ./bench
//
// The calls: a unary success, a unary call retried once (the server fails
// every call's first attempt), a server stream of 16 messages, and a
// client stream of 256 messages of 64 bytes.
func BenchmarkMetricsCost(b *testing.B) {
	for _, c := range metricsClients() {
		b.Run("call=unary/client="+c.name, func(b *testing.B) {
			pc := metricsDial(b, false, c.opts)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pc.Generate(context.Background(), metricsReq); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("call=unary-retried/client="+c.name, func(b *testing.B) {
			pc := metricsDial(b, true, c.opts)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pc.Generate(context.Background(), metricsReq); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("call=server-stream/client="+c.name, func(b *testing.B) {
			pc := metricsDial(b, false, c.opts)
			var msg pb.StreamGenerateResponse
			b.ReportAllocs()
			for b.Loop() {
				stream, err := pc.StreamGenerate(context.Background(), metricsStreamReq)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					if err := stream.RecvMsg(&msg); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 16 {
					b.Fatalf("%d messages", n)
				}
			}
		})
		b.Run("call=client-stream/client="+c.name, func(b *testing.B) {
			pc := metricsDial(b, false, c.opts)
			chunk := &pb.IngestRequest{Chunk: make([]byte, 64)}
			b.ReportAllocs()
			for b.Loop() {
				stream, err := pc.Ingest(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				for range 256 {
					if err := stream.Send(chunk); err != nil {
						b.Fatal(err)
					}
				}
				if resp, err := stream.CloseAndRecv(); err != nil || resp.GetChunks() != 256 {
					b.Fatalf("%v, %v", resp, err)
				}
			}
		})
	}
}

// The requests, made once: a call's own allocations are not measured.
var (
	metricsReq       = &pb.GenerateRequest{Prompt: "Write a haiku about retries.", MaxTokens: 64}
	metricsStreamReq = &pb.StreamGenerateRequest{Prompt: "Write a haiku about retries."}
)

// metricsClients are DialOptions with a policy that retries at once
// without a budget: without Metrics, with Metrics, and with Metrics and
// CountTransparentRetries; the last two again on a client that already
// has a stats handler of its own (as with gRPC's OpenTelemetry plugin).
func metricsClients() []struct {
	name string
	opts []grpc.DialOption
} {
	policy := func(metrics bool, opts ...retry.MetricsOption) retry.Policy {
		p := retry.Policy{InitialBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond, Budget: retry.NoBudget}
		if metrics {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			m, err := retry.NewMetrics(mp, opts...)
			if err != nil {
				panic(err)
			}
			p.Metrics = m
		}
		return p
	}
	withHandler := func(opts []grpc.DialOption) []grpc.DialOption {
		return append(opts, grpc.WithStatsHandler(nopHandler{}))
	}
	return []struct {
		name string
		opts []grpc.DialOption
	}{
		{"nobudget", retry.DialOptions(policy(false))},
		{"metrics", retry.DialOptions(policy(true))},
		{"metrics-transparent", retry.DialOptions(policy(true, retry.CountTransparentRetries()))},
		{"metrics+handler", withHandler(retry.DialOptions(policy(true)))},
		{"metrics-transparent+handler", withHandler(retry.DialOptions(policy(true, retry.CountTransparentRetries())))},
	}
}

// nopHandler is a stats handler that does nothing: the cost of grpc-go's
// events, which any stats handler brings.
type nopHandler struct{}

func (nopHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (nopHandler) HandleRPC(context.Context, stats.RPCStats)                         {}
func (nopHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (nopHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// metricsServer answers at once; with failFirst, the first attempt of every
// call fails with Unavailable.
type metricsServer struct {
	pb.UnimplementedInferenceServiceServer
	failFirst bool
}

func (s *metricsServer) first(ctx context.Context) bool {
	if !s.failFirst {
		return false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(retry.PreviousAttemptsHeader)) == 0
}

func (s *metricsServer) Generate(ctx context.Context, _ *pb.GenerateRequest) (*pb.GenerateResponse, error) {
	if s.first(ctx) {
		return nil, status.Error(codes.Unavailable, "first attempt fails")
	}
	return &pb.GenerateResponse{Text: "a short completion of the prompt"}, nil
}

func (s *metricsServer) StreamGenerate(_ *pb.StreamGenerateRequest, stream pb.InferenceService_StreamGenerateServer) error {
	for i := range 16 {
		if err := stream.Send(&pb.StreamGenerateResponse{Token: "tok", Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *metricsServer) Ingest(stream pb.InferenceService_IngestServer) error {
	var n int64
	for {
		if _, err := stream.Recv(); err == io.EOF {
			return stream.SendAndClose(&pb.IngestResponse{Chunks: n})
		} else if err != nil {
			return err
		}
		n++
	}
}

// metricsDial serves a metricsServer over bufconn and returns a warmed-up
// client of it with opts; both end at cleanup.
func metricsDial(b *testing.B, failFirst bool, opts []grpc.DialOption) pb.InferenceServiceClient {
	b.Helper()
	return dialServer(b, &metricsServer{failFirst: failFirst}, opts)
}
