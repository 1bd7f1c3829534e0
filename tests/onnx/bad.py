#!/usr/bin/python3
"""Bad ONNX models for tests/onnx/run.sh: each must be refused with exit 1 and
a message naming the file, and the place where there is one.

    /usr/bin/python3 tests/onnx/bad.py OUTDIR

Writes OUTDIR/NAME.onnx and prints "NAME|FLAGS|WANT" a line: cnnc's flags
and the texts its messages must contain (separated by ';').
"""

import os
import sys

import numpy

from onnxgen import f_bytes, f_int, key, model, node, save, tensor, varint

W = numpy.ones((2, 3, 3, 3), "f4")
X = [("x", ["N", 3, 8, 8])]
Y = [("y", None)]


def conv_model(**kw):
    return model([node("Conv", ["x", "w"], ["y"], name="conv0")], X, Y, [tensor("w", W)], **kw)


def deep(depth):
    """graphs within If nodes' subgraphs, `depth` deep (protobuf-c would recurse that deep)"""
    inner, pre, suf = f_bytes(2, "g"), [], []
    size = len(inner)
    for _ in range(depth):
        a_pre, a_suf = f_bytes(1, "then_branch") + key(6, 2) + varint(size), f_int(20, 5)
        n_pre = f_bytes(4, "If") + key(5, 2) + varint(len(a_pre) + size + len(a_suf))
        g_pre = key(1, 2) + varint(len(n_pre) + len(a_pre) + size + len(a_suf))
        pre.append(g_pre + n_pre + a_pre)
        suf.append(a_suf)
        size += len(pre[-1]) + len(a_suf)
    return f_int(1, 8) + key(7, 2) + varint(size) + b"".join(reversed(pre)) + inner + b"".join(suf) + \
        f_bytes(8, f_bytes(1, "") + f_int(2, 13))


def cases():
    good = conv_model()
    yield "unsupported", "", "node 'my_exp' (Exp): unsupported operator 'Exp';node 'my_sin' (Sin): unsupported operator 'Sin';node 'ml' (Scaler): unsupported operator 'Scaler' of domain 'ai.onnx.ml'", \
        model([node("Exp", ["x"], ["a"], name="my_exp"), node("Relu", ["a"], ["b"]), node("Sin", ["b"], ["c"], name="my_sin"),
               node("Scaler", ["c"], ["y"], name="ml", domain="ai.onnx.ml")], X, Y)
    yield "truncated", "--check", "truncated or corrupt", good[:len(good) * 2 // 3]
    yield "corrupt", "--check", "truncated or corrupt", b"\x08" + b"\xff" * 12
    yield "empty", "--check", "empty", b""
    yield "deep", "--check", "nest more than 100 deep", deep(100000)
    yield "external_missing", "--check", "initializer 'w': its external data;nowhere.bin", \
        model([node("Conv", ["x", "w"], ["y"], name="conv0")], X, Y, [tensor("w", W, external=("nowhere.bin", 0))])
    yield "symbolic_dim", "--check", "symbolic dimension 'H'", \
        model([node("Relu", ["x"], ["y"])], [("x", ["N", 3, "H", 8])], Y)
    yield "opset_new", "--check", "opset 18", conv_model(opset=18)
    yield "opset_old", "--check", "opset 6", conv_model(opset=6)
    yield "two_inputs", "--check", "2 inputs: 'x', 'z'", \
        model([node("Add", ["x", "z"], ["y"])], X + [("z", ["N", 3, 8, 8])], Y)
    yield "loss_shape", "--check --loss softmax_cross_entropy", "needs class scores", good
    yield "lrn_even", "--check", "node 'lrn_y' (LRN): size = 4", model([node("LRN", ["x"], ["y"], size=4)], X, Y)
    yield "pool_dilation", "--check", "node 'p' (AveragePool): dilations", \
        model([node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[2, 2], dilations=[2, 2])], X, Y)
    yield "pool_pads_wide", "--check", "node 'p' (MaxPool): its window (kernel 3x3, padding 3,0,0,0;wholly in the padding", \
        model([node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[3, 0, 0, 0])], X, Y)
    yield "pool_dilation_wide", "--check", "node 'p' (MaxPool): its window;step over it", \
        model([node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], pads=[1, 1, 1, 1], dilations=[9, 1])], X, Y)
    yield "gemm_trans_a", "--check", "node 'g' (Gemm): transA", \
        model([node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "b"], ["y"], name="g", transA=1)], X, Y,
              [tensor("b", numpy.ones((2, 192), "f4"))])
    yield "computed_weights", "--check", "node 'conv0' (Conv): the weights (input 2, 'r') must be an initializer", \
        model([node("Relu", ["w"], ["r"]), node("Conv", ["x", "r"], ["y"], name="conv0")], X, Y, [tensor("w", W)])
    yield "undefined", "--check", "input 2 ('ghost') is not defined", \
        model([node("Add", ["x", "ghost"], ["y"])], X, Y)
    yield "reshape_batch", "--check", "node 'rs' (Reshape)", \
        model([node("Reshape", ["x", "s"], ["y"], name="rs")], X, Y, [tensor("s", numpy.array([-1]))])
    short = f_int(1, 4) + f_int(1, 3) + f_int(1, 3) + f_int(1, 3) + f_int(2, 1) + f_bytes(8, "w") + f_bytes(9, W.tobytes())
    yield "short_initializer", "--check", "initializer 'w' holds 216 bytes, but its shape [4, 3, 3, 3] needs 432", \
        model([node("Conv", ["x", "w"], ["y"], name="conv0")], X, Y, [short])
    yield "group", "--check", "node 'conv0' (Conv): group = 2", \
        model([node("Conv", ["x", "w"], ["y"], name="conv0", group=2)], X, Y, [tensor("w", W)])
    yield "kernel_too_big", "--check", "node 'conv0' (Conv): its kernel 9x9", \
        model([node("Conv", ["x", "w"], ["y"], name="conv0")], X, Y, [tensor("w", numpy.ones((2, 3, 9, 9), "f4"))])
    yield "indices_used", "--check", "node 'a' (Add): its input is a tensor of indices", \
        model([node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2]), node("Add", ["p", "i"], ["y"], name="a")], X, Y)
    yield "uint8_sigmoid", "--check", "node 's' (Sigmoid): its input is of type uint8", \
        model([node("Sigmoid", ["x"], ["y"], name="s")], [("x", ["N", 3, 8, 8], 2)], Y)
    yield "uint8_loss", "--check --loss mse", "--loss mse needs a float output; the model's first output is of type U8", \
        model([node("Relu", ["x"], ["y"])], [("x", ["N", 3, 8, 8], 2)], [("y", None, 2)])
    yield "output_twice", "--check", "the graph lists the output 'y' twice", \
        model([node("Relu", ["x"], ["y"])], X, Y + Y)
    yield "softmax_axis", "--check", "node 'sm' (Softmax): axis = 0 on [N, 3, 8, 8];not across the batch", \
        model([node("Softmax", ["x"], ["y"], name="sm", axis=0)], X, Y)
    yield "concat_batch", "--check", "node 'c' (Concat): axis = 0;not along the batch", \
        model([node("Concat", ["x", "x"], ["y"], name="c", axis=0)], X, Y)
    yield "concat_constant", "--check", "node 'c' (Concat): input 2 ('k') is a constant", \
        model([node("Concat", ["x", "k"], ["y"], name="c", axis=1)], X, Y, [tensor("k", numpy.ones((1, 2, 8, 8), "f4"))])
    yield "dropout_training", "--check --unbatched", "node 'd' (Dropout): training_mode is true with ratio 0.5 and no seed", \
        model([node("Dropout", ["x", "r", "t"], ["y"], name="d")], [("x", [3, 8, 8])], Y,
              [tensor("r", numpy.array(0.5, "f4")), tensor("t", numpy.array(True))])
    yield "dropout_seed_batched", "--check", "node 'd' (Dropout): training_mode is true with ratio 0.5: its mask " \
        "(from seed 3) spans the whole input;read the model unbatched (--unbatched", \
        model([node("Dropout", ["x", "r", "t"], ["y"], name="d", seed=3)], X, Y,
              [tensor("r", numpy.array(0.5, "f4")), tensor("t", numpy.array(True))])
    yield "dropout_seed_large", "--check --unbatched", "node 'd' (Dropout): its input 'x' of shape [4096, 8192] has " \
        "33554432 values; cnnc draws a mask of at most 16777216", \
        model([node("Dropout", ["x", "r", "t"], ["y"], name="d", seed=1)], [("x", [4096, 8192])], Y,
              [tensor("r", numpy.array(0.5, "f4")), tensor("t", numpy.array(True))])
    yield "dropout_seed_negative", "--check --unbatched", "node 'd' (Dropout): its seed -1 is not from 0 to 4294967295", \
        model([node("Dropout", ["x", "r", "t"], ["y"], name="d", seed=-1)], [("x", [3, 8, 8])], Y,
              [tensor("r", numpy.array(0.5, "f4")), tensor("t", numpy.array(True))])
    c3 = numpy.ones(3, "f4")
    yield "loss_bn_training", "--check --unbatched --loss mse", \
        "a BatchNormalization with training_mode = 1 (imported as 'batchnorm1');--loss cannot train through it", \
        model([node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1)],
              [("x", [2, 3, 4])], Y, [tensor(k, c3) for k in "sbmv"], 15)
    yield "unbatched_conv", "--check --unbatched", "node 'conv0' (Conv): it takes dimension 0 of its input as the batch", \
        model([node("Conv", ["x", "w"], ["y"], name="conv0")], [("x", [3, 8, 8])], Y, [tensor("w", W)])
    yield "unbatched_rank", "--check --unbatched", "the input 'x' has 8 dimensions; cnnc takes 1 to 7 (read unbatched", \
        model([node("Relu", ["x"], ["y"])], [("x", [1, 1, 1, 1, 1, 3, 8, 8])], Y)
    yield "unbatched_symbolic", "--check --unbatched", "the input 'x' has a symbolic dimension 'N' at position 1", \
        conv_model()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, flags, want, data in cases():
        save(os.path.join(out, name + ".onnx"), data)
        print(f"{name}|{flags}|{want}")


if __name__ == "__main__":
    main()
