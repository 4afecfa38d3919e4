package retry_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Full method names of the example service.
const (
	methodGenerate       = inferencev1.InferenceService_Generate_FullMethodName
	methodCallTool       = inferencev1.InferenceService_CallTool_FullMethodName
	methodStreamGenerate = inferencev1.InferenceService_StreamGenerate_FullMethodName
)

// exampleServer is the in-memory InferenceService of the examples and tests
// of this package. Each handler is a field and is given the 1-based number
// of the attempt, counted per method; a nil handler answers Unimplemented.
type exampleServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	generate       func(ctx context.Context, attempt int) (string, error)
	callTool       func(ctx context.Context, attempt int) (string, error)
	streamGenerate func(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error

	mu    sync.Mutex
	calls map[string]int
}

// arrive records an attempt of method and returns its number.
func (s *exampleServer) arrive(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = make(map[string]int)
	}
	s.calls[method]++
	return s.calls[method]
}

// attempts returns the number of attempts of method the server has seen.
func (s *exampleServer) attempts(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *exampleServer) Generate(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	n := s.arrive(methodGenerate)
	if s.generate == nil {
		return nil, status.Error(codes.Unimplemented, "Generate")
	}
	text, err := s.generate(ctx, n)
	if err != nil {
		return nil, err
	}
	return &inferencev1.GenerateResponse{Text: text}, nil
}

func (s *exampleServer) CallTool(ctx context.Context, _ *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
	n := s.arrive(methodCallTool)
	if s.callTool == nil {
		return nil, status.Error(codes.Unimplemented, "CallTool")
	}
	result, err := s.callTool(ctx, n)
	if err != nil {
		return nil, err
	}
	return &inferencev1.CallToolResponse{Result: result}, nil
}

func (s *exampleServer) StreamGenerate(_ *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	n := s.arrive(methodStreamGenerate)
	if s.streamGenerate == nil {
		return status.Error(codes.Unimplemented, "StreamGenerate")
	}
	return s.streamGenerate(stream, n)
}

// failFirst returns a unary handler whose first n attempts fail with code,
// and whose later attempts answer text.
func failFirst(n int, code codes.Code, text string) func(context.Context, int) (string, error) {
	return func(_ context.Context, attempt int) (string, error) {
		if attempt <= n {
			return "", status.Errorf(code, "attempt %d failed", attempt)
		}
		return text, nil
	}
}

// sendTokens sends tokens on stream, one message each.
func sendTokens(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], tokens ...string) error {
	for i, tok := range tokens {
		if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: tok, Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

// serve serves s in memory (bufconn) and returns a client connected to it
// with opts, and a function that closes the client and stops the server,
// leaving no goroutine behind. It panics if the client cannot be made.
func serve(s *exampleServer, opts ...grpc.DialOption) (inferencev1.InferenceServiceClient, func()) {
	cc, stop := serveConn(s, opts...)
	return inferencev1.NewInferenceServiceClient(cc), stop
}

// serveConn is serve returning the connection.
func serveConn(s *exampleServer, opts ...grpc.DialOption) (*grpc.ClientConn, func()) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	inferencev1.RegisterInferenceServiceServer(srv, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis) // nil after Stop
	}()
	stopServer := func() {
		srv.Stop()
		<-served
	}
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		stopServer()
		panic(err)
	}
	return cc, func() {
		cc.Close()
		stopServer()
	}
}

// start is serve for tests: the client and server end at cleanup.
func start(t testing.TB, s *exampleServer, opts ...grpc.DialOption) inferencev1.InferenceServiceClient {
	t.Helper()
	client, stop := serve(s, opts...)
	t.Cleanup(stop)
	return client
}
