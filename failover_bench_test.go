package retry_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"

	"github.com/seed4f82f287/retry"
)

// The cost of the Failover on a healthy call, the interceptor alone (an
// invoker that returns at once): without a breaker; with one (two loads of
// its state, one clock reading, a compare-and-swap on a striped counter
// and a load of the run of failures); and with a breaker and Metrics on
// both, which a call that does not fall back never touches.
func BenchmarkFailoverInterceptorOnly(b *testing.B) {
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	br, err := retry.NewBreaker(retry.BreakerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	metrics, err := retry.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
	if err != nil {
		b.Fatal(err)
	}
	measured, err := retry.NewBreaker(retry.BreakerConfig{Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		breaker *retry.Breaker
		metrics *retry.Metrics
	}{{"no breaker", nil, nil}, {"breaker", br, nil}, {"breaker and metrics", measured, metrics}} {
		fo, err := retry.NewFailover(retry.FailoverConfig{Breaker: bc.breaker, Metrics: bc.metrics})
		if err != nil {
			b.Fatal(err)
		}
		in := fo.UnaryInterceptor()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := in(ctx, "/s/m", nil, nil, nil, ok); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
