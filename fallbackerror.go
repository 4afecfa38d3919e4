package retry

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SkipReason says why a step of a fallback chain was not tried.
type SkipReason uint8

const (
	// SkipBreakerOpen: the step's breaker was open (or half-open with its
	// probes in flight); its error is the breaker's *BreakerOpenError.
	SkipBreakerOpen SkipReason = iota + 1
	// SkipDeadline: the caller's deadline left less than
	// FailoverConfig.MinTimeLeft when the step would have started. The
	// steps after it were not considered either.
	SkipDeadline
)

// String returns a short description, e.g. "breaker open".
func (r SkipReason) String() string {
	switch r {
	case SkipBreakerOpen:
		return "breaker open"
	case SkipDeadline:
		return "no time left before the deadline"
	}
	return fmt.Sprintf("skip(%d)", uint8(r))
}

// StepError is how one step of a fallback chain ended, in a FallbackError.
type StepError struct {
	// Step is the step's place in the chain: 0 for the primary (the
	// connection the Failover is installed on), i for Fallbacks[i-1].
	Step int
	// Name is the step's name (FailoverConfig.Name, Fallback.Name).
	Name string
	// Err is the step's error: for a step that was tried, what its call
	// returned (a *Error when the step's connection retries, with its
	// Reason and Attempts); for a step skipped because its breaker was
	// open, the *BreakerOpenError; nil for a step skipped for lack of
	// time.
	Err error
	// Skipped is why the step was not tried, 0 if it was.
	Skipped SkipReason

	class  Class      // the failure's class, as the chain judged it
	reason StopReason // why the step's retrying stopped, as the chain judged it
}

// Error returns "<name>: <error>" or "<name>: not tried (<reason>)".
func (s StepError) Error() string {
	switch {
	case s.Skipped == SkipDeadline:
		return s.Name + ": not tried (" + s.Skipped.String() + ")"
	case s.Skipped != 0:
		return fmt.Sprintf("%s: not tried (%v)", s.Name, s.Err)
	}
	return fmt.Sprintf("%s: %v", s.Name, s.Err)
}

// FallbackError is the error of a call that went along a fallback chain
// and failed: every step considered, in order, with why each stopped. It
// is returned when more than one step was considered; a call that stopped
// at its primary (a permanent error, the caller's cancellation, no
// fallback configured) returns the primary's error unchanged.
//
// status.Code and status.FromError see the status of the last step that
// returned an error (normally the last one tried), and errors.As and
// errors.Is see through to that step's error, so a *Error of its retry
// interceptor is found as usual.
type FallbackError struct {
	// Steps are the steps considered, in order: the primary first (Step
	// 0), each with its error or why it was skipped.
	Steps []StepError
}

// last returns the error of the last step that has one.
func (e *FallbackError) last() error {
	for i := len(e.Steps) - 1; i >= 0; i-- {
		if e.Steps[i].Err != nil {
			return e.Steps[i].Err
		}
	}
	return nil
}

// Error lists the steps: "retry: fallback chain failed: primary: ...;
// secondary: ...".
func (e *FallbackError) Error() string {
	var b strings.Builder
	b.WriteString("retry: fallback chain failed: ")
	for i, s := range e.Steps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s.Error())
	}
	return b.String()
}

// Unwrap returns the error of the last step that has one.
func (e *FallbackError) Unwrap() error { return e.last() }

// GRPCStatus returns the status of the last step that returned an error,
// so that status.Code(err) reports it.
func (e *FallbackError) GRPCStatus() *status.Status {
	if err := e.last(); err != nil {
		return status.Convert(err)
	}
	return status.New(codes.Unknown, e.Error())
}

// BreakerOpenError is the error of a call that a breaker refused: the
// backend's breaker is open (or half-open with its probes in flight). Its
// status is codes.Unavailable, so without a fallback the caller sees the
// call fail fast with Unavailable and this reason.
type BreakerOpenError struct {
	// Group is the breaker's method group ("" without BreakerConfig.Group).
	Group string
	// State is the breaker's state when it refused the call.
	State BreakerState
	// Until is the earliest time the breaker lets a probe through (zero
	// when half-open: when a probe in flight ends).
	Until time.Time
}

// Error returns "retry: circuit breaker open" or "retry: circuit breaker
// half-open, probes in flight", naming the group if there is one.
func (e *BreakerOpenError) Error() string {
	var b strings.Builder
	b.WriteString("retry: circuit breaker ")
	if e.Group != "" {
		fmt.Fprintf(&b, "for %q ", e.Group)
	}
	if e.State == BreakerHalfOpen {
		b.WriteString("half-open, probes in flight")
	} else {
		b.WriteString("open")
	}
	return b.String()
}

// GRPCStatus returns codes.Unavailable with the error's text.
func (e *BreakerOpenError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// IsBreakerOpen reports whether err is, or wraps, a *BreakerOpenError.
func IsBreakerOpen(err error) bool {
	var b *BreakerOpenError
	return errors.As(err, &b)
}

// ConfigError reports a field of a FailoverConfig, Fallback or
// BreakerConfig that breaks a rule. NewFailover and NewBreaker return it.
type ConfigError struct {
	Config string // the type, e.g. "BreakerConfig"
	Field  string // the field, e.g. "FailureRate" or "Fallbacks[1].Conn"
	Value  any    // the offending value
	Rule   string // the rule it breaks
}

// Error returns "retry: invalid <Config>.<Field> <Value>: <Rule>".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("retry: invalid %s.%s %v: %s", e.Config, e.Field, e.Value, e.Rule)
}
