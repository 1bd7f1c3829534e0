#!/usr/bin/env node
// ONNX Runtime's inference speed on the example networks, measured as
// cnnc_bench.c and torch_bench.py measure theirs.
//
// Install once (the CPU binaries ship in the npm package; the install script,
// which only fetches GPU providers, is not needed):
//   (cd bench/peers && npm install --ignore-scripts)
// Run:
//   node bench/peers/ort_bench.js DIR [--nets mlp,lenet,vgg_small] [--threads T]
//        [--reps R] [--rep-seconds S]
// DIR holds NET.onnx, as written by `torch_bench.py --export DIR`.
//
// Session: CPU execution provider, intraOpNumThreads T (default 2),
// interOpNumThreads 1, sequential execution, all graph optimizations.
// For each network it prints one JSON object: fwd_ips (images/s at batch 256)
// and latency_us (batch 1): warm up for about a second, size a repetition to
// last about S seconds, time R repetitions, median (and min/max) of their
// rates. Random inputs uniform in [0, 1). A network that fails prints
// {"system": "ort", "net": ..., "error": ...}; the exit status is then 1.
//
// The full-size nets (alexnet, vgg16, googlenet, resnet18, mobilenet_v2;
// 3x224x224 inputs, 1000 classes) are measured as cnnc_bench.c's --seconds
// mode measures cnnc: latency_ms at batch 1 and fwd_ips at batch B (--batch,
// default 16), each one untimed call, then calls until S seconds (--seconds,
// default 3) have passed and at least M (--min-calls, default 2) were made;
// the median call's time.
'use strict';

const path = require('path');

function parseArgs(argv) {
  const a = { dir: null, nets: ['mlp', 'lenet', 'vgg_small'], threads: 2, reps: 7, repSeconds: 0.25,
              seconds: 3, minCalls: 2, batch: 16 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === '--nets') a.nets = argv[++i].split(',').filter(Boolean);
    else if (v === '--threads') a.threads = parseInt(argv[++i], 10);
    else if (v === '--reps') a.reps = parseInt(argv[++i], 10);
    else if (v === '--rep-seconds') a.repSeconds = parseFloat(argv[++i]);
    else if (v === '--seconds') a.seconds = parseFloat(argv[++i]);
    else if (v === '--min-calls') a.minCalls = parseInt(argv[++i], 10);
    else if (v === '--batch') a.batch = parseInt(argv[++i], 10);
    else if (!a.dir && !v.startsWith('--')) a.dir = v;
    else throw new Error('unknown argument: ' + v);
  }
  if (!a.dir) throw new Error('usage: ort_bench.js DIR [--nets ...] [--threads T] [--reps R] [--rep-seconds S]');
  return a;
}

const now = () => Number(process.hrtime.bigint()) * 1e-9;

// Calls per second of `await fn()`: [median, min, max] over `reps` repetitions.
async function timed(fn, reps, repSeconds, warmSeconds = 1.0) {
  const t0 = now();
  let calls = 0, t;
  for (;;) {
    await fn();
    calls++;
    t = now();
    if (t - t0 >= warmSeconds && calls >= 3) break;
  }
  const k = Math.max(1, Math.floor(repSeconds / ((t - t0) / calls)));
  const rates = [];
  for (let r = 0; r < reps; r++) {
    const a = now();
    for (let j = 0; j < k; j++) await fn();
    rates.push(k / (now() - a));
  }
  rates.sort((x, y) => x - y);
  return [rates[rates.length >> 1], rates[0], rates[rates.length - 1]];
}

const FULL = ['alexnet', 'vgg16', 'googlenet', 'resnet18', 'mobilenet_v2'];
const shapeOf = (net) => (FULL.includes(net) ? [3, 224, 224] : [1, 28, 28]);

function randomInput(ort, n, shape) {
  const data = new Float32Array(n * shape.reduce((p, d) => p * d, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.random();
  return new ort.Tensor('float32', data, [n, ...shape]);
}

// cnnc_bench.c's bounded(): one untimed call, then calls until `seconds`
// have passed and `minCalls` were made: [median, fastest, slowest] seconds
// per call, and the number of calls.
async function bounded(fn, seconds, minCalls) {
  await fn();
  const t = [];
  const t0 = now();
  let a = t0;
  for (;;) {
    await fn();
    const b = now();
    t.push(b - a);
    a = b;
    if (t.length >= 1000 || (b - t0 >= seconds && t.length >= minCalls)) break;
  }
  t.sort((x, y) => x - y);
  const k = t.length;
  const med = k % 2 ? t[k >> 1] : 0.5 * (t[(k >> 1) - 1] + t[k >> 1]);
  return [med, t[0], t[k - 1], k];
}

// The full-size measures of one session: latency_ms (batch 1), fwd_ips (batch).
async function full(ort, session, net, a) {
  const input = session.inputNames[0], output = session.outputNames[0];
  const shape = shapeOf(net);
  const x1 = randomInput(ort, 1, shape), xb = randomInput(ort, a.batch, shape);
  const check = await session.run({ [input]: x1 });
  if (check[output].dims.join(',') !== '1,1000') throw new Error('unexpected output shape ' + check[output].dims);
  const [lm, ll, lh, lc] = await bounded(() => session.run({ [input]: x1 }), a.seconds, a.minCalls);
  const [fm, fl, fh, fc] = await bounded(() => session.run({ [input]: xb }), a.seconds, a.minCalls);
  return {
    batch: a.batch,
    latency_ms: +(1e3 * lm).toFixed(3), latency_ms_min: +(1e3 * ll).toFixed(3), latency_ms_max: +(1e3 * lh).toFixed(3),
    latency_calls: lc,
    fwd_ips: +(a.batch / fm).toFixed(2), fwd_ips_min: +(a.batch / fh).toFixed(2), fwd_ips_max: +(a.batch / fl).toFixed(2),
    fwd_calls: fc,
  };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    for (const n of a.nets)
      console.log(JSON.stringify({ system: 'ort', net: n, error: 'cannot load onnxruntime-node: ' + e.message.split('\n')[0] }));
    process.exit(1);
  }
  const version = (ort.env && ort.env.versions && ort.env.versions.node) || 'unknown';
  let status = 0;
  for (const n of a.nets) {
    const r = { system: 'ort', net: n, version, threads: a.threads };
    try {
      const session = await ort.InferenceSession.create(path.join(a.dir, n + '.onnx'), {
        executionProviders: ['cpu'],
        intraOpNumThreads: a.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      if (FULL.includes(n)) {
        Object.assign(r, await full(ort, session, n, a));
        if (session.release) await session.release();
        console.log(JSON.stringify(r));
        continue;
      }
      const input = session.inputNames[0], output = session.outputNames[0];
      const xb = randomInput(ort, 256, shapeOf(n)), x1 = randomInput(ort, 1, shapeOf(n));
      const check = await session.run({ [input]: x1 });
      if (check[output].dims.join(',') !== '1,10') throw new Error('unexpected output shape ' + check[output].dims);
      const [fm, fl, fh] = await timed(() => session.run({ [input]: xb }), a.reps, a.repSeconds);
      const [lm, ll, lh] = await timed(() => session.run({ [input]: x1 }), a.reps, a.repSeconds);
      Object.assign(r, {
        fwd_ips: +(fm * 256).toFixed(1), fwd_ips_min: +(fl * 256).toFixed(1), fwd_ips_max: +(fh * 256).toFixed(1),
        latency_us: +(1e6 / lm).toFixed(2), latency_us_min: +(1e6 / lh).toFixed(2), latency_us_max: +(1e6 / ll).toFixed(2),
        reps: a.reps,
      });
      if (session.release) await session.release();
    } catch (e) {
      r.error = String(e.message || e).split('\n')[0];
      status = 1;
    }
    console.log(JSON.stringify(r));
  }
  process.exit(status);
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(2);
});
