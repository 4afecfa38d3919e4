package retry_test

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// WithReport tells the caller what its call did, whether it succeeded or
// not: here a call that succeeds at its third attempt, and one that fails
// after all of its attempts. The backoffs are 1ms and 2ms (NoJitter), so
// each call spends at least 3ms between attempts.
func ExampleWithReport() {
	srv := &exampleServer{
		generate: failFirst(2, codes.Unavailable, "Hello!"),
		callTool: failFirst(100, codes.Unavailable, ""),
	}
	client, stop := serve(srv, retry.DialOptions(retry.Policy{
		MaxAttempts:    3,
		InitialBackoff: time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	})...)
	defer stop()
	ctx := context.Background()

	var r retry.CallReport
	resp, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"}, retry.WithReport(&r))
	fmt.Printf("Generate: %q, %v\n", resp.GetText(), err)
	fmt.Printf("  %d attempts, answered by attempt %d, code %v, waited at least 3ms: %v\n",
		r.Attempts, r.Winner, r.Code, r.Delay >= 3*time.Millisecond)

	_, err = client.CallTool(ctx, &inferencev1.CallToolRequest{Tool: "search"}, retry.WithReport(&r))
	fmt.Printf("CallTool: %v\n", status.Code(err))
	fmt.Printf("  %d attempts, answered by attempt %d (none), code %v, stopped: %v\n",
		r.Attempts, r.Winner, r.Code, r.Reason)
	// Output:
	// Generate: "Hello!", <nil>
	//   3 attempts, answered by attempt 3, code OK, waited at least 3ms: true
	// CallTool: Unavailable
	//   3 attempts, answered by attempt 0 (none), code Unavailable, stopped: max attempts
}
