package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed4f82f287/retry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tiny is a load small enough for -race: a few clients, no shedding.
func tiny() stormConfig {
	return stormConfig{clients: 3, rate: 100, capacity: 1000, service: time.Millisecond, deadline: 2 * time.Second, seed: 1}
}

func policy(t *testing.T, name string) policySpec {
	t.Helper()
	specs, _, err := selectPolicies(name)
	if err != nil {
		t.Fatal(err)
	}
	return specs[0]
}

// TestOutage plays a short outage end to end and checks what must hold
// whatever the timing (a loaded machine starts fewer calls, later).
func TestOutage(t *testing.T) {
	t.Parallel()
	names := []string{"none", "nobudget", "ratio", "throttle"}
	// run plays every policy on the timeline and returns the results by name.
	run := func(timeline [3]time.Duration) map[string]stormResult {
		phases := outagePhases(timeline)
		rs := make([]stormResult, len(names))
		err := parallelDo(len(names), len(names), func(i int) (err error) {
			rs[i], err = runStorm(context.Background(), tiny(), phases, policy(t, names[i]), 1)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		results := make(map[string]stormResult)
		for i, n := range names {
			results[n] = rs[i]
		}
		return results
	}

	// With a recovery phase: no retry means exactly one attempt per call,
	// every call started after the outage succeeds, and recovery is measured.
	withRecovery := run([3]time.Duration{200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond})
	none := withRecovery["none"]
	for i, p := range none.phases {
		if p.calls == 0 || p.attempts != p.calls {
			t.Errorf("none, phase %d: %d attempts for %d calls, want amplification 1.0 exactly", i, p.attempts, p.calls)
		}
	}
	for _, n := range names {
		r := withRecovery[n]
		if p := r.phases[2]; p.ok != p.calls {
			t.Errorf("%s: %d of %d calls started after the outage failed", n, p.calls-p.ok, p.calls)
		}
		if n != "none" && r.phases[1].attempts > simMaxAttempts*r.phases[1].calls {
			t.Errorf("%s: more than MaxAttempts per call", n)
		}
		if !r.hasRecovery {
			t.Errorf("%s: recovery not measured", n)
		}
	}

	// Ending in the outage, so that nothing succeeds after it began: without
	// a budget every outage call makes all its attempts; a budget bounds the
	// retries of each client by what it holds, whatever the timing. The
	// ratio budget: 5 in hand, plus 0.5/s of allowance (burst 1) over the
	// run; the A6 throttle (10, 0.1): retries while more than 5 tokens, so
	// at most 4 after the healthy phase refilled it.
	inOutage := run([3]time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 0})
	nb := inOutage["nobudget"].phases[1]
	if nb.calls == 0 || nb.attempts != simMaxAttempts*nb.calls {
		t.Errorf("nobudget: %d attempts for %d outage calls, want exactly %d each", nb.attempts, nb.calls, simMaxAttempts)
	}
	// The default budget lets the calls in flight at the onset retry, then
	// stops retries once they fail: fewer retries than outage calls, where
	// NoBudget makes three per call.
	clients := int64(tiny().clients)
	if p := inOutage["ratio"].phases[1]; p.attempts-p.calls > p.calls || p.calls > 10*clients && p.budgetStops == 0 {
		t.Errorf("default budget: %d retries of %d outage calls, %d stopped by the budget", p.attempts-p.calls, p.calls, p.budgetStops)
	}
	if p := inOutage["throttle"].phases[1]; p.attempts-p.calls > 4*clients || p.calls > 5*clients && p.budgetStops == 0 {
		t.Errorf("throttle: %d retries of %d outage calls, want at most 4 per client", p.attempts-p.calls, p.calls)
	}
}

// TestOutageNoBudgetAllAttempts ends the timeline in the outage, so that
// every call started in it fails every attempt: without a budget, each
// makes exactly MaxAttempts attempts (failures are fast and the deadline
// far).
func TestOutageNoBudgetAllAttempts(t *testing.T) {
	t.Parallel()
	phases := outagePhases([3]time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 0})
	r, err := runStorm(context.Background(), tiny(), phases, policy(t, "nobudget"), 1)
	if err != nil {
		t.Fatal(err)
	}
	p := r.phases[1]
	if p.calls == 0 || p.attempts != simMaxAttempts*p.calls || p.ok != 0 {
		t.Errorf("outage: %d attempts, %d successes for %d calls; want exactly %d attempts per call, no success",
			p.attempts, p.ok, p.calls, simMaxAttempts)
	}
	if r.hasRecovery {
		t.Error("recovery measured without a recovery phase")
	}
}

func TestHerd(t *testing.T) {
	t.Parallel()
	cfg := herdConfig{clients: 5, scale: 0.05, base: herdBase, runs: 1, seed: 1}
	for _, j := range []retry.Jitter{retry.NoJitter, retry.FullJitter} {
		r, err := runHerd(context.Background(), cfg, j)
		if err != nil {
			t.Fatal(err)
		}
		if r.writes != int64(cfg.clients) || r.failed != 0 || r.calls < float64(cfg.clients) || r.completion <= 0 {
			t.Errorf("%v: %d writes, %d gave up, %.0f calls, completion %v; want %d writes, none giving up",
				j, r.writes, r.failed, r.calls, r.completion, cfg.clients)
		}
	}
}

func TestRecoveryTime(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var recs []callRec
	// One completion a millisecond from 1000ms to 2000ms; failures until
	// 1300ms, and one more at 1450ms (1 in 200: still ≥ 99%).
	for i := 1000; i < 2000; i++ {
		recs = append(recs, callRec{end: ms(i), ok: i >= 1300 && i != 1450})
	}
	d, ok := recoveryTime(recs, ms(1000), ms(2000))
	if !ok || d != ms(300) {
		t.Errorf("recoveryTime = %v, %v; want 300ms, true", d, ok)
	}
	// 3 failures in the last window: 3 in 203 is below 99%.
	recs = append(recs, callRec{end: ms(1990)}, callRec{end: ms(1991)}, callRec{end: ms(1992)})
	if _, ok := recoveryTime(recs, ms(1000), ms(2000)); ok {
		t.Error("recovered although the last window fails")
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.policies) != len(allPolicies()) || cfg.explicit || !cfg.scenarios["herd"] || len(cfg.steadyRates) != 3 {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parseFlags(strings.Fields("-policy ratio,none -scenario outage -timeline 1s,1s,0s -steady 0.5,2%"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.policies) != 2 || !cfg.explicit || cfg.scenarios["herd"] || cfg.timeline[2] != 0 || cfg.steadyRates[1] != 0.02 {
		t.Errorf("parsed: %+v", cfg)
	}
	for _, bad := range []string{"-policy bogus", "-scenario x", "-timeline 1s,2s", "-steady 120%", "-rate 0", "-timeline 0s,1s,1s"} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
