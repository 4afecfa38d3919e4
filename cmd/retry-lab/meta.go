package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Scenario E, metastability: 1000 calls/s of about 1s of work each,
// against a queueServer sized for 80% or 90% utilisation, with a 4s queue,
// 2s per-attempt timeouts, and a 4s stall. The load comes from 50 clients
// × 20 calls/s, and, to show how a budget depends on a client's rate, from
// fewer busier clients (metaModel.busy).

// metaRun is one column of scenario E: a utilisation and the number of
// clients that share the load.
type metaRun struct {
	util    float64
	clients int
}

// metaLoad is the calls offered per second by all the clients together.
const metaLoad = 1000

const (
	metaService = time.Second // mean work of an attempt
	metaTimeout = 2 * time.Second
	metaStallAt = 10 * time.Second
	metaWindow  = time.Second
	metaTarget  = 0.99
	metaTail    = 30 // windows: the OK rate reported when a run never recovers
)

// metaModel is the part of scenario E that is a modelling choice.
type metaModel struct {
	// spread: each attempt's work is uniform in [1-spread, 1+spread] × 1s,
	// drawn from (seed, client, call, attempt). 0: exactly 1s.
	spread float64
	// even: calls start at evenly spaced times instead of as a Poisson
	// process of the same rate.
	even bool
	// queue: the most work the queue holds, in seconds of all the workers.
	queue time.Duration
	// stall: how long the server makes no progress.
	stall time.Duration
	// busy is the third run, after 80% and 90% with 50 clients.
	busy metaRun
	// after: calls keep starting this long after the stall, and recovery
	// is measured over it.
	after time.Duration
	// deadline of every call (0: none; attempts are still bounded by the
	// 2s per-attempt timeout and the calls by MaxAttempts).
	deadline time.Duration
}

// defaultMetaModel: Poisson arrivals and ±50% work. With exactly 1s of
// work and evenly spaced calls, every attempt waits the same time, so the
// fraction of attempts that time out jumps from 0 to 1 as the queue passes
// 1s of wait, and the model cannot settle in a partial failure: the state
// a retry budget may hold a real server in.
var defaultMetaModel = metaModel{spread: 0.5, queue: 4 * time.Second, stall: 4 * time.Second, after: 120 * time.Second,
	busy: metaRun{util: 0.90, clients: 10}}

// runs returns the columns of scenario E.
func (m metaModel) runs() []metaRun { return []metaRun{{0.80, 50}, {0.90, 50}, m.busy} }

type metaResult struct {
	windows   []window // completions by metaWindow after the stall
	calls, ok int      // calls started at or after the stall's onset
	attempts  int      // their attempts
}

type window struct{ calls, ok int }

// recovery returns the seconds after the stall from which every window
// to the end of the run is at least metaTarget OK, or false if the last
// one is not.
func (r metaResult) recovery() (float64, bool) {
	last := -1
	for i, w := range r.windows {
		if w.calls > 0 && float64(w.ok) < metaTarget*float64(w.calls) {
			last = i
		}
	}
	if last == len(r.windows)-1 {
		return 0, false
	}
	return float64(last+1) * metaWindow.Seconds(), true
}

// tailOK is the OK rate of the last metaTail windows.
func (r metaResult) tailOK() float64 {
	var calls, ok int
	for _, w := range r.windows[max(0, len(r.windows)-metaTail):] {
		calls += w.calls
		ok += w.ok
	}
	return float64(ok) / float64(max(calls, 1))
}

func (r metaResult) String() string {
	if s, ok := r.recovery(); ok {
		return fmt.Sprintf("%.0fs", s)
	}
	return fmt.Sprintf("never (%.1f%% OK)", 100*r.tailOK())
}

func metaScenario(m metaModel) scenario {
	var header []string
	runs := m.runs()
	for _, v := range runs {
		name := fmt.Sprintf("%g%%", 100*v.util)
		if v.clients != 50 {
			name += fmt.Sprintf(" %d×%g/s", v.clients, float64(metaLoad)/float64(v.clients))
		}
		header = append(header, name+": recovered", name+": attempts/call")
	}
	work := "exactly 1s of work"
	if m.spread > 0 {
		work = fmt.Sprintf("%g-%gs of work (uniform)", 1-m.spread, 1+m.spread)
	}
	arrivals := "Poisson arrivals"
	if m.even {
		arrivals = "evenly spaced calls"
	}
	return scenario{
		name:  "meta",
		title: fmt.Sprintf("E. Metastability, 50 clients × 20 calls/s, a %v stall: seconds until every 1s window is ≥ 99%% OK", m.stall),
		about: []string{
			fmt.Sprintf("Server: workers = offered work ÷ utilisation (%d at 80%%, %d at 90%%), one FIFO queue holding at most %v", metaWorkers(0.8), metaWorkers(0.9), m.queue),
			"of their work (beyond it, rejected at once: ResourceExhausted); abandoned attempts are still served.",
			fmt.Sprintf("Calls: %s, %s each, PerAttemptTimeout 2s (DeadlineExceeded, retried),", arrivals, work),
			fmt.Sprintf("%s. The stall: %v into the run, %v without progress; the queue keeps admitting.", deadlineString(m.deadline), metaStallAt, m.stall),
			fmt.Sprintf("recovered: seconds after the stall until every later 1s window of call completions (over %gs) is ≥ 99%% OK;", m.after.Seconds()),
			"never: the last one is not (OK rate of the last 30s shown). attempts/call: over the calls started from the stall",
			fmt.Sprintf("on. The last run: the same load from %d clients of %g calls/s each.", m.busy.clients, float64(metaLoad)/float64(m.busy.clients)),
		},
		header:   header,
		variants: len(runs),
		run: func(seed uint64, spec policySpec, v int) any {
			return runMeta(mix(seed, 'E', uint64(v)), spec, runs[v].util, runs[v].clients, m)
		},
		cells: func(rs []any) []string {
			var cells []string
			for _, r := range rs {
				x := r.(metaResult)
				cells = append(cells, x.String(), fmt.Sprintf("%.3f", float64(x.attempts)/float64(x.calls)))
			}
			return cells
		},
		targets: []target{{"metastability: back to ≥ 99% at 80% and 90% utilisation", func(rs []any) (bool, string) {
			ok, got := true, ""
			for i, r := range rs[:2] {
				x := r.(metaResult)
				_, rec := x.recovery()
				ok = ok && rec
				got += sep(i, " / ") + x.String()
			}
			return ok, got
		}}},
	}
}

func deadlineString(d time.Duration) string {
	if d <= 0 {
		return "no caller deadline"
	}
	return "caller deadline " + d.String()
}

// metaWorkers is the number of workers that the offered load keeps busy
// util of the time.
func metaWorkers(util float64) int {
	return int(math.Round(metaLoad * metaService.Seconds() / util))
}

func runMeta(seed uint64, spec policySpec, util float64, clients int, m metaModel) metaResult {
	s := &sim{}
	workers := metaWorkers(util)
	q := newQueueServer(workers, int(float64(workers)*m.queue.Seconds()/metaService.Seconds()), metaService, metaStallAt, m.stall)
	if m.spread > 0 {
		q.size = func(c *call) time.Duration {
			u := unit(seed, saltSize, uint64(c.cl.id), uint64(c.seq), uint64(c.attempts()))
			return time.Duration(float64(metaService) * (1 - m.spread + 2*m.spread*u))
		}
	}
	p := labPolicy(nil)
	p.PerAttemptTimeout = metaTimeout
	f := newFleet(s, clients, spec, p, q, m.deadline, seed)
	if !m.even {
		f.poisson = func(i int) *rand.Rand { return newRand(seed, saltArrival, uint64(i)) }
	}
	from := metaStallAt + m.stall
	end := from + m.after
	r := metaResult{windows: make([]window, int(m.after/metaWindow))}
	f.observe(nil, func(c *call) {
		if c.start >= metaStallAt {
			r.calls++
			r.attempts += c.attempts()
			if c.ok {
				r.ok++
			}
		}
		if c.end >= from && c.end < end {
			w := &r.windows[(c.end-from)/metaWindow]
			w.calls++
			if c.ok {
				w.ok++
			}
		}
	})
	f.openLoop(float64(metaLoad)/float64(clients), 0, end)
	s.run()
	return r
}
