package interceptor

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Stream returns a stream client interceptor that retries streams as d
// decides, following the commit rules of gRFC A6 as grpc-go applies them.
//
// Until a stream commits, every message the caller sends (and its
// CloseSend) is kept, and a failed attempt is replaced by a new one on which
// they are replayed in order, so the caller sees one unbroken stream. The
// stream commits, and is never retried again, when the first of these
// happens: a response message arrives; response headers arrive (a
// trailers-only failure does not count); the caller calls Trailer or
// Context; or the kept messages would exceed Call.MaxReplayBytes (counted as
// grpc-go counts its retry buffer: serialized size plus the 5-byte message
// prefix). Header waits for the headers: if the attempt fails without any,
// Header retries (as grpc-go's does) and returns the headers of the attempt
// that sends them. At commit the kept messages are released. After commit,
// errors go to the caller (through Decider.Failed with Outcome.Committed) and
// nothing is re-sent.
//
// Replay onto a new attempt runs on its own goroutine while the caller keeps
// receiving, so a server that answers each message as it reads it is never
// blocked by a client that is still replaying; the caller's later sends wait
// for the replay to finish, which keeps them in order.
//
// Call.AttemptTimeout bounds each attempt until its response headers arrive
// (or it commits otherwise); a committed stream is bounded only by the
// caller's context. With a timeout, each attempt has a goroutine waiting for
// its headers, which ends with the attempt.
//
// A send that the client itself refuses (a message over the send size
// limit) ends the call: SendMsg returns the error at once and RecvMsg
// returns it too. grpc.OnFinish runs once, when the call ends (or its
// context does). As with any gRPC stream, the caller must read until RecvMsg
// returns an error, or cancel the context, to release the stream.
func Stream(d Decider) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		// Begin fills a pooled Call, copied into the stream once it is
		// known whether the stream is retried or hedged.
		c := streamCalls.Get().(*Call)
		defer func() {
			*c = Call{}
			streamCalls.Put(c)
		}()
		c.Conn = cc
		c.Static = hasStaticMethod(opts)
		retry, err := d.Begin(ctx, method, opts, c)
		if err != nil {
			return nil, err
		}
		if !retry {
			return streamer(ctx, desc, cc, method, opts...)
		}
		if c.Hedging {
			return newHedgeStream(ctx, d, desc, cc, method, streamer, opts, c)
		}
		s := &retryStream{d: d, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, call: *c}
		if s.call.Timeout > 0 {
			// The call's timeout ends with the call; the stream lives on
			// after this function returns, so its cancel runs at the end.
			s.ctx, s.cancelTimeout = context.WithTimeout(ctx, s.call.Timeout)
		}
		s.opts.attempt = s.optsBuf[:0]
		s.opts.sort(opts, nil, nil, false)
		s.opts.applyTo(&s.call)
		// Every attempt tells the stream when it ends, so that the call's
		// end is seen even when nobody is receiving (see attemptFinished).
		s.opts.attempt = append(s.opts.attempt, grpc.OnFinish(s.attemptFinished))
		s.callCtx = callContext(s.ctx, &s.call)
		s.sendMu.Lock()
		if err := s.reopen(); err != nil {
			s.finish(err)
			return nil, err
		}
		return s, nil
	}
}

// streamCalls pools the Call that Begin fills for a new stream.
var streamCalls = sync.Pool{New: func() any { return new(Call) }}

// retryStream is the grpc.ClientStream the caller holds: one logical stream
// over a succession of attempts.
//
// Three locks, always taken in this order:
//   - recvMu serialises receiving from the current attempt and deciding
//     what follows its end (RecvMsg, and Header when nobody is receiving),
//     so the Decider is asked about one call by one goroutine at a time;
//   - sendMu serialises everything sent on an attempt: the caller's SendMsg
//     and CloseSend, and the replay onto a new attempt (whose goroutine
//     holds it until the replay is done);
//   - mu guards the fields below it and is never held while blocking.
type retryStream struct {
	d             Decider
	ctx           context.Context    // the caller's, bounded by Call.Timeout
	cancelTimeout context.CancelFunc // nil without Call.Timeout
	callCtx       context.Context    // ctx plus the call's header
	desc          *grpc.StreamDesc
	cc            *grpc.ClientConn
	method        string
	streamer      grpc.Streamer
	opts          callOptions
	optsBuf       [6]grpc.CallOption
	call          Call  // the Decider's, under recvMu once the stream is returned
	last          error // the last attempt's error, under recvMu

	recvMu sync.Mutex
	sendMu sync.Mutex

	// committed is set, under mu, once the stream has committed; from then
	// on cur never changes.
	committed atomic.Bool
	finished  atomic.Bool // the caller's OnFinish callbacks have run

	mu          sync.Mutex
	cur         *attempt
	first       attempt
	replay      []any  // messages sent before commit, for replay
	replay1     [1]any // backing for replay's first message
	replayBytes int
	closeSent   bool
	responded   bool  // a response message arrived
	done        bool  // the call's outcome is known
	final       error // the outcome once done: io.EOF for success
	// moved, if not nil, is closed (and cleared) when the stream moves on
	// from its current attempt: a new attempt, commit, or the call's end.
	// Header waits on it while a receiver settles an attempt's end.
	moved chan struct{}
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
	local  bool               // a send failed with an error of the client's own (guarded by mu)
	// localErr is the error of a send the client itself refused (a
	// message over the send limit): it ends the call, whatever the attempt
	// had received (guarded by mu).
	localErr error
}

// open starts attempt number s.call.Attempts+1 and the replay of the kept
// messages onto it. The caller holds sendMu: on success the replay (or open
// itself, if there is nothing to replay) releases it; on failure the caller
// still holds it.
func (s *retryStream) open() error {
	s.call.Attempts++
	if s.call.Attempts > 1 {
		start := time.Now()
		ready := waitReady(s.callCtx, s.cc, s.call.connectWait())
		s.call.Idle += time.Since(start)
		if !ready && s.ctx.Err() != nil {
			s.call.Attempts--
			return errUnstarted
		}
	}
	a := &s.first // the first attempt needs no allocation of its own
	if s.call.Attempts > 1 {
		a = new(attempt)
	}
	// An attempt ends by itself when it fails (that is when it is
	// replaced), so it needs a cancel of its own only for the timeout,
	// which starts now that the attempt is sent.
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
	cs, err := s.streamer(ctx, s.desc, s.cc, s.method, s.opts.attempt...)
	if err != nil {
		a.stop()
		return a.convert(err, timeout)
	}
	a.cs = cs
	if timeout > 0 {
		go a.watchHeaders()
	}
	s.mu.Lock()
	old := s.cur
	s.cur = a
	s.movedLocked()
	var msgs []any
	if len(s.replay) > 0 {
		msgs = slices.Clone(s.replay) // commit may clear s.replay while the replay runs
	}
	closeSent := s.closeSent
	s.mu.Unlock()
	if old != nil {
		old.stop()
	}
	if len(msgs) == 0 && !closeSent {
		s.sendMu.Unlock()
		return nil
	}
	go s.replayOnto(a, msgs, closeSent)
	return nil
}

// errUnstarted is open's report that the caller's context ended while a
// retry waited for a connection.
var errUnstarted = status.Error(codes.Canceled, "retry: the call's context ended before the next attempt could start")

// replayOnto sends the kept messages (and CloseSend) to a new attempt, then
// releases sendMu, which open handed over to it.
func (s *retryStream) replayOnto(a *attempt, msgs []any, closeSend bool) {
	defer s.sendMu.Unlock()
	for _, m := range msgs {
		if err := a.cs.SendMsg(m); err != nil {
			s.sendFailed(a, err)
			return
		}
	}
	if closeSend {
		a.cs.CloseSend()
	}
}

// sendFailed records that a send on a failed: the attempt is over, and
// RecvMsg will learn its status.
func (s *retryStream) sendFailed(a *attempt, err error) {
	s.mu.Lock()
	a.broken = true
	if err != io.EOF {
		a.local, a.localErr = true, err
	}
	s.mu.Unlock()
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

// commitLocked commits the stream to its current attempt and releases the
// kept messages. The caller holds mu.
func (s *retryStream) commitLocked() {
	if s.committed.Load() {
		return
	}
	if s.cur != nil {
		s.cur.answer()
	}
	s.releaseLocked()
	s.committed.Store(true)
	s.movedLocked()
}

// movedLocked wakes the Header calls waiting for the stream to move on
// from its attempt. The caller holds mu.
func (s *retryStream) movedLocked() {
	if s.moved != nil {
		close(s.moved)
		s.moved = nil
	}
}

// releaseLocked drops the kept messages. The caller holds mu.
func (s *retryStream) releaseLocked() {
	clear(s.replay)
	s.replay1[0] = nil
	s.replay = nil
}

// decide asks d what follows the failure o of the current attempt (or of
// the attempt that could not be opened), waits if a retry is decided, and
// reports the call's final error otherwise. The caller holds recvMu (or is
// the constructor).
func (s *retryStream) decide(o Outcome) error {
	if o.Err == errUnstarted {
		o = Outcome{Err: s.last, Unstarted: true}
	} else {
		s.last = o.Err
	}
	o.Attempt = s.call.Attempts
	delay, final := s.d.Failed(s.ctx, &s.call, o)
	if final == nil {
		start := time.Now()
		final = s.d.Wait(s.ctx, &s.call, delay)
		s.call.Idle += time.Since(start)
	}
	if final != nil {
		s.end(final)
		return final
	}
	return nil
}

// reopen opens attempts until one opens or d ends the call. The caller
// holds recvMu (or is the constructor) and sendMu; reopen releases sendMu,
// or hands it to the replay.
func (s *retryStream) reopen() error {
	for {
		err := s.open()
		if err == nil {
			return nil
		}
		if err := s.decide(Outcome{Err: err, Disconnected: disconnected(s.cc)}); err != nil {
			s.sendMu.Unlock()
			return err
		}
	}
}

// end records the call's outcome (io.EOF for success), releases the current
// attempt and the kept messages, and runs the caller's OnFinish callbacks.
func (s *retryStream) end(outcome error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	s.movedLocked()
	s.final = outcome
	if s.cur != nil {
		s.cur.stop()
	}
	s.releaseLocked()
	s.mu.Unlock()
	if s.cancelTimeout != nil {
		defer s.cancelTimeout()
	}
	if outcome == io.EOF {
		s.call.Winner = s.call.Attempts
		outcome = nil
	}
	s.d.Done(s.ctx, &s.call, outcome)
	s.finish(outcome)
}

// finish runs the caller's OnFinish callbacks, once.
func (s *retryStream) finish(err error) {
	if s.finished.CompareAndSwap(false, true) {
		s.opts.finish(err)
	}
}

// attemptFinished is every attempt's grpc.OnFinish. gRPC runs it when the
// attempt ends, also when the caller's context ends while nobody receives.
// Then the call is over: the kept messages are released and the caller's
// OnFinish callbacks run with the attempt's error, as gRPC would run them. An
// error of the client's own also ends the call. Other ends are decided by
// the receiving side.
func (s *retryStream) attemptFinished(err error) {
	if s.ctx.Err() == nil && (err == nil || !localError(err)) {
		return
	}
	s.mu.Lock()
	s.releaseLocked()
	s.mu.Unlock()
	s.finish(err)
}

func (s *retryStream) SendMsg(m any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	a := s.cur
	if s.done {
		s.mu.Unlock()
		return io.EOF // the call is over: RecvMsg gives its status
	}
	kept := false
	if !s.committed.Load() && !s.closeSent {
		size := messageSize(m)
		if size < 0 || s.replayBytes+size > s.call.MaxReplayBytes {
			if a.broken && a.localErr == nil {
				// The message commits the stream, but the attempt is
				// already over: as grpc-go does, settle its end first
				// (a retry replays the kept messages onto a new attempt),
				// and commit to the attempt that follows.
				s.mu.Unlock()
				s.sendMu.Unlock()
				s.settle(a)
				s.sendMu.Lock()
				s.mu.Lock()
				a = s.cur
				if s.done {
					s.mu.Unlock()
					return io.EOF
				}
			}
			s.commitLocked()
		} else {
			if s.replay == nil {
				s.replay = s.replay1[:0]
			}
			s.replay = append(s.replay, m)
			s.replayBytes += size
			kept = true
		}
	}
	broken := a.broken
	s.mu.Unlock()
	if broken {
		if kept {
			return nil // RecvMsg will find out why the attempt ended, and replay this message if it retries
		}
		return io.EOF
	}
	err := a.cs.SendMsg(m)
	if err == nil {
		return nil
	}
	s.sendFailed(a, err)
	if err != io.EOF {
		return err // the client's own error: the call is over
	}
	if kept {
		return nil
	}
	return io.EOF
}

// settle makes sure that the end of attempt a, which is over, is settled:
// the stream has moved to another attempt, committed, or ended. A receiver
// (RecvMsg or Header) that holds recvMu settles it and moves on; since
// RecvMsg keeps recvMu while it receives from the next attempt, settle
// waits for the move rather than for recvMu. With no receiver, settle
// settles the end itself. The caller holds no lock.
func (s *retryStream) settle(a *attempt) {
	if !s.recvMu.TryLock() {
		s.mu.Lock()
		if s.cur != a || s.done || s.committed.Load() {
			s.mu.Unlock()
			return
		}
		if s.moved == nil {
			s.moved = make(chan struct{})
		}
		moved := s.moved
		s.mu.Unlock()
		<-moved
		return
	}
	defer s.recvMu.Unlock()
	s.mu.Lock()
	mine := s.cur == a && !s.done && !s.committed.Load()
	s.mu.Unlock()
	if !mine {
		return
	}
	if hdr, _ := a.cs.Header(); hdr != nil {
		// Response headers had arrived: the stream was committed, and a
		// response message may be waiting for the caller.
		s.mu.Lock()
		s.commitLocked()
		s.mu.Unlock()
		return
	}
	// The attempt is over and sent no headers, hence no message: RecvMsg
	// returns its status at once.
	if rerr := a.cs.RecvMsg(new(emptypb.Empty)); rerr != nil {
		s.attemptEnded(a, rerr)
	}
}

// messageSize returns what m counts against the replay buffer, as grpc-go
// counts it: its serialized size plus the 5-byte message prefix; or -1 if it
// cannot be known (not a protobuf message), in which case the stream
// commits rather than keep an unbounded buffer.
func messageSize(m any) int {
	if pm, ok := m.(proto.Message); ok {
		return proto.Size(pm) + 5
	}
	return -1
}

func (s *retryStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	a := s.cur
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.closeSent = true
	broken := a.broken
	s.mu.Unlock()
	if !broken {
		a.cs.CloseSend()
	}
	return nil
}

func (s *retryStream) RecvMsg(m any) error {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	for {
		s.mu.Lock()
		if s.done {
			final := s.final
			s.mu.Unlock()
			return final
		}
		a, localErr := s.cur, s.cur.localErr
		s.mu.Unlock()
		if localErr != nil {
			// A refused send ended the call: what the attempt may have
			// received since is not delivered.
			return s.attemptEnded(a, localErr)
		}
		err := a.cs.RecvMsg(m)
		if err == nil {
			s.mu.Lock()
			s.responded = true
			s.commitLocked()
			s.mu.Unlock()
			if !s.desc.ServerStreams {
				// The one response of a unary-response stream arrived, and
				// gRPC has read its OK status.
				s.end(io.EOF)
			}
			return nil
		}
		if err = s.attemptEnded(a, err); err != nil {
			return err
		}
	}
}

// attemptEnded handles the end (err) of attempt a, as seen by RecvMsg or
// Header: success, a failure after commit, or a failure to retry. It returns
// nil when a new attempt is in place, and otherwise the call's final error
// (io.EOF for success). The caller holds recvMu.
func (s *retryStream) attemptEnded(a *attempt, err error) error {
	s.mu.Lock()
	responded, committed, localErr := s.responded, s.committed.Load(), a.localErr
	s.mu.Unlock()
	if localErr != nil {
		err = localErr // the call's end, whatever the attempt reported after it
	}
	if err == io.EOF {
		if s.desc.ServerStreams || responded {
			s.end(io.EOF)
			return io.EOF
		}
		// A unary-response stream must end with its response: one that
		// ends without it (grpc-go can report a connection cut this way)
		// failed.
		err = status.Error(codes.Unavailable, "retry: stream ended without its response message")
	}
	err = a.convert(err, s.call.AttemptTimeout)
	if !committed {
		if hdr, _ := a.cs.Header(); hdr != nil {
			committed = true // response headers had arrived (gRFC A6)
		}
	}
	o := Outcome{Err: err, Trailer: a.cs.Trailer(), Committed: committed, Local: localErr != nil || localError(err), Disconnected: disconnected(s.cc)}
	if err := s.decide(o); err != nil {
		return err
	}
	s.sendMu.Lock()
	return s.reopen()
}

// Header returns the response headers, waiting for them. Headers that
// arrive commit the stream. If an attempt ends without headers (a
// trailers-only failure), Header handles its end as RecvMsg would: it
// retries and waits for the next attempt's headers, or, when the call is
// over, returns nil headers and no error (RecvMsg then returns the call's
// error), as grpc-go's streams do. Once the call is over, Header returns
// the headers of the attempt the caller got its answer from (nil if it
// had none), as grpc-go's streams do.
func (s *retryStream) Header() (metadata.MD, error) {
	for {
		s.mu.Lock()
		done, a := s.done, s.cur
		s.mu.Unlock()
		if done {
			if a == nil {
				return nil, nil
			}
			return a.cs.Header() // the attempt has ended: this does not wait
		}
		if s.committed.Load() {
			return a.cs.Header()
		}
		md, err := a.cs.Header()
		if md != nil {
			s.mu.Lock()
			if s.cur == a {
				s.commitLocked()
			}
			s.mu.Unlock()
			return md, err
		}
		// The attempt ended without headers: settle its end (a retry
		// moves to the next attempt, whose headers the loop then awaits).
		s.settle(a)
	}
}

// committedAttempt commits the stream and returns its attempt.
func (s *retryStream) committedAttempt() *attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitLocked()
	return s.cur
}

// Trailer commits the stream, as grpc-go's streams do, and returns the
// current attempt's trailers.
func (s *retryStream) Trailer() metadata.MD { return s.committedAttempt().cs.Trailer() }

// Context commits the stream, as grpc-go's streams do, and returns the
// current attempt's stream context.
func (s *retryStream) Context() context.Context { return s.committedAttempt().cs.Context() }
