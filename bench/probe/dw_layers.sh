#!/bin/sh
# The weight gradient of single convolutions, one thread, CPU time (see
# bench/probe/dw_bench.c): ResNet-18's and VGG-16's 3x3 layers, a 1x1 and
# ResNet-18's 7x7 stem.
#
#   sh bench/probe/dw_layers.sh [--batch B] [--calls N] [--only NAME]
set -u
cd "$(dirname "$0")/../.."
batch=16 calls=5 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: sh bench/probe/dw_layers.sh [--batch B] [--calls N] [--only NAME]" >&2; exit 2 ;;
  esac
done
CNNC=${CNNC:-bin/cnnc}
CC=${CC:-cc}
dir=${DW_DIR:-build/bench/dw}
mkdir -p "$dir"
# NAME CIN COUT H K STRIDE PAD
SHAPES="
r18_64x56   64  64 56 3 1 1
r18_128x28 128 128 28 3 1 1
r18_256x14 256 256 14 3 1 1
r18_512x7  512 512  7 3 1 1
r18_512x7s2 256 512 14 3 2 1
r18_1x1s2  256 512 14 1 2 0
r18_1x1    256 256 14 1 1 0
r18_stem     3  64 224 7 2 3
vgg_3x224    3  64 224 3 1 1
vgg_64x224  64  64 224 3 1 1
lenet_c1     1   6  28 5 1 2
lenet_c2     6  16  14 5 1 0
vgg_512x28 512 512 28 3 1 1
vgg_512x14 512 512 14 3 1 1
"
echo "$SHAPES" | while read -r name cin cout h k s p; do
  [ -n "$name" ] || continue
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  ho=$(( (h + 2 * p - k) / s + 1 ))
  {
    echo "network dw_$name"
    echo "input x : [$cin, $h, $h]"
    echo "target t : [$cout, $ho, $ho]"
    echo "x -> conv($cout, ${k}x$k, stride = $s, pad = $p, bias = false) -> f"
    echo "loss = mse(f, t)"
  } > "$dir/$name.cnn"
  u=$(echo "dw_$name" | tr a-z A-Z)
  "$CNNC" "$dir/$name.cnn" --lib -o "$dir/lib$name.a" > "$dir/$name.log" 2>&1 &&
  $CC -O2 -DNET="dw_$name" -DNETU="$u" -include "$dir/dw_$name.h" bench/probe/dw_bench.c \
    "$dir/lib$name.a" -fopenmp -lm -o "$dir/bench_$name" 2>> "$dir/$name.log" || { echo "$name: build failed" >&2; continue; }
  flops=$((2 * cin * cout * k * k * ho * ho))
  printf '%-12s batch %s: ' "$name" "$batch"
  OMP_NUM_THREADS=1 "$dir/bench_$name" "$batch" "$calls" "$flops"
done
