package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// A client of us-east that falls back to eu-west once us-east's own
// retries have given up. Each region has its own connection, with its own
// retry policy and budget; the Failover sits outside us-east's retry
// interceptors.
func ExampleNewFailover() {
	usEast := &backend{generate: always(codes.Unavailable)} // the region is down
	euWest := &backend{generate: answer("Hello from eu-west")}
	policy := retry.Policy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter}

	euConn, stopEU := serveBackend(euWest, retry.DialOptions(policy)...)
	defer stopEU()
	fo, err := retry.NewFailover(retry.FailoverConfig{
		Name:      "us-east",
		Fallbacks: []retry.Fallback{{Name: "eu-west", Conn: euConn}},
		OnFallback: func(ev retry.FallbackEvent) {
			fmt.Printf("falling back from %s to %s: %v (%v)\n", ev.FromName, ev.ToName, ev.Code, ev.Reason)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The Failover's options first: it runs outside the retry interceptors.
	usConn, stopUS := serveBackend(usEast, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	defer stopUS()

	client := inferencev1.NewInferenceServiceClient(usConn)
	resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Printf("%q %v; us-east saw %d attempts\n", resp.GetText(), status.Code(err), usEast.count(methodGenerate))
	// Output:
	// falling back from us-east to eu-west: Unavailable (max attempts)
	// "Hello from eu-west" OK; us-east saw 3 attempts
}

// A breaker without a fallback: once half of at least 4 calls have failed
// with an infrastructure error, calls fail fast with Unavailable instead
// of spending the caller's time (and the backend's) on a dead target.
func ExampleNewBreaker() {
	down := &backend{generate: always(codes.Unavailable)}
	breaker, err := retry.NewBreaker(retry.BreakerConfig{
		Name:     "us-east",
		MinCalls: 4,
		OpenFor:  30 * time.Second,
		OnStateChange: func(ev retry.BreakerEvent) {
			fmt.Printf("breaker %s: %v → %v after %d failures\n", ev.Name, ev.From, ev.To, ev.Failures)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fo, _ := retry.NewFailover(retry.FailoverConfig{Breaker: breaker})
	policy := retry.Policy{MaxAttempts: 2, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}
	conn, stop := serveBackend(down, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	defer stop()
	client := inferencev1.NewInferenceServiceClient(conn)

	for i := 1; i <= 6; i++ {
		_, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"})
		fmt.Printf("call %d: %v, breaker refused: %v, attempts sent so far: %d\n", i, status.Code(err), retry.IsBreakerOpen(err), down.count(methodGenerate))
	}
	st := breaker.Stats()[0]
	fmt.Printf("state %v, opened %d time(s), %d call(s) refused\n", breaker.State(), st.Opened, st.Rejected)
	// Output:
	// call 1: Unavailable, breaker refused: false, attempts sent so far: 2
	// call 2: Unavailable, breaker refused: false, attempts sent so far: 4
	// call 3: Unavailable, breaker refused: false, attempts sent so far: 6
	// breaker us-east: closed → open after 4 failures
	// call 4: Unavailable, breaker refused: false, attempts sent so far: 8
	// call 5: Unavailable, breaker refused: true, attempts sent so far: 8
	// call 6: Unavailable, breaker refused: true, attempts sent so far: 8
	// state open, opened 1 time(s), 2 call(s) refused
}

// The fallback serves a smaller model: its requests are rewritten (a
// copy: the caller's request is never modified).
func ExampleRewriteRequest() {
	large := &backend{generate: always(codes.ResourceExhausted)} // out of capacity
	small := &backend{generate: func(_ context.Context, req *inferencev1.GenerateRequest, _ int) (string, error) {
		return fmt.Sprintf("prompt %q, max_tokens %d", req.GetPrompt(), req.GetMaxTokens()), nil
	}}
	policy := retry.Policy{MaxAttempts: 2, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter}
	smallConn, stopSmall := serveBackend(small, retry.DialOptions(policy)...)
	defer stopSmall()
	fo, _ := retry.NewFailover(retry.FailoverConfig{Fallbacks: []retry.Fallback{{
		Name: "small-model",
		Conn: smallConn,
		Rewrite: retry.RewriteRequest(func(_ string, r *inferencev1.GenerateRequest) *inferencev1.GenerateRequest {
			r = proto.CloneOf(r)
			r.MaxTokens = min(r.MaxTokens, 256)
			return r
		}),
	}}})
	conn, stop := serveBackend(large, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	defer stop()

	req := &inferencev1.GenerateRequest{Prompt: "Summarise", MaxTokens: 4096}
	resp, err := inferencev1.NewInferenceServiceClient(conn).Generate(context.Background(), req)
	fmt.Println(resp.GetText(), status.Code(err))
	fmt.Println("caller's max_tokens:", req.GetMaxTokens())
	// Output:
	// prompt "Summarise", max_tokens 256 OK
	// caller's max_tokens: 4096
}

// When every step fails, the error says what each step did; status.Code
// gives the last step's code and errors.As finds its *retry.Error.
func ExampleFallbackError() {
	policy := retry.Policy{MaxAttempts: 2, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}
	westConn, stopWest := serveBackend(&backend{generate: always(codes.ResourceExhausted)}, retry.DialOptions(policy)...)
	defer stopWest()
	fo, _ := retry.NewFailover(retry.FailoverConfig{
		Name:      "east",
		Fallbacks: []retry.Fallback{{Name: "west", Conn: westConn}},
	})
	conn, stop := serveBackend(&backend{generate: always(codes.Unavailable)}, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	defer stop()

	_, err := inferencev1.NewInferenceServiceClient(conn).Generate(context.Background(), &inferencev1.GenerateRequest{})
	var fe *retry.FallbackError
	if errors.As(err, &fe) {
		for _, s := range fe.Steps {
			fmt.Printf("step %d (%s): %v\n", s.Step, s.Name, status.Code(s.Err))
		}
	}
	var last *retry.Error
	errors.As(err, &last)
	fmt.Printf("code %v; last step: %d attempts, %v\n", status.Code(err), last.Attempts, last.Reason)
	// Output:
	// step 0 (east): Unavailable
	// step 1 (west): ResourceExhausted
	// code ResourceExhausted; last step: 2 attempts, max attempts
}

// FailoverConfig.Metrics and BreakerConfig.Metrics export what the
// Failover and its breaker do through OpenTelemetry: here an in-memory SDK
// reads back the fallbacks and the breaker's state after three calls while
// us-east is down (the breaker opens after two failures in a row, and the
// third call skips us-east).
func ExampleFailoverConfig_metrics() {
	reader := sdkmetric.NewManualReader()
	metrics, err := retry.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		fmt.Println(err)
		return
	}
	usEast := &backend{generate: always(codes.Unavailable)} // the region is down
	euWest := &backend{generate: answer("Hello from eu-west")}
	policy := retry.Policy{MaxAttempts: 2, InitialBackoff: time.Millisecond, Jitter: retry.NoJitter, Budget: retry.NoBudget}

	euConn, stopEU := serveBackend(euWest, retry.DialOptions(policy)...)
	defer stopEU()
	breaker, err := retry.NewBreaker(retry.BreakerConfig{Name: "us-east", ConsecutiveFailures: 2, Metrics: metrics})
	if err != nil {
		fmt.Println(err)
		return
	}
	fo, err := retry.NewFailover(retry.FailoverConfig{
		Name:      "us-east",
		Breaker:   breaker,
		Fallbacks: []retry.Fallback{{Name: "eu-west", Conn: euConn}},
		Metrics:   metrics,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	usConn, stopUS := serveBackend(usEast, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	defer stopUS()
	client := inferencev1.NewInferenceServiceClient(usConn)
	for range 3 {
		if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"}); err != nil {
			fmt.Println(err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				if v, ok := p.Attributes.Value("retry.breaker.state"); ok && p.Value == 0 {
					continue // the states the breaker is not in
				} else if ok {
					name, _ := p.Attributes.Value("retry.breaker.name")
					lines = append(lines, fmt.Sprintf("%s %s: %s", m.Name, name.AsString(), v.AsString()))
					continue
				}
				var labels []string
				for _, kv := range p.Attributes.ToSlice() {
					if kv.Key != "grpc.target" {
						labels = append(labels, string(kv.Key)+"="+kv.Value.AsString())
					}
				}
				lines = append(lines, fmt.Sprintf("%s %v: %d", m.Name, labels, p.Value))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// retry.client.breaker.opens [retry.breaker.group= retry.breaker.name=us-east]: 1
	// retry.client.breaker.probes [retry.breaker.group= retry.breaker.name=us-east]: 0
	// retry.client.breaker.rejected [retry.breaker.group= retry.breaker.name=us-east]: 1
	// retry.client.breaker.state us-east: open
	// retry.client.fallbacks [grpc.method=inference.v1.InferenceService/Generate retry.fallback.from=us-east retry.fallback.reason=breaker_open retry.fallback.to=eu-west]: 1
	// retry.client.fallbacks [grpc.method=inference.v1.InferenceService/Generate retry.fallback.from=us-east retry.fallback.reason=max_attempts retry.fallback.to=eu-west]: 2
}
