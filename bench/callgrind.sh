#!/usr/bin/env bash
# Instructions per unary call on the success path, counted by valgrind's
# callgrind: repeatable on a shared, noisy machine where wall-clock
# benchmarks are not. Each client runs BenchmarkUnary at N1 and N2
# iterations; (I(N2) - I(N1)) / (N2 - N1) cancels start-up and warm-up.
#   bash bench/callgrind.sh     (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
N1="${N1:-1000}"
export GOGC=off # GC cycles land at different points in each run; allocations are still counted (mallocgc)
N2="${N2:-5000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" .
count() { # client iterations -> instructions
  for try in 1 2 3; do
    if valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/bench.test" \
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
printf '%-14s %14s %10s\n' client instr/call vs-bare
base=""
for c in bare grpc-builtin middleware ours-default ours-nobudget; do
  per=$(( ($(count "$c" "$N2") - $(count "$c" "$N1")) / (N2 - N1) ))
  [[ -z "$base" ]] && base=$per
  printf '%-14s %14d %10s\n' "$c" "$per" "$(awk -v a="$per" -v b="$base" 'BEGIN { printf "%.4f", a / b }')"
done
