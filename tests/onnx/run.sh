#!/bin/sh
# ONNX import (compiler/onnx.c) against ONNX Runtime:
#   - torchvision's AlexNet, VGG-16, GoogLeNet, ResNet-18 and MobileNet V2,
#     exported at opset 13 with random weights (tests/onnx/export.py), compiled
#     from the .onnx file with its weights built in; `./NET forward` on a
#     batch of 2 (no --weights, and no note about untrained weights) matches
#     ONNX Runtime's outputs within 1e-4 relative (tests/onnx/compare.py);
#   - each of the five written back as a cnnc program (--emit=cnn) compiles
#     and gives the same outputs, bit for bit;
#   - small models covering each operator and attribute (tests/onnx/ops.py),
#     the same way;
#   - examples/onnx: a CNN trained in PyTorch, exported, compiled into a
#     library with its weights, gives PyTorch's test accuracy from C;
#   - bad models (tests/onnx/bad.py), each refused with exit 1 and a message
#     naming the file and the place.
# Installs PyTorch, torchvision and ONNX Runtime (npm onnxruntime-node, into
# bench/peers/node_modules, unless $ORT_MODULES names another) when missing.
#   sh tests/onnx/run.sh [NET...]     (default: all five)
# Prints one line per check and "N passed, N failed"; exits 1 on a failure.
set -u
cd "$(dirname "$0")/../.." || exit 2
CNNC=${CNNC:-bin/cnnc}
PY=/usr/bin/python3
nets=${*:-alexnet vgg16 googlenet resnet18 mobilenet_v2}
out=build/onnx
mkdir -p "$out"
passed=0 failed=0
pass() { echo "ok    $1"; passed=$((passed + 1)); }
fail() { echo "FAIL  $1"; failed=$((failed + 1)); }

# PyTorch and torchvision (the models, exported), ONNX Runtime (the
# reference): installed when missing, as tests/fullsize does
missing=$(for p in python3-torch python3-torchvision python3-numpy libopenblas0-pthread nodejs; do
  dpkg -s $p >/dev/null 2>&1 || echo $p; done)
command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | grep -v '^nodejs$')
if [ -n "$missing" ]; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    $sudo apt-get install -y -q --no-install-recommends $missing || exit 2
fi
ORT_MODULES=${ORT_MODULES:-$(pwd)/bench/peers/node_modules}
export ORT_MODULES
if [ ! -d "$ORT_MODULES/onnxruntime-node" ] && [ "$ORT_MODULES" = "$(pwd)/bench/peers/node_modules" ]; then
  command -v npm >/dev/null 2>&1 || { echo "FAIL  npm is needed to install onnxruntime-node"; exit 1; }
  (cd bench/peers && npm install --ignore-scripts --no-audit --no-fund >/dev/null 2>&1) ||
    { echo "FAIL  npm install --ignore-scripts onnxruntime-node (bench/peers) failed"; exit 1; }
fi
if ! $PY -c 'import torch, torchvision' 2>/dev/null || [ ! -d "$ORT_MODULES/onnxruntime-node" ]; then
  echo "FAIL  tests/onnx needs python3-torch, python3-torchvision, node and onnxruntime-node"; exit 1
fi

# check NAME MODEL X.safetensors X.bin DIMS [FLAGS [TYPE]]: compile (with
# cnnc's FLAGS), run, compare with ORT (the input of element TYPE, float32 by
# default; every output)
check() {
  name=$1 model=$2 d=$out/$1.run
  mkdir -p "$d"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  if ! $CNNC "$model" ${6:-} -o "$d/net" 2>"$d/err"; then
    fail "$name: cnnc $model: $(head -3 "$d/err")"; return
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  # the model's weights are built in: no --weights
  "$d/net" forward "$3" "$d/out.safetensors" 2>"$d/err" ||
    { fail "$name: forward: $(head -3 "$d/err")"; return; }
  if [ -s "$d/err" ]; then
    fail "$name: forward said: $(head -3 "$d/err")"; return
  fi
  rm -f "$d"/ort.bin*
  node tests/onnx/ort_run.js "$model" "$4" "$5" "$d/ort.bin" ${7:-float32} >/dev/null 2>"$d/err" ||
    { fail "$name: ONNX Runtime: $(head -3 "$d/err")"; return; }
  if line=$($PY tests/onnx/compare.py "$name" "$d/out.safetensors" "$d/ort.bin"); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  printf '%s (compiled in %.1f s)\n' "$line" "$secs"
}

# roundtrip NAME MODEL X.safetensors: --emit=cnn writes the model as a cnnc
# program and its weights; that program compiles, and its forward outputs are
# the imported model's, bit for bit
roundtrip() {
  name=$1 model=$2 d=$out/$1.run
  if ! $CNNC "$model" --emit=cnn -o "$d/written.cnn" 2>"$d/err" ||
     ! $CNNC "$d/written.cnn" -o "$d/written" 2>"$d/err" ||
     ! "$d/written" forward --weights "$d/written.safetensors" "$3" "$d/written.out.safetensors" 2>"$d/err"; then
    fail "$name --emit=cnn: $(head -3 "$d/err")"; return
  fi
  if $PY - "$d/out.safetensors" "$d/written.out.safetensors" <<'PY'
import sys
sys.path.insert(0, "tests/onnx")
import json, struct
from compare import read_tensor
def names(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return sorted(k for k in json.loads(f.read(n)) if k != "__metadata__")
a, b = sys.argv[1:3]
def same_tensor(k):
    (ta, xa), (tb, xb) = read_tensor(a, k), read_tensor(b, k)
    return ta == tb and xa.shape == xb.shape and xa.tobytes() == xb.tobytes()
same = names(a) == names(b) and all(same_tensor(k) for k in names(a))
sys.exit(0 if same else 1)
PY
  then
    pass "$name --emit=cnn: the written program ($(grep -c . "$d/written.cnn") lines) compiles and gives the imported model's outputs bit for bit"
  else
    fail "$name --emit=cnn: the written program's outputs differ from the imported model's"
  fi
}

# the five torchvision models (exported again when export.py changes)
missing=
for n in $nets; do [ "$out/$n.onnx" -nt tests/onnx/export.py ] || missing="$missing $n"; done
[ -z "$missing" ] || $PY tests/onnx/export.py "$out" $missing >/dev/null || { fail "export.py$missing"; }
# the five in two lines of work side by side (cnnc takes one core, and a large
# model compiles for tens of seconds), each printing its checks and then its
# "N passed, N failed" into a log, counted here
full_models() {
  passed=0 failed=0
  for n; do
    [ -f "$out/$n.onnx" ] && check "$n" "$out/$n.onnx" "$out/$n.x.safetensors" "$out/$n.x.bin" 2,3,224,224 &&
      roundtrip "$n" "$out/$n.onnx" "$out/$n.x.safetensors"
  done
  echo "$passed passed, $failed failed"
}
odd= even= i=0
for n in $nets; do
  if [ $((i % 2)) = 0 ]; then odd="$odd $n"; else even="$even $n"; fi
  i=$((i + 1))
done
# shellcheck disable=SC2086
full_models $odd > "$out/full.1.log" 2>&1 & first=$!
# shellcheck disable=SC2086
(full_models $even) > "$out/full.2.log" 2>&1
wait $first
for log in "$out/full.1.log" "$out/full.2.log"; do
  grep -v '^[0-9]* passed, [0-9]* failed$' "$log"
  counts=$(grep '^[0-9]* passed, [0-9]* failed$' "$log") || counts="0 passed, 1 failed"   # it died
  passed=$((passed + $(echo "$counts" | cut -d' ' -f1))) failed=$((failed + $(echo "$counts" | cut -d' ' -f3)))
done

# the operators, one small model each (ops.py prints NAME DIMS TYPE FLAGS per model)
if [ -f tests/onnx/ops.py ]; then
  rm -rf "$out/ops" && mkdir -p "$out/ops"
  $PY tests/onnx/ops.py "$out/ops" > "$out/ops/list" 2>"$out/ops/err" || fail "ops.py: $(tail -3 "$out/ops/err")"
  while read -r name dims type flags; do
    check "op_$name" "$out/ops/$name.onnx" "$out/ops/$name.x.safetensors" "$out/ops/$name.x.bin" "$dims" "$flags" "$type"
  done < "$out/ops/list"
  # several outputs written back as `output y, z`
  roundtrip op_two_outputs "$out/ops/two_outputs.onnx" "$out/ops/two_outputs.x.safetensors"
fi

# Dropout in training mode with a seed, read unbatched: the mask drawn at
# compile time is the one ONNX's reference draws with NumPy (ORT draws its
# own, so ops.py --seeded-dropout writes NumPy's outputs as the reference)
d=$out/seeded_dropout && rm -rf "$d" && mkdir -p "$d"
if $PY tests/onnx/ops.py "$d" --seeded-dropout 2>"$d/err" &&
   $CNNC "$d/seeded_dropout.onnx" --unbatched -o "$d/net" 2>"$d/err" &&
   "$d/net" forward "$d/seeded_dropout.x.safetensors" "$d/out.safetensors" 2>"$d/err"; then
  if line=$($PY tests/onnx/compare.py seeded_dropout "$d/out.safetensors" "$d/seeded_dropout.ref.bin"); then
    pass "${line#ok    } (NumPy's mask)"
  else
    fail "${line#FAIL  } (NumPy's mask)"
  fi
else
  fail "seeded_dropout: $(head -3 "$d/err")"
fi

# bad models: exit 1, and the message names the file and what is wrong
if [ -f tests/onnx/bad.py ]; then
  rm -rf "$out/bad" && mkdir -p "$out/bad"
  $PY tests/onnx/bad.py "$out/bad" > "$out/bad/list" || fail "bad.py"
  while IFS='|' read -r name flags want; do
    $CNNC "$out/bad/$name.onnx" $flags >/dev/null 2>"$out/bad/$name.err"
    rc=$?
    missing=$(echo "$want" | tr ';' '\n' | while read -r w; do grep -qF -- "$w" "$out/bad/$name.err" || echo "$w"; done)
    if [ $rc = 1 ] && grep -qF -- "$out/bad/$name.onnx: error: " "$out/bad/$name.err" && [ -z "$missing" ]; then
      pass "bad $name: $(grep -m1 error: "$out/bad/$name.err" | sed 's/^[^:]*: error: //')"
    else
      fail "bad $name: exit $rc, wanted 1 and '$want' in: $(head -3 "$out/bad/$name.err")"
    fi
  done < "$out/bad/list"
fi

# --loss: an imported classifier trains (`./mlp train`) on Fashion-MNIST; its
# final Softmax is left out of the loss (softmax_cross_entropy takes scores)
FMNIST=/usr/share/datasets/fashion-mnist
if [ -f tests/onnx/ops.py ] && [ -d $FMNIST ]; then
  d=$out/train && rm -rf "$d" && mkdir -p "$d"
  if $PY tests/onnx/ops.py "$d" --train && $CNNC "$d/mlp.onnx" --loss softmax_cross_entropy -o "$d/mlp" 2>"$d/err" &&
     "$d/mlp" train --epochs 1 --lr 0.05 --train $FMNIST/train-images-idx3-ubyte.gz $FMNIST/train-labels-idx1-ubyte.gz \
       --test $FMNIST/t10k-images-idx3-ubyte.gz $FMNIST/t10k-labels-idx1-ubyte.gz --save "$d/mlp.ckpt" >"$d/log" 2>&1; then
    acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%.*/\1/p' "$d/log")
    if [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a > 70) }'; then
      pass "--loss softmax_cross_entropy: ./mlp train, 1 epoch of Fashion-MNIST: test accuracy $acc%"
    else
      fail "--loss softmax_cross_entropy: ./mlp train: test accuracy '$acc': $(tail -3 "$d/log")"
    fi
  else
    fail "--loss softmax_cross_entropy: $(tail -3 "$d/err" "$d/log" 2>/dev/null)"
  fi
  if $CNNC "$d/mlp.onnx" --loss mse --emit=graph 2>"$d/err" | grep -q '^loss 1 \* mse(%[0-9]*, target)$'; then
    pass "--loss mse: the graph's loss is mse against a target"
  else
    fail "--loss mse: $(head -3 "$d/err")"
  fi
fi

# examples/onnx: PyTorch trains a small CNN (6,000 examples, one epoch) and
# exports it; `cnnc fmnist.onnx --lib` builds it with its weights into a
# library; examples/onnx/classify.c, with no weights file, gives PyTorch's
# test accuracy (to within 0.05 points: a few argmax ties may differ)
if [ -d $FMNIST ]; then
  d=$out/example && rm -rf "$d" && mkdir -p "$d"
  if $PY examples/onnx/train_export.py "$d/fmnist.onnx" --examples 6000 >"$d/torch.log" 2>&1 &&
     $CNNC "$d/fmnist.onnx" --lib -o "$d/libfmnist.a" 2>"$d/err" &&
     cc -std=c99 -Wall -Wextra -Werror -I"$d" examples/onnx/classify.c "$d/libfmnist.a" -fopenmp -lz -lm \
       -o "$d/classify" 2>"$d/err" &&
     "$d/classify" $FMNIST/t10k-images-idx3-ubyte.gz $FMNIST/t10k-labels-idx1-ubyte.gz >"$d/log" 2>"$d/err"; then
    t=$(sed -n 's/^pytorch test accuracy: \([0-9.]*\)%$/\1/p' "$d/torch.log")
    c=$(sed -n 's/^cnnc test accuracy: \([0-9.]*\)%.*/\1/p' "$d/log")
    if [ -n "$t" ] && [ -n "$c" ] && awk -v t="$t" -v c="$c" 'BEGIN { d = t - c; exit !(d <= 0.05 && d >= -0.05) }'; then
      pass "examples/onnx: PyTorch -> ONNX -> libfmnist.a: classify.c's test accuracy $c% (PyTorch's $t%), no weights file"
    else
      fail "examples/onnx: classify.c's test accuracy '$c'%, PyTorch's '$t'%"
    fi
  else
    fail "examples/onnx: $(tail -3 "$d/torch.log" "$d/err" 2>/dev/null)"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
