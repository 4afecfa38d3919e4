package retry

import (
	"fmt"

	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/seam"
)

// The internal seam also builds breakers and fallback chains on a virtual
// clock and a seeded random source, for the module's failover simulator
// (cmd/retry-failover). Nothing here is reachable from outside the module.
func init() {
	seam.RegisterFailover(seam.FailoverFuncs{
		Breaker: func(cfg any, c seam.Config) (any, error) {
			bc, ok := cfg.(BreakerConfig)
			if !ok {
				return nil, fmt.Errorf("retry: seam: cfg is a %T, not a retry.BreakerConfig", cfg)
			}
			bc.clock, bc.rand = seamClock{now: c.Now}, c.Rand
			b, err := NewBreaker(bc)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return b, nil
		},
		Failover: func(cfg any, c seam.Config) (interceptor.FailoverDecider, error) {
			fc, ok := cfg.(FailoverConfig)
			if !ok {
				return nil, fmt.Errorf("retry: seam: cfg is a %T, not a retry.FailoverConfig", cfg)
			}
			fc.clock = seamClock{now: c.Now}
			f, err := NewFailover(fc)
			if err != nil {
				return nil, err
			}
			return (*failoverDecider)(f), nil
		},
	})
}
