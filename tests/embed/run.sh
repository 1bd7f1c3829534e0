#!/bin/sh
# run.sh: tests of embedding: the generated C API and examples/embed/classify.c.
#
#   sh tests/embed/run.sh            (from the repository's root, after `make`)
#
# (a) bin/cnnc examples/lenet.cnn --lib builds build/embed/liblenet.a and
#     build/embed/lenet.h, and classify.c compiles against them with the
#     build line of examples/embed/README.md, without a warning;
# (b) the header of every examples/*.cnn compiles as C99 with -Wall -Wextra
#     -pedantic -Werror, and a program calling NAME_new, NAME_forward and
#     NAME_free links with `-fopenmp -lm` alone and runs;
# (c) on Fashion-MNIST test images written as PGM (P5 and P2), classify's top
#     class and probability equal those of `lenet predict`;
# (d) a missing weights file or image makes classify exit 1 with a message
#     naming the file; bad usage exits 2.
# The last line is "N passed, N failed"; the exit status is 0 only when
# nothing failed.

cnnc=bin/cnnc
weights=tests/reference/lenet.weights.safetensors
images=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}/t10k-images-idx3-ubyte.gz
out=build/embed
CC=${CC:-cc}

if [ ! -x "$cnnc" ] || [ ! -f examples/embed/classify.c ]; then
    echo "run.sh: run from the repository's root after 'make' (no $cnnc)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/embed.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 15; }

# ---- (a) the library and the example ----------------------------------------
mkdir -p "$out"
rm -f "$out/liblenet.a" "$out/lenet.h" "$out/classify"
if "$cnnc" examples/lenet.cnn --lib -o "$out/liblenet.a" 2>"$tmp/err" &&
   [ -f "$out/liblenet.a" ] && [ -f "$out/lenet.h" ]; then
    pass
else
    fail "cnnc examples/lenet.cnn --lib -o $out/liblenet.a"
    show "$tmp/err"
fi
if $CC -std=c99 -Wall -Wextra -pedantic -I"$out" examples/embed/classify.c "$out/liblenet.a" \
       -fopenmp -lm -o "$out/classify" 2>"$tmp/err" && [ ! -s "$tmp/err" ]; then
    pass
else
    fail "classify.c does not build cleanly with the README's line"
    show "$tmp/err"
fi

# ---- (b) every example's header and library ---------------------------------
# the network's name in SRC (its file's stem without a `network` line)
net_name() {
    name=$(sed -n 's/^network  *\([A-Za-z_][A-Za-z_0-9]*\).*/\1/p' "$1" | head -n 1)
    [ -n "$name" ] || name=$(basename "$1" .cnn)
    echo "$name"
}
# the libraries built two at a time first (cnnc takes one core; the full-size
# examples take tens of seconds each), each one's errors in lib/NAME/err
for src in examples/*.cnn; do
    name=$(net_name "$src")
    mkdir -p "$tmp/lib/$name"
    echo "$src $tmp/lib/$name/lib$name.a"
done | xargs -P 2 -n 2 sh -c '"$0" "$1" --lib -o "$2" 2>"$(dirname "$2")/err"' "$cnnc"
for src in examples/*.cnn; do
    name=$(net_name "$src")
    upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
    dir=$tmp/lib/$name
    if [ ! -f "$dir/lib$name.a" ]; then
        fail "$src: cnnc --lib"
        show "$dir/err"
        continue
    fi
    cat >"$dir/use.c" <<EOF
#include <stdio.h>
#include <stdlib.h>
#include "$name.h"
int main(void)
{
    static float x[${upper}_INPUT_SIZE], out[${upper}_OUTPUT_SIZE];
    $name *net = ${name}_new(1);
    if (!net || ${name}_param_count() != ${upper}_NUM_PARAMS)
        return 1;
    for (int i = 0; i < ${upper}_OUTPUT_SIZE; i++)
        out[i] = -1e30f;
    ${name}_forward(net, 1, x, out);
    int ok = ${name}_error(net)[0] == 0 && out[0] > -1e30f;
    ${name}_free(net);
    return ok ? 0 : 1;
}
EOF
    if ! $CC -std=c99 -Wall -Wextra -pedantic -Werror -I"$dir" -c "$dir/use.c" -o "$dir/use.o" \
            2>"$tmp/err"; then
        fail "$src: $name.h does not compile as C99 with -Wall -Wextra -pedantic -Werror"
        show "$tmp/err"
    elif ! $CC "$dir/use.o" "$dir/lib$name.a" -fopenmp -lm -o "$dir/use" 2>"$tmp/err"; then
        fail "$src: lib$name.a does not link with -fopenmp -lm alone"
        show "$tmp/err"
    elif ! "$dir/use"; then
        fail "$src: a program using lib$name.a failed"
    else
        pass
    fi
done

# ---- (c) classify agrees with `lenet predict` --------------------------------
# Both scale image bytes by 1/255 (lenet.cnn has no data block, and without
# one the generated program scales image bytes by 1/255).
if ! "$cnnc" examples/lenet.cnn -o "$tmp/lenet" 2>"$tmp/err"; then
    fail "cnnc examples/lenet.cnn -o lenet"
    show "$tmp/err"
elif [ ! -f "$images" ]; then
    fail "no Fashion-MNIST test images at $images (set FASHION_MNIST)"
elif [ ! -x "$out/classify" ]; then
    fail "no $out/classify to compare"
else
    for i in 0 1 2 3 4 5 6 7; do
        for fmt in p5 p2; do
            img=$tmp/img$i.$fmt.pgm
            if ! python3 tests/program/idx_image.py "$images" "$i" "$fmt" "$img" 2>"$tmp/err"; then
                fail "cannot write test image $i as $fmt"
                show "$tmp/err"
                continue
            fi
            # classify: "FILE: class K, probability P"
            got=$("$out/classify" "$weights" "$img" 2>"$tmp/err" |
                  sed -n 's/.*: class \([0-9]*\), probability \([0-9.]*\)$/\1 \2/p')
            # predict: "FILE:" then "  class K   P" lines, best first
            want=$("$tmp/lenet" predict --weights "$weights" "$img" 2>>"$tmp/err" |
                   awk '$1 == "class" { print $2, $3; exit }')
            if [ -z "$got" ] || [ -z "$want" ]; then
                fail "image $i ($fmt): no answer (classify '$got', predict '$want')"
                show "$tmp/err"
            elif echo "$got $want" | awk '{ d = $2 - $4; exit !($1 == $3 && d < 1e-3 && d > -1e-3) }'; then
                pass
            else
                fail "image $i ($fmt): classify says class/probability $got, lenet predict $want"
            fi
        done
    done
fi

# ---- (d) failures --------------------------------------------------------------
expect_fail() {     # $1: exit status, $2: text the message must hold, $3...: command
    want=$1 text=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne "$want" ]; then
        fail "$* exited with $rc, expected $want"
        show "$tmp/err"
    elif ! grep -qF -- "$text" "$tmp/err"; then
        fail "$*: the message does not mention '$text'"
        show "$tmp/err"
    elif [ -s "$tmp/out" ]; then
        fail "$*: wrote to stdout after a failure"
    else
        pass
    fi
}

if [ -x "$out/classify" ]; then
    python3 tests/program/idx_image.py "$images" 0 p5 "$tmp/ok.pgm" 2>/dev/null
    expect_fail 1 "$tmp/no-such.safetensors" "$out/classify" "$tmp/no-such.safetensors" "$tmp/ok.pgm"
    printf 'not a safetensors file' >"$tmp/garbage.safetensors"
    expect_fail 1 "$tmp/garbage.safetensors" "$out/classify" "$tmp/garbage.safetensors" "$tmp/ok.pgm"
    expect_fail 1 "$tmp/no-such.pgm" "$out/classify" "$weights" "$tmp/no-such.pgm"
    printf 'P5\n27 28\n255\n' >"$tmp/small.pgm"
    expect_fail 1 "$tmp/small.pgm" "$out/classify" "$weights" "$tmp/small.pgm"
    expect_fail 2 "usage" "$out/classify"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
