package main

import (
	"container/heap"
	"context"
	"time"
)

// epoch is virtual time zero. It is far from the Unix epoch on purpose:
// decision code may treat a zero time as "never".
var epoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// sim is a discrete-event simulator in virtual time. Events run in order of
// their time, and events at the same time in the order they were
// scheduled, so a run is a pure function of its inputs. One run, one sim,
// one goroutine.
type sim struct {
	now time.Duration // since epoch
	seq uint64
	q   eventQueue
}

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// Now is the virtual clock, for the decision code.
func (s *sim) Now() time.Time { return epoch.Add(s.now) }

// at runs fn at virtual time t (now, if t has passed).
func (s *sim) at(t time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.q, event{at: max(t, s.now), seq: s.seq, fn: fn})
}

// run runs the events until none is left.
func (s *sim) run() {
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(event)
		s.now = e.at
		e.fn()
	}
}

// callCtx is a call's context in virtual time: its deadline, and an Err
// that reads the virtual clock. The decision code reads only Deadline,
// Err and Value.
type callCtx struct {
	s        *sim
	deadline time.Duration
}

func (c *callCtx) Deadline() (time.Time, bool) { return epoch.Add(c.deadline), true }
func (c *callCtx) Done() <-chan struct{}       { return nil }
func (c *callCtx) Value(any) any               { return nil }

func (c *callCtx) Err() error {
	if c.s.now >= c.deadline {
		return context.DeadlineExceeded
	}
	return nil
}
