// Command retry-failover plays a regional outage in virtual time and
// measures what retries, a fallback chain and a circuit breaker each do
// for the callers:
//
//	go run ./cmd/retry-failover                    # both outage kinds, the table of the README
//	go run ./cmd/retry-failover -outage blackhole -clients 50 -rate 100
//
// The scenario: -clients clients (20), each starting calls at -rate (50)
// per second (Poisson arrivals), each call with a -deadline (2s), for 60 s.
// The primary region is down from 10 s to 40 s; the secondary region,
// farther away, stays healthy. A healthy answer takes rtt + a log-normal
// service time (primary: 0 + median 100 ms; secondary: 40 ms + median
// 100 ms; σ 0.35). In the outage the primary's attempts either fail at once
// (-outage refused: a regional front end answers Unavailable in 2 ms for
// backends that are gone) or get no answer at all (-outage blackhole: they
// end at the per-attempt timeout or the caller's deadline).
//
// Every client has a connection to each region with the retry policy
// (3 attempts, 100 ms → 1 s backoff with full jitter, 1 s per-attempt
// timeout, the default budget, one per connection), and, by mode, nothing
// more (retries only), a Breaker on the primary (the zero BreakerConfig:
// the defaults), a Failover to the secondary, or both.
//
// The decisions are the module's own code, not a model of it: each
// connection's retry Decider, the Failover's chain decisions and the
// Breaker run on the simulator's virtual clock and a seeded random source
// (through an internal seam). The simulator plays the interceptors'
// mechanics (the attempt loop, the chain's steps), with channels always
// ready. A run is a pure function of its flags: the same numbers every
// time, in about a second.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/seed4f82f287/retry"
)

func main() {
	cfgs, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "retry-failover:", err)
		os.Exit(2)
	}
	if err := report(os.Stdout, cfgs); err != nil {
		fmt.Fprintln(os.Stderr, "retry-failover:", err)
		os.Exit(1)
	}
}

// defaultConfig is the scenario of the README's table.
func defaultConfig() config {
	return config{
		clients:     20,
		rate:        50,
		deadline:    2 * time.Second,
		duration:    60 * time.Second,
		outageStart: 10 * time.Second,
		outageEnd:   40 * time.Second,
		seed:        1,
		policy: retry.Policy{
			MaxAttempts:       3,
			InitialBackoff:    100 * time.Millisecond,
			MaxBackoff:        time.Second,
			PerAttemptTimeout: 500 * time.Millisecond,
		},
		primary:   latency{median: 100 * time.Millisecond, sigma: 0.35},
		secondary: latency{rtt: 40 * time.Millisecond, median: 100 * time.Millisecond, sigma: 0.35},
	}
}

func parseFlags(args []string, stderr io.Writer) ([]config, error) {
	fs := flag.NewFlagSet("retry-failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := defaultConfig()
	clients := fs.Int("clients", d.clients, "clients, each with its own connections, budgets and breaker")
	rate := fs.Float64("rate", d.rate, "calls per second per client (Poisson arrivals)")
	deadline := fs.Duration("deadline", d.deadline, "deadline of every call")
	outage := fs.String("outage", "refused,blackhole", "outage kinds: refused (attempts fail Unavailable in 2ms), blackhole (no answer)")
	seed := fs.Uint64("seed", d.seed, "random seed")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *clients < 1 || *rate <= 0 || *deadline <= 0 {
		return nil, errors.New("-clients, -rate and -deadline must be positive")
	}
	var cfgs []config
	for _, k := range strings.Split(*outage, ",") {
		c := d
		c.clients, c.rate, c.deadline, c.seed = *clients, *rate, *deadline, *seed
		switch strings.TrimSpace(k) {
		case "refused":
			c.kind = refused
		case "blackhole":
			c.kind = blackhole
		default:
			return nil, fmt.Errorf("-outage: unknown kind %q (refused, blackhole)", k)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs, nil
}

func (k outageKind) String() string {
	if k == blackhole {
		return "blackhole: the primary's attempts get no answer"
	}
	return "refused: the primary's attempts fail Unavailable in 2 ms"
}

// report plays every mode of every scenario and writes the tables.
func report(w io.Writer, cfgs []config) error {
	for i, cfg := range cfgs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		cfg := cfg
		fmt.Fprintf(w, "Outage %s (%v to %v of %v), %d clients × %.0f calls/s, deadline %v, seed %d.\n\n",
			cfg.kind, cfg.outageStart, cfg.outageEnd, cfg.duration, cfg.clients, cfg.rate, cfg.deadline, cfg.seed)
		fmt.Fprintln(w, "| mode | success | success in the outage | p50 | p99 | p99 in the outage | p99 once the breaker is open (× the secondary's) | attempts to the dead primary /client/s | of which once the breaker is open | back on the primary after the outage |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		var secondaryP99 time.Duration
		for _, m := range modes {
			r, err := simulate(&cfg, m)
			if err != nil {
				return err
			}
			if m.fallback && secondaryP99 == 0 {
				secondaryP99 = percentile(r.secondaryLat, 0.99)
			}
			fmt.Fprintln(w, r.row(secondaryP99))
		}
		fmt.Fprintf(w, "\nThe secondary's own p99 (its successful steps, retries included): %v.\n", ms(secondaryP99))
	}
	return nil
}

// outageSeconds is the length of the outage in seconds.
func (c *config) outageSeconds() float64 { return (c.outageEnd - c.outageStart).Seconds() }

func (r *run) row(secondaryP99 time.Duration) string {
	cfg := r.cfg
	perClientSecond := func(n int) string {
		return fmt.Sprintf("%.2f", float64(n)/float64(cfg.clients)/cfg.outageSeconds())
	}
	cols := []string{
		r.mode.name,
		pct(r.ok, r.calls),
		pct(r.outageOK, r.outageCalls),
		ms(percentile(r.lat, 0.5)),
		ms(percentile(r.lat, 0.99)),
		ms(percentile(r.outageLat, 0.99)),
		"—",
		perClientSecond(r.deadAttempts),
		"—",
		"—",
	}
	if r.mode.breaker {
		if r.mode.fallback && len(r.afterOpen) > 0 {
			p := percentile(r.afterOpen, 0.99)
			cols[6] = fmt.Sprintf("%s (%.2f×)", ms(p), float64(p)/float64(secondaryP99))
		}
		cols[8] = fmt.Sprintf("%.2f", float64(r.deadAfterOpen)/r.openSeconds())
		cols[9] = ms(percentile(r.recovered, 0.5)) + " median, " + ms(percentile(r.recovered, 1)) + " max"
	}
	return "| " + strings.Join(cols, " | ") + " |"
}

func pct(n, of int) string {
	if of == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

// ms formats d in milliseconds, or seconds from 10 s.
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}
