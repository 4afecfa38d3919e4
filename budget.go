package retry

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Budget limits retries across all the calls that share it, so that retrying
// cannot multiply the load on a struggling backend: when most calls fail,
// the budget runs dry and calls fail fast with their own error (Reason
// StopBudget) instead of piling retries on the server.
//
// A Budget is shared state, safe for concurrent use, and costs a few atomic
// operations per call. Share one Budget among the interceptors of a client
// (or of a fleet of connections to one backend) by putting it in their
// Policy. The package's budgets are NewRatioBudget (the default) and
// NewThrottle (gRFC A6 retry throttling); NoBudget turns budgeting off.
type Budget interface {
	// success is told of every call that ends with status OK.
	success()
	// failed is told, at now, of every failed attempt that gRFC A6 counts
	// as a failure for throttling: a retryable class, or a server pushback
	// saying "do not retry". retry reports that the attempt was a retry or
	// a hedge (not a call's first attempt); committed that the call had
	// committed, so it could not have been retried anyway.
	failed(now time.Time, retry, committed bool)
	// tryRetry asks, at now, whether one more attempt (a retry or a hedge)
	// may be sent.
	tryRetry(now time.Time) bool
	validate() error
}

// NoBudget is the Budget that allows every retry: retries are bounded only
// by MaxAttempts and the deadline. At a full outage every call then makes
// MaxAttempts attempts.
var NoBudget Budget = noBudget{}

type noBudget struct{}

func (noBudget) success()                     {}
func (noBudget) failed(time.Time, bool, bool) {}
func (noBudget) tryRetry(time.Time) bool      { return true }
func (noBudget) validate() error              { return nil }

// Default ratio budget: retries are at most 10% of successful calls (the
// Google SRE book's per-client budget), plus one retry every two seconds.
const (
	DefaultBudgetRatio        = 0.1
	DefaultBudgetMinPerSecond = 0.5
)

// ratioBudgetCap is the most retries a RatioBudget holds: the burst a client
// may retry at the start of an outage, and its tolerance of failures that
// come close together. Five is the headroom of gRFC A6's example throttle
// (10 tokens, retries while more than 5).
const ratioBudgetCap = 5

// milli is the fixed-point scale of budget balances: 1000 = one retry.
const milli = 1000

// RatioBudget allows retries up to a fixed fraction of the successful calls,
// plus a small allowance per second so that a client with little traffic
// can still retry (in the spirit of Finagle's RetryBudget and the Google SRE
// book's per-client retry budget):
//
//   - every call that succeeds deposits Ratio of a retry; the balance holds
//     at most 5 retries and starts full, so a new client can retry at once;
//   - a retry is paid from the balance when it holds a whole retry, and
//     otherwise from the allowance of MinPerSecond retries per second
//     (which holds at most one second's worth, at least one retry);
//   - anything else is denied (StopBudget).
//
// Deposits come from successes, not from calls, so that a full outage
// drains the budget instead of feeding it: during an outage a client makes
// about 1 + MinPerSecond/rate attempts per call (rate = its calls per
// second), plus the 5 retries it held when the outage began at most.
// With failures rare (below Ratio of the calls), every failed call is
// retried. Under a heavy but partial failure rate f, it retries about
// Ratio×(1−f) of the calls plus the allowance.
type RatioBudget struct {
	ratio        float64
	minPerSecond float64
	err          error

	ratioMilli int64         // deposit per success
	balance    atomic.Int64  // milli-retries, at most ratioBudgetCap*milli
	interval   time.Duration // between allowance retries; 0: no allowance
	tat        atomic.Int64  // GCRA theoretical arrival time of the allowance (unix ns)
}

// NewRatioBudget returns a budget allowing retries of at most ratio of the
// successful calls (0 < ratio ≤ 1; 0.1 means one retry per ten successes)
// plus minPerSecond retries per second (≥ 0, finite). Invalid arguments are
// reported by Policy.Validate (and make Unary and Stream panic), naming the
// Budget field.
func NewRatioBudget(ratio, minPerSecond float64) *RatioBudget {
	b := &RatioBudget{ratio: ratio, minPerSecond: minPerSecond}
	switch {
	case !(ratio > 0 && ratio <= 1):
		b.err = fmt.Errorf("NewRatioBudget ratio %v: must be in (0, 1]", ratio)
	case !(minPerSecond >= 0) || math.IsInf(minPerSecond, 0):
		b.err = fmt.Errorf("NewRatioBudget minPerSecond %v: must be finite and at least 0", minPerSecond)
	}
	if b.err != nil {
		return b
	}
	b.ratioMilli = int64(math.Round(ratio * milli))
	b.balance.Store(ratioBudgetCap * milli) // a new client may retry at once
	if minPerSecond > 0 {
		b.interval = time.Duration(float64(time.Second) / minPerSecond)
	}
	return b
}

func (b *RatioBudget) validate() error              { return b.err }
func (b *RatioBudget) failed(time.Time, bool, bool) {}

func (b *RatioBudget) success() {
	for {
		old := b.balance.Load()
		if old >= ratioBudgetCap*milli {
			return // full: a plain load, no write, on the healthy path
		}
		if b.balance.CompareAndSwap(old, min(old+b.ratioMilli, ratioBudgetCap*milli)) {
			return
		}
	}
}

func (b *RatioBudget) tryRetry(now time.Time) bool {
	for {
		old := b.balance.Load()
		if old < milli {
			break
		}
		if b.balance.CompareAndSwap(old, old-milli) {
			return true
		}
	}
	return b.takeAllowance(now.UnixNano())
}

// takeAllowance is a GCRA limiter of minPerSecond retries per second with a
// burst of one second's worth (at least one retry).
func (b *RatioBudget) takeAllowance(now int64) bool {
	if b.interval <= 0 {
		return false
	}
	iv := int64(b.interval)
	burst := max(iv, int64(time.Second))
	for {
		tat := b.tat.Load()
		next := max(tat, now) + iv
		if next-now > burst {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// Balance returns the retries the budget holds from deposits (0 to 5), not
// counting the per-second allowance. For tests and metrics.
func (b *RatioBudget) Balance() float64 { return float64(b.balance.Load()) / milli }

// Throttle is gRFC A6 retry throttling, as grpc-go's retryThrottling service
// config: a token bucket of MaxTokens that starts full; every retryable
// failure (and every pushback saying "do not retry") takes one token, every
// successful call gives back TokenRatio, and retries are allowed only while
// the bucket holds more than half of MaxTokens. Unlike a ratio budget it
// stops all retries while failures exceed about TokenRatio/(1+TokenRatio) of
// the calls (9% for A6's example of 10 tokens and 0.1).
type Throttle struct {
	maxTokens, tokenRatio float64
	err                   error

	maxMilli, ratioMilli int64
	tokens               atomic.Int64
}

// NewThrottle returns A6 retry throttling with maxTokens (0 < maxTokens ≤
// 1000) and tokenRatio (0 < tokenRatio ≤ maxTokens), e.g. NewThrottle(10,
// 0.1). Invalid arguments are reported by Policy.Validate.
func NewThrottle(maxTokens, tokenRatio float64) *Throttle {
	t := &Throttle{maxTokens: maxTokens, tokenRatio: tokenRatio}
	switch {
	case !(maxTokens > 0 && maxTokens <= 1000):
		t.err = fmt.Errorf("NewThrottle maxTokens %v: must be in (0, 1000]", maxTokens)
	case !(tokenRatio > 0 && tokenRatio <= maxTokens):
		t.err = fmt.Errorf("NewThrottle tokenRatio %v: must be in (0, maxTokens]", tokenRatio)
	}
	if t.err != nil {
		return t
	}
	t.maxMilli = int64(math.Round(maxTokens * milli))
	t.ratioMilli = int64(math.Round(tokenRatio * milli))
	t.tokens.Store(t.maxMilli)
	return t
}

func (t *Throttle) validate() error { return t.err }

// failed takes a token for a failure, as grpc-go does: a call that had
// committed is not counted.
func (t *Throttle) failed(_ time.Time, _, committed bool) {
	if !committed {
		t.add(-milli)
	}
}

func (t *Throttle) success() { t.add(t.ratioMilli) }

func (t *Throttle) add(d int64) {
	for {
		old := t.tokens.Load()
		v := min(max(old+d, 0), t.maxMilli)
		if v == old || t.tokens.CompareAndSwap(old, v) {
			return
		}
	}
}

func (t *Throttle) tryRetry(time.Time) bool { return t.tokens.Load()*2 > t.maxMilli }

// Tokens returns the tokens in the bucket. For tests and metrics.
func (t *Throttle) Tokens() float64 { return float64(t.tokens.Load()) / milli }
