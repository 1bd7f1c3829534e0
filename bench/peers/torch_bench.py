#!/usr/bin/python3
"""PyTorch's speed on the example networks, measured as cnnc_bench.c measures cnnc.

Run with Debian's python3-torch:  /usr/bin/python3 bench/peers/torch_bench.py [options]

  --nets mlp,lenet,vgg_small   which networks (default: these three); the
                               full-size ones are alexnet, vgg16, googlenet,
                               resnet18, mobilenet_v2 (torchvision's models)
  --threads T                  torch.set_num_threads(T) (default 2)
  --reps R, --rep-seconds S    R timed repetitions of about S seconds each
  --seconds S, --min-calls M   the full-size nets and layers: calls bounded in time
  --batch B                    the full-size nets' and layers' batch (default 16)
  --system NAME                the "system" label of the results (default torch)
  --export DIR                 instead of measuring: write DIR/NET.onnx for each
                               network (eval mode, opset 13, dynamic batch axis)
  --layers SPEC;SPEC...        instead of nets: single nn.Conv2d layers, SPEC =
                               NAME:CIN:COUT:H:STRIDE (3x3, pad 1, no bias)

For each small network it prints one JSON object on stdout:
  train_ips    training images/s at batch 64: SGD (the .cnn file's lr, momentum
               0.9, weight decay), cross-entropy, random data and labels; run
               in a child process (this script with --train-child NET) whose
               peak RSS (VmHWM, the same as ru_maxrss) is peak_rss_mb; its RSS
               before the first step is base_rss_mb (most of it is libtorch).
  fwd_ips      forward images/s at batch 256, eval mode, torch.no_grad()
  latency_us   forward latency at batch 1, likewise
Method: warm up for about a second, size a repetition to last about S seconds,
time R repetitions, report the median (and the min/max) of their rates.

For each full-size network (random weights: torchvision's initialization):
  latency_ms   forward at batch 1, eval mode, torch.no_grad()
  fwd_ips      forward images/s at batch B, likewise
  train_ips    training step images/s at batch B (SGD as the .cnn file says,
               cross-entropy, train mode: dropout on, batch statistics)
Method (cnnc_bench.c's --seconds): one untimed call, then calls until S seconds
have passed and at least M calls were made; the median call's time.
For each layer: fwd_ips (no_grad) and grad_ips (forward and backward of the
data and weight gradients, as cnnc's loss_grad) at batch B.

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
FULL = ["alexnet", "vgg16", "googlenet", "resnet18", "mobilenet_v2"]
# lr, momentum, weight decay: as the train blocks of examples/*.cnn say (the
# language's default, sgd(0.01, 0.9) without weight decay, where there is none).
TRAIN = {"mlp": (0.02, 0.9, 1e-4), "lenet": (0.02, 0.9, 1e-4), "vgg_small": (0.02, 0.9, 5e-4),
         "alexnet": (0.01, 0.9, 5e-4), "vgg16": (0.01, 0.9, 5e-4), "googlenet": (0.01, 0.9, 0),
         "resnet18": (0.1, 0.9, 1e-4), "mobilenet_v2": (0.01, 0.9, 0)}
TRAIN_BATCH, FWD_BATCH = 64, 256


def make_net(name):
    import torch.nn as nn
    if name in FULL:
        import torchvision
        m = torchvision.models
        if name == "googlenet":   # as examples/googlenet.cnn: no auxiliary heads
            return m.googlenet(weights=None, aux_logits=False, transform_input=False,
                               init_weights=True)
        return getattr(m, name)(weights=None)
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


def bounded(fn, seconds, min_calls):
    """One untimed call of fn(), then calls until `seconds` have passed and
    `min_calls` were made: the median, fastest and slowest call's seconds, and
    the number of calls (cnnc_bench.c's bounded())."""
    fn()
    t = []
    t0 = a = time.perf_counter()
    while True:
        fn()
        b = time.perf_counter()
        t.append(b - a)
        a = b
        if len(t) >= 1000 or (b - t0 >= seconds and len(t) >= min_calls):
            break
    t.sort()
    k = len(t)
    med = t[k // 2] if k % 2 else 0.5 * (t[k // 2 - 1] + t[k // 2])
    return med, t[0], t[-1], k


def rate(key, n, med, lo, hi, calls):
    """The JSON fields of one bounded measure: images/s at batch n (or, for
    latency_ms, milliseconds per call)."""
    if key == "latency_ms":
        v = {key: round(1e3 * med, 3), key + "_min": round(1e3 * lo, 3),
             key + "_max": round(1e3 * hi, 3)}
    else:
        v = {key: round(n / med, 2), key + "_min": round(n / hi, 2), key + "_max": round(n / lo, 2)}
    v[key.split("_")[0] + "_calls"] = calls
    return v


def input_shape(name):
    return (3, 224, 224) if name in FULL else (1, 28, 28)


def full(name, threads, batch, seconds, min_calls):
    """A full-size net: latency at batch 1, forward and a training step at batch."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = make_net(name)
    x1 = torch.rand(1, *input_shape(name))
    xb = torch.rand(batch, *input_shape(name))
    y = torch.randint(0, 1000, (batch,))
    r = {"batch": batch}
    model.eval()
    with torch.no_grad():
        r.update(rate("latency_ms", 1, *bounded(lambda: model(x1), seconds, min_calls)))
        r.update(rate("fwd_ips", batch, *bounded(lambda: model(xb), seconds, min_calls)))
    model.train()
    lr, mom, wd = TRAIN[name]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), y).backward()
        opt.step()

    r.update(rate("train_ips", batch, *bounded(step, seconds, min_calls)))
    return r


def layer(spec, threads, batch, seconds, min_calls):
    """One 3x3 convolution (pad 1, no bias): forward, and forward + backward of
    the data and weight gradients (the gradient of sum(out))."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    name, cin, cout, h, stride = spec.split(":")
    cin, cout, h, stride = int(cin), int(cout), int(h), int(stride)
    conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    x = torch.rand(batch, cin, h, h)
    r = {"layer": name, "batch": batch}
    with torch.no_grad():
        r.update(rate("fwd_ips", batch, *bounded(lambda: conv(x), seconds, min_calls)))
    xg = x.clone().requires_grad_(True)
    g = torch.rand(batch, cout, (h - 1) // stride + 1, (h - 1) // stride + 1)

    def grad():
        conv.weight.grad = None
        xg.grad = None
        conv(xg).backward(g)

    r.update(rate("grad_ips", batch, *bounded(grad, seconds, min_calls)))
    return r


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


def blas_info():
    """The BLAS in use, OPENBLAS_CORETYPE, and the kernels OpenBLAS chose."""
    r = {"blas": blas_in_use(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}
    if "openblas" in r["blas"]:
        try:
            import ctypes
            lib = ctypes.CDLL(r["blas"].split(", ")[0])
            lib.openblas_get_corename.restype = ctypes.c_char_p
            r["openblas_core"] = lib.openblas_get_corename().decode()
        except Exception:
            pass
    return r


def export(directory, nets):
    import torch
    os.makedirs(directory, exist_ok=True)
    for name in nets:
        torch.manual_seed(1)
        model = make_net(name).eval()
        path = os.path.join(directory, name + ".onnx")
        torch.onnx.export(model, torch.rand(1, *input_shape(name)), path, opset_version=13,
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
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--min-calls", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--layers", default="")
    ap.add_argument("--export", metavar="DIR")
    ap.add_argument("--system", default="torch", help="the label of the results")
    ap.add_argument("--train-child", metavar="NET", help=argparse.SUPPRESS)
    a = ap.parse_args()
    nets = [n for n in a.nets.split(",") if n] if not a.layers else []

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
    for spec in [l for l in a.layers.split(";") if l]:
        r = {"system": a.system, "version": torch.__version__, "threads": a.threads}
        try:
            r.update(layer(spec, a.threads, a.batch, a.seconds, a.min_calls))
        except Exception as e:
            r.update({"layer": spec.split(":")[0], "error": "%s: %s" % (type(e).__name__, e)})
            status = 1
        print(json.dumps(r), flush=True)
    for n in nets:
        r = {"system": a.system, "net": n, "version": torch.__version__, "threads": a.threads}
        if n in FULL:
            try:
                r.update(full(n, a.threads, a.batch, a.seconds, a.min_calls))
            except Exception as e:
                r["error"] = "%s: %s" % (type(e).__name__, e)
                status = 1
            r.update(blas_info())
            print(json.dumps(r), flush=True)
            continue
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
        r.update(blas_info())
        print(json.dumps(r), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
