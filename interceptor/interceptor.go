// Package interceptor holds the gRPC mechanics of retrying: the attempt
// loop, per-attempt contexts and timeouts, capture of failed attempts'
// headers and trailers, the attempt-count header, waiting for a ready
// connection before a retry, per-call options that must run once per call
// (grpc.OnFinish), and, for streams, replay of buffered client messages
// until the stream commits.
//
// It makes no decisions. Whether a failure is retried, after how long, and
// what error the caller finally sees are asked of a Decider, which package
// retry (the root of this module) implements from a Policy. Users import
// package retry; this package is for that package and for other layers
// built on the same mechanics.
package interceptor

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// PreviousAttemptsHeader is the request header carried by every attempt but
// the first: the number of attempts made before it (gRFC A6).
const PreviousAttemptsHeader = "grpc-previous-rpc-attempts"

// HedgeHeader is the request header carried by every attempt of a hedged
// call but the first: the number of attempts sent before it.
const HedgeHeader = "x-retry-hedge"

// Call is the state of one logical call, shared by the interceptor and its
// Decider. The interceptor owns its memory; a Decider must not keep a
// pointer to it after the call returns.
type Call struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Timeout, if positive, bounds the whole call (all its attempts and
	// waits), as a deadline set on the call's context; an earlier deadline
	// of the caller's stays. Set by Begin.
	Timeout time.Duration
	// MaxAttempts bounds the attempts, the first included. Set by Begin.
	MaxAttempts int
	// AttemptTimeout, if positive, bounds each attempt (for streams: each
	// attempt until it commits). Set by Begin.
	AttemptTimeout time.Duration
	// MaxReplayBytes bounds, for streams, the client messages kept for
	// replay, counted as gRPC counts its retry buffer: serialized size plus
	// the 5-byte message prefix. Set by Begin; 0 means nothing is buffered,
	// so a stream is not retried once it has sent a message. A
	// grpc.MaxRetryRPCBufferSize call option overrides it.
	MaxReplayBytes int
	// ConnectWait, if positive, is the longest a retry waits for the
	// channel to have a ready connection before it is sent (no longer than
	// AttemptTimeout either, and it ends with the caller's context). The
	// attempt's own timeout starts once it is sent. 0 sends retries at
	// once, whatever the channel's state. Set by Begin.
	ConnectWait time.Duration
	// HeaderKey and HeaderValue, if HeaderKey is set, are added to the
	// outgoing metadata of every attempt (an idempotency key, say).
	HeaderKey, HeaderValue string
	// Hedging, if set, makes the call hedged: attempts may run at once, the
	// first to succeed wins and the others are cancelled. Set by Begin.
	Hedging bool
	// HedgeDelay is, for a hedged call, the wait before each hedge sent
	// because the attempts in flight are slow: 0 sends every attempt at
	// once; negative sends none on time (a hedge then only replaces an
	// attempt that failed). Set by Begin.
	HedgeDelay time.Duration
	// Timed asks the interceptor to measure attempts (Outcome.Elapsed and
	// Elapsed). Set by Begin.
	Timed bool
	// StatusOnly asks the unary interceptor not to capture response headers
	// and trailers (unless the caller asked for them): a failure then
	// carries only its status, and a failure after response headers cannot
	// be told from a trailers-only one (Outcome.Committed stays false).
	// Set by Begin.
	StatusOnly bool

	// Conn is the channel the call is made on, if known (see Target). Set
	// by the interceptor before Begin.
	Conn *grpc.ClientConn
	// Static reports that the call came with grpc.StaticMethod (generated
	// code adds it): its method is one the client was built with, a safe
	// metric label (gRFC A66). Set by the interceptor before Begin.
	Static bool
	// Attempts is the number of attempts started so far, hedges included;
	// the interceptor keeps it.
	Attempts int
	// Winner is the attempt (1 for the first) whose answer the caller got,
	// 0 if none. Kept by the interceptor.
	Winner int
	// Idle is the time the call spent with no attempt in flight: waits
	// between attempts and waits for a connection. Kept by the interceptor.
	Idle time.Duration
	// Elapsed is, when Timed, the duration of the winning attempt. Kept by
	// the interceptor.
	Elapsed time.Duration
	// State belongs to the Decider: per-call state it needs across
	// attempts. It starts nil on every call.
	State any
}

// Outcome is how a failed attempt ended, as the interceptor saw it.
type Outcome struct {
	// Err is the attempt's error, a gRPC status error (never nil, never
	// io.EOF).
	Err error
	// Trailer is the attempt's trailer metadata (nil if none arrived).
	Trailer metadata.MD
	// Committed reports that the call can no longer be retried (gRFC A6):
	// response headers or a response message had arrived before the
	// failure, the caller read the stream's Header, Trailer or Context, or
	// the stream's messages outgrew the replay buffer.
	Committed bool
	// Local reports that the client produced the error itself (a message
	// over a size limit, say) and another attempt would fail the same way.
	Local bool
	// Unstarted reports that the next attempt could not start: the caller's
	// context ended while the interceptor waited for a ready connection. Err
	// is then the previous attempt's error, and Call.Attempts does not count
	// the attempt that did not start.
	Unstarted bool
	// Disconnected reports that the channel had no ready connection right
	// after the attempt failed (it was connecting, idle or in transient
	// failure): the attempt failed for want of a connection, most likely
	// without reaching a server, and the next one waits for a connection
	// before it is sent (Call.ConnectWait).
	Disconnected bool
	// Attempt is the number of the attempt that failed (1 for the first).
	Attempt int
	// Alone reports, for a hedged call, that no other attempt is in flight
	// or scheduled: the call ends unless the Decider asks for another.
	Alone bool
	// Elapsed is, when Call.Timed, how long the attempt ran.
	Elapsed time.Duration
}

// Decider decides, for the interceptors of this package, whether and when a
// call is retried. Implementations must be safe for concurrent use: one
// Decider serves every call through an interceptor.
type Decider interface {
	// Begin is called once per logical call, before any attempt. It fills
	// in c (MaxAttempts, AttemptTimeout, ...) and reports whether the call
	// is retried at all; if not, the interceptor makes one plain attempt
	// and returns its result untouched. A non-nil error (an invalid
	// per-call option, say) is returned to the caller without any attempt.
	Begin(ctx context.Context, method string, opts []grpc.CallOption, c *Call) (bool, error)
	// Failed is called after attempt o.Attempt failed as o says. It
	// returns either the delay before the next attempt and a nil error, or
	// the error to return to the caller, which must keep o.Err's status. If
	// o.Committed, o.Local or o.Unstarted is set, it must return an error.
	//
	// For a hedged call, a non-nil error ends the call at once (the other
	// attempts are cancelled); a delay of 0 or more allows another hedge
	// after it (sent if Hedge then agrees); a negative delay allows none,
	// and must not be returned when o.Alone (the call would have nothing
	// left): it must then return an error instead.
	Failed(ctx context.Context, c *Call, o Outcome) (time.Duration, error)
	// Wait blocks for delay before the next attempt of a call that is not
	// hedged. If it cannot wait the whole delay (ctx ends, or the caller's
	// deadline leaves no room for the attempt once it wakes) it returns the
	// error to give the caller.
	Wait(ctx context.Context, c *Call, delay time.Duration) error
	// Hedge is asked before each hedge whether it may be sent now (the
	// budget, the attempts left, the deadline). alone reports that no
	// attempt is in flight: if the hedge is refused, the call then ends
	// with the error Hedge returns.
	Hedge(ctx context.Context, c *Call, alone bool) (bool, error)
	// Done is called once when the call ends: err is nil if it succeeded,
	// or the error the caller gets.
	Done(ctx context.Context, c *Call, err error)
}

// Target returns the canonical target of the call's channel (e.g.
// "dns:///host:443"), or "" if unknown. It builds the string: call it only
// when it is needed.
func (c *Call) Target() string {
	if c.Conn == nil {
		return ""
	}
	return c.Conn.CanonicalTarget()
}

// attemptContext returns the context for attempt number c.Attempts: the
// call's context with the attempt-count header on retries, bounded by the
// attempt timeout. cancel is nil when no context was derived.
func attemptContext(ctx context.Context, c *Call) (context.Context, context.CancelFunc) {
	ctx = attemptMetadata(ctx, c)
	if c.AttemptTimeout > 0 {
		return context.WithTimeout(ctx, c.AttemptTimeout)
	}
	return ctx, nil
}

// attemptMetadata returns ctx with the attempt-count header, on retries.
func attemptMetadata(ctx context.Context, c *Call) context.Context {
	if c.Attempts > 1 {
		ctx = metadata.AppendToOutgoingContext(ctx, PreviousAttemptsHeader, strconv.Itoa(c.Attempts-1))
	}
	return ctx
}

// callContext adds the call's extra header, if any, for all its attempts.
func callContext(ctx context.Context, c *Call) context.Context {
	if c.HeaderKey == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, c.HeaderKey, c.HeaderValue)
}

// callTimeout bounds ctx by the call's Timeout, if any. cancel is nil when
// no context was derived.
func callTimeout(ctx context.Context, c *Call) (context.Context, context.CancelFunc) {
	if c.Timeout <= 0 {
		return ctx, nil
	}
	return context.WithTimeout(ctx, c.Timeout)
}
