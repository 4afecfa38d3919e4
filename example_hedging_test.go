package retry_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// ExampleHedging hedges a call whose first attempt lands on a straggling
// replica: after 50ms without an answer a second attempt goes out, its
// answer wins, and the straggler is cancelled.
func ExampleHedging() {
	srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
		// Which attempt this is, from its own header (the order in which
		// attempts reach a server is not the order they were sent in):
		// a hedge carries x-retry-hedge, the number of attempts before it.
		attempt := 1
		if h := metadata.ValueFromIncomingContext(ctx, retry.HedgeHeader); len(h) == 1 {
			before, _ := strconv.Atoi(h[0])
			attempt = before + 1
		}
		if attempt == 1 {
			<-ctx.Done() // a straggler: answers only when cancelled
			return "", status.FromContextError(ctx.Err()).Err()
		}
		return fmt.Sprintf("answer from attempt %d", attempt), nil
	}}
	policy := retry.Policy{
		MaxAttempts: 2, // the first attempt and one hedge
		Hedging:     &retry.Hedging{Delay: 50 * time.Millisecond},
		OnHedge: func(ev retry.HedgeEvent) {
			fmt.Printf("hedge %d %s\n", ev.Attempt, ev.Kind)
		},
	}
	client, stop := serve(srv, retry.DialOptions(policy)...)
	defer stop()

	var report retry.CallReport
	res, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "hi"}, retry.WithReport(&report))
	fmt.Println(res.GetText(), err)
	fmt.Printf("attempts %d, winner %d\n", report.Attempts, report.Winner)
	// Output:
	// hedge 2 sent
	// hedge 2 won
	// answer from attempt 2 <nil>
	// attempts 2, winner 2
}

// ExampleHedging_learned learns the hedge delay per method: after a
// warm-up, a call slower than the 95th percentile of recent calls (with
// MaxExtraLoad 0.05) sends a hedge.
func ExampleHedging_learned() {
	policy := retry.Policy{MaxAttempts: 2, Hedging: &retry.Hedging{MaxExtraLoad: 0.05}}
	fmt.Println(policy.Validate())
	_ = grpc.WithChainUnaryInterceptor(retry.Unary(policy))
	// Output:
	// <nil>
}
