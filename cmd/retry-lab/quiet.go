package main

import (
	"fmt"
	"time"
)

// Scenario D, quiet client: one client makes a call every 10s for an hour;
// once a minute a blip fails the first k attempts of one call.
var quietBlips = []int{1, 2, 3}

const (
	quietInterval = 10 * time.Second
	quietLen      = time.Hour
	quietEvery    = 6 // calls: one blip a minute
)

type quietResult struct{ blips, ok int }

func quietScenario() scenario {
	var header []string
	for _, k := range quietBlips {
		header = append(header, fmt.Sprintf("k=%d", k))
	}
	return scenario{
		name:  "quiet",
		title: "D. Quiet client, 1 call / 10s for an hour: % of blip calls that succeed (a blip fails the first k attempts of one call a minute)",
		about: []string{
			"The blip's failed attempts are Unavailable, in 1ms; every other attempt succeeds in 1s.",
		},
		header:   header,
		variants: len(quietBlips),
		run: func(seed uint64, spec policySpec, v int) any {
			return runQuiet(mix(seed, 'D', uint64(v)), spec, quietBlips[v])
		},
		cells: func(rs []any) []string {
			var cells []string
			for _, r := range rs {
				q := r.(quietResult)
				cells = append(cells, pct1(q.ok, q.blips))
			}
			return cells
		},
		targets: []target{{"quiet client: 100% of blip calls for k = 1, 2, 3", func(rs []any) (bool, string) {
			ok, got := true, ""
			for i, r := range rs {
				q := r.(quietResult)
				ok = ok && q.ok == q.blips
				got += sep(i, " / ") + pct1(q.ok, q.blips)
			}
			return ok, got + "%"
		}}},
	}
}

func runQuiet(seed uint64, spec policySpec, k int) quietResult {
	s := &sim{}
	srv := serveFunc(func(c *call, _ time.Duration) (time.Duration, error) {
		if c.seq%quietEvery == 0 && c.attempts() <= k {
			return failFast, errUnavailable
		}
		return time.Second, nil
	})
	f := newFleet(s, 1, spec, labPolicy(nil), srv, 0, seed)
	var r quietResult
	f.observe(nil, func(c *call) {
		if c.seq%quietEvery == 0 {
			r.blips++
			if c.ok {
				r.ok++
			}
		}
	})
	f.openLoop(1/quietInterval.Seconds(), 0, quietLen)
	s.run()
	return r
}
