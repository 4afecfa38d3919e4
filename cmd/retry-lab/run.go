package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// results[s][p][v] is scenario s's variant v for policy p.
type results [][][]any

// play runs every variant of every scenario for every policy, par runs at
// a time. Runs share nothing, and each is a pure function of (seed,
// scenario, variant, policy), so the results do not depend on par or on
// the order in which runs finish.
func play(seed uint64, scens []scenario, specs []policySpec, par int) results {
	type job struct{ s, p, v int }
	var jobs []job
	res := make(results, len(scens))
	for s, sc := range scens {
		rows := sc.rowsOf(specs)
		res[s] = make([][]any, len(rows))
		for p := range rows {
			res[s][p] = make([]any, sc.variants)
			for v := range sc.variants {
				jobs = append(jobs, job{s, p, v})
			}
		}
	}
	next := make(chan job)
	var wg sync.WaitGroup
	for range max(par, 1) {
		wg.Go(func() {
			for j := range next {
				sc := scens[j.s]
				res[j.s][j.p][j.v] = sc.run(seed, sc.rowsOf(specs)[j.p], j.v)
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return res
}

// printTables writes one table per scenario, a row per policy.
func printTables(w io.Writer, scens []scenario, specs []policySpec, res results) {
	for s, sc := range scens {
		fmt.Fprintf(w, "\n%s\n", sc.title)
		for _, l := range sc.about {
			fmt.Fprintf(w, "  %s\n", l)
		}
		if sc.rows != nil {
			fmt.Fprintln(w, "  rows:")
			for _, r := range sc.rows {
				fmt.Fprintf(w, "    %-24s %s\n", r.name, r.desc)
			}
		}
		fmt.Fprintln(w)
		tw := newTable(w)
		fmt.Fprintf(tw, "policy\t%s\t\n", strings.Join(sc.header, "\t"))
		for p, spec := range sc.rowsOf(specs) {
			fmt.Fprintf(tw, "%s\t%s\t\n", spec.name, strings.Join(sc.cells(res[s][p]), "\t"))
		}
		tw.Flush()
	}
}
