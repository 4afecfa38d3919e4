package integration_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// A hedged stream that fails after its first response message has
// committed to that attempt: Recv returns the failure (StopCommitted, the
// attempt's own code) once, and then the same error again, never a message.
func TestHedgedStreamFailureAfterCommitEndsTheStream(t *testing.T) {
	checkNoLeaks(t)
	s := &stubServer{}
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: "tok"}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "broke mid-stream")
	}
	c := dialStream(t, s, hedgePolicy(time.Hour, 2))
	stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetToken() != "tok" {
		t.Fatalf("first Recv: %v, %v; want the token", m, err)
	}
	for i := range 3 {
		m, err := stream.Recv()
		if err == nil {
			t.Fatalf("Recv %d after the failure: message %v, want the stream's error", i+2, m)
		}
		var e *retry.Error
		if status.Code(err) != codes.Unavailable || !errors.As(err, &e) || e.Reason != retry.StopCommitted {
			t.Fatalf("Recv %d: %v, want Unavailable with Reason StopCommitted", i+2, err)
		}
	}
}
