package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestRun plays the whole demo: the attempts and outcomes are deterministic
// (only waits and times vary), and it leaves no goroutine behind.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatal(err)
	}

	_, budget, ok := strings.Cut(out.String(), "== BUDGET")
	if !ok {
		t.Fatalf("no budget section in:\n%s", out.String())
	}
	for _, want := range []string{
		// 40 calls, each 4 attempts: max attempts every time.
		`Budget: retry.NoBudget\s+160\s+4.00\s+max attempts: 40\n`,
		// The default budget: the 5 retries it holds and one from the
		// per-second allowance (more only on a machine slow enough to take
		// seconds), then every call stopped by the budget after 1 attempt.
		`Budget: nil \(the default\)\s+4[0-9]\s+1\.\d\d\s+(max attempts: [0-3], )?retry budget exhausted: 3[7-9]\n`,
	} {
		if !regexp.MustCompile(want).MatchString(budget) {
			t.Errorf("budget section has no line matching %q:\n%s", want, budget)
		}
	}
	_, summary, ok := strings.Cut(out.String(), "== SUMMARY")
	if !ok {
		t.Fatalf("no summary in:\n%s", out.String())
	}
	for _, want := range []string{
		// scenario, without retry, with retry, attempts, stopped
		`blip\s+Unavailable\s+\d+ms\s+OK\s+3\s+-\s`,
		`rate-limited\s+ResourceExhausted\s+\d+ms\s+OK\s+2\s+-\s`,
		`quota\s+ResourceExhausted\s+\d+ms\s+ResourceExhausted\s+1\s+permanent error\s`,
		`bad-request\s+InvalidArgument\s+\d+ms\s+InvalidArgument\s+1\s+permanent error\s`,
		`slow\s+DeadlineExceeded\s+\d+ms\s+OK\s+2\s+-\s`,
		`outage\s+Unavailable\s+\d+ms\s+Unavailable\s+4\s+max attempts\s`,
		`draining\s+Unavailable\s+\d+ms\s+Unavailable\s+2\s+deadline too close\s`,
		`overloaded\s+Unavailable\s+\d+ms\s+Unavailable\s+1\s+server pushback: do not retry\s`,
		`send-email\s+Unavailable\s+\d+ms\s+Unavailable\s+1\s+not in Policy.Methods\s`,
		`token-stream\s+Unavailable\s+\d+ms\s+OK\s+2\s+-\s`,
		`mid-stream\s+Unavailable\s+\d+ms\s+Unavailable\s+1\s+committed\s`,
	} {
		if !regexp.MustCompile(`(?m)^  ` + want).MatchString(summary) {
			t.Errorf("summary has no line matching %q:\n%s", want, summary)
		}
	}
	if strings.Contains(out.String(), "(no OnRetry event)") {
		t.Errorf("an attempt has no OnRetry event:\n%s", out.String())
	}
}

// TestMain checks that the demo leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
