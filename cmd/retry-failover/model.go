package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/seam"
)

// method is the full method name of every simulated call.
const method = "/inference.v1.InferenceService/Generate"

// Errors of the modelled backends. The decision code only reads them.
var (
	errDown    = status.Error(codes.Unavailable, "sim: no healthy backend in the region")
	errTimeout = status.Error(codes.DeadlineExceeded, "sim: deadline exceeded")
)

// backend models one region: how long an attempt takes and how it ends.
type backend struct {
	name   string
	rtt    time.Duration // added to every answer
	median time.Duration // of the service time, log-normal
	sigma  float64
	down   func(now time.Duration) bool // in an outage at now
	kind   outageKind
	rng    *rand.Rand
}

type outageKind int

const (
	refused   outageKind = iota // attempts fail Unavailable in refuseAfter
	blackhole                   // attempts get no answer
)

// refuseAfter is how long a refused attempt takes to fail: a regional front
// end that answers for backends that are gone.
const refuseAfter = 2 * time.Millisecond

// serve returns how long the attempt sent at now takes to end and how
// (err nil: OK; never: no answer at all).
func (b *backend) serve(now time.Duration) (d time.Duration, err error, never bool) {
	if b.down != nil && b.down(now) {
		if b.kind == blackhole {
			return 0, nil, true
		}
		return refuseAfter, errDown, false
	}
	return b.rtt + b.latency(), nil, false
}

func (b *backend) latency() time.Duration {
	return time.Duration(float64(b.median) * math.Exp(b.sigma*b.rng.NormFloat64()))
}

// fakeConn marks a fallback's connection: the simulator recognises it in
// the routes the Failover hands out. It is never called.
type fakeConn struct {
	grpc.ClientConnInterface
	name string
}

// client is one simulated gRPC client: a connection to the primary with
// its retry interceptor (a Decider and its budget) and, for the failover
// modes, a Failover with a connection to the secondary (its own Decider
// and budget) and, in the breaker modes, a Breaker.
type client struct {
	id        int
	sim       *sim
	run       *run
	primary   interceptor.Decider
	secondary interceptor.Decider
	failover  interceptor.FailoverDecider // nil: retries only
	breaker   *retry.Breaker
	conn      *fakeConn // the secondary's marker
	firstOpen time.Duration
	opened    bool
}

// call is one logical call.
type call struct {
	cl    *client
	start time.Duration
	ctx   *callCtx
	fc    *interceptor.FailoverCall
	ok    bool
	steps int
}

// step is one step of a call on one connection: the attempt loop of
// interceptor.Unary in virtual time (the connection is always ready).
type step struct {
	c       *call
	dec     interceptor.Decider
	be      *backend
	primary bool
	ic      interceptor.Call
	start   time.Duration
	done    func(err error)
}

func newClient(r *run, id int, m mode, rng func() float64) (*client, error) {
	v := seam.Config{Now: r.sim.Now, Rand: rng}
	cl := &client{id: id, sim: r.sim, run: r, conn: &fakeConn{name: "secondary"}}
	var err error
	if cl.primary, err = seam.NewDecider(r.cfg.policy, v); err != nil {
		return nil, err
	}
	if cl.secondary, err = seam.NewDecider(r.cfg.policy, v); err != nil {
		return nil, err
	}
	if !m.fallback && !m.breaker {
		return cl, nil
	}
	fc := retry.FailoverConfig{Name: "primary"}
	if m.fallback {
		fc.Fallbacks = []retry.Fallback{{Name: "secondary", Conn: cl.conn}}
	}
	if m.breaker {
		bc := r.cfg.breaker
		bc.OnStateChange = func(ev retry.BreakerEvent) {
			if ev.To == retry.BreakerOpen && !cl.opened && r.sim.now >= r.cfg.outageStart {
				cl.opened, cl.firstOpen = true, r.sim.now
			}
		}
		b, err := seam.NewBreaker(bc, v)
		if err != nil {
			return nil, err
		}
		cl.breaker = b.(*retry.Breaker)
		fc.Breaker = cl.breaker
	}
	if cl.failover, err = seam.NewFailover(fc, v); err != nil {
		return nil, err
	}
	return cl, nil
}

// start begins a call now.
func (cl *client) start() {
	now := cl.sim.now
	c := &call{cl: cl, start: now, ctx: &callCtx{s: cl.sim, deadline: now + cl.run.cfg.deadline}}
	if cl.failover == nil {
		cl.runStep(c, true, nil, c.finish)
		return
	}
	if c.fc = cl.failover.Begin(c.ctx, method, nil, nil, false); c.fc == nil {
		panic("retry-failover: the Failover does not take the simulated method")
	}
	c.next()
}

// next asks the Failover for the call's next step and runs it.
func (c *call) next() {
	cl := c.cl
	r, err := cl.failover.Next(c.ctx, c.fc)
	if err != nil {
		cl.failover.Done(c.ctx, c.fc, err)
		c.finish(err)
		return
	}
	primary := r.Conn == nil
	if !primary && r.Conn != grpc.ClientConnInterface(cl.conn) {
		panic(fmt.Sprintf("retry-failover: unknown route %v", r.Conn))
	}
	cl.runStep(c, primary, r.Opts, func(err error) {
		cl.failover.Ended(c.ctx, c.fc, err, false)
		if err == nil {
			cl.failover.Done(c.ctx, c.fc, nil)
			c.finish(nil)
			return
		}
		c.next()
	})
}

// runStep runs one step of c on the primary or the secondary, then done.
func (cl *client) runStep(c *call, primary bool, opts []grpc.CallOption, done func(error)) {
	c.steps++
	s := &step{c: c, dec: cl.secondary, be: cl.run.secondary, primary: primary, start: cl.sim.now, done: done}
	if primary {
		s.dec, s.be = cl.primary, cl.run.primary
	}
	ok, err := s.dec.Begin(c.ctx, method, opts, &s.ic)
	if err != nil || !ok {
		panic(fmt.Sprintf("retry-failover: the policy does not retry the simulated calls (%v)", err))
	}
	s.attempt()
}

// attempt sends the step's next attempt now.
func (s *step) attempt() {
	sim := s.c.cl.sim
	s.ic.Attempts++
	now := sim.now
	if s.primary {
		s.c.cl.run.primaryAttempt(s.c.cl, now)
	}
	end := s.c.ctx.deadline
	if t := s.ic.AttemptTimeout; t > 0 {
		end = min(end, now+t)
	}
	d, err, never := s.be.serve(now)
	if never || now+d > end {
		sim.at(end, func() { s.ended(errTimeout) })
		return
	}
	sim.at(now+d, func() { s.ended(err) })
}

// ended handles the end of the step's current attempt, as the interceptor
// does: Failed, then the next attempt after the delay, or the step's end.
func (s *step) ended(err error) {
	sim := s.c.cl.sim
	if err == nil {
		s.ic.Winner = s.ic.Attempts
		s.dec.Done(s.c.ctx, &s.ic, nil)
		s.c.cl.run.stepEnded(s, nil)
		s.done(nil)
		return
	}
	delay, final := s.dec.Failed(s.c.ctx, &s.ic, interceptor.Outcome{Err: err, Attempt: s.ic.Attempts})
	if final != nil {
		s.dec.Done(s.c.ctx, &s.ic, final)
		s.c.cl.run.stepEnded(s, final)
		s.done(final)
		return
	}
	sim.at(sim.now+delay, s.attempt)
}

// finish records the call's end.
func (c *call) finish(err error) {
	c.ok = err == nil
	c.cl.run.callEnded(c, c.cl.sim.now)
}
