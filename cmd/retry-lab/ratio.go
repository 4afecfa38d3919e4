package main

import (
	"time"

	"github.com/seed4f82f287/retry/internal/seam"
)

// ratioBudget is the package's former default budget, kept in the lab to
// compare with (package retry no longer offers it): every success deposits
// 0.1 retry into a balance of at most 5 that starts full; a retry is paid
// from the balance when it holds a whole retry, and otherwise from an
// allowance of 0.5 retries per second (burst 1, a GCRA limiter); failures
// cost nothing. It is driven from one goroutine, in virtual time.
type ratioBudget struct {
	balance int64 // milli-retries
	tat     int64 // the allowance's theoretical arrival time, unix ns
}

const (
	ratioDeposit  = 100           // milli-retries per success
	ratioCap      = 5000          // milli-retries
	ratioInterval = 2_000_000_000 // ns between allowance retries (0.5/s)
	ratioBurst    = 2_000_000_000 // the allowance's burst: one interval
)

func newRatioBudget() *ratioBudget { return &ratioBudget{balance: ratioCap} }

func (b *ratioBudget) Success() { b.balance = min(b.balance+ratioDeposit, ratioCap) }

func (b *ratioBudget) Failed(time.Time, seam.Failure) {}

func (b *ratioBudget) TryRetry(now time.Time) bool {
	if b.balance >= 1000 {
		b.balance -= 1000
		return true
	}
	t := now.UnixNano()
	next := max(b.tat, t) + ratioInterval
	if next-t > ratioBurst {
		return false
	}
	b.tat = next
	return true
}
