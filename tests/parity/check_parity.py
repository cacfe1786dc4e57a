#!/usr/bin/python3
"""Parity of `onnx-tl run` with ONNX Runtime on one model.

    /usr/bin/python3 tests/parity/check_parity.py ONNX_TL MODEL WORKDIR [--batches 1,8]
        [--seed S] [--node NODE] [--ort-run PATH/ort_run.js] [--threads N] [--tol 1e-4]
        [--ort-opt disabled|basic|extended|all]

For each batch size N: seeded random inputs are made from the model's declared graph inputs
and written to WORKDIR/bN/inputs/*.npy:
  float16/32/64  normal(0, 1)
  int64/int32    token ids in [0, vocab): vocab is the size of the table of the first Gather
                 that indexes with the input (through Cast/Identity/Reshape/... only), else 100
  uint8/int8     uniform over the type's range;  bool  random
Dims: a fixed dim is used as it is; a symbolic or unknown dim is N on axis 0 and 16 on any
other axis (e.g. a sequence length). A model with a fixed batch axis simply runs at its size.

Then `ONNX_TL run MODEL --input NAME=FILE ... --outdir WORKDIR/bN/otl --threads T` and
`NODE ort_run.js MODEL WORKDIR/bN/ort --input ... --threads T` (graph optimizations off, so
ORT computes the graph as written) run on the same files, and every graph output is compared:
same dtype, same shape (and the declared fixed dims), and
  floating point: max|a-b| / max(max|b|, 1e-6) < tol (default 1e-4, the issue's target);
                  NaN/Inf in the same places with the same sign
  integer/bool:   exactly equal
One line per output (max abs err, max rel err). Exits 0 when every output of every batch
matches; 1 on any mismatch, a missing output file, or when either side fails (its stderr is
shown); 2 on bad usage. A missing tool (python module, node, onnxruntime-node, the binary)
is an error, never a skip.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError as e:  # never skip silently
    sys.stderr.write(f"check_parity.py: missing python module ({e}); run with /usr/bin/python3 "
                     "and install python3-onnx and python3-numpy\n")
    sys.exit(1)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ORT_RUN = os.path.join(os.path.dirname(HERE), "ort", "ort_run.js")
SEQ_LEN = 16
DEFAULT_VOCAB = 100

NP_DTYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32, onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.BOOL: np.bool_,
}
# ops an index tensor may pass through on its way to a Gather without changing its values
PASS_THROUGH = {"Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}


def sanitize(name):
    """File name of a tensor, byte for byte as onnx-tl does it (on the UTF-8 bytes)."""
    return "".join(chr(c) if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "._-")
                   else "_" for c in name.encode("utf-8"))


def tail(b, n=3000):
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
    s = s.strip()
    return s if len(s) <= n else "..." + s[-n:]


def run(cmd, timeout):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        return None, f"cannot run {cmd[0]}: not found", 0.0
    except PermissionError:
        return None, f"cannot run {cmd[0]}: permission denied", 0.0
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout}s", time.time() - t0
    return p, None, time.time() - t0


def gather_vocab(graph, name, consts):
    """Rows of the table of the first Gather (in node order) that indexes with `name`,
    following PASS_THROUGH ops; None if there is none or its table is not a constant."""
    reach = {name}
    for n in graph.node:  # nodes are topologically sorted in a valid model
        if n.op_type in PASS_THROUGH and n.input and n.input[0] in reach:
            reach.update(o for o in n.output if o)
        elif n.op_type == "Gather" and len(n.input) >= 2 and n.input[1] in reach:
            shape = consts.get(n.input[0])
            if shape is None:
                continue
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            if axis < 0:
                axis += len(shape)
            if 0 <= axis < len(shape) and shape[axis] > 0:
                return int(shape[axis]), n.name or n.input[0]
    return None


def const_shapes(graph):
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    shapes[n.output[0]] = list(a.t.dims)
    # Identity of a constant (the exporter's initializer de-duplication)
    for n in graph.node:
        if n.op_type == "Identity" and n.input and n.input[0] in shapes and n.output:
            shapes[n.output[0]] = shapes[n.input[0]]
    return shapes


def declared(vi):
    tt = vi.type.tensor_type
    dims = None
    if tt.HasField("shape"):
        dims = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else None)
    return tt.elem_type, dims


def make_inputs(model, batch, seed):
    g = model.graph
    init = {t.name for t in g.initializer}
    consts = const_shapes(g)
    rng = np.random.default_rng([seed, batch])
    out = []
    for vi in g.input:
        if vi.name in init:
            continue
        et, dims = declared(vi)
        if et not in NP_DTYPES:
            raise ValueError(f"input '{vi.name}': element type "
                             f"{onnx.TensorProto.DataType.Name(et)} is not supported here")
        if dims is None:
            raise ValueError(f"input '{vi.name}' has no declared shape")
        shape = [d if d is not None else (batch if ax == 0 else SEQ_LEN) for ax, d in enumerate(dims)]
        dt = NP_DTYPES[et]
        note = ""
        if dt in (np.float16, np.float32, np.float64):
            a = rng.standard_normal(shape).astype(dt)
        elif dt in (np.int64, np.int32):
            v = gather_vocab(g, vi.name, consts)
            vocab = v[0] if v else DEFAULT_VOCAB
            note = f"ids in [0,{vocab})" + (f" (table of Gather {v[1]})" if v else "")
            a = rng.integers(0, vocab, size=shape).astype(dt)
        elif dt == np.uint8:
            a = rng.integers(0, 256, size=shape).astype(dt)
        elif dt == np.int8:
            a = rng.integers(-128, 128, size=shape).astype(dt)
        else:
            a = rng.random(shape) < 0.5
        out.append((vi.name, a, note))
    return out


def compare(a, b, tol):
    """(ok, max_abs, max_rel, message) of onnx-tl's a against reference b (same dtype/shape)."""
    if a.size == 0:
        return True, 0.0, 0.0, ""
    if np.issubdtype(b.dtype, np.floating):
        x = a.astype(np.float64)
        y = b.astype(np.float64)
        nx, ny = np.isnan(x), np.isnan(y)
        if (nx != ny).any():
            i = int(np.flatnonzero((nx != ny).ravel())[0])
            return False, float("nan"), float("nan"), \
                f"NaN mismatch at {int((nx != ny).sum())} element(s), first at flat index {i} " \
                f"(onnx-tl {x.ravel()[i]!r}, ORT {y.ravel()[i]!r})"
        ix, iy = np.isinf(x), np.isinf(y)
        bad_inf = (ix | iy) & ~(nx | ny) & (x != y)
        if bad_inf.any():
            i = int(np.flatnonzero(bad_inf.ravel())[0])
            return False, float("inf"), float("inf"), \
                f"Inf mismatch at {int(bad_inf.sum())} element(s), first at flat index {i} " \
                f"(onnx-tl {x.ravel()[i]!r}, ORT {y.ravel()[i]!r})"
        fin = ~(nx | ny | ix | iy)
        if not fin.any():
            return True, 0.0, 0.0, ""
        d = np.abs(x[fin] - y[fin])
        ref = np.abs(y[fin]).max()
        max_abs = float(d.max())
        max_rel = max_abs / max(float(ref), 1e-6)
        if not max_rel < tol:
            i = int(np.flatnonzero(fin.ravel())[int(d.argmax())])
            idx = np.unravel_index(i, a.shape)
            return False, max_abs, max_rel, \
                f"max rel err {max_rel:.3g} >= {tol:g}: worst at {tuple(int(k) for k in idx)}: " \
                f"onnx-tl {x.ravel()[i]!r}, ORT {y.ravel()[i]!r} (max|ORT| {ref:.4g}; " \
                f"{int((d > tol * max(float(ref), 1e-6)).sum())} of {a.size} elements over)"
        return True, max_abs, max_rel, ""
    eq = a == b
    if eq.all():
        return True, 0.0, 0.0, ""
    i = int(np.flatnonzero(~eq.ravel())[0])
    d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    return False, d, d / max(float(np.abs(b.astype(np.float64)).max()), 1e-6), \
        f"{int((~eq).sum())} of {a.size} elements differ (exact match required for " \
        f"{b.dtype}), first at flat index {i}: onnx-tl {a.ravel()[i]!r}, ORT {b.ravel()[i]!r}"


def load_npy(path):
    try:
        return np.load(path, allow_pickle=False), None
    except FileNotFoundError:
        return None, "not written"
    except Exception as e:  # noqa: BLE001 - a broken file is a failure, not a crash
        return None, f"cannot be read by numpy: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx_tl")
    ap.add_argument("model")
    ap.add_argument("workdir")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--node", default=os.environ.get("NODE") or shutil.which("node") or "node")
    ap.add_argument("--ort-run", default=DEFAULT_ORT_RUN)
    ap.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative error (default 1e-4)")
    ap.add_argument("--ort-opt", default="disabled", help="ORT graphOptimizationLevel")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per command")
    args = ap.parse_args()
    try:
        batches = [int(x) for x in args.batches.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--batches: expected comma-separated integers, got {args.batches!r}")
    if not batches or min(batches) < 1:
        ap.error("--batches needs at least one positive batch size")

    name = os.path.basename(args.model)
    exe = os.path.abspath(args.onnx_tl) if os.sep in args.onnx_tl else args.onnx_tl
    problems = []

    def bad(msg):
        problems.append(msg)
        sys.stderr.write(f"{name}: FAIL: {msg}\n")

    if os.sep in exe and not os.access(exe, os.X_OK):
        sys.stderr.write(f"{name}: onnx-tl binary {exe} does not exist or is not executable\n")
        return 1
    if not os.path.isfile(args.ort_run):
        sys.stderr.write(f"{name}: {args.ort_run} not found\n")
        return 1
    try:
        model = onnx.load(args.model, load_external_data=False)
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"{name}: onnx.load({args.model}): {e}\n")
        return 1
    outputs = [(vi.name, declared(vi)) for vi in model.graph.output]

    t_all = time.time()
    for batch in batches:
        where = f"batch {batch}"
        bdir = os.path.join(args.workdir, f"b{batch}")
        in_dir, otl_dir, ort_dir = (os.path.join(bdir, d) for d in ("inputs", "otl", "ort"))
        for d in (in_dir, otl_dir, ort_dir):  # no stale outputs from an earlier run
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(in_dir)
        try:
            inputs = make_inputs(model, batch, args.seed)
        except ValueError as e:
            bad(f"{where}: cannot make inputs: {e}")
            continue
        feed = []
        for k, (iname, arr, note) in enumerate(inputs):
            f = os.path.join(in_dir, f"{k}_{sanitize(iname)}.npy")
            np.save(f, arr)
            feed += ["--input", f"{iname}={f}"]
            print(f"{name}: {where}: input {iname} {arr.dtype}{list(arr.shape)} {note}".rstrip())

        cmd_otl = [exe, "run", args.model] + feed + ["--outdir", otl_dir,
                                                     "--threads", str(args.threads)]
        cmd_ort = [args.node, args.ort_run, args.model, ort_dir] + feed + [
            "--threads", str(args.threads), "--opt", args.ort_opt]
        ok_sides = True
        for side, cmd in (("onnx-tl", cmd_otl), ("ONNX Runtime", cmd_ort)):
            p, err, dt = run(cmd, args.timeout)
            if err or p.returncode != 0:
                why = err or f"exit {p.returncode}: {tail(p.stderr) or '(no stderr)'}"
                sys.stderr.write(f"{name}: {where}: command: {' '.join(cmd)}\n")
                bad(f"{where}: {side} failed ({why})")
                ok_sides = False
            else:
                print(f"{name}: {where}: {side} ran in {dt:.2f}s")
        if not ok_sides:
            continue

        for oname, (et, dims) in outputs:
            fn = sanitize(oname) + ".npy"
            a, ea = load_npy(os.path.join(otl_dir, fn))
            b, eb = load_npy(os.path.join(ort_dir, fn))
            what = f"{where}: output '{oname}'"
            if eb:
                bad(f"{what}: ONNX Runtime's {fn} {eb}")
                continue
            if ea:
                bad(f"{what}: onnx-tl's {os.path.join(otl_dir, fn)} {ea}")
                continue
            desc = f"{b.dtype}{list(b.shape)}"
            if a.dtype != b.dtype:
                bad(f"{what}: dtype {a.dtype}, ONNX Runtime gives {b.dtype}")
                continue
            if a.shape != b.shape:
                bad(f"{what}: shape {list(a.shape)}, ONNX Runtime gives {list(b.shape)}")
                continue
            if et in NP_DTYPES and np.dtype(NP_DTYPES[et]) != a.dtype:
                bad(f"{what}: dtype {a.dtype}, the model declares "
                    f"{onnx.TensorProto.DataType.Name(et)}")
                continue
            if dims is not None and (len(dims) != a.ndim or any(
                    d is not None and d != s for d, s in zip(dims, a.shape))):
                bad(f"{what}: shape {list(a.shape)} does not fit the declared "
                    f"{['?' if d is None else d for d in dims]}")
                continue
            ok, max_abs, max_rel, msg = compare(a, b, args.tol)
            line = f"{name}: {where}: {oname} {desc}: max abs err {max_abs:.3g}, " \
                   f"max rel err {max_rel:.3g}"
            if ok:
                print(line + " OK")
            else:
                bad(f"{what} {desc}: {msg}")
        extra = sorted(set(os.listdir(otl_dir)) - {sanitize(o) + ".npy" for o, _ in outputs})
        if extra:
            sys.stderr.write(f"{name}: note: {where}: onnx-tl also wrote {extra}\n")
        sys.stdout.flush()

    dt = time.time() - t_all
    if problems:
        sys.stderr.write(f"{name}: parity FAILED: {len(problems)} problem(s) ({dt:.1f}s)\n")
        return 1
    print(f"{name}: parity OK: {len(outputs)} output(s) at batch "
          f"{','.join(map(str, batches))} within {args.tol:g} of ONNX Runtime ({dt:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
