package integration_test

// Cases where a stream through retry.Stream must behave as a stream of
// grpc-go's own retry does, each the smallest form of a difference the
// differential test (differential_test.go) found.

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// TestStreamHeaderAfterEnd: Header() called after the stream has ended
// returns the response headers of the attempt the caller got its answer
// from, as grpc-go's streams do, on success and on failure after commit.
func TestStreamHeaderAfterEnd(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := "OK"
		if fail {
			name = "failure after a token"
		}
		t.Run(name, func(t *testing.T) {
			s := &stubServer{}
			s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
				if err := stream.SendHeader(metadata.Pairs("x-stage", "headers")); err != nil {
					return err
				}
				if err := sendTokens(stream, req.GetPrompt(), 0, 1); err != nil {
					return err
				}
				if fail {
					return status.Error(codes.Unavailable, "lost")
				}
				return nil
			}
			c := dialStream(t, s, streamPolicy())
			stream, err := c.StreamGenerate(streamCtx(t, 10*time.Second), &inferencev1.StreamGenerateRequest{Prompt: "p"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := recvTokens(stream)
			if fail {
				wantStreamStop(t, err, codes.Unavailable, retry.StopCommitted, 1)
			} else if err != nil {
				t.Fatalf("stream ended with %v, want OK", err)
			}
			if want := wantTokenList("p", 0, 1); !slices.Equal(got, want) {
				t.Fatalf("tokens %q, want %q", got, want)
			}
			md, err := stream.Header()
			if err != nil || !slices.Equal(md.Get("x-stage"), []string{"headers"}) {
				t.Fatalf("Header() after the end = %v, %v; want the headers (x-stage: headers), as grpc-go returns them", md, err)
			}
		})
	}
}
