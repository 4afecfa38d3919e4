package retry_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// readTokens reads a server stream to its end and returns the tokens and
// the final error (nil for io.EOF).
func readTokens(stream grpc.ServerStreamingClient[inferencev1.StreamGenerateResponse]) ([]string, error) {
	var toks []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return toks, nil
		}
		if err != nil {
			return toks, err
		}
		toks = append(toks, m.GetToken())
	}
}

func streamFails(code codes.Code) func(*inferencev1.StreamGenerateRequest, grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], int) error {
	return func(*inferencev1.StreamGenerateRequest, grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], int) error {
		return status.Errorf(code, "stream %v", code)
	}
}

func streamTokens(toks ...string) func(*inferencev1.StreamGenerateRequest, grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], int) error {
	return func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
		return sendTokens(s, toks...)
	}
}

// A server stream that fails before its first message, after the
// primary's retries, is served whole by the fallback, with the request
// rewritten.
func TestFailoverStreamBeforeFirstMessage(t *testing.T) {
	primary := &backend{streamGenerate: streamFails(codes.Unavailable)}
	secondary := &backend{streamGenerate: func(req *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
		return sendTokens(s, req.GetPrompt(), "b", "c")
	}}
	fb := fallbackTo(t, "secondary", secondary)
	fb.Rewrite = retry.RewriteRequest(func(_ string, r *inferencev1.StreamGenerateRequest) *inferencev1.StreamGenerateRequest {
		r = proto.CloneOf(r)
		r.Prompt = "small:" + r.Prompt
		return r
	})
	var ev events
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fb}, OnFallback: ev.add}, primary, foPolicy)
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "a"})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := readTokens(stream)
	if err != nil || strings.Join(toks, " ") != "small:a b c" {
		t.Fatalf("tokens %v, err %v; want the fallback's tokens once", toks, err)
	}
	if n := primary.count(methodStreamGenerate); n != 3 {
		t.Errorf("primary saw %d attempts, want 3", n)
	}
	if evs := ev.all(); len(evs) != 1 || evs[0].Reason != retry.StopMaxAttempts {
		t.Errorf("events %+v", evs)
	}
}

// After the first response message the stream has committed: its error
// goes to the caller, never to a fallback that would repeat the tokens.
func TestFailoverStreamNotAfterFirstMessage(t *testing.T) {
	primary := &backend{streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
		if err := sendTokens(s, "a"); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "connection lost mid-stream")
	}}
	secondary := &backend{streamGenerate: streamTokens("x", "y")}
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, foPolicy)
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := readTokens(stream)
	var re *retry.Error
	if strings.Join(toks, " ") != "a" || status.Code(err) != codes.Unavailable || !errors.As(err, &re) || re.Reason != retry.StopCommitted {
		t.Fatalf("tokens %v, err %v; want [a] then the primary's Unavailable (StopCommitted)", toks, err)
	}
	var fe *retry.FallbackError
	if errors.As(err, &fe) || secondary.count(methodStreamGenerate) != 0 {
		t.Fatalf("err %v, secondary %d: the committed stream fell back", err, secondary.count(methodStreamGenerate))
	}
}

// Without a retry interceptor under it, the Failover applies the commit
// rule itself: a message received commits the stream.
func TestFailoverStreamCommitsWithoutRetryLayer(t *testing.T) {
	primary := &backend{streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
		if err := sendTokens(s, "a"); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "lost")
	}}
	secondary := &backend{streamGenerate: streamTokens("x")}
	fo, err := retry.NewFailover(retry.FailoverConfig{Fallbacks: []retry.Fallback{{Name: "secondary", Conn: connTo(t, secondary)}}})
	if err != nil {
		t.Fatal(err)
	}
	client := inferencev1.NewInferenceServiceClient(connTo(t, primary, fo.DialOptions()...))
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := readTokens(stream)
	if strings.Join(toks, " ") != "a" || status.Code(err) != codes.Unavailable || secondary.count(methodStreamGenerate) != 0 {
		t.Fatalf("tokens %v, err %v, secondary %d", toks, err, secondary.count(methodStreamGenerate))
	}

	// And without any message, it falls back (plain errors are classified
	// by their code).
	primary.streamGenerate = streamFails(codes.Unavailable)
	stream, err = client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		t.Fatal(err)
	}
	if toks, err := readTokens(stream); err != nil || strings.Join(toks, " ") != "x" {
		t.Fatalf("tokens %v, err %v; want the fallback's", toks, err)
	}
}

// chatEcho reads every message until CloseSend and echoes them back, each
// prefixed; fail, if set, fails the stream after reading instead.
func chatEcho(prefix string, fail codes.Code) func(grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse], int) error {
	return func(s grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse], _ int) error {
		var got []string
		for {
			m, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			got = append(got, m.GetText())
		}
		if fail != codes.OK {
			return status.Errorf(fail, "failed after reading %v", got)
		}
		for _, g := range got {
			if err := s.Send(&inferencev1.ChatResponse{Text: prefix + g}); err != nil {
				return err
			}
		}
		return nil
	}
}

func readChat(stream grpc.BidiStreamingClient[inferencev1.ChatRequest, inferencev1.ChatResponse]) ([]string, error) {
	var got []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m.GetText())
	}
}

// The messages a bidi stream sent before failing over are replayed, in
// order and rewritten, onto the fallback, with CloseSend.
func TestFailoverStreamReplaysSends(t *testing.T) {
	primary := &backend{chat: chatEcho("", codes.Unavailable)}
	secondary := &backend{chat: chatEcho("fallback:", codes.OK)}
	fb := fallbackTo(t, "secondary", secondary)
	fb.Rewrite = retry.RewriteRequest(func(_ string, r *inferencev1.ChatRequest) *inferencev1.ChatRequest {
		return &inferencev1.ChatRequest{Text: strings.ToUpper(r.GetText())}
	})
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fb}}, primary, foPolicy)
	stream, err := client.Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got, err := readChat(stream)
	if err != nil || strings.Join(got, " ") != "fallback:A fallback:B fallback:C" {
		t.Fatalf("got %v, %v; want every message replayed once onto the fallback, rewritten", got, err)
	}
	if primary.count(methodChat) != 3 || secondary.count(methodChat) != 1 {
		t.Errorf("primary %d, secondary %d calls", primary.count(methodChat), secondary.count(methodChat))
	}
}

// A stream whose sends outgrow FailoverConfig.MaxReplayBytes can no longer
// fall back: its error goes to the caller.
func TestFailoverStreamReplayBound(t *testing.T) {
	primary := &backend{chat: chatEcho("", codes.Unavailable)}
	secondary := &backend{chat: chatEcho("", codes.OK)}
	client := failoverClient(t, retry.FailoverConfig{
		Fallbacks:      []retry.Fallback{fallbackTo(t, "secondary", secondary)},
		MaxReplayBytes: 64,
	}, primary, foPolicy)
	stream, err := client.Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&inferencev1.ChatRequest{Text: strings.Repeat("x", 100)}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	_, err = readChat(stream)
	if status.Code(err) != codes.Unavailable || secondary.count(methodChat) != 0 {
		t.Fatalf("err %v, secondary %d; want the primary's error and no fallback", err, secondary.count(methodChat))
	}

	// Under the bound, the same stream falls back.
	stream, err = client.Chat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&inferencev1.ChatRequest{Text: "short"})
	stream.CloseSend()
	if got, err := readChat(stream); err != nil || strings.Join(got, ",") != "short" {
		t.Fatalf("got %v, %v", got, err)
	}
}

// Header waits through a failover: a primary that fails without headers
// gives way to the fallback, whose headers the caller gets; headers commit.
func TestFailoverStreamHeader(t *testing.T) {
	primary := &backend{streamGenerate: streamFails(codes.Unavailable)}
	secondary := &backend{streamGenerate: func(_ *inferencev1.StreamGenerateRequest, s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
		if err := s.SendHeader(metadata.Pairs("x-backend", "secondary")); err != nil {
			return err
		}
		return sendTokens(s, "t")
	}}
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, foPolicy)
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{Prompt: "Hi"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil || strings.Join(md.Get("x-backend"), ",") != "secondary" {
		t.Fatalf("Header = %v, %v; want the fallback's", md, err)
	}
	if toks, err := readTokens(stream); err != nil || strings.Join(toks, ",") != "t" {
		t.Fatalf("tokens %v, %v", toks, err)
	}
}

// A client-streaming call (one response) falls back too, its messages
// replayed.
func TestFailoverClientStream(t *testing.T) {
	ingest := func(fail bool) func(grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse], int) error {
		return func(s grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse], _ int) error {
			var n, bytes int64
			for {
				m, err := s.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				n++
				bytes += int64(len(m.GetChunk()))
			}
			if fail {
				return status.Error(codes.Unavailable, "down")
			}
			return s.SendAndClose(&inferencev1.IngestResponse{Chunks: n, Bytes: bytes})
		}
	}
	primary := &backend{ingest: ingest(true)}
	secondary := &backend{ingest: ingest(false)}
	client := failoverClient(t, retry.FailoverConfig{Fallbacks: []retry.Fallback{fallbackTo(t, "secondary", secondary)}}, primary, foPolicy)
	stream, err := client.Ingest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"ab", "cde"} {
		if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte(c)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.GetChunks() != 2 || resp.GetBytes() != 5 {
		t.Fatalf("CloseAndRecv = %v, %v; want the fallback's summary of both chunks", resp, err)
	}
}
