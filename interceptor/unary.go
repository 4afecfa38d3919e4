package interceptor

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// unaryCall is the per-call memory of the unary interceptor, pooled so the
// success path allocates nothing of its own.
type unaryCall struct {
	call    Call
	opts    callOptions
	header  metadata.MD
	trailer metadata.MD
}

var unaryCalls = sync.Pool{New: func() any { return new(unaryCall) }}

func (u *unaryCall) release() {
	u.opts.reset()
	u.header, u.trailer = nil, nil
	u.call = Call{}
	unaryCalls.Put(u)
}

// Unary returns a unary client interceptor that retries calls as d decides.
//
// A unary call commits, as in gRFC A6, once an attempt receives response
// headers: a failure after that is returned, never retried, because the
// server has started answering (grpc-go's built-in retry does the same). To
// see the headers, every attempt asks gRPC for them and for the trailer
// (grpc.Header and grpc.Trailer, unless the caller already did), which costs
// gRPC's copies of the two maps on every call. An error the client produced
// itself (a message over a size limit) is returned at once too. A retry
// waits for a ready connection first (Call.ConnectWait).
func Unary(d Decider) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		u := unaryCalls.Get().(*unaryCall)
		defer u.release()
		c := &u.call
		retry, err := d.Begin(ctx, method, opts, c)
		if err != nil {
			return err
		}
		if !retry {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		u.opts.sort(opts, &u.header, &u.trailer)
		u.opts.applyTo(c)
		ctx, cancel := callTimeout(ctx, c)
		err = u.attempts(ctx, d, method, req, reply, cc, invoker)
		if cancel != nil {
			cancel()
		}
		u.opts.finish(err)
		return err
	}
}

// attempts runs the call's attempts and returns its final error.
func (u *unaryCall) attempts(ctx context.Context, d Decider, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker) error {
	c := &u.call
	ctx = callContext(ctx, c)
	var last error
	for {
		c.Attempts++
		actx, cancel := attemptContext(ctx, c)
		if c.Attempts > 1 && c.ConnectWait > 0 && !waitReady(actx, cc, c.ConnectWait) && ctx.Err() != nil {
			if cancel != nil {
				cancel()
			}
			c.Attempts--
			_, final := d.Failed(ctx, c, Outcome{Err: last, Unstarted: true})
			return final
		}
		*u.opts.header, *u.opts.trailer = nil, nil
		err := invoker(actx, method, req, reply, cc, u.opts.attempt...)
		if cancel != nil {
			cancel()
		}
		if err == nil {
			d.Succeeded(ctx, c)
			return nil
		}
		last = err
		delay, final := d.Failed(ctx, c, Outcome{
			Err:       err,
			Trailer:   *u.opts.trailer,
			Committed: *u.opts.header != nil,
			Local:     localError(err),
		})
		if final != nil {
			return final
		}
		if err := d.Wait(ctx, c, delay); err != nil {
			return err
		}
	}
}
