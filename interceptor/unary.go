package interceptor

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// unaryCall is the per-call memory of the unary interceptor, pooled so the
// success path allocates nothing of its own.
type unaryCall struct {
	call    Call
	opts    callOptions
	header  metadata.MD
	trailer metadata.MD
	peer    peer.Peer
	hedge   hedgeState
}

var unaryCalls = sync.Pool{New: func() any { return new(unaryCall) }}

func (u *unaryCall) release() {
	if !u.hedge.reusable() {
		return // a hedge timer may still fire on this memory: let it go
	}
	u.opts.reset()
	u.header, u.trailer, u.peer = nil, nil, peer.Peer{}
	u.call = Call{}
	unaryCalls.Put(u)
}

// Unary returns a unary client interceptor that retries (or hedges) calls as
// d decides.
//
// A unary call commits, as in gRFC A6, once an attempt receives response
// headers: a failure after that is returned, never retried, because the
// server has started answering (grpc-go's built-in retry does the same). To
// see the headers, every attempt asks gRPC for them and for the trailer
// (grpc.Header and grpc.Trailer, unless the caller already did), which costs
// gRPC's copies of the two maps on every call. An error the client produced
// itself (a message over a size limit) is returned at once too. A retry
// waits for a ready connection first (Call.ConnectWait).
//
// A hedged call (Call.Hedging) runs its first attempt on the caller's
// goroutine and each hedge on a goroutine of its own; the call returns once
// every attempt has returned. Hedges need their own reply message, so only
// calls whose reply is a protobuf message are hedged; others make one
// attempt.
func Unary(d Decider) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		u := unaryCalls.Get().(*unaryCall)
		defer u.release()
		c := &u.call
		c.Conn = cc
		c.Static = hasStaticMethod(opts)
		retry, err := d.Begin(ctx, method, opts, c)
		if err != nil {
			return err
		}
		if !retry {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		if c.Hedging {
			if _, ok := reply.(proto.Message); !ok {
				c.Hedging, c.MaxAttempts = false, 1
			}
		}
		if c.StatusOnly && !c.Hedging {
			u.opts.sort(opts, nil, nil, false)
		} else {
			u.opts.sort(opts, &u.header, &u.trailer, c.Hedging)
		}
		u.opts.applyTo(c)
		ctx, cancel := callTimeout(ctx, c)
		if c.Hedging {
			err = u.hedged(ctx, d, method, req, reply, cc, invoker)
		} else {
			err = u.attempts(ctx, d, method, req, reply, cc, invoker)
		}
		if cancel != nil {
			cancel()
		}
		d.Done(ctx, c, err)
		u.opts.finish(err)
		return err
	}
}

// attempts runs the call's attempts one after another and returns its final
// error.
func (u *unaryCall) attempts(ctx context.Context, d Decider, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker) error {
	c := &u.call
	callCtx := callContext(ctx, c)
	var last error
	var idleSince time.Time
	for {
		c.Attempts++
		if c.Attempts > 1 {
			if !waitReady(callCtx, cc, c.connectWait()) && ctx.Err() != nil {
				c.Attempts--
				c.Idle += time.Since(idleSince)
				_, final := d.Failed(ctx, c, Outcome{Err: last, Unstarted: true, Attempt: c.Attempts})
				return final
			}
			c.Idle += time.Since(idleSince)
		}
		actx, cancel := attemptContext(callCtx, c)
		var start time.Time
		if c.Timed {
			start = time.Now()
		}
		u.opts.clearCaptures()
		err := invoker(actx, method, req, reply, cc, u.opts.attempt...)
		if cancel != nil {
			cancel()
		}
		if c.Timed {
			c.Elapsed = time.Since(start)
		}
		if err == nil {
			c.Winner = c.Attempts
			return nil
		}
		last = err
		header, trailer := u.opts.captured()
		delay, final := d.Failed(ctx, c, Outcome{
			Err:       err,
			Trailer:   trailer,
			Committed: header != nil,
			Local:     localError(err),
			Attempt:   c.Attempts,
			Elapsed:   c.Elapsed,

			Disconnected: disconnected(cc),
		})
		if final != nil {
			return final
		}
		idleSince = time.Now()
		if err := d.Wait(ctx, c, delay); err != nil {
			c.Idle += time.Since(idleSince)
			return err
		}
	}
}
