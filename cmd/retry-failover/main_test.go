package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The same flags give the same table, byte for byte.
func TestDeterministic(t *testing.T) {
	cfgs, err := parseFlags([]string{"-clients", "3", "-rate", "20"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := report(&a, cfgs); err != nil {
		t.Fatal(err)
	}
	if err := report(&b, cfgs); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatalf("two runs differ:\n%s\n%s", a.String(), b.String())
	}
	if strings.Count(a.String(), "| retries") != 8 {
		t.Fatalf("want 4 modes × 2 outage kinds:\n%s", a.String())
	}
}

// The scenario of the README, both outage kinds: with a fallback and a
// breaker, at least 99.9% of the calls succeed, the breaker sends at most a
// few attempts per second per client to the dead primary once it is open,
// and the calls' p99 once it is open is within 1.2× of the secondary's own
// p99. And the contrasts the table shows: retries alone lose the outage,
// and the breaker cuts the attempts sent to the dead primary tenfold.
func TestScenarioTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("plays the full scenario")
	}
	for _, kind := range []outageKind{refused, blackhole} {
		cfg := defaultConfig()
		cfg.kind = kind
		full, err := simulate(&cfg, modes[3])
		if err != nil {
			t.Fatal(err)
		}
		secondaryP99 := percentile(full.secondaryLat, 0.99)
		if rate := float64(full.ok) / float64(full.calls); rate < 0.999 {
			t.Errorf("%v: fallback + breaker: %.4f success, want ≥ 0.999", kind, rate)
		}
		if perSec := float64(full.deadAfterOpen) / full.openSeconds(); perSec > 1 {
			t.Errorf("%v: %.2f attempts per client per second to the dead primary once the breaker is open, want ≤ 1", kind, perSec)
		}
		if p := percentile(full.afterOpen, 0.99); float64(p) > 1.2*float64(secondaryP99) {
			t.Errorf("%v: p99 once open %v, secondary's p99 %v: over 1.2×", kind, p, secondaryP99)
		}
		retries, err := simulate(&cfg, modes[0])
		if err != nil {
			t.Fatal(err)
		}
		if retries.outageOK*100 > retries.outageCalls {
			t.Errorf("%v: retries alone: %d of %d calls in the outage succeeded", kind, retries.outageOK, retries.outageCalls)
		}
		if full.deadAttempts*10 > retries.deadAttempts {
			t.Errorf("%v: attempts to the dead primary: %d with the breaker, %d without: want a tenth at most", kind, full.deadAttempts, retries.deadAttempts)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-outage", "flood"}, {"-clients", "0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
