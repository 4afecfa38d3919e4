package integration_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Full method names, the keys of the stub server's arrival records.
const (
	methodGenerate       = inferencev1.InferenceService_Generate_FullMethodName
	methodCallTool       = inferencev1.InferenceService_CallTool_FullMethodName
	methodStreamGenerate = inferencev1.InferenceService_StreamGenerate_FullMethodName
	methodIngest         = inferencev1.InferenceService_Ingest_FullMethodName
	methodChat           = inferencev1.InferenceService_Chat_FullMethodName

	// methodBarrier is not a method of the service: see stubServer.barrier.
	methodBarrier = "/inference.v1.InferenceService/TestBarrier"
)

// stubServer is an InferenceService whose handlers are its fields, in the
// style of grpc-go's internal/stubserver. A nil handler answers
// Unimplemented.
//
// Every RPC that reaches the server (every attempt of a retried call) is
// recorded as an arrival: its method, its 1-based number among the arrivals
// of that method, its incoming metadata and the time its headers were read.
// Arrivals are recorded by a tap handle, synchronously on the server
// transport's reader goroutine, before the handler runs: so arrivals are
// recorded in the order the client sent them, also for RPCs whose handler
// never runs (a deadline that had expired on arrival, say). A handler gets
// its RPC's arrival number with s.attempt(ctx) (for streams,
// s.attempt(stream.Context())) to script a behaviour per attempt.
type stubServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	GenerateF       func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error)
	CallToolF       func(ctx context.Context, req *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error)
	StreamGenerateF func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error
	IngestF         func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error
	ChatF           func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error

	// ServerOptions are added to the server's options (start adds its own
	// tap handle, so they must not contain grpc.InTapHandle).
	ServerOptions []grpc.ServerOption

	// Set by start.
	CC     *grpc.ClientConn
	Client inferencev1.InferenceServiceClient

	mu       sync.Mutex
	arrivals map[string][]arrival
}

// arrival is one RPC (one attempt) as the server saw it.
type arrival struct {
	Method  string
	Attempt int         // 1-based, among the arrivals of Method
	Time    time.Time   // when the server read the RPC's headers
	MD      metadata.MD // the incoming metadata (a copy)
}

type attemptKey struct{}

// start serves s on a bufconn listener and returns a client connected to it
// with clientOpts (after the bufconn dialer and insecure credentials). It
// registers a t.Cleanup that closes the client and stops the server.
func (s *stubServer) start(t testing.TB, clientOpts ...grpc.DialOption) inferencev1.InferenceServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(append(slices.Clone(s.ServerOptions), grpc.InTapHandle(s.tap))...)
	inferencev1.RegisterInferenceServiceServer(srv, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis) // returns nil after Stop
	}()

	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, clientOpts...)
	cc, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		srv.Stop()
		<-served
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-served
	})
	s.CC = cc
	s.Client = inferencev1.NewInferenceServiceClient(cc)
	return s.Client
}

// tap records an arrival and stores its number in the RPC's context.
func (s *stubServer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName == methodBarrier {
		return ctx, nil
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.arrivals == nil {
		s.arrivals = make(map[string][]arrival)
	}
	n := len(s.arrivals[info.FullMethodName]) + 1
	s.arrivals[info.FullMethodName] = append(s.arrivals[info.FullMethodName], arrival{
		Method:  info.FullMethodName,
		Attempt: n,
		Time:    now,
		MD:      info.Header.Copy(),
	})
	return context.WithValue(ctx, attemptKey{}, n), nil
}

// attempt returns the 1-based arrival number of the RPC whose server
// context is ctx, among the arrivals of its method (0 if ctx is not one).
func (s *stubServer) attempt(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

// calls returns the number of RPCs of method that reached the server.
func (s *stubServer) calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals[method])
}

// arrivalsOf returns the arrivals of method so far, oldest first.
func (s *stubServer) arrivalsOf(method string) []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.arrivals[method])
}

// times returns the arrival times of method, oldest first.
func (s *stubServer) times(method string) []time.Time {
	var ts []time.Time
	for _, a := range s.arrivalsOf(method) {
		ts = append(ts, a.Time)
	}
	return ts
}

// headers returns the values of metadata key in each arrival of method,
// oldest first (nil for an arrival without it).
func (s *stubServer) headers(method, key string) [][]string {
	var vs [][]string
	for _, a := range s.arrivalsOf(method) {
		vs = append(vs, a.MD.Get(key))
	}
	return vs
}

// barrier makes an RPC on s.CC and waits for its answer. When it returns,
// every RPC the client had put on the connection before has been recorded
// (the server reads a connection's streams in order and records each
// before it reads the next). Use it before counting arrivals after a call
// that returned without waiting for the server (the caller's deadline or
// cancellation), instead of sleeping.
func (s *stubServer) barrier(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.CC.Invoke(ctx, methodBarrier, &inferencev1.GenerateRequest{}, &inferencev1.GenerateResponse{}, retry.Disable())
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("barrier RPC: %v, want Unimplemented", err)
	}
}

// warm connects s.CC and returns once its connection is ready (an RPC made
// on it has been answered), so that a test's first attempt does not spend
// its time connecting.
func (s *stubServer) warm(t testing.TB) {
	t.Helper()
	s.barrier(t)
}

func (s *stubServer) Generate(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	if s.GenerateF == nil {
		return nil, status.Error(codes.Unimplemented, "stub: Generate not set")
	}
	return s.GenerateF(ctx, req)
}

func (s *stubServer) CallTool(ctx context.Context, req *inferencev1.CallToolRequest) (*inferencev1.CallToolResponse, error) {
	if s.CallToolF == nil {
		return nil, status.Error(codes.Unimplemented, "stub: CallTool not set")
	}
	return s.CallToolF(ctx, req)
}

func (s *stubServer) StreamGenerate(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	if s.StreamGenerateF == nil {
		return status.Error(codes.Unimplemented, "stub: StreamGenerate not set")
	}
	return s.StreamGenerateF(req, stream)
}

func (s *stubServer) Ingest(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
	if s.IngestF == nil {
		return status.Error(codes.Unimplemented, "stub: Ingest not set")
	}
	return s.IngestF(stream)
}

func (s *stubServer) Chat(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
	if s.ChatF == nil {
		return status.Error(codes.Unimplemented, "stub: Chat not set")
	}
	return s.ChatF(stream)
}

// --- failing statuses ---

// pushbackErr sets the attempt's grpc-retry-pushback-ms trailer to values
// (one header value each; two values make a repeated trailer) and returns
// a status error with code and msg. ctx is the handler's context (for
// streams, stream.Context()).
func pushbackErr(ctx context.Context, code codes.Code, msg string, values ...string) error {
	if err := setPushback(ctx, values...); err != nil {
		return err
	}
	return status.Error(code, msg)
}

// setPushback sets the attempt's grpc-retry-pushback-ms trailer to values,
// for a handler that builds its own error (one with details, say).
func setPushback(ctx context.Context, values ...string) error {
	md := metadata.MD{}
	for _, v := range values {
		md.Append(retry.PushbackTrailer, v)
	}
	if err := grpc.SetTrailer(ctx, md); err != nil {
		return status.Errorf(codes.Internal, "stub: SetTrailer: %v", err)
	}
	return nil
}

// detailsErr returns a status error with code, msg and details.
func detailsErr(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		return status.Errorf(codes.Internal, "stub: WithDetails: %v", err)
	}
	return st.Err()
}

// retryInfo is a google.rpc.RetryInfo detail asking for a wait of d.
func retryInfo(d time.Duration) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(d)}
}

// quotaFailure is a google.rpc.QuotaFailure detail: a spent quota.
func quotaFailure() *errdetails.QuotaFailure {
	return &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
		Subject:     "project:test",
		Description: "daily token quota exhausted",
	}}}
}

// retryInfoErr returns a status error with a RetryInfo detail of d.
func retryInfoErr(code codes.Code, msg string, d time.Duration) error {
	return detailsErr(code, msg, retryInfo(d))
}
