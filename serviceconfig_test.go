package retry

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// retryJSON is a valid retryPolicy with maxAttempts n.
func retryJSON(n int) string {
	return fmt.Sprintf(`{"maxAttempts": %d, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}`, n)
}

func mustParse(t *testing.T, js string, opts ...ParseOptions) *ServiceConfig {
	t.Helper()
	var o ParseOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	sc, err := o.Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse(%s): %v", js, err)
	}
	if err := sc.Routes().Validate(); err != nil {
		t.Fatalf("the routes of a parsed config are invalid: %v", err)
	}
	return sc
}

func noteTexts(sc *ServiceConfig) []string {
	var out []string
	for _, n := range sc.Notes() {
		out = append(out, n.String())
	}
	return out
}

func hasNote(sc *ServiceConfig, path, text string) bool {
	for _, n := range sc.Notes() {
		if n.Path == path && strings.Contains(n.Text, text) {
			return true
		}
	}
	return false
}

// TestParseServiceConfigRetryPolicy: every field of a retryPolicy lands in
// the route's Policy; names become route names in gRPC's three forms.
func TestParseServiceConfigRetryPolicy(t *testing.T) {
	sc := mustParse(t, `{
		"methodConfig": [{
			"name": [{"service": "pkg.Svc", "method": "M"}, {"service": "pkg.Svc"}, {}],
			"timeout": "1.5s",
			"retryPolicy": {
				"maxAttempts": 4,
				"initialBackoff": ".25s",
				"maxBackoff": "3s",
				"backoffMultiplier": 1.5,
				"retryableStatusCodes": ["UNAVAILABLE", "resource_exhausted", 4]
			}
		}]
	}`)
	r := sc.Routes()
	if len(r) != 1 {
		t.Fatalf("%d routes, want 1", len(r))
	}
	if !slices.Equal(r[0].Names, []string{"/pkg.Svc/M", "/pkg.Svc/", ""}) {
		t.Errorf("names %q", r[0].Names)
	}
	p := r[0].Policy
	if p.MaxAttempts != 4 || p.InitialBackoff != 250*time.Millisecond || p.MaxBackoff != 3*time.Second ||
		p.Multiplier != 1.5 || p.Jitter != FullJitter || p.Timeout != 1500*time.Millisecond ||
		p.PerAttemptTimeout != 0 || p.Hedging != nil || p.Budget != nil {
		t.Errorf("policy %+v", p)
	}
	for c, want := range map[codes.Code]Class{
		codes.Unavailable:       Transient,
		codes.ResourceExhausted: RateLimited,
		codes.DeadlineExceeded:  Timeout,
		codes.Internal:          Permanent,
		codes.Aborted:           Permanent,
		codes.Unknown:           Permanent,
		codes.Code(99):          Permanent,
	} {
		if got := p.Classify(status.New(c, ""), nil); got != want {
			t.Errorf("Classify(%v) = %v, want %v", c, got, want)
		}
	}
	if !hasNote(sc, "methodConfig[0].retryPolicy.retryableStatusCodes[1]", `read as "RESOURCE_EXHAUSTED": grpc-go accepts only the upper-case name`) ||
		hasNote(sc, "methodConfig[0].retryPolicy.retryableStatusCodes[0]", "") || hasNote(sc, "methodConfig[0].retryPolicy.retryableStatusCodes[2]", "") {
		t.Errorf("notes %q: want one on the lower-case code name only", noteTexts(sc))
	}
	if !hasNote(sc, "retryThrottling", "default budget") {
		t.Errorf("notes %q: want one saying the default budget limits retries", noteTexts(sc))
	}
}

// TestServiceConfigClassification: listed codes are retried, with their
// own class or Transient; a listed RESOURCE_EXHAUSTED keeps the
// spent-quota refinement; an entry without a policy retries nothing.
func TestServiceConfigClassification(t *testing.T) {
	sc := mustParse(t, `{"methodConfig": [
		{"name": [{"service": "a"}], "retryPolicy": {"maxAttempts": 2, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": ["ABORTED", "INTERNAL", "RESOURCE_EXHAUSTED"]}},
		{"name": [{"service": "b"}]}
	]}`)
	r := sc.Routes()
	classify := r[0].Policy.Classify
	if got := classify(status.New(codes.Aborted, ""), nil); got != Transient {
		t.Errorf("listed ABORTED: %v, want transient", got)
	}
	if got := classify(status.New(codes.Unavailable, ""), nil); got != Permanent {
		t.Errorf("unlisted UNAVAILABLE: %v, want permanent", got)
	}
	quota, _ := status.New(codes.ResourceExhausted, "quota").WithDetails(&errdetails.QuotaFailure{})
	if got := classify(quota, nil); got != Permanent {
		t.Errorf("spent quota: %v, want permanent", got)
	}
	if got := classify(quota, metadata.Pairs(PushbackTrailer, "10")); got != RateLimited {
		t.Errorf("quota with pushback: %v, want rate-limited", got)
	}
	none := r[1].Policy
	if none.MaxAttempts != 1 || none.Classify(status.New(codes.Unavailable, ""), nil) != Permanent {
		t.Errorf("entry without a policy: MaxAttempts %d, want 1 and nothing retried", none.MaxAttempts)
	}
}

func TestServiceConfigHedgingPolicy(t *testing.T) {
	for _, tc := range []struct {
		hedge     string
		delay     time.Duration
		nonFatal  []codes.Code
		delayNote bool
	}{
		{`{"maxAttempts": 3, "hedgingDelay": "0.5s", "nonFatalStatusCodes": ["UNAVAILABLE", "INTERNAL"]}`, 500 * time.Millisecond, []codes.Code{codes.Unavailable, codes.Internal}, false},
		{`{"maxAttempts": 3, "hedgingDelay": "0s"}`, -1, nil, false},
		{`{"maxAttempts": 3}`, -1, nil, true},
	} {
		sc := mustParse(t, `{"methodConfig": [{"name": [{"service": "s"}], "hedgingPolicy": `+tc.hedge+`}]}`)
		p := sc.Routes()[0].Policy
		if p.Hedging == nil || p.Hedging.Delay != tc.delay || p.MaxAttempts != 3 {
			t.Errorf("%s: Hedging %+v, MaxAttempts %d; want delay %v", tc.hedge, p.Hedging, p.MaxAttempts, tc.delay)
			continue
		}
		for c := codes.Code(1); c <= 16; c++ {
			want := Permanent
			if slices.Contains(tc.nonFatal, c) {
				want = Transient
			}
			if got := p.Classify(status.New(c, ""), nil); (got == Permanent) != (want == Permanent) {
				t.Errorf("%s: Classify(%v) = %v", tc.hedge, c, got)
			}
		}
		if got := hasNote(sc, "methodConfig[0].hedgingPolicy.hedgingDelay", "at once"); got != tc.delayNote {
			t.Errorf("%s: hedgingDelay note %v, want %v (%q)", tc.hedge, got, tc.delayNote, noteTexts(sc))
		}
	}
}

// TestServiceConfigClampsMaxAttempts: A6 clamps maxAttempts above 5 to 5,
// with a note; AllowMoreAttempts keeps it.
func TestServiceConfigClampsMaxAttempts(t *testing.T) {
	js := `{"methodConfig": [
		{"name": [{"service": "r"}], "retryPolicy": ` + retryJSON(100) + `},
		{"name": [{"service": "h"}], "hedgingPolicy": {"maxAttempts": 6, "hedgingDelay": "1s"}},
		{"name": [{"service": "five"}], "retryPolicy": ` + retryJSON(5) + `}
	]}`
	sc := mustParse(t, js)
	r := sc.Routes()
	if r[0].Policy.MaxAttempts != 5 || r[1].Policy.MaxAttempts != 5 || r[2].Policy.MaxAttempts != 5 {
		t.Fatalf("MaxAttempts %d, %d, %d; want 5, 5, 5", r[0].Policy.MaxAttempts, r[1].Policy.MaxAttempts, r[2].Policy.MaxAttempts)
	}
	if !hasNote(sc, "methodConfig[0].retryPolicy.maxAttempts", "100 clamped to 5") ||
		!hasNote(sc, "methodConfig[1].hedgingPolicy.maxAttempts", "6 clamped to 5") ||
		hasNote(sc, "methodConfig[2].retryPolicy.maxAttempts", "clamped") {
		t.Fatalf("notes %q", noteTexts(sc))
	}
	if ex := sc.Explain("/r/M"); !strings.Contains(ex, "maxAttempts 100 clamped to 5") {
		t.Fatalf("Explain does not show the clamp:\n%s", ex)
	}

	wide := mustParse(t, js, ParseOptions{AllowMoreAttempts: true})
	r = wide.Routes()
	if r[0].Policy.MaxAttempts != 100 || r[1].Policy.MaxAttempts != 6 || hasNote(wide, "methodConfig[0].retryPolicy.maxAttempts", "clamped") {
		t.Fatalf("AllowMoreAttempts: MaxAttempts %d, %d; notes %q", r[0].Policy.MaxAttempts, r[1].Policy.MaxAttempts, noteTexts(wide))
	}
}

// TestServiceConfigThrottling: retryThrottling gives each Routes() its own
// Throttle, shared by all its routes; ParseOptions.Budget applies only
// without it.
func TestServiceConfigThrottling(t *testing.T) {
	js := `{"methodConfig": [
		{"name": [{"service": "a"}], "retryPolicy": ` + retryJSON(3) + `},
		{"name": [{"service": "b"}], "retryPolicy": ` + retryJSON(3) + `}
	], "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}`
	sc := mustParse(t, js, ParseOptions{Budget: NoBudget})
	r1, r2 := sc.Routes(), sc.Routes()
	th, ok := r1[0].Policy.Budget.(*Throttle)
	if !ok || r1[1].Policy.Budget != th {
		t.Fatalf("budgets %T %p and %p: want one *Throttle shared by the routes", r1[0].Policy.Budget, r1[0].Policy.Budget, r1[1].Policy.Budget)
	}
	if th.Tokens() != 10 || th.tokenRatio != 0.1 {
		t.Fatalf("throttle tokens %v ratio %v", th.Tokens(), th.tokenRatio)
	}
	if r2[0].Policy.Budget == th {
		t.Fatalf("two Routes() calls share a throttle: want one per client")
	}

	noThrottle := strings.Replace(js, `, "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}`, "", 1)
	if b := mustParse(t, noThrottle, ParseOptions{Budget: NoBudget}).Routes()[0].Policy.Budget; b != NoBudget {
		t.Fatalf("ParseOptions.Budget: route budget %v, want NoBudget", b)
	}
	if b := mustParse(t, noThrottle).Routes()[0].Policy.Budget; b != nil {
		t.Fatalf("no throttling, no option: route budget %v, want nil (the shared default)", b)
	}
	if _, err := (ParseOptions{Budget: NewThrottle(-1, 0)}).Parse([]byte(js)); err == nil || !strings.Contains(err.Error(), "ParseOptions.Budget") {
		t.Fatalf("invalid ParseOptions.Budget: %v", err)
	}

	for _, tc := range []struct {
		throttle  string
		ratio     float64
		max       float64
		notePart  string
		wantError string
	}{
		{`{"maxTokens": 10, "tokenRatio": 0.1234}`, 0.123, 10, "truncated to 0.123", ""},
		{`{"maxTokens": 10, "tokenRatio": 0.3}`, 0.3, 10, "", ""},
		{`{"maxTokens": 10, "tokenRatio": 0.57}`, 0.57, 10, "", ""},
		{`{"maxTokens": 2, "tokenRatio": 5}`, 2, 2, "above maxTokens", ""},
		{`{"maxTokens": 0.5, "tokenRatio": 0.1}`, 0.1, 0.5, "", ""},
		{`{"maxTokens": 1000, "tokenRatio": 1}`, 1, 1000, "", ""},
		{`{"maxTokens": 10, "tokenRatio": 0.0004}`, 0, 0, "", "retryThrottling.tokenRatio: must be at least 0.001"},
		{`{"maxTokens": 1001, "tokenRatio": 1}`, 0, 0, "", "retryThrottling.maxTokens: must be a number in (0, 1000]"},
		{`{"maxTokens": 0, "tokenRatio": 1}`, 0, 0, "", "retryThrottling.maxTokens: must be a number in (0, 1000]"},
		{`{"maxTokens": "10", "tokenRatio": 1}`, 0, 0, "", "retryThrottling.maxTokens: must be a number"},
		{`{"maxTokens": 10, "tokenRatio": -1}`, 0, 0, "", "retryThrottling.tokenRatio: must be a number greater than 0"},
		{`{"tokenRatio": 1}`, 0, 0, "", "retryThrottling.maxTokens: required"},
		{`{"maxTokens": 10}`, 0, 0, "", "retryThrottling.tokenRatio: required"},
		{`[10, 0.1]`, 0, 0, "", "retryThrottling: must be a JSON object"},
	} {
		sc, err := ParseServiceConfig([]byte(`{"methodConfig": [{"name": [{}], "retryPolicy": ` + retryJSON(2) + `}], "retryThrottling": ` + tc.throttle + `}`))
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%s: error %v, want %q", tc.throttle, err, tc.wantError)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.throttle, err)
			continue
		}
		th := sc.Routes()[0].Policy.Budget.(*Throttle)
		if th.tokenRatio != tc.ratio || th.maxTokens != tc.max {
			t.Errorf("%s: throttle (%v, %v), want (%v, %v)", tc.throttle, th.maxTokens, th.tokenRatio, tc.max, tc.ratio)
		}
		if tc.notePart != "" && !hasNote(sc, "retryThrottling.tokenRatio", tc.notePart) || tc.notePart == "" && len(sc.Notes()) > 0 {
			t.Errorf("%s: notes %q, want %q", tc.throttle, noteTexts(sc), tc.notePart)
		}
	}
}

// TestServiceConfigNames: gRPC's name rules.
func TestServiceConfigNames(t *testing.T) {
	sc := mustParse(t, `{"methodConfig": [
		{"name": [{"service": "s", "method": null}, {"service": "t", "method": ""}]},
		{"name": [{"service": "s", "method": "M"}]},
		{"name": [{"service": null}]},
		{"name": []},
		{"retryPolicy": `+retryJSON(2)+`},
		null
	]}`)
	var got [][]string
	for _, r := range sc.Routes() {
		got = append(got, r.Names)
	}
	if fmt.Sprint(got) != "[[/s/ /t/] [/s/M] []]" {
		t.Errorf("route names %q", got)
	}
	for _, path := range []string{"methodConfig[3]", "methodConfig[4]", "methodConfig[5]"} {
		if !hasNote(sc, path, "") {
			t.Errorf("no note for the skipped %s: %q", path, noteTexts(sc))
		}
	}
	if !hasNote(sc, "methodConfig[3]", "applies to no method") {
		t.Errorf("notes %q", noteTexts(sc))
	}
}

// TestServiceConfigNotes: what the parser ignores or adjusts, it says.
func TestServiceConfigNotes(t *testing.T) {
	sc := mustParse(t, `{
		"loadBalancingConfig": [{"round_robin": {}}],
		"healthCheckConfig": {"serviceName": "x"},
		"MethodConfig": [{
			"name": [{"Service": "s"}],
			"waitForReady": true,
			"maxRequestMessageBytes": 1024,
			"maxResponseMessageBytes": 2048,
			"retry_policy": {},
			"retryPolicies": {},
			"retryPolcy": {},
			"retryPolicy": {"maxAttempts": 3, "initialBackoff": "2s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["OK", "UNAVAILABLE"]}
		}],
		"extra": 1
	}`, ParseOptions{Budget: NoBudget})
	want := []string{
		`MethodConfig: read as "methodConfig"`,
		`methodConfig[0].name[0].Service: read as "service"`,
		`methodConfig[0].retry_policy: unknown field, ignored as gRPC ignores it: the field is spelled "retryPolicy"`,
		`methodConfig[0].retryPolicies: unknown field, ignored`,
		`methodConfig[0].retryPolcy: unknown field, ignored as gRPC ignores it: the field is spelled "retryPolicy"`,
		`methodConfig[0].retryPolicy.initialBackoff: 2s is above maxBackoff 1s: every backoff is 1s`,
		`methodConfig[0].retryPolicy.retryableStatusCodes[0]: OK is not a failure`,
		`methodConfig[0].waitForReady: not applied by this package`,
		`methodConfig[0].maxRequestMessageBytes: not applied by this package`,
		`methodConfig[0].maxResponseMessageBytes: not applied by this package`,
		`extra: unknown field, ignored`,
	}
	notes := noteTexts(sc)
	for _, w := range want {
		if !slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, w) }) {
			t.Errorf("no note %q in:\n%s", w, strings.Join(notes, "\n"))
		}
	}
	if len(notes) != len(want) {
		t.Errorf("%d notes, want %d:\n%s", len(notes), len(want), strings.Join(notes, "\n"))
	}
	p := sc.Routes()[0].Policy
	if p.InitialBackoff != time.Second || p.MaxBackoff != time.Second {
		t.Errorf("backoff %v to %v, want 1s to 1s", p.InitialBackoff, p.MaxBackoff)
	}
}

// TestServiceConfigErrors: every rule, with the JSON path it names.
func TestServiceConfigErrors(t *testing.T) {
	mc := func(body string) string {
		return `{"methodConfig": [{"name": [{"service": "s"}]}, {"name": [{"service": "t"}], ` + body + `}]}`
	}
	rp := func(fields string) string {
		return mc(`"retryPolicy": {` + fields + `}`)
	}
	const okRetry = `"initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`
	for _, tc := range []struct {
		js   string
		path string
		rule string
	}{
		// The document.
		{``, "", "is empty"},
		{`  `, "", "is empty"},
		{`null`, "", "must be a JSON object"},
		{`[]`, "", "must be a JSON object"},
		{`"x"`, "", "must be a JSON object"},
		{`{`, "", "invalid JSON at byte 1: unexpected end"},
		{`{"methodConfig": [{"name": [}]}`, "methodConfig[0].name", "invalid JSON"},
		{`{} {}`, "", "unexpected data after"},
		{`{"methodConfig": 1}`, "methodConfig", "must be a JSON array"},
		{`{"methodConfig": [1]}`, "methodConfig[0]", "must be a JSON object"},
		{`{"methodConfig": [], "methodConfig": []}`, "methodConfig", "duplicate key"},
		{`{"methodConfig": [], "MethodConfig": []}`, "MethodConfig", `duplicate key (also "methodConfig")`},
		{strings.Repeat("[", 300) + strings.Repeat("]", 300), "", "nested more than 256 levels"},
		{`{"x": ` + strings.Repeat(`{"y": `, 300) + `1` + strings.Repeat("}", 301), "", "nested more than 256 levels deep, at byte"},
		{`{"` + strings.Repeat("k", 100) + `": [}`, `["` + strings.Repeat("k", 61) + `..."]`, "invalid JSON"},
		// Names.
		{`{"methodConfig": [{"name": {"service": "s"}}]}`, "methodConfig[0].name", "must be a JSON array"},
		{`{"methodConfig": [{"name": ["s"]}]}`, "methodConfig[0].name[0]", "must be a JSON object"},
		{`{"methodConfig": [{"name": [null]}]}`, "methodConfig[0].name[0]", "must be a JSON object"},
		{`{"methodConfig": [{"name": [{"service": 1}]}]}`, "methodConfig[0].name[0].service", "must be a JSON string"},
		{`{"methodConfig": [{"name": [{"method": "M"}]}]}`, "methodConfig[0].name[0]", `method "M" needs a service`},
		{`{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}`, "methodConfig[0].name[0]", "needs a service"},
		{`{"methodConfig": [{"name": [{"service": "/pkg.Svc"}]}]}`, "methodConfig[0].name[0].service", `must not contain "/"`},
		{`{"methodConfig": [{"name": [{"service": "pkg.Svc", "method": "/M"}]}]}`, "methodConfig[0].name[0].method", `must not contain "/"`},
		{`{"methodConfig": [{"name": [{"service": "pkg.Svc "}]}]}`, "methodConfig[0].name[0].service", "white space"},
		{"{\"methodConfig\": [{\"name\": [{\"service\": \"pkg.Svc\xff\"}]}]}", "methodConfig[0].name[0].service", "invalid UTF-8"},
		{`{"methodConfig": [{"name": [{"service": "pkg.Svc", "method": "M\u0000"}]}]}`, "methodConfig[0].name[0].method", "control characters"},
		{`{"methodConfig": [{"name": [{"service": "s"}, {"service": "s"}]}]}`, "methodConfig[0].name[1]", "duplicate name /s/, also methodConfig[0].name[0]"},
		{`{"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]}`, "methodConfig[1].name[0]", "duplicate name {} (the default), also methodConfig[0].name[0]"},
		{mc(`"name": [{"service": "s", "method": ""}]`), "methodConfig[1].name", "duplicate key"},
		{`{"methodConfig": [{"name": [{"service": "s"}]}, {"name": [{"service": "s"}]}]}`, "methodConfig[1].name[0]", "duplicate name /s/, also methodConfig[0].name[0]"},
		// retryPolicy.
		{mc(`"retryPolicy": 1`), "methodConfig[1].retryPolicy", "must be a JSON object"},
		{rp(okRetry), "methodConfig[1].retryPolicy.maxAttempts", "required"},
		{rp(`"maxAttempts": 1, ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be at least 2 (gRFC A6)"},
		{rp(`"maxAttempts": -3, ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be at least 2"},
		{rp(`"maxAttempts": 2.5, ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be a whole number"},
		{rp(`"maxAttempts": 2e0, ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be a whole number"},
		{rp(`"maxAttempts": "3", ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be a whole number"},
		{rp(`"maxAttempts": 99999999999999999999, ` + okRetry), "methodConfig[1].retryPolicy.maxAttempts", "must be a whole number"},
		{rp(`"maxAttempts": 3, "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", "required"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.maxBackoff", "required"},
		{rp(`"maxAttempts": 3, "initialBackoff": "0s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", "must be greater than 0"},
		{rp(`"maxAttempts": 3, "initialBackoff": "-1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", "must be greater than 0"},
		{rp(`"maxAttempts": 3, "initialBackoff": "100ms", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", `(write "0.1s")`},
		{rp(`"maxAttempts": 3, "initialBackoff": "0.0000000001s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", `whole nanoseconds: the shortest duration is "0.000000001s")`},
		{rp(`"maxAttempts": 3, "initialBackoff": 1, "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.initialBackoff", `a duration is a JSON string: "1s"`},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.maxBackoff", `suffix "s": "2s"`},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.backoffMultiplier", "required"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 0, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.backoffMultiplier", "must be greater than 0"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 0.5, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.backoffMultiplier", "must be at least 1 in this package"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 1e999, "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.backoffMultiplier", "finite"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": "2", "retryableStatusCodes": ["UNAVAILABLE"]`), "methodConfig[1].retryPolicy.backoffMultiplier", "finite JSON number"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2`), "methodConfig[1].retryPolicy.retryableStatusCodes", "required"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": []`), "methodConfig[1].retryPolicy.retryableStatusCodes", "must not be empty (gRFC A6)"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": "UNAVAILABLE"`), "methodConfig[1].retryPolicy.retryableStatusCodes", "must be a JSON array"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "NOPE"]`), "methodConfig[1].retryPolicy.retryableStatusCodes[1]", "must be a status code name"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["Unavailable", "ResourceExhausted"]`), "methodConfig[1].retryPolicy.retryableStatusCodes[1]", `did you mean "RESOURCE_EXHAUSTED"?`},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["CANCELED"]`), "methodConfig[1].retryPolicy.retryableStatusCodes[0]", `did you mean "CANCELLED"?`},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": ["14"]`), "methodConfig[1].retryPolicy.retryableStatusCodes[0]", "without quotes: 14"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": [17]`), "methodConfig[1].retryPolicy.retryableStatusCodes[0]", "number 0 to 16"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": [-1]`), "methodConfig[1].retryPolicy.retryableStatusCodes[0]", "number 0 to 16"},
		{rp(`"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "2s", "backoffMultiplier": 2, "retryableStatusCodes": [14.0]`), "methodConfig[1].retryPolicy.retryableStatusCodes[0]", "number 0 to 16"},
		{rp(`"maxAttempts": 3, "MaxAttempts": 3, ` + okRetry), "methodConfig[1].retryPolicy.MaxAttempts", "duplicate key"},
		{mc(`"retryPolicy": {"maxAttempts": 2, ` + okRetry + `}, "hedgingPolicy": {"maxAttempts": 2}`), "methodConfig[1]", "has both retryPolicy and hedgingPolicy"},
		// hedgingPolicy.
		{mc(`"hedgingPolicy": {}`), "methodConfig[1].hedgingPolicy.maxAttempts", "required"},
		{mc(`"hedgingPolicy": {"maxAttempts": 1}`), "methodConfig[1].hedgingPolicy.maxAttempts", "must be at least 2 (gRFC A6)"},
		{mc(`"hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "-1s"}`), "methodConfig[1].hedgingPolicy.hedgingDelay", "must not be negative"},
		{mc(`"hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "1m"}`), "methodConfig[1].hedgingPolicy.hedgingDelay", `(write "60s")`},
		{mc(`"hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": ["BAD"]}`), "methodConfig[1].hedgingPolicy.nonFatalStatusCodes[0]", "status code"},
		// timeout and the fields this package does not apply.
		{mc(`"timeout": "0s"`), "methodConfig[1].timeout", "must be greater than 0"},
		{mc(`"timeout": "-5s"`), "methodConfig[1].timeout", "must be greater than 0"},
		{mc(`"timeout": "5"`), "methodConfig[1].timeout", "duration"},
		{mc(`"timeout": "1.0000000001s"`), "methodConfig[1].timeout", "up to 9 fractional digits"},
		{mc(`"waitForReady": "yes"`), "methodConfig[1].waitForReady", "must be true or false"},
		{mc(`"maxRequestMessageBytes": -1`), "methodConfig[1].maxRequestMessageBytes", "whole number of bytes"},
		{mc(`"maxResponseMessageBytes": "4MB"`), "methodConfig[1].maxResponseMessageBytes", "whole number of bytes"},
	} {
		_, err := ParseServiceConfig([]byte(tc.js))
		var sce *ServiceConfigError
		if !errors.As(err, &sce) {
			t.Errorf("%s: error %v, want a *ServiceConfigError", tc.js, err)
			continue
		}
		if sce.Path != tc.path || !strings.Contains(sce.Rule, tc.rule) {
			t.Errorf("%s:\n got %q (path %q)\nwant path %q, rule containing %q", short(tc.js), err, sce.Path, tc.path, tc.rule)
		}
		want := "retry: invalid service config: " + displayPath(tc.path) + ": "
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("message %q does not start with %q", err, want)
		}
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func TestParseJSONDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0s", 0, true},
		{"1s", time.Second, true},
		{"0.1s", 100 * time.Millisecond, true},
		{".1s", 100 * time.Millisecond, true},
		{"1.s", time.Second, true},
		{"1.000000001s", time.Second + 1, true},
		{"0.000000001s", 1, true},
		{"-2.5s", -2500 * time.Millisecond, true},
		{"00010s", 10 * time.Second, true},
		{"315576000000s", math.MaxInt64, true},
		{"9223372036.854775807s", math.MaxInt64, true},
		{"1.0000000001s", 0, false},
		{"315576000001s", 0, false},
		{"s", 0, false},
		{".s", 0, false},
		{"-s", 0, false},
		{"1", 0, false},
		{"1S", 0, false},
		{"100ms", 0, false},
		{"1m", 0, false},
		{"+1s", 0, false},
		{"--1s", 0, false},
		{" 1s", 0, false},
		{"1 s", 0, false},
		{"1e3s", 0, false},
		{"0x10s", 0, false},
		{"1.2.3s", 0, false},
		{"１s", 0, false},
		{"", 0, false},
	} {
		got, ok := parseJSONDuration(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseJSONDuration(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 100 * time.Millisecond: "0.1s", 1500 * time.Millisecond: "1.5s", time.Minute: "60s", 1: "0.000000001s"} {
		if got := jsonSeconds(d); got != want {
			t.Errorf("jsonSeconds(%v) = %q, want %q", d, got, want)
		}
		if back, ok := parseJSONDuration(want); !ok || back != d {
			t.Errorf("parseJSONDuration(%q) = %v, %v", want, back, ok)
		}
	}
}

func TestStatusCodeNames(t *testing.T) {
	for i, n := range codeNames {
		for _, v := range []*jvalue{
			{kind: jString, text: n},
			{kind: jString, text: strings.ToLower(n)},
			{kind: jNumber, text: fmt.Sprint(i)},
		} {
			c, rule := statusCode(v)
			if rule != "" || c != codes.Code(i) {
				t.Errorf("statusCode(%s) = %v, %q; want %v", v.snippet(), c, rule, codes.Code(i))
			}
		}
		if codeName(codes.Code(i)) != n {
			t.Errorf("codeName(%d) = %q", i, codeName(codes.Code(i)))
		}
	}
	// The names are grpc-go's: its String of each code, upper-cased and
	// with underscores, is the JSON name (Canceled is spelled CANCELLED).
	for i := range codeNames {
		goName := codes.Code(i).String()
		squashed := strings.ToUpper(strings.ReplaceAll(codeNames[i], "_", ""))
		if strings.ToUpper(goName) != squashed && !(i == 1 && goName == "Canceled") {
			t.Errorf("code %d: JSON name %q, grpc-go name %q", i, codeNames[i], goName)
		}
	}
}
