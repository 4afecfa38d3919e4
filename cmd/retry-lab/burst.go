package main

import (
	"fmt"
	"time"
)

// Scenario A, replica loss: one client has C calls in flight when a
// replica is lost; the half of them that it held fail at once (Unavailable)
// and their retries, sent to the other replicas, succeed. In its "hang"
// form (A'), the lost replica stops answering instead: those calls fail
// when their 2s PerAttemptTimeout fires.
var burstSizes = []int{10, 100, 300, 1000}

const (
	burstAt      = 40 * time.Second // when the replica is lost
	burstWarm    = 30 * time.Second // healthy traffic before, for a warm client
	burstTimeout = 2 * time.Second  // PerAttemptTimeout of the hang form
)

type burstResult struct{ ok, calls int }

func burstScenario(hang bool) scenario {
	n := len(burstSizes)
	var header []string
	for _, c := range burstSizes {
		header = append(header, fmt.Sprintf("C=%d", c))
	}
	if hang {
		return scenario{
			name:  "hang",
			title: "A'. Replica hang: % of the C calls in flight that succeed (half hang until their 2s attempt timeout, retries succeed)",
			about: []string{
				"As A (fresh client), with PerAttemptTimeout 2s, but the lost replica does not answer: its calls fail",
				"with DeadlineExceeded when their attempt timeout fires, 1s to 2s later.",
			},
			header:   header,
			variants: n,
			run: func(seed uint64, spec policySpec, v int) any {
				return runBurst(mix(seed, 'H', uint64(v)), spec, burstSizes[v], false, true)
			},
			cells: burstCells,
		}
	}
	for _, c := range burstSizes {
		header = append(header, fmt.Sprintf("warm C=%d", c))
	}
	return scenario{
		name:  "burst",
		title: "A. Replica loss: % of the C calls in flight that succeed (half fail once at the same instant, retries succeed)",
		about: []string{
			"One client sends C calls/s of 1s calls, so C are in flight; then every other one fails at once with Unavailable.",
			"Fresh: the client started 1s before (these are its first calls); warm: after 30s of that traffic, all OK.",
		},
		header:   header,
		variants: 2 * n,
		run: func(seed uint64, spec policySpec, v int) any {
			return runBurst(mix(seed, 'A', uint64(v)), spec, burstSizes[v%n], v >= n, false)
		},
		cells: burstCells,
		targets: []target{{"replica loss: 100% at every C, fresh and warm", func(rs []any) (bool, string) {
			worst, got := 1.0, ""
			for i, r := range rs {
				b := r.(burstResult)
				if f := float64(b.ok) / float64(b.calls); f <= worst {
					worst, got = f, header[i]+": "+pct1(b.ok, b.calls)+"%"
				}
			}
			return worst == 1, "worst " + got
		}}},
	}
}

func burstCells(rs []any) []string {
	var cells []string
	for _, r := range rs {
		b := r.(burstResult)
		cells = append(cells, pct1(b.ok, b.calls))
	}
	return cells
}

func runBurst(seed uint64, spec policySpec, c int, warm, hang bool) burstResult {
	s := &sim{}
	from := burstAt - time.Second
	if warm {
		from -= burstWarm
	}
	// The calls in flight at burstAt are those started in the last second;
	// every other one (odd sequence numbers) was on the lost replica.
	srv := serveFunc(func(cl *call, now time.Duration) (time.Duration, error) {
		if cl.attempts() == 1 && cl.seq%2 == 1 && now < burstAt && now+time.Second > burstAt {
			if hang {
				return 2 * burstTimeout, nil // cut by the attempt timeout
			}
			return burstAt - now, errUnavailable
		}
		return time.Second, nil
	})
	p := labPolicy(nil)
	if hang {
		p.PerAttemptTimeout = burstTimeout
	}
	f := newFleet(s, 1, spec, p, srv, 0, seed)
	var r burstResult
	f.observe(nil, func(cl *call) {
		if cl.start >= burstAt-time.Second {
			r.calls++
			if cl.ok {
				r.ok++
			}
		}
	})
	// Start times offset by half an interval: none falls on burstAt - 1s.
	f.openLoop(float64(c), from+time.Second/time.Duration(2*c), burstAt)
	s.run()
	if r.calls != c {
		panic(fmt.Sprintf("retry-lab: burst of %d calls has %d in flight", c, r.calls))
	}
	return r
}
