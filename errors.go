package retry

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/status"
)

// StopReason says why a call stopped retrying.
type StopReason uint8

const (
	// StopPermanent: the last attempt failed with a Permanent class.
	StopPermanent StopReason = iota + 1
	// StopMaxAttempts: the call made all the attempts it was allowed.
	StopMaxAttempts
	// StopDeadline: the next attempt could not have started before the
	// caller's deadline, so the call returned the last error at once
	// instead of waiting into a certain DeadlineExceeded.
	StopDeadline
	// StopCanceled: the caller's context ended (canceled or past its
	// deadline) during an attempt or a wait.
	StopCanceled
	// StopPushback: the server said not to retry (an invalid or repeated
	// grpc-retry-pushback-ms, or an invalid google.rpc.RetryInfo).
	StopPushback
	// StopPushbackTooLong: the server asked for a wait longer than the
	// policy's MaxPushback.
	StopPushbackTooLong
	// StopBudget: the retry budget shared by the client's calls had no
	// room for another retry.
	StopBudget
	// StopCommitted: the call had committed (gRFC A6: response headers or
	// a message had arrived; for a stream also the caller read Trailer or
	// Context, or its messages outgrew the replay buffer), so retrying it
	// could repeat work the server had started or duplicate messages.
	StopCommitted
	// StopLocal: the client itself produced the error (a message over a
	// size limit, or one that could not be encoded or decoded), which
	// another attempt would repeat.
	StopLocal
)

// String returns a short description, e.g. "max attempts".
func (r StopReason) String() string {
	switch r {
	case StopPermanent:
		return "permanent error"
	case StopMaxAttempts:
		return "max attempts"
	case StopDeadline:
		return "deadline too close"
	case StopCanceled:
		return "caller's context done"
	case StopPushback:
		return "server pushback: do not retry"
	case StopPushbackTooLong:
		return "server pushback beyond MaxPushback"
	case StopBudget:
		return "retry budget exhausted"
	case StopCommitted:
		return "committed"
	case StopLocal:
		return "client-side error"
	}
	return "stop(" + strconv.Itoa(int(r)) + ")"
}

// Error is the error a retried call returns when it fails: the last attempt's
// error with the count of attempts and the reason retrying stopped. Get it
// with errors.As. status.Code and status.FromError see the last attempt's
// status (code, message and details) unchanged.
type Error struct {
	// Err is the last attempt's error (or, for StopCanceled during a wait,
	// the status made from the caller's context error).
	Err error
	// Attempts is the number of attempts made, the first included.
	Attempts int
	// Reason says why no further attempt was made.
	Reason StopReason
	// Class is the class of the last attempt's failure.
	Class Class
	// Pushback is the delay the server asked for in the last attempt's
	// grpc-retry-pushback-ms trailer or google.rpc.RetryInfo (the longer
	// of the two), 0 if it asked for none (or said "do not retry"). A
	// failover breaker reads it: a pushback the call could not honour
	// (Reason StopPushbackTooLong, StopDeadline, StopMaxAttempts or
	// StopBudget) holds the backend's breaker open at least that long.
	Pushback time.Duration
}

// Error returns the last attempt's error text followed by the retry summary.
func (e *Error) Error() string {
	return fmt.Sprintf("%v (retry: %d attempt(s), stopped: %s)", e.Err, e.Attempts, e.Reason)
}

// Unwrap returns the last attempt's error.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus returns the last attempt's status, so that status.Code(err) and
// status.FromError(err) report the code, message and details the server (or
// the transport) gave.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.Err) }

// PolicyError reports a Policy field that breaks a rule. Validate returns it,
// and Unary and Stream panic with it.
type PolicyError struct {
	Field string // the field, e.g. "Multiplier" or "Methods[2]"
	Value any    // the offending value
	Rule  string // the rule it breaks
}

// Error returns "retry: invalid Policy.<Field> <Value>: <Rule>".
func (e *PolicyError) Error() string {
	return fmt.Sprintf("retry: invalid Policy.%s %v: %s", e.Field, e.Value, e.Rule)
}
