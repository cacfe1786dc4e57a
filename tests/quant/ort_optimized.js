#!/usr/bin/env node
// ort_optimized.js - load a model in ONNX Runtime (CPU) and save ORT's optimized graph, so that a
// test can count the kernels ORT really runs (QLinearConv, QGemm, ... or float fallbacks).
//
// usage: node ort_optimized.js ORT_DIR MODEL OUT.onnx [--opt basic|extended|all]
//   ORT_DIR  the directory holding node_modules/onnxruntime-node (tests/ort)
//   --opt    graphOptimizationLevel (default 'extended': every QDQ fusion, and a graph ORT can
//            still serialize; 'all' adds layout transformations)
// Exit status 0 on success, 1 when ORT fails to load the model, 2 on bad usage.
'use strict';

const path = require('path');

const argv = process.argv.slice(2);
if (argv.length < 3) {
  process.stderr.write('usage: node ort_optimized.js ORT_DIR MODEL OUT.onnx [--opt LEVEL]\n');
  process.exit(2);
}
const [ortDir, model, out] = argv;
let opt = 'extended';
for (let i = 3; i < argv.length; i++) {
  if (argv[i] === '--opt' && i + 1 < argv.length) opt = argv[++i];
  else {
    process.stderr.write(`ort_optimized: unknown argument ${argv[i]}\n`);
    process.exit(2);
  }
}
const ort = require(path.join(path.resolve(ortDir), 'node_modules', 'onnxruntime-node'));

(async () => {
  try {
    await ort.InferenceSession.create(model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: opt,
      optimizedModelFilePath: out,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
  } catch (e) {
    process.stderr.write(`ort_optimized: ${model}: ${e.message}\n`);
    process.exit(1);
  }
})();
