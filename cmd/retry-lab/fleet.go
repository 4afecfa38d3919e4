package main

import (
	"math/rand/v2"
	"time"

	"github.com/seed4f82f287/retry"
)

// fleet is a set of clients, each with its own Decider (so its own budget),
// its own jitter source, the same server and the same call deadline.
type fleet struct {
	sim     *sim
	clients []*client
	poisson func(client int) *rand.Rand // if set, openLoop draws Poisson arrivals from it
}

// newFleet builds n clients of policy p with spec's budget. seed names the
// run (scenario and variant, not the policy), so that every policy sees the
// same jitter streams.
func newFleet(s *sim, n int, spec policySpec, p retry.Policy, srv server, deadline time.Duration, seed uint64) *fleet {
	f := &fleet{sim: s}
	for i := range n {
		rnd := newRand(seed, saltJitter, uint64(i))
		dec, _ := spec.decider(p, s.Now, rnd.Float64)
		cl := &client{id: i, sim: s, dec: dec, srv: srv, deadline: deadline}
		f.clients = append(f.clients, cl)
	}
	return f
}

// observe sets the callbacks of every client.
func (f *fleet) observe(onSend func(*call, time.Duration), onDone func(*call)) {
	for _, c := range f.clients {
		c.onSend, c.onDone = onSend, onDone
	}
}

// openLoop makes every client start calls at rate calls per second from
// `from` until (not including) `until`, whatever happens to earlier calls.
// Client i of n starts its calls i/n of an interval after client 0, so the
// fleet's calls are evenly spread; if f.poisson is set, each client's
// calls are a Poisson process of that rate instead.
func (f *fleet) openLoop(rate float64, from, until time.Duration) {
	n := len(f.clients)
	for i, cl := range f.clients {
		k := 0
		// t_k = from + (k + i/n) / rate, computed without accumulating error
		at := func(k int) time.Duration {
			return from + time.Duration((float64(k)+float64(i)/float64(n))*float64(time.Second)/rate)
		}
		if f.poisson != nil {
			rnd := f.poisson(i)
			t := from
			at = func(int) time.Duration {
				t += time.Duration(rnd.ExpFloat64() * float64(time.Second) / rate)
				return t
			}
		}
		var next func()
		next = func() {
			cl.start()
			k++
			if t2 := at(k); t2 < until {
				f.sim.at(t2, next)
			}
		}
		if t := at(0); t < until {
			f.sim.at(t, next)
		}
	}
}
