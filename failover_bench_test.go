package retry_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/seed4f82f287/retry"
)

// The cost of the Failover on a healthy call, the interceptor alone (an
// invoker that returns at once): without a breaker, and with one (a state
// load, three clock reads and a compare-and-swap on a striped counter).
func BenchmarkFailoverInterceptorOnly(b *testing.B) {
	ok := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	br, err := retry.NewBreaker(retry.BreakerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		breaker *retry.Breaker
	}{{"no breaker", nil}, {"breaker", br}} {
		fo, err := retry.NewFailover(retry.FailoverConfig{Breaker: bc.breaker})
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
