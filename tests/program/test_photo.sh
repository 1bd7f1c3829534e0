#!/bin/sh
# test_photo.sh: predict on photos, against torchvision through PIL.
#
#   sh tests/program/test_photo.sh     (from the repository's root, after `make`)
#
# The networks are built with --sanitize: everything predict does here runs
# under AddressSanitizer and UBSan. tests/program/photo.jpg is a photo-like
# 500x375 JPEG made by tests/program/make_photo.py; photo_ref.py makes the
# other images from it and computes torchvision's tensors (installing
# Debian's python3-torchvision and python3-pil if they are missing).
#
# (a) `predict --dump-input` writes the input tensor that torchvision's
#     Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std) make on
#     PIL's Image.open(f).convert("RGB"), within a mean absolute difference
#     of 1/255 before normalization, for the photo (JPEG), the photo turned
#     upright, gray, CMYK and progressive JPEGs, RGB, RGBA and gray PNGs, a
#     PNG smaller than the crop (padded, with --resize 0), and with every key
#     overridden on the command line; a 1-channel 28x28 network stretches a
#     photo as Resize((28, 28)) does, after convert("L");
# (b) the top-5 lines carry the class names the program embeds, and those
#     of --classes FILE instead; the dumped tensor is the one `forward` takes;
#     examples/alexnet.cnn names ImageNet classes (examples/imagenet_classes.txt);
# (c) bad input exits 1 with a message naming the file and saying what is
#     wrong, never a crash or a sanitizer report: a truncated JPEG, a corrupt
#     JPEG, JPEG headers claiming 60000x60000 and 65535x65535 pixels (libjpeg
#     refuses the second itself), PNG and PGM headers claiming 100000x100000,
#     a class names file with the wrong number of lines or an empty line, a
#     crop that is not the input's size, a resize without the crop it needs;
#     bad override values exit 2;
# (d) a .cnn whose classes file has the wrong number of lines is a compile
#     error at the classes key.
# The last line is "N passed, N failed".

PY=/usr/bin/python3
cnnc=bin/cnnc
photo=tests/program/photo.jpg
if [ ! -x "$cnnc" ] || [ ! -f "$photo" ]; then
    echo "test_photo.sh: run from the repository's root after 'make'" >&2
    exit 2
fi
if ! $PY -c 'import torchvision, PIL, numpy' 2>/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        python3-torchvision python3-pil python3-numpy >/dev/null
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/photo.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
show() { [ -s "$1" ] && sed 's/^/    | /' "$1" | head -n 12; }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit $?; }

# ---- the networks ------------------------------------------------------------------
mean=0.485,0.456,0.406
std=0.229,0.224,0.225
printf 'apple\nbanana\ncherry\ndate\nelderberry\n' >"$tmp/five.txt"
cat >"$tmp/photo.cnn" <<EOF
network photo
input x : [3, 224, 224]
labels y : class(5)
x -> conv(8, 3x3, stride = 4) -> relu -> global_avgpool -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
data {
  resize = 256
  crop   = 224
  mean   = [${mean}]
  std    = [${std}]
  classes = "five.txt"
}
EOF
cat >"$tmp/gray.cnn" <<'EOF'
network gray
input x : [1, 28, 28]
labels y : class(10)
x -> flatten -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
data { scale = 1/255 }
EOF
for n in photo gray; do
    if ! "$cnnc" --sanitize "$tmp/$n.cnn" -o "$tmp/$n" 2>"$tmp/err"; then
        fail "cnnc --sanitize $n.cnn"
        show "$tmp/err"
        finish
    fi
done
if ! $PY tests/program/photo_ref.py variants "$photo" "$tmp" 2>"$tmp/err"; then
    fail "photo_ref.py variants"
    show "$tmp/err"
    finish
fi
net=$tmp/photo

# ---- (a) the input tensor against torchvision ---------------------------------------
# same_as_torchvision NET C RESIZE CROP MEAN STD -- FILE... [-- predict options]
same_as_torchvision() {
    bin=$1 c=$2 resize=$3 crop=$4 m=$5 s=$6
    shift 7                 # through the first --
    files=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do files="$files $1"; shift; done
    [ $# -gt 0 ] && shift   # the second --: predict's options follow
    # shellcheck disable=SC2086
    "$bin" predict --dump-input "$tmp/x.safetensors" "$@" $files >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "predict --dump-input$files $* exited with $rc"
        show "$tmp/err"
        return
    fi
    # shellcheck disable=SC2086
    if $PY tests/program/photo_ref.py compare "$tmp/x.safetensors" "$c" "$resize" "$crop" "$m" "$s" \
        $files >"$tmp/cmp" 2>&1; then
        pass "the input is torchvision's:"
        sed "s|$tmp/||; s|^|       |" "$tmp/cmp"
    else
        fail "the input differs from torchvision's:"
        show "$tmp/cmp"
    fi
}

same_as_torchvision "$net" 3 256 224 $mean $std -- "$photo" "$tmp/portrait.jpg" "$tmp/gray.jpg" \
    "$tmp/cmyk.jpg" "$tmp/progressive.jpg"
same_as_torchvision "$net" 3 256 224 $mean $std -- "$tmp/rgb.png" "$tmp/rgba.png" "$tmp/gray.png"
same_as_torchvision "$net" 3 0 224 $mean $std -- "$tmp/small.png" -- --resize 0
same_as_torchvision "$net" 3 240 224 0.5 0.25 -- "$photo" "$tmp/portrait.jpg" -- \
    --resize 240 --mean 0.5 --std 0.25
same_as_torchvision "$net" 3 300 224 0.1,0.2,0.3 0.5,0.6,0.7 -- "$photo" -- \
    --resize 300 --crop 224 --mean 0.1,0.2,0.3 --std 0.5,0.6,0.7
same_as_torchvision "$tmp/gray" 1 0 0 0 1 -- "$photo" "$tmp/gray.png" "$tmp/rgba.png"

# ---- (b) class names, and the dump as forward's input -------------------------------
if "$net" predict "$photo" >"$tmp/out" 2>"$tmp/err" &&
   [ "$(grep -c '^  class [0-4]  *[0-9.]*  [a-z]*$' "$tmp/out")" -eq 5 ] &&
   awk '{ n[$2] = $4 } END { exit !(n[0] == "apple" && n[4] == "elderberry") }' "$tmp/out"; then
    pass "the top-5 carries the embedded class names"
else
    fail "predict's top-5 lacks the class names of five.txt"
    show "$tmp/out"
    show "$tmp/err"
fi
printf 'A\nB\nC\nD\r\nE' >"$tmp/other.txt"    # CRLF and no final newline are fine
if "$net" predict --classes "$tmp/other.txt" "$photo" >"$tmp/out" 2>"$tmp/err" &&
   [ "$(grep -c '^  class [0-4]  *[0-9.]*  [A-E]$' "$tmp/out")" -eq 5 ]; then
    pass "--classes FILE replaces the names"
else
    fail "predict --classes"
    show "$tmp/out"
    show "$tmp/err"
fi
"$net" predict "$photo" --dump-input "$tmp/x.safetensors" >"$tmp/p.txt" 2>/dev/null
if "$net" forward "$tmp/x.safetensors" "$tmp/y.safetensors" 2>"$tmp/err" &&
   $PY - "$tmp/y.safetensors" "$tmp/p.txt" <<'EOF'
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["out"]
s, e = t["data_offsets"]
z = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").astype(np.float64).ravel()
p = np.exp(z - z.max()); p /= p.sum()
top = [l.split() for l in open(sys.argv[2]) if l.startswith("  class")]
assert all(abs(p[int(r[1])] - float(r[2])) < 1e-4 for r in top), (p, top)
EOF
then
    pass "forward on the dumped input gives predict's probabilities"
else
    fail "forward on --dump-input's tensor"
    show "$tmp/err"
fi

# A full-size example: its data block's names are torchvision's ImageNet names.
if "$cnnc" examples/alexnet.cnn -o "$tmp/alexnet" 2>"$tmp/err" &&
   "$tmp/alexnet" predict "$photo" >"$tmp/out" 2>"$tmp/err" &&
   awk 'NR == FNR { name[FNR - 1] = $0; next }
        /^  class / { n++; k = $2; sub(/^  class +[0-9]+ +[0-9.]+  /, ""); ok += $0 == name[k] }
        END { exit !(n == 5 && ok == 5) }' examples/imagenet_classes.txt "$tmp/out"; then
    pass "examples/alexnet.cnn: predict names ImageNet classes ($(sed -n 2p "$tmp/out" | sed 's/^ *//'))"
else
    fail "examples/alexnet.cnn: predict with the ImageNet names"
    show "$tmp/out"
    show "$tmp/err"
fi

# ---- (c) bad input --------------------------------------------------------------------
# expect_fail STATUS TEXT COMMAND...: exits STATUS, stderr holds TEXT, no sanitizer report
expect_fail() {
    want=$1 text=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne "$want" ]; then
        fail "exit $rc, not $want: ${*#"$tmp/"}"
        show "$tmp/err"
    elif ! grep -qF -- "$text" "$tmp/err" || grep -q 'Sanitizer\|runtime error' "$tmp/err"; then
        fail "the message lacks '$text': $*"
        show "$tmp/err"
    else
        pass "exit $want: $(sed "s|$tmp/||g" "$tmp/err" | grep -v 'note: no --weights' | head -n 1)"
    fi
}
expect_fail 1 "$tmp/truncated.jpg: bad JPEG: Premature end of JPEG file" "$net" predict "$tmp/truncated.jpg"
expect_fail 1 "$tmp/corrupt.jpg: bad JPEG: Unsupported JPEG data precision 12" "$net" predict "$tmp/corrupt.jpg"
expect_fail 1 "$tmp/huge.jpg: image size 60000x60000x3 is outside" "$net" predict "$tmp/huge.jpg"
expect_fail 1 "$tmp/huger.jpg: bad JPEG: Maximum supported image dimension is 65500" "$net" predict "$tmp/huger.jpg"
expect_fail 1 "$tmp/huge.png: image size 100000x100000x3 is outside" "$net" predict "$tmp/huge.png"
expect_fail 1 "$tmp/huge.pgm: image size 100000x100000x1 is outside" "$net" predict "$tmp/huge.pgm"
printf 'one\ntwo\nthree\n' >"$tmp/three.txt"
expect_fail 1 "$tmp/three.txt: 3 class names (one per line), but the network has 5 classes" \
    "$net" predict --classes "$tmp/three.txt" "$photo"
printf 'a\nb\n\nd\ne\n' >"$tmp/hole.txt"
expect_fail 1 "$tmp/hole.txt:3: an empty class name" "$net" predict --classes "$tmp/hole.txt" "$photo"
expect_fail 1 "$tmp/none.txt: cannot open" "$net" predict --classes "$tmp/none.txt" "$photo"
expect_fail 1 "crop = 200 makes 200x200 images, but the network takes 224x224" \
    "$net" predict --crop 200 "$photo"
expect_fail 1 "resize = 256 makes this 500x375 image 341x256, but the network takes 224x224: add a crop" \
    "$net" predict --crop 0 "$photo"
expect_fail 2 "--mean needs one number or three" "$net" predict --mean 1,2 "$photo"
expect_fail 2 "--std needs one number or three" "$net" predict --std 0.5,0,1 "$photo"
expect_fail 2 "--resize needs a whole number" "$net" predict --resize -3 "$photo"
expect_fail 2 "other than 3 channels: --mean and --std take one value" "$tmp/gray" predict --mean 1,2,3 "$photo"

# ---- (d) the classes file at compile time ---------------------------------------------
sed 's/five.txt/three.txt/' "$tmp/photo.cnn" >"$tmp/three.cnn"
expect_fail 1 "three.cnn:11:13: error: three.txt has 3 class names (one per line), but the network has 5 classes" \
    "$cnnc" --check "$tmp/three.cnn"

finish
