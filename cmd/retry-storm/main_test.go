package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed4f82f287/retry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tiny is a load small enough for -race: a few clients, no shedding, and a
// deadline far beyond any wait of the policies (their backoffs add up to
// 350ms at most), so that a loaded machine delays calls but never cuts one.
func tiny() stormConfig {
	return stormConfig{clients: 3, rate: 100, capacity: 1000, service: time.Millisecond, deadline: 10 * time.Second, seed: 1}
}

func policy(t *testing.T, name string) policySpec {
	t.Helper()
	specs, _, err := selectPolicies(name)
	if err != nil {
		t.Fatal(err)
	}
	return specs[0]
}

// TestOutage plays a short outage end to end and checks only what holds
// whatever the timing: a loaded machine starts fewer calls, later, and may
// move a call into a later phase, but every attempt of a call that started
// in a phase meets that phase's server (or a later one, never an earlier
// one). No count of calls is asserted, only relations between counts.
func TestOutage(t *testing.T) {
	t.Parallel()
	names := []string{"none", "nobudget", "default", "throttle"}
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

	// With a recovery phase: no retry means at most one attempt per call,
	// every call started after the outage succeeds (the server is healthy
	// and the deadline far), and recovery is measured.
	withRecovery := run([3]time.Duration{200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond})
	if none := withRecovery["none"]; none.total.calls == 0 {
		t.Error("none: no call made")
	}
	for i, p := range withRecovery["none"].phases {
		if p.attempts > p.calls {
			t.Errorf("none, phase %d: %d attempts for %d calls, want at most one each", i, p.attempts, p.calls)
		}
	}
	for _, n := range names {
		r := withRecovery[n]
		if p := r.phases[2]; p.ok != p.calls {
			t.Errorf("%s: %d of %d calls started after the outage failed", n, p.calls-p.ok, p.calls)
		}
		if r.total.attempts > simMaxAttempts*r.total.calls {
			t.Errorf("%s: %d attempts for %d calls, more than MaxAttempts per call", n, r.total.attempts, r.total.calls)
		}
		if !r.hasRecovery {
			t.Errorf("%s: recovery not measured", n)
		}
	}

	// Ending in the outage, so that nothing succeeds after it began: without
	// a budget every outage call makes all its attempts; a budget bounds the
	// retries of each client whatever the timing.
	inOutage := run([3]time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 0})
	nb := inOutage["nobudget"].phases[1]
	if nb.attempts != simMaxAttempts*nb.calls || nb.ok != 0 {
		t.Errorf("nobudget: %d attempts, %d successes for %d outage calls, want exactly %d attempts each, none OK",
			nb.attempts, nb.ok, nb.calls, simMaxAttempts)
	}
	clients := int64(tiny().clients)
	// The default CreditBudget (Max 3) allows a retry while its balance is
	// above zero and charges a retry when it fails, before the call decides
	// again: so it allows retries only until 3 have failed, and the
	// decisions made until then follow first attempts (at most one per
	// call) or those 3 failed retries. At most calls + 3 retries per
	// client (+1 for the floor's 0.05/s), and once more than 4 retries of a
	// client have failed, its next decision is a refusal.
	if p := inOutage["default"].phases[1]; p.attempts-p.calls > p.calls+4*clients || p.calls > 10*clients && p.budgetStops == 0 {
		t.Errorf("default budget: %d retries of %d outage calls, %d stopped by the budget", p.attempts-p.calls, p.calls, p.budgetStops)
	}
	// The gRFC A6 throttle (10, 0.1) takes a token for every failure and
	// allows a retry only while more than 5 remain: at most 4 retries per
	// client once the outage began.
	if p := inOutage["throttle"].phases[1]; p.attempts-p.calls > 4*clients || p.calls > 5*clients && p.budgetStops == 0 {
		t.Errorf("throttle: %d retries of %d outage calls (%d stopped), want at most 4 per client", p.attempts-p.calls, p.calls, p.budgetStops)
	}
}

// TestOutageNoBudgetAllAttempts ends the timeline in the outage, so that
// every call started in it fails every attempt: without a budget, each
// makes exactly MaxAttempts attempts (failures are fast and the deadline
// far, whatever the machine's load).
func TestOutageNoBudgetAllAttempts(t *testing.T) {
	t.Parallel()
	phases := outagePhases([3]time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 0})
	r, err := runStorm(context.Background(), tiny(), phases, policy(t, "nobudget"), 1)
	if err != nil {
		t.Fatal(err)
	}
	p := r.phases[1]
	if p.attempts != simMaxAttempts*p.calls || p.ok != 0 {
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
	if len(cfg.policies) != len(allPolicies()) || cfg.explicit || !cfg.scenarios["herd"] || cfg.scenarios["tail"] || len(cfg.steadyRates) != 3 ||
		len(cfg.tail.straggles) != 2 || cfg.tail.measured <= 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parseFlags(strings.Fields("-policy default,none -scenario outage -timeline 1s,1s,0s -steady 0.5,2%"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.policies) != 2 || !cfg.explicit || cfg.scenarios["herd"] || cfg.timeline[2] != 0 || cfg.steadyRates[1] != 0.02 {
		t.Errorf("parsed: %+v", cfg)
	}
	cfg, err = parseFlags(strings.Fields("-scenario all -tail-straggle 1% -tail-time 0s,1s"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.scenarios["tail"] || !cfg.scenarios["ttft"] || !cfg.scenarios["outage"] || cfg.tail.straggles[0] != 0.01 || cfg.tail.warm != 0 || cfg.tail.measured != time.Second {
		t.Errorf("parsed: %+v", cfg)
	}
	for _, bad := range []string{"-policy bogus", "-scenario x", "-timeline 1s,2s", "-steady 120%", "-rate 0", "-timeline 0s,1s,1s",
		"-tail-straggle 2,x", "-tail-time 1s,0s", "-tail-rate 0", "-tail-scale 0", "-tail-clients 0", "-tail-parallel 0"} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestTail plays the tail scenarios scaled down (2 clients × 30 calls/s,
// 2% stragglers, 4s measured) and checks what holds whatever the timing:
// every call succeeds; hedging at the healthy p95 with room in its cap, or
// at the learned delay, cuts p99 well below no hedging's (a straggler
// takes 10× as long; both attempts of a call straggle 0.04% of the time);
// the default cap bounds the hedges; only hedged calls have losers to
// cancel, and the server sees them cancelled. Its rows run at once, and it
// does not run in parallel with the other tests: latencies are what it
// checks, and an overloaded machine would stretch them all.
func TestTail(t *testing.T) {
	cfg := tailConfig{clients: 2, rate: 30, warm: time.Second, measured: 4 * time.Second, scale: 1, straggles: []float64{0.02}, seed: 1}
	m := cfg.model(cfg.straggles[0])

	// The measured calls and their first attempts' latencies are a hash of
	// the seed: what no hedging measures, give or take the overhead.
	// Enough of them straggle that its p99 is a straggler's.
	var first []time.Duration
	interval := time.Duration(float64(time.Second) / cfg.rate)
	for i := range cfg.clients {
		offset := interval * time.Duration(i) / time.Duration(cfg.clients)
		for seq := 0; ; seq++ {
			at := offset + time.Duration(seq)*interval
			if at >= cfg.warm+cfg.measured {
				break
			}
			if at >= cfg.warm {
				first = append(first, m.latency(cfg.seed, uint64(i)<<32|uint64(seq), 0))
			}
		}
	}
	model := tailResult{lat: first, calls: int64(len(first))}
	slices.Sort(model.lat)
	if p99 := model.percentile(0.99); p99 < 3*m.median {
		t.Fatalf("the measured calls' first attempts have a p99 of %v: not a straggler's, the p99 checks need one", p99)
	}

	rows := tailRows(m)
	type job struct {
		row    tailRow
		stream bool
	}
	var jobs []job
	for _, r := range rows {
		jobs = append(jobs, job{r, false})
	}
	jobs = append(jobs, job{rows[len(rows)-1], true}) // learned
	results := make([]tailResult, len(jobs))
	err := parallelDo(len(jobs), len(jobs), func(i int) (err error) {
		results[i], err = runTail(context.Background(), cfg, jobs[i].row, cfg.straggles[0], jobs[i].stream)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	const guardHedges = 10 // what the load guard holds at the default MaxExtraLoad (it starts full)
	none := results[0]
	for i, r := range results {
		name := r.row.name
		if jobs[i].stream {
			name += ", stream"
		}
		if r.calls != model.calls || r.ok != r.calls {
			t.Errorf("%s: %d of %d calls succeeded, want all %d", name, r.ok, r.calls, model.calls)
		}
		if r.serverAttempts < r.calls || r.serverAttempts > r.attempts {
			t.Errorf("%s: the server saw %d attempts of %d calls that made %d", name, r.serverAttempts, r.calls, r.attempts)
		}
		hedges := r.attempts - r.calls
		switch {
		case r.row.hedging == nil:
			if hedges != 0 || r.cancelled != 0 {
				t.Errorf("%s: %d hedges, %d attempts cancelled; want none", name, hedges, r.cancelled)
			}
			if p99 := r.percentile(0.99); p99 < model.percentile(0.99) {
				t.Errorf("%s: p99 %v, below its first attempts' %v", name, p99, model.percentile(0.99))
			}
			continue
		case r.cancelled > hedges || hedges >= 5 && r.cancelled == 0:
			t.Errorf("%s: %d attempts cancelled for %d hedges; want at most one per hedge, and some", name, r.cancelled, hedges)
		}
		// Each client's guard holds guardHedges at first and earns
		// MaxExtraLoad of a hedge per success: a bound on the hedges of the
		// measured calls, with a margin for the warm-up's calls that end in
		// the measured time.
		if bound := r.row.cap + float64(guardHedges*cfg.clients)/float64(r.calls) + 0.05; r.row.cap < 0.25 && r.extra() > bound {
			t.Errorf("%s: %.2f%% extra attempts, want at most %.2f%%", name, 100*r.extra(), 100*bound)
		}
		// A fixed delay held by the default cap hedges as the guard's timing
		// allows: its p99 is not checked.
		if r.row.cap < 0.25 && r.row.hedging.Delay > 0 {
			continue
		}
		if p99 := r.percentile(0.99); p99 > none.percentile(0.99)*6/10 {
			t.Errorf("%s: p99 %v, want at most 0.6 × no hedging's %v", name, p99, none.percentile(0.99))
		}
	}
	if t.Failed() {
		for i, r := range results {
			t.Logf("%s (stream %v): %d calls, p50 %v, p99 %v, extra %.2f%%, denied %d, cancelled %d, max lag %v",
				r.row.name, jobs[i].stream, r.calls, r.percentile(0.5), r.percentile(0.99), 100*r.extra(), r.denied, r.cancelled, r.maxLag)
		}
	}
}
