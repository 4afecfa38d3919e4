package integration_test

// Helpers of stream_test.go: the three stream shapes of the service behind
// one face, and a small script language for gRFC A6 scenarios in the style
// of grpc-go's TestRetryStreaming (test/retry_test.go): a script of server
// operations for each attempt and one script of client operations.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// --- policy, client, errors ---

// streamPolicy retries quickly and exactly (1ms doubling to 10ms, no
// jitter), up to 4 attempts, without a retry budget.
func streamPolicy() retry.Policy {
	return retry.Policy{
		MaxAttempts:    4,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
	}
}

// dialStream starts s and returns a client whose streams go through
// retry.Stream(p), with gRPC's own retries off.
func dialStream(t *testing.T, s *stubServer, p retry.Policy, opts ...grpc.DialOption) inferencev1.InferenceServiceClient {
	t.Helper()
	return s.start(t, append([]grpc.DialOption{grpc.WithChainStreamInterceptor(retry.Stream(p)), grpc.WithDisableRetry()}, opts...)...)
}

// streamCtx returns a context with a timeout of d, canceled at cleanup.
func streamCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkStop reports whether err has code, and is a *retry.Error with reason
// after attempts attempts; if not, it says why.
func checkStop(err error, code codes.Code, reason retry.StopReason, attempts int) error {
	if got := status.Code(err); got != code {
		return fmt.Errorf("status.Code(err) = %v, want %v (err: %v)", got, code, err)
	}
	var e *retry.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("error %v (%T) is not a *retry.Error", err, err)
	}
	if e.Reason != reason || e.Attempts != attempts {
		return fmt.Errorf("Reason %q after %d attempt(s), want %q after %d (err: %v)", e.Reason, e.Attempts, reason, attempts, err)
	}
	return nil
}

// wantStreamStop fails t unless checkStop(err, ...) holds.
func wantStreamStop(t *testing.T, err error, code codes.Code, reason retry.StopReason, attempts int) {
	t.Helper()
	if e := checkStop(err, code, reason, attempts); e != nil {
		t.Fatal(e)
	}
}

// wantArrivals fails t unless method reached the server n times.
func wantArrivals(t *testing.T, s *stubServer, method string, n int) {
	t.Helper()
	if got := s.calls(method); got != n {
		t.Fatalf("server saw %d attempt(s) of %s, want %d", got, method, n)
	}
}

// checkNoLeaks verifies, when t ends (after the cleanups registered after
// it, so after the stub server stopped), that t left no goroutine behind.
// Call it first in a test that is not parallel.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// --- server-streaming tokens ---

func tokenText(prompt string, i int) string { return fmt.Sprintf("%s-%d", prompt, i) }

// wantTokenList is tokens from to to (excluded) of prompt.
func wantTokenList(prompt string, from, to int) []string {
	var ts []string
	for i := from; i < to; i++ {
		ts = append(ts, tokenText(prompt, i))
	}
	return ts
}

// sendTokens sends tokens from to to (excluded) of prompt.
func sendTokens(stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], prompt string, from, to int) error {
	for i := from; i < to; i++ {
		if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: tokenText(prompt, i), Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

// recvTokens reads stream to its end: the tokens received, and the final
// error (nil for a clean end).
func recvTokens(stream grpc.ServerStreamingClient[inferencev1.StreamGenerateResponse]) ([]string, error) {
	var got []string
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m.GetToken())
	}
}

// --- the three stream shapes behind one face ---

// streamKind is a stream shape of the service, by its method.
type streamKind int

const (
	serverStreaming streamKind = iota // StreamGenerate: one request, many responses
	clientStreaming                   // Ingest: many requests, one response
	bidiStreaming                     // Chat: many of both
)

var allKinds = []streamKind{serverStreaming, clientStreaming, bidiStreaming}

func (k streamKind) String() string {
	switch k {
	case serverStreaming:
		return "StreamGenerate"
	case clientStreaming:
		return "Ingest"
	}
	return "Chat"
}

func (k streamKind) method() string {
	switch k {
	case serverStreaming:
		return methodStreamGenerate
	case clientStreaming:
		return methodIngest
	}
	return methodChat
}

// Requests are strings (StreamGenerate's prompt, Ingest's chunk, Chat's
// text); responses are numbers (StreamGenerate's token and index, Ingest's
// chunk count, Chat's text).

// serverSide is an attempt's server stream, whatever its shape.
type serverSide interface {
	Context() context.Context
	SendHeader(metadata.MD) error
	// recv returns the next client message, io.EOF after CloseSend.
	recv() (string, error)
	// send sends response n. On Ingest it is the one response and ends
	// what the handler may send.
	send(n int) error
}

type sgServerSide struct {
	req    *inferencev1.StreamGenerateRequest
	stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]
	read   bool
}

func (s *sgServerSide) Context() context.Context        { return s.stream.Context() }
func (s *sgServerSide) SendHeader(md metadata.MD) error { return s.stream.SendHeader(md) }

// recv returns the prompt, then io.EOF: the request and CloseSend come
// together.
func (s *sgServerSide) recv() (string, error) {
	if s.read {
		return "", io.EOF
	}
	s.read = true
	return s.req.GetPrompt(), nil
}

func (s *sgServerSide) send(n int) error {
	return s.stream.Send(&inferencev1.StreamGenerateResponse{Token: strconv.Itoa(n), Index: int32(n)})
}

type ingestServerSide struct {
	stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]
}

func (s ingestServerSide) Context() context.Context        { return s.stream.Context() }
func (s ingestServerSide) SendHeader(md metadata.MD) error { return s.stream.SendHeader(md) }

func (s ingestServerSide) recv() (string, error) {
	m, err := s.stream.Recv()
	return string(m.GetChunk()), err
}

func (s ingestServerSide) send(n int) error {
	return s.stream.SendAndClose(&inferencev1.IngestResponse{Chunks: int64(n)})
}

type chatServerSide struct {
	stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]
}

func (s chatServerSide) Context() context.Context        { return s.stream.Context() }
func (s chatServerSide) SendHeader(md metadata.MD) error { return s.stream.SendHeader(md) }

func (s chatServerSide) recv() (string, error) {
	m, err := s.stream.Recv()
	return m.GetText(), err
}

func (s chatServerSide) send(n int) error {
	return s.stream.Send(&inferencev1.ChatResponse{Text: strconv.Itoa(n)})
}

// handleStreams makes s answer StreamGenerate, Ingest and Chat with h.
func handleStreams(s *stubServer, h func(serverSide) error) {
	s.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		return h(&sgServerSide{req: req, stream: stream})
	}
	s.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
		return h(ingestServerSide{stream})
	}
	s.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		return h(chatServerSide{stream})
	}
}

// clientSide is the caller's stream, whatever its shape.
type clientSide interface {
	send(m string) error
	closeSend() error
	// recv returns the next response.
	recv() (int, error)
	header() (metadata.MD, error)
}

// openClientSide opens a stream of kind k. StreamGenerate opens on the
// first send, which is its one request (followed by CloseSend).
func openClientSide(ctx context.Context, k streamKind, c inferencev1.InferenceServiceClient) (clientSide, error) {
	switch k {
	case serverStreaming:
		return &sgClientSide{ctx: ctx, c: c}, nil
	case clientStreaming:
		st, err := c.Ingest(ctx)
		return ingestClientSide{st}, err
	}
	st, err := c.Chat(ctx)
	return chatClientSide{st}, err
}

type sgClientSide struct {
	ctx    context.Context
	c      inferencev1.InferenceServiceClient
	stream grpc.ServerStreamingClient[inferencev1.StreamGenerateResponse]
}

func (s *sgClientSide) send(m string) error {
	if s.stream != nil {
		return errors.New("test bug: StreamGenerate takes one request")
	}
	st, err := s.c.StreamGenerate(s.ctx, &inferencev1.StreamGenerateRequest{Prompt: m})
	if err != nil {
		return err
	}
	s.stream = st
	return nil
}

func (s *sgClientSide) closeSend() error { return nil } // done by StreamGenerate

func (s *sgClientSide) recv() (int, error) {
	if s.stream == nil {
		return 0, errors.New("test bug: StreamGenerate not opened (no send)")
	}
	m, err := s.stream.Recv()
	return int(m.GetIndex()), err
}

func (s *sgClientSide) header() (metadata.MD, error) {
	if s.stream == nil {
		return nil, errors.New("test bug: StreamGenerate not opened (no send)")
	}
	return s.stream.Header()
}

type ingestClientSide struct {
	stream grpc.ClientStreamingClient[inferencev1.IngestRequest, inferencev1.IngestResponse]
}

func (s ingestClientSide) send(m string) error {
	return s.stream.Send(&inferencev1.IngestRequest{Chunk: []byte(m)})
}
func (s ingestClientSide) closeSend() error { return s.stream.CloseSend() }
func (s ingestClientSide) recv() (int, error) {
	m := new(inferencev1.IngestResponse)
	err := s.stream.RecvMsg(m)
	return int(m.GetChunks()), err
}
func (s ingestClientSide) header() (metadata.MD, error) { return s.stream.Header() }

type chatClientSide struct {
	stream grpc.BidiStreamingClient[inferencev1.ChatRequest, inferencev1.ChatResponse]
}

func (s chatClientSide) send(m string) error {
	return s.stream.Send(&inferencev1.ChatRequest{Text: m})
}
func (s chatClientSide) closeSend() error { return s.stream.CloseSend() }
func (s chatClientSide) recv() (int, error) {
	m, err := s.stream.Recv()
	n, _ := strconv.Atoi(m.GetText())
	return n, err
}
func (s chatClientSide) header() (metadata.MD, error) { return s.stream.Header() }

// --- scenario scripts ---

// scenario is a gRFC A6 case run on each of its kinds: the server runs
// server[n-1] on attempt n (so len(server) is the number of attempts the
// case expects), the caller runs client.
type scenario struct {
	name   string
	kinds  []streamKind
	policy func(*retry.Policy) // changes to streamPolicy(), if any
	server [][]sOp
	client []cOp
	// minGap, if set, is the least time between the arrivals of attempts 1
	// and 2 at the server.
	minGap time.Duration
}

// scriptState is what a scenario's attempts share.
type scriptState struct {
	mu       sync.Mutex
	problems []string
	finished []int // attempts whose script ran to its end
	signals  map[string]chan struct{}
}

func (st *scriptState) problem(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st.mu.Lock()
	st.problems = append(st.problems, msg)
	st.mu.Unlock()
	return status.Error(codes.Internal, "script: "+msg)
}

func (st *scriptState) report() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return fmt.Sprintf("server problems %q, attempts that ran their script to the end %v", st.problems, st.finished)
}

func (st *scriptState) signal(name string) chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.signals == nil {
		st.signals = make(map[string]chan struct{})
	}
	ch, ok := st.signals[name]
	if !ok {
		ch = make(chan struct{})
		st.signals[name] = ch
	}
	return ch
}

// attemptRun is one attempt running its script.
type attemptRun struct {
	n     int // the attempt, from 1
	st    serverSide
	state *scriptState
}

// sOp is a server operation; an error ends the attempt with that status.
type sOp func(r *attemptRun) error

// sReq reads the next client message, which must be want.
func sReq(want string) sOp {
	return func(r *attemptRun) error {
		got, err := r.st.recv()
		if err != nil || got != want {
			return r.state.problem("attempt %d: recv() = %.20q, %v; want %.20q", r.n, got, err, want)
		}
		return nil
	}
}

// sCloseSend reads the client's CloseSend (io.EOF).
func sCloseSend() sOp {
	return func(r *attemptRun) error {
		if got, err := r.st.recv(); err != io.EOF {
			return r.state.problem("attempt %d: recv() = %.20q, %v; want io.EOF", r.n, got, err)
		}
		return nil
	}
}

// sRes sends response n.
func sRes(n int) sOp {
	return func(r *attemptRun) error {
		if err := r.st.send(n); err != nil {
			return r.state.problem("attempt %d: send(%d) = %v", r.n, n, err)
		}
		return nil
	}
}

// sHdr sends response headers x-stage: headers.
func sHdr() sOp {
	return func(r *attemptRun) error {
		if err := r.st.SendHeader(metadata.Pairs("x-stage", "headers")); err != nil {
			return r.state.problem("attempt %d: SendHeader: %v", r.n, err)
		}
		return nil
	}
}

// sAttempts checks the grpc-previous-rpc-attempts header: absent for n = 0,
// else n.
func sAttempts(n int) sOp {
	return func(r *attemptRun) error {
		md, _ := metadata.FromIncomingContext(r.st.Context())
		got := md.Get(retry.PreviousAttemptsHeader)
		if n == 0 && len(got) != 0 || n > 0 && !slices.Equal(got, []string{strconv.Itoa(n)}) {
			return r.state.problem("attempt %d: %s = %q, want %d (0: absent)", r.n, retry.PreviousAttemptsHeader, got, n)
		}
		return nil
	}
}

// sPushback sets the attempt's grpc-retry-pushback-ms trailer to values.
func sPushback(values ...string) sOp {
	return func(r *attemptRun) error {
		if err := setPushback(r.st.Context(), values...); err != nil {
			return r.state.problem("attempt %d: %v", r.n, err)
		}
		return nil
	}
}

// sSignal closes the scenario's channel name (see cWait).
func sSignal(name string) sOp {
	return func(r *attemptRun) error {
		close(r.state.signal(name))
		return nil
	}
}

// sErr ends the attempt with code; the message names the attempt (see
// cErr).
func sErr(code codes.Code) sOp {
	return func(r *attemptRun) error { return status.Error(code, scriptedMsg(code, r.n)) }
}

func scriptedMsg(code codes.Code, attempt int) string {
	return fmt.Sprintf("scripted %v on attempt %d", code, attempt)
}

// clientRun is the caller running its script.
type clientRun struct {
	ctx   context.Context
	cs    clientSide
	state *scriptState
}

// cOp is a caller operation; an error fails the test.
type cOp func(r *clientRun) error

func cReq(m string) cOp {
	return func(r *clientRun) error {
		if err := r.cs.send(m); err != nil {
			return fmt.Errorf("send(%.20q) = %v, want nil", m, err)
		}
		return nil
	}
}

func cCloseSend() cOp {
	return func(r *clientRun) error {
		if err := r.cs.closeSend(); err != nil {
			return fmt.Errorf("CloseSend() = %v, want nil", err)
		}
		return nil
	}
}

// cRes receives response n.
func cRes(n int) cOp {
	return func(r *clientRun) error {
		if got, err := r.cs.recv(); err != nil || got != n {
			return fmt.Errorf("recv() = %d, %v; want %d, nil", got, err, n)
		}
		return nil
	}
}

// cEOF receives the clean end of the stream.
func cEOF() cOp {
	return func(r *clientRun) error {
		if got, err := r.cs.recv(); err != io.EOF {
			return fmt.Errorf("recv() = %d, %v; want io.EOF", got, err)
		}
		return nil
	}
}

// cErr receives the end of the stream: the scripted failure code of the
// last attempt (attempts), unchanged, as a *retry.Error with reason.
func cErr(code codes.Code, reason retry.StopReason, attempts int) cOp {
	return func(r *clientRun) error {
		_, err := r.cs.recv()
		if err := checkStop(err, code, reason, attempts); err != nil {
			return fmt.Errorf("recv(): %v", err)
		}
		if got, want := status.Convert(err).Message(), scriptedMsg(code, attempts); got != want {
			return fmt.Errorf("recv(): status message %q, want %q (the last attempt's status)", got, want)
		}
		return nil
	}
}

// cHdr calls Header, whose x-stage must be want ("" for none).
func cHdr(want string) cOp {
	return func(r *clientRun) error {
		md, err := r.cs.header()
		if err != nil {
			return fmt.Errorf("Header() = %v, %v; want nil error", md, err)
		}
		if got := md.Get("x-stage"); want == "" && len(got) != 0 || want != "" && !slices.Equal(got, []string{want}) {
			return fmt.Errorf("Header() x-stage = %q, want %q", got, want)
		}
		return nil
	}
}

// cWait waits for the server's sSignal(name).
func cWait(name string) cOp {
	return func(r *clientRun) error {
		select {
		case <-r.state.signal(name):
			return nil
		case <-r.ctx.Done():
			return fmt.Errorf("waiting for %q: %v", name, r.ctx.Err())
		}
	}
}

// run runs sc on kind k.
func (sc scenario) run(t *testing.T, k streamKind) {
	s := &stubServer{}
	state := &scriptState{}
	handleStreams(s, func(st serverSide) error {
		n := s.attempt(st.Context())
		if n < 1 || n > len(sc.server) {
			return state.problem("unexpected attempt %d (the case expects %d)", n, len(sc.server))
		}
		r := &attemptRun{n: n, st: st, state: state}
		script := sc.server[n-1]
		for i, op := range script {
			if err := op(r); err != nil {
				if i == len(script)-1 {
					state.mu.Lock()
					state.finished = append(state.finished, n)
					state.mu.Unlock()
				}
				return err
			}
		}
		state.mu.Lock()
		state.finished = append(state.finished, n)
		state.mu.Unlock()
		return nil
	})
	p := streamPolicy()
	if sc.policy != nil {
		sc.policy(&p)
	}
	c := dialStream(t, s, p)
	ctx := streamCtx(t, 10*time.Second)
	cs, err := openClientSide(ctx, k, c)
	if err != nil {
		t.Fatalf("opening the stream: %v", err)
	}
	r := &clientRun{ctx: ctx, cs: cs, state: state}
	for i, op := range sc.client {
		if err := op(r); err != nil {
			t.Fatalf("client op %d: %v\n%s", i, err, state.report())
		}
	}

	// The caller saw the end of the stream, which the server sends after
	// the handler returns: every attempt has arrived and finished.
	state.mu.Lock()
	problems, finished := slices.Clone(state.problems), slices.Clone(state.finished)
	state.mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("server problems: %q", problems)
	}
	slices.Sort(finished)
	var want []int
	for n := 1; n <= len(sc.server); n++ {
		want = append(want, n)
	}
	if !slices.Equal(finished, want) {
		t.Errorf("attempts that ran their script to the end: %v, want %v", finished, want)
	}
	wantArrivals(t, s, k.method(), len(sc.server))
	for i, v := range s.headers(k.method(), retry.PreviousAttemptsHeader) {
		if i == 0 && len(v) != 0 || i > 0 && !slices.Equal(v, []string{strconv.Itoa(i)}) {
			t.Errorf("attempt %d: %s = %q, want %d (0: absent)", i+1, retry.PreviousAttemptsHeader, v, i)
		}
	}
	if sc.minGap > 0 {
		ts := s.times(k.method())
		if len(ts) < 2 {
			t.Fatalf("%d arrival(s), want at least 2", len(ts))
		}
		if gap := ts[1].Sub(ts[0]); gap < sc.minGap {
			t.Errorf("attempt 2 arrived %v after attempt 1, want at least %v", gap, sc.minGap)
		}
	}
}
