"""The full-size part of bench/RESULTS.md: issue #13's acceptance lines, the
five full-size networks side by side, and the 3x3 convolutions one at a time.
Used by bench/peers/report.py; reads the RAW/full.* and RAW/layer* files that
bench/peers/fullsize.sh and bench/peers/layers.sh write.

Every figure is the median over the rounds of the per-round medians.
"""
import glob
import os
import re

FULL = ["alexnet", "vgg16", "googlenet", "resnet18", "mobilenet_v2"]
TITLE = {"alexnet": "AlexNet", "vgg16": "VGG-16", "googlenet": "GoogLeNet",
         "resnet18": "ResNet-18", "mobilenet_v2": "MobileNet V2"}
SYSTEMS = ["cnnc", "torch", "torch_openblas", "ort"]
TORCHES = ["torch", "torch_openblas"]
METRICS = [("latency_ms", "forward latency, batch 1 (ms)", "lat"),
           ("fwd_ips", "forward, batch 16 (images/s)", "rate"),
           ("train_ips", "training step, batch 16 (images/s)", "rate")]
# issue #13's targets
LAT_X, FWD_X, STRETCH_X, TRAIN_X = 1.0, 1.0, 1.2, 1.5
LAYER_FWD, LAYER_BWD = 0.75, 0.60


def per_round(raw, prefix, jsonl, median, key="net"):
    """results[system][name][field] = [per-round values] from RAW/PREFIX.rN.SYSTEM.jsonl."""
    res, info = {}, {}
    for path in sorted(glob.glob(os.path.join(raw, prefix + ".r*.*.jsonl"))):
        for r in jsonl(path):
            s, n = r.get("system"), r.get(key)
            if not s or not n:
                continue
            if key == "layer" and r.get("mode"):
                n = (n, r["mode"])
            for k in ("version", "blas", "openblas_coretype", "openblas_core", "error"):
                if k in r:
                    info.setdefault(s, {})[k] = r[k]
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("threads", "batch"):
                    res.setdefault(s, {}).setdefault(n, {}).setdefault(k, []).append(v)
    return res, info


class Full:
    """The full-size results of one run, and their formatting."""

    def __init__(self, raw, jsonl, median, fmt_x):
        self.raw, self.median, self.fmt_x = raw, median, fmt_x
        self.res, self.info = per_round(raw, "full", jsonl, median)
        lres, _ = per_round(raw, "layers", jsonl, median, key="layer")
        self.layers = lres
        self.shapes = jsonl(os.path.join(raw, "layer_shapes.jsonl"))
        self.tune = {r["net"]: r for r in jsonl(os.path.join(raw, "full.tune.jsonl"))}
        self.nets = [n for n in FULL if any(n in self.res.get(s, {}) for s in SYSTEMS)]

    def value(self, s, n, k):
        return self.median(self.res.get(s, {}).get(n, {}).get(k, []))

    def lvalue(self, s, name, mode, k):
        return self.median(self.layers.get(s, {}).get((name, mode) if mode else name, {}).get(k, []))

    def speedup(self, c, p, kind):
        """cnnc's speedup over a peer: > 1 when cnnc is faster."""
        if not c or not p:
            return None
        return c / p if kind == "rate" else p / c

    def best_torch(self, n, k):
        """The faster PyTorch configuration's figure, and which it is."""
        vals = [(self.value(s, n, k), s) for s in TORCHES if self.value(s, n, k)]
        return max(vals) if vals else (None, None)


def fmt_ms(v):
    return "—" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ips(v):
    return "—" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_metric(kind, v):
    return fmt_ms(v) if kind == "lat" else fmt_ips(v)


def yes_no(ok):
    return "—" if ok is None else "**met**" if ok else "**not met**"


# --- issue #13's acceptance lines ------------------------------------------------

def acceptance(F, small, peak2, tune_small):
    """Issue #13's acceptance lines, each with the measured ratio and whether it holds."""
    L = ["## Issue #13: the acceptance lines", ""]
    L.append("Each line as issue #13 states it, measured in this run (2 threads for every "
             "system). Ratios are cnnc's speedup (> 1: cnnc is faster): images/s ÷ images/s, "
             "or the peer's latency ÷ cnnc's. \"PyTorch\" for the training line is the faster "
             "of the two PyTorch configurations below (as installed, and with OpenBLAS's "
             "kernels for this CPU), so a line marked met holds against both.")
    L.append("")
    L.append("| line | target | measured | |")
    L.append("|---|---|---|---|")
    L += full_lines(F)
    L += layer_lines(F, peak2)
    L += small_lines(small)
    L += tune_lines(F, tune_small)
    L.append("| all reference suites pass (fused, `--no-fuse`, tuned, ASan, every convolution "
             "algorithm forced) | — | not measured by `make bench`: `make check` | — |")
    L.append("| bench/RESULTS.md and the README carry the full-size table with the CPU, date "
             "and peak | — | this file carries them, and `make bench` writes the same table "
             "with the CPU, date and peak into the README (its \"Full-size speed\") | **met** |")
    L.append("")
    return L


def full_lines(F):
    L = []
    for n in F.nets:
        for k, title, kind in METRICS:
            c = F.value("cnnc", n, k)
            if k == "train_ips":
                p, ps = F.best_torch(n, k)
                target, peer = TRAIN_X, ("PyTorch+OpenBLAS" if ps == "torch_openblas" else "PyTorch")
            else:
                p, target, peer = F.value("ort", n, k), LAT_X if kind == "lat" else FWD_X, "ORT"
            x = F.speedup(c, p, kind)
            what = {"latency_ms": "latency b=1", "fwd_ips": "forward b=16",
                    "train_ips": "training b=16"}[k]
            meas = (f"{F.fmt_x(x)} ({fmt_metric(kind, c)} vs {fmt_metric(kind, p)}"
                    f"{' ms' if kind == 'lat' else ' img/s'})" if x else "not available")
            stretch = ""
            if x and k != "train_ips":
                stretch = f"; stretch {STRETCH_X:.1f}×: " + ("met" if x >= STRETCH_X else "not met")
            L.append(f"| {TITLE[n]} {what} vs {peer} | ≥ {target:.1f}× | {meas}{stretch} | "
                     f"{yes_no(None if x is None else x >= target)} |")
    return L


def layer_rates(F, peak2):
    """Per layer shape: (shape row, cnnc fwd GFLOP/s, cnnc bwd GFLOP/s, torch fwd, torch bwd)."""
    rows = []
    for sh in F.shapes:
        name, fl = sh["layer"], sh["flops"]
        fwd = F.lvalue("cnnc", name, "forward", "fwd_ips")
        gf = F.lvalue("cnnc", name, "g_forward", "fwd_ips")
        gg = F.lvalue("cnnc", name, "g_grad", "grad_ips")
        cf = fwd * fl / 1e9 if fwd else None
        cb = backward_gflops(fl, gf, gg)
        tf_ = F.lvalue("torch", name, None, "fwd_ips")
        tg = F.lvalue("torch", name, None, "grad_ips")
        tf = tf_ * fl / 1e9 if tf_ else None
        tb = backward_gflops(fl, tf_, tg)
        rows.append((sh, cf, cb, tf, tb))
    return rows


def backward_gflops(flops, fwd_ips, grad_ips):
    """2 x the forward FLOPs in (time of forward + backward) - (time of forward)."""
    if not fwd_ips or not grad_ips:
        return None
    t = 1 / grad_ips - 1 / fwd_ips
    return 2 * flops / t / 1e9 if t > 0 else None


def layer_lines(F, peak2):
    rows = layer_rates(F, peak2)
    if not rows or not peak2:
        return ["| per-layer 3×3 convolutions of ResNet-18 and VGG-16 | | not available | — |"]
    L = []
    for i, (what, frac) in enumerate((("forward", LAYER_FWD), ("backward (data + weight gradients)", LAYER_BWD))):
        vals = [(r[1 + i], r[0]["layer"]) for r in rows if r[1 + i]]
        if not vals:
            L.append(f"| per-layer {what} | ≥ {100 * frac:.0f}% of peak | not available | — |")
            continue
        met = sum(1 for v, _ in vals if v >= frac * peak2)
        lo, hi = min(vals), max(vals)
        L.append(f"| 3×3 convolutions of ResNet-18 and VGG-16, {what} | ≥ {100 * frac:.0f}% of the "
                 f"{peak2:.0f} GFLOP/s peak, each layer | {met} of {len(vals)} shapes; "
                 f"{100 * lo[0] / peak2:.0f}% ({lo[1]}) to {100 * hi[0] / peak2:.0f}% ({hi[1]}) | "
                 f"{yes_no(met == len(vals) and len(vals) == len(rows))} |")
    return L


def small_lines(small):
    """small(system, net, key) -> the small nets' medians."""
    L = []
    checks = [("LeNet training b=64 vs PyTorch as installed", 10.0, "lenet", "train_ips", "torch", "rate"),
              ("LeNet forward b=256 vs ORT", 2.0, "lenet", "fwd_ips", "ort", "rate"),
              ("MLP forward b=256 vs ORT", 1.0, "mlp", "fwd_ips", "ort", "rate")]
    for title, target, n, k, peer, kind in checks:
        c, p = small("cnnc", n, k), small(peer, n, k)
        x = c / p if c and p else None
        meas = f"{x:.2f}× ({c:,.0f} vs {p:,.0f} img/s)" if x else "not available"
        if n == "lenet" and k == "train_ips":
            ob = small("torch_openblas", n, k)
            if c and ob:
                meas += f"; {c / ob:.2f}× PyTorch+OpenBLAS"
        L.append(f"| {title} | ≥ {target:g}× | {meas} | {yes_no(None if x is None else x >= target)} |")
    lat = small("cnnc", "lenet", "latency_us")
    L.append(f"| LeNet latency b=1 | ≤ 15 µs | " + (f"{lat:.1f} µs" if lat else "not available")
             + f" | {yes_no(None if lat is None else lat <= 15)} |")
    return L


def tune_lines(F, tune_small):
    L = []
    for n, t in sorted(tune_small.items()):
        again, ident = t.get("again_tuner_s"), t.get("again_identical")
        if t.get("again_s") is None:
            L.append(f"| `--tune` twice with one cache ({n}) | measures nothing, byte-identical "
                     f"library | not available | — |")
            continue
        measured = ("no tuning line in `-v`" if again is None else f"measured for {again:g} s")
        objs = t.get("again_same_objects")
        lib = ("byte-identical" if ident else
               "different, but only in its members' names (the same object code)" if objs else
               "different object code" if objs is False else "different")
        ok = ident is True and (again is None or again == 0)
        L.append(f"| `--tune` twice with one cache ({n}) | second compile measures nothing, "
                 f"byte-identical library | {measured}; library {lib} ({t['again_s']:g} s wall) | "
                 f"{yes_no(ok)} |")
    for n in F.tune:
        u, t = F.value("cnnc", n, "train_ips"), F.value("cnnc_tuned", n, "train_ips")
        x = t / u if u and t else None
        L.append(f"| tuned ≥ 1.1× untuned, {TITLE.get(n, n)} training b=16 "
                 f"(`--tune-budget={F.tune[n].get('budget')}`) | ≥ 1.1× | "
                 + (f"{x:.2f}× ({fmt_ips(t)} vs {fmt_ips(u)} img/s)" if x else "not available")
                 + f" | {yes_no(None if x is None else x >= 1.1)} |")
    return L


# --- the full-size table ------------------------------------------------------------

def torch_label(F, s):
    i = F.info.get(s, {})
    blas = i.get("blas", "")
    lib = ("reference BLAS" if "/blas/libblas" in blas else
           "OpenBLAS" if "openblas" in blas.lower() else blas or "BLAS unknown")
    core = f", {i['openblas_core']} kernels" if i.get("openblas_core") else ""
    return ("PyTorch as installed" if s == "torch" else "PyTorch + OpenBLAS") + f" ({lib}{core})"


def full_table(F, flops, peak2, machine):
    if not F.nets:
        return []
    L = ["## Full-size networks", ""]
    L.append("The five full-size examples (`examples/*.cnn`, 3×224×224 inputs, 1000 classes, random "
             "weights and inputs, random labels), 2 threads for every system. Latency: `forward` "
             "on one example; forward: inference on a batch of 16; training step: forward, "
             "backward and an SGD step (the `.cnn` file's lr, momentum and weight decay, or "
             "the language's default sgd(0.01, 0.9)) on a batch of 16, in training mode. "
             f"Each measure: one untimed call, then calls until {machine.get('full_seconds', '?')} s have "
             "passed and at least 2 were made, the median call; the table is the median over the "
             f"{machine.get('full_rounds_done', '?')} rounds (systems alternated net by net). cnnc through "
             "its C API (`bench/peers/cnnc_bench.c`), PyTorch on torchvision's models "
             "(`torch_bench.py`), ONNX Runtime on those models exported by `torch.onnx.export` "
             "(opset 13, eval mode, dynamic batch; `ort_bench.js`). Ratios: cnnc's speedup "
             "(> 1: cnnc is faster).")
    L.append("")
    hdr = ["cnnc", torch_label(F, "torch"), torch_label(F, "torch_openblas"),
           f"ONNX Runtime {F.info.get('ort', {}).get('version', '')}".strip(),
           "cnnc ÷ ORT", "cnnc ÷ best PyTorch", "cnnc % of peak"]
    L.append("| | " + " | ".join(hdr) + " |")
    L.append("|---" * (len(hdr) + 1) + "|")
    for n in F.nets:
        for k, title, kind in METRICS:
            L.append(full_row(F, n, k, title, kind, flops.get(n), peak2))
    L.append("")
    L.append("\"cnnc % of peak\": the forward FLOPs `bin/cnnc NET.cnn --summary` counts, per "
             "second, of the measured 2-thread peak; a training step is taken as 3 × the forward "
             "FLOPs (an estimate). A peer's cell says why when it has no figure.")
    L.append("")
    for s in SYSTEMS:
        for n in F.nets:
            if n not in F.res.get(s, {}) and s in F.info and F.info[s].get("error"):
                L.append(f"- {s}, {n}: {F.info[s]['error']}")
    L.append("")
    return L


def full_row(F, n, k, title, kind, flops, peak2):
    cells = []
    for s in SYSTEMS:
        v = F.value(s, n, k)
        cells.append(fmt_metric(kind, v) if v else ("–" if s == "ort" and k == "train_ips" else "not available"))
    c = F.value("cnnc", n, k)
    o = F.value("ort", n, k) if k != "train_ips" else None
    p, _ = F.best_torch(n, k)
    cells.append(F.fmt_x(F.speedup(c, o, kind)) if o and c else "")
    cells.append(F.fmt_x(F.speedup(c, p, kind)) if p and c else "")
    g = None
    if c and flops and peak2:
        g = (flops / (c * 1e-3) if kind == "lat" else c * flops * (3 if k == "train_ips" else 1)) / 1e9
    cells.append(f"{100 * g / peak2:.0f}%" if g else "")
    return f"| {TITLE[n]}: {title} | " + " | ".join(cells) + " |"


def onnx_table(F):
    """cnnc on the ONNX files ONNX Runtime runs (`cnnc NET.onnx --lib`, system
    cnnc_onnx) against cnnc on the hand-written examples (issue #14: the same
    speed)."""
    nets = [n for n in F.nets if n in F.res.get("cnnc_onnx", {})]
    if not nets:
        return []
    L = ["## The same networks imported from ONNX", ""]
    L.append("`cnnc NET.onnx --lib --loss softmax_cross_entropy` on the files ONNX Runtime runs "
             "(torchvision's models exported at opset 13 in eval mode, so PyTorch's exporter "
             "has folded each batchnorm into its convolution), measured in the same rounds as "
             "the hand-written `examples/NET.cnn`. Ratio: the imported model's speedup over the "
             "hand-written one (1.00: the same speed).")
    L.append("")
    L.append("| | cnnc, examples/NET.cnn | cnnc, NET.onnx | .onnx ÷ .cnn |")
    L.append("|---|---|---|---|")
    for n in nets:
        for k, title, kind in METRICS[:2]:
            c, o = F.value("cnnc", n, k), F.value("cnnc_onnx", n, k)
            L.append(f"| {TITLE[n]}: {title} | {fmt_metric(kind, c) if c else 'not available'} | "
                     f"{fmt_metric(kind, o) if o else 'not available'} | "
                     f"{F.fmt_x(F.speedup(o, c, kind)) if o and c else ''} |")
    L.append("")
    return L


# --- the layers ---------------------------------------------------------------------

def layers_table(F, peak2):
    rows = layer_rates(F, peak2)
    if not rows:
        return []
    pct = lambda g: f"{g:.0f} ({100 * g / peak2:.0f}%)" if g and peak2 else "—"
    L = ["## The 3×3 convolutions of ResNet-18 and VGG-16, one at a time", ""]
    L.append("cnnc has no per-layer profile, so each distinct shape is its own one-layer program "
             "(`bench/peers/layers.sh`): `x -> conv(Cout, 3x3, stride, pad = 1) -> f` for the "
             "forward figure (`NET_forward`), and `x * s -> conv(...) -> f` with `loss = mse(f, t)` "
             "(s a learned scalar, so that the input's gradient is needed) for the backward: "
             "`NET_loss_grad`'s time minus that program's `NET_forward` time is the data and weight "
             "gradients together (plus the mse and s gradients, a few passes over the layer's "
             "input and output: the figure is slightly low). The layer alone, so no fusion with a "
             "following ReLU or batchnorm. PyTorch: one `nn.Conv2d` (oneDNN), forward under "
             "`no_grad`, and forward + backward with the input requiring a gradient, the same "
             "subtraction. Batch 16, 2 threads; GFLOP/s with 2·Cin·Cout·9·Ho·Wo FLOPs per example "
             "forward and twice that backward; in brackets, % of the measured 2-thread peak "
             f"({peak2:.0f} GFLOP/s)." if peak2 else "")
    L.append("")
    L.append("| layer | net | Cin → Cout | input | stride | layers | MFLOP/example | cnnc forward | "
             "cnnc backward | PyTorch forward | PyTorch backward |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for sh, cf, cb, tf, tb in rows:
        L.append(f"| {sh['layer']} | {TITLE.get(sh['net'], sh['net'])} | {sh['cin']} → {sh['cout']} | "
                 f"{sh['h']}×{sh['h']} | {sh['stride']} | {sh['count']} | {sh['flops'] / 1e6:,.0f} | "
                 f"{pct(cf)} | {pct(cb)} | {pct(tf)} | {pct(tb)} |")
    for net in ("resnet18", "vgg16"):
        L.append(weighted_row(rows, net, pct))
    L.append("")
    L.append(f"Targets (issue #13): forward ≥ {100 * LAYER_FWD:.0f}% of peak, backward ≥ "
             f"{100 * LAYER_BWD:.0f}%. \"all\" rows: every 3×3 convolution of the net, the time of "
             "each shape times its count, as one rate.")
    L.append("")
    return L


def weighted_row(rows, net, pct):
    """All of a net's 3x3 convolutions as one rate: total FLOPs over total time."""
    cells = []
    for i in range(1, 5):
        fl = t = 0
        for r in rows:
            sh, g = r[0], r[i]
            if sh["net"] != net:
                continue
            if not g:
                fl = None
                break
            f = sh["flops"] * sh["count"] * (2 if i in (2, 4) else 1)
            fl, t = fl + f, t + f / g
        cells.append(pct(fl / t) if fl and t else "—")
    n = sum(r[0]["count"] for r in rows if r[0]["net"] == net)
    fl = sum(r[0]["flops"] * r[0]["count"] for r in rows if r[0]["net"] == net)
    return (f"| **all** | {TITLE[net]} | | | | {n} | {fl / 1e6:,.0f} | " + " | ".join(cells) + " |")


# --- per-round values -----------------------------------------------------------------

def rounds_block(F):
    L = []
    for n in F.nets:
        for s in SYSTEMS + ["cnnc_tuned"]:
            d = F.res.get(s, {}).get(n)
            if not d:
                continue
            parts = [f"{k} " + " / ".join(f"{v:g}" for v in d[k])
                     for k, _, _ in METRICS if k in d]
            L.append(f"{n:12s} {s:15s} " + "; ".join(parts))
    return L


# --- the README's copy of the full-size table --------------------------------------

README_BEGIN = "<!-- make bench writes from here to the end marker (bench/peers/report_full.py); do not edit -->"
README_END = "<!-- end of make bench's full-size table -->"


def readme_block(F, machine, peak2):
    """The README's full-size table: each net's three figures beside its peer's."""
    if not F.nets:
        return None
    ort = F.info.get("ort", {}).get("version", "")
    rounds = machine.get("full_rounds_done", "?")
    L = [README_BEGIN,
         f"Full-size speed, from `make bench` (bench/RESULTS.md, {machine.get('date', '?')}, "
         f"{machine.get('cpus', '?')} CPUs of an {machine.get('model', '?')}"
         + (f", measured fp32 peak {peak2:.0f} GFLOP/s on 2 threads" if peak2 else "")
         + f", {rounds} round{'s' if rounds != 1 else ''}; 2 threads for every system; ratios > 1: "
         "cnnc faster; PyTorch is Debian's, the faster of its two configurations; "
         f"ONNX Runtime {ort} on the models exported at opset 13):".replace("  ", " "),
         "",
         "| | latency b=1, ms: cnnc / ORT | forward b=16, img/s: cnnc / ORT | "
         "training b=16, img/s: cnnc / PyTorch |",
         "|---|---|---|---|"]
    for n in F.nets:
        cells = []
        for k, _, kind in METRICS:
            c = F.value("cnnc", n, k)
            p = F.best_torch(n, k)[0] if k == "train_ips" else F.value("ort", n, k)
            x = F.speedup(c, p, kind)
            cells.append(f"{fmt_metric(kind, c)} / {fmt_metric(kind, p)}"
                         + (f" ({x:.2f}x)" if x else ""))
        L.append(f"| {n} | " + " | ".join(cells) + " |")
    L.append(README_END)
    return "\n".join(L)


def update_readme(path, block):
    """Replaces the README's block between the markers (written whole, then renamed).
    Returns what it did, for the run's log."""
    if block is None:
        return "README.md: no full-size results, left as it was"
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        return f"README.md: not updated ({e.strerror})"
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        return "README.md: not updated (its full-size table's markers are missing)"
    text = text[:i] + block + text[j + len(README_END):]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return "README.md: full-size table updated"
