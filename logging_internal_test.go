package retry

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	agg := &giveUpAggregator{logAggregator{every: 10 * time.Second, now: func() time.Time { return now }}}
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
	every := &giveUpAggregator{logAggregator{now: time.Now}}
	l2 := new(countingLogger)
	for range 3 {
		every.log(l2, ev("/s/A", StopBudget))
	}
	if len(l2.levels) != 3 {
		t.Fatalf("with no interval every warning is logged: %d", len(l2.levels))
	}
}

// lockedLogger counts, safe for concurrent use, the warnings per full
// method name and the sum of their grpc.retry.suppressed fields.
type lockedLogger struct {
	mu         sync.Mutex
	warnings   map[string]int
	suppressed map[string]int
}

func (l *lockedLogger) Log(_ context.Context, level logging.Level, _ string, fields ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if level != logging.LevelWarn {
		return
	}
	var service, method string
	var n int
	for i := 0; i+1 < len(fields); i += 2 {
		switch fields[i] {
		case logging.ServiceFieldKey:
			service = fields[i+1].(string)
		case logging.MethodFieldKey:
			method = fields[i+1].(string)
		case "grpc.retry.suppressed":
			n = fields[i+1].(int)
		}
	}
	method = "/" + service + "/" + method
	if l.warnings == nil {
		l.warnings, l.suppressed = map[string]int{}, map[string]int{}
	}
	l.warnings[method]++
	l.suppressed[method] += n
}

// TestGiveUpAggregationConcurrent: give-ups from many goroutines at once.
// At one instant exactly one warning per method and reason is logged and
// every other give-up is counted once, in a warning. With the clock
// moving while they log, every give-up is either logged or counted in a
// later warning, never both, never lost, and a method has at most one
// warning a window.
func TestGiveUpAggregationConcurrent(t *testing.T) {
	const goroutines = 8
	// run logs each goroutine's give-ups, in the same order of methods for
	// every goroutine so that they meet on each method at about the same
	// time; tick, if set, runs after each.
	run := func(agg *giveUpAggregator, l *lockedLogger, methods []string, rounds int, tick func()) {
		var wg sync.WaitGroup
		begin := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-begin
				for range rounds {
					for _, m := range methods {
						agg.log(l, GiveUpEvent{Method: m, Reason: StopBudget, Code: codes.Unavailable, Class: Transient})
						if tick != nil {
							tick()
						}
					}
				}
			})
		}
		close(begin)
		wg.Wait()
	}

	t.Run("one instant", func(t *testing.T) {
		// Many methods: each is a race between the goroutines for its
		// first warning.
		const rounds = 2
		methods := make([]string, 4000)
		for i := range methods {
			methods[i] = fmt.Sprintf("/s/M%d", i)
		}
		now := time.Unix(1_000_000, 0)
		agg := &giveUpAggregator{logAggregator{every: 10 * time.Second, now: func() time.Time { return now }}}
		l := new(lockedLogger)
		run(agg, l, methods, rounds, nil)
		for _, m := range methods {
			if l.warnings[m] != 1 {
				t.Fatalf("%s: %d warnings at one instant, want one", m, l.warnings[m])
			}
		}
		// The next window's first warning counts the rest (a give-up at
		// the very moment of the first warning may be counted in it).
		now = now.Add(10 * time.Second)
		for _, m := range methods {
			agg.log(l, GiveUpEvent{Method: m, Reason: StopBudget})
			if want := goroutines*rounds - 1; l.warnings[m] != 2 || l.suppressed[m] != want {
				t.Fatalf("%s: %d warnings counting %d, want 2 counting %d", m, l.warnings[m], l.suppressed[m], want)
			}
		}
	})

	t.Run("moving clock", func(t *testing.T) {
		const rounds = 1000
		methods := []string{"/s/A", "/s/B"}
		var clock atomic.Int64 // ns since t0, advanced by the goroutines
		t0 := time.Unix(1_000_000, 0)
		agg := &giveUpAggregator{logAggregator{every: time.Millisecond, now: func() time.Time { return t0.Add(time.Duration(clock.Load())) }}}
		l := new(lockedLogger)
		run(agg, l, methods, rounds, func() { clock.Add(int64(7 * time.Microsecond)) })
		for _, m := range methods {
			v, _ := agg.keys.Load(giveUpKey{m, StopBudget})
			pending := int(v.(*logCount).suppressed.Load())
			if got := l.warnings[m] + l.suppressed[m] + pending; got != goroutines*rounds {
				t.Fatalf("%s: %d warnings + %d counted in them + %d pending = %d, want the %d give-ups", m, l.warnings[m], l.suppressed[m], pending, got, goroutines*rounds)
			}
			// 8×2×1000 ticks of 7µs: the clock moves 112ms, and each
			// goroutine alternates methods, so each method has give-ups
			// in more than one window of 1ms, and a warning in at most
			// 113 of them.
			if l.warnings[m] < 2 || l.warnings[m] > 113 {
				t.Fatalf("%s: %d warnings while the clock moved 112ms, want 2 to 113 (one a millisecond at most)", m, l.warnings[m])
			}
		}
	})
}
