package retry

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
)

// RetryEvent describes one retry, for Policy.OnRetry.
type RetryEvent struct {
	// Context is the caller's context of the call being retried: use it to
	// tie the event to the request (trace span, logger, request ID).
	Context context.Context
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Attempt is the number of the attempt that failed (1 for the first);
	// the retry is attempt Attempt+1.
	Attempt int
	// Err is the failed attempt's error; Code and Class its status code and
	// class.
	Err   error
	Code  codes.Code
	Class Class
	// Delay is the wait before the retry.
	Delay time.Duration
	// Pushback reports whether Delay is the server's pushback
	// (grpc-retry-pushback-ms or google.rpc.RetryInfo) rather than backoff.
	Pushback bool
}

// GiveUpEvent describes a call that failed through a retry interceptor, for
// Policy.OnGiveUp: its last attempt's error and why no further attempt was
// made.
type GiveUpEvent struct {
	// Context is the caller's context of the call.
	Context context.Context
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Attempts is the number of attempts made, the first included.
	Attempts int
	// Err is the error the caller gets (a *Error); Code and Class are the
	// last attempt's status code and class.
	Err   error
	Code  codes.Code
	Class Class
	// Reason says why retrying stopped. StopBudget, StopMaxAttempts,
	// StopDeadline, StopPushback and StopPushbackTooLong mark a retryable
	// failure that was not retried: the numbers to watch in an outage.
	Reason StopReason
}
