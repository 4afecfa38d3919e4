package retry

import (
	"context"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
)

// LogHedges returns a Policy.OnHedge hook that logs the hedges of hedged
// calls (see Hedging) to l, go-grpc-middleware v2's logging.Logger, as
// LogRetries logs retries (the adapter for log/slog is shown there). Each
// entry is logged with the call's context; its message is "hedge sent",
// "hedge denied" or "hedge won", and its fields are
//
//	grpc.component       "client"
//	grpc.service         service name, e.g. "inference.v1.InferenceService"
//	grpc.method          method name, e.g. "Generate"
//	grpc.code            for a hedge that replaces a failed attempt (sent or
//	grpc.error           denied): that attempt's code, error text and
//	grpc.retry.class     class; absent for a hedge due on time, and for won
//	grpc.retry.attempt   int: the hedge's attempt number (2 for the first)
//	grpc.retry.hedge     "sent", "denied" or "won"
//	grpc.retry.delay     time.Duration: the hedge delay, for a hedge sent or
//	                     denied on time (the attempts in flight were slow);
//	                     0 for one that replaces a failed attempt, and for won
//	grpc.retry.suppressed  int, denied entries only: denials of the method
//	                     not logged since the previous entry (see below)
//
// followed by the fields a logging interceptor put in the context (ours win
// on a duplicate key).
//
// Levels: sent and won are logging.LevelDebug. A hedging policy sends
// hedges by design (with a learned delay, on about MaxExtraLoad of the
// calls, 5% by default): at INFO a busy service would log one line for
// every twenty calls. Denied is logging.LevelInfo: the budget, or the
// load guard that keeps hedges sent on time within MaxExtraLoad, refused
// a hedge that was due, so the tail is no longer being cut; the call
// itself goes on with the attempts in flight. It is not a warning: a call
// that then fails is logged by LogGiveUps, at WARN, with Reason StopBudget.
//
// Denials come in floods: when a backend slows down, every slow call's
// hedge is refused. So, as LogGiveUps does with its warnings, denials are
// aggregated per method: at most one entry every 10 seconds (see
// LogHedgesEvery), counting in grpc.retry.suppressed the denials not
// logged since the previous one. As with LogGiveUps, a window's count is
// reported with the method's next denial entry, whenever that comes. Sent
// and won entries are not aggregated (they are bounded by MaxExtraLoad or
// the budget, and at DEBUG).
//
// The hook is called on the goroutine that sends the hedge (sent,
// denied) or on the calling goroutine (won), concurrently for concurrent
// calls, so l must be safe for concurrent use and should not block. It
// panics if l is nil.
func LogHedges(l logging.Logger) func(HedgeEvent) {
	return LogHedgesEvery(l, 10*time.Second)
}

// LogHedgesEvery is LogHedges with the denials of each method logged at
// most once per every instead of once per 10 seconds. An every of 0 or less
// turns the aggregation off: every denial is logged, with
// grpc.retry.suppressed 0.
func LogHedgesEvery(l logging.Logger, every time.Duration) func(HedgeEvent) {
	if l == nil {
		panic("retry.LogHedges: nil Logger")
	}
	h := &hedgeLogger{logAggregator{every: every, now: time.Now}}
	return func(ev HedgeEvent) { h.log(l, ev) }
}

// hedgeLogger counts hedge denials per method between entries.
type hedgeLogger struct{ logAggregator }

func (h *hedgeLogger) log(l logging.Logger, ev HedgeEvent) {
	level, msg := logging.LevelDebug, "hedge sent"
	suppressed := 0
	switch ev.Kind {
	case HedgeWon:
		msg = "hedge won"
	case HedgeDenied:
		level, msg = logging.LevelInfo, "hedge denied"
		var ok bool
		if suppressed, ok = h.admit(ev.Method); !ok {
			return
		}
	}
	ctx := ev.Context
	if ctx == nil {
		ctx = context.Background()
	}
	service, method := splitMethod(ev.Method)
	fields := logging.Fields{
		logging.ComponentFieldKey, logging.KindClientFieldValue,
		logging.ServiceFieldKey, service,
		logging.MethodFieldKey, method,
	}
	if ev.Err != nil { // the failure the hedge replaces
		fields = append(fields,
			"grpc.code", ev.Code.String(),
			"grpc.error", errorText(ev.Err),
			"grpc.retry.class", ev.Class.String(),
		)
	}
	fields = append(fields,
		"grpc.retry.attempt", ev.Attempt,
		"grpc.retry.hedge", ev.Kind.String(),
		"grpc.retry.delay", ev.Delay,
	)
	if ev.Kind == HedgeDenied {
		fields = append(fields, "grpc.retry.suppressed", suppressed)
	}
	l.Log(ctx, level, msg, fields.WithUnique(logging.ExtractFields(ctx))...)
}
