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
	// channel to have a ready connection before it is sent (it also ends
	// with the caller's context and the attempt timeout). 0 sends retries
	// at once, whatever the channel's state. Set by Begin.
	ConnectWait time.Duration
	// HeaderKey and HeaderValue, if HeaderKey is set, are added to the
	// outgoing metadata of every attempt (an idempotency key, say).
	HeaderKey, HeaderValue string
	// Attempts is the number of attempts started so far; the interceptor
	// keeps it.
	Attempts int
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
	// Failed is called after attempt c.Attempts failed as o says. It
	// returns either the delay before the next attempt and a nil error, or
	// the error to return to the caller, which must keep o.Err's status. If
	// o.Committed, o.Local or o.Unstarted is set, it must return an error.
	Failed(ctx context.Context, c *Call, o Outcome) (time.Duration, error)
	// Wait blocks for delay before the next attempt. If it cannot wait the
	// whole delay (ctx ends, or the caller's deadline leaves no room for the
	// attempt once it wakes) it returns the error to give the caller.
	Wait(ctx context.Context, c *Call, delay time.Duration) error
	// Succeeded is called once when the call ends with status OK.
	Succeeded(ctx context.Context, c *Call)
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
