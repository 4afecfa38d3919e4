package retry

import (
	"context"
	"fmt"
	"time"

	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/failoverseam"
)

// The internal failover seam lets the module's failover simulator build
// retry deciders, breakers and fallback chains on a virtual clock and a
// seeded random source. Nothing here is reachable from outside the module.
func init() {
	failoverseam.Register(failoverseam.Funcs{
		RetryDecider: func(policy any, v failoverseam.Virtual) (interceptor.Decider, error) {
			p, ok := policy.(Policy)
			if !ok {
				return nil, fmt.Errorf("retry: failoverseam: policy is a %T, not a retry.Policy", policy)
			}
			p.clock, p.rand = virtualClock{v.Now}, v.Rand
			c, err := p.compile()
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return c, nil
		},
		Breaker: func(cfg any, v failoverseam.Virtual) (any, error) {
			c, ok := cfg.(BreakerConfig)
			if !ok {
				return nil, fmt.Errorf("retry: failoverseam: cfg is a %T, not a retry.BreakerConfig", cfg)
			}
			c.clock, c.rand = virtualClock{v.Now}, v.Rand
			b, err := NewBreaker(c)
			if err != nil {
				return nil, err
			}
			return b, nil
		},
		Failover: func(cfg any, v failoverseam.Virtual) (interceptor.FailoverDecider, error) {
			c, ok := cfg.(FailoverConfig)
			if !ok {
				return nil, fmt.Errorf("retry: failoverseam: cfg is a %T, not a retry.FailoverConfig", cfg)
			}
			c.clock = virtualClock{v.Now}
			f, err := NewFailover(c)
			if err != nil {
				return nil, err
			}
			return (*failoverDecider)(f), nil
		},
	})
}

// virtualClock reads a caller's clock. Its Sleep does not wait: in virtual
// time the caller schedules what follows a wait itself.
type virtualClock struct{ now func() time.Time }

func (c virtualClock) Now() time.Time { return c.now() }

func (virtualClock) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }
