package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// The tail scenarios play the policy lab's tail (its scenarios T and T')
// over real gRPC: a server whose attempts take a log-normal time (median
// 100ms, σ 0.3), except stragglers, a fraction of attempts drawn
// independently, which take ten times as long. Hedged calls race a second
// attempt against a slow first one; the loser is cancelled, and the server
// sees its handler's context end.
const (
	tailMedian  = 100 * time.Millisecond // of an ordinary attempt, at scale 1
	tailSigma   = 0.3                    // of the log of an ordinary attempt's latency
	tailFactor  = 10                     // a straggler's latency over an ordinary one's
	tailTokens  = 5                      // ttft: messages of a stream, the first included
	tailGap     = 20 * time.Millisecond  // ttft: between a stream's messages, at scale 1
	tailBound   = 30 * time.Second       // deadline of a call: far beyond any latency here
	z95         = 1.6448536269514722     // the normal score of the 95th percentile
	hdrMeasured = "x-tail-measured"      // "1" on every attempt of a measured call
)

// tailConfig is the load of the tail scenarios.
type tailConfig struct {
	clients   int
	rate      float64       // calls per second per client
	warm      time.Duration // warm-up: calls started in it are not measured
	measured  time.Duration // calls started in it after the warm-up are measured
	scale     float64       // multiplies every latency of the server (and the fixed hedge delay)
	straggles []float64     // one run per rate, per row
	parallel  int           // runs played at once
	seed      uint64
}

// tailModel is the latency of the server's attempts.
type tailModel struct {
	median   time.Duration
	straggle float64
}

func (c tailConfig) model(straggle float64) tailModel {
	return tailModel{median: time.Duration(float64(tailMedian) * c.scale), straggle: straggle}
}

// latency is how long attempt n (0 for the first) of call takes: a hash of
// (seed, call, n), the same for every policy and every run. A call's
// attempts are independent, and the stragglers at a lower rate are a
// subset of those at a higher one.
func (m tailModel) latency(seed, call, n uint64) time.Duration {
	u1, u2 := unit(seed, call, n<<2|1), unit(seed, call, n<<2|2)
	z := math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2) // Box-Muller: a standard normal
	d := float64(m.median) * math.Exp(tailSigma*z)
	if unit(seed, call, n<<2|3) < m.straggle {
		d *= tailFactor
	}
	return time.Duration(d)
}

// healthyP95 is the 95th percentile of an ordinary attempt's latency
// (164ms at scale 1), the fixed rows' hedge delay.
func (m tailModel) healthyP95() time.Duration {
	return time.Duration(float64(m.median) * math.Exp(tailSigma*z95)).Round(time.Millisecond)
}

// tailServer answers Generate after the attempt's latency, and
// StreamGenerate with its first message after the attempt's latency and
// tailTokens-1 more, one every gap. A cancelled attempt (a hedge's loser)
// returns at once, and is counted if its call is measured.
type tailServer struct {
	inferencev1.UnimplementedInferenceServiceServer

	model tailModel
	gap   time.Duration
	seed  uint64

	attempts  atomic.Int64 // attempts of measured calls that arrived
	cancelled atomic.Int64 // of which cancelled before they answered
}

// begin returns the latency of the attempt in ctx, and whether its call is
// measured.
func (s *tailServer) begin(ctx context.Context) (time.Duration, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	call, _ := strconv.ParseUint(first(md, hdrCallID), 10, 64)
	n, _ := strconv.ParseUint(first(md, retry.PreviousAttemptsHeader), 10, 64)
	measured := first(md, hdrMeasured) == "1"
	if measured {
		s.attempts.Add(1)
	}
	return s.model.latency(s.seed, call, n), measured
}

// end returns err, counting a cancelled attempt of a measured call.
func (s *tailServer) end(ctx context.Context, measured bool, err error) error {
	if err != nil && ctx.Err() != nil && measured {
		s.cancelled.Add(1)
	}
	return err
}

func (s *tailServer) Generate(ctx context.Context, _ *inferencev1.GenerateRequest) (*inferencev1.GenerateResponse, error) {
	d, measured := s.begin(ctx)
	if err := sleepCtx(ctx, d); err != nil {
		return nil, s.end(ctx, measured, err)
	}
	return &inferencev1.GenerateResponse{Text: "ok"}, nil
}

func (s *tailServer) StreamGenerate(_ *inferencev1.StreamGenerateRequest, stream grpc.ServerStreamingServer[inferencev1.StreamGenerateResponse]) error {
	ctx := stream.Context()
	d, measured := s.begin(ctx)
	for i := range tailTokens {
		if err := sleepCtx(ctx, d); err != nil {
			return s.end(ctx, measured, err)
		}
		if err := stream.Send(&inferencev1.StreamGenerateResponse{Token: "tok", Index: int32(i)}); err != nil {
			return s.end(ctx, measured, err)
		}
		d = s.gap
	}
	return nil
}

// tailRow is one policy of the tail tables.
type tailRow struct {
	name    string
	desc    string
	hedging *retry.Hedging // nil: no hedging
	cap     float64        // the MaxExtraLoad in effect (0 without hedging)
}

// tailRows are no hedging, a fixed delay at the healthy p95 with a cap above
// what it sends (MaxExtraLoad 0.25) and with the default cap (0.05), and
// the learned delay; MaxAttempts 2 and the default budget, per client.
func tailRows(m tailModel) []tailRow {
	d := m.healthyP95()
	return []tailRow{
		{name: "no hedging", desc: "MaxAttempts 2, no Hedging (it would retry failures; there are none)"},
		{name: fmt.Sprintf("fixed %v, cap 25%%", d), desc: fmt.Sprintf("Hedging{Delay: %v, MaxExtraLoad: 0.25}: the healthy p95", d),
			hedging: &retry.Hedging{Delay: d, MaxExtraLoad: 0.25}, cap: 0.25},
		{name: fmt.Sprintf("fixed %v, cap 5%%", d), desc: fmt.Sprintf("Hedging{Delay: %v}: the default MaxExtraLoad, %g", d, retry.DefaultMaxExtraLoad),
			hedging: &retry.Hedging{Delay: d}, cap: retry.DefaultMaxExtraLoad},
		{name: "learned", desc: fmt.Sprintf("Hedging{}: the delay learned per client, MaxExtraLoad %g", retry.DefaultMaxExtraLoad),
			hedging: &retry.Hedging{}, cap: retry.DefaultMaxExtraLoad},
	}
}

// tailResult is one run: a row at one straggler rate.
type tailResult struct {
	row      tailRow
	straggle float64
	lat      []time.Duration // of the measured calls that succeeded (stream: time to first message), sorted

	calls, ok int64 // measured calls, and those that succeeded
	attempts  int64 // of the measured calls, as their CallReports count them
	denied    int64 // hedges due but refused, of the measured calls

	serverAttempts, cancelled int64 // of the measured calls, at the server

	delaySum time.Duration // hedge delays of the measured calls' hedges due on time
	delayN   int64
	maxLag   time.Duration // latest start of a call after its schedule
}

// percentile returns the nearest-rank percentile q of the latencies.
func (r tailResult) percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.lat)))) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

// extra is the hedges sent per measured call.
func (r tailResult) extra() float64 {
	if r.calls == 0 {
		return 0
	}
	return float64(r.attempts-r.calls) / float64(r.calls)
}

// perCall is n per measured call.
func (r tailResult) perCall(n int64) float64 {
	if r.calls == 0 {
		return 0
	}
	return float64(n) / float64(r.calls)
}

type measuredKey struct{}

// runTail plays one row at one straggler rate against a fresh server:
// cfg.clients clients, each with its own connection and interceptor (so its
// own learned delay, load guard and budget), each starting a call every
// 1/rate at a fixed phase offset, on its own goroutine (open loop), until
// warm-up and measured time have passed; then it waits for the calls in
// flight. A call is measured if it was scheduled in the measured time, so
// that the measured calls, and the latencies their attempts meet, are the
// same in every run. stream plays StreamGenerate and measures the time to
// its first message.
func runTail(ctx context.Context, cfg tailConfig, row tailRow, straggle float64, stream bool) (tailResult, error) {
	res := tailResult{row: row, straggle: straggle}
	srv := &tailServer{model: cfg.model(straggle), gap: time.Duration(float64(tailGap) * cfg.scale), seed: cfg.seed}
	bs := startServer(srv)
	defer bs.stop()

	var (
		mu    sync.Mutex
		calls sync.WaitGroup
	)
	p := retry.Policy{MaxAttempts: 2, Hedging: row.hedging}
	p.OnHedge = func(ev retry.HedgeEvent) {
		if ev.Delay <= 0 || ev.Context.Value(measuredKey{}) == nil {
			return // a replacement of a failed attempt, or a call not measured
		}
		mu.Lock()
		res.delaySum += ev.Delay
		res.delayN++
		mu.Unlock()
	}
	conns, closeAll, err := bs.dialClients(ctx, cfg.clients, func() retry.Policy { return p })
	if err != nil {
		return res, err
	}
	defer closeAll()

	interval := time.Duration(float64(time.Second) / cfg.rate)
	total := cfg.warm + cfg.measured
	t0 := time.Now().Add(20 * time.Millisecond)
	var clients sync.WaitGroup
	for i, cc := range conns {
		client := inferencev1.NewInferenceServiceClient(cc)
		offset := interval * time.Duration(i) / time.Duration(cfg.clients)
		clients.Go(func() {
			for seq := 0; ; seq++ {
				at := offset + time.Duration(seq)*interval
				if at >= total {
					return
				}
				if d := time.Until(t0.Add(at)); d > 0 {
					time.Sleep(d)
				}
				measured := at >= cfg.warm
				id := uint64(i)<<32 | uint64(seq)
				calls.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, tailBound)
					defer cancel()
					kv := []string{hdrCallID, strconv.FormatUint(id, 10)}
					if measured {
						cctx = context.WithValue(cctx, measuredKey{}, true)
						kv = append(kv, hdrMeasured, "1")
					}
					cctx = metadata.AppendToOutgoingContext(cctx, kv...)
					start := time.Now()
					lat, rep, err := tailCall(cctx, client, stream)
					if !measured {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					res.maxLag = max(res.maxLag, start.Sub(t0)-at)
					res.calls++
					res.attempts += int64(rep.Attempts)
					res.denied += int64(rep.Denied)
					if err == nil {
						res.ok++
						res.lat = append(res.lat, lat)
					}
				})
			}
		})
	}
	clients.Wait()
	calls.Wait()
	// Every call has ended and every loser has been cancelled: once their
	// handlers have returned, the server's counts are complete.
	bs.gs.GracefulStop()
	res.serverAttempts, res.cancelled = srv.attempts.Load(), srv.cancelled.Load()
	slices.Sort(res.lat)
	return res, nil
}

// tailCall makes one call and returns its latency (a stream's: to its first
// message) and its report.
func tailCall(ctx context.Context, client inferencev1.InferenceServiceClient, stream bool) (time.Duration, retry.CallReport, error) {
	var rep retry.CallReport
	start := time.Now()
	if !stream {
		_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "tail"}, retry.WithReport(&rep))
		return time.Since(start), rep, err
	}
	st, err := client.StreamGenerate(ctx, &inferencev1.StreamGenerateRequest{Prompt: "tail"}, retry.WithReport(&rep))
	if err != nil {
		return 0, rep, err
	}
	var ttft time.Duration
	n := 0
	for {
		_, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
				if n != tailTokens {
					err = fmt.Errorf("stream ended after %d of %d messages", n, tailTokens)
				}
			}
			return ttft, rep, err
		}
		if n == 0 {
			ttft = time.Since(start)
		}
		n++
	}
}

// runTailScenario plays every row at every straggler rate, cfg.parallel runs
// at once, and returns the results by rate, then row.
func runTailScenario(ctx context.Context, cfg tailConfig, stream bool) ([]tailResult, error) {
	rows := tailRows(cfg.model(0))
	results := make([]tailResult, len(cfg.straggles)*len(rows))
	err := parallelDo(cfg.parallel, len(results), func(i int) (err error) {
		results[i], err = runTail(ctx, cfg, rows[i%len(rows)], cfg.straggles[i/len(rows)], stream)
		return err
	})
	return results, err
}

func printTail(w io.Writer, cfg tailConfig, stream bool, results []tailResult) {
	m := cfg.model(0)
	what, lat := "TAIL: unary calls", "p"
	if stream {
		what, lat = "TTFT: server streams, time to first message", "TTFT p"
	}
	section(w, fmt.Sprintf("%s; attempts log-normal (median %v, σ %g), a share of them straggling at %d×",
		what, m.median, tailSigma, tailFactor))
	fmt.Fprintf(w, "%d clients × %g calls/s (open loop), each with its own connection, learned delay, load guard and default budget;\n", cfg.clients, cfg.rate)
	fmt.Fprintf(w, "calls scheduled in %v after a %v warm-up are measured", cfg.measured, cfg.warm)
	if stream {
		fmt.Fprintf(w, "; a stream sends its first message after the attempt's latency, then %d more %v apart", tailTokens-1, time.Duration(float64(tailGap)*cfg.scale))
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintln(w, "Rows (MaxAttempts 2):")
	for _, r := range tailRows(m) {
		fmt.Fprintf(w, "  %-20s %s\n", r.name, r.desc)
	}
	fmt.Fprintln(w, "extra: hedges sent (CallReport.Attempts - 1), % of calls; denied: hedges due but refused (CallReport.Denied);")
	fmt.Fprintln(w, "cancelled: attempts whose handler saw its context cancelled (the losers), at the server, % of calls;")
	fmt.Fprintln(w, "delay: mean delay of the hedges due on time (OnHedge).")
	tw := newTable(w)
	fmt.Fprintf(tw, "stragglers\tpolicy\tcalls\t%s50\t%s99\t%s99.9\textra\tdenied\tcancelled\tdelay\tfailed\t\n", lat, lat, lat)
	var minCalls int64 = math.MaxInt64
	var lag time.Duration
	for _, r := range results {
		delay := "-"
		if r.delayN > 0 {
			delay = ms(r.delaySum / time.Duration(r.delayN))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", pct(r.straggle), r.row.name, r.calls,
			ms(r.percentile(0.5)), ms(r.percentile(0.99)), ms(r.percentile(0.999)),
			pct(r.extra()), pct(r.perCall(r.denied)), pct(r.perCall(r.cancelled)), delay, r.calls-r.ok)
		minCalls = min(minCalls, r.calls)
		lag = max(lag, r.maxLag)
	}
	tw.Flush()
	fmt.Fprintf(w, "Real time: latencies carry scheduling noise (max lag of a call's start after its schedule: %s).\n", ms(lag))
	if minCalls < 10000 {
		fmt.Fprintf(w, "Note: p99.9 of %d calls is set by their %d slowest: rougher than p99 (the lab measures 100,000 calls).\n",
			minCalls, minCalls-int64(math.Ceil(0.999*float64(minCalls)))+1)
	}
}
