#!/bin/sh
# Training with real compiled networks (bin/cnnc), on Fashion-MNIST:
#  - the MLP example, one epoch of its own recipe, reaches >= 82% test accuracy;
#  - two runs of LeNet with the same seed and threads write identical weights;
#  - LeNet killed with SIGKILL at random moments always leaves a checkpoint
#    that loads, and resuming from it ends bit-identical to a run that never
#    stopped;
#  - the same network trains under AddressSanitizer and UBSan.
# Run from anywhere; needs make first. Prints "N passed, N failed" last.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/test_training.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok()    { passed=$((passed + 1)); echo "ok   $1"; }
bad()   { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$T/err" ] && tail -n 5 "$T/err" | sed 's/^/     | /'; }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
run()   { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
cd "$T" || exit 1

"$ROOT/bin/cnnc" "$ROOT/examples/mlp.cnn" -o mlp && "$ROOT/bin/cnnc" "$ROOT/examples/lenet.cnn" -o lenet &&
  "$ROOT/bin/cnnc" "$ROOT/examples/lenet.cnn" --sanitize -o lenet_asan || {
  echo "cannot compile the examples"; echo "0 passed, 1 failed"; exit 1; }

# a 3,000-example training subset and a 1,000-example test subset
python3 - "$DATA" <<'PY' || { echo "cannot make the data"; echo "0 passed, 1 failed"; exit 1; }
import gzip, struct, sys
d = sys.argv[1] + '/'
read = lambda f: gzip.open(d + f + '.gz').read()
ti, tl = read('train-images-idx3-ubyte'), read('train-labels-idx1-ubyte')
ei, el = read('t10k-images-idx3-ubyte'), read('t10k-labels-idx1-ubyte')
imgs = lambda b, n: struct.pack('>IIII', 0x803, n, 28, 28) + b[16:16 + n * 784]
labs = lambda b, n: struct.pack('>II', 0x801, n) + b[8:8 + n]
open('tr-i', 'wb').write(imgs(ti, 3000)); open('tr-l', 'wb').write(labs(tl, 3000))
open('te-i', 'wb').write(imgs(ei, 1000)); open('te-l', 'wb').write(labs(el, 1000))
PY
FULL="--train $DATA/train-images-idx3-ubyte.gz $DATA/train-labels-idx1-ubyte.gz --test $DATA/t10k-images-idx3-ubyte.gz $DATA/t10k-labels-idx1-ubyte.gz"
SMALL="--train tr-i tr-l --test te-i te-l --threads 2 --seed 7"

# ---- MLP, one epoch of the full data set -------------------------------------------
run ./mlp train $FULL --epochs 1 --threads 2 --save mlp.ckpt
acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' "$T/out")
check "mlp: one epoch of Fashion-MNIST reaches ${acc:-?}% (>= 82%)" \
  awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 82) }'

# ---- determinism ----------------------------------------------------------------------
run ./lenet train $SMALL --epochs 2 --save a.ckpt
run ./lenet train $SMALL --epochs 2 --save b.ckpt
check "lenet: two runs with the same seed and threads write identical checkpoints" cmp -s a.ckpt b.ckpt

# ---- SIGKILL at random moments, then resume ----------------------------------------------
run ./lenet train $SMALL --epochs 4 --save full.ckpt
nap() { sleep "$(od -An -N2 -tu2 /dev/urandom | awk '{ printf "%.2f", 0.2 + ($1 % 1500) / 1000 }')"; }
rm -f k.ckpt
all_loaded=true
for i in 1 2 3 4 5; do
  if [ -f k.ckpt ]; then ./lenet train $SMALL --epochs 4 --save k.ckpt --resume k.ckpt >/dev/null 2>&1 &
  else ./lenet train $SMALL --epochs 4 --save k.ckpt >/dev/null 2>&1 & fi
  pid=$!
  nap
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -f k.ckpt ] && ! ./lenet eval --weights k.ckpt --test te-i te-l >/dev/null 2>"$T/err"; then
    all_loaded=false
  fi
  ls k.ckpt.tmp* >/dev/null 2>&1 && rm -f k.ckpt.tmp*      # a killed write leaves only its temporary
done
check "lenet: after each SIGKILL the checkpoint on disk loads" $all_loaded
if [ -f k.ckpt ]; then run ./lenet train $SMALL --epochs 4 --save k.ckpt --resume k.ckpt
else run ./lenet train $SMALL --epochs 4 --save k.ckpt; fi
check "lenet: resumed after the kills, the weights equal an uninterrupted run's" cmp -s full.ckpt k.ckpt

# ---- sanitizers -------------------------------------------------------------------------
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run ./lenet_asan train --train tr-i tr-l --test te-i te-l --epochs 1 --threads 2 --save asan.ckpt
check "lenet under ASan+UBSan: one epoch trains without a report" \
  sh -c "[ $rc -eq 0 ] && ! grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' '$T/err'"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
