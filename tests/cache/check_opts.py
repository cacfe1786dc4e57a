#!/usr/bin/python3
"""check_opts.py ONNX_TL ROOT CASE - options of train's frozen-prefix feature cache
(src/fit.c, src/feature_cache.c) on small synthetic data made here (tiny_resnet with the backbone
frozen, --bn frozen: the cache holds the pooled 64 features per sample). One CASE per CTest entry:

  bf16   --cache-dtype bf16: the note says bf16; it fits a --cache-mem that fp32 exceeds (half); OUT weights within
         1e-2 of each tensor's largest magnitude of the --no-cache run (observed 1.2e-3), every logged
         train/val loss within 1e-3 relative (observed 2e-5), accuracies within 0.05, the backbone
         unchanged; fp32 (the default) stays bit-identical to --no-cache; --cache-dtype fp16: exit 2;
         --resume keeps the checkpoint's bf16 (OUT bit-identical to an uninterrupted run)
  dir    --cache-dir: the first run computes the cache and writes one file, a second identical run
         reads it (note) and writes OUT bit-identical to the first and to --no-cache; other data, seed,
         split, frozen weights, dtype or threads compute (and add) a file instead of reading one; a
         file with one flipped byte, a truncated one and one of zero bytes are detected, noted,
         rebuilt (OUT unchanged) and then read again; with --cache-mem 1K the rows are streamed
         through the file (computed and read back, then read by a second run): OUT bit-identical;
         --cache-dir naming a regular file: exit 1"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import check, inits, log_lines, tl  # noqa: E402

ONNX_TL, ROOT, CASE = sys.argv[1:4]
otl_test.ONNX_TL = ONNX_TL
NOTE = "note: feature cache: '"


def note(p):
    return next((l for l in p.stderr.splitlines() if "feature cache:" in l), "(no note)")


def setup(d, n=160):
    r = np.random.RandomState(1)
    y = r.randint(0, 10, n).astype(np.int64)
    np.savez(d + "/r.npz", x=(r.randn(n, 3, 32, 32) * 0.5 + y[:, None, None, None] * 0.1).astype(np.float32), y=y)
    tl("freeze", os.path.join(ROOT, "testdata", "models", "tiny_resnet.onnx"), "-o", d + "/rz.onnx", "--all-but-head")
    return ["train", d + "/rz.onnx", "--data", d + "/r.npz", "--epochs", 3, "--batch", 16, "--threads", 2, "--bn",
            "frozen", "--lr", 0.01, "--seed", 3]


def case_bf16(d):
    args = setup(d)
    a = tl(*args, "-o", d + "/b.onnx", "--log", d + "/b.jsonl", "--cache-dtype", "bf16")
    f = tl(*args, "-o", d + "/f.onnx", "--log", d + "/f.jsonl")
    tl(*args, "-o", d + "/n.onnx", "--log", d + "/n.jsonl", "--no-cache")
    check(NOTE in a.stderr and " MB bf16" in note(a), "bf16 cache used: " + note(a))
    check(NOTE in f.stderr and " MB fp32" in note(f), "fp32 cache by default: " + note(f))
    # 160 samples x 64 floats: 40960 bytes in fp32, 20480 in bf16
    one = args[:args.index("--epochs")] + args[args.index("--epochs") + 2:] + ["--epochs", 1]
    p = tl(*one, "-o", d + "/x.onnx", "--cache-mem", 30000)
    check("no feature cache" in note(p) and "more than --cache-mem" in note(p), "fp32 over 30000 bytes: " + note(p))
    p = tl(*one, "-o", d + "/x.onnx", "--cache-mem", 30000, "--cache-dtype", "bf16")
    check(NOTE in p.stderr, "bf16 fits 30000 bytes (half of fp32): " + note(p))
    wb, wf, wn, base = inits(d + "/b.onnx"), inits(d + "/f.onnx"), inits(d + "/n.onnx"), inits(d + "/rz.onnx")
    check(wb.keys() == wn.keys(), "same initializers")
    rel = max(float(np.max(np.abs(wb[k].astype(np.float64) - wn[k])) / (np.max(np.abs(wn[k])) + 1e-12))
              for k in wn if wn[k].size and wn[k].dtype == np.float32)
    check(rel <= 1e-2, "bf16: OUT weights within 1e-2 of each tensor's largest magnitude (worst %.3g)" % rel)
    check(any(not np.array_equal(wb[k], wn[k]) for k in wn), "bf16: results differ from fp32 (rounded features)")
    changed = lambda w: sorted(k for k in base if not np.array_equal(w[k], base[k]))
    check(changed(wn) and changed(wb) == changed(wn), "bf16: the same tensors trained as --no-cache (%s)" %
          ", ".join(changed(wb)))
    check(all(np.array_equal(wf[k], wn[k]) for k in wn), "fp32 cache: OUT weights bit-identical to --no-cache")
    lb, ln = log_lines(d + "/b.jsonl"), log_lines(d + "/n.jsonl")
    worst = max(abs(x[k] - y[k]) / abs(y[k]) for x, y in zip(lb, ln) for k in ("train_loss", "val_loss"))
    check(len(lb) == len(ln) == 3 and worst <= 1e-3, "bf16: losses within 1e-3 relative (worst %.3g)" % worst)
    check(all(abs(x[k] - y[k]) <= 0.05 for x, y in zip(lb, ln) for k in ("train_acc", "val_acc")),
          "bf16: accuracies within 0.05")
    p = tl(*args, "-o", d + "/x.onnx", "--cache-dtype", "fp16", expect=2)
    check("--cache-dtype" in p.stderr, "--cache-dtype fp16: usage error naming it")
    # --resume keeps the checkpoint's --cache-dtype (a hyper-parameter: it changes the results)
    two = args[:args.index("--epochs")] + args[args.index("--epochs") + 2:] + ["--val-split", 0]
    tl(*two, "--epochs", 3, "-o", d + "/full.onnx", "--cache-dtype", "bf16")
    tl(*two, "--epochs", 2, "-o", d + "/part.onnx", "--cache-dtype", "bf16", "--checkpoint", d + "/ck")
    tl(*two, "--epochs", 3, "-o", d + "/res.onnx", "--resume", d + "/ck")
    wr, wfull = inits(d + "/res.onnx"), inits(d + "/full.onnx")
    check(all(np.array_equal(wr[k], wfull[k]) for k in wfull),
          "--resume without --cache-dtype continues in bf16: OUT bit-identical to one 3-epoch bf16 run")
    hp = json.loads(otl_test.meta(d + "/res.onnx")["onnx_tl.provenance"])["hyperparameters"]
    check(hp.get("cache_dtype") == "bf16", "provenance hyperparameters.cache_dtype %s" % hp.get("cache_dtype"))


def case_dir(d):
    args = setup(d, n=96)
    args[args.index("--epochs") + 1] = 2
    cd = d + "/cache"
    files = lambda: sorted(f for f in os.listdir(cd) if not f.startswith("."))
    a = tl(*args, "-o", d + "/a.onnx", "--cache-dir", cd)
    check("computed" in note(a) and "file " + cd in note(a), "first run computes and writes the file: " + note(a))
    check(len(files()) == 1 and files()[0].endswith(".otlfc"), "one cache file: %s" % files())
    b = tl(*args, "-o", d + "/b.onnx", "--cache-dir", cd)
    check("read from the cache file" in note(b), "second run reads it: " + note(b))
    tl(*args, "-o", d + "/n.onnx", "--no-cache")
    same = lambda p, q: open(p, "rb").read() == open(q, "rb").read()
    check(same(d + "/a.onnx", d + "/b.onnx") and same(d + "/a.onnx", d + "/n.onnx"),
          "OUT of the reading run bit-identical to the computing run and to --no-cache")
    # anything the rows depend on changes the key
    z = np.load(d + "/r.npz")
    x2 = z["x"].copy()
    x2[0, 0, 0, 0] += 1.0
    np.savez(d + "/r2.npz", x=x2, y=z["y"])
    w = onnx.load(d + "/rz.onnx")
    t = next(t for t in w.graph.initializer if t.name == "onnx::Conv_147")
    arr = numpy_helper.to_array(t).copy()
    arr.flat[0] += 0.5
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    onnx.save(w, d + "/rz2.onnx")
    variants = [
        ("other data", lambda a: [x if x != d + "/r.npz" else d + "/r2.npz" for x in a]),
        ("other seed", lambda a: a[:a.index("--seed") + 1] + [4] + a[a.index("--seed") + 2:]),
        ("other split", lambda a: a + ["--val-split", 0.25]),
        ("other frozen weights", lambda a: [x if x != d + "/rz.onnx" else d + "/rz2.onnx" for x in a]),
        ("bf16 rows", lambda a: a + ["--cache-dtype", "bf16"]),
        ("other threads", lambda a: a[:a.index("--threads") + 1] + [1] + a[a.index("--threads") + 2:]),
    ]
    n0 = len(files())
    for i, (what, f) in enumerate(variants):
        p = tl(*f(list(args)), "-o", d + "/v.onnx", "--cache-dir", cd)
        check("computed" in note(p) and len(files()) == n0 + i + 1, "%s: computed, a new file (%d files): %s" %
              (what, len(files()), note(p)))
    first = next(f for f in files() if "read" in note(b) and f in note(b))
    path = os.path.join(cd, first)
    good = open(path, "rb").read()
    for what, data in (("one flipped byte", good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0x10]) +
                        good[len(good) // 2 + 1:]), ("truncated", good[:len(good) - 100]), ("empty", b"")):
        with open(path, "wb") as fh:
            fh.write(data)
        p = tl(*args, "-o", d + "/c.onnx", "--cache-dir", cd)
        check("note: feature cache file" in p.stderr and "rebuilding" in p.stderr and "computed" in note(p),
              "%s: detected and rebuilt: %s" % (what, next((l for l in p.stderr.splitlines() if "cache file" in l),
                                                             "(no note)")))
        check(same(d + "/c.onnx", d + "/a.onnx"), "%s: OUT unchanged" % what)
        check(open(path, "rb").read() == good, "%s: the rebuilt file equals the original" % what)
        p = tl(*args, "-o", d + "/c.onnx", "--cache-dir", cd)
        check("read from the cache file" in note(p), "%s: the rebuilt file is read again" % what)
    # rows over --cache-mem with --cache-dir: streamed through the file (computed, then read back by batch)
    cd2 = d + "/cache2"
    p = tl(*args, "-o", d + "/s.onnx", "--cache-dir", cd2, "--cache-mem", "1K")
    check("computed" in note(p) and "streamed from the file" in note(p), "over --cache-mem: streamed: " + note(p))
    check(same(d + "/s.onnx", d + "/a.onnx"), "streamed (computing run): OUT bit-identical to the in-memory cache")
    p = tl(*args, "-o", d + "/s2.onnx", "--cache-dir", cd2, "--cache-mem", "1K")
    check("read from the cache file" in note(p) and "streamed from the file" in note(p),
          "over --cache-mem, file present: read and streamed: " + note(p))
    check(same(d + "/s2.onnx", d + "/a.onnx"), "streamed (reading run): OUT bit-identical")
    check(os.listdir(cd2) and open(os.path.join(cd2, os.listdir(cd2)[0]), "rb").read() == good,
          "the streamed file equals the in-memory run's file")
    p = tl(*args, "-o", d + "/s3.onnx", "--cache-dir", cd2, "--cache-mem", "1K", "--cache-dtype", "bf16")
    check("streamed from the file" in note(p) and " MB bf16" in note(p), "bf16 streamed: " + note(p))
    tl(*args, "-o", d + "/bm.onnx", "--cache-dtype", "bf16")
    check(same(d + "/s3.onnx", d + "/bm.onnx"), "bf16 streamed: OUT bit-identical to bf16 in memory")
    open(d + "/plain", "w").write("x")
    p = tl(*args, "-o", d + "/c.onnx", "--cache-dir", d + "/plain", expect=1)
    check("cache directory" in p.stderr, "--cache-dir naming a file: error naming it: " + p.stderr.strip()[-200:])


if __name__ == "__main__":
    sys.exit(otl_test.main(CASE, globals(), prefix="otl-cacheopt-"))
