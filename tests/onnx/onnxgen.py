"""A small writer of ONNX models for the tests (ops.py, bad.py): the protobuf
wire format of the few ModelProto fields they need, field numbers from
onnx.proto. Debian has no python3-onnx; the reader under test is protobuf-c's.
"""

import json
import os
import struct

import numpy

FLOAT, UINT8, INT8, INT64, BOOL = 1, 2, 3, 7, 9
A_FLOAT, A_INT, A_STRING, A_TENSOR, A_FLOATS, A_INTS = 1, 2, 3, 4, 6, 7


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def key(field, wire):
    return varint(field << 3 | wire)


def f_int(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def f_float(field, v):
    return key(field, 5) + struct.pack("<f", v)


def tensor(name, array, raw=True, external=None):
    """TensorProto: float32, int64 (any other integers but uint8 and int8), uint8, int8 or bool
    values; external = (location, offset) keeps them out."""
    a = numpy.asarray(array)
    dtype = BOOL if a.dtype.kind == "b" else UINT8 if a.dtype == numpy.uint8 else INT8 if a.dtype == numpy.int8 \
        else INT64 if a.dtype.kind in "iu" else FLOAT
    a = a.astype({BOOL: "u1", UINT8: "u1", INT8: "i1", INT64: "<i8", FLOAT: "<f4"}[dtype])
    out = b"".join(f_int(1, d) for d in a.shape) + f_int(2, dtype) + f_bytes(8, name)
    if external:
        loc, off = external
        for k, v in (("location", loc), ("offset", str(off)), ("length", str(a.nbytes))):
            out += f_bytes(13, f_bytes(1, k) + f_bytes(2, v))
        out += f_int(14, 1)
    elif raw:
        out += f_bytes(9, a.tobytes())
    elif dtype == FLOAT:
        out += b"".join(f_float(4, float(v)) for v in a.ravel())
    else:
        out += b"".join(f_int(7 if dtype == INT64 else 5, int(v)) for v in a.ravel())   # int64_data, int32_data
    return out


def attr(name, v):
    out = f_bytes(1, name)
    if isinstance(v, float):
        return out + f_float(2, v) + f_int(20, A_FLOAT)
    if isinstance(v, int):
        return out + f_int(3, v) + f_int(20, A_INT)
    if isinstance(v, str):
        return out + f_bytes(4, v) + f_int(20, A_STRING)
    if isinstance(v, bytes):                    # an encoded tensor
        return out + f_bytes(5, v) + f_int(20, A_TENSOR)
    if all(isinstance(x, int) for x in v):
        return out + b"".join(f_int(8, x) for x in v) + f_int(20, A_INTS)
    return out + b"".join(f_float(7, x) for x in v) + f_int(20, A_FLOATS)


def node(op, inputs, outputs, name="", domain=None, **attrs):
    out = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    out += f_bytes(3, name or f"{op.lower()}_{outputs[0]}") + f_bytes(4, op)
    out += b"".join(f_bytes(5, attr(k, v)) for k, v in attrs.items())
    if domain is not None:
        out += f_bytes(7, domain)
    return out


def value_info(name, dims, elem=FLOAT):
    """dims None: no shape"""
    if dims is None:
        return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_int(1, elem)))
    shape = b""
    for d in dims:
        shape += f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_int(1, d))
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_int(1, elem) + f_bytes(2, shape)))


def model(nodes, inputs, outputs, inits=(), opset=13):
    """inputs, outputs: (name, dims) pairs; inits: encoded tensors."""
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "g")
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, value_info(*i)) for i in inputs)
    g += b"".join(f_bytes(12, value_info(*o)) for o in outputs)
    return f_int(1, 8) + f_bytes(2, "cnnc-tests") + f_bytes(7, g) + f_bytes(8, f_bytes(1, "") + f_int(2, opset))


def save(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def save_input(prefix, x, xtype="float32"):
    """PREFIX.x.safetensors (tensor 'x', for ./NET forward; float32, uint8 or int8) and PREFIX.x.bin
    (raw float32, for ORT, which converts it to the input's type)."""
    f = numpy.asarray(x, dtype="<f4")
    typed = f.astype({"float32": "<f4", "uint8": "u1", "int8": "i1"}[xtype])
    data = typed.tobytes()
    st = {"float32": "F32", "uint8": "U8", "int8": "I8"}[xtype]
    header = json.dumps({"x": {"dtype": st, "shape": list(f.shape), "data_offsets": [0, len(data)]}})
    header += " " * (-len(header) % 8)
    save(prefix + ".x.safetensors", struct.pack("<Q", len(header)) + header.encode() + data)
    save(prefix + ".x.bin", f.tobytes())
