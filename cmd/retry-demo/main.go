// Command retry-demo shows the retry interceptor at work against a flaky
// InferenceService that runs in the same process, on an in-memory
// connection (bufconn): no outside service, and it ends by itself in a few
// seconds.
//
//	go run ./cmd/retry-demo
//
// Each scenario scripts the server's misbehaviour (deterministically, keyed
// on the prompt). The scenarios run first through retry.Unary, printing
// every attempt as the server saw it and as the client's OnRetry hook
// reported it, then through a plain client for contrast, and a summary table
// puts the two side by side. Waits are jittered, so they (and the times)
// vary from run to run; the attempts and outcomes do not.
package main

import (
	"context"
	"errors"
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
		// Most scenarios here fail on purpose, one call at a time: the
		// default budget (10% of successes, 5 in hand, plus 1 retry per 2s) would rightly
		// stop most of their retries. The last section shows it at work.
		Budget: retry.NoBudget,
	}
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "retry-demo:", err)
		os.Exit(1)
	}
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
	fmt.Fprintf(w, "  %-34s  %8s  %13s  %s\n", "policy", "attempts", "amplification", "stopped by")
	for _, b := range []struct {
		name   string
		budget retry.Budget
	}{
		{"Budget: retry.NoBudget", retry.NoBudget},
		{"Budget: nil (the default)", nil},
	} {
		p := retry.Policy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Budget: b.budget}
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

func printIntro(w io.Writer, p retry.Policy) {
	d := retry.DefaultPolicy()
	if p.Multiplier == 0 {
		p.Multiplier = d.Multiplier
	}
	if p.MaxPushback == 0 {
		p.MaxPushback = d.MaxPushback
	}
	fmt.Fprintln(w, "retry-demo: a scripted, flaky InferenceService in this process (bufconn),")
	fmt.Fprintln(w, "called through retry.Unary and then through a plain client.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "policy:  MaxAttempts %d, backoff %v up to %v (x%g, %s jitter),\n",
		p.MaxAttempts, p.InitialBackoff, p.MaxBackoff, p.Multiplier, p.Jitter)
	fmt.Fprintf(w, "         PerAttemptTimeout %v, MaxPushback %v, IdempotencyHeader %q,\n",
		p.PerAttemptTimeout, p.MaxPushback, p.IdempotencyHeader)
	fmt.Fprintf(w, "         Methods %s\n", strings.Join(p.Methods, ", "))
	fmt.Fprintf(w, "caller:  every call has a %v deadline\n", callerDeadline)
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
