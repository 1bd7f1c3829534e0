#!/usr/bin/env python3
"""same_tensors.py A B: exit 0 if the safetensors files A and B hold the same
tensors (names, dtypes, shapes and bytes), whatever their metadata; else 1,
naming the first difference."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a.keys() != b.keys():
    sys.exit("tensor names differ: %s" % sorted(set(a) ^ set(b)))
for k in a:
    if a[k] != b[k]:
        sys.exit("tensor '%s' differs" % k)
