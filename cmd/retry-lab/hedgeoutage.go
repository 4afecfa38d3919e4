package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/seed4f82f287/retry"
)

// Scenarios H and H', hedging in a full outage: 50 clients at 1 or 20
// calls/s (open loop), 1s deadlines, against the tail's server (2% of
// attempts straggling) for 30s, then a full outage for 30s. In H every
// attempt fails in 1ms (Unavailable) and the attempts in flight fail at the
// onset; in H' (a blackhole) no attempt is answered: each ends when its
// per-attempt timeout or the caller's deadline cuts it, the attempts in
// flight at the onset included. Retrying (MaxAttempts 4, backoff 50ms to
// 1s, PerAttemptTimeout 300ms) is compared with hedging (MaxAttempts 4, no
// per-attempt timeout) with a fixed delay (the healthy p95) and a learned
// one, each under the default budget and under gRFC A6's throttle.
// Reported as in scenario B: attempts per call before the outage and in its
// steady state, the load of its first second, and the onset's one-time
// extra attempts per client.
var hedgeOutageRates = []float64{1, 20}

const (
	hoClients      = 50
	hoDeadline     = time.Second
	hoTimeout      = 300 * time.Millisecond // PerAttemptTimeout of the retrying rows
	hoAt           = 30 * time.Second       // onset, after a healthy warm-up (a learned delay is warm at 1 call/s)
	hoLen          = 30 * time.Second
	hoHealthy      = 10 * time.Second // healthy: calls started from this long after the start until the onset
	hoSteady       = 10 * time.Second // steady: calls started from this long into the outage...
	hoSteadyMargin = hoDeadline       // ...until this long before its end (their attempts all meet the outage)
)

// hedgeOutageRows are the rows of H and H': retrying and hedging, under
// the default budget and A6's throttle.
func hedgeOutageRows() []policySpec {
	fixed := tailBase.healthy(z95)
	var rows []policySpec
	for _, b := range []struct {
		name, desc string
		budget     func() retry.Budget
	}{
		{"credit", "the default budget", func() retry.Budget { return nil }},
		{"throttle", "retry.NewThrottle(10, 0.1)", func() retry.Budget { return retry.NewThrottle(10, 0.1) }},
	} {
		rows = append(rows,
			policySpec{
				name: "retry, " + b.name, desc: fmt.Sprintf("MaxAttempts 4, PerAttemptTimeout %v, %s", hoTimeout, b.desc),
				budget: b.budget,
				tweak:  func(p *retry.Policy) { p.PerAttemptTimeout = hoTimeout },
			},
			policySpec{
				name: "fixed, " + b.name, desc: fmt.Sprintf("MaxAttempts 4, Hedging{Delay: %v}, %s", fixed, b.desc),
				budget: b.budget,
				tweak:  func(p *retry.Policy) { p.Hedging = &retry.Hedging{Delay: fixed} },
			},
			policySpec{
				name: "fixed 25%, " + b.name, desc: fmt.Sprintf("MaxAttempts 4, Hedging{Delay: %v, MaxExtraLoad: 0.25}, %s", fixed, b.desc),
				budget: b.budget,
				tweak:  func(p *retry.Policy) { p.Hedging = &retry.Hedging{Delay: fixed, MaxExtraLoad: 0.25} },
			},
			policySpec{
				name: "adaptive, " + b.name, desc: "MaxAttempts 4, Hedging{}, " + b.desc,
				budget: b.budget,
				tweak:  func(p *retry.Policy) { p.Hedging = &retry.Hedging{} },
			})
	}
	return rows
}

type hedgeOutageResult struct {
	clients                  int
	rate                     float64
	healthyCalls, healthyAtt int // calls started in the healthy window, their attempts
	steadyCalls, steadyAtt   int
	hitCalls, hitAtt         int // calls in flight at the onset or started in the outage (until hoSteadyMargin before its end)
	firstSecond              int // attempts reaching the server in the outage's first second
	inOutage                 int // attempts reaching the server in the outage, until hoSteadyMargin before its end
}

func (r hedgeOutageResult) healthy() float64 { return float64(r.healthyAtt) / float64(r.healthyCalls) }
func (r hedgeOutageResult) steady() float64  { return float64(r.steadyAtt) / float64(r.steadyCalls) }

// outage is the attempts sent in the outage (until hoSteadyMargin before
// its end) over the calls offered in that time: its load over the offered
// load, the onset included.
func (r hedgeOutageResult) outage() float64 {
	return float64(r.inOutage) / (float64(r.clients) * r.rate * (hoLen - hoSteadyMargin).Seconds())
}

func (r hedgeOutageResult) firstLoad() float64 {
	return float64(r.firstSecond) / (float64(r.clients) * r.rate)
}

// onsetExtra is, per client, the attempts beyond one per call and beyond
// the steady state's: the one-time cost of the onset.
func (r hedgeOutageResult) onsetExtra() float64 {
	extra := float64(r.hitAtt - r.hitCalls)
	return (extra - (r.steady()-1)*float64(r.hitCalls)) / float64(r.clients)
}

func hedgeOutageScenario(blackhole bool) scenario {
	var header []string
	for _, r := range hedgeOutageRates {
		header = append(header, fmt.Sprintf("healthy %g/s", r))
	}
	for _, r := range hedgeOutageRates {
		header = append(header, fmt.Sprintf("steady %g/s", r))
	}
	for _, r := range hedgeOutageRates {
		header = append(header, fmt.Sprintf("outage %g/s", r))
	}
	header = append(header, "1st s 20/s")
	for _, r := range hedgeOutageRates {
		header = append(header, fmt.Sprintf("onset %g/s", r))
	}
	sc := scenario{
		name:  "hedge-outage",
		title: "H. Hedging in a full outage (every attempt fails in 1ms), 50 clients: attempts per call, retrying and hedging",
		about: []string{
			"Each client starts calls with 1s deadlines at 1 or 20/s (open loop) against the tail's server (log-normal, median 100ms,",
			"σ 0.3, 2% of attempts 10x slower); after 30s, every attempt fails in 1ms (Unavailable) for 30s, and the attempts in",
			"flight fail at the onset. healthy: attempts per call started in the 10s before the onset (and ended before it);",
			"steady: attempts per call started 10s to 29s into the outage; outage: attempts sent in its first 29s ÷ the calls",
			"offered in them (onset included); 1st s: the same over its first second; onset: extra attempts per client beyond the",
			"steady state's, over the calls in flight at the onset or started in the outage.",
		},
		header:   header,
		variants: len(hedgeOutageRates),
		rows:     hedgeOutageRows(),
		run: func(seed uint64, spec policySpec, v int) any {
			return runHedgeOutage(mix(seed, 'H', uint64(v)), spec, hoClients, hedgeOutageRates[v], blackhole)
		},
		cells: func(rs []any) []string {
			var healthy, steady, all, first, onset []string
			for _, r := range rs {
				o := r.(hedgeOutageResult)
				healthy = append(healthy, fmt.Sprintf("%.3f", o.healthy()))
				steady = append(steady, fmt.Sprintf("%.3f", o.steady()))
				all = append(all, fmt.Sprintf("%.3f", o.outage()))
				if o.rate == 20 {
					first = append(first, fmt.Sprintf("%.2fx", o.firstLoad()))
				}
				onset = append(onset, fmt.Sprintf("%.1f", o.onsetExtra()))
			}
			return slices.Concat(healthy, steady, all, first, onset)
		},
	}
	if blackhole {
		sc.name = "blackhole"
		sc.title = "H'. Hedging in a blackhole (no attempt is answered), 50 clients: attempts per call, retrying and hedging"
		sc.about = []string{
			"As H, but in the outage no attempt is answered (the attempts in flight at the onset included): an attempt ends when",
			"its per-attempt timeout (300ms, retrying) or the caller's 1s deadline (hedging) cuts it, with DeadlineExceeded.",
		}
	}
	return sc
}

// runHedgeOutage plays H (H' if blackhole) with n clients at rate calls/s
// each.
func runHedgeOutage(seed uint64, spec policySpec, n int, rate float64, blackhole bool) hedgeOutageResult {
	s := &sim{}
	end := hoAt + hoLen
	m := tailBase
	m.straggle = 0.02
	srv := serveFunc(func(c *call, now time.Duration) (time.Duration, error) {
		d := m.latency(seed, c.cl.id, c.seq, c.attempts())
		switch {
		case blackhole && now+d > hoAt && now < end:
			return time.Hour, nil // cut by the attempt's deadline
		case now >= hoAt && now < end:
			return failFast, errUnavailable
		case now < hoAt && now+d > hoAt:
			return hoAt - now, errUnavailable
		}
		return d, nil
	})
	f := newFleet(s, n, spec, labPolicy(nil), srv, hoDeadline, seed)
	r := hedgeOutageResult{clients: n, rate: rate}
	f.observe(func(_ *call, now time.Duration) {
		if now >= hoAt && now < hoAt+time.Second {
			r.firstSecond++
		}
		if now >= hoAt && now < end-hoSteadyMargin {
			r.inOutage++
		}
	}, func(c *call) {
		switch {
		case c.end <= hoAt:
			if c.start >= hoAt-hoHealthy {
				r.healthyCalls++
				r.healthyAtt += c.attempts()
			}
		case c.start < end-hoSteadyMargin:
			r.hitCalls++
			r.hitAtt += c.attempts()
			if c.start >= hoAt+hoSteady {
				r.steadyCalls++
				r.steadyAtt += c.attempts()
			}
		}
	})
	f.openLoop(rate, 0, end)
	s.run()
	return r
}
