#!/bin/sh
# The convolution algorithms side by side on one layer at a time (see
# "Winograd F(4x4, 3x3)" in docs/compiler.md): for each shape, a network
# x [C, H, H] -> conv(C, 3x3, pad = 1, bias = true) compiled with
# CNNC_CONV=im2col and CNNC_CONV=winograd, its forward timed on one thread in
# thread CPU time (other work on the machine shows less than in wall time),
# batch 1 and 16; prints ms and effective GFLOP/s (2 C C 9 H H per example,
# the direct convolution's FLOPs, by the time). With --check, also the
# error of each against PyTorch in float64 at batch 2: max |y - ref| /
# max |ref| (needs python3-torch).
#   sh bench/conv/algos.sh [--check] [C@H ...]   (default: the 3x3 stride-1
#   shapes of ResNet-18 and VGG-16: 64@56 128@28 256@14 512@7 64@224 128@112
#   256@56 512@28 512@14)
set -u
cd "$(dirname "$0")/../.." || exit 2
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
shapes=${*:-"64@56 128@28 256@14 512@7 64@224 128@112 256@56 512@28 512@14"}
[ -x bin/cnnc ] || { echo "algos.sh: build bin/cnnc first (make)" >&2; exit 2; }
T=$(mktemp -d /tmp/conv_algos.XXXXXX) || exit 2
trap 'rm -rf "$T"' EXIT
echo "| layer | batch | im2col ms | GFLOP/s | winograd ms | GFLOP/s |"
echo "|---|---|---|---|---|---|"
for s in $shapes; do
  c=${s%@*} h=${s#*@} nm=conv_${c}_$h
  for alg in im2col winograd; do
    printf 'network %s\ninput x : [%s, %s, %s]\nx -> conv(%s, 3x3, pad = 1, bias = true) -> f\n' \
      "$nm" "$c" "$h" "$h" "$c" > "$T/$nm.cnn"
    CNNC_CONV=$alg bin/cnnc "$T/$nm.cnn" --lib -o "$T/lib${nm}_$alg.a" > "$T/log" 2>&1 &&
      cc -O2 -DNET="$nm" -DNETU="$(echo "$nm" | tr a-z A-Z)" -include "$T/$nm.h" bench/conv/layer.c \
        "$T/lib${nm}_$alg.a" -fopenmp -lm -o "$T/${nm}_$alg" >> "$T/log" 2>&1 ||
      { echo "algos.sh: building $s ($alg) failed:" >&2; cat "$T/log" >&2; exit 1; }
  done
  for b in 1 16; do
    line="| $s | $b |"
    for alg in im2col winograd; do
      t=$(OMP_NUM_THREADS=1 "$T/${nm}_$alg" time "$b" 1 | cut -d' ' -f1)
      line="$line $(awk -v t="$t" -v c="$c" -v h="$h" -v b="$b" \
        'BEGIN { printf "%.3f | %.0f |", t * 1e3, 2 * c * c * 9 * h * h * b / t / 1e9 }')"
    done
    echo "$line"
  done
  if [ $check = 1 ]; then
    for alg in im2col winograd; do
      OMP_NUM_THREADS=1 "$T/${nm}_$alg" dump 2 0 "$T/dump"
      /usr/bin/python3 - "$T/dump" "$c" "$h" "$s" "$alg" <<'PY'
import sys, numpy as np, torch
f, C, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, n, o = np.fromfile(f, dtype=np.float32), 2, 0
def take(k):
    global o
    o += k
    return a[o - k:o]
x = take(n * C * H * H).reshape(n, C, H, H)
w = take(C * C * 9).reshape(C, C, 3, 3)
b = take(C)
y = take(n * C * H * H).reshape(n, C, H, H)
ref = torch.nn.functional.conv2d(*(torch.from_numpy(v).double() for v in (x, w, b)), padding=1).numpy()
print("error %s %s: %.2e" % (sys.argv[4], sys.argv[5], np.abs(y - ref).max() / np.abs(ref).max()))
PY
    done
  fi
done
