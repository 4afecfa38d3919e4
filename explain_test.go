package retry

import (
	"strings"
	"testing"
	"time"
)

// explainConfig is a config with the three kinds of entries, for the
// Explain tests.
const explainConfig = `{
	"methodConfig": [
		{"name": [{"service": "inference.v1.InferenceService"}], "timeout": "30s",
		 "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}},
		{"name": [{"service": "inference.v1.InferenceService", "method": "Generate"}],
		 "retryPolicy": {"maxAttempts": 100, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}},
		{"name": [{"service": "inference.v1.InferenceService", "method": "CallTool"}], "timeout": "5s"},
		{"name": [{"service": "inference.v1.InferenceService", "method": "Embed"}],
		 "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s", "nonFatalStatusCodes": ["UNAVAILABLE"]}},
		{"name": [{"service": "search.v1.Ranker", "method": "Rank"}],
		 "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0s"}}
	],
	"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}`

// TestServiceConfigExplain: the verdict line names the entry and why it
// won, the details give the policy, the notes of the entry, and hints at
// near misses.
func TestServiceConfigExplain(t *testing.T) {
	sc := mustParse(t, explainConfig)
	const svc = "/inference.v1.InferenceService/"
	for _, tc := range []struct {
		method string
		first  string   // the first line
		want   []string // in the rest, in order
		not    []string
	}{{
		method: svc + "Generate",
		first:  svc + "Generate: methodConfig[1] applies (it names the method exactly): retried, up to 5 attempts, on UNAVAILABLE, backoff 100ms ×2 up to 1s",
		want: []string{
			`matched by methodConfig[1].name[0] {"service": "inference.v1.InferenceService", "method": "Generate"}`,
			"attempts: up to 5 in all, the first included (maxAttempts 100 clamped to 5, gRFC A6's client-side limit; ParseOptions.AllowMoreAttempts keeps it)",
			"backoff: 100ms, ×2 per retry, at most 1s; full jitter",
			"retried: UNAVAILABLE; every other code is returned at once",
			"timeout: none of the route's own",
			"budget: retryThrottling (maxTokens 10, tokenRatio 0.1): one throttle per client",
			"note: methodConfig[1].retryPolicy.maxAttempts: 100 clamped to 5",
		},
		not: []string{"hint:"},
	}, {
		method: svc + "Ingest",
		first:  svc + "Ingest: methodConfig[0] applies (it names the method's service, and no entry names the method): retried, up to 4 attempts, on RESOURCE_EXHAUSTED, UNAVAILABLE, backoff 100ms ×2 up to 1s, timeout 30s",
		want: []string{
			"retried: RESOURCE_EXHAUSTED (except a spent quota",
			"timeout: 30s for the whole call (all attempts and waits)",
		},
		not: []string{"note:", "hint:"},
	}, {
		method: svc + "generate",
		first:  svc + "generate: methodConfig[0] applies (it names the method's service",
		want:   []string{"hint: methodConfig[1].name[0] names method Generate, which differs in case: names are case-sensitive"},
	}, {
		method: svc + "Generat",
		first:  svc + "Generat: methodConfig[0] applies",
		want:   []string{"hint: methodConfig[1].name[0] names method Generate, close to Generat: a typo?"},
	}, {
		method: svc + "CallTool",
		first:  svc + "CallTool: methodConfig[2] applies (it names the method exactly): not retried (no retryPolicy or hedgingPolicy), timeout 5s",
		want: []string{
			"attempts: 1: the entry has no retryPolicy or hedgingPolicy, so its methods are not retried, even if a service or default entry has one",
			"timeout: 5s for the whole call",
		},
		not: []string{"budget:", "note:"},
	}, {
		method: svc + "Embed",
		first:  svc + "Embed: methodConfig[3] applies (it names the method exactly): hedged, up to 3 attempts, one more attempt every 50ms, non-fatal UNAVAILABLE",
		want: []string{
			"hedge delay: one more attempt every 50ms",
			"non-fatal codes: UNAVAILABLE send the next hedge at once; any other code ends the call",
		},
	}, {
		method: "/search.v1.Ranker/Rank",
		first:  "/search.v1.Ranker/Rank: methodConfig[4] applies (it names the method exactly): hedged, up to 2 attempts, every attempt at once",
		want:   []string{"non-fatal codes: none: any failure ends the call"},
	}, {
		method: "/inference.v2.InferenceService/Generate",
		first:  "/inference.v2.InferenceService/Generate: no entry matches; calls pass through untouched (one attempt, no timeout, error unchanged)",
		want:   []string{"hint: methodConfig[1].name[0] names /inference.v1.InferenceService/Generate, in another package than inference.v2.InferenceService: a service name includes its package"},
	}, {
		method: "/InferenceService/Ingest",
		first:  "/InferenceService/Ingest: no entry matches",
		want:   []string{"hint: methodConfig[0].name[0] names service inference.v1.InferenceService, in another package than InferenceService"},
	}, {
		method: "/inference.v1.inferenceservice/Ingest",
		first:  "/inference.v1.inferenceservice/Ingest: no entry matches",
		want:   []string{"hint: methodConfig[0].name[0] names service inference.v1.InferenceService, whose service differs in case from inference.v1.inferenceservice"},
	}, {
		method: "/inference.v1.InferenceServise/Ingest",
		first:  "/inference.v1.InferenceServise/Ingest: no entry matches",
		want:   []string{"whose service is close to inference.v1.InferenceServise: a typo?"},
	}, {
		method: "/other.Ranker/Rank",
		first:  "/other.Ranker/Rank: no entry matches",
		want:   []string{"hint: methodConfig[4].name[0] names /search.v1.Ranker/Rank, in another package than other.Ranker"},
	}, {
		method: "/acme.Store/Rank",
		first:  "/acme.Store/Rank: no entry matches",
		want:   []string{"hint: methodConfig[4].name[0] names /search.v1.Ranker/Rank: the same method in another service"},
	}, {
		method: "/acme.Store/Get",
		first:  "/acme.Store/Get: no entry matches",
		want:   []string{"hint: the config names service(s) inference.v1.InferenceService, search.v1.Ranker"},
	}, {
		method: "Generate",
		first:  "Generate: no entry matches",
		want: []string{
			`hint: "Generate" is not a full method name "/package.Service/Method"`,
			"hint: did you mean /inference.v1.InferenceService/Generate? (methodConfig[1].name[0])",
		},
	}} {
		got := sc.Explain(tc.method)
		first, rest, _ := strings.Cut(got, "\n")
		if !strings.HasPrefix(first, tc.first) {
			t.Errorf("Explain(%s) first line:\n got %s\nwant %s...", tc.method, first, tc.first)
		}
		at := 0
		for _, w := range tc.want {
			i := strings.Index(rest[at:], w)
			if i < 0 {
				t.Errorf("Explain(%s): no %q (in order) in:\n%s", tc.method, w, got)
				break
			}
			at += i + len(w)
		}
		for _, n := range tc.not {
			if strings.Contains(rest, n) {
				t.Errorf("Explain(%s): unexpected %q in:\n%s", tc.method, n, got)
			}
		}
	}
}

func TestServiceConfigExplainDefaultAndServiceHint(t *testing.T) {
	sc := mustParse(t, `{"methodConfig": [
		{"name": [{}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": [14]}},
		{"name": [{"service": "pkg.Svc.Generate"}], "timeout": "1s"}
	]}`, ParseOptions{Budget: NoBudget})
	got := sc.Explain("/pkg.Svc/Generate")
	for _, w := range []string{
		"/pkg.Svc/Generate: methodConfig[0] applies (the default entry: no entry names the method or its service): retried, up to 2 attempts, on UNAVAILABLE",
		"matched by methodConfig[0].name[0] {}",
		"budget: none (ParseOptions.Budget is NoBudget): retried as gRPC would",
		`hint: methodConfig[1].name[0] names service pkg.Svc.Generate, the method's full name: write {"service": "pkg.Svc", "method": "Generate"}`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, got)
		}
	}
	if ex := mustParse(t, `{}`).Explain("/a.B/C"); !strings.Contains(ex, "hint: the config names no method, service or default entry") {
		t.Errorf("empty config:\n%s", ex)
	}
}

func TestServiceConfigString(t *testing.T) {
	got := mustParse(t, explainConfig).String()
	for _, w := range []string{
		"5 route(s), budget: retryThrottling (maxTokens 10, tokenRatio 0.1)",
		`methodConfig[0] {"service": "inference.v1.InferenceService"}: retried, up to 4 attempts, on RESOURCE_EXHAUSTED, UNAVAILABLE, backoff 100ms ×2 up to 1s, timeout 30s`,
		`methodConfig[2] {"service": "inference.v1.InferenceService", "method": "CallTool"}: not retried (no retryPolicy or hedgingPolicy), timeout 5s`,
		"notes:\n  methodConfig[1].retryPolicy.maxAttempts: 100 clamped to 5",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in:\n%s", w, got)
		}
	}
}

func TestRoutesExplain(t *testing.T) {
	own := NewThrottle(10, 0.1)
	r := Routes{
		{Names: []string{"/inference.v1.InferenceService/"}, Policy: Policy{MaxAttempts: 3, Timeout: 10 * time.Second}},
		{Names: []string{"/inference.v1.InferenceService/CallTool"}, Policy: Policy{MaxAttempts: 1}},
		{Names: []string{"/inference.v1.InferenceService/Embed"}, Policy: Policy{PerAttemptTimeout: 200 * time.Millisecond, Budget: own, Classify: Classify}},
		{Names: []string{"/search.v1.Ranker/"}, Policy: Policy{Hedging: &Hedging{Delay: 20 * time.Millisecond}, Budget: own}},
	}
	for _, tc := range []struct {
		method string
		want   []string
	}{
		{"/inference.v1.InferenceService/Generate", []string{
			"/inference.v1.InferenceService/Generate: Routes[0] applies (it names the method's service, and no route names the method): retried, up to 3 attempts, backoff 1s ×2 up to 10s, timeout 10s",
			`matched by Routes[0].Names[0] "/inference.v1.InferenceService/"`,
			"backoff: 1s, ×2 per retry, at most 10s; full jitter",
			"retried: UNAVAILABLE, RESOURCE_EXHAUSTED (except a spent quota) and an attempt's DEADLINE_EXCEEDED, by the default Classify",
			"timeout: 10s for the whole call",
			"budget: the routes' shared default budget",
		}},
		{"/inference.v1.InferenceService/CallTool", []string{
			"CallTool: Routes[1] applies (it names the method exactly): not retried",
			"attempts: 1, never retried",
		}},
		{"/inference.v1.InferenceService/Embed", []string{
			"Embed: Routes[2] applies (it names the method exactly): retried, up to 4 attempts",
			"retried: what the route's Policy.Classify says",
			"per-attempt timeout: 200ms",
			"budget: the route's own *retry.Throttle, shared with Routes[3]",
		}},
		{"/search.v1.Ranker/Rank", []string{
			"Rank: Routes[3] applies (it names the method's service, and no route names the method): hedged, up to 4 attempts, one more attempt every 20ms",
		}},
		{"/search.v2.Ranker/Rank", []string{
			"/search.v2.Ranker/Rank: no route matches; calls pass through untouched",
			"hint: Routes[3].Names[0] names service search.v1.Ranker, in another package than search.v2.Ranker",
		}},
	} {
		got := r.Explain(tc.method)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("Explain(%s): no %q in:\n%s", tc.method, w, got)
			}
		}
	}
	bad := Routes{{Names: []string{"Generate"}}}
	if got := bad.Explain("/a.B/C"); !strings.Contains(got, "the routes are invalid: retry: invalid Routes[0].Names[0]") {
		t.Errorf("invalid routes: %s", got)
	}
	if got := (Routes{{Names: []string{"/a.B/C"}, Policy: Policy{Budget: NoBudget}}}).Explain("/a.B/C"); !strings.Contains(got, "budget: none (NoBudget)") {
		t.Errorf("NoBudget: %s", got)
	}
	if got := (Routes{{Names: []string{""}}}).Explain("/a.B/C"); !strings.Contains(got, "Routes[0] applies (the default route: no route names the method or its service)") {
		t.Errorf("default route: %s", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"Generate", "Generat", 1}, {"Svc", "Svx", 1}, {"ab", "ba", 2}} {
		if got := editDistance([]rune(tc.a), []rune(tc.b)); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if nearName("Get", "Set") != true || nearName("Get", "Pet2") || nearName("same", "same") {
		t.Errorf("nearName")
	}
}
