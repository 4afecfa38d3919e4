package retry

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Server side: how a server tells its clients when to come back.
//
// A server that sheds load or enforces a rate limit knows better than any
// client backoff when a retry can succeed. RetryAfter and DoNotRetry (and
// their stream forms) say so in both standard ways at once, so that every
// kind of client understands it:
//
//   - the grpc-retry-pushback-ms trailer of gRFC A6, read by this package's
//     interceptors and by grpc-go's (and other gRPC libraries') built-in
//     retry configured through a service config;
//   - a google.rpc.RetryInfo status detail (AIP-194), read by this package's
//     interceptors and by Google-style client libraries.

// RetryAfter sets the grpc-retry-pushback-ms trailer of the RPC whose server
// context is ctx and returns a status error with code and msg that carries a
// google.rpc.RetryInfo detail: the server asks the client to retry no sooner
// than after. Return it from the handler:
//
//	if !limiter.Allow() {
//		return nil, retry.RetryAfter(ctx, codes.ResourceExhausted, "rate limited", time.Second)
//	}
//
// The delay is rounded up to whole milliseconds, the unit of the trailer,
// and the same rounded delay goes into RetryInfo, so both say the same.
// A negative after is treated as 0 (as time.Sleep does: a reset time that
// has just passed means "retry now", not "never"); use DoNotRetry to forbid a
// retry. A zero delay asks for an immediate retry.
//
// Any code but OK is accepted, because whether a code is retried is the
// client's decision: this package's default classification retries
// Unavailable and ResourceExhausted (and a pushback keeps a
// ResourceExhausted from being taken for a spent quota), grpc-go's built-in
// retry retries the codes of its service config's retryableStatusCodes, and
// some APIs send RetryInfo with Aborted. With another code the pushback is
// still sent but a default client does not retry. Code OK cannot carry an
// error: RetryAfter then sets no trailer and returns an Internal error
// naming the misuse, rather than a nil error that would make the handler
// succeed without a response.
//
// ctx must be the handler's context (for a streaming handler,
// stream.Context() works too; see also RetryAfterStream). If it is not a
// gRPC server context (a handler called directly in a unit test, say), the
// trailer cannot be set and the error still carries RetryInfo, which this
// package's client honours alone. Call it at most once per RPC and do not
// set grpc-retry-pushback-ms otherwise: trailers accumulate, and a trailer
// with two values means "do not retry" to every gRFC A6 client.
//
// To add details (an ErrorInfo, a QuotaFailure, ...), convert the returned
// error with status.Convert and call WithDetails. For streams, a pushback
// only helps before the stream sends its response headers or first
// message: after that the client has committed the stream and cannot retry.
//
// RetryAfter is safe for concurrent use by different RPCs.
func RetryAfter(ctx context.Context, code codes.Code, msg string, after time.Duration) error {
	return retryAfter(func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }, "RetryAfter", code, msg, after)
}

// RetryAfterStream is RetryAfter for a streaming handler: it sets the
// trailer through stream.SetTrailer (so that server stream interceptors that
// wrap the stream see it) and returns the status error to return from the
// handler:
//
//	return retry.RetryAfterStream(stream, codes.Unavailable, "draining", 200*time.Millisecond)
//
// Everything RetryAfter documents applies (after is rounded up to whole
// milliseconds, negative is 0, code OK gives Internal); in particular the
// client can retry only if the handler has not sent headers or messages
// yet. Call it from the handler's goroutine, as stream.SetTrailer requires.
func RetryAfterStream(stream grpc.ServerStream, code codes.Code, msg string, after time.Duration) error {
	return retryAfter(stream.SetTrailer, "RetryAfterStream", code, msg, after)
}

// DoNotRetry sets the grpc-retry-pushback-ms trailer of the RPC whose server
// context is ctx to "-1", which gRFC A6 defines as "do not retry", and
// returns a status error with code and msg. Use it when a retry cannot help
// or would hurt, with a code that clients would otherwise retry:
//
//	return nil, retry.DoNotRetry(ctx, codes.Unavailable, "shedding load, do not retry")
//
// With a code it would otherwise retry, this package's client then stops
// after that attempt with Reason StopPushback (counting it as a failure for
// a Throttle budget, as gRFC A6 asks); grpc-go's built-in retry stops too.
// The status carries no RetryInfo, which has no way to say "never". Code
// OK, ctx not being a server context, and calling it more than once behave
// as for RetryAfter. It is safe for concurrent use by different RPCs.
func DoNotRetry(ctx context.Context, code codes.Code, msg string) error {
	return doNotRetry(func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) }, "DoNotRetry", code, msg)
}

// DoNotRetryStream is DoNotRetry for a streaming handler, setting the
// trailer through stream.SetTrailer. Call it from the handler's goroutine,
// before the handler sends anything if the client is to see it before
// committing the stream (after that, the client does not retry anyway).
func DoNotRetryStream(stream grpc.ServerStream, code codes.Code, msg string) error {
	return doNotRetry(stream.SetTrailer, "DoNotRetryStream", code, msg)
}

func retryAfter(setTrailer func(metadata.MD), fn string, code codes.Code, msg string, after time.Duration) error {
	if code == codes.OK {
		return misuseOK(fn)
	}
	ms := pushbackMillis(after)
	setTrailer(metadata.Pairs(PushbackTrailer, strconv.FormatInt(ms, 10)))
	st, err := status.New(code, msg).WithDetails(&errdetails.RetryInfo{
		RetryDelay: &durationpb.Duration{Seconds: ms / 1000, Nanos: int32(ms%1000) * 1e6},
	})
	if err != nil { // cannot happen: RetryInfo always marshals
		return status.Error(code, msg)
	}
	return st.Err()
}

func doNotRetry(setTrailer func(metadata.MD), fn string, code codes.Code, msg string) error {
	if code == codes.OK {
		return misuseOK(fn)
	}
	setTrailer(metadata.Pairs(PushbackTrailer, "-1"))
	return status.Error(code, msg)
}

func misuseOK(fn string) error {
	return status.Errorf(codes.Internal, "retry.%s called with code OK, which cannot carry an error", fn)
}

// pushbackMillis returns after in whole milliseconds, rounded up; negative
// is 0. It does not overflow.
func pushbackMillis(after time.Duration) int64 {
	if after <= 0 {
		return 0
	}
	ms := int64(after / time.Millisecond)
	if after%time.Millisecond != 0 {
		ms++
	}
	return ms
}
