package main

import "time"

// Scenario R, restart: a client with 50 calls in flight (50 calls/s of 1s
// calls, 5s deadlines) loses its server for 1s. The calls in flight fail
// when the connection drops, attempts fail fast (connection refused) until
// the channel has reconnected, and the channel reconnects on gRPC's
// backoff (see channel). Played restartTrials times, each with its own
// client, budget and reconnect jitter.
const (
	restartTrials   = 20
	restartRate     = 50
	restartDeadline = 5 * time.Second
	restartAt       = 5 * time.Second
	restartDown     = time.Second
	restartAfter    = 10 * time.Second // calls keep starting this long after the restart
	restartTimeout  = 2 * time.Second  // PerAttemptTimeout of the third variant
)

type restartResult struct{ hit, ok int }

func restartScenario() scenario {
	return scenario{
		name:  "restart",
		title: "R. Restart: % of the calls hit by a 1s restart that succeed (50 calls in flight, 5s deadlines)",
		about: []string{
			"Calls in flight fail when the server goes; later attempts fail fast until the channel reconnects (reconnect",
			"backoff 1s, ×1.6, ±20%: back 1s to 2.9s after the drop). fail fast: retries are sent at once (ConnectWait < 0);",
			"connection-aware: a retry waits for the channel to be ready (ConnectWait 10s, bounded by the deadline).",
			"Calls hit: in flight at the drop or started before the channel is back; 20 restarts, each with a fresh client.",
			"2s attempt timeout: connection-aware with PerAttemptTimeout 2s, which also bounds each wait for the channel (the attempt's own 2s start once it is sent).",
		},
		header:   []string{"fail fast", "connection-aware", "aware, 2s attempt timeout"},
		variants: 3,
		run: func(seed uint64, spec policySpec, v int) any {
			var timeout time.Duration
			if v == 2 {
				timeout = restartTimeout
			}
			return runRestart(mix(seed, 'R'), spec, v >= 1, timeout)
		},
		cells: func(rs []any) []string {
			var cells []string
			for _, r := range rs {
				x := r.(restartResult)
				cells = append(cells, pct2(x.ok, x.hit))
			}
			return cells
		},
		targets: []target{{"restart, connection-aware: ≥ 99.5%", func(rs []any) (bool, string) {
			x := rs[1].(restartResult)
			return float64(x.ok) >= 0.995*float64(x.hit), pct2(x.ok, x.hit) + "%"
		}}},
	}
}

func runRestart(seed uint64, spec policySpec, aware bool, attemptTimeout time.Duration) restartResult {
	var r restartResult
	for trial := range restartTrials {
		// The seeds depend on the trial, not on the variant: both variants
		// meet the same restarts.
		ch := newChannel(restartAt, restartDown, newRand(seed, saltChannel, uint64(trial)))
		s := &sim{}
		srv := serveFunc(func(_ *call, now time.Duration) (time.Duration, error) {
			if now < restartAt && now+time.Second > restartAt {
				return restartAt - now, errUnavailable
			}
			return time.Second, nil
		})
		p := labPolicy(nil)
		p.PerAttemptTimeout = attemptTimeout
		if !aware {
			p.ConnectWait = -1
		}
		f := newFleet(s, 1, spec, p, srv, restartDeadline, mix(seed, uint64(trial)))
		f.clients[0].ch = ch
		f.observe(nil, func(c *call) {
			if c.start+time.Second > restartAt && c.start < ch.back {
				r.hit++
				if c.ok {
					r.ok++
				}
			}
		})
		f.openLoop(restartRate, 0, restartAt+restartAfter)
		s.run()
	}
	return r
}
