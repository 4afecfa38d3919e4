package retry_test

import (
	"context"
	"fmt"
	"net"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// CountTransparentRetries counts the attempts that grpc-go sends again by
// itself because they never reached the server application. Here the
// server refuses the call's first stream (HTTP/2 REFUSED_STREAM, as a
// server at its limit of concurrent streams does); grpc-go retries it at
// once, under the retry interceptor's one attempt, and only the stats
// handler that DialOptions adds sees it.
func ExampleCountTransparentRetries() {
	addr, stopServer, err := refusingServer(1)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopServer()

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	metrics, err := retry.NewMetrics(provider, retry.CountTransparentRetries())
	if err != nil {
		fmt.Println(err)
		return
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, append(retry.DialOptions(retry.Policy{Metrics: metrics}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	var r retry.CallReport
	resp, err := inferencev1.NewInferenceServiceClient(conn).Generate(context.Background(),
		&inferencev1.GenerateRequest{Prompt: "Hi"}, retry.WithReport(&r))
	fmt.Printf("Generate: %q %v, %d attempt of the retry interceptor\n", resp.GetText(), err, r.Attempts)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[int64]); ok {
				for _, dp := range h.DataPoints {
					method, _ := dp.Attributes.Value("grpc.method")
					fmt.Printf("%s %s: %d call, sum %d %s\n", m.Name, method.AsString(), dp.Count, dp.Sum, m.Unit)
				}
			}
		}
	}
	// Output:
	// Generate: "ok" <nil>, 1 attempt of the retry interceptor
	// grpc.client.call.transparent_retries inference.v1.InferenceService/Generate: 1 call, sum 1 {transparent_retry}
}

// refusingServer serves one client connection on a loopback port with a
// raw HTTP/2 server (serveH2) that refuses the first n streams with
// REFUSED_STREAM and answers the others with a GenerateResponse "ok". stop
// waits for it to end; close the client first.
func refusingServer(n int) (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = serveH2(conn, func(i int) h2Action {
			if i <= n {
				return h2Refuse
			}
			return h2OK
		})
	}()
	return lis.Addr().String(), func() {
		lis.Close()
		<-done
	}, nil
}
