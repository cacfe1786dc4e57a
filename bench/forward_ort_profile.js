#!/usr/bin/env node
// bench/forward_ort_profile.js - per-node kernel times of ONNX Runtime (CPU provider) on one
// model, for layer-by-layer comparisons with onnx-tl's ONEDNN_VERBOSE / OTL_PROFILE output.
//
// usage: node bench/forward_ort_profile.js MODEL INPUT.npy [--threads N] [--repeat N] [--min] [--no-spin]
//
// Runs MODEL with ORT's profiler on (graphOptimizationLevel 'all', intra-op threads N, default
// 2), drops the first run, and prints one line per node: median kernel time in ms over the
// other runs (--min: the minimum, steadier on a busy machine), op type, node name, and the
// total; then the wall times and the process CPU time per run (--no-spin: the intra-op pool
// does not spin-wait, so CPU time is work, comparable with onnx-tl under OMP_WAIT_POLICY=passive).
// The input name is the model's first input.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const argv = process.argv.slice(2);
let threads = 2, repeat = 6, useMin = false, noSpin = false;
const pos = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--threads') threads = parseInt(argv[++i], 10);
  else if (argv[i] === '--repeat') repeat = parseInt(argv[++i], 10);
  else if (argv[i] === '--min') useMin = true;
  else if (argv[i] === '--no-spin') noSpin = true;
  else pos.push(argv[i]);
}
if (pos.length !== 2 || !(threads > 0) || !(repeat > 1)) {
  process.stderr.write('usage: node bench/forward_ort_profile.js MODEL INPUT.npy [--threads N] [--repeat N>1]\n');
  process.exit(2);
}
const ortDir = path.join(__dirname, '..', 'tests', 'ort', 'node_modules', 'onnxruntime-node');
const ort = require(ortDir);

function readNpyF32(file) {
  const buf = fs.readFileSync(file);
  const hlen = buf.readUInt16LE(8);
  const header = buf.toString('latin1', 10, 10 + hlen);
  if (!/'descr'\s*:\s*'<f4'/.test(header)) throw new Error(`${file}: float32 .npy expected`);
  const dims = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  Buffer.from(data.buffer).set(buf.subarray(10 + hlen, 10 + hlen + 4 * n));
  return { dims, data };
}

async function main() {
  const prefix = path.join(os.tmpdir(), `ortprof-${process.pid}`);
  const sess = await ort.InferenceSession.create(pos[0], {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all', logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: prefix,
    ...(noSpin ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  });
  const x = readNpyF32(pos[1]);
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', x.data, x.dims) };
  const wall = [];
  let cpu0 = null;
  for (let r = 0; r < repeat; r++) {
    if (r === 1) cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1e3 / (repeat - 1);
  sess.endProfiling();
  await new Promise((r) => setTimeout(r, 200));
  const dir = path.dirname(prefix);
  const files = fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(prefix))).map((f) => path.join(dir, f));
  if (!files.length) throw new Error('no profile file written');
  const ev = JSON.parse(fs.readFileSync(files[0], 'utf8'));
  for (const f of files) fs.unlinkSync(f);
  // kernel events in order; run r's events follow its model_run event
  const runs = [];
  let cur = null;
  for (const e of ev) {
    if (e.cat === 'Session' && e.name === 'model_run') continue;
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    if (!cur || cur.has(name)) { cur = new Map(); runs.push(cur); }
    cur.set(name, { op: e.args && e.args.op_name, us: e.dur, shape: e.args && JSON.stringify(e.args.output_type_shape) });
  }
  const timed = runs.slice(1);
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
  let total = 0;
  for (const [name, v] of runs[0]) {
    const m = (useMin ? Math.min(...timed.map((r) => (r.get(name) || { us: 0 }).us)) : med(timed.map((r) => (r.get(name) || { us: 0 }).us))) / 1000;
    total += m;
    console.log(`${m.toFixed(3).padStart(9)} ms  ${String(v.op).padEnd(16)} ${name}  ${v.shape || ''}`);
  }
  const w = wall.slice(1);
  console.log(`total kernels ${total.toFixed(2)} ms; wall median ${med(w).toFixed(2)} ms, min ${Math.min(...w).toFixed(2)} ms (${runs.length} runs profiled); process CPU ${cpuMs.toFixed(1)} ms per run${noSpin ? ' (no spinning)' : ''}`);
}
main().catch((e) => { process.stderr.write(`forward_ort_profile: ${e.message}\n`); process.exit(1); });
