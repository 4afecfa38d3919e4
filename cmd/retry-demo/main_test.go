package main

import (
	"bytes"
	"go/parser"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed4f82f287/retry"
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

	// The policy is printed as it is, the budget included.
	intro, _, _ := strings.Cut(out.String(), "== WITH")
	for _, want := range []string{
		`MaxAttempts:\s+4,`,
		`InitialBackoff:\s+100 \* time.Millisecond,`,
		`MaxBackoff:\s+time.Second,`,
		`PerAttemptTimeout:\s+300 \* time.Millisecond,`,
		`Budget:\s+retry.NoBudget,`,
		`OnRetry:\s+onRetry,`,
		`IdempotencyHeader:\s+"x-idempotency-key",`,
	} {
		if !regexp.MustCompile(want).MatchString(intro) {
			t.Errorf("printed policy has no line matching %q:\n%s", want, intro)
		}
	}
	if want := "one client per line: retry.Policy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}"; !strings.Contains(budget, want) {
		t.Errorf("budget section does not show its policy %q:\n%s", want, budget)
	}
}

// TestHelp checks that -h prints the help on stdout and exits 0 without
// running the demo, and that bad arguments exit 2.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"-h=true"}} {
		var stdout, stderr bytes.Buffer
		if code := cli(args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit code %d, want 0; stderr:\n%s", args, code, stderr.String())
		}
		help := stdout.String()
		for _, want := range []string{"Usage: go run ./cmd/retry-demo [-h]", "bufconn", "retry.NoBudget", "-h\tprint this help"} {
			if !strings.Contains(help, want) {
				t.Errorf("%q: help does not say %q:\n%s", args, want, help)
			}
		}
		if strings.Contains(help, "== WITH") || stderr.Len() > 0 {
			t.Errorf("%q: ran the demo or wrote to stderr:\nstdout:\n%s\nstderr:\n%s", args, help, stderr.String())
		}
	}
	for _, args := range [][]string{{"-x"}, {"now"}} {
		var stdout, stderr bytes.Buffer
		if code := cli(args, &stdout, &stderr); code != 2 || stdout.Len() > 0 || !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("%q: exit code %d, stdout %q, stderr %q; want 2, nothing, a usage line", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestPolicySource checks that every exported field of retry.Policy, set
// alone, is printed as valid Go naming the field, so that a field added to
// Policy cannot be left out of the demo's policy line.
func TestPolicySource(t *testing.T) {
	typ := reflect.TypeFor[retry.Policy]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		var p retry.Policy
		v := reflect.ValueOf(&p).Elem().Field(i)
		if !setNonZero(v) {
			t.Errorf("Policy.%s: the test cannot make a %v; teach setNonZero", f.Name, f.Type)
			continue
		}
		src := policySource(p, map[string]string{f.Name: "hook"}, false)
		if _, err := parser.ParseExpr(src); err != nil || !strings.Contains(src, f.Name+": ") || strings.Contains(src, "<") {
			t.Errorf("Policy.%s set: printed %s (parse error: %v)", f.Name, src, err)
		}
	}

	for _, c := range []struct {
		p    retry.Policy
		want string
	}{
		{retry.Policy{}, "retry.Policy{}"},
		{retry.Policy{Budget: retry.NoBudget, Jitter: retry.NoJitter, Multiplier: 1.5, ConnectWait: -time.Second, PerAttemptTimeout: 2500 * time.Microsecond},
			"retry.Policy{Multiplier: 1.5, Jitter: retry.NoJitter, PerAttemptTimeout: 2500 * time.Microsecond, ConnectWait: -1 * time.Second, Budget: retry.NoBudget}"},
		{retry.Policy{Budget: retry.NewCreditBudget(retry.CreditBudgetConfig{Max: 5})},
			"retry.Policy{Budget: retry.NewCreditBudget(retry.CreditBudgetConfig{Ratio: 0.1, PerSecond: 0.05, Max: 5, MaxDebt: 20})}"},
		{retry.Policy{MaxBackoff: 1500 * time.Millisecond, Hedging: &retry.Hedging{Delay: 20 * time.Millisecond}},
			"retry.Policy{MaxBackoff: 1500 * time.Millisecond, Hedging: &retry.Hedging{Delay: 20 * time.Millisecond}}"},
	} {
		if got := policySource(c.p, nil, false); got != c.want {
			t.Errorf("policySource:\n got %s\nwant %s", got, c.want)
		}
	}
}

// setNonZero sets v to a value that is not zero and reports whether it could.
func setNonZero(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(3)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.String:
		v.SetString("x-key")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		if !setNonZero(s.Index(0)) {
			return false
		}
		v.Set(s)
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		v.Set(e)
	case reflect.Func:
		v.Set(reflect.MakeFunc(v.Type(), func([]reflect.Value) []reflect.Value {
			panic("not called")
		}))
	case reflect.Interface:
		if !reflect.TypeFor[retry.Budget]().AssignableTo(v.Type()) {
			return false
		}
		v.Set(reflect.ValueOf(retry.NoBudget))
	default:
		return false
	}
	return true
}

// TestMain checks that the demo leaves no goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
