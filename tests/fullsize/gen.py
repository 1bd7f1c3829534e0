#!/usr/bin/python3
"""torchvision references for the full-size examples (run by tests/fullsize/run.sh).

    /usr/bin/python3 tests/fullsize/gen.py NET NAMES OUTDIR [--train]

NET is one of alexnet, vgg16, googlenet, resnet18, mobilenet_v2: torchvision's model of
that name (googlenet without auxiliary heads and without transform_input). NAMES is
cnnc's parameter list for examples/NET.cnn, one "name d0,d1,..." a line (what
`check_full names` prints), parameters and batchnorm buffers in source order.

The model gets random values (seeded by the net's name, so a run is reproducible):
conv and dense weights ~ N(0, 2 / fan_in) (He), biases ~ N(0, 0.1^2), batchnorm weight
~ U(0.5, 1.5), bias ~ N(2, 0.3^2) (see nearest_kink), and RANDOM running statistics, so that
inference-mode batchnorm is tested with statistics other than the identity. Its state_dict, num_batches_tracked aside, is
mapped onto NAMES in order; every shape must agree (anything else is an error that
names the first mismatch). The running statistics are then recalibrated to keep the
outputs moderate (see calibrate). Writes:

  OUTDIR/NET.weights.safetensors   the values under cnnc's names (float32)
  OUTDIR/NET.io.safetensors        x [2, 3, 224, 224] ~ N(0, 1), and out [2, 1000], the
                                   inference-mode output (eval(): dropout is the
                                   identity, batchnorm uses the running statistics)
and with --train also, in the io file:
  y [2]            random class labels (as floats)
  loss [1]         the training-mode softmax cross-entropy (mean over the batch)
  grad.P           d loss / d P for every parameter P (cnnc's name)
  after.B          every batchnorm buffer B after that one training-mode step
                   (momentum 0.1; running_var takes the unbiased batch variance)
  tol [1]          the bound for every gradient: max(1e-3, 4 times the worst relative
                   error of PyTorch's own float32 gradients; see float32_allowance)
  gscale.P [1]     for a gradient that is zero in exact arithmetic (MobileNet V2's
                   batchnorm biases before a 1x1 conv and a batchnorm: a constant shift
                   of a channel is what the next batchnorm subtracts), the largest
                   gradient entry of P's layer, the scale its rounding noise is
                   measured against (a relative error against 0 means nothing)
The training-mode reference sets every Dropout's p to 0 (dropout(0) is the identity),
as the program run.sh compiles for it does: dropout with p > 0 is random.

Every reference value is computed in float64 from the float32 values written, then
rounded to float32.
"""

import copy
import json
import math
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F
import torchvision

BATCH = 2


def build(name):
    """torchvision's model, in float64, without its own initialization (randomize
    overwrites every value; VGG-16's init alone takes seconds)."""
    m = torchvision.models
    saved = {f: getattr(torch.nn.init, f) for f in INITS}
    for f in INITS:
        setattr(torch.nn.init, f, lambda t, *a, **k: t)
    try:
        torch.set_default_dtype(torch.float64)
        if name == "googlenet":
            return m.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False)
        return getattr(m, name)(weights=None)
    finally:
        torch.set_default_dtype(torch.float32)
        for f, fn in saved.items():
            setattr(torch.nn.init, f, fn)


INITS = ("kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_", "constant_", "zeros_",
         "ones_", "trunc_normal_", "xavier_uniform_")


def randomize(sd, g):
    """Random float32 values for every entry of the state_dict (num_batches_tracked kept)."""
    out = {}
    for k, v in sd.items():
        shape = list(v.shape)
        if k.endswith("num_batches_tracked"):
            out[k] = v.clone()
        elif k.endswith("running_mean"):
            out[k] = 0.2 * torch.randn(shape, generator=g)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=g)
        elif v.dim() == 1 and is_bn(sd, k):
            base = k.rsplit(".", 1)[1]
            out[k] = 0.5 + torch.rand(shape, generator=g) if base == "weight" else BN_SHIFT + 0.3 * torch.randn(shape, generator=g)
        elif v.dim() == 1:                                    # a conv or dense bias
            out[k] = 0.1 * torch.randn(shape, generator=g)
        else:                                                 # a conv or dense weight
            fan_in = v[0].numel()
            out[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return out


def calibrate(model, g):
    """Random running statistics of a moderate scale. Random ones straight away make a
    deep net's inference-mode outputs grow layer after layer (ResNet-18's logits reach
    hundreds), so: one training-mode pass on another random batch with momentum 1 sets
    every batchnorm's running statistics to its batch statistics, which are then
    perturbed at random, running_mean by N(0, 0.2^2) standard deviations and
    running_var by a factor U(0.5, 1.5). Returns the float32 state_dict, loaded back
    into the model (the references use exactly the values written)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        saved = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 1.0
        model.train()
        with torch.no_grad():
            model(torch.randn([BATCH, 3, 224, 224], generator=g).double())
        for m, mom in zip(bns, saved):
            m.momentum = mom
            sd = m.running_var.sqrt()
            m.running_mean += 0.2 * sd * torch.randn(m.running_mean.shape, generator=g).double()
            m.running_var *= 0.5 + torch.rand(m.running_var.shape, generator=g).double()
            m.num_batches_tracked.zero_()
    sd32 = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(sd32)
    return sd32


def is_bn(sd, k):
    return k.rsplit(".", 1)[0] + ".running_mean" in sd


def read_names(path):
    names = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                name, dims = line.split()
                names.append((name, [int(d) for d in dims.split(",")]))
    return names


def mapping(sd, names, net):
    """torchvision key -> cnnc name, by order; every shape checked."""
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    if len(keys) != len(names):
        sys.exit(f"gen.py: {net}: torchvision has {len(keys)} parameters and buffers, "
                 f"cnnc's program {len(names)}")
    for i, (k, (n, shape)) in enumerate(zip(keys, names)):
        if list(sd[k].shape) != shape:
            sys.exit(f"gen.py: {net}: entry {i}: torchvision's {k} is {list(sd[k].shape)} but "
                     f"cnnc's {n} is {shape}")
    return dict(zip(keys, (n for n, _ in names)))


def st_write(path, tensors, meta):
    """tensors: list of (name, tensor); written as F32, streamed (VGG-16 is 553 MB)."""
    assert sys.byteorder == "little"
    header = {"__metadata__": meta}
    off = 0
    for name, t in tensors:
        n = 4 * t.numel()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h)
        for _, t in tensors:
            t.detach().to(torch.float32).contiguous().numpy().tofile(fh)   # little-endian here


def no_dropout(model):
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    train = "--train" in sys.argv
    if len(args) != 3:
        sys.exit(__doc__)
    net, names_path, outdir = args
    torch.set_num_threads(2)
    seed = zlib.crc32(net.encode())
    g = torch.Generator().manual_seed(seed)
    model = build(net)
    sd32 = randomize(model.state_dict(), g)
    to_cnnc = mapping(sd32, read_names(names_path), net)
    model.load_state_dict(sd32)                      # copied into the float64 model
    sd32 = calibrate(model, g)
    meta = {"format": "pt", "generator": "tests/fullsize/gen.py", "network": net}
    st_write(f"{outdir}/{net}.weights.safetensors", [(to_cnnc[k], sd32[k]) for k in to_cnnc], meta)

    x, y = draw_batch(model, g, net, train)
    model.eval()
    with torch.no_grad():
        out = model(x.double())
    io = [("x", x), ("out", out)]
    print(f"{net}: {sum(v.numel() for k, v in sd32.items() if not is_buffer(k))} parameters, "
          f"output std {out.std().item():.3g}, max |out| {out.abs().max().item():.3g}")
    if train:
        io += training_step(model, x, y, to_cnnc, net)
    st_write(f"{outdir}/{net}.io.safetensors", io, meta)


# Kinks. A float32 implementation and the float64 reference can take different branches
# of relu (or relu6) where a value is within float32 rounding of 0 (or 6), and of max
# pooling where a window's two largest values are that close. One such place moves
# the whole gradient of one element, and at batch 2 that alone can be 1e-2 of a weight
# gradient (the terms of a weight gradient cancel, so a single one is large against
# their sum). Two measures keep the gradient check meaningful: batchnorm biases about
# twice their weights put most of relu's inputs away from 0 (2.3% stay negative), and
# the batch is drawn again (up to DRAWS times) until no relu input is within
# MARGIN * rms of a kink and no pooling window's two largest values within MARGIN *
# rms of each other, in the float64 training-mode forward pass; if no draw is that
# clear, the one whose nearest kink is farthest. How far float32 strays depends on
# the order of its sums, which follows the CPU's vector width: MobileNet V2 at batch
# 2 has about one relu input per draw within 4e-7 rms of 0, and a draw whose nearest
# was 3.3e-7 rms flipped at batchnorm16 with AVX2's sums (gradients 1.8e-2 off) and
# not with AVX-512's.
DRAWS = 12
BN_SHIFT = float(os.environ.get("BN_SHIFT", "2"))
MARGIN = 3e-6


class Kinks:
    """Forward hooks that find a forward pass's nearest kink, in units of the rms of
    the tensor it is in."""

    def __init__(self, model):
        self.nearest, self.handles = math.inf, []
        for mod in model.modules():
            if isinstance(mod, (torch.nn.ReLU, torch.nn.ReLU6)):
                self.handles.append(mod.register_forward_pre_hook(self.relu))
            elif isinstance(mod, torch.nn.MaxPool2d):
                self.handles.append(mod.register_forward_pre_hook(self.pool))
            elif type(mod).__name__ == "BasicConv2d":       # GoogLeNet's: bn then F.relu
                self.handles.append(mod.bn.register_forward_hook(lambda m, i, o: self.near(o, 0.0)))

    def near(self, v, at):
        self.nearest = min(self.nearest, ((v - at).abs().min() / v.pow(2).mean().sqrt()).item())

    def relu(self, mod, inp):
        self.near(inp[0], 0.0)
        if isinstance(mod, torch.nn.ReLU6):
            self.near(inp[0], 6.0)

    def pool(self, mod, inp):
        v = inp[0]
        k, s, p = (mod.kernel_size, mod.stride, mod.padding)
        assert isinstance(k, int) and isinstance(s, int) and isinstance(p, int)
        extra = s if mod.ceil_mode else 0            # the windows ceil adds (a few more: stricter)
        w = F.unfold(F.pad(v, (p, p + extra, p, p + extra), value=float("-inf")), k, stride=s)
        top = w.reshape(v.shape[0], v.shape[1], k * k, -1).topk(2, dim=2).values
        gap = top[:, :, 0] - top[:, :, 1]
        # exact ties are copies of one value (GoogLeNet pools what a pooling made):
        # both branches lead back to the same element
        gap = gap[torch.isfinite(gap) & (gap > 0)]
        if gap.numel():
            self.nearest = min(self.nearest, (gap.min() / v.pow(2).mean().sqrt()).item())

    def remove(self):
        for h in self.handles:
            h.remove()


def nearest_kink(model, x):
    """The training-mode forward pass of x's nearest kink (in rms units)."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    kinks = Kinks(model)
    model.train()
    with torch.no_grad():
        model(x.double())
    kinks.remove()
    model.load_state_dict(saved)                     # the buffers as they were
    return kinks.nearest


def draw_batch(model, g, net, train):
    """x [2, 3, 224, 224] ~ N(0, 1) and labels y; for a gradient check, the first of
    DRAWS draws whose nearest kink is MARGIN rms away or more (else the draw whose
    nearest kink is farthest, and says so)."""
    no_dropout(model)
    best = None
    for attempt in range(DRAWS if train else 1):
        x = torch.randn([BATCH, 3, 224, 224], generator=g)
        y = torch.randint(0, 1000, [BATCH], generator=g)
        d = nearest_kink(model, x) if train else math.inf
        if best is None or d > best[0]:
            best = (d, x, y, attempt + 1)
        if d >= MARGIN:
            break
    if train:
        print(f"{net}: draw {best[3]}: nearest kink {best[0]:.2g} rms"
              + ("" if best[0] >= MARGIN else f", the farthest of {DRAWS} draws (none {MARGIN:g} away)"))
    return best[1], best[2]


def is_buffer(k):
    return k.endswith(("running_mean", "running_var", "num_batches_tracked"))


def training_step(model, x, y, to_cnnc, net):
    """Training-mode loss, gradients and buffers after, in float64, dropout p = 0."""
    no_dropout(model)
    model.train()
    model.zero_grad()
    loss = F.cross_entropy(model(x.double()), y)
    loss.backward()
    io = [("y", y.float()), ("loss", loss.detach().reshape(1))]
    sd = model.state_dict(keep_vars=True)
    layer_scale = {}
    for k, cn in to_cnnc.items():
        if not is_buffer(k):
            if sd[k].grad is None:
                sys.exit(f"gen.py: {net}: {k} gets no gradient")
            layer = cn.rsplit(".", 1)[0]
            layer_scale[layer] = max(layer_scale.get(layer, 0.0), sd[k].grad.abs().max().item())
    zeros = 0
    for k, cn in to_cnnc.items():
        v = sd[k]
        if is_buffer(k):
            io.append((f"after.{cn}", v.detach()))
            continue
        io.append((f"grad.{cn}", v.grad))
        scale = layer_scale[cn.rsplit(".", 1)[0]]
        if v.grad.abs().max().item() < 1e-6 * scale:     # zero but for rounding: see below
            io.append((f"gscale.{cn}", torch.tensor([scale])))
            zeros += 1
    print(f"{net}: training-mode loss {loss.item():.6g}; {zeros} gradients are zero "
          f"(a batchnorm bias before a 1x1 conv and a batchnorm: a constant shift cancels)")
    return io + float32_allowance(model, x, y, to_cnnc, dict(io), net)


def float32_allowance(model, x, y, to_cnnc, ref, net):
    """PyTorch's own float32 gradients against the float64 ones. Where a relu or a max
    pooling is within rounding of its kink, the two precisions take different branches
    and every gradient upstream of that place moves (by ~1e-2 at batch 2); two float32
    implementations flip at different places, so the fair bound for cnnc is net-wide:
    tol [1] = max(1e-3, 4 * PyTorch float32's worst relative error over all gradients)."""
    m32 = copy.deepcopy(model).float()
    m32.zero_grad()
    F.cross_entropy(m32(x), y).backward()
    sd = m32.state_dict(keep_vars=True)
    worst = (0.0, "-")
    for k, cn in to_cnnc.items():
        if is_buffer(k):
            continue
        want = ref[f"grad.{cn}"]
        floor = ref[f"gscale.{cn}"].item() if f"gscale.{cn}" in ref else 1e-6
        err = (sd[k].grad.double() - want).abs().max().item() / max(floor, want.abs().max().item())
        worst = max(worst, (err, cn))
    tol = max(1e-3, 4 * worst[0])
    print(f"{net}: PyTorch's float32 gradients: worst rel. error {worst[0]:.2e} ({worst[1]}): "
          f"cnnc's bound is {tol:.2g}")
    return [("tol", torch.tensor([tol]))]


if __name__ == "__main__":
    main()
