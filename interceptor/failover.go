package interceptor

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Route is one step of a failover chain, as a FailoverDecider hands it out.
type Route struct {
	// Conn is the connection the step's call is made on. Nil means the
	// connection the interceptor is installed on, through the rest of its
	// interceptor chain (the retry interceptors, typically).
	Conn grpc.ClientConnInterface
	// Rewrite, if set, maps each request message sent on this step (the
	// unary request, or each stream message, replayed ones included) to
	// the message to send. It must not modify its argument, which is the
	// caller's; a nil result sends the message unchanged.
	Rewrite func(method string, msg any) any
	// Opts are call options added, after the caller's, to this step's
	// call only.
	Opts []grpc.CallOption
}

// FailoverCall is one logical call through a failover interceptor. Its
// FailoverDecider makes it (Begin) and owns its memory: the interceptor
// does not use it after Done.
type FailoverCall struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Stream reports a streaming call.
	Stream bool
	// State belongs to the decider.
	State any
}

// HasStaticMethod reports whether opts hold grpc.StaticMethod (generated
// code adds it): the call's method is one the client was built with, a
// safe metric label (gRFC A66).
func HasStaticMethod(opts []grpc.CallOption) bool { return hasStaticMethod(opts) }

// FailoverDecider decides, for FailoverUnary and FailoverStream, which steps
// of a fallback chain a call tries. The interceptors only carry the
// decisions out: they open each route the decider gives, replay a stream's
// messages onto it, and report how it ended.
//
// For one call the methods are called one at a time, in this order: Begin;
// then Next, Ended after every route Next handed out, and Next again
// after a failure; Responded at a stream's first response message; Done
// once at the end. Implementations must be safe for concurrent calls.
type FailoverDecider interface {
	// Begin is called once per call, with the channel the interceptor is
	// on (nil if unknown), the caller's call options, which it must not
	// modify, and whether the call is a stream. It returns the call, or nil
	// to let it through untouched: the interceptor then calls the rest of
	// its chain once and nothing else is asked.
	Begin(ctx context.Context, method string, cc *grpc.ClientConn, opts []grpc.CallOption, stream bool) *FailoverCall
	// Next returns the route of the call's next step, or a non-nil error
	// when there is none: the call then ends with that error.
	Next(ctx context.Context, c *FailoverCall) (Route, error)
	// Responded is told of the first response message of a stream's
	// current step.
	Responded(c *FailoverCall)
	// Ended is told how the step of the last route ended: err is nil on
	// success (a unary reply, or a stream's OK end). committed reports that
	// the call can no longer move to another step: a stream had delivered
	// a response message, the caller had read its Header, Trailer or
	// Context, or its messages outgrew the replay buffer.
	Ended(ctx context.Context, c *FailoverCall, err error, committed bool)
	// Done is called once when the call ends, with the caller's error (nil
	// on success).
	Done(ctx context.Context, c *FailoverCall, err error)
}

// FailoverUnary returns a unary client interceptor that runs each call
// along the fallback chain that d decides: the rest of its own chain first
// (the route with a nil Conn), then other connections, one after another,
// until one succeeds or d ends the call. Every step shares the caller's
// context, hence its deadline. Before a step on another connection the
// reply is reset (proto.Reset) if it is a protobuf message, so that
// nothing of a failed step's reply remains. grpc.OnFinish options run once,
// when the call ends, with the caller's error; every other call option
// goes to every step.
func FailoverUnary(d FailoverDecider) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c := d.Begin(ctx, method, cc, opts, false)
		if c == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		opts, onFinish := splitOnFinish(opts)
		var err error
		for {
			r, final := d.Next(ctx, c)
			if final != nil {
				err = final
				break
			}
			msg := rewrite(r.Rewrite, method, req)
			stepOpts := withOpts(opts, r.Opts)
			if r.Conn == nil {
				err = invoker(ctx, method, msg, reply, cc, stepOpts...)
			} else {
				if m, ok := reply.(proto.Message); ok {
					proto.Reset(m)
				}
				err = r.Conn.Invoke(ctx, method, msg, reply, stepOpts...)
			}
			d.Ended(ctx, c, err, false)
			if err == nil {
				break
			}
		}
		d.Done(ctx, c, err)
		for _, f := range onFinish {
			f(err)
		}
		return err
	}
}

// rewrite applies a route's Rewrite to msg.
func rewrite(f func(string, any) any, method string, msg any) any {
	if f == nil {
		return msg
	}
	if m := f(method, msg); m != nil {
		return m
	}
	return msg
}

// withOpts returns opts followed by extra, without touching opts' array.
func withOpts(opts, extra []grpc.CallOption) []grpc.CallOption {
	if len(extra) == 0 {
		return opts
	}
	return append(opts[:len(opts):len(opts)], extra...)
}

// splitOnFinish returns opts without its grpc.OnFinish options, and their
// callbacks. It allocates only when there are some.
func splitOnFinish(opts []grpc.CallOption) ([]grpc.CallOption, []func(error)) {
	n := 0
	for _, o := range opts {
		if _, ok := o.(grpc.OnFinishCallOption); ok {
			n++
		}
	}
	if n == 0 {
		return opts, nil
	}
	rest := make([]grpc.CallOption, 0, len(opts)-n)
	fs := make([]func(error), 0, n)
	for _, o := range opts {
		if f, ok := o.(grpc.OnFinishCallOption); ok {
			fs = append(fs, f.OnFinish)
			continue
		}
		rest = append(rest, o)
	}
	return rest, fs
}
