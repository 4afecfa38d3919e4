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
		return 0, false
	}
	rank := uint64(math.Ceil(e.quantile * float64(n)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return max(bucketTop(i), e.minDelay), true
		}
	}
	return 0, false
}

// TestLatencyRecomputeReadsTheWholeHistogramsPercentile: over five windows
// of latencies that shift (fast, then slow with a tail, then fast again)
// and quantiles from p50 to p99.9, the estimate after every sample is the
// percentile of every bucket of both generations.
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
			e.observe(d)
			e.recompute() // after every sample, not only every 16
			want, ok := fullRecompute(e)
			if got, _ := e.hedgeDelay(); ok && got != want {
				t.Fatalf("MaxExtraLoad %v, sample %d: estimate %v, the whole histogram says %v", load, i, got, want)
			}
		}
	}
}
