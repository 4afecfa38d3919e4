package interceptor

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Hedged unary calls.
//
// The first attempt runs on the caller's goroutine. A timer sends each hedge
// (when the hedge delay passes without an answer, or when an attempt fails
// and the Decider asks for another): the timer's goroutine runs the hedge.
// Every attempt has its own context, reply message (the first uses the
// caller's) and captures of headers, trailer and peer. The first attempt to
// succeed wins: the others are cancelled, the caller's goroutine waits until
// every attempt has returned, then copies the winner's reply and captures
// to the caller's. A failure is put to the Decider, which ends the call,
// allows another hedge (now, or after the server's pushback), or none.
//
// On the success path, when no hedge fires, the call costs what a retried
// call costs plus the first attempt's cancelable context: the state and
// the timer are pooled with the call.

// hedgeState is the per-call state of a hedged call, pooled in unaryCall.
type hedgeState struct {
	mu       sync.Mutex
	box      *timerBox // the pooled timer and its identity
	armed    bool      // the timer is set to send a hedge
	inflight int       // attempts running
	decided  bool      // a winner, or the call's error, is known
	final    error     // the call's error, once decided without a winner
	winner   *hedgeAttempt
	first    hedgeAttempt
	others   []*hedgeAttempt
	done     chan struct{} // closed when decided and inflight == 0 (made on the slow path)
	idle     time.Time     // since when no attempt has run (zero: one is running)
	last     error         // the last attempt's error

	// The call, for the timer's goroutine.
	ctx     context.Context // the caller's context (with the call's timeout)
	callCtx context.Context // ctx with the call's header
	d       Decider
	u       *unaryCall
	method  string
	req     any
	reply   any
	cc      *grpc.ClientConn
	invoker grpc.UnaryInvoker
	// replyType makes the hedges' replies. It is read before the first
	// attempt writes into the caller's reply: decoding a reply starts by
	// resetting the whole message, the state that reflection reads included.
	replyType protoreflect.MessageType
}

// timerBox is the hedge timer. Its fire checks, under the state's lock,
// that the box is still the state's own, so that a timer that fires after
// its call is over (and the memory is reused) does nothing.
type timerBox struct {
	t *time.Timer
	h *hedgeState
}

func (b *timerBox) fire() { b.h.fire(b) }

// hedgeAttempt is one attempt of a hedged call.
type hedgeAttempt struct {
	n       int
	cancel  context.CancelFunc
	reply   any
	header  metadata.MD
	trailer metadata.MD
	peer    peer.Peer
	opts    []grpc.CallOption
	start   time.Time
}

// reusable resets the state for another call and reports whether it (and
// its call) can go back to the pool. A timer callback of this call that is
// still due finds another box in place and does nothing.
func (h *hedgeState) reusable() bool {
	if h.box == nil {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.disarm()
	h.others = h.others[:0]
	h.first = hedgeAttempt{}
	h.winner, h.final, h.last, h.done = nil, nil, nil, nil
	h.decided, h.inflight, h.idle = false, 0, time.Time{}
	h.ctx, h.callCtx, h.d, h.u, h.req, h.reply, h.cc, h.invoker, h.replyType = nil, nil, nil, nil, nil, nil, nil, nil, nil
	return true
}

// hedged runs a hedged call and returns its final error.
func (u *unaryCall) hedged(ctx context.Context, d Decider, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker) error {
	c := &u.call
	h := &u.hedge
	if h.box == nil {
		h.box = newTimerBox(h)
	}
	h.ctx, h.callCtx, h.d, h.u = ctx, callContext(ctx, c), d, u
	h.method, h.req, h.reply, h.cc, h.invoker = method, req, reply, cc, invoker
	h.replyType = reply.(proto.Message).ProtoReflect().Type()

	// The first attempt, on this goroutine.
	a := &h.first
	a.n, a.reply, a.opts = 1, reply, u.opts.attempt
	if u.opts.callerPeer != nil {
		a.opts = append(a.opts, grpc.Peer(&u.peer))
		u.opts.attempt = a.opts
	}
	// The attempt's cancel function is set before the timer can send a
	// hedge whose win would cancel it.
	actx := h.start(a)
	h.mu.Lock()
	c.Attempts = 1
	h.inflight = 1
	if c.HedgeDelay >= 0 && c.MaxAttempts > 1 {
		h.arm(c.HedgeDelay)
	}
	h.mu.Unlock()
	*u.opts.header, *u.opts.trailer = nil, nil
	err := invoker(actx, method, req, reply, cc, a.opts...)
	a.header, a.trailer = *u.opts.header, *u.opts.trailer
	if u.opts.callerPeer != nil {
		a.peer = u.peer
	}
	elapsed := h.elapsed(a)
	h.mu.Lock()
	h.endLocked(a, err, elapsed)
	return h.waitLocked()
}

// start makes the first attempt's context and notes its start. It is
// called before the hedge timer is armed, so before any other attempt can
// win and cancel a; a hedge's cancel function is set under h.mu (see fire).
func (h *hedgeState) start(a *hedgeAttempt) context.Context {
	actx, cancel := h.attemptContext(a)
	a.cancel = cancel
	return actx
}

// attemptContext makes a's context and notes a's start. It sets nothing
// that decide reads.
func (h *hedgeState) attemptContext(a *hedgeAttempt) (context.Context, context.CancelFunc) {
	c := &h.u.call
	var actx context.Context
	var cancel context.CancelFunc
	if c.AttemptTimeout > 0 {
		actx, cancel = context.WithTimeout(attemptMetadataFor(h.callCtx, a.n), c.AttemptTimeout)
	} else {
		actx, cancel = context.WithCancel(attemptMetadataFor(h.callCtx, a.n))
	}
	if c.Timed {
		a.start = time.Now()
	}
	return actx, cancel
}

// attemptMetadataFor is attemptMetadata for attempt number n of a hedged
// call: hedges also carry HedgeHeader.
func attemptMetadataFor(ctx context.Context, n int) context.Context {
	if n < 2 {
		return ctx
	}
	prev := strconv.Itoa(n - 1)
	return metadata.AppendToOutgoingContext(ctx, PreviousAttemptsHeader, prev, HedgeHeader, prev)
}

// arm sets the timer to send a hedge after d (at once if d ≤ 0). The
// caller holds h.mu.
func (h *hedgeState) arm(d time.Duration) {
	h.disarm()
	h.box.t.Reset(max(d, 0))
	h.armed = true
}

// disarm stops the timer. The caller holds h.mu. A timer that could not be
// stopped (its callback is due) is replaced, so that the callback, finding
// the state holding another box, does nothing, even if the state is in use
// by another call by then.
func (h *hedgeState) disarm() {
	if h.armed {
		if !h.box.t.Stop() {
			h.box = newTimerBox(h)
		}
		h.armed = false
	}
}

func newTimerBox(h *hedgeState) *timerBox {
	b := &timerBox{h: h}
	b.t = time.AfterFunc(time.Hour, b.fire)
	b.t.Stop()
	return b
}

// fire sends a hedge, when the timer set by arm goes off.
func (h *hedgeState) fire(b *timerBox) {
	h.mu.Lock()
	if h.box != b || !h.armed {
		h.mu.Unlock()
		return // a timer of a call that is over, or stopped meanwhile
	}
	h.armed = false
	c := &h.u.call
	if h.decided {
		h.mu.Unlock()
		return
	}
	alone := h.inflight == 0
	ok, final := h.d.Hedge(h.ctx, c, alone)
	if !ok {
		if alone {
			h.u.call.Idle += time.Since(h.idle)
			h.decide(nil, final)
			h.wakeIfDone()
		}
		h.mu.Unlock()
		return
	}
	c.Attempts++
	a := &hedgeAttempt{n: c.Attempts, reply: h.replyType.New().Interface()}
	a.opts = append(slices.Clip(h.u.opts.attempt[:h.u.opts.base]), grpc.Header(&a.header), grpc.Trailer(&a.trailer))
	if h.u.opts.callerPeer != nil {
		a.opts = append(a.opts, grpc.Peer(&a.peer))
	}
	h.others = append(h.others, a)
	h.running()
	if c.HedgeDelay >= 0 && c.Attempts < c.MaxAttempts {
		h.arm(c.HedgeDelay)
	}
	h.mu.Unlock()
	if alone {
		waitReady(h.callCtx, h.cc, c.connectWait()) // nothing is in flight: as a retry, wait for a connection
	}
	actx, cancel := h.attemptContext(a)
	h.mu.Lock()
	a.cancel = cancel
	lost := h.decided // decided while the hedge started: decide did not cancel it
	h.mu.Unlock()
	var err error
	if lost {
		cancel()
		err = status.FromContextError(context.Canceled).Err()
	} else {
		err = h.invoker(actx, h.method, h.req, a.reply, h.cc, a.opts...)
	}
	elapsed := h.elapsed(a)
	h.mu.Lock()
	h.endLocked(a, err, elapsed)
	h.mu.Unlock()
}

// running counts one more attempt in flight. The caller holds h.mu.
func (h *hedgeState) running() {
	if h.inflight == 0 && !h.idle.IsZero() {
		h.u.call.Idle += time.Since(h.idle)
		h.idle = time.Time{}
	}
	h.inflight++
}

// elapsed returns how long attempt a ran, if the call is timed.
func (h *hedgeState) elapsed(a *hedgeAttempt) time.Duration {
	if h.u.call.Timed {
		return time.Since(a.start)
	}
	return 0
}

// endLocked handles the end of attempt a, which ran for elapsed, with err.
// The caller holds h.mu.
func (h *hedgeState) endLocked(a *hedgeAttempt, err error, elapsed time.Duration) {
	c := &h.u.call
	h.inflight--
	switch {
	case h.decided:
		// A loser (cancelled, or finishing after the winner): discarded.
	case err == nil:
		h.winner = a
		c.Winner = a.n
		c.Elapsed = elapsed
		h.decide(a, nil)
	default:
		h.last = err
		alone := h.inflight == 0
		delay, final := h.d.Failed(h.ctx, c, Outcome{
			Err:     err,
			Trailer: a.trailer,
			Local:   localError(err),
			Attempt: a.n,
			Alone:   alone,
			Elapsed: elapsed,

			Disconnected: disconnected(h.cc),
		})
		switch {
		case final != nil:
			h.decide(nil, final)
		case delay >= 0:
			h.arm(delay)
		default:
			h.disarm() // no more hedges: the attempts in flight decide
			if alone {
				h.decide(nil, err) // the Decider broke its contract; keep the attempt's error
			}
		}
	}
	if h.inflight > 0 {
		return
	}
	if !h.decided {
		h.idle = time.Now() // nothing runs until the next hedge
	}
	h.wakeIfDone()
}

// wakeIfDone wakes the caller's goroutine once the call is decided and
// every attempt has returned. The caller holds h.mu.
func (h *hedgeState) wakeIfDone() {
	if h.decided && h.inflight == 0 && h.done != nil {
		close(h.done)
		h.done = nil
	}
}

// decide ends the call with a winner, or with err, and cancels the attempts
// still running. The caller holds h.mu.
func (h *hedgeState) decide(winner *hedgeAttempt, err error) {
	h.decided = true
	h.final = err
	h.disarm()
	h.cancelAll(winner)
}

// cancelAll cancels the attempts but keep. The caller holds h.mu.
func (h *hedgeState) cancelAll(keep *hedgeAttempt) {
	if h.first.cancel != nil && keep != &h.first {
		h.first.cancel()
	}
	for _, a := range h.others {
		if a != keep && a.cancel != nil {
			a.cancel()
		}
	}
}

// waitLocked waits until the call is decided and every attempt has
// returned, then gives the caller the winner's reply and captures, and
// returns the call's error. The caller holds h.mu, which waitLocked
// releases.
func (h *hedgeState) waitLocked() error {
	var ctxDone <-chan struct{}
	if !(h.decided && h.inflight == 0) {
		ctxDone = h.ctx.Done()
	}
	for !(h.decided && h.inflight == 0) {
		if h.done == nil {
			h.done = make(chan struct{})
		}
		done := h.done
		h.mu.Unlock()
		select {
		case <-done:
		case <-ctxDone:
			ctxDone = nil // attempts in flight end with the context, and decide
			h.mu.Lock()
			if !h.decided && h.inflight == 0 {
				// Nothing runs and a hedge was to come: the caller's
				// context ended first.
				h.disarm()
				h.u.call.Idle += time.Since(h.idle)
				_, final := h.d.Failed(h.ctx, &h.u.call, Outcome{Err: h.last, Unstarted: true, Attempt: h.u.call.Attempts})
				h.decide(nil, final)
			}
			h.mu.Unlock()
		}
		h.mu.Lock()
	}
	w := h.winner
	h.cancelAll(nil) // release the attempts' contexts
	h.mu.Unlock()
	o := &h.u.opts
	if w == nil {
		return h.final
	}
	if w != &h.first {
		proto.Reset(h.reply.(proto.Message))
		proto.Merge(h.reply.(proto.Message), w.reply.(proto.Message))
	}
	if o.callerHeader != nil {
		*o.callerHeader = w.header
	}
	if o.callerTrailer != nil {
		*o.callerTrailer = w.trailer
	}
	if o.callerPeer != nil {
		*o.callerPeer = w.peer
	}
	return nil
}
