package retry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Instrument names, as users see them.
const (
	instRetries     = "grpc.client.call.retries"
	instHedges      = "grpc.client.call.hedges"
	instTransparent = "grpc.client.call.transparent_retries"
	instDelay       = "grpc.client.call.retry_delay"
	instBudgetStops = "retry.client.budget_stops"
	instHedgesSent  = "retry.client.hedges.sent"
	instHedgesWon   = "retry.client.hedges.won"
	instHedgesDeny  = "retry.client.hedges.denied"
)

var allInstruments = []string{instRetries, instHedges, instTransparent, instDelay, instBudgetStops, instHedgesSent, instHedgesWon, instHedgesDeny}

// point is one data point of a histogram or a counter: for a counter,
// Count is 0 and Sum its value.
type point struct {
	Method, Target string
	Count          uint64
	Sum            float64
	Bounds         []float64
	Unit           string
}

// meter is an in-memory OpenTelemetry SDK with a Metrics on it.
type meter struct {
	reader  *sdkmetric.ManualReader
	metrics *retry.Metrics
}

func newMeter(t testing.TB, opts ...retry.MetricsOption) *meter {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := retry.NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &meter{reader: reader, metrics: m}
}

// collect returns the data points of every instrument, by name.
func (m *meter) collect(t testing.TB) map[string][]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := make(map[string][]point)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "github.com/seed4f82f287/retry" {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, mt := range sm.Metrics {
			if !slices.Contains(allInstruments, mt.Name) {
				continue // the failover's and the breaker's (metrics_failover_test.go)
			}
			for _, p := range dataPoints(t, mt) {
				p.Unit = mt.Unit
				got[mt.Name] = append(got[mt.Name], p)
			}
		}
	}
	return got
}

func dataPoints(t testing.TB, mt metricdata.Metrics) []point {
	var ps []point
	attrs := func(s attribute.Set) (string, string) {
		if s.Len() != 2 {
			t.Errorf("%s: attributes %v, want grpc.method and grpc.target", mt.Name, s.ToSlice())
		}
		m, _ := s.Value("grpc.method")
		tg, _ := s.Value("grpc.target")
		return m.AsString(), tg.AsString()
	}
	switch d := mt.Data.(type) {
	case metricdata.Histogram[int64]:
		for _, dp := range d.DataPoints {
			m, tg := attrs(dp.Attributes)
			ps = append(ps, point{Method: m, Target: tg, Count: dp.Count, Sum: float64(dp.Sum), Bounds: dp.Bounds})
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			m, tg := attrs(dp.Attributes)
			ps = append(ps, point{Method: m, Target: tg, Count: dp.Count, Sum: dp.Sum, Bounds: dp.Bounds})
		}
	case metricdata.Sum[int64]:
		if !d.IsMonotonic {
			t.Errorf("%s: not monotonic", mt.Name)
		}
		for _, dp := range d.DataPoints {
			m, tg := attrs(dp.Attributes)
			ps = append(ps, point{Method: m, Target: tg, Sum: float64(dp.Value)})
		}
	default:
		t.Errorf("%s: unexpected %T", mt.Name, mt.Data)
	}
	return ps
}

// want checks the points of every instrument: those of name are want[name],
// compared on method, target, count and sum (Sum < 0 in want: any sum).
func checkPoints(t *testing.T, got map[string][]point, want map[string][]point) {
	t.Helper()
	for _, name := range allInstruments {
		g, w := got[name], want[name]
		if len(g) != len(w) {
			t.Errorf("%s: %d points %+v, want %d %+v", name, len(g), g, len(w), w)
			continue
		}
		slices.SortFunc(g, func(a, b point) int { return cmpPoint(a, b) })
		slices.SortFunc(w, func(a, b point) int { return cmpPoint(a, b) })
		for i := range g {
			if g[i].Method != w[i].Method || g[i].Target != w[i].Target || g[i].Count != w[i].Count || (w[i].Sum >= 0 && g[i].Sum != w[i].Sum) {
				t.Errorf("%s: point %+v, want %+v", name, g[i], w[i])
			}
		}
	}
}

func cmpPoint(a, b point) int {
	if a.Method != b.Method {
		if a.Method < b.Method {
			return -1
		}
		return 1
	}
	if a.Target < b.Target {
		return -1
	}
	if a.Target > b.Target {
		return 1
	}
	return 0
}

const (
	bufTarget      = "passthrough:///bufnet" // serve's
	generateLabel  = "inference.v1.InferenceService/Generate"
	callToolLabel  = "inference.v1.InferenceService/CallTool"
	nonStaticLabel = "other"
)

// fastPolicy retries at once (1ms, no jitter) with no budget, and records
// on m.
func fastPolicy(m *meter) retry.Policy {
	return retry.Policy{
		InitialBackoff: time.Millisecond,
		MaxBackoff:     time.Millisecond,
		Jitter:         retry.NoJitter,
		Budget:         retry.NoBudget,
		Metrics:        m.metrics,
	}
}

// TestMetricsRetriedCall: a call retried twice records 2 retries and its
// delay, once, labelled with its method and target; a second call that
// succeeds at once records nothing.
func TestMetricsRetriedCall(t *testing.T) {
	m := newMeter(t)
	srv := &exampleServer{generate: failFirst(2, codes.Unavailable, "ok")}
	client := start(t, srv, retry.DialOptions(fastPolicy(m))...)
	var report retry.CallReport
	if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{}, retry.WithReport(&report)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{}); err != nil {
		t.Fatal(err)
	}
	got := m.collect(t)
	checkPoints(t, got, map[string][]point{
		instRetries: {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 2}},
		instDelay:   {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: report.Delay.Seconds()}},
	})
	if report.Delay < 2*time.Millisecond {
		t.Errorf("report.Delay = %v, want at least the two 1ms backoffs", report.Delay)
	}
	for name, want := range map[string]struct {
		unit   string
		bounds []float64
	}{
		instRetries: {"{retry}", []float64{1, 2, 3, 4, 5}},
		instDelay:   {"s", nil},
	} {
		p := got[name][0]
		if p.Unit != want.unit {
			t.Errorf("%s: unit %q, want %q", name, p.Unit, want.unit)
		}
		if want.bounds != nil && !slices.Equal(p.Bounds, want.bounds) {
			t.Errorf("%s: bounds %v, want %v", name, p.Bounds, want.bounds)
		}
	}
	if b := got[instDelay][0].Bounds; len(b) != 41 || b[0] != 0 || b[40] != 100 {
		t.Errorf("%s: bounds %v, want gRFC A66's latency buckets", instDelay, b)
	}
}

// TestMetricsSuccessRecordsNothing: calls that succeed at once, unary and
// streaming, record nothing at all.
func TestMetricsSuccessRecordsNothing(t *testing.T) {
	m := newMeter(t)
	srv := &exampleServer{
		generate: failFirst(0, codes.OK, "ok"),
		streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], _ int) error {
			return sendTokens(s, "a", "b")
		},
	}
	client := start(t, srv, retry.DialOptions(fastPolicy(m))...)
	for range 3 {
		if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{}); err != nil {
			t.Fatal(err)
		}
		stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(stream); err != nil {
			t.Fatal(err)
		}
	}
	checkPoints(t, m.collect(t), nil)
}

// TestMetricsNonStaticMethod: a call made without grpc.StaticMethod (not by
// generated code) is labelled "other", whatever its method.
func TestMetricsNonStaticMethod(t *testing.T) {
	m := newMeter(t)
	srv := &exampleServer{
		generate: failFirst(1, codes.Unavailable, "ok"),
		callTool: failFirst(1, codes.Unavailable, "ok"),
	}
	cc, stop := serveConn(srv, retry.DialOptions(fastPolicy(m))...)
	defer stop()
	for _, method := range []string{methodGenerate, methodCallTool} {
		var reply inferencev1.GenerateResponse
		if err := cc.Invoke(context.Background(), method, &inferencev1.GenerateRequest{}, &reply); err != nil {
			t.Fatal(err)
		}
	}
	checkPoints(t, m.collect(t), map[string][]point{
		instRetries: {{Method: nonStaticLabel, Target: bufTarget, Count: 2, Sum: 2}},
		instDelay:   {{Method: nonStaticLabel, Target: bufTarget, Count: 2, Sum: -1}},
	})
}

// TestMetricsStream: a stream retried (or hedged) before it commits records
// its retries (or hedges) when it ends.
func TestMetricsStream(t *testing.T) {
	const label = "inference.v1.InferenceService/StreamGenerate"
	for _, hedged := range []bool{false, true} {
		t.Run(fmt.Sprint("hedged=", hedged), func(t *testing.T) {
			m := newMeter(t)
			srv := &exampleServer{
				streamGenerate: func(s grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse], attempt int) error {
					if attempt == 1 {
						return status.Error(codes.Unavailable, "not yet")
					}
					return sendTokens(s, "x")
				},
			}
			p := fastPolicy(m)
			want := map[string][]point{
				instRetries: {{Method: label, Target: bufTarget, Count: 1, Sum: 1}},
				instDelay:   {{Method: label, Target: bufTarget, Count: 1, Sum: -1}},
			}
			if hedged {
				p.Hedging = &retry.Hedging{Delay: time.Hour} // hedges only replace failures
				want = map[string][]point{
					instHedges:     {{Method: label, Target: bufTarget, Count: 1, Sum: 1}},
					instDelay:      {{Method: label, Target: bufTarget, Count: 1, Sum: -1}},
					instHedgesSent: {{Method: label, Target: bufTarget, Sum: 1}},
					instHedgesWon:  {{Method: label, Target: bufTarget, Sum: 1}},
				}
			}
			client := start(t, srv, retry.DialOptions(p)...)
			stream, err := client.StreamGenerate(context.Background(), &inferencev1.StreamGenerateRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if tokens, err := recvAll(stream); err != nil || len(tokens) != 1 {
				t.Fatalf("recvAll = %v, %v", tokens, err)
			}
			checkPoints(t, m.collect(t), want)
		})
	}
}

// TestMetricsBudgetStop: a call whose retry the budget refuses counts one
// budget stop, and records neither retries nor a delay (it made one attempt
// and did not wait).
func TestMetricsBudgetStop(t *testing.T) {
	m := newMeter(t)
	p := fastPolicy(m)
	p.Budget = retry.NewThrottle(1, 0.1) // the first failure empties it
	client := start(t, alwaysUnavailable(), retry.DialOptions(p)...)
	_, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{})
	var e *retry.Error
	if !errors.As(err, &e) || e.Reason != retry.StopBudget {
		t.Fatalf("err = %v, want a *retry.Error with StopBudget", err)
	}
	// A call that stops for another reason is no budget stop.
	p.Budget = retry.NoBudget
	p.MaxAttempts = 2
	client = start(t, alwaysUnavailable(), retry.DialOptions(p)...)
	if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{}); !errors.As(err, &e) || e.Reason != retry.StopMaxAttempts {
		t.Fatalf("err = %v, want a *retry.Error with StopMaxAttempts", err)
	}
	checkPoints(t, m.collect(t), map[string][]point{
		instBudgetStops: {{Method: generateLabel, Target: bufTarget, Sum: 1}},
		instRetries:     {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 1}},
		instDelay:       {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: -1}},
	})
}

// TestMetricsHedges: a hedged call records hedges, not retries: a slow
// first attempt and a hedge that wins (a retry_delay of 0: the attempts
// overlapped); a failed attempt replaced by a hedge that wins; a hedge the
// budget denies while the first attempt goes on.
func TestMetricsHedges(t *testing.T) {
	t.Run("slow first attempt", func(t *testing.T) {
		m := newMeter(t)
		second := make(chan struct{})
		srv := &exampleServer{generate: func(ctx context.Context, _ int) (string, error) {
			if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(retry.HedgeHeader)) == 0 {
				<-second     // the hedge has arrived
				<-ctx.Done() // and this attempt is cancelled, having lost
				return "", status.FromContextError(ctx.Err()).Err()
			}
			close(second)
			return "hedge", nil
		}}
		p := fastPolicy(m)
		p.MaxAttempts = 2
		p.Hedging = &retry.Hedging{Delay: time.Millisecond}
		client := start(t, srv, retry.DialOptions(p)...)
		resp, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{})
		if err != nil || resp.GetText() != "hedge" {
			t.Fatalf("Generate = %v, %v", resp, err)
		}
		// The first attempt ran until the hedge won: no time without an
		// attempt in flight, and gRFC A96 reports that 0 (its "0 is not
		// reported" is for the counts only).
		checkPoints(t, m.collect(t), map[string][]point{
			instHedges:     {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 1}},
			instDelay:      {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 0}},
			instHedgesSent: {{Method: generateLabel, Target: bufTarget, Sum: 1}},
			instHedgesWon:  {{Method: generateLabel, Target: bufTarget, Sum: 1}},
		})
	})
	t.Run("failed first attempt", func(t *testing.T) {
		m := newMeter(t)
		p := fastPolicy(m)
		p.Hedging = &retry.Hedging{Delay: time.Hour} // hedges only replace failures
		client := start(t, &exampleServer{generate: failFirst(2, codes.Unavailable, "ok")}, retry.DialOptions(p)...)
		if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{}); err != nil {
			t.Fatal(err)
		}
		checkPoints(t, m.collect(t), map[string][]point{
			instHedges:     {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: 2}},
			instDelay:      {{Method: generateLabel, Target: bufTarget, Count: 1, Sum: -1}},
			instHedgesSent: {{Method: generateLabel, Target: bufTarget, Sum: 2}},
			instHedgesWon:  {{Method: generateLabel, Target: bufTarget, Sum: 1}},
		})
	})
	t.Run("denied", func(t *testing.T) {
		m := newMeter(t)
		budget := retry.NewThrottle(1, 0.1) // the first failure empties it
		denied := make(chan struct{})
		srv := &exampleServer{
			callTool: failFirst(1<<30, codes.Unavailable, ""),
			generate: func(context.Context, int) (string, error) {
				<-denied // answer once the hedge has been denied
				return "ok", nil
			},
		}
		// A call of a retrying client that shares the budget empties it:
		// its retry is refused (a budget stop).
		retrying := fastPolicy(m)
		retrying.Budget = budget
		a := inferencev1.NewInferenceServiceClient(dialTarget(t, srv, "passthrough:///a", retry.DialOptions(retrying)...))
		_, err := a.CallTool(context.Background(), &inferencev1.CallToolRequest{})
		var e *retry.Error
		if !errors.As(err, &e) || e.Reason != retry.StopBudget {
			t.Fatalf("CallTool: err = %v, want a *retry.Error with StopBudget", err)
		}
		// Then a hedged call's hedge is denied on time; its first attempt
		// goes on and answers.
		hedged := fastPolicy(m)
		hedged.Budget = budget
		hedged.MaxAttempts = 2
		hedged.Hedging = &retry.Hedging{Delay: time.Millisecond}
		hedged.OnHedge = func(ev retry.HedgeEvent) {
			if ev.Kind == retry.HedgeDenied {
				close(denied)
			}
		}
		b := inferencev1.NewInferenceServiceClient(dialTarget(t, srv, "passthrough:///b", retry.DialOptions(hedged)...))
		var r retry.CallReport
		if _, err := b.Generate(context.Background(), &inferencev1.GenerateRequest{}, retry.WithReport(&r)); err != nil {
			t.Fatal(err)
		}
		if r.Attempts != 1 || r.Denied != 1 || r.Delay != 0 {
			t.Errorf("report %+v, want 1 attempt, 1 denied hedge, no delay", r)
		}
		checkPoints(t, m.collect(t), map[string][]point{
			instHedgesDeny:  {{Method: generateLabel, Target: "passthrough:///b", Sum: 1}},
			instBudgetStops: {{Method: callToolLabel, Target: "passthrough:///a", Sum: 1}},
		})
	})
}

// TestMetricsSharedConcurrent: one Metrics shared by two clients (two
// targets, a retry policy and a hedging one) and many goroutines counts
// every call once, with its own labels.
func TestMetricsSharedConcurrent(t *testing.T) {
	m := newMeter(t)
	// Every call's first attempt fails: the server knows a retry or a
	// hedge by its attempt header.
	firstFails := func(ctx context.Context, _ int) (string, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md.Get("grpc-previous-rpc-attempts")) == 0 {
			return "", status.Error(codes.Unavailable, "first attempt")
		}
		return "ok", nil
	}
	srv := &exampleServer{generate: firstFails, callTool: firstFails}
	retried := fastPolicy(m)
	hedged := fastPolicy(m)
	hedged.Hedging = &retry.Hedging{Delay: time.Hour}
	a := inferencev1.NewInferenceServiceClient(dialTarget(t, srv, "passthrough:///a", retry.DialOptions(retried)...))
	b := inferencev1.NewInferenceServiceClient(dialTarget(t, srv, "passthrough:///b", retry.DialOptions(hedged)...))

	const goroutines, calls = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				client := a
				if (g+i)%2 == 1 {
					client = b
				}
				var err error
				if i%3 == 0 {
					_, err = client.CallTool(context.Background(), &inferencev1.CallToolRequest{})
				} else {
					_, err = client.Generate(context.Background(), &inferencev1.GenerateRequest{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Calls per (client, method): i%3 == 0 is CallTool; (g+i) odd is b.
	count := map[[2]string]uint64{}
	for g := range goroutines {
		for i := range calls {
			target := "passthrough:///a"
			if (g+i)%2 == 1 {
				target = "passthrough:///b"
			}
			method := generateLabel
			if i%3 == 0 {
				method = callToolLabel
			}
			count[[2]string{target, method}]++
		}
	}
	want := map[string][]point{}
	for k, n := range count {
		inst, sent := instRetries, ""
		if k[0] == "passthrough:///b" {
			inst, sent = instHedges, instHedgesSent
		}
		want[inst] = append(want[inst], point{Method: k[1], Target: k[0], Count: n, Sum: float64(n)})
		want[instDelay] = append(want[instDelay], point{Method: k[1], Target: k[0], Count: n, Sum: -1})
		if sent != "" {
			want[sent] = append(want[sent], point{Method: k[1], Target: k[0], Sum: float64(n)})
			want[instHedgesWon] = append(want[instHedgesWon], point{Method: k[1], Target: k[0], Sum: float64(n)})
		}
	}
	checkPoints(t, m.collect(t), want)
}

// dialTarget is serveConn with the client's target given: the in-memory
// connection is the same whatever the target says.
func dialTarget(t *testing.T, s *exampleServer, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	inferencev1.RegisterInferenceServiceServer(srv, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-served
	})
	return cc
}

// TestNewMetricsNil: a nil MeterProvider is an error.
func TestNewMetricsNil(t *testing.T) {
	if m, err := retry.NewMetrics(nil); err == nil || m != nil {
		t.Fatalf("NewMetrics(nil) = %v, %v; want an error", m, err)
	}
}

// ExampleMetrics turns on the per-call retry metrics; here an in-memory
// OpenTelemetry SDK reads them back, where a program would export them.
func ExampleMetrics() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	metrics, err := retry.NewMetrics(provider) // once, shared by every client
	if err != nil {
		fmt.Println(err)
		return
	}
	policy := retry.Policy{
		InitialBackoff: time.Millisecond,
		Metrics:        metrics,
	}
	srv := &exampleServer{generate: failFirst(2, codes.Unavailable, "Hello!")}
	client, stop := serve(srv, retry.DialOptions(policy)...)
	defer stop()
	if _, err := client.Generate(context.Background(), &inferencev1.GenerateRequest{Prompt: "Hi"}); err != nil {
		fmt.Println(err)
		return
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					method, _ := dp.Attributes.Value("grpc.method")
					fmt.Printf("%s %s: %d call, sum %d %s\n", m.Name, method.AsString(), dp.Count, dp.Sum, m.Unit)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					fmt.Printf("%s: %d call, %s\n", m.Name, dp.Count, m.Unit)
				}
			}
		}
	}
	// Output:
	// grpc.client.call.retries inference.v1.InferenceService/Generate: 1 call, sum 2 {retry}
	// grpc.client.call.retry_delay: 1 call, s
}
