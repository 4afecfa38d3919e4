package interceptor

import (
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callOptions sorts a call's grpc.CallOptions into what each attempt gets
// and what belongs to the logical call as a whole.
//
// gRPC applies call options to each attempt it makes, and the retry
// interceptors make several, so each kind is given its per-call meaning:
//
//   - grpc.OnFinish runs once per call, with the call's final error: it is
//     kept out of the attempts and run by the interceptor when the call ends.
//   - grpc.Header, grpc.Trailer and grpc.Peer describe the attempt the
//     caller got its answer from. Retried attempts run one after another
//     and each fills them, so the last one's stay; the interceptor reads the
//     same headers and trailer to decide, and when the caller asks for them
//     it reads the caller's copies rather than asking gRPC for a second one.
//     Hedged attempts run at once: each gets captures of its own, and the
//     winner's are copied to the caller's.
//   - grpc.WaitForReady applies to every attempt as the caller set it; set
//     to false explicitly, it also keeps retries from waiting for a
//     connection (see Call.ConnectWait).
//   - grpc.MaxRetryRPCBufferSize sets the stream's replay buffer
//     (Call.MaxReplayBytes), the meaning it has for grpc-go's own retry.
//   - Every other option (credentials, compression, codecs, size limits,
//     content subtype, ...) is a property of each attempt and passes through.
type callOptions struct {
	attempt  []grpc.CallOption // for every attempt
	onFinish []func(error)
	header   *metadata.MD // where each attempt's response headers land
	trailer  *metadata.MD // where each attempt's trailer lands
	failFast bool         // the caller set grpc.WaitForReady(false)
	replay   int          // grpc.MaxRetryRPCBufferSize, or -1
	base     int          // attempt[:base] are the caller's options, without captures of ours

	// The caller's own captures, for hedged calls (which keep them out of
	// attempt).
	callerHeader, callerTrailer *metadata.MD
	callerPeer                  *peer.Peer
}

// sort fills o from the caller's opts. ownHeader and ownTrailer are where
// headers and trailers land when the caller did not ask for them; nil asks
// for none. For a hedged call, the caller's grpc.Header, grpc.Trailer and
// grpc.Peer are kept out of the attempts (and own captures are always used).
func (o *callOptions) sort(opts []grpc.CallOption, ownHeader, ownTrailer *metadata.MD, hedged bool) {
	o.replay = -1
	for _, opt := range opts {
		switch v := opt.(type) {
		case grpc.OnFinishCallOption:
			o.onFinish = append(o.onFinish, v.OnFinish)
			continue
		case grpc.HeaderCallOption:
			if hedged {
				o.callerHeader = v.HeaderAddr
				continue
			}
			o.header = v.HeaderAddr
		case grpc.TrailerCallOption:
			if hedged {
				o.callerTrailer = v.TrailerAddr
				continue
			}
			o.trailer = v.TrailerAddr
		case grpc.PeerCallOption:
			if hedged {
				o.callerPeer = v.PeerAddr
				continue
			}
		case grpc.FailFastCallOption:
			o.failFast = v.FailFast
		case grpc.MaxRetryRPCBufferSizeCallOption:
			o.replay = v.MaxRetryRPCBufferSize
		}
		o.attempt = append(o.attempt, opt)
	}
	o.base = len(o.attempt)
	if o.header == nil && ownHeader != nil {
		o.header = ownHeader
		o.attempt = append(o.attempt, grpc.Header(ownHeader))
	}
	if o.trailer == nil && ownTrailer != nil {
		o.trailer = ownTrailer
		o.attempt = append(o.attempt, grpc.Trailer(ownTrailer))
	}
}

// clearCaptures empties the captured headers and trailer before an attempt.
func (o *callOptions) clearCaptures() {
	if o.header != nil {
		*o.header = nil
	}
	if o.trailer != nil {
		*o.trailer = nil
	}
}

// captured returns the last attempt's captured headers and trailer (nil
// when not captured).
func (o *callOptions) captured() (header, trailer metadata.MD) {
	if o.header != nil {
		header = *o.header
	}
	if o.trailer != nil {
		trailer = *o.trailer
	}
	return header, trailer
}

// finish runs the caller's grpc.OnFinish callbacks once, with the call's
// final error (nil on success).
func (o *callOptions) finish(err error) {
	for _, f := range o.onFinish {
		f(err)
	}
}

// reset empties o for reuse, keeping its slices' memory.
func (o *callOptions) reset() {
	clear(o.attempt)
	clear(o.onFinish)
	*o = callOptions{attempt: o.attempt[:0], onFinish: o.onFinish[:0]}
}

// applyTo sets the call fields that a gRPC option overrides.
func (o *callOptions) applyTo(c *Call) {
	if o.replay >= 0 {
		c.MaxReplayBytes = o.replay
	}
	if o.failFast {
		c.ConnectWait = 0
	}
}

// localError reports whether err is one that grpc-go produces itself when a
// message breaks a size limit, or cannot be encoded, compressed, decoded or
// decompressed: another attempt with the same message would fail the same
// way. grpc-go names these errors with fixed texts ("trying to send message
// larger than max", and "grpc: ..." for the others), with code
// ResourceExhausted or Internal.
func localError(err error) bool {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.ResourceExhausted, codes.Internal:
		msg := st.Message()
		return strings.HasPrefix(msg, "grpc: ") || strings.HasPrefix(msg, "trying to send message larger than max")
	}
	return false
}

// hasStaticMethod reports whether opts hold grpc.StaticMethod.
func hasStaticMethod(opts []grpc.CallOption) bool {
	for _, o := range opts {
		if _, ok := o.(grpc.StaticMethodCallOption); ok {
			return true
		}
	}
	return false
}
