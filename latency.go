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
// method's calls run (Finagle's backup requests use the same rule), so that
// hedges sent on time add about that much load. Each successful call gives
// one sample, how long its first attempt took: the winner's time if the
// first attempt won, or, when a hedge sent on time won, the time the first
// attempt had run by then (the hedge's delay plus the winner's time), a
// lower bound of its latency. Learning the winner's time instead would
// never see the slow attempts that hedging cuts short, and bias the delay
// low: more hedges than MaxExtraLoad would be due. An attempt that ran into
// its per-attempt timeout is a sample too; fast failures are not (they say
// nothing about how long an answer takes).
//
// Latencies go into a histogram of 8 buckets per power of two, from 1µs to
// about 18 minutes, with no ceiling that would switch hedging off for
// multi-second calls; each bucket counts exact latencies and lower bounds
// apart. The delay is found in two steps:
//
//   - the bucket that holds the percentile, counting lower bounds where
//     they fall (the rule above);
//   - then, below it, the lowest bucket that leaves at most half a standard
//     error of the count above the percentile, √(n·MaxExtraLoad·(1 −
//     MaxExtraLoad))/2 exact latencies of n (about 5 of 2,000 at the
//     default), between the two. Lower bounds in between do not count:
//     each says that its first attempt ran past the delay its call was
//     hedged at, not whether it would have run past this one.
//
// The second step matters where the percentile falls in a gap between the
// bulk of the calls and a cluster of slow ones (stragglers about as
// frequent as MaxExtraLoad): there, from one window to the next, the
// percentile jumps between the gap's ends with the number of stragglers
// the window happened to draw, and, once the delay is low, the stragglers
// hedged come back as lower bounds just above it (its delay plus the
// winner's time) and each estimate climbs on the last one's bounds. The low
// edge of the gap hedges the same calls, within the sampling error of the
// percentile, and hedges them sooner. Where the percentile falls among many
// calls (a bucket holds more than the tolerance) the delay stays there.
// The tolerance is half a standard error, not a whole one, because each
// hedge due beyond MaxExtraLoad is one the load guard must refuse, to
// whichever call is due next, straggler or not.
//
// The delay is the top of the bucket so found, 0 to 12.5% above its
// latencies, so slightly fewer hedges than MaxExtraLoad are due and the
// load guard (loadGuard) keeps headroom. The histogram has two generations
// of window samples each: the estimate covers the last one to two windows,
// so it follows a shift in latency within a window. Recording is two
// atomic additions (a lock only to switch generations, once per window);
// the estimate is recomputed every 16 samples (reading the buckets from
// the fastest up to the one that holds the percentile, and those the
// second step walks down, not the whole histogram) and read with one
// atomic load.
const (
	latencyBucketsPerOctave = 8
	latencyMinOctave        = 10 // 2^10 ns ≈ 1µs
	latencyMaxOctave        = 40 // 2^40 ns ≈ 18 min
	latencyBuckets          = (latencyMaxOctave - latencyMinOctave + 1) * latencyBucketsPerOctave
	latencyWindow           = 1000 // samples per generation
	latencyWarmUp           = 20   // samples before an estimate is used
	latencyRecompute        = 16   // samples between estimates
)

// A bucket counts exact latencies in its low 16 bits and lower bounds in
// its high 16 bits (a generation holds about latencyWindow samples).
const (
	latencyBound = 1 << 16          // one lower bound
	latencyExact = latencyBound - 1 // the mask of the exact latencies
)

type latencyEstimator struct {
	quantile float64 // the percentile of the delay: 1 - MaxExtraLoad
	minDelay time.Duration

	gens    [2][latencyBuckets]atomic.Uint32 // exact latencies | lower bounds<<16
	cur     atomic.Uint32                    // the generation being filled: 0 or 1
	total   atomic.Int64                     // samples ever (for the warm-up)
	delay   atomic.Int64                     // the estimate in ns; 0 until warm
	windows sync.Mutex                       // serialises generation switches
}

func newLatencyEstimator(h *Hedging) *latencyEstimator {
	return &latencyEstimator{quantile: 1 - h.MaxExtraLoad, minDelay: h.MinDelay}
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
func (e *latencyEstimator) observe(d time.Duration) { e.record(d, 1) }

// observeBound records a lower bound of a latency: a first attempt that
// had run d when a hedge won.
func (e *latencyEstimator) observeBound(d time.Duration) { e.record(d, latencyBound) }

func (e *latencyEstimator) record(d time.Duration, one uint32) {
	g := e.cur.Load()
	e.gens[g][bucketOf(d)].Add(one)
	total := e.total.Add(1)
	if total%latencyWindow == 0 {
		e.switchGeneration(g) // this sample ends a window: the next go to a fresh generation
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
	e.cur.Store(next)
}

// count returns the exact latencies and the lower bounds in bucket i of
// both generations.
func (e *latencyEstimator) count(i int) (exact, bounds uint64) {
	for g := range e.gens {
		v := e.gens[g][i].Load()
		exact += uint64(v & latencyExact)
		bounds += uint64(v >> 16)
	}
	return exact, bounds
}

// recompute sets the estimate from both generations. Their sample count
// follows from the total (the current generation holds the samples since
// the last multiple of latencyWindow, the other a whole window once there
// has been one), so it reads the buckets only from the fastest up to the
// one that holds the percentile, then down from it as far as lowEdge goes.
// (While samples are being recorded concurrently the count can be off by
// the samples in flight; if the rank is not reached, the estimate stays as
// it was.)
func (e *latencyEstimator) recompute() {
	total := e.total.Load()
	n := total % latencyWindow
	if total >= latencyWindow {
		n += latencyWindow
	}
	if n == 0 {
		return
	}
	rank := uint64(math.Ceil(e.quantile * float64(n)))
	var seen uint64
	for i := range latencyBuckets {
		exact, bounds := e.count(i)
		seen += exact + bounds
		if seen >= rank {
			e.delay.Store(int64(max(bucketTop(e.lowEdge(i, n)), e.minDelay)))
			return
		}
	}
}

// lowEdge returns the bucket of the delay, given the bucket i that holds
// the percentile of n samples: the lowest bucket j ≤ i such that the
// buckets j+1 to i hold at most half a standard error of the count above
// the percentile in exact latencies (lower bounds do not count).
func (e *latencyEstimator) lowEdge(i int, n int64) int {
	load := 1 - e.quantile
	tolerance := math.Sqrt(float64(n)*load*(1-load)) / 2
	var passed uint64
	for ; i > 0; i-- {
		exact, _ := e.count(i)
		if passed += exact; float64(passed) > tolerance {
			break
		}
	}
	return i
}

// hedgeDelay returns the learned delay, and false while warming up.
func (e *latencyEstimator) hedgeDelay() (time.Duration, bool) {
	d := e.delay.Load()
	return time.Duration(d), d > 0
}

// A load guard keeps the hedges a method sends on time (not those that
// replace a failed attempt, which the budget pays for like retries) within
// MaxExtraLoad of its calls:
//
//   - each successful call earns MaxExtraLoad of a hedge, up to what
//     hedgeGuardCalls calls earn (10 hedges at the default; it starts
//     full); a hedge sent on time spends one;
//   - once a hedge has been sent on time, further hedges are sent on time
//     only within an eighth of the hedge delay of it (hedges due at once:
//     the slow calls of a fan-out), or after a call of the method has
//     succeeded since.
//
// So a sudden slowdown, before a learned delay catches up, hedges about
// MaxExtraLoad of the calls, not all of them; and a blackhole, where no
// attempt answers and none fails until the caller's deadline (so that the
// budget learns nothing for that long), gets the hedges due at its onset
// and then none, where retrying would spend the budget's credit. In steady
// state it rarely refuses: slightly fewer hedges are due than it earns
// (see latencyEstimator), and successes come between hedges.
//
// It is lock-free: a success with the guard full and no hedge sent since
// the last one makes two atomic loads and writes nothing.
type loadGuard struct {
	tokens  atomic.Int64 // milli-hedges allowed
	since   atomic.Int64 // unix ns of the first hedge sent on time since the last success; 0: none
	deposit int64        // milli-hedges each successful call earns: MaxExtraLoad
	burst   int64        // milli-hedges the guard holds at most
}

// hedgeGuardCalls is how many successful calls' earnings the guard holds:
// 10 hedges at the default MaxExtraLoad.
const hedgeGuardCalls = 200

// hedgeWindow is the share of the hedge delay within which hedges count as
// due at once: 1/hedgeWindow.
const hedgeWindow = 8

func newLoadGuard(h *Hedging) *loadGuard {
	g := &loadGuard{deposit: int64(math.Round(h.MaxExtraLoad * milli))}
	g.burst = max(milli, int64(math.Round(hedgeGuardCalls*h.MaxExtraLoad*milli)))
	g.tokens.Store(g.burst)
	return g
}

// earn records a successful call.
func (g *loadGuard) earn() {
	if g.since.Load() != 0 {
		g.since.Store(0)
	}
	if t := g.tokens.Load(); t < g.burst {
		g.tokens.Add(min(g.deposit, g.burst-t))
	}
}

// allow reports whether a hedge may be sent on time at now by a call whose
// hedge delay is delay, and spends for it if so.
func (g *loadGuard) allow(now time.Time, delay time.Duration) bool {
	t0 := now.UnixNano()
	if first := g.since.Load(); first != 0 && t0-first > int64(delay/hedgeWindow) {
		return false // no success since the last burst of hedges
	}
	for {
		t := g.tokens.Load()
		if t < milli {
			return false
		}
		if g.tokens.CompareAndSwap(t, t-milli) {
			g.since.CompareAndSwap(0, t0)
			return true
		}
	}
}
