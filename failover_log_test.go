package retry_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"

	"github.com/seed4f82f287/retry"
)

// LogFallbacks and LogBreakerChanges: the entries a fallback after a
// failure, a breaker opening and a fallback past the open breaker make,
// with every field, its value and its type.
func TestLogFallbacksAndBreakerChanges(t *testing.T) {
	log := new(fakeLogger)
	clk := retry.NewTestClock()
	br := testBreaker(t, clk, retry.BreakerConfig{Name: "us-east", MinCalls: 1, OnStateChange: retry.LogBreakerChanges(log)})
	primary := &backend{generate: always(codes.Unavailable)}
	secondary := &backend{generate: answer("ok")}
	client := failoverClient(t, retry.FailoverConfig{
		Name:       "us-east",
		Breaker:    br,
		Fallbacks:  []retry.Fallback{fallbackTo(t, "eu-west", secondary)},
		OnFallback: retry.LogFallbacks(log),
	}, primary, foPolicy)
	ctx := logging.InjectLogField(context.Background(), "request.id", "r-7")
	for i := 0; i < 2; i++ {
		if _, err := client.Generate(ctx, hi); err != nil {
			t.Fatal(err)
		}
	}
	got := log.all()
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3: %+v", len(got), got)
	}
	until := br.Stats()[0].Until
	want := []struct {
		level  logging.Level
		msg    string
		fields []any
	}{
		{logging.LevelWarn, "circuit breaker opened", []any{
			"grpc.component", "client",
			"grpc.breaker.name", "us-east",
			"grpc.breaker.group", "",
			"grpc.breaker.from", "closed",
			"grpc.breaker.to", "open",
			"grpc.breaker.successes", 0,
			"grpc.breaker.failures", 1,
			"grpc.breaker.slow", 0,
			"grpc.breaker.until", until,
		}},
		{logging.LevelWarn, "falling back", []any{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "Unavailable",
			"grpc.error", "rpc error: code = Unavailable desc = always Unavailable (retry: 3 attempt(s), stopped: max attempts)",
			"grpc.fallback.from", "us-east",
			"grpc.fallback.to", "eu-west",
			"grpc.fallback.skipped", false,
			"grpc.fallback.class", "transient",
			"grpc.fallback.reason", "max attempts",
			"grpc.fallback.suppressed", 0,
			"request.id", "r-7",
		}},
		{logging.LevelInfo, "falling back", []any{
			"grpc.component", "client",
			"grpc.service", "inference.v1.InferenceService",
			"grpc.method", "Generate",
			"grpc.code", "Unavailable",
			"grpc.error", "retry: circuit breaker open",
			"grpc.fallback.from", "us-east",
			"grpc.fallback.to", "eu-west",
			"grpc.fallback.skipped", true,
			"grpc.fallback.class", "transient",
			"grpc.fallback.reason", "",
			"grpc.fallback.suppressed", 0,
			"request.id", "r-7",
		}},
	}
	for i, e := range got {
		if e.level != want[i].level || e.msg != want[i].msg || !reflect.DeepEqual(e.fields, want[i].fields) {
			t.Errorf("entry %d: %v %q %#v\nwant %v %q %#v", i, e.level, e.msg, e.fields, want[i].level, want[i].msg, want[i].fields)
		}
	}
}
