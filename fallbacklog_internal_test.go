package retry

import (
	"context"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
)

// fieldLogger records the level and the grpc.fallback.suppressed field of
// each entry.
type fieldLogger struct {
	levels     []logging.Level
	suppressed []any
}

func (l *fieldLogger) Log(_ context.Context, level logging.Level, _ string, fields ...any) {
	l.levels = append(l.levels, level)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == "grpc.fallback.suppressed" {
			l.suppressed = append(l.suppressed, fields[i+1])
		}
	}
}

// In an outage every call falls back: one entry per method, pair of steps
// and kind every period, counting those not logged.
func TestFallbackLogsAreAggregated(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := new(fieldLogger)
	hook := logFallbacks(l, 10*time.Second, func() time.Time { return now })
	ev := func(method string, skipped bool) FallbackEvent {
		return FallbackEvent{Method: method, From: 0, To: 1, Skipped: skipped, Code: codes.Unavailable}
	}
	for i := range 50 {
		hook(ev("/s/A", false))
		hook(ev("/s/A", true))
		if i == 0 {
			hook(ev("/s/B", false))
		}
		now = now.Add(50 * time.Millisecond)
	}
	if len(l.levels) != 3 || l.levels[0] != logging.LevelWarn || l.levels[1] != logging.LevelInfo {
		t.Fatalf("levels %v: want one warning and one info for /s/A, one warning for /s/B", l.levels)
	}
	now = now.Add(10 * time.Second)
	hook(ev("/s/A", false))
	if len(l.suppressed) != 4 || l.suppressed[3] != 49 {
		t.Fatalf("suppressed %v: want 49 counted since the first entry", l.suppressed)
	}
	l2 := new(fieldLogger)
	every := logFallbacks(l2, 0, time.Now)
	for range 5 {
		every(ev("/s/A", false))
	}
	if len(l2.levels) != 5 {
		t.Fatalf("with no period, %d of 5 entries logged", len(l2.levels))
	}
}
