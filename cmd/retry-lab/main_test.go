package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine is left running: play runs
// scenarios on a pool of goroutines that must all have ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// policy returns the named row.
func policy(t *testing.T, name string) policySpec {
	t.Helper()
	for _, p := range allPolicies() {
		if p.name == name {
			return p
		}
	}
	t.Fatalf("no policy %q", name)
	return policySpec{}
}

// TestDeterministic prints the cheap scenarios twice, once with one run at
// a time and once with several: the output must be the same, byte for
// byte, and must not depend on the order in which runs finish.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(strings.Fields("-scenario burst,hang,quiet,restart"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	cfg.parallel = 1
	run(&a, cfg)
	cfg.parallel = 4
	run(&b, cfg)
	if a.String() != b.String() {
		t.Errorf("two runs differ:\n%s\n---\n%s", a.String(), b.String())
	}
	for _, want := range []string{"A. Replica loss", "A'. Replica hang", "D. Quiet client", "R. Restart", "credit-no-timeout-rule"} {
		if !strings.Contains(a.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDeterministicRuns plays one run of each heavier scenario twice.
func TestDeterministicRuns(t *testing.T) {
	t.Parallel()
	credit := policy(t, "credit")
	for name, f := range map[string]func() any{
		"outage": func() any { return runOutage(7, credit, 20) },
		"steady": func() any { return runSteady(7, credit, 0.2, false) },
		"meta":   func() any { return runMeta(7, credit, 0.9, 10, testMeta) },
		"tail": func() any {
			m := tailBase
			m.straggle = 0.05
			return runTail(7, row(t, hedgeRows(m), "adaptive/2"), m, true, 10*time.Second)
		},
	} {
		if a, b := f(), f(); !equalResults(a, b) {
			t.Errorf("%s: two runs differ: %+v, %+v", name, a, b)
		}
	}
}

func equalResults(a, b any) bool {
	if ta, ok := a.(tailResult); ok {
		tb := b.(tailResult)
		return slices.Equal(ta.lat, tb.lat) && ta.calls == tb.calls && ta.attempts == tb.attempts &&
			ta.denied == tb.denied && ta.delay == tb.delay && ta.hedging == tb.hedging
	}
	ma, ok := a.(metaResult)
	if !ok {
		return a == b
	}
	mb := b.(metaResult)
	if ma.calls != mb.calls || ma.ok != mb.ok || ma.attempts != mb.attempts || len(ma.windows) != len(mb.windows) {
		return false
	}
	for i := range ma.windows {
		if ma.windows[i] != mb.windows[i] {
			return false
		}
	}
	return true
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.scenarios) != len(allScenarios(defaultMetaModel)) || len(cfg.policies) != len(defaultPolicies()) || cfg.sweep || cfg.seed != 1 {
		t.Errorf("defaults: %d scenarios, %d policies, sweep %v, seed %d", len(cfg.scenarios), len(cfg.policies), cfg.sweep, cfg.seed)
	}
	cfg, err = parseFlags(strings.Fields("-scenario outage,meta -policy credit -credit 0.2,0.05,3,50 -seed 9 -meta-spread 0"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.scenarios) != 2 || len(cfg.policies) != 2 || cfg.policies[1].name != "credit(0.2,0.05,3,50)" || cfg.seed != 9 {
		t.Errorf("parsed: %d scenarios, %+v, seed %d", len(cfg.scenarios), cfg.policies, cfg.seed)
	}
	cfg, err = parseFlags(strings.Fields("-policy= -credit 0.1,0.05,3,20"), io.Discard)
	if err != nil || len(cfg.policies) != 1 {
		t.Errorf("-policy= -credit: %v, %d policies", err, len(cfg.policies))
	}
	for _, bad := range []string{"-scenario x", "-policy bogus", "-credit 1,2,3", "-credit 2,0.05,3,20", "-meta-spread 1", "-meta-busy-clients 0", "-meta-busy-util 1", "-parallel 0", "extra"} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
