package retry

import (
	"testing"
	"time"
)

// TestHedgeDenialsAreAggregated: when a backend slows down and every slow
// call's hedge is refused, a client at 20 calls/s logs one denial per
// method every 10s, with the count of those it did not log; sent and won
// entries are not aggregated.
func TestHedgeDenialsAreAggregated(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := &hedgeLogger{logAggregator{every: 10 * time.Second, now: func() time.Time { return now }}}
	l := new(countingLogger)
	ev := func(method string, k HedgeKind) HedgeEvent {
		return HedgeEvent{Method: method, Kind: k, Attempt: 2, Delay: 30 * time.Millisecond}
	}
	for i := range 50 { // 2.5s at 20 calls/s
		h.log(l, ev("/s/A", HedgeDenied))
		now = now.Add(50 * time.Millisecond)
		if i == 10 {
			h.log(l, ev("/s/B", HedgeDenied)) // another method: its own entry
			h.log(l, ev("/s/A", HedgeSent))   // not aggregated
			h.log(l, ev("/s/A", HedgeSent))
			h.log(l, ev("/s/A", HedgeWon))
		}
	}
	if len(l.levels) != 5 {
		t.Fatalf("%d entries for 50 denials and 4 other events in 2.5s, want 5 (2 denials, 3 others): %v", len(l.levels), l.levels)
	}
	now = now.Add(10 * time.Second)
	h.log(l, ev("/s/A", HedgeDenied))
	if got := l.suppressed[len(l.suppressed)-1]; got != 49 {
		t.Fatalf("the next denial counts %v suppressed denials, want 49", got)
	}
	every := &hedgeLogger{logAggregator{now: time.Now}}
	l2 := new(countingLogger)
	for range 3 {
		every.log(l2, ev("/s/A", HedgeDenied))
	}
	if len(l2.levels) != 3 {
		t.Fatalf("with no interval every denial is logged: %d", len(l2.levels))
	}
}
