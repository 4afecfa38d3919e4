package retry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
)

// LogRetries returns a Policy.OnRetry hook that logs every retry to l, the
// Logger interface of go-grpc-middleware v2's logging package. The module
// has no adapter to import (its repository shows them as examples to copy,
// under interceptors/logging/examples); for a *slog.Logger the adapter is
// a logging.LoggerFunc (logging.Level is slog.Level), which the package's
// slog example runs:
//
//	l := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
//		logger.Log(ctx, slog.Level(lvl), msg, fields...)
//	})
//	policy := retry.Policy{OnRetry: retry.LogRetries(l)}
//
// Each retry is one entry at logging.LevelInfo with the message
// "retrying call", logged with the call's context, and these fields, named
// as go-grpc-middleware's own logging interceptor names them where it has
// a name:
//
//	grpc.component       "client"
//	grpc.service         service name, e.g. "inference.v1.InferenceService"
//	grpc.method          method name, e.g. "Generate"
//	grpc.code            the failed attempt's code, e.g. "Unavailable"
//	grpc.error           the failed attempt's error text
//	grpc.retry.attempt   int: the attempt that failed (1 for the first)
//	grpc.retry.class     its class, e.g. "transient"
//	grpc.retry.delay     time.Duration: the wait before the next attempt
//	grpc.retry.pushback  bool: whether the server chose the wait
//
// followed by the fields a logging interceptor (or logging.InjectFields)
// put in the call's context, so a retry line carries the request's own
// fields (trace ID, user, ...); on a duplicate key the field above wins.
//
// For another level, wrap l:
//
//	debug := logging.LoggerFunc(func(ctx context.Context, _ logging.Level, msg string, f ...any) {
//		l.Log(ctx, logging.LevelDebug, msg, f...)
//	})
//
// The hook is called on the calling goroutine, concurrently for concurrent
// calls, so l must be safe for concurrent use and should not block. To also
// run another hook, call both from one function. LogRetries panics if l is
// nil.
//
// LogRetries logs retries only: a call that gives up (after its last
// attempt, or stopped by the budget, a deadline or the server) is not a
// retry; log those with LogGiveUps as Policy.OnGiveUp.
func LogRetries(l logging.Logger) func(RetryEvent) {
	if l == nil {
		panic("retry.LogRetries: nil Logger")
	}
	return func(ev RetryEvent) {
		ctx, fields := callFields(ev.Context, ev.Method, ev.Code, ev.Err)
		fields = append(fields,
			"grpc.retry.attempt", ev.Attempt,
			"grpc.retry.class", ev.Class.String(),
			"grpc.retry.delay", ev.Delay,
			"grpc.retry.pushback", ev.Pushback,
		)
		l.Log(ctx, logging.LevelInfo, "retrying call", fields.WithUnique(logging.ExtractFields(ctx))...)
	}
}

// callFields returns the context to log with (Background for an event not
// made by the interceptors) and the fields that name the call and its error.
func callFields(ctx context.Context, fullMethod string, code codes.Code, err error) (context.Context, logging.Fields) {
	if ctx == nil {
		ctx = context.Background()
	}
	service, method := splitMethod(fullMethod)
	return ctx, logging.Fields{
		logging.ComponentFieldKey, logging.KindClientFieldValue,
		logging.ServiceFieldKey, service,
		logging.MethodFieldKey, method,
		"grpc.code", code.String(),
		"grpc.error", errorText(err),
	}
}

// splitMethod splits "/package.Service/Method" into its service and method,
// exactly as go-grpc-middleware does ("unknown" for a malformed name).
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", "unknown"
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprint(err)
}

// LogGiveUps returns a Policy.OnGiveUp hook that logs every call that failed
// through the interceptor to l, with the message "retry gave up" and the
// fields of LogRetries up to grpc.error, then
//
//	grpc.retry.attempts    int: the attempts made
//	grpc.retry.class       the last attempt's class
//	grpc.retry.reason      why retrying stopped, e.g. "retry budget exhausted"
//	grpc.retry.suppressed  int: give-ups like this one not logged since the
//	                       last entry (see below)
//
// at logging.LevelWarn when a retryable failure was not retried (budget,
// attempts, deadline, server pushback, committed call) and at
// logging.LevelDebug otherwise (a permanent error, the caller's own
// cancellation).
//
// Warnings come in floods when a backend is down: every call of every
// client gives up for the same reason. So they are aggregated: for each
// method and reason, at most one warning is logged every 10 seconds (see
// LogGiveUpsEvery), and it counts in grpc.retry.suppressed the give-ups of
// that method and reason that were not logged since the previous one. A
// client at 20 calls/s stopped by its budget logs one line every 10s,
// not 200. Debug entries are not aggregated.
//
// The count of a window is reported only with the next warning for the
// same method and reason, whenever that comes: the give-ups suppressed
// after the last warning (those that ended an outage, say) are never
// reported if no give-up of that method and reason follows. Where every
// give-up counts, count them in a hook of your own (one OnGiveUp function
// can call it and this one) or with Policy.Metrics (budget stops). Nothing
// runs in the background: the aggregation keeps a few words per method
// and reason seen, for as long as the hook is kept.
//
// Like LogRetries it is safe for concurrent use if l is (concurrent
// give-ups of one method and reason log one warning a window between
// them, and each of the others is counted once), and panics if l is nil.
func LogGiveUps(l logging.Logger) func(GiveUpEvent) {
	return LogGiveUpsEvery(l, 10*time.Second)
}

// LogGiveUpsEvery is LogGiveUps with the warnings of each method and reason
// logged at most once per every instead of once per 10 seconds. An every of
// 0 or less turns the aggregation off: every warning is logged, with
// grpc.retry.suppressed 0.
func LogGiveUpsEvery(l logging.Logger, every time.Duration) func(GiveUpEvent) {
	if l == nil {
		panic("retry.LogGiveUps: nil Logger")
	}
	agg := &giveUpAggregator{logAggregator{every: every, now: time.Now}}
	return func(ev GiveUpEvent) { agg.log(l, ev) }
}

// logAggregator lets one entry per key through every period, counting the
// others: LogGiveUps, LogHedges and LogFallbacks aggregate with it.
type logAggregator struct {
	every time.Duration
	now   func() time.Time
	keys  sync.Map // key → *logCount
}

type logCount struct {
	next       atomic.Int64 // unix ns before which entries are counted, not logged
	suppressed atomic.Int64
}

// admit reports whether an entry for key is logged now and, if so, how
// many were suppressed since the last one.
func (a *logAggregator) admit(key any) (int, bool) {
	if a.every <= 0 {
		return 0, true
	}
	v, ok := a.keys.Load(key)
	if !ok {
		v, _ = a.keys.LoadOrStore(key, new(logCount))
	}
	c := v.(*logCount)
	now := a.now().UnixNano()
	next := c.next.Load()
	if now < next || !c.next.CompareAndSwap(next, now+int64(a.every)) {
		c.suppressed.Add(1)
		return 0, false
	}
	return int(c.suppressed.Swap(0)), true
}

// giveUpAggregator counts give-ups per method and reason (a giveUpKey)
// between warnings.
type giveUpAggregator struct{ logAggregator }

type giveUpKey struct {
	method string
	reason StopReason
}

func (a *giveUpAggregator) log(l logging.Logger, ev GiveUpEvent) {
	level := logging.LevelWarn
	if ev.Reason == StopPermanent || ev.Reason == StopCanceled {
		level = logging.LevelDebug
	}
	suppressed := 0
	if level == logging.LevelWarn {
		var ok bool
		if suppressed, ok = a.admit(giveUpKey{ev.Method, ev.Reason}); !ok {
			return
		}
	}
	ctx, fields := callFields(ev.Context, ev.Method, ev.Code, ev.Err)
	fields = append(fields,
		"grpc.retry.attempts", ev.Attempts,
		"grpc.retry.class", ev.Class.String(),
		"grpc.retry.reason", ev.Reason.String(),
		"grpc.retry.suppressed", suppressed,
	)
	l.Log(ctx, level, "retry gave up", fields.WithUnique(logging.ExtractFields(ctx))...)
}
