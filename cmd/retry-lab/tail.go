package main

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/seed4f82f287/retry"
)

// Scenarios T and T', the tail: a server whose attempts take a log-normal
// time (median 100ms, σ 0.3), except stragglers, 2% or 5% of attempts
// drawn independently, which take ten times as long (a replica swapping,
// prefilling a long prompt, collecting garbage). 10 clients, each with its
// own Decider (so its own learned delay, load guard and budget), start 100
// calls/s each (open loop, evenly spread) for 20s of warm-up and 100s
// measured: 100,000 calls per run. T is unary: a call's latency is its
// winner's. T' streams tokens: an attempt's latency is its time to first
// token (TTFT), after which the winner streams for 2s more; a hedged stream
// is won by the first attempt to deliver a message.
//
// The rows compare no hedging with fixed delays at the healthy latency's
// 90th, 95th and 99th percentiles and the learned delay (&retry.Hedging{},
// MaxExtraLoad 0.05), with 2 and 3 attempts. Reported per straggler rate:
// latency percentiles over the measured calls, extra attempts (hedges) as a
// % of the calls, hedges that were due but refused (by the load guard or
// the budget) as a % of the calls, and the mean hedge delay the calls used.

// tailModel is the latency of a server with a tail.
type tailModel struct {
	median   time.Duration // of an ordinary attempt
	sigma    float64       // of the log of an ordinary attempt's latency
	straggle float64       // probability that an attempt is a straggler
	factor   float64       // a straggler's latency over an ordinary one's
}

// latency returns how long attempt `attempt` of call seq of client takes,
// a function of (seed, client, seq, attempt) only: every policy meets the
// same latencies and stragglers.
func (m tailModel) latency(seed uint64, client, seq, attempt int) time.Duration {
	c, s, a := uint64(client), uint64(seq), uint64(attempt)
	u1, u2 := unit(seed, saltTail, c, s, a, 1), unit(seed, saltTail, c, s, a, 2)
	z := math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2) // Box-Muller: a standard normal
	d := float64(m.median) * math.Exp(m.sigma*z)
	if unit(seed, saltTail, c, s, a, 3) < m.straggle {
		d *= m.factor
	}
	return time.Duration(d)
}

// healthy returns the percentile of an ordinary attempt's latency whose
// standard normal score is z.
func (m tailModel) healthy(z float64) time.Duration {
	return time.Duration(float64(m.median) * math.Exp(m.sigma*z)).Round(time.Millisecond)
}

// Normal scores of the 90th, 95th and 99th percentiles.
const (
	z90 = 1.2815515655446004
	z95 = 1.6448536269514722
	z99 = 2.3263478740408408
)

var (
	tailStraggles = []float64{0.02, 0.05}
	tailBase      = tailModel{median: 100 * time.Millisecond, sigma: 0.3, factor: 10}
)

const (
	tailClients = 10
	tailRate    = 100 // calls/s per client
	tailWarm    = 20 * time.Second
	tailLen     = 100 * time.Second
	tailStream  = 2 * time.Second // T': a stream's length after its first message
)

// tailResult is one run of T or T'.
type tailResult struct {
	lat      []time.Duration // of the measured calls (unary: the call; stream: TTFT), sorted
	calls    int
	attempts int
	denied   int           // hedges refused, of the measured calls
	delay    time.Duration // the hedge delay of the measured calls, summed (0: none)
	hedging  bool
}

// percentile returns the p-th percentile (nearest rank) of the latencies.
func (r tailResult) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

// extra is the hedges sent, per call.
func (r tailResult) extra() float64 { return float64(r.attempts-r.calls) / float64(r.calls) }

// meanDelay is the mean hedge delay of the measured calls.
func (r tailResult) meanDelay() time.Duration {
	return r.delay / time.Duration(max(r.calls, 1))
}

// hedgeRows are the rows of the tail scenarios: no hedging, fixed delays
// at the healthy p90, p95 and p99 with a load guard above what they send
// (MaxExtraLoad 0.25), the healthy p95 with the default guard (0.05), and
// the learned delay.
func hedgeRows(m tailModel) []policySpec {
	fixed := func(z float64, pct string, load float64, attempts int) policySpec {
		d := m.healthy(z)
		name, desc := fmt.Sprintf("fixed %v/%d", d, attempts), fmt.Sprintf("Hedging{Delay: %v, MaxExtraLoad: %g}", d, load)
		if load == 0 {
			name, desc = fmt.Sprintf("fixed %v/%d 5%%", d, attempts), fmt.Sprintf("Hedging{Delay: %v} (the default MaxExtraLoad, 0.05)", d)
		}
		return policySpec{
			name:   name,
			desc:   fmt.Sprintf("%s: the healthy %s, MaxAttempts %d", desc, pct, attempts),
			budget: func() retry.Budget { return nil },
			tweak: func(p *retry.Policy) {
				p.MaxAttempts = attempts
				p.Hedging = &retry.Hedging{Delay: d, MaxExtraLoad: load}
			},
		}
	}
	adaptive := func(load float64, attempts int) policySpec {
		name, desc := fmt.Sprintf("adaptive/%d", attempts), "Hedging{} (learned delay, MaxExtraLoad 0.05)"
		if load != 0 {
			name, desc = fmt.Sprintf("adaptive %g%%/%d", 100*load, attempts), fmt.Sprintf("Hedging{MaxExtraLoad: %g}", load)
		}
		return policySpec{
			name:   name,
			desc:   fmt.Sprintf("%s, MaxAttempts %d", desc, attempts),
			budget: func() retry.Budget { return nil },
			tweak: func(p *retry.Policy) {
				p.MaxAttempts = attempts
				p.Hedging = &retry.Hedging{MaxExtraLoad: load}
			},
		}
	}
	return []policySpec{
		{
			name: "no hedging", desc: "one attempt per call (no failures to retry)",
			budget: func() retry.Budget { return nil },
		},
		fixed(z90, "p90", 0.25, 2), fixed(z95, "p95", 0.25, 2), fixed(z99, "p99", 0.25, 2),
		fixed(z95, "p95", 0, 2), fixed(z95, "p95", 0.25, 3),
		adaptive(0, 2), adaptive(0, 3), adaptive(0.1, 2),
	}
}

func tailScenario(stream bool) scenario {
	var header []string
	for _, q := range tailStraggles {
		s := fmt.Sprintf(" %g%%", 100*q)
		lat := "p"
		if stream {
			lat = "TTFT p"
		}
		header = append(header, lat+"50"+s, lat+"99"+s, lat+"99.9"+s, "extra"+s, "denied"+s, "delay"+s)
	}
	sc := scenario{
		name:  "tail",
		title: "T. Tail, unary calls: latency percentiles and extra attempts, 2% and 5% of attempts straggling at 10x",
		about: []string{
			"Attempts take a log-normal time (median 100ms, σ 0.3; healthy p90 147ms, p95 164ms, p99 201ms), except stragglers,",
			"2% or 5% of attempts drawn independently, which take 10 times as long. 10 clients × 100 calls/s (open loop), each",
			"with its own learned delay and default budget; calls started in 100s after a 20s warm-up are measured.",
			"extra: hedges sent, % of calls; denied: hedges due but refused (load guard or budget), % of calls; delay: the mean",
			"hedge delay of the calls (learned: what the estimate gave each call).",
		},
		header:   header,
		variants: len(tailStraggles),
		rows:     hedgeRows(tailBase),
		run: func(seed uint64, spec policySpec, v int) any {
			m := tailBase
			m.straggle = tailStraggles[v]
			return runTail(mix(seed, 'T', uint64(v)), spec, m, stream, tailLen)
		},
		cells: tailCells,
	}
	if stream {
		sc.name = "ttft"
		sc.title = "T'. Tail, token streams: time to first token (TTFT) and extra attempts, 2% and 5% of attempts straggling at 10x"
		sc.about = []string{
			"As T, but calls are server streams: an attempt's latency is its time to the first token; the winner then streams",
			"for 2s more, and the call ends (the Decider learns of its end then). A hedged stream is won by the first attempt to",
			"deliver a message; the others are cancelled.",
		}
	}
	return sc
}

func tailCells(rs []any) []string {
	var cells []string
	for _, r := range rs {
		t := r.(tailResult)
		delay := "-"
		if t.hedging {
			delay = ms(t.meanDelay())
		}
		cells = append(cells, ms(t.percentile(0.5)), ms(t.percentile(0.99)), ms(t.percentile(0.999)),
			fmt.Sprintf("%.2f%%", 100*t.extra()), fmt.Sprintf("%.2f%%", 100*float64(t.denied)/float64(t.calls)), delay)
	}
	return cells
}

// ms formats d in whole milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds()) }

// runTail plays T (T' if stream) with server m, measuring the calls started
// in length after the warm-up.
func runTail(seed uint64, spec policySpec, m tailModel, stream bool, length time.Duration) tailResult {
	s := &sim{}
	srv := serveFunc(func(c *call, _ time.Duration) (time.Duration, error) {
		return m.latency(seed, c.cl.id, c.seq, c.attempts()), nil
	})
	var r tailResult
	measured := func(c *call) bool { return c.start >= tailWarm }
	p := labPolicy(nil)
	p.OnHedge = func(ev retry.HedgeEvent) {
		if ev.Kind == retry.HedgeDenied && measured(ev.Context.(*callContext).call) {
			r.denied++
		}
	}
	f := newFleet(s, tailClients, spec, p, srv, 0, seed)
	r.lat = make([]time.Duration, 0, tailClients*tailRate*int(length/time.Second))
	f.observe(nil, func(c *call) {
		if !measured(c) {
			return
		}
		if !c.ok {
			panic(fmt.Sprintf("retry-lab: a call failed in the tail scenario: %v", c.last))
		}
		r.calls++
		r.attempts += c.attempts()
		r.lat = append(r.lat, c.first-c.start)
		if c.ic.Hedging {
			r.hedging = true
			r.delay += max(c.ic.HedgeDelay, 0)
		}
	})
	if stream {
		for _, cl := range f.clients {
			cl.stream = tailStream
		}
	}
	f.openLoop(tailRate, 0, tailWarm+length)
	s.run()
	slices.Sort(r.lat)
	return r
}
