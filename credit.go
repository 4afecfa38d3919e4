package retry

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// CreditBudgetConfig sets up a CreditBudget. Zero fields take the defaults
// of the package's default budget (see DefaultCreditBudget).
type CreditBudgetConfig struct {
	// Ratio is the credit, in retries, that each successful call earns
	// (default 0.1: one failed retry paid per ten successes). Must be in
	// [0, 1]; set NoDeposits to make it 0.
	Ratio float64
	// PerSecond is the credit, in retries per second, that the budget earns
	// with or without traffic, so that a quiet client can retry a blip
	// (default 0.05: one failed retry paid per 20 s). Must be finite and
	// at least 0; set NoFloor to make it 0.
	PerSecond float64
	// Max is the most credit the budget holds, in retries (default 3). It
	// starts full. Must be finite and at least 1.
	Max float64
	// MaxDebt is how far below zero the balance may fall (default 20
	// retries): failed retries beyond it are forgiven, so that recovering
	// from a burst never takes longer than earning MaxDebt back. Must be
	// finite and at least 0; set NoDebt to make it 0.
	MaxDebt float64
	// NoDeposits, NoFloor and NoDebt turn Ratio, PerSecond and MaxDebt
	// off (0, which otherwise means the default). Each is an error
	// together with a non-zero value of the field it turns off.
	NoDeposits, NoFloor, NoDebt bool
}

// CreditBudget is the default Budget. A retry is sent on credit and paid for
// only if it fails: a retry that succeeds costs nothing.
//
//   - A retry (or hedge) is allowed while the balance is above zero.
//   - Each retry that fails (with a retryable class) takes one retry from
//     the balance, which may go below zero, down to -MaxDebt.
//   - While the balance is at or below zero, a first attempt that runs out
//     of time (class Timeout) takes one retry too.
//   - Each successful call earns Ratio of a retry, and the budget earns
//     PerSecond retries per second on its own, up to Max.
//   - A failure after which the channel has no ready connection (it is
//     connecting, idle or in transient failure) costs nothing: the attempt
//     found no connection, or lost it, so it put no load on a server, and
//     the next retry waits for a connection before it is sent
//     (Policy.ConnectWait). During a restart a channel can still report a
//     connection for a moment after it closed; the retries sent in that
//     moment fail at once, and charging them would empty the budget just
//     when the retries that wait for the server are about to succeed.
//
// So a transient partial failure (a replica lost with calls in flight, a
// restart, a blip) is retried in full however many calls it hits, because
// retries that succeed cost nothing; while a sustained outage, where every
// retry fails, drains the balance and holds retries to what deposits and
// the floor pay for: about Ratio of the successful calls plus PerSecond per
// second.
//
// What it costs, measured with the module's policy lab (go run
// ./cmd/retry-lab: 50 clients, each with its own default budget,
// MaxAttempts 4, 1 s calls):
//
//   - An outage's onset. Until retries have failed, the budget cannot tell
//     the outage from a burst of transient failures: each call in flight
//     at the onset is allowed a retry, and the credit held pays for about
//     Max more. The onset costs about the calls in flight plus Max retries
//     per client: 3.7, 22.1 and 202.1 retries more than the steady state
//     with 1, 20 and 200 calls in flight. After that, retries are held to
//     what the floor pays for.
//   - The time after a sustained outage. The outage leaves the balance in
//     debt, down to -MaxDebt, and nothing is retried until successes and
//     the floor have paid it back: about 10 s at 1 to 20 calls per second,
//     2 s at 200.
//   - Heavy failure. Retries that fail are paid from deposits: at 20
//     calls per second with half of all attempts failing at random, 55.44%
//     of calls succeed (93.72% without a budget, at 1.88 attempts per call
//     against 1.11).
//   - The timeout rule's price (below). When the failures are timeouts, the
//     budget stays closed once they outnumber what successes pay for: with
//     20% of attempts timing out, 91.94% of calls succeed, against 99.18%
//     when the same failures fail fast.
//
// The timeout rule is for overload: a retry that times out is charged only
// a whole per-attempt timeout after it was allowed, and a busy client would
// send many retries on the same credit meanwhile, keeping an overloaded
// server overloaded. A first attempt's timeout is known at once; charging
// it while the budget is in debt keeps retries off until successes
// outweigh timeouts. While in credit it costs nothing, so a replica that
// hangs (instead of failing fast) is still retried in full.
//
// It is safe for concurrent use and lock-free: a call that succeeds while
// the balance is full makes one atomic load and writes nothing, so calls on
// many cores do not contend for its memory.
type CreditBudget struct {
	cfg CreditBudgetConfig
	err error

	ratio      int64 // milli-retries per success
	maxBalance int64 // milli-retries
	minBalance int64 // milli-retries, ≤ 0
	nsPerMilli int64 // the floor earns one milli-retry every nsPerMilli ns; 0: no floor
	fillSpan   int64 // ns of floor credit that fill the balance from its lowest

	balance counted // milli-retries
	earned  counted // unix ns up to which the floor has been paid in; notEarned: not yet
}

// counted is an atomic int64 whose writes tests can count. Its writes are
// the only ones to a CreditBudget's shared memory after construction.
type counted struct {
	v      atomic.Int64
	writes *atomic.Int64 // set by tests only: counts Store and CompareAndSwap calls (successful or not)
}

func (c *counted) Load() int64 { return c.v.Load() }

func (c *counted) Store(x int64) {
	c.wrote()
	c.v.Store(x)
}

func (c *counted) CompareAndSwap(old, x int64) bool {
	c.wrote()
	return c.v.CompareAndSwap(old, x)
}

func (c *counted) wrote() {
	if c.writes != nil {
		c.writes.Add(1)
	}
}

// notEarned marks a budget whose floor has not been paid in yet.
const notEarned = math.MinInt64

// Defaults of the default CreditBudget.
const (
	DefaultCreditRatio     = 0.1
	DefaultCreditPerSecond = 0.05
	DefaultCreditMax       = 3
	DefaultCreditMaxDebt   = 20
)

// DefaultCreditBudget returns a new budget with the defaults, the budget a
// Policy with a nil Budget gets: NewCreditBudget(CreditBudgetConfig{}).
func DefaultCreditBudget() *CreditBudget { return NewCreditBudget(CreditBudgetConfig{}) }

// NewCreditBudget returns a CreditBudget set up by cfg, full. Invalid values
// are reported by Policy.Validate (and make Unary and Stream panic), naming
// the Budget field and the rule.
func NewCreditBudget(cfg CreditBudgetConfig) *CreditBudget {
	if cfg.Ratio == 0 && !cfg.NoDeposits {
		cfg.Ratio = DefaultCreditRatio
	}
	if cfg.PerSecond == 0 && !cfg.NoFloor {
		cfg.PerSecond = DefaultCreditPerSecond
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultCreditMax
	}
	if cfg.MaxDebt == 0 && !cfg.NoDebt {
		cfg.MaxDebt = DefaultCreditMaxDebt
	}
	b := &CreditBudget{cfg: cfg}
	switch {
	case cfg.NoDeposits && cfg.Ratio != 0:
		b.err = fmt.Errorf("CreditBudgetConfig.Ratio %v: must be 0 with NoDeposits", cfg.Ratio)
	case cfg.NoFloor && cfg.PerSecond != 0:
		b.err = fmt.Errorf("CreditBudgetConfig.PerSecond %v: must be 0 with NoFloor", cfg.PerSecond)
	case cfg.NoDebt && cfg.MaxDebt != 0:
		b.err = fmt.Errorf("CreditBudgetConfig.MaxDebt %v: must be 0 with NoDebt", cfg.MaxDebt)
	case !(cfg.Ratio >= 0 && cfg.Ratio <= 1):
		b.err = fmt.Errorf("CreditBudgetConfig.Ratio %v: must be in [0, 1]", cfg.Ratio)
	case !(cfg.PerSecond >= 0) || math.IsInf(cfg.PerSecond, 0):
		b.err = fmt.Errorf("CreditBudgetConfig.PerSecond %v: must be finite and at least 0", cfg.PerSecond)
	case !(cfg.Max >= 1) || cfg.Max > 1e9:
		b.err = fmt.Errorf("CreditBudgetConfig.Max %v: must be in [1, 1e9]", cfg.Max)
	case !(cfg.MaxDebt >= 0) || cfg.MaxDebt > 1e9:
		b.err = fmt.Errorf("CreditBudgetConfig.MaxDebt %v: must be in [0, 1e9]", cfg.MaxDebt)
	}
	if b.err != nil {
		return b
	}
	b.ratio = int64(math.Round(cfg.Ratio * milli))
	b.maxBalance = int64(math.Round(cfg.Max * milli))
	b.minBalance = -int64(math.Round(cfg.MaxDebt * milli))
	if perMilli := cfg.PerSecond * milli; perMilli > 0 {
		b.nsPerMilli = max(1, int64(min(float64(time.Second)/perMilli, math.MaxInt64/4)))
		if span := b.maxBalance - b.minBalance; span > 0 && b.nsPerMilli > math.MaxInt64/span {
			b.fillSpan = math.MaxInt64
		} else {
			b.fillSpan = span * b.nsPerMilli
		}
	}
	b.balance.Store(b.maxBalance)
	b.earned.Store(notEarned)
	return b
}

// Config returns the budget's settings, defaults filled in.
func (b *CreditBudget) Config() CreditBudgetConfig { return b.cfg }

// String describes the budget by its settings, defaults filled in (as in
// the error of Policy.Validate).
func (b *CreditBudget) String() string { return fmt.Sprintf("CreditBudget%+v", b.cfg) }

func (b *CreditBudget) validate() error { return b.err }

func (b *CreditBudget) success() {
	if b.ratio == 0 || b.balance.Load() >= b.maxBalance {
		return // full: a plain load, no write, on the healthy path
	}
	b.add(b.ratio)
}

func (b *CreditBudget) failed(now time.Time, f attemptFailure) {
	if !f.retry && !f.timeout {
		return // a first attempt's fast failure is not charged: only retries are on credit
	}
	if f.disconnected {
		return // no connection: it put no load on a server
	}
	b.earn(now.UnixNano())
	if !f.retry && b.balance.Load() > 0 {
		return // a first attempt's timeout is charged only while in debt
	}
	b.add(-milli)
}

func (b *CreditBudget) tryRetry(now time.Time) bool {
	b.earn(now.UnixNano())
	return b.balance.Load() > 0
}

// add moves the balance by d, within [minBalance, maxBalance].
func (b *CreditBudget) add(d int64) {
	for {
		old := b.balance.Load()
		v := min(max(old+d, b.minBalance), b.maxBalance)
		if v == old || b.balance.CompareAndSwap(old, v) {
			return
		}
	}
}

// earn pays in the floor's credit for the time up to now. Only the
// goroutine that moves the earned mark pays for that span, so no span is
// paid twice.
func (b *CreditBudget) earn(now int64) {
	if b.nsPerMilli == 0 {
		return
	}
	for {
		mark := b.earned.Load()
		if mark == notEarned || now-mark > b.fillSpan {
			// First use, or long enough ago to fill any balance: start
			// counting from now (filling it if it was not the first use).
			if b.earned.CompareAndSwap(mark, now) {
				if mark != notEarned {
					b.add(b.maxBalance - b.minBalance)
				}
				return
			}
			continue
		}
		n := (now - mark) / b.nsPerMilli
		if n <= 0 {
			return
		}
		if b.earned.CompareAndSwap(mark, mark+n*b.nsPerMilli) {
			b.add(n)
			return
		}
	}
}

// Balance returns the credit the budget holds, in retries (negative when
// failed retries have put it in debt). For tests and metrics.
func (b *CreditBudget) Balance() float64 { return float64(b.balance.Load()) / milli }
