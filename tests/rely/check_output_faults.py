#!/usr/bin/python3
"""check_output_faults.py ONNX_TL MODELS_DIR WORKDIR - faults while writing outputs.

For `export -o FILE`, `run --outdir DIR` and `grad -o DIR` on testdata's tiny_mlp.onnx (and
swap-head/freeze -o once those commands are implemented: their usage no longer says "not yet
implemented"), after one successful run into the output location:
  disk full      RLIMIT_FSIZE below the output size with SIGXFSZ ignored (write fails with EFBIG)
  read-only dir  the output directory is mode 0555 (commands run as user nobody via setpriv when
                 this test runs as root, since root ignores permissions)
  parent is file the output's parent directory is a regular file
  path is dir    export -o an existing directory; run/grad: an output .npy path is a directory;
                 run --outdir / grad -o an existing regular file
Each must give exit 1 and exactly one stderr line "onnx-tl: ..." naming the output file or
directory, and leave no temporary file behind (the directory listing is unchanged). The failing
attempt uses other inputs (another model copy, other input values) than the run it would replace,
so that a partial overwrite shows: a single output file must be byte for byte the previous one;
in a multi-file output (run with several outputs, grad) every file must be entirely the previous
or entirely the new version (files are written atomically one by one, not as a set). The model
file is never modified.

RLIMIT_FSIZE is at least 1100 bytes: LLVM's OpenMP runtime (clang/ASan builds) creates a 1 KiB
shared-memory registration file at startup and aborts when it cannot; outputs are made larger
than the limit instead (batch 64).
"""
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys

import numpy as np

FAILS = []


def fail(what):
    FAILS.append(what)
    print("FAIL " + what, flush=True)


def tree(root):
    """{relative path: sha256 or 'dir'} of everything under root."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns:
            out[os.path.relpath(os.path.join(dp, n), root)] = "dir"
        for n in fns:
            p = os.path.join(dp, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


AS_NOBODY = os.geteuid() == 0


def run(exe, args, fsize=None, nobody=False):
    def pre():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    cmd = [exe] + args
    if nobody and AS_NOBODY:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       preexec_fn=pre, timeout=120, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_error(label, rc, err, names):
    if rc != 1:
        fail("%s: expected exit 1, got %d (stderr %r)" % (label, rc, err[:300]))
        return
    lines = err.rstrip("\n").split("\n")
    if len(lines) != 1 or not lines[0].startswith("onnx-tl: "):
        fail("%s: stderr is not one line 'onnx-tl: ...': %r" % (label, err[:500]))
    if not any(n in err for n in names):
        fail("%s: message names none of %s: %r" % (label, names, err[:300]))
    else:
        print("ok   %s: %s" % (label, lines[0]), flush=True)


def main():
    exe, models, work = os.path.abspath(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])
    if AS_NOBODY and not shutil.which("setpriv"):
        print("check_output_faults.py: running as root needs setpriv (util-linux) to drop privileges")
        return 1
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    os.chmod(work, 0o777)
    model = os.path.join(work, "model.onnx")
    shutil.copy(os.path.join(models, "tiny_mlp.onnx"), model)
    os.chmod(model, 0o644)
    with open(model, "rb") as f:
        model_hash = hashlib.sha256(f.read()).hexdigest()
    rc, out, err = run(exe, ["info", model, "--json"])
    info = json.loads(out)
    inp = info["inputs"][0]
    shape = [64] + [1 if not isinstance(d, int) else d for d in inp["shape"][1:]]
    feeds = {}
    for v, scale in (("a", 1.0), ("b", -0.5)):
        x = os.path.join(work, "x_%s.npy" % v)
        np.save(x, (scale * np.linspace(-1, 1, int(np.prod(shape)))).astype(np.float32).reshape(shape))
        os.chmod(x, 0o644)
        feeds[v] = ["--input", "%s=%s" % (inp["name"], x)]
    y = os.path.join(work, "y.npy")
    np.save(y, np.arange(64, dtype=np.int64) % 5)
    os.chmod(y, 0o644)
    # model "b": the same model with another producer name (other bytes when exported)
    import onnx
    mb = onnx.load(model)
    mb.producer_name = "check_output_faults"
    models_ab = {"a": model, "b": os.path.join(work, "model_b.onnx")}
    onnx.save(mb, models_ab["b"])
    os.chmod(models_ab["b"], 0o644)

    cmds = {
        # name: (args given the output path, output is a file (else a directory))
        "export": (lambda o, v="b": ["export", models_ab[v], "-o", o], True),
        "run": (lambda o, v="b": ["run", model] + feeds[v] + ["--outdir", o], False),
        "grad": (lambda o, v="b": ["grad", model] + feeds[v] + ["--target", y, "-o", o], False),
    }
    for extra, args in (("swap-head", lambda o, v="b": ["swap-head", models_ab[v], "-o", o, "--classes", "3",
                                                         "--seed", "1"]),
                        ("freeze", lambda o, v="b": ["freeze", models_ab[v], "-o", o, "--all-but-head"])):
        rc, out, err = run(exe, [extra, "--help"])
        if "not yet implemented" in (out + err).lower() or rc != 0:
            print("note %s is not implemented yet: not checked" % extra)
        else:
            cmds[extra] = (args, True)

    # train: a one-epoch run on an .npz of the same inputs (its OUT records the base model's hash,
    # so models "a" and "b" give different bytes)
    npz = os.path.join(work, "data.npz")
    np.savez(npz, x=(np.linspace(-1, 1, int(np.prod(shape)))).astype(np.float32).reshape(shape),
             y=np.arange(64, dtype=np.int64) % 5)
    os.chmod(npz, 0o644)
    cmds["train"] = (lambda o, v="b": ["train", models_ab[v], "--data", npz, "-o", o, "--epochs", "1",
                                       "--batch", "16", "--threads", "1", "--seed", "1", "--quiet"], True)

    for name, (mk, is_file) in cmds.items():
        d = os.path.join(work, name)
        os.makedirs(d)
        os.chmod(d, 0o777)
        target = os.path.join(d, "out.onnx" if is_file else "out")
        rc, out, err = run(exe, mk(target, "a"), nobody=True)
        if rc != 0:
            fail("%s: the baseline run failed: %s" % (name, err.strip()))
            continue
        before = tree(d)
        # what a successful attempt with the "b" arguments writes (relative to d)
        rd = os.path.join(work, name + "_new")
        os.makedirs(rd)
        rc, out, err = run(exe, mk(os.path.join(rd, os.path.basename(target))))
        new = tree(rd)
        if rc != 0 or (is_file and new == {k: v for k, v in before.items()}):
            fail("%s: the reference run failed or writes the same bytes as the baseline: %s" % (name, err.strip()))
        sizes = [os.path.getsize(os.path.join(d, p)) for p, h in before.items() if h != "dir"]
        names = [target, os.path.basename(target)]

        def same(label):
            after = tree(d)
            if set(after) != set(before):
                fail("%s: files appeared or vanished: %s" % (label, sorted(set(after) ^ set(before))))
            for k in sorted(set(after) & set(before)):
                if after[k] == before[k] or (not is_file and after[k] == new.get(k)):
                    continue
                fail("%s: %s is neither the previous nor the new version (partially written?)" % (label, k))

        # disk full: the limit is below the largest output file, so some write fails
        lim = max(1100, max(sizes) // 2)
        if lim >= max(sizes):
            fail("%s: outputs too small (%d bytes) for a disk-full test" % (name, max(sizes)))
        rc, out, err = run(exe, mk(target), fsize=lim, nobody=True)
        check_error("%s disk full (RLIMIT_FSIZE %d)" % (name, lim), rc, err, names)
        same("%s disk full" % name)

        # read-only output directory (the directory that holds the files)
        ro = target if not is_file else d
        for dp, dns, fns in os.walk(ro):
            os.chmod(dp, 0o555)
        rc, out, err = run(exe, mk(target), nobody=True)
        for dp, dns, fns in os.walk(ro):
            os.chmod(dp, 0o777)
        check_error("%s read-only directory" % name, rc, err, names + [ro])
        same("%s read-only directory" % name)

        # parent of the output is a regular file
        pf = os.path.join(work, name + "_parent_file")
        with open(pf, "w") as f:
            f.write("not a directory\n")
        bad = os.path.join(pf, "out.onnx" if is_file else "out")
        rc, out, err = run(exe, mk(bad))
        check_error("%s parent is a file" % name, rc, err, [bad, pf, os.path.basename(pf)])
        with open(pf) as f:
            if f.read() != "not a directory\n":
                fail("%s parent is a file: the file was modified" % name)

        if is_file:
            # -o names an existing directory
            dd = os.path.join(work, name + "_is_dir")
            os.makedirs(os.path.join(dd, "keep"))
            rc, out, err = run(exe, mk(dd))
            check_error("%s output is a directory" % name, rc, err, [dd, os.path.basename(dd)])
            if sorted(os.listdir(dd)) != ["keep"]:
                fail("%s output is a directory: it now holds %s" % (name, os.listdir(dd)))
        else:
            # --outdir/-o names an existing regular file
            rc, out, err = run(exe, mk(pf))
            check_error("%s output directory is a file" % name, rc, err, [pf, os.path.basename(pf)])
            # one output .npy path is occupied by a directory: replace it by a directory and retry
            npys = sorted(p for p, h in before.items() if h != "dir" and p.endswith(".npy"))
            victim = os.path.join(d, npys[-1])
            saved = open(victim, "rb").read()
            os.remove(victim)
            os.makedirs(victim)
            snap = tree(d)
            rc, out, err = run(exe, mk(target))
            check_error("%s an output .npy is a directory" % name, rc, err,
                        [victim, os.path.basename(victim), os.path.basename(victim)[:-4]])
            left = tree(d)
            extra_files = sorted(set(left) - set(snap))
            if extra_files:
                fail("%s an output .npy is a directory: files left behind: %s" % (name, extra_files))
            os.rmdir(victim)
            with open(victim, "wb") as f:
                f.write(saved)
        same("%s at the end" % name)

    temps = [os.path.join(dp, n) for dp, dns, fns in os.walk(work) for n in fns + dns if ".tmp" in n]
    if temps:
        fail("temporary files left behind: %s" % temps)
    with open(model, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != model_hash:
            fail("the input model was modified")
    if FAILS:
        print("check_output_faults.py: %d FAILED" % len(FAILS))
        return 1
    print("check_output_faults.py: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
