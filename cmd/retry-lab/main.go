// Command retry-lab is a deterministic policy lab: it plays retry and
// hedging scenarios in virtual time against modelled servers, driving the
// package's real decision code, and prints one table per scenario with a
// row per retry budget (or, for hedging, per policy). The same -seed gives
// the same numbers on every run; the default set takes a few seconds of
// CPU.
//
//	go run ./cmd/retry-lab
//	go run ./cmd/retry-lab -scenario outage,meta -policy credit,throttle
//	go run ./cmd/retry-lab -scenario tail,ttft,hedge-outage,blackhole
//	go run ./cmd/retry-lab -credit 0.1,0.05,3,20 -credit 0.1,0.05,3,100
//	go run ./cmd/retry-lab -scenario meta -meta-busy-clients 1 -meta-busy-util 0.95
//	go run ./cmd/retry-lab -sweep    # CreditBudget parameters against the targets (minutes)
//
// # What is real and what is modelled
//
// Every retry decision is made by the package itself: each simulated client
// compiles its retry.Policy through an internal seam into the same Decider
// that retry.Unary uses, with the lab's virtual clock and a seeded random
// source in place of the real ones. Classification, backoff and jitter,
// pushback, the deadline checks and the budget are the package's code; so
// is the order in which they are applied. The lab replaces the network and
// the attempt loop of interceptor.Unary, which it mirrors step by step
// (see client): Begin per call, Attempts incremented before each attempt,
// Failed after each failed attempt with the attempt's status error,
// Succeeded on success, and, instead of Decider.Wait, the next attempt
// scheduled delay later in virtual time. A call's context reports its
// virtual deadline and is never done, so the decision code recognises a
// call past its deadline by comparing it with its clock, as it does for a
// real call whose context has not noticed yet. A retry on a channel that is
// not ready waits for it (Call.ConnectWait), bounded by the attempt's and
// the caller's deadlines; if the caller's deadline ends the wait, Failed is
// told the attempt did not start, as the interceptor does. Hedged calls
// follow the interceptor's hedge loop instead, mirrored the same way (see
// hedged): Hedge when the hedge timer fires, Failed for each attempt that
// fails, the first success winning and the others cancelled unheard.
//
// Common set-up: MaxAttempts 4, backoff 50ms doubling to 1s with full
// jitter, one budget per client, successful attempts take 1s, failed ones
// 1ms. Calls start at fixed rates (open loop: a slow or failing call does
// not slow the callers), evenly spread over each client's interval and
// across clients, except in scenario E. Random failures are a hash of
// (seed, client, call, attempt), so every policy meets the same ones.
// Scenarios:
//
//   - A, replica loss: one client with C calls in flight (C calls/s of 1s
//     calls); every other one fails at the same instant with Unavailable;
//     retries succeed. Fresh client (its first calls) and warm (after 30s of
//     that traffic). A', replica hang: the lost replica stops answering
//     instead, so those calls fail when their 2s PerAttemptTimeout fires.
//   - B, sustained outage: 50 clients at 1, 20 or 200 calls/s; after 10s
//     healthy, every attempt fails in 1ms for 30s and the calls in flight
//     fail at the onset. Reported: attempts per call started 10s to 29s
//     into the outage; attempts in the outage's first second over the calls
//     offered in it; retries per client beyond the steady state's (the
//     one-time cost of the onset); and, after the outage, how long until a
//     client's budget retries again (one call a second fails its first
//     attempt).
//   - C, steady failures: 50 clients × 20 calls/s, each attempt failing
//     (Unavailable, 1ms) with probability p; C', the same failures as 2s
//     timeouts. Calls started in 60s after a 10s warm-up.
//   - D, quiet client: a call every 10s for an hour; once a minute a call
//     fails its first k attempts.
//   - E, metastability: 1000 calls/s (50 clients × 20/s, and 10 × 100/s)
//     against a server of N workers and one FIFO queue. N is sized so that
//     the offered work keeps the workers 80% or 90% busy (1250, 1111). The
//     queue holds at most 4s of the workers' work (4N attempts); an attempt
//     arriving to a full queue is rejected at once (ResourceExhausted). Each
//     attempt takes 0.5s to 1.5s of a worker (uniform, mean 1s), and calls
//     arrive as a Poisson process: a model with exactly 1s of work and
//     evenly spaced calls makes every attempt wait the same time, so it
//     cannot settle in a partial failure, which is how a budget that lets
//     too much through holds a server down (-meta-spread 0 -meta-even show
//     it). Clients use a 2s PerAttemptTimeout (DeadlineExceeded, class
//     Timeout, retried) and no call deadline. The server never learns that
//     a client gave up: it serves abandoned attempts when their turn comes.
//     10s into the run the server stalls for 4s (no progress at all, a stuck
//     dependency or a long pause): attempts in service are frozen, the queue
//     keeps admitting. Recovery: seconds from the stall's end until every
//     later 1s window of call completions, over 120s, is at least 99% OK;
//     "never" if the last window is not.
//   - R, restart: one client, 50 calls/s of 1s calls with 5s deadlines (50
//     in flight), loses its server for 1s: calls in flight fail at the drop,
//     and attempts fail fast (connection refused) until the channel has
//     reconnected. The channel tries at once, then after gRPC's reconnect
//     backoff (1s, ×1.6, ±20%), and is ready at the first try at or after
//     the server is back (1s to 2.9s after the drop). Retries either go out
//     at once (ConnectWait < 0) or wait for the channel (the default
//     ConnectWait), and then also with a 2s PerAttemptTimeout, which bounds
//     the wait for the channel as well as the attempt (as in the
//     interceptor). Reported over the calls hit: in flight at the drop or
//     started before the channel was back; 20 restarts, each a fresh client.
//   - T, tail: attempts take a log-normal time (median 100ms, σ 0.3), and
//     2% or 5% of them, drawn independently, ten times as long; 10 clients
//     × 100 calls/s, 100s measured after 20s of warm-up. Rows: no hedging,
//     fixed hedge delays at the healthy p90, p95 and p99, the learned delay,
//     with 2 and 3 attempts. Reported: p50, p99, p99.9, hedges per call,
//     hedges refused, the mean delay. T', the same for token streams: the
//     tail is in the time to the first token, which decides the race.
//   - H, hedging in an outage: 50 clients at 1 or 20 calls/s with 1s
//     deadlines; after 30s on the tail's server (2% stragglers), every
//     attempt fails in 1ms for 30s. H', a blackhole: no attempt is
//     answered, each is cut by its per-attempt timeout or the deadline.
//     Rows: retrying (PerAttemptTimeout 300ms) and hedging with a fixed
//     and a learned delay, under the default budget and the A6 throttle.
//     Reported as B: attempts per call, healthy and in steady state, the
//     first second's load, the onset's extra attempts per client.
//
// # Budgets
//
// The rows of scenarios A to R are retry.NoBudget, retry.NewThrottle(10,
// 0.1) (gRFC A6), the former ratio budget, the default
// retry.DefaultCreditBudget(), -credit rows of retry.NewCreditBudget, and
// credit budgets prototyped in the lab (see creditProto): a budget the root
// package does not have yet, played through the same seam, to measure a
// rule before it is written. Scenarios T to H' have rows of their own
// (hedging policies, each naming its budget), which -policy does not
// change.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

type config struct {
	meta      metaModel
	seed      uint64
	scenarios []scenario
	policies  []policySpec
	parallel  int
	sweep     bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "retry-lab:", err)
		os.Exit(2)
	}
	// Runs allocate briskly but keep little: fewer collections, same
	// results. GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	run(os.Stdout, cfg)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("retry-lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      config
		scenario = fs.String("scenario", "all", "scenarios to play, a comma list of "+strings.Join(scenarioNames(), ", ")+", or all")
		policy   = fs.String("policy", "all", "budgets to compare, a comma list of "+strings.Join(policyNames(), ", ")+", or all (all but the last two; -credit adds more)")
		credits  []policySpec
	)
	meta := defaultMetaModel
	fs.Float64Var(&meta.spread, "meta-spread", meta.spread, "scenario E: each attempt's work is uniform in 1s ± this fraction (0: exactly 1s)")
	fs.BoolVar(&meta.even, "meta-even", meta.even, "scenario E: evenly spaced calls instead of Poisson arrivals")
	fs.IntVar(&meta.busy.clients, "meta-busy-clients", meta.busy.clients, "scenario E: clients sharing the load in the last run (1 to 1000)")
	fs.Float64Var(&meta.busy.util, "meta-busy-util", meta.busy.util, "scenario E: utilisation in the last run (0.5 to 0.99)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the jitter, the random failures and the reconnect jitter")
	fs.IntVar(&cfg.parallel, "parallel", runtime.GOMAXPROCS(0), "runs played at once (the results do not depend on it)")
	fs.BoolVar(&cfg.sweep, "sweep", false, "sweep the CreditBudget's parameters against the targets instead of printing the tables")
	fs.Func("credit", "add a CreditBudget row: `ratio,perSecond,max,maxDebt` (repeatable)", func(s string) error {
		spec, err := parseCredit(s)
		if err != nil {
			return err
		}
		credits = append(credits, spec)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if !(meta.spread >= 0 && meta.spread < 1) {
		return cfg, errors.New("-meta-spread must be in [0, 1)")
	}
	if meta.busy.clients < 1 || meta.busy.clients > metaLoad || !(meta.busy.util >= 0.5 && meta.busy.util <= 0.99) {
		return cfg, errors.New("-meta-busy-clients must be in [1, 1000] and -meta-busy-util in [0.5, 0.99]")
	}
	cfg.meta = meta
	if cfg.scenarios, err = selectScenarios(*scenario, meta); err != nil {
		return cfg, fmt.Errorf("-scenario: %w", err)
	}
	if cfg.policies, err = selectPolicies(*policy, len(credits) > 0); err != nil {
		return cfg, fmt.Errorf("-policy: %w", err)
	}
	cfg.policies = append(cfg.policies, credits...)
	if cfg.parallel < 1 {
		return cfg, errors.New("-parallel must be at least 1")
	}
	return cfg, nil
}

func scenarioNames() []string {
	var names []string
	for _, s := range allScenarios(defaultMetaModel) {
		names = append(names, s.name)
	}
	return names
}

func policyNames() []string {
	var names []string
	for _, p := range allPolicies() {
		names = append(names, p.name)
	}
	return names
}

func selectScenarios(list string, m metaModel) ([]scenario, error) {
	all := allScenarios(m)
	if list == "all" {
		return all, nil
	}
	var out []scenario
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, s := range all {
			if s.name == n {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (have %s, or all)", n, strings.Join(scenarioNames(), ", "))
		}
	}
	return out, nil
}

// selectPolicies parses -policy. "all" with -credit rows means the
// standard rows and those; an empty list, only the -credit rows.
func selectPolicies(list string, haveCredits bool) ([]policySpec, error) {
	all := allPolicies()
	switch list {
	case "all":
		return defaultPolicies(), nil
	case "":
		if haveCredits {
			return nil, nil
		}
		return nil, errors.New("no policy")
	}
	var out []policySpec
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, p := range all {
			if p.name == n {
				out, found = append(out, p), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown policy %q (have %s, or all)", n, strings.Join(policyNames(), ", "))
		}
	}
	return out, nil
}

func run(w io.Writer, cfg config) {
	if cfg.sweep {
		runSweep(w, cfg)
		return
	}
	fmt.Fprintf(w, "retry-lab: virtual time, seed %d. Every client: MaxAttempts %d, backoff %v doubling to %v, full jitter,\n",
		cfg.seed, labMaxAttempts, labInitialBackoff, labMaxBackoff)
	fmt.Fprintln(w, "its own budget; successful attempts take 1s, failed ones 1ms (unless a scenario says otherwise).")
	if slices.ContainsFunc(cfg.scenarios, func(s scenario) bool { return s.rows == nil }) {
		fmt.Fprintln(w, "budgets:")
		for _, p := range cfg.policies {
			fmt.Fprintf(w, "  %-24s %s\n", p.name, p.desc)
		}
	}
	res := play(cfg.seed, cfg.scenarios, cfg.policies, cfg.parallel)
	printTables(w, cfg.scenarios, cfg.policies, res)
}
