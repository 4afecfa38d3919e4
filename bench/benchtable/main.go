// Command benchtable turns the raw output of bench/run.sh (go test -bench,
// several rounds) or of bench/callgrind.sh into the Markdown tables of the
// README's benchmark section, with the spread across rounds in every cell:
//
//	go run ./bench/benchtable bench/results/20260101-120000.txt
//	go run ./bench/benchtable bench/results/callgrind-20260101-120000.txt
//
// Counts that vary between rounds (allocs/op flips by one now and then, as
// gRPC's pools and the runtime's background work decide) are shown as
// min–max; times as the median and min–max; callgrind instruction counts
// as the median, min–max, the spread (half the range, relative to the
// median) and the ratio of medians to the bare client.
//
// Input lines are benchmark result lines, e.g.
//
//	BenchmarkUnary/client=bare-2  30000  41234 ns/op  8938 B/op  149 allocs/op
//	BenchmarkUnary/client=bare  4000  168458 instr/op
//
// Every other line is ignored. The client is the "client=" element of the
// name; the rest of the name, without "Benchmark" and the -GOMAXPROCS
// suffix, is the benchmark.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: go run ./bench/benchtable RESULTS.txt...  (raw output of bench/run.sh or bench/callgrind.sh)")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var rs results
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		err = rs.read(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	if len(rs.values) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines in", strings.Join(flag.Args(), ", "))
		os.Exit(1)
	}
	rs.write(os.Stdout)
}

// key is one cell: a benchmark, a client and a unit.
type key struct{ bench, client, unit string }

type results struct {
	benches []string            // in order of first appearance
	clients map[string][]string // by benchmark, likewise
	units   []string            // likewise
	values  map[key][]float64
}

func (rs *results) read(r io.Reader) error {
	if rs.values == nil {
		rs.values = make(map[key][]float64)
		rs.clients = make(map[string][]string)
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (e.g. a benchmark's log output)
		}
		bench, client := splitName(f[0])
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%q: %v", sc.Text(), err)
			}
			k := key{bench, client, f[i+1]}
			addOnce(&rs.benches, bench)
			cs := rs.clients[bench]
			addOnce(&cs, client)
			rs.clients[bench] = cs
			addOnce(&rs.units, k.unit)
			rs.values[k] = append(rs.values[k], v)
		}
	}
	return sc.Err()
}

// splitName splits "BenchmarkClientStream/chunks=16/client=bare-2" into
// "ClientStream/chunks=16" and "bare".
func splitName(name string) (bench, client string) {
	name = strings.TrimPrefix(name, "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	var rest []string
	for _, e := range strings.Split(name, "/") {
		if c, ok := strings.CutPrefix(e, "client="); ok {
			client = c
			continue
		}
		rest = append(rest, e)
	}
	return strings.Join(rest, "/"), client
}

func addOnce(list *[]string, s string) {
	if !slices.Contains(*list, s) {
		*list = append(*list, s)
	}
}

// Names used in the README.
var (
	clientNames = map[string]string{
		"bare":          "bare",
		"grpc-builtin":  "grpc built-in",
		"middleware":    "middleware",
		"ours-default":  "ours (default)",
		"ours-nobudget": "ours, NoBudget",
		"ours-throttle": "ours, throttle",
		"direct":        "direct call",
	}
	benchNames = map[string]string{
		"Unary":                   "unary success",
		"UnaryParallel":           "unary success, `RunParallel`",
		"ServerStream":            "server stream, 16 messages",
		"ClientStream/chunks=16":  "client stream, 16 sends kept for replay",
		"ClientStream/chunks=256": "client stream, 256 sends kept for replay",
		"UnaryRetried":            "one retried call (Unavailable, then OK)",
		"InterceptorOnly":         "interceptor alone (`RunParallel`)",
	}
)

func nameOr(m map[string]string, s string) string {
	if n, ok := m[s]; ok {
		return n
	}
	return s
}

func (rs *results) write(w io.Writer) {
	first := true
	section := func(title string) {
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		fmt.Fprintln(w, title)
		fmt.Fprintln(w)
	}
	if slices.Contains(rs.units, "instr/op") {
		for _, b := range rs.benches {
			if rs.has(b, "instr/op") {
				section(fmt.Sprintf("**Instructions per call, %s** (callgrind; %s):", nameOr(benchNames, b), rs.runs(b, "instr/op")))
				rs.instrTable(w, b)
			}
		}
	}
	var main, alone []string // the benchmarks over bufconn, and the interceptor alone
	for _, b := range rs.benches {
		if !rs.has(b, "ns/op") {
			continue
		}
		if b == "InterceptorOnly" {
			alone = append(alone, b)
		} else {
			main = append(main, b)
		}
	}
	if len(main) > 0 {
		section(fmt.Sprintf("**Allocations and bytes per call**, min–max over the rounds (%s):", rs.runsAll(main, "allocs/op")))
		rs.table(w, main, []string{"allocs/op", "B/op"}, countCell)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "**Time per call**, median (min–max) over the rounds:")
		fmt.Fprintln(w)
		rs.table(w, main, []string{"ns/op"}, timeCell)
	}
	if len(alone) > 0 {
		section(fmt.Sprintf("**The interceptor alone**, an invoker that returns at once; median (min–max) over the rounds (%s):", rs.runsAll(alone, "ns/op")))
		rs.table(w, alone, []string{"ns/op", "allocs/op"}, func(unit string, v []float64) string {
			if unit == "ns/op" {
				return timeCell(unit, v)
			}
			return countCell(unit, v)
		})
	}
}

func (rs *results) has(bench, unit string) bool {
	for _, c := range rs.clients[bench] {
		if len(rs.values[key{bench, c, unit}]) > 0 {
			return true
		}
	}
	return false
}

// runs describes how many values the cells of bench have, e.g. "5 runs
// each" or "3–5 runs each".
func (rs *results) runs(bench, unit string) string {
	return rs.runsAll([]string{bench}, unit)
}

func (rs *results) runsAll(benches []string, unit string) string {
	lo, hi := math.MaxInt, 0
	for _, b := range benches {
		for _, c := range rs.clients[b] {
			if n := len(rs.values[key{b, c, unit}]); n > 0 {
				lo, hi = min(lo, n), max(hi, n)
			}
		}
	}
	word := "runs"
	if unit != "instr/op" {
		word = "rounds"
	}
	if lo == hi {
		return fmt.Sprintf("%d %s", lo, word)
	}
	return fmt.Sprintf("%d–%d %s", lo, hi, word)
}

// table writes one row per benchmark and unit, one column per client that
// has a value in any of them.
func (rs *results) table(w io.Writer, benches, units []string, cell func(unit string, v []float64) string) {
	var cols []string // in order of first appearance in benches
	for _, b := range benches {
		for _, c := range rs.clients[b] {
			for _, u := range units {
				if len(rs.values[key{b, c, u}]) > 0 {
					addOnce(&cols, c)
				}
			}
		}
	}
	header := []string{"benchmark"}
	for _, c := range cols {
		header = append(header, nameOr(clientNames, c))
	}
	row(w, header...)
	row(w, slices.Repeat([]string{"---"}, len(header))...)
	for _, b := range benches {
		for _, u := range units {
			cells := []string{nameOr(benchNames, b) + ", " + u}
			for _, c := range cols {
				cells = append(cells, cell(u, rs.values[key{b, c, u}]))
			}
			row(w, cells...)
		}
	}
}

// instrTable writes the callgrind counts of bench, one row per client.
func (rs *results) instrTable(w io.Writer, bench string) {
	row(w, "client", "instructions/call, median", "min–max", "spread", "× bare (medians)")
	row(w, "---", "---", "---", "---", "---")
	base := median(rs.values[key{bench, "bare", "instr/op"}])
	for _, c := range rs.clients[bench] {
		v := rs.values[key{bench, c, "instr/op"}]
		if len(v) == 0 {
			continue
		}
		m := median(v)
		lo, hi := slices.Min(v), slices.Max(v)
		ratio := "—"
		if base > 0 {
			ratio = fmt.Sprintf("%.4f", m/base)
		}
		row(w, nameOr(clientNames, c), group(m), group(lo)+"–"+group(hi),
			fmt.Sprintf("±%.2f%%", 100*(hi-lo)/2/m), ratio)
	}
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
}

// countCell shows a count as one number if every round agrees, else
// min–max.
func countCell(_ string, v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return group(lo)
	}
	return group(lo) + "–" + group(hi)
}

// timeCell shows a time as the median and, across rounds, min–max.
func timeCell(_ string, v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	m := median(v)
	unit, div := "ns", 1.0
	switch {
	case m >= 1e6:
		unit, div = "ms", 1e6
	case m >= 1e3:
		unit, div = "µs", 1e3
	}
	f := func(x float64) string { return strconv.FormatFloat(x/div, 'f', 1, 64) }
	if len(v) == 1 {
		return f(m) + " " + unit
	}
	return fmt.Sprintf("%s %s (%s–%s)", f(m), unit, f(slices.Min(v)), f(slices.Max(v)))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// group writes x rounded to an integer with thousands separators.
func group(x float64) string {
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
