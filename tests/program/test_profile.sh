#!/bin/sh
# test_profile.sh: `cnnc --profile` and the profile the program's bench prints.
#
#   sh tests/program/test_profile.sh     (from the repository's root, after `make`)
#
# (a) LeNet built with --profile: bench prints, after each of its three
#     measures, a profile whose header names the measure and the calls it
#     keeps, and whose rows name LeNet's layers (conv1, conv2, the dense
#     layers' GEMMs, the training kernel's gradients); each profile's
#     shares add up to 100% (within the rounding of its rows);
# (b) a net with a depthwise convolution, a 3x3 pooling and a batchnorm
#     (private scratch, a top-level nest over the examples), built with
#     --profile --sanitize: bench runs with no sanitizer report, and its
#     profile names the depthwise convolution;
# (c) without --profile, bench prints no profile (test_bench_info.sh checks
#     its exact lines) and the generated code calls no rt_prof_mark;
# (d) --profile with --lib or -c is a bad command line (exit 2, a message).
# The last line is "N passed, N failed"; the exit status is 0 only when
# nothing failed.

cnnc=bin/cnnc
if [ ! -x "$cnnc" ]; then
    echo "test_profile.sh: run from the repository's root after 'make' (no $cnnc)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/profile.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 20; }

# The rows of the profile that follows the header matching $2 in file $1.
rows_of() {
    awk -v h="$2" 'index($0, "  profile of " h ":") == 1 { on = 1; next }
                   on && /^  +[0-9.]+%  / { print; next }
                   on { exit }' "$1"
}
# Whether those rows' shares add up to 100 within 0.05 a row.
adds_up() {
    rows_of "$1" "$2" | awk '{ s += $1; n++ } END { d = s - 100; if (d < 0) d = -d; exit !(n > 0 && d <= 0.05 * n + 0.05) }'
}

# ---- (a) LeNet -----------------------------------------------------------------

if "$cnnc" examples/lenet.cnn --profile -o "$tmp/lenet" 2>"$tmp/err" &&
   "$tmp/lenet" bench --seconds 0.1 >"$tmp/out" 2>"$tmp/err"; then
    for what in "the forward call at batch 1" "the forward call at this batch" "the training kernel at this batch"; do
        if grep -q "^  profile of $what: [0-9.]* us a call on thread 0 (the [0-9]* calls at or below the median), by layer:$" "$tmp/out" &&
           adds_up "$tmp/out" "$what"; then
            pass
        else
            fail "lenet --profile: the profile of $what (its header, or its shares adding up to 100%)"
            show "$tmp/out"
        fi
    done
    for layer in "%3 = conv conv1 " "conv conv2" "dense1 (gemm)" "dense2 (gemm)"; do
        if rows_of "$tmp/out" "the forward call at this batch" | grep -q -F "$layer"; then pass
        else fail "lenet --profile: no row for '$layer' in the forward profile"; show "$tmp/out"; fi
    done
    if rows_of "$tmp/out" "the training kernel at this batch" | grep -q "conv_dx"; then pass
    else fail "lenet --profile: the training profile has no conv_dx row"; show "$tmp/out"; fi
else
    fail "cnnc lenet --profile, or its bench"
    show "$tmp/err"
fi

# ---- (b) private scratch, sanitized -------------------------------------------

cat >"$tmp/dwnet.cnn" <<'EOF'
network dwnet
input  x : [16, 14, 14]
labels y : class(10)
x -> conv(16, 3x3, pad = 1, groups = 16, bias = false) -> batchnorm -> relu6
  -> maxpool(3, stride = 1, pad = 1) -> conv(32, 1x1) -> relu
  -> global_avgpool -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.1, momentum = 0.9)  batch = 4 }
EOF
if "$cnnc" "$tmp/dwnet.cnn" --profile --sanitize -o "$tmp/dwnet" 2>"$tmp/err" &&
   "$tmp/dwnet" bench --seconds 0.05 >"$tmp/out" 2>"$tmp/err" &&
   ! grep -q "Sanitizer" "$tmp/err" &&
   rows_of "$tmp/out" "the forward call at batch 1" | grep -q "conv conv1 " &&
   adds_up "$tmp/out" "the training kernel at this batch"; then
    pass
else
    fail "dwnet --profile --sanitize: bench with a profile naming conv1 and no sanitizer report"
    show "$tmp/err"
    show "$tmp/out"
fi

# ---- (c) no --profile, no marks ---------------------------------------------------

if "$cnnc" examples/lenet.cnn --emit=llvm -o "$tmp/plain.ll" 2>"$tmp/err" &&
   "$cnnc" examples/lenet.cnn --profile --emit=llvm -o "$tmp/prof.ll" 2>>"$tmp/err" &&
   ! grep -q "rt_prof_mark" "$tmp/plain.ll" && grep -q "call void @rt_prof_mark" "$tmp/prof.ll"; then
    pass
else
    fail "--emit=llvm: rt_prof_mark with --profile and only then"
    show "$tmp/err"
fi

# ---- (d) a library has nothing to print it with ---------------------------------

for kind in --lib -c; do
    "$cnnc" examples/lenet.cnn --profile $kind -o "$tmp/lib" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && grep -q -- "--profile builds an executable" "$tmp/err"; then pass
    else fail "--profile $kind: exit $rc (want 2 and a message)"; show "$tmp/err"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
