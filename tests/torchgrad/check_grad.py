#!/usr/bin/python3
"""Check `onnx-tl grad` against the PyTorch goldens of one case (see tg_common.py).

    /usr/bin/python3 tests/torchgrad/check_grad.py ONNX_TL CASE_DIR [--workdir DIR]
                     [--threads N] [--rtol R] [--atol A] [-v]

Runs `onnx-tl grad CASE_DIR/model.onnx --input NAME=FILE ... --target target.npy -o WORKDIR
[--loss ...] [--label-smoothing ...] [--bn ...]` with the options of CASE_DIR/case.json, then
compares WORKDIR/loss.npy and every WORKDIR/grad/*.npy with the goldens: per tensor
max|a-b| <= atol + rtol * max|b| (rtol 1e-4, atol 1e-5 unless case.json or the command line
says otherwise), plus, element by element, CASE_DIR/kink/<name>.npy where it exists (the
float32-kink envelope: what flipping ReLU/ReLU6 masks of near-kink inputs may change, see
tg_common.kink_envelope); same shape, float32, and exactly the same set of gradient files (none
missing, none extra: frozen parameters and BatchNormalization running statistics get none).
Exit status 0 when everything matches, 1 on any mismatch or when onnx-tl fails (its stderr is
printed), 2 on bad usage.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def compare(name, a, b, rtol, atol, env=None):
    """(ok, message, used, scale) for one tensor; used = max of |a-b| / tolerance. env: the
    float32-kink envelope (same shape), added to the tolerance element by element."""
    if a.shape != b.shape:
        return False, "shape %s, expected %s" % (a.shape, b.shape), float("inf"), 0.0
    if a.dtype != np.float32:
        return False, "dtype %s, expected float32" % a.dtype, float("inf"), 0.0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = float(np.abs(b64).max()) if b64.size else 0.0
    if not np.all(np.isfinite(a64)):
        return False, "%d non-finite values" % int(np.sum(~np.isfinite(a64))), float("inf"), scale
    diff = np.abs(a64 - b64)
    err = float(diff.max()) if diff.size else 0.0
    tol = atol + rtol * scale
    msg = "max|a-b| %.3g  max|b| %.3g  rel %.3g  (tol %.3g)" % (
        err, scale, err / scale if scale > 0 else 0.0, tol)
    if env is None:
        ok = err <= tol
        over = diff - tol
    else:
        if env.shape != b.shape:
            return False, "kink envelope shape %s differs" % (env.shape,), float("inf"), scale
        over = diff - (tol + env.astype(np.float64))
        ok = bool(np.all(over <= 0))
        n_env = int(np.sum(diff > tol))
        if n_env:
            msg += "  %d of %d elements within the float32-kink envelope (max %.3g)" % (
                n_env, diff.size, float(env.max()))
    if not ok:
        i = np.unravel_index(int(np.argmax(over)), diff.shape)
        msg += "  worst at %s: got %.7g, expected %.7g" % (list(i), a64[i], b64[i])
        if env is not None:
            msg += " (envelope there %.3g)" % env[i]
    # how much of the tolerance is used (the envelope counts as tolerance)
    used = float(np.max(diff / (tol + (env if env is not None else 0.0)))) if diff.size else 0.0
    return ok, msg, used, scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx_tl")
    ap.add_argument("case_dir")
    ap.add_argument("--workdir", help="where onnx-tl writes (default: a temporary directory, "
                                      "removed afterwards)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rtol", type=float, help="override case.json")
    ap.add_argument("--atol", type=float, help="override case.json")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line for every tensor")
    args = ap.parse_args()

    case = os.path.basename(os.path.normpath(args.case_dir))
    try:
        with open(os.path.join(args.case_dir, "case.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        print("%s: cannot read case.json: %s" % (case, e), file=sys.stderr)
        return 1
    rtol = args.rtol if args.rtol is not None else meta.get("rtol", 1e-4)
    atol = args.atol if args.atol is not None else meta.get("atol", 1e-5)

    tmp = None
    if args.workdir:
        work = args.workdir
        if os.path.exists(work):
            shutil.rmtree(work)  # no stale gradient files from an earlier run
        os.makedirs(os.path.dirname(os.path.abspath(work)), exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="torchgrad.")
        work = os.path.join(tmp, "out")
    try:
        return run(args, case, meta, work, rtol, atol)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, case, meta, work, rtol, atol):
    d = args.case_dir
    cmd = [args.onnx_tl, "grad", os.path.join(d, "model.onnx")]
    for name, fn in sorted(meta["inputs"].items()):
        cmd += ["--input", "%s=%s" % (name, os.path.join(d, fn))]
    cmd += ["--target", os.path.join(d, "target.npy"), "-o", work, "--loss", meta["loss"],
            "--bn", meta["bn"], "--threads", str(args.threads)]
    if meta.get("label_smoothing"):
        cmd += ["--label-smoothing", repr(meta["label_smoothing"])]
    print("%s: %s" % (case, meta.get("doc", "")))
    print("$ " + " ".join(cmd))
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("FAIL %s: cannot run onnx-tl: %s" % (case, e))
        return 1
    secs = time.time() - t0
    if p.returncode != 0:
        print("FAIL %s: onnx-tl grad exited with status %d after %.2fs; its stderr:"
              % (case, p.returncode, secs))
        sys.stdout.write(p.stderr if p.stderr.endswith("\n") or not p.stderr else p.stderr + "\n")
        return 1
    print("onnx-tl grad: %.2fs; tolerance max|a-b| <= %g + %g * max|b|%s%s"
          % (secs, atol, rtol, " (%s)" % meta["reason"] if meta.get("reason") else "",
             " + float32-kink envelope (%d candidates)" % meta["kink_candidates"]
             if meta.get("kink_candidates") else ""))

    failures = []
    rows = []  # (max err / tol, name, msg, ok)

    def check(label, got_path, want_path, env_path=None):
        try:
            a = np.load(got_path)
        except (OSError, ValueError) as e:
            failures.append("%s: cannot read %s: %s" % (label, got_path, e))
            return
        b = np.load(want_path)
        env = np.load(env_path) if env_path and os.path.exists(env_path) else None
        ok, msg, used, scale = compare(label, a, b, rtol, atol, env)
        rows.append((used, label, msg, ok))
        if not ok:
            failures.append("%s: %s" % (label, msg))

    if not os.path.exists(os.path.join(work, "loss.npy")):
        failures.append("loss: onnx-tl wrote no loss.npy")
    else:
        check("loss", os.path.join(work, "loss.npy"), os.path.join(d, "loss.npy"))

    want = sorted(f for f in os.listdir(os.path.join(d, "grad")) if f.endswith(".npy"))
    gdir = os.path.join(work, "grad")
    got = sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []
    missing = [f[:-4] for f in want if f not in got]
    extra = [f for f in got if f not in want]
    if missing:
        failures.append("missing gradients (%d of %d): %s" % (len(missing), len(want),
                                                              ", ".join(missing)))
    if extra:
        frozen = set(meta.get("frozen", []))
        note = " (frozen parameters must get none)" if frozen else ""
        failures.append("unexpected gradient files (%d)%s: %s" % (len(extra), note,
                                                                  ", ".join(extra)))
    for f in want:
        if f in got:
            check("grad/" + f[:-4], os.path.join(gdir, f), os.path.join(d, "grad", f),
                  os.path.join(d, "kink", f))

    if args.verbose:
        for used, label, msg, ok in rows:
            print("  %s %-48s %s" % ("ok  " if ok else "FAIL", label, msg))
    else:  # the three closest to their tolerance
        for used, label, msg, ok in sorted(rows, reverse=True)[:3]:
            print("  %s %-48s %s" % ("ok  " if ok else "FAIL", label, msg))
    if failures:
        print("FAIL %s: %d problem(s) (%d tensors compared, %d gradient files expected)"
              % (case, len(failures), len(rows), len(want)))
        for f in failures:
            print("  " + f)
        return 1
    print("ok %s: loss and %d gradients match PyTorch" % (case, len(want)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
