#!/usr/bin/env node
// ONNX Runtime's outputs for tests/onnx/run.sh:
//   node tests/onnx/ort_run.js MODEL.onnx X.bin D0,D1,... OUT.bin
// X.bin holds the input (little-endian float32, or uint8 or int8 with a fifth
// argument TYPE) of shape D0,D1,...; OUT.bin gets the model's first output,
// float32; a model of several outputs also gives OUT.bin.K for each output K
// (float64, integers and booleans converted) and OUT.bin.names (a name a
// line). CPU provider, one thread, basic graph optimizations only (no fusions
// that reorder arithmetic).
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
  const [model, xfile, dims, outfile, type = 'float32'] = process.argv.slice(2);
  const shape = dims.split(',').map(Number);
  const buf = fs.readFileSync(xfile);
  const f = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const x = type === 'uint8' ? Uint8Array.from(f) : type === 'int8' ? Int8Array.from(f) : Float32Array.from(f);
  const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1,
    interOpNumThreads: 1, graphOptimizationLevel: 'basic' });
  const r = await s.run({ [s.inputNames[0]]: new ort.Tensor(type, x, shape) });
  const y = r[s.outputNames[0]];
  const f32 = Float32Array.from(y.data, Number);
  fs.writeFileSync(outfile, Buffer.from(f32.buffer));
  if (s.outputNames.length > 1) {
    s.outputNames.forEach((name, k) => {
      const v = Float64Array.from(r[name].data, Number);
      fs.writeFileSync(outfile + '.' + k, Buffer.from(v.buffer));
    });
    fs.writeFileSync(outfile + '.names', s.outputNames.join('\n') + '\n');
  }
  fs.writeFileSync(outfile + '.types', s.outputNames.map(name => r[name].type).join('\n') + '\n');
  console.log(JSON.stringify({ output: s.outputNames[0], dims: y.dims }));
}
main().catch(e => { console.error(String(e)); process.exit(1); });
