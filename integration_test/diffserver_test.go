package integration_test

// The server side of the differential test: one InferenceService that plays
// every scripted call, whichever client made it, and records what each
// attempt of each call brought.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// diffCallHeader names the call an attempt belongs to: the script's seed
// and the client that runs it.
const diffCallHeader = "x-diff-call"

// diffServer serves the scripted calls registered with it.
type diffServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	mu    sync.Mutex
	calls map[string]*diffCall
}

// diffCall is the server's record of one call.
type diffCall struct {
	sc *diffScript

	mu       sync.Mutex
	arrivals []*diffArrival
	ended    int           // arrivals whose RPC has ended on the server
	changed  chan struct{} // closed (and replaced) whenever ended grows
	problems []string
}

// diffArrival is one attempt as the server saw it.
type diffArrival struct {
	Previous []string // grpc-previous-rpc-attempts
	Received []string // the caller's messages, in order; "EOF" for its CloseSend
}

func (a *diffArrival) String() string {
	return fmt.Sprintf("{previous %q, received %s}", a.Previous, shortList(a.Received))
}

// shortList prints messages, cutting each to 12 bytes.
func shortList(ms []string) string {
	short := make([]string, len(ms))
	for i, m := range ms {
		if len(m) > 12 {
			m = m[:12] + "…"
		}
		short[i] = m
	}
	return fmt.Sprintf("%q", short)
}

type diffAttemptKey struct{}

type diffAttemptRef struct {
	call *diffCall
	n    int // 1-based
}

func newDiffServer() *diffServer { return &diffServer{calls: make(map[string]*diffCall)} }

// options returns the server options that record arrivals and ends.
func (s *diffServer) options() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InTapHandle(s.tap), grpc.StatsHandler(diffStats{})}
}

// register makes the server play sc for the call id.
func (s *diffServer) register(id string, sc *diffScript) *diffCall {
	c := &diffCall{sc: sc, changed: make(chan struct{})}
	s.mu.Lock()
	s.calls[id] = c
	s.mu.Unlock()
	return c
}

func (s *diffServer) unregister(id string) {
	s.mu.Lock()
	delete(s.calls, id)
	s.mu.Unlock()
}

// tap records an arrival, in the order the client sent the RPCs.
func (s *diffServer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	ids := info.Header.Get(diffCallHeader)
	if len(ids) != 1 {
		return ctx, nil
	}
	s.mu.Lock()
	c := s.calls[ids[0]]
	s.mu.Unlock()
	if c == nil {
		return ctx, nil
	}
	c.mu.Lock()
	c.arrivals = append(c.arrivals, &diffArrival{Previous: info.Header.Get(retry.PreviousAttemptsHeader)})
	n := len(c.arrivals)
	c.mu.Unlock()
	return context.WithValue(ctx, diffAttemptKey{}, diffAttemptRef{c, n}), nil
}

// diffStats counts, per call, the RPCs that have ended on the server.
type diffStats struct{}

func (diffStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (diffStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (diffStats) HandleConn(context.Context, stats.ConnStats) {}
func (diffStats) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.End); !ok {
		return
	}
	if ref, ok := ctx.Value(diffAttemptKey{}).(diffAttemptRef); ok {
		c := ref.call
		c.mu.Lock()
		c.ended++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// quiesce waits until every arrival so far has ended on the server (the
// caller has made sure that every attempt has arrived), or until ctx ends.
func (c *diffCall) quiesce(ctx context.Context) error {
	for {
		c.mu.Lock()
		ended, arrived, changed := c.ended, len(c.arrivals), c.changed
		c.mu.Unlock()
		if ended >= arrived {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d attempts still running on the server", arrived-ended, arrived)
		}
	}
}

// record returns a copy of the arrivals and the problems found.
func (c *diffCall) record() ([]diffArrival, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	as := make([]diffArrival, len(c.arrivals))
	for i, a := range c.arrivals {
		as[i] = diffArrival{Previous: slices.Clone(a.Previous), Received: slices.Clone(a.Received)}
	}
	return as, slices.Clone(c.problems)
}

func (c *diffCall) problem(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.problems = append(c.problems, msg)
	c.mu.Unlock()
	return status.Error(codes.Internal, "script problem: "+msg)
}

func (c *diffCall) received(n int, m string) {
	c.mu.Lock()
	c.arrivals[n-1].Received = append(c.arrivals[n-1].Received, m)
	c.mu.Unlock()
}

// ref returns the call and attempt of the RPC whose context is ctx.
func (s *diffServer) ref(ctx context.Context) (diffAttemptRef, error) {
	ref, ok := ctx.Value(diffAttemptKey{}).(diffAttemptRef)
	if !ok {
		return ref, status.Error(codes.Internal, "script problem: an RPC of no registered call")
	}
	if ref.n > len(ref.call.sc.Attempts) {
		return ref, ref.call.problem("attempt %d, beyond the script's %d", ref.n, len(ref.call.sc.Attempts))
	}
	return ref, nil
}

// scriptedStatus is how attempt n of a script ends: its code, a message
// naming the attempt, and its details.
func scriptedStatus(a diffAttempt, n int) error {
	if a.Code == codes.OK {
		return nil
	}
	st := status.New(a.Code, scriptedMessage(a, n))
	var ds []protoadapt.MessageV1
	switch a.Detail {
	case retryInfoShort:
		ds = append(ds, &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)})
	case retryInfoLong:
		ds = append(ds, &errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	case retryInfoNegative:
		ds = append(ds, &errdetails.RetryInfo{RetryDelay: durationpb.New(-time.Second)})
	case retryInfoTwice:
		ri := &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)}
		ds = append(ds, ri, ri)
	case quotaFailureDetail:
		ds = append(ds, quotaFailure())
	}
	if len(ds) > 0 {
		var err error
		if st, err = st.WithDetails(ds...); err != nil {
			return status.Errorf(codes.Internal, "script problem: WithDetails: %v", err)
		}
	}
	return st.Err()
}

// scriptedMessage is the status message of attempt n.
func scriptedMessage(a diffAttempt, n int) string {
	if a.LimitText {
		return fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", 4000+n, 4000)
	}
	return fmt.Sprintf("attempt %d: %v", n, a.Code)
}

// scriptedTrailer is attempt n's trailer.
func scriptedTrailer(a diffAttempt, n int) metadata.MD {
	md := metadata.Pairs("x-attempt", strconv.Itoa(n))
	for _, v := range a.Pushback {
		md.Append(retry.PushbackTrailer, v)
	}
	return md
}

// scriptedHeader is attempt n's response header.
func scriptedHeader(n int) metadata.MD { return metadata.Pairs("x-header-attempt", strconv.Itoa(n)) }

// pause waits ms milliseconds, or until ctx ends.
func pause(ctx context.Context, ms int) {
	if ms == 0 {
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *diffServer) Generate(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	ref, err := s.ref(ctx)
	if err != nil {
		return nil, err
	}
	c, n := ref.call, ref.n
	a := c.sc.attempt(n)
	c.received(n, req.GetPrompt())
	c.received(n, "EOF")
	if a.Header {
		if err := grpc.SendHeader(ctx, scriptedHeader(n)); err != nil {
			return nil, err
		}
	}
	pause(ctx, a.DelayMs)
	if err := grpc.SetTrailer(ctx, scriptedTrailer(a, n)); err != nil {
		return nil, c.problem("attempt %d: SetTrailer: %v", n, err)
	}
	if a.Code != codes.OK {
		return nil, scriptedStatus(a, n)
	}
	return &inferencev1.GenerateResponse{Text: responseText(n, 0, a.BigResponses)}, nil
}

// diffSide is an attempt's server stream, whatever its shape.
type diffSide interface {
	Context() context.Context
	SendHeader(metadata.MD) error
	SetTrailer(metadata.MD)
	recv() (string, error)
	send(n, i int, big bool) error
}

func (s *diffServer) StreamGenerate(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	return s.serveStream(&sgDiffSide{req: req, ServerStreamingServer: stream})
}

func (s *diffServer) Ingest(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
	return s.serveStream(ingestDiffSide{stream})
}

func (s *diffServer) Chat(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
	return s.serveStream(chatDiffSide{stream})
}

// serveStream plays an attempt's script on a stream. A failure to read or
// send is a problem of the script, unless the caller has ended the
// attempt (which it does on errors of its own).
func (s *diffServer) serveStream(side diffSide) error {
	ctx := side.Context()
	ref, err := s.ref(ctx)
	if err != nil {
		return err
	}
	c, n := ref.call, ref.n
	sc := c.sc
	a := sc.attempt(n)
	// With HeaderFirst the caller sends nothing, CloseSend included,
	// before the server has sent headers or ended the attempt.
	read, eof := 0, sc.HeaderFirst
	readUpTo := func(k int) error {
		for ; read < k; read++ {
			m, err := side.recv()
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				return c.problem("attempt %d: recv %d: %v", n, read, err)
			}
			c.received(n, m)
		}
		if k == len(sc.Sends) && sc.CloseSend && !eof {
			if m, err := side.recv(); err != io.EOF {
				if ctx.Err() != nil {
					return err
				}
				return c.problem("attempt %d: recv %q, %v; want the caller's CloseSend", n, m, err)
			}
			c.received(n, "EOF")
			eof = true
		}
		return nil
	}
	if err := readUpTo(a.ReadFirst); err != nil {
		return err
	}
	if a.Header {
		if err := side.SendHeader(scriptedHeader(n)); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return c.problem("attempt %d: SendHeader: %v", n, err)
		}
	}
	for i := range a.Responses {
		if err := side.send(n, i, a.BigResponses); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return c.problem("attempt %d: send %d: %v", n, i, err)
		}
	}
	if a.ReadRest {
		eof = false
		if err := readUpTo(len(sc.Sends)); err != nil {
			return err
		}
	}
	pause(ctx, a.DelayMs)
	side.SetTrailer(scriptedTrailer(a, n))
	return scriptedStatus(a, n)
}

type sgDiffSide struct {
	req *inferencev1.StreamGenerateRequest
	grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]
	read int
}

// recv returns the request, then the caller's CloseSend (which comes with
// it).
func (s *sgDiffSide) recv() (string, error) {
	s.read++
	if s.read == 1 {
		return s.req.GetPrompt(), nil
	}
	return "", io.EOF
}

func (s *sgDiffSide) send(n, i int, big bool) error {
	return s.Send(&inferencev1.StreamGenerateResponse{Token: responseText(n, i, big), Index: int32(i)})
}

type ingestDiffSide struct {
	grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]
}

func (s ingestDiffSide) recv() (string, error) {
	m, err := s.Recv()
	return string(m.GetChunk()), err
}

func (s ingestDiffSide) send(n, _ int, _ bool) error {
	return s.SendMsg(&inferencev1.IngestResponse{Chunks: ingestChunks(n)})
}

type chatDiffSide struct {
	grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]
}

func (s chatDiffSide) recv() (string, error) {
	m, err := s.Recv()
	return m.GetText(), err
}

func (s chatDiffSide) send(n, i int, big bool) error {
	return s.Send(&inferencev1.ChatResponse{Text: responseText(n, i, big)})
}

// --- the messages of each kind ---

// requestMessage is the caller's message with text t.
func requestMessage(k diffKind, t string) proto.Message {
	switch k {
	case diffUnary:
		return &inferencev1.GenerateRequest{Prompt: t}
	case diffServerStream:
		return &inferencev1.StreamGenerateRequest{Prompt: t}
	case diffClientStream:
		return &inferencev1.IngestRequest{Chunk: []byte(t)}
	}
	return &inferencev1.ChatRequest{Text: t}
}

// newResponse is an empty response message of kind k.
func newResponse(k diffKind) proto.Message {
	switch k {
	case diffUnary:
		return new(inferencev1.GenerateResponse)
	case diffServerStream:
		return new(inferencev1.StreamGenerateResponse)
	case diffClientStream:
		return new(inferencev1.IngestResponse)
	}
	return new(inferencev1.ChatResponse)
}

// responseString is what the caller records of a response.
func responseString(m proto.Message) string {
	switch m := m.(type) {
	case *inferencev1.GenerateResponse:
		return m.GetText()
	case *inferencev1.StreamGenerateResponse:
		return m.GetToken()
	case *inferencev1.IngestResponse:
		return strconv.FormatInt(m.GetChunks(), 10)
	case *inferencev1.ChatResponse:
		return m.GetText()
	}
	return fmt.Sprintf("%T", m)
}
