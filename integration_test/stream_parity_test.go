package integration_test

// Cases where a stream through retry.Stream must behave as a stream of
// grpc-go's own retry does, each the smallest form of a difference the
// differential test (differential_test.go) found.

import (
	"context"
	"slices"
	"sync"
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

// recvProbe is a stream interceptor placed under retry.Stream: it closes
// entered when the caller's RecvMsg first reaches an attempt's stream.
type recvProbe struct {
	once    sync.Once
	entered chan struct{}
}

func (p *recvProbe) intercept(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &recvProbedStream{ClientStream: cs, p: p}, nil
}

type recvProbedStream struct {
	grpc.ClientStream
	p *recvProbe
}

func (s *recvProbedStream) RecvMsg(m any) error {
	s.p.once.Do(func() { close(s.p.entered) })
	return s.ClientStream.RecvMsg(m)
}

// TestStreamHeaderWhileReceiving: one goroutine waits in Recv while
// another calls Header, and the first attempt fails trailers-only. The
// receiver retries; Header must return the new attempt's headers as soon as
// they arrive (as grpc-go's does), not only once the receiver gets a
// message: here the server sends its headers, then waits for a message that
// the caller sends only after Header returns.
func TestStreamHeaderWhileReceiving(t *testing.T) {
	s := &stubServer{}
	release := make(chan struct{})
	s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		if s.attempt(stream.Context()) == 1 {
			<-release
			return status.Error(codes.Unavailable, "first attempt lost")
		}
		if err := stream.SendHeader(metadata.Pairs("x-stage", "headers")); err != nil {
			return err
		}
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		return stream.Send(&inferencev1.ChatResponse{Text: m.GetText()})
	}
	probe := &recvProbe{entered: make(chan struct{})}
	c := dialStream(t, s, streamPolicy(), grpc.WithChainStreamInterceptor(probe.intercept))
	stream, err := c.Chat(streamCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		text string
		err  error
	}
	received := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		received <- result{m.GetText(), err}
	}()
	<-probe.entered // the receiver is waiting on the first attempt
	close(release)
	md, err := stream.Header()
	if err != nil || !slices.Equal(md.Get("x-stage"), []string{"headers"}) {
		t.Fatalf("Header() = %v, %v; want the second attempt's headers", md, err)
	}
	if err := stream.Send(&inferencev1.ChatRequest{Text: "after the headers"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	stream.CloseSend()
	if r := <-received; r.err != nil || r.text != "after the headers" {
		t.Fatalf("Recv = %q, %v; want the echo, once Header had returned", r.text, r.err)
	}
	wantArrivals(t, s, methodChat, 2)
}
