package integration_test

// Faults that need a real socket, on loopback TCP (127.0.0.1 only): a
// server restart, connection cycling by GOAWAY, and connections cut at
// random byte offsets.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

var tcpSeed = flag.Uint64("tcp.seed", 1, "seed of the cuts of TestTCPProxyCuts")

// --- restart ---

// restartResult is what a restart run measured.
type restartResult struct {
	calls, ok int
	committed int         // calls that failed after they had committed (StopCommitted)
	attempts  map[int]int // attempts per call → calls
	failures  map[string]int
	slowest   time.Duration
	retries   int64
}

// rate is the share of the calls a retry may save that succeeded: every
// call but those the server's stop cut after they had committed (response
// headers received), which are never retried.
func (r restartResult) rate() float64 { return float64(r.ok) / float64(r.calls-r.committed) }

func (r restartResult) String() string {
	keys := make([]int, 0, len(r.attempts))
	for k := range r.attempts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var hist []string
	for _, k := range keys {
		hist = append(hist, fmt.Sprintf("%d attempt(s): %d", k, r.attempts[k]))
	}
	return fmt.Sprintf("%d/%d calls succeeded (%.2f%% of those not cut after commit), %d retries (%.3f attempts per call); %s; slowest call %v; failures %v",
		r.ok, r.calls, 100*r.rate(), r.retries, float64(r.calls+int(r.retries))/float64(r.calls), strings.Join(hist, ", "), r.slowest.Round(time.Millisecond), r.failures)
}

type retryCountKey struct{}

// restartCallers is the number of concurrent callers of runRestart, each
// with at most one call in flight.
const restartCallers = 50

// runRestart runs 50 callers (half unary, half server-streaming), each
// making a call (5s deadline) every 50ms
// (or as soon as its previous call returns, if that took longer) for 3s,
// against a server on loopback TCP that is stopped 0.5s in and started
// again on the same port 1s later, through retry.DialOptions(p).
func runRestart(t *testing.T, p retry.Policy) restartResult {
	const (
		callers  = restartCallers
		period   = 50 * time.Millisecond
		run      = 3 * time.Second
		deadline = 5 * time.Second
	)
	stub := &stubServer{}
	stub.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return &inferencev1.GenerateResponse{Text: req.GetPrompt()}, nil
	}
	stub.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		return sendTokens(stream, req.GetPrompt(), 0, 3)
	}
	srv := &tcpServer{stub: stub}
	srv.start(t)
	t.Cleanup(srv.stop)

	var retries atomic.Int64
	p.OnRetry = func(ev retry.RetryEvent) {
		retries.Add(1)
		if n, ok := ev.Context.Value(retryCountKey{}).(*atomic.Int32); ok {
			n.Add(1)
		}
	}
	cc := dialTCP(t, srv.addr, retry.DialOptions(p)...)
	client := inferencev1.NewInferenceServiceClient(cc)
	// The channel is connected before the run starts.
	warm, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Generate(warm, &inferencev1.GenerateRequest{Prompt: "warm"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("warm-up call: %v", err)
	}

	var (
		mu  sync.Mutex
		res = restartResult{attempts: map[int]int{}, failures: map[string]int{}}
		wg  sync.WaitGroup
	)
	call := func(i, k int) {
		var n atomic.Int32
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), retryCountKey{}, &n), deadline)
		defer cancel()
		prompt := fmt.Sprintf("%d-%d", i, k)
		start := time.Now()
		var err error
		if i%2 == 0 {
			var resp *inferencev1.GenerateResponse
			if resp, err = client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: prompt}); err == nil && resp.GetText() != prompt {
				err = fmt.Errorf("answer %q, want %q", resp.GetText(), prompt)
			}
		} else {
			var stream grpc.ServerStreamingClient[inferencev1.StreamGenerateResponse]
			if stream, err = client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: prompt}); err == nil {
				var got []string
				if got, err = recvTokens(stream); err == nil && !slices.Equal(got, wantTokenList(prompt, 0, 3)) {
					err = fmt.Errorf("tokens %q, want %q", got, wantTokenList(prompt, 0, 3))
				}
			}
		}
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		res.calls++
		res.slowest = max(res.slowest, took)
		attempts := int(n.Load()) + 1
		if err == nil {
			res.ok++
			res.attempts[attempts]++
			return
		}
		var e *retry.Error
		reason := ""
		if errors.As(err, &e) {
			reason = e.Reason.String()
			attempts = e.Attempts
			if e.Reason == retry.StopCommitted {
				res.committed++
			}
		}
		res.attempts[attempts]++
		res.failures[fmt.Sprintf("%v (%s)", status.Code(err), reason)]++
	}
	start := time.Now()
	end := start.Add(run)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for k := 0; time.Now().Before(end); k++ {
				call(i, k)
				<-tick.C
			}
		}()
	}
	// The outage: the test's scenario, timed by the wall clock on purpose.
	time.Sleep(500 * time.Millisecond)
	srv.stop()
	down := time.Now()
	time.Sleep(time.Second)
	srv.start(t)
	t.Logf("server down for %v (connection refused), %v into the run", time.Since(down).Round(time.Millisecond), down.Sub(start).Round(time.Millisecond))
	wg.Wait()
	res.retries = retries.Load()
	return res
}

// TestTCPRestart: a server stopped and started again on the same port
// (about 1s of connection refused) under 50 concurrent callers (unary and
// server streams) with 5s deadlines, through retry.DialOptions with the
// zero Policy and with the policy of the budget scenarios (4 attempts,
// 50ms to 1s full-jitter backoff, the default budget): retries wait for
// the channel to reconnect, so at least 99.5% of calls succeed (of those a
// retry may save: a call that had received its response headers when the
// server stopped has committed and fails, at most one per caller).
//
// The scenario policy's short backoff sends some retries while gRPC still
// reports the channel READY for a moment after its connection closed: they
// fail at once, for want of a connection, and must not be charged to the
// budget (CreditBudget), or three of them empty it for every caller.
//
// Logged for contrast: the scenario policy with ConnectWait -1 (retries do
// not wait), whose rate depends on when gRPC's reconnect backoff lets the
// channel back: its four attempts fail fast within about 1.75s.
func TestTCPRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    retry.Policy
	}{
		{"zero policy", retry.Policy{}},
		{"scenario policy", retry.Policy{MaxAttempts: 4, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Jitter: retry.FullJitter}},
	} {
		res := runRestart(t, tc.p)
		t.Logf("%s: %v", tc.name, res)
		if res.rate() < 0.995 || res.committed > restartCallers {
			t.Errorf("%s: %.2f%% of calls succeeded (%d cut after commit), want at least 99.5%% and at most %d cut: %v", tc.name, 100*res.rate(), res.committed, restartCallers, res)
		}
	}
	contrast := runRestart(t, retry.Policy{MaxAttempts: 4, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Jitter: retry.FullJitter, ConnectWait: -1})
	t.Logf("scenario policy, ConnectWait -1 (retries do not wait for a connection): %v", contrast)
}

// --- GOAWAY ---

// TestTCPGoAway: a server whose connections live MaxConnectionAge (then
// GOAWAY, and MaxConnectionAgeGrace for the RPCs in flight) while unary
// calls, server streams and bidi streams run on it: the client moves to new
// connections without any call failing, and no stream loses or repeats a
// message.
func TestTCPGoAway(t *testing.T) {
	const (
		tokens   = 20
		messages = 10
		duration = 2 * time.Second
	)
	stub := &stubServer{ServerOptions: nil}
	stub.GenerateF = func(ctx context.Context, req *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
		return &inferencev1.GenerateResponse{Text: req.GetPrompt()}, nil
	}
	stub.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		return sendTokens(stream, req.GetPrompt(), 0, tokens)
	}
	stub.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.Send(&inferencev1.ChatResponse{Text: m.GetText()}); err != nil {
				return err
			}
		}
	}
	srv := &tcpServer{stub: stub, opts: []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionAge:      200 * time.Millisecond,
		MaxConnectionAgeGrace: 5 * time.Second,
	})}}
	srv.start(t)
	t.Cleanup(srv.stop)
	var retries atomic.Int64
	cc := dialTCP(t, srv.addr, retry.DialOptions(retry.Policy{OnRetry: func(retry.RetryEvent) { retries.Add(1) }})...)
	client := inferencev1.NewInferenceServiceClient(cc)

	var (
		mu       sync.Mutex
		problems []string
		counts   = map[string]int{}
		wg       sync.WaitGroup
	)
	report := func(kind string, err error) {
		mu.Lock()
		defer mu.Unlock()
		counts[kind]++
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", kind, err))
		}
	}
	stop := time.Now().Add(duration)
	loop := func(kind string, f func(ctx context.Context, id string) error) {
		defer wg.Done()
		for i := 0; time.Now().Before(stop); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			report(kind, f(ctx, fmt.Sprintf("%s-%d", kind, i)))
			cancel()
		}
	}
	unary := func(ctx context.Context, id string) error {
		resp, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: id})
		if err != nil {
			return err
		}
		if resp.GetText() != id {
			return fmt.Errorf("answer %q, want %q", resp.GetText(), id)
		}
		return nil
	}
	serverStream := func(ctx context.Context, id string) error {
		stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: id})
		if err != nil {
			return err
		}
		got, err := recvTokens(stream)
		if err != nil {
			return fmt.Errorf("after %d tokens: %v", len(got), err)
		}
		if want := wantTokenList(id, 0, tokens); !slices.Equal(got, want) {
			return fmt.Errorf("tokens %q, want %q", got, want)
		}
		return nil
	}
	bidi := func(ctx context.Context, id string) error {
		return chatEchoCheck(ctx, client, id, messages)
	}
	for range 4 {
		wg.Add(1)
		go loop("unary", unary)
	}
	for range 2 {
		wg.Add(2)
		go loop("server stream", serverStream)
		go loop("bidi", bidi)
	}
	wg.Wait()
	conns := srv.conns.Load()
	t.Logf("%v over %d connections (each closed by GOAWAY after about 200ms), %d retries", counts, conns, retries.Load())
	if len(problems) > 0 {
		t.Errorf("%d call(s) failed or were wrong:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	if conns < 3 {
		t.Errorf("%d connection(s): MaxConnectionAge did not cycle them", conns)
	}
}

// chatEchoCheck sends n messages id/0 ... id/n-1 on a Chat stream (then
// CloseSend) while receiving their echoes, and checks that every echo
// came exactly once and in order.
func chatEchoCheck(ctx context.Context, client inferencev1.InferenceServiceClient, id string, n int) error {
	got, err := chatEchoes(ctx, client, id, n)
	if err != nil {
		return fmt.Errorf("after %d echoes: %v", len(got), err)
	}
	if want := echoList(id, n); !slices.Equal(got, want) {
		return fmt.Errorf("echoes %q, want %q", got, want)
	}
	return nil
}

func echoList(id string, n int) []string {
	var l []string
	for i := range n {
		l = append(l, id+"/"+strconv.Itoa(i))
	}
	return l
}

// chatEchoes runs a Chat stream as chatEchoCheck does and returns the echoes
// received and the stream's error (nil for a clean end).
func chatEchoes(ctx context.Context, client inferencev1.InferenceServiceClient, id string, n int) ([]string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Chat(ctx)
	if err != nil {
		return nil, err
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for _, m := range echoList(id, n) {
			if err := stream.Send(&inferencev1.ChatRequest{Text: m}); err != nil {
				return // RecvMsg reports the stream's end
			}
		}
		stream.CloseSend()
	}()
	var got []string
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			<-sent
			if err == io.EOF {
				err = nil
			}
			return got, err
		}
		got = append(got, m.GetText())
	}
}

// --- cut connections ---

// TestTCPProxyCuts: streams through a TCP proxy that cuts connections at
// random byte offsets (seeded: -tcp.seed): every stream either completes
// with every message exactly once and in order, or fails with a
// *retry.Error carrying the transport's status (Unavailable); never a
// repeated, lost or reordered message.
func TestTCPProxyCuts(t *testing.T) {
	const (
		streams  = 150
		parallel = 3
		tokens   = 40 // server stream: 40 tokens of about 100 bytes
		messages = 15 // bidi and client stream: 15 messages each way
	)
	pad := strings.Repeat("t", 90)
	stub := &stubServer{}
	stub.StreamGenerateF = func(req *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
		for i := range tokens {
			if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: tokenText(req.GetPrompt(), i) + pad, Index: int32(i)}); err != nil {
				return err
			}
		}
		return nil
	}
	stub.ChatF = func(stream grpc.BidiStreamingServer[inferencev1.ChatRequest, inferencev1.ChatResponse]) error {
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := stream.Send(&inferencev1.ChatResponse{Text: m.GetText()}); err != nil {
				return err
			}
		}
	}
	// Ingest checks the order itself: chunk i must be "i".
	stub.IngestF = func(stream grpc.ClientStreamingServer[inferencev1.IngestRequest, inferencev1.IngestResponse]) error {
		var n int64
		for {
			m, err := stream.Recv()
			if err == io.EOF {
				return stream.SendAndClose(&inferencev1.IngestResponse{Chunks: n})
			}
			if err != nil {
				return err
			}
			if got := strings.TrimRight(string(m.GetChunk()), "."); got != strconv.FormatInt(n, 10) {
				return status.Errorf(codes.DataLoss, "chunk %d is %q", n, got)
			}
			n++
		}
	}
	srv := &tcpServer{stub: stub}
	srv.start(t)
	t.Cleanup(srv.stop)
	proxy := startCutProxy(t, srv.addr, *tcpSeed, 1, 1000, 20000)
	var retries atomic.Int64
	p := retry.Policy{
		MaxAttempts:    5,
		InitialBackoff: 5 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		Budget:         retry.NoBudget,
		OnRetry:        func(retry.RetryEvent) { retries.Add(1) },
	}
	cc := dialTCP(t, proxy.addr(), retry.DialOptions(p)...)
	client := inferencev1.NewInferenceServiceClient(cc)

	var (
		mu       sync.Mutex
		problems []string
		outcomes = map[string]int{}
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	// check judges a stream's end: err must be nil or the transport's
	// failure as a *retry.Error; received must be a prefix of want, all of
	// it on success.
	check := func(kind string, received, want []string, err error) {
		mu.Lock()
		defer mu.Unlock()
		var e *retry.Error
		switch {
		case !slices.Equal(received, want[:min(len(received), len(want))]):
			problems = append(problems, fmt.Sprintf("%s: received %q, not a prefix of %q", kind, received, want))
		case err == nil && len(received) != len(want):
			problems = append(problems, fmt.Sprintf("%s: ended OK after %d of %d messages", kind, len(received), len(want)))
		case err == nil:
			outcomes[kind+": complete"]++
		case !errors.As(err, &e):
			problems = append(problems, fmt.Sprintf("%s: failed with %v (%T), not a *retry.Error", kind, err, err))
		case status.Code(err) != codes.Unavailable:
			problems = append(problems, fmt.Sprintf("%s: failed with %v, want the transport's Unavailable", kind, err))
		default:
			outcomes[fmt.Sprintf("%s: Unavailable after %d attempt(s), %s", kind, e.Attempts, e.Reason)]++
		}
	}
	run := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		id := "s" + strconv.Itoa(i)
		switch i % 3 {
		case 0:
			stream, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: id})
			var got []string
			if err == nil {
				got, err = recvTokens(stream)
			}
			for j := range got {
				got[j] = strings.TrimSuffix(got[j], pad)
			}
			check("server stream", got, wantTokenList(id, 0, tokens), err)
		case 1:
			got, err := chatEchoes(ctx, client, id, messages)
			check("bidi", got, echoList(id, messages), err)
		case 2:
			var got []string
			resp, err := ingestNumbered(ctx, client, messages)
			if err == nil {
				got = []string{strconv.FormatInt(resp.GetChunks(), 10)}
			}
			check("client stream", got, []string{strconv.Itoa(messages)}, err)
		}
	}
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= streams {
					return
				}
				run(i)
			}
		}()
	}
	wg.Wait()
	t.Logf("seed %d: %d connections through the proxy, %d cut; %d retries; outcomes:\n  %s", *tcpSeed, proxy.total.Load(), proxy.cuts.Load(), retries.Load(), sortedCounts(outcomes))
	if len(problems) > 0 {
		t.Errorf("%d stream(s) broke the rules:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	if proxy.cuts.Load() == 0 {
		t.Errorf("the proxy cut no connection")
	}
}

// ingestNumbered sends chunks "0", "1", ... (padded to 60 bytes) on an
// Ingest stream and returns the server's answer.
func ingestNumbered(ctx context.Context, client inferencev1.InferenceServiceClient, n int) (*inferencev1.IngestResponse, error) {
	stream, err := client.Ingest(ctx)
	if err != nil {
		return nil, err
	}
	for i := range n {
		chunk := strconv.Itoa(i)
		chunk += strings.Repeat(".", 60-len(chunk))
		if err := stream.Send(&inferencev1.IngestRequest{Chunk: []byte(chunk)}); err != nil {
			break // CloseAndRecv reports the stream's end
		}
	}
	return stream.CloseAndRecv()
}
