#!/bin/sh
# Where a batch-1 forward's time goes, call by call (see bench/probe/calls.c):
# builds NET (examples/NET.cnn, or an .onnx file) with cnnc_bench and the
# wrapped runtime, runs its latency measure, and writes the calls with their
# routines' names to build/bench/calls/NET.THREADS.txt (the last line sums).
#
#   sh bench/probe/calls.sh NET|FILE.onnx [--threads T] [--seconds S]
set -u
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: sh bench/probe/calls.sh NET|FILE.onnx [--threads T] [--seconds S]" >&2; exit 2; }
src=$1; shift
threads=2 seconds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: sh bench/probe/calls.sh NET|FILE.onnx [--threads T] [--seconds S]" >&2; exit 2 ;;
  esac
done
case "$src" in *.onnx) ;; *) src=examples/$src.cnn ;; esac
CNNC=${CNNC:-bin/cnnc}
CC=${CC:-cc}
dir=build/bench/calls
mkdir -p "$dir"
"$CNNC" "$src" --lib -o "$dir/lib.a" > "$dir/compile.log" 2>&1 || { tail -1 "$dir/compile.log" >&2; exit 1; }
h=$(ls -t "$dir"/*.h | head -1); net=$(basename "$h" .h)
mv "$dir/lib.a" "$dir/lib$net.a"
# -no-pie: the routines' addresses as in the symbol table
$CC -O2 -no-pie -DNET="$net" -DNETU="$(echo "$net" | tr a-z A-Z)" -include "$h" bench/peers/cnnc_bench.c \
  bench/probe/calls.c -Iruntime "$dir/lib$net.a" -fopenmp -lm -o "$dir/calls_$net" || exit 1
out=$dir/$net.$threads.txt
CALLS_OUT=$out.raw "$dir/calls_$net" latency --seconds "$seconds" --threads "$threads" > /dev/null || exit 1
nm "$dir/calls_$net" | sort > "$dir/$net.nm"
# each address to the routine it falls in
python3 - "$dir/$net.nm" "$out.raw" > "$out" <<'PY'
import bisect, sys
syms = sorted((int(p[0], 16), p[2]) for p in (l.split() for l in open(sys.argv[1])) if len(p) == 3)
addrs = [a for a, _ in syms]
for line in open(sys.argv[2]):
    p = line.split()
    if p and p[0].isdigit():
        p[2] = syms[bisect.bisect_right(addrs, int(p[2], 16)) - 1][1]
    print(' '.join(p))
PY
rm -f "$out.raw"
tail -1 "$out"
