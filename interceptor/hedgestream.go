package interceptor

import (
	"context"
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
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Hedged streams.
//
// A hedged stream starts its first attempt at once and another each time
// the hedge delay passes without a winner (or at once when an attempt
// fails and the Decider allows another). The first attempt to deliver a
// response message wins: the stream commits to it, the others are
// cancelled, and from then on the stream is that attempt. Response headers
// alone do not commit a hedged stream: many servers send them before any
// work (an inference server flushes them before the first token), and the
// slow part a hedge races is the first message.
//
// Until it commits, every message the caller sends goes to every attempt in
// flight, one after another, and is kept (within Call.MaxReplayBytes) to be
// replayed, with CloseSend, onto each new hedge. Once the kept messages
// outgrow the buffer no further hedge is sent; the attempts in flight go on.
//
// Receiving: the race for the first message starts at the caller's first
// RecvMsg, which tells the message type. The first attempt is received on
// the caller's goroutine, straight into the caller's message; each hedge has
// a goroutine that receives its first message into a message of its own, and
// if a hedge wins, the first attempt is cancelled (which ends the caller's
// receive) and the hedge's message is handed to the caller. So a stream on
// which no hedge fires starts no goroutine and allocates no message of its
// own. A caller that asks for Header before any message commits the stream
// to the first attempt whose headers arrive (it asked for one attempt's
// headers); Trailer and Context commit it to the first attempt in flight,
// as they commit a retried stream.
//
// The first attempt, the list of attempts, the call options, the first kept
// message and the send targets live in the stream's own memory, the hedge
// timer is pooled, and the channel that wakes waiters is made only when
// someone waits: what a hedged stream costs beyond a retried one, until a
// hedge fires, is the first attempt's cancelable context.

// streamHedge is one attempt of a hedged stream.
type streamHedge struct {
	attempt
	n         int
	receiving bool // a goroutine (the caller's, for the first attempt) receives this attempt's first message
	watching  bool // a goroutine waits for this attempt's headers
	ended     bool // the attempt failed (or lost)
	msg       any  // the first message, if this attempt won by delivering it to a receiver of its own
	start     time.Time
}

// hedgeStream is the grpc.ClientStream of a hedged call.
type hedgeStream struct {
	d        Decider
	ctx      context.Context // the caller's, bounded by Call.Timeout
	cancelTO context.CancelFunc
	callCtx  context.Context
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     callOptions
	optsBuf  [6]grpc.CallOption
	call     Call

	recvMu sync.Mutex // serialises the caller's RecvMsg
	sendMu sync.Mutex // serialises sends: the caller's, and replays onto new hedges

	committed atomic.Bool
	finished  atomic.Bool

	mu          sync.Mutex
	one         streamHedge // the first attempt
	attempts    []*streamHedge
	attemptsBuf [3]*streamHedge
	live        int // attempts in flight
	winner      *streamHedge
	done        bool
	final       error // once done: io.EOF for success
	last        error // the last attempt's error
	replay      []any
	replay1     [1]any // backing for replay's first message
	replayBytes int
	overflow    bool // the kept messages outgrew the buffer: no more hedges
	closeSent   bool
	responded   bool
	msgType     protoreflect.MessageType // learned from the caller's first RecvMsg
	headerRace  bool                     // the caller asked for headers before a winner
	endPending  bool                     // the call ended: unlock reports it
	timer       *streamTimer             // nil once no hedge can follow
	armed       bool
	wake        chan struct{} // made by a waiter; closed and cleared on every change of state
	targets     []*streamHedge
	targetsBuf  [3]*streamHedge
}

// streamTimer is a hedged stream's hedge timer, pooled across streams. Its
// callback fires the stream that holds it; the stream checks that the timer
// is still its own and armed, so a callback that was due when the timer
// was stopped does nothing. A timer whose callback may still run is never
// put back in the pool.
type streamTimer struct {
	t *time.Timer
	s atomic.Pointer[hedgeStream]
}

var streamTimers sync.Pool // of *streamTimer, stopped and given to no stream

func init() {
	streamTimers.New = func() any { // set here: the timer's callback refers to the pool
		b := new(streamTimer)
		b.t = time.AfterFunc(time.Hour, b.fire)
		b.t.Stop()
		return b
	}
}

func (b *streamTimer) fire() {
	if s := b.s.Load(); s != nil {
		s.fire(b)
	}
}

// newStreamTimer takes a stopped timer from the pool for s.
func newStreamTimer(s *hedgeStream) *streamTimer {
	b := streamTimers.Get().(*streamTimer)
	b.s.Store(s)
	return b
}

func newHedgeStream(ctx context.Context, d Decider, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts []grpc.CallOption, call *Call) (grpc.ClientStream, error) {
	s := &hedgeStream{d: d, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, call: *call}
	if s.call.Timeout > 0 {
		s.ctx, s.cancelTO = context.WithTimeout(ctx, s.call.Timeout)
	}
	s.attempts = s.attemptsBuf[:0]
	s.targets = s.targetsBuf[:0]
	s.replay = s.replay1[:0]
	s.opts.attempt = s.optsBuf[:0]
	s.opts.sort(opts, nil, nil, false)
	s.opts.applyTo(&s.call)
	s.opts.attempt = append(s.opts.attempt, grpc.OnFinish(s.attemptFinished))
	s.callCtx = callContext(s.ctx, &s.call)
	s.timer = newStreamTimer(s)
	s.call.Attempts = 1
	s.sendMu.Lock()
	s.openAttempt(1, false)
	s.sendMu.Unlock()
	s.mu.Lock()
	defer s.unlock()
	if s.done && s.final != io.EOF {
		return nil, s.final
	}
	return s, nil
}

// openAttempt opens attempt n and replays the kept messages onto it. The
// caller holds sendMu (not mu).
func (s *hedgeStream) openAttempt(n int, alone bool) {
	if alone && n > 1 {
		waitReady(s.callCtx, s.cc, s.call.connectWait()) // nothing is in flight: as a retry, wait for a connection
	}
	a := &s.one
	if n > 1 {
		a = new(streamHedge)
	}
	a.n = n
	timeout := s.call.AttemptTimeout
	ctx, cancel := context.WithCancel(attemptMetadataFor(s.callCtx, n))
	a.cancel = cancel
	if timeout > 0 {
		a.timer = time.AfterFunc(timeout, func() {
			if a.state.CompareAndSwap(timing, timedOut) {
				a.cancel()
			}
		})
	}
	if s.call.Timed {
		a.start = time.Now()
	}
	cs, err := s.streamer(ctx, s.desc, s.cc, s.method, s.opts.attempt...)
	if err != nil {
		a.stop()
		s.mu.Lock()
		defer s.unlock()
		s.failedLocked(a, a.convert(err, timeout), nil, false)
		s.signalLocked()
		return
	}
	a.cs = cs
	s.mu.Lock()
	if s.done || s.committed.Load() {
		s.mu.Unlock()
		a.stop() // the call was decided while this attempt opened
		return
	}
	var msgs []any
	if len(s.replay) > 0 {
		msgs = slices.Clone(s.replay) // commit may clear s.replay while the replay runs
	}
	closeSent := s.closeSent
	s.attempts = append(s.attempts, a)
	s.live++
	s.startWatchersLocked(a)
	if n < s.call.MaxAttempts && s.call.HedgeDelay >= 0 && !s.overflow {
		s.armLocked(s.call.HedgeDelay)
	}
	s.signalLocked()
	s.mu.Unlock()
	for _, m := range msgs {
		if err := cs.SendMsg(m); err != nil {
			s.sendFailed(a, err)
			return
		}
	}
	if closeSent {
		cs.CloseSend()
	}
}

// startWatchersLocked starts, for a, the goroutines the caller's wishes
// need: a receiver once the message type is known (for a hedge: the
// caller's RecvMsg receives the first attempt itself), a header watcher if
// the caller asked for headers. The caller holds mu.
func (s *hedgeStream) startWatchersLocked(a *streamHedge) {
	if a.ended {
		return
	}
	if s.msgType != nil && !a.receiving && a != &s.one {
		a.receiving = true
		go s.receiveFirst(a, s.msgType.New().Interface())
	}
	if s.headerRace && !a.watching {
		a.watching = true
		go s.watchHeader(a)
	}
}

// receiveFirst receives a's first message into m, on a goroutine of its
// own, and settles the race.
func (s *hedgeStream) receiveFirst(a *streamHedge, m any) {
	err := a.cs.RecvMsg(m)
	s.mu.Lock()
	defer s.unlock()
	a.receiving = false
	if s.settleFirstLocked(a, err) {
		a.msg = m
	}
	s.signalLocked()
}

// receiveDirect receives the first attempt's first message on the caller's
// goroutine, straight into m, and settles the race. The caller holds mu;
// receiveDirect releases it while it receives. It reports whether m is the
// stream's first message, and then it has released mu (and ended a stream
// with one response).
func (s *hedgeStream) receiveDirect(a *streamHedge, m any) bool {
	a.receiving = true
	s.mu.Unlock()
	err := a.cs.RecvMsg(m)
	s.mu.Lock()
	a.receiving = false
	won := s.settleFirstLocked(a, err)
	s.signalLocked()
	if !won {
		return false
	}
	if !s.desc.ServerStreams {
		s.endLocked(io.EOF) // the one response arrived, with status OK
	}
	s.unlock()
	return true
}

// settleFirstLocked settles what the receive of a's first message, which
// ended with err, means for the race, and reports whether the message
// received is the stream's first. The caller holds mu.
func (s *hedgeStream) settleFirstLocked(a *streamHedge, err error) bool {
	switch {
	case a == s.winner && err == nil:
		s.responded = true
		return true // committed to a by its headers meanwhile: the caller gets the message
	case a == s.winner:
		// Committed to a by its headers meanwhile: the caller's RecvMsg
		// receives the end itself.
	case a.ended || s.done || s.committed.Load():
		// A loser: its message, if any, is discarded.
	case err == nil:
		s.responded = true
		s.commitLocked(a)
		return true
	case err == io.EOF && s.desc.ServerStreams:
		s.commitLocked(a) // a stream that ended with no message, and OK
	default:
		if err == io.EOF {
			err = status.Error(codes.Unavailable, "retry: stream ended without its response message")
		}
		s.failedLocked(a, a.convert(err, s.call.AttemptTimeout), a.cs.Trailer(), a.local || localError(err))
	}
	return false
}

// watchHeader waits for a's headers; the first attempt to deliver them
// wins while the caller waits in Header.
func (s *hedgeStream) watchHeader(a *streamHedge) {
	md, _ := a.cs.Header()
	s.mu.Lock()
	defer s.mu.Unlock()
	a.watching = false
	if a.ended || s.done || s.committed.Load() {
		return
	}
	if md != nil {
		s.commitLocked(a)
		s.signalLocked()
		return
	}
	if a.receiving {
		return // the receiver learns how the attempt ended
	}
	// The attempt ended without headers and nobody receives from it: it
	// sent no message either, so RecvMsg returns its status at once.
	a.receiving = true
	go s.receiveFirst(a, new(emptypb.Empty))
}

// commitLocked makes a the winner and cancels the others. The caller holds
// mu.
func (s *hedgeStream) commitLocked(a *streamHedge) {
	s.winner = a
	a.answer()
	s.committed.Store(true)
	s.releaseTimerLocked()
	for _, o := range s.attempts {
		if o != a && !o.ended {
			o.ended = true
			o.stop()
			s.live--
		}
	}
	s.dropReplayLocked()
	if s.call.Timed {
		s.call.Elapsed = time.Since(a.start)
	}
}

// failedLocked handles attempt a's failure (a nil a: an attempt that could
// not be opened). The caller holds mu.
func (s *hedgeStream) failedLocked(a *streamHedge, err error, trailer metadata.MD, local bool) {
	n := s.call.Attempts
	var elapsed time.Duration
	if a != nil {
		n = a.n
		if !a.ended {
			a.ended = true
			a.stop()
			if a.cs != nil {
				s.live--
			}
		}
		if s.call.Timed {
			elapsed = time.Since(a.start)
		}
	}
	s.last = err
	delay, final := s.d.Failed(s.ctx, &s.call, Outcome{
		Err:       err,
		Trailer:   trailer,
		Local:     local,
		Committed: s.overflow, // the kept messages cannot be replayed onto a new attempt
		Attempt:   n,
		Alone:     s.live == 0,
		Elapsed:   elapsed,

		Disconnected: disconnected(s.cc),
	})
	switch {
	case final != nil:
		s.endLocked(final)
	case delay >= 0 && !s.overflow:
		s.armLocked(delay)
	default:
		s.disarmLocked()
		if s.live == 0 {
			s.endLocked(err) // the Decider broke its contract; keep the attempt's error
		}
	}
}

// armLocked sets the timer to send a hedge after d (at once if d ≤ 0).
// The caller holds mu.
func (s *hedgeStream) armLocked(d time.Duration) {
	if s.timer == nil {
		return // committed or done: no hedge can follow
	}
	s.disarmLocked()
	s.timer.t.Reset(max(d, 0))
	s.armed = true
}

// disarmLocked stops the timer. A timer that could not be stopped (its
// callback is due) is replaced, so that the callback, finding the stream
// holding another timer, does nothing. The caller holds mu.
func (s *hedgeStream) disarmLocked() {
	if s.armed {
		if !s.timer.t.Stop() {
			s.timer = newStreamTimer(s)
		}
		s.armed = false
	}
}

// releaseTimerLocked stops the timer for good (no hedge can follow) and
// puts it back in the pool, unless its callback may still run. The caller
// holds mu.
func (s *hedgeStream) releaseTimerLocked() {
	b := s.timer
	if b == nil {
		return
	}
	s.timer = nil
	if s.armed && !b.t.Stop() {
		s.armed = false
		return // the callback is due: it finds no timer of the stream's, and the timer is dropped
	}
	s.armed = false
	b.s.Store(nil)
	streamTimers.Put(b)
}

// dropReplayLocked releases the kept messages. The caller holds mu.
func (s *hedgeStream) dropReplayLocked() {
	clear(s.replay)
	s.replay1[0] = nil
	s.replay = nil
}

// fire sends a hedge when timer b goes off.
func (s *hedgeStream) fire(b *streamTimer) {
	s.mu.Lock()
	if s.timer != b || !s.armed || s.done || s.committed.Load() {
		s.mu.Unlock()
		return
	}
	s.armed = false
	alone := s.live == 0
	if s.overflow {
		s.mu.Unlock()
		return
	}
	ok, final := s.d.Hedge(s.ctx, &s.call, alone)
	if !ok {
		if alone {
			s.endLocked(final)
			s.signalLocked()
		}
		s.unlock()
		return
	}
	s.call.Attempts++
	n := s.call.Attempts
	s.mu.Unlock()
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.openAttempt(n, alone)
}

// endLocked ends the call with outcome (io.EOF for success). The caller
// holds mu.
func (s *hedgeStream) endLocked(outcome error) {
	if s.done {
		return
	}
	s.done = true
	s.final = outcome
	s.releaseTimerLocked()
	for _, a := range s.attempts {
		if a != s.winner && !a.ended {
			a.ended = true
			a.stop()
			s.live--
		}
	}
	if s.winner != nil {
		s.winner.stop()
	}
	s.dropReplayLocked()
	if outcome == io.EOF && s.winner != nil {
		s.call.Winner = s.winner.n
	}
	s.endPending = true // told to the Decider and OnFinish by unlock
}

// unlock releases mu and, if the call has just ended, tells the Decider and
// runs the caller's OnFinish callbacks, outside the lock.
func (s *hedgeStream) unlock() {
	ended := s.endPending
	s.endPending = false
	outcome := s.final
	s.mu.Unlock()
	if !ended {
		return
	}
	var err error
	if outcome != io.EOF {
		err = outcome
	}
	s.d.Done(s.ctx, &s.call, err)
	if s.cancelTO != nil {
		s.cancelTO()
	}
	if s.finished.CompareAndSwap(false, true) {
		s.opts.finish(err)
	}
}

// signalLocked wakes whoever waits for a change. The caller holds mu.
func (s *hedgeStream) signalLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

// waitLocked waits for a change of state, or the caller's context. It
// releases and retakes mu.
func (s *hedgeStream) waitLocked() {
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	w := s.wake
	s.mu.Unlock()
	select {
	case <-w:
	case <-s.ctx.Done():
		s.mu.Lock()
		if !s.done && !s.committed.Load() && s.live == 0 {
			// Nothing runs and a hedge was to come.
			_, final := s.d.Failed(s.ctx, &s.call, Outcome{Err: s.last, Unstarted: true, Attempt: s.call.Attempts})
			s.endLocked(final)
			s.signalLocked()
		}
		s.unlock()
		<-w // attempts in flight end with the context
	}
	s.mu.Lock()
}

// sendFailed records that a send on a failed.
func (s *hedgeStream) sendFailed(a *streamHedge, err error) {
	s.mu.Lock()
	a.broken = true
	if err != io.EOF {
		a.local = true
	}
	s.mu.Unlock()
}

// attemptFinished is every attempt's grpc.OnFinish: when the caller's
// context ends while nobody receives, the call is over and the caller's
// OnFinish runs (as gRPC would run it).
func (s *hedgeStream) attemptFinished(err error) {
	if s.ctx.Err() == nil {
		return
	}
	s.mu.Lock()
	s.dropReplayLocked()
	s.mu.Unlock()
	if s.finished.CompareAndSwap(false, true) {
		s.opts.finish(err)
	}
}

func (s *hedgeStream) SendMsg(m any) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return io.EOF
	}
	if s.committed.Load() {
		w := s.winner
		s.mu.Unlock()
		return w.cs.SendMsg(m)
	}
	if !s.overflow && !s.closeSent {
		size := messageSize(m)
		if size < 0 || s.replayBytes+size > s.call.MaxReplayBytes {
			s.overflow = true // no more hedges: they could not be given this message
			s.releaseTimerLocked()
			s.dropReplayLocked()
		} else {
			s.replay = append(s.replay, m)
			s.replayBytes += size
		}
	}
	s.targets = s.targets[:0]
	for _, a := range s.attempts {
		if !a.ended && !a.broken {
			s.targets = append(s.targets, a)
		}
	}
	s.mu.Unlock()
	for _, a := range s.targets {
		if err := a.cs.SendMsg(m); err != nil {
			s.sendFailed(a, err)
			if err != io.EOF {
				return err // the client's own error: every attempt would fail the same way
			}
		}
	}
	return nil
}

func (s *hedgeStream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	if s.committed.Load() {
		w := s.winner
		s.mu.Unlock()
		return w.cs.CloseSend()
	}
	s.closeSent = true
	s.targets = s.targets[:0]
	for _, a := range s.attempts {
		if !a.ended && !a.broken {
			s.targets = append(s.targets, a)
		}
	}
	s.mu.Unlock()
	for _, a := range s.targets {
		a.cs.CloseSend()
	}
	return nil
}

func (s *hedgeStream) RecvMsg(m any) error {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	s.mu.Lock()
	for !s.committed.Load() && !s.done {
		if s.msgType == nil {
			pm, ok := m.(proto.Message)
			if !ok {
				// A hedge cannot receive into a message of its own: race
				// no more, commit to the first attempt in flight.
				s.commitFirstLocked()
				continue
			}
			s.msgType = pm.ProtoReflect().Type()
			for _, a := range s.attempts {
				s.startWatchersLocked(a)
			}
		}
		if a := &s.one; !a.ended && !a.receiving {
			if s.receiveDirect(a, m) {
				return nil
			}
			continue
		}
		s.waitLocked()
	}
	for s.winner != nil && s.winner.receiving {
		s.waitLocked() // the winner's first message is on its way to us
	}
	if s.done && (s.winner == nil || s.winner.msg == nil) {
		final := s.final
		s.unlock()
		return final
	}
	w := s.winner
	if first := w.msg; first != nil {
		w.msg = nil
		s.mu.Unlock()
		proto.Reset(m.(proto.Message))
		proto.Merge(m.(proto.Message), first.(proto.Message))
		if !s.desc.ServerStreams {
			s.mu.Lock()
			s.endLocked(io.EOF) // the one response arrived, with status OK
			s.unlock()
		}
		return nil
	}
	s.mu.Unlock()
	err := w.cs.RecvMsg(m)
	if err == nil {
		if !s.desc.ServerStreams {
			s.mu.Lock()
			s.endLocked(io.EOF)
			s.unlock()
		}
		return nil
	}
	s.mu.Lock()
	defer s.unlock()
	if s.done {
		return s.final
	}
	if err == io.EOF {
		if s.desc.ServerStreams || s.responded {
			s.endLocked(io.EOF)
			return io.EOF
		}
		err = status.Error(codes.Unavailable, "retry: stream ended without its response message")
	}
	s.last = err
	// The winner is the only attempt left (the others were cancelled when
	// it won): its failure ends the call.
	_, final := s.d.Failed(s.ctx, &s.call, Outcome{Err: w.convert(err, s.call.AttemptTimeout), Trailer: w.cs.Trailer(), Committed: true, Local: localError(err), Attempt: w.n, Alone: true})
	s.endLocked(final)
	return final
}

// commitFirstLocked commits to the first attempt in flight, or, with none,
// waits for one. The caller holds mu.
func (s *hedgeStream) commitFirstLocked() {
	for _, a := range s.attempts {
		if !a.ended {
			s.commitLocked(a)
			s.signalLocked()
			return
		}
	}
	s.waitLocked()
}

// Header returns the winner's response headers. Before a winner, it waits
// for the first attempt whose headers arrive and commits to it.
func (s *hedgeStream) Header() (metadata.MD, error) {
	s.mu.Lock()
	if !s.committed.Load() && !s.done {
		s.headerRace = true
		for _, a := range s.attempts {
			s.startWatchersLocked(a)
		}
		for !s.committed.Load() && !s.done {
			s.waitLocked()
		}
	}
	w := s.winner
	s.mu.Unlock()
	if w == nil {
		return nil, nil // the call ended without a winner: RecvMsg says how
	}
	return w.cs.Header()
}

// committedStream commits to the first attempt in flight, if none won yet,
// and returns the winner (nil if the call ended without one).
func (s *hedgeStream) committedStream() *streamHedge {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.committed.Load() && !s.done {
		s.commitFirstLocked()
	}
	return s.winner
}

// Trailer returns the winner's trailer, committing the stream as a retried
// stream's Trailer does.
func (s *hedgeStream) Trailer() metadata.MD {
	if w := s.committedStream(); w != nil {
		return w.cs.Trailer()
	}
	return nil
}

// Context returns the winner's stream context, committing the stream as a
// retried stream's Context does.
func (s *hedgeStream) Context() context.Context {
	if w := s.committedStream(); w != nil {
		return w.cs.Context()
	}
	return s.ctx
}
