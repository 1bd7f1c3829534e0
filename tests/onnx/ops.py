#!/usr/bin/python3
"""Small ONNX models, one per operator and attribute cnnc imports (run by
tests/onnx/run.sh, which compares cnnc's outputs with ONNX Runtime's).

    /usr/bin/python3 tests/onnx/ops.py OUTDIR

Writes OUTDIR/NAME.onnx, NAME.x.safetensors and NAME.x.bin (a batch of 2,
N(0, 1); a uint8 or int8 input's values integers spread over its range) for
each case, and prints "NAME D0,D1,... TYPE [FLAGS]" (the input's shape and
element type, cnnc's flags) a line. An unbatched case's model has no batch dimension
(cnnc --unbatched): its x.safetensors holds one example, [1, D0, D1, ...].
With --train, writes OUTDIR/mlp.onnx only (see mlp()); with --seeded-dropout,
OUTDIR/seeded_dropout.* only (see seeded_dropout()).
"""

import os
import sys

import numpy

from onnxgen import model, node, save, save_input, tensor

R = numpy.random.default_rng(14)


def w(*shape, scale=0.5):
    return R.normal(0, scale, shape).astype("f4")


CASES = []


def case(name, xdims, opset=13, unbatched=False, outputs=("y",), xtype="float32"):
    def add(fn):
        CASES.append((name, xdims, opset, unbatched, fn, outputs, xtype))
        return fn
    return add


def conv(x, y, cout, cin, k, bias=True, **a):
    kh, kw = (k, k) if isinstance(k, int) else k
    inits = [tensor(y + "_w", w(cout, cin, kh, kw))] + ([tensor(y + "_b", w(cout))] if bias else [])
    return node("Conv", [x, y + "_w"] + ([y + "_b"] if bias else []), [y], **a), inits


@case("conv_pads", [2, 3, 9, 8])
def _():
    n, i = conv("x", "y", 4, 3, 3, pads=[0, 1, 2, 1], strides=[2, 1])
    return [n], i


@case("conv_same_upper", [2, 3, 9, 9])
def _():
    n, i = conv("x", "y", 4, 3, 4, auto_pad="SAME_UPPER", strides=[2, 2])
    return [n], i


@case("conv_same_lower", [2, 3, 7, 6])
def _():
    n, i = conv("x", "y", 2, 3, (4, 3), auto_pad="SAME_LOWER", kernel_shape=[4, 3])
    return [n], i


@case("conv_valid_dilated", [2, 2, 12, 11])
def _():
    n, i = conv("x", "y", 3, 2, 3, auto_pad="VALID", dilations=[2, 3])
    return [n], i


@case("conv_group", [2, 4, 7, 7])
def _():
    n, i = conv("x", "y", 6, 2, 3, bias=False, group=2, pads=[1, 1, 1, 1])
    return [n], i


@case("conv_depthwise", [2, 4, 6, 6], opset=11)
def _():
    n, i = conv("x", "y", 4, 1, 3, group=4, pads=[1, 1, 1, 1], strides=[2, 2])
    return [n], i


@case("gemm_attrs", [2, 5])
def _():
    return [node("Gemm", ["x", "b", "c"], ["y"], alpha=0.5, beta=2.0)], [tensor("b", w(5, 3)), tensor("c", w(1, 3))]


@case("gemm_transb", [2, 3, 2], opset=9)
def _():
    return [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "b", "c"], ["y"], transB=1)], \
        [tensor("b", w(4, 6), raw=False), tensor("c", numpy.array(0.3, "f4"))]


@case("matmul_add", [2, 6])
def _():
    return [node("MatMul", ["x", "b"], ["m"]), node("Add", ["m", "c"], ["y"])], [tensor("b", w(6, 4)), tensor("c", w(4))]


@case("matmul_3d", [2, 3, 6])
def _():
    return [node("MatMul", ["x", "b"], ["y"])], [tensor("b", w(6, 4))]


@case("matmul_computed", [2, 4, 4])
def _():
    return [node("Relu", ["x"], ["r"]), node("MatMul", ["x", "r"], ["y"])], []


@case("matmul_stacked", [2, 2, 3, 4])
def _():
    # stacks of matrices: by a constant stack (its leading 1 the batch's), by a
    # matrix, and a computed stack by itself
    return [node("MatMul", ["x", "b"], ["t"]), node("MatMul", ["t", "c"], ["u"]), node("MatMul", ["u", "u"], ["y"])], \
        [tensor("b", w(1, 2, 4, 5)), tensor("c", w(5, 3))]


@case("unsqueeze_6d", [2, 3, 4])
def _():
    return [node("Unsqueeze", ["x", "axes"], ["u"]), node("Relu", ["u"], ["y"])], [tensor("axes", numpy.array([1, 3, 5]))]


@case("pool3d", [2, 2, 5, 6, 7], opset=11)
def _():
    # 3-D windows: ceil mode, asymmetric pads with count_include_pad, auto_pad
    return [node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3, 3], strides=[2, 2, 2], pads=[1, 1, 1, 1, 1, 1],
                 ceil_mode=1),
            node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2, 3], strides=[1, 2, 1], pads=[1, 0, 0, 0, 1, 1],
                 count_include_pad=1),
            node("AveragePool", ["b"], ["y"], kernel_shape=[2, 3, 2], strides=[2, 1, 1], auto_pad="SAME_UPPER")], []


@case("arithmetic", [2, 3, 4, 4])
def _():
    return [node("Add", ["x", "c1"], ["a"]), node("Sub", ["a", "c2"], ["b"]), node("Mul", ["b", "two"], ["c"]),
            node("Div", ["c", "c3"], ["d"]), node("Relu", ["x"], ["r"]), node("Add", ["d", "r"], ["e"]),
            node("Sub", ["three", "e"], ["y"])], \
        [tensor("c1", w(3, 1, 1)), tensor("c2", w(1, 3, 4, 4)), tensor("two", numpy.array([2.0], "f4")),
         tensor("c3", 1.5 + R.random(4).astype("f4")), tensor("three", numpy.array(3.0, "f4"))]


@case("activations", [2, 7])
def _():
    return [node("LeakyRelu", ["x"], ["a"], alpha=0.2), node("Sigmoid", ["a"], ["b"]), node("Tanh", ["x"], ["c"]),
            node("Add", ["b", "c"], ["d"]), node("Relu", ["d"], ["y"])], []


@case("opset7", [2, 3, 2, 2], opset=7)
def _():
    return [node("Clip", ["x"], ["a"], min=-0.5, max=0.7), node("Dropout", ["a"], ["b"], ratio=0.3),
            node("Softmax", ["b"], ["y"], axis=1)], []


@case("clip_inputs", [2, 3, 5], opset=13)
def _():
    return [node("Clip", ["x", "lo"], ["a"]), node("Clip", ["a", "", "hi"], ["b"]), node("Clip", ["b", "lo", "hi"], ["y"])], \
        [tensor("lo", numpy.array(-0.4, "f4")), tensor("hi", numpy.array(0.9, "f4"))]


@case("softmax13", [2, 5])
def _():
    return [node("Softmax", ["x"], ["y"], axis=-1)], []


@case("softmax11", [2, 3, 2, 2], opset=11)
def _():
    return [node("Softmax", ["x"], ["y"])], []


@case("maxpool_ceil", [2, 2, 8, 9], opset=10)
def _():
    return [node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], []


@case("avgpool_ceil_count_pad", [2, 2, 8, 7], opset=11)
def _():
    return [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 0, 1], ceil_mode=1,
                 count_include_pad=1)], []


@case("avgpool_exclude_pad", [2, 2, 7, 7])
def _():
    return [node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], []


@case("pool_same", [2, 2, 7, 7], opset=8)
def _():
    return [node("AveragePool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
            node("MaxPool", ["x"], ["b"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
            node("Add", ["a", "b"], ["y"])], []


@case("gap_conv", [2, 4, 5, 5])
def _():
    n, i = conv("g", "c", 3, 4, 1)
    return [node("GlobalAveragePool", ["x"], ["g"]), n, node("Flatten", ["c"], ["y"])], i


@case("batchnorm", [2, 3, 4, 4], opset=9)
def _():
    return [node("Relu", ["x"], ["r"]), node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], epsilon=1e-3)], \
        [tensor("s", w(3)), tensor("b", w(3)), tensor("m", w(3)), tensor("v", 0.5 + R.random(3).astype("f4"))]


@case("batchnorm_1d", [2, 5], opset=15)
def _():
    return [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], \
        [tensor("s", w(5)), tensor("b", w(5)), tensor("m", w(5)), tensor("v", 0.5 + R.random(5).astype("f4"))]


@case("lrn", [2, 6, 3, 3])
def _():
    return [node("LRN", ["x"], ["y"], size=3, alpha=1e-2, beta=0.75, bias=2.0)], []


@case("concat", [2, 3, 5, 5])
def _():
    a, ia = conv("x", "a", 2, 3, 3, pads=[1, 1, 1, 1])
    b, ib = conv("x", "b", 4, 3, 1)
    return [a, b, node("Concat", ["a", "b", "x"], ["c"], axis=1), node("GlobalAveragePool", ["c"], ["g"]),
            node("Flatten", ["g"], ["f"]), node("Relu", ["f"], ["r"]), node("Concat", ["f", "r"], ["y"], axis=-1)], ia + ib


@case("reshapes", [2, 3, 4, 4])
def _():
    return [node("GlobalAveragePool", ["x"], ["g"]), node("Squeeze", ["g", "axes"], ["s"]),
            node("Unsqueeze", ["s", "ax2"], ["u"]), node("Reshape", ["u", "shape"], ["r"]),
            node("Gemm", ["r", "b"], ["y"], transB=1)], \
        [tensor("axes", numpy.array([2, 3])), tensor("ax2", numpy.array([-1])), tensor("shape", numpy.array([0, -1])),
         tensor("b", w(4, 3))]


@case("reshapes_old", [2, 2, 3, 3], opset=11)
def _():
    return [node("Reshape", ["x", "shape"], ["r"]), node("Unsqueeze", ["r"], ["u"], axes=[2, 3]),
            node("Squeeze", ["u"], ["s"], axes=[3]), node("Flatten", ["s"], ["y"])], \
        [tensor("shape", numpy.array([2, 18]))]


@case("constants", [2, 3, 2, 2], opset=13)
def _():
    return [node("Constant", [], ["k"], value=tensor("k", w(3, 1, 1))),
            node("Constant", [], ["h"], value_float=0.5), node("Identity", ["x"], ["i"]),
            node("Mul", ["i", "k"], ["a"]), node("Add", ["a", "h"], ["b"]),
            node("Dropout", ["b", "ratio"], ["y"])], [tensor("ratio", numpy.array(0.25, "f4"))]


@case("dropout_modes", [2, 3, 5])
def _():
    # training_mode as boolean constants: false (inference; stored raw) and
    # true with ratio 0 (the identity; stored as int32_data)
    return [node("Dropout", ["x", "r", "off"], ["a"]), node("Tanh", ["a"], ["t"]),
            node("Dropout", ["t", "zero", "on"], ["y"])], \
        [tensor("r", numpy.array(0.5, "f4")), tensor("off", numpy.array(False)),
         tensor("zero", numpy.array(0.0, "f4")), tensor("on", numpy.array(True), raw=False)]


@case("pooling_wide", [2, 3, 7, 8])
def _():
    # padding over half the kernel, a dilated MaxPool with ceil mode, and
    # 1-D pooling of [N, C, W] (seen as 2-D of height 1)
    return [node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], pads=[2, 2, 2, 1], count_include_pad=1),
            node("MaxPool", ["a"], ["m"], kernel_shape=[2, 3], pads=[1, 2, 0, 2], dilations=[2, 2], strides=[1, 2],
                 ceil_mode=1),
            node("Reshape", ["m", "shape"], ["r"]),
            node("MaxPool", ["r"], ["p"], kernel_shape=[3], pads=[2, 1], dilations=[2]),
            node("AveragePool", ["p"], ["y"], kernel_shape=[2], strides=[2], pads=[1, 1])], \
        [tensor("shape", numpy.array([0, 6, -1]))]


@case("axes", [2, 3, 4, 5])
def _():
    # Softmax along an axis of the example (opset 13), Concat along others
    return [node("Softmax", ["x"], ["s"], axis=2), node("Concat", ["s", "x"], ["c"], axis=-1),
            node("Relu", ["c"], ["r"]), node("Concat", ["c", "r"], ["y0"], axis=2),
            node("Softmax", ["y0"], ["y"], axis=1)], []


@case("softmax_old", [2, 3, 4, 5], opset=11)
def _():
    # before opset 13: over the axes from `axis` on, as rows of [N, 3, 20]
    return [node("Softmax", ["x"], ["y"], axis=2)], []


@case("unbatched_concat", [4], unbatched=True)
def _():
    # one example [4]: Concat with a constant, Softmax along axis 0 of a [2, 4]
    return [node("Concat", ["x", "k"], ["c"], axis=0), node("Reshape", ["c", "shape"], ["r"]),
            node("Softmax", ["r"], ["y"], axis=0)], \
        [tensor("k", w(4)), tensor("shape", numpy.array([2, 4]))]


@case("rank5", [2, 2, 3, 4, 5])
def _():
    # an input and output of 5 dimensions, the batch's included
    return [node("Softmax", ["x"], ["s"], axis=-1), node("Relu", ["x"], ["r"]), node("Concat", ["s", "r"], ["c"], axis=2),
            node("Reshape", ["c", "shape"], ["y"])], [tensor("shape", numpy.array([0, 4, 3, 4, 5]))]


@case("unbatched_rank4", [2, 3, 4, 5], unbatched=True)
def _():
    # one example of 4 dimensions: Flatten at axis 2, Softmax along axis 0
    return [node("Flatten", ["x"], ["f"], axis=2), node("Softmax", ["f"], ["s"], axis=0),
            node("Unsqueeze", ["s", "ax"], ["y"])], [tensor("ax", numpy.array([0]))]


@case("unbatched_gemm_transposed", [4, 3], unbatched=True)
def _():
    # one example [4, 3]: Gemm with transA (A' is [3, 4]) and transB, C [5]
    return [node("Gemm", ["x", "b", "c"], ["y"], transA=1, transB=1, alpha=0.25)], \
        [tensor("b", w(5, 4)), tensor("c", w(5))]


@case("reshaped_constants", [2, 3, 4, 4])
def _():
    # initializers reshaped before use: a [3] bias unsqueezed to [3, 1, 1], a
    # [12] vector reshaped to [1, 3, 2, 2], a [1, 3, 1, 1] scale squeezed
    return [node("Unsqueeze", ["bias", "axes"], ["b3"]), node("Add", ["x", "b3"], ["a"]),
            node("Reshape", ["vec", "shape"], ["v4"]), node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            node("Mul", ["p", "v4"], ["m"]), node("Squeeze", ["scale", "sq"], ["s3"]),
            node("Unsqueeze", ["s3", "axes"], ["s311"]), node("Add", ["m", "s311"], ["y"])], \
        [tensor("bias", w(3)), tensor("axes", numpy.array([1, 2])), tensor("vec", w(12)),
         tensor("shape", numpy.array([1, 3, 2, 2])), tensor("scale", w(1, 3, 1, 1)), tensor("sq", numpy.array([0, 2, 3]))]


@case("unbatched", [3, 4], unbatched=True)
def _():
    # the input is one example [3, 4]: Gemm of a matrix with C [3, 5], a
    # constant of the example's rank, reshapes that move dimension 0
    return [node("Gemm", ["x", "b", "c"], ["g"], transB=1, alpha=0.5, beta=2.0), node("Add", ["g", "k"], ["a"]),
            node("Reshape", ["a", "shape"], ["r"]), node("Flatten", ["r"], ["f"], axis=0),
            node("Unsqueeze", ["f", "ax"], ["u"]), node("Squeeze", ["u"], ["s"]), node("Tanh", ["s"], ["y"])], \
        [tensor("b", w(5, 4)), tensor("c", w(3, 5)), tensor("k", w(3, 1)), tensor("shape", numpy.array([5, 3])),
         tensor("ax", numpy.array([0]))]


@case("two_outputs", [2, 3, 4], outputs=("y", "z"))
def _():
    # two float outputs, the second computed before the first (--emit=cnn: `output y, z`)
    return [node("Tanh", ["x"], ["t"]), node("Mul", ["t", "k"], ["z"]), node("Relu", ["x"], ["r"]),
            node("Add", ["r", "z"], ["y"])], [tensor("k", w(3, 4))]


# the element types of second outputs (others: the input's)
OUT_TYPES = {"mask": 9, "indices": 7}


@case("dropout_mask", [2, 3, 4], opset=13, outputs=("y", "mask"))
def _():
    # Dropout's mask, in inference all true, as a second output of the graph
    return [node("Dropout", ["x", "r"], ["d", "mask"]), node("Relu", ["d"], ["y"])], [tensor("r", numpy.array(0.3, "f4"))]


@case("maxpool_indices", [3, 2, 5, 6], outputs=("y", "indices"))
def _():
    # MaxPool's Indices (int64, into the whole batch): a batch of 3 (each
    # example's indices offset by its place), pads, strides, ceil_mode
    return [node("MaxPool", ["x"], ["y", "indices"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 0],
                 ceil_mode=1)], []


@case("maxpool_indices_large", [5, 1, 2048, 2048], outputs=("indices", "y"))
def _():
    # a batch of 5 examples of 2^22 values: the last examples' indices pass
    # 2^24, beyond float32's integers (forward writes them in int64)
    return [node("MaxPool", ["x"], ["y", "indices"], kernel_shape=[2, 2], strides=[2, 2])], []


@case("maxpool_indices_column_major", [2, 3, 4, 4], outputs=("indices", "y"))
def _():
    # storage_order = 1: H and W swapped in the index; the indices the first output
    return [node("MaxPool", ["x"], ["y", "indices"], kernel_shape=[2, 2], strides=[2, 2], storage_order=1)], []


@case("uint8_arith", [2, 3, 4], opset=14, xtype="uint8")
def _():
    # uint8: x + k wraps, x * k wraps, x - k wraps below 0, / truncates
    return [node("Add", ["x", "a"], ["s"]), node("Mul", ["s", "m"], ["p"]), node("Sub", ["p", "b"], ["q"]),
            node("Div", ["q", "d"], ["y"])], \
        [tensor("a", numpy.array([200], "u1")), tensor("m", numpy.array([3], "u1")),
         tensor("b", numpy.array([100], "u1")), tensor("d", numpy.array([7], "u1"))]


@case("int8_arith", [2, 3, 4], opset=14, xtype="int8")
def _():
    # int8: wrapping at -128 and 127, division truncated toward 0, Clip, MaxPool
    return [node("Mul", ["x", "m"], ["p"]), node("Div", ["p", "d"], ["q"]), node("Sub", ["q", "b"], ["s"]),
            node("Clip", ["s", "lo", "hi"], ["c"]), node("Unsqueeze", ["c", "ax"], ["u"]),
            node("MaxPool", ["u"], ["y"], kernel_shape=[2, 2], strides=[1, 1])], \
        [tensor("m", numpy.array([5], "i1")), tensor("d", numpy.array([-3], "i1")), tensor("b", numpy.array([60], "i1")),
         tensor("lo", numpy.array(-100, "i1")), tensor("hi", numpy.array(90, "i1")), tensor("ax", numpy.array([1]))]


@case("external_data", [2, 3, 5, 5])
def _():
    return None                                 # main() writes it, with its data file


def mlp(out):
    """OUTDIR/mlp.onnx: [N, 1, 28, 28] -> 32 -> 10 -> Softmax, for --loss and ./mlp train"""
    nodes = [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "w1", "b1"], ["h"], transB=1), node("Relu", ["h"], ["r"]),
             node("Gemm", ["r", "w2", "b2"], ["s"], transB=1), node("Softmax", ["s"], ["y"], axis=1)]
    inits = [tensor("w1", w(32, 784, scale=0.05)), tensor("b1", numpy.zeros(32, "f4")),
             tensor("w2", w(10, 32, scale=0.25)), tensor("b2", numpy.zeros(10, "f4"))]
    save(os.path.join(out, "mlp.onnx"), model(nodes, [("x", ["N", 1, 28, 28])], [("y", None)], inits))


def seeded_dropout(out):
    """OUT/seeded_dropout.onnx, an unbatched model [2, 3, 4]: Dropout in
    training mode (ratio 0.3, seed 7), then Relu, outputs y and the mask;
    its input, and the outputs ONNX's reference implementation gives (NumPy:
    np.random.seed(seed); mask = uniform(0, 1, X.shape) >= ratio;
    y = mask * X / (1 - ratio)) as compare.py reads a reference's:
    seeded_dropout.ref.bin.names and .0, .1 (float64). ORT draws its own
    mask, so NumPy is the reference here."""
    ratio = numpy.float32(0.3)
    nodes = [node("Dropout", ["x", "r", "on"], ["d", "mask"], seed=7), node("Relu", ["d"], ["y"])]
    inits = [tensor("r", numpy.array(ratio)), tensor("on", numpy.array(True))]
    save(os.path.join(out, "seeded_dropout.onnx"),
         model(nodes, [("x", [2, 3, 4])], [("y", None), ("mask", None, OUT_TYPES["mask"])], inits))
    x = R.normal(0, 1, [1, 2, 3, 4]).astype("f4")
    save_input(os.path.join(out, "seeded_dropout"), x)
    numpy.random.seed(7)
    mask = numpy.random.uniform(0, 1, x.shape[1:]) >= ratio
    y = numpy.maximum(mask * x[0] / (1 - ratio), 0)
    ref = os.path.join(out, "seeded_dropout.ref.bin")
    save(ref + ".names", b"y mask\n")
    save(ref + ".0", y.astype("<f8").tobytes())
    save(ref + ".1", mask.astype("<f8").tobytes())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if sys.argv[2:] == ["--train"]:
        return mlp(out)
    if sys.argv[2:] == ["--seeded-dropout"]:
        return seeded_dropout(out)
    for name, xdims, opset, unbatched, fn, outputs, xtype in CASES:
        if name == "external_data":
            ew, eb = w(2, 3, 3, 3), w(2)
            save(os.path.join(out, "external_data.bin"), ew.tobytes() + eb.tobytes())
            nodes = [node("Conv", ["x", "ew", "eb"], ["y"], pads=[1, 1, 1, 1])]
            inits = [tensor("ew", ew, external=("external_data.bin", 0)),
                     tensor("eb", eb, external=("external_data.bin", ew.nbytes))]
        else:
            nodes, inits = fn()
        dims = xdims if name == "reshapes_old" or unbatched else ["N"] + xdims[1:]   # a fixed batch the Reshape names
        elem = {"float32": 1, "uint8": 2, "int8": 3}[xtype]
        save(os.path.join(out, name + ".onnx"),
             model(nodes, [("x", dims, elem)], [(o, None, OUT_TYPES.get(o, elem)) for o in outputs], inits, opset))
        shape = [1] + xdims if unbatched else xdims
        x = R.normal(0, 1, shape) if xtype == "float32" else \
            R.integers(0, 256, shape) if xtype == "uint8" else R.integers(-128, 128, shape)
        save_input(os.path.join(out, name), x, xtype)
        print(name, ",".join(map(str, xdims)), xtype, "--unbatched" if unbatched else "")


if __name__ == "__main__":
    main()
