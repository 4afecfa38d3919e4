package main

import "time"

// queueServer is a server of `workers` identical workers and one FIFO
// queue. Every admitted attempt takes `service` of a worker's time. An
// attempt that arrives when the queue already holds maxQueue attempts is
// rejected at once (ResourceExhausted, in failFast). The server never
// learns that a client gave up on an attempt: it serves it anyway when its
// turn comes, which is what lets a backlog of abandoned work outlive its
// cause.
//
// During [stallAt, stallAt+stallLen) the server does no work at all (a
// stuck dependency, a long pause): the attempts in service are frozen and
// resume afterwards, and the queue keeps admitting attempts up to its
// bound.
type queueServer struct {
	service  time.Duration
	size     func(c *call) time.Duration // if set, the service time of each attempt instead
	maxQueue int
	stallAt  time.Duration
	stallLen time.Duration

	free   []time.Duration // min-heap of when each worker is next free, in work time
	starts []time.Duration // real start times of the admitted attempts not yet started (FIFO, nondecreasing)
	head   int             // starts[head:] are waiting

}

func newQueueServer(workers, maxQueue int, service, stallAt, stallLen time.Duration) *queueServer {
	return &queueServer{
		service:  service,
		maxQueue: maxQueue,
		stallAt:  stallAt,
		stallLen: stallLen,
		free:     make([]time.Duration, workers),
	}
}

// Work time is real time with the stall cut out: the server's progress.
func (q *queueServer) work(t time.Duration) time.Duration {
	switch {
	case t < q.stallAt:
		return t
	case t < q.stallAt+q.stallLen:
		return q.stallAt
	}
	return t - q.stallLen
}

// realStart is the real time at which work starts at work time w: none
// starts during the stall.
func (q *queueServer) realStart(w time.Duration) time.Duration {
	if w < q.stallAt {
		return w
	}
	return w + q.stallLen
}

// realEnd is the real time at which work ends at work time w: work that
// ends as the stall begins is done.
func (q *queueServer) realEnd(w time.Duration) time.Duration {
	if w <= q.stallAt {
		return w
	}
	return w + q.stallLen
}

func (q *queueServer) serve(c *call, now time.Duration) (time.Duration, error) {
	for q.head < len(q.starts) && q.starts[q.head] <= now {
		q.head++
	}
	if q.head > 4096 && 2*q.head > len(q.starts) {
		q.starts = append(q.starts[:0], q.starts[q.head:]...)
		q.head = 0
	}
	if len(q.starts)-q.head >= q.maxQueue {
		return failFast, errQueueFull
	}
	startW := max(q.work(now), q.free[0])
	d := q.service
	if q.size != nil {
		d = q.size(c)
	}
	endW := startW + d
	q.free[0] = endW
	q.siftDown()
	if s := q.realStart(startW); s > now {
		q.starts = append(q.starts, s)
	}
	return q.realEnd(endW) - now, nil
}

func (q *queueServer) siftDown() {
	h := q.free
	n := len(h)
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r] < h[l] {
			m = r
		}
		if h[m] >= h[i] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
