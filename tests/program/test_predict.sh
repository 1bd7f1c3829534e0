#!/bin/sh
# test_predict.sh: the generated program's predict, info and eval commands,
# and its command-line errors, on LeNet.
#
#   sh tests/program/test_predict.sh     (from the repository's root, after `make`)
#
# (a) predict on a PGM and on a PNG of the same Fashion-MNIST test image each
#     prints exactly five classes, probabilities in descending order summing
#     to at most 1 (+1e-4); both give the same top class; several files at
#     once give one block each;
# (b) predict on a missing file and on a garbage file exits 1 with a message
#     naming the file;
# (c) info lists lenet's 10 parameters, with their names and shapes;
# (d) eval --weights ... --test IMAGES LABELS prints top-1 and top-5 and a
#     10x10 confusion matrix whose rows sum to the test set's class counts
#     (10000 in all) and whose diagonal agrees with top-1;
# (e) bad command lines (--batch 0, --threads x, an unknown option, a flag
#     without its value, an unknown command, predict without files) exit 2.
# The last line is "N passed, N failed"; the exit status is 0 only when
# nothing failed.

cnnc=bin/cnnc
weights=tests/reference/lenet.weights.safetensors
data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
images=$data/t10k-images-idx3-ubyte.gz
labels=$data/t10k-labels-idx1-ubyte.gz

if [ ! -x "$cnnc" ] || [ ! -f tests/program/idx_image.py ]; then
    echo "test_predict.sh: run from the repository's root after 'make' (no $cnnc)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/predict.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 15; }

if ! "$cnnc" examples/lenet.cnn -o "$tmp/lenet" 2>"$tmp/err"; then
    fail "cnnc examples/lenet.cnn -o lenet"
    show "$tmp/err"
    echo "$passed passed, $failed failed"
    exit 1
fi
lenet=$tmp/lenet
if [ ! -f "$images" ] || [ ! -f "$labels" ]; then
    fail "no Fashion-MNIST test set in $data (set FASHION_MNIST)"
    echo "$passed passed, $failed failed"
    exit 1
fi

# ---- (a) predict on PGM and PNG ----------------------------------------------

# Checks one block of predict's output in $1 ("FILE:" then "  class K  P"
# lines); prints the top class, or nothing (after a FAIL) if the block is wrong.
check_block() {     # $1: the output, $2: what it is
    awk -v what="$2" '
        $1 == "class" { n++; p = $3 + 0; sum += p
                        if (n == 1) top = $2
                        if (n > 1 && p > last + 1e-12) bad = bad " not descending at line " n ";"
                        last = p; next }
        /:$/ { heads++; next }
        { bad = bad " unexpected line \"" $0 "\";" }
        END {
            if (heads != 1) bad = bad " " heads + 0 " file headers;"
            if (n != 5) bad = bad " " n + 0 " classes, not 5;"
            if (sum > 1 + 1e-4) bad = bad " probabilities sum to " sum ";"
            if (bad != "") { print "FAIL: " what ":" bad > "/dev/stderr"; exit 1 }
            print top
        }' "$1"
}

for idx in 0 1 2; do
    if ! python3 tests/program/idx_image.py "$images" $idx p5 "$tmp/img$idx.pgm" ||
       ! python3 tests/program/idx_image.py "$images" $idx png "$tmp/img$idx.png"; then
        fail "cannot write test image $idx"
        continue
    fi
    tops=""
    for f in "$tmp/img$idx.pgm" "$tmp/img$idx.png"; do
        if ! "$lenet" predict --weights "$weights" "$f" >"$tmp/out" 2>"$tmp/err"; then
            fail "predict $f exited with $?"
            show "$tmp/err"
            continue
        fi
        if top=$(check_block "$tmp/out" "predict $(basename "$f")" 2>"$tmp/why"); then
            pass
            tops="$tops $top"
        else
            failed=$((failed + 1))
            cat "$tmp/why"
            show "$tmp/out"
        fi
    done
    first=${tops# }
    first=${first%% *}
    if [ "$tops" = " $first $first" ]; then
        pass
    else
        fail "image $idx: the PGM and the PNG give top classes '$tops'"
    fi
done

# Several files: one block of five classes each, in the order given.
if "$lenet" predict --weights "$weights" "$tmp/img0.pgm" "$tmp/img1.png" >"$tmp/out" 2>"$tmp/err" &&
   [ "$(grep -c ':$' "$tmp/out")" -eq 2 ] && [ "$(grep -c '^  class ' "$tmp/out")" -eq 10 ] &&
   [ "$(sed -n 1p "$tmp/out")" = "$tmp/img0.pgm:" ]; then
    pass
else
    fail "predict with two files does not print two blocks of five"
    show "$tmp/out"
    show "$tmp/err"
fi

# Without --weights: a note on stderr, still five classes.
if "$lenet" predict "$tmp/img0.pgm" >"$tmp/out" 2>"$tmp/err" && grep -q 'note: no --weights' "$tmp/err" &&
   check_block "$tmp/out" "predict without --weights" >/dev/null; then
    pass
else
    fail "predict without --weights"
    show "$tmp/err"
fi

# ---- (b) unreadable images ------------------------------------------------------
expect_fail() {     # $1: exit status, $2: text the message must hold, $3...: command
    want=$1 text=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne "$want" ]; then
        fail "$* exited with $rc, expected $want"
        show "$tmp/err"
    elif [ -n "$text" ] && ! grep -qF -- "$text" "$tmp/err"; then
        fail "$*: the message does not mention '$text'"
        show "$tmp/err"
    else
        pass
    fi
}

expect_fail 1 "$tmp/missing.pgm" "$lenet" predict --weights "$weights" "$tmp/missing.pgm"
head -c 3000 /dev/urandom >"$tmp/garbage.png"
expect_fail 1 "$tmp/garbage.png" "$lenet" predict --weights "$weights" "$tmp/garbage.png"
printf 'P5\n28 28\n255\n' >"$tmp/truncated.pgm"
expect_fail 1 "$tmp/truncated.pgm" "$lenet" predict --weights "$weights" "$tmp/truncated.pgm"
expect_fail 1 "$tmp/missing.safetensors" "$lenet" predict --weights "$tmp/missing.safetensors" "$tmp/img0.pgm"

# ---- (c) info ----------------------------------------------------------------------
if "$lenet" info >"$tmp/out" 2>"$tmp/err"; then
    # the lines after "parameters (...):", each "  NAME  [dims]"
    got=$(sed -n '/^parameters/,$p' "$tmp/out" | sed -n 's/^  \([^ ]*\)  *\(\[.*\]\)$/\1 \2/p')
    want='conv1.weight [6, 1, 5, 5]
conv1.bias [6]
conv2.weight [16, 6, 5, 5]
conv2.bias [16]
dense1.weight [120, 400]
dense1.bias [120]
dense2.weight [84, 120]
dense2.bias [84]
dense3.weight [10, 84]
dense3.bias [10]'
    if [ "$got" = "$want" ]; then
        pass
    else
        fail "info does not list lenet's 10 parameters"
        show "$tmp/out"
    fi
    if grep -q '61,706 parameters' "$tmp/out"; then pass; else fail "info does not count 61,706 parameters"; fi
else
    fail "info exited with $?"
    show "$tmp/err"
fi

# ---- (d) eval -------------------------------------------------------------------------
# The test set's class counts, from the labels file (IDX: 8 header bytes).
counts=$(python3 -c '
import gzip, sys
b = gzip.open(sys.argv[1]).read()[8:]
print(" ".join(str(b.count(bytes([k]))) for k in range(10)))' "$labels")
if ! "$lenet" eval --weights "$weights" --test "$images" "$labels" >"$tmp/out" 2>"$tmp/err"; then
    fail "eval exited with $?"
    show "$tmp/err"
elif awk -v counts="$counts" '
        BEGIN { rows = 0 }
        function fail(m) { print "FAIL: eval: " m > "/dev/stderr"; bad = 1 }
        /^test examples:/ { examples = $3 }
        /^top-1:/ { top1 = $2 + 0; has1 = 1 }
        /^top-5:/ { top5 = $2 + 0; has5 = 1 }
        /^confusion matrix/ { on = 1; getline; next }
        on && NF == 11 && $1 == rows {
            s = 0
            for (j = 2; j <= 11; j++) s += $j
            rowsum[rows] = s; total += s; diag += $(rows + 2); rows++; next }
        on && NF > 0 { fail("unexpected matrix line \"" $0 "\"") }
        END {
            split(counts, c, " ")
            if (!has1 || !has5) fail("no top-1 or top-5 line")
            if (top5 < top1) fail("top-5 " top5 " below top-1 " top1)
            if (rows != 10) fail(rows + 0 " matrix rows, not 10")
            if (total != 10000 || examples != 10000) fail("the matrix sums to " total ", examples " examples)
            for (k = 0; k < rows; k++)
                if (rowsum[k] != c[k + 1]) fail("row " k " sums to " rowsum[k] ", the labels hold " c[k + 1])
            d = 100 * diag / 10000 - top1
            if (d > 0.006 || d < -0.006) fail("the diagonal gives " 100 * diag / 10000 "%, top-1 says " top1 "%")
            exit bad
        }' "$tmp/out" 2>"$tmp/why"; then
    pass
else
    failed=$((failed + 1))
    cat "$tmp/why"
    show "$tmp/out"
fi

# ---- (e) bad command lines ------------------------------------------------------------
expect_fail 2 "--batch" "$lenet" eval --weights "$weights" --batch 0 --test "$images" "$labels"
expect_fail 2 "--threads" "$lenet" bench --threads x
expect_fail 2 "--frobnicate" "$lenet" predict --frobnicate "$tmp/img0.pgm"
expect_fail 2 "--weights" "$lenet" predict "$tmp/img0.pgm" --weights
expect_fail 2 "frobnicate" "$lenet" frobnicate
expect_fail 2 "predict" "$lenet" predict --weights "$weights"
expect_fail 2 "" "$lenet"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
