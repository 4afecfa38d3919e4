package main

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/seed4f82f287/retry"
)

func TestSimOrder(t *testing.T) {
	s := &sim{}
	var got []int
	for i, at := range []time.Duration{3, 1, 2, 1, 0, 3} {
		s.at(at, func() { got = append(got, i) })
	}
	s.at(2, func() { s.at(1, func() { got = append(got, 9) }) }) // in the past: runs now, after earlier ones at 2
	s.run()
	if want := []int{4, 1, 3, 2, 9, 0, 5}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v (by time, then by scheduling)", got, want)
	}
}

func TestChannel(t *testing.T) {
	for seed := range uint64(200) {
		ch := newChannel(5*time.Second, time.Second, newRand(seed))
		// The first try after the immediate one comes 0.8s to 1.2s after
		// the drop; if the server is not back, the next 1.28s to 1.92s later.
		if ch.back < 6*time.Second || ch.back > 5*time.Second+1200*time.Millisecond+1920*time.Millisecond {
			t.Fatalf("seed %d: back at %v", seed, ch.back)
		}
		if !ch.ready(ch.down-1) || ch.ready(ch.down) || ch.ready(ch.back-1) || !ch.ready(ch.back) || ch.readyAt(ch.down) != ch.back {
			t.Fatalf("seed %d: readiness wrong around [%v, %v)", seed, ch.down, ch.back)
		}
	}
}

func TestQueueServer(t *testing.T) {
	q := newQueueServer(2, 2, time.Second, 10*time.Second, 4*time.Second)
	serve := func(now time.Duration) (time.Duration, error) { return q.serve(nil, now) }
	// Two workers busy, two queued (FIFO), the fifth rejected.
	for i, want := range []time.Duration{time.Second, time.Second, 2 * time.Second, 2 * time.Second} {
		if d, err := serve(0); err != nil || d != want {
			t.Errorf("attempt %d: %v, %v; want %v", i, d, err, want)
		}
	}
	if _, err := serve(0); !errors.Is(err, errQueueFull) {
		t.Errorf("fifth attempt: %v, want the queue full", err)
	}
	// Work in progress when the stall begins is frozen for its length; work
	// arriving during the stall starts when it ends.
	if d, _ := serve(9500 * time.Millisecond); d != 4500*time.Millisecond+time.Second/2+0 {
		t.Errorf("across the stall: %v, want 5s (0.5s, the 4s stall, 0.5s)", d)
	}
	if d, _ := serve(11 * time.Second); d != 4*time.Second {
		t.Errorf("in the stall: %v, want 4s (3s to its end, then 1s)", d)
	}
}

// newTestClient returns a client of spec on s whose server answers with f.
func newTestClient(t *testing.T, s *sim, p retry.Policy, name string, f serveFunc, deadline time.Duration) (*client, *[]*call) {
	t.Helper()
	fl := newFleet(s, 1, policy(t, name), p, f, deadline, 1)
	var done []*call
	fl.observe(nil, func(c *call) { done = append(done, c) })
	return fl.clients[0], &done
}

func TestClientDeadline(t *testing.T) {
	s := &sim{}
	// Every attempt takes 3s: the caller's 2s deadline cuts the first one,
	// and the decision code sees the caller's own deadline.
	cl, done := newTestClient(t, s, labPolicy(nil), "nobudget", func(*call, time.Duration) (time.Duration, error) {
		return 3 * time.Second, nil
	}, 2*time.Second)
	s.at(0, func() { cl.start() })
	s.run()
	if c := (*done)[0]; c.ok || c.attempts() != 1 || c.reason != retry.StopCanceled || c.end != 2*time.Second {
		t.Errorf("call: ok %v, %d attempts, reason %v, end %v; want a failure at the deadline, StopCanceled", c.ok, c.attempts(), c.reason, c.end)
	}
}

func TestClientConnectWait(t *testing.T) {
	down := func(*call, time.Duration) (time.Duration, error) { return time.Second, nil }
	// The channel is down from 0 to 10s; a retry waits for it, and the
	// caller's 3s deadline ends the wait: the unstarted attempt is not
	// counted, and the call ends with StopDeadline at its deadline.
	s := &sim{}
	cl, done := newTestClient(t, s, labPolicy(nil), "nobudget", down, 3*time.Second)
	cl.ch = &channel{down: 0, back: 10 * time.Second}
	s.at(0, func() { cl.start() })
	s.run()
	if c := (*done)[0]; c.ok || c.attempts() != 1 || c.reason != retry.StopDeadline || c.end != 3*time.Second {
		t.Errorf("deadline during the wait: ok %v, %d attempts, reason %v, end %v; want 1 attempt, StopDeadline at 3s", c.ok, c.attempts(), c.reason, c.end)
	}
	// Back at 1s: the retry goes out then and succeeds.
	s = &sim{}
	cl, done = newTestClient(t, s, labPolicy(nil), "nobudget", down, 3*time.Second)
	cl.ch = &channel{down: 0, back: time.Second}
	s.at(0, func() { cl.start() })
	s.run()
	if c := (*done)[0]; !c.ok || c.attempts() != 2 || c.end != 2*time.Second {
		t.Errorf("back in time: ok %v, %d attempts, end %v; want OK on the second attempt at 2s", c.ok, c.attempts(), c.end)
	}
	// Without ConnectWait, the retries fail fast: 4 attempts, StopMaxAttempts.
	s = &sim{}
	p := labPolicy(nil)
	p.ConnectWait = -1
	cl, done = newTestClient(t, s, p, "nobudget", down, 3*time.Second)
	cl.ch = &channel{down: 0, back: 10 * time.Second}
	s.at(0, func() { cl.start() })
	s.run()
	if c := (*done)[0]; c.ok || c.attempts() != labMaxAttempts || c.reason != retry.StopMaxAttempts {
		t.Errorf("fail fast: ok %v, %d attempts, reason %v; want %d attempts, StopMaxAttempts", c.ok, c.attempts(), c.reason, labMaxAttempts)
	}
}

func TestPoissonArrivals(t *testing.T) {
	s := &sim{}
	fl := newFleet(s, 2, policy(t, "nobudget"), labPolicy(nil), serveFunc(func(*call, time.Duration) (time.Duration, error) {
		return time.Second, nil
	}), 0, 1)
	fl.poisson = func(i int) *rand.Rand { return newRand(1, uint64(i)) }
	n := 0
	fl.observe(nil, func(*call) { n++ })
	fl.openLoop(100, 0, 100*time.Second)
	s.run()
	// 2 clients × 100/s × 100s: 20000 calls, give or take a few standard
	// deviations (√20000 ≈ 141).
	if n < 19500 || n > 20500 {
		t.Errorf("%d calls, want about 20000", n)
	}
}
