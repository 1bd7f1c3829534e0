#!/usr/bin/python3
"""The peak RSS of PyTorch training steps of torchvision's ResNet-18, measured
as bench/memory_step.c measures cnnc's.

Run with Debian's python3-torch and python3-torchvision:
  /usr/bin/python3 bench/memory_torch.py [--batch 16] [--threads 2] [--steps 2]

Makes torchvision.models.resnet18() (1000 classes, training mode), SGD with
lr 0.1, momentum 0.9, weight decay 1e-4 (examples/resnet18.cnn's train
block), and runs STEPS training steps (zero_grad, forward, cross-entropy,
backward, step) on one batch of random inputs and labels with
torch.set_num_threads(THREADS). Prints one JSON object:
  rss_start_mb   the resident set after importing torch and filling the batch
  rss_net_mb     after making the model and the optimizer
  peak_rss_mb    the peak resident set of the process (ru_maxrss) at the end
  seconds, loss  the steps' time and the last step's loss
"""
import argparse
import json
import resource
import time


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4 / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    import torch
    import torchvision
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.rand(a.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (a.batch,))
    start = rss_mb()
    model = torchvision.models.resnet18()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    made = rss_mb()
    t0 = time.time()
    for _ in range(a.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    secs = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"system": "torch " + torch.__version__, "net": "torchvision resnet18", "batch": a.batch,
                      "threads": a.threads, "steps": a.steps, "rss_start_mb": round(start, 1),
                      "rss_net_mb": round(made, 1), "peak_rss_mb": round(peak, 1),
                      "seconds": round(secs, 2), "loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    main()
