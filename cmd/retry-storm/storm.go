package main

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

// Recovery is measured on windows of call completions of this width,
// stepped by recoveryStep, against this success rate.
const (
	recoveryWindow = 200 * time.Millisecond
	recoveryStep   = 10 * time.Millisecond
	recoveryTarget = 0.99
)

// stormConfig is the load and the server of a storm run.
type stormConfig struct {
	clients  int
	rate     float64       // logical calls per second per client
	capacity int           // concurrent handlers
	service  time.Duration // handler time of a healthy call
	deadline time.Duration // per logical call
	seed     uint64
}

func (c stormConfig) interval() time.Duration {
	return time.Duration(float64(time.Second) / c.rate)
}

// callRec is one logical call as the client saw it, in offsets from t0.
type callRec struct {
	phase      int
	start, end time.Duration
	ok         bool
	budgetStop bool // failed because the retry budget refused a retry
}

// phaseResult is what happened to the logical calls that started in one
// phase (and to all their attempts).
type phaseResult struct {
	calls, attempts, ok, budgetStops int64
	p50, p99                         time.Duration
}

func (p phaseResult) amplification() float64 {
	if p.calls == 0 {
		return 0
	}
	return float64(p.attempts) / float64(p.calls)
}

func (p phaseResult) success() float64 {
	if p.calls == 0 {
		return 0
	}
	return float64(p.ok) / float64(p.calls)
}

// stormResult is one policy's run through a timeline.
type stormResult struct {
	policy      string
	failP       float64 // steady scenario: the failure rate
	phases      []phaseResult
	total       phaseResult
	failed      int64   // attempts failed by the script
	shed        int64   // attempts shed for lack of capacity
	peak        float64 // most attempts arriving in a binWidth, in units of the offered load
	recovery    time.Duration
	recovered   bool          // recovery is meaningful
	hasRecovery bool          // the timeline has an outage followed by a measured phase
	maxLag      time.Duration // latest start of a call after its scheduled time
}

// runStorm plays the timeline phases against a fresh server with cfg.clients
// clients, each with its own grpc.ClientConn and retry.Unary interceptor
// built from spec. Each client starts a logical call every 1/rate, at a
// fixed phase offset, each call on its own goroutine (open loop: slow calls
// do not slow the offered load), until the timeline ends; then it waits
// for the calls in flight. If outage ≥ 0, the time to recover after phase
// outage is measured.
func runStorm(ctx context.Context, cfg stormConfig, phases []phaseSpec, spec policySpec, outage int) (stormResult, error) {
	var total time.Duration
	for _, p := range phases {
		total += p.dur
	}
	srv := newStormServer(time.Time{}, phases, cfg.capacity, cfg.service, cfg.seed)
	bs := startServer(srv)
	defer bs.stop()

	policyFor := spec.newRun()
	conns, closeAll, err := bs.dialClients(ctx, cfg.clients, policyFor)
	if err != nil {
		return stormResult{}, err
	}
	defer closeAll()

	var (
		mu     sync.Mutex
		recs   []callRec
		maxLag time.Duration
		calls  sync.WaitGroup
	)
	interval := cfg.interval()
	t0 := time.Now().Add(20 * time.Millisecond)
	srv.t0 = t0 // before any call: the client goroutines start below
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
				start := time.Since(t0)
				if lag := start - at; lag > 0 {
					mu.Lock()
					maxLag = max(maxLag, lag)
					mu.Unlock()
				}
				phase := phaseAt(phases, start)
				id := uint64(i)<<32 | uint64(seq)
				calls.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, cfg.deadline)
					defer cancel()
					cctx = metadata.AppendToOutgoingContext(cctx,
						hdrPhase, strconv.Itoa(phase),
						hdrCallID, strconv.FormatUint(id, 10))
					_, err := client.Generate(cctx, &inferencev1.GenerateRequest{Prompt: "storm"})
					rec := callRec{phase: phase, start: start, end: time.Since(t0), ok: err == nil}
					var re *retry.Error
					rec.budgetStop = errors.As(err, &re) && re.Reason == retry.StopBudget
					mu.Lock()
					recs = append(recs, rec)
					mu.Unlock()
				})
			}
		})
	}
	clients.Wait()
	calls.Wait()

	res := stormResult{
		policy: spec.name,
		phases: make([]phaseResult, len(phases)),
		failed: srv.failed.Load(),
		shed:   srv.shed.Load(),
		maxLag: maxLag,
	}
	lat := make([][]time.Duration, len(phases))
	var all []time.Duration
	for _, r := range recs {
		p := &res.phases[r.phase]
		p.calls++
		if r.ok {
			p.ok++
		}
		if r.budgetStop {
			p.budgetStops++
		}
		lat[r.phase] = append(lat[r.phase], r.end-r.start)
		all = append(all, r.end-r.start)
	}
	for i := range res.phases {
		p := &res.phases[i]
		p.attempts = srv.attempts[i].Load()
		p.p50, p.p99 = percentiles(lat[i])
		res.total.calls += p.calls
		res.total.attempts += p.attempts
		res.total.ok += p.ok
		res.total.budgetStops += p.budgetStops
	}
	res.total.p50, res.total.p99 = percentiles(all)

	offered := float64(cfg.clients) * cfg.rate * binWidth.Seconds()
	for _, n := range srv.arrivals() {
		res.peak = max(res.peak, float64(n)/offered)
	}

	if outage >= 0 && outage+1 < len(phases) && phases[outage+1].dur >= recoveryWindow {
		var end time.Duration
		for _, p := range phases[:outage+1] {
			end += p.dur
		}
		res.hasRecovery = true
		res.recovery, res.recovered = recoveryTime(recs, end, total)
	}
	return res, nil
}

// recoveryTime returns how long after from the calls recovered: the
// earliest offset x ≥ from such that every window [y, y+recoveryWindow) of
// call completions with x ≤ y and y+recoveryWindow ≤ until has a success
// rate of at least recoveryTarget. ok is false if the last window fails.
func recoveryTime(recs []callRec, from, until time.Duration) (d time.Duration, ok bool) {
	ends := make([]callRec, len(recs))
	copy(ends, recs)
	slices.SortFunc(ends, func(a, b callRec) int { return cmp.Compare(a.end, b.end) })
	var lastBad time.Duration = -1
	var lo, hi int // completions in [y, y+window): ends[lo:hi]
	var okCount int
	for y := from; y+recoveryWindow <= until; y += recoveryStep {
		for hi < len(ends) && ends[hi].end < y+recoveryWindow {
			if ends[hi].ok {
				okCount++
			}
			hi++
		}
		for lo < hi && ends[lo].end < y {
			if ends[lo].ok {
				okCount--
			}
			lo++
		}
		if n := hi - lo; n > 0 && float64(okCount) < recoveryTarget*float64(n) {
			lastBad = y
		}
	}
	switch {
	case lastBad < 0:
		return 0, true
	case lastBad+recoveryStep+recoveryWindow > until:
		return 0, false
	}
	return lastBad + recoveryStep - from, true
}

// percentiles returns the nearest-rank p50 and p99 of ds (sorted in place).
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return rank(0.50), rank(0.99)
}
