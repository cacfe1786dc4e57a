#!/usr/bin/python3
"""run_malformed.py ONNX_TL CORPUS_DIR [--generate] - run onnx-tl over the malformed corpus.

For every case of CORPUS_DIR/cases.json (made by make_corpus.py; --generate rebuilds it first) it
runs `info CASE`, `info CASE --json`, `export CASE -o OUT` (model given relative to its own
directory), `info /abs/path/CASE`, and `run CASE --input ... --outdir D` and `grad CASE --input ...
--target T -o D` (inputs made from the case's "inputs", see make_corpus.py; run/grad expectations
from its "cmds"), each under a timeout and an address-space limit, and checks:
  error cases: exit status exactly 1 (a signal, a timeout, 0 or anything else fails), stderr is
    exactly one non-empty line naming the model file and matching the case's regexes, stdout is
    empty for --json, a failed export/run/grad leaves no output and no temporary file behind;
  valid cases: exit 0, `info --json` is one JSON object with the contract's keys (and the case's
    expected values), the export is written, loads in python3-onnx, passes onnx.checker and keeps
    the graph (nodes, initializer values);
  all cases: the corpus (inputs, external data, everything around them) is unchanged.
All failures are listed at the end; the exit status is 1 if there is any.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
JSON_KEYS = ("inputs", "outputs", "opset", "params_total", "params_trainable", "ops", "head")


def snapshot(root):
    """{relative path: fingerprint} for everything under root, without following links or
    opening anything but regular files (the corpus contains FIFOs)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                snap[rel] = "file:" + h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                snap[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = "dir"
            else:
                snap[rel] = "special:%o" % stat.S_IFMT(st.st_mode)
    return snap


def diff_snap(a, b):
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            out.append("removed " + k)
        elif k not in a:
            out.append("created " + k)
        elif a[k] != b[k]:
            out.append("changed " + k)
    return out


def describe_status(rc):
    if rc is None:
        return "timeout"
    if rc < 0:
        try:
            return "killed by signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit %d" % rc


def is_sanitized(exe):
    try:
        with open(exe, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__ubsan_handle" in data or b"__msan_init" in data


class Runner:
    def __init__(self, exe, corpus, timeout, mem_mb):
        self.exe = os.path.abspath(exe)
        self.corpus = os.path.abspath(corpus)
        self.timeout = timeout
        self.mem = mem_mb * 1024 * 1024 if mem_mb > 0 else 0
        self.env = dict(os.environ)
        # A sanitizer report must never look like a clean "exit 1".
        # allocator_may_return_null: a huge malloc under ASan returns NULL as in the release build
        # (the library must report it) instead of aborting the process.
        for var, opts in (("ASAN_OPTIONS", "exitcode=86:abort_on_error=0:allocator_may_return_null=1"),
                          ("UBSAN_OPTIONS", "halt_on_error=1:exitcode=87:print_stacktrace=1"),
                          ("LSAN_OPTIONS", "exitcode=88")):
            self.env[var] = (self.env.get(var, "") + ":" + opts).lstrip(":")
        self.env.pop("ONNX_TL_DEBUG", None)

    def run(self, args, cwd):
        # Limits are set by a shell that then execs the tool: preexec_fn is unsafe with threads.
        lim = "ulimit -c 0; " + ("ulimit -v %d; " % (self.mem // 1024) if self.mem else "")
        cmd = ["/bin/sh", "-c", lim + 'exec "$0" "$@"', self.exe] + args
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.env, start_new_session=True)
        try:
            out, err = p.communicate(timeout=self.timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            rc = None
        return rc, out, err, time.monotonic() - t0


def strip_names(msg, model_abs, model_rel):
    """Remove the model's own path/name so that a file name never satisfies a keyword."""
    cands = {model_abs, os.path.realpath(model_abs), model_rel, os.path.basename(model_rel),
             os.path.dirname(model_abs), os.path.dirname(os.path.realpath(model_abs))}
    for c in sorted((c for c in cands if c), key=len, reverse=True):
        msg = msg.replace(c, "")
    return msg


def check_error_run(case, rc, out, err, model_abs, json_mode):
    probs = []
    text = err.decode("utf-8", "replace")
    if rc != 1:
        probs.append("expected exit 1, got %s" % describe_status(rc))
    body = text[:-1] if text.endswith("\n") else text
    lines = body.split("\n")
    if not body.strip():
        probs.append("stderr is empty")
    elif len(lines) != 1:
        probs.append("stderr has %d lines, expected one" % len(lines))
    base = os.path.basename(case["path"])
    if body.strip() and base not in body:
        probs.append("message does not name the file %r" % base)
    stripped = strip_names(body, model_abs, case["path"])
    for rx in case["must"]:
        if not re.search(rx, stripped, re.I):
            probs.append("message does not match /%s/" % (rx if len(rx) < 70 else rx[:67] + "..."))
    for rx in case.get("forbid", []):
        if re.search(rx, text):
            probs.append("stderr matches forbidden /%s/" % rx.encode("unicode_escape").decode())
    if json_mode and out:
        probs.append("--json error wrote %d bytes to stdout" % len(out))
    return probs


def shown(err):
    text = err.decode("utf-8", "replace")
    return repr(text if len(text) < 500 else text[:500] + "...[%d bytes]" % len(text))


def compare_models(orig_path, new_path, ext, checker=True):
    """Graph-level equality of two models with python3-onnx; [] when equal."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return []
    probs = []
    try:
        a = onnx.load(orig_path)
        b = onnx.load(new_path)
    except Exception as e:  # noqa: BLE001
        return ["python3-onnx cannot load the output: %s" % str(e).splitlines()[0]]
    try:
        if checker:
            onnx.checker.check_model(new_path if ext else b)
    except Exception as e:  # noqa: BLE001
        probs.append("onnx.checker rejects the output: %s" % str(e).splitlines()[0])
    na, nb = a.graph.node, b.graph.node
    if len(na) != len(nb):
        return probs + ["%d nodes in, %d out" % (len(na), len(nb))]
    for x, y in zip(na, nb):
        if (x.name, x.op_type, x.domain, list(x.input), list(x.output)) != \
                (y.name, y.op_type, y.domain, list(y.input), list(y.output)) or \
                len(x.attribute) != len(y.attribute):
            probs.append("node %r differs" % x.name)
            break
    ia = {t.name: t for t in a.graph.initializer}
    ib = {t.name: t for t in b.graph.initializer}
    if set(ia) != set(ib):
        probs.append("initializer names differ")
    elif len(ia) <= 1000:
        for k in ia:
            va, vb = numpy_helper.to_array(ia[k]), numpy_helper.to_array(ib[k])
            if va.dtype != vb.dtype or va.shape != vb.shape or va.tobytes() != vb.tobytes():
                probs.append("initializer %r differs" % k)
                break
    ga = [(v.name, v.type.SerializeToString()) for v in list(a.graph.input) + list(a.graph.output)]
    gb = [(v.name, v.type.SerializeToString()) for v in list(b.graph.input) + list(b.graph.output)]
    if ga != gb:
        probs.append("graph inputs/outputs differ")
    return probs


def run_case(r, case, outroot):
    """Run the case's commands; returns ([problem lines], [seconds per command])."""
    found = {}   # problem -> [commands]
    stderrs = {}  # stderr shown -> [commands]
    times = []
    model_abs = os.path.join(r.corpus, case["path"])
    cwd = os.path.dirname(model_abs)
    rel = os.path.basename(model_abs)
    outdir = tempfile.mkdtemp(prefix=case["name"] + ".", dir=outroot)
    out = os.path.join(outdir, "out.onnx")
    runs = [("info", ["info", rel], cwd, False),
            ("info --json", ["info", rel, "--json"], cwd, True),
            ("export", ["export", rel, "-o", out, "--keep"], cwd, False),
            ("info ABSPATH", ["info", model_abs], "/", False)]
    # run and grad: inputs live next to the outputs (outside the corpus)
    expect = {}
    for cmd in ("run", "grad"):
        e = case.get("cmds", {}).get(cmd, "default")
        if e == "default":
            e = {"exit": 1, "must": case["must"]} if case["exit"] == 1 else None
        expect[cmd] = e
    if expect["run"] or expect["grad"]:
        ind = os.path.join(outdir, "in")
        os.makedirs(ind)
        in_args = []
        for name, (dtype, shape) in sorted(case.get("inputs", {"X": ["float32", [1, 1, 4, 4]]}).items()):
            f = os.path.join(ind, "in%d.npy" % len(in_args))
            np.save(f, np.linspace(-1, 1, int(np.prod(shape))).astype(dtype).reshape(shape))
            in_args += ["--input", "%s=%s" % (name, f)]
        tgt = os.path.join(ind, "target.npy")
        np.save(tgt, np.zeros((1,), np.int64))
        if expect["run"]:
            runs.append(("run", ["run", rel] + in_args + ["--outdir", os.path.join(outdir, "run_out")], cwd,
                         False))
        if expect["grad"]:
            runs.append(("grad", ["grad", rel] + in_args + ["--target", tgt, "-o",
                                                             os.path.join(outdir, "grad_out")], cwd, False))
    for what, args, wd, json_mode in runs:
        if times and times[-1] >= r.timeout:
            found.setdefault("not run after a timeout", []).append(what)
            continue
        rc, so, se, dt = r.run(args, wd)
        times.append(dt)
        probs = []
        if what in ("run", "grad"):
            e = expect[what]
            d = os.path.join(outdir, what + "_out")
            if e["exit"] == 1:
                probs += check_error_run(dict(case, must=e.get("must", [])), rc, so, se, model_abs, False)
                if os.path.exists(d):
                    probs.append("failed %s left %s" % (what, sorted(os.listdir(d))))
            elif rc != 0:
                probs.append("expected exit 0, got %s" % describe_status(rc))
            else:
                left = sorted(os.listdir(d)) if os.path.isdir(d) else []
                if not left or (what == "grad" and "loss.npy" not in left) or \
                        any(x.startswith(".") for x in left):
                    probs.append("%s wrote %s" % (what, left))
        elif case["exit"] == 1:
            probs += check_error_run(case, rc, so, se, model_abs, json_mode)
            if what == "export":
                left = sorted(set(os.listdir(outdir)) - {"in"})
                if left:
                    probs.append("failed export left %s in the output directory" % left)
        elif rc != 0:
            probs.append("expected exit 0, got %s" % describe_status(rc))
        else:
            if what == "info" and not so.strip():
                probs.append("printed nothing on stdout")
            if json_mode:
                probs += check_json(case, so)
            if what == "export":
                probs += check_export(case, model_abs, outdir)
        for p in probs:
            found.setdefault(p, []).append(what)
        if probs:
            stderrs.setdefault(shown(se), []).append(what)
    shutil.rmtree(outdir, ignore_errors=True)
    lines = ["[%s] %s" % (", ".join(w), p) for p, w in found.items()]
    lines += ["[%s] stderr: %s" % (", ".join(w), e) for e, w in stderrs.items()]
    return lines, times


def check_export(case, model_abs, outdir):
    left = sorted(set(os.listdir(outdir)) - {"in"})
    allowed = {"out.onnx", "out.onnx.data", "out.data", "out.onnx_data"}
    if "out.onnx" not in left:
        return ["exit 0 but no output file"]
    if set(left) - allowed:
        return ["unexpected files left: %s" % sorted(set(left) - allowed)]
    out = os.path.join(outdir, "out.onnx")
    probs = []
    if case.get("export_contains"):
        with open(out, "rb") as f:
            if bytes.fromhex(case["export_contains"]) not in f.read():
                probs.append("export lost bytes %r" % bytes.fromhex(case["export_contains"]))
    if case.get("compare", 1):
        probs += compare_models(model_abs, out, case.get("ext"), case.get("checker", 1))
    return probs


def check_json(case, so):
    try:
        text = so.decode("utf-8")
    except UnicodeDecodeError:
        return ["stdout is not UTF-8"]
    try:
        obj = json.loads(text)
    except ValueError as e:
        return ["stdout is not one JSON object (%s): %r" % (e, text[:300])]
    if not isinstance(obj, dict):
        return ["stdout is not a JSON object"]
    probs = ["JSON misses key %r" % k for k in JSON_KEYS if k not in obj]
    for k, v in case.get("json", {}).items():
        if k in obj and obj[k] != v:
            probs.append("JSON %s is %r, expected %r" % (k, obj[k], v))
    return probs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx_tl")
    ap.add_argument("corpus")
    ap.add_argument("--generate", action="store_true",
                    help="(re)build the corpus with make_corpus.py first")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per command (default 20; 60 for sanitizer builds)")
    ap.add_argument("--mem-mb", type=int, default=4096,
                    help="RLIMIT_AS per command in MiB (0: none; off for sanitizer builds)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("-k", "--filter", default="", help="only cases whose name matches this regex")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    if a.generate:
        rc = subprocess.call([sys.executable, os.path.join(HERE, "make_corpus.py"), a.corpus])
        if rc:
            print("run_malformed.py: make_corpus.py failed (%d)" % rc)
            return 1
    if not os.access(a.onnx_tl, os.X_OK):
        print("run_malformed.py: %s is not an executable" % a.onnx_tl)
        return 1
    with open(os.path.join(a.corpus, "cases.json")) as f:
        cases = json.load(f)["cases"]
    cases = [c for c in cases if re.search(a.filter, c["name"])]
    mem = a.mem_mb
    timeout = a.timeout or 20.0
    if is_sanitized(a.onnx_tl):
        print("run_malformed.py: sanitizer build: no address-space limit, timeouts x3")
        mem = 0
        timeout = a.timeout or 60.0
    r = Runner(a.onnx_tl, a.corpus, timeout, mem)

    before = snapshot(r.corpus)
    outroot = tempfile.mkdtemp(prefix="otl_malformed_out.",
                               dir=os.path.dirname(os.path.abspath(a.corpus)))
    failures = {}
    slow = []
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        futs = {ex.submit(run_case, r, c, outroot): c for c in cases}
        for fut in concurrent.futures.as_completed(futs):
            c = futs[fut]
            try:
                probs, times = fut.result()
            except Exception as e:  # noqa: BLE001 - a runner bug must not hide other results
                probs, times = ["runner error: %r" % e], [0]
            slow.append((max(times), c["name"]))
            if probs:
                failures[c["name"]] = probs
            if a.verbose or probs:
                print("%s %-36s %5.2fs  %s" % ("FAIL" if probs else "ok  ", c["name"],
                                              max(times), c["about"]), flush=True)
    shutil.rmtree(outroot, ignore_errors=True)
    after = snapshot(r.corpus)
    changes = diff_snap(before, after)
    if changes:
        failures["<corpus>"] = ["the corpus was modified: " + ", ".join(changes[:20])]

    n_valid = sum(1 for c in cases if c["exit"] == 0)
    print("\nrun_malformed.py: %d cases (%d valid, %d malformed), %.1fs; slowest: %s" % (
        len(cases), n_valid, len(cases) - n_valid, time.monotonic() - t0,
        ", ".join("%s %.2fs" % (n, t) for t, n in sorted(slow, reverse=True)[:3])))
    if not failures:
        print("run_malformed.py: all passed")
        return 0
    print("run_malformed.py: %d FAILED:" % len(failures))
    for name in sorted(failures):
        print("  %s" % name)
        for p in failures[name]:
            print("      %s" % p)
    return 1


if __name__ == "__main__":
    sys.exit(main())
