package retry

import (
	"google.golang.org/grpc"

	"github.com/seed4f82f287/retry/interceptor"
)

// DialOptions returns the dial options that set up retrying under p on a
// client, in one line:
//
//	conn, err := grpc.NewClient(target, append(retry.DialOptions(policy),
//		grpc.WithTransportCredentials(creds))...) // creds: your credentials.TransportCredentials
//
// They are, in this order:
//
//   - grpc.WithChainUnaryInterceptor with the interceptor of Unary(p);
//   - grpc.WithChainStreamInterceptor with the interceptor of Stream(p);
//   - grpc.WithDisableRetry(), which switches off grpc-go's own retry
//     (configured by a service config's retryPolicy), so that there is one
//     retry layer and attempts do not multiply. grpc-go's transparent
//     retry of RPCs that never reached the server application stays on;
//   - if p.Metrics counts them (CountTransparentRetries), grpc.WithStatsHandler
//     with a handler that counts those transparent retries for
//     grpc.client.call.transparent_retries. The interceptors then give each
//     call a context of its own, where the handler finds the call: one
//     allocation per call, plus, on a client with no other stats handler,
//     the events grpc-go builds for a stats handler on every attempt.
//
// The two interceptors share one compiled policy, hence one Budget: when
// p.Budget is nil, DialOptions makes one default budget for both, whereas Unary(p) and Stream(p) called
// separately would each make their own. So the client's unary calls and
// streams draw retries from the same budget. Set p.Budget to share a budget
// with other clients too.
//
// Interceptors chained by options placed before these in grpc.NewClient's
// list (logging, metrics, tracing) run outside the retry interceptors and
// see one logical call; those placed after see every attempt.
//
// DialOptions panics with a *PolicyError if p is invalid (see
// Policy.Validate), as Unary and Stream do, so a misconfigured client fails
// at start-up. It copies p: changing p afterwards has no effect. The
// interceptors are safe for concurrent use.
func DialOptions(p Policy) []grpc.DialOption {
	c := mustCompile(p) // applies the defaults once: one Budget for both
	return dialOptions(c, c.Metrics.countsTransparent())
}

// dialOptions returns the options of DialOptions for d: with metrics, the
// interceptors give each call a callCounters context and a stats handler
// counts grpc-go's transparent retries into it.
func dialOptions(d interceptor.Decider, metrics bool) []grpc.DialOption {
	unary, stream := interceptor.Unary(d), interceptor.Stream(d)
	if metrics {
		unary, stream = countUnary(unary), countStream(stream)
	}
	opts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unary),
		grpc.WithChainStreamInterceptor(stream),
		grpc.WithDisableRetry(),
	}
	if metrics {
		opts = append(opts, grpc.WithStatsHandler(transparentRetries{}))
	}
	return opts
}
