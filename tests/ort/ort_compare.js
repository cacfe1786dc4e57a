#!/usr/bin/env node
// ort_compare.js - run two ONNX models in ONNX Runtime (CPU) on the same seeded random inputs
// and check that every output of B is bitwise identical to A's.
//
// usage: node ort_compare.js A.onnx B.onnx [--batch N] [--seq L] [--seed S] [--vocab V]
//
// Inputs are generated from A's input metadata (session.inputMetadata):
//   float32/float64: standard normal values; int64/int32: ids uniform in [0, V) (default 100);
//   uint8/int8: uniform bytes; bool: random.
//   Symbolic or unknown dims: the first axis takes --batch (default 2), any other axis
//   takes --seq (default 8, e.g. a sequence length). Fixed dims are used as they are.
// Both sessions run single-threaded with the same options, so results are deterministic.
// Exit status: 0 all outputs identical (one line on stdout); 1 a mismatch or a model that
// fails to load/run (message on stderr naming the output and the max difference); 2 usage.
'use strict';

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stderr.write(`ort_compare: cannot load onnxruntime-node (run 'npm ci' in ${__dirname}): ${e.message}\n`);
  process.exit(1);
}

function usage(msg) {
  if (msg) process.stderr.write(`ort_compare: ${msg}\n`);
  process.stderr.write('usage: node ort_compare.js A.onnx B.onnx [--batch N] [--seq L] [--seed S] [--vocab V]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opt = { batch: 2, seq: 8, seed: 0, vocab: 100, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name) => {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v)) usage(`${name} needs a non-negative integer`);
      return parseInt(v, 10);
    };
    if (a === '--batch') opt.batch = num(a);
    else if (a === '--seq') opt.seq = num(a);
    else if (a === '--seed') opt.seed = num(a);
    else if (a === '--vocab') opt.vocab = num(a);
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else opt.files.push(a);
  }
  if (opt.files.length !== 2) usage('need exactly two model files');
  if (opt.batch < 1 || opt.seq < 1 || opt.vocab < 1) usage('--batch, --seq and --vocab must be >= 1');
  return opt;
}

// mulberry32: small, seeded, reproducible PRNG returning floats in [0, 1)
function makeRng(seed) {
  let s = (seed ^ 0x9e3779b9) >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    let u = next();
    while (u <= 1e-12) u = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  return { next, normal };
}

function resolveShape(shape, opt) {
  return shape.map((d, axis) => {
    if (typeof d === 'number' && Number.isInteger(d) && d >= 0) return d;
    return axis === 0 ? opt.batch : opt.seq; // symbolic ("batch", "seq") or unknown
  });
}

function makeInput(meta, opt, rng) {
  if (!meta.isTensor) throw new Error(`input '${meta.name}' is not a tensor; not supported`);
  const dims = resolveShape(meta.shape || [], opt);
  const n = dims.reduce((a, b) => a * b, 1);
  let data;
  switch (meta.type) {
    case 'float32': data = Float32Array.from({ length: n }, rng.normal); break;
    case 'float64': data = Float64Array.from({ length: n }, rng.normal); break;
    case 'int64': data = BigInt64Array.from({ length: n }, () => BigInt(Math.floor(rng.next() * opt.vocab))); break;
    case 'int32': data = Int32Array.from({ length: n }, () => Math.floor(rng.next() * opt.vocab)); break;
    case 'uint8': data = Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 256)); break;
    case 'int8': data = Int8Array.from({ length: n }, () => Math.floor(rng.next() * 256) - 128); break;
    case 'bool': data = Uint8Array.from({ length: n }, () => (rng.next() < 0.5 ? 1 : 0)); break;
    default: throw new Error(`input '${meta.name}' has dtype ${meta.type}; not supported by ort_compare`);
  }
  return new ort.Tensor(meta.type, data, dims);
}

function bytesOf(t) {
  const d = t.data;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

function maxDiff(a, b) {
  let m = 0;
  let nanMismatch = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Number(a[i]);
    const y = Number(b[i]);
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) nanMismatch++;
      continue;
    }
    const d = Math.abs(x - y);
    if (d > m || Number.isNaN(d)) m = d;
  }
  return { max: m, nanMismatch };
}

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

function fmtMeta(m) {
  return `${m.name}:${m.type}[${(m.shape || []).join(',')}]`;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const [fa, fb] = opt.files;
  const sopt = {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  let sa, sb;
  try { sa = await ort.InferenceSession.create(fa, sopt); } catch (e) { throw new Error(`${fa}: ONNX Runtime cannot load it: ${e.message}`); }
  try { sb = await ort.InferenceSession.create(fb, sopt); } catch (e) { throw new Error(`${fb}: ONNX Runtime cannot load it: ${e.message}`); }

  const problems = [];
  // same declared inputs/outputs (names, dtypes, shapes)
  const ia = sa.inputMetadata.map(fmtMeta).join(' ');
  const ib = sb.inputMetadata.map(fmtMeta).join(' ');
  if (ia !== ib) problems.push(`inputs differ: A ${ia} | B ${ib}`);
  const oa = sa.outputMetadata.map(fmtMeta).join(' ');
  const ob = sb.outputMetadata.map(fmtMeta).join(' ');
  if (oa !== ob) problems.push(`outputs differ: A ${oa} | B ${ob}`);

  const rng = makeRng(opt.seed);
  const feeds = {};
  for (const meta of sa.inputMetadata) feeds[meta.name] = makeInput(meta, opt, rng);
  const ra = await sa.run(feeds).catch((e) => { throw new Error(`${fa}: run failed: ${e.message}`); });
  const rb = await sb.run(feeds).catch((e) => { throw new Error(`${fb}: run failed: ${e.message}`); });

  const summary = [];
  for (const name of sa.outputNames) {
    const ta = ra[name];
    const tb = rb[name];
    if (!tb) { problems.push(`output '${name}' missing from B`); continue; }
    const desc = `${name}:${ta.type}[${ta.dims.join(',')}]`;
    summary.push(desc);
    if (ta.type !== tb.type) { problems.push(`output '${name}': dtype ${ta.type} vs ${tb.type}`); continue; }
    if (ta.dims.join(',') !== tb.dims.join(',')) {
      problems.push(`output '${name}': shape [${ta.dims}] vs [${tb.dims}]`);
      continue;
    }
    if (ta.type === 'string') {
      const i = firstDiff(ta.data, tb.data);
      if (i >= 0) problems.push(`output '${name}': strings differ first at flat index ${i}`);
      continue;
    }
    if (!bytesOf(ta).equals(bytesOf(tb))) {
      const { max, nanMismatch } = maxDiff(ta.data, tb.data);
      let n = 0;
      for (let i = 0; i < ta.data.length; i++) if (!Object.is(ta.data[i], tb.data[i])) n++;
      problems.push(`output '${name}' ${desc}: not bitwise identical: ${n} of ${ta.data.length} elements differ, ` +
                    `max abs difference ${max}` + (nanMismatch ? `, ${nanMismatch} NaN mismatches` : ''));
    }
  }
  for (const name of sb.outputNames) {
    if (!sa.outputNames.includes(name)) problems.push(`output '${name}' of B is not an output of A`);
  }

  const what = `${fa} vs ${fb} (batch ${opt.batch}, seed ${opt.seed})`;
  if (problems.length) {
    process.stderr.write(`ort_compare: FAIL ${what}\n`);
    for (const p of problems) process.stderr.write(`ort_compare:   ${p}\n`);
    process.exit(1);
  }
  process.stdout.write(`ort_compare: OK ${what}: ${summary.length} output(s) bitwise identical: ${summary.join(' ')}\n`);
}

main().catch((e) => {
  process.stderr.write(`ort_compare: ${e.message}\n`);
  process.exit(1);
});
