#!/usr/bin/env python3
"""files.py GOOD OUTDIR: damaged variants of the safetensors file GOOD
(LeNet's weights) for the tests of cnnc --weights (tests/weights/run.sh):

  renamed.safetensors   'dense3.bias' stored as 'dense3.bais'
  shape.safetensors     'conv1.weight' of shape [6, 1, 3, 3] (54 values)
  f16.safetensors       'dense3.bias' stored as F16
  truncated.safetensors GOOD's first bytes, cut inside the data
  other.safetensors     metadata network = "mlp"
  structure.safetensors metadata structure = "0123456789abcdef"
  damaged.safetensors   with crc32 metadata, then one data byte changed
  two.safetensors       'conv1.bias' missing and 'dense1.weight' of another shape

files.py --input SHAPE N SEED OUT writes OUT holding the tensor 'x' of
shape [N, SHAPE...] (SHAPE as "1,28,28"), values uniform in [0, 1) from
SEED: an input for the generated programs' `forward`.

Standard library only: the format is written out by hand."""
import json, os, struct, sys, zlib

def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = b[8 + n:]
    tensors = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        lo, hi = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], data[lo:hi])
    return tensors, meta

def write(path, tensors, meta):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)

def make_input(shape, n, seed, out):
    import random
    rng = random.Random(int(seed))
    dims = [int(n)] + [int(d) for d in shape.split(",")]
    count = 1
    for d in dims:
        count *= d
    raw = struct.pack("<%df" % count, *(rng.random() for _ in range(count)))
    write(out, {"x": ("F32", dims, raw)}, {})

def main():
    if sys.argv[1] == "--input":
        return make_input(*sys.argv[2:6])
    good, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    t, meta = read(good)
    plain = {k: v for k, v in meta.items() if k not in ("crc32",)}

    r = dict(t); r["dense3.bais"] = r.pop("dense3.bias")
    write(os.path.join(out, "renamed.safetensors"), r, plain)

    s = dict(t); s["conv1.weight"] = ("F32", [6, 1, 3, 3], t["conv1.weight"][2][:6 * 9 * 4])
    write(os.path.join(out, "shape.safetensors"), s, plain)

    f = dict(t); f["dense3.bias"] = ("F16", [10], b"\0\x3c" * 10)
    write(os.path.join(out, "f16.safetensors"), f, plain)

    b = open(good, "rb").read()
    open(os.path.join(out, "truncated.safetensors"), "wb").write(b[:len(b) - 100])

    write(os.path.join(out, "other.safetensors"), t, dict(plain, network="mlp"))
    write(os.path.join(out, "structure.safetensors"), t, dict(plain, structure="0123456789abcdef"))

    crc = 0
    for dtype, shape, raw in t.values():
        crc = zlib.crc32(raw, crc)
    damaged = os.path.join(out, "damaged.safetensors")
    write(damaged, t, dict(plain, crc32="%08x" % crc))
    d = bytearray(open(damaged, "rb").read()); d[-5] ^= 0x40
    open(damaged, "wb").write(bytes(d))

    w = dict(t); del w["conv1.bias"]
    w["dense1.weight"] = ("F32", [120, 40], t["dense1.weight"][2][:120 * 40 * 4])
    write(os.path.join(out, "two.safetensors"), w, plain)

main()
