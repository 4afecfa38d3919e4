package main

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/seed4f82f287/retry"
)

// mode is one way the clients are set up.
type mode struct {
	name     string
	fallback bool // a Failover with the secondary as its fallback
	breaker  bool // a Breaker on the primary
}

var modes = []mode{
	{"retries only", false, false},
	{"retries + breaker, no fallback", false, true},
	{"retries + fallback", true, false},
	{"retries + fallback + breaker", true, true},
}

// config is one scenario.
type config struct {
	clients     int
	rate        float64       // calls per second per client (Poisson)
	deadline    time.Duration // of every call
	duration    time.Duration // calls start in [0, duration)
	outageStart time.Duration
	outageEnd   time.Duration
	kind        outageKind
	seed        uint64
	policy      retry.Policy        // of the primary's and the secondary's connections
	breaker     retry.BreakerConfig // of the primary
	primary     latency
	secondary   latency
}

// latency is a backend's healthy answer time: rtt + log-normal(median, sigma).
type latency struct {
	rtt    time.Duration
	median time.Duration
	sigma  float64
}

// run is one mode of one scenario, and what it measured.
type run struct {
	cfg       *config
	mode      mode
	sim       *sim
	primary   *backend
	secondary *backend
	clients   []*client

	calls, ok             int
	outageCalls, outageOK int
	lat, outageLat        []time.Duration
	afterOpen             []time.Duration // calls started in the outage once their client's breaker had opened
	secondaryLat          []time.Duration // successful steps on the secondary
	deadAttempts          int             // attempts sent to the primary during the outage
	deadAfterOpen         int             // of which once the client's breaker had opened
	recovered             []time.Duration // per client: from the outage's end to its breaker closing
}

func (r *run) inOutage(t time.Duration) bool { return t >= r.cfg.outageStart && t < r.cfg.outageEnd }

func (r *run) primaryAttempt(cl *client, now time.Duration) {
	if r.inOutage(now) {
		r.deadAttempts++
		if cl.opened {
			r.deadAfterOpen++
		}
	}
}

// openSeconds is the time, summed over the clients, from each client's
// breaker first opening in the outage to the outage's end.
func (r *run) openSeconds() float64 {
	var d time.Duration
	for _, cl := range r.clients {
		if cl.opened {
			d += r.cfg.outageEnd - cl.firstOpen
		}
	}
	return d.Seconds()
}

func (r *run) stepEnded(s *step, err error) {
	if !s.primary && err == nil {
		r.secondaryLat = append(r.secondaryLat, r.sim.now-s.start)
	}
}

func (r *run) callEnded(c *call, now time.Duration) {
	d := now - c.start
	r.calls++
	r.lat = append(r.lat, d)
	if c.ok {
		r.ok++
	}
	if r.inOutage(c.start) {
		r.outageCalls++
		r.outageLat = append(r.outageLat, d)
		if c.ok {
			r.outageOK++
		}
		if cl := c.cl; cl.opened && c.start >= cl.firstOpen {
			r.afterOpen = append(r.afterOpen, d)
		}
	}
}

// simulate plays one mode of cfg and returns what it measured.
func simulate(cfg *config, m mode) (*run, error) {
	s := &sim{}
	r := &run{cfg: cfg, mode: m, sim: s}
	down := func(now time.Duration) bool { return now >= cfg.outageStart && now < cfg.outageEnd }
	r.primary = &backend{name: "primary", rtt: cfg.primary.rtt, median: cfg.primary.median, sigma: cfg.primary.sigma, down: down, kind: cfg.kind,
		rng: rand.New(rand.NewPCG(cfg.seed, 1))}
	r.secondary = &backend{name: "secondary", rtt: cfg.secondary.rtt, median: cfg.secondary.median, sigma: cfg.secondary.sigma,
		rng: rand.New(rand.NewPCG(cfg.seed, 2))}
	for i := 0; i < cfg.clients; i++ {
		jitter := rand.New(rand.NewPCG(cfg.seed, uint64(1000+i)))
		cl, err := newClient(r, i, m, jitter.Float64)
		if err != nil {
			return nil, err
		}
		r.clients = append(r.clients, cl)
		arrivals := rand.New(rand.NewPCG(cfg.seed, uint64(2000+i)))
		var next func()
		next = func() {
			cl.start()
			t := s.now + time.Duration(arrivals.ExpFloat64()/cfg.rate*float64(time.Second))
			if t < cfg.duration {
				s.at(t, next)
			}
		}
		s.at(time.Duration(arrivals.Float64()/cfg.rate*float64(time.Second)), next)
	}
	if m.breaker {
		// Each client's breaker: when it closes again after the outage.
		for _, cl := range r.clients {
			cl := cl
			var check func()
			check = func() {
				if cl.breaker.State() == retry.BreakerClosed {
					r.recovered = append(r.recovered, s.now-cfg.outageEnd)
					return
				}
				if s.now < cfg.duration {
					s.at(s.now+10*time.Millisecond, check)
				}
			}
			s.at(cfg.outageEnd, check)
		}
	}
	s.run()
	return r, nil
}

// percentile returns the p-quantile (0 < p ≤ 1) of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
