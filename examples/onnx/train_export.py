#!/usr/bin/python3
"""Trains a small CNN on Fashion-MNIST in PyTorch and exports it to ONNX:
the PyTorch half of examples/onnx (see README.md).

    /usr/bin/python3 examples/onnx/train_export.py OUT.onnx [--epochs N] [--examples N] [--data DIR]

Prints PyTorch's test accuracy ("pytorch test accuracy: 85.12%") and writes
OUT.onnx: opset 13, the batch dimension named, the weights as initializers.
"""
import argparse
import gzip

import numpy
import torch
from torch import nn


def idx(path):
    """An IDX file (gzipped) as a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return numpy.frombuffer(data, dtype=numpy.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--examples", type=int, default=60000, help="the first N training examples")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    load = lambda name: idx(f"{a.data}/{name}-ubyte.gz")
    x = torch.tensor(load("train-images-idx3")[:a.examples].astype(numpy.float32) / 255).unsqueeze(1)
    y = torch.tensor(load("train-labels-idx1")[:a.examples].astype(numpy.int64))
    tx = torch.tensor(load("t10k-images-idx3").astype(numpy.float32) / 255).unsqueeze(1)
    ty = torch.tensor(load("t10k-labels-idx1").astype(numpy.int64))

    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(a.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(tx).argmax(1) == ty).float().mean().item()
    print(f"pytorch test accuracy: {100 * acc:.2f}%")
    torch.onnx.export(net, tx[:1], a.out, opset_version=13, input_names=["image"], output_names=["scores"],
                      dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}})


if __name__ == "__main__":
    main()
