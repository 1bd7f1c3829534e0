#!/bin/sh
# run.sh: tests of weights built into the output (cnnc --weights FILE).
#
#   sh tests/weights/run.sh            (from the repository's root, after `make`)
#
# (a) LeNet built with tests/reference/lenet.weights.safetensors: `eval`
#     prints what the plain build's `eval --weights` prints, without the
#     "no --weights given" note; `predict` and `info` too;
# (b) for nets with buffers, explicit params and a residual, `forward` writes
#     the same bytes as the plain build's `forward --weights`;
# (c) an explicit --weights overrides the built-in weights;
# (d) the library: NAME_new(any seed) holds the weights bit for bit, its
#     outputs equal a NAME_load's bit for bit, the data is 64-byte aligned;
#     what it saves loads into the plain build, and what the plain build
#     saves (with network, structure and crc32 metadata) builds in;
# (e) `train --lr 0` starts from the built-in weights, and its checkpoint
#     loads into the plain build and builds in;
# (f) bad files: a wrong name, a wrong shape, F16, a truncated file, another
#     network, another structure, a damaged file, two problems at once, a
#     missing file: exit 1, a message naming the file and the tensor, no
#     output written; --check checks them too;
# (g) two builds of the same source and weights are the same bytes;
# (h) with --sanitize (AddressSanitizer, UBSan): (b) and (d) again.
# The last line is "N passed, N failed"; the exit status is 0 only when
# nothing failed.

cnnc=bin/cnnc
ref=tests/reference
W=$ref/lenet.weights.safetensors
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
test_set="$fm/t10k-images-idx3-ubyte.gz $fm/t10k-labels-idx1-ubyte.gz"
CC=${CC:-cc}

if [ ! -x "$cnnc" ]; then
    echo "run.sh: run from the repository's root after 'make' (no $cnnc)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weights.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 15; }
# same WHAT A B: files A and B hold the same bytes
same() {
    if cmp -s "$2" "$3"; then pass; return; fi
    fail "$1: $2 and $3 differ"
    case $2 in *.safetensors) ;; *) show "$2"; show "$3" ;; esac
}
# build OUT ARGS...: cnnc ARGS -o OUT, or a failure
build() {
    out=$1; shift
    "$cnnc" "$@" -o "$out" 2>"$tmp/err" && return 0
    fail "cnnc $* -o $out"; show "$tmp/err"; return 1
}
input() { python3 tests/weights/files.py --input "$1" 3 7 "$2"; }

# ---- (a) eval, predict, info ------------------------------------------------
build "$tmp/lenet_b" examples/lenet.cnn --weights "$W" &&
build "$tmp/lenet_p" examples/lenet.cnn || { echo "$passed passed, $((failed + 1)) failed"; exit 1; }
"$tmp/lenet_b" eval --test $test_set >"$tmp/eval_b" 2>"$tmp/eval_b.err"
"$tmp/lenet_p" eval --weights "$W" --test $test_set >"$tmp/eval_p" 2>"$tmp/eval_p.err"
if grep -q 'top-1' "$tmp/eval_b"; then same "eval: built in vs --weights" "$tmp/eval_b" "$tmp/eval_p"
else fail "eval of the built-in weights printed no accuracy"; show "$tmp/eval_b.err"; fi
if grep -q 'no --weights given' "$tmp/eval_b.err"; then fail "the built-in build says it uses untrained weights"
else pass; fi
"$tmp/lenet_p" eval --test $test_set >/dev/null 2>"$tmp/err"
if grep -q 'no --weights given' "$tmp/err"; then pass; else fail "the plain build does not say it uses untrained weights"; fi
"$tmp/lenet_b" predict tests/program/photo.jpg >"$tmp/pred_b" 2>"$tmp/pred_b.err"
"$tmp/lenet_p" predict --weights "$W" tests/program/photo.jpg >"$tmp/pred_p" 2>/dev/null
if grep -q 'class' "$tmp/pred_b" && [ ! -s "$tmp/pred_b.err" ]; then same "predict" "$tmp/pred_b" "$tmp/pred_p"
else fail "predict of the built-in weights"; show "$tmp/pred_b.err"; fi
if "$tmp/lenet_b" info | grep -q '^weights: built into the program'; then pass; else fail "info does not say the weights are built in"; fi
if "$tmp/lenet_p" info | grep -q '^weights: built'; then fail "the plain build's info says built-in weights"; else pass; fi

# ---- (b) forward, byte for byte ------------------------------------------------
for net in lenet mlp ref_bn2d ref_residual ref_reg_params; do
    shape=$(awk -v n="$net" '$1 == n { print $2 }' $ref/manifest.txt)
    input "$shape" "$tmp/$net.x.safetensors" || { fail "$net: cannot write an input"; continue; }
    build "$tmp/${net}_b" $ref/nets/$net.cnn --weights $ref/$net.weights.safetensors &&
    build "$tmp/${net}_p" $ref/nets/$net.cnn || continue
    "$tmp/${net}_b" forward "$tmp/$net.x.safetensors" "$tmp/$net.out_b.safetensors" 2>"$tmp/err" ||
        { fail "$net: forward with built-in weights"; show "$tmp/err"; continue; }
    "$tmp/${net}_p" forward --weights $ref/$net.weights.safetensors "$tmp/$net.x.safetensors" \
        "$tmp/$net.out_p.safetensors" 2>/dev/null
    same "$net: forward, built in vs --weights" "$tmp/$net.out_b.safetensors" "$tmp/$net.out_p.safetensors"
done

# ---- (c), (d) the library, explicit --weights, weights saved by either build ----
libtest() {   # libtest DIR [--sanitize]: liblenet.a built in and plain, check_lib against each
    d=$1; shift
    san=; [ "${1:-}" = --sanitize ] && san="-fsanitize=address,undefined"
    mkdir -p "$d/b" "$d/p"
    build "$d/b/liblenet.a" examples/lenet.cnn --lib --weights "$W" "$@" &&
    build "$d/p/liblenet.a" examples/lenet.cnn --lib "$@" || return 1
    for k in b p; do
        $CC -std=c11 -O1 -g $san -Iruntime -I"$d/$k" tests/weights/check_lib.c "$d/$k/liblenet.a" \
            -fopenmp -lm -o "$d/$k/check" 2>"$tmp/err" || { fail "check_lib.c does not build ($k)"; show "$tmp/err"; return 1; }
    done
    if "$d/b/check" builtin "$W" "$d/saved_b.safetensors" >"$tmp/out" 2>&1; then pass
    else fail "library with built-in weights ($*)"; show "$tmp/out"; return 1; fi
    if "$d/p/check" save "$d/w7.safetensors" >"$tmp/out" 2>&1; then pass
    else fail "plain library: save"; show "$tmp/out"; return 1; fi
}
if libtest "$tmp/lib"; then
    # what the built-in build saves loads into the plain program
    "$tmp/lenet_p" eval --weights "$tmp/lib/saved_b.safetensors" --test $test_set >"$tmp/eval_s" 2>/dev/null
    same "eval of the weights NAME_save wrote from the built-in library" "$tmp/eval_b" "$tmp/eval_s"
    # an explicit --weights overrides the built-in ones
    "$tmp/lenet_b" eval --weights "$tmp/lib/w7.safetensors" --test $test_set >"$tmp/eval_b7" 2>/dev/null
    "$tmp/lenet_p" eval --weights "$tmp/lib/w7.safetensors" --test $test_set >"$tmp/eval_p7" 2>/dev/null
    same "eval --weights over built-in weights" "$tmp/eval_b7" "$tmp/eval_p7"
    if cmp -s "$tmp/eval_b7" "$tmp/eval_b"; then fail "--weights did not change the built-in weights' results"; else pass; fi
    # a plain build's weights file, with network, structure and crc32 metadata, builds in
    if build "$tmp/lenet_b7" examples/lenet.cnn --weights "$tmp/lib/w7.safetensors"; then
        "$tmp/lenet_b7" eval --test $test_set >"$tmp/eval_bb7" 2>/dev/null
        same "eval of a plain build's weights file built in" "$tmp/eval_bb7" "$tmp/eval_p7"
    fi
fi

# ---- (e) train starts from the built-in weights ------------------------------------
if "$tmp/lenet_b" train --epochs 1 --lr 0 --threads 2 --train $test_set \
        --save "$tmp/ck.safetensors" >"$tmp/out" 2>&1; then
    "$tmp/lenet_p" eval --weights "$tmp/ck.safetensors" --test $test_set >"$tmp/eval_ck" 2>/dev/null
    same "eval of train --lr 0's checkpoint in the plain build" "$tmp/eval_b" "$tmp/eval_ck"
    # a checkpoint (momentum tensors, step, seed, crc32) builds in as a weights file
    if build "$tmp/lenet_bck" examples/lenet.cnn --weights "$tmp/ck.safetensors"; then
        "$tmp/lenet_bck" eval --test $test_set >"$tmp/eval_bck" 2>/dev/null
        same "eval of a checkpoint built in" "$tmp/eval_b" "$tmp/eval_bck"
    fi
else
    fail "train --lr 0 with built-in weights"; show "$tmp/out"
fi

# ---- (f) bad files -------------------------------------------------------------
python3 tests/weights/files.py "$W" "$tmp/bad" || fail "files.py cannot write the bad files"
# bad FILE TEXT...: cnnc --weights FILE exits 1 naming FILE, with each TEXT, writing nothing
bad() {
    f=$1; shift
    rm -f "$tmp/x"
    "$cnnc" examples/lenet.cnn --weights "$f" -o "$tmp/x" 2>"$tmp/err"
    rc=$?
    ok=1
    [ $rc = 1 ] || ok=0
    grep -qF "$f:" "$tmp/err" || ok=0
    for t in "$@"; do grep -qF -- "$t" "$tmp/err" || ok=0; done
    [ ! -e "$tmp/x" ] || ok=0
    if [ $ok = 1 ]; then pass; else fail "--weights $f: exit $rc, expected 1 and: $*"; show "$tmp/err"; fi
}
b=$tmp/bad
bad "$b/renamed.safetensors" "lenet.cnn:9:6: error:" "no tensor 'dense3.bias'"
bad "$b/shape.safetensors" "lenet.cnn:4:6: error:" \
    "tensor 'conv1.weight' has shape [6, 1, 3, 3], but the network's has shape [6, 1, 5, 5]"
bad "$b/f16.safetensors" "tensor 'dense3.bias' has dtype F16, expected F32"
bad "$b/truncated.safetensors" "cnnc: error:" "run past the end of the data section"
bad "$b/other.safetensors" "a checkpoint of network 'mlp', not 'lenet'"
bad "$b/structure.safetensors" "written for a network of another structure (0123456789abcdef"
bad "$b/damaged.safetensors" "the file is damaged"
bad "$b/two.safetensors" "no tensor 'conv1.bias'" "tensor 'dense1.weight' has shape [120, 40]"
bad "$tmp/missing.safetensors" "cannot open: No such file or directory"
if "$cnnc" examples/lenet.cnn --check --weights "$b/f16.safetensors" 2>/dev/null; then
    fail "--check --weights accepts an F16 tensor"
elif "$cnnc" examples/lenet.cnn --check --weights "$W" 2>"$tmp/err"; then pass
else fail "--check --weights $W"; show "$tmp/err"; fi
"$cnnc" examples/lenet.cnn --weights 2>"$tmp/err"
if [ $? = 2 ] && grep -q 'needs a file name' "$tmp/err"; then pass; else fail "--weights without a file: not exit 2"; fi
"$cnnc" examples/lenet.cnn --weights "$W" --emit=weights 2>"$tmp/err"
if [ $? = 2 ] && grep -q 'give -o FILE.safetensors' "$tmp/err"; then pass; else fail "--emit=weights without -o: not exit 2"; fi

# ---- (g) the same bytes twice --------------------------------------------------------
mkdir -p "$tmp/lib2"
if build "$tmp/lenet_b2" examples/lenet.cnn --weights "$W" &&
   build "$tmp/lib2/liblenet.a" examples/lenet.cnn --lib --weights "$W"; then
    same "two builds of the executable" "$tmp/lenet_b" "$tmp/lenet_b2"
    [ -f "$tmp/lib/b/liblenet.a" ] && same "two builds of the library" "$tmp/lib/b/liblenet.a" "$tmp/lib2/liblenet.a"
fi

# ---- (h) AddressSanitizer and UBSan -------------------------------------------------
for net in ref_bn2d ref_residual; do
    build "$tmp/${net}_ba" $ref/nets/$net.cnn --sanitize --weights $ref/$net.weights.safetensors &&
    build "$tmp/${net}_pa" $ref/nets/$net.cnn --sanitize || continue
    "$tmp/${net}_ba" forward "$tmp/$net.x.safetensors" "$tmp/$net.out_ba.safetensors" 2>"$tmp/err" ||
        { fail "$net: forward with built-in weights under ASan"; show "$tmp/err"; continue; }
    "$tmp/${net}_pa" forward --weights $ref/$net.weights.safetensors "$tmp/$net.x.safetensors" \
        "$tmp/$net.out_pa.safetensors" 2>/dev/null
    same "$net: forward under ASan, built in vs --weights" "$tmp/$net.out_ba.safetensors" "$tmp/$net.out_pa.safetensors"
done
libtest "$tmp/libasan" --sanitize

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
