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
//  2. Did the client produce the error itself (a message over a size
//     limit)? Did the call commit (response headers had arrived, gRFC A6)?
//     Then stop: another attempt would fail the same way, or repeat work
//     the server had started.
//  3. What class is the failure (see Classify and CodeClass)? Permanent
//     failures stop at once. Transient (Unavailable), RateLimited
//     (ResourceExhausted, but not a spent quota) and Timeout
//     (DeadlineExceeded of an attempt, while the caller still has time) are
//     retried.
//  4. Were all Policy.MaxAttempts used? MaxAttempts counts every attempt,
//     the first included: 1 means no retry.
//  5. Did the server push back? A grpc-retry-pushback-ms trailer or a
//     google.rpc.RetryInfo detail sets the wait exactly (and restarts the
//     exponential backoff); a malformed one means "do not retry", and one
//     longer than Policy.MaxPushback stops at once.
//  6. Otherwise the wait is min(InitialBackoff × Multiplier^n, MaxBackoff),
//     jittered (see Jitter).
//  7. Could the next attempt start before the caller's deadline? If not,
//     return the last attempt's error now, with its own status code, instead
//     of sleeping into a certain DeadlineExceeded.
//  8. Does the retry budget, shared by the calls of the client, allow
//     another retry (see Budget and CreditBudget)? If not, return the error
//     now: in an outage, retries stay a small fraction of the calls, while
//     a transient partial failure is retried in full.
//
// Then it waits (a cancel ends the wait at once), waits for the channel to
// have a ready connection (Policy.ConnectWait: a restart costs latency, not
// an error), and tries again, sending grpc-previous-rpc-attempts with the
// number of earlier attempts.
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
// caller calls Trailer or Context, or the messages sent exceed
// Policy.MaxReplayBytes; Header waits for headers and retries a
// trailers-only failure, as grpc-go's does. After that, an error goes to
// the caller: no message is ever delivered twice.
//
// # Hedging
//
// A policy with Hedging sends the first attempt at once and another each
// time the hedge delay passes without an answer (a fixed Delay, or one
// learned per method from recent latencies so that about MaxExtraLoad of
// the calls are hedged); the first to succeed (for a stream: to deliver a
// message) wins and the others are cancelled. Hedges are paid from the
// budget like retries.
//
// # Hooks, logs and the server side
//
// Policy.OnRetry sees every retry, Policy.OnHedge every hedge, Policy.OnGiveUp
// every failed call with its StopReason and Policy.OnCall every call at its
// end; LogRetries and LogGiveUps adapt them to go-grpc-middleware's
// logging.Logger. Policy.Metrics records gRPC's per-call retry metrics
// (gRFC A96) through OpenTelemetry; WithReport tells a caller what its call
// did. Servers say when to come back with RetryAfter (pushback trailer and
// RetryInfo) or DoNotRetry.
//
// # Scope and per-call control
//
// Policy.Methods limits a policy to the methods that are safe to retry;
// Disable, WithMaxAttempts and WithPerAttemptTimeout override the policy
// for one call; Policy.IdempotencyHeader sends one key per logical call on
// every attempt so servers can deduplicate.
//
// # One client, many methods
//
// Routes gives each method its own policy in one pair of interceptors,
// matched as gRPC matches a service config's method configs: the exact
// "/package.Service/Method", then "/package.Service/", then the default
// "". RoutesDialOptions installs them. ParseServiceConfig reads the same
// routes from gRPC service-config JSON (retryPolicy, hedgingPolicy,
// timeout, retryThrottling, as gRFC A6 defines them), with notes on what
// it clamped or ignored; Explain says which entry applies to a method and
// why, and the retry-config command prints both.
//
// # Failover
//
// Retrying the same backend helps only while it can recover within the
// caller's deadline. A Failover, installed outside the retry interceptors
// of a connection (Failover.DialOptions), sends a call that its retries
// could not save (a retryable class) to other connections in turn, each
// with its own retry policy, under the caller's one deadline; a Breaker
// per backend skips a backend that is down (or, without a fallback, fails
// fast with Unavailable), counting only infrastructure failures. A call
// that fails at every step returns a *FallbackError. FailoverConfig.Metrics
// and BreakerConfig.Metrics export the fallbacks and the breakers' states
// through the same Metrics as the policies.
//
// # Concurrency
//
// A Policy is a plain value, copied by Unary and Stream; the interceptors
// are safe for concurrent use. The only state shared between calls is the
// retry budget, the learned hedge delays and the breakers, which are
// lock-free on the success path.
package retry
