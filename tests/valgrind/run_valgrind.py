#!/usr/bin/python3
"""run_valgrind.py ONNX_TL MODELS_DIR WORKDIR CASE - one CLI command under valgrind memcheck.

  valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
           --suppressions=tests/valgrind/onnx-tl.supp onnx-tl ...

fails on any memcheck error (invalid reads/writes, uninitialised values in conditions or
syscalls, bad frees) and on any definite leak; "still reachable" and "possibly lost" blocks
(oneDNN's primitive cache, OpenMP/OpenBLAS thread pools alive at exit) are not errors. CASE is
MODEL:COMMAND, e.g. tiny_mlp:grad, or err:WHAT for error paths (a failed command must free what
it allocated too). Inputs are built from `info --json` (batch 1, symbolic dims 1 or 8).
Threads: OMP_NUM_THREADS=1 and --threads 1 (valgrind serializes threads anyway).
oneDNN under valgrind: valgrind's virtual CPU has no AVX-512, so oneDNN's JIT picks AVX2 kernels
by itself; ONEDNN_MAX_CPU_ISA=AVX2 makes that explicit (same kernels with or without valgrind).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SUPP = os.path.join(HERE, "onnx-tl.supp")


def main():
    exe, models, work, case = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    vg = shutil.which("valgrind")
    if not vg:
        print("run_valgrind.py: valgrind is not installed (Debian package valgrind; make test-deps)")
        return 1
    work = os.path.abspath(os.path.join(work, case.replace(":", "_")))
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    env = dict(os.environ, OMP_NUM_THREADS="1", ONEDNN_MAX_CPU_ISA="AVX2", DNNL_MAX_CPU_ISA="AVX2")
    mname, cmd = case.split(":")

    def prep(mfile, batch=1):
        p = subprocess.run([exe, "info", mfile, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        info = json.loads(p.stdout)
        rng = np.random.default_rng(3)
        feed = []
        for k, inp in enumerate(info["inputs"]):
            shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 8)
                     for i, d in enumerate(inp["shape"] or [])]
            if inp["dtype"] in ("int64", "int32"):
                arr = rng.integers(0, 4, size=shape).astype(inp["dtype"])
            else:
                arr = rng.standard_normal(shape).astype(np.float32)
            f = os.path.join(work, "in%d.npy" % k)
            np.save(f, arr)
            feed += ["--input", "%s=%s" % (inp["name"], f)]
        # targets: class ids when the head is known, else float targets of the output's shape
        p = subprocess.run([exe, "run", mfile] + feed + ["--outdir", os.path.join(work, "ref")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        y = np.load(os.path.join(work, "ref", sorted(os.listdir(os.path.join(work, "ref")))[0]))
        tgt = os.path.join(work, "target.npy")
        if info.get("head"):
            np.save(tgt, np.zeros((y.shape[0],), np.int64))
            loss = "ce"
        else:
            np.save(tgt, np.zeros(y.shape, np.float32))
            loss = "mse"
        return feed, tgt, loss

    expect = 0
    if mname == "err":
        model = os.path.join(models, "tiny_mlp.onnx")
        feed, tgt, loss = prep(model)
        expect = 1
        if cmd == "truncated":  # load error after partial parsing
            bad = os.path.join(work, "truncated.onnx")
            with open(model, "rb") as f:
                data = f.read()
            with open(bad, "wb") as f:
                f.write(data[: len(data) * 2 // 3])
            args = ["info", bad, "--json"]
        elif cmd == "run_shape":  # session error after planning started: wrong input shape
            x = os.path.join(work, "bad_x.npy")
            np.save(x, np.zeros((1, 3), np.float32))
            args = ["run", model, "--input", feed[1].split("=")[0] + "=" + x, "--outdir", os.path.join(work, "o")]
        elif cmd == "grad_target":  # training graph built, then the target is refused
            t = os.path.join(work, "bad_t.npy")
            np.save(t, np.zeros((5, 5), np.int64))
            args = ["grad", model] + feed + ["--target", t, "-o", os.path.join(work, "o")]
        elif cmd == "export_dir":  # output error after serializing
            os.makedirs(os.path.join(work, "is_dir", "x"))
            args = ["export", model, "-o", os.path.join(work, "is_dir")]
        else:
            print("run_valgrind.py: unknown error case %s" % cmd)
            return 1
    else:
        model = os.path.join(models, mname + ".onnx")
        if cmd == "info":
            args = ["info", model]
        elif cmd == "info_json":
            args = ["info", model, "--json"]
        elif cmd == "export":
            args = ["export", model, "-o", os.path.join(work, "out.onnx")]
        elif cmd == "run":
            feed, tgt, loss = prep(model)
            args = ["run", model] + feed + ["--outdir", os.path.join(work, "o"), "--threads", "1"]
        elif cmd == "grad":
            feed, tgt, loss = prep(model)
            args = ["grad", model] + feed + ["--target", tgt, "--loss", loss, "-o", os.path.join(work, "o"),
                                             "--threads", "1"]
        elif cmd in ("swap_head", "freeze", "train", "train_head", "eval", "predict"):
            # the workflow commands on a tiny .npz data set (16 samples, class ids < 3)
            p = subprocess.run([exe, "info", model, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            inp = json.loads(p.stdout)["inputs"][0]
            shape = [16] + [d if isinstance(d, int) and d > 0 else 8 for d in inp["shape"][1:]]
            rng = np.random.default_rng(5)
            npz = os.path.join(work, "data.npz")
            np.savez(npz, x=rng.standard_normal(shape).astype(np.float32), y=np.arange(16, dtype=np.int64) % 3)
            sw = os.path.join(work, "swapped.onnx")
            fz = os.path.join(work, "frozen.onnx")
            if cmd != "swap_head":  # the model the other commands read: a 3-class head, backbone frozen
                for a in (["swap-head", model, "-o", sw, "--classes", "3", "--seed", "1"],
                          ["freeze", sw, "-o", fz, "--all-but-head"]):
                    subprocess.run([exe] + a, check=True, stdout=subprocess.PIPE, env=env)
            if cmd == "swap_head":
                args = ["swap-head", model, "-o", sw, "--classes", "3", "--hidden", "4", "--dropout", "0.1",
                        "--seed", "1"]
            elif cmd == "freeze":
                args = ["freeze", sw, "-o", os.path.join(work, "f2.onnx"), "--params", "*", "--unfreeze", "head*"]
            elif cmd == "train":  # everything trainable: the full training graph
                args = ["train", sw, "--data", npz, "-o", os.path.join(work, "t.onnx"), "--epochs", "2", "--batch", "8",
                        "--threads", "1", "--quiet", "--checkpoint", os.path.join(work, "ck")]
            elif cmd == "train_head":  # frozen backbone: the feature cache
                args = ["train", fz, "--data", npz, "-o", os.path.join(work, "t.onnx"), "--epochs", "2", "--batch", "8",
                        "--threads", "1", "--quiet"]
            elif cmd == "eval":
                args = ["eval", sw, "--data", npz, "--json", "--threads", "1"]
            else:
                x1 = os.path.join(work, "x1.npy")
                np.save(x1, rng.standard_normal(shape[1:]).astype(np.float32))
                args = ["predict", sw, x1, "--json", "--threads", "1"]
        else:
            print("run_valgrind.py: unknown command %s" % cmd)
            return 1
    log = os.path.join(work, "valgrind.log")
    vargs = [vg, "--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99",
             "--show-leak-kinds=definite", "--num-callers=30", "--log-file=" + log]
    if os.path.exists(SUPP):
        vargs.append("--suppressions=" + SUPP)
    p = subprocess.run(vargs + [exe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=1200)
    with open(log) as f:
        report = f.read()
    summary = [l for l in report.splitlines() if "ERROR SUMMARY" in l or "definitely lost" in l]
    print("valgrind %s: exit %d; %s" % (" ".join(args[:2]), p.returncode, "; ".join(s.split("== ")[-1] for s in summary)))
    if p.returncode != expect:
        print("stderr of onnx-tl: %s" % p.stderr.decode("utf-8", "replace")[-2000:])
        print(report[-20000:])
        print("run_valgrind.py: FAILED (expected exit %d, got %d; 99 = memcheck errors or definite leaks)"
              % (expect, p.returncode))
        return 1
    print("run_valgrind.py: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
