package retry

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// fullRecompute is the estimate computed from every bucket of both
// generations: what recompute must find, reading fewer.
func fullRecompute(e *latencyEstimator) (time.Duration, bool) {
	var exact, all [latencyBuckets]uint64
	var n uint64
	for i := range latencyBuckets {
		x, b := e.count(i)
		exact[i], all[i] = x, x+b
		n += x + b
	}
	if n == 0 {
		return 0, false
	}
	rank := uint64(math.Ceil(e.quantile * float64(n)))
	load := 1 - e.quantile
	tolerance := math.Sqrt(float64(n)*load*(1-load)) / 2
	var seen uint64
	for i, c := range all {
		seen += c
		if seen < rank {
			continue
		}
		// The lowest bucket j with at most the tolerance of exact
		// latencies in j+1..i.
		for j := 0; ; j++ {
			var between uint64
			for k := j + 1; k <= i; k++ {
				between += exact[k]
			}
			if float64(between) <= tolerance {
				return max(bucketTop(j), e.minDelay), true
			}
		}
	}
	return 0, false
}

// TestLatencyRecomputeReadsTheWholeHistogramsPercentile: over five windows
// of latencies that shift (fast, then slow with a tail, then fast again),
// some of them lower bounds, and quantiles from p50 to p99.9, the estimate
// after every sample is the one every bucket of both generations gives.
func TestLatencyRecomputeReadsTheWholeHistogramsPercentile(t *testing.T) {
	for _, load := range []float64{0.5, 0.05, 0.001} {
		e := newLatencyEstimator(&Hedging{MaxExtraLoad: load, MinDelay: time.Microsecond})
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 5 * latencyWindow {
			d := time.Duration(50+r.IntN(200)) * time.Microsecond
			if i >= 2*latencyWindow && i < 4*latencyWindow {
				d = time.Duration(5+r.IntN(20)) * time.Millisecond
				if r.IntN(50) == 0 {
					d *= 100
				}
			}
			if r.IntN(20) == 0 {
				e.observeBound(d)
			} else {
				e.observe(d)
			}
			e.recompute() // after every sample, not only every 16
			want, ok := fullRecompute(e)
			if got, _ := e.hedgeDelay(); ok && got != want {
				t.Fatalf("MaxExtraLoad %v, sample %d: estimate %v, the whole histogram says %v", load, i, got, want)
			}
		}
	}
}

// TestLatencyEstimateGap: where the percentile falls in a gap between the
// bulk of the calls and stragglers, whose fastest are few and far apart,
// the delay is the gap's low edge if that hedges at most half a standard
// error more calls (4.9 of 1,999 at MaxExtraLoad 0.05) than the
// percentile's bucket; lower bounds in the gap do not hold it up; exact
// latencies there do.
func TestLatencyEstimateGap(t *testing.T) {
	const (
		n    = 2*latencyWindow - 1 // all in the window
		fast = 100 * time.Millisecond
		slow = time.Second
	)
	bulk := bucketOf(fast)
	// single(k) is the latency of the k-th fastest straggler, each in a
	// bucket of its own (k ≥ 1), from 2.5 times the bulk's latency up.
	single := func(k int) time.Duration { return bucketTop(bulk + 8 + 2*k) }
	// play records the latencies of n calls: singles stragglers, one in
	// each of the buckets single(1...), and slows at 1s; extra at d, lower
	// bounds if bounds; the bulk at 100ms. It returns the bucket of the
	// estimate.
	play := func(singles, slows, extra int, d time.Duration, bounds bool) int {
		t.Helper()
		e := newLatencyEstimator(&Hedging{MaxExtraLoad: 0.05, MinDelay: time.Millisecond})
		for k := 1; k <= singles; k++ {
			e.observe(single(k))
		}
		for range slows {
			e.observe(slow)
		}
		for range extra {
			if bounds {
				e.observeBound(d)
			} else {
				e.observe(d)
			}
		}
		for range n - singles - slows - extra {
			e.observe(fast)
		}
		e.recompute()
		got, ok := e.hedgeDelay()
		if !ok {
			t.Fatal("no estimate")
		}
		return bucketOf(got)
	}
	// The percentile leaves 99 calls above it. 103 stragglers: the 4th
	// fastest holds it; the bulk's top hedges those 4 more.
	if b := play(4, 99, 0, 0, false); b != bulk {
		t.Errorf("4 + 99 stragglers: delay in bucket %d, want the gap's low edge, the bulk's %d", b, bulk)
	}
	// 99 stragglers: the percentile is in the bulk already.
	if b := play(4, 95, 0, 0, false); b != bulk {
		t.Errorf("4 + 95 stragglers: delay in bucket %d, want the bulk's %d", b, bulk)
	}
	// 108: the 9th fastest holds the percentile; below it, 4 of them fit
	// within the tolerance, the 5th does not.
	if b, want := play(9, 99, 0, 0, false), bucketOf(single(5)); b != want {
		t.Errorf("9 + 99 stragglers: delay in bucket %d, want the 5th fastest straggler's %d", b, want)
	}
	// Hedged stragglers came back as lower bounds just above the bulk (a
	// low delay plus the winner's time): they do not hold the delay above
	// them, however many.
	if b := play(0, 0, 119, 150*time.Millisecond, true); b != bulk {
		t.Errorf("119 lower bounds at 150ms: delay in bucket %d, want the bulk's %d", b, bulk)
	}
	// The same latencies, exact: 6% of the calls take 150ms, and the
	// delay stays there.
	if b, want := play(0, 0, 119, 150*time.Millisecond, false), bucketOf(150*time.Millisecond); b != want {
		t.Errorf("119 latencies of 150ms: delay in bucket %d, want theirs, %d", b, want)
	}
}
