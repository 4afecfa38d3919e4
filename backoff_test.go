package retry

import (
	"math"
	"testing"
	"time"
)

func TestBaseBackoffExact(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		initial, max time.Duration
		mult         float64
		n            int
		want         time.Duration
	}{
		{s, 10 * s, 2, 0, s},
		{s, 10 * s, 2, 1, 2 * s},
		{s, 10 * s, 2, 2, 4 * s},
		{s, 10 * s, 2, 3, 8 * s},
		{s, 10 * s, 2, 4, 10 * s},
		{s, 10 * s, 2, 63, 10 * s},
		{s, 10 * s, 2, 64, 10 * s},
		{s, 10 * s, 2, 1 << 20, 10 * s},     // 2^(1<<20) is +Inf
		{s, 10 * s, 2, math.MaxInt, 10 * s}, // no overflow at the largest n
		{100 * time.Millisecond, s, 1.5, 2, 225 * time.Millisecond},
		{s, s, 1, 1000, s},
		{time.Nanosecond, math.MaxInt64, 10, 30, math.MaxInt64}, // beyond Duration range
	} {
		if got := baseBackoff(tc.initial, tc.max, tc.mult, tc.n); got != tc.want {
			t.Errorf("baseBackoff(%v, %v, %v, %d) = %v, want %v", tc.initial, tc.max, tc.mult, tc.n, got, tc.want)
		}
	}
}

func TestJitterFormulas(t *testing.T) {
	const (
		b       = 800 * time.Millisecond
		initial = 100 * time.Millisecond
		max     = 2 * time.Second
	)
	for _, tc := range []struct {
		j    Jitter
		prev time.Duration
		r    float64
		want time.Duration
	}{
		{FullJitter, 0, 0, 0},
		{FullJitter, 0, 0.5, 400 * time.Millisecond},
		{FullJitter, 0, 0.75, 600 * time.Millisecond},
		{ProportionalJitter, 0, 0, 640 * time.Millisecond},
		{ProportionalJitter, 0, 0.5, 800 * time.Millisecond},
		{ProportionalJitter, 0, 1, 960 * time.Millisecond},
		{EqualJitter, 0, 0, 400 * time.Millisecond},
		{EqualJitter, 0, 0.5, 600 * time.Millisecond},
		{DecorrelatedJitter, initial, 0, initial},
		{DecorrelatedJitter, 300 * time.Millisecond, 0.5, 500 * time.Millisecond}, // 100 + (900-100)/2
		{DecorrelatedJitter, time.Second, 0.99, max},                              // capped
		{NoJitter, 0, 0.3, b},
	} {
		if got := jittered(tc.j, b, initial, max, tc.prev, tc.r); got != tc.want {
			t.Errorf("%v jitter (prev %v, r %v) = %v, want %v", tc.j, tc.prev, tc.r, got, tc.want)
		}
	}
}

func TestNextDelaySequence(t *testing.T) {
	p := Policy{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second, Jitter: FullJitter, rand: fixedRand(0.5)}
	c := mustCompile(p)
	var got []time.Duration
	for n := 0; n < 6; n++ {
		got = append(got, c.nextDelay(n, 0))
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("full-jitter delays with r=0.5: %v, want %v", got, want)
		}
	}

	// Decorrelated: each delay feeds the next; InitialBackoff is the floor.
	c = mustCompile(Policy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: DecorrelatedJitter, rand: fixedRand(0.5, 0.5, 0.5, 1)})
	prev := time.Duration(0)
	var dec []time.Duration
	for n := 0; n < 4; n++ {
		prev = c.nextDelay(n, prev)
		dec = append(dec, prev)
	}
	// 100+(300-100)/2=200; 100+(600-100)/2=350; 100+(1050-100)/2=575; r=1 → 1825 capped to 1000.
	wantDec := []time.Duration{200 * time.Millisecond, 350 * time.Millisecond, 575 * time.Millisecond, time.Second}
	for i := range wantDec {
		if dec[i] != wantDec[i] {
			t.Fatalf("decorrelated delays: %v, want %v", dec, wantDec)
		}
	}
}

func TestJitterStaysInRange(t *testing.T) {
	for j := FullJitter; j <= NoJitter; j++ {
		c := mustCompile(Policy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: time.Second, Jitter: j})
		prev := time.Duration(0)
		for n := 0; n < 200; n++ {
			d := c.nextDelay(n, prev)
			b := baseBackoff(c.InitialBackoff, c.MaxBackoff, c.Multiplier, n)
			lo, hi := time.Duration(0), b
			switch j {
			case ProportionalJitter:
				lo, hi = b*8/10, b*12/10
			case EqualJitter:
				lo = b / 2
			case DecorrelatedJitter:
				lo, hi = c.InitialBackoff, c.MaxBackoff
			case NoJitter:
				lo = b
			}
			if d < lo || d > hi {
				t.Fatalf("%v jitter, n=%d: delay %v outside [%v, %v]", j, n, d, lo, hi)
			}
			prev = d
		}
	}
}

func TestJitterString(t *testing.T) {
	for j, want := range map[Jitter]string{FullJitter: "full", ProportionalJitter: "proportional", EqualJitter: "equal", DecorrelatedJitter: "decorrelated", NoJitter: "none", 9: "jitter(9)"} {
		if got := j.String(); got != want {
			t.Errorf("Jitter(%d).String() = %q, want %q", j, got, want)
		}
	}
}

// TestJitterNeverOverflows takes every mode to the largest MaxBackoff that
// Validate accepts: no delay may come out negative or short, at any n and
// any r (ProportionalJitter multiplies by up to 1.2, past MaxInt64).
func TestJitterNeverOverflows(t *testing.T) {
	for j := FullJitter; j <= NoJitter; j++ {
		for _, r := range []float64{0, 0.5, 0.999999} {
			c := mustCompile(Policy{InitialBackoff: time.Hour, MaxBackoff: math.MaxInt64, Jitter: j, rand: fixedRand(r)})
			prev := time.Duration(0)
			for _, n := range []int{0, 40, 62, 63, 64, 1000, math.MaxInt} {
				d := c.nextDelay(n, prev)
				b := baseBackoff(c.InitialBackoff, c.MaxBackoff, c.Multiplier, n)
				if d < 0 || j == ProportionalJitter && d < b*8/10 || j == EqualJitter && d < b/2 || j == NoJitter && d != b {
					t.Fatalf("%v jitter, r=%v, n=%d: delay %v for base %v", j, r, n, d, b)
				}
				prev = d
			}
		}
	}
}
