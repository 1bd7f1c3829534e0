#!/bin/sh
# run_golden.sh: the golden-file tests of the front end.
#
#   sh tests/run_golden.sh bin/cnnc            (from the repository's root)
#   UPDATE=1 sh tests/run_golden.sh bin/cnnc   rewrites the expected files
#
# (a) --emit=graph of examples/*.cnn and tests/golden/*.cnn equals
#     tests/golden/<stem>.graph;
# (b) --check of each tests/errors/NAME.cnn exits with status 1, prints nothing on
#     stdout, and its stderr equals tests/errors/NAME.err;
# (c) --emit=dot of every example and golden program renders with `dot -Tsvg`
#     (skipped, with a notice, when graphviz is not installed);
# (d) --summary of examples/lenet.cnn counts 61,706 parameters;
# (e) every normative program passes --check: examples/*.cnn, and the programs
#     under "Normative programs" in the language spec when it can be found
#     ($SPEC, docs/language.md or ../shared/spec/language.md).
# A compiler exit status other than 0 or 1 (3 is an internal error; above 128 a
# signal) is always a failure. The last line is "N passed, N failed"; the exit
# status is 0 only when nothing failed.

usage() {
    echo "usage: [UPDATE=1] sh tests/run_golden.sh path/to/cnnc" >&2
    exit 2
}

[ $# -eq 1 ] || usage
cnnc=$1
case $cnnc in
    /*) ;;
    *) cnnc=$(pwd)/$cnnc ;;
esac
if [ ! -x "$cnnc" ]; then
    echo "run_golden: '$1' is not an executable compiler" >&2
    exit 2
fi

# Work from the repository's root: the expected diagnostics name files relative to it.
root=$(cd "$(dirname "$0")/.." && pwd) || exit 2
cd "$root" || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run_golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

update=${UPDATE:-0}
passed=0
failed=0
TIMEOUT=${TIMEOUT:-60}

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# Runs the compiler with a time limit when timeout(1) exists; sets $rc.
# Output goes to $tmp/out and $tmp/err.
compile() {
    if command -v timeout >/dev/null 2>&1; then
        timeout "$TIMEOUT" "$cnnc" "$@" >"$tmp/out" 2>"$tmp/err"
    else
        "$cnnc" "$@" >"$tmp/out" 2>"$tmp/err"
    fi
    rc=$?
}

# Describes an exit status the compiler should never have; empty for 0 and 1.
abnormal() {
    case $1 in
        0|1) ;;
        2) echo "exit status 2 (bad command line)" ;;
        3) echo "exit status 3 (internal compiler error)" ;;
        124) echo "timed out after ${TIMEOUT}s" ;;
        *) if [ "$1" -gt 128 ]; then
               echo "killed by signal $(($1 - 128))"
           else
               echo "exit status $1"
           fi ;;
    esac
}

# Prints the compiler's stderr, indented, after a failure.
show_err() {
    if [ -s "$tmp/err" ]; then
        sed 's/^/    | /' "$tmp/err" | head -n 20
    fi
}

stem() { basename "$1" .cnn; }

programs() {
    for f in examples/*.cnn tests/golden/*.cnn; do
        [ -f "$f" ] && echo "$f"
    done
}

# ---- (a) graphs ----------------------------------------------------------
for src in $(programs); do
    want=tests/golden/$(stem "$src").graph
    compile "$src" --emit=graph
    bad=$(abnormal $rc)
    if [ -n "$bad" ]; then
        fail "$src: --emit=graph: $bad"
        show_err
        continue
    fi
    if [ $rc -ne 0 ] || [ -s "$tmp/err" ]; then
        fail "$src: --emit=graph exited with $rc and diagnostics (the program should compile)"
        show_err
        continue
    fi
    if [ "$update" = 1 ]; then
        cmp -s "$tmp/out" "$want" 2>/dev/null || { cp "$tmp/out" "$want"; echo "updated $want"; }
        pass
    elif [ ! -f "$want" ]; then
        fail "$src: no $want (run with UPDATE=1 to create it)"
    elif cmp -s "$tmp/out" "$want"; then
        pass
    else
        fail "$src: --emit=graph differs from $want"
        diff -u "$want" "$tmp/out" | sed "s|$tmp/out|(actual)|"
    fi
done

# A golden graph without its program is stale.
for g in tests/golden/*.graph; do
    [ -f "$g" ] || continue
    s=$(basename "$g" .graph)
    if [ ! -f "examples/$s.cnn" ] && [ ! -f "tests/golden/$s.cnn" ]; then
        fail "$g: no examples/$s.cnn or tests/golden/$s.cnn"
    fi
done

# ---- (b) diagnostics -----------------------------------------------------
for src in tests/errors/*.cnn; do
    [ -f "$src" ] || continue
    want=${src%.cnn}.err
    compile "$src" --check
    bad=$(abnormal $rc)
    if [ -n "$bad" ]; then
        fail "$src: --check: $bad"
        show_err
        continue
    fi
    if [ $rc -ne 1 ]; then
        fail "$src: --check exited with $rc, expected 1 (the program should be rejected)"
        show_err
        continue
    fi
    if [ -s "$tmp/out" ]; then
        fail "$src: --check wrote to stdout"
        continue
    fi
    if ! grep -q 'error: ' "$tmp/err"; then
        fail "$src: the diagnostics have no 'error:' line"
        show_err
        continue
    fi
    if [ "$update" = 1 ]; then
        cmp -s "$tmp/err" "$want" 2>/dev/null || { cp "$tmp/err" "$want"; echo "updated $want"; }
        pass
    elif [ ! -f "$want" ]; then
        fail "$src: no $want (run with UPDATE=1 to create it)"
    elif cmp -s "$tmp/err" "$want"; then
        pass
    else
        fail "$src: diagnostics differ from $want"
        diff -u "$want" "$tmp/err" | sed "s|$tmp/err|(actual)|"
    fi
done

for e in tests/errors/*.err; do
    [ -f "$e" ] || continue
    [ -f "${e%.err}.cnn" ] || fail "$e: no ${e%.err}.cnn"
done

# ---- (c) dot renders -----------------------------------------------------
if command -v dot >/dev/null 2>&1; then
    for src in $(programs); do
        compile "$src" --emit=dot
        bad=$(abnormal $rc)
        if [ -n "$bad" ]; then
            fail "$src: --emit=dot: $bad"
            show_err
        elif [ $rc -ne 0 ]; then
            fail "$src: --emit=dot exited with $rc"
            show_err
        elif ! dot -Tsvg "$tmp/out" >"$tmp/svg" 2>"$tmp/dot.err"; then
            fail "$src: dot -Tsvg rejects the --emit=dot output"
            sed 's/^/    | /' "$tmp/dot.err" | head -n 10
        elif ! grep -q '<svg' "$tmp/svg"; then
            fail "$src: dot -Tsvg made no SVG"
        else
            pass
        fi
    done
else
    echo "notice: graphviz 'dot' is not installed; skipping the --emit=dot checks"
fi

# ---- (d) lenet's summary -------------------------------------------------
compile examples/lenet.cnn --summary
bad=$(abnormal $rc)
if [ -n "$bad" ]; then
    fail "examples/lenet.cnn: --summary: $bad"
    show_err
elif [ $rc -ne 0 ]; then
    fail "examples/lenet.cnn: --summary exited with $rc"
    show_err
elif ! grep -q '61,706 parameters' "$tmp/out"; then
    fail "examples/lenet.cnn: --summary does not mention '61,706 parameters'"
    sed 's/^/    | /' "$tmp/out"
else
    pass
fi

# ---- (e) normative programs ----------------------------------------------
check_ok() {    # $1: the program, $2: what to call it
    compile "$1" --check
    bad=$(abnormal $rc)
    if [ -n "$bad" ]; then
        fail "$2: --check: $bad"
        show_err
    elif [ $rc -ne 0 ] || [ -s "$tmp/err" ] || [ -s "$tmp/out" ]; then
        fail "$2: --check exited with $rc (a normative program must compile silently)"
        show_err
    else
        pass
    fi
}

for src in examples/*.cnn; do
    [ -f "$src" ] && check_ok "$src" "$src"
done

spec=${SPEC:-}
if [ -z "$spec" ]; then
    for s in docs/language.md ../shared/spec/language.md; do
        if [ -f "$s" ]; then spec=$s; break; fi
    done
fi
if [ -n "$spec" ] && [ -f "$spec" ]; then
    # Each "### title" under "## Normative programs" is followed by the program,
    # indented by four spaces.
    mkdir -p "$tmp/spec"
    awk -v dir="$tmp/spec" '
        /^## / { on = ($0 ~ /^## Normative programs/); next }
        !on { next }
        /^### / { n++; out = sprintf("%s/normative%d.cnn", dir, n); next }
        out != "" && /^    / { print substr($0, 5) > out; next }
        out != "" && /^[^ ]/ { close(out); out = "" }
    ' "$spec"
    count=0
    for p in "$tmp"/spec/normative*.cnn; do
        [ -f "$p" ] || continue
        count=$((count + 1))
        name=$(sed -n 's/^network  *\([A-Za-z_0-9]*\).*/\1/p' "$p" | head -n 1)
        check_ok "$p" "normative program '${name:-$(basename "$p")}' of $spec"
    done
    [ $count -gt 0 ] || fail "$spec: found no normative programs"
else
    echo "notice: the language spec was not found (set SPEC=path/to/language.md); checked examples/*.cnn only"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
