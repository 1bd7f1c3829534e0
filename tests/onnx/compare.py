#!/usr/bin/python3
"""Compares cnnc's output with ONNX Runtime's (run by tests/onnx/run.sh).

    /usr/bin/python3 tests/onnx/compare.py NAME OUT.safetensors ORT.bin [TOL]

OUT.safetensors is `./NET forward`'s file (tensor 'out'); ORT.bin ONNX
Runtime's output as raw float32. The relative error is as in
tests/reference/check_net.c: the largest absolute difference over the largest
reference magnitude (at least 1e-6); a NaN counts as infinite. Prints one
line, "ok" or "FAIL", and exits 1 on a failure.
"""

import json
import math
import struct
import sys

import numpy


def read_tensor(path, name):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(data[8:8 + n])[name]
    b, e = meta["data_offsets"]
    return numpy.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(meta["shape"])


def main():
    name, out, ref = sys.argv[1:4]
    tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
    got = read_tensor(out, "out").astype(numpy.float64).ravel()
    want = numpy.fromfile(ref, dtype="<f4").astype(numpy.float64)
    if got.size != want.size:
        print(f"FAIL  {name}: cnnc gives {got.size} values, ONNX Runtime {want.size}")
        sys.exit(1)
    diff = numpy.abs(got - want)
    err = math.inf if numpy.isnan(diff).any() else diff.max() / max(numpy.abs(want).max(), 1e-6)
    ok = err <= tol
    print(f"{'ok  ' if ok else 'FAIL'}  {name}: {got.size} outputs, rel. error {err:.2e} (max {tol:.0e})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
