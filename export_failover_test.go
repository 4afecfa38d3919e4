package retry

import "time"

// Seams for the failover tests of package retry_test.

// TestClock is a clock the test moves by hand (Sleep moves it too).
type TestClock = fakeClock

// NewTestClock returns a TestClock at the current wall-clock time.
func NewTestClock() *TestClock { return newFakeClock() }

// Advance moves the clock forward by d.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// WithBreakerSeams returns cfg reading clk and, if rand is not nil, rand.
func WithBreakerSeams(cfg BreakerConfig, clk *TestClock, rand func() float64) BreakerConfig {
	cfg.clock = clk
	cfg.rand = rand
	return cfg
}

// FixedRand returns a random source yielding rs in turn, then the last.
func FixedRand(rs ...float64) func() float64 { return fixedRand(rs...) }
