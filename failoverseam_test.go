package retry

import (
	"errors"
	"testing"
	"time"

	"github.com/seed4f82f287/retry/internal/seam"
)

// The seam builds breakers and fallback chains on the caller's clock, and
// reports wrong types and invalid configurations as errors.
func TestFailoverSeam(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := seam.Config{Now: func() time.Time { return now }, Rand: func() float64 { return 0.5 }}
	v, err := seam.NewBreaker(BreakerConfig{MinCalls: 1, OpenFor: time.Second}, c)
	if err != nil {
		t.Fatal(err)
	}
	b := v.(*Breaker)
	p, _ := b.allow("/s/m")
	p.done(BreakerFailure, 0)
	if st := b.Stats()[0]; st.State != BreakerOpen || !st.Until.Equal(now.Add(time.Second)) {
		t.Fatalf("%+v: want open until the virtual clock's now + 1s", st)
	}
	if _, err := seam.NewFailover(FailoverConfig{Breaker: b}, c); err != nil {
		t.Fatal(err)
	}
	var ce *ConfigError
	if _, err := seam.NewBreaker(BreakerConfig{Probes: -1}, c); !errors.As(err, &ce) {
		t.Errorf("invalid BreakerConfig: %v", err)
	}
	if d, err := seam.NewFailover(FailoverConfig{MinTimeLeft: -1}, c); !errors.As(err, &ce) || d != nil {
		t.Errorf("invalid FailoverConfig: %v, %v", d, err)
	}
	if _, err := seam.NewBreaker(Policy{}, c); err == nil {
		t.Error("a Policy taken for a BreakerConfig")
	}
	if _, err := seam.NewFailover(BreakerConfig{}, c); err == nil {
		t.Error("a BreakerConfig taken for a FailoverConfig")
	}
}
