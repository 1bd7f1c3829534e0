#!/usr/bin/python3
"""PyTorch's speed on the example networks, measured as cnnc_bench.c measures cnnc.

Run with Debian's python3-torch:  /usr/bin/python3 bench/peers/torch_bench.py [options]

  --nets mlp,lenet,vgg_small   which networks (default: all three)
  --threads T                  torch.set_num_threads(T) (default 2)
  --reps R, --rep-seconds S    R timed repetitions of about S seconds each
  --system NAME                the "system" label of the results (default torch)
  --export DIR                 instead of measuring: write DIR/NET.onnx for each
                               network (eval mode, opset 13, dynamic batch axis)

For each network it prints one JSON object on stdout:
  train_ips    training images/s at batch 64: SGD (the .cnn file's lr, momentum
               0.9, weight decay), cross-entropy, random data and labels; run
               in a child process (this script with --train-child NET) whose
               peak RSS (VmHWM, the same as ru_maxrss) is peak_rss_mb; its RSS
               before the first step is base_rss_mb (most of it is libtorch).
  fwd_ips      forward images/s at batch 256, eval mode, torch.no_grad()
  latency_us   forward latency at batch 1, likewise
Method: warm up for about a second, size a repetition to last about S seconds,
time R repetitions, report the median (and the min/max) of their rates.
If torch cannot be imported it prints {"system": "torch", "error": ...} per
network and exits with status 1.
"""
import argparse
import json
import os
import subprocess
import sys
import time

NETS = ["mlp", "lenet", "vgg_small"]
# lr, momentum, weight decay: as the train blocks of examples/*.cnn say.
TRAIN = {"mlp": (0.02, 0.9, 1e-4), "lenet": (0.02, 0.9, 1e-4), "vgg_small": (0.02, 0.9, 5e-4)}
TRAIN_BATCH, FWD_BATCH = 64, 256


def make_net(name):
    import torch.nn as nn
    if name == "mlp":
        # x -> flatten -> dense(256) -> relu -> dense(10)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10))
    if name == "vgg_small":
        # stage(c, n) = repeat(n, conv(c, 3x3, pad 1) -> relu) -> maxpool(2)
        # x -> stage(32, 2) -> stage(64, 2) -> flatten -> dense(256) -> relu
        #   -> dropout(0.5) -> dense(10)
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(256, 10))
    raise ValueError("unknown network " + name)


def timed(fn, reps, rep_seconds, warm_seconds=1.0):
    """Calls per second of fn(): median, min, max over reps repetitions."""
    t0 = time.perf_counter()
    calls = 0
    while True:
        fn()
        calls += 1
        t = time.perf_counter()
        if t - t0 >= warm_seconds and calls >= 3:
            break
    k = max(1, int(rep_seconds / ((t - t0) / calls)))
    rates = []
    for _ in range(reps):
        a = time.perf_counter()
        for _ in range(k):
            fn()
        rates.append(k / (time.perf_counter() - a))
    rates.sort()
    return rates[len(rates) // 2], rates[0], rates[-1]


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def train_child(name, threads, reps, rep_seconds):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = make_net(name)
    model.train()
    lr, mom, wd = TRAIN[name]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    x = torch.rand(TRAIN_BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (TRAIN_BATCH,))
    base = status_kb("VmRSS")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    med, lo, hi = timed(step, reps, rep_seconds)
    print(json.dumps({"train_ips": round(med * TRAIN_BATCH, 1),
                      "train_ips_min": round(lo * TRAIN_BATCH, 1),
                      "train_ips_max": round(hi * TRAIN_BATCH, 1),
                      "base_rss_mb": round(base / 1024, 1),
                      "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1)}))


def forward(name, threads, reps, rep_seconds):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = make_net(name)
    model.eval()
    xb = torch.rand(FWD_BATCH, 1, 28, 28)
    x1 = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        fm, fl, fh = timed(lambda: model(xb), reps, rep_seconds)
        lm, ll, lh = timed(lambda: model(x1), reps, rep_seconds)
    return {"fwd_ips": round(fm * FWD_BATCH, 1), "fwd_ips_min": round(fl * FWD_BATCH, 1),
            "fwd_ips_max": round(fh * FWD_BATCH, 1),
            "latency_us": round(1e6 / lm, 2), "latency_us_min": round(1e6 / lh, 2),
            "latency_us_max": round(1e6 / ll, 2)}


def blas_in_use():
    """The BLAS library mapped into this process (torch's Linear layers use it)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in os.path.basename(p):
                libs.add(os.path.realpath(p))
    return ", ".join(sorted(libs)) or "none mapped"


def export(directory, nets):
    import torch
    os.makedirs(directory, exist_ok=True)
    for name in nets:
        torch.manual_seed(1)
        model = make_net(name).eval()
        path = os.path.join(directory, name + ".onnx")
        torch.onnx.export(model, torch.rand(1, 1, 28, 28), path, opset_version=13,
                          input_names=["x"], output_names=["f"],
                          dynamic_axes={"x": {0: "batch"}, "f": {0: "batch"}},
                          do_constant_folding=True)
        print(json.dumps({"net": name, "onnx": path, "bytes": os.path.getsize(path)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rep-seconds", type=float, default=0.25)
    ap.add_argument("--export", metavar="DIR")
    ap.add_argument("--system", default="torch", help="the label of the results")
    ap.add_argument("--train-child", metavar="NET", help=argparse.SUPPRESS)
    a = ap.parse_args()
    nets = [n for n in a.nets.split(",") if n]

    if a.train_child:
        train_child(a.train_child, a.threads, a.reps, a.rep_seconds)
        return 0
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install
        for n in nets:
            print(json.dumps({"system": a.system, "net": n,
                              "error": "import torch failed: %s" % e}))
        return 1
    if a.export:
        export(a.export, nets)
        return 0

    status = 0
    for n in nets:
        r = {"system": a.system, "net": n, "version": torch.__version__, "threads": a.threads}
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--train-child", n,
                            "--threads", str(a.threads), "--reps", str(a.reps),
                            "--rep-seconds", str(a.rep_seconds)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            r.update(json.loads(p.stdout.strip().splitlines()[-1]))
        except Exception:
            r["train_error"] = "training child failed (status %d): %s" % (
                p.returncode, (p.stderr.strip().splitlines() or ["no output"])[-1])
            status = 1
        try:
            r.update(forward(n, a.threads, a.reps, a.rep_seconds))
        except Exception as e:
            r["fwd_error"] = "%s: %s" % (type(e).__name__, e)
            status = 1
        r["reps"] = a.reps
        r["blas"] = blas_in_use()
        r["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE", "")
        print(json.dumps(r), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
