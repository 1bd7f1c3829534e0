#!/usr/bin/python3
"""torchvision references for the full-size examples (run by tests/fullsize/run.sh).

    /usr/bin/python3 tests/fullsize/gen.py NET NAMES OUTDIR [--train]

NET is one of alexnet, vgg16, googlenet, resnet18, mobilenet_v2: torchvision's model of
that name (googlenet without auxiliary heads and without transform_input). NAMES is
cnnc's parameter list for examples/NET.cnn, one "name d0,d1,..." a line (what
`check_full names` prints), parameters and batchnorm buffers in source order.

The model gets random values (seeded by the net's name, so a run is reproducible):
conv and dense weights ~ N(0, 2 / fan_in) (He), biases ~ N(0, 0.1^2), batchnorm weight
~ U(0.5, 1.5), bias ~ N(0, 0.1^2), and RANDOM running statistics, running_mean ~
N(0, 0.2^2) and running_var ~ U(0.5, 1.5), so that inference-mode batchnorm is tested
with statistics other than the identity. Its state_dict, num_batches_tracked aside, is
mapped onto NAMES in order; every shape must agree (anything else is an error that
names the first mismatch). Writes:

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
The training-mode reference sets every Dropout's p to 0 (dropout(0) is the identity),
as the program run.sh compiles for it does: dropout with p > 0 is random.

Every reference value is computed in float64 from the float32 values written, then
rounded to float32.
"""

import json
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
            out[k] = 0.5 + torch.rand(shape, generator=g) if base == "weight" else 0.1 * torch.randn(shape, generator=g)
        elif v.dim() == 1:                                    # a conv or dense bias
            out[k] = 0.1 * torch.randn(shape, generator=g)
        else:                                                 # a conv or dense weight
            fan_in = v[0].numel()
            out[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return out


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
    meta = {"format": "pt", "generator": "tests/fullsize/gen.py", "network": net}
    st_write(f"{outdir}/{net}.weights.safetensors", [(to_cnnc[k], sd32[k]) for k in to_cnnc], meta)

    model.load_state_dict(sd32)                      # copied into the float64 model
    x = torch.randn([BATCH, 3, 224, 224], generator=g)
    y = torch.randint(0, 1000, [BATCH], generator=g)
    model.eval()
    with torch.no_grad():
        out = model(x.double())
    io = [("x", x), ("out", out)]
    print(f"{net}: {sum(v.numel() for k, v in sd32.items() if not is_buffer(k))} parameters, "
          f"output std {out.std().item():.3g}, max |out| {out.abs().max().item():.3g}")
    if train:
        io += training_step(model, x, y, to_cnnc, net)
    st_write(f"{outdir}/{net}.io.safetensors", io, meta)


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
    for k, cn in to_cnnc.items():
        v = sd[k]
        if is_buffer(k):
            io.append((f"after.{cn}", v.detach()))
        else:
            if v.grad is None or v.grad.abs().max() == 0:
                sys.exit(f"gen.py: {net}: {k} gets no gradient")
            io.append((f"grad.{cn}", v.grad))
    print(f"{net}: training-mode loss {loss.item():.6g}")
    return io


if __name__ == "__main__":
    main()
