#!/usr/bin/env node
// quant_profile.js - ONNX Runtime per-node profile of one model (bench/quant --profile uses it).
//
// usage: node quant_profile.js ORT_DIR MODEL INPUT.npy PREFIX [--threads N] [--repeat N] [--opt LEVEL]
//   Runs MODEL (CPU provider, intra-op N threads (2), inter-op 1, sequential, graphOptimizationLevel
//   LEVEL ('all', ORT's default)) --repeat times (20) on INPUT.npy (the model's first input) with
//   enableProfiling, profileFilePrefix PREFIX, and saves ORT's optimized graph as PREFIX.opt.onnx.
//   Prints the profile file's path on stdout. The profile is Chrome-trace JSON: one "Node" event per
//   kernel run (name NODE_kernel_time, args.op_name), which bench/quant summarizes.
'use strict';

const fs = require('fs');
const path = require('path');

const argv = process.argv.slice(2);
if (argv.length < 4) {
  process.stderr.write('usage: node quant_profile.js ORT_DIR MODEL INPUT.npy PREFIX [--threads N] [--repeat N] [--opt L]\n');
  process.exit(2);
}
const [ortDir, model, input, prefix] = argv;
let threads = 2, repeat = 20, opt = 'all';
for (let i = 4; i < argv.length; i++) {
  const v = argv[i + 1];
  if (argv[i] === '--threads' && v) { threads = parseInt(v, 10); i++; }
  else if (argv[i] === '--repeat' && v) { repeat = parseInt(v, 10); i++; }
  else if (argv[i] === '--opt' && v) { opt = v; i++; }
  else { process.stderr.write(`quant_profile: unknown argument ${argv[i]}\n`); process.exit(2); }
}
const ort = require(path.join(path.resolve(ortDir), 'node_modules', 'onnxruntime-node'));

function readNpyF32(file) {
  const b = fs.readFileSync(file);
  const hlen = b.readUInt16LE(8);
  const h = b.toString('latin1', 10, 10 + hlen);
  if (!/'descr':\s*'<f4'/.test(h) || /'fortran_order':\s*True/.test(h)) throw new Error(`${file}: not a C-order float32 .npy`);
  const dims = h.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const off = 10 + hlen;
  const data = new Float32Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + b.length));
  return new ort.Tensor('float32', data, dims);
}

(async () => {
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: opt, enableProfiling: true, profileFilePrefix: prefix,
    optimizedModelFilePath: prefix + '.opt.onnx', logSeverityLevel: 3,
  });
  const feeds = { [sess.inputNames[0]]: readNpyF32(input) };
  for (let r = 0; r < repeat; r++) await sess.run(feeds);
  // endProfiling() writes the file; onnxruntime-node names it PREFIX_<date>.json
  const before = new Set(fs.readdirSync(path.dirname(path.resolve(prefix))));
  if (typeof sess.endProfiling === 'function') sess.endProfiling();
  await sess.release();
  const dir = path.dirname(path.resolve(prefix)), base = path.basename(prefix);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(base + '_') && f.endsWith('.json'))
    .map((f) => path.join(dir, f)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!files.length) { process.stderr.write('quant_profile: no profile file written\n'); process.exit(1); }
  void before;
  process.stdout.write(files[0] + '\n');
})().catch((e) => { process.stderr.write(`quant_profile: ${e.message}\n`); process.exit(1); });
