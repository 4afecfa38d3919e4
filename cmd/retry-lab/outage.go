package main

import (
	"fmt"
	"time"
)

// Scenario B, sustained full outage: 50 clients, each with its own budget,
// start calls at a fixed rate (open loop). After a healthy warm-up the
// server fails every attempt in 1ms with Unavailable for 30s, and the calls
// in flight fail at the onset. Then it is healthy again, but once a second
// per client a call fails its first attempt (a blip), to measure how long
// the budget takes to allow retries again.
var outageRates = []float64{1, 20, 200}

const (
	outageClients = 50
	outageAt      = 10 * time.Second // onset, after a healthy warm-up
	outageLen     = 30 * time.Second
	outageSteady  = 10 * time.Second // steady state: calls started from this long into the outage...
	outageMargin  = time.Second      // ...until this long before its end (their retries all meet the outage)
	outageAfter   = 60 * time.Second // healthy, with blips, after the outage
)

type outageResult struct {
	rate                   float64
	steadyCalls, steadyAtt int           // calls started in the steady window, their attempts
	hitCalls, hitAtt       int           // calls in flight at the onset or started in the outage, their attempts
	firstSecond            int           // attempts reaching the server in the outage's first second
	back                   time.Duration // total over the clients of the time from their first blip to the first one retried
	neverBack              int           // clients that did not retry a blip within outageAfter
}

func (r outageResult) steady() float64 { return float64(r.steadyAtt) / float64(r.steadyCalls) }

// firstLoad is the load of the outage's first second, in units of the
// offered load.
func (r outageResult) firstLoad() float64 {
	return float64(r.firstSecond) / (outageClients * r.rate)
}

// onsetExtra is, per client, the retries beyond those of the steady state:
// the one-time cost of the onset.
func (r outageResult) onsetExtra() float64 {
	retries := float64(r.hitAtt - r.hitCalls)
	return (retries - (r.steady()-1)*float64(r.hitCalls)) / outageClients
}

// backString is the mean time, after the outage, until a client's budget
// let a blip be retried.
func (r outageResult) backString() string {
	if r.neverBack > 0 {
		return fmt.Sprintf(">%.0fs", outageAfter.Seconds())
	}
	return fmt.Sprintf("%.1fs", r.back.Seconds()/outageClients)
}

func outageScenario() scenario {
	var header []string
	for _, r := range outageRates {
		header = append(header, fmt.Sprintf("steady %g/s", r))
	}
	for _, r := range outageRates[1:] {
		header = append(header, fmt.Sprintf("1st s %g/s", r))
	}
	for _, r := range outageRates {
		header = append(header, fmt.Sprintf("onset %g/s", r))
	}
	for _, r := range outageRates {
		header = append(header, fmt.Sprintf("back %g/s", r))
	}
	return scenario{
		name:  "outage",
		title: "B. Sustained full outage (30s), 50 clients: attempts per call in steady state; load in the first second; onset extra",
		about: []string{
			"Each client starts calls at 1, 20 or 200/s (open loop); after 10s healthy, every attempt fails in 1ms (Unavailable)",
			"for 30s, and the calls in flight fail at the onset. steady: attempts per call started 10s to 29s into the outage;",
			"1st s: attempts sent in the outage's first second ÷ the calls offered in it; onset: retries per client beyond the",
			"steady state's, over the calls in flight at the onset or started in the outage. back: after the outage, one call a",
			"second per client fails its first attempt; mean time from a client's first such call to the first one it retries.",
		},
		header:   header,
		variants: len(outageRates),
		run: func(seed uint64, spec policySpec, v int) any {
			return runOutage(mix(seed, 'B', uint64(v)), spec, outageRates[v])
		},
		cells: func(rs []any) []string {
			var steady, first, onset, back []string
			for i, r := range rs {
				o := r.(outageResult)
				steady = append(steady, fmt.Sprintf("%.3f", o.steady()))
				if i > 0 {
					first = append(first, fmt.Sprintf("%.2fx", o.firstLoad()))
				}
				onset = append(onset, fmt.Sprintf("%.1f", o.onsetExtra()))
				back = append(back, o.backString())
			}
			return append(append(append(steady, first...), onset...), back...)
		},
		targets: []target{{"sustained outage: ≤ 1.1 attempts per call in steady state at 1, 20, 200/s", func(rs []any) (bool, string) {
			ok, got := true, ""
			for i, r := range rs {
				o := r.(outageResult)
				ok = ok && o.steady() <= 1.1
				got += fmt.Sprintf("%s%.3f", sep(i, " / "), o.steady())
			}
			return ok, got
		}}},
	}
}

func runOutage(seed uint64, spec policySpec, rate float64) outageResult {
	s := &sim{}
	end := outageAt + outageLen
	blipEvery := max(1, int(rate)) // calls: one blip per second
	srv := serveFunc(func(c *call, now time.Duration) (time.Duration, error) {
		switch {
		case now >= outageAt && now < end:
			return failFast, errUnavailable
		case now < outageAt && now+time.Second > outageAt:
			return outageAt - now, errUnavailable
		case c.start >= end && c.seq%blipEvery == 0 && c.attempts() == 1:
			return failFast, errUnavailable
		}
		return time.Second, nil
	})
	f := newFleet(s, outageClients, spec, labPolicy(nil), srv, 0, seed)
	r := outageResult{rate: rate}
	first := make([]time.Duration, outageClients) // start of the client's first blip
	back := make([]time.Duration, outageClients)  // of its first blip retried
	for i := range back {
		first[i], back[i] = -1, -1
	}
	f.observe(func(_ *call, now time.Duration) {
		if now >= outageAt && now < outageAt+time.Second {
			r.firstSecond++
		}
	}, func(c *call) {
		switch {
		case c.start+time.Second > outageAt && c.start < end-outageMargin:
			r.hitCalls++
			r.hitAtt += c.attempts()
			if c.start >= outageAt+outageSteady {
				r.steadyCalls++
				r.steadyAtt += c.attempts()
			}
		case c.start >= end && c.seq%blipEvery == 0:
			if first[c.cl.id] < 0 || c.start < first[c.cl.id] {
				first[c.cl.id] = c.start
			}
			if c.ok && (back[c.cl.id] < 0 || c.start < back[c.cl.id]) {
				back[c.cl.id] = c.start
			}
		}
	})
	f.openLoop(rate, 0, end+outageAfter)
	s.run()
	for i, b := range back {
		if b < 0 {
			r.neverBack++
		} else {
			r.back += b - first[i]
		}
	}
	return r
}
