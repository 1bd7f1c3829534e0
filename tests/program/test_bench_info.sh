#!/bin/sh
# test_bench_info.sh: the generated program's bench and info, and the memory
# figures of info and cnnc --summary.
#
#   sh tests/program/test_bench_info.sh     (from the repository's root, after `make`)
#
# (a) bench --seconds 0.2 ends (within 300 s) with exit 0 and prints its
#     every line: the header, forward latency, forward throughput and
#     training step at the batch, the memory held; the batch is the .cnn's
#     train { batch } (or --batch);
# (b) bench --seconds with a bad value (0, -1, x, nan, inf, 1e9, empty, none)
#     exits 2 with a message naming --seconds, and prints no results;
# (c) the memory info and --summary report is the memory the program really
#     holds: info's "total" bytes equal bench --threads 1's "memory held"
#     bytes (LeNet, the MLP, vgg_small, a batchnorm net, and a net whose
#     depthwise convolution and 3x3 pooling use the private scratch), and with
#     --threads 2 the difference is info's "each further thread adds";
#     info's memory block is the same text as --summary's;
# (d) info and --summary align the layer table for any layer name: in a net
#     whose layers have long labels ("batchnorm1 (batchnorm)", a 40-character
#     bound name) every row of the table has the header's length and its
#     output column starts where the header's does; info's parameter list
#     is aligned for a 45-character parameter name.
# The last line is "N passed, N failed"; the exit status is 0 only when
# nothing failed.

cnnc=bin/cnnc
if [ ! -x "$cnnc" ]; then
    echo "test_bench_info.sh: run from the repository's root after 'make' (no $cnnc)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_info.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 15; }

# A batchnorm net with long layer names (the table's flaw of issue #12).
cat >"$tmp/longnames.cnn" <<'EOF'
network longnames
input  x : [3, 16, 16]
labels y : class(10)
param a_scale_parameter_with_a_name_of_45_characters : [16, 1, 1] = ones
x -> conv(8, 3x3, pad = 1, bias = false) -> batchnorm -> relu -> maxpool(2)
  -> conv(16, 3x3, pad = 1) -> relu -> _ * a_scale_parameter_with_a_name_of_45_characters
  -> a_rather_long_value_name_of_forty_chars
a_rather_long_value_name_of_forty_chars -> global_avgpool -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.1, momentum = 0.9)  batch = 12 }
EOF

# A depthwise convolution and an overlapping pooling: each thread's private
# scratch (one padded channel) is part of the memory held.
cat >"$tmp/dwpool.cnn" <<'EOF'
network dwpool
input  x : [4, 12, 12]
labels y : class(10)
x -> conv(4, 3x3, pad = 1, groups = 4) -> relu -> maxpool(3, stride = 1, pad = 1)
  -> conv(8, 1x1) -> relu -> global_avgpool -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.1, momentum = 0.9)  batch = 6 }
EOF

nets="examples/lenet.cnn examples/mlp.cnn examples/vgg_small.cnn $tmp/longnames.cnn $tmp/dwpool.cnn"
for src in $nets; do
    net=$(basename "$src" .cnn)
    if ! "$cnnc" "$src" -o "$tmp/$net" 2>"$tmp/err"; then
        fail "cnnc $src -o $net"
        show "$tmp/err"
    fi
done

# The batch a net's train { batch } sets, or 64.
batch_of() { b=$(sed -n 's/.*batch = \([0-9]*\).*/\1/p' "$1" | head -n 1); echo "${b:-64}"; }
# The bytes of a "... 1,234 bytes..." line matching $2 in file $1, digits only.
bytes_of() { grep "$2" "$1" | sed -n 's/.* \([0-9,]*\) bytes.*/\1/p' | tr -d , | head -n 1; }

# ---- (a) bench ends and prints every line --------------------------------------

for src in $nets; do
    net=$(basename "$src" .cnn)
    [ -x "$tmp/$net" ] || continue
    B=$(batch_of "$src")
    if timeout 300 "$tmp/$net" bench --seconds 0.2 >"$tmp/out" 2>"$tmp/err"; then
        if grep -q "^network $net, [0-9]* threads\{0,1\}, about 0.2 s per measure$" "$tmp/out" &&
           grep -q "^forward latency, batch 1: *[0-9.]* us$" "$tmp/out" &&
           grep -q "^forward throughput, batch $B *[0-9]* images/s$" "$tmp/out" &&
           grep -q "^training step, batch $B *[0-9]* images/s$" "$tmp/out" &&
           grep -q "^memory held: *[0-9.]* MiB *[0-9,]* bytes" "$tmp/out" &&
           [ "$(wc -l <"$tmp/out")" -eq 5 ]; then
            pass
        else
            fail "$net bench: the five lines, at batch $B"
            show "$tmp/out"
        fi
    else
        fail "$net bench --seconds 0.2 exited with $? (124: still running after 300 s)"
        show "$tmp/err"
    fi
done
lenet=$tmp/lenet
if "$lenet" bench --seconds 0.05 --batch 7 --threads 1 >"$tmp/out" 2>"$tmp/err" &&
   grep -q "^network lenet, 1 thread, about 0.05 s per measure$" "$tmp/out" &&
   grep -q "^forward throughput, batch 7 " "$tmp/out" && grep -q "^training step, batch 7 " "$tmp/out"; then
    pass
else
    fail "lenet bench --batch 7 --threads 1: the batch and the thread count"
    show "$tmp/out"
fi

# ---- (b) bad --seconds ----------------------------------------------------------

for v in 0 -1 x nan inf 1e9 ""; do
    "$lenet" bench --seconds "$v" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 2 ] && grep -q -- "--seconds needs a number of seconds above 0 and at most 86400, not '$v'" "$tmp/err" &&
       [ ! -s "$tmp/out" ]; then
        pass
    else
        fail "bench --seconds '$v': exit $rc (want 2 and a message)"
        show "$tmp/err"
    fi
done
"$lenet" bench --seconds >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 2 ] && grep -q -- "--seconds needs a value" "$tmp/err"; then pass
else fail "bench --seconds without a value: exit $rc (want 2)"; show "$tmp/err"; fi

# ---- (c) the memory figures are what the program holds ---------------------------

for src in $nets; do
    net=$(basename "$src" .cnn)
    [ -x "$tmp/$net" ] || continue
    "$tmp/$net" info >"$tmp/info" 2>"$tmp/err"
    "$cnnc" "$src" --summary >"$tmp/summary" 2>"$tmp/err"
    sed -n '/^memory at batch/,/each further thread/p' "$tmp/info" >"$tmp/m_info"
    sed -n '/^memory at batch/,/each further thread/p' "$tmp/summary" >"$tmp/m_summary"
    if [ -s "$tmp/m_info" ] && cmp -s "$tmp/m_info" "$tmp/m_summary"; then pass
    else fail "$net: info's memory block differs from --summary's (or is missing)"; show "$tmp/m_info"; fi
    total=$(bytes_of "$tmp/info" "^  total ")
    "$tmp/$net" bench --threads 1 --seconds 0.01 >"$tmp/b1" 2>"$tmp/err"
    held1=$(bytes_of "$tmp/b1" "^memory held:")
    if [ -n "$total" ] && [ "$total" = "$held1" ]; then pass
    else fail "$net: info's total is '$total' bytes but bench --threads 1 holds '$held1'"; show "$tmp/b1"; fi
    # each further thread: within the 0.1 KiB (or MiB) info rounds to
    "$tmp/$net" bench --threads 2 --seconds 0.01 >"$tmp/b2" 2>"$tmp/err"
    held2=$(bytes_of "$tmp/b2" "^memory held:")
    more=$(sed -n 's/^  each further thread adds \([0-9.]*\) \([KMG]\)iB.*/\1 \2/p' "$tmp/info")
    if [ -n "$held2" ] && [ -n "$more" ] && echo "$held1 $held2 $more" | awk '{
            unit = $4 == "K" ? 1024 : $4 == "M" ? 1048576 : 1073741824
            d = ($2 - $1) / unit - $3; exit !(d > -0.051 && d < 0.051) }'; then pass
    else fail "$net: 2 threads hold $held2 bytes, 1 thread $held1; info says each further thread adds '$more'"; fi
done

# ---- (d) aligned tables ---------------------------------------------------------

# The layer table of $1 (header to the last row): all lines as long as the
# header, the output column starting where the header's does.
aligned() {
    sed -n '/^#  *layer /,/^$/p' "$1" | sed '/^$/d' | awk '
        NR == 1 { len = length($0); col = index($0, "output") }
        { if (length($0) != len || substr($0, col - 1, 2) !~ /^ [^ ]/) bad = NR }
        END { exit !(NR > 3 && !bad) }'
}
"$tmp/longnames" info >"$tmp/info" 2>"$tmp/err"
"$cnnc" "$tmp/longnames.cnn" --summary >"$tmp/summary" 2>"$tmp/err"
for f in info summary; do
    if grep -q "batchnorm1 (batchnorm)" "$tmp/$f" && grep -q "a_rather_long_value_name_of_forty_chars" "$tmp/$f" &&
       aligned "$tmp/$f"; then pass
    else fail "longnames $f: the layer table is not aligned"; show "$tmp/$f"; fi
done
# info's parameter list: each shape starts in the same column
if grep -q "^  a_scale_parameter_with_a_name_of_45_characters " "$tmp/info" &&
   sed -n '/^parameters (safetensors/,$p' "$tmp/info" | tail -n +2 | awk '
        { c = index($0, "[") } NR == 1 { col = c } c != col { bad = 1 } END { exit !(NR > 4 && !bad) }'; then pass
else fail "longnames info: the parameter list is not aligned"; show "$tmp/info"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
