#!/usr/bin/python3
"""check_bf16.py - `train --precision bf16` (tests/bf16.cmake).

    check_bf16.py grad BF16_GRAD MODELS_DIR
    check_bf16.py cli ONNX_TL MODELS_DIR WORKDIR
    check_bf16.py demo ONNX_TL FASHION_FOLDER WORKDIR [--data-dir DIR] [--seed S] [--tolerance POINTS]

grad: bf16_grad (one training step in fp32 and in bf16 on the same batch) on tiny_resnet (residual
      convolutions, no BatchNormalization), fashion_cnn (Conv/BatchNormalization/MaxPool, the demo's
      model) and tiny_mlp (Gemm only), each within its tolerances; then oneDNN's log of one bf16
      step of tiny_resnet and tiny_mobilenet (1x1, depthwise, strided, Gemm): every convolution and
      matmul primitive runs on bf16 data, none on a reference ("ref:") kernel, and forward,
      backward-data and backward-weights convolutions all occur.
cli:  bad --precision values (exit 2), a CPU without AVX512_BF16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE:
      exit 1, one line naming --precision bf16, no OUT), the precision in the provenance and the
      checkpoint, --resume keeping it, a checkpoint from before the option resuming as fp32.
demo: tools/demo.sh's transfer recipe (fashion_cnn, classes 5-9, 50 training images per class, head
      10 epochs then everything 10 epochs) in fp32 and in bf16 with the same seed: test accuracies
      within --tolerance points (1), per-epoch training losses within 2% (relative) of each other
      (measured at seed 1: 92.34 % fp32, 92.28 % bf16; losses within 0.1 %).

The tolerances of `grad` come from measurements (tests/bf16.cmake): bf16 rounds every input of
every convolution and matrix product to 8 significant bits, so gradients of early layers (products
of many rounded factors, summed with cancellation) differ from fp32 by several percent; PyTorch's
torch.autocast(cpu, bfloat16) on fashion_cnn differs from its fp32 gradients by 1-13 % per tensor
(onnx-tl: 0.3-8 %).
Exit status 0 when every check passes; 1 otherwise (each failure printed).
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import check  # noqa: E402


def run(cmd, env=None, **kw):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, **kw)


# ------------------------------------------------------------------ grad

# model, batch, per-tensor tolerance, global tolerance, loss tolerance (measured at seed 1, batch 8:
# tiny_resnet 0.11 / 0.061 / 1.2e-4, fashion_cnn 0.082 / 0.039 / 4.0e-4, tiny_mlp 3.2e-3 / 2.4e-3 / 7.6e-5)
GRAD_CASES = [
    ("tiny_resnet", 8, 0.3, 0.15, 1e-3),
    ("fashion_cnn", 8, 0.2, 0.1, 3e-3),
    ("tiny_mlp", 8, 1e-2, 1e-2, 1e-3),
]


def grad(bf16_grad, models):
    for name, batch, tol, gtol, ltol in GRAD_CASES:
        p = run([bf16_grad, os.path.join(models, name + ".onnx"), "--batch", str(batch), "--seed", "1",
                 "--tol", str(tol), "--global-tol", str(gtol), "--loss-tol", str(ltol)])
        last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        check(p.returncode == 0, "grad %s: bf16 gradients within %g per tensor, %g overall, loss within %g "
              "of fp32 (%s)%s" % (name, tol, gtol, ltol, last, (" " + p.stderr.strip()) if p.returncode else ""))
    # oneDNN's implementations in bf16
    for name in ("tiny_resnet", "tiny_mobilenet"):
        p = run([bf16_grad, os.path.join(models, name + ".onnx"), "--batch", "4", "--precision-only", "bf16"],
                env={"ONEDNN_VERBOSE": "1"})
        if not check(p.returncode == 0, "verbose %s: one bf16 step runs (%s)" % (name, p.stderr.strip()[-300:])):
            continue
        prims = []
        for line in p.stdout.splitlines():
            f = line.split(",")
            if len(f) > 6 and f[0] == "onednn_verbose" and f[1] == "exec" and f[3] in ("convolution", "matmul",
                                                                                       "deconvolution"):
                prims.append((f[3], f[4], f[5], f[6]))
        kinds = {(k, prop) for k, _, prop, _ in prims}
        check(all(("convolution", prop) in kinds for prop in ("forward_training", "backward_data", "backward_weights"))
              and any(k == "matmul" for k, _ in kinds),
              "verbose %s: convolution forward/backward-data/backward-weights and matmul primitives ran (%s)"
              % (name, sorted(kinds)))
        not_bf16 = [p for p in prims if "bf16" not in p[3]]
        check(not not_bf16, "verbose %s: every convolution/matmul reads bf16 data (%d primitives; not: %s)"
              % (name, len(prims), not_bf16[:3]))
        ref = [p for p in prims if p[1].startswith("ref")]
        impls = sorted({p[1] for p in prims})
        check(not ref and any("avx512_core_bf16" in i for i in impls),
              "verbose %s: no reference kernel, avx512_core_bf16 kernels used (%s)" % (name, impls))


# ------------------------------------------------------------------ cli

def provenance(path):
    import onnx
    if not os.path.exists(path):
        return {}
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    return json.loads(meta.get("onnx_tl.provenance", "{}"))


def cli(tl, models, work):
    import numpy as np
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    r = np.random.default_rng(7)
    data = os.path.join(work, "d.npz")
    np.savez(data, x=r.standard_normal((40, 3, 32, 32)).astype(np.float32), y=r.integers(0, 10, 40))
    model = os.path.join(models, "tiny_resnet.onnx")
    base = [tl, "train", model, "--data", data, "--batch", "8", "--seed", "3", "--val-split", "0", "--quiet"]

    p = run(base + ["-o", os.path.join(work, "x.onnx"), "--precision", "fp16"])
    check(p.returncode == 2 and "--precision" in p.stderr and "fp16" in p.stderr,
          "--precision fp16: usage error naming the flag (exit %d: %s)" % (p.returncode, p.stderr.strip()[-200:]))
    out = os.path.join(work, "nobf16.onnx")
    p = run(base + ["-o", out, "--precision", "bf16"], env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1 and len(lines) == 1 and lines[0].startswith("onnx-tl: ") and "--precision bf16" in lines[0]
          and "AVX512_BF16" in lines[0] and not os.path.exists(out),
          "no AVX512_BF16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE): exit 1, one line naming --precision bf16, no OUT "
          "(exit %d: %s)" % (p.returncode, p.stderr.strip()[-300:]))
    p = run(base + ["-o", os.path.join(work, "capped_fp32.onnx"), "--epochs", "1"],
            env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
    check(p.returncode == 0, "the same CPU trains with the default fp32 (exit %d: %s)"
          % (p.returncode, p.stderr.strip()[-200:]))

    fp = os.path.join(work, "fp32.onnx")
    bf = os.path.join(work, "bf16.onnx")
    ck = os.path.join(work, "ck")
    p1 = run(base + ["-o", fp, "--epochs", "2"])
    p2 = run(base + ["-o", bf, "--epochs", "2", "--precision", "bf16", "--checkpoint", ck])
    if not check(p1.returncode == 0 and p2.returncode == 0, "fp32 and bf16 runs (exit %d, %d: %s)"
                 % (p1.returncode, p2.returncode, (p1.stderr + p2.stderr).strip()[-300:])):
        return
    hf, hb = provenance(fp).get("hyperparameters", {}), provenance(bf).get("hyperparameters", {})
    check(hf.get("precision") == "fp32" and hb.get("precision") == "bf16",
          "provenance hyperparameters.precision: %s / %s" % (hf.get("precision"), hb.get("precision")))
    state = open(os.path.join(ck, "state.txt")).read()
    check(re.search(r"^hp\.precision 1$", state, re.M) is not None, "checkpoint state records hp.precision 1")
    import onnx
    from onnx import numpy_helper
    wf = {t.name: numpy_helper.to_array(t) for t in onnx.load(fp).graph.initializer}
    wb = {t.name: numpy_helper.to_array(t) for t in onnx.load(bf).graph.initializer}
    diff = max(float(np.abs(wf[k] - wb[k]).max()) for k in wf)
    scale = max(float(np.abs(wf[k]).max()) for k in wf)
    check(0 < diff < 0.05 * scale and all(np.isfinite(v).all() for v in wb.values()),
          "bf16 weights differ from fp32 ones, slightly (max |diff| %.3g, max |w| %.3g)" % (diff, scale))
    old = os.path.join(work, "ck_old")  # made into a checkpoint from before the option below
    shutil.copytree(ck, old)
    # resume keeps bf16 (hyper-parameters from the checkpoint)
    rs = os.path.join(work, "resumed.onnx")
    p = run(base + ["-o", rs, "--resume", ck, "--epochs", "3"])
    check(p.returncode == 0 and provenance(rs).get("hyperparameters", {}).get("precision") == "bf16",
          "--resume continues in bf16 (exit %d: %s)" % (p.returncode, p.stderr.strip()[-200:]))
    # a checkpoint written before the option existed resumes as fp32
    sp = os.path.join(old, "state.txt")
    with open(sp) as f:
        txt = f.read()
    with open(sp, "w") as f:
        f.write(re.sub(r"^hp\.precision 1\n", "", txt, flags=re.M))
    ro = os.path.join(work, "resumed_old.onnx")
    p = run(base + ["-o", ro, "--resume", old, "--epochs", "3"])
    check(p.returncode == 0 and provenance(ro).get("hyperparameters", {}).get("precision") == "fp32",
          "a checkpoint without hp.precision resumes as fp32 (exit %d: %s)" % (p.returncode, p.stderr.strip()[-200:]))
    p = run([tl, "train", "--help"])
    check("--precision fp32|bf16" in p.stdout + p.stderr, "train --help documents --precision")


# ------------------------------------------------------------------ demo

def demo(tl, ff, work, data_dir, seed, tol):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    d = os.path.join(work, "data")
    for args in (["-o", d + "/train", "--split", "train", "--per-class", "50", "--seed", str(seed)],
                 ["-o", d + "/val", "--split", "train", "--per-class", "200", "--skip", "50", "--seed", str(seed)],
                 ["-o", d + "/test", "--split", "test"]):
        p = run([ff] + args + ["--data-dir", data_dir])
        if not check(p.returncode == 0, "fashion_folder %s (%s)" % (" ".join(args[:3]), p.stderr.strip()[-200:])):
            return
    labels = os.path.join(work, "labels.txt")
    with open(labels, "w") as f:
        f.write("5-Sandal\n6-Shirt\n7-Sneaker\n8-Bag\n9-Ankle-boot\n")
    pre = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "testdata", "models", "fashion_cnn.onnx")
    sw, ho = os.path.join(work, "swapped.onnx"), os.path.join(work, "head_only.onnx")
    for cmd in ([tl, "swap-head", pre, "-o", sw, "--classes", "5", "--labels", labels, "--seed", str(seed)],
                [tl, "freeze", sw, "-o", ho, "--all-but-head"]):
        p = run(cmd)
        if not check(p.returncode == 0, " ".join(cmd[1:2]) + " (%s)" % p.stderr.strip()[-200:]):
            return
    common = ["--data", d + "/train", "--val", d + "/val", "--batch", "25", "--optimizer", "adam", "--seed",
              str(seed), "--quiet"]
    res = {}
    for prec in ("fp32", "bf16"):
        w = os.path.join(work, prec)
        os.makedirs(w)
        steps = [
            [tl, "train", ho, "-o", w + "/head.onnx", "--epochs", "10", "--lr", "0.01", "--bn", "frozen",
             "--log", w + "/head.jsonl", "--precision", prec] + common,
            [tl, "freeze", w + "/head.onnx", "-o", w + "/unfrozen.onnx", "--unfreeze", "*"],
            [tl, "train", w + "/unfrozen.onnx", "-o", w + "/ft.onnx", "--epochs", "10", "--lr", "0.001",
             "--layer-lr-decay", "0.8", "--bn", "train", "--log", w + "/ft.jsonl", "--precision", prec] + common,
            [tl, "eval", w + "/ft.onnx", "--data", d + "/test", "--json"],
        ]
        for cmd in steps:
            p = run(cmd)
            if not check(p.returncode == 0, "%s: %s (%s)" % (prec, " ".join(cmd[1:2]), p.stderr.strip()[-300:])):
                return
        acc = json.loads(p.stdout)["accuracy"]
        losses = [json.loads(l)["train_loss"] for f in ("head", "ft") for l in open("%s/%s.jsonl" % (w, f))]
        res[prec] = (acc, losses)
        print("        %s: test accuracy %.2f %%, training losses %s" % (prec, 100 * acc,
                                                                            " ".join("%.4f" % x for x in losses)))
    (af, lf), (ab, lb) = res["fp32"], res["bf16"]
    check(abs(af - ab) * 100 <= tol, "test accuracy bf16 %.2f %% vs fp32 %.2f %%: within %g points"
          % (100 * ab, 100 * af, tol))
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lf, lb))
    check(len(lf) == len(lb) == 20 and rel <= 0.02,
          "per-epoch training losses within 2%% (max relative difference %.3f over %d epochs)" % (rel, len(lf)))
    check(lf != lb, "the bf16 run is not bit-identical to the fp32 one")


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "grad" and len(a) == 3:
        grad(a[1], a[2])
    elif a[0] == "cli" and len(a) == 4:
        cli(a[1], a[2], a[3])
    elif a[0] == "demo" and len(a) >= 4:
        opts = dict(zip(a[4::2], a[5::2]))
        demo(a[1], a[2], a[3], opts.get("--data-dir", "/usr/share/datasets/fashion-mnist"),
             int(opts.get("--seed", "1")), float(opts.get("--tolerance", "1")))
    else:
        sys.exit(__doc__)
    return otl_test.finish()


if __name__ == "__main__":
    sys.exit(main())
