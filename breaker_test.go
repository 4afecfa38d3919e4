package retry

import (
	"sync"
	"testing"
	"time"
)

// newTestBreaker returns a breaker on a fake clock with the given random
// draws for its jitter.
func newTestBreaker(t *testing.T, cfg BreakerConfig, rs ...float64) (*Breaker, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg.clock = clk
	if len(rs) == 0 {
		rs = []float64{0.5}
	}
	cfg.rand = fixedRand(rs...)
	b, err := NewBreaker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, clk
}

// record lets one call through b and reports its outcome at once.
func record(t *testing.T, b *Breaker, o BreakerOutcome) {
	t.Helper()
	p, err := b.allow("/s/m")
	if err != nil {
		t.Fatalf("call refused: %v", err)
	}
	p.done(o, 0)
}

func TestBreakerMinCallsAndFailureRate(t *testing.T) {
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 20, FailureRate: 0.5})
	for i := 0; i < 19; i++ {
		record(t, b, BreakerFailure)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened below MinCalls")
	}
	record(t, b, BreakerFailure)
	if b.State() != BreakerOpen {
		t.Fatal("did not open at MinCalls failures")
	}

	b, _ = newTestBreaker(t, BreakerConfig{MinCalls: 20, FailureRate: 0.5})
	for i := 0; i < 11; i++ {
		record(t, b, BreakerSuccess)
	}
	for i := 0; i < 9; i++ {
		record(t, b, BreakerFailure)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened at 9 failures in 20 (45%)")
	}
	record(t, b, BreakerFailure) // 10 of 21 (47.6%)
	if b.State() != BreakerClosed {
		t.Fatal("opened at 10 failures in 21")
	}
	record(t, b, BreakerFailure) // 11 of 22 (50%)
	if b.State() != BreakerOpen {
		t.Fatal("did not open at 50%")
	}
}

// A run of ConsecutiveFailures failures opens the breaker even when the
// window, full of the successes before them, is far from FailureRate; a
// success or a probe cycle resets the run, an ignored call does not.
func TestBreakerConsecutiveFailures(t *testing.T) {
	b, _ := newTestBreaker(t, BreakerConfig{ConsecutiveFailures: 5, MinCalls: 1000})
	for i := 0; i < 100; i++ {
		record(t, b, BreakerSuccess)
	}
	for i := 0; i < 4; i++ {
		record(t, b, BreakerFailure)
	}
	record(t, b, BreakerSuccess)
	for i := 0; i < 4; i++ {
		record(t, b, BreakerFailure)
		record(t, b, BreakerIgnored)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened on 4 failures in a row")
	}
	record(t, b, BreakerFailure)
	if st := b.Stats()[0]; st.State != BreakerOpen || st.Failures != 0 {
		t.Fatalf("%+v: want open after 5 failures in a row", st)
	}

	b, _ = newTestBreaker(t, BreakerConfig{ConsecutiveFailures: -1, MinCalls: 1000})
	for i := 0; i < 500; i++ {
		record(t, b, BreakerFailure)
	}
	if b.State() != BreakerClosed {
		t.Fatal("opened with ConsecutiveFailures off and MinCalls not reached")
	}
}

// Ignored outcomes count neither way, not even towards MinCalls.
func TestBreakerIgnoredOutcomes(t *testing.T) {
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 2})
	for i := 0; i < 100; i++ {
		record(t, b, BreakerIgnored)
	}
	record(t, b, BreakerFailure)
	if st := b.Stats()[0]; st.State != BreakerClosed || st.Successes != 0 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Outcomes older than the window drop out of it, one bucket at a time.
func TestBreakerWindowSlides(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{Window: 10 * time.Second, Buckets: 10, MinCalls: 10})
	for i := 0; i < 9; i++ {
		record(t, b, BreakerFailure)
		clk.Advance(time.Second)
	}
	// Failures at t = 0..8s; now t = 9s: all 9 in the window.
	if st := b.Stats()[0]; st.Failures != 9 {
		t.Fatalf("window holds %d failures, want 9", st.Failures)
	}
	clk.Advance(time.Second) // t = 10s: the failure at 0s has left
	if st := b.Stats()[0]; st.Failures != 8 {
		t.Fatalf("window holds %d failures at 10s, want 8", st.Failures)
	}
	record(t, b, BreakerFailure) // 9 in the window: still below MinCalls
	if b.State() != BreakerClosed {
		t.Fatal("opened on failures that had left the window")
	}
	record(t, b, BreakerFailure)
	if b.State() != BreakerOpen {
		t.Fatal("did not open at 10 failures in the window")
	}
	clk.Advance(time.Hour)
	if st := b.Stats()[0]; st.State != BreakerOpen {
		t.Fatalf("state %v", st.State)
	}
}

// The open period is OpenFor × (1 + Jitter × (r − 0.5)): with the default
// jitter, from 0.75 to 1.25 × OpenFor, so a fleet's probes spread out; it
// doubles while probes fail, up to MaxOpenFor.
func TestBreakerOpenPeriodJitterAndGrowth(t *testing.T) {
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{
		{0, 7500 * time.Millisecond},
		{0.5, 10 * time.Second},
		{0.999, 12495 * time.Millisecond},
	} {
		b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 1, OpenFor: 10 * time.Second}, tc.r)
		start := clk.Now()
		record(t, b, BreakerFailure)
		st := b.Stats()[0]
		if got := st.Until.Sub(start); got != tc.want {
			t.Errorf("r=%v: open for %v, want %v", tc.r, got, tc.want)
		}
		clk.Advance(tc.want - time.Nanosecond)
		if _, err := b.allow("/s/m"); !IsBreakerOpen(err) {
			t.Errorf("r=%v: a probe went %v before the period ended", tc.r, time.Nanosecond)
		}
		clk.Advance(time.Nanosecond)
		if p, err := b.allow("/s/m"); err != nil || !p.probe {
			t.Errorf("r=%v: no probe at the end of the period: %v", tc.r, err)
		}
	}

	// Without jitter, periods double while probes fail, capped by
	// MaxOpenFor, and closing restores OpenFor.
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 1, OpenFor: time.Second, MaxOpenFor: 5 * time.Second, Jitter: -1, Probes: 1})
	record(t, b, BreakerFailure)
	var periods []time.Duration
	for i := 0; i < 5; i++ {
		until := b.Stats()[0].Until
		periods = append(periods, until.Sub(clk.Now()))
		clk.Advance(until.Sub(clk.Now()))
		p, err := b.allow("/s/m")
		if err != nil || !p.probe {
			t.Fatalf("no probe after period %d: %v", i, err)
		}
		p.done(BreakerFailure, 0)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if periods[i] != want[i] {
			t.Fatalf("open periods %v, want %v", periods, want)
		}
	}
	clk.Advance(5 * time.Second)
	p, _ := b.allow("/s/m")
	p.done(BreakerSuccess, 0)
	if b.State() != BreakerClosed {
		t.Fatal("did not close")
	}
	record(t, b, BreakerFailure)
	if got := b.Stats()[0].Until.Sub(clk.Now()); got != time.Second {
		t.Fatalf("open for %v after closing, want OpenFor again", got)
	}
}

// A fleet of breakers that open at the same moment probe at different
// times: the jitter comes from each breaker's own random source.
func TestBreakerProbesSpreadAcrossAFleet(t *testing.T) {
	seen := map[time.Time]bool{}
	for i := 0; i < 20; i++ {
		b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1}, float64(i)/20)
		record(t, b, BreakerFailure)
		seen[b.Stats()[0].Until.Truncate(time.Millisecond)] = true
	}
	if len(seen) < 20 {
		t.Fatalf("20 breakers probe at %d distinct times", len(seen))
	}
}

// Half-open lets one probe through at a time and refuses the rest; an
// ignored probe lets the next call probe; Probes successes in a row close
// it; a probe that never answers stops blocking the next after OpenFor.
func TestBreakerHalfOpenProbes(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 1, OpenFor: time.Second, Probes: 2})
	record(t, b, BreakerFailure)
	clk.Advance(time.Second)
	p1, err1 := b.allow("/s/m")
	_, err2 := b.allow("/s/m")
	if err1 != nil || !p1.probe {
		t.Fatalf("probe refused: %v", err1)
	}
	if be, ok := err2.(*BreakerOpenError); !ok || be.State != BreakerHalfOpen {
		t.Fatalf("second call while a probe is in flight: %v", err2)
	}
	p1.done(BreakerIgnored, 0)
	p2, err := b.allow("/s/m")
	if err != nil || !p2.probe {
		t.Fatalf("an ignored probe did not let the next call probe: %v", err)
	}
	p2.done(BreakerSuccess, 0)
	if b.State() != BreakerHalfOpen {
		t.Fatal("closed after one success of two")
	}
	p3, err := b.allow("/s/m")
	if err != nil {
		t.Fatalf("no probe after a successful one: %v", err)
	}
	// p3 never answers; the next call is refused until OpenFor has passed
	// since it went.
	clk.Advance(time.Second - time.Nanosecond)
	if _, err := b.allow("/s/m"); err == nil {
		t.Fatal("let a second probe in flight")
	}
	clk.Advance(time.Nanosecond)
	p4, err := b.allow("/s/m")
	if err != nil || !p4.probe {
		t.Fatalf("a probe unanswered for OpenFor still blocks the next: %v", err)
	}
	p4.done(BreakerSuccess, 0)
	if b.State() != BreakerClosed {
		t.Fatalf("state %v after two successful probes in a row", b.State())
	}
	p3.done(BreakerFailure, 0) // from the half-open period that has ended
	if b.State() != BreakerClosed {
		t.Fatal("a stale probe reopened the breaker")
	}
}

// Probe outcomes from an earlier half-open period, and outcomes of calls
// let through before the breaker opened, change nothing.
func TestBreakerStaleOutcomes(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 2, OpenFor: time.Second, Probes: 1})
	early, _ := b.allow("/s/m") // in flight while the breaker opens
	record(t, b, BreakerFailure)
	record(t, b, BreakerFailure)
	if b.State() != BreakerOpen {
		t.Fatal("not open")
	}
	early.done(BreakerSuccess, 0)
	clk.Advance(time.Second)
	old, _ := b.allow("/s/m")
	old.done(BreakerFailure, 0) // reopens (period 2s)
	clk.Advance(2 * time.Second)
	p, err := b.allow("/s/m")
	if err != nil {
		t.Fatal(err)
	}
	old.done(BreakerSuccess, 0) // from the previous half-open period
	if b.State() != BreakerHalfOpen {
		t.Fatalf("a stale probe outcome moved the breaker to %v", b.State())
	}
	p.done(BreakerSuccess, 0)
	if st := b.Stats()[0]; st.State != BreakerClosed || st.Successes != 0 || st.Failures != 0 {
		t.Fatalf("after closing: %+v, want a fresh window", st)
	}
}

// Slow calls open the breaker at SlowRate, successes included; a slow probe
// reopens it.
func TestBreakerSlowCalls(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 4, SlowCall: time.Second, SlowRate: 0.5, OpenFor: time.Second, Probes: 1})
	done := func(o BreakerOutcome, latency time.Duration) {
		p, err := b.allow("/s/m")
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(latency)
		p.done(o, 0)
	}
	done(BreakerSuccess, 999*time.Millisecond)
	done(BreakerSuccess, 999*time.Millisecond)
	done(BreakerSuccess, time.Second)
	if b.State() != BreakerClosed {
		t.Fatal("opened below MinCalls")
	}
	done(BreakerIgnored, 2*time.Second) // an ignored call is never slow
	if st := b.Stats()[0]; st.Slow != 1 {
		t.Fatalf("slow count %d", st.Slow)
	}
	done(BreakerSuccess, 2*time.Second)
	if b.State() != BreakerOpen {
		t.Fatal("did not open at 2 slow calls of 4")
	}
	clk.Advance(time.Second)
	done(BreakerSuccess, 3*time.Second)
	if b.State() != BreakerOpen {
		t.Fatal("a slow successful probe closed the breaker")
	}

	// A stream's latency ends at its first response message.
	clk.Advance(2 * time.Second)
	p, _ := b.allow("/s/m")
	clk.Advance(500 * time.Millisecond)
	p.responded()
	clk.Advance(time.Hour)
	p.done(BreakerSuccess, 0)
	if st := b.Stats()[0]; st.State != BreakerClosed {
		t.Fatalf("%+v: a stream that answered in 500ms and then ran an hour was slow", st)
	}

	// Without SlowCall, latency does not matter.
	b, clk = newTestBreaker(t, BreakerConfig{MinCalls: 1})
	p, _ = b.allow("/s/m")
	clk.Advance(time.Hour)
	p.done(BreakerSuccess, 0)
	if st := b.Stats()[0]; st.State != BreakerClosed || st.Slow != 0 {
		t.Fatalf("%+v", st)
	}
}

// A failure's pushback holds an open breaker at least that long, capped
// by MaxPushback; a success's pushback (none in practice) or an ignored
// call's does not.
func TestBreakerPushbackHold(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 2, OpenFor: time.Second, MaxPushback: time.Minute})
	start := clk.Now()
	p, _ := b.allow("/s/m")
	p.done(BreakerIgnored, time.Hour)
	p, _ = b.allow("/s/m")
	p.done(BreakerFailure, time.Hour) // capped at a minute
	record(t, b, BreakerFailure)
	st := b.Stats()[0]
	if st.State != BreakerOpen || st.Until.Sub(start) != time.Minute {
		t.Fatalf("%+v: want open until the capped pushback, 1m", st)
	}
	clk.Advance(time.Minute - time.Nanosecond)
	if _, err := b.allow("/s/m"); err == nil {
		t.Fatal("probed during the pushback")
	}
	clk.Advance(time.Nanosecond)
	p, err := b.allow("/s/m")
	if err != nil {
		t.Fatal(err)
	}
	// A closing breaker forgets the hold.
	for i := 0; i < DefaultBreakerProbes; i++ {
		if i > 0 {
			p, _ = b.allow("/s/m")
		}
		p.done(BreakerSuccess, 0)
	}
	if b.State() != BreakerClosed {
		t.Fatal("not closed")
	}
	record(t, b, BreakerFailure)
	record(t, b, BreakerFailure)
	if got := b.Stats()[0].Until.Sub(clk.Now()); got != time.Second {
		t.Fatalf("reopened for %v, want OpenFor: the old pushback is forgotten", got)
	}
}

func TestBreakerDefaults(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := b.Config()
	if c.Window != 10*time.Second || c.Buckets != 10 || c.MinCalls != 20 || c.FailureRate != 0.5 || c.SlowRate != 0.5 ||
		c.OpenFor != 5*time.Second || c.MaxOpenFor != 5*time.Second || c.Jitter != 0.5 || c.Probes != 3 || c.MaxPushback != 5*time.Minute ||
		c.ConsecutiveFailures != 20 {
		t.Fatalf("defaults %+v", c)
	}
	if c, _ := NewBreaker(BreakerConfig{MaxOpenFor: time.Second}); c.Config().OpenFor != time.Second {
		t.Fatalf("OpenFor with MaxOpenFor 1s: %v", c.Config().OpenFor)
	}
	if c, _ := NewBreaker(BreakerConfig{OpenFor: 2 * time.Minute}); c.Config().MaxOpenFor != 2*time.Minute {
		t.Fatalf("MaxOpenFor with OpenFor 2m: %v", c.Config().MaxOpenFor)
	}
	if c, _ := NewBreaker(BreakerConfig{Jitter: -1, ConsecutiveFailures: -1}); c.Config().Jitter != 0 || c.Config().ConsecutiveFailures != 0 {
		t.Fatal("negative jitter or ConsecutiveFailures is not off")
	}
}

// Concurrent calls through a closed breaker at one instant are all
// counted, none lost, with no lock on their path.
func TestBreakerConcurrentCounts(t *testing.T) {
	b, _ := newTestBreaker(t, BreakerConfig{MinCalls: 1 << 30, ConsecutiveFailures: -1})
	const goroutines, each = 64, 200
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				p, err := b.allow("/s/m")
				if err != nil {
					t.Error(err)
					return
				}
				o := BreakerSuccess
				if (g+i)%4 == 0 {
					o = BreakerFailure
				}
				p.done(o, 0)
			}
		}(g)
	}
	wg.Wait()
	st := b.Stats()[0]
	if st.Successes+st.Failures != goroutines*each || st.Failures != goroutines*each/4 {
		t.Fatalf("counted %d successes and %d failures, want %d and %d", st.Successes, st.Failures, goroutines*each*3/4, goroutines*each/4)
	}
}

// Concurrent calls through a breaker that opens, probes and closes under
// them: for the race detector, and to check that it ends in a valid state.
func TestBreakerConcurrentTransitions(t *testing.T) {
	b, clk := newTestBreaker(t, BreakerConfig{MinCalls: 5, OpenFor: time.Millisecond, Probes: 2})
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				if i%10 == 0 {
					clk.Advance(time.Millisecond)
				}
				p, err := b.allow("/s/m")
				if err != nil {
					continue
				}
				o := BreakerSuccess
				if (g*7+i)%3 != 0 {
					o = BreakerFailure
				}
				p.done(o, 0)
			}
		}(g)
	}
	wg.Wait()
	st := b.Stats()[0]
	if st.State > BreakerHalfOpen || st.Opened == 0 {
		t.Fatalf("%+v", st)
	}
}

func TestWindowCounterSaturatesAndDropsStale(t *testing.T) {
	var c counter
	c.add(5)
	c.add(5)
	if n := c.count(5, 5); n != 2 {
		t.Fatalf("count %d", n)
	}
	c.add(4) // a late sample for an older bucket
	if n := c.count(5, 5); n != 2 {
		t.Fatalf("a stale sample counted: %d", n)
	}
	c.add(7) // the bucket is reused: counting restarts
	if c.count(5, 5) != 0 || c.count(7, 7) != 1 {
		t.Fatal("reused bucket kept its old count")
	}
	c.w.Store(7<<countBits | (countMask - 1))
	c.add(7)
	c.add(7)
	if n := c.count(7, 7); n != countMask {
		t.Fatalf("count %d, want saturation at %d", n, countMask)
	}
}
