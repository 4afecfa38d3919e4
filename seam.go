package retry

import (
	"context"
	"fmt"
	"time"

	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/seam"
)

// The internal seam lets the module's policy lab compile a Policy with a
// virtual clock, a seeded random source and, for prototypes, a budget of
// its own. Nothing here is reachable from outside the module.
func init() { seam.Register(compileWithSeams) }

func compileWithSeams(policy any, cfg seam.Config) (interceptor.Decider, error) {
	p, ok := policy.(Policy)
	if !ok {
		return nil, fmt.Errorf("retry: seam: policy is a %T, not a retry.Policy", policy)
	}
	p.clock = seamClock{now: cfg.Now}
	p.rand = cfg.Rand
	if cfg.Budget != nil {
		p.Budget = seamBudget{cfg.Budget}
	}
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// seamClock reads a caller's clock. Its Sleep does not wait: in virtual
// time the caller schedules the next attempt itself.
type seamClock struct{ now func() time.Time }

func (c seamClock) Now() time.Time { return c.now() }

func (seamClock) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// seamBudget adapts a seam.Budget to Budget.
type seamBudget struct{ b seam.Budget }

func (s seamBudget) success() { s.b.Success() }
func (s seamBudget) failed(now time.Time, f attemptFailure) {
	s.b.Failed(now, seam.Failure{Retry: f.retry, Committed: f.committed, Timeout: f.timeout, Disconnected: f.disconnected})
}
func (s seamBudget) tryRetry(now time.Time) bool { return s.b.TryRetry(now) }
func (seamBudget) validate() error               { return nil }
