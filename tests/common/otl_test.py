"""otl_test.py - helpers the Python test scripts share (tests/*/check_*.py put tests/common on
sys.path): check() that collects failures, run() with an expected exit status, ONNX readers,
random input files, and the one-CASE-per-CTest-entry main. A script fails by its exit status."""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

FAILED = []
ONNX_TL = None  # the onnx-tl binary for tl(); the script sets otl_test.ONNX_TL


def check(cond, what):
    """Print 'ok'/'FAIL' and the check; a failed one is remembered for finish(). Returns cond."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILED.append(what)
    return cond


def run(args, expect=0, timeout=900, cwd=None):
    """Run args[0] with args[1:] (str()-ed); check the exit status (the tails of stdout and stderr
    are printed when it is not the expected one). Returns the CompletedProcess."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if p.returncode != expect:
        print(p.stdout[-2000:] + p.stderr[-3000:])
    check(p.returncode == expect, "exit %d (expected %d): %s" % (p.returncode, expect, " ".join(map(str, args[1:]))))
    return p


def tl(*args, expect=0, timeout=900):
    """run() of `onnx-tl ARGS...`."""
    return run([ONNX_TL, *args], expect=expect, timeout=timeout)


def _model(m):
    return onnx.load(m) if isinstance(m, str) else m


def inits(m):
    """{name: numpy array} of the initializers of a model or a model file."""
    return {t.name: numpy_helper.to_array(t) for t in _model(m).graph.initializer}


def meta(m):
    """metadata_props of a model or a model file as a dict."""
    return {p.key: p.value for p in _model(m).metadata_props}


def log_lines(path):
    """The JSON lines of a train --log file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def checker(path):
    """onnx.checker with full_check, as a check."""
    try:
        onnx.checker.check_model(path, full_check=True)
        return check(True, "onnx.checker full_check %s" % os.path.basename(path))
    except Exception as e:  # noqa: BLE001
        return check(False, "onnx.checker full_check %s: %s" % (os.path.basename(path), e))


def random_feeds(m, d, batch=3, seed=7):
    """d/in_<k>.npy for every graph input without an initializer (free axes = batch): int64 ids in
    [0, 50) for int64 inputs, standard normal float32 otherwise. Returns [(input name, path)]."""
    names = {t.name for t in m.graph.initializer}
    r = np.random.RandomState(seed)
    files = []
    for i in m.graph.input:
        if i.name in names:
            continue
        shape = [x.dim_value if x.HasField("dim_value") and x.dim_value > 0 else batch
                 for x in i.type.tensor_type.shape.dim]
        path = os.path.join(d, "in_%d.npy" % len(files))
        if i.type.tensor_type.elem_type == TensorProto.INT64:
            np.save(path, r.randint(0, 50, size=shape).astype(np.int64))
        else:
            np.save(path, r.randn(*shape).astype(np.float32))
        files.append((i.name, path))
    return files


def bn_data(path, n, seed=0):
    """PATH.npz with x (n, 3, 10, 10) float32 and y (n,) int64 in 4 learnable classes: data for the
    BatchNormalization model tests/train/bn/model.onnx."""
    r = np.random.RandomState(seed)
    y = r.randint(0, 4, n).astype(np.int64)
    x = (r.randn(n, 3, 10, 10) * 0.6 + y[:, None, None, None] * 0.4).astype(np.float32)
    x[:, 1] -= (y == 1)[:, None, None] * 0.8
    np.savez(path, x=x, y=y)


def npy_name(name):
    """The file `onnx-tl run`/`grad` and tests/ort/ort_run.js write a tensor to: DIR/<this>.npy
    (characters outside [A-Za-z0-9._-] replaced by '_')."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)


def finish():
    """Exit status of the script: 1 (listing them) when a check failed, else 0."""
    if FAILED:
        print("%d check(s) FAILED:\n  %s" % (len(FAILED), "\n  ".join(FAILED)))
        return 1
    print("all checks passed")
    return 0


def main(case, cases, work=None, prefix="otl-test-"):
    """Run cases["case_" + case](d) and return the exit status (2: unknown case). d is WORK/CASE
    (emptied first, left for inspection) when work is given, else a temporary directory removed
    afterwards."""
    fn = cases.get("case_" + case)
    if not fn:
        print("unknown case " + case)
        return 2
    if work:
        d = os.path.join(work, case)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        fn(d)
        return finish()
    d = tempfile.mkdtemp(prefix="%s%s-" % (prefix, case))
    try:
        fn(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return finish()
