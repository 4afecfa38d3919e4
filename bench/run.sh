#!/usr/bin/env bash
# Runs the peer benchmarks COUNT times, interleaved, and summarizes them:
# benchstat (medians, confidence intervals, ratios to the bare client), then
# the README's tables from go run ./bench/benchtable (allocs/op and B/op as
# min–max over the rounds, times as median and min–max).
#   bash bench/run.sh                 # all benchmarks, COUNT=10
#   COUNT=5 BENCH='Unary$' bash bench/run.sh
# Needs only Go: benchstat is installed, pinned, through the Go module proxy
# into .tools/bin. Output: bench/results/<date>.txt (raw) and the tables on
# stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-10}"
BENCH="${BENCH:-.}"
BENCHTIME="${BENCHTIME:-1s}"
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da

export GOBIN="$PWD/.tools/bin"
stamp="golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION $(go env GOVERSION)"
if [[ ! -x "$GOBIN/benchstat" || "$(cat "$GOBIN/.benchstat.stamp" 2>/dev/null)" != "$stamp" ]]; then
  echo "installing golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION into .tools/bin" >&2
  go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"
  echo "$stamp" >"$GOBIN/.benchstat.stamp"
fi

mkdir -p bench/results
out="bench/results/$(date -u +%Y%m%d-%H%M%S).txt"
echo "# bash bench/run.sh: COUNT=$COUNT BENCH=$BENCH BENCHTIME=$BENCHTIME" >"$out"
# Interleave the counts (every client once per round, COUNT rounds) so that
# drift on a shared machine spreads over all clients instead of biasing
# whichever ran during a slow minute.
go test -c -o bench/results/bench.test ./bench
for i in $(seq "$COUNT"); do
  (cd bench && ./results/bench.test -test.run '^$' -test.bench "$BENCH" -test.benchtime "$BENCHTIME" -test.count 1) >>"$out"
  echo "round $i/$COUNT done" >&2
done
echo "raw results: $out"
echo
echo "== benchstat: one column per client, ratios against the bare client"
echo
"$GOBIN/benchstat" -col /client "$out" 2>/dev/null || "$GOBIN/benchstat" "$out"
echo
echo "== README tables (go run ./bench/benchtable $out)"
echo
go run ./bench/benchtable "$out"
