package retry

import (
	"context"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
)

// countingLogger records the levels and the grpc.retry.suppressed field of
// what it is given.
type countingLogger struct {
	levels     []logging.Level
	suppressed []any
}

func (l *countingLogger) Log(_ context.Context, level logging.Level, _ string, fields ...any) {
	l.levels = append(l.levels, level)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "grpc.retry.suppressed" {
			l.suppressed = append(l.suppressed, fields[i+1])
		}
	}
}

// TestGiveUpWarningsAreAggregated: in an outage a client at 20 calls/s
// stopped by its budget logs one warning per method and reason every 10s,
// with the count of those it did not log; debug entries are not
// aggregated.
func TestGiveUpWarningsAreAggregated(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	agg := &giveUpAggregator{every: 10 * time.Second, now: func() time.Time { return now }}
	l := new(countingLogger)
	ev := func(method string, r StopReason) GiveUpEvent {
		return GiveUpEvent{Method: method, Reason: r, Code: codes.Unavailable, Class: Transient}
	}
	for i := range 50 { // 2.5s at 20 calls/s
		agg.log(l, ev("/s/A", StopBudget))
		now = now.Add(50 * time.Millisecond)
		if i == 10 {
			agg.log(l, ev("/s/B", StopBudget))      // another method: its own warning
			agg.log(l, ev("/s/A", StopMaxAttempts)) // another reason: its own warning
			agg.log(l, ev("/s/A", StopPermanent))   // debug: never aggregated
			agg.log(l, ev("/s/A", StopPermanent))
		}
	}
	if len(l.levels) != 5 {
		t.Fatalf("%d entries for 54 give-ups in 2.5s, want 5 (3 warnings, 2 debug): %v", len(l.levels), l.levels)
	}
	now = now.Add(10 * time.Second)
	agg.log(l, ev("/s/A", StopBudget))
	if got := l.suppressed[len(l.suppressed)-1]; got != 49 {
		t.Fatalf("the next warning counts %v suppressed give-ups, want 49", got)
	}
	every := &giveUpAggregator{now: time.Now}
	l2 := new(countingLogger)
	for range 3 {
		every.log(l2, ev("/s/A", StopBudget))
	}
	if len(l2.levels) != 3 {
		t.Fatalf("with no interval every warning is logged: %d", len(l2.levels))
	}
}
