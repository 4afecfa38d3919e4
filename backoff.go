package retry

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Jitter chooses how a base backoff b = min(InitialBackoff × Multiplier^n,
// MaxBackoff) is randomised into the actual delay. r is uniform in [0, 1).
type Jitter uint8

const (
	// FullJitter, the default: delay = b × r, uniform in [0, b). This is the
	// backoff of gRFC A6 (random(0, current_backoff)) and, in AWS's
	// "Exponential Backoff and Jitter" study, the mode that finishes a
	// contended workload with the fewest calls.
	FullJitter Jitter = iota
	// ProportionalJitter: delay = b × (0.8 + 0.4 r), within ±20% of b, as
	// grpc-go's built-in retry (1.85) and gRPC's connection backoff do. The
	// delay may exceed MaxBackoff by up to 20%.
	ProportionalJitter
	// EqualJitter: delay = b/2 + (b/2) × r, uniform in [b/2, b).
	EqualJitter
	// DecorrelatedJitter: delay = min(MaxBackoff, InitialBackoff + (3 × prev −
	// InitialBackoff) × r), where prev is the previous delay of the call
	// (InitialBackoff before the first retry and after a pushback). It
	// ignores Multiplier.
	DecorrelatedJitter
	// NoJitter: delay = b. Only for tests and single clients: many clients
	// failing together retry together.
	NoJitter
)

// String returns the mode's name, e.g. "full".
func (j Jitter) String() string {
	switch j {
	case FullJitter:
		return "full"
	case ProportionalJitter:
		return "proportional"
	case EqualJitter:
		return "equal"
	case DecorrelatedJitter:
		return "decorrelated"
	case NoJitter:
		return "none"
	}
	return "jitter(" + strconv.Itoa(int(j)) + ")"
}

// baseBackoff returns min(initial × multiplier^n, max) for n ≥ 0. It never
// overflows: once the product passes max (or +Inf for large n) it is max.
func baseBackoff(initial, max time.Duration, multiplier float64, n int) time.Duration {
	f := float64(initial) * math.Pow(multiplier, float64(n))
	if !(f < float64(max)) { // also catches +Inf and NaN
		return max
	}
	return time.Duration(f)
}

// jittered applies mode j to base b. prev is the call's previous delay (for
// DecorrelatedJitter), r a uniform random number in [0, 1).
func jittered(j Jitter, b, initial, max, prev time.Duration, r float64) time.Duration {
	switch j {
	case FullJitter:
		return saturate(float64(b) * r)
	case ProportionalJitter:
		return saturate(float64(b) * (0.8 + 0.4*r))
	case EqualJitter:
		half := float64(b) / 2
		return saturate(half + half*r)
	case DecorrelatedJitter:
		hi := 3 * float64(prev)
		f := float64(initial) + (hi-float64(initial))*r
		if !(f < float64(max)) {
			return max
		}
		if f < float64(initial) {
			return initial
		}
		return time.Duration(f)
	}
	return b
}

// saturate converts f nanoseconds to a Duration, the longest Duration for
// any f at or beyond it (a float64 conversion past MaxInt64 is undefined,
// and on amd64 comes out negative), and 0 for a negative or NaN f.
func saturate(f float64) time.Duration {
	switch {
	case !(f > 0):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(f)
}

// nextDelay returns the delay before the next retry of a call that has
// backed off n times since its start or its last honoured pushback, and
// whose previous delay was prev (0 if none).
func (c *compiled) nextDelay(n int, prev time.Duration) time.Duration {
	if prev <= 0 {
		prev = c.InitialBackoff
	}
	b := baseBackoff(c.InitialBackoff, c.MaxBackoff, c.Multiplier, n)
	if c.Jitter == NoJitter {
		return b
	}
	return jittered(c.Jitter, b, c.InitialBackoff, c.MaxBackoff, prev, c.rand())
}

func randFloat64() float64 { return rand.Float64() }

// clock is the seam through which the package reads time and waits, so tests
// can run backoff, pushback and deadline logic exactly and instantly.
type clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, whichever is first, and
	// returns ctx.Err() in the latter case.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
