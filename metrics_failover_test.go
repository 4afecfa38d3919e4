package retry_test

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Instrument names of the failover and the breaker, as users see them.
const (
	instFallbacks       = "retry.client.fallbacks"
	instBreakerState    = "retry.client.breaker.state"
	instBreakerOpens    = "retry.client.breaker.opens"
	instBreakerRejected = "retry.client.breaker.rejected"
	instBreakerProbes   = "retry.client.breaker.probes"
)

// collectLabelled returns the points of the instruments in names, each as
// "attr=value,...: value" (attributes in key order), sorted; it fails the
// test if one of them has another unit or type than it should.
func collectLabelled(t *testing.T, m *meter, names ...string) map[string][]string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	units := map[string]string{
		instFallbacks: "{fallback}", instBreakerState: "1", instBreakerOpens: "{open}",
		instBreakerRejected: "{call}", instBreakerProbes: "{call}",
	}
	got := make(map[string][]string)
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if !slices.Contains(names, mt.Name) {
				continue
			}
			if mt.Unit != units[mt.Name] {
				t.Errorf("%s: unit %q, want %q", mt.Name, mt.Unit, units[mt.Name])
			}
			add := func(s attribute.Set, v int64) {
				got[mt.Name] = append(got[mt.Name], s.Encoded(attribute.DefaultEncoder())+": "+strconv.FormatInt(v, 10))
			}
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: a sum, monotonic %v, %v", mt.Name, d.IsMonotonic, d.Temporality)
				}
				for _, dp := range d.DataPoints {
					add(dp.Attributes, dp.Value)
				}
			case metricdata.Gauge[int64]:
				if mt.Name != instBreakerState {
					t.Errorf("%s: a gauge", mt.Name)
				}
				for _, dp := range d.DataPoints {
					add(dp.Attributes, dp.Value)
				}
			default:
				t.Errorf("%s: unexpected %T", mt.Name, mt.Data)
			}
		}
	}
	for _, ps := range got {
		slices.Sort(ps)
	}
	return got
}

// checkLabelled compares collectLabelled's result with want.
func checkLabelled(t *testing.T, got, want map[string][]string) {
	t.Helper()
	for name, w := range want {
		slices.Sort(w)
		if !slices.Equal(got[name], w) {
			t.Errorf("%s:\n got  %s\n want %s", name, strings.Join(got[name], "\n      "), strings.Join(w, "\n      "))
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected points %v", name, g)
		}
	}
}

// fallbackPoint is a point of retry.client.fallbacks, as collectLabelled
// writes it.
func fallbackPoint(method, from, to, reason string, n int) string {
	return "grpc.method=" + method + ",grpc.target=" + bufTarget +
		",retry.fallback.from=" + from + ",retry.fallback.reason=" + reason + ",retry.fallback.to=" + to + ": " + strconv.Itoa(n)
}

// breakerPoints are the points of a circuit, as collectLabelled writes
// them: its state gauge, and its opens, refusals and probes.
func breakerPoints(want map[string][]string, name, group string, state retry.BreakerState, opens, rejected, probes int) {
	labels := "retry.breaker.group=" + group + ",retry.breaker.name=" + name
	for _, s := range []retry.BreakerState{retry.BreakerClosed, retry.BreakerOpen, retry.BreakerHalfOpen} {
		v := 0
		if s == state {
			v = 1
		}
		want[instBreakerState] = append(want[instBreakerState], labels+",retry.breaker.state="+s.String()+": "+strconv.Itoa(v))
	}
	want[instBreakerOpens] = append(want[instBreakerOpens], labels+": "+strconv.Itoa(opens))
	want[instBreakerRejected] = append(want[instBreakerRejected], labels+": "+strconv.Itoa(rejected))
	want[instBreakerProbes] = append(want[instBreakerProbes], labels+": "+strconv.Itoa(probes))
}

// TestMetricsFallbacks: every move to a fallback is counted once, by
// method (generated code's, or "other"), target, the steps left and tried,
// and why the step left ended; the breaker of the primary is reported
// through the same Metrics.
func TestMetricsFallbacks(t *testing.T) {
	m := newMeter(t)
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{Name: "us-east", ConsecutiveFailures: 2, Metrics: m.metrics})
	primary := &backend{generate: always(codes.Unavailable), streamGenerate: streamFails(codes.Unavailable)}
	// secondary has no retry interceptor: its failures carry no StopReason.
	secondary := retry.Fallback{Name: "secondary", Conn: connTo(t, &backend{generate: always(codes.Unavailable), streamGenerate: streamFails(codes.Unavailable)})}
	tertiary := fallbackTo(t, "tertiary", &backend{generate: answer("tertiary"), streamGenerate: streamTokens("tertiary")})
	fo, err := retry.NewFailover(retry.FailoverConfig{
		Name:      "us-east",
		Breaker:   br,
		Fallbacks: []retry.Fallback{secondary, tertiary},
		Metrics:   m.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	policy := foPolicy
	policy.MaxAttempts = 2
	policy.Metrics = m.metrics
	cc := connTo(t, primary, append(fo.DialOptions(), retry.DialOptions(policy)...)...)
	client := inferencev1.NewInferenceServiceClient(cc)

	// Generated code's call, then a call by hand (no grpc.StaticMethod):
	// the primary's retries run out, the secondary fails, the tertiary
	// answers. The two failures of the primary open its breaker.
	if resp, err := client.Generate(context.Background(), hi); err != nil || resp.GetText() != "tertiary" {
		t.Fatalf("Generate = %v, %v", resp, err)
	}
	var reply inferencev1.GenerateResponse
	if err := cc.Invoke(context.Background(), methodGenerate, hi, &reply); err != nil || reply.GetText() != "tertiary" {
		t.Fatalf("Invoke = %v, %v", &reply, err)
	}
	// A stream skips the open breaker's primary.
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if toks, err := readTokens(stream); err != nil || len(toks) != 1 || toks[0] != "tertiary" {
		t.Fatalf("StreamGenerate = %v, %v", toks, err)
	}

	const streamLabel = "inference.v1.InferenceService/StreamGenerate"
	want := map[string][]string{instFallbacks: {
		fallbackPoint(generateLabel, "us-east", "secondary", "max_attempts", 1),
		fallbackPoint(generateLabel, "secondary", "tertiary", "failed", 1),
		fallbackPoint(nonStaticLabel, "us-east", "secondary", "max_attempts", 1),
		fallbackPoint(nonStaticLabel, "secondary", "tertiary", "failed", 1),
		fallbackPoint(streamLabel, "us-east", "secondary", "breaker_open", 1),
		fallbackPoint(streamLabel, "secondary", "tertiary", "failed", 1),
	}}
	breakerPoints(want, "us-east", "", retry.BreakerOpen, 1, 1, 0)
	checkLabelled(t, collectLabelled(t, m, instFallbacks, instBreakerState, instBreakerOpens, instBreakerRejected, instBreakerProbes), want)
	// The primary's policy records its retries in the same Metrics.
	checkPoints(t, m.collect(t), map[string][]point{
		instRetries: {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 1}, {Method: nonStaticLabel, Target: bufTarget, Count: 1, Sum: 1}},
		instDelay:   {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: -1}, {Method: nonStaticLabel, Target: bufTarget, Count: 1, Sum: -1}},
	})
}

// TestMetricsBreaker: each circuit of a breaker is observed at collection:
// its state (1 for the current one, 0 for the others), the times it
// opened, the calls it refused and the probes it let through, per group.
func TestMetricsBreaker(t *testing.T) {
	m := newMeter(t)
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{
		Name:                "us-east",
		ConsecutiveFailures: 1,
		OpenFor:             time.Second,
		Jitter:              -1,
		Probes:              1,
		Group: func(method string) string {
			if method == methodGenerate {
				return "generate"
			}
			return "other"
		},
		Metrics: m.metrics,
	})
	var down atomic.Bool
	down.Store(true)
	primary := &backend{
		generate: func(context.Context, *inferencev1.GenerateRequest, int) (string, error) {
			if down.Load() {
				return "", status.Error(codes.Unavailable, "down")
			}
			return "ok", nil
		},
		streamGenerate: streamTokens("ok"),
	}
	policy := foPolicy
	policy.MaxAttempts = 1
	client := failoverClient(t, retry.FailoverConfig{Breaker: br}, primary, policy)
	labelled := func() map[string][]string {
		return collectLabelled(t, m, instFallbacks, instBreakerState, instBreakerOpens, instBreakerRejected, instBreakerProbes)
	}
	// A breaker that has seen no call has no circuit yet.
	checkLabelled(t, labelled(), map[string][]string{})

	// Generate fails and opens its group's circuit; the next call is
	// refused; the other group's stream goes through.
	for range 2 {
		if _, err := client.Generate(context.Background(), hi); err == nil {
			t.Fatal("Generate succeeded on a primary that is down")
		}
	}
	stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readTokens(stream); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	breakerPoints(want, "us-east", "generate", retry.BreakerOpen, 1, 1, 0)
	breakerPoints(want, "us-east", "other", retry.BreakerClosed, 0, 0, 0)
	checkLabelled(t, labelled(), want)

	// After the open period, a probe closes it.
	down.Store(false)
	clk.Advance(2 * time.Second)
	if _, err := client.Generate(context.Background(), hi); err != nil {
		t.Fatal(err)
	}
	want = map[string][]string{}
	breakerPoints(want, "us-east", "generate", retry.BreakerClosed, 1, 1, 1)
	breakerPoints(want, "us-east", "other", retry.BreakerClosed, 0, 0, 0)
	checkLabelled(t, labelled(), want)
}

// TestMetricsBreakerCollected: a breaker is reported while it is in use,
// and forgotten once it is garbage-collected; a zero Metrics reports
// nothing and fails nothing.
func TestMetricsBreakerCollected(t *testing.T) {
	m := newMeter(t)
	newBreaker := func(name string) {
		if _, err := retry.NewBreaker(retry.BreakerConfig{Name: name, Metrics: m.metrics}); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := retry.NewBreaker(retry.BreakerConfig{Name: "kept", Metrics: m.metrics})
	if err != nil {
		t.Fatal(err)
	}
	newBreaker("dropped")
	// A zero Metrics is no Metrics.
	if _, err := retry.NewBreaker(retry.BreakerConfig{Name: "zero", Metrics: &retry.Metrics{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := retry.NewFailover(retry.FailoverConfig{Metrics: &retry.Metrics{}}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	want := map[string][]string{}
	breakerPoints(want, "kept", "", retry.BreakerClosed, 0, 0, 0)
	checkLabelled(t, collectLabelled(t, m, instBreakerState, instBreakerOpens, instBreakerRejected, instBreakerProbes), want)
	runtime.KeepAlive(kept)
}
