package main

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/interceptor"
)

// labMethod is the full method name of every simulated call.
const labMethod = "/lab.v1.Lab/Call"

// Attempt errors of the modelled servers and channels. They are shared by
// every call: the decision code only reads them.
var (
	errUnavailable = status.Error(codes.Unavailable, "lab: server unavailable")
	errRefused     = status.Error(codes.Unavailable, "lab: connection refused")
	errQueueFull   = status.Error(codes.ResourceExhausted, "lab: server queue full")
	errTimeout     = status.Error(codes.DeadlineExceeded, "lab: attempt timed out")
)

// failFast is how long a failed attempt takes to come back, and a successful
// one takes what the server says (1s in every scenario).
const failFast = time.Millisecond

// server decides, when an attempt is sent, when the client sees it end and
// how: after d, with err (nil: OK). Models that depend on time read sim.now.
type server interface {
	serve(c *call, now time.Duration) (d time.Duration, err error)
}

// serveFunc is a server without state of its own.
type serveFunc func(c *call, now time.Duration) (time.Duration, error)

func (f serveFunc) serve(c *call, now time.Duration) (time.Duration, error) { return f(c, now) }

// client is one simulated gRPC client: one channel, one interceptor (so one
// Decider and the budget in its policy), any number of concurrent calls.
// Its attempt loop is the one of interceptor.Unary for calls that are not
// hedged, in virtual time:
//
//   - Begin once per call; the call's deadline shortened by Call.Timeout
//     (Policy.Timeout), if set; Attempts incremented before each attempt;
//   - a retry on a channel that is not ready waits for it when
//     Call.ConnectWait > 0, at most ConnectWait, the per-attempt timeout
//     and the caller's deadline; if the caller's deadline ends the wait, the
//     attempt is not made and Failed is told so (Outcome.Unstarted, with
//     Attempts not counting it); otherwise the attempt is sent when the
//     wait ends, ready or not;
//   - the attempt's deadline is the caller's, shortened by the policy's
//     per-attempt timeout counted from when the attempt is sent (after any
//     wait for a connection);
//   - an attempt sent on a channel that is not ready fails fast
//     (Unavailable) without reaching the server;
//   - an attempt that the server has not answered by the attempt deadline
//     fails then with DeadlineExceeded (the server may still be working on
//     it);
//   - Failed after every failed attempt (Outcome.Attempt its number,
//     Outcome.Elapsed its duration if Call.Timed), and the next attempt
//     started delay after the failure instead of calling Wait (Failed has
//     already checked that the delay ends before the caller's deadline, so
//     Wait would return at once in virtual time);
//   - Done once when the call ends, with nil or the error the caller gets
//     (Call.Winner set on success, Call.Idle the time spent waiting).
//
// Hedged calls (Policy.Hedging) follow the loop of interceptor's hedged
// calls instead (see hedged). With stream set, calls are server streams:
// an attempt's answer is its first message, after which the call streams
// for that long more and then ends OK (Done is told then, as the stream
// interceptor tells it at the end of the stream).
type client struct {
	id       int
	sim      *sim
	dec      interceptor.Decider
	srv      server
	ch       *channel      // nil: always ready
	deadline time.Duration // of every call, from its start; 0: none
	stream   time.Duration // if > 0: how long a call streams after its first message

	onSend func(c *call, now time.Duration) // an attempt reaches the server (may be nil)
	onDone func(c *call)                    // a call ends (may be nil)

	seq int
}

// call is one logical call.
type call struct {
	cl         *client
	seq        int // per client, from 0
	start, end time.Duration
	dl         time.Duration // caller's deadline; valid if ctx.has
	adl        time.Duration // the current attempt's deadline
	sent       time.Duration // when the current attempt was sent
	idleSince  time.Duration // when the last wait began
	ctx        callContext
	ic         interceptor.Call
	last       error         // the last attempt's error
	first      time.Duration // when the answer (a stream's first message) arrived
	h          *hedged       // a hedged call's state (nil: not hedged)
	hedge      hedged        // h's memory
	ok         bool
	reason     retry.StopReason // why a failed call stopped
}

// attempts returns the attempts the call made (or has made so far). It
// reads Call.Attempts, which the Decider does not change.
func (c *call) attempts() int { return c.ic.Attempts }

// start begins a call now.
func (cl *client) start() *call {
	now := cl.sim.now
	c := &call{cl: cl, seq: cl.seq, start: now}
	c.ctx.call = c
	cl.seq++
	if cl.deadline > 0 {
		c.dl = now + cl.deadline
		c.ctx = callContext{deadline: epoch.Add(c.dl), has: true, call: c}
	}
	ok, err := cl.dec.Begin(&c.ctx, labMethod, nil, &c.ic)
	if err != nil || !ok {
		panic(fmt.Sprintf("retry-lab: the policy does not retry the lab's calls (%v)", err))
	}
	if t := c.ic.Timeout; t > 0 && (!c.ctx.has || now+t < c.dl) {
		c.dl = now + t
		c.ctx = callContext{deadline: epoch.Add(c.dl), has: true, call: c}
	}
	if c.ic.Hedging {
		cl.startHedged(c)
		return c
	}
	cl.attempt(c)
	return c
}

const noDeadline = time.Duration(1<<63 - 1)

// disconnected reports whether the client's channel has no connection now,
// as the interceptor asks the gRPC channel right after an attempt failed.
func (cl *client) disconnected() bool { return cl.ch != nil && !cl.ch.ready(cl.sim.now) }

func (cl *client) attempt(c *call) {
	c.ic.Attempts++
	now := cl.sim.now
	if c.ic.Attempts > 1 && c.ic.ConnectWait > 0 && cl.ch != nil && !cl.ch.ready(now) {
		wait := c.ic.ConnectWait
		if t := c.ic.AttemptTimeout; t > 0 {
			wait = min(wait, t)
		}
		waitEnd := now + wait
		if c.ctx.has {
			waitEnd = min(waitEnd, c.dl)
		}
		switch r := cl.ch.readyAt(now); {
		case r < waitEnd:
			cl.sim.step(r, evSend, c, nil)
		case c.ctx.has && c.dl <= waitEnd:
			cl.sim.at(c.dl, func() {
				c.ic.Attempts--
				c.ic.Idle += cl.sim.now - c.idleSince
				_, final := cl.dec.Failed(&c.ctx, &c.ic, interceptor.Outcome{Err: c.last, Unstarted: true, Attempt: c.ic.Attempts})
				cl.finish(c, final)
			})
		default:
			cl.sim.step(waitEnd, evSend, c, nil)
		}
		return
	}
	cl.send(c)
}

// send sends attempt c.ic.Attempts now: its deadline is the caller's,
// shortened by the per-attempt timeout from now.
func (cl *client) send(c *call) {
	now := cl.sim.now
	adl := noDeadline
	if c.ctx.has {
		adl = c.dl
	}
	if t := c.ic.AttemptTimeout; t > 0 {
		adl = min(adl, now+t)
	}
	c.adl = adl
	if c.ic.Attempts > 1 {
		c.ic.Idle += now - c.idleSince
	}
	c.sent = now
	var (
		d   time.Duration
		err error
	)
	switch {
	case now >= adl:
		err = errTimeout
	case cl.ch != nil && !cl.ch.ready(now):
		d, err = failFast, errRefused
	default:
		if cl.onSend != nil {
			cl.onSend(c, now)
		}
		d, err = cl.srv.serve(c, now)
	}
	if now+d > adl {
		d, err = adl-now, errTimeout
	}
	cl.sim.step(now+d, evEnded, c, err)
}

func (cl *client) attemptEnded(c *call, err error) {
	if c.ic.Timed {
		c.ic.Elapsed = cl.sim.now - c.sent
	}
	if err == nil {
		c.ok = true
		c.ic.Winner = c.ic.Attempts
		cl.answered(c)
		return
	}
	c.last = err
	delay, final := cl.dec.Failed(&c.ctx, &c.ic, interceptor.Outcome{Err: err, Attempt: c.ic.Attempts, Elapsed: c.ic.Elapsed, Disconnected: cl.disconnected()})
	if final != nil {
		cl.finish(c, final)
		return
	}
	c.idleSince = cl.sim.now
	cl.sim.step(cl.sim.now+delay, evAttempt, c, nil)
}

// answered notes the call's answer: the call ends now, or, for a stream,
// once it has streamed.
func (cl *client) answered(c *call) {
	c.first = cl.sim.now
	if cl.stream > 0 {
		cl.sim.step(cl.sim.now+cl.stream, evStreamEnd, c, nil)
		return
	}
	cl.finish(c, nil)
}

// finish ends the call: the Decider is told (Done), then the scenario.
func (cl *client) finish(c *call, final error) {
	c.end = cl.sim.now
	cl.dec.Done(&c.ctx, &c.ic, final)
	if final != nil {
		var e *retry.Error
		if !errors.As(final, &e) {
			panic(fmt.Sprintf("retry-lab: a failed call returned %T, not a *retry.Error: %v", final, final))
		}
		c.reason = e.Reason
	}
	if cl.onDone != nil {
		cl.onDone(c)
	}
}
