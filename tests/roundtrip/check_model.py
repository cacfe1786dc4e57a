#!/usr/bin/python3
"""Round-trip test of one model through onnx-tl.

    /usr/bin/python3 tests/roundtrip/check_model.py ONNX_TL MODEL WORKDIR
        [--node NODE] [--ort-compare PATH/ort_compare.js] [--batches 1,8] [--expect FILE]

(a) `ONNX_TL info MODEL --json` agrees with python-onnx's view of the model: op histogram,
    floating-point parameter count, inputs/outputs (name, dtype, shape), opset, and the other
    keys of the documented format; the detected classifier head agrees with the expectations
    in FILE (default: expect.json next to MODEL, as written by testdata/make_models.py or
    tests/zoo/make_zoo.py). `ONNX_TL info MODEL` (text) exits 0 and mentions the head.
(b) `ONNX_TL export MODEL -o WORKDIR/out.onnx --keep` exits 0; the output passes
    onnx.checker.check_model(full_check=True) and is lossless: model fields, graph
    inputs/outputs/value_info, every node (attributes decoded) and every initializer
    (decoded values, bit-identical) equal the original's. Encodings may differ.
(c) ONNX Runtime gives bitwise-identical outputs for MODEL and out.onnx
    (tests/ort/ort_compare.js) at each batch size of --batches (default: expect.json's
    ort_batches, else 1,8); a model whose batch axis is fixed simply runs at its own size.

expect.json entries: {"MODEL.onnx": {"head_classes": N | null | [allowed values...],
"head_node": NAME (optional), "ort_batches": [..] (optional)}}. head_classes null means
the model has no classifier head and `info` must report "head": null.

Exits 0 when everything holds; otherwise prints every problem found (one line each,
prefixed with the model name) and exits 1. A missing tool (python module, node,
onnxruntime-node, the onnx-tl binary) is an error, never a skip.
"""
import argparse
import collections
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

try:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
except ImportError as e:  # never skip silently
    sys.stderr.write(f"check_model.py: missing python module ({e}); run with /usr/bin/python3 "
                     "and install python3-onnx and python3-numpy\n")
    sys.exit(1)

HERE = os.path.dirname(os.path.abspath(__file__))

FLOAT_TYPES = {onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
               onnx.TensorProto.BFLOAT16}
for _n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"):
    if hasattr(onnx.TensorProto, _n):
        FLOAT_TYPES.add(getattr(onnx.TensorProto, _n))

DTYPE_NAMES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16",
}


class Checker:
    def __init__(self, model_name):
        self.name = model_name
        self.problems = []

    def fail(self, msg):
        self.problems.append(msg)
        sys.stderr.write(f"{self.name}: FAIL: {msg}\n")

    def eq(self, what, got, want):
        if got != want:
            self.fail(f"{what}: got {short(got)}, expected {short(want)}")
            return False
        return True


def short(v, n=400):
    s = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "..."


def run(cmd, timeout=1800):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        sys.stderr.write(f"check_model.py: cannot run {cmd[0]}: not found\n")
        sys.exit(1)
    except PermissionError:
        sys.stderr.write(f"check_model.py: cannot run {cmd[0]}: permission denied\n")
        sys.exit(1)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, -1, b"", f"timeout after {timeout}s".encode())
    return p


def fmt_cmd(cmd):
    return " ".join(cmd)


def tail(b, n=2000):
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
    return s if len(s) <= n else "..." + s[-n:]


# ------------------------------------------------------------------ (a) info --json

def value_view(vi):
    """(name, dtype, shape) of a ValueInfoProto as `info --json` is expected to print it."""
    t = vi.type
    if t.HasField("tensor_type"):
        tt = t.tensor_type
        dtype = DTYPE_NAMES.get(tt.elem_type, str(tt.elem_type))
        if tt.HasField("shape"):
            shape = []
            for d in tt.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(d.dim_value)
                elif d.HasField("dim_param"):
                    shape.append(d.dim_param)
                else:
                    shape.append(None)
        else:
            shape = None
    else:
        dtype, shape = None, None
    return {"name": vi.name, "dtype": dtype, "shape": shape}


def numel(t):
    n = 1
    for d in t.dims:
        n *= d
    return n


def check_info(c, exe, model_path, m, expect):
    cmd = [exe, "info", model_path, "--json"]
    p = run(cmd)
    if p.returncode != 0:
        c.fail(f"`{fmt_cmd(cmd)}` exited {p.returncode}: {tail(p.stderr)}")
        return None
    try:
        info = json.loads(p.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        c.fail(f"`{fmt_cmd(cmd)}` stdout is not one JSON object ({e}): {tail(p.stdout, 300)}")
        return None
    if not isinstance(info, dict):
        c.fail(f"`{fmt_cmd(cmd)}` printed {type(info).__name__}, not a JSON object")
        return None

    g = m.graph
    init_names = {t.name for t in g.initializer}
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    params = sum(numel(t) for t in g.initializer if t.data_type in FLOAT_TYPES)
    want = {
        "ops": dict(collections.Counter(n.op_type for n in g.node)),
        "params_total": params,
        "opset": opset,
        "inputs": [value_view(v) for v in g.input if v.name not in init_names],
        "outputs": [value_view(v) for v in g.output],
    }
    # keys CLI.md requires
    for key in ("inputs", "outputs", "opset", "params_total", "params_trainable", "ops", "head"):
        if key not in info:
            c.fail(f"info --json: key '{key}' missing (keys: {sorted(info)})")
    for key, w in want.items():
        if key in info:
            c.eq(f"info --json '{key}'", info[key], w)

    # params_trainable: nothing is frozen in these models. Batch-norm running statistics may
    # legitimately be counted as non-trainable, so only require equality without BN nodes.
    if "params_trainable" in info and "params_total" in info:
        pt = info["params_trainable"]
        if not isinstance(pt, int) or pt < 0 or pt > params:
            c.fail(f"info --json 'params_trainable' = {short(pt)}, not in [0, {params}]")
        elif "BatchNormalization" not in want["ops"]:
            c.eq("info --json 'params_trainable' (no frozen parameters)", pt, params)

    # keys of the documented --json format beyond CLI.md's minimum: compared when present
    optional = {
        "ir_version": m.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "producer": m.producer_name,
        "initializers": len(g.initializer),
        "nodes": len(g.node),
        "metadata": {p.key: p.value for p in m.metadata_props},
    }
    for key, w in optional.items():
        if key not in info:
            sys.stderr.write(f"{c.name}: note: info --json has no '{key}'\n")
            continue
        got = info[key]
        if key == "opsets" and isinstance(got, dict):
            # accept "" or "ai.onnx" for the default domain
            got = {("ai.onnx" if k == "" else k): v for k, v in got.items()}
        if key == "producer" and isinstance(got, str) and got != w:
            # accept "name version" as well as just the name
            full = f"{m.producer_name} {m.producer_version}".strip()
            if got == full:
                continue
        c.eq(f"info --json '{key}'", got, w)
    if "frozen" in info and info["frozen"] not in ([], None):
        c.fail(f"info --json 'frozen' = {short(info['frozen'])}, expected nothing frozen")
    stored_pre = optional["metadata"].get("onnx_tl.preprocess")
    if "preprocess" in info and stored_pre is None and info["preprocess"] is not None:
        c.fail(f"info --json 'preprocess' = {short(info['preprocess'])}, expected null")
    if ("preprocess" in info and stored_pre is not None
            and info["preprocess"] not in (stored_pre, json.loads(stored_pre))):
        c.fail(f"info --json 'preprocess' = {short(info['preprocess'])}, expected the stored {short(stored_pre)}")
    if "layers" in info and not isinstance(info["layers"], list):
        c.fail(f"info --json 'layers' is {type(info['layers']).__name__}, expected a list")

    # classifier head
    head = info.get("head", None)
    if "head_classes" in expect:
        hc = expect["head_classes"]
        allowed = hc if isinstance(hc, list) else [hc]
        if head is None:
            if None not in allowed:
                c.fail(f"info --json 'head' is null, expected a head with {hc} classes")
        elif not isinstance(head, dict):
            c.fail(f"info --json 'head' = {short(head)}, expected an object or null")
        elif allowed == [None]:
            c.fail(f"info --json 'head' = {short(head)}, expected null (no classifier head)")
        else:
            if head.get("classes") not in [a for a in allowed if a is not None]:
                c.fail(f"info --json head.classes = {short(head.get('classes'))}, expected {hc}")
            if expect.get("head_node") is not None:
                c.eq("info --json head.node", head.get("node"), expect["head_node"])
            names = {n.name for n in g.node}
            if head.get("node") not in names:
                c.fail(f"info --json head.node = {short(head.get('node'))} is not a node of the graph")
            tensors = {v.name for v in g.input} | {o for n in g.node for o in n.output}
            if head.get("input_tensor") not in tensors:
                c.fail(f"info --json head.input_tensor = {short(head.get('input_tensor'))} "
                       "is not a tensor of the graph")
            else:
                node = next((n for n in g.node if n.name == head.get("node")), None)
                if node is not None and node.op_type in ("Gemm", "MatMul") and \
                        head["input_tensor"] != node.input[0]:
                    c.fail(f"info --json head.input_tensor = {head['input_tensor']!r}, "
                           f"expected {node.input[0]!r} (first input of {node.name})")

    # text output
    cmd = [exe, "info", model_path]
    p = run(cmd)
    if p.returncode != 0:
        c.fail(f"`{fmt_cmd(cmd)}` exited {p.returncode}: {tail(p.stderr)}")
    else:
        text = p.stdout.decode("utf-8", "replace")
        if not text.strip():
            c.fail(f"`{fmt_cmd(cmd)}` printed nothing on stdout")
        elif isinstance(head, dict):
            low = text.lower()
            if "head" not in low:
                c.fail(f"`{fmt_cmd(cmd)}` does not mention the classifier head")
            elif str(head.get("classes")) not in text:
                c.fail(f"`{fmt_cmd(cmd)}` does not show the head's {head.get('classes')} classes")
    return info


# ------------------------------------------------------------------ (b) lossless export

def float_bits(x):
    return struct.pack("<f", x)


def tensor_view(t):
    arr = numpy_helper.to_array(t)
    if t.data_type == onnx.TensorProto.STRING:
        data = list(t.string_data)
    else:
        data = arr.tobytes()
    ext = [(e.key, e.value) for e in t.external_data]
    return {"name": t.name, "data_type": t.data_type, "dims": list(t.dims),
            "doc_string": t.doc_string, "data": data,
            "segment": (t.segment.begin, t.segment.end) if t.HasField("segment") else None,
            "external": ext and t.data_location}


def cmp_tensor(c, what, a, b):
    try:
        va, vb = tensor_view(a), tensor_view(b)
    except Exception as e:  # noqa: BLE001 - report undecodable data as a failure
        c.fail(f"{what}: cannot decode tensor: {e}")
        return
    for k in ("name", "data_type", "dims", "doc_string", "segment"):
        if va[k] != vb[k]:
            c.fail(f"{what}: {k} {short(vb[k])} != original {short(va[k])}")
            return
    if va["data"] != vb["data"]:
        if isinstance(va["data"], bytes) and a.data_type in FLOAT_TYPES:
            x = numpy_helper.to_array(a).astype(np.float64).ravel()
            y = numpy_helper.to_array(b).astype(np.float64).ravel()
            diff = np.abs(x - y)
            nd = int(np.count_nonzero(x.view(np.uint64) != y.view(np.uint64)))
            c.fail(f"{what}: values differ ({nd} of {x.size} elements, max abs difference "
                   f"{np.nanmax(diff) if diff.size else 0})")
        else:
            c.fail(f"{what}: values differ")


def cmp_attr_value(c, what, ta, va, vb):
    T = onnx.AttributeProto
    if ta == T.FLOAT:
        if float_bits(va) != float_bits(vb):
            c.fail(f"{what}: {vb!r} != original {va!r}")
    elif ta == T.FLOATS:
        if [float_bits(x) for x in va] != [float_bits(x) for x in vb]:
            c.fail(f"{what}: {short(list(vb))} != original {short(list(va))}")
    elif ta == T.TENSOR:
        cmp_tensor(c, what, va, vb)
    elif ta == T.TENSORS:
        if len(va) != len(vb):
            c.fail(f"{what}: {len(vb)} tensors != original {len(va)}")
        for i, (x, y) in enumerate(zip(va, vb)):
            cmp_tensor(c, f"{what}[{i}]", x, y)
    elif ta == T.GRAPH:
        cmp_graph(c, f"{what} (subgraph)", va, vb)
    elif ta == T.GRAPHS:
        if len(va) != len(vb):
            c.fail(f"{what}: {len(vb)} graphs != original {len(va)}")
        for i, (x, y) in enumerate(zip(va, vb)):
            cmp_graph(c, f"{what}[{i}] (subgraph)", x, y)
    else:  # ints, strings, sparse tensors, type protos: python/protobuf equality
        if isinstance(va, list):
            va, vb = list(va), list(vb)
        if va != vb:
            c.fail(f"{what}: {short(vb)} != original {short(va)}")


def cmp_node(c, where, na, nb):
    what = f"{where} node {na.name!r} ({na.op_type})"
    for f in ("name", "op_type", "domain", "doc_string"):
        if getattr(na, f) != getattr(nb, f):
            c.fail(f"{what}: {f} {getattr(nb, f)!r} != original {getattr(na, f)!r}")
    if list(na.input) != list(nb.input):
        c.fail(f"{what}: inputs {list(nb.input)} != original {list(na.input)}")
    if list(na.output) != list(nb.output):
        c.fail(f"{what}: outputs {list(nb.output)} != original {list(na.output)}")
    aa = [(x.name, x.type) for x in na.attribute]
    ab = [(x.name, x.type) for x in nb.attribute]
    if aa != ab:
        c.fail(f"{what}: attributes {ab} != original {aa}")
        return
    for x, y in zip(na.attribute, nb.attribute):
        w = f"{what} attribute {x.name!r}"
        for f in ("doc_string", "ref_attr_name"):
            if getattr(x, f) != getattr(y, f):
                c.fail(f"{w}: {f} {getattr(y, f)!r} != original {getattr(x, f)!r}")
        if x.ref_attr_name:
            continue
        try:
            va, vb = helper.get_attribute_value(x), helper.get_attribute_value(y)
        except Exception as e:  # noqa: BLE001
            c.fail(f"{w}: cannot decode: {e}")
            continue
        cmp_attr_value(c, w, x.type, va, vb)


def cmp_values(c, what, la, lb):
    na, nb = [v.name for v in la], [v.name for v in lb]
    if na != nb:
        c.fail(f"{what}: names {short(nb)} != original {short(na)}")
        return
    for x, y in zip(la, lb):
        if x != y:
            c.fail(f"{what} {x.name!r}: {short(str(y))} != original {short(str(x))}")


def cmp_graph(c, where, ga, gb):
    if ga.name != gb.name:
        c.fail(f"{where}: graph name {gb.name!r} != original {ga.name!r}")
    if ga.doc_string != gb.doc_string:
        c.fail(f"{where}: graph doc_string {gb.doc_string!r} != original {ga.doc_string!r}")
    cmp_values(c, f"{where} graph inputs", ga.input, gb.input)
    cmp_values(c, f"{where} graph outputs", ga.output, gb.output)
    cmp_values(c, f"{where} value_info", ga.value_info, gb.value_info)
    if [t.name for t in ga.initializer] != [t.name for t in gb.initializer]:
        sa, sb = {t.name for t in ga.initializer}, {t.name for t in gb.initializer}
        c.fail(f"{where}: initializers differ: {len(gb.initializer)} vs original "
               f"{len(ga.initializer)}; missing {short(sorted(sa - sb))}, "
               f"extra {short(sorted(sb - sa))}" + ("; order changed" if sa == sb else ""))
    else:
        for x, y in zip(ga.initializer, gb.initializer):
            cmp_tensor(c, f"{where} initializer {x.name!r}", x, y)
    if list(ga.sparse_initializer) != list(gb.sparse_initializer):
        c.fail(f"{where}: sparse_initializer differs")
    if len(ga.node) != len(gb.node):
        c.fail(f"{where}: {len(gb.node)} nodes != original {len(ga.node)}")
        return
    keys_a = [(n.name, n.op_type) for n in ga.node]
    keys_b = [(n.name, n.op_type) for n in gb.node]
    if keys_a != keys_b:
        i = next(i for i, (x, y) in enumerate(zip(keys_a, keys_b)) if x != y)
        same = sorted(keys_a) == sorted(keys_b)
        c.fail(f"{where}: node #{i} is {keys_b[i]} != original {keys_a[i]}"
               + (" (same nodes, order changed)" if same else ""))
        if not same:
            return
        by_key = {(n.name, n.op_type, tuple(n.output)): n for n in gb.node}
        for n in ga.node:
            m = by_key.get((n.name, n.op_type, tuple(n.output)))
            if m is not None:
                cmp_node(c, where, n, m)
        return
    for x, y in zip(ga.node, gb.node):
        cmp_node(c, where, x, y)
    if list(ga.quantization_annotation) != list(gb.quantization_annotation):
        c.fail(f"{where}: quantization_annotation differs")


def cmp_model(c, ma, mb):
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version",
              "doc_string"):
        c.eq(f"export: model {f}", getattr(mb, f), getattr(ma, f))
    c.eq("export: opset_import", [(o.domain, o.version) for o in mb.opset_import],
         [(o.domain, o.version) for o in ma.opset_import])
    c.eq("export: metadata_props", [(p.key, p.value) for p in mb.metadata_props],
         [(p.key, p.value) for p in ma.metadata_props])
    if list(ma.functions) != list(mb.functions):
        c.fail("export: model functions differ")
    if list(ma.training_info) != list(mb.training_info):
        c.fail("export: training_info differs")
    cmp_graph(c, "export:", ma.graph, mb.graph)


def check_export(c, exe, model_path, ma, workdir):
    out = os.path.join(workdir, "out.onnx")
    if os.path.exists(out):
        os.remove(out)
    cmd = [exe, "export", model_path, "-o", out, "--keep"]
    p = run(cmd)
    if p.returncode != 0:
        c.fail(f"`{fmt_cmd(cmd)}` exited {p.returncode}: {tail(p.stderr)}")
        return None
    if not os.path.isfile(out):
        c.fail(f"`{fmt_cmd(cmd)}` exited 0 but wrote no {out}")
        return None
    try:
        ext_files = {e.value for t in onnx.load(out, load_external_data=False).graph.initializer
                     for e in t.external_data if e.key == "location"}
    except Exception:  # noqa: BLE001 - reported by the full load below
        ext_files = set()
    leftovers = [f for f in os.listdir(workdir) if f != "out.onnx" and f not in ext_files]
    if leftovers:
        c.fail(f"`{fmt_cmd(cmd)}` left other files in {workdir}: {leftovers}")
    try:
        mb = onnx.load(out)
    except Exception as e:  # noqa: BLE001
        c.fail(f"onnx.load({out}): {e}")
        return None
    # Check the loaded ModelProto, not the path: onnx 1.12's check_model(path, full_check=True)
    # runs infer_shapes_path(), which REWRITES the file with inferred value_info.
    try:
        onnx.checker.check_model(mb, full_check=True)
    except Exception as e:  # noqa: BLE001
        c.fail(f"onnx.checker.check_model({out}, full_check=True): {str(e)[:1000]}")
    cmp_model(c, ma, mb)
    return out


# ------------------------------------------------------------------ (c) ONNX Runtime

def check_ort(c, node, ort_compare, model_path, out, batches):
    for b in batches:
        cmd = [node, ort_compare, model_path, out, "--batch", str(b)]
        p = run(cmd)
        if p.returncode != 0:
            c.fail(f"`{fmt_cmd(cmd)}` exited {p.returncode}: {tail(p.stderr).strip()}")
        else:
            sys.stdout.write(p.stdout.decode("utf-8", "replace"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx_tl")
    ap.add_argument("model")
    ap.add_argument("workdir")
    ap.add_argument("--node", default=os.environ.get("NODE") or shutil.which("node") or "node")
    ap.add_argument("--ort-compare",
                    default=os.path.join(os.path.dirname(HERE), "ort", "ort_compare.js"))
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes for ORT")
    ap.add_argument("--expect", default=None, help="expectations JSON (default: MODEL's dir)")
    args = ap.parse_args()

    t0 = time.time()
    name = os.path.basename(args.model)
    c = Checker(name)
    exe = os.path.abspath(args.onnx_tl) if os.sep in args.onnx_tl else args.onnx_tl
    if os.sep in exe and not os.access(exe, os.X_OK):
        sys.stderr.write(f"{name}: onnx-tl binary {exe} does not exist or is not executable\n")
        return 1
    if not os.path.isfile(args.ort_compare):
        sys.stderr.write(f"{name}: {args.ort_compare} not found\n")
        return 1
    expect_path = args.expect or os.path.join(os.path.dirname(os.path.abspath(args.model)),
                                              "expect.json")
    expect = {}
    if os.path.exists(expect_path):
        with open(expect_path) as f:
            expect = json.load(f).get(name, {})
    elif args.expect:
        sys.stderr.write(f"{name}: {expect_path} not found\n")
        return 1
    if args.batches:
        batches = [int(x) for x in args.batches.split(",") if x]
    else:
        batches = expect.get("ort_batches", [1, 8])
    os.makedirs(args.workdir, exist_ok=True)

    ma = onnx.load(args.model)
    check_info(c, exe, args.model, ma, expect)
    out = check_export(c, exe, args.model, ma, args.workdir)
    if out:
        check_ort(c, args.node, args.ort_compare, args.model, out, batches)

    dt = time.time() - t0
    if c.problems:
        sys.stderr.write(f"{name}: {len(c.problems)} problem(s) ({dt:.1f}s)\n")
        return 1
    print(f"{name}: OK: info matches, export lossless and checker-clean, ORT identical at "
          f"batch {','.join(map(str, batches))} ({dt:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
