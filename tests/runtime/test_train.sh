#!/bin/sh
# test_train.sh -- the training loop of the generated program (runtime/train.c,
# net.c's loss_grad and train_step), through tests/runtime/fake_net.c, a
# hand-written network that behaves like a generated executable.
#
#   sh tests/runtime/test_train.sh          # against lib/libcnnrt*.a
#   sh tests/runtime/test_train.sh --asan   # against the _asan libraries
#
# Needs `make runtime` first, python3 (to cut a small Fashion-MNIST subset) and
# the data in /usr/share/datasets/fashion-mnist. Prints "N passed, N failed" last.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/test_train.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
passed=0 failed=0

ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1"; [ -f "$T/err" ] && sed 's/^/     | /' "$T/err" | tail -n 5; }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# ---- the fake network ---------------------------------------------------------
SAN= ASAN_LIB=
if [ "$1" = --asan ]; then
    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
    ASAN_LIB=_asan
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1
fi
cc -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp $SAN -I"$ROOT/runtime" \
   -o "$T/fake" "$ROOT/tests/runtime/fake_net.c" \
   "$ROOT/lib/libcnnrt_main$ASAN_LIB.a" "$ROOT/lib/libcnnrt$ASAN_LIB.a" -ljpeg -lpng -lz -lm || {
    echo "cannot build the fake network (run make first)"; echo "0 passed, 1 failed"; exit 1; }
FAKE=$T/fake
cd "$T" || exit 1

# ---- a small data set: 2,000 training and 1,000 test examples -------------------
python3 - "$DATA" <<'EOF' || { echo "cannot make the data set"; echo "0 passed, 1 failed"; exit 1; }
import gzip, struct, sys
d = sys.argv[1] + '/'
def read(f):
    try: return gzip.open(d + f + '.gz').read()
    except FileNotFoundError: return open(d + f, 'rb').read()
ti, tl = read('train-images-idx3-ubyte'), read('train-labels-idx1-ubyte')
ei, el = read('t10k-images-idx3-ubyte'), read('t10k-labels-idx1-ubyte')
imgs = lambda b, n, h=28: struct.pack('>IIII', 0x803, n, h, 28) + b[16:16 + n * h * 28]
labs = lambda b, n: struct.pack('>II', 0x801, n) + b[8:8 + n]
open('train-images', 'wb').write(imgs(ti, 2000))
open('train-labels', 'wb').write(labs(tl, 2000))
gzip.open('test-images.gz', 'wb').write(imgs(ei, 1000))
gzip.open('test-labels.gz', 'wb').write(labs(el, 1000))
bad = bytearray(labs(tl, 2000)); bad[8 + 5] = 10          # example 5 has label 10
open('bad-labels', 'wb').write(bad)
open('small-images', 'wb').write(imgs(ti, 2000, 27))      # 27 x 28 images
EOF

DATA_ARGS="--train train-images train-labels --test test-images.gz test-labels.gz"
RUN="$FAKE train $DATA_ARGS --threads 2 --seed 5"

# The value of metadata key $2 in checkpoint $1 (from the JSON header).
meta() { head -c 4096 "$1" | tr ',{}' '\n\n\n' | sed -n "s/^\"$2\":\"\\(.*\\)\"$/\\1/p"; }
# A random sleep between 0.1 and 2.0 seconds.
nap() { sleep "$(od -An -N2 -tu2 /dev/urandom | awk '{ printf "%.2f", 0.1 + ($1 % 1900) / 1000 }')"; }
# Runs the command, its stdout in $T/out, stderr in $T/err, status in $rc.
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; cat "$T/err" >>"$T/all.err"; }

# ---- the C API ----------------------------------------------------------------
run "$FAKE" selftest
check "selftest: loss_grad, train_step, checkpoints through the C API" [ $rc -eq 0 ]
[ $rc -eq 0 ] || cat "$T/out"

# ---- one epoch learns ------------------------------------------------------------
run "$FAKE" eval --test test-images.gz test-labels.gz
before=$(sed -n 's/^top-1: *\([0-9.]*\)%.*/\1/p' "$T/out")
run $RUN --epochs 1 --save one.ck
after=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' "$T/out")
check "1 epoch: accuracy $before% -> $after%" \
    awk -v a="$after" -v b="$before" 'BEGIN { exit !(a > 50 && a > b + 20) }'
check "1 epoch: one epoch line, in the promised form" \
    grep -Eq '^epoch 1/1  train loss [0-9.]+  test loss [0-9.]+  test acc [0-9.]+%  [0-9.]+ s  [0-9,]+ img/s$' "$T/out"
check "1 epoch: no progress bar when stderr is not a terminal" \
    sh -c "! grep -q \"\$(printf '\\r')\" '$T/err'"
run "$FAKE" eval --weights one.ck --test test-images.gz test-labels.gz
check "1 epoch: eval loads the checkpoint and agrees" grep -q "^top-1: *$after%" "$T/out"
m="$(meta one.ck format) $(meta one.ck network) $(meta one.ck epoch) $(meta one.ck step) $(meta one.ck seed)"
m="$m $(meta one.ck lr) $(meta one.ck batch) $(meta one.ck threads) $(meta one.ck cnnc)"
check "checkpoint metadata: $m" [ "$m" = "pt fake 1 32 5 0.05 64 2 test" ]
check "checkpoint metadata: structure, rng, crc32" \
    [ "$(meta one.ck structure)" = fa4e0123456789ab -a ${#m} -gt 0 -a -n "$(meta one.ck rng)" -a -n "$(meta one.ck crc32)" ]
check "checkpoint holds momentum.* for learned parameters only" \
    sh -c "head -c 4096 one.ck | grep -q 'momentum.fc.weight' && ! head -c 4096 one.ck | grep -q 'momentum.stats'"

# ---- determinism ------------------------------------------------------------------
run $RUN --epochs 2 --save a.ck
run $RUN --epochs 2 --save b.ck
check "same seed and threads: identical checkpoint files" cmp -s a.ck b.ck
run $RUN --epochs 2 --seed 6 --save c.ck
check "another seed: another checkpoint" sh -c '! cmp -s a.ck c.ck'

# ---- resume: 3 epochs = 2 epochs + 1 ---------------------------------------------
run $RUN --epochs 3 --save full.ck --log full.csv --plot full.svg
check "3 epochs" [ $rc -eq 0 ]
run $RUN --epochs 2 --save part.ck --log part.csv
run $RUN --epochs 3 --resume part.ck --save part.ck --log part.csv --plot part.svg
check "2 epochs, then --resume for the 3rd: identical checkpoint to 3 straight" cmp -s full.ck part.ck
check "--resume says where it continues" grep -q "resuming from part.ck: 2 epochs done" "$T/out"
check "--log: header and one row per epoch" sh -c '
    [ "$(head -n 1 full.csv)" = "epoch,lr,train_loss,test_loss,test_acc,seconds" ] &&
    [ "$(cut -d, -f1 full.csv | tr "\n" " ")" = "epoch 1 2 3 " ] &&
    [ "$(cut -d, -f2 full.csv | tr "\n" " ")" = "lr 0.05 0.05 0.025 " ]'
check "--log on resume: rows 1-3 once, the same numbers" \
    sh -c 'cut -d, -f1-5 full.csv > f5; cut -d, -f1-5 part.csv > p5; cmp -s f5 p5'
if command -v xmllint >/dev/null 2>&1; then
    check "--plot: well-formed SVG" xmllint --noout full.svg
else
    check "--plot: an SVG" grep -q "<svg" full.svg
fi
check "--plot: three series and a legend" sh -c '[ $(grep -c "<polyline" full.svg) = 3 ] &&
    grep -q "test accuracy" full.svg && grep -q "train loss" full.svg'
check "--plot on resume: the same chart" cmp -s full.svg part.svg
check "no temporary files left" sh -c '! ls | grep -q "\.tmp\."'

# ---- SIGKILL at random moments -----------------------------------------------------
SLOW=8000
run $RUN --epochs 6 --save ref6.ck
for k in 1 2 3 4; do
    rm -f kill.ck
    FAKE_SLOW_US=$SLOW $RUN --epochs 6 --save kill.ck >/dev/null 2>&1 &
    pid=$!
    nap
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -f kill.ck ]; then
        run "$FAKE" eval --weights kill.ck --test test-images.gz test-labels.gz
        check "kill -9 #$k (epoch $(meta kill.ck epoch)): the checkpoint loads" [ $rc -eq 0 ]
        run $RUN --epochs 6 --resume kill.ck --save kill.ck
    else
        ok "kill -9 #$k: killed before the first checkpoint (nothing on disk)"
        run $RUN --epochs 6 --save kill.ck
    fi
    check "kill -9 #$k: resumed to the uninterrupted run's weights" cmp -s ref6.ck kill.ck
    rm -f kill.ck.tmp.*
done

# ---- SIGINT: finish the step, checkpoint, exit 130 -------------------------------------
FAKE_SLOW_US=20000 $RUN --epochs 3 --save int.ck >int.out 2>int.err &
pid=$!
i=0
while ! grep -q "^training" int.out 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.8                               # into epoch 2
kill -INT $pid
wait $pid
rc=$?
cp int.err "$T/err"
check "SIGINT: exit 130" [ $rc -eq 130 ]
check "SIGINT: says where it stopped" grep -q "interrupted .*wrote int.ck" int.err
run "$FAKE" eval --weights int.ck --test test-images.gz test-labels.gz
check "SIGINT: the checkpoint loads" [ $rc -eq 0 ]
check "SIGINT: the checkpoint is mid-epoch" [ "$(meta int.ck epoch_step)" != 0 ]
run $RUN --epochs 3 --resume int.ck --save int.ck
check "SIGINT: resuming mid-epoch reaches the uninterrupted run's weights" cmp -s full.ck int.ck

# ---- divergence ---------------------------------------------------------------------
cp one.ck nan.ck
run env FAKE_NAN_AT=40 $RUN --epochs 3 --save nan.ck
check "NaN loss: exit 1" [ $rc -eq 1 ]
check "NaN loss: the message" grep -q "^error: the loss diverged (nan) at epoch 2, step 8; the last good checkpoint is nan.ck$" "$T/err"
check "NaN loss: the epoch-1 checkpoint stays" [ "$(meta nan.ck epoch)" = 1 ]
run "$FAKE" eval --weights nan.ck --test test-images.gz test-labels.gz
check "NaN loss: the checkpoint loads" [ $rc -eq 0 ]
run $RUN --epochs 2 --lr 1e30 --save huge.ck
check "--lr 1e30: diverges with exit 1 and no checkpoint" \
    sh -c "[ $rc -eq 1 ] && grep -q 'the loss diverged' '$T/err' && [ ! -f huge.ck ]"

# ---- bad inputs, refused before training starts ----------------------------------------
refused() {   # name, expected text in stderr, then the arguments
    name=$1 text=$2; shift 2
    run "$FAKE" train "$@" --save never.ck
    check "$name: exit 1 naming $text" sh -c "[ $rc -eq 1 ] && grep -q '$text' '$T/err' &&
        ! grep -q '^epoch' '$T/out' && [ ! -f never.ck ]"
}
refused "missing file" "no-such-images" --train no-such-images train-labels
refused "label out of range" "bad-labels.*label 10" --train train-images bad-labels
refused "wrong example size" "small-images.*756 values" --train small-images train-labels
refused "bad test labels" "bad-labels" --train train-images train-labels --test train-images bad-labels
run "$FAKE" train
check "no training data: exit 2" [ $rc -eq 2 ]
run $RUN --save no-such-dir/x.ck
check "--save into a missing directory: exit 1 before training" \
    sh -c "[ $rc -eq 1 ] && grep -q no-such-dir '$T/err' && ! grep -q '^epoch' '$T/out'"
printf 'garbage' > damaged.ck
run $RUN --resume damaged.ck
check "--resume of a damaged file: exit 1 naming it" sh -c "[ $rc -eq 1 ] && grep -q damaged.ck '$T/err'"
cp one.ck flipped.ck
size=$(wc -c < flipped.ck)
printf '\377\377\377\377' | dd of=flipped.ck bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
run $RUN --resume flipped.ck
check "--resume of a corrupted checkpoint: the CRC-32 says so" grep -q "CRC-32" "$T/err"

# ---- settings ------------------------------------------------------------------------
run env FAKE_SERIAL=1 $RUN --epochs 1 --save serial.ck
check "train_serial: one thread, trains" grep -Eq '^test accuracy: [5-9][0-9]' "$T/out"
run env FAKE_NESTEROV=1 FAKE_WD=0.001 $RUN --epochs 1 --momentum 0.5 --batch 100 --save nest.ck
m="$rc $(meta nest.ck momentum) $(meta nest.ck batch) $(meta nest.ck step)"
check "nesterov, weight decay, --momentum, --batch: $m" [ "$m" = "0 0.5 100 20" ]
run $RUN --epochs 1 --threads 1 --save t1.ck
check "1 thread trains too" grep -Eq '^test accuracy: [5-9][0-9]' "$T/out"
(cd "$T" && mkdir -p dflt && cd dflt && "$FAKE" train --train ../train-images ../train-labels --epochs 1 >/dev/null 2>&1)
check "default checkpoint name: NAME.ckpt.safetensors, and training without a test set" \
    [ -f dflt/fake.ckpt.safetensors ]

cat int.err >>"$T/all.err"
check "no sanitizer or runtime error reports in any run" \
    sh -c "! grep -Eq 'Sanitizer|runtime error:|LeakSanitizer' '$T/all.err'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
