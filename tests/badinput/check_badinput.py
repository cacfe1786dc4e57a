#!/usr/bin/python3
"""check_badinput.py ONNX_TL MODELS_DIR WORKDIR - bad input on every command, table-driven.

The ground rule (project brief, ../shared/CLI.md): bad input (corrupt data, wrong shapes, bad images,
bad flags, an output that would land on an input) gets exactly one stderr line "onnx-tl: ..." naming the
file (and node/tensor where one applies), exit 1 (input) or 2 (usage), never a signal, and nothing lost:
no output or temporary file left behind, no file modified.

WORKDIR gets small fixtures (copies of testdata's tiny_resnet.onnx, a 2-class labelled variant made by
swap-head, .npz/.npy data, PNG/JPEG files and image folders). Each CASES row is
    (name, argv after the executable, expected exit status, regex the one stderr line must match[, stdout file])
and runs with WORKDIR as the current directory; after it, every file and directory under WORKDIR must be
byte for byte what it was before (no new file, hidden temporaries included, none changed or removed).
The rows marked "fixed" failed before the fix that came with them (session 5 audit); the others guard
errors that were already right.
"""
import hashlib
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

TL, MODELS, WORK = (os.path.abspath(a) for a in sys.argv[1:4])
FAILS = []

CASES = [
    # -- an output on an input (fixed: each overwrote the input and exited 0)
    ("swap-head -o = --labels", ["swap-head", "m.onnx", "-o", "labels2.txt", "--labels", "labels2.txt"], 2,
     r"-o labels2\.txt would overwrite the --labels file"),
    ("swap-head -o = --preprocess", ["swap-head", "m.onnx", "-o", "pre.json", "--classes", 2, "--preprocess",
                                     "pre.json"], 2, r"-o pre\.json would overwrite the --preprocess file"),
    ("train -o = --data", ["train", "m.onnx", "--data", "good.npz", "-o", "good.npz", "--epochs", 1], 2,
     r"-o good\.npz would overwrite the --data"),
    ("train -o = --val", ["train", "m.onnx", "--data", "good.npz", "--val", "val.npz", "-o", "./val.npz"], 2,
     r"-o \./val\.npz would overwrite the --val"),
    ("export -o = --calib", ["export", "m.onnx", "-o", "good.npz", "--quantize", "int8", "--calib", "good.npz"], 2,
     r"-o good\.npz would overwrite the --calib"),
    ("export --report = --calib", ["export", "m.onnx", "-o", "q.onnx", "--quantize", "int8", "--calib", "good.npz",
                                   "--report", "good.npz"], 2, r"--report needs a file other than .*--calib"),
    ("run output = --input", ["run", "m.onnx", "--input", "input=logits.npy", "--outdir", "."], 2,
     r"\./logits\.npy: writing 'logits' there would overwrite the input logits\.npy"),
    ("grad loss = --target", ["grad", "m.onnx", "--input", "input=x.npy", "--target", "g/loss.npy", "-o", "g"], 2,
     r"g/loss\.npy: writing 'loss' there would overwrite the input g/loss\.npy"),
    # -- flags (fixed: accepted silently)
    ("grad -o and --output", ["grad", "m.onnx", "--input", "input=x.npy", "--target", "y.npy", "-o", "g1",
                              "--output", "g2"], 2, r"give -o or --output, not both"),
    ("export -o and --output", ["export", "m.onnx", "-o", "e1.onnx", "--output", "e2.onnx"], 2,
     r"give -o or --output, not both"),
    ("train -o and --output", ["train", "m.onnx", "--data", "good.npz", "-o", "t1.onnx", "--output", "t2.onnx"], 2,
     r"give -o or --output, not both"),
    ("grad --seed -3", ["grad", "m.onnx", "--input", "input=x.npy", "--target", "y.npy", "-o", "g1", "--seed", -3], 2,
     r"grad: --seed must be a non-negative integer, got '-3'"),
    ("train --seed overflow", ["train", "m.onnx", "--data", "good.npz", "-o", "t.onnx", "--seed", "9" * 25], 2,
     r"train: --seed must be a non-negative integer"),
    ("train --val-split with --val", ["train", "m.onnx", "--data", "good.npz", "--val", "val.npz", "-o", "t.onnx",
                                      "--val-split", 0.5], 2, r"--val-split goes without --val"),
    ("empty option value", ["train", "m.onnx", "--data", "good.npz", "--val", "", "-o", "t.onnx"], 2,
     r"option '--val' needs a value, got an empty one"),
    ("empty --log=", ["train", "m.onnx", "--data", "good.npz", "-o", "t.onnx", "--log="], 2,
     r"option '--log' needs a value"),
    ("empty positional", ["predict", "lab.onnx", ""], 2, r"empty argument"),
    ("freeze --until a graph input", ["freeze", "m.onnx", "-o", "f.onnx", "--until", "input"], 1,
     r"m\.onnx: --until 'input': no parameter is used to compute it"),
    ("train --checkpoint FILE", ["train", "m.onnx", "--data", "good.npz", "-o", "t.onnx", "--epochs", 1,
                                 "--checkpoint", "x.npy", "--log", "t.jsonl"], 1,
     r"x\.npy: --checkpoint needs a writable directory"),
    # -- outputs on checkpoint files (fixed: OUT was deleted by the checkpoint sweep after "wrote ...", exit 0; the
    #    log was overwritten by state.txt; a failed start left an empty --checkpoint directory behind)
    ("-o a checkpoint file", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "ck_empty/model.1.onnx", "--epochs", 3,
                              "--checkpoint", "ck_empty"], 2, r"ck_empty/model\.1\.onnx: a checkpoint file name in"),
    ("--log = state.txt", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--epochs", 2, "--checkpoint",
                           "ck_new", "--log", "ck_new/state.txt"], 2, r"ck_new/state\.txt: a checkpoint file name"),
    ("no --checkpoint dir left", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--checkpoint", "ck_new",
                                  "--log", "nodir/l.jsonl"], 1, r"nodir/l\.jsonl: cannot open the log"),
    # -- hand-damaged checkpoint state (fixed: exit 2 naming no file, or resumed from a model outside the checkpoint)
    ("resume: hp.batch 0", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck_batch"], 1,
     r"ck_batch/state\.txt: checkpoint state out of range"),
    ("resume: hp.augment bogus", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck_aug"], 1,
     r"ck_aug/state\.txt: bad value of 'hp\.augment'"),
    ("resume: model outside", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck_model"], 1,
     r"ck_model/state\.txt: checkpoint state out of range"),
    ("resume: truncated optim", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck_optim"], 1,
     r"ck_optim/optim\.2\.bin: not an onnx-tl optimizer state"),
    # -- hyper-parameters given again with --resume (fixed: accepted and silently replaced by the checkpoint's)
    ("resume: another --lr", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck", "--lr", "0.5"],
     1, r"ck/state\.txt: --lr differs from the checkpoint \(lr 0\.001, given 0\.5\)"),
    ("resume: another --bn", ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "t.onnx", "--resume", "ck",
                                   "--epochs", 3, "--bn", "frozen"], 1, r"ck/state\.txt: --bn differs from the checkpoint"),
    # -- NaN/Inf in data (fixed: trained, evaluated, calibrated and predicted on them, exit 0)
    ("train on NaN data", ["train", "m.onnx", "--data", "nan.npz", "-o", "t.onnx", "--epochs", 1], 1,
     r"nan\.npz: array 'x': sample 3 holds a NaN or infinite value"),
    ("train NaN keeps old OUT", ["train", "m.onnx", "--data", "nan.npz", "-o", "lab.onnx", "--epochs", 1], 1,
     r"nan\.npz: .*NaN or infinite"),
    ("eval on Inf data", ["eval", "m.onnx", "--data", "inf.npz"], 1, r"inf\.npz: array 'x': sample 5 .*infinite"),
    ("predict on a NaN .npy", ["predict", "lab.onnx", "xnan.npy"], 1,
     r"xnan\.npy: sample 3 holds a NaN or infinite value"),
    ("calibrate on NaN data", ["export", "m.onnx", "-o", "q.onnx", "--quantize", "int8", "--calib", "nan.npz"], 1,
     r"nan\.npz: .*NaN"),
    # -- images (fixed: PNG headers stb_image refuses were "not a PNG or JPEG image (unknown image type)"; a class
    #    directory name with a line break became two labels, then an error blaming the input model's metadata)
    ("PNG 60000x60000", ["predict", "lab.onnx", "huge.png"], 1, r"huge\.png: PNG image size 60000x60000 not supported"),
    ("PNG 0x0", ["predict", "lab.onnx", "zero.png"], 1, r"zero\.png: PNG image size 0x0"),
    ("PNG bad colour type", ["predict", "lab.onnx", "badct.png"], 1, r"badct\.png: corrupt or unsupported PNG"),
    ("huge PNG in a folder", ["train", "lab.onnx", "--data", "imgs_huge", "-o", "t.onnx"], 1,
     r"imgs_huge/a/huge\.png: PNG image size"),
    ("class name with a newline", ["train", "two.onnx", "--data", "imgs_nl", "-o", "t.onnx"], 1,
     r"imgs_nl: class directory name 'x\\ny' contains a line break"),
    # -- stdout on a full disk (fixed: info and freeze --list exited 0 with the output lost; eval/predict did not)
    ("info > /dev/full", ["info", "m.onnx", "--json"], 1, r"cannot write to standard output", "/dev/full"),
    ("freeze --list > /dev/full", ["freeze", "m.onnx", "--list"], 1, r"cannot write to standard output", "/dev/full"),
    ("predict > /dev/full", ["predict", "lab.onnx", "x.npy"], 1, r"cannot write to standard output", "/dev/full"),
    # -- already right: guards
    ("truncated .npy", ["run", "m.onnx", "--input", "input=trunc.npy", "--outdir", "o"], 1, r"trunc\.npy: .*truncated"),
    ("npy bad magic", ["run", "m.onnx", "--input", "input=magic.npy", "--outdir", "o"], 1, r"magic\.npy: not a \.npy"),
    ("npy wrong shape", ["run", "m.onnx", "--input", "input=x16.npy", "--outdir", "o"], 1,
     r"m\.onnx: input 'input': dimension 2 must be 32, got 16"),
    ("truncated .npz", ["train", "m.onnx", "--data", "trunc.npz", "-o", "t.onnx"], 1, r"trunc\.npz: truncated"),
    ("npz wrong sample shape", ["eval", "m.onnx", "--data", "x16.npz"], 1, r"x16\.npz: array 'x' holds samples"),
    ("npz label out of range", ["train", "lab.onnx", "--data", "good.npz", "-o", "t.onnx"], 1,
     r"good\.npz: the data has 10 classes but the model lab\.onnx outputs 2"),
    ("not an image in a folder", ["eval", "lab.onnx", "--data", "imgs_fake"], 1,
     r"imgs_fake/a/fake\.png: not a PNG or JPEG image"),
    ("truncated JPEG", ["predict", "lab.onnx", "trunc.jpg"], 1, r"trunc\.jpg: cannot decode JPEG"),
    ("empty class dir", ["train", "lab.onnx", "--data", "imgs_emptycls", "-o", "t.onnx"], 1,
     r"imgs_emptycls/c: class 'c' has no images"),
    ("class not in labels", ["eval", "lab.onnx", "--data", "imgs_3cls"], 1,
     r"imgs_3cls: class 'zz' is not among the labels stored in lab\.onnx"),
    ("--epochs 0", ["train", "m.onnx", "--data", "good.npz", "-o", "t.onnx", "--epochs", 0], 2, r"--epochs must be"),
    ("--threads -1", ["run", "m.onnx", "--input", "input=x.npy", "--outdir", "o", "--threads", -1], 2,
     r"--threads must be a positive integer"),
    ("export -o MODEL", ["export", "m.onnx", "-o", "./m.onnx"], 2, r"-o must differ from the input model"),
    ("output in a missing dir", ["swap-head", "m.onnx", "-o", "nodir/s.onnx", "--classes", 2], 1,
     r"nodir/s\.onnx: cannot create output file"),
    ("swap-head --at nosuch", ["swap-head", "m.onnx", "-o", "lab.onnx", "--classes", 3, "--at", "nosuch"], 1,
     r"m\.onnx: --at 'nosuch': no such tensor"),
    ("freeze --params nomatch", ["freeze", "m.onnx", "-o", "lab.onnx", "--params", "zz*"], 1,
     r"m\.onnx: --params 'zz\*' matches no parameter"),
    ("int8 without --calib", ["export", "m.onnx", "-o", "q.onnx", "--quantize", "int8"], 2, r"needs --calib"),
    ("--calib wrong shape", ["export", "m.onnx", "-o", "lab.onnx", "--quantize", "int8", "--calib", "x16.npz"], 1,
     r"x16\.npz: array 'x' holds samples of shape \(3, 16, 16\)"),
]


def fail(what):
    FAILS.append(what)
    print("FAIL:", what)


def png(w, h, ct=2):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def fixtures():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.chdir(WORK)
    shutil.copy(os.path.join(MODELS, "tiny_resnet.onnx"), "m.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3, 32, 32)).astype(np.float32)
    y = (np.arange(20) % 10).astype(np.int64)
    np.savez("good.npz", x=x, y=y)
    np.savez("val.npz", x=x[:10], y=y[:10])
    np.savez("x16.npz", x=x[:, :, :16, :16], y=y)
    xn = x.copy()
    xn[3, 1, 2, 3] = np.nan
    np.savez("nan.npz", x=xn, y=y)
    np.save("xnan.npy", xn[:4])
    xi = x.copy()
    xi[5, 0, 0, 0] = -np.inf
    np.savez("inf.npz", x=xi, y=y)
    z = open("good.npz", "rb").read()
    open("trunc.npz", "wb").write(z[:len(z) // 2])
    np.save("x.npy", x[:4])
    np.save("y.npy", y[:4])
    np.save("x16.npy", x[:4, :, :16, :16])
    np.save("logits.npy", x[:4])
    os.makedirs("g")
    np.save("g/loss.npy", y[:4])
    b = open("x.npy", "rb").read()
    open("trunc.npy", "wb").write(b[:len(b) // 2])
    open("magic.npy", "wb").write(b"\x93NUMPX" + b[6:])
    open("labels2.txt", "w").write("a\nb\n")
    os.makedirs("ck_empty")
    open("pre.json", "w").write('{"size": [32, 32]}')

    def img(path, size=(40, 30)):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)

    for name, classes in (("imgs_fake", "ab"), ("imgs_emptycls", "ab"), ("imgs_3cls", ["a", "b", "zz"]),
                          ("imgs_huge", "ab"), ("imgs_nl", ["b", "x\ny"])):
        for c in classes:
            os.makedirs(f"{name}/{c}")
            for k in range(3):
                img(f"{name}/{c}/{k}.png")
    open("imgs_fake/a/fake.png", "w").write("not a png")
    os.makedirs("imgs_emptycls/c")
    open("huge.png", "wb").write(png(60000, 60000))
    open("imgs_huge/a/huge.png", "wb").write(png(60000, 60000))
    open("zero.png", "wb").write(png(0, 0))
    open("badct.png", "wb").write(png(4, 4, ct=5))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    open("trunc.jpg", "wb").write(buf.getvalue()[:len(buf.getvalue()) // 2])
    shutil.copy(os.path.join(MODELS, "tiny_mlp.onnx"), "mlp.onnx")
    np.savez("mlp.npz", x=rng.standard_normal((40, 20)).astype(np.float32), y=(np.arange(40) % 5).astype(np.int64))
    for argv in (["swap-head", "m.onnx", "-o", "lab.onnx", "--labels", "labels2.txt", "--seed", "1"],
                 ["swap-head", "m.onnx", "-o", "two.onnx", "--classes", "2", "--seed", "1"],
                 ["train", "mlp.onnx", "--data", "mlp.npz", "-o", "mlp_t.onnx", "--epochs", "2", "--checkpoint", "ck",
                  "--threads", "1", "--quiet"]):
        p = subprocess.run([TL] + argv, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"setup: {argv[0]} failed: {p.stderr}")
    for name, key, value in (("ck_batch", "hp.batch", "0"), ("ck_aug", "hp.augment", "bogus=1"),
                             ("ck_model", "model", "../mlp.onnx"), ("ck_optim", None, None)):
        shutil.copytree("ck", name)
        if key:
            lines = open(name + "/state.txt").read().split("\n")
            lines = [f"{key} {value}" if ln.split(" ")[0] == key else ln for ln in lines]
            open(name + "/state.txt", "w").write("\n".join(lines))
        else:
            open(name + "/optim.2.bin", "r+b").truncate(10)


def snapshot():
    r = {}
    for root, dirs, files in os.walk("."):
        for n in dirs:
            r[os.path.join(root, n)] = "dir"
        for n in files:
            with open(os.path.join(root, n), "rb") as f:
                r[os.path.join(root, n)] = hashlib.sha256(f.read()).hexdigest()
    return r


def restore(before, after):
    """Undo what a failing case did so that the next case starts from the fixtures."""
    for p in sorted(set(after) - set(before), reverse=True):
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            os.remove(p)


def main():
    fixtures()
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for name, argv, want_rc, pattern, *out in CASES:
        before = snapshot()
        try:
            with open(out[0] if out else os.devnull, "w") as stdout:
                p = subprocess.run([TL] + [str(a) for a in argv], stdout=stdout, stderr=subprocess.PIPE, text=True,
                                   timeout=120, env=env)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            rc, err = "timeout", ""
        after = snapshot()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        what = f"{name}: onnx-tl {' '.join(map(str, argv))}"
        ok = True
        if rc != want_rc:
            fail(f"{what}: exit {rc}, expected {want_rc}")
            ok = False
        if len(lines) != 1 or not lines[0].startswith("onnx-tl: "):
            fail(f"{what}: expected one 'onnx-tl: ' line on stderr, got {lines[-5:]}")
            ok = False
        elif not re.search(pattern, lines[0]):
            fail(f"{what}: {lines[0]!r} does not match {pattern!r}")
            ok = False
        new = sorted(set(after) - set(before))
        changed = sorted(k for k in before if after.get(k) != before[k])
        if new:
            fail(f"{what}: left behind {new[:6]}")
            ok = False
        if changed:
            fail(f"{what}: modified or removed {changed[:6]}")
            ok = False
        if new or changed:
            restore(before, after)
            if changed:  # a modified fixture: rebuild them all
                fixtures()
        if ok:
            print(f"ok   {name}: {lines[0]}")
    print(f"{len(CASES) - len(set(f.split(':')[0] for f in FAILS))}/{len(CASES)} cases passed")
    sys.exit(1 if FAILS else 0)


main()
