package main

import (
	"testing"
	"time"
)

// testMeta is scenario E over 60s after the stall instead of 120s: long
// enough for the budgets that recover to do so, at half the cost.
var testMeta = func() metaModel {
	m := defaultMetaModel
	m.after = 60 * time.Second
	return m
}()

// These tests check, per scenario, what must hold whatever the parameters
// are tuned to: they catch a broken model or a regression of the decision
// code, not a change of the figures.

func TestBurst(t *testing.T) {
	t.Parallel()
	for _, c := range burstSizes {
		for _, warm := range []bool{false, true} {
			for _, name := range []string{"nobudget", "credit"} {
				if r := runBurst(1, policy(t, name), c, warm, false); r.ok != r.calls {
					t.Errorf("%s, C=%d, warm %v: %d of %d calls succeeded, want all", name, c, warm, r.ok, r.calls)
				}
			}
			// gRFC A6 throttle (10, 0.1): each failure takes a token and
			// retries need more than 5, so 4 of the failures are retried.
			if r := runBurst(1, policy(t, "throttle"), c, warm, false); r.ok != c/2+min(4, c/2) {
				t.Errorf("throttle, C=%d, warm %v: %d OK, want %d", c, warm, r.ok, c/2+min(4, c/2))
			}
		}
	}
	// A hang is retried in full by the credit budget, with or without its
	// timeout rule, but not by a rule charging every timeout.
	for _, name := range []string{"nobudget", "credit", "credit-no-timeout-rule"} {
		if r := runBurst(1, policy(t, name), 300, false, true); r.ok != r.calls {
			t.Errorf("hang, %s: %d of %d calls succeeded, want all", name, r.ok, r.calls)
		}
	}
	if r := runBurst(1, policy(t, "credit+timeouts-always"), 300, false, true); r.ok == r.calls {
		t.Error("hang, credit+timeouts-always: every call succeeded, want the budget to refuse most retries")
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{1, 20} {
		nb := runOutage(1, policy(t, "nobudget"), rate)
		if nb.steadyAtt != labMaxAttempts*nb.steadyCalls || nb.hitAtt != labMaxAttempts*nb.hitCalls || nb.steadyCalls == 0 {
			t.Errorf("nobudget at %g/s: %d attempts for %d calls (steady), %d for %d (all hit); want exactly %d each",
				rate, nb.steadyAtt, nb.steadyCalls, nb.hitAtt, nb.hitCalls, labMaxAttempts)
		}
		if nb.neverBack != 0 || nb.back != 0 {
			t.Errorf("nobudget at %g/s: blips not retried at once after the outage", rate)
		}
		if th := runOutage(1, policy(t, "throttle"), rate); th.steadyAtt != th.steadyCalls {
			t.Errorf("throttle at %g/s: %d attempts for %d calls in steady state, want none retried", rate, th.steadyAtt, th.steadyCalls)
		}
		cr := runOutage(1, policy(t, "credit"), rate)
		if s := cr.steady(); s > 1.1 {
			t.Errorf("credit at %g/s: %.3f attempts per call in steady state, want ≤ 1.1", rate, s)
		}
		if cr.neverBack != 0 {
			t.Errorf("credit at %g/s: %d clients never retried again after the outage", rate, cr.neverBack)
		}
		if rate == 20 {
			// Every call then makes its 4 attempts within about 350ms and
			// the calls in flight at the onset add 3 retries each: a
			// little under 7 times the offered load.
			if l := nb.firstLoad(); l < 6.5 || l > 7 {
				t.Errorf("nobudget at 20/s: first second at %.2fx the offered load, want 6.5x to 7x", l)
			}
			// The credit budget retries about once per call in flight at
			// the onset, then stops.
			if l := cr.firstLoad(); l < 1.5 || l > 3 {
				t.Errorf("credit at 20/s: first second at %.2fx the offered load, want 1.5x to 3x", l)
			}
		}
	}
}

func TestSteady(t *testing.T) {
	t.Parallel()
	for _, slow := range []bool{false, true} {
		const p = 0.2
		r := runSteady(1, policy(t, "nobudget"), p, slow)
		// Independent failures: 1 - p^4 succeed, 1 + p + p^2 + p^3 attempts.
		if s, want := r.success(), 1-p*p*p*p; s < want-0.002 || s > want+0.002 {
			t.Errorf("nobudget, p=%g, slow %v: success %.4f, want %.4f", p, slow, s, want)
		}
		if a, want := r.amp(), 1+p+p*p+p*p*p; a < want-0.01 || a > want+0.01 {
			t.Errorf("nobudget, p=%g, slow %v: %.3f attempts per call, want %.3f", p, slow, a, want)
		}
		if th := runSteady(1, policy(t, "throttle"), p, slow); th.amp() > 1.01 {
			t.Errorf("throttle, p=%g, slow %v: %.3f attempts per call, want retries stopped", p, slow, th.amp())
		}
	}
	if r := runSteady(1, policy(t, "credit"), 0.05, false); r.success() < 0.999 {
		t.Errorf("credit, p=5%%: success %.4f, want ≥ 99.9%%", r.success())
	}
}

func TestQuiet(t *testing.T) {
	t.Parallel()
	for _, k := range quietBlips {
		for _, name := range []string{"nobudget", "credit"} {
			if r := runQuiet(1, policy(t, name), k); r.ok != r.blips || r.blips != int(quietLen/quietInterval)/quietEvery {
				t.Errorf("%s, k=%d: %d of %d blip calls succeeded, want all of %d", name, k, r.ok, r.blips, int(quietLen/quietInterval)/quietEvery)
			}
		}
		if r := runQuiet(1, policy(t, "throttle"), k); r.ok*2 > r.blips {
			t.Errorf("throttle, k=%d: %d of %d blip calls succeeded, want under half", k, r.ok, r.blips)
		}
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	if r := runMeta(1, policy(t, "nobudget"), 0.8, 50, testMeta); r.ok*2 > r.calls {
		t.Errorf("nobudget at 80%%: %d of %d calls OK; want the server stuck", r.ok, r.calls)
	} else if _, ok := r.recovery(); ok {
		t.Error("nobudget at 80%: recovered; want never")
	}
	for _, name := range []string{"throttle", "credit"} {
		r := runMeta(1, policy(t, name), 0.9, 10, testMeta)
		if s, ok := r.recovery(); !ok || s > 60 {
			t.Errorf("%s at 90%%, 10 clients: recovered %v after %vs; want within 60s", name, ok, s)
		}
	}
}

// TestProtoIsCredit checks that the lab's copy of CreditBudget, with its
// timeout rule, decides exactly as the package's: runs give the same
// results.
func TestProtoIsCredit(t *testing.T) {
	t.Parallel()
	credit, proto := policy(t, "credit"), policy(t, "credit-copy")
	if a, b := runMeta(3, credit, 0.9, 10, testMeta), runMeta(3, proto, 0.9, 10, testMeta); !equalResults(a, b) {
		t.Errorf("meta: credit %v, its copy %v", a, b)
	}
	if a, b := runOutage(3, credit, 20), runOutage(3, proto, 20); a != b {
		t.Errorf("outage: credit %+v, its copy %+v", a, b)
	}
	if a, b := runQuiet(3, credit, 3), runQuiet(3, proto, 3); a != b {
		t.Errorf("quiet: credit %+v, its copy %+v", a, b)
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"nobudget", "credit"} {
		if r := runRestart(1, policy(t, name), true, 0); r.ok != r.hit || r.hit < restartTrials*restartRate {
			t.Errorf("%s, connection-aware: %d of %d calls hit succeeded, want all (at least %d hit)", name, r.ok, r.hit, restartTrials*restartRate)
		}
	}
	// With a 2s PerAttemptTimeout a wait for the channel can end before it
	// is back (up to 2.9s): that retry fails fast, for want of a
	// connection, which the credit budget does not charge, so the next
	// retry waits again and succeeds.
	if r := runRestart(1, policy(t, "credit"), true, 2*time.Second); r.ok != r.hit {
		t.Errorf("credit, connection-aware, 2s attempt timeout: %d of %d calls hit succeeded, want all", r.ok, r.hit)
	}
	// Failing fast, the 3 retries are spent within about 350ms while the
	// channel needs 1s or more.
	if r := runRestart(1, policy(t, "nobudget"), false, 0); r.ok*2 > r.hit {
		t.Errorf("nobudget, fail fast: %d of %d calls hit succeeded, want under half", r.ok, r.hit)
	}
}
