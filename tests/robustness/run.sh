#!/bin/sh
# run.sh: robustness of the generated program and its C API (issue #7).
#
#   sh tests/robustness/run.sh       (from the repository's root, after `make`)
#
# Builds examples/lenet.cnn with bin/cnnc twice, plainly (to make checkpoints
# quickly) and with --sanitize (AddressSanitizer in the generated code, the
# ASan/UBSan runtime), which every check runs; plus tests/robustness/api.c
# against the sanitized library. The checks, one or more per case of the
# issue:
#   weights    damaged weights and checkpoints (tests/robustness/corrupt.py
#              makes them from a real one) and a checkpoint of another
#              network: refused by `lenet eval --weights` (exit 1) and by
#              lenet_load (< 0), each with a message naming the problem;
#   data       bad data files: exit 1 naming the file (and line), before
#              any training;
#   writes     a checkpoint that cannot be written (no such directory, a
#              file where the directory should be, a full disk: ulimit -f)
#              is reported and leaves the previous one intact;
#   signals    Ctrl-C (SIGINT) saves a loadable checkpoint and exits 130;
#              SIGKILL at random moments leaves a loadable one;
#   limits     absurd .cnn files refused by cnnc with a message within a
#              second; --batch and --threads the program cannot honour
#              refused with exit 2;
#   api        the C API's preconditions (api.c pre).
#   sanitizer  --sanitize reports a generated GEMM reading past its input.
# No run may print a sanitizer report. The last line is "N passed, N
# failed"; the exit status is 0 only when nothing failed.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CNNC=$ROOT/bin/cnnc
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
CC=${CC:-cc}
if [ ! -x "$CNNC" ]; then
    echo "run.sh: no $CNNC (run make first)"; echo "0 passed, 1 failed"; exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/robustness.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
cd "$T" || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1"; [ -s err ] && sed 's/^/     | /' err | tail -n 5; }
check() { what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# Runs the command: stdout in out, stderr in err (and all.err), status in $rc.
run() { "$@" >out 2>err; rc=$?; cat err >>all.err; }
# Whether the last run exited with status $1 and its stderr holds each of
# the other arguments (fixed strings).
says() {
    [ "$rc" -eq "$1" ] || return 1
    shift
    for w; do grep -qF -- "$w" err || return 1; done
}
# Milliseconds since the epoch.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# A random sleep between 0.1 and 2.0 seconds.
nap() { sleep "$(od -An -N2 -tu2 /dev/urandom | awk '{ printf "%.2f", 0.1 + ($1 % 1900) / 1000 }')"; }
die() { echo "run.sh: $1"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

# ---- the programs -----------------------------------------------------------------
"$CNNC" "$ROOT/examples/lenet.cnn" -o lenet_plain 2>err || die "cannot build lenet"
"$CNNC" "$ROOT/examples/lenet.cnn" --sanitize -o lenet 2>err || die "cannot build lenet --sanitize"
"$CNNC" "$ROOT/examples/mlp.cnn" -o mlp 2>err || die "cannot build mlp"
mkdir lib
"$CNNC" "$ROOT/examples/lenet.cnn" --lib --sanitize -o lib/liblenet.a 2>err || die "cannot build liblenet.a"
$CC -std=c11 -O1 -g -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=all -Ilib \
    -o api "$ROOT/tests/robustness/api.c" lib/liblenet.a -fopenmp -lm 2>err || die "cannot build api.c"
LENET=./lenet

# ---- the data: 2,000 training and 200 test examples, and broken files ---------------
python3 - "$DATA" <<'EOF' || die "cannot make the data sets"
import gzip, struct, sys
d = sys.argv[1] + '/'
ti = gzip.open(d + 'train-images-idx3-ubyte.gz').read()
tl = gzip.open(d + 'train-labels-idx1-ubyte.gz').read()
imgs = lambda n, at=0: struct.pack('>IIII', 0x803, n, 28, 28) + ti[16 + at * 784:16 + (at + n) * 784]
labs = lambda n, at=0: struct.pack('>II', 0x801, n) + tl[8 + at:8 + at + n]
open('train-images', 'wb').write(imgs(2000))
open('train-labels', 'wb').write(labs(2000))
test = gzip.compress(imgs(200, 2000), mtime=0)
open('test-images.gz', 'wb').write(test)
open('test-labels.gz', 'wb').write(gzip.compress(labs(200, 2000), mtime=0))
open('truncated.gz', 'wb').write(test[:len(test) // 2])               # cut inside the stream
open('bad-magic', 'wb').write(b'\x50\x4b\x03\x04' + imgs(2000)[4:])    # a zip file's magic
open('labels-1999', 'wb').write(labs(1999))                          # one label short
lab = bytearray(labs(2000)); lab[8 + 5] = 10                          # example 5: class 10 of 10
open('label-10', 'wb').write(lab)
row = lambda i: '%d,' % tl[8 + i] + ','.join(str(b) for b in ti[16 + i * 784:16 + (i + 1) * 784])
rows = [row(i) for i in range(20)]
head = 'label,' + ','.join('p%d' % k for k in range(784))
open('good.csv', 'w').write('\n'.join([head] + rows) + '\n')
short = list(rows); short[2] = short[2].rsplit(',', 1)[0]            # line 4: 783 values
open('width.csv', 'w').write('\n'.join([head] + short) + '\n')
text = list(rows); f = text[3].split(','); f[2] = 'abc'; text[3] = ','.join(f)   # line 5, column 3
open('text.csv', 'w').write('\n'.join([head] + text) + '\n')
EOF
TRAIN="--train train-images train-labels"
TEST="--test test-images.gz test-labels.gz"

# a real checkpoint of each network, one epoch each
./lenet_plain train $TRAIN --epochs 1 --threads 2 --save good.ck >out 2>err || die "cannot train lenet"
./mlp train $TRAIN --epochs 1 --threads 2 --save mlp.ck >out 2>err || die "cannot train mlp"

# ---- weights and checkpoints ------------------------------------------------------
run $LENET eval --weights good.ck $TEST
check "eval --weights of a good checkpoint: exit 0" [ $rc -eq 0 ]
run ./api load good.ck
check "lenet_load of a good checkpoint: 0" [ $rc -eq 0 ]
mkdir bad
python3 "$ROOT/tests/robustness/corrupt.py" good.ck bad >cases || die "corrupt.py failed"
echo "mlp_checkpoint network 'mlp'" >>cases
cp mlp.ck bad/mlp_checkpoint.safetensors
while read -r name word; do
    f=bad/$name.safetensors
    run $LENET eval --weights "$f" $TEST
    check "eval --weights $name: exit 1, '$word' and the file named" says 1 "$word" "$f"
    check "eval --weights $name: no results printed" sh -c '! grep -q "^top-1" out'
    run ./api load "$f"
    cp out err                                # api prints lenet_error on stdout
    check "lenet_load $name: < 0, lenet_error says '$word'" says 1 "$word" "$f"
done <cases

# ---- data files -----------------------------------------------------------------
# data_case NAME "FILES" WORD...: training on --train FILES exits 1 with
# each WORD in the message, before the first epoch (and its checkpoint).
data_case() {
    name=$1 files=$2
    shift 2
    rm -f d.ck
    # shellcheck disable=SC2086
    run $LENET train --train $files --epochs 1 --threads 2 --save d.ck
    check "train on $name: exit 1, the message has: $*" says 1 "$@"
    check "train on $name: refused before training" \
        sh -c '! grep -q "^training\|^epoch" out && [ ! -e d.ck ]'
}
data_case "truncated gzip" "truncated.gz test-labels.gz" truncated.gz truncated
data_case "wrong magic" "bad-magic train-labels" bad-magic "not an IDX file"
data_case "image and label counts that differ" "train-images labels-1999" \
    "train-images holds 2000 images but labels-1999 holds 1999 labels"
data_case "a missing file" "train-images no-such-labels" "no-such-labels: cannot open"
data_case "a label out of range" "train-images label-10" "label-10: label 10 of example 5"
data_case "a CSV row of the wrong width" "width.csv" "width.csv:4: 784 columns, expected 785"
data_case "a CSV field of text" "text.csv" "text.csv:5: column 3: 'abc' is not a number"
run $LENET train --train good.csv --epochs 1 --threads 2 --save d.ck
check "train on a good CSV: trains" sh -c "[ $rc -eq 0 ] && [ -e d.ck ]"
run $LENET eval --weights good.ck --test test-images.gz truncated.gz
check "eval --test with truncated labels: exit 1 naming the file" says 1 "truncated.gz"

# ---- writes that fail -------------------------------------------------------------
run $LENET train $TRAIN --epochs 1 --save no-such-dir/x.ck
check "--save into a missing directory: exit 1, before training, named" \
    sh -c "[ $rc -eq 1 ] && grep -qF no-such-dir err && ! grep -q '^epoch' out"
: >afile
run $LENET train $TRAIN --epochs 1 --save afile/x.ck
check "--save under a file: exit 1, before training, named" \
    sh -c "[ $rc -eq 1 ] && grep -qF afile err && ! grep -q '^epoch' out"
# A full disk: the file size limit (ulimit -f, SIGXFSZ ignored so that
# write fails with EFBIG) stops the checkpoint of epoch 2 part way.
cp good.ck prev.ck && cp good.ck prev.orig
run sh -c "trap '' XFSZ; ulimit -f 200; exec $LENET train $TRAIN --epochs 2 --threads 2 --resume prev.ck --save prev.ck"
check "a full disk while checkpointing: exit 1, reported" \
    says 1 "cannot write the checkpoint" "prev.ck" "File too large"
check "a full disk while checkpointing: the previous checkpoint intact" cmp -s prev.ck prev.orig
check "a full disk while checkpointing: no temporary file left" sh -c '! ls | grep -q "prev.ck.tmp"'
run ./api save afile/w.safetensors
cp out err
check "lenet_save under a file: < 0, named" says 1 "afile/w.safetensors"
run sh -c "trap '' XFSZ; ulimit -f 200; exec ./api save prev.ck"
cp out err
check "lenet_save on a full disk: < 0, reported" says 1 "File too large"
check "lenet_save on a full disk: the previous file intact" cmp -s prev.ck prev.orig

# ---- signals ----------------------------------------------------------------------
# Ctrl-C: the step finishes, a checkpoint is written, exit 130.
$LENET train $TRAIN --epochs 30 --threads 2 --save int.ck >int.out 2>int.err &
pid=$!
i=0                                 # the handler is set once training starts
while ! grep -q "^training" int.out && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
nap
kill -INT $pid
wait $pid
rc=$?
cat int.err >>all.err
check "SIGINT: exit 130" [ $rc -eq 130 ]
check "SIGINT: says where it stopped" grep -q "interrupted .*wrote int.ck" int.err
run $LENET eval --weights int.ck $TEST
check "SIGINT: the checkpoint loads" [ $rc -eq 0 ]
# SIGKILL at random moments after the first checkpoint: the last one loads.
for k in 1 2 3; do
    rm -f kill.ck
    $LENET train $TRAIN --epochs 30 --threads 2 --save kill.ck >kill.out 2>kill.err &
    pid=$!
    i=0
    while [ ! -e kill.ck ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
    nap
    kill -KILL $pid
    wait $pid 2>/dev/null
    run $LENET eval --weights kill.ck $TEST
    check "SIGKILL #$k: the checkpoint loads" [ $rc -eq 0 ]
done

# ---- limits ---------------------------------------------------------------------
python3 - <<'EOF' || die "cannot write the .cnn files"
head = "network t\ninput x : [1, 28, 28]\nlabels y : class(10)\n"
loss = "loss = softmax_cross_entropy(f, y)\n"
cnn = {
    'long_line': head + "x -> flatten -> dense(10) -> f  # " + "a" * (10 << 20) + "\n" + loss,
    'deep_nesting': head + "x -> flatten -> dense(" + "(" * 10000 + "10" + ")" * 10000 + ") -> f\n" + loss,
    'repeat_100000': head + "x -> flatten -> dense(10) -> repeat(100000, relu) -> f\n" + loss,
    'pipeline_30000': head + "x -> flatten -> dense(10)" + " -> relu" * 30000 + " -> f\n" + loss,
    'huge_input': head.replace("[1, 28, 28]", "[1000000, 1000000, 1000000]") + "x -> flatten -> dense(10) -> f\n" + loss,
    'huge_dense': head + "x -> flatten -> dense(99999999999999999999) -> dense(10) -> f\n" + loss,
}
for name, text in cnn.items():
    open(name + '.cnn', 'w').write(text)
EOF
for name in long_line deep_nesting repeat_100000 pipeline_30000 huge_input huge_dense; do
    t0=$(ms)
    run timeout 10 "$CNNC" $name.cnn -o limit.out
    t=$(( $(ms) - t0 ))
    check "cnnc $name.cnn: refused with an error ($t ms)" \
        sh -c "[ $rc -eq 1 ] && grep -q 'error:' err && [ ! -e limit.out ]"
    check "cnnc $name.cnn: within a second" [ $t -le 1000 ]
    rm -f limit.out
done
for arg in "--batch 100000000" "--threads 0" "--threads 5000"; do
    # shellcheck disable=SC2086
    run $LENET train $TRAIN --epochs 1 --save lim.ck $arg
    check "train $arg: exit 2, the option named" says 2 "${arg%% *}"
done

# ---- the C API's preconditions ------------------------------------------------------
run ./api pre
check "api: every precondition fails cleanly (api.c pre)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || grep -v '^ok' out | sed 's/^/     | /'

# ---- the sanitizer sees the generated code's reads -------------------------------------
# A GEMM's edge reads with masked vector loads, which --sanitize checks as one
# range each (llvm.c masked_access). A dense layer of 20 inputs reads each row
# of x as a vector of 16 and a masked one of 4: given 19 floats, ASan must
# report a read of 16 bytes past the end in the GEMM routine (that run's
# stderr is kept out of all.err); given 20, nothing.
cat >d20.cnn <<'EOF'
network d20
input  x : [20]
x -> dense(10) -> f
EOF
cat >d20.c <<'EOF'
#include "d20.h"
#include <stdlib.h>
int main(int argc, char **argv)
{
    d20 *net = d20_new(1);
    float *x = calloc(20 - atoi(argv[1]), sizeof *x), out[10];
    d20_forward(net, 1, x, out);
    d20_free(net);
    free(x);
    return 0;
}
EOF
if "$CNNC" d20.cnn --lib --sanitize -o libd20.a 2>err &&
   $CC -std=c11 -g -fsanitize=address,undefined -I. -o d20 d20.c libd20.a -fopenmp -lm 2>err; then
    run ./d20 0
    check "sanitized forward with the whole input: no report" [ $rc -eq 0 ]
    ./d20 1 >out 2>d20.err; rc=$?
    check "sanitized forward one float short: ASan reports the GEMM's masked read" \
        sh -c "[ $rc -ne 0 ] && grep -q 'heap-buffer-overflow' d20.err &&
               grep -q 'READ of size 16' d20.err && grep -q 'cnnc.gemm' d20.err"
else
    bad "cnnc d20.cnn --lib --sanitize and its program build"
fi

check "no sanitizer report in any run" \
    sh -c '! grep -q "AddressSanitizer\|LeakSanitizer\|runtime error:" all.err'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
