package integration_test

// The client side of the differential test: grpc-go's built-in retry and
// ours, each over its own channels to one diffServer, and a runner that
// plays a script's caller and records what the caller sees.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// impl is one of the two retry implementations under comparison.
type impl int

const (
	builtin impl = iota // grpc-go's retry, configured by a service config
	ours                // retry.Unary and retry.Stream
)

func (i impl) String() string {
	if i == builtin {
		return "grpc-go"
	}
	return "ours"
}

// builtinServiceConfig is the service config of grpc-go's retry for
// maxAttempts attempts: backoff 1ms to 2ms, UNAVAILABLE and
// RESOURCE_EXHAUSTED retried.
func builtinServiceConfig(maxAttempts int) string {
	return fmt.Sprintf(`{"methodConfig": [{
		"name": [{"service": "inference.v1.InferenceService"}],
		"retryPolicy": {
			"maxAttempts": %d,
			"initialBackoff": "0.001s",
			"maxBackoff": "0.002s",
			"backoffMultiplier": 2,
			"retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
		}
	}]}`, maxAttempts)
}

// diffPolicy is our policy equivalent to builtinServiceConfig(maxAttempts).
func diffPolicy(maxAttempts int) retry.Policy {
	return retry.Policy{
		MaxAttempts:    maxAttempts,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     2 * time.Millisecond,
		Multiplier:     2,
		Jitter:         retry.ProportionalJitter, // grpc-go's ×[0.8, 1.2)
		Budget:         retry.NoBudget,
		MaxPushback:    diffMaxPushback,
	}
}

// diffRig is a diffServer on a bufconn listener and, for each
// implementation and each MaxAttempts, a channel to it.
type diffRig struct {
	srv   *diffServer
	conns map[impl]map[int]*grpc.ClientConn
}

// startDiffRig starts the server and the channels; t's cleanup stops them.
func startDiffRig(t testing.TB, maxAttempts ...int) *diffRig {
	t.Helper()
	rig := &diffRig{srv: newDiffServer(), conns: map[impl]map[int]*grpc.ClientConn{builtin: {}, ours: {}}}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(rig.srv.options()...)
	inferencev1.RegisterInferenceServiceServer(srv, rig.srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		for _, m := range rig.conns {
			for _, cc := range m {
				cc.Close()
			}
		}
		srv.Stop()
		<-served
	})
	base := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	for _, n := range maxAttempts {
		for _, im := range []impl{builtin, ours} {
			opts := append([]grpc.DialOption(nil), base...)
			if im == builtin {
				opts = append(opts, grpc.WithDefaultServiceConfig(builtinServiceConfig(n)))
			} else {
				p := diffPolicy(n)
				opts = append(opts, grpc.WithChainUnaryInterceptor(retry.Unary(p)), grpc.WithChainStreamInterceptor(retry.Stream(p)), grpc.WithDisableRetry())
			}
			cc, err := grpc.NewClient("passthrough:///diff", opts...)
			if err != nil {
				t.Fatalf("grpc.NewClient: %v", err)
			}
			rig.conns[im][n] = cc
		}
	}
	return rig
}

// callerView is what the caller of a scripted call saw.
type callerView struct {
	Code     codes.Code
	Msg      string
	Received []string
	// Header is what grpc.Header (unary) or Header() (streams, if the
	// script calls it before the end) returned; nil when empty.
	Header metadata.MD
	// HeaderAfter is what Header() returned after the end, if the script
	// calls it there.
	HeaderAfter metadata.MD
	Trailer     metadata.MD // grpc.Trailer, or Trailer() after the end
	// SendErr is the first error of a send other than io.EOF.
	SendErr  string
	sendCode codes.Code
	sendMsg  string
	// Finished lists the codes grpc.OnFinish was called with by the time
	// the call's last operation returned.
	Finished []codes.Code
}

func (v callerView) String() string {
	s := fmt.Sprintf("%v %q, received %s, header %s, trailer %s, OnFinish %v", v.Code, v.Msg, shortList(v.Received), mdString(v.Header), mdString(v.Trailer), v.Finished)
	if v.HeaderAfter != nil {
		s += ", header after the end " + mdString(v.HeaderAfter)
	}
	if v.SendErr != "" {
		s += ", send error " + v.SendErr
	}
	return s
}

// observation is everything the differential test compares about one run
// of a script.
type observation struct {
	Caller   callerView
	Server   []diffArrival
	Problems []string // the server's complaints about the script
	Err      error    // the call's error, as returned
	// endOutsideRecv: grpc-go's Header() or SendMsg met the end of the
	// call (set by normalize).
	endOutsideRecv bool
	// Ours only: what the *retry.Error says.
	RetryErr *retry.Error
}

// run plays sc through im and returns what was seen.
func (rig *diffRig) run(im impl, sc *diffScript) (observation, error) {
	id := fmt.Sprintf("%d/%v", sc.Seed, im)
	call := rig.srv.register(id, sc)
	defer rig.srv.unregister(id)
	cc := rig.conns[im][sc.MaxAttempts]

	ctx, cancel := context.WithTimeout(context.Background(), sc.Deadline)
	ctx = metadata.AppendToOutgoingContext(ctx, diffCallHeader, id)
	var (
		mu       sync.Mutex
		finished []codes.Code
	)
	opts := []grpc.CallOption{
		grpc.OnFinish(func(err error) {
			mu.Lock()
			finished = append(finished, status.Code(err))
			mu.Unlock()
		}),
		grpc.MaxRetryRPCBufferSize(sc.ReplayLimit),
	}
	if sc.Compress {
		opts = append(opts, grpc.UseCompressor(gzip.Name))
	}
	if sc.RecvLimit > 0 {
		opts = append(opts, grpc.MaxCallRecvMsgSize(sc.RecvLimit))
	}
	if sc.SendLimit > 0 {
		opts = append(opts, grpc.MaxCallSendMsgSize(sc.SendLimit))
	}
	var o observation
	if sc.Kind == diffUnary {
		o.Caller, o.Err = runUnary(ctx, cc, sc, opts)
	} else {
		o.Caller, o.Err = runStream(ctx, cc, sc, opts)
	}
	mu.Lock()
	o.Caller.Finished = append([]codes.Code(nil), finished...)
	mu.Unlock()
	cancel()
	errors.As(o.Err, &o.RetryErr)

	// Every attempt the client started has reached the server once a
	// later RPC on the same connection has; then wait for them to end.
	if err := barrierOn(cc); err != nil {
		return o, err
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer qcancel()
	if err := call.quiesce(qctx); err != nil {
		return o, err
	}
	o.Server, o.Problems = call.record()
	return o, nil
}

// barrierOn makes an RPC on cc and waits for its answer: every RPC cc
// had sent before has then been read by the server.
func barrierOn(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cc.Invoke(ctx, methodBarrier, &inferencev1.GenerateRequest{}, &inferencev1.GenerateResponse{}, retry.Disable())
	if status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("barrier RPC: %v, want Unimplemented", err)
	}
	return nil
}

// setEnd records the call's end err in v.
func (v *callerView) setEnd(err error) {
	if err == io.EOF {
		err = nil
	}
	st := status.Convert(err)
	v.Code, v.Msg = st.Code(), st.Message()
}

// mdString prints md in full, keys sorted (metadata.MD's own String hides
// values).
func mdString(md metadata.MD) string {
	if md == nil {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(md))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, md[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func emptyToNil(md metadata.MD) metadata.MD {
	if len(md) == 0 {
		return nil
	}
	return md
}

func runUnary(ctx context.Context, cc *grpc.ClientConn, sc *diffScript, opts []grpc.CallOption) (callerView, error) {
	var v callerView
	var hdr, tr metadata.MD
	resp := new(inferencev1.GenerateResponse)
	req := requestMessage(sc.Kind, requestText(0, sc.Sends[0]))
	err := cc.Invoke(ctx, methodGenerate, req, resp, append(opts, grpc.Header(&hdr), grpc.Trailer(&tr))...)
	v.setEnd(err)
	if err == nil {
		v.Received = []string{responseString(resp)}
	}
	v.Header, v.Trailer = emptyToNil(hdr), emptyToNil(tr)
	return v, err
}

func streamMethod(k diffKind) string {
	switch k {
	case diffServerStream:
		return methodStreamGenerate
	case diffClientStream:
		return methodIngest
	}
	return methodChat
}

func runStream(ctx context.Context, cc *grpc.ClientConn, sc *diffScript, opts []grpc.CallOption) (callerView, error) {
	var v callerView
	desc := &grpc.StreamDesc{ServerStreams: sc.Kind.serverStreams(), ClientStreams: sc.Kind.clientStreams()}
	cs, err := cc.NewStream(ctx, desc, streamMethod(sc.Kind), opts...)
	if err != nil {
		v.setEnd(err)
		return v, err
	}
	header := func() metadata.MD {
		md, err := cs.Header()
		if err != nil {
			// Neither implementation returns an error from Header.
			return metadata.Pairs("header-error", err.Error())
		}
		return emptyToNil(md)
	}
	if sc.HeaderFirst {
		v.Header = header()
	}
	sendFailed := false
	for i, size := range sc.Sends {
		err := cs.SendMsg(requestMessage(sc.Kind, requestText(i, size)))
		if err != nil && err != io.EOF {
			st := status.Convert(err)
			v.SendErr = fmt.Sprintf("%v %q", st.Code(), st.Message())
			v.sendCode, v.sendMsg = st.Code(), st.Message()
			sendFailed = true
			break
		}
	}
	if !sendFailed {
		if sc.CloseSend {
			cs.CloseSend()
		}
		if sc.CallContext {
			cs.Context()
		}
		if sc.CallHeader {
			v.Header = header()
		}
	}
	var concurrentHeader chan metadata.MD
	if sc.HeaderWhileReceiving && !sendFailed {
		concurrentHeader = make(chan metadata.MD, 1)
		go func() { concurrentHeader <- header() }()
	}
	end := func(err error) (callerView, error) {
		if concurrentHeader != nil {
			v.Header = <-concurrentHeader
		}
		v.setEnd(err)
		v.Trailer = emptyToNil(cs.Trailer())
		if sc.HeaderAfter {
			v.HeaderAfter = header()
		}
		if err == io.EOF {
			err = nil
		}
		return v, err
	}
	for {
		m := newResponse(sc.Kind)
		err := cs.RecvMsg(m)
		if err != nil {
			return end(err)
		}
		v.Received = append(v.Received, responseString(m))
		if !sc.Kind.serverStreams() {
			// One response ends a unary-response stream (as CloseAndRecv).
			return end(nil)
		}
	}
}
