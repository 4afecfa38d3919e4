package retry

import "time"

// Budget limits retries across all the calls that share it, so that retrying
// cannot multiply the load on a struggling backend: when most calls fail,
// the budget runs dry and calls fail fast with their own error (Reason
// StopBudget) instead of piling retries on the server.
//
// A Budget is shared state, safe for concurrent use, and costs a few atomic
// operations per failed call (a successful call with a full budget makes one
// atomic load). Share one Budget among the interceptors of a client (or of a
// fleet of connections to one backend) by putting it in their Policy. The
// package's budgets are CreditBudget (the default) and NewThrottle (gRFC A6
// retry throttling); NoBudget turns budgeting off.
type Budget interface {
	// success is told of every call that ends with status OK.
	success()
	// failed is told, at now, of every failed attempt that gRFC A6 counts
	// as a failure for throttling: a retryable class, or a server pushback
	// saying "do not retry"; f says what kind of failure it was.
	failed(now time.Time, f attemptFailure)
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

func (noBudget) success()                         {}
func (noBudget) failed(time.Time, attemptFailure) {}
func (noBudget) tryRetry(time.Time) bool          { return true }
func (noBudget) validate() error                  { return nil }

// attemptFailure describes a failed attempt to a Budget.
type attemptFailure struct {
	// retry reports that the attempt was a retry or a hedge (not a call's
	// first attempt).
	retry bool
	// committed reports that the call had committed, so it could not have
	// been retried anyway.
	committed bool
	// timeout reports that the attempt's class is Timeout (it ran out of
	// time).
	timeout bool
	// disconnected reports that the channel had no ready connection right
	// after the attempt failed: it failed for want of a connection, most
	// likely without reaching a server.
	disconnected bool
}

// milli is the fixed-point scale of budget balances: 1000 = one retry.
const milli = 1000
