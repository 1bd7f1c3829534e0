#!/usr/bin/python3
"""Compares cnnc's output with ONNX Runtime's (run by tests/onnx/run.sh).

    /usr/bin/python3 tests/onnx/compare.py NAME OUT.safetensors ORT.bin [TOL]

OUT.safetensors is `./NET forward`'s file (tensor 'out'); ORT.bin ONNX
Runtime's output as raw float32. A model of several outputs: ORT.bin.names
names them, ORT.bin.K holds output K (float64), and each is compared with
OUT.safetensors' tensor of its name. Integer and boolean outputs must match
exactly. The relative error is as in
tests/reference/check_net.c: the largest absolute difference over the largest
reference magnitude (at least 1e-6); a NaN counts as infinite. Prints one
line, "ok" or "FAIL", and exits 1 on a failure.
"""

import json
import math
import os
import struct
import sys

import numpy


DTYPES = {"F32": "<f4", "U8": "u1", "I8": "i1", "BOOL": "u1", "I64": "<i8"}
# ONNX Runtime's type of an output -> the safetensors dtype cnnc must write it as
ORT_DTYPES = {"float32": "F32", "uint8": "U8", "int8": "I8", "bool": "BOOL", "int64": "I64"}


def read_tensor(path, name):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(data[8:8 + n])[name]
    b, e = meta["data_offsets"]
    return meta["dtype"], numpy.frombuffer(data[8 + n + b:8 + n + e], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])


def check(name, got, want, tol, dtype, want_type):
    """one output: (ok, its line); exact unless ONNX Runtime's is a float"""
    if want_type and ORT_DTYPES.get(want_type) != dtype:
        return False, f"FAIL  {name}: cnnc writes it as {dtype}, ONNX Runtime gives {want_type}"
    exact = want_type != "float32" if want_type else dtype != "F32"
    got = got.astype(numpy.float64).ravel()
    if got.size != want.size:
        return False, f"FAIL  {name}: cnnc gives {got.size} values, ONNX Runtime {want.size}"
    diff = numpy.abs(got - want)
    if exact:
        ok = not (diff > 0).any()
        return ok, f"{'ok  ' if ok else 'FAIL'}  {name}: {got.size} outputs, {'exact' if ok else 'not exact'}"
    err = math.inf if numpy.isnan(diff).any() else diff.max() / max(numpy.abs(want).max(), 1e-6)
    ok = err <= tol
    return ok, f"{'ok  ' if ok else 'FAIL'}  {name}: {got.size} outputs, rel. error {err:.2e} (max {tol:.0e})"


def main():
    name, out, ref = sys.argv[1:4]
    tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
    types = open(ref + ".types").read().split() if os.path.exists(ref + ".types") else []
    if not os.path.exists(ref + ".names"):            # one output: 'out'
        dtype, got = read_tensor(out, "out")
        ok, line = check(name, got, numpy.fromfile(ref, dtype="<f4").astype(numpy.float64), tol, dtype,
                         types[0] if types else None)
        print(line)
        sys.exit(0 if ok else 1)
    names = open(ref + ".names").read().split()        # several: each by its name
    results = []
    for k, o in enumerate(names):
        dtype, got = read_tensor(out, o)
        results.append(check(f"{name} '{o}'", got, numpy.fromfile(f"{ref}.{k}", dtype="<f8"), tol, dtype,
                             types[k] if k < len(types) else None))
    print("; ".join(line for _, line in results))
    sys.exit(0 if all(ok for ok, _ in results) else 1)


if __name__ == "__main__":
    main()
