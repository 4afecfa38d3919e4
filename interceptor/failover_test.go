package interceptor

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/seed4f82f287/retry/gen/inference/v1"
)

// chainDecider hands out its routes in order, moving on after any failure
// that is not committed, and records what it is told.
type chainDecider struct {
	routes []Route
	skip   bool // Begin returns false

	mu        sync.Mutex
	next      int
	ended     []error
	committed []bool
	responded int
	done      []error
}

func (d *chainDecider) Begin(ctx context.Context, method string, _ *grpc.ClientConn, _ []grpc.CallOption, stream bool) *FailoverCall {
	if d.skip {
		return nil
	}
	return &FailoverCall{Method: method, Stream: stream}
}

func (d *chainDecider) Next(ctx context.Context, c *FailoverCall) (Route, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.committed); n > 0 && d.committed[n-1] || d.next >= len(d.routes) {
		if n := len(d.ended); n > 0 {
			return Route{}, d.ended[n-1]
		}
		return Route{}, status.Error(codes.Internal, "no route")
	}
	d.next++
	return d.routes[d.next-1], nil
}

func (d *chainDecider) Responded(c *FailoverCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.responded++
}

func (d *chainDecider) Ended(ctx context.Context, c *FailoverCall, err error, committed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = append(d.ended, err)
	d.committed = append(d.committed, committed)
}

func (d *chainDecider) Done(ctx context.Context, c *FailoverCall, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = append(d.done, err)
}

// fakeConn answers Invoke with err (filling the reply when err is nil) and
// NewStream with a fakeStream; it records the options of each call.
type fakeConn struct {
	err    error
	text   string
	stream *fakeStream

	mu      sync.Mutex
	reqs    []any
	opts    [][]grpc.CallOption
	replies []string // the reply's text when the call came
}

func (f *fakeConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, args)
	f.opts = append(f.opts, opts)
	f.replies = append(f.replies, reply.(*pb.GenerateResponse).GetText())
	f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	reply.(*pb.GenerateResponse).Text = f.text
	return nil
}

func (f *fakeConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	f.mu.Lock()
	f.opts = append(f.opts, opts)
	f.mu.Unlock()
	if f.stream == nil {
		return nil, f.err
	}
	return f.stream, nil
}

// fakeStream records what is sent and answers RecvMsg from recv: a
// message's text, or an error once the messages run out.
type fakeStream struct {
	grpc.ClientStream
	recv   []string
	err    error // after recv; io.EOF for success
	header metadata.MD

	mu     sync.Mutex
	sent   []string
	closed bool
}

func (s *fakeStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, m.(*pb.ChatRequest).GetText())
	return nil
}

func (s *fakeStream) CloseSend() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeStream) RecvMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recv) == 0 {
		return s.err
	}
	m.(*pb.ChatResponse).Text = s.recv[0]
	s.recv = s.recv[1:]
	return nil
}

func (s *fakeStream) Header() (metadata.MD, error) { return s.header, nil }
func (s *fakeStream) Trailer() metadata.MD         { return nil }
func (s *fakeStream) Context() context.Context     { return context.Background() }

func (s *fakeStream) got() ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...), s.closed
}

var chatDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func TestFailoverUnaryPlumbing(t *testing.T) {
	down := status.Error(codes.Unavailable, "down")
	fallback := &fakeConn{text: "fallback"}
	probe := []grpc.CallOption{grpc.WaitForReady(true)}
	d := &chainDecider{routes: []Route{
		{Opts: probe},
		{Conn: fallback, Rewrite: func(_ string, m any) any {
			return &pb.GenerateRequest{Prompt: "small:" + m.(*pb.GenerateRequest).GetPrompt()}
		}},
	}}
	var primaryOpts []grpc.CallOption
	invoker := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		primaryOpts = opts
		reply.(*pb.GenerateResponse).Text = "partial reply of a failed step"
		return down
	}
	var finished []error
	onFinish := grpc.OnFinish(func(err error) { finished = append(finished, err) })
	req := &pb.GenerateRequest{Prompt: "hi"}
	reply := new(pb.GenerateResponse)
	err := FailoverUnary(d)(context.Background(), "/s/m", req, reply, nil, invoker, grpc.MaxCallRecvMsgSize(1), onFinish)
	if err != nil || reply.GetText() != "fallback" {
		t.Fatalf("err %v, reply %q", err, reply.GetText())
	}
	if len(primaryOpts) != 2 || primaryOpts[1] != probe[0] {
		t.Errorf("primary's options %v: want the caller's (without OnFinish) then the route's", primaryOpts)
	}
	if len(fallback.opts) != 1 || len(fallback.opts[0]) != 1 {
		t.Errorf("fallback's options %v: want the caller's only", fallback.opts)
	}
	if r := fallback.reqs[0].(*pb.GenerateRequest); r.GetPrompt() != "small:hi" || req.GetPrompt() != "hi" {
		t.Errorf("fallback got %v, caller's request now %v", r, req)
	}
	if len(finished) != 1 || finished[0] != nil {
		t.Errorf("OnFinish calls %v, want one, nil", finished)
	}
	if fallback.replies[0] != "" {
		t.Errorf("the fallback's reply held %q from the failed step: not reset", fallback.replies[0])
	}
	if len(d.ended) != 2 || d.ended[0] != down || d.ended[1] != nil || len(d.done) != 1 || d.done[0] != nil {
		t.Errorf("ended %v, done %v", d.ended, d.done)
	}

	// A call the decider leaves alone goes through untouched.
	d = &chainDecider{skip: true}
	var passed []grpc.CallOption
	invoker = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
		passed = opts
		return down
	}
	err = FailoverUnary(d)(context.Background(), "/s/m", req, reply, nil, invoker, onFinish)
	if err != down || len(passed) != 1 || len(d.done) != 0 {
		t.Errorf("pass-through: err %v, opts %v, done %v", err, passed, d.done)
	}
}

// Messages sent before a step fails are replayed, rewritten, in order, with
// CloseSend, onto the next step; later sends go there too.
func TestFailoverStreamPlumbingReplay(t *testing.T) {
	first := &fakeStream{err: status.Error(codes.Unavailable, "down")}
	second := &fakeStream{recv: []string{"r1", "r2"}, err: io.EOF}
	d := &chainDecider{routes: []Route{
		{},
		{Conn: &fakeConn{stream: second}, Rewrite: func(_ string, m any) any {
			return &pb.ChatRequest{Text: strings.ToUpper(m.(*pb.ChatRequest).GetText())}
		}},
	}}
	streamer := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return first, nil
	}
	cs, err := FailoverStream(d, 1<<10)(context.Background(), chatDesc, nil, "/s/Chat", streamer)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b"} {
		if err := cs.SendMsg(&pb.ChatRequest{Text: m}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for {
		var m pb.ChatResponse
		err := cs.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetText())
		if len(got) == 1 {
			cs.SendMsg(&pb.ChatRequest{Text: "c"})
			cs.CloseSend()
		}
	}
	if strings.Join(got, ",") != "r1,r2" {
		t.Fatalf("received %v", got)
	}
	if sent, closed := first.got(); strings.Join(sent, ",") != "a,b" || closed {
		t.Errorf("first step got %v (closed %v)", sent, closed)
	}
	if sent, closed := second.got(); strings.Join(sent, ",") != "A,B,C" || !closed {
		t.Errorf("second step got %v (closed %v), want A,B replayed then C, and CloseSend", sent, closed)
	}
	if d.responded != 1 || len(d.ended) != 2 || d.committed[0] || !d.committed[1] || d.ended[1] != nil {
		t.Errorf("responded %d, ended %v, committed %v", d.responded, d.ended, d.committed)
	}
}

// After a response message, an error is the caller's: Ended hears it as
// committed and no other step opens.
func TestFailoverStreamPlumbingCommit(t *testing.T) {
	lost := status.Error(codes.Unavailable, "lost")
	first := &fakeStream{recv: []string{"r1"}, err: lost}
	other := &fakeConn{stream: &fakeStream{err: io.EOF}}
	d := &chainDecider{routes: []Route{{}, {Conn: other}}}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return first, nil
	}
	cs, err := FailoverStream(d, 1<<10)(context.Background(), chatDesc, nil, "/s/Chat", streamer)
	if err != nil {
		t.Fatal(err)
	}
	var m pb.ChatResponse
	if err := cs.RecvMsg(&m); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&m); err != lost {
		t.Fatalf("RecvMsg = %v, want %v", err, lost)
	}
	if len(other.opts) != 0 || len(d.committed) != 1 || !d.committed[0] || len(d.done) != 1 {
		t.Fatalf("opened %d other streams; committed %v; done %v", len(other.opts), d.committed, d.done)
	}
	if err := cs.SendMsg(&pb.ChatRequest{}); err != io.EOF {
		t.Fatalf("SendMsg after the end = %v, want io.EOF", err)
	}
}

// A unary-response stream that ends without its response failed.
func TestFailoverStreamPlumbingNoResponse(t *testing.T) {
	d := &chainDecider{routes: []Route{{}}}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return &fakeStream{err: io.EOF}, nil
	}
	cs, err := FailoverStream(d, 1<<10)(context.Background(), &grpc.StreamDesc{ClientStreams: true}, nil, "/s/Ingest", streamer)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(new(pb.ChatResponse)); status.Code(err) != codes.Unavailable {
		t.Fatalf("RecvMsg = %v, want Unavailable", err)
	}
}

// A stream that cannot be opened on any step fails at creation, with
// OnFinish run once.
func TestFailoverStreamPlumbingOpenFails(t *testing.T) {
	refused := status.Error(codes.Unavailable, "refused")
	d := &chainDecider{routes: []Route{{}, {Conn: &fakeConn{err: refused}}}}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return nil, refused
	}
	var finished []error
	_, err := FailoverStream(d, 1<<10)(context.Background(), chatDesc, nil, "/s/Chat", streamer, grpc.OnFinish(func(err error) { finished = append(finished, err) }))
	if !errors.Is(err, refused) || len(d.ended) != 2 || len(finished) != 1 || finished[0] != err {
		t.Fatalf("err %v, ended %v, finished %v", err, d.ended, finished)
	}
}

func TestSplitOnFinish(t *testing.T) {
	a := grpc.MaxCallRecvMsgSize(1)
	opts := []grpc.CallOption{a}
	if rest, fs := splitOnFinish(opts); &rest[0] != &opts[0] || fs != nil {
		t.Fatal("options without OnFinish were copied")
	}
	rest, fs := splitOnFinish([]grpc.CallOption{grpc.OnFinish(func(error) {}), a, grpc.OnFinish(func(error) {})})
	if len(rest) != 1 || rest[0] != a || len(fs) != 2 {
		t.Fatalf("rest %v, %d callbacks", rest, len(fs))
	}
	base := make([]grpc.CallOption, 1, 4)
	base[0] = a
	extra := withOpts(base, []grpc.CallOption{grpc.WaitForReady(true)})
	if len(extra) != 2 || len(base) != 1 || &extra[0] == &base[0] {
		t.Fatal("withOpts wrote into the caller's array")
	}
}
