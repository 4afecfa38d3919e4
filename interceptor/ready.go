package interceptor

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// waitReady waits until cc has a ready connection, for at most d, or until
// ctx ends, and reports whether it has one. It asks an idle channel to
// connect. A nil cc (an interceptor called outside a real channel) and a
// channel being shut down count as ready: the attempt then goes ahead and
// fails, or not, as gRPC decides.
//
// This is what makes a retry ride out a restart: a channel whose server is
// down is in TRANSIENT_FAILURE, where gRPC fails an RPC at once, and it
// reconnects on its own backoff (about a second at first). A retry sent
// during that time fails without reaching any server, so a few quick
// retries can all be spent before the server is back. Waiting for the
// channel instead sends nothing until a connection exists.
func waitReady(ctx context.Context, cc *grpc.ClientConn, d time.Duration) bool {
	if cc == nil || d <= 0 {
		return true
	}
	s := cc.GetState()
	if s == connectivity.Ready || s == connectivity.Shutdown {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		switch s {
		case connectivity.Ready, connectivity.Shutdown:
			return true
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, s) {
			return false
		}
		s = cc.GetState()
	}
}

// disconnected reports whether cc has no ready connection now: it is
// connecting, idle or in transient failure. Asked right after an attempt
// failed, it tells a failure for want of a connection (a restart, a lost
// replica) from a server's answer. A nil cc and a channel being shut down
// count as connected (nothing is known of them).
func disconnected(cc *grpc.ClientConn) bool {
	if cc == nil {
		return false
	}
	s := cc.GetState()
	return s != connectivity.Ready && s != connectivity.Shutdown
}

// connectWait is how long a retry of c waits for a ready connection:
// ConnectWait, and no longer than one attempt may take. The wait comes
// before the attempt, whose own timeout starts once it is sent.
func (c *Call) connectWait() time.Duration {
	if c.AttemptTimeout > 0 && c.ConnectWait > 0 {
		return min(c.ConnectWait, c.AttemptTimeout)
	}
	return c.ConnectWait
}
