package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func wantAll(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: no %q in:\n%s", what, w, got)
		}
	}
}

func TestValidConfig(t *testing.T) {
	code, out, errOut := runCmd(t, "", "testdata/inference.json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	wantAll(t, "stdout", out,
		"testdata/inference.json: 3 route(s), budget: retryThrottling (maxTokens 10, tokenRatio 0.1)",
		`methodConfig[1] {"service": "inference.v1.InferenceService", "method": "Generate"}: retried, up to 5 attempts, on UNAVAILABLE`,
		`methodConfig[2] {"service": "inference.v1.InferenceService", "method": "CallTool"}: not retried`,
		"notes:\n  methodConfig[1].retryPolicy.maxAttempts: 10 clamped to 5",
	)
	if strings.Contains(out, "matched by") {
		t.Errorf("explanations without -method:\n%s", out)
	}
}

func TestExplainMethods(t *testing.T) {
	code, out, _ := runCmd(t, "", "-method", "/inference.v1.InferenceService/Generate", "-method", "/inference.v2.InferenceService/Embed", "testdata/inference.json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantAll(t, "stdout", out,
		"\n/inference.v1.InferenceService/Generate: methodConfig[1] applies (it names the method exactly)",
		"maxAttempts 10 clamped to 5",
		"\n/inference.v2.InferenceService/Embed: no entry matches",
		"hint: methodConfig[0].name[0] names service inference.v1.InferenceService, in another package than inference.v2.InferenceService",
	)
}

func TestOptions(t *testing.T) {
	_, out, _ := runCmd(t, "", "-allow-more-attempts", "-method", "/inference.v1.InferenceService/Generate", "testdata/inference.json")
	wantAll(t, "-allow-more-attempts", out, "retried, up to 10 attempts")
	if strings.Contains(out, "clamped") {
		t.Errorf("-allow-more-attempts still clamps:\n%s", out)
	}
	js := `{"methodConfig": [{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": [14]}}]}`
	_, out, _ = runCmd(t, js, "-no-budget", "-")
	wantAll(t, "-no-budget", out, "(stdin): 1 route(s), budget: none (ParseOptions.Budget is NoBudget)")
	_, out, _ = runCmd(t, js, "-")
	wantAll(t, "default budget", out, "budget: the default budget", "retryThrottling: absent")
}

func TestInvalid(t *testing.T) {
	code, out, errOut := runCmd(t, `{"methodConfig": [{"name": [{"service": "a"}], "retryPolicy": {"maxAttempts": 1}}]}`, "-")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	wantAll(t, "stderr", errOut, "(stdin): retry: invalid service config: methodConfig[0].retryPolicy.maxAttempts: must be at least 2 (gRFC A6), got 1")

	code, _, errOut = runCmd(t, "", "testdata/does-not-exist.json")
	if code != 1 || !strings.Contains(errOut, "does-not-exist.json") {
		t.Fatalf("missing file: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{}, {"a.json", "b.json"}, {"-bogus", "a.json"}} {
		if code, _, errOut := runCmd(t, "", args...); code != 2 || !strings.Contains(errOut, "usage: retry-config") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage", args, code, errOut)
		}
	}
	if code, _, _ := runCmd(t, "", "-h"); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}
