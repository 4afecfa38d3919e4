// Package retry provides gRPC client interceptors that retry failed calls
// the way a careful engineer would by hand: classify the status code, honour
// what the server says about when to come back, back off exponentially with
// jitter, and never wait past the caller's deadline.
//
//	policy := retry.Policy{MaxAttempts: 3, PerAttemptTimeout: 2 * time.Second}
//	conn, err := grpc.NewClient(target, append(retry.DialOptions(policy),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))...) // or your TLS credentials
//
// DialOptions installs Unary and Stream (sharing one retry budget) and turns
// grpc-go's built-in retry off, so retries never multiply across two layers.
//
// # The mental model
//
// A call is a sequence of attempts under one caller context. After a failed
// attempt the interceptor asks, in order:
//
//  1. Did the caller give up (its context is canceled or past its deadline)?
//     Then stop: the caller's own Canceled or DeadlineExceeded is never
//     retried.
//  2. What class is the failure (see Classify and CodeClass)? Permanent
//     failures stop at once. Transient (Unavailable), RateLimited
//     (ResourceExhausted, but not a spent quota) and Timeout
//     (DeadlineExceeded of an attempt, while the caller still has time) are
//     retried.
//  3. Were all Policy.MaxAttempts used? MaxAttempts counts every attempt,
//     the first included: 1 means no retry.
//  4. Did the server push back? A grpc-retry-pushback-ms trailer or a
//     google.rpc.RetryInfo detail sets the wait exactly (and restarts the
//     exponential backoff); a malformed one means "do not retry", and one
//     longer than Policy.MaxPushback stops at once.
//  5. Otherwise the wait is min(InitialBackoff × Multiplier^n, MaxBackoff),
//     jittered (see Jitter).
//  6. Could the next attempt start before the caller's deadline? If not,
//     return the last attempt's error now, with its own status code, instead
//     of sleeping into a certain DeadlineExceeded.
//  7. Does the retry budget, shared by the calls of the client, allow
//     another retry (see Budget)? If not, return the error now: in an
//     outage, retries stay a small fraction of the calls.
//
// Then it waits (a cancel ends the wait at once) and tries again, sending
// grpc-previous-rpc-attempts with the number of earlier attempts.
//
// When a call fails, its error is a *Error: status.Code(err) is the last
// attempt's code, and errors.As gives the number of attempts and the
// StopReason.
//
// # Streams
//
// Stream retries a stream only until it commits (gRFC A6): until then every
// message sent, and CloseSend, are kept and replayed on a new attempt. A
// stream commits when a response message or response headers arrive, the
// caller calls Header, Trailer or Context, or the messages sent exceed
// Policy.MaxReplayBytes. After that, an error goes to the caller: no message
// is ever delivered twice.
//
// # Hooks, logs and the server side
//
// Policy.OnRetry sees every retry and Policy.OnGiveUp every failed call with
// its StopReason; LogRetries and LogGiveUps adapt them to go-grpc-middleware's
// logging.Logger, and both are the place to count retries in OpenTelemetry or
// Prometheus. Servers say when to come back with RetryAfter (pushback trailer
// and RetryInfo) or DoNotRetry.
//
// # Scope and per-call control
//
// Policy.Methods limits a policy to the methods that are safe to retry;
// Disable, WithMaxAttempts and WithPerAttemptTimeout override the policy
// for one call; Policy.IdempotencyHeader sends one key per logical call on
// every attempt so servers can deduplicate.
//
// # Concurrency
//
// A Policy is a plain value, copied by Unary and Stream; the interceptors
// are safe for concurrent use. The only state shared between calls is the
// retry budget, which is lock-free.
package retry
