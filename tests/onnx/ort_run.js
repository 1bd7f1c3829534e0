#!/usr/bin/env node
// ONNX Runtime's outputs for tests/onnx/run.sh:
//   node tests/onnx/ort_run.js MODEL.onnx X.bin D0,D1,... OUT.bin
// X.bin holds the input (little-endian float32) of shape D0,D1,...; OUT.bin
// gets the model's first output, float32. CPU provider, one thread, basic
// graph optimizations only (no fusions that reorder arithmetic).
// onnxruntime-node is looked for in $ORT_MODULES, then bench/peers/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

const dirs = [process.env.ORT_MODULES, path.join(__dirname, '../../bench/peers/node_modules')].filter(Boolean);
let ort = null;
for (const d of dirs) {
  try { ort = require(path.join(d, 'onnxruntime-node')); break; } catch (e) { /* next */ }
}
if (!ort) { console.error('onnxruntime-node not found'); process.exit(77); }

async function main() {
  const [model, xfile, dims, outfile] = process.argv.slice(2);
  const shape = dims.split(',').map(Number);
  const buf = fs.readFileSync(xfile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1,
    interOpNumThreads: 1, graphOptimizationLevel: 'basic' });
  const r = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(x), shape) });
  const y = r[s.outputNames[0]];
  fs.writeFileSync(outfile, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.length * 4));
  console.log(JSON.stringify({ output: s.outputNames[0], dims: y.dims }));
}
main().catch(e => { console.error(String(e)); process.exit(1); });
