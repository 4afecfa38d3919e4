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
	opts    []grpc.CallOption
	trailer metadata.MD
}

var unaryCalls = sync.Pool{New: func() any { return new(unaryCall) }}

func (u *unaryCall) release() {
	clear(u.opts)
	u.opts = u.opts[:0]
	u.trailer = nil
	u.call = Call{}
	unaryCalls.Put(u)
}

// Unary returns a unary client interceptor that retries calls as d decides.
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
		u.opts = append(append(u.opts, opts...), grpc.Trailer(&u.trailer))
		ctx = callContext(ctx, c)
		for {
			c.Attempts++
			actx, cancel := attemptContext(ctx, c)
			u.trailer = nil
			err := invoker(actx, method, req, reply, cc, u.opts...)
			if cancel != nil {
				cancel()
			}
			if err == nil {
				d.Succeeded(c)
				return nil
			}
			delay, final := d.Failed(ctx, c, err, u.trailer)
			if final != nil {
				return final
			}
			if err := d.Wait(ctx, c, delay); err != nil {
				return err
			}
		}
	}
}
