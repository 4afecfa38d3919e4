package retry

import (
	"math/rand/v2"
	"sync/atomic"
)

// A breaker's sliding window: the outcomes of recent calls, counted in time
// buckets. Each counter is one atomic word holding the number of the bucket
// (its epoch) it counts for and the count, so a counter that a later bucket
// reuses starts again from zero in the same compare-and-swap that counts
// the new call: no lock, no reset racing with counting, no sample lost. The
// success counter, written by every healthy call, is striped over cache
// lines so that concurrent calls do not contend on one word.

const (
	countBits  = 24
	countMask  = 1<<countBits - 1 // a counter saturates at 16,777,215 calls per bucket (per stripe)
	winStripes = 8                // success counters per bucket
)

// counter is an epoch-tagged count: epoch<<countBits | count.
type counter struct{ w atomic.Uint64 }

// add counts one call in bucket epoch e. A call whose clock reading is older
// than the bucket's current epoch (it read the time before the bucket
// turned over) is dropped.
func (c *counter) add(e uint64) {
	for {
		w := c.w.Load()
		var nw uint64
		switch we := w >> countBits; {
		case we == e:
			if w&countMask == countMask {
				return
			}
			nw = w + 1
		case we < e:
			nw = e<<countBits | 1
		default:
			return
		}
		if c.w.CompareAndSwap(w, nw) {
			return
		}
	}
}

// count returns the count if it is for an epoch in [lo, hi], else 0.
func (c *counter) count(lo, hi uint64) int {
	w := c.w.Load()
	if e := w >> countBits; e < lo || e > hi {
		return 0
	}
	return int(w & countMask)
}

// paddedCounter is a counter alone on its cache line.
type paddedCounter struct {
	counter
	_ [56]byte
}

type bucket struct {
	ok   [winStripes]paddedCounter
	fail counter
	slow counter
	_    [48]byte
}

// window counts successes, failures and slow calls over the last n buckets
// of width ns each. Epochs count buckets from origin, starting at 1 so that
// a zero word is an empty count.
type window struct {
	origin int64 // unix ns
	width  int64 // ns per bucket
	n      uint64
	b      []bucket
}

func newWindow(origin, width int64, n int) *window {
	return &window{origin: origin, width: width, n: uint64(n), b: make([]bucket, n)}
}

// epoch returns the bucket number of unix time now (ns).
func (w *window) epoch(now int64) uint64 {
	if now < w.origin {
		return 1
	}
	return uint64((now-w.origin)/w.width) + 1
}

// windowCounts are the totals of a window.
type windowCounts struct {
	ok, fail, slow int
}

func (c windowCounts) total() int { return c.ok + c.fail }

// add records one call that ended at now.
func (w *window) add(now int64, failed, slow bool) {
	e := w.epoch(now)
	b := &w.b[e%w.n]
	if failed {
		b.fail.add(e)
	} else {
		b.ok[rand.Uint32()%winStripes].add(e)
	}
	if slow {
		b.slow.add(e)
	}
}

// counts returns the totals of the buckets of the window that ends at now.
func (w *window) counts(now int64) windowCounts {
	hi := w.epoch(now)
	lo := uint64(1)
	if hi > w.n {
		lo = hi - w.n + 1
	}
	var c windowCounts
	for i := range w.b {
		b := &w.b[i]
		for j := range b.ok {
			c.ok += b.ok[j].count(lo, hi)
		}
		c.fail += b.fail.count(lo, hi)
		c.slow += b.slow.count(lo, hi)
	}
	return c
}

// reset empties the window. It must not run concurrently with add (the
// breaker calls it while no call may count).
func (w *window) reset() {
	for i := range w.b {
		b := &w.b[i]
		for j := range b.ok {
			b.ok[j].w.Store(0)
		}
		b.fail.w.Store(0)
		b.slow.w.Store(0)
	}
}
