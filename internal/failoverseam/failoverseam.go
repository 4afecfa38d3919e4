// Package failoverseam gives code inside this module, and only there, the
// decision code of package retry's retries, breakers and fallback chains
// with a clock and a random source supplied by the caller. The failover
// simulator (cmd/retry-failover) uses it to drive the real code in virtual
// time; package retry fills it in from an init function, so importing
// package retry is enough to make it work.
//
// It widens nothing in retry's public API: Go allows internal packages to be
// imported only from within this module.
package failoverseam

import (
	"errors"
	"time"

	"github.com/seed4f82f287/retry/interceptor"
)

// Virtual is the clock and random source put in place of the real ones.
type Virtual struct {
	// Now is the clock the decisions read. Required.
	Now func() time.Time
	// Rand returns uniform random numbers in [0, 1) (backoff jitter,
	// breaker jitter). Required.
	Rand func() float64
}

// Funcs are package retry's constructors with seams.
type Funcs struct {
	// RetryDecider compiles a retry.Policy into its Decider. Its Wait
	// does not wait: a caller in virtual time schedules the next attempt
	// itself, delay after the failure.
	RetryDecider func(policy any, v Virtual) (interceptor.Decider, error)
	// Breaker makes a *retry.Breaker from a retry.BreakerConfig.
	Breaker func(cfg any, v Virtual) (any, error)
	// Failover makes the decision code of a retry.FailoverConfig.
	Failover func(cfg any, v Virtual) (interceptor.FailoverDecider, error)
}

var funcs Funcs

// Register is called by package retry's init function.
func Register(f Funcs) { funcs = f }

func check(v Virtual) error {
	if funcs.RetryDecider == nil {
		return errors.New("failoverseam: package retry is not linked in (import it)")
	}
	if v.Now == nil || v.Rand == nil {
		return errors.New("failoverseam: Virtual.Now and Virtual.Rand are required")
	}
	return nil
}

// RetryDecider returns the Decider that package retry compiles policy (a
// retry.Policy) into, reading v's clock and random source. Invalid
// policies give the *retry.PolicyError of Policy.Validate.
func RetryDecider(policy any, v Virtual) (interceptor.Decider, error) {
	if err := check(v); err != nil {
		return nil, err
	}
	return funcs.RetryDecider(policy, v)
}

// Breaker returns the *retry.Breaker that cfg (a retry.BreakerConfig) sets
// up, reading v's clock and random source.
func Breaker(cfg any, v Virtual) (any, error) {
	if err := check(v); err != nil {
		return nil, err
	}
	return funcs.Breaker(cfg, v)
}

// Failover returns the decision code of the retry.Failover that cfg (a
// retry.FailoverConfig) sets up, reading v's clock. Breakers in cfg keep
// their own clocks: make them with Breaker.
func Failover(cfg any, v Virtual) (interceptor.FailoverDecider, error) {
	if err := check(v); err != nil {
		return nil, err
	}
	return funcs.Failover(cfg, v)
}
