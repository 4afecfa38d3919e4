package main

import (
	"fmt"
	"time"
)

// Scenario C, steady random failures: 50 clients × 20 calls/s, every
// attempt failing with probability p, independently: fast (Unavailable, in
// 1ms) or, in its "slow" form, by timing out (the server does not answer
// within the 2s PerAttemptTimeout).
var steadyRates = []float64{0.05, 0.10, 0.20, 0.50}

const (
	steadyClients = 50
	steadyRate    = 20
	steadyWarm    = 10 * time.Second // not measured: budgets settle
	steadyLen     = 60 * time.Second // measured: calls started in it
	steadyTimeout = 2 * time.Second  // PerAttemptTimeout of the slow form
)

type steadyResult struct{ calls, ok, attempts int }

func (r steadyResult) success() float64 { return float64(r.ok) / float64(r.calls) }
func (r steadyResult) amp() float64     { return float64(r.attempts) / float64(r.calls) }

func steadyScenario(slow bool) scenario {
	var header []string
	for _, p := range steadyRates {
		header = append(header, fmt.Sprintf("p=%g%%", 100*p))
	}
	sc := scenario{
		name:  "steady",
		title: "C. Steady random failures, 50 clients × 20 calls/s: success % / attempts per call",
		about: []string{
			"Each attempt fails (Unavailable, 1ms) with probability p, decided by a hash of (seed, client, call, attempt),",
			"so every policy meets the same failures. Calls started in 60s after a 10s warm-up are measured.",
		},
		header:   header,
		variants: len(steadyRates),
		run: func(seed uint64, spec policySpec, v int) any {
			return runSteady(mix(seed, 'C', uint64(v)), spec, steadyRates[v], slow)
		},
		cells: func(rs []any) []string {
			var cells []string
			for _, r := range rs {
				st := r.(steadyResult)
				cells = append(cells, fmt.Sprintf("%s / %.3f", pct2(st.ok, st.calls), st.amp()))
			}
			return cells
		},
	}
	if slow {
		sc.name = "slow"
		sc.title = "C'. Steady random timeouts, 50 clients × 20 calls/s: success % / attempts per call"
		sc.about = []string{
			"As C, but a failing attempt is one the server does not answer in time: it fails when the PerAttemptTimeout",
			"of 2s fires (DeadlineExceeded, class Timeout, retried); the others take 1s.",
		}
		return sc
	}
	sc.targets = []target{{"steady failures: ≥ 99.9 / 99.9 / 98.5% success at p = 5 / 10 / 20%", func(rs []any) (bool, string) {
		want := []float64{0.999, 0.999, 0.985}
		ok, got := true, ""
		for i, w := range want {
			st := rs[i].(steadyResult)
			ok = ok && st.success() >= w
			got += sep(i, " / ") + pct2(st.ok, st.calls)
		}
		return ok, got + "%"
	}}}
	return sc
}

func runSteady(seed uint64, spec policySpec, p float64, slow bool) steadyResult {
	s := &sim{}
	srv := serveFunc(func(c *call, _ time.Duration) (time.Duration, error) {
		if unit(seed, saltFail, uint64(c.cl.id), uint64(c.seq), uint64(c.attempts())) < p {
			if slow {
				return 2 * steadyTimeout, nil // cut by the attempt timeout
			}
			return failFast, errUnavailable
		}
		return time.Second, nil
	})
	pol := labPolicy(nil)
	if slow {
		pol.PerAttemptTimeout = steadyTimeout
	}
	f := newFleet(s, steadyClients, spec, pol, srv, 0, seed)
	var r steadyResult
	f.observe(nil, func(c *call) {
		if c.start >= steadyWarm {
			r.calls++
			r.attempts += c.attempts()
			if c.ok {
				r.ok++
			}
		}
	})
	f.openLoop(steadyRate, 0, steadyWarm+steadyLen)
	s.run()
	return r
}
