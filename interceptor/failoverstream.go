package interceptor

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// FailoverStream returns a stream client interceptor that runs each stream
// along the fallback chain that d decides, moving to the next step only
// while the stream has not committed.
//
// Until it commits, every message the caller sends (and its CloseSend) is
// kept, and when a step fails and d names another, a stream is opened there
// and they are replayed onto it in order, each through the step's Rewrite;
// the caller sees one stream. The stream commits when the first of these
// happens: a response message arrives; the caller calls Header (and gets
// headers), Trailer or Context; or the kept messages would exceed
// maxReplayBytes (counted as the retry buffer is: serialized size plus the
// 5-byte prefix; a message that is not a protobuf message cannot be
// measured and commits). After commit an error goes to the caller through
// Ended(committed) and Next.
//
// A replay runs on its own goroutine while the caller keeps receiving (a
// server that answers each message as it reads it is never blocked by a
// client still replaying); the caller's later sends wait for it, which
// keeps them in order. grpc.OnFinish options run once, when the stream
// ends or its context does. As with any gRPC stream, the caller must read
// until RecvMsg returns an error, or cancel the context.
func FailoverStream(d FailoverDecider, maxReplayBytes int) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		c := d.Begin(ctx, method, cc, opts, true)
		if c == nil {
			return streamer(ctx, desc, cc, method, opts...)
		}
		s := &failoverStream{d: d, call: c, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, maxReplay: maxReplayBytes}
		s.opts, s.onFinish = splitOnFinish(opts)
		if len(s.onFinish) > 0 {
			// Each step tells the stream when it ends, so that the caller's
			// OnFinish runs even if nobody receives the end.
			s.opts = append(s.opts[:len(s.opts):len(s.opts)], grpc.OnFinish(s.stepFinished))
		}
		s.sendMu.Lock()
		if err := s.openNext(); err != nil {
			return nil, err
		}
		return s, nil
	}
}

// failoverStream is the grpc.ClientStream the caller holds: one logical
// stream over a succession of steps.
//
// Locks, always taken in this order: recvMu serialises receiving and the
// decisions about a step's end; sendMu serialises sending on a step (the
// caller's SendMsg and CloseSend, and a replay, whose goroutine holds it
// until the replay is done); mu guards the fields below it and is never
// held while blocking.
type failoverStream struct {
	d         FailoverDecider
	ctx       context.Context
	desc      *grpc.StreamDesc
	cc        *grpc.ClientConn
	method    string
	streamer  grpc.Streamer
	opts      []grpc.CallOption
	onFinish  []func(error)
	maxReplay int
	call      *FailoverCall
	finished  atomic.Bool

	recvMu sync.Mutex
	sendMu sync.Mutex

	mu        sync.Mutex
	cur       grpc.ClientStream
	rewrite   func(string, any) any
	sent      []any // messages sent before commit, for replay
	sentBytes int
	closeSent bool
	committed bool
	responded bool
	done      bool
	final     error // once done: io.EOF for success
}

// openNext asks d for the next step and opens it, until one opens or d
// ends the call. The caller holds sendMu: openNext releases it, or hands it
// to the replay goroutine.
func (s *failoverStream) openNext() error {
	for {
		r, final := s.d.Next(s.ctx, s.call)
		if final != nil {
			s.sendMu.Unlock()
			s.end(final)
			return final
		}
		opts := withOpts(s.opts, r.Opts)
		var cs grpc.ClientStream
		var err error
		if r.Conn == nil {
			cs, err = s.streamer(s.ctx, s.desc, s.cc, s.method, opts...)
		} else {
			cs, err = r.Conn.NewStream(s.ctx, s.desc, s.method, opts...)
		}
		if err != nil {
			s.d.Ended(s.ctx, s.call, err, false)
			continue
		}
		s.mu.Lock()
		s.cur, s.rewrite = cs, r.Rewrite
		var msgs []any
		if len(s.sent) > 0 {
			msgs = slices.Clone(s.sent) // commit may drop s.sent while the replay runs
		}
		closeSent := s.closeSent
		s.mu.Unlock()
		if len(msgs) == 0 && !closeSent {
			s.sendMu.Unlock()
			return nil
		}
		go s.replay(cs, r.Rewrite, msgs, closeSent)
		return nil
	}
}

// replay sends the kept messages (and CloseSend) on a new step's stream,
// then releases sendMu, which openNext handed over.
func (s *failoverStream) replay(cs grpc.ClientStream, rw func(string, any) any, msgs []any, closeSend bool) {
	defer s.sendMu.Unlock()
	for _, m := range msgs {
		if err := cs.SendMsg(rewrite(rw, s.method, m)); err != nil {
			return // the step is over: RecvMsg learns how
		}
	}
	if closeSend {
		cs.CloseSend()
	}
}

// commitLocked commits the stream to its current step and drops the kept
// messages. The caller holds mu.
func (s *failoverStream) commitLocked() {
	s.committed = true
	clear(s.sent)
	s.sent = nil
}

// end records the call's outcome (io.EOF for success) and tells d, once.
func (s *failoverStream) end(outcome error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	s.final = outcome
	clear(s.sent)
	s.sent = nil
	s.mu.Unlock()
	if outcome == io.EOF {
		outcome = nil
	}
	s.d.Done(s.ctx, s.call, outcome)
	s.finish(outcome)
}

// finish runs the caller's OnFinish callbacks, once.
func (s *failoverStream) finish(err error) {
	if s.finished.CompareAndSwap(false, true) {
		for _, f := range s.onFinish {
			f(err)
		}
	}
}

// stepFinished is every step's grpc.OnFinish: when the caller's context has
// ended, the call is over even if nobody receives; other ends are decided
// by the receiving side.
func (s *failoverStream) stepFinished(err error) {
	if s.ctx.Err() != nil {
		s.finish(err)
	}
}

func (s *failoverStream) SendMsg(m any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return io.EOF // the call is over: RecvMsg gives its status
	}
	kept := false
	if !s.committed && !s.closeSent {
		size := messageSize(m)
		if size < 0 || s.sentBytes+size > s.maxReplay {
			s.commitLocked()
		} else {
			s.sent = append(s.sent, m)
			s.sentBytes += size
			kept = true
		}
	}
	cs, rw := s.cur, s.rewrite
	s.mu.Unlock()
	err := cs.SendMsg(rewrite(rw, s.method, m))
	if err == io.EOF && kept {
		return nil // the step ended: RecvMsg finds out how, and replays this message if it moves on
	}
	return err
}

func (s *failoverStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.closeSent = true
	cs := s.cur
	s.mu.Unlock()
	return cs.CloseSend()
}

func (s *failoverStream) RecvMsg(m any) error {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	for {
		s.mu.Lock()
		if s.done {
			final := s.final
			s.mu.Unlock()
			return final
		}
		cs := s.cur
		s.mu.Unlock()
		err := cs.RecvMsg(m)
		if err == nil {
			s.mu.Lock()
			first := !s.responded
			s.responded = true
			s.commitLocked()
			s.mu.Unlock()
			if first {
				s.d.Responded(s.call)
			}
			if !s.desc.ServerStreams {
				// The one response of a unary-response stream arrived, and
				// gRPC has read its OK status.
				s.d.Ended(s.ctx, s.call, nil, true)
				s.end(io.EOF)
			}
			return nil
		}
		if err = s.stepEnded(err); err != nil {
			return err
		}
	}
}

// stepEnded handles the end (err) of the current step, as RecvMsg or Header
// saw it. It returns nil when another step is in place, and otherwise the
// call's final error (io.EOF for success). The caller holds recvMu.
func (s *failoverStream) stepEnded(err error) error {
	s.mu.Lock()
	committed, responded := s.committed, s.responded
	s.mu.Unlock()
	if err == io.EOF {
		if s.desc.ServerStreams || responded {
			s.d.Ended(s.ctx, s.call, nil, committed)
			s.end(io.EOF)
			return io.EOF
		}
		// A unary-response stream must end with its response: one that
		// ends without it failed (as the retry interceptor sees it too).
		err = errNoResponse
	}
	s.d.Ended(s.ctx, s.call, err, committed)
	s.sendMu.Lock()
	return s.openNext()
}

var errNoResponse = status.Error(codes.Unavailable, "retry: stream ended without its response message")

// Header returns the response headers of the current step, waiting for
// them; headers commit the stream. If the step ends without headers,
// Header handles its end as RecvMsg would (moving to the next step, whose
// headers it then waits for), or, when the call is over, returns nil
// headers and no error (RecvMsg then returns the call's error), as
// grpc-go's streams do.
func (s *failoverStream) Header() (metadata.MD, error) {
	for {
		s.mu.Lock()
		done, cs, committed := s.done, s.cur, s.committed
		s.mu.Unlock()
		if done {
			return nil, nil
		}
		md, err := cs.Header()
		if md != nil || committed {
			s.mu.Lock()
			if s.cur == cs && md != nil {
				s.commitLocked()
			}
			s.mu.Unlock()
			return md, err
		}
		// The step ended without headers. Unless the receiving side has
		// handled that already, find out how it ended.
		s.recvMu.Lock()
		s.mu.Lock()
		mine := s.cur == cs && !s.done
		s.mu.Unlock()
		if mine {
			// A stream without headers has no message either: RecvMsg
			// returns its status at once.
			if rerr := cs.RecvMsg(new(emptypb.Empty)); rerr != nil {
				s.stepEnded(rerr)
			}
		}
		s.recvMu.Unlock()
	}
}

// committedStream commits the stream and returns its current step's stream.
func (s *failoverStream) committedStream() grpc.ClientStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitLocked()
	return s.cur
}

// Trailer commits the stream and returns the current step's trailer.
func (s *failoverStream) Trailer() metadata.MD { return s.committedStream().Trailer() }

// Context commits the stream and returns the current step's stream
// context.
func (s *failoverStream) Context() context.Context { return s.committedStream().Context() }
