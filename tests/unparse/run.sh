#!/bin/sh
# tests/unparse/run.sh: --emit=cnn round trips (make check-unparse).
#
# For every valid program (examples/*.cnn, tests/golden/*.cnn,
# tests/reference/nets/*.cnn and the normative programs of docs/language.md):
#   (a) --emit=cnn -o P.cnn succeeds and P.cnn passes --check silently;
#   (b) P.cnn has the same parameters, names and shapes in order;
#   (c) P.cnn has the same graph: its --emit=graph is the original's, or
#       differs only in the names of values (the "# label" comments);
#   (d) --emit=cnn of P.cnn writes P.cnn again (the output is a fixed point).
# Then (e) the same forward outputs, bit for bit, from executables built from
# the original and from P.cnn: LeNet with tests/reference/lenet.weights, and
# a few nets (ResNet-18, MobileNet V2, GoogLeNet among them) with their
# initial parameters (the seed's); and (f) its errors: class names or
# built-in weights with no -o, a graph the language cannot write (the unit
# tests build those). Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
cnnc=$(pwd)/bin/cnnc
tmp=$(mktemp -d "${TMPDIR:-/tmp}/unparse.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
passed=0 failed=0 exact=0 labels=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { sed 's/^/    | /' "$1" | head -n 15; }

# the normative programs of the language reference, one file each
mkdir -p "$tmp/spec"
awk -v dir="$tmp/spec" '
    /^## / { on = ($0 ~ /^## Normative programs/); next }
    !on { next }
    /^### / { n++; out = sprintf("%s/normative%d.cnn", dir, n); next }
    out != "" && /^    / { print substr($0, 5) > out; next }
    out != "" && /^[^ ]/ { close(out); out = "" }
' docs/language.md

# params FILE: the parameter lines of a graph dump ("%3 = param conv1.bias : [6] unbatched")
params() { grep -E '^%[0-9]+ = param ' "$1" | sed 's/^%[0-9]* = //'; }

for src in examples/*.cnn tests/golden/*.cnn tests/reference/nets/*.cnn "$tmp"/spec/*.cnn; do
    [ -f "$src" ] || continue
    d=$tmp/$(echo "$src" | tr / _ | sed 's/\.cnn$//')
    mkdir -p "$d/again"
    stem=$(basename "$src" .cnn)
    if ! "$cnnc" "$src" --emit=cnn -o "$d/$stem.cnn" >"$d/out" 2>"$d/err"; then
        fail "$src: --emit=cnn exited with $?"; show "$d/err"; continue
    fi
    # data { classes = ... } and csv paths are relative: check beside the copy
    if ! "$cnnc" "$d/$stem.cnn" --check >"$d/out" 2>"$d/err" || [ -s "$d/out" ] || [ -s "$d/err" ]; then
        fail "$src: the written program does not pass --check"; show "$d/err"; show "$d/$stem.cnn"; continue
    fi
    "$cnnc" "$src" --emit=graph >"$d/a.graph" 2>/dev/null
    "$cnnc" "$d/$stem.cnn" --emit=graph >"$d/b.graph" 2>/dev/null
    params "$d/a.graph" >"$d/a.params"
    params "$d/b.graph" >"$d/b.params"
    if ! cmp -s "$d/a.params" "$d/b.params"; then
        fail "$src: the parameters differ"; diff "$d/a.params" "$d/b.params" | head -n 10; continue
    fi
    if cmp -s "$d/a.graph" "$d/b.graph"; then
        exact=$((exact + 1))
    else
        sed 's/  # .*//' "$d/a.graph" >"$d/a.bare"
        sed 's/  # .*//' "$d/b.graph" >"$d/b.bare"
        if cmp -s "$d/a.bare" "$d/b.bare"; then
            labels=$((labels + 1))
        else
            fail "$src: the written program's graph differs"; diff "$d/a.graph" "$d/b.graph" | head -n 10; continue
        fi
    fi
    if ! "$cnnc" "$d/$stem.cnn" --emit=cnn -o "$d/again/$stem.cnn" 2>"$d/err" ||
       ! cmp -s "$d/$stem.cnn" "$d/again/$stem.cnn"; then
        fail "$src: --emit=cnn of the written program is not the same program"
        diff "$d/$stem.cnn" "$d/again/$stem.cnn" | head -n 10; continue
    fi
    pass
done
echo "round trips: $exact with the same graph, $labels the same but for the names of values"

# ---- (e) forward outputs ---------------------------------------------------
# x.safetensors: n examples of the input's shape, deterministic values in [-1, 1)
make_input() {   # OUT N D0 [D1 D2]
    python3 - "$@" <<'PY'
import json, struct, sys
out, n, dims = sys.argv[1], int(sys.argv[2]), [int(d) for d in sys.argv[3:]]
count = n
for d in dims: count *= d
state, vals = 12345, []
for _ in range(count):
    state = (state * 1103515245 + 12345) % 2**31
    vals.append(state / 2**30 - 1)
h = json.dumps({"x": {"dtype": "F32", "shape": [n] + dims, "data_offsets": [0, 4 * count]}}).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + struct.pack("<%df" % count, *vals))
PY
}

# same_forward SRC "DIMS" [WEIGHTS]: both programs' forward outputs are the same bytes
same_forward() {
    src=$1 dims=$2 w=${3:-}
    stem=$(basename "$src" .cnn)
    d=$tmp/fwd_$stem
    mkdir -p "$d"
    make_input "$d/in.safetensors" 2 $dims
    if ! "$cnnc" "$src" --emit=cnn -o "$d/$stem.cnn" 2>"$d/err"; then
        fail "$src: --emit=cnn"; show "$d/err"; return
    fi
    # the two builds side by side (GoogLeNet compiles for ~25 s on one core)
    "$cnnc" "$src" -o "$d/orig" 2>"$d/orig.err" & first=$!
    "$cnnc" "$d/$stem.cnn" -o "$d/back" 2>"$d/back.err"; s2=$?
    wait $first; s1=$?
    if [ $s1 != 0 ] || [ $s2 != 0 ]; then
        fail "$src: does not build"; cat "$d/orig.err" "$d/back.err" >"$d/err"; show "$d/err"; return
    fi
    for p in orig back; do
        if ! "$d/$p" forward ${w:+--weights "$w"} --threads 1 "$d/in.safetensors" "$d/$p.out.safetensors" \
             >"$d/$p.log" 2>&1; then
            fail "$src: $p forward failed"; show "$d/$p.log"; return
        fi
    done
    if cmp -s "$d/orig.out.safetensors" "$d/back.out.safetensors"; then
        pass
    else
        fail "$src: the written program's forward outputs differ from the original's"
    fi
}

same_forward examples/lenet.cnn "1 28 28" tests/reference/lenet.weights.safetensors
same_forward tests/golden/placeholder_maths.cnn "3 8 8"
same_forward tests/golden/concat_vectors.cnn "20"
same_forward tests/reference/nets/ref_pipe_math.cnn "8"
same_forward examples/resnet18.cnn "3 224 224"
same_forward examples/mobilenet_v2.cnn "3 224 224"
same_forward examples/googlenet.cnn "3 224 224"

# ---- (f) errors --------------------------------------------------------------
"$cnnc" examples/resnet18.cnn --emit=cnn >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 1 ] && ! [ -s "$tmp/out" ] && grep -q 'class names, which go in files beside the program: give -o' "$tmp/err"; then
    pass
else
    fail "--emit=cnn of a network with class names to stdout: exit $rc (want 1 and a message)"; show "$tmp/err"
fi
"$cnnc" examples/lenet.cnn --emit=cnn >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '^network lenet$' "$tmp/out" && ! [ -s "$tmp/err" ]; then
    pass
else
    fail "--emit=cnn of lenet to stdout"; show "$tmp/err"
fi
"$cnnc" examples/resnet18.cnn --emit=cnn -o "$tmp/no/such/dir/r.cnn" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 1 ] && grep -q "cannot write" "$tmp/err" && ! ls "$tmp/no" >/dev/null 2>&1; then
    pass
else
    fail "--emit=cnn into a missing folder: exit $rc (want 1, 'cannot write')"; show "$tmp/err"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
