#!/bin/sh
# The 3x3 convolutions of ResNet-18 and VGG-16, one layer at a time: cnnc's
# (and, for comparison, PyTorch's oneDNN) GFLOP/s forward and backward at
# batch 16 on 2 threads. Called by bench/peers/run.sh; writes RAW/layers.*.
#
#   sh bench/peers/layers.sh RAW [--seconds S] [--batch B] [--threads T] [--rounds N]
#
# cnnc has no per-layer profile, so each distinct shape (input channels,
# output channels, input size, stride) is compiled as its own programs:
#   LAYER_f.cnn  x -> conv(Cout, 3x3, stride, pad = 1) -> f
#                NET_forward: the forward figure
#   LAYER_g.cnn  x * s -> conv(...) -> f with loss = mse(f, t), s a learned
#                scalar, so that the gradient of the conv's input is needed
#                (a network's first layer has none): NET_loss_grad is forward,
#                data gradient and weight gradient; minus NET_forward of the
#                same program, that is the backward figure (it includes the
#                mse gradient and s's gradient: a few passes over the layer's
#                input and output, which makes the figure slightly low).
# Each is driven by bench/peers/cnnc_bench.c (--seconds S: one untimed call,
# then calls for S seconds, at least 3; the median). FLOPs: 2 Cin Cout 9 Ho Wo
# per example forward, twice that backward (data and weight gradients).
# PyTorch: one nn.Conv2d, forward under no_grad, and forward + backward with
# the input requiring a gradient (bench/peers/torch_bench.py --layers).
set -u
cd "$(dirname "$0")/../.."
raw=$1; shift
seconds=1.5 batch=16 threads=2 rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: sh bench/peers/layers.sh RAW [--seconds S] [--batch B] [--threads T] [--rounds N]" >&2; exit 2 ;;
  esac
done
CNNC=${CNNC:-bin/cnnc}
PY=${TORCH_PYTHON:-/usr/bin/python3}
CC=${CC:-cc}
dir=build/bench/peers/layers
rm -rf "$dir"
mkdir -p "$dir" "$raw"
say() { echo "layers.sh: $*" >&2; }
. bench/peers/common.sh    # note, bench_net

# NAME NET CIN COUT H STRIDE BIAS COUNT: every distinct 3x3 convolution of
# examples/resnet18.cnn (no bias) and examples/vgg16.cnn (bias), 224x224
# input; COUNT is how many layers of the net have that shape.
SHAPES="
r18_64x56     resnet18  64  64 56 1 false 4
r18_128x56s2  resnet18  64 128 56 2 false 1
r18_128x28    resnet18 128 128 28 1 false 3
r18_256x28s2  resnet18 128 256 28 2 false 1
r18_256x14    resnet18 256 256 14 1 false 3
r18_512x14s2  resnet18 256 512 14 2 false 1
r18_512x7     resnet18 512 512  7 1 false 3
vgg_3_64x224  vgg16      3  64 224 1 true 1
vgg_64x224    vgg16     64  64 224 1 true 1
vgg_128x112a  vgg16     64 128 112 1 true 1
vgg_128x112   vgg16    128 128 112 1 true 1
vgg_256x56a   vgg16    128 256 56 1 true 1
vgg_256x56    vgg16    256 256 56 1 true 2
vgg_512x28a   vgg16    256 512 28 1 true 1
vgg_512x28    vgg16    512 512 28 1 true 2
vgg_512x14    vgg16    512 512 14 1 true 3
"

# program NAME KIND CIN COUT H STRIDE BIAS: writes $dir/NAME_KIND.cnn
program() {
  ho=$(( ($5 - 1) / $6 + 1 ))
  conv="conv($4, 3x3, stride = $6, pad = 1, bias = $7)"
  {
    echo "network $1_$2"
    echo "input x : [$3, $5, $5]"
    if [ "$2" = f ]; then
      echo "x -> $conv -> f"
    else
      echo "target t : [$4, $ho, $ho]"
      echo "param s : [] = ones"
      echo "x * s -> $conv -> f"
      echo "loss = mse(f, t)"
    fi
  } > "$dir/$1_$2.cnn"
}

# build NAME KIND: compile the program, then cnnc_bench against it
build() {
  p=$1_$2 u=$(echo "$1_$2" | tr a-z A-Z)
  "$CNNC" "$dir/$p.cnn" --lib -o "$dir/lib$p.a" > "$dir/$p.log" 2>&1 || {
    note cnnc_layers "$1: bin/cnnc --lib failed: $(tail -1 "$dir/$p.log")"; return 1; }
  tgt=""; [ "$2" = g ] && tgt=-DTARGET
  $CC -O2 -DNET="$p" -DNETU="$u" $tgt -include "$dir/$p.h" bench/peers/cnnc_bench.c \
    "$dir/lib$p.a" -fopenmp -lm -o "$dir/bench_$p" 2>> "$dir/$p.log" || {
    note cnnc_layers "$1: building cnnc_bench failed: $(tail -1 "$dir/$p.log")"; return 1; }
}

rm -f "$raw/layer_shapes.jsonl"

echo "$SHAPES" | while read -r name net cin cout h stride bias count; do
  [ -n "$name" ] || continue
  ho=$(( (h - 1) / stride + 1 ))
  printf '{"layer": "%s", "net": "%s", "cin": %s, "cout": %s, "h": %s, "stride": %s, "bias": %s, "count": %s, "ho": %s, "flops": %s}\n' \
    "$name" "$net" "$cin" "$cout" "$h" "$stride" "$bias" "$count" "$ho" "$((2 * cin * cout * 9 * ho * ho))" \
    >> "$raw/layer_shapes.jsonl"
  program "$name" f "$cin" "$cout" "$h" "$stride" "$bias"
  program "$name" g "$cin" "$cout" "$h" "$stride" "$bias"
  build "$name" f && build "$name" g && echo "$name" >> "$dir/built"
done
say "cnnc: $(wc -l < "$dir/built" 2>/dev/null || echo 0) layer shapes compiled"
timing="--threads $threads --batch $batch --seconds $seconds --min-calls 3"
specs=$(sed -n 's/.*"layer": "\([^"]*\)".*"cin": \([0-9]*\), "cout": \([0-9]*\), "h": \([0-9]*\), "stride": \([0-9]*\).*/\1:\2:\3:\4:\5/p' \
  "$raw/layer_shapes.jsonl" | tr '\n' ';')

probe() { [ -x build/bench/peak ] && build/bench/peak >> "$raw/peak.jsonl" 2>> "$raw/peak.err"; }
probe
r=1
while [ "$r" -le "$rounds" ]; do
  say "round $r of $rounds: cnnc"
  for name in $(cat "$dir/built" 2>/dev/null); do
    # forward: the plain program; the grad program's forward and loss_grad
    "$dir/bench_${name}_f" forward $timing 2>> "$raw/layers.cnnc.err" |
      sed "s/\"net\": \"${name}_f\"/\"layer\": \"$name\", \"mode\": \"forward\"/" >> "$raw/layers.r$r.cnnc.jsonl"
    for mode in forward grad; do
      "$dir/bench_${name}_g" $mode $timing 2>> "$raw/layers.cnnc.err" |
        sed -e "s/\"net\": \"${name}_g\"/\"layer\": \"$name\", \"mode\": \"g_$mode\"/" >> "$raw/layers.r$r.cnnc.jsonl"
    done
  done
  say "round $r of $rounds: torch"
  $PY bench/peers/torch_bench.py --layers "$specs" --threads "$threads" --batch "$batch" \
    --seconds "$seconds" --min-calls 3 >> "$raw/layers.r$r.torch.jsonl" 2>> "$raw/layers.torch.err" ||
    note torch_layers "torch_bench.py --layers failed: $(tail -1 "$raw/layers.torch.err")"
  r=$((r + 1))
done
probe
