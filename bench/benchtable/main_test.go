package main

import (
	"strings"
	"testing"
)

func TestTables(t *testing.T) {
	const in = `goos: linux
cpu: AMD EPYC
BenchmarkUnary/client=bare-2   	   30000	     41000 ns/op	    8938 B/op	     149 allocs/op
BenchmarkUnary/client=ours-default-2   	   30000	     43000 ns/op	    8977 B/op	     150 allocs/op
BenchmarkInterceptorOnly/client=direct-2  1000000  2.3 ns/op  0 B/op  0 allocs/op
--- BENCH: BenchmarkUnary/client=bare-2
    bench_test.go:1: 12 not a result line
BenchmarkUnary/client=bare-2   	   30000	     39000 ns/op	    8940 B/op	     150 allocs/op
BenchmarkUnary/client=ours-default-2   	   30000	     45000 ns/op	    8977 B/op	     150 allocs/op
BenchmarkUnary/client=bare-2   	   30000	     40000 ns/op	    8939 B/op	     149 allocs/op
BenchmarkInterceptorOnly/client=direct-2  1000000  2.5 ns/op  0 B/op  0 allocs/op
BenchmarkUnary/client=bare 4000 168000 instr/op
BenchmarkUnary/client=bare 4000 170000 instr/op
BenchmarkUnary/client=ours-default 4000 171700 instr/op
PASS
`
	var rs results
	if err := rs.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rs.write(&out)
	const want = `**Instructions per call, unary success** (callgrind; 1–2 runs):

| client | instructions/call, median | min–max | spread | × bare (medians) |
| --- | --- | --- | --- | --- |
| bare | 169,000 | 168,000–170,000 | ±0.59% | 1.0000 |
| ours (default) | 171,700 | 171,700–171,700 | ±0.00% | 1.0160 |

**Allocations and bytes per call**, min–max over the rounds (2–3 rounds):

| benchmark | bare | ours (default) |
| --- | --- | --- |
| unary success, allocs/op | 149–150 | 150 |
| unary success, B/op | 8,938–8,940 | 8,977 |

**Time per call**, median (min–max) over the rounds:

| benchmark | bare | ours (default) |
| --- | --- | --- |
| unary success, ns/op | 40.0 µs (39.0–41.0) | 44.0 µs (43.0–45.0) |

**The interceptor alone**, an invoker that returns at once; median (min–max) over the rounds (2 rounds):

| benchmark | direct call |
| --- | --- |
| interceptor alone (` + "`RunParallel`" + `), ns/op | 2.4 ns (2.3–2.5) |
| interceptor alone (` + "`RunParallel`" + `), allocs/op | 0 |
`
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
