#!/usr/bin/python3
"""Check one `onnx-tl swap-head` result end to end.

    check_swap.py --onnx-tl BIN --node NODE --ort-run ort_run.js --model M --workdir D
                  --classes N [--batch B] [--seed-check] [--no-backbone] [--expect-hidden H] [--expect-dropout P]
                  [--expect-softmax] [--expect-old-head NAME] [-- extra swap-head args]

1. swap-head M -o D/out.onnx --classes N --seed 7 [extra args]
2. onnx.checker.check_model(full_check=True) on the result
3. the result runs in ONNX Runtime (tests/ort/ort_run.js) and in `onnx-tl run` on the same
   random batch: output shape (B, N), agreement within 1e-4
4. backbone unchanged + head correct: the cut tensor F (the outside input of the new /head*/
   nodes) is computed by ORT on the ORIGINAL model; numpy applies the new head's parameters to
   it (pooling by rank, Gemm, Relu) and must match the new head's last Gemm output computed by
   ORT on the NEW model (1e-4)
5. structure: new parameters head*.fc*.weight/bias with the expected shapes, Relu/Dropout iff
   --hidden/--dropout, the old head's weight gone (--expect-old-head), a final Softmax kept
   (--expect-softmax: rows sum to 1)
6. --seed-check: the same seed gives identical bytes, another seed different bytes
Exit status 0 only when every check passed.
"""
import argparse
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
except ImportError as e:  # never skip
    sys.stderr.write(f"check_swap.py: missing python module ({e})\n")
    sys.exit(1)

TOL = 1e-4


def sanitize(name):
    return "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in name)


def run(cmd, what):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n"
                         f"{p.stderr.decode(errors='replace')[-3000:]}")
    return p


def make_inputs(model, batch, workdir, image_size=224):
    g = model.graph
    init = {t.name for t in g.initializer}
    rng = np.random.default_rng(1234)
    args = []
    for vi in g.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif i == 0:
                dims.append(batch)
            else:
                dims.append(image_size if len(tt.shape.dim) == 4 else 16)
        if tt.elem_type == onnx.TensorProto.FLOAT:
            x = rng.standard_normal(dims).astype(np.float32)
        elif tt.elem_type == onnx.TensorProto.INT64:
            x = rng.integers(0, 100, size=dims).astype(np.int64)
        else:
            raise SystemExit(f"input {vi.name}: unsupported element type {tt.elem_type}")
        path = os.path.join(workdir, sanitize(vi.name) + ".in.npy")
        np.save(path, x)
        args += ["--input", f"{vi.name}={path}"]
    return args


def ort(args, model_path, outdir, inputs):
    shutil.rmtree(outdir, ignore_errors=True)
    run([args.node, args.ort_run, model_path, outdir] + inputs + ["--threads", "2"], f"ORT on {model_path}")


def with_outputs(model, names, path):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    onnx.save(m, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx-tl", required=True)
    ap.add_argument("--node", default="node")
    ap.add_argument("--ort-run", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224, help="symbolic H and W of rank-4 inputs")
    ap.add_argument("--seed-check", action="store_true")
    ap.add_argument("--no-backbone", action="store_true", help="skip step 4 (one ORT run less)")
    ap.add_argument("--expect-hidden", type=int, default=0)
    ap.add_argument("--expect-dropout", type=float, default=None)
    ap.add_argument("--expect-softmax", action="store_true")
    ap.add_argument("--expect-old-head", default=None)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    name = os.path.basename(args.model)
    wd = args.workdir
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    out = os.path.join(wd, "out.onnx")
    N = args.classes
    base_cmd = [args.onnx_tl, "swap-head", args.model, "-o", out, "--classes", str(N)] + args.extra
    run(base_cmd + ["--seed", "7"], "swap-head")

    # 2. checker
    # (on the loaded proto: check_model(path, full_check=True) rewrites the file with inferred shapes)
    new = onnx.load(out)
    onnx.checker.check_model(new, full_check=True)
    orig = onnx.load(args.model)
    meta = {p.key: p.value for p in new.metadata_props}
    head_params = meta.get("onnx_tl.head", "").split("\n")
    inits = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    for p in head_params:
        if p not in inits:
            raise SystemExit(f"{name}: onnx_tl.head names '{p}', not an initializer")
    prefix = head_params[0].split(".")[0]

    # 5. structure
    nodes = [n for n in new.graph.node if n.name.startswith(f"/{prefix}/")]
    ops = [n.op_type for n in nodes]
    gemms = [n for n in nodes if n.op_type == "Gemm"]
    if args.expect_hidden:
        w1, w2 = inits[f"{prefix}.fc1.weight"], inits[f"{prefix}.fc2.weight"]
        if w1.shape[0] != args.expect_hidden or w2.shape != (N, args.expect_hidden) or "Relu" not in ops:
            raise SystemExit(f"{name}: hidden head shapes {w1.shape} {w2.shape}, ops {ops}")
        if len(gemms) != 2:
            raise SystemExit(f"{name}: expected 2 Gemm in the head, got {ops}")
    else:
        if inits[f"{prefix}.fc.weight"].shape[0] != N or "Relu" in ops or len(gemms) != 1:
            raise SystemExit(f"{name}: head ops {ops}, weight {inits[prefix + '.fc.weight'].shape}")
    drop = [n for n in nodes if n.op_type == "Dropout"]
    if (args.expect_dropout is None) != (not drop):
        raise SystemExit(f"{name}: Dropout nodes {len(drop)}, expected dropout {args.expect_dropout}")
    if drop:
        ratio = next((a.f for a in drop[0].attribute if a.name == "ratio"), None)  # opset < 12
        for n in new.graph.node:
            if len(drop[0].input) > 1 and drop[0].input[1] in n.output:
                ratio = float(numpy_helper.to_array(n.attribute[0].t))
        if ratio is None or abs(ratio - args.expect_dropout) > 1e-6:
            raise SystemExit(f"{name}: dropout ratio {ratio}, expected {args.expect_dropout}")
    for t in new.graph.initializer:
        if t.name.startswith(prefix + ".") and t.name not in head_params:
            raise SystemExit(f"{name}: stray initializer {t.name}")
    if args.expect_old_head and args.expect_old_head in inits:
        raise SystemExit(f"{name}: old head weight '{args.expect_old_head}' still present")

    # 3. ORT vs onnx-tl run, output shape
    inputs = make_inputs(new, args.batch, wd, args.image_size)
    # one ORT run of the new model, with the new head's last Gemm output exposed too
    last_gemm = gemms[-1].output[0]
    with_outputs(new, [last_gemm], os.path.join(wd, "new_g.onnx"))
    ort(args, os.path.join(wd, "new_g.onnx"), os.path.join(wd, "ort"), inputs)
    shutil.rmtree(os.path.join(wd, "otl"), ignore_errors=True)
    run([args.onnx_tl, "run", out, "--outdir", os.path.join(wd, "otl"), "--threads", "2"] + inputs, "onnx-tl run")
    out0 = new.graph.output[0].name
    for o in new.graph.output:
        if not os.path.exists(os.path.join(wd, "otl", sanitize(o.name) + ".npy")):
            raise SystemExit(f"{name}: onnx-tl run wrote no {o.name}")
        a = np.load(os.path.join(wd, "ort", sanitize(o.name) + ".npy"))
        b = np.load(os.path.join(wd, "otl", sanitize(o.name) + ".npy"))
        if a.shape != b.shape or not np.allclose(a, b, atol=TOL, rtol=TOL):
            raise SystemExit(f"{name}: output {o.name}: ORT {a.shape} vs onnx-tl {b.shape}, max diff "
                             f"{np.max(np.abs(a - b)) if a.shape == b.shape else 'n/a'}")
    y = np.load(os.path.join(wd, "ort", sanitize(out0) + ".npy"))
    if y.shape != (args.batch, N):
        raise SystemExit(f"{name}: output {out0} has shape {y.shape}, expected {(args.batch, N)}")
    dims = new.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or dims[1].dim_value != N:
        raise SystemExit(f"{name}: declared output shape {dims}")
    if args.expect_softmax and not np.allclose(y.sum(axis=1), 1.0, atol=1e-5):
        raise SystemExit(f"{name}: rows do not sum to 1: {y.sum(axis=1)}")

    # 4. backbone unchanged: F from the original model, head applied in numpy
    head_outs = {o for n in nodes for o in n.output}
    cut = None
    for n in nodes:
        for i in n.input:
            if i and i not in head_outs and i not in inits and i not in {c for m in new.graph.node
                                                                      if m.op_type == "Constant"
                                                                      for c in m.output}:
                cut = i
    orig_names = {o for n in orig.graph.node for o in n.output} | {i.name for i in orig.graph.input}
    cut_orig = cut if cut in orig_names else cut.rsplit("_backbone", 1)[0]
    if cut_orig not in orig_names:
        raise SystemExit(f"{name}: cut tensor {cut} not in the original model")
    g = np.load(os.path.join(wd, "ort", sanitize(last_gemm) + ".npy"))
    if args.no_backbone:
        print(f"{name}: ok (cut '{cut_orig}', head ops {ops}, output {y.shape}; backbone check not asked for)")
        return 0
    with_outputs(orig, [cut_orig], os.path.join(wd, "orig_f.onnx"))
    ort(args, os.path.join(wd, "orig_f.onnx"), os.path.join(wd, "ortf"), inputs)
    f = np.load(os.path.join(wd, "ortf", sanitize(cut_orig) + ".npy")).astype(np.float64)
    if f.ndim == 4:
        f = f.mean(axis=(2, 3))
    elif f.ndim == 3:
        f = f.mean(axis=1) if "ReduceMean" in ops else f[:, 0]
    if args.expect_hidden:
        f = np.maximum(f @ inits[f"{prefix}.fc1.weight"].T + inits[f"{prefix}.fc1.bias"], 0)
        fc = "fc2"
    else:
        fc = "fc"
    ref = f @ inits[f"{prefix}.{fc}.weight"].T + inits[f"{prefix}.{fc}.bias"]
    if ref.shape != g.shape or not np.allclose(ref, g, atol=TOL, rtol=TOL):
        raise SystemExit(f"{name}: new head on the original features differs: {ref.shape} vs {g.shape}, "
                         f"max diff {np.max(np.abs(ref - g)) if ref.shape == g.shape else 'n/a'}")
    # torch.nn.Linear init bounds
    for p in head_params:
        fan_in = inits[p.replace(".bias", ".weight")].shape[1]
        if np.max(np.abs(inits[p])) > 1 / np.sqrt(fan_in) + 1e-7 or np.std(inits[p]) == 0:
            raise SystemExit(f"{name}: {p} not initialized in U(-1/sqrt({fan_in}), 1/sqrt({fan_in}))")

    # 6. seeds
    if args.seed_check:
        o2, o3 = os.path.join(wd, "out2.onnx"), os.path.join(wd, "out3.onnx")
        run(base_cmd[:4] + [o2] + base_cmd[5:] + ["--seed", "7"], "swap-head (same seed)")
        run(base_cmd[:4] + [o3] + base_cmd[5:] + ["--seed", "8"], "swap-head (other seed)")
        b1, b2, b3 = (open(p, "rb").read() for p in (out, o2, o3))
        if b1 != b2:
            raise SystemExit(f"{name}: the same seed gave different files")
        if b1 == b3:
            raise SystemExit(f"{name}: another seed gave the same file")
    print(f"{name}: ok (cut '{cut_orig}' rank {np.load(os.path.join(wd, 'ortf', sanitize(cut_orig) + '.npy')).ndim}, "
          f"head ops {ops}, output {y.shape})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
