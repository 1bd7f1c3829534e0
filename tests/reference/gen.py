#!/usr/bin/python3
"""Correctness reference for cnnc: reference nets, PyTorch weights and outputs.

Run from the repository root (needs PyTorch; on Debian use the system Python):

    /usr/bin/python3 tests/reference/gen.py           # (re)write everything below
    /usr/bin/python3 tests/reference/gen.py --check   # re-read and verify the files

The output is deterministic (fixed per-net seeds, one thread, double-precision maths).
For every reference net NAME it writes:

  tests/reference/nets/NAME.cnn
      The net in the cnnc language. The six normative programs of
      docs/spec (language.md) are embedded here verbatim: linear_svm, two_layer, mlp,
      lenet, vgg_small, tiny_inception. The other nets (ref_*) are small and each covers
      one layer, option or operator of the language (see the comment in each file).

  tests/reference/NAME.weights.safetensors
      Every parameter, and the batchnorm buffers running_mean / running_var, under the
      name cnnc gives it (conv1.weight, dense2.bias, batchnorm1.running_var, W1, fc1.weight,
      ...), in source order, PyTorch layouts (dense [out, in], conv [out, in, kh, kw]).
      Random values of moderate scale (weights ~ N(0, 2/fan_in), biases ~ N(0, 0.2^2)).

  tests/reference/NAME.io.safetensors
      For each batch size N in 1, 7, 64:
        x.N        [N, *input]    the input batch
        y.N        [N]            class labels, stored as F32 holding integers in [0, K)
          or t.N   [N, *target]   the regression target (nets whose loss is mse)
        out.N      [N, *output]   the inference-mode output (NAME_forward): dropout is the
                                  identity, batchnorm uses the running statistics. A scalar
                                  output (per-example shape []) is stored as [N].
      and, when the net's loss is deterministic (has_loss = 1 in the manifest):
        loss.N     [1]            the training-mode loss of the `loss =` line (NAME_loss_grad)
        grad.N.P   shape of P     d loss.N / d P for every parameter P, for N in 1 and 7
        after.N.B  shape of B     (batchnorm nets only) the buffer B (running_mean /
                                  running_var) after that one training-mode forward pass,
                                  PyTorch's update: momentum 0.1, running_var takes the
                                  UNBIASED batch variance (normalization uses the biased one)
      Nets with dropout have has_loss = 0 (their training loss is random). Nets with
      batchnorm do have a loss: in training mode batchnorm uses the batch statistics, which
      is deterministic. PyTorch refuses a 1-D batchnorm on a batch of one in training mode,
      so ref_bn1d has no loss.1 / grad.1.* / after.1.* : a runner must treat an absent
      tensor as "not checked".

  tests/reference/manifest.txt
      One line per net, four space-separated fields, no comments:
          NAME input_shape output_shape has_loss
      shapes as comma lists (`lenet 1,28,28 10 1`; a scalar output is written `1`).

All reference values are computed in float64 from the float32 values stored in the files
and then rounded to float32, so they are the exact answer up to one float32 rounding; a
float32 implementation should match out.N within about 1e-5 relative (1e-4 for deep nets
and for loss/grad); compare each tensor against a tolerance scaled by the largest |value|
of that reference tensor (single elements of a gradient can be tiny). Loss semantics follow the spec: softmax_cross_entropy = mean over the
batch of -log softmax(f)[y]; svm_hinge = mean of sum_{j!=y} max(0, f_j - f_y + margin);
mse = mean of sum (f - t)^2 / size(f); l2 = sum p^2, l1 = sum |p|, where `weights` is every
conv/dense `.weight` tensor (the nets using `weights` have no explicit params and no
batchnorm, so that choice is never tested).

How the C tests use this: for each manifest line, compile tests/reference/nets/NAME.cnn
with cnnc, NAME_load() the weights file, run NAME_forward() on x.N and compare with out.N;
when has_loss is 1, NAME_loss_grad() on x.N and y.N (or t.N) must give loss.N and
NAME_grad(i) must match grad.N.<NAME_param_name(i)>.
"""

import argparse
import json
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = (1, 7, 64)
GRAD_BATCHES = (1, 7)
BN_EPS = 1e-5
BN_MOMENTUM = 0.1

# --------------------------------------------------------------------------------------
# safetensors, written and read by hand (no dependency on the safetensors package)


def st_encode(tensors, metadata):
    """tensors: list of (name, tensor) in file order. Returns the file's bytes."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors:
        assert name not in header, name
        a = t.detach().to(torch.float32).contiguous().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-(8 + len(h))) % 8)          # data starts at a multiple of 8
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def st_decode(data):
    """Returns (list of (name, float32 tensor) in data order, metadata). Strict."""
    if len(data) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError("header length beyond end of file")
    if (8 + n) % 8:
        raise ValueError("data does not start at a multiple of 8")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("non-string metadata value")
    body = data[8 + n:]
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    pos, out = 0, []
    for name, d in items:
        if d["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {d['dtype']}")
        b, e = d["data_offsets"]
        count = 1
        for s in d["shape"]:
            count *= s
        if b != pos or e - b != 4 * count or e > len(body):
            raise ValueError(f"{name}: bad data_offsets {b},{e} (expected {pos},{pos + 4 * count})")
        pos = e
        t = torch.frombuffer(bytearray(body[b:e]), dtype=torch.float32).reshape(d["shape"])
        out.append((name, t))
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} trailing bytes after the data")
    return out, meta


# --------------------------------------------------------------------------------------
# The functional PyTorch mirror of cnnc's layers (per-example shapes + a leading batch dim)


class Ctx:
    """Parameters P (name -> float64 tensor), mode, and batchnorm buffer updates."""

    def __init__(self, P, train):
        self.P, self.train, self.after = P, train, {}

    def dense(self, name, h):
        return F.linear(h, self.P[name + ".weight"], self.P.get(name + ".bias"))

    def conv(self, name, h, stride=1, pad=0, groups=1, dilation=1):
        w = self.P[name + ".weight"]
        if pad == "same":        # total k-1; the odd cell goes at the bottom/right (as PyTorch)
            assert stride == 1 and dilation == 1
            ph, pw = w.shape[2] - 1, w.shape[3] - 1
            h = F.pad(h, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            pad = 0
        return F.conv2d(h, w, self.P.get(name + ".bias"), stride, pad, dilation, groups)

    def bn(self, name, h, eps=BN_EPS):
        if "eps" in WRONG:       # sensitivity_checks: the default epsilon instead
            eps = BN_EPS
        rm = self.P[name + ".running_mean"].detach().clone()
        rv = self.P[name + ".running_var"].detach().clone()
        y = F.batch_norm(h, rm, rv, self.P[name + ".weight"], self.P[name + ".bias"],
                         training=self.train, momentum=BN_MOMENTUM, eps=eps)
        if self.train:
            self.after[name + ".running_mean"] = rm
            self.after[name + ".running_var"] = rv
        return y

    def dropout(self, h, p):
        assert not self.train, "training-mode dropout is random: no reference"
        return h


# Semantics that sensitivity_checks replaces by plausible wrong ones, to see that
# the reference nets depend on them: "count_pad", "eps", "relu6", "clip_lo", "clip_hi".
WRONG = set()


def maxpool(h, k, stride=None, pad=0, ceil=False):
    # PyTorch pads with -inf: padded cells never win. ceil: the output size rounds
    # up, but a window that would start in the right/bottom padding is dropped
    return F.max_pool2d(h, k, k if stride is None else stride, pad, ceil_mode=ceil)


def avgpool(h, k, stride=None, pad=0, ceil=False, count_pad=False):
    # count_pad = false: padded cells do not count in the average. count_pad =
    # true: they do (PyTorch's count_include_pad), but with ceil the cells of a
    # last window beyond the padding never count
    if "count_pad" in WRONG:
        count_pad = not count_pad
    return F.avg_pool2d(h, k, k if stride is None else stride, pad, ceil_mode=ceil,
                        count_include_pad=count_pad)


def relu6(h):
    return F.relu(h) if "relu6" in WRONG else F.relu6(h)


def clip(h, lo, hi):
    return torch.clamp(h, min=None if "clip_lo" in WRONG else lo, max=None if "clip_hi" in WRONG else hi)


def gap(h):
    return h.mean(dim=(2, 3))


def lrn(h, size=5, alpha=1e-4, beta=0.75, k=2.0):
    return F.local_response_norm(h, size, alpha, beta, k)


def flatten(h):
    return h.flatten(1)


def psum(e):
    """sum(e) of a per-example value: a per-example scalar, shape [N]."""
    return e.flatten(1).sum(1)


def pmean(e):
    return e.flatten(1).mean(1)


def bscalar(s, like):
    """Broadcast a per-example scalar [N] against a per-example value shaped like `like`."""
    return s.reshape([s.shape[0]] + [1] * (like.dim() - 1))


# losses ------------------------------------------------------------------------------


def sce(f, y):
    return F.cross_entropy(f, y.long())


def svm_hinge(f, y, margin=1.0):
    y = y.long().unsqueeze(1)
    m = torch.clamp(f - f.gather(1, y) + margin, min=0.0)
    m = m.scatter(1, y, 0.0)          # j != y only
    return m.sum(1).mean()


def mse(f, t):
    n = f.shape[0]
    f = f.reshape(n, -1)
    t = t.reshape(n, -1)
    d = f - t                          # (a scalar output [] against a target [1] broadcasts)
    return (d * d).sum(1).div(f.shape[1]).mean()


def l2(*ps):
    return sum((p * p).sum() for p in ps)


def l1(*ps):
    return sum(p.abs().sum() for p in ps)


def weights(P):
    """`weights`: every conv/dense weight tensor (not biases, not batchnorm)."""
    return [v for k, v in P.items() if k.endswith(".weight") and not k.startswith("batchnorm")]


# --------------------------------------------------------------------------------------
# Parameter lists. Each entry: (name, shape, kind) with kind 'w' (layer weight),
# 'b' (bias), 'bn_w', 'bn_b', 'bn_rm', 'bn_rv' or ('normal', mean, std) for explicit params.


def dense_p(name, n_out, n_in, bias=True):
    return [(name + ".weight", [n_out, n_in], "w")] + ([(name + ".bias", [n_out], "b")] if bias else [])


def conv_p(name, c_out, c_in, kh, kw=None, bias=True):
    """c_in is the weight's second dimension: the input channels over groups."""
    kw = kh if kw is None else kw
    return [(name + ".weight", [c_out, c_in, kh, kw], "w")] + ([(name + ".bias", [c_out], "b")] if bias else [])


def bn_p(name, c):
    return [(name + ".weight", [c], "bn_w"), (name + ".bias", [c], "bn_b"),
            (name + ".running_mean", [c], "bn_rm"), (name + ".running_var", [c], "bn_rv")]


def param(name, shape, mean=0.0, std=0.3):
    return [(name, list(shape), ("normal", mean, std))]


def is_buffer(kind):
    return kind in ("bn_rm", "bn_rv")


class Net:
    def __init__(self, name, src, input_shape, params, forward, *, output="f",
                 output_shape=None, labels=None, target=None, loss=None,
                 x_dist=("normal", 0.0, 1.0), overrides=None, bn1d=False, dropout=False,
                 normative=False):
        self.name, self.src, self.input_shape = name, src, list(input_shape)
        self.params, self.forward, self.output = params, forward, output
        self.output_shape = output_shape       # filled in by running the net if None
        self.labels, self.target, self.loss = labels, target, loss
        self.x_dist, self.overrides = x_dist, overrides or {}
        self.bn1d, self.dropout, self.normative = bn1d, dropout, normative
        assert (labels is None) != (target is None)
        assert src.startswith(f"network {name}\n"), name

    @property
    def has_loss(self):
        return self.loss is not None and not self.dropout

    def seed(self):
        return zlib.crc32(self.name.encode())


# --------------------------------------------------------------------------------------
# The six normative programs of the spec, verbatim.

NORMATIVE_SRC = {
    "linear_svm": """\
network linear_svm
input  x : [1, 28, 28]
labels y : class(10)
x -> flatten -> dense(10) -> f
loss = svm_hinge(f, y, margin = 1.0) + 1e-4 * l2(weights)
train { optimizer = sgd(lr = 0.01, momentum = 0.9)  batch = 128  epochs = 5 }
""",
    "two_layer": """\
network two_layer
input  x : [784]
labels y : class(10)
param  W1 : [100, 784] = he
param  b1 : [100] = zeros
param  W2 : [10, 100] = he
param  b2 : [10] = zeros
x -> W1 @ _ + b1 -> max(0, _) -> h
f = W2 @ h + b2
loss = softmax_cross_entropy(f, y) + 1e-4 * l2(W1, W2)
train { optimizer = sgd(lr = 0.02, momentum = 0.9)  batch = 64  epochs = 10  schedule = cosine }
""",
    "mlp": """\
network mlp
input  x : [1, 28, 28]
labels y : class(10)
x -> flatten -> dense(256) -> relu -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.02, momentum = 0.9)  weight_decay = 1e-4  batch = 64  epochs = 10  schedule = cosine }
""",
    "lenet": """\
network lenet
input  x : [1, 28, 28]
labels y : class(10)
x -> conv(6, 5x5, pad = 2) -> relu -> maxpool(2)
  -> conv(16, 5x5) -> relu -> maxpool(2)
  -> flatten
  -> dense(120) -> relu
  -> dense(84) -> relu
  -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train {
  optimizer = sgd(lr = 0.02, momentum = 0.9)
  weight_decay = 1e-4
  batch = 64
  epochs = 15
  schedule = step(every = 6, factor = 0.2)
}
""",
    "vgg_small": """\
network vgg_small
input  x : [1, 28, 28]
labels y : class(10)
block stage(c, n) = repeat(n, conv(c, 3x3, pad = 1) -> relu) -> maxpool(2)
x -> stage(32, 2) -> stage(64, 2)
  -> flatten -> dense(256) -> relu -> dropout(0.5) -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
train { optimizer = sgd(lr = 0.02, momentum = 0.9)  weight_decay = 5e-4  batch = 64  epochs = 10  schedule = cosine }
""",
    "tiny_inception": """\
network tiny_inception
input  x : [1, 28, 28]
labels y : class(10)
block inception(a, b, c) = concat(conv(a, 1x1) -> relu,
                                  conv(b, 1x1) -> relu -> conv(b, 3x3, pad = 1) -> relu,
                                  maxpool(3, stride = 1, pad = 1) -> conv(c, 1x1) -> relu)
x -> conv(16, 3x3, pad = 1) -> relu -> maxpool(2)
  -> inception(8, 16, 8) -> maxpool(2)
  -> global_avgpool -> dense(10) -> f
loss = softmax_cross_entropy(f, y)
""",
}

PIXELS = ("uniform", 0.0, 1.0)     # the 28x28 nets get pixel-like inputs


def normative_nets():
    nets = []
    S = NORMATIVE_SRC

    def f_linear_svm(c, x):
        return {"f": c.dense("dense1", flatten(x))}
    nets.append(Net("linear_svm", S["linear_svm"], [1, 28, 28], dense_p("dense1", 10, 784),
                    f_linear_svm, labels=10, x_dist=PIXELS, normative=True,
                    loss=lambda P, V, y: svm_hinge(V["f"], y, 1.0) + 1e-4 * l2(*weights(P))))

    def f_two_layer(c, x):
        P = c.P
        h = torch.clamp(F.linear(x, P["W1"]) + P["b1"], min=0.0)      # max(0, W1 @ x + b1)
        return {"h": h, "f": F.linear(h, P["W2"]) + P["b2"]}
    nets.append(Net("two_layer", S["two_layer"], [784],
                    param("W1", [100, 784], 0, (2 / 784) ** 0.5) + param("b1", [100], 0, 0.2)
                    + param("W2", [10, 100], 0, (2 / 100) ** 0.5) + param("b2", [10], 0, 0.2),
                    f_two_layer, labels=10, x_dist=PIXELS, normative=True,
                    loss=lambda P, V, y: sce(V["f"], y) + 1e-4 * l2(P["W1"], P["W2"])))

    def f_mlp(c, x):
        return {"f": c.dense("dense2", F.relu(c.dense("dense1", flatten(x))))}
    nets.append(Net("mlp", S["mlp"], [1, 28, 28],
                    dense_p("dense1", 256, 784) + dense_p("dense2", 10, 256),
                    f_mlp, labels=10, x_dist=PIXELS, normative=True,
                    loss=lambda P, V, y: sce(V["f"], y)))

    def f_lenet(c, x):
        h = maxpool(F.relu(c.conv("conv1", x, pad=2)), 2)             # [6,14,14]
        h = maxpool(F.relu(c.conv("conv2", h)), 2)                    # [16,5,5]
        h = F.relu(c.dense("dense1", flatten(h)))
        h = F.relu(c.dense("dense2", h))
        return {"f": c.dense("dense3", h)}
    nets.append(Net("lenet", S["lenet"], [1, 28, 28],
                    conv_p("conv1", 6, 1, 5) + conv_p("conv2", 16, 6, 5) + dense_p("dense1", 120, 400)
                    + dense_p("dense2", 84, 120) + dense_p("dense3", 10, 84),
                    f_lenet, labels=10, x_dist=PIXELS, normative=True,
                    loss=lambda P, V, y: sce(V["f"], y)))

    def f_vgg(c, x):
        h = F.relu(c.conv("conv1", x, pad=1))
        h = maxpool(F.relu(c.conv("conv2", h, pad=1)), 2)             # [32,14,14]
        h = F.relu(c.conv("conv3", h, pad=1))
        h = maxpool(F.relu(c.conv("conv4", h, pad=1)), 2)             # [64,7,7]
        h = c.dropout(F.relu(c.dense("dense1", flatten(h))), 0.5)
        return {"f": c.dense("dense2", h)}
    nets.append(Net("vgg_small", S["vgg_small"], [1, 28, 28],
                    conv_p("conv1", 32, 1, 3) + conv_p("conv2", 32, 32, 3) + conv_p("conv3", 64, 32, 3)
                    + conv_p("conv4", 64, 64, 3) + dense_p("dense1", 256, 3136) + dense_p("dense2", 10, 256),
                    f_vgg, labels=10, x_dist=PIXELS, normative=True, dropout=True,
                    loss=lambda P, V, y: sce(V["f"], y)))

    def f_inception(c, x):
        h = maxpool(F.relu(c.conv("conv1", x, pad=1)), 2)             # [16,14,14]
        a = F.relu(c.conv("conv2", h))                                # [8,14,14]
        b = F.relu(c.conv("conv4", F.relu(c.conv("conv3", h)), pad=1))  # [16,14,14]
        d = F.relu(c.conv("conv5", maxpool(h, 3, 1, 1)))              # [8,14,14]
        h = maxpool(torch.cat([a, b, d], 1), 2)                       # [32,7,7]
        return {"f": c.dense("dense1", gap(h))}
    nets.append(Net("tiny_inception", S["tiny_inception"], [1, 28, 28],
                    conv_p("conv1", 16, 1, 3) + conv_p("conv2", 8, 16, 1) + conv_p("conv3", 16, 16, 1)
                    + conv_p("conv4", 16, 16, 3) + conv_p("conv5", 8, 16, 1) + dense_p("dense1", 10, 32),
                    f_inception, labels=10, x_dist=PIXELS, normative=True,
                    loss=lambda P, V, y: sce(V["f"], y)))
    return nets


# --------------------------------------------------------------------------------------
# Small nets, one concern each.


def CE(P, V, y):
    return sce(V["f"], y)


def MSE(P, V, t):
    return mse(V["f"], t)


def small_nets():
    N = []

    def add(src, input_shape, params, fwd, **kw):
        name = src.split("\n", 1)[0].split()[1]
        kw.setdefault("loss", CE if "target" not in kw else MSE)
        N.append(Net(name, src, input_shape, params, fwd, **kw))

    # ---- dense -------------------------------------------------------------------------
    def fwd(c, x):
        h = F.relu(c.dense("dense1", x))
        h = torch.tanh(c.dense("dense2", h))          # fc(8, bias = false)
        h = F.relu(c.dense("dense3", h))              # affine(6)
        return {"f": c.dense("fc1", h)}
    add("""\
network ref_dense
input  x : [12]
labels y : class(4)
# dense and its aliases fc / affine (all counted and named as dense<k>), bias = false,
# and name = "..." choosing the prefix (on the last dense only, so that whether a named
# layer still consumes a dense<k> number is not tested here)
x -> dense(10) -> relu -> fc(8, bias = false) -> tanh -> affine(6) -> relu
  -> dense(4, name = "fc1") -> f
loss = softmax_cross_entropy(f, y)
""", [12], dense_p("dense1", 10, 12) + dense_p("dense2", 8, 10, bias=False)
        + dense_p("dense3", 6, 8) + dense_p("fc1", 4, 6), fwd, labels=4)

    # ---- conv --------------------------------------------------------------------------
    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, stride=2, pad=1))   # [4,5,5]
        h = c.conv("conv2", h, stride=2)                   # [3,2,2]: (5-2)/2+1 rounds down
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_stride
input  x : [3, 9, 9]
labels y : class(5)
# conv with stride 2 and pad 1, then stride 2 where the size rounds down (5 -> 2)
x -> conv(4, 3x3, stride = 2, pad = 1) -> relu
  -> conv(3, 2x2, stride = 2) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 9, 9], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 3, 4, 2) + dense_p("dense1", 5, 12), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad="same"))
        h = F.relu(c.conv("conv2", h, pad="same"))
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_same_odd
input  x : [2, 8, 7]
labels y : class(5)
# pad = same with odd kernels: pads (k-1)/2 on every side
x -> conv(4, 3x3, pad = same) -> relu -> conv(3, 5x5, pad = same) -> relu
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 7], conv_p("conv1", 4, 2, 3) + conv_p("conv2", 3, 4, 5) + dense_p("dense1", 5, 168), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad="same"))
        h = F.relu(c.conv("conv2", h, pad="same"))
        h = c.conv("conv3", h, pad="same")
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_same_even
input  x : [2, 8, 7]
labels y : class(5)
# pad = same with even kernels (and a 2x3 one): total padding k-1 per axis,
# (k-1)/2 rounded down before (top/left), the rest after (bottom/right) -- as PyTorch
x -> conv(3, 2x2, pad = same) -> relu -> conv(3, 4x4, pad = same) -> relu
  -> conv(2, 2x3, pad = same) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 7], conv_p("conv1", 3, 2, 2) + conv_p("conv2", 3, 3, 4) + conv_p("conv3", 2, 3, 2, 3)
        + dense_p("dense1", 5, 112), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x))                     # [4,7,5]
        h = c.conv("conv2", h, stride=2, pad=1)            # [3,4,3]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_rect
input  x : [2, 8, 7]
labels y : class(5)
# non-square kernels: 2x3 is height 2, width 3; 3x2 with stride and pad
x -> conv(4, 2x3) -> relu -> conv(3, 3x2, stride = 2, pad = 1)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 7], conv_p("conv1", 4, 2, 2, 3) + conv_p("conv2", 3, 4, 3, 2) + dense_p("dense1", 5, 36), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x))                     # [4,7,7]
        h = c.conv("conv2", h)                             # [2,7,7]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_k
input  x : [3, 9, 9]
labels y : class(5)
# the kernel size as a plain integer K means KxK
x -> conv(4, 3) -> relu -> conv(2, 1) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 9, 9], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 2, 4, 1) + dense_p("dense1", 5, 98), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad=1))              # [16,14,14]
        h = c.conv("conv2", h, pad=1)                      # [16,14,14]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_wino14
input  x : [16, 14, 14]
labels y : class(5)
# 3x3 stride-1 convolutions on 14x14 with 16 channels: in a call of at least
# 4 examples, the first 4 floor(n / 4) take Winograd, the rest im2col
# (conv2's input gradient too)
x -> conv(16, 3x3, pad = 1) -> relu -> conv(16, 3x3, pad = 1) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [16, 14, 14], conv_p("conv1", 16, 16, 3) + conv_p("conv2", 16, 16, 3) + dense_p("dense1", 5, 3136), fwd, labels=5)

    # ---- pooling -----------------------------------------------------------------------
    neg_bias = {"conv1.bias": (-1.5, 0.1)}   # conv outputs mostly negative: a zero pad would win

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                      # [4,9,9], mostly negative
        h = maxpool(h, 3, stride=2, pad=1)                 # [4,5,5]
        h = maxpool(h, 2)                                  # [4,2,2]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_maxpool
input  x : [3, 9, 9]
labels y : class(5)
# maxpool with stride != k and pad (padded cells never win, even over negative values:
# conv1's bias is about -1.5 in the weights file), then the default stride = k with a
# size that rounds down (5 -> 2)
x -> conv(4, 3x3, pad = 1) -> maxpool(3, stride = 2, pad = 1) -> maxpool(2)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 9, 9], conv_p("conv1", 4, 3, 3) + dense_p("dense1", 5, 16), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                      # [3,8,7]
        h = maxpool(h, (3, 2), stride=1, pad=1)            # [3,8,8]
        h = maxpool(h, (2, 3))                             # [3,4,2]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_maxpool_rect
input  x : [2, 8, 7]
labels y : class(5)
# non-square pooling windows: 3x2 with stride 1 and pad 1, 2x3 with the default stride 2x3
x -> conv(3, 3x3, pad = 1) -> maxpool(3x2, stride = 1, pad = 1) -> maxpool(2x3)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 7], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 24), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = F.max_pool2d(x, 3, 1, 1, dilation=2)           # [2,7,8]
        h = F.relu(c.conv("conv1", h))                     # [3,5,6]
        h = F.max_pool2d(h, (2, 3), (2, 1), (1, 1), dilation=(1, 2), ceil_mode=True)   # [3,3,4]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_maxpool_dilation
input  x : [2, 9, 10]
labels y : class(5)
# dilated max pooling: taps 2 apart (a 3x3 window spanning 5x5, padded by 1),
# then 2x3 taps 1 and 2 apart with ceil mode (the dilated span decides it)
x -> maxpool(3, stride = 1, pad = 1, dilation = 2) -> conv(3, 3x3) -> relu
  -> maxpool(2x3, stride = 2x1, pad = 1, dilation = 1x2, ceil = true) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 9, 10], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 36), fwd, labels=5)

    def fwd(c, x):
        h = maxpool(x, 2)                                  # [2,4,34]
        h = F.relu(c.conv("conv1", h, pad=1))              # [3,4,34]
        h = maxpool(h, 2)                                  # [3,2,17]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_maxpool_wide
input  x : [2, 8, 68]
labels y : class(5)
# 2x2 max pooling (the vectorized form) of rows wider than one vector: 68 and
# 34 cells, so a row takes several 16-window steps and ends in a partial one;
# the first pooling reads the input itself, the second follows a ReLU (ties at 0)
x -> maxpool(2) -> conv(3, 3x3, pad = 1) -> relu -> maxpool(2)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 68], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 102), fwd, labels=5)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)
        h = avgpool(h, 3, stride=2, pad=1)
        h = avgpool(h, 2)
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_avgpool
input  x : [3, 9, 9]
labels y : class(5)
# avgpool with stride != k and pad: padded cells do not count in the average
# (a corner window of 3x3 with pad 1 averages 4 cells), then stride = k rounding down
x -> conv(4, 3x3, pad = 1) -> avgpool(3, stride = 2, pad = 1) -> avgpool(2)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 9, 9], conv_p("conv1", 4, 3, 3) + dense_p("dense1", 5, 16), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)
        h = avgpool(h, (3, 2), stride=1, pad=1)
        h = avgpool(h, (2, 3))
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_avgpool_rect
input  x : [2, 8, 7]
labels y : class(5)
# non-square average pooling windows, with pad (padded cells do not count)
x -> conv(3, 3x3, pad = 1) -> avgpool(3x2, stride = 1, pad = 1) -> avgpool(2x3)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 7], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 24), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        return {"f": c.dense("dense1", gap(F.relu(c.conv("conv1", x))))}
    add("""\
network ref_gap
input  x : [3, 6, 5]
labels y : class(4)
# global_avgpool: [6, 4, 3] -> [6]
x -> conv(6, 3x3) -> relu -> global_avgpool -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 5], conv_p("conv1", 6, 3, 3) + dense_p("dense1", 4, 6), fwd, labels=4)

    # ---- activations and normalizations -------------------------------------------------
    def fwd(c, x):
        h = torch.tanh(c.dense("dense1", x))
        h = torch.sigmoid(c.dense("dense2", h))
        return {"f": c.dense("dense3", h)}
    add("""\
network ref_tanh_sigmoid
input  x : [10]
labels y : class(4)
# tanh and sigmoid as layers
x -> dense(8) -> tanh -> dense(8) -> sigmoid -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 8, 8) + dense_p("dense3", 4, 8), fwd, labels=4)

    def fwd(c, x):
        h = F.leaky_relu(c.conv("conv1", x), 0.01)
        h = F.leaky_relu(c.dense("dense1", flatten(h)), 0.2)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_leaky
input  x : [3, 6, 6]
labels y : class(4)
# leaky_relu with its default slope 0.01 (on [C,H,W]) and with a = 0.2 (on a vector)
x -> conv(4, 3x3) -> leaky_relu -> flatten -> dense(8) -> leaky_relu(a = 0.2)
  -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 4, 3, 3) + dense_p("dense1", 8, 64) + dense_p("dense2", 4, 8), fwd, labels=4)

    def fwd(c, x):
        return {"f": F.softmax(c.dense("dense1", x), dim=1)}
    add("""\
network ref_softmax
input  x : [10]
target t : [6]
# softmax as a layer, with an mse loss against a real-valued target
x -> dense(6) -> softmax -> f
loss = mse(f, t)
""", [10], dense_p("dense1", 6, 10), fwd, target=[6])

    def fwd(c, x):
        h = F.normalize(c.dense("dense1", x), p=2, dim=1, eps=1e-12)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_l2norm
input  x : [10]
labels y : class(5)
# l2norm: v / max(||v||_2, 1e-12)
x -> dense(8) -> l2norm -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 5, 8), fwd, labels=5)

    def fwd(c, x):
        h = F.normalize(c.dense("dense1", x), p=1, dim=1, eps=1e-12)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_l1norm
input  x : [10]
labels y : class(5)
# l1norm: v / max(sum |v|, 1e-12)
x -> dense(8) -> l1norm -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 5, 8), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.dropout(c.conv("conv1", x), 0.5))
        h = c.dropout(F.relu(c.dense("dense1", flatten(h))), 0.3)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_dropout
input  x : [2, 5, 5]
labels y : class(4)
# dropout is the identity at inference (on [C,H,W] and on a vector); no loss reference
x -> conv(3, 3x3) -> dropout(0.5) -> relu -> flatten -> dense(12) -> relu
  -> dropout(0.3) -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 5, 5], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 12, 27) + dense_p("dense2", 4, 12),
        fwd, labels=4, dropout=True)

    def fwd(c, x):
        h = c.bn("batchnorm1", F.relu(c.conv("conv1", x)))
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_bn2d
input  x : [3, 6, 6]
labels y : class(4)
# batchnorm on [C,H,W] (per channel over batch, height and width). The relu before it
# keeps conv1.bias's training-mode gradient from being identically zero.
x -> conv(4, 3x3) -> relu -> batchnorm -> flatten -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 4, 3, 3) + bn_p("batchnorm1", 4) + dense_p("dense1", 4, 64), fwd, labels=4)

    def fwd(c, x):
        h = F.relu(c.bn("batchnorm1", torch.tanh(c.dense("dense1", x))))
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_bn1d
input  x : [10]
labels y : class(4)
# batchnorm on a vector [n] (per feature over the batch); tanh before it for the same
# reason as in ref_bn2d
x -> dense(8) -> tanh -> batchnorm -> relu -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + bn_p("batchnorm1", 8) + dense_p("dense2", 4, 8), fwd, labels=4, bn1d=True)

    def fwd(c, x):
        h = F.relu(lrn(c.conv("conv1", x)))
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_lrn
input  x : [3, 6, 6]
labels y : class(4)
# lrn with its defaults size 5, alpha 1e-4, beta 0.75, k 2 over 7 channels:
# b_c = a_c / (k + alpha/size * sum of a_j^2 for j in [c-size/2, c+size/2])^beta
x -> conv(7, 3x3) -> lrn -> relu -> flatten -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 7, 3, 3) + dense_p("dense1", 4, 112), fwd, labels=4)

    def fwd(c, x):
        h = F.relu(lrn(c.conv("conv1", x), size=3, alpha=0.5, beta=0.6, k=1.5))
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_lrn_custom
input  x : [3, 6, 6]
labels y : class(4)
# lrn with every option given (alpha large enough to matter)
x -> conv(7, 3x3) -> lrn(size = 3, alpha = 0.5, beta = 0.6, k = 1.5) -> relu
  -> flatten -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 7, 3, 3) + dense_p("dense1", 4, 112), fwd, labels=4)

    # ---- structure: concat, residual, repeat, blocks ---------------------------------------
    def fwd(c, x):
        a = c.conv("conv1", x)                                        # [2,6,6]
        b = F.relu(c.conv("conv2", x, pad=1))                         # [3,6,6]
        d = maxpool(x, 3, 1, 1)                                       # [3,6,6]
        h = c.conv("conv3", torch.cat([a, b, d], 1), stride=2)        # [4,2,2]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_concat3
input  x : [3, 6, 6]
labels y : class(5)
# concat of [C,H,W] branches on channels (2 + 3 + 3), one branch without parameters
x -> concat(conv(2, 1x1), conv(3, 3x3, pad = 1) -> relu, maxpool(3, stride = 1, pad = 1))
  -> conv(4, 3x3, stride = 2) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 2, 3, 1) + conv_p("conv2", 3, 3, 3) + conv_p("conv3", 4, 8, 3)
        + dense_p("dense1", 5, 16), fwd, labels=5)

    def fwd(c, x):
        h = x.transpose(1, 2)                                         # [4,3]
        h = F.softmax(torch.cat([h, torch.tanh(h)], 2), dim=1)        # [4,6], along the 4
        return {"f": c.dense("dense1", flatten(h.transpose(1, 2)))}   # [6,4]
    add("""\
network ref_transpose
input  x : [3, 4]
labels y : class(3)
# transpose of a matrix, and its gradient
x -> transpose -> concat(_, tanh, axis = 1) -> softmax(axis = 0) -> transpose
  -> flatten -> dense(3) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 4], dense_p("dense1", 3, 24), fwd, labels=3)

    def fwd(c, x):
        h = F.softmax(x, dim=2)                                       # along the 3
        h = torch.cat([h, torch.tanh(h)], 4)                          # [2,3,4,10]
        return {"f": c.dense("dense1", flatten(h.reshape(-1, 6, 40)))}
    add("""\
network ref_rank4
input  x : [2, 3, 4, 5]
labels y : class(3)
# an input of 4 dimensions (the batch not counted), through the layers that
# take any shape: softmax along its axis 1, concat along its last, reshape
x -> softmax(axis = 1) -> concat(_, tanh, axis = 3) -> reshape(6, 40) -> flatten
  -> dense(3) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 3, 4, 5], dense_p("dense1", 3, 240), fwd, labels=3)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                                 # [4,3,10]
        h = F.softmax(torch.cat([h, torch.tanh(h)], 3), dim=3)        # [4,3,20], along W
        h = torch.cat([torch.sigmoid(h), h], 1)                       # [8,3,20]
        h = F.softmax(h.reshape(-1, 6, 8, 10), dim=2)                 # along the 8
        h = torch.cat([h, h * h], 2)                                  # [6,16,10]
        h = F.softmax(h.reshape(-1, 96, 10), dim=1)                   # along the 96
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_axes
input  x : [2, 3, 10]
labels y : class(3)
# softmax(axis = k), concat(..., axis = k) and reshape on other dimensions
# than a vector's or an image's channels; axes count the example's
# dimensions (the batch is not one), -1 the last
x -> conv(4, 3x3, pad = 1) -> concat(_, tanh, axis = 2) -> softmax(axis = -1)
  -> concat(sigmoid, _, axis = 0) -> reshape(6, 8, 10) -> softmax(axis = 1)
  -> concat(_, _ * _, axis = 1) -> reshape(96, 10) -> softmax(axis = 0) -> flatten
  -> dense(3) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 3, 10], conv_p("conv1", 4, 2, 3) + dense_p("dense1", 3, 960), fwd, labels=3)

    def fwd(c, x):
        h = F.relu(c.dense("dense1", x))
        h = torch.cat([torch.tanh(c.dense("dense2", h)), c.dense("dense3", h),
                       torch.sigmoid(c.dense("dense4", h))], 1)       # [9]
        return {"f": c.dense("dense5", h)}
    add("""\
network ref_concat1
input  x : [10]
labels y : class(5)
# concat of vectors (4 + 3 + 2); parameters are numbered branch by branch
x -> dense(6) -> relu -> concat(dense(4) -> tanh, fc(3), dense(2) -> sigmoid)
  -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 6, 10) + dense_p("dense2", 4, 6) + dense_p("dense3", 3, 6)
        + dense_p("dense4", 2, 6) + dense_p("dense5", 5, 9), fwd, labels=5)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                                 # [4,6,6]
        h = h + c.conv("conv3", F.relu(c.conv("conv2", h, pad="same")))
        h = c.dense("dense1", flatten(F.relu(h)))                     # [8]
        h = h + torch.tanh(c.dense("dense2", h))
        return {"f": c.dense("dense3", h)}
    add("""\
network ref_residual
input  x : [3, 6, 6]
labels y : class(4)
# residual on [C,H,W] and on a vector: in + branch(in)
x -> conv(4, 3x3, pad = 1)
  -> residual(conv(4, 3x3, pad = same) -> relu -> conv(4, 1x1))
  -> relu -> flatten -> dense(8) -> residual(dense(8) -> tanh) -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 4, 4, 3) + conv_p("conv3", 4, 4, 1)
        + dense_p("dense1", 8, 144) + dense_p("dense2", 8, 8) + dense_p("dense3", 4, 8), fwd, labels=4)

    def fwd(c, x):
        h = c.dense("dense1", x)
        k = 2
        for _ in range(2):
            for _ in range(2):
                h = F.relu(c.dense(f"dense{k}", h))
                k += 1
            h = torch.tanh(c.dense(f"dense{k}", h))
            k += 1
        return {"f": c.dense("dense8", h)}
    add("""\
network ref_repeat
input  x : [6]
labels y : class(4)
# nested repeat, fresh parameters for each copy, numbered in expansion order:
# dense1, (dense2, dense3, dense4), (dense5, dense6, dense7), dense8
x -> dense(6) -> repeat(2, repeat(2, dense(6) -> relu) -> dense(6) -> tanh)
  -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [6], dense_p("dense1", 6, 6) + sum((dense_p(f"dense{k}", 6, 6) for k in range(2, 8)), [])
        + dense_p("dense8", 4, 6), fwd, labels=4)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad="same"))                    # [4,8,8]
        h = F.relu(c.conv("conv2", h, pad="same"))
        h = maxpool(h, 2)                                             # [4,4,4]
        h = F.relu(c.conv("conv3", h, pad="same"))                    # [2,4,4]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_blocks
input  x : [3, 8, 8]
labels y : class(5)
# blocks with parameters (an integer and a size), a block calling an earlier block
block conv_relu(c, k) = conv(c, k, pad = same) -> relu
block pair(c) = conv_relu(c, 3x3) -> conv_relu(c, 1)
block head(n) = flatten -> dense(n)
x -> pair(4) -> maxpool(2) -> conv_relu(2, 5x5) -> head(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 8, 8], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 4, 4, 1) + conv_p("conv3", 2, 4, 5)
        + dense_p("dense1", 5, 32), fwd, labels=5)

    # ---- maths ---------------------------------------------------------------------------
    def fwd(c, x):
        P = c.P
        cc, s, r, u = P["c"], P["s"], P["r"], P["u"]
        h = (x - cc) * s * (2 / (1 + s * s)) + 0.5 * r - u / 2 - 1
        h = F.relu(c.conv("conv1", h))                                # [4,3,4]
        return {"h": h, "f": c.dense("dense1", flatten(h))}
    add("""\
network ref_broadcast
input  x : [3, 5, 6]
labels y : class(4)
# + - * / with NumPy-style broadcasting: [C,1,1] per channel, [W] along the last axis,
# [H,1] along the rows, scalars on either side
param  c : [3, 1, 1] = zeros
param  s : [3, 1, 1] = ones
param  r : [6] = uniform(-0.5, 0.5)
param  u : [5, 1] = constant(0.1)
h = (x - c) * s * (2 / (1 + s * s)) + 0.5 * r - u / 2 - 1
h -> conv(4, 3x3) -> relu -> flatten -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 5, 6], param("c", [3, 1, 1], 0, 0.3) + param("s", [3, 1, 1], 1, 0.3) + param("r", [6], 0, 0.3)
        + param("u", [5, 1], 0, 0.3) + conv_p("conv1", 4, 3, 3) + dense_p("dense1", 4, 48), fwd, labels=4)

    def fwd(c, x):
        P = c.P
        m = torch.matmul(P["A"], x)                                   # [3,4]@[4,6] -> [3,6]
        g = torch.matmul(m, P["B"]) + P["v"]                          # [3,6]@[6,2] -> [3,2]
        q = torch.matmul(m, P["w"])                                   # [3,6]@[6]   -> [3]
        a = c.dense("dense1", flatten(torch.tanh(g)))
        b = c.dense("dense2", q)
        return {"f": a + b}
    add("""\
network ref_matmul
input  x : [4, 6]
labels y : class(5)
# @ as [m,k] @ [k,n] (param @ value, value @ param) and [m,k] @ [k];
# m is used twice; the sum of two dense outputs
param  A : [3, 4] = he
param  B : [6, 2] = xavier
param  v : [2] = zeros
param  w : [6] = normal(0, 0.5)
m = A @ x
g = m @ B + v
q = m @ w
g -> tanh -> flatten -> dense(5) -> a
q -> dense(5) -> b
f = a + b
loss = softmax_cross_entropy(f, y)
""", [4, 6], param("A", [3, 4], 0, 0.5) + param("B", [6, 2], 0, 0.4) + param("v", [2], 0, 0.3)
        + param("w", [6], 0, 0.4) + dense_p("dense1", 5, 6) + dense_p("dense2", 5, 3), fwd, labels=5)

    def fwd(c, x):
        P = c.P
        n = x.shape[0]
        m = torch.matmul(x, P["P"])                                   # [2,3,4]@[2,4,5] -> [2,3,5]
        q = torch.matmul(P["Q"].unsqueeze(0), m.unsqueeze(1))         # [3,1,2,3]@[2,3,5] -> [3,2,2,5]
        r = torch.matmul(m, P["W"])                                   # [2,3,5]@[5,2] -> [2,3,2]
        v = torch.matmul(x, x.reshape(n, 2, 4, 3))                    # [2,3,4]@[2,4,3] -> [2,3,3]
        z = x.reshape(n, 1, 2, 1, 3, 1, 4, 1) * P["s"]                # 7 dimensions
        f = 0.25 * (c.dense("dense1", flatten(q)) + c.dense("dense2", flatten(torch.tanh(r)))
                    + c.dense("dense3", flatten(v)) + c.dense("dense4", flatten(z)))
        return {"f": f}
    add("""\
network ref_matmul_stack
input  x : [2, 3, 4]
labels y : class(4)
# @ of stacks of matrices, [..., m, k] @ [..., k, n], the stacks broadcast as in `+`:
# value @ param, param @ value (stacks [3, 1] and [2]), value @ matrix, value @ value;
# and a value of 7 dimensions (reshape, broadcasting)
param  P : [2, 4, 5] = he
param  Q : [3, 1, 2, 3] = xavier
param  W : [5, 2] = he
param  s : [5, 1, 1] = ones
m = x @ P
q = Q @ m
r = m @ W
x -> reshape(2, 4, 3) -> h
v = x @ h
x -> reshape(1, 2, 1, 3, 1, 4, 1) -> k
z = k * s
q -> flatten -> dense(4) -> a
r -> tanh -> flatten -> dense(4) -> b
v -> flatten -> dense(4) -> e
z -> flatten -> dense(4) -> g
f = 0.25 * (a + b + e + g)
loss = softmax_cross_entropy(f, y)
""", [2, 3, 4], param("P", [2, 4, 5], 0, 0.5) + param("Q", [3, 1, 2, 3], 0, 0.5) + param("W", [5, 2], 0, 0.5)
        + param("s", [5, 1, 1], 1, 0.3) + dense_p("dense1", 4, 60) + dense_p("dense2", 4, 12)
        + dense_p("dense3", 4, 18) + dense_p("dense4", 4, 120), fwd, labels=4)

    def fwd(c, x):
        h = c.dense("dense1", x)
        u = c.dense("dense2", x)
        g = (torch.maximum(h, u) + torch.clamp(h, max=0.5) * torch.tanh(u)
             - torch.sigmoid(h.abs()) + F.relu(u - h) + torch.clamp(h, min=0.0)
             - torch.clamp(u, max=0.0))
        return {"f": c.dense("dense3", g)}
    add("""\
network ref_elemfun
input  x : [10]
labels y : class(4)
# max, min (of two values, value and scalar, scalar and value), abs, and tanh,
# sigmoid, relu as functions; x, h and u are each used several times
x -> dense(8) -> h
x -> dense(8) -> u
g = max(h, u) + min(h, 0.5) * tanh(u) - sigmoid(abs(h)) + relu(u - h) + max(0, h) - min(0, u)
g -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 8, 10) + dense_p("dense3", 4, 8), fwd, labels=4)

    def fwd(c, x):
        h = c.dense("dense1", x)
        g = torch.log(1 + torch.exp(-h)) + torch.sqrt(h * h + 0.25) * torch.exp(-h.abs())
        return {"f": c.dense("dense2", g)}
    add("""\
network ref_explog
input  x : [10]
labels y : class(4)
# exp, log, sqrt and unary minus; log and sqrt get positive arguments by construction
x -> dense(8) -> h
g = log(1 + exp(-h)) + sqrt(h * h + 0.25) * exp(-abs(h))
g -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 4, 8), fwd, labels=4)

    def fwd(c, x):
        cc = torch.tanh(c.conv("conv1", x))                          # [3,4,4]
        v = c.dense("dense1", flatten(cc))                            # [5]
        f = v - bscalar(pmean(v), v) + 0.1 * bscalar(psum(cc * cc), v) - bscalar(pmean(cc), v)
        return {"f": f}
    add("""\
network ref_reduce
input  x : [2, 6, 6]
target t : [5]
# sum(e) and mean(e) reduce all of a per-example value (a vector, a [C,H,W] value) to a
# scalar that then broadcasts; c is used twice. mse, so that added scalars matter.
c = x -> conv(3, 3x3) -> tanh
c -> flatten -> dense(5) -> v
f = v - mean(v) + 0.1 * sum(c * c) - mean(c)
loss = mse(f, t)
""", [2, 6, 6], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 48), fwd, target=[5])

    def fwd(c, x):
        h = torch.tanh(c.dense("dense1", x))
        return {"s": psum(h * h) + pmean(h)}
    add("""\
network ref_scalar
input  x : [5]
target t : [1]
# a scalar output (per-example shape []), stored as [N] in out.N; the mse against a
# [1] target broadcasts
x -> dense(4) -> tanh -> h
s = sum(h * h) + mean(h)
loss = mse(s, t)
""", [5], dense_p("dense1", 4, 5), fwd, target=[1], output="s", output_shape=[],
        loss=lambda P, V, t: mse(V["s"], t))

    def fwd(c, x):
        P = c.P
        h = F.linear(x, P["W"]) + P["b"]
        h = h * torch.sigmoid(h)
        h = torch.tanh(2 * c.dense("dense1", h) - 1)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_pipe_math
input  x : [8]
labels y : class(4)
# maths stages in a pipeline mixed with layers; `_` twice in one stage is the same value
param  W : [6, 8] = xavier
param  b : [6] = zeros
x -> W @ _ + b -> _ * sigmoid(_) -> dense(6) -> 2 * _ - 1 -> tanh -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [8], param("W", [6, 8], 0, 0.5) + param("b", [6], 0, 0.2) + dense_p("dense1", 6, 6)
        + dense_p("dense2", 4, 6), fwd, labels=4)

    def fwd(c, x):
        return {"f": c.dense("dense2", torch.clamp(c.dense("dense1", x), min=0.0))}
    add("""\
network ref_unicode
input  x : [5]
labels y : class(3)
# → is ->, · is _ ; non-ASCII is fine in comments: é, ü, ×
x → dense(6) → max(0, ·) → dense(3) → f
loss = softmax_cross_entropy(f, y)
""", [5], dense_p("dense1", 6, 5) + dense_p("dense2", 3, 6), fwd, labels=3)

    def fwd(c, x):
        f = c.dense("dense2", F.relu(c.dense("dense1", x)))
        return {"f": f, "p": F.softmax(f, dim=1)}
    add("""\
network ref_output
input  x : [6]
labels y : class(4)
# an explicit `output` (the probabilities) other than the value the loss uses (the
# logits), and layers with init = (the weights file overrides the initial values)
output p
x -> dense(8, init = xavier) -> relu -> dense(4, init = normal(0, 0.1)) -> f
p = f -> softmax
loss = softmax_cross_entropy(f, y)
""", [6], dense_p("dense1", 8, 6) + dense_p("dense2", 4, 8), fwd, labels=4, output="p")

    # ---- losses and regularization -------------------------------------------------------
    def fwd(c, x):
        return {"f": c.dense("dense2", F.relu(c.dense("dense1", x)))}
    add("""\
network ref_svm
input  x : [10]
labels y : class(5)
# svm_hinge with a non-default margin, plus l2 of every weight (not bias) tensor
x -> dense(8) -> relu -> dense(5) -> f
loss = svm_hinge(f, y, margin = 0.5) + 0.01 * l2(weights)
""", [10], dense_p("dense1", 8, 10) + dense_p("dense2", 5, 8), fwd, labels=5,
        loss=lambda P, V, y: svm_hinge(V["f"], y, 0.5) + 0.01 * l2(*weights(P)))

    def fwd(c, x):
        return {"f": c.dense("dense1", x)}
    add("""\
network ref_svm_default
input  x : [6]
labels y : class(4)
# svm_hinge with its default margin 1.0
x -> dense(4) -> f
loss = svm_hinge(f, y)
""", [6], dense_p("dense1", 4, 6), fwd, labels=4, loss=lambda P, V, y: svm_hinge(V["f"], y, 1.0))

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x))
        h = F.relu(c.dense("dense1", flatten(h)))
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_l1
input  x : [3, 6, 6]
labels y : class(4)
# l1 of every weight tensor: conv1.weight, dense1.weight, dense2.weight (not the biases)
x -> conv(3, 3x3) -> relu -> flatten -> dense(6, bias = false) -> relu -> dense(4) -> f
loss = softmax_cross_entropy(f, y) + 0.01 * l1(weights)
""", [3, 6, 6], conv_p("conv1", 3, 3, 3) + dense_p("dense1", 6, 48, bias=False) + dense_p("dense2", 4, 6),
        fwd, labels=4, loss=lambda P, V, y: sce(V["f"], y) + 0.01 * l1(*weights(P)))

    def fwd(c, x):
        P = c.P
        h = torch.tanh(F.linear(x, P["W1"]) + P["b1"])
        return {"f": F.linear(h, P["W2"]) + P["b2"]}
    add("""\
network ref_reg_params
input  x : [6]
target t : [3]
# l2 and l1 of named explicit parameters (l1 of biases too), with an mse loss
param  W1 : [5, 6] = he
param  b1 : [5] = zeros
param  W2 : [3, 5] = he
param  b2 : [3] = zeros
h = tanh(W1 @ x + b1)
f = W2 @ h + b2
loss = mse(f, t) + 0.01 * l2(W1, W2) + 0.02 * l1(b1, b2)
""", [6], param("W1", [5, 6], 0, 0.5) + param("b1", [5], 0, 0.3) + param("W2", [3, 5], 0, 0.5)
        + param("b2", [3], 0, 0.3), fwd, target=[3],
        loss=lambda P, V, t: mse(V["f"], t) + 0.01 * l2(P["W1"], P["W2"]) + 0.02 * l1(P["b1"], P["b2"]))


    # ---- the full-size additions: groups, dilation, relu6, clip, ceil, count_pad,
    # ---- residual shortcuts, batchnorm eps --------------------------------------------
    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad=1, groups=2))               # [6,7,7]
        h = c.conv("conv2", h, stride=2, groups=3)                     # [6,3,3]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_groups
input  x : [4, 7, 7]
labels y : class(5)
# grouped convolution: groups = 2 (4 -> 6 channels, weight [6, 2, 3, 3]), then
# groups = 3 with stride 2 (weight [6, 2, 2, 2])
x -> conv(6, 3x3, pad = 1, groups = 2) -> relu -> conv(6, 2x2, stride = 2, groups = 3)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [4, 7, 7], conv_p("conv1", 6, 2, 3) + conv_p("conv2", 6, 2, 2) + dense_p("dense1", 5, 54), fwd, labels=5)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad=1, groups=4))                # [4,7,7]
        h = F.relu(c.conv("conv2", h, stride=2, pad=1, groups=4))     # [8,4,4]
        h = c.conv("conv3", h)                                         # [3,4,4]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_depthwise
input  x : [4, 7, 7]
labels y : class(5)
# depthwise convolution, groups = C: c = C (weight [4, 1, 3, 3], MobileNet's form),
# then c = 2C with stride 2 (a channel multiplier of 2, weight [8, 1, 3, 3]),
# then a pointwise 1x1 conv
x -> conv(4, 3x3, pad = 1, groups = 4) -> relu
  -> conv(8, 3x3, stride = 2, pad = 1, groups = 4, bias = false) -> relu
  -> conv(3, 1x1) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [4, 7, 7], conv_p("conv1", 4, 1, 3) + conv_p("conv2", 8, 1, 3, bias=False) + conv_p("conv3", 3, 8, 1)
        + dense_p("dense1", 5, 48), fwd, labels=5)

    def fwd(c, x):
        h = relu6(c.conv("conv1", x))                                                    # [6,9,9]
        h = relu6(c.bn("batchnorm1", c.conv("conv2", h, pad=1, groups=6)))            # [6,9,9]
        h = relu6(c.bn("batchnorm2", c.conv("conv3", h, stride=2, pad=1, groups=6)))  # [6,5,5]
        h = F.relu(c.conv("conv4", h, pad=2, dilation=2, groups=6))                    # [6,5,5]
        h = relu6(c.conv("conv5", h, groups=6))                                         # [12,3,3]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_depthwise_bn
input  x : [3, 9, 9]
labels y : class(5)
# depthwise convolutions in MobileNet V2's form and around it: after a 1x1 conv and
# relu6 (applied by the depthwise conv as it reads its input, at inference), stride 1
# and 2 each followed by batchnorm and relu6 (folded into the conv at inference), a
# dilated one followed by relu, and one without padding with a channel multiplier
# of 2 followed directly by relu6; conv1's and conv2's weights are large (std 1.5)
# so that relu6 clips at 6. (No bias before a batchnorm: in training its gradient
# is zero up to rounding.)
x -> conv(6, 1x1) -> relu6
  -> conv(6, 3x3, pad = 1, groups = 6, bias = false) -> batchnorm -> relu6
  -> conv(6, 3x3, stride = 2, pad = 1, groups = 6, bias = false) -> batchnorm -> relu6
  -> conv(6, 3x3, pad = 2, dilation = 2, groups = 6) -> relu
  -> conv(12, 3x3, groups = 6) -> relu6 -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 9, 9], conv_p("conv1", 6, 3, 1) + conv_p("conv2", 6, 1, 3, bias=False) + bn_p("batchnorm1", 6)
        + conv_p("conv3", 6, 1, 3, bias=False) + bn_p("batchnorm2", 6) + conv_p("conv4", 6, 1, 3)
        + conv_p("conv5", 12, 1, 3) + dense_p("dense1", 5, 108), fwd, labels=5,
        overrides={"conv1.weight": (0.0, 1.5), "conv2.weight": (0.0, 1.5)})

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad=2, dilation=2))              # [4,11,10]
        h = c.conv("conv2", h, stride=2, pad=1, dilation=(2, 1))       # [3,5,6]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_conv_dilation
input  x : [3, 11, 10]
labels y : class(5)
# dilated convolution: dilation = 2 with pad 2 (a 3x3 kernel spanning 5x5), then a
# rectangular dilation 2x1 (height 2, width 1) on a 3x2 kernel with stride 2, pad 1
x -> conv(4, 3x3, pad = 2, dilation = 2) -> relu
  -> conv(3, 3x2, stride = 2, pad = 1, dilation = 2x1) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 11, 10], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 3, 4, 3, 2) + dense_p("dense1", 5, 90),
        fwd, labels=5)

    def fwd(c, x):
        h = relu6(c.conv("conv1", x))                                  # [4,4,4]
        h = clip(c.dense("dense1", flatten(h)), -0.5, 0.8)
        return {"f": c.dense("dense2", h)}
    add("""\
network ref_relu6_clip
input  x : [3, 6, 6]
labels y : class(4)
# relu6 = min(max(x, 0), 6) and clip(lo, hi) = min(max(x, lo), hi) with a negative
# lo; conv1's weights are large (std 1.5) so that values fall beyond 6 and below 0,
# and dense1's outputs beyond both -0.5 and 0.8
x -> conv(4, 3x3) -> relu6 -> flatten -> dense(8) -> clip(-0.5, 0.8) -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 4, 3, 3) + dense_p("dense1", 8, 64) + dense_p("dense2", 4, 8), fwd,
        labels=4, overrides={"conv1.weight": (0.0, 1.5)})

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                                  # [3,8,9], mostly negative
        h = maxpool(h, 3, stride=3, pad=1, ceil=True)                  # [3,3,4]
        h = maxpool(h, 2, ceil=True)                                   # [3,2,2]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_maxpool_ceil
input  x : [2, 8, 9]
labels y : class(5)
# ceil = true (PyTorch's ceil_mode). 3, stride 3, pad 1: the width 9 gives
# ceil((9 + 2 - 3) / 3) + 1 = 4 windows (floor: 3); the height 8 would give 4 too,
# but the 4th window would start at row 8, in the bottom padding, and is dropped: 3.
# Then 2x2 on [3, 4]: the last row window holds one real row (a partial window).
x -> conv(3, 3x3, pad = 1) -> maxpool(3, stride = 3, pad = 1, ceil = true)
  -> maxpool(2, ceil = true) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 9], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 12), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                                  # [3,8,9]
        h = avgpool(h, 3, stride=3, pad=1, ceil=True)                  # [3,3,4]
        h = avgpool(h, 2, ceil=True)                                   # [3,2,2]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_avgpool_ceil
input  x : [2, 8, 9]
labels y : class(5)
# avgpool with ceil = true, the windows of ref_maxpool_ceil: padded cells and the
# cells of a partial last window beyond the input do not count in the average
x -> conv(3, 3x3, pad = 1) -> avgpool(3, stride = 3, pad = 1, ceil = true)
  -> avgpool(2, ceil = true) -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 9], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 12), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = c.conv("conv1", x, pad=1)                                  # [3,8,9]
        h = avgpool(h, 3, stride=2, pad=1, count_pad=True)             # [3,4,5]
        h = avgpool(h, 3, stride=2, pad=1, ceil=True, count_pad=True)  # [3,3,3]
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_avgpool_count_pad
input  x : [2, 8, 9]
labels y : class(5)
# count_pad = true: padded cells count in the average (a corner window of 3x3 with
# pad 1 divides by 9). Then with ceil = true as well: on the height 4 the last
# window covers rows 3 (real), 4 (padding) and 5 (beyond the padding): it divides
# by 2 per row, as PyTorch's count_include_pad with ceil_mode
x -> conv(3, 3x3, pad = 1) -> avgpool(3, stride = 2, pad = 1, count_pad = true)
  -> avgpool(3, stride = 2, pad = 1, ceil = true, count_pad = true)
  -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [2, 8, 9], conv_p("conv1", 3, 2, 3) + dense_p("dense1", 5, 27), fwd, labels=5, overrides=neg_bias)

    def fwd(c, x):
        h = x * c.P["s"] + c.P["t"]                                              # [2,5,6,7]
        a = F.max_pool3d(h, 3, stride=2, padding=1, ceil_mode=True)              # [2,3,4,4]
        a = F.avg_pool3d(a, (2, 1, 2), stride=(1, 1, 2), padding=(1, 0, 1), count_include_pad=True)  # [2,4,4,3]
        b = F.avg_pool3d(h, 3, stride=2, padding=1, count_include_pad=False)     # [2,3,3,4]
        e = F.max_pool3d(h, 2, stride=1, dilation=(2, 1, 2))                     # [2,3,5,5]
        return {"f": c.dense("dense1", flatten(a)) + c.dense("dense2", flatten(b))
                + c.dense("dense3", flatten(e))}
    add("""\
network ref_pool3d
input  x : [2, 5, 6, 7]
labels y : class(4)
# maxpool and avgpool over [C, D, H, W] with windows K or DxHxW: ceil, padding,
# count_pad, padding that does not count, dilation; a param before them, so that
# their gradients are checked
param  s : [2, 1, 1, 1] = ones
param  t : [2, 1, 1, 1] = zeros
h = x * s + t
h -> maxpool(3, stride = 2, pad = 1, ceil = true)
  -> avgpool(2x1x2, stride = 1x1x2, pad = 1x0x1, count_pad = true) -> flatten -> dense(4) -> a
h -> avgpool(3, stride = 2, pad = 1) -> flatten -> dense(4) -> b
h -> maxpool(2, stride = 1, dilation = 2x1x2) -> flatten -> dense(4) -> e
f = a + b + e
loss = softmax_cross_entropy(f, y)
""", [2, 5, 6, 7], param("s", [2, 1, 1, 1], 1, 0.3) + param("t", [2, 1, 1, 1], 0, 0.3)
        + dense_p("dense1", 4, 96) + dense_p("dense2", 4, 72) + dense_p("dense3", 4, 150), fwd, labels=4)

    def fwd(c, x):
        h = F.relu(c.conv("conv1", x, pad=1))                          # [4,8,8]
        a = c.conv("conv3", F.relu(c.bn("batchnorm1", c.conv("conv2", h, stride=2, pad=1))), pad=1)
        s = c.bn("batchnorm2", c.conv("conv4", h, stride=2))           # [6,4,4]
        h = F.relu(a + s)
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_residual_shortcut
input  x : [3, 8, 8]
labels y : class(5)
# residual(a, shortcut = b) = a(in) + b(in), ResNet's projection shortcut: the branch
# halves the size and widens 4 -> 6 channels, the shortcut is a 1x1 stride-2 conv
# (no bias) and a batchnorm; the branch's parameters come before the shortcut's
# (a conv followed by a batchnorm has no bias: its gradient would be zero)
x -> conv(4, 3x3, pad = 1) -> relu
  -> residual(conv(6, 3x3, stride = 2, pad = 1, bias = false) -> batchnorm -> relu -> conv(6, 3x3, pad = 1),
              shortcut = conv(6, 1x1, stride = 2, bias = false) -> batchnorm)
  -> relu -> flatten -> dense(5) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 8, 8], conv_p("conv1", 4, 3, 3) + conv_p("conv2", 6, 4, 3, bias=False) + bn_p("batchnorm1", 6)
        + conv_p("conv3", 6, 6, 3) + conv_p("conv4", 6, 4, 1, bias=False) + bn_p("batchnorm2", 6)
        + dense_p("dense1", 5, 96), fwd, labels=5)

    def fwd(c, x):
        h = c.bn("batchnorm1", F.relu(c.conv("conv1", x)), eps=1e-3)
        return {"f": c.dense("dense1", flatten(h))}
    add("""\
network ref_bn_eps
input  x : [3, 6, 6]
labels y : class(4)
# batchnorm(eps = 1e-3), GoogLeNet's epsilon. The running variances in the weights
# file are about 0.01, so that 1e-3 and the default 1e-5 differ at inference too.
x -> conv(4, 3x3) -> relu -> batchnorm(eps = 1e-3) -> flatten -> dense(4) -> f
loss = softmax_cross_entropy(f, y)
""", [3, 6, 6], conv_p("conv1", 4, 3, 3) + bn_p("batchnorm1", 4) + dense_p("dense1", 4, 64), fwd,
        labels=4, overrides={"batchnorm1.running_var": (0.01, 0.002)})

    return N


def all_nets():
    nets = normative_nets() + small_nets()
    names = [n.name for n in nets]
    assert len(set(names)) == len(names)
    return nets


# --------------------------------------------------------------------------------------
# Generation


def init_params(net, g):
    """name -> float32 tensor, in source order."""
    out = {}
    for name, shape, kind in net.params:
        n = 1
        for s in shape:
            n *= s
        fan_in = n // shape[0] if len(shape) > 1 else 1
        if name in net.overrides:
            mean, std = net.overrides[name]
            t = mean + std * torch.randn(shape, generator=g)
        elif kind == "w":
            t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif kind == "b":
            t = 0.2 * torch.randn(shape, generator=g)
        elif kind == "bn_w":
            t = 0.5 + torch.rand(shape, generator=g)
        elif kind == "bn_b":
            t = 0.2 * torch.randn(shape, generator=g)
        elif kind == "bn_rm":
            t = 0.3 * torch.randn(shape, generator=g)
        elif kind == "bn_rv":
            t = 0.5 + torch.rand(shape, generator=g)
        else:
            _, mean, std = kind
            t = mean + std * torch.randn(shape, generator=g)
        out[name] = t.to(torch.float32)
    return out


def draw(dist, shape, g):
    kind, a, b = dist
    if kind == "normal":
        return (a + b * torch.randn(shape, generator=g)).float()
    return (a + (b - a) * torch.rand(shape, generator=g)).float()


def make_inputs(net, g):
    """{N: (x, y_or_t)} as float32."""
    data = {}
    for n in BATCHES:
        x = draw(net.x_dist, [n] + net.input_shape, g)
        if net.labels is not None:
            yt = torch.randint(0, net.labels, [n], generator=g).float()
        else:
            yt = draw(("normal", 0.0, 0.5), [n] + net.target, g)
        data[n] = (x, yt)
    return data


def to_double(params32, kinds):
    P = {}
    for k, v in params32.items():
        t = v.double()
        if not is_buffer(kinds[k]):
            t.requires_grad_(True)
        P[k] = t
    return P


def loss_batches(net):
    if not net.has_loss:
        return ()
    return tuple(n for n in BATCHES if not (net.bn1d and n == 1))


def compute(net, params32, data):
    """Reference results from float32 params/inputs: dict of name -> float64 tensor."""
    kinds = {name: kind for name, _, kind in net.params}
    P = to_double(params32, kinds)
    trainable = [k for k in params32 if not is_buffer(kinds[k])]
    res = {}
    for n in BATCHES:
        x, yt = data[n]
        x = x.double()
        with torch.no_grad():
            out = net.forward(Ctx(P, train=False), x)[net.output]
        res[f"out.{n}"] = out
        if n in loss_batches(net):
            c = Ctx(P, train=True)
            V = net.forward(c, x)
            L = net.loss(P, V, yt.long() if net.labels is not None else yt.double())
            res[f"loss.{n}"] = L.detach().reshape(1)
            if n in GRAD_BATCHES:
                grads = torch.autograd.grad(L, [P[k] for k in trainable], allow_unused=True)
                for k, gr in zip(trainable, grads):
                    if gr is None:
                        raise RuntimeError(f"{net.name}: parameter {k} does not reach the loss")
                    res[f"grad.{n}.{k}"] = gr
            for k, v in c.after.items():
                res[f"after.{n}.{k}"] = v
    return res


def generate(net):
    """Returns (cnn text, weights bytes, io bytes, manifest line, info)."""
    torch.manual_seed(net.seed())
    g = torch.Generator().manual_seed(net.seed())
    params32 = init_params(net, g)
    data = make_inputs(net, g)
    res = compute(net, params32, data)
    out_shape = list(res["out.1"].shape[1:])
    if net.output_shape is not None:
        assert out_shape == net.output_shape, (net.name, out_shape)
    meta = {"format": "pt", "generator": "tests/reference/gen.py", "network": net.name}
    wbytes = st_encode(list(params32.items()), meta)
    io = []
    yname = "y" if net.labels is not None else "t"
    for n in BATCHES:
        x, yt = data[n]
        io += [(f"x.{n}", x), (f"{yname}.{n}", yt), (f"out.{n}", res[f"out.{n}"])]
        io += [(k, v) for k, v in res.items()
               if k.startswith((f"loss.{n}", f"grad.{n}.", f"after.{n}."))]
    iobytes = st_encode(io, dict(meta, input=shape_str(net.input_shape),
                                 output=shape_str(out_shape), has_loss=int(net.has_loss)))
    line = f"{net.name} {shape_str(net.input_shape)} {shape_str(out_shape)} {int(net.has_loss)}"
    return net.src, wbytes, iobytes, line, {"out_shape": out_shape, "res": res}


def shape_str(shape):
    return ",".join(str(s) for s in shape) if shape else "1"


def paths(name):
    return (os.path.join(HERE, "nets", name + ".cnn"),
            os.path.join(HERE, name + ".weights.safetensors"),
            os.path.join(HERE, name + ".io.safetensors"))


def write_all(nets):
    os.makedirs(os.path.join(HERE, "nets"), exist_ok=True)
    lines = []
    for net in nets:
        src, wb, iob, line, _ = generate(net)
        pc, pw, pio = paths(net.name)
        for p, b in ((pc, src.encode("utf-8")), (pw, wb), (pio, iob)):
            with open(p, "wb") as fh:
                fh.write(b)
        lines.append(line)
        print(f"{net.name:18s} {len(wb):9d} + {len(iob):9d} bytes   {line}")
    with open(os.path.join(HERE, "manifest.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------
# --check: re-read every file with the reader above and verify it


def check_all(nets):
    errors = []

    def err(msg):
        errors.append(msg)
        print("ERROR:", msg)

    with open(os.path.join(HERE, "manifest.txt")) as fh:
        manifest = [ln.split() for ln in fh.read().splitlines()]
    if [m[0] for m in manifest] != [n.name for n in nets]:
        err("manifest.txt does not list the nets in order")
    man = {m[0]: m for m in manifest}
    expected_files = {"gen.py", "manifest.txt", "nets", "run.sh", "check_one.sh", "check_net.c"}
    total = 0
    for net in nets:
        pc, pw, pio = paths(net.name)
        expected_files |= {os.path.basename(pw), os.path.basename(pio)}
        src, wb, iob, line, info = generate(net)
        with open(pc, encoding="utf-8") as fh:
            if fh.read() != src:
                err(f"{pc} differs from gen.py's text")
        if net.normative:
            ex = os.path.join(HERE, "..", "..", "examples", net.name + ".cnn")
            if os.path.exists(ex):
                with open(ex, encoding="utf-8") as fh:
                    if fh.read().split() != src.split():
                        print(f"note: examples/{net.name}.cnn differs from the spec's text")
        wdata = open(pw, "rb").read()
        iodata = open(pio, "rb").read()
        total += len(wdata) + len(iodata)
        # determinism: regenerated bytes must equal the files
        if wdata != wb:
            err(f"{pw}: regenerated bytes differ")
        if iodata != iob:       # another PyTorch build may round a last bit differently:
            print(f"note: {pio}: regenerated bytes differ (values are checked below)")
            fresh = dict(st_decode(iob)[0])
        if man.get(net.name) != line.split():
            err(f"manifest line for {net.name}: {man.get(net.name)} != {line.split()}")
        # independent parse
        try:
            wt, wmeta = st_decode(wdata)
            iot, iometa = st_decode(iodata)
        except Exception as e:                      # noqa: BLE001
            err(f"{net.name}: unreadable: {e}")
            continue
        want = [(name, shape) for name, shape, _ in net.params]
        got = [(name, list(t.shape)) for name, t in wt]
        if got != want:
            err(f"{net.name}: weights {got} != {want}")
        W = dict(wt)
        IO = dict(iot)
        for name, t in wt:
            if not torch.isfinite(t).all() or (t == 0).all():
                err(f"{net.name}: {name} is not finite or all zero")
            if name.endswith("running_var") and not (t > 0).all():
                err(f"{net.name}: {name} not positive")
        # expected io names and shapes
        out_shape = info["out_shape"]
        ynm = "y" if net.labels is not None else "t"
        kinds = {name: kind for name, _, kind in net.params}
        exp = {}
        for n in BATCHES:
            exp[f"x.{n}"] = [n] + net.input_shape
            exp[f"{ynm}.{n}"] = [n] + ([] if net.labels is not None else net.target)
            exp[f"out.{n}"] = [n] + out_shape
            if n in loss_batches(net):
                exp[f"loss.{n}"] = [1]
                if n in GRAD_BATCHES:
                    for name, shape, kind in net.params:
                        if not is_buffer(kind):
                            exp[f"grad.{n}.{name}"] = shape
                for name, shape, kind in net.params:
                    if kind in ("bn_rm", "bn_rv"):
                        exp[f"after.{n}.{name}"] = shape
        if iodata != iob:
            for k, v in iot:
                if k[0] in "xyt" and not torch.equal(v, fresh.get(k, v + 1)):
                    err(f"{net.name}: {k} is not what gen.py generates")
        got = {k: list(v.shape) for k, v in iot}
        if got != exp:
            err(f"{net.name}: io tensors differ: extra {sorted(set(got) - set(exp))} "
                f"missing {sorted(set(exp) - set(got))} "
                f"shape {[k for k in exp if k in got and got[k] != exp[k]]}")
            continue
        if net.labels is not None:
            for n in BATCHES:
                y = IO[f"y.{n}"]
                if not ((y == y.round()) & (y >= 0) & (y < net.labels)).all():
                    err(f"{net.name}: y.{n} not class indices")
        # recompute from what the files hold, compare with what they hold
        data = {n: (IO[f"x.{n}"], IO[f"{ynm}.{n}"]) for n in BATCHES}
        res = compute(net, W, data)
        for k, v in res.items():
            ref = IO[k].double()
            if not torch.isfinite(ref).all():
                err(f"{net.name}: {k} not finite")
            if not torch.allclose(v, ref, rtol=1e-6, atol=1e-7):
                err(f"{net.name}: {k} recomputed differs by {(v - ref).abs().max().item():.3g}")
            if k.startswith("grad.") and ref.abs().max() < 1e-6:
                err(f"{net.name}: {k} is (nearly) zero: a degenerate gradient reference")
        for n in BATCHES:
            o = IO[f"out.{n}"]
            if n > 1 and o.numel() > 1 and (o.std() == 0):
                err(f"{net.name}: out.{n} constant")
        print(f"ok {net.name:18s} {len(wdata) + len(iodata):9d} bytes  {' '.join(line.split()[1:])}")
    # nothing stray in the directory
    for f in os.listdir(HERE):
        if f not in expected_files and f != "__pycache__":
            err(f"unexpected file tests/reference/{f}")
    for f in os.listdir(os.path.join(HERE, "nets")):
        if f[:-4] not in {n.name for n in nets} or not f.endswith(".cnn"):
            err(f"unexpected file tests/reference/nets/{f}")
    errors += sensitivity_checks()
    print(f"{len(nets)} nets, {total} bytes of safetensors, {len(errors)} errors")
    return not errors


def sensitivity_checks():
    """The references must tell the right semantics from plausible wrong ones."""
    global maxpool, avgpool
    errs = []
    d = torch.float64
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 7, generator=gen, dtype=d)
    for kh, kw in ((2, 2), (4, 4), (2, 3), (3, 3), (5, 5)):
        w = torch.randn(2, 3, kh, kw, generator=gen, dtype=d)
        mine = Ctx({"k.weight": w}, False).conv("k", x, pad="same")
        if not torch.allclose(mine, F.conv2d(x, w, padding="same")):
            errs.append(f"pad=same {kh}x{kw} differs from PyTorch's padding='same'")
    h = x - 3.0
    if torch.allclose(maxpool(h, 3, 2, 1), F.max_pool2d(F.pad(h, (1, 1, 1, 1)), 3, 2)):
        errs.append("maxpool: -inf and zero padding agree: test input not negative enough")
    if torch.allclose(avgpool(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)):
        errs.append("avgpool: count_include_pad makes no difference")
    a = torch.randn(2, 7, 3, 3, generator=gen, dtype=d)
    for size, alpha, beta, k in ((5, 1e-4, 0.75, 2.0), (3, 0.5, 0.6, 1.5)):
        sq = F.pad(a * a, (0, 0, 0, 0, size // 2, (size - 1) // 2))
        s = sum(sq[:, i:i + 7] for i in range(size))
        if not torch.allclose(lrn(a, size, alpha, beta, k), a * (k + alpha / size * s) ** -beta):
            errs.append(f"lrn({size}, {alpha}, {beta}, {k}) differs from the formula")
    # the reference nets themselves: the pooling nets must depend on their semantics
    nets = {n.name: n for n in all_nets()}
    # (ref_maxpool_wide has no padding: it tests the vectorized 2x2 form)
    for name, which in (("ref_maxpool", "max"), ("ref_maxpool_rect", "max"),
                        ("ref_avgpool", "avg"), ("ref_avgpool_rect", "avg")):
        net = nets[name]
        g = torch.Generator().manual_seed(net.seed())
        params32 = init_params(net, g)
        data = make_inputs(net, g)
        good = compute(net, params32, data)["out.64"]
        saved = (maxpool, avgpool)
        if which == "max":
            def maxpool(h, k, stride=None, pad=0):          # noqa: F811 -- zero padding
                p = (pad, pad, pad, pad)
                return F.max_pool2d(F.pad(h, p), k, k if stride is None else stride)
        else:
            def avgpool(h, k, stride=None, pad=0):          # noqa: F811
                return F.avg_pool2d(h, k, k if stride is None else stride, pad, count_include_pad=True)
        bad = compute(net, params32, data)["out.64"]
        maxpool, avgpool = saved
        if torch.allclose(good, bad, rtol=1e-3, atol=1e-4):
            errs.append(f"{name}: output does not depend on the padding semantics")
    # the full-size additions: each net must depend on the semantics it tests
    for name, wrong in (("ref_avgpool_count_pad", "count_pad"), ("ref_bn_eps", "eps"),
                        ("ref_relu6_clip", "relu6"), ("ref_relu6_clip", "clip_lo"),
                        ("ref_relu6_clip", "clip_hi")):
        net = nets[name]
        g = torch.Generator().manual_seed(net.seed())
        params32 = init_params(net, g)
        data = make_inputs(net, g)
        good = compute(net, params32, data)["out.64"]
        WRONG.add(wrong)
        try:
            bad = compute(net, params32, data)["out.64"]
        finally:
            WRONG.discard(wrong)
        if torch.allclose(good, bad, rtol=1e-3, atol=1e-4):
            errs.append(f"{name}: output does not depend on {wrong}")
    # ceil = true: 9 -> 4 windows (floor gives 3); 8 -> 3, the 4th starting in the padding
    if list(F.max_pool2d(torch.zeros(1, 1, 8, 9), 3, 3, 1, ceil_mode=True).shape) != [1, 1, 3, 4]:
        errs.append("ceil_mode: ref_maxpool_ceil's sizes are not what its comment says")
    for e in errs:
        print("ERROR:", e)
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--check", action="store_true", help="verify the files instead of writing them")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    nets = all_nets()
    if args.check:
        sys.exit(0 if check_all(nets) else 1)
    write_all(nets)


if __name__ == "__main__":
    main()
