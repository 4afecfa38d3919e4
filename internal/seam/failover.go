package seam

import (
	"errors"

	"github.com/seed4f82f287/retry/interceptor"
)

// FailoverFuncs are package retry's constructors of breakers and fallback
// chains with seams. Package retry's init function registers them.
type FailoverFuncs struct {
	// Breaker makes a *retry.Breaker from a retry.BreakerConfig.
	Breaker func(cfg any, c Config) (any, error)
	// Failover makes the decision code of a retry.FailoverConfig.
	Failover func(cfg any, c Config) (interceptor.FailoverDecider, error)
}

var failoverFuncs FailoverFuncs

// RegisterFailover is called by package retry's init function. Calling it
// again replaces the constructors.
func RegisterFailover(f FailoverFuncs) { failoverFuncs = f }

func checkFailover(c Config) error {
	if failoverFuncs.Breaker == nil {
		return errors.New("seam: package retry is not linked in (import it)")
	}
	if c.Now == nil || c.Rand == nil {
		return errors.New("seam: Config.Now and Config.Rand are required")
	}
	return nil
}

// NewBreaker returns the *retry.Breaker (as any) that cfg, a
// retry.BreakerConfig, sets up, reading c's clock and random source (for
// its jitter); c.Budget is not used. Invalid configurations give the
// *retry.ConfigError of retry.NewBreaker.
func NewBreaker(cfg any, c Config) (any, error) {
	if err := checkFailover(c); err != nil {
		return nil, err
	}
	return failoverFuncs.Breaker(cfg, c)
}

// NewFailover returns the decision code of the retry.Failover that cfg, a
// retry.FailoverConfig, sets up, reading c's clock; c.Rand and c.Budget
// are not used. Breakers in cfg keep their own clocks: make them with
// NewBreaker. Invalid configurations give the *retry.ConfigError of
// retry.NewFailover.
func NewFailover(cfg any, c Config) (interceptor.FailoverDecider, error) {
	if err := checkFailover(c); err != nil {
		return nil, err
	}
	return failoverFuncs.Failover(cfg, c)
}
