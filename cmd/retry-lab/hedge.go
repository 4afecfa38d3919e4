package main

import (
	"time"

	"github.com/seed4f82f287/retry/interceptor"
)

// hedged is the state of a hedged call: the hedgeState of interceptor's
// hedged unary calls, in virtual time. Its loop mirrors theirs step by
// step (interceptor/hedge.go), and that of hedged streams, which put the
// same questions to the Decider at the same moments (hedgestream.go):
//
//   - the first attempt is sent at once, with Attempts 1, and the hedge
//     timer is armed for Call.HedgeDelay if it is not negative and
//     MaxAttempts > 1;
//   - when the timer fires with no decision yet, Hedge is asked (alone:
//     no attempt in flight); if it refuses and nothing is in flight, the
//     call ends with its error; if it allows, Attempts is incremented, the
//     attempt sent, and the timer armed again for HedgeDelay while
//     Attempts < MaxAttempts;
//   - an attempt that succeeds wins (Call.Winner, Call.Elapsed): the call is
//     decided and the attempts still in flight are cancelled, which the
//     Decider never hears about (the interceptor discards their ends);
//   - an attempt that fails is put to Failed (Outcome.Alone when none is
//     left in flight, Outcome.Elapsed when Timed): a final error decides
//     the call, a delay arms the timer for it, and -1 stops the hedges
//     (the call ending with the attempt's error if none is in flight);
//   - if the caller's deadline passes while nothing is in flight and no
//     decision is made, Failed is told the next attempt did not start
//     (Outcome.Unstarted), as the interceptor's wait does;
//   - Done once, when the call is decided and no attempt is left: with a
//     winner, at once for a unary call, at the end of the stream for a
//     stream (client.stream).
//
// Each attempt's deadline is the caller's, shortened by the per-attempt
// timeout from when it is sent. Hedged calls on a channel that can be down
// are not modelled (the interceptor then waits for a connection before a
// hedge sent when nothing is in flight).
type hedged struct {
	att      []hedgeAttempt // attempt n at n-1
	inline   [4]hedgeAttempt
	inflight int
	decided  bool
	armed    bool
	final    error         // the call's error, once decided without a winner
	gen      int32         // the armed timer's generation: a timer event of another one does nothing
	idle     time.Duration // since when nothing runs, if idleSet
	idleSet  bool
}

// hedgeAttempt is an attempt of a hedged call.
type hedgeAttempt struct {
	sent  time.Duration
	ended bool // it has ended, or was cancelled
}

// startHedged runs a hedged call's first attempt.
func (cl *client) startHedged(c *call) {
	if cl.ch != nil {
		panic("retry-lab: hedged calls on a channel that can be down are not modelled")
	}
	h := &c.hedge
	h.att = h.inline[:0]
	c.h = h
	c.ic.Attempts = 1
	h.inflight = 1
	if c.ic.HedgeDelay >= 0 && c.ic.MaxAttempts > 1 {
		cl.hedgeArm(c, c.ic.HedgeDelay)
	}
	cl.hedgeSend(c, 1)
}

// hedgeSend sends attempt n now.
func (cl *client) hedgeSend(c *call, n int) {
	h := c.h
	now := cl.sim.now
	h.att = append(h.att, hedgeAttempt{sent: now})
	adl := noDeadline
	if c.ctx.has {
		adl = c.dl
	}
	if t := c.ic.AttemptTimeout; t > 0 {
		adl = min(adl, now+t)
	}
	var (
		d   time.Duration
		err error
	)
	if now >= adl {
		err = errTimeout
	} else {
		if cl.onSend != nil {
			cl.onSend(c, now)
		}
		d, err = cl.srv.serve(c, now) // c.attempts() is n: Attempts was counted before the send
	}
	if now+d > adl {
		d, err = adl-now, errTimeout
	}
	cl.sim.stepN(now+d, evHedgeEnded, c, int32(n), err)
}

// hedgeArm sets the hedge timer to fire after d (at once if d ≤ 0).
func (cl *client) hedgeArm(c *call, d time.Duration) {
	h := c.h
	h.gen++
	h.armed = true
	cl.sim.stepN(cl.sim.now+max(d, 0), evHedgeFire, c, h.gen, nil)
}

// hedgeFire is the timer going off: a hedge, if the Decider allows it.
func (cl *client) hedgeFire(c *call, gen int32) {
	h := c.h
	if gen != h.gen || !h.armed {
		return // stopped, or armed again since
	}
	h.armed = false
	if h.decided {
		return
	}
	now := cl.sim.now
	alone := h.inflight == 0
	ok, final := cl.dec.Hedge(&c.ctx, &c.ic, alone)
	if !ok {
		if alone {
			c.ic.Idle += now - h.idle
			cl.hedgeDecide(c, final)
			cl.hedgeSettle(c)
		}
		return
	}
	c.ic.Attempts++
	if h.inflight == 0 && h.idleSet {
		c.ic.Idle += now - h.idle
		h.idleSet = false
	}
	h.inflight++
	if c.ic.HedgeDelay >= 0 && c.ic.Attempts < c.ic.MaxAttempts {
		cl.hedgeArm(c, c.ic.HedgeDelay)
	}
	cl.hedgeSend(c, c.ic.Attempts)
}

// hedgeEnded is the end of attempt n with err (nil: it succeeded).
func (cl *client) hedgeEnded(c *call, n int32, err error) {
	h := c.h
	a := &h.att[n-1]
	if a.ended {
		return // cancelled when the call was decided
	}
	a.ended = true
	now := cl.sim.now
	var elapsed time.Duration
	if c.ic.Timed {
		elapsed = now - a.sent
	}
	h.inflight--
	switch {
	case err == nil:
		c.ok = true
		c.ic.Winner = int(n)
		c.ic.Elapsed = elapsed
		cl.hedgeDecide(c, nil)
	default:
		c.last = err
		alone := h.inflight == 0
		delay, final := cl.dec.Failed(&c.ctx, &c.ic, interceptor.Outcome{Err: err, Attempt: int(n), Alone: alone, Elapsed: elapsed, Disconnected: cl.disconnected()})
		switch {
		case final != nil:
			cl.hedgeDecide(c, final)
		case delay >= 0:
			cl.hedgeArm(c, delay)
		default:
			h.armed = false // no more hedges: the attempts in flight decide
			if alone {
				cl.hedgeDecide(c, err) // the Decider broke its contract; keep the attempt's error
			}
		}
	}
	if h.inflight > 0 {
		return
	}
	if !h.decided {
		h.idle, h.idleSet = now, true // nothing runs until the next hedge
		if c.ctx.has {
			cl.sim.step(c.dl, evHedgeDeadline, c, nil)
		}
		return
	}
	cl.hedgeSettle(c)
}

// hedgeDeadline is the caller's deadline passing: if nothing runs and no
// hedge was sent meanwhile, the next attempt did not start.
func (cl *client) hedgeDeadline(c *call) {
	h := c.h
	if h.decided || h.inflight > 0 {
		return
	}
	h.armed = false
	c.ic.Idle += cl.sim.now - h.idle
	_, final := cl.dec.Failed(&c.ctx, &c.ic, interceptor.Outcome{Err: c.last, Unstarted: true, Attempt: c.ic.Attempts})
	cl.hedgeDecide(c, final)
	cl.hedgeSettle(c)
}

// hedgeDecide ends the call with a winner (final nil) or final, and cancels
// the attempts in flight: their ends are discarded.
func (cl *client) hedgeDecide(c *call, final error) {
	h := c.h
	h.decided = true
	h.armed = false
	h.final = final
	for i := range h.att {
		if !h.att[i].ended {
			h.att[i].ended = true
			h.inflight--
		}
	}
}

// hedgeSettle ends a decided call once no attempt is in flight (the
// interceptor's wait returning).
func (cl *client) hedgeSettle(c *call) {
	if c.ok {
		cl.answered(c)
		return
	}
	cl.finish(c, c.h.final)
}
