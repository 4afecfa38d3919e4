package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// pct1 and pct2 format ok of n as a percentage with one or two decimals,
// without trailing zeros for whole numbers ("100", "51.3").
func pct1(ok, n int) string { return pct(ok, n, 1) }
func pct2(ok, n int) string { return pct(ok, n, 2) }

func pct(ok, n, decimals int) string {
	if n == 0 {
		return "-"
	}
	if ok == n {
		return "100"
	}
	if ok == 0 {
		return "0"
	}
	return fmt.Sprintf("%.*f", decimals, 100*float64(ok)/float64(n))
}

// sep returns s unless i is 0.
func sep(i int, s string) string {
	if i == 0 {
		return ""
	}
	return s
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}
