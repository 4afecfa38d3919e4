package retry

import (
	"context"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
)

// LogFallbacks returns a FailoverConfig.OnFallback hook that logs calls
// moving to a fallback to l (go-grpc-middleware v2's logging.Logger, as
// LogRetries), with the message "falling back" and the fields of
// LogRetries up to grpc.error (the step the call leaves: its code and
// error), then
//
//	grpc.fallback.from        the step left, e.g. "primary"
//	grpc.fallback.to          the step tried next, e.g. "eu-west"
//	grpc.fallback.skipped     bool: the step left was not tried, its breaker was open
//	grpc.fallback.class       the class of the step's failure, e.g. "transient"
//	grpc.fallback.reason      why its retrying stopped, e.g. "retry budget exhausted" ("" if unknown)
//	grpc.fallback.suppressed  int: fallbacks like this one not logged since the last entry
//
// followed by the fields a logging interceptor put in the call's context.
// A fallback after a failure is logged at logging.LevelWarn; one past an
// open breaker (expected while it is open) at logging.LevelInfo.
//
// During an outage every call falls back, so entries are aggregated: for
// each method, pair of steps and kind (failure or breaker), at most one
// entry every 10 seconds (see LogFallbacksEvery), counting the others in
// grpc.fallback.suppressed.
//
// It is safe for concurrent use if l is, and panics if l is nil.
func LogFallbacks(l logging.Logger) func(FallbackEvent) {
	return LogFallbacksEvery(l, 10*time.Second)
}

// LogFallbacksEvery is LogFallbacks with entries of each method, pair of
// steps and kind logged at most once per every (0: every one).
func LogFallbacksEvery(l logging.Logger, every time.Duration) func(FallbackEvent) {
	return logFallbacks(l, every, time.Now)
}

func logFallbacks(l logging.Logger, every time.Duration, now func() time.Time) func(FallbackEvent) {
	if l == nil {
		panic("retry.LogFallbacks: nil Logger")
	}
	agg := &logAggregator{every: every, now: now}
	return func(ev FallbackEvent) {
		suppressed, ok := agg.admit(fallbackKey{ev.Method, ev.From, ev.To, ev.Skipped})
		if !ok {
			return
		}
		level := logging.LevelWarn
		if ev.Skipped {
			level = logging.LevelInfo
		}
		reason := ""
		if ev.Reason != 0 {
			reason = ev.Reason.String()
		}
		ctx, fields := callFields(ev.Context, ev.Method, ev.Code, ev.Err)
		fields = append(fields,
			"grpc.fallback.from", ev.FromName,
			"grpc.fallback.to", ev.ToName,
			"grpc.fallback.skipped", ev.Skipped,
			"grpc.fallback.class", ev.Class.String(),
			"grpc.fallback.reason", reason,
			"grpc.fallback.suppressed", suppressed,
		)
		l.Log(ctx, level, "falling back", fields.WithUnique(logging.ExtractFields(ctx))...)
	}
}

type fallbackKey struct {
	method   string
	from, to int
	skipped  bool
}

// LogBreakerChanges returns a BreakerConfig.OnStateChange hook that logs
// every change of a breaker's state to l: "circuit breaker opened" at
// logging.LevelWarn, "circuit breaker half-open" and "circuit breaker
// closed" at logging.LevelInfo, with the fields
//
//	grpc.component          "client"
//	grpc.breaker.name       BreakerConfig.Name
//	grpc.breaker.group      the method group ("" without BreakerConfig.Group)
//	grpc.breaker.from       the state left, e.g. "closed"
//	grpc.breaker.to         the new state
//
// and, when it opens, grpc.breaker.successes, grpc.breaker.failures and
// grpc.breaker.slow (int: the window that opened it; 0 when failed probes
// reopened it) and grpc.breaker.until (time.Time: the earliest probe).
// State changes are rare (one per open period at most), so they are not
// aggregated. It panics if l is nil.
func LogBreakerChanges(l logging.Logger) func(BreakerEvent) {
	if l == nil {
		panic("retry.LogBreakerChanges: nil Logger")
	}
	return func(ev BreakerEvent) {
		fields := logging.Fields{
			logging.ComponentFieldKey, logging.KindClientFieldValue,
			"grpc.breaker.name", ev.Name,
			"grpc.breaker.group", ev.Group,
			"grpc.breaker.from", ev.From.String(),
			"grpc.breaker.to", ev.To.String(),
		}
		level, msg := logging.LevelInfo, "circuit breaker "+ev.To.String()
		if ev.To == BreakerOpen {
			level, msg = logging.LevelWarn, "circuit breaker opened"
			fields = append(fields,
				"grpc.breaker.successes", ev.Successes,
				"grpc.breaker.failures", ev.Failures,
				"grpc.breaker.slow", ev.Slow,
				"grpc.breaker.until", ev.Until,
			)
		}
		l.Log(context.Background(), level, msg, fields...)
	}
}
