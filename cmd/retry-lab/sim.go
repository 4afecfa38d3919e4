package main

import "time"

// epoch is virtual time zero. It is far from the Unix epoch on purpose:
// budgets may treat a zero time as "never".
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// sim is a discrete-event simulator in virtual time. Events run in order of
// their time, and events at the same time in the order they were
// scheduled, so a run is a pure function of its inputs. It is not safe for
// concurrent use: one run, one sim, one goroutine.
type sim struct {
	now   time.Duration // virtual time since epoch
	seq   uint64
	slots []event // events by slot; free slots are listed in free
	free  []int32
	heap  []item // a binary min-heap on (at, seq), without pointers
}

// event is a scheduled function, or one of the attempt loop's steps on a
// call (without the allocation of a closure, on the hot path).
type event struct {
	kind eventKind
	n    int32 // hedged calls: the attempt (evHedgeEnded) or the timer's generation (evHedgeFire)
	c    *call
	err  error
	fn   func()
}

type eventKind uint8

const (
	evFunc          eventKind = iota // fn()
	evAttempt                        // c.cl.attempt(c)
	evSend                           // c.cl.send(c)
	evEnded                          // c.cl.attemptEnded(c, err)
	evHedgeFire                      // c.cl.hedgeFire(c, n)
	evHedgeEnded                     // c.cl.hedgeEnded(c, n, err)
	evHedgeDeadline                  // c.cl.hedgeDeadline(c)
	evStreamEnd                      // c.cl.finish(c, nil): a stream's last message
)

type item struct {
	at   time.Duration
	seq  uint64
	slot int32
}

func (a item) before(b item) bool { return a.at < b.at || a.at == b.at && a.seq < b.seq }

// Now returns the virtual time as a time.Time, for the decision code.
func (s *sim) Now() time.Time { return epoch.Add(s.now) }

// at schedules fn at virtual time t (at once if t is in the past).
func (s *sim) at(t time.Duration, fn func()) { s.push(t, event{fn: fn}) }

// step schedules a step of the attempt loop on c at t.
func (s *sim) step(t time.Duration, kind eventKind, c *call, err error) {
	s.push(t, event{kind: kind, c: c, err: err})
}

// stepN schedules a step of a hedged call's loop on c at t.
func (s *sim) stepN(t time.Duration, kind eventKind, c *call, n int32, err error) {
	s.push(t, event{kind: kind, c: c, n: n, err: err})
}

func (s *sim) push(t time.Duration, e event) {
	var slot int32
	if n := len(s.free); n > 0 {
		slot = s.free[n-1]
		s.free = s.free[:n-1]
		s.slots[slot] = e
	} else {
		slot = int32(len(s.slots))
		s.slots = append(s.slots, e)
	}
	s.seq++
	h := append(s.heap, item{at: max(t, s.now), seq: s.seq, slot: slot})
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].before(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	s.heap = h
}

// run runs events until none is left.
func (s *sim) run() {
	for len(s.heap) > 0 {
		it := s.pop()
		e := s.slots[it.slot]
		s.slots[it.slot] = event{}
		s.free = append(s.free, it.slot)
		s.now = it.at
		switch e.kind {
		case evFunc:
			e.fn()
		case evAttempt:
			e.c.cl.attempt(e.c)
		case evSend:
			e.c.cl.send(e.c)
		case evEnded:
			e.c.cl.attemptEnded(e.c, e.err)
		case evHedgeFire:
			e.c.cl.hedgeFire(e.c, e.n)
		case evHedgeEnded:
			e.c.cl.hedgeEnded(e.c, e.n, e.err)
		case evHedgeDeadline:
			e.c.cl.hedgeDeadline(e.c)
		case evStreamEnd:
			e.c.cl.finish(e.c, nil)
		}
	}
}

func (s *sim) pop() item {
	h := s.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h[r].before(h[l]) {
			m = r
		}
		if !h[m].before(h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	s.heap = h
	return top
}
