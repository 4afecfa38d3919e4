package retry

import (
	"context"
	"strconv"
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

// HedgeKind says what happened to a hedge, in a HedgeEvent.
type HedgeKind uint8

const (
	// HedgeSent: a hedge was sent.
	HedgeSent HedgeKind = iota + 1
	// HedgeDenied: a hedge was due but the budget (or, for a learned delay,
	// the MaxExtraLoad guard) refused it; it was not sent, and the
	// attempts in flight go on.
	HedgeDenied
	// HedgeWon: a hedge's answer was the call's: the attempts before it
	// were cancelled.
	HedgeWon
)

// String returns "sent", "denied" or "won".
func (k HedgeKind) String() string {
	switch k {
	case HedgeSent:
		return "sent"
	case HedgeDenied:
		return "denied"
	case HedgeWon:
		return "won"
	}
	return "hedge(" + strconv.Itoa(int(k)) + ")"
}

// HedgeEvent describes a hedge of a hedged call (see Hedging), for
// Policy.OnHedge.
type HedgeEvent struct {
	// Context is the caller's context of the call.
	Context context.Context
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Kind says whether the hedge was sent, denied or won.
	Kind HedgeKind
	// Attempt is the hedge's attempt number (2 for the first hedge).
	Attempt int
	// Delay is, for a hedge sent or denied on time (the attempts in flight
	// were slow), the hedge delay; 0 for a hedge that replaces a failed
	// attempt, whose error is then Err (with Code and Class).
	Delay time.Duration
	Err   error
	Code  codes.Code
	Class Class
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

// CallReport is what a call did: for the caller (WithReport) and, in a
// CallEvent, for Policy.OnCall.
type CallReport struct {
	// Attempts is the number of attempts made, the first included (and
	// hedges, for a hedged call).
	Attempts int
	// Hedged reports that the call was hedged (see Hedging).
	Hedged bool
	// Winner is the attempt the answer came from (1 for the first), or 0
	// if the call failed.
	Winner int
	// Delay is the time the call spent with no attempt in flight: backoff,
	// pushback and waits for a connection (gRFC A96's retry_delay).
	Delay time.Duration
	// Denied is the number of hedges the budget refused.
	Denied int
	// Code is the call's status code (OK if it succeeded) and Reason why it
	// stopped retrying (0 if it succeeded).
	Code   codes.Code
	Reason StopReason
}

// CallEvent describes a call that went through the interceptor, when it
// ends, for Policy.OnCall.
type CallEvent struct {
	// Context is the caller's context of the call.
	Context context.Context
	// Method is the full method name, "/package.Service/Method"; Target the
	// channel's target, if known.
	Method, Target string
	// StaticMethod reports that the call was made by generated code (with
	// grpc.StaticMethod): Method is one the client was built with, safe as
	// a metric label. Other methods (a generic proxy's, say) can be any
	// string; gRFC A66 labels them "other".
	StaticMethod bool
	// Err is the error the caller got, nil if the call succeeded.
	Err error
	CallReport
}
