package retry_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// The README's quick start, against a server on a loopback TCP port that
// fails once with Unavailable. The transport credentials are a dial option
// of their own: plaintext (insecure) here, TLS or your mesh's credentials
// in production.
func Example_quickStart() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := grpc.NewServer()
	inferencev1.RegisterInferenceServiceServer(srv, &exampleServer{generate: failFirst(1, codes.Unavailable, "Hello!")})
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-served }()
	target := lis.Addr().String()

	policy := retry.Policy{ // zero fields take the documented defaults
		MaxAttempts:       3,               // every attempt, the first included
		PerAttemptTimeout: 2 * time.Second, // cut a hung attempt, retry while the deadline has room
		// Only the methods that are safe to retry: not CallTool.
		Methods: []string{"/inference.v1.InferenceService/Generate"},
	}
	policy.InitialBackoff = 10 * time.Millisecond // short, for the example (default 1s)

	conn, err := grpc.NewClient(target, append(retry.DialOptions(policy),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := inferencev1.NewInferenceServiceClient(conn).Generate(ctx, &inferencev1.GenerateRequest{Prompt: "Hi"})
	fmt.Println(resp.GetText(), err)
	// Output:
	// Hello! <nil>
}
