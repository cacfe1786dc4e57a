#!/usr/bin/env node
// ort_run.js - run one ONNX model in ONNX Runtime (CPU) on inputs read from .npy files and
// write every output as OUTDIR/<sanitized output name>.npy: the reference side of
// `onnx-tl run MODEL --input NAME=FILE.npy ... --outdir DIR` (same file naming).
//
// usage: node ort_run.js MODEL OUTDIR --input NAME=FILE.npy [--input ...]
//            [--threads N] [--opt disabled|basic|extended|all] [--repeat N]
//
//   --threads N  intra-op threads (default 1; inter-op is always 1, sequential execution)
//   --opt LEVEL  graphOptimizationLevel (default 'disabled': no fusions such as
//                Conv+Add+Relu, MatMul+Add->Gemm, GELU/LayerNorm/attention fusion or constant
//                folding that change rounding, so results stay closest to a plain reference;
//                use 'all', ORT's own default, for speed measurements)
//   --repeat N   run N times and print per-run wall times, their median and items/s to stderr
//                in the format of `onnx-tl run --repeat` (the first run is reported apart).
//                Outputs of the last run are written.
//
// .npy support: float32, float64, int64, int32, uint8, int8, bool (little-endian, C order,
// format versions 1.0/2.0/3.0). Names of output files replace every character outside
// [A-Za-z0-9._-] with '_'. Files are written atomically (temporary name, then rename).
// Exit status: 0 success; 1 a model/data problem (one line on stderr naming the file);
// 2 bad usage.
'use strict';

const fs = require('fs');
const path = require('path');

function usage(msg) {
  if (msg) process.stderr.write(`ort_run: ${msg}\n`);
  process.stderr.write('usage: node ort_run.js MODEL OUTDIR --input NAME=FILE.npy [--input ...] ' +
                       '[--threads N] [--opt disabled|basic|extended|all] [--repeat N]\n');
  process.exit(2);
}

function fail(msg) {
  process.stderr.write(`ort_run: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opt = { inputs: [], threads: 1, opt: 'disabled', repeat: 1, pos: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const posInt = (name, v) => {
      if (!/^\d+$/.test(v) || parseInt(v, 10) < 1) usage(`${name} needs a positive integer, got '${v}'`);
      return parseInt(v, 10);
    };
    if (a === '--input') {
      const v = val();
      const eq = v.indexOf('=');
      if (eq <= 0 || eq === v.length - 1) usage(`--input expects NAME=FILE.npy, got '${v}'`);
      opt.inputs.push({ name: v.slice(0, eq), file: v.slice(eq + 1) });
    } else if (a === '--threads') opt.threads = posInt(a, val());
    else if (a === '--repeat') opt.repeat = posInt(a, val());
    else if (a === '--opt') {
      opt.opt = val();
      if (!['disabled', 'basic', 'extended', 'all'].includes(opt.opt)) usage(`unknown --opt level '${opt.opt}'`);
    } else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else opt.pos.push(a);
  }
  if (opt.pos.length !== 2) usage('expected MODEL and OUTDIR');
  return opt;
}

// ------------------------------------------------------------------ .npy

// descr -> [ort type, TypedArray, item size]
const NPY_TYPES = {
  '<f4': ['float32', Float32Array, 4],
  '<f8': ['float64', Float64Array, 8],
  '<i8': ['int64', BigInt64Array, 8],
  '<i4': ['int32', Int32Array, 4],
  '|u1': ['uint8', Uint8Array, 1],
  '|i1': ['int8', Int8Array, 1],
  '|b1': ['bool', Uint8Array, 1],
};
const NPY_ALIASES = { '<u1': '|u1', '>u1': '|u1', '<i1': '|i1', '>i1': '|i1', '<b1': '|b1', '>b1': '|b1', '=f4': '<f4', '=f8': '<f8', '=i8': '<i8', '=i4': '<i4' };
const ORT_TO_DESCR = {};
for (const [d, [t]] of Object.entries(NPY_TYPES)) ORT_TO_DESCR[t] = d;

function readNpy(file) {
  let buf;
  try { buf = fs.readFileSync(file); } catch (e) { fail(`${file}: cannot read: ${e.message}`); }
  const bad = (why) => fail(`${file}: not a supported .npy file: ${why}`);
  if (buf.length < 10 || buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') bad('bad magic');
  const major = buf[6];
  let hlen, hoff;
  if (major === 1) { hlen = buf.readUInt16LE(8); hoff = 10; }
  else if (major === 2 || major === 3) {
    if (buf.length < 12) bad('truncated header');
    hlen = buf.readUInt32LE(8); hoff = 12;
  } else bad(`format version ${major}.${buf[7]}`);
  if (hoff + hlen > buf.length) bad('truncated header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', hoff, hoff + hlen);
  const mDescr = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const mFortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const mShape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!mDescr || !mFortran || !mShape) bad(`cannot parse header ${JSON.stringify(header.trim())}`);
  let descr = mDescr[1];
  if (NPY_ALIASES[descr]) descr = NPY_ALIASES[descr];
  const spec = NPY_TYPES[descr];
  if (!spec) bad(`dtype '${mDescr[1]}' (supported: float32, float64, int64, int32, uint8, int8, bool, little-endian)`);
  if (mFortran[1] === 'True') bad('fortran_order arrays are not supported');
  const dims = mShape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map((s) => {
    if (!/^\d+L?$/.test(s)) bad(`bad shape entry '${s}'`);
    return parseInt(s, 10);
  });
  const n = dims.reduce((a, b) => a * b, 1);
  const [type, Arr, size] = spec;
  const off = hoff + hlen;
  if (buf.length - off !== n * size) bad(`data is ${buf.length - off} bytes, shape [${dims}] of ${type} needs ${n * size}`);
  // copy into a fresh, aligned buffer
  const data = new Arr(n);
  Buffer.from(data.buffer).set(buf.subarray(off, off + n * size));
  return { type, dims, data };
}

function npyBytes(type, dims, data) {
  const descr = ORT_TO_DESCR[type];
  if (!descr) return null;
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  if (header.length > 65535) return null;
  const pre = Buffer.alloc(10);
  pre[0] = 0x93;
  pre.write('NUMPY', 1, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  let body;
  if (type === 'bool') body = Buffer.from(Uint8Array.from(data, (v) => (v ? 1 : 0)));
  else body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), body]);
}

function writeFileAtomic(file, bytes) {
  const tmp = `${file}.tmp${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch (_) { /* nothing to clean */ }
    fail(`${file}: cannot write: ${e.message}`);
  }
}

// byte for byte on the UTF-8 encoding, as onnx-tl does it
function sanitize(name) {
  return Array.from(Buffer.from(name, 'utf8'), (c) => {
    const ch = String.fromCharCode(c);
    return /[A-Za-z0-9._-]/.test(ch) ? ch : '_';
  }).join('');
}

// ------------------------------------------------------------------ main

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const [model, outdir] = opt.pos;
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    fail(`cannot load onnxruntime-node (run 'npm ci' in ${__dirname}): ${e.message}`);
  }
  const sopt = {
    executionProviders: ['cpu'],
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt.opt,
    logSeverityLevel: 3,
  };
  let sess;
  try { sess = await ort.InferenceSession.create(model, sopt); } catch (e) { fail(`${model}: ONNX Runtime cannot load it: ${e.message}`); }

  const metaByName = {};
  for (const m of sess.inputMetadata) metaByName[m.name] = m;
  const feeds = {};
  for (const inp of opt.inputs) {
    const meta = metaByName[inp.name];
    if (!meta) fail(`${model}: --input ${inp.name}: the model has no input '${inp.name}' (inputs: ${sess.inputNames.join(', ')})`);
    if (feeds[inp.name]) usage(`--input ${inp.name} given twice`);
    const a = readNpy(inp.file);
    if (meta.type !== a.type) fail(`${inp.file}: input '${inp.name}' of ${model} is ${meta.type}, the file holds ${a.type}`);
    feeds[inp.name] = new ort.Tensor(a.type, a.data, a.dims);
  }
  for (const name of sess.inputNames) {
    if (!feeds[name]) fail(`${model}: no --input for model input '${name}'`);
  }

  const ms = [];
  let res;
  for (let r = 0; r < opt.repeat; r++) {
    const t0 = process.hrtime.bigint();
    try { res = await sess.run(feeds); } catch (e) { fail(`${model}: ONNX Runtime run failed: ${e.message}`); }
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  if (opt.repeat > 1) {
    const first = feeds[sess.inputNames[0]];
    const batch = first && first.dims.length ? first.dims[0] : 1;
    process.stderr.write(`run: first run (with planning) ${ms[0].toFixed(3)} ms\n`);
    for (let r = 1; r < ms.length; r++) process.stderr.write(`run: iteration ${r} ${ms[r].toFixed(3)} ms\n`);
    const rest = ms.slice(1);
    const med = median(rest);
    process.stderr.write(`run: ${rest.length} timed iterations, median ${med.toFixed(3)} ms, min ` +
                         `${Math.min(...rest).toFixed(3)} ms, ${(1e3 * batch / med).toFixed(2)} items/s (batch ${batch})\n`);
  }

  try { fs.mkdirSync(outdir, { recursive: true }); } catch (e) { fail(`${outdir}: cannot create output directory: ${e.message}`); }
  for (const name of sess.outputNames) {
    const t = res[name];
    const bytes = npyBytes(t.type, t.dims, t.data);
    if (!bytes) fail(`${model}: output '${name}' has dtype ${t.type}, which ort_run cannot write as .npy`);
    writeFileAtomic(path.join(outdir, `${sanitize(name)}.npy`), bytes);
  }
}

main().catch((e) => fail(e.message));
