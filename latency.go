package retry

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// A latency estimator learns, per method, the hedge delay of a Hedging with
// no fixed Delay: the latency beyond which a fraction MaxExtraLoad of the
// method's recent attempts run (Finagle's backup requests use the same
// rule). It learns from attempts that succeeded or ran into the per-attempt
// timeout; fast failures say nothing about how long an answer takes.
//
// Latencies go into a histogram of 8 buckets per power of two, from 1µs to
// about 18 minutes (an error of at most 12.5%), with no ceiling that would
// switch hedging off for multi-second calls. The histogram has two
// generations of window samples each: the estimate covers the last one to
// two windows, so it follows a shift in latency within a window. Recording
// is a few atomic additions; the estimate is recomputed every 16 samples
// and read with one atomic load.
const (
	latencyBucketsPerOctave = 8
	latencyMinOctave        = 10 // 2^10 ns ≈ 1µs
	latencyMaxOctave        = 40 // 2^40 ns ≈ 18 min
	latencyBuckets          = (latencyMaxOctave - latencyMinOctave + 1) * latencyBucketsPerOctave
	latencyWindow           = 1000 // samples per generation
	latencyWarmUp           = 20   // samples before an estimate is used
	latencyRecompute        = 16   // samples between estimates
)

type latencyEstimator struct {
	quantile float64 // 1 - MaxExtraLoad
	minDelay time.Duration

	gens    [2][latencyBuckets]atomic.Uint32
	cur     atomic.Uint32 // the generation being filled: 0 or 1
	inCur   atomic.Int64  // samples in the current generation
	total   atomic.Int64  // samples ever (for the warm-up)
	delay   atomic.Int64  // the estimate in ns; 0 until warm
	tokens  atomic.Int64  // milli-hedges the load guard allows
	deposit int64         // milli-hedges each sample earns: MaxExtraLoad
	windows sync.Mutex    // serialises generation switches
}

// hedgeGuardBurst is how many hedges sent on time the load guard holds.
const hedgeGuardBurst = 5

func newLatencyEstimator(h *Hedging) *latencyEstimator {
	e := &latencyEstimator{quantile: 1 - h.MaxExtraLoad, minDelay: h.MinDelay}
	e.deposit = int64(math.Round(h.MaxExtraLoad * milli))
	e.tokens.Store(hedgeGuardBurst * milli)
	return e
}

// bucketOf returns the histogram bucket of d.
func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	octave := bits.Len64(v) - 1
	switch {
	case octave < latencyMinOctave:
		return 0
	case octave > latencyMaxOctave:
		return latencyBuckets - 1
	}
	sub := int(v>>(octave-3)) & (latencyBucketsPerOctave - 1)
	return (octave-latencyMinOctave)*latencyBucketsPerOctave + sub
}

// bucketTop returns the largest latency in bucket i.
func bucketTop(i int) time.Duration {
	octave := i/latencyBucketsPerOctave + latencyMinOctave
	sub := uint64(i % latencyBucketsPerOctave)
	top := (uint64(latencyBucketsPerOctave)+sub+1)<<(octave-3) - 1
	if top > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(top)
}

// observe records one latency.
func (e *latencyEstimator) observe(d time.Duration) {
	g := e.cur.Load()
	e.gens[g][bucketOf(d)].Add(1)
	if t := e.tokens.Load(); t < hedgeGuardBurst*milli {
		e.tokens.Add(min(e.deposit, hedgeGuardBurst*milli-t))
	}
	total := e.total.Add(1)
	if n := e.inCur.Add(1); n >= latencyWindow {
		e.switchGeneration(g)
	}
	if total >= latencyWarmUp && total%latencyRecompute == 0 || total == latencyWarmUp {
		e.recompute()
	}
}

// switchGeneration starts a new generation in place of the older one.
func (e *latencyEstimator) switchGeneration(from uint32) {
	e.windows.Lock()
	defer e.windows.Unlock()
	if e.cur.Load() != from {
		return // another goroutine switched already
	}
	next := 1 - from
	for i := range e.gens[next] {
		e.gens[next][i].Store(0)
	}
	e.inCur.Store(0)
	e.cur.Store(next)
}

// recompute sets the estimate from both generations.
func (e *latencyEstimator) recompute() {
	var counts [latencyBuckets]uint64
	var n uint64
	for g := range e.gens {
		for i := range e.gens[g] {
			c := uint64(e.gens[g][i].Load())
			counts[i] += c
			n += c
		}
	}
	if n == 0 {
		return
	}
	rank := uint64(math.Ceil(e.quantile * float64(n)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			e.delay.Store(int64(max(bucketTop(i), e.minDelay)))
			return
		}
	}
}

// hedgeDelay returns the learned delay, and false while warming up.
func (e *latencyEstimator) hedgeDelay() (time.Duration, bool) {
	d := e.delay.Load()
	return time.Duration(d), d > 0
}

// allowTimedHedge reports whether a hedge sent on time keeps the method's
// hedges within MaxExtraLoad of its calls: each sample earns MaxExtraLoad of
// a hedge, up to a burst of a few, and each such hedge spends one. So a
// sudden slowdown, before the estimate catches up, does not hedge every
// call. It spends for the hedge if so.
func (e *latencyEstimator) allowTimedHedge() bool {
	for {
		t := e.tokens.Load()
		if t < milli {
			return false
		}
		if e.tokens.CompareAndSwap(t, t-milli) {
			return true
		}
	}
}
