#!/bin/sh
# ONNX's own operator tests (Debian's libonnx-testdata) through cnnc: for
# each test directory of node/, pytorch-converted/, pytorch-operator/ and
# simple/ (real/ holds only download addresses), with test_data_set_N/
# input_K.pb and output_K.pb as TensorProto files:
#   - out of scope: an operator cnnc does not import, or an opset outside 7
#     to 17 (build/tests/conform prepare decides, by reading the model);
#   - otherwise the first graph input is the program's input, its dimension 0
#     the batch; every other graph input is bound to the test's values as an
#     initializer of the same name (a constant, as a trained model's weights
#     are), in a copy of the model; then
#   - `cnnc model.onnx` either refuses it (exit 1 with an "error:" message
#     naming the place: an attribute, element type, rank or broadcast cnnc does
#     not take), and then `cnnc --unbatched model.onnx` (the whole input one
#     example, run as a batch of 1) is tried, and if it refuses too the test
#     counts as "refused" (a correct outcome, not a pass) with the first
#     reading's message; or it compiles it, and `./model forward` (with the
#     weights --emit=weights writes) on input_0 must match every output_K:
#     the tensor of output_K's name in forward's file (or "out", a lone
#     output's), floats within 1e-4 relative (the largest absolute difference
#     over the largest expected magnitude), integers and booleans exactly; the
#     same number of values, and the same dimensions once the 1s are left out.
# Anything else (a crash, another exit status, a refusal without a message, a
# program that fails, a wrong output) is a failure, named.
#   sh tests/onnx/conformance.sh [TEST...]   (default: all; a TEST is a
#                                            directory or a name like test_relu)
# Environment: CONFORM_DATA (the data, default Debian's), CONFORM_JOBS
# (tests at once, default 2), CONFORM_FLAGS (cnnc's flags, default
# -O1 --sanitize: the generated code and runtime checked by ASan and UBSan).
# Prints found / in scope / refused / ran / passed / failed, per suite and in
# all, each failure with its reason; exits 1 if any test failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
CNNC=${CNNC:-$(pwd)/bin/cnnc}
CONFORM=${CONFORM:-$(pwd)/build/tests/conform}
DATA=${CONFORM_DATA:-/usr/share/libonnx-testdata/data}
JOBS=${CONFORM_JOBS:-2}
FLAGS=${CONFORM_FLAGS:--O1 --sanitize}
SUITES="node pytorch-converted pytorch-operator simple"
out=build/conformance
export CNNC CONFORM FLAGS

if [ ! -d "$DATA/node" ]; then
  echo "conformance: no ONNX test data in $DATA (Debian's libonnx-testdata; make deps installs it)"; exit 1
fi
[ -x "$CONFORM" ] || { echo "conformance: $CONFORM is not built (make $CONFORM)"; exit 2; }

# one test: DIR RESULT; writes "VERDICT|SUITE/NAME|DETAIL" to RESULT.
# VERDICT: out (of scope), refused, pass, wrong (ran, wrong output), broken
# (in scope, neither refused nor run: a crash, a failing program, ...)
run_one() {
  t=$1 res=$2 work=${2%.res}
  name="$(basename "$(dirname "$t")")/$(basename "$t")"
  rm -rf "$work" && mkdir -p "$work"
  verdict=pass detail=
  for set in "$t"/test_data_set_*; do
    [ -d "$set" ] || continue
    n=${set##*_} d=$work/$n
    mkdir -p "$d"
    prep=$("$CONFORM" prepare "$t" "$n" "$d" 2>&1); rc=$?
    if [ $rc = 3 ]; then verdict=out detail=${prep#out of scope: }; break; fi
    if [ $rc != 0 ]; then verdict=broken detail="conform prepare: $prep"; break; fi
    # batched (dimension 0 of the input the batch), then unbatched
    ub= x=x
    for mode in batched unbatched; do
      # shellcheck disable=SC2086
      "$CNNC" "$d/model.onnx" $ub $FLAGS -o "$d/model" >"$d/cnnc.out" 2>"$d/cnnc.$mode.err"; rc=$?
      cp "$d/cnnc.$mode.err" "$d/cnnc.err"
      [ $rc = 1 ] && grep -q ': error: ' "$d/cnnc.err" && [ $mode = batched ] && [ -f "$d/x1.safetensors" ] || break
      ub=--unbatched x=x1
    done
    if [ $rc = 1 ] && grep -q ': error: ' "$d/cnnc.err"; then
      verdict=refused detail=$(grep -m1 ': error: ' "$d/cnnc.batched.err" | sed 's/^.*: error: //'); break
    fi
    [ -n "$ub" ] && detail="unbatched"
    if [ $rc != 0 ]; then verdict=broken detail="cnnc $ub exit $rc: $(head -c 300 "$d/cnnc.err" | tr '\n' ' ')"; break; fi
    # shellcheck disable=SC2086
    if ! "$CNNC" "$d/model.onnx" $ub --emit=weights -o "$d/w.safetensors" 2>"$d/w.err"; then
      verdict=broken detail="--emit=weights: $(head -c 300 "$d/w.err" | tr '\n' ' ')"; break
    fi
    if ! "$d/model" forward --weights "$d/w.safetensors" "$d/$x.safetensors" "$d/out.safetensors" \
         >/dev/null 2>"$d/forward.err"; then
      verdict=broken detail="forward: $(grep -v 'note:' "$d/forward.err" | head -c 300 | tr '\n' ' ')"; break
    fi
    for want in "$set"/output_*.pb; do   # every output, found in out.safetensors by its name
      cmp=$("$CONFORM" compare "$d/out.safetensors" "$want" 2>&1); rc=$?
      detail="${detail:+$detail; }$cmp"
      [ $rc = 0 ] || break
    done
    if [ $rc != 0 ]; then verdict=wrong; break; fi
    rm -f "$d/model"                   # passed: the program is not kept (a few MB each)
  done
  echo "$verdict|$name|$detail" >"$res"
}

# run as: conformance.sh --one DIR RESULT (what xargs calls)
if [ "${1:-}" = --one ]; then run_one "$2" "$3"; exit 0; fi

rm -rf "$out" && mkdir -p "$out"
if [ $# -gt 0 ]; then
  for a in "$@"; do
    if [ -d "$a" ]; then echo "$a"; else ls -d "$DATA"/*/"$a" 2>/dev/null; fi
  done
else
  for s in $SUITES; do ls -d "$DATA/$s"/*/; done | sed 's,/$,,'
fi >"$out/list"
start=$(date +%s)
while read -r t; do
  echo "$t $out/$(basename "$(dirname "$t")").$(basename "$t").res"
done <"$out/list" | xargs -P "$JOBS" -n 2 sh "$0" --one
cat "$out"/*.res 2>/dev/null | sort -t'|' -k2 >"$out/results"

# the figures, per suite and in all
awk -F'|' -v secs=$(( $(date +%s) - start )) -v listed="$(wc -l <"$out/list")" '
  { split($2, p, "/"); s = p[1]; found[s]++; all_found++; v[s, $1]++; all[$1]++
    if (!(s in seen)) { seen[s] = 1; order[++ns] = s } }
  function line(what, f, o, r, ps, w, b) {
    printf "%-19s found %4d, in scope %4d, refused %4d, ran %4d, passed %4d, failed %4d\n",
      what, f, f - o, r, ps + w, ps, w + b }
  END {
    for (i = 1; i <= ns; i++) { s = order[i]
      line(s ":", found[s], v[s, "out"], v[s, "refused"], v[s, "pass"], v[s, "wrong"], v[s, "broken"]) }
    line("all:", all_found, all["out"], all["refused"], all["pass"], all["wrong"], all["broken"])
    if (all_found != listed) printf "%d tests gave no result\n", listed - all_found
    printf "(%d s; details in build/conformance/results)\n", secs
  }' "$out/results"
grep -E '^(wrong|broken)\|' "$out/results" | sed 's/^\([a-z]*\)|\([^|]*\)|/FAIL  \2 (\1): /'
failed=$(grep -cE '^(wrong|broken)\|' "$out/results")
noresult=$(( $(wc -l <"$out/list") - $(wc -l <"$out/results") ))
[ "$failed" = 0 ] && [ "$noresult" = 0 ]
