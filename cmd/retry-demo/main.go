// Command retry-demo shows the retry interceptor at work against a flaky
// InferenceService that runs in the same process, on an in-memory
// connection (bufconn): no outside service, and it ends by itself in a few
// seconds.
//
//	go run ./cmd/retry-demo
//	go run ./cmd/retry-demo -h    # what it does, and its flags
//
// Each scenario scripts the server's misbehaviour (deterministically, keyed
// on the prompt). The scenarios run first through retry.Unary, printing
// every attempt as the server saw it and as the client's OnRetry hook
// reported it, then through a plain client for contrast, and a summary table
// puts the two side by side. Waits are jittered, so they (and the times)
// vary from run to run; the attempts and outcomes do not. The policy is
// printed as Go source, every field it sets included, so a copy of it
// behaves as in the demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/seed4f82f287/retry"
	inferencev1 "github.com/seed4f82f287/retry/gen/inference/v1"
)

const idemHeader = "x-idempotency-key"

// demoPolicy is the client's retry policy: fields not set keep their
// defaults (full jitter, 2× multiplier, 30s MaxPushback, retry.Classify).
// The demo prints it (policySource) as it is.
func demoPolicy(onRetry func(retry.RetryEvent)) retry.Policy {
	return retry.Policy{
		MaxAttempts:       4,
		InitialBackoff:    100 * time.Millisecond,
		MaxBackoff:        time.Second,
		PerAttemptTimeout: 300 * time.Millisecond,
		Methods: []string{
			"/inference.v1.InferenceService/Generate",
			"/inference.v1.InferenceService/StreamGenerate",
		},
		IdempotencyHeader: idemHeader,
		OnRetry:           onRetry,
		// Most scenarios here fail on purpose, one call after another: the
		// default budget (3 failed retries in hand, earning 0.1 per
		// successful call and 0.05 per second) would rightly stop most of
		// their retries. The last section shows it at work.
		Budget: retry.NoBudget,
	}
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: go run ./cmd/retry-demo [-h]

retry-demo shows the retry interceptors of github.com/seed4f82f287/retry at
work. It starts a scripted, flaky InferenceService in this process (on an
in-memory bufconn connection: no network, nothing to set up) and, for each
scenario (a server restarting, rate limits with pushback, a spent quota, a
bad request, a hung attempt, an outage, a draining server, a server that
asks not to be retried, a non-idempotent method, a stream failing before and
after its first token):

  1. calls it through retry.Unary and retry.Stream, printing every attempt
     as the server saw it and as the client's OnRetry hook reported it;
  2. makes the same calls through a plain client, for contrast;
  3. prints a summary table of the two;
  4. makes 40 calls during an outage with retry.NoBudget and with the
     default retry budget, and counts the attempts the server received.

It prints the retry policy it uses as Go source (every field it sets,
Budget included), so that a copy of it behaves the same. It ends by itself
in about 5 seconds. Waits are jittered, so times vary from run to run; the
attempts and outcomes do not.

Flags:
`

// cli runs the demo with the command-line arguments args and returns the
// exit code: 0 after the demo or after -h (help on stdout, no demo), 2 for
// bad arguments, 1 if the demo fails.
func cli(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("retry-demo", flag.ContinueOnError)
	fs.SetOutput(stderr) // where the flag package reports a bad flag
	fs.Usage = func() {} // the help is printed below, on stdout, and only for -h
	help := fs.Bool("h", false, "print this help and exit, without running the demo")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp) || (err == nil && *help): // -h, -help, --help
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	case err == nil && fs.NArg() > 0:
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(stderr, err)
	}
	if err != nil {
		fmt.Fprintln(stderr, "usage: go run ./cmd/retry-demo [-h]")
		return 2
	}
	if err := run(stdout); err != nil {
		fmt.Fprintln(stderr, "retry-demo:", err)
		return 1
	}
	return 0
}

// run plays every scenario with and without retry and prints the results
// to w. It stops the server and closes the clients before it returns.
func run(w io.Writer) error {
	scenarios := append(unaryScenarios(), streamScenarios()...)

	srv := newFlakyServer(idemHeader, scenarios)
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	inferencev1.RegisterInferenceServiceServer(gs, srv)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() {
		gs.Stop() // ends hung handlers and closes lis
		<-served
	}()

	hooks := new(hookLog)
	policy := demoPolicy(hooks.record)
	retrying, err := dial(lis, &policy)
	if err != nil {
		return err
	}
	defer retrying.Close()
	plain, err := dial(lis, nil)
	if err != nil {
		return err
	}
	defer plain.Close()

	printIntro(w, policy)

	section(w, "WITH retry: retry.Unary(policy), retry.Stream(policy)")
	srv.reset()
	with := make([]result, len(scenarios))
	for i, sc := range scenarios {
		with[i] = play(inferencev1.NewInferenceServiceClient(retrying), sc, srv, hooks)
		printAttempts(w, with[i])
	}

	section(w, "WITHOUT retry: plain client, grpc.WithDisableRetry()")
	srv.reset()
	without := make([]result, len(scenarios))
	for i, sc := range scenarios {
		without[i] = play(inferencev1.NewInferenceServiceClient(plain), sc, srv, hooks)
	}
	printWithout(w, without)

	section(w, "SUMMARY")
	printSummary(w, without, with)

	section(w, "BUDGET: 40 calls in a row during an outage")
	return budgetDemo(w, lis, srv)
}

// budgetDemo makes the same 40 calls against the "outage" scenario (always
// Unavailable) with the default retry budget and with none, and prints the
// attempts the server saw: the budget keeps an outage from being multiplied
// by MaxAttempts.
func budgetDemo(w io.Writer, lis *bufconn.Listener, srv *flakyServer) error {
	const calls = 40
	budgetPolicy := func(b retry.Budget) retry.Policy {
		return retry.Policy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Budget: b}
	}
	fmt.Fprintf(w, "  one client per line: %s\n", policySource(budgetPolicy(nil), nil, false))
	fmt.Fprintf(w, "  plus the line's Budget (nil: the default, a fresh budget for the client)\n\n")
	fmt.Fprintf(w, "  %-34s  %8s  %13s  %s\n", "policy", "attempts", "amplification", "stopped by")
	for _, b := range []struct {
		name   string
		budget retry.Budget
	}{
		{"Budget: retry.NoBudget", retry.NoBudget},
		{"Budget: nil (the default)", nil},
	} {
		p := budgetPolicy(b.budget)
		conn, err := dial(lis, &p)
		if err != nil {
			return err
		}
		client := inferencev1.NewInferenceServiceClient(conn)
		srv.reset()
		reasons := map[string]int{}
		for range calls {
			ctx, cancel := context.WithTimeout(context.Background(), callerDeadline)
			_, err := client.Generate(ctx, &inferencev1.GenerateRequest{Prompt: "outage"})
			cancel()
			var re *retry.Error
			if errors.As(err, &re) {
				reasons[re.Reason.String()]++
			}
		}
		conn.Close()
		attempts := len(srv.attempts("outage"))
		var stops []string
		for _, r := range []string{retry.StopMaxAttempts.String(), retry.StopBudget.String()} {
			if reasons[r] > 0 {
				stops = append(stops, fmt.Sprintf("%s: %d", r, reasons[r]))
			}
		}
		fmt.Fprintf(w, "  %-34s  %8d  %13.2f  %s\n", b.name, attempts, float64(attempts)/calls, strings.Join(stops, ", "))
	}
	fmt.Fprintln(w, "\n  (go run ./cmd/retry-storm measures this across a fleet: outage, steady failures, jitter.)")
	return nil
}

// dial connects to the in-process server, through retry.Unary(*p) if p is
// not nil. gRPC's own retry is off either way, as retry.Unary asks.
func dial(lis *bufconn.Listener, p *retry.Policy) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
	}
	if p != nil {
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(retry.Unary(*p)),
			grpc.WithChainStreamInterceptor(retry.Stream(*p)))
	}
	return grpc.NewClient("passthrough:///bufnet", opts...)
}

// hookLog collects the OnRetry events of the call in progress. The
// scenarios run one at a time, so every event belongs to the current one.
type hookLog struct {
	mu     sync.Mutex
	events []retry.RetryEvent
}

func (h *hookLog) record(ev retry.RetryEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *hookLog) take() []retry.RetryEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := h.events
	h.events = nil
	return evs
}

// result is one scenario's call, from both ends.
type result struct {
	sc      scenario
	text    string
	err     error
	elapsed time.Duration
	retries []retry.RetryEvent // the client's OnRetry events
	server  []serverEvent      // the attempts the server saw
}

// play makes the scenario's call under the caller deadline.
func play(c inferencev1.InferenceServiceClient, sc scenario, srv *flakyServer, hooks *hookLog) result {
	hooks.take()
	ctx, cancel := context.WithTimeout(context.Background(), callerDeadline)
	defer cancel()
	start := time.Now()
	text, err := sc.call(ctx, c, sc.name)
	r := result{sc: sc, text: text, err: err, elapsed: time.Since(start), retries: hooks.take()}
	r.server = append([]serverEvent(nil), srv.attempts(sc.name)...)
	sort.SliceStable(r.server, func(i, j int) bool { return r.server[i].attempt < r.server[j].attempt })
	return r
}

// retryErr returns the call's *retry.Error, or nil if it has none (a
// success, or an error the interceptor passed through).
func (r result) retryErr() *retry.Error {
	var re *retry.Error
	if errors.As(r.err, &re) {
		return re
	}
	return nil
}

// attempts is the number of attempts the client made. Only a failure says
// so (retry.Error.Attempts); a success made one more than it retried.
func (r result) attempts() int {
	if re := r.retryErr(); re != nil {
		return re.Attempts
	}
	return len(r.retries) + 1
}

// outcome is "OK" or the final status code.
func (r result) outcome() string {
	if r.err == nil {
		return "OK"
	}
	return status.Code(r.err).String()
}

// stopped says why the client made no further attempt.
func (r result) stopped() string {
	switch re := r.retryErr(); {
	case r.err == nil:
		return "-"
	case re != nil:
		return re.Reason.String()
	case len(r.retries) == 0:
		return "not in Policy.Methods"
	}
	return "?"
}

// demoHooks names the demo's function fields when it prints a policy.
var demoHooks = map[string]string{"OnRetry": "onRetry"}

func printIntro(w io.Writer, p retry.Policy) {
	fmt.Fprintln(w, "retry-demo: a scripted, flaky InferenceService in this process (bufconn),")
	fmt.Fprintln(w, "called through retry.Unary and then through a plain client.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "policy, as Go source (every field the demo sets; the others keep their defaults):")
	fmt.Fprintln(w)
	for _, line := range strings.Split(policySource(p, demoHooks, true), "\n") {
		fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(line, "\t", "    "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  onRetry is the demo's hook: it records each retry for the output below.")
	fmt.Fprintln(w, "  Budget: retry.NoBudget lets every scenario retry as its script asks; the")
	fmt.Fprintln(w, "  default budget (Budget: nil) is at work in the last section.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "caller: every call has a %v deadline\n", callerDeadline)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each attempt shows what the server's handler saw and answered (prev: the")
	fmt.Fprintln(w, "grpc-previous-rpc-attempts header; key: the idempotency key, the same on")
	fmt.Fprintln(w, "every attempt of one call) and what the client's OnRetry hook reported (code,")
	fmt.Fprintln(w, "class, wait and where it came from), or on the last attempt the call's result.")
}

func section(w io.Writer, title string) {
	fmt.Fprintf(w, "\n== %s %s\n", title, strings.Repeat("=", max(3, 76-len(title))))
}

// printAttempts prints one retried call: each attempt as the server saw it
// (the attempt-count header, the idempotency key, its answer) and as the
// client saw it (OnRetry's code, class and wait, or the call's result).
func printAttempts(w io.Writer, r result) {
	fmt.Fprintf(w, "\n%s · %s · %s\n", r.sc.name, r.sc.method, r.sc.about)
	n := max(len(r.server), r.attempts())
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "  #%d  server  ", i)
		if i <= len(r.server) {
			ev := r.server[i-1]
			fmt.Fprintf(w, "prev %-2s key %-10s %s\n", orDash(ev.prev), shortKey(ev.key), serverAnswer(ev, "attempt's"))
		} else {
			fmt.Fprintln(w, "(never reached the server)")
		}
		code, class, then := clientView(r, i)
		fmt.Fprintf(w, "      client  %-18s %-13s %s\n", code, class, then)
	}
	switch {
	case r.err == nil:
		fmt.Fprintf(w, "  => OK %q after %s in %s\n", r.text, plural(r.attempts(), "attempt"), ms(r.elapsed))
	case r.retryErr() == nil:
		fmt.Fprintf(w, "  => %s in %s, untouched by the interceptor: %s\n", r.outcome(), ms(r.elapsed), r.stopped())
	default:
		fmt.Fprintf(w, "  => %s after %s in %s, stopped: %s\n", r.outcome(), plural(r.attempts(), "attempt"), ms(r.elapsed), r.stopped())
	}
}

// serverAnswer is what the server answered; whose says whose context ended
// a hung attempt.
func serverAnswer(ev serverEvent, whose string) string {
	if ev.hung {
		return fmt.Sprintf("(hung %s, until the %s context ended)", ms(ev.took.Round(10*time.Millisecond)), whose)
	}
	return ev.answer
}

// clientView is attempt i as the client saw it: its OnRetry event, or for
// the last attempt the call's result.
func clientView(r result, i int) (code, class, then string) {
	for _, ev := range r.retries {
		if ev.Attempt == i {
			from := "backoff"
			if ev.Pushback {
				from = "server pushback"
			}
			return ev.Code.String(), ev.Class.String(), fmt.Sprintf("retry in %s (%s)", ms(ev.Delay), from)
		}
	}
	if i != r.attempts() {
		return "?", "?", "(no OnRetry event)"
	}
	if r.err == nil {
		return "OK", "", "done"
	}
	if re := r.retryErr(); re != nil {
		return r.outcome(), re.Class.String(), "stop: " + re.Reason.String()
	}
	return r.outcome(), "-", "returned as is (not a *retry.Error)"
}

func printWithout(w io.Writer, rs []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  scenario\tserver answered\tclient got\ttime")
	for _, r := range rs {
		saw := "(nothing)"
		if len(r.server) > 0 {
			saw = serverAnswer(r.server[0], "caller's")
			if len(r.server) > 1 {
				saw += fmt.Sprintf(" and %d more attempts", len(r.server)-1)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.sc.name, saw, r.outcome(), ms(r.elapsed))
	}
	tw.Flush()
}

func printSummary(w io.Writer, without, with []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  scenario\twithout retry\t\twith retry\tattempts\tstopped\ttime")
	for i, r := range with {
		wo := without[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			r.sc.name, wo.outcome(), ms(wo.elapsed), r.outcome(), r.attempts(), r.stopped(), ms(r.elapsed))
	}
	tw.Flush()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Round(time.Millisecond).Milliseconds())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortKey abbreviates an idempotency key: it is the same on every attempt
// of a call, which is all the reader needs to see.
func shortKey(k string) string {
	if len(k) > 8 {
		return k[:8] + "…"
	}
	return orDash(k)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
