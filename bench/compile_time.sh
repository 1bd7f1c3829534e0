#!/bin/sh
# Compile time of the full-size examples and of ResNet-18/34/50 written the
# same way (examples/resnet18.cnn, bench/compile/resnet34.cnn, resnet50.cnn),
# at -O2: the median over ROUNDS runs (default 5) of the wall-clock and the
# user CPU time of `cnnc NET.cnn -o OUT`, with the layer count of each net.
#   sh bench/compile_time.sh [--rounds N] [CNNC_FLAG...]
# e.g. `sh bench/compile_time.sh --rounds 3 --no-share` measures without
# shared loop nests. The rounds alternate between the nets, so that a burst
# of other work on the machine spreads over all of them. Prints a Markdown
# table; needs GNU time (/usr/bin/time, Debian package `time`).
set -u
cd "$(dirname "$0")/.." || exit 2
rounds=5
if [ "${1:-}" = "--rounds" ]; then rounds=$2; shift 2; fi
[ -x /usr/bin/time ] || { echo "compile_time.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
[ -x bin/cnnc ] || { echo "compile_time.sh: build bin/cnnc first (make)" >&2; exit 2; }
nets="examples/alexnet.cnn examples/vgg16.cnn examples/googlenet.cnn examples/mobilenet_v2.cnn
      examples/resnet18.cnn bench/compile/resnet34.cnn bench/compile/resnet50.cnn"
T=$(mktemp -d /tmp/compile_time.XXXXXX) || exit 2
trap 'rm -rf "$T"' EXIT

r=1
while [ $r -le "$rounds" ]; do
  for src in $nets; do
    name=$(basename "$src" .cnn)
    if ! /usr/bin/time -f '%e %U' -o "$T/t" bin/cnnc "$src" -o "$T/$name" "$@" > "$T/log" 2>&1; then
      echo "compile_time.sh: cnnc failed on $src:" >&2; cat "$T/log" >&2; exit 1
    fi
    cat "$T/t" >> "$T/$name.times"
    rm -f "$T/$name"
  done
  r=$((r + 1))
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "| network | layers (conv + dense) | operators | wall s (median) | user s (median) | user s per layer |"
echo "|---|---|---|---|---|---|"
for src in $nets; do
  name=$(basename "$src" .cnn)
  bin/cnnc "$src" --summary > "$T/summary"
  layers=$(grep -c -E '\((conv|dense)\)' "$T/summary")
  ops=$(awk '/^#/ {on = 1; next} on && /^[0-9]/ {n++} on && /^$/ {on = 0} END {print n + 0}' "$T/summary")
  wall=$(cut -d' ' -f1 "$T/$name.times" | median)
  user=$(cut -d' ' -f2 "$T/$name.times" | median)
  per=$(awk -v u="$user" -v l="$layers" 'BEGIN {printf "%.3f", u / l}')
  echo "| $name | $layers | $ops | $wall | $user | $per |"
done
echo
echo "($rounds rounds, cnnc $* at -O2; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u '+%Y-%m-%d %H:%M UTC'))"
