package main

import (
	"math"
	"time"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/internal/seam"
)

// timeoutRule is a rule for charging a first attempt that fails with class
// Timeout (the per-attempt timeout fired, or the server's own
// DeadlineExceeded) one retry, as a failed retry is.
type timeoutRule uint8

const (
	// timeoutsFree never charges a first attempt: CreditBudget's rules
	// without its timeout rule.
	timeoutsFree timeoutRule = iota
	// timeoutsInDebt charges a first attempt's timeout only while the
	// balance is at or below zero, after the floor's credit for the time
	// so far is paid in: CreditBudget's own rule.
	timeoutsInDebt
	// timeoutsAlways charges every first attempt's timeout.
	timeoutsAlways
)

// creditProto is retry.CreditBudget with a choice of timeout rule, played in
// the lab through the internal seam to compare the rules. With
// timeoutsInDebt it is CreditBudget, rule for rule (the lab's tests check
// that both give the same numbers).
//
// Why a rule for timeouts: the budget learns that a retry failed only when
// its failure comes back. A fast failure comes back in a millisecond, but a
// timed-out retry comes back a whole PerAttemptTimeout later, and until
// then every call that fails may retry on the same credit. Under overload,
// each time the balance climbs back above zero, a client sends about (its
// calls per second) × PerAttemptTimeout × (fraction timing out) retries
// before the first charge arrives; MaxDebt then forgives all but MaxDebt
// of them, so the budget keeps re-opening and a busy client holds the
// server in its overloaded state (scenario E at 10 × 100 calls/s). A first
// attempt's timeout is known when the decision is made; charging it while
// the budget is in debt keeps the budget closed until successes outweigh
// timeouts, whatever the client's rate. While the budget is in credit
// nothing changes, so a partial failure that hangs instead of failing
// fast (scenario A') is still retried in full; timeoutsAlways would refuse
// those retries, as gRFC A6 throttling does.
type creditProto struct {
	rule timeoutRule

	ratio, maxBalance, minBalance int64 // milli-retries
	nsPerMilli, fillSpan          int64
	balance, earned               int64

	started bool // earned is set
}

func newCreditProto(cfg retry.CreditBudgetConfig, rule timeoutRule) *creditProto {
	cfg = retry.NewCreditBudget(cfg).Config() // the defaults filled in
	b := &creditProto{
		rule:       rule,
		ratio:      int64(math.Round(cfg.Ratio * 1000)),
		maxBalance: int64(math.Round(cfg.Max * 1000)),
		minBalance: -int64(math.Round(cfg.MaxDebt * 1000)),
	}
	if perMilli := cfg.PerSecond * 1000; perMilli > 0 {
		b.nsPerMilli = max(1, int64(min(float64(time.Second)/perMilli, math.MaxInt64/4)))
		if span := b.maxBalance - b.minBalance; span > 0 && b.nsPerMilli > math.MaxInt64/span {
			b.fillSpan = math.MaxInt64
		} else {
			b.fillSpan = span * b.nsPerMilli
		}
	}
	b.balance = b.maxBalance
	return b
}

func (b *creditProto) Success() {
	if b.ratio == 0 || b.balance >= b.maxBalance {
		return
	}
	b.add(b.ratio)
}

func (b *creditProto) Failed(now time.Time, f seam.Failure) {
	if !f.Retry && (!f.Timeout || b.rule == timeoutsFree) || f.Disconnected {
		return
	}
	b.earn(now.UnixNano())
	if !f.Retry && b.rule == timeoutsInDebt && b.balance > 0 {
		return
	}
	b.add(-1000)
}

func (b *creditProto) TryRetry(now time.Time) bool {
	b.earn(now.UnixNano())
	return b.balance > 0
}

func (b *creditProto) add(d int64) {
	b.balance = min(max(b.balance+d, b.minBalance), b.maxBalance)
}

func (b *creditProto) earn(now int64) {
	if b.nsPerMilli == 0 {
		return
	}
	if !b.started || now-b.earned > b.fillSpan {
		if b.started {
			b.add(b.maxBalance - b.minBalance)
		}
		b.earned, b.started = now, true
		return
	}
	if n := (now - b.earned) / b.nsPerMilli; n > 0 {
		b.earned += n * b.nsPerMilli
		b.add(n)
	}
}
