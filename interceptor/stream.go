package interceptor

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Stream returns a stream client interceptor that retries streams as d
// decides, following the commit rules of gRFC A6.
//
// Until a stream commits, every message the caller sends (and its
// CloseSend) is kept, and a failed attempt is replaced by a new one on which
// they are replayed in order, so the caller sees one unbroken stream. The
// stream commits, and is never retried again, when the first of these
// happens: a response message arrives; a failed attempt turns out to have
// received response headers (a trailers-only failure does not count); the
// caller calls Header or Trailer; or the kept messages would exceed
// Call.MaxReplayBytes (in serialized bytes). At commit the kept messages are
// released. After commit, errors go to the caller (through
// Decider.Committed) and nothing is re-sent.
//
// Call.AttemptTimeout bounds each attempt until its response headers arrive
// (or it commits otherwise); a committed stream is bounded only by the
// caller's context. With a timeout, each attempt has a goroutine waiting for
// its headers, which ends with the attempt.
//
// Context, as in grpc-go, commits the stream: the context it returns belongs
// to one attempt.
//
// Abandoned attempts are cancelled. As with any gRPC stream, the caller must
// read until RecvMsg returns an error, or cancel the context, to release the
// stream.
func Stream(d Decider) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s := &retryStream{d: d, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts}
		retry, err := d.Begin(ctx, method, opts, &s.call)
		if err != nil {
			return nil, err
		}
		if !retry {
			return streamer(ctx, desc, cc, method, opts...)
		}
		s.callCtx = callContext(ctx, &s.call)
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.newAttemptLocked(); err != nil {
			if err := s.retryLocked(err, nil); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
}

// retryStream is the grpc.ClientStream the caller holds: one logical stream
// over a succession of attempts.
//
// Two locks: sendMu serialises everything sent on an attempt (the caller's
// SendMsg and CloseSend, and replays onto a new attempt), and is held while
// a send blocks in flow control; mu guards the state and is never held
// while blocking on the network, except by the retry path, which holds both
// (always sendMu first) while it waits and replays. So a receiver can take
// a message, and commit, while a sender is blocked.
type retryStream struct {
	d        Decider
	ctx      context.Context // the caller's
	callCtx  context.Context // ctx plus the call's header
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption

	// committed is set, under mu, once the stream has committed; from then
	// on cur never changes, and SendMsg and RecvMsg use it without locks.
	committed atomic.Bool

	sendMu sync.Mutex

	mu          sync.Mutex
	call        Call
	cur         *attempt
	first       attempt
	replay      []any  // messages sent before commit, for replay
	replay1     [1]any // backing for replay's first message
	replayBytes int
	closeSent   bool
	done        bool // the call's outcome has been reported to d
}

// Per-attempt timeout states: the timer and the headers race to move an
// attempt out of timing; exactly one wins.
const (
	timing   int32 = iota // the timeout may still cut the attempt
	answered              // headers arrived or the stream committed: no timeout
	timedOut              // the timeout cut the attempt
)

// attempt is one try at the stream.
type attempt struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc // nil without a per-attempt timeout
	timer  *time.Timer        // the per-attempt timeout
	state  atomic.Int32       // timing, answered or timedOut
	broken bool               // a send failed: the attempt is over, RecvMsg will say why (guarded by mu)
}

// newAttemptLocked opens a new attempt and replays the kept messages on it.
// An error means the attempt could not be opened; a failed replay leaves the
// attempt broken, for RecvMsg to find out why. Callers hold sendMu and mu.
func (s *retryStream) newAttemptLocked() error {
	s.call.Attempts++
	a := &s.first // the first attempt needs no allocation of its own
	if s.call.Attempts > 1 {
		a = new(attempt)
	}
	// An attempt ends by itself when it fails (that is when it is
	// replaced), so it needs a cancel of its own only for the timeout.
	ctx := attemptMetadata(s.callCtx, &s.call)
	timeout := s.call.AttemptTimeout
	if timeout > 0 {
		ctx, a.cancel = context.WithCancel(ctx)
		a.timer = time.AfterFunc(timeout, func() {
			if a.state.CompareAndSwap(timing, timedOut) {
				a.cancel()
			}
		})
	}
	cs, err := s.streamer(ctx, s.desc, s.cc, s.method, s.opts...)
	if err != nil {
		a.stop()
		return a.convert(err, timeout)
	}
	a.cs = cs
	s.cur = a
	if timeout > 0 {
		go a.watchHeaders()
	}
	for _, m := range s.replay {
		if a.cs.SendMsg(m) != nil {
			a.broken = true
			return nil
		}
	}
	if s.closeSent {
		if a.cs.CloseSend() != nil {
			a.broken = true
		}
	}
	return nil
}

// watchHeaders ends the attempt's timeout when its response headers arrive.
// It returns when they do or when the attempt ends.
func (a *attempt) watchHeaders() {
	if md, _ := a.cs.Header(); md != nil {
		a.answer()
	}
}

// answer takes the attempt out of the per-attempt timeout, unless it has
// already fired.
func (a *attempt) answer() {
	if a.timer != nil && a.state.CompareAndSwap(timing, answered) {
		a.timer.Stop()
	}
}

// stop releases an attempt that is over.
func (a *attempt) stop() {
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.cancel != nil {
		a.cancel()
	}
}

// convert turns the error of an attempt cut by the per-attempt timeout (which
// shows as the client's own cancellation) into DeadlineExceeded.
func (a *attempt) convert(err error, timeout time.Duration) error {
	if a.state.Load() == timedOut && status.Code(err) == codes.Canceled {
		return status.Error(codes.DeadlineExceeded, fmt.Sprintf("retry: stream attempt got no response headers within the per-attempt timeout %v", timeout))
	}
	return err
}

// commitLocked commits the stream to its current attempt.
func (s *retryStream) commitLocked() {
	if s.committed.Load() {
		return
	}
	if s.cur != nil {
		s.cur.answer()
	}
	clear(s.replay)
	s.replay = nil
	s.committed.Store(true)
}

// retryLocked handles the failure err of the current attempt (nil trailer if
// none): it either replaces the attempt (after the decided wait) and returns
// nil, or returns the error for the caller. Callers hold sendMu and mu, so
// sends wait for the new attempt.
func (s *retryStream) retryLocked(err error, trailer metadata.MD) error {
	for {
		delay, final := s.d.Failed(s.ctx, &s.call, err, trailer)
		if final != nil {
			s.finishLocked()
			return final
		}
		if werr := s.d.Wait(s.ctx, &s.call, delay); werr != nil {
			s.finishLocked()
			return werr
		}
		if s.cur != nil {
			s.cur.stop() // abandon the failed attempt
		}
		if err = s.newAttemptLocked(); err == nil {
			return nil
		}
		trailer = nil
	}
}

// finishLocked releases the current attempt once the call is over.
func (s *retryStream) finishLocked() {
	s.done = true
	if s.cur != nil {
		s.cur.stop()
	}
	clear(s.replay)
	s.replay = nil
}

func (s *retryStream) SendMsg(m any) error {
	if s.committed.Load() {
		return s.cur.cs.SendMsg(m)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	a := s.cur
	switch {
	case s.committed.Load():
	case s.done || s.closeSent:
		// The call already ended, or the caller misuses the stream: let
		// gRPC say so.
	default:
		size := messageSize(m)
		if size < 0 || s.replayBytes+size > s.call.MaxReplayBytes {
			s.commitLocked()
			break
		}
		if s.replay == nil {
			s.replay = s.replay1[:0]
		}
		s.replay = append(s.replay, m)
		s.replayBytes += size
		if a.broken {
			s.mu.Unlock()
			return nil // kept for replay; RecvMsg will find out why the attempt ended
		}
		s.mu.Unlock()
		if err := a.cs.SendMsg(m); err != nil {
			// The attempt is over (io.EOF); its status comes from RecvMsg,
			// which retries and replays this message if it may.
			s.mu.Lock()
			a.broken = true
			s.mu.Unlock()
		}
		return nil
	}
	broken := a.broken
	s.mu.Unlock()
	if broken {
		return io.EOF
	}
	return a.cs.SendMsg(m)
}

// messageSize returns the serialized size of m, or -1 if it cannot be
// known (not a protobuf message), in which case the stream commits rather
// than keep an unbounded buffer.
func messageSize(m any) int {
	if pm, ok := m.(proto.Message); ok {
		return proto.Size(pm)
	}
	return -1
}

func (s *retryStream) CloseSend() error {
	if s.committed.Load() {
		return s.cur.cs.CloseSend()
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	a := s.cur
	if s.committed.Load() || s.done {
		s.mu.Unlock()
		return a.cs.CloseSend()
	}
	s.closeSent = true
	broken := a.broken
	s.mu.Unlock()
	if !broken && a.cs.CloseSend() != nil {
		s.mu.Lock()
		a.broken = true
		s.mu.Unlock()
	}
	return nil
}

func (s *retryStream) RecvMsg(m any) error {
	for {
		if s.committed.Load() {
			err := s.cur.cs.RecvMsg(m)
			if err != nil {
				s.mu.Lock()
				err = s.endCommittedLocked(s.cur.convert(err, s.call.AttemptTimeout))
				s.mu.Unlock()
			}
			return err
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			return io.EOF
		}
		// Only the receiving goroutine replaces attempts, so a stays
		// current until this goroutine replaces it.
		a := s.cur
		s.mu.Unlock()
		err := a.cs.RecvMsg(m)
		if err == nil {
			s.mu.Lock()
			s.commitLocked()
			if !s.desc.ServerStreams {
				// The one response of a unary-response stream arrived with
				// status OK.
				s.succeedLocked()
			}
			s.mu.Unlock()
			return nil
		}
		s.sendMu.Lock()
		s.mu.Lock()
		err, again := s.attemptEndedLocked(a, err)
		s.mu.Unlock()
		s.sendMu.Unlock()
		if !again {
			return err
		}
	}
}

// attemptEndedLocked handles the end (err) of attempt a: success, a failure
// after commit, or a failure to retry. again reports that a new attempt is
// in place and the caller should receive from it.
func (s *retryStream) attemptEndedLocked(a *attempt, err error) (_ error, again bool) {
	switch {
	case err == io.EOF:
		s.succeedLocked()
		return io.EOF, false
	case s.committed.Load():
		// Header, Trailer, Context or an overflowing send committed the
		// stream meanwhile.
		return s.endCommittedLocked(a.convert(err, s.call.AttemptTimeout)), false
	}
	if hdr, _ := a.cs.Header(); hdr != nil {
		// Response headers had arrived: the stream was committed.
		s.commitLocked()
		return s.endCommittedLocked(a.convert(err, s.call.AttemptTimeout)), false
	}
	err = a.convert(err, s.call.AttemptTimeout)
	if rerr := s.retryLocked(err, a.cs.Trailer()); rerr != nil {
		return rerr, false
	}
	return nil, true
}

func (s *retryStream) succeedLocked() {
	if !s.done {
		s.finishLocked()
		s.d.Succeeded(&s.call)
	}
}

// endCommittedLocked reports the end of a committed stream.
func (s *retryStream) endCommittedLocked(err error) error {
	if s.done {
		return err
	}
	if err == io.EOF {
		s.succeedLocked()
		return err
	}
	s.finishLocked()
	return s.d.Committed(s.ctx, &s.call, err)
}

// committedAttempt commits the stream and returns its attempt.
func (s *retryStream) committedAttempt() *attempt {
	if !s.committed.Load() {
		s.mu.Lock()
		s.commitLocked()
		s.mu.Unlock()
	}
	return s.cur
}

// Header commits the stream and returns the current attempt's response
// headers (waiting for them).
func (s *retryStream) Header() (metadata.MD, error) { return s.committedAttempt().cs.Header() }

// Trailer commits the stream and returns the current attempt's trailers.
func (s *retryStream) Trailer() metadata.MD { return s.committedAttempt().cs.Trailer() }

// Context commits the stream, as grpc-go's own streams do, and returns the
// current attempt's stream context.
func (s *retryStream) Context() context.Context { return s.committedAttempt().cs.Context() }
