#!/usr/bin/python3
"""torchvision models exported to ONNX with random weights, and their inputs
(run by tests/onnx/run.sh).

    /usr/bin/python3 tests/onnx/export.py OUTDIR NET...

For each NET (alexnet, vgg16, googlenet, resnet18, mobilenet_v2) writes
  OUTDIR/NET.onnx          torch.onnx.export at opset 13, eval mode, the batch
                           dimension symbolic ("batch"), input 'x', output 'out'
  OUTDIR/NET.x.safetensors x [2, 3, 224, 224] ~ N(0, 1) (float32), the input
                           `./NET forward` reads
  OUTDIR/NET.x.bin         the same values, raw little-endian float32 (for ORT)
The weights are torchvision's own initialization (googlenet: init_weights=True,
no auxiliary heads, transform_input=False) under a fixed seed, with random
batchnorm running statistics, so that the exported (folded or not) batchnorms
compute something other than the identity.
"""

import json
import os
import struct
import sys

import torch
import torchvision


def build(name):
    m = torchvision.models
    if name == "googlenet":
        return m.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    return getattr(m, name)(weights=None)


def randomize_bn(model, g):
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            mod.weight.data.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
            mod.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


def write_safetensors(path, name, t):
    data = t.contiguous().numpy().astype("<f4").tobytes()
    header = json.dumps({name: {"dtype": "F32", "shape": list(t.shape), "data_offsets": [0, len(data)]}})
    header += " " * (-len(header) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode() + data)
    os.replace(path + ".tmp", path)


def main():
    out, nets = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    for name in nets:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        model = build(name).eval()
        with torch.no_grad():
            randomize_bn(model, g)
        x = torch.randn(2, 3, 224, 224, generator=g)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, x, path + ".tmp", opset_version=13, input_names=["x"], output_names=["out"],
                          dynamic_axes={"x": {0: "batch"}, "out": {0: "batch"}})
        os.replace(path + ".tmp", path)
        write_safetensors(os.path.join(out, name + ".x.safetensors"), "x", x)
        with open(os.path.join(out, name + ".x.bin"), "wb") as f:
            f.write(x.numpy().astype("<f4").tobytes())
        print(f"{name}: {path} ({os.path.getsize(path)} bytes)", flush=True)


if __name__ == "__main__":
    main()
