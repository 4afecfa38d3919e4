#!/usr/bin/env bash
# Runs the peer benchmarks with -count and summarizes them with benchstat.
#   bash bench/run.sh                 # all benchmarks, -count 10
#   COUNT=5 BENCH='Unary$' bash bench/run.sh
# Output: bench/results/<date>.txt (raw) and the benchstat tables on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-10}"
BENCH="${BENCH:-.}"
BENCHTIME="${BENCHTIME:-1s}"
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da

export GOBIN="$PWD/.tools/bin"
if [[ ! -x "$GOBIN/benchstat" || "$(cat "$GOBIN/.benchstat.version" 2>/dev/null)" != "$BENCHSTAT_VERSION" ]]; then
  go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"
  echo "$BENCHSTAT_VERSION" > "$GOBIN/.benchstat.version"
fi

mkdir -p bench/results
out="bench/results/$(date -u +%Y%m%d-%H%M%S).txt"
# Interleave the counts (every client once per round, COUNT rounds) so that
# drift on a shared machine spreads over all clients instead of biasing
# whichever ran during a slow minute.
go test -c -o bench/results/bench.test ./bench
for i in $(seq "$COUNT"); do
  (cd bench && ./results/bench.test -test.run '^$' -test.bench "$BENCH" -test.benchtime "$BENCHTIME" -test.count 1) >> "$out"
  echo "round $i/$COUNT done" >&2
done
echo "raw results: $out"
echo
# One column per client, one row per benchmark, ratios against the bare client.
"$GOBIN/benchstat" -col /client "$out" 2>/dev/null || "$GOBIN/benchstat" "$out"
