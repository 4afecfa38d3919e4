package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/seed4f82f287/retry"
)

// The CreditBudget parameters that -sweep tries, every combination.
var (
	sweepRatios    = []float64{0.05, 0.1, 0.2}
	sweepPerSecond = []float64{0.02, 0.05, 0.1}
	sweepMax       = []float64{2, 3, 5, 10}
	sweepMaxDebt   = []float64{5, 10, 20, 50, 100}
)

// sweepPoint is one combination of parameters.
type sweepPoint struct{ ratio, perSecond, max, maxDebt float64 }

func (p sweepPoint) config() retry.CreditBudgetConfig {
	return creditConfig(p.ratio, p.perSecond, p.max, p.maxDebt)
}

// runSweep plays every scenario that has targets for each combination of
// sweep parameters with the package's CreditBudget, and scenario E again
// with the prototype rule (timeouts of first attempts charged), and prints
// which targets each combination meets.
func runSweep(w io.Writer, cfg config) {
	var points []sweepPoint
	for _, r := range sweepRatios {
		for _, ps := range sweepPerSecond {
			for _, mx := range sweepMax {
				for _, d := range sweepMaxDebt {
					points = append(points, sweepPoint{r, ps, mx, d})
				}
			}
		}
	}
	var scens []scenario
	meta := -1
	for _, s := range cfg.scenarios {
		if len(s.targets) > 0 {
			if s.name == "meta" {
				meta = len(scens)
			}
			scens = append(scens, s)
		}
	}
	specs := make([]policySpec, len(points))
	protos := make([]policySpec, len(points))
	for i, p := range points {
		specs[i] = creditSpec(creditName(p.ratio, p.perSecond, p.max, p.maxDebt), p.config())
		protos[i] = protoSpec(specs[i].name, p.config(), timeoutsInDebt)
	}
	res := play(cfg.seed, scens, specs, cfg.parallel)
	var protoMeta results
	if meta >= 0 {
		protoMeta = play(cfg.seed, scens[meta:meta+1], protos, cfg.parallel)
	}

	fmt.Fprintf(w, "retry-lab -sweep: retry.NewCreditBudget over Ratio %v × PerSecond %v × Max %v × MaxDebt %v (seed %d)\n",
		sweepRatios, sweepPerSecond, sweepMax, sweepMaxDebt, cfg.seed)
	fmt.Fprintln(w, "targets:")
	var names []string
	for _, s := range scens {
		for _, t := range s.targets {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, t.name)
			names = append(names, s.name)
		}
	}
	fmt.Fprintln(w, "Each cell: ok, or the measured values when one misses. Not targets, for judging the robustness:")
	fmt.Fprintln(w, "  E+t           scenario E with the prototype rule (while the balance is at or below zero, a first")
	fmt.Fprintln(w, "                attempt that times out is charged one retry);")
	fmt.Fprintf(w, "  E busy        scenario E at %g%% with the same load from %d clients (E+t busy: with the rule);\n",
		100*cfg.meta.busy.util, cfg.meta.busy.clients)
	fmt.Fprintln(w, "  back 20/s     after the outage of scenario B, seconds until a 20 calls/s client retries again.")
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintf(tw, "ratio\tperSecond\tmax\tmaxDebt\t%s\tE+t\tE busy\tE+t busy\tback 20/s\tall\t\n", strings.Join(names, "\t"))
	failures := make(map[string]int)
	var winners []string
	for i, p := range points {
		var cells []string
		all := true
		for s, sc := range scens {
			for _, t := range sc.targets {
				ok, got := t.check(res[s][i])
				if ok {
					cells = append(cells, "ok")
				} else {
					cells = append(cells, got)
					failures[sc.name]++
					all = false
				}
			}
		}
		protoCell, robust, protoRobust, back := "-", "-", "-", "-"
		if meta >= 0 {
			ok, got := scens[meta].targets[0].check(protoMeta[0][i])
			protoCell = "ok"
			if !ok {
				protoCell = got
			}
			robust = res[meta][i][2].(metaResult).String()
			protoRobust = protoMeta[0][i][2].(metaResult).String()
		}
		for s, sc := range scens {
			if sc.name == "outage" {
				back = res[s][i][1].(outageResult).backString()
			}
		}
		verdict := "no"
		if all {
			verdict = "YES"
			winners = append(winners, specs[i].name)
		}
		fmt.Fprintf(tw, "%g\t%g\t%g\t%g\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.ratio, p.perSecond, p.max, p.maxDebt,
			strings.Join(cells, "\t"), protoCell, robust, protoRobust, back, verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d combinations meet every target.\n", len(winners), len(points))
	fmt.Fprint(w, "Combinations missing each target:")
	for _, n := range names {
		fmt.Fprintf(w, " %s %d;", n, failures[n])
	}
	fmt.Fprintln(w)
}
