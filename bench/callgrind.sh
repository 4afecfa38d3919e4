#!/usr/bin/env bash
# Instructions per unary call on the success path, counted by valgrind's
# callgrind: repeatable on a shared, noisy machine where wall-clock
# benchmarks are not. Each client runs BenchmarkUnary at N1 and N2
# iterations; (I(N2) - I(N1)) / (N2 - N1) cancels start-up and warm-up.
# That is one run; every client runs REPS times, interleaved (one run of
# each client per round), and the table gives the median, the min–max and
# the ratio of medians to the bare client.
#
#   bash bench/callgrind.sh                  # REPS=5, N1=1000, N2=5000
#   REPS=3 CLIENTS='bare ours-default' bash bench/callgrind.sh
# CLIENTS defaults to every client of BenchmarkUnary, bare first.
#
# Needs valgrind (3.19 or later; e.g. apt-get install valgrind) besides Go.
# Output: bench/results/callgrind-<date>.txt (raw, one line per run, in Go
# benchmark format) and the table of go run ./bench/benchtable on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v valgrind >/dev/null; then
  echo "bench/callgrind.sh needs valgrind (e.g. apt-get install valgrind)" >&2
  exit 1
fi

N1="${N1:-1000}"
N2="${N2:-5000}"
REPS="${REPS:-5}"
CLIENTS="${CLIENTS:-}" # default: every client of BenchmarkUnary

# The environment of the benchmark runs (not of the go command, which would
# warn about the cpu option). GOGC=off: GC cycles land at different points
# in each run; allocations are still counted (mallocgc).
RUN_GOGC=off
# Two things valgrind 3.19 cannot run: Go's asynchronous preemption (signals
# sent to running goroutines: callgrind crashes or hangs) and the RDTSCP
# instruction, which the runtime executes when a thread waits on a contended
# runtime lock (valgrind stops with SIGILL "unhandled instruction"). Both
# are off: the benchmark runs on one P and needs neither; without RDTSCP the
# runtime reads the clock with RDTSC.
RUN_GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" ./bench
if [[ -z "$CLIENTS" ]]; then
  CLIENTS="$("$tmp/bench.test" -test.run '^$' -test.bench 'BenchmarkUnary$' -test.benchtime 1x -test.cpu 1 2>/dev/null |
    sed -n 's|^BenchmarkUnary/client=\([^[:space:]]*\)[[:space:]].*|\1|p' | tr '\n' ' ')"
fi
if [[ "$CLIENTS" != bare\ * ]]; then
  echo "the first client must be bare (the ratios are to it); got: $CLIENTS" >&2
  exit 1
fi

mkdir -p bench/results
out="bench/results/callgrind-$(date -u +%Y%m%d-%H%M%S).txt"
{
  echo "# bash bench/callgrind.sh: N1=$N1 N2=$N2 REPS=$REPS GOGC=$RUN_GOGC GODEBUG=$RUN_GODEBUG"
  echo "# $(valgrind --version), $(go version)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
} >"$out"

count() { # client iterations -> instructions
  local try
  for try in 1 2 3; do
    if GOGC="$RUN_GOGC" GODEBUG="$RUN_GODEBUG" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/bench.test" \
      -test.run '^$' -test.bench "BenchmarkUnary\$/client=$1\$" -test.benchtime "$2x" -test.cpu 1 \
      >"$tmp/out" 2>"$tmp/err" && grep -q 'Collected : [0-9]' "$tmp/err"; then
      grep -o 'Collected : [0-9]*' "$tmp/err" | grep -o '[0-9]*$'
      return
    fi
    echo "callgrind run for $1 ($2x) failed (try $try):" >&2
    tail -n 3 "$tmp/out" "$tmp/err" >&2
  done
  return 1
}

for rep in $(seq "$REPS"); do
  for c in $CLIENTS; do
    i1=$(count "$c" "$N1")
    i2=$(count "$c" "$N2")
    per=$(awk -v a="$i1" -v b="$i2" -v n1="$N1" -v n2="$N2" 'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }')
    printf 'BenchmarkUnary/client=%s %d %s instr/op\n' "$c" $((N2 - N1)) "$per" >>"$out"
    printf 'round %d/%d  %-14s %12s instr/call\n' "$rep" "$REPS" "$c" "$per" >&2
  done
done
echo "raw results: $out"
echo
go run ./bench/benchtable "$out"
