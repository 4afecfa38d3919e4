// Command retry-config reads a gRPC service config (JSON) and prints what
// package retry makes of it: one route per methodConfig entry, the budget,
// and the notes (values clamped to gRFC A6's limits, fields ignored or
// misspelled); with -method, which entry applies to that method and why.
// It is the quick check for "my service config does nothing". It reads
// only the file: no network.
//
//	go run ./cmd/retry-config service-config.json
//	go run ./cmd/retry-config -method /inference.v1.InferenceService/Generate service-config.json
//	cat service-config.json | go run ./cmd/retry-config -method /pkg.Svc/M -
//
// Exit status: 0 when the config is valid, 1 when it is not (the error
// names the JSON path and the rule), 2 for a usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/seed4f82f287/retry"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// methods is a repeatable -method flag.
type methods []string

func (m *methods) String() string     { return strings.Join(*m, ",") }
func (m *methods) Set(s string) error { *m = append(*m, s); return nil }

// run is the command, with its arguments and streams: it returns the exit
// status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("retry-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ms methods
	fs.Var(&ms, "method", "explain the policy of this full method name, `/package.Service/Method` (repeatable)")
	allowMore := fs.Bool("allow-more-attempts", false, "keep maxAttempts above 5 instead of clamping it as gRFC A6 does (retry.ParseOptions.AllowMoreAttempts)")
	noBudget := fs.Bool("no-budget", false, "without retryThrottling, retry as grpc-go would instead of under the default budget (retry.ParseOptions.Budget = retry.NoBudget)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: retry-config [-method /package.Service/Method]... [-allow-more-attempts] [-no-budget] file.json | -")
		fmt.Fprintln(stderr, "Reads a gRPC service config and prints the retry routes, budget and notes that package retry makes of it.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
		name = "(stdin)"
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		fmt.Fprintln(stderr, "retry-config:", err)
		return 1
	}
	opts := retry.ParseOptions{AllowMoreAttempts: *allowMore}
	if *noBudget {
		opts.Budget = retry.NoBudget
	}
	sc, err := opts.Parse(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", name, sc)
	for _, m := range ms {
		fmt.Fprintf(stdout, "\n%s\n", sc.Explain(m))
	}
	return 0
}
