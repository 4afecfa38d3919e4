// Command retry-storm simulates retry storms over real gRPC (in memory, on
// bufconn) and measures how the retry library's budgets and jitter modes
// contain them, and how hedging cuts a latency tail. The default run
// (outage, steady, herd) takes under a minute, as does tail,ttft:
//
//	go run ./cmd/retry-storm
//	go run ./cmd/retry-storm -scenario outage -policy nobudget,ratio -clients 100 -parallel 1
//	go run ./cmd/retry-storm -scenario herd -herd-scale 1   # the study's time scale, ~100s
//	go run ./cmd/retry-storm -scenario tail,ttft
//
// Scenarios:
//
//   - outage: -clients clients (50), each with its own connection and
//     interceptor (so its own budget, unless the policy shares one), each
//     starting a logical call every 1/-rate (20/s) at a fixed phase offset,
//     each call on its own goroutine with a -deadline (2s): an open loop, so
//     slow calls do not lower the offered load. The server has -capacity
//     (24) handler slots of -service (5ms) each and sheds what does not fit
//     with ResourceExhausted. -timeline scripts healthy (0.5s), then a full
//     outage (4s: every attempt fails Unavailable at once), then healthy
//     again (2s). The tables show, per policy and phase, the attempts per
//     logical call (amplification), the success rate, latencies, and the
//     time to recover after the outage.
//   - steady: the same load with a steady rate of random transient
//     failures (-steady: 1%, 5%, 20% of attempts fail Unavailable), after a
//     warm-up (-steady-time).
//   - herd: the AWS "Exponential Backoff and Jitter" study: -herd-clients
//     (100) clients each make one optimistic-concurrency write to one row,
//     and retry conflicts with each jitter mode. Time is scaled by
//     -herd-scale (0.1) so that un-jittered backoff ends in seconds.
//   - tail: the policy lab's tail scenario, hedged over real gRPC. The
//     server's attempts take a log-normal time (median 100ms, σ 0.3),
//     except stragglers (-tail-straggle: 2%, 5% of attempts, drawn
//     independently) that take 10× as long; a cancelled attempt returns at
//     once and is counted. -tail-clients (10) clients × -tail-rate (25/s),
//     open loop, each with its own connection (so its own learned delay,
//     load guard and budget); calls scheduled in the measured time after a
//     warm-up (-tail-time: 2s, 20s) are measured. Rows: no hedging, a fixed
//     delay at the healthy p95 (164ms) with MaxExtraLoad 0.25 and with the
//     default 0.05, and the learned delay (Hedging{}), all MaxAttempts 2.
//     The latencies are a hash of (seed, call, attempt), the same for every
//     row; -tail-scale scales them. The 8 runs (4 rows × 2 shares) are
//     played at once (-tail-parallel), each on its own server.
//   - ttft: the same with server streams: an attempt's first message comes
//     after its latency (then 4 more, 20ms apart), and the time to first
//     message is measured.
//
// Attempts are counted on the server (every RPC that arrives) and logical
// calls on the client; both are attributed to the phase in which the
// logical call started. The storm's failures are a hash of (seed, call,
// attempt), the same for every policy and every run; the herd's network
// delays are a hash too. Only the library's jitter and the scheduler vary,
// so two runs tell the same story. Runs of the outage and steady scenarios
// are played -parallel (2) at a time, each on its own server; the "max lag"
// column shows how late the latest call started, a measure of scheduling
// noise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/seed4f82f287/retry"
)

// config is the command line.
type config struct {
	storm       stormConfig
	timeline    [3]time.Duration // healthy, outage, recovery
	steadyRates []float64
	steadyWarm  time.Duration
	steadyDur   time.Duration
	policies    []policySpec
	explicit    bool // -policy named the policies
	scenarios   map[string]bool
	parallel    int
	herd        herdConfig
	tail        tailConfig
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "retry-storm:", err)
		os.Exit(2)
	}
	// Fewer collections, fewer stop-the-world pauses in the timing; the heap
	// stays small (tens of MiB) either way. GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "retry-storm:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("retry-storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      config
		timeline = fs.String("timeline", "0.5s,4s,2s", "outage scenario: durations of the healthy, outage and recovery phases")
		steady   = fs.String("steady", "1%,5%,20%", "steady scenario: the rates of random Unavailable failures, one run each")
		steadyT  = fs.String("steady-time", "0.5s,1.5s", "steady scenario: warm-up (not measured) and measured durations")
		policy   = fs.String("policy", "all", "policies to compare, a comma list or all (jitter variants nobudget-* run in the outage scenario only, unless named)")
		scenario = fs.String("scenario", "outage,steady,herd", "scenarios to run, a comma list of outage, steady, herd, tail, ttft, or all")
		tailT    = fs.String("tail-time", "2s,20s", "tail/ttft: warm-up (not measured) and measured durations")
		straggle = fs.String("tail-straggle", "2%,5%", "tail/ttft: the shares of attempts that straggle (10× slower), one run each")
		seed     = fs.Uint64("seed", 1, "seed of the server's failures and the herd's network delays")
	)
	fs.IntVar(&cfg.storm.clients, "clients", 50, "outage/steady: concurrent clients, each with its own connection and interceptor")
	fs.IntVar(&cfg.storm.capacity, "capacity", 24, "outage/steady: concurrent handlers of the server; more are shed with ResourceExhausted")
	fs.Float64Var(&cfg.storm.rate, "rate", 20, "outage/steady: logical calls per second per client")
	fs.DurationVar(&cfg.storm.service, "service", 5*time.Millisecond, "outage/steady: handler time of a successful call")
	fs.DurationVar(&cfg.storm.deadline, "deadline", 2*time.Second, "outage/steady: deadline of each logical call")
	fs.IntVar(&cfg.parallel, "parallel", 2, "outage/steady: runs (policy, failure rate) played at once, each on its own server; 1 is the cleanest timing")
	fs.IntVar(&cfg.herd.clients, "herd-clients", 100, "herd: clients, each making one write")
	fs.Float64Var(&cfg.herd.scale, "herd-scale", 0.1, "herd: time scale of the backoff (base, 2s cap) and network delays (10ms±2ms); 1 is the study's")
	fs.DurationVar(&cfg.herd.base, "herd-base", herdBase, "herd: InitialBackoff at scale 1 (the study's first sleep: 2 × its base of 5ms)")
	fs.IntVar(&cfg.herd.runs, "herd-runs", 1, "herd: runs per jitter mode, averaged (the study averaged 100)")
	fs.IntVar(&cfg.tail.clients, "tail-clients", 10, "tail/ttft: clients, each with its own connection and interceptor")
	fs.Float64Var(&cfg.tail.rate, "tail-rate", 25, "tail/ttft: calls per second per client")
	fs.Float64Var(&cfg.tail.scale, "tail-scale", 1, "tail/ttft: time scale of the server's latencies (median 100ms) and of the fixed hedge delay")
	fs.IntVar(&cfg.tail.parallel, "tail-parallel", 8, "tail/ttft: runs (policy, straggler share) played at once, each on its own server")
	herdJ := fs.String("herd-jitter", "none,full,equal,decorrelated,proportional", "herd: jitter modes to compare; ratios are to none")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.storm.seed, cfg.herd.seed, cfg.tail.seed = *seed, *seed, *seed

	ds, err := parseDurations(*timeline, 3)
	if err != nil {
		return cfg, fmt.Errorf("-timeline: %w", err)
	}
	copy(cfg.timeline[:], ds)
	if cfg.timeline[0] <= 0 || cfg.timeline[1] <= 0 {
		return cfg, errors.New("-timeline: the healthy and outage phases must be longer than 0")
	}
	ds, err = parseDurations(*steadyT, 2)
	if err != nil {
		return cfg, fmt.Errorf("-steady-time: %w", err)
	}
	cfg.steadyWarm, cfg.steadyDur = ds[0], ds[1]
	if cfg.steadyDur <= 0 {
		return cfg, errors.New("-steady-time: the measured duration must be longer than 0")
	}
	if cfg.steadyRates, err = parseRates(*steady); err != nil {
		return cfg, fmt.Errorf("-steady: %w", err)
	}
	ds, err = parseDurations(*tailT, 2)
	if err != nil {
		return cfg, fmt.Errorf("-tail-time: %w", err)
	}
	cfg.tail.warm, cfg.tail.measured = ds[0], ds[1]
	if cfg.tail.measured <= 0 {
		return cfg, errors.New("-tail-time: the measured duration must be longer than 0")
	}
	if cfg.tail.straggles, err = parseRates(*straggle); err != nil {
		return cfg, fmt.Errorf("-tail-straggle: %w", err)
	}
	if cfg.policies, cfg.explicit, err = selectPolicies(*policy); err != nil {
		return cfg, fmt.Errorf("-policy: %w", err)
	}
	for _, name := range strings.Split(*herdJ, ",") {
		j, ok := jitterByName(strings.TrimSpace(name))
		if !ok {
			return cfg, fmt.Errorf("-herd-jitter: unknown mode %q (have none, full, equal, decorrelated, proportional)", name)
		}
		cfg.herd.jitters = append(cfg.herd.jitters, j)
	}
	cfg.scenarios = make(map[string]bool)
	for _, s := range strings.Split(*scenario, ",") {
		switch s = strings.TrimSpace(s); s {
		case "all":
			for _, s := range allScenarios {
				cfg.scenarios[s] = true
			}
		case "outage", "steady", "herd", "tail", "ttft":
			cfg.scenarios[s] = true
		default:
			return cfg, fmt.Errorf("-scenario: unknown scenario %q (have %s, all)", s, strings.Join(allScenarios, ", "))
		}
	}
	switch {
	case cfg.storm.clients < 1, cfg.herd.clients < 1, cfg.tail.clients < 1:
		return cfg, errors.New("-clients, -herd-clients and -tail-clients must be at least 1")
	case cfg.storm.capacity < 1:
		return cfg, errors.New("-capacity must be at least 1")
	case !(cfg.storm.rate > 0 && cfg.storm.rate <= 1000):
		return cfg, errors.New("-rate must be in (0, 1000]")
	case cfg.storm.deadline <= 0 || cfg.storm.service < 0:
		return cfg, errors.New("-deadline must be positive and -service not negative")
	case cfg.parallel < 1, cfg.tail.parallel < 1:
		return cfg, errors.New("-parallel and -tail-parallel must be at least 1")
	case !(cfg.tail.rate > 0 && cfg.tail.rate <= 1000):
		return cfg, errors.New("-tail-rate must be in (0, 1000]")
	case !(cfg.tail.scale > 0 && cfg.tail.scale <= 10):
		return cfg, errors.New("-tail-scale must be in (0, 10]")
	case !(cfg.herd.scale > 0 && cfg.herd.scale <= 10):
		return cfg, errors.New("-herd-scale must be in (0, 10]")
	case cfg.herd.base <= 0 || cfg.herd.base > herdCap || cfg.herd.runs < 1:
		return cfg, errors.New("-herd-base must be in (0, 2s] and -herd-runs at least 1")
	}
	return cfg, nil
}

// allScenarios are the scenarios, in the order they run.
var allScenarios = []string{"outage", "steady", "herd", "tail", "ttft"}

// parseRates parses a comma list of rates in [0, 1], each a number or a
// percentage.
func parseRates(list string) ([]float64, error) {
	var rates []float64
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		scale := 1.0
		if strings.HasSuffix(f, "%") {
			f, scale = strings.TrimSuffix(f, "%"), 0.01
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v*scale >= 0 && v*scale <= 1) {
			return nil, fmt.Errorf("%q is not a rate in [0, 1] or [0%%, 100%%]", f)
		}
		rates = append(rates, v*scale)
	}
	return rates, nil
}

func parseDurations(s string, n int) ([]time.Duration, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n {
		return nil, fmt.Errorf("want %d comma-separated durations, got %q", n, s)
	}
	ds := make([]time.Duration, n)
	for i, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a duration ≥ 0", p)
		}
		ds[i] = d
	}
	return ds, nil
}

// run plays the selected scenarios and prints their tables to w.
func run(ctx context.Context, w io.Writer, cfg config) error {
	began := time.Now()
	c := cfg.storm
	fmt.Fprintf(w, "retry-storm: gRPC over bufconn, GOMAXPROCS %d, seed %d\n", runtime.GOMAXPROCS(0), c.seed)
	if cfg.scenarios["outage"] || cfg.scenarios["steady"] {
		fmt.Fprintf(w, "load: %d clients × %g calls/s (open loop, fixed phase offsets), deadline %v per call; server: %d handlers of %v each, beyond that shed (ResourceExhausted)\n",
			c.clients, c.rate, c.deadline, c.capacity, c.service)
		fmt.Fprintf(w, "retrying policies: MaxAttempts %d, backoff %v doubling to %v (simulation values, not the defaults 1s/10s); %d runs at once, each on its own server\n",
			simMaxAttempts, simInitialBackoff, simMaxBackoff, cfg.parallel)
		fmt.Fprintln(w, "policies:")
		for _, p := range cfg.policies {
			fmt.Fprintf(w, "  %-22s %s\n", p.name, p.desc)
		}
	}
	if cfg.scenarios["outage"] {
		if err := runOutage(ctx, w, cfg); err != nil {
			return err
		}
	}
	if cfg.scenarios["steady"] {
		if err := runSteady(ctx, w, cfg); err != nil {
			return err
		}
	}
	if cfg.scenarios["herd"] {
		if err := runHerdStudy(ctx, w, cfg.herd); err != nil {
			return err
		}
	}
	for _, name := range []string{"tail", "ttft"} {
		if !cfg.scenarios[name] {
			continue
		}
		stream := name == "ttft"
		results, err := runTailScenario(ctx, cfg.tail, stream)
		if err != nil {
			return err
		}
		printTail(w, cfg.tail, stream, results)
	}
	fmt.Fprintf(w, "\ntotal run time %.1fs\n", time.Since(began).Seconds())
	return nil
}

// outagePhases is the outage scenario's timeline; phase 1 is the outage.
func outagePhases(tl [3]time.Duration) []phaseSpec {
	return []phaseSpec{
		{name: "healthy", dur: tl[0]},
		{name: "outage", dur: tl[1], failP: 1},
		{name: "recovery", dur: tl[2]},
	}
}

func runOutage(ctx context.Context, w io.Writer, cfg config) error {
	phases := outagePhases(cfg.timeline)
	specs := cfg.policies
	results := make([]stormResult, len(specs))
	err := parallelDo(cfg.parallel, len(specs), func(i int) (err error) {
		results[i], err = runStorm(ctx, cfg.storm, phases, specs[i], 1)
		return err
	})
	if err != nil {
		return err
	}
	section(w, fmt.Sprintf("OUTAGE: healthy %v → full outage %v (every attempt fails Unavailable at once) → recovery %v",
		cfg.timeline[0], cfg.timeline[1], cfg.timeline[2]))
	fmt.Fprintln(w, "Per phase of the logical calls' start: calls (client), attempts (server), amplification = attempts/call,")
	fmt.Fprintln(w, "success rate, calls that a budget stopped, latency of logical calls.")
	printPhases(w, results, phases)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Summary. peak = most attempts arriving in %v, in units of the offered load; recover = time after the outage ends\n", binWidth)
	fmt.Fprintf(w, "from which every %v window of call completions, to the end of the run, has ≥ %.0f%% success (n/a: never);\n", recoveryWindow, 100*recoveryTarget)
	fmt.Fprintln(w, "max lag = latest start of a call after its schedule (scheduling noise).")
	tw := newTable(w)
	fmt.Fprintln(tw, "policy\tamp outage\tamp overall\tsuccess outage\tsuccess overall\tpeak\tshed\trecover\tmax lag\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%s\t%s\t%.1fx\t%d\t%s\t%s\t\n", r.policy,
			r.phases[1].amplification(), r.total.amplification(),
			pct(r.phases[1].success()), pct(r.total.success()), r.peak, r.shed, recoveryString(r), ms(r.maxLag))
	}
	tw.Flush()
	return nil
}

func runSteady(ctx context.Context, w io.Writer, cfg config) error {
	var specs []policySpec
	for _, p := range cfg.policies {
		if cfg.explicit || !p.variant {
			specs = append(specs, p)
		}
	}
	type job struct {
		rate float64
		spec policySpec
	}
	var jobs []job
	for _, r := range cfg.steadyRates {
		for _, s := range specs {
			jobs = append(jobs, job{r, s})
		}
	}
	results := make([]stormResult, len(jobs))
	err := parallelDo(cfg.parallel, len(jobs), func(i int) (err error) {
		j := jobs[i]
		phases := []phaseSpec{{name: "warm-up", dur: cfg.steadyWarm, failP: j.rate}, {name: "steady", dur: cfg.steadyDur, failP: j.rate}}
		results[i], err = runStorm(ctx, cfg.storm, phases, j.spec, -1)
		results[i].failP = j.rate
		return err
	})
	if err != nil {
		return err
	}
	section(w, fmt.Sprintf("STEADY: random transient failures (Unavailable, hash of seed/call/attempt), warm-up %v then %v measured", cfg.steadyWarm, cfg.steadyDur))
	fmt.Fprintln(w, "Calls that started in the measured phase (the warm-up spends the budgets' initial balance):")
	tw := newTable(w)
	fmt.Fprintln(tw, "failures\tpolicy\tcalls\tattempts\tamp\tsuccess\tfailed calls\tbudget stops\tp50\tp99\tshed\t")
	for _, r := range results {
		p := r.phases[1]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%s\t%d\t%d\t%s\t%s\t%d\t\n", pct(r.failP), r.policy,
			p.calls, p.attempts, p.amplification(), pct(p.success()), p.calls-p.ok, p.budgetStops, ms(p.p50), ms(p.p99), r.shed)
	}
	tw.Flush()
	return nil
}

func runHerdStudy(ctx context.Context, w io.Writer, cfg herdConfig) error {
	var results []herdResult
	for _, j := range cfg.jitters {
		mean := herdResult{jitter: j}
		for run := range cfg.runs {
			c := cfg
			c.seed = cfg.seed + uint64(run)
			r, err := runHerd(ctx, c, j)
			if err != nil {
				return err
			}
			mean.calls += r.calls / float64(cfg.runs)
			mean.completion += r.completion / time.Duration(cfg.runs)
			mean.writes += r.writes
			mean.failed += r.failed
		}
		results = append(results, mean)
	}
	p := herdPolicy(retry.FullJitter, cfg)
	section(w, fmt.Sprintf("HERD: the AWS \"Exponential Backoff and Jitter\" study, %d clients, one OCC write each", cfg.clients))
	fmt.Fprintf(w, "Each attempt is one RPC: network delay, read the row's version, 2 network delays, write if the version is unchanged\n")
	fmt.Fprintf(w, "(else Aborted, classified Transient by Policy.Classify), network delay back; delays |N(10ms, 2ms)| × %g.\n", cfg.scale)
	fmt.Fprintf(w, "Policy: MaxAttempts %d, InitialBackoff %v, MaxBackoff %v, Budget: retry.NoBudget (time scale %g of %v/%v).\n",
		herdMaxAttempts, p.InitialBackoff, p.MaxBackoff, cfg.scale, cfg.base, herdCap)
	fmt.Fprintf(w, "calls = write attempts seen by the server; completion = until the last client finished (real time")
	if cfg.scale != 1 {
		fmt.Fprintf(w, "; ÷ %g for the study's scale", cfg.scale)
	}
	fmt.Fprintf(w, "); mean of %d run(s) per mode.\n", cfg.runs)
	tw := newTable(w)
	fmt.Fprintln(tw, "jitter\tcalls\tcalls/client\tcompletion\tcalls / none\ttime / none\twrites\tgave up\tAWS calls\tAWS time\t")
	ref, hasRef := herdResult{}, false
	for _, r := range results {
		if r.jitter == retry.NoJitter {
			ref, hasRef = r, true
		}
	}
	for _, r := range results {
		aws, hasAWS := awsPublished[r.jitter]
		awsCalls, awsTime := "", ""
		if hasAWS {
			awsCalls, awsTime = strconv.Itoa(aws.calls), fmt.Sprintf("%.1fs", aws.time.Seconds())
		}
		callRatio, timeRatio := "", ""
		if hasRef {
			callRatio = fmt.Sprintf("%.3f", r.calls/ref.calls)
			timeRatio = fmt.Sprintf("%.3f", r.completion.Seconds()/ref.completion.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", r.jitter, r.calls,
			r.calls/float64(cfg.clients), ms(r.completion), callRatio, timeRatio,
			r.writes, r.failed, awsCalls, awsTime)
	}
	tw.Flush()
	fmt.Fprintln(w, "AWS ratios to none at 100 clients: full 0.428 calls / 0.078 time, equal 0.436 / 0.103, decorrelated 0.538 / 0.073.")
	fmt.Fprintln(w, "Note: the study's base is 5ms but its first sleep is 2 × base (its attempt count starts at 1): InitialBackoff 10ms matches it.")
	if cfg.scale < 1 {
		fmt.Fprintf(w, "Note: at scale %g the conflict window is %v, and real-time noise (gRPC, scheduler: ~1-5ms) de-synchronises the\n", cfg.scale, time.Duration(20*cfg.scale*float64(time.Millisecond)))
		fmt.Fprintln(w, "un-jittered clients, so none makes fewer calls than at the study's scale; -herd-scale 1 (about 100s) reproduces it.")
	}
	return nil
}

func printPhases(w io.Writer, results []stormResult, phases []phaseSpec) {
	tw := newTable(w)
	fmt.Fprintln(tw, "policy\tphase\tcalls\tattempts\tamp\tsuccess\tbudget stops\tp50\tp99\t")
	for _, r := range results {
		name := r.policy
		for i, p := range r.phases {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%s\t%d\t%s\t%s\t\n", name, phases[i].name,
				p.calls, p.attempts, p.amplification(), pct(p.success()), p.budgetStops, ms(p.p50), ms(p.p99))
			name = ""
		}
		t := r.total
		fmt.Fprintf(tw, "\toverall\t%d\t%d\t%.3f\t%s\t%d\t%s\t%s\t\n",
			t.calls, t.attempts, t.amplification(), pct(t.success()), t.budgetStops, ms(t.p50), ms(t.p99))
	}
	tw.Flush()
}

func jitterByName(name string) (retry.Jitter, bool) {
	for _, j := range herdJitters {
		if j.String() == name {
			return j, true
		}
	}
	return 0, false
}

func recoveryString(r stormResult) string {
	switch {
	case !r.hasRecovery || !r.recovered:
		return "n/a"
	}
	return ms(r.recovery)
}

// parallelDo calls f(0), ..., f(n-1), at most par at once, and returns the
// first error.
func parallelDo(par, n int, f func(int) error) error {
	sem := make(chan struct{}, par)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func section(w io.Writer, title string) {
	fmt.Fprintf(w, "\n== %s ==\n", title)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

func pct(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
