package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Request headers the simulated clients send on every attempt of a logical
// call (the interceptor copies the caller's metadata to each attempt).
const (
	hdrPhase  = "x-storm-phase" // index of the phase the logical call started in
	hdrCallID = "x-storm-call"  // client<<32 | sequence number: names the call
	hdrClient = "x-herd-client" // herd study: the client's number
	binWidth  = 100 * time.Millisecond
)

// phaseSpec is one stretch of a scripted timeline.
type phaseSpec struct {
	name  string
	dur   time.Duration
	failP float64 // probability that an attempt fails with Unavailable (1 = outage)
}

// phaseAt returns the index of the phase in effect at offset t. Zero-length
// phases never are; before the first and after the last phase, the nearest
// phase of non-zero length holds.
func phaseAt(phases []phaseSpec, t time.Duration) int {
	last := -1
	var end time.Duration
	for i, p := range phases {
		if p.dur <= 0 {
			continue
		}
		last = i
		end += p.dur
		if t < end {
			return i
		}
	}
	return last
}

// stormServer is InferenceService/Generate with a scripted failure timeline
// and a limited capacity. Every attempt that arrives is counted, attributed
// to the phase its logical call started in (sent by the client).
//
// An attempt first meets the failure script: in a phase with failP = 1 (an
// outage) it fails at once with Unavailable; with 0 < failP < 1 it fails with
// Unavailable if a hash of (seed, call, attempt number) says so, so the same
// attempts fail in every run and for every policy. Then it needs one of
// capacity handler slots: if none is free it is shed at once with
// ResourceExhausted. Otherwise it holds the slot for the service time and
// answers OK.
type stormServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	t0      time.Time
	phases  []phaseSpec
	sem     chan struct{}
	service time.Duration
	seed    uint64

	attempts []atomic.Int64 // by the logical call's start phase
	failed   atomic.Int64   // failed by the script (Unavailable)
	shed     atomic.Int64   // shed for lack of capacity (ResourceExhausted)

	mu   sync.Mutex
	bins []int64 // attempts by arrival time, binWidth each
}

func newStormServer(t0 time.Time, phases []phaseSpec, capacity int, service time.Duration, seed uint64) *stormServer {
	return &stormServer{
		t0:       t0,
		phases:   phases,
		sem:      make(chan struct{}, capacity),
		service:  service,
		seed:     seed,
		attempts: make([]atomic.Int64, len(phases)),
	}
}

func (s *stormServer) Generate(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	now := time.Since(s.t0)
	md, _ := metadata.FromIncomingContext(ctx)
	if p, err := strconv.Atoi(first(md, hdrPhase)); err == nil && p >= 0 && p < len(s.attempts) {
		s.attempts[p].Add(1)
	}
	s.mu.Lock()
	if b := int(max(now, 0) / binWidth); b < 1<<16 {
		for len(s.bins) <= b {
			s.bins = append(s.bins, 0)
		}
		s.bins[b]++
	}
	s.mu.Unlock()

	if p := s.phases[phaseAt(s.phases, now)].failP; p > 0 {
		call, _ := strconv.ParseUint(first(md, hdrCallID), 10, 64)
		attempt, _ := strconv.ParseUint(first(md, retry.PreviousAttemptsHeader), 10, 64)
		if p >= 1 || unit(s.seed, call, attempt) < p {
			s.failed.Add(1)
			return nil, status.Error(codes.Unavailable, "storm: backend unavailable")
		}
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.shed.Add(1)
		return nil, status.Error(codes.ResourceExhausted, "storm: over capacity, request shed")
	}
	defer func() { <-s.sem }()
	t := time.NewTimer(s.service)
	defer t.Stop()
	select {
	case <-t.C:
		return &inferencev1.GenerateResponse{Text: "ok"}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// arrivals returns a copy of the attempts per binWidth of arrival time.
func (s *stormServer) arrivals() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.bins...)
}

// herdServer is the optimistic-concurrency row of the AWS "Exponential
// Backoff and Jitter" simulation, as one RPC per attempt: the request takes
// a network delay to arrive, the handler reads the row's version, waits two
// network delays (the read's reply and the conditional write's request),
// then writes if the version is unchanged (else Aborted: someone else wrote
// in between), and the reply takes one more network delay. Delays are
// |Normal(10ms, 2ms)| × scale, as in the study, drawn from a hash of (seed,
// client, attempt, hop) so that they do not depend on arrival order.
type herdServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	scale   float64
	seed    uint64
	calls   atomic.Int64 // write attempts (the study's "calls")
	version atomic.Int64 // successful writes
}

func (s *herdServer) Generate(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	client, _ := strconv.ParseUint(first(md, hdrClient), 10, 64)
	attempt, _ := strconv.ParseUint(first(md, retry.PreviousAttemptsHeader), 10, 64)
	key := client<<20 | attempt<<2
	if err := sleepCtx(ctx, s.netDelay(key)); err != nil { // delay 0 of the attempt
		return nil, err
	}
	s.calls.Add(1)
	v := s.version.Load()
	if err := sleepCtx(ctx, s.netDelay(key|1)+s.netDelay(key|2)); err != nil {
		return nil, err
	}
	won := s.version.CompareAndSwap(v, v+1)
	if err := sleepCtx(ctx, s.netDelay(key|3)); err != nil {
		return nil, err
	}
	if !won {
		return nil, status.Error(codes.Aborted, "herd: version conflict")
	}
	return &inferencev1.GenerateResponse{Text: "written"}, nil
}

// netDelay is the study's network model: |Normal(10ms, 2ms)|, scaled.
func (s *herdServer) netDelay(key uint64) time.Duration {
	u1 := max(unit(s.seed, key, 1), 1e-12)
	u2 := unit(s.seed, key, 2)
	z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2) // Box-Muller
	ms := math.Abs(10 + 2*z)
	return time.Duration(ms * s.scale * float64(time.Millisecond))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// unit hashes its arguments (splitmix64) to a float64 uniform in [0, 1).
func unit(seed, a, b uint64) float64 {
	x := seed
	for _, v := range [...]uint64{a, b} {
		x += v + 0x9e3779b97f4a7c15
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
		x = (x ^ (x >> 27)) * 0x94d049bb133111eb
		x ^= x >> 31
	}
	return float64(x>>11) / (1 << 53)
}

// bufSize is bufconn's buffer per connection and direction: messages here
// are tiny, and a 1 MiB buffer for each of hundreds of connections would
// cost hundreds of MiB (and GC pauses that disturb the timing).
const bufSize = 64 << 10

// bufServer is a gRPC server on an in-memory listener.
type bufServer struct {
	lis    *bufconn.Listener
	gs     *grpc.Server
	served chan error
}

func startServer(impl inferencev1.InferenceServiceServer) *bufServer {
	s := &bufServer{lis: bufconn.Listen(bufSize), gs: grpc.NewServer(), served: make(chan error, 1)}
	inferencev1.RegisterInferenceServiceServer(s.gs, impl)
	go func() { s.served <- s.gs.Serve(s.lis) }()
	return s
}

// stop ends the server (and any handler still running) and its listener.
func (s *bufServer) stop() {
	s.gs.Stop()
	<-s.served
}

// dialClients dials n clients of s, each on a connection of its own with
// the policy that policy returns for it. closeAll closes every connection;
// on an error, those dialed are already closed.
func (s *bufServer) dialClients(ctx context.Context, n int, policy func() retry.Policy) (conns []*grpc.ClientConn, closeAll func(), err error) {
	closeAll = func() {
		for _, cc := range conns {
			cc.Close()
		}
	}
	conns = make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := s.dial(ctx, policy())
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dial: %w", err)
		}
		conns = append(conns, cc)
	}
	return conns, closeAll, nil
}

// dial returns a connected client of s through retry.Unary(p) and
// retry.Stream(p), gRPC's own retry off, as the library asks.
func (s *bufServer) dial(ctx context.Context, p retry.Policy) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(retry.Unary(p)),
		grpc.WithChainStreamInterceptor(retry.Stream(p)),
	)
	if err != nil {
		return nil, err
	}
	// Connect now, so that no simulated call pays for the connection.
	cc.Connect()
	for st := cc.GetState(); st != connectivity.Ready; st = cc.GetState() {
		if !cc.WaitForStateChange(ctx, st) {
			cc.Close()
			return nil, ctx.Err()
		}
	}
	return cc, nil
}
