package main

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	"github.com/seed4f82f287/retry/interceptor"
	"github.com/seed4f82f287/retry/internal/seam"
)

func TestSeam(t *testing.T) {
	now := func() time.Time { return epoch }
	rnd := func() float64 { return 0.5 }
	if _, err := seam.NewDecider("not a policy", seam.Config{Now: now, Rand: rnd}); err == nil {
		t.Error("a string as the policy: no error")
	}
	if _, err := seam.NewDecider(retry.Policy{}, seam.Config{Rand: rnd}); err == nil {
		t.Error("no clock: no error")
	}
	var pe *retry.PolicyError
	if _, err := seam.NewDecider(retry.Policy{MaxAttempts: -1}, seam.Config{Now: now, Rand: rnd}); !errors.As(err, &pe) || pe.Field != "MaxAttempts" {
		t.Errorf("invalid policy: %v, want a PolicyError on MaxAttempts", err)
	}

	// The decisions read the given clock and random source, and a given
	// budget replaces the policy's.
	b := &countingBudget{}
	d, err := seam.NewDecider(labPolicy(retry.NoBudget), seam.Config{Now: now, Rand: rnd, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	c := &interceptor.Call{}
	ctx := &callContext{deadline: epoch.Add(time.Second), has: true}
	if ok, err := d.Begin(ctx, labMethod, nil, c); !ok || err != nil {
		t.Fatalf("Begin: %v, %v", ok, err)
	}
	c.Attempts = 1
	delay, err := d.Failed(ctx, c, interceptor.Outcome{Err: status.Error(codes.Unavailable, "x"), Attempt: c.Attempts})
	if err != nil || delay != labInitialBackoff/2 {
		t.Errorf("Failed: %v, %v; want half of %v (full jitter at 0.5)", delay, err, labInitialBackoff)
	}
	if b.failed != 1 || b.tries != 1 || !b.at.Equal(epoch) {
		t.Errorf("budget told %d failures and %d retries at %v; want 1 and 1 at the virtual time", b.failed, b.tries, b.at)
	}
	// Past the virtual deadline, the failure is the caller's own.
	c.Attempts = 2
	later := func() time.Time { return epoch.Add(time.Second) }
	d2, _ := seam.NewDecider(labPolicy(retry.NoBudget), seam.Config{Now: later, Rand: rnd})
	_, err = d2.Failed(ctx, c, interceptor.Outcome{Err: status.Error(codes.Unavailable, "x"), Attempt: c.Attempts})
	var re *retry.Error
	if !errors.As(err, &re) || re.Reason != retry.StopCanceled {
		t.Errorf("at the deadline: %v, want StopCanceled", err)
	}
}

type countingBudget struct {
	failed, tries int
	at            time.Time
}

func (b *countingBudget) Success() {}
func (b *countingBudget) Failed(now time.Time, _ seam.Failure) {
	b.failed++
	b.at = now
}
func (b *countingBudget) TryRetry(time.Time) bool {
	b.tries++
	return true
}
