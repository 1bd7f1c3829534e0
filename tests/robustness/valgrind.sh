#!/bin/sh
# valgrind.sh: Valgrind's memcheck over the compiler and a generated program
# (issue #7): no definite leak and no invalid access
#   - in bin/cnnc compiling every examples/*.cnn, and
#   - in `lenet train --epochs 1 --threads 1` on a 2,000-image subset of
#     Fashion-MNIST (with a 200-image test set, so evaluation runs too).
#
#   sh tests/robustness/valgrind.sh      (from the repository's root, after `make`)
#
# A development check, slow (minutes), not part of `make check`. Installs
# valgrind with apt-get if it is missing. The generated program is built for
# x86-64-v3, as valgrind does not decode AVX-512; cnnc runs as a copy without
# debug information, as valgrind 3.19 (Debian 12) cannot read clang 19's
# DWARF 5 (reports then name functions but not lines). Each run's log is
# kept in $VG_LOGS (default build/valgrind/). The last line is "N passed,
# N failed".

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CNNC=$ROOT/bin/cnnc
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
LOGS=${VG_LOGS:-$ROOT/build/valgrind}
if [ ! -x "$CNNC" ]; then
    echo "valgrind.sh: no $CNNC (run make first)"; echo "0 passed, 1 failed"; exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get install -y -q --no-install-recommends valgrind >/dev/null ||
        { echo "valgrind.sh: cannot install valgrind"; echo "0 passed, 1 failed"; exit 1; }
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/valgrind.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$LOGS" || exit 1
objcopy --strip-debug "$CNNC" "$T/cnnc" || exit 1
export CNNC_LIBDIR="$ROOT/lib"        # where bin/cnnc would look

passed=0 failed=0
# vg NAME COMMAND...: the command under memcheck, its log in $LOGS/NAME.log;
# fails on an error, a definite leak or a non-zero exit of the command.
vg() {
    name=$1
    shift
    t0=$(date +%s)
    valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
        --log-file="$LOGS/$name.log" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$LOGS/$name.log" | tail -n 1)
    lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$LOGS/$name.log" | tail -n 1)
    what="$name: exit $rc, ${errors:-?} errors, ${lost:-0} bytes definitely lost ($(( $(date +%s) - t0 )) s)"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1)); echo "ok   $what"
    else
        failed=$((failed + 1)); echo "FAIL $what (see $LOGS/$name.log)"
        sed 's/^/     | /' "$T/err" | tail -n 5
    fi
}

# ---- the compiler, on every example ------------------------------------------------
for src in "$ROOT"/examples/*.cnn; do
    name=$(basename "$src" .cnn)
    vg "cnnc-$name" "$T/cnnc" "$src" -o "$T/$name"
done

# ---- one epoch of training -------------------------------------------------------
"$CNNC" "$ROOT/examples/lenet.cnn" --target-cpu=x86-64-v3 -o "$T/lenet" ||
    { echo "cannot build lenet"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
python3 - "$DATA" "$T" <<'EOF' || { echo "cannot make the data set"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
import gzip, struct, sys
d, t = sys.argv[1] + '/', sys.argv[2] + '/'
ti = gzip.open(d + 'train-images-idx3-ubyte.gz').read()
tl = gzip.open(d + 'train-labels-idx1-ubyte.gz').read()
imgs = lambda n, at=0: struct.pack('>IIII', 0x803, n, 28, 28) + ti[16 + at * 784:16 + (at + n) * 784]
labs = lambda n, at=0: struct.pack('>II', 0x801, n) + tl[8 + at:8 + at + n]
open(t + 'train-images', 'wb').write(imgs(2000))
open(t + 'train-labels', 'wb').write(labs(2000))
open(t + 'test-images.gz', 'wb').write(gzip.compress(imgs(200, 2000)))
open(t + 'test-labels.gz', 'wb').write(gzip.compress(labs(200, 2000)))
EOF
vg "lenet-train" "$T/lenet" train --epochs 1 --threads 1 \
    --train "$T/train-images" "$T/train-labels" --test "$T/test-images.gz" "$T/test-labels.gz" \
    --save "$T/lenet.ck"
vg "lenet-eval" "$T/lenet" eval --threads 1 --weights "$T/lenet.ck" \
    --test "$T/test-images.gz" "$T/test-labels.gz"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
