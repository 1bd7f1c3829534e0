#!/usr/bin/python3
"""Writes bench/RESULTS.md from the raw results of bench/peers/run.sh.

  python3 bench/peers/report.py RAW_DIR OUT.md

Python 3 standard library only. Every number in the tables is the median over
the rounds of the per-round medians the benchmark programs print. The
full-size sections (issue #13's acceptance lines, the five full-size nets,
the 3x3 convolutions one at a time) come from report_full.py.
"""
import glob
import json
import os
import re
import statistics
import sys

import report_full

SYSTEMS = ["cnnc", "torch", "torch_openblas", "ort"]
PEERS = ["torch", "torch_openblas", "ort"]
NETS = ["mlp", "lenet", "vgg_small"]
# cnnc's library built with --tune, measured like cnnc (not a peer: it only
# appears in its own section and in the per-round values)
TUNED = "cnnc_tuned"
TUNE_NETS = ["lenet", "vgg_small"]
ALL = SYSTEMS + [TUNED]


def jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def median(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt_rate(v):
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_us(v):
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 1000 else f"{v:.1f}"


def fmt_x(v):
    if v is None:
        return "—"
    return f"{v:.2f}×" if v < 10 else f"{v:,.0f}×" if v >= 100 else f"{v:.1f}×"


def fmt_mb(v):
    return "—" if v is None else f"{v:,.1f}"


def main():
    raw, out = sys.argv[1], sys.argv[2]
    machine = {}
    for row in jsonl(os.path.join(raw, "machine.json")):
        machine.update(row)
    errors = jsonl(os.path.join(raw, "errors.jsonl"))
    flops = {r["net"]: r["forward_flops"] for r in jsonl(os.path.join(raw, "flops.jsonl"))}
    compile_ms = {}
    for r in jsonl(os.path.join(raw, "compile.jsonl")):
        compile_ms.setdefault(r["net"], []).append(r["compile_ms"])
    peaks = jsonl(os.path.join(raw, "peak.jsonl"))
    # The peak: the highest of the probe runs' medians. On a shared machine a
    # run's median is lowered by other work; the highest is the machine's
    # capacity, and the conservative denominator for "% of peak".
    peak1 = max([p["gflops_1t"] for p in peaks if p.get("gflops_1t")], default=None)
    peak2 = max([p["gflops_2t"] for p in peaks if p.get("gflops_2t")], default=None)
    med2 = median([p.get("gflops_2t") for p in peaks])
    best2 = max([p.get("best_2t", 0) for p in peaks], default=None)
    tune = {r["net"]: r for r in jsonl(os.path.join(raw, "tune.jsonl")) if r.get("net")}

    # results[system][net][metric] = [per-round values]
    results = {s: {} for s in ALL}
    info = {s: {} for s in ALL}
    row_errors = {s: {} for s in ALL}
    rounds = sorted(glob.glob(os.path.join(raw, "r*.*.jsonl")))
    for path in rounds:
        for r in jsonl(path):
            s, n = r.get("system"), r.get("net")
            if s not in results or not n:
                continue
            for k in ("error", "train_error", "fwd_error"):
                if r.get(k):
                    row_errors[s].setdefault(n, []).append(r[k])
            for k in ("version", "blas", "openblas_coretype"):
                if k in r:
                    info[s][k] = r[k]
            for k, v in r.items():
                if isinstance(v, (int, float)) and k not in ("threads", "reps"):
                    results[s].setdefault(n, {}).setdefault(k, []).append(v)
    for s in ALL:
        for path in sorted(glob.glob(os.path.join(raw, f"r*.{s}.err"))):
            with open(path) as f:
                lines = [l.strip() for l in f if l.strip()]
            if lines:
                info[s].setdefault("stderr", lines[-1])

    def value(s, n, k):
        return median(results[s].get(n, {}).get(k, []))

    def reason(s, n):
        msgs = [e["error"] for e in errors if e.get("system") == s
                and (not re.match(r"^\w+: ", e["error"]) or e["error"].startswith(n + ":"))]
        msgs += row_errors[s].get(n, [])
        if not msgs and info[s].get("stderr"):
            msgs.append(info[s]["stderr"])
        return msgs[0] if msgs else "no result"

    cnnc_version = machine.get("cnnc_version", "")
    tv = info["torch"].get("version") or info["torch_openblas"].get("version") or ""
    blas = info["torch"].get("blas", "")
    blas_name = ("reference BLAS" if "/blas/libblas" in blas else
                 "OpenBLAS" if "openblas" in blas.lower() else blas or "BLAS unknown")
    if info["torch"].get("openblas_core"):
        blas_name += f", {info['torch']['openblas_core']} kernels"
    full = report_full.Full(raw, jsonl, median, fmt_x)
    label = {
        "cnnc": f"cnnc {cnnc_version}".strip(),
        "torch": f"PyTorch {tv} as installed ({blas_name})".replace("  ", " "),
        "torch_openblas": f"PyTorch {tv} + OpenBLAS".replace("  ", " "),
        "ort": f"ONNX Runtime {info['ort'].get('version', '')}".strip(),
    }
    short = {"torch": "torch", "torch_openblas": "torch+OpenBLAS", "ort": "ORT"}

    L = []
    L.append("# cnnc against PyTorch and ONNX Runtime")
    L.append("")
    L.append("Written by `sh bench/peers/run.sh` (`make bench`); do not edit by hand.")
    L.append("")
    L.append(f"- Machine: **{machine.get('model', '?')}** (`lscpu`'s model name), {machine.get('cpus', '?')} CPUs "
             f"({machine.get('cores', '?')}); AVX-512: {'yes' if machine.get('flags_avx512f') else 'no'}; "
             f"measured {machine.get('date', '?')}"
             + (f"; measured fp32 peak **{peak2:.0f} GFLOP/s on 2 threads**" if peak2 else "") + ".")
    if "minutes_small" in machine:
        L.append(f"- Run time: small nets {machine['minutes_small']:.0f} min "
                 f"({machine.get('rounds_done', '?')} of {machine.get('rounds', '?')} rounds), full-size nets "
                 f"{machine['minutes_full']:.0f} min ({machine.get('full_rounds_done', '?')} of "
                 f"{machine.get('full_rounds', '?')} rounds of {machine.get('full_seconds', '?')} s measures; "
                 f"rounds beyond the first stop when the next would overrun the {machine.get('budget_min', '?')}-minute "
                 "budget), single layers "
                 f"{machine['minutes_layers']:.0f} min. Load average during the full-size part: "
                 f"{machine.get('full_load_start', '?')} at its start, {machine.get('full_load_end', '?')} "
                 f"at its end, {machine.get('load_final', '?')} at the end of the run.")
    L.append(f"- Load average (1, 5, 15 min) at the start of the run: {machine.get('load_start', '?')}; "
             f"after the small nets: {machine.get('load_end', '?')}. The machine is shared: other "
             "work on it makes every number noisy (a load average of about 2 is the benchmark's own "
             "two threads; more means other work shared the machine; 10–30% between rounds is usual, more for "
             "2-thread latencies, where one descheduled thread stalls a parallel region). "
             "Compare ratios from the same run rather than absolute numbers across runs.")
    L.append(f"- Threads: {machine.get('threads', 2)} for every system. Small nets: each system ran "
             f"{machine.get('rounds_done', machine.get('rounds', '?'))} times in alternation (cnnc"
             + (", cnnc tuned" if results[TUNED] else "") + ", torch, torch+OpenBLAS, "
             "ORT, probe; again ...). In each run, each measurement warms up for about 1 s, then "
             f"times {machine.get('reps', '?')} repetitions of about {machine.get('rep_seconds', '?')} s "
             "and takes their median; the tables show the median over the rounds.")
    L.append("- Data: random inputs (uniform in [0, 1)) and random labels; the networks as in "
             "`examples/*.cnn` (the PyTorch definitions are in `bench/peers/torch_bench.py`).")
    L.append("")
    L.append("Systems:")
    L.append("")
    L.append(f"- **{label['cnnc']}**: the library from `bin/cnnc NET.cnn --lib`, driven through its "
             "C API by `bench/peers/cnnc_bench.c` (`NET_train_step`, `NET_forward`, "
             "`NET_set_threads(net, 2)`).")
    L.append(f"- **{label['torch']}**: Debian's `python3-torch` run by `/usr/bin/python3`, "
             + (f"version {machine['torch_deb']} (it reports itself as {tv}), " if machine.get("torch_deb") else "")
             + f"`torch.set_num_threads(2)`; it links `libblas.so.3`, here `{blas or '?'}`"
             + (" — the unoptimized reference implementation, which makes its `Linear` layers "
                "(matrix products) very slow; its convolutions use oneDNN." if blas_name == "reference BLAS" else ".")
             + " Training: `SGD` with the .cnn file's lr, momentum 0.9 and weight decay, "
             "`cross_entropy`; forward: eval mode under `torch.no_grad()`.")
    env_core = info["torch"].get("openblas_coretype")
    if env_core:
        L[-1] += (f" OpenBLAS's kernels as installed follow the environment's `OPENBLAS_CORETYPE={env_core}`"
                  " (set on this machine, outside the benchmark).")
    ob = info["torch_openblas"].get("blas", "")
    ob_core = info["torch_openblas"].get("openblas_coretype") or "SkylakeX"
    L.append(f"- **{label['torch_openblas']}**: the same PyTorch with Debian's OpenBLAS "
             + (f"(`{ob.split(', ')[-1]}`" if ob else "(`libopenblas0-pthread`")
             + (", installed; " if ob.startswith("/usr/") else ", unpacked under `build/bench/openblas` by "
                "`apt-get download`, not installed; ")
             + f"put first by `LD_LIBRARY_PATH`) with `OPENBLAS_CORETYPE={ob_core}` ("
             + ("its AVX-512 kernels; OpenBLAS 0.3.21 knows neither Zen 4 nor Zen 5" if ob_core == "SkylakeX"
                else "its AVX2 kernels: this CPU has no AVX-512")
             + ") and without the environment's `OPENBLAS_L2_SIZE`. PyTorch's convolutions use oneDNN either way; BLAS serves its "
             "`Linear` layers and some small convolutions.")
    L.append(f"- **{label['ort']}**: npm `onnxruntime-node` (CPU provider, intraOpNumThreads 2, "
             "interOpNumThreads 1, all graph optimizations) on the nets exported from PyTorch "
             "(`torch.onnx.export`, opset 13, dynamic batch); inference only, and each call goes "
             "through node's async `session.run`.")
    L.append("")

    # --- peak
    L.append("## Peak")
    L.append("")
    if peak2:
        chains, lanes = peaks[0].get("chains", 24), peaks[0].get("lanes", 16)
        L.append(f"fp32 FMA peak (`bench/probe/peak.c`: {chains} independent "
                 f"{'AVX-512' if lanes == 16 else 'AVX2'} FMA chains of {lanes} lanes per thread): "
                 f"**{peak1:.0f} GFLOP/s on 1 thread, {peak2:.0f} GFLOP/s on 2 threads**: the "
                 f"highest of the {len(peaks)} probe runs' medians (each of 7 runs; the 2-thread "
                 f"median over the probe runs {med2:.0f}, the fastest single run {best2:.0f}). The "
                 "probe ran after each round, while other work on the machine came and went; the "
                 "highest figure is the machine's capacity, and fractions of peak below are of it "
                 f"({peak2:.0f} GFLOP/s), which makes them conservative." + (" The 2-thread figure is well below twice the 1-thread one: "
                                       "the other core was busy with other work during the run, so every "
                                       "system's 2-thread numbers in this run are distorted (a parallel "
                                       "region waits for its descheduled thread)."
                                       if peak1 and peak2 < 1.6 * peak1 else ""))
    else:
        L.append("The peak probe is not available: "
                 + next((e["error"] for e in errors if e.get("system") == "peak"), "no result") + ".")
    L.append("")

    # --- issue #13, the full-size nets, the layers
    L += report_full.acceptance(full, value, peak2, tune)
    L += report_full.full_table(full, flops, peak2, machine)
    L += report_full.onnx_table(full)
    L += report_full.layers_table(full, peak2)

    # --- per net
    L.append("## Small networks: results per network")
    L.append("")
    L.append("Ratio columns are cnnc's speedup over the peer (> 1: cnnc is faster): "
             "cnnc ÷ peer for images/s, peer ÷ cnnc for latency. For peak RSS the ratio is "
             "cnnc ÷ peer (< 1: cnnc uses less memory). Peak RSS is the whole process's maximum "
             "resident set while training at batch 64 (for PyTorch in a child process that only "
             "trains; most of it is libtorch itself, see the row below it); ONNX Runtime is not "
             "trained. Compile time is `bin/cnnc --lib -v`'s total (median of 3).")
    L.append("")
    for n in NETS:
        if not any(n in results[s] for s in SYSTEMS) and n not in flops:
            continue
        f = flops.get(n)
        L.append(f"### {n}" + (f" ({f / 1e6:.3f} MFLOP forward per example)" if f else ""))
        L.append("")
        avail = {s: n in results[s] for s in SYSTEMS}
        hdr = "| | " + " | ".join(label[s] for s in SYSTEMS) + " | " + \
              " | ".join(f"cnnc/{short[p]}" for p in PEERS) + " |"
        L.append(hdr)
        L.append("|---" * (1 + len(SYSTEMS) + len(PEERS)) + "|")
        rows = [("training b=64 (images/s)", "train_ips", fmt_rate, "rate"),
                ("… on 1 thread (images/s)", "train_ips_1t", fmt_rate, None),
                ("forward b=256 (images/s)", "fwd_ips", fmt_rate, "rate"),
                ("latency b=1 (µs)", "latency_us", fmt_us, "lat"),
                ("peak RSS training (MB)", "peak_rss_mb", fmt_mb, "mem"),
                ("… RSS before training (MB)", "base_rss_mb", fmt_mb, None)]
        for title, k, fm, kind in rows:
            cells = []
            for s in SYSTEMS:
                v = value(s, n, k)
                if v is not None:
                    cells.append(fm(v))
                elif not avail[s] or (s != "ort" and k in ("train_ips", "fwd_ips")):
                    cells.append("not available" if not avail[s] else "failed")
                else:
                    cells.append("—")
            c = value("cnnc", n, k)
            for p in PEERS:
                v = value(p, n, k)
                if c is None or v is None or kind is None or c == 0 or v == 0:
                    cells.append("")
                elif kind == "rate" or kind == "mem":
                    cells.append(fmt_x(c / v))
                else:
                    cells.append(fmt_x(v / c))
            L.append(f"| {title} | " + " | ".join(cells) + " |")
        cm = median(compile_ms.get(n, []))
        L.append("| compile (ms) | " + (f"{cm:,.0f}" if cm is not None else "—") + " |"
                 + " |" * (len(SYSTEMS) - 1 + len(PEERS)))
        L.append("")
        t1, t2 = value("cnnc", n, "train_ips_1t"), value("cnnc", n, "train_ips")
        if t1 and t2:
            L.append(f"cnnc training at batch 64 from 1 to 2 threads: **{t2 / t1:.2f}×** "
                     f"({fmt_rate(t1)} → {fmt_rate(t2)} images/s)")
            L.append("")
        for s in SYSTEMS:
            if not avail[s]:
                L.append(f"- {label[s]}: not available: {reason(s, n)}")
            elif row_errors[s].get(n):
                L.append(f"- {label[s]}: {row_errors[s][n][0]}")
        L.append("")

    # --- cnnc --tune against cnnc
    tuned_errors = [e for e in errors if e.get("system") == TUNED]
    tnets = [n for n in TUNE_NETS
             if n in tune or n in results[TUNED] or n in results["cnnc"]
             or any(e["error"].startswith(n + ":") or e["error"].startswith(n + " ") for e in tuned_errors)]
    if tnets:
        budgets = sorted({t.get("budget") for t in tune.values() if t.get("budget")})
        L.append("## Tuned against untuned (cnnc --tune)")
        L.append("")
        L.append("`bin/cnnc NET.cnn --lib --tune` measures each GEMM kernel's register tiles (the rows × "
                 "vectors, or rows × columns, its micro-kernel computes at once) on this machine: the "
                 "default tile is measured first, and a candidate replaces it only if it is at least 3% "
                 "faster. The tuned library was built in this run with a fresh tuning cache"
                 + (" (" + ", ".join(f"`--tune-budget={b}`" for b in budgets) + ")" if budgets else "")
                 + ", and driven by the same `cnnc_bench.c` with the same arguments and "
                 f"{machine.get('threads', 2)} threads, right after the untuned library in every round; "
                 "medians over the rounds. The ratio is the tuned library's speedup (> 1: tuned is "
                 "better): tuned ÷ untuned for images/s, untuned ÷ tuned for latency.")
        L.append("")
        L.append("| network | | untuned | tuned | tuned ÷ untuned |")
        L.append("|---|---|---|---|---|")
        for n in tnets:
            for title, k, fm, kind in (("training b=64 (images/s)", "train_ips", fmt_rate, "rate"),
                                       ("forward b=256 (images/s)", "fwd_ips", fmt_rate, "rate"),
                                       ("latency b=1 (µs)", "latency_us", fmt_us, "lat")):
                u, t = value("cnnc", n, k), value(TUNED, n, k)
                cells = [fm(u) if u is not None else "not available" if n not in results["cnnc"] else "—",
                         fm(t) if t is not None else "not available" if n not in results[TUNED] else "—"]
                if u and t:
                    cells.append(fmt_x(t / u if kind == "rate" else u / t))
                else:
                    cells.append("")
                L.append(f"| {n} | {title} | " + " | ".join(cells) + " |")
        L.append("")
        shown = set()
        notes = []
        for n in tnets:
            if n not in results[TUNED]:
                notes.append(f"- {n}, tuned: not available: {reason(TUNED, n)}")
                shown.add(reason(TUNED, n))
            elif row_errors[TUNED].get(n):
                notes.append(f"- {n}, tuned: {row_errors[TUNED][n][0]}")
            if n not in results["cnnc"]:
                notes.append(f"- {n}, untuned: not available: {reason('cnnc', n)}")
        if notes:
            L.extend(notes)
            L.append("")

        def secs(v):
            if not isinstance(v, (int, float)):
                return "—"
            return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"

        for n in tnets:
            t = tune.get(n)
            L.append(f"### {n}: the tuning run")
            L.append("")
            if not t:
                L.append(f"Not available: {reason(TUNED, n)}")
                L.append("")
                shown.add(reason(TUNED, n))
                continue
            b, ts, cs = t.get("budget_s"), t.get("tune_s"), t.get("cached_compile_s")
            same = t.get("same_variants")
            k, imp, ck = t.get("kernels"), t.get("improved"), t.get("cached_kernels")
            L.append("| | |")
            L.append("|---|---|")
            L.append(f"| budget (`--tune-budget`) | {t.get('budget', '?')}" + (f" ({b:g} s)" if isinstance(b, (int, float)) and t.get("budget") != f"{b:g}s" else "") + " |")
            L.append(f"| tuning, wall time of `cnnc --lib --tune -v` | {secs(ts)}"
                     + (f" (measuring: {secs(t.get('tuner_s'))})" if isinstance(t.get("tuner_s"), (int, float)) else "") + " |")
            L.append(f"| second compile with the cache, without `--tune` (wall time) | {secs(cs)} |")
            L.append("| same variants as the tuning run | "
                     + ("yes" if same is True else "no" if same is False else "—")
                     + (f" ({ck} of {k} kernels' tiles from the cache)" if isinstance(ck, int) and isinstance(k, int) else "")
                     + " |")
            L.append(f"| GEMM kernels | {k if k is not None else '—'} |")
            L.append(f"| kernels improved (speedup > 1.00) | {imp if imp is not None else '—'} |")
            L.append("")
            checks = []
            if isinstance(b, (int, float)) and isinstance(ts, (int, float)):
                checks.append(f"tuning within the budget + 25% ({secs(1.25 * b)}): "
                              + ("**yes**" if ts <= 1.25 * b else "**no**"))
            if isinstance(cs, (int, float)):
                checks.append("second compile under 10 s: " + ("**yes**" if cs < 10 else "**no**"))
            if checks:
                L.append("Limits: " + "; ".join(checks) + ". \"Same variants\" compares the (tile, kernel) "
                         "pairs of the tuning run's `-v` table with those `bin/cnnc NET.cnn --summary "
                         "--tune-cache` lists for the second compile.")
                L.append("")
            msgs = [e["error"] for e in tuned_errors if e["error"].startswith(n + ":") and e["error"] not in shown]
            for m in msgs:
                L.append(f"- {m}")
                shown.add(m)
            if msgs:
                L.append("")
        rest = [e["error"] for e in tuned_errors if e["error"] not in shown]
        if rest:
            L.append("Problems with the tuned library during the run:")
            L.append("")
            for m in rest:
                L.append(f"- {m}")
            L.append("")

    # --- cnnc FLOP/s
    L.append("## cnnc's arithmetic rate")
    L.append("")
    L.append("FLOPs per example: forward as `bin/cnnc NET.cnn --summary` counts it (\"forward: N FLOPs "
             "per example\", multiply-add = 2 FLOPs, elementwise layers included); a training step is "
             "estimated as **3 × forward** (forward, plus the backward pass's two products of about "
             "the forward's size: gradients of the inputs and of the weights), the usual estimate, "
             "not a count.")
    L.append("")
    L.append("\"% of peak\" is of the measured 2-thread peak; \"% of 2×1t\" is of twice the 1-thread "
             "peak, the ceiling of two uncontended cores, which is the fairer figure when the 2-thread "
             "probe was slowed by other work.")
    L.append("")
    L.append("| network | forward MFLOP/example | training GFLOP/s | % of peak | % of 2×1t | "
             "forward b=256 GFLOP/s | % of peak | % of 2×1t | latency b=1 GFLOP/s |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for n in NETS:
        f = flops.get(n)
        if not f or n not in results["cnnc"]:
            continue
        t, fw, lat = value("cnnc", n, "train_ips"), value("cnnc", n, "fwd_ips"), value("cnnc", n, "latency_us")
        tg = t * 3 * f / 1e9 if t else None
        fg = fw * f / 1e9 if fw else None
        lg = f / (lat * 1e-6) / 1e9 if lat else None
        pct = lambda g: f"{100 * g / peak2:.1f}%" if g and peak2 else "—"
        pct1 = lambda g: f"{100 * g / (2 * peak1):.1f}%" if g and peak1 else "—"
        gf = lambda g: f"{g:.1f}" if g else "—"
        L.append(f"| {n} | {f / 1e6:.3f} | {gf(tg)} | {pct(tg)} | {pct1(tg)} | {gf(fg)} | {pct(fg)} | "
                 f"{pct1(fg)} | {gf(lg)} |")
    L.append("")

    # --- raw
    L.append("## Per-round values")
    L.append("")
    L.append("Medians of each round, in order (small nets: training img/s; forward img/s; latency µs; "
             "peak RSS MB. Full-size nets: latency ms; forward and training img/s at batch 16):")
    L.append("")
    L.append("```")
    for n in NETS:
        for s in ["cnnc", TUNED] + SYSTEMS[1:]:
            d = results[s].get(n)
            if not d:
                continue
            parts = []
            for k in ("train_ips", "fwd_ips", "latency_us", "peak_rss_mb"):
                if k in d:
                    parts.append(f"{k} " + " / ".join(f"{v:g}" for v in d[k]))
            L.append(f"{n:9s} {s:15s} " + "; ".join(parts))
    L += report_full.rounds_block(full)
    if peaks:
        L.append("peak probe GFLOP/s 1 thread " + " / ".join(f"{p.get('gflops_1t', 0):g}" for p in peaks)
                 + "; 2 threads " + " / ".join(f"{p.get('gflops_2t', 0):g}" for p in peaks))
    for n in NETS:
        if compile_ms.get(n):
            L.append(f"compile {n} ms " + " / ".join(f"{v:g}" for v in compile_ms[n] if v is not None))
    L.append("```")
    L.append("")
    other = [e for e in errors if not any(e["error"] in reason(e.get("system"), n)
                                          for n in NETS if e.get("system") in SYSTEMS)
             and not (e.get("system") == TUNED and tnets)]
    if other:
        L.append("Problems during the run:")
        L.append("")
        for e in other:
            L.append(f"- {e.get('system')}: {e['error']}")
        L.append("")

    with open(out, "w") as fo:
        fo.write("\n".join(L))
    readme = os.path.join(os.path.dirname(os.path.abspath(out)), "..", "README.md")
    print(report_full.update_readme(readme, report_full.readme_block(full, machine, peak2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
