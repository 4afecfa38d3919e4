package retry

import (
	"time"

	"google.golang.org/grpc"
)

// CallOption overrides the policy for one call. Pass it with the call's other
// options, e.g. client.Generate(ctx, req, retry.WithMaxAttempts(2)). gRPC
// itself ignores it; calls without a retry interceptor ignore it too. When
// several options set the same thing, the last one wins.
type CallOption struct {
	grpc.EmptyCallOption
	set            callSetting
	maxAttempts    int
	attemptTimeout time.Duration
	report         *CallReport
}

type callSetting uint8

const (
	setMaxAttempts callSetting = iota + 1
	setDisable
	setAttemptTimeout
	setReport
)

// WithMaxAttempts sets the number of attempts for this call, the first one
// included (1 = no retry). n < 1 makes the call fail at once with
// codes.InvalidArgument, without any attempt.
func WithMaxAttempts(n int) CallOption {
	return CallOption{set: setMaxAttempts, maxAttempts: n}
}

// Disable turns retrying off for this call: one attempt, its error returned
// unchanged (not wrapped in *Error), no per-attempt timeout, no idempotency key.
func Disable() CallOption {
	return CallOption{set: setDisable}
}

// WithPerAttemptTimeout sets the per-attempt timeout for this call (0: none).
// d < 0 makes the call fail at once with codes.InvalidArgument.
func WithPerAttemptTimeout(d time.Duration) CallOption {
	return CallOption{set: setAttemptTimeout, attemptTimeout: d}
}

// WithReport fills *r, when the call ends, with what the call did: its
// attempts, whether it was hedged and which attempt answered, and the time
// it spent between attempts. It reports calls that succeeded too, so a
// handler can log "took 3 attempts" without a hook. r must not be read
// before the call returns (for a stream: before RecvMsg returns an error).
func WithReport(r *CallReport) CallOption {
	return CallOption{set: setReport, report: r}
}
