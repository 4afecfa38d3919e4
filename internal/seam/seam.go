// Package seam gives code inside this module, and only there, the decision
// code of package retry with its clock, random source and budget supplied
// by the caller. The policy lab (cmd/retry-lab) uses it to drive the real
// Decider in virtual time; package retry fills it in from an init function,
// so importing package retry is enough to make NewDecider work.
//
// It widens nothing in retry's public API: Go allows internal packages to be
// imported only from within this module.
package seam

import (
	"errors"
	"time"

	"github.com/seed4f82f287/retry/interceptor"
)

// Budget is a retry budget implemented outside package retry (a prototype,
// say). Its methods are called exactly where package retry calls its own
// budget's: Success once per call that ends OK, Failed once per failed
// attempt that counts for budgeting (see retry.Budget), TryRetry once per
// retry the decision code is about to allow. It need not be safe for
// concurrent use if the Decider is driven from one goroutine.
type Budget interface {
	Success()
	Failed(now time.Time, f Failure)
	TryRetry(now time.Time) bool
}

// Failure is what package retry tells its budget of a failed attempt.
type Failure struct {
	Retry        bool // a retry or a hedge, not a call's first attempt
	Committed    bool // the call had committed
	Timeout      bool // the attempt ran out of time (class Timeout)
	Disconnected bool // the channel had no ready connection right after it failed
}

// Config is what NewDecider puts in place of the policy's seams.
type Config struct {
	// Now is the clock the decisions and the policy's budget read.
	// Required.
	Now func() time.Time
	// Rand returns uniform random numbers in [0, 1) for the jitter.
	// Required.
	Rand func() float64
	// Budget, if not nil, replaces the policy's Budget.
	Budget Budget
}

// Compiler turns a retry.Policy (passed as any, since this package cannot
// import package retry) into its Decider with cfg's seams.
type Compiler func(policy any, cfg Config) (interceptor.Decider, error)

var compiler Compiler

// Register is called by package retry's init function. Calling it again
// replaces the compiler.
func Register(c Compiler) { compiler = c }

// NewDecider returns the Decider that package retry compiles policy (a
// retry.Policy) into, with its clock, random source and, if cfg.Budget is
// set, budget taken from cfg. The Decider's Wait does not wait: a caller
// running in virtual time schedules the next attempt itself, delay after
// the failure. Invalid policies give the *retry.PolicyError of
// Policy.Validate.
func NewDecider(policy any, cfg Config) (interceptor.Decider, error) {
	if compiler == nil {
		return nil, errors.New("seam: package retry is not linked in (import it)")
	}
	if cfg.Now == nil || cfg.Rand == nil {
		return nil, errors.New("seam: Config.Now and Config.Rand are required")
	}
	return compiler(policy, cfg)
}
