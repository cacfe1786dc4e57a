#!/usr/bin/python3
"""check_train.py ONNX_TL NODE ORT_DIR SRC_DIR CASE - end-to-end tests of `onnx-tl train` on small
synthetic data (made here with numpy/PIL in a temporary directory). One CASE per CTest entry:

  basic        tiny_mlp on a .npz: exit 0, JSONL log keys/count, OUT metadata (provenance keys,
               hyper-parameters), accuracy well above chance, OUT differs from the input
  determinism  same seed and threads: bit-identical OUT; another seed: different OUT
  sigkill      a checkpointed run killed with SIGKILL after an epoch, resumed: OUT equals an
               uninterrupted run's byte for byte (and the log has one line per epoch)
  sigint       SIGINT: stops after the current step with a clear message, exit 1, checkpoint;
               resumed: bit-identical OUT
  sigint_epoch_end  one step per epoch: the checkpoint is taken after an epoch's last step
  sigint_dropout  the same with a Dropout head (swap-head --hidden --dropout)
  sigkill_unfreeze  the same with gradual unfreezing, layer-wise rates, SGD momentum, augmentation
  flags        every optimizer, Nesterov, weight decay, label smoothing, clipping change the result;
               --clip-norm bounds one SGD step
  torch_loop   a whole run against PyTorch: final weights and running statistics within 1e-5
  nan          --lr 1e30: clear message naming epoch and step, exit 1, no OUT; a run that diverges
               in epoch 2 (step schedule, huge gamma) keeps OUT from epoch 1
  classes      class-count mismatch (.npz labels beyond the output size; image folder with another
               number of classes), an empty class directory, stored labels differing from the
               folder names: exit 1 with a clear message
  early_stop   --early-stop 1 with a learning rate too small to change the accuracy: stops after 2
               epochs
  unfreeze     frozen backbone, --unfreeze-every 1: blocks thaw from the head down, one per epoch
               (which weights changed after 1, 2, 3 epochs)
  lr_mult      --layer-lr-decay 0.5 with plain SGD, one full-batch step: each parameter moved by
               lr * 0.5^depth * its gradient (from `onnx-tl grad`)
  bn           --bn frozen keeps the running statistics; --bn train changes them
  schedule     --schedule step/cosine/onecycle/plateau + --warmup through the CLI: logged lr values
  images       image folder: labels and preprocessing stored in OUT, --augment, OUT runs in ONNX
               Runtime with the same predictions as `onnx-tl run`
  usage        bad flags: exit 2"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import bn_data, check, inits, log_lines, meta, read, tl  # noqa: E402

ONNX_TL, NODE, ORT_DIR, SRC = sys.argv[1:5]
otl_test.ONNX_TL = ONNX_TL
CASE = sys.argv[5]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(SRC)))
MLP = os.path.join(ROOT, "testdata", "models", "tiny_mlp.onnx")
BN = os.path.join(SRC, "bn", "model.onnx")  # conv1 bn1 conv2 bn2 fc, input (N, 3, 10, 10), 4 classes


def train(*args, expect=0, timeout=300):
    return tl("train", *args, expect=expect, timeout=timeout)


def mlp_data(path, n=300, seed=0, classes=5):
    r = np.random.RandomState(seed)
    y = r.randint(0, classes, n).astype(np.int64)
    centers = r.randn(classes, 20).astype(np.float32) * 1.5
    x = (centers[y] + r.randn(n, 20).astype(np.float32)).astype(np.float32)
    np.savez(path, x=x, y=y)


def img_data(path, n=120, seed=0):
    bn_data(path, n, seed)


def strip_bn(src, dst, frozen=None):
    """A copy without the exporter's BatchNormalization training outputs (ONNX Runtime runs BN in
    training mode when they are present), optionally with frozen marks."""
    m = onnx.load(src)
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            del n.output[1:]
    if frozen is not None:
        p = m.metadata_props.add()
        p.key, p.value = "onnx_tl.frozen", "\n".join(frozen)
    onnx.save(m, dst)


def case_basic(d):
    mlp_data(d + "/d.npz")
    train(MLP, "--data", d + "/d.npz", "-o", d + "/out.onnx", "--epochs", 4, "--batch", 32, "--lr", 0.01,
          "--log", d + "/log.jsonl", "--threads", 1)
    lines = log_lines(d + "/log.jsonl")
    check(len(lines) == 4, "log has one line per epoch (%d)" % len(lines))
    keys = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"]
    check(all(list(l.keys())[:8] == keys for l in lines), "log keys in order: " + ", ".join(keys))
    check([l["epoch"] for l in lines] == [1, 2, 3, 4], "epochs numbered 1..4")
    check(lines[-1]["train_loss"] < lines[0]["train_loss"], "training loss decreases")
    check(lines[-1]["val_acc"] > 0.6, "validation accuracy %.3f > 0.6 (chance 0.2)" % lines[-1]["val_acc"])
    md = meta(d + "/out.onnx")
    prov = json.loads(md.get("onnx_tl.provenance", "{}"))
    for k in ["onnx_tl_version", "base_model_sha256", "data_sha256", "hyperparameters", "metrics", "epoch",
              "best_val_acc", "train_samples", "val_samples"]:
        check(k in prov, "provenance has '%s'" % k)
    import hashlib
    check(prov.get("base_model_sha256") == hashlib.sha256(read(MLP)).hexdigest(), "base model sha256")
    hp = prov.get("hyperparameters", {})
    check(hp.get("lr") == 0.01 and hp.get("batch") == 32 and hp.get("epochs") == 4 and hp.get("optimizer") == "adamw",
          "hyper-parameters recorded")
    check(prov.get("train_samples", 0) + prov.get("val_samples", 0) == 300 and prov.get("val_samples") == 45,
          "15%% stratified split (%s val)" % prov.get("val_samples"))
    best = max(l["val_acc"] for l in lines)
    check(abs(prov.get("metrics", {}).get("val_acc", -1) - best) < 1e-9, "OUT is the best epoch by val accuracy")
    a, b = inits(MLP), inits(d + "/out.onnx")
    check(any(not np.array_equal(a[k], b[k]) for k in a), "weights changed")
    # --val given: no split; --val-split 0: no validation, OUT = last epoch
    mlp_data(d + "/v.npz", n=60, seed=1)
    train(MLP, "--data", d + "/d.npz", "--val", d + "/v.npz", "-o", d + "/out2.onnx", "--epochs", 1, "--log",
          d + "/log2.jsonl", "--threads", 1)
    prov = json.loads(meta(d + "/out2.onnx")["onnx_tl.provenance"])
    check(prov["train_samples"] == 300 and prov["val_samples"] == 60, "--val: all of DATA trains")
    train(MLP, "--data", d + "/d.npz", "--val-split", 0, "-o", d + "/out3.onnx", "--epochs", 2, "--log",
          d + "/log3.jsonl", "--threads", 1)
    for _ in range(2):  # a fresh run into a used checkpoint directory replaces the old checkpoint
        train(MLP, "--data", d + "/d.npz", "-o", d + "/out4.onnx", "--epochs", 2, "--checkpoint", d + "/ck",
              "--threads", 1)
    files = sorted(os.listdir(d + "/ck"))
    check(len(files) == 3 and "state.txt" in files, "one checkpoint after two runs: %s" % files)
    lines = log_lines(d + "/log3.jsonl")
    check(lines[-1]["val_acc"] is None and json.loads(meta(d + "/out3.onnx")["onnx_tl.provenance"])["epoch"] == 2,
          "no validation: val_acc null, OUT is the last epoch")


def case_determinism(d):
    mlp_data(d + "/d.npz")
    common = ["--data", d + "/d.npz", "--epochs", 2, "--batch", 16, "--threads", 2, "--augment", "none"]
    train(MLP, *common, "-o", d + "/a.onnx", "--seed", 7)
    train(MLP, *common, "-o", d + "/b.onnx", "--seed", 7)
    train(MLP, *common, "-o", d + "/c.onnx", "--seed", 8)
    check(read(d + "/a.onnx") == read(d + "/b.onnx"), "same seed: bit-identical OUT")
    check(read(d + "/a.onnx") != read(d + "/c.onnx"), "other seed: different OUT")
    img_data(d + "/i.npz")
    common = ["--data", d + "/i.npz", "--epochs", 2, "--batch", 16, "--threads", 1, "--seed", 3]
    train(BN, *common, "-o", d + "/e.onnx")
    train(BN, *common, "-o", d + "/f.onnx")
    check(read(d + "/e.onnx") == read(d + "/f.onnx"), "BN CNN: bit-identical OUT")


def wait_state(ck, proc, min_epoch, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        try:
            with open(ck + "/state.txt") as f:
                for line in f:
                    if line.startswith("epoch ") and int(line.split()[1]) >= min_epoch:
                        return True
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    return False


def resume_case(d, sig, model=BN, extra=(), epochs=5, batch=8):
    img_data(d + "/i.npz", n=200)
    common = ["--data", d + "/i.npz", "--epochs", epochs, "--batch", batch, "--threads", 1, "--seed", 5, "--lr", 3e-3,
              "--schedule", "cosine", "--warmup", 10, *extra]
    train(model, *common, "-o", d + "/ref.onnx", "--log", d + "/ref.jsonl", "--quiet")
    args = [ONNX_TL, "train", model, *map(str, common), "-o", d + "/out.onnx", "--checkpoint", d + "/ck", "--log",
            d + "/log.jsonl"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    ok = wait_state(d + "/ck", p, 1)
    check(ok, "checkpoint of epoch 1 appeared")
    # an epoch of these tiny models takes tens of milliseconds: stop the run at once so that it cannot end
    # before the signal lands (somewhere early in epoch 2; at an epoch's end with one step per epoch)
    p.send_signal(signal.SIGSTOP)
    p.send_signal(sig)
    p.send_signal(signal.SIGCONT)
    _, errtext = p.communicate(timeout=120)
    if sig == signal.SIGKILL:
        check(p.returncode == -signal.SIGKILL, "killed (status %d)" % p.returncode)
    else:
        print(errtext.strip().splitlines()[-1] if errtext.strip() else "(no message)")
        check(p.returncode == 1, "SIGINT: exit 1 (got %d)" % p.returncode)
        check("interrupted at epoch" in errtext and "--resume" in errtext, "SIGINT: clear message")
    st = open(d + "/ck/state.txt").read()
    print("checkpoint: " + " ".join(l for l in st.splitlines() if l.split(" ")[0] in ("epoch", "batch_pos", "step")))
    p = train(MLP, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", expect=1)
    check("not the model the checkpoint" in p.stderr, "--resume with another MODEL: clear error")
    img_data(d + "/other.npz", n=200, seed=9)
    p = train(model, "--data", d + "/other.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", expect=1)
    check("differ from those the checkpoint" in p.stderr, "--resume with other data: clear error")
    os.symlink(d + "/i.npz", d + "/same.npz")  # the same data under another name
    train(model, "--data", d + "/same.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", "--threads", 1, "--log",
          d + "/log.jsonl")
    check(read(d + "/out.onnx") == read(d + "/ref.onnx"), "resumed OUT bit-identical to the uninterrupted run")
    ref, got = log_lines(d + "/ref.jsonl"), log_lines(d + "/log.jsonl")
    strip = lambda ls: [{k: v for k, v in l.items() if k not in ("seconds", "images_per_s")} for l in ls]
    check(strip(ref) == strip(got), "resumed log equals the uninterrupted log (%d lines)" % len(got))
    check(len(got) == epochs, "%d epochs logged" % epochs)
    files = sorted(os.listdir(d + "/ck"))
    check(len(files) == 3 and "state.txt" in files, "checkpoint holds one model, one optimizer state: %s" % files)
    if sig == signal.SIGKILL and not extra:  # a finished run extended by 2 epochs
        p = train(model, "--data", d + "/i.npz", "-o", d + "/out.onnx", "--resume", d + "/ck", "--threads", 1,
                  "--log", d + "/log.jsonl", "--epochs", epochs + 2)
        check("instead of the checkpoint's" in p.stderr and len(log_lines(d + "/log.jsonl")) == epochs + 2,
              "--resume --epochs E extends a finished run")


def case_sigkill(d):
    resume_case(d, signal.SIGKILL)


def case_sigint(d):
    resume_case(d, signal.SIGINT)


def case_sigint_epoch_end(d):
    """One step per epoch: the interrupt lands after an epoch's last step (resume at an epoch's end)."""
    resume_case(d, signal.SIGINT, epochs=10, batch=256)


def case_sigint_dropout(d):
    """A head with Dropout: the resumed run continues the same random masks."""
    p = subprocess.run([ONNX_TL, "swap-head", BN, "-o", d + "/drop.onnx", "--classes", "4", "--hidden", "16",
                        "--dropout", "0.5", "--seed", "1"], capture_output=True, text=True)
    check(p.returncode == 0, "swap-head with Dropout: " + p.stderr.strip())
    resume_case(d, signal.SIGINT, d + "/drop.onnx")
    a = [ONNX_TL, "train", d + "/drop.onnx", "--data", d + "/i.npz", "--epochs", "1", "--threads", "1", "--quiet",
         "--val-split", "0"]
    subprocess.run(a + ["-o", d + "/s1.onnx", "--seed", "1"], check=True)
    subprocess.run(a + ["-o", d + "/s2.onnx", "--seed", "2", "--no-shuffle"], check=True)
    subprocess.run(a + ["-o", d + "/s3.onnx", "--seed", "3", "--no-shuffle"], check=True)
    check(read(d + "/s2.onnx") != read(d + "/s3.onnx"), "the seed drives Dropout (same order, other masks)")


def case_sigkill_unfreeze(d):
    """Gradual unfreezing, layer-wise rates, SGD with momentum, augmentation: killed and resumed."""
    strip_bn(BN, d + "/m.onnx", ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight",
                                 "conv2.bias", "bn2.weight", "bn2.bias"])
    resume_case(d, signal.SIGKILL, d + "/m.onnx", ["--unfreeze-every", 1, "--layer-lr-decay", 0.7, "--optimizer",
                                                   "sgd", "--momentum", 0.9, "--augment", "hflip,jitter=0.2"])


def case_flags(d):
    """Optimizers, momentum/Nesterov, weight decay, label smoothing, gradient clipping."""
    mlp_data(d + "/d.npz", n=64)
    base = ["--data", d + "/d.npz", "--epochs", 1, "--batch", 16, "--threads", 1, "--val-split", 0, "--lr", 0.05]
    outs = {}
    for name, extra in [("adamw", []), ("adam", ["--optimizer", "adam"]), ("sgd", ["--optimizer", "sgd"]),
                        ("sgd_nesterov", ["--optimizer", "sgd", "--nesterov"]),
                        ("sgd_m0", ["--optimizer", "sgd", "--momentum", 0]),
                        ("adamw_wd", ["--weight-decay", 0.5]), ("ls", ["--label-smoothing", 0.2]),
                        ("clip", ["--clip-norm", 0.01])]:
        train(MLP, *base, *extra, "-o", d + "/%s.onnx" % name)
        outs[name] = read(d + "/%s.onnx" % name)
        hp = json.loads(meta(d + "/%s.onnx" % name)["onnx_tl.provenance"])["hyperparameters"]
        if name == "ls":
            check(abs(hp["label_smoothing"] - 0.2) < 1e-6, "label smoothing recorded")
        if name == "clip":
            check(hp["clip_norm"] == 0.01, "clip norm recorded")
    check(len(set(outs.values())) == len(outs), "every option changes the result")
    # clipping: one full-batch SGD step of lr 1 moves the parameters by at most the clip norm
    train(MLP, "--data", d + "/d.npz", "--epochs", 1, "--batch", 64, "--threads", 1, "--val-split", 0, "--lr", 1,
          "--optimizer", "sgd", "--momentum", 0, "--clip-norm", 1e-3, "-o", d + "/c.onnx")
    a, b = inits(MLP), inits(d + "/c.onnx")
    moved = np.sqrt(sum(float(((a[k].astype(np.float64) - b[k]) ** 2).sum()) for k in a if a[k].dtype == np.float32))
    check(0 < moved <= 1e-3 * 1.001, "clip-norm 1e-3: parameters moved by %.6g" % moved)


def case_torch_loop(d):
    """A whole run (2 epochs, last partial batch, SGD momentum + weight decay, cosine with warmup
    per step, BatchNormalization running statistics) against PyTorch (tests/train/loop, made by
    make_loop_golden.py)."""
    loop = os.path.join(SRC, "loop")
    train(BN, "--data", loop + "/data.npz", "-o", d + "/o.onnx", "--epochs", 2, "--batch", 12, "--no-shuffle",
          "--val-split", 0, "--optimizer", "sgd", "--momentum", 0.9, "--weight-decay", 1e-4, "--lr", 0.05,
          "--schedule", "cosine", "--warmup", 5, "--threads", 1)
    w, e = inits(d + "/o.onnx"), np.load(loop + "/expected.npz")
    worst = 0.0
    for k in e.files:
        diff = float(np.abs(w[k] - e[k]).max())
        worst = max(worst, diff / max(1.0, float(np.abs(e[k]).max())))
    check(len(e.files) == 14 and worst < 1e-5, "final weights and running statistics match PyTorch (%.2g)" % worst)


def case_nan(d):
    mlp_data(d + "/d.npz")
    p = train(MLP, "--data", d + "/d.npz", "-o", d + "/out.onnx", "--optimizer", "sgd", "--lr", 1e30, "--epochs", 2,
              "--threads", 1, expect=1)
    msg = p.stderr.strip()
    print(msg)
    check("non-finite loss" in msg and "epoch 1" in msg and "step" in msg, "NaN: message names epoch and step")
    check(len(msg.splitlines()) >= 1 and msg.splitlines()[-1].startswith("onnx-tl: "), "one-line error")
    check(not os.path.exists(d + "/out.onnx"), "no OUT when no epoch completed")
    p = train(MLP, "--data", d + "/d.npz", "-o", d + "/out.onnx", "--optimizer", "sgd", "--lr", 0.05, "--schedule",
              "step", "--step-size", 1, "--gamma", 1e29, "--epochs", 3, "--threads", 1, expect=1)
    print(p.stderr.strip().splitlines()[-1])
    check("epoch 2" in p.stderr and "keeps the model of epoch 1" in p.stderr, "divergence in epoch 2 reported")
    prov = json.loads(meta(d + "/out.onnx")["onnx_tl.provenance"])
    check(prov["epoch"] == 1, "OUT keeps the last good model (epoch 1)")
    w = inits(d + "/out.onnx")
    check(all(np.isfinite(v).all() for v in w.values() if v.dtype == np.float32), "OUT weights finite")
    # without validation data OUT is written once at the end: on divergence the last good epoch's model
    os.remove(d + "/out.onnx")
    p = train(MLP, "--data", d + "/d.npz", "-o", d + "/out.onnx", "--optimizer", "sgd", "--lr", 0.05, "--schedule",
              "step", "--step-size", 1, "--gamma", 1e29, "--epochs", 3, "--threads", 1, "--val-split", 0, expect=1)
    check("keeps the model of epoch 1" in p.stderr, "no validation: divergence in epoch 2 keeps epoch 1")
    check(json.loads(meta(d + "/out.onnx")["onnx_tl.provenance"])["epoch"] == 1, "no validation: OUT is epoch 1")
    check(all(np.isfinite(v).all() for v in inits(d + "/out.onnx").values() if v.dtype == np.float32),
          "no validation: OUT weights finite")


def case_resume_out(d):
    """--resume -o ANOTHER where no later epoch beats the checkpoint's best: OUT is that best model, copied."""
    mlp_data(d + "/d.npz")
    common = ["--data", d + "/d.npz", "--threads", 1]
    train(MLP, *common, "-o", d + "/out.onnx", "--epochs", 2, "--lr", 1e-30, "--checkpoint", d + "/ck")
    check(json.loads(meta(d + "/out.onnx")["onnx_tl.provenance"])["epoch"] == 1, "lr 1e-30: epoch 1 stays the best")
    p = train(MLP, *common, "-o", d + "/other.onnx", "--resume", d + "/ck", "--epochs", 3)
    check(read(d + "/other.onnx") == read(d + "/out.onnx"), "resumed run's OUT is the best model from before")
    check("copied its model from" in p.stderr, "the copy is said")
    os.remove(d + "/out.onnx")
    p = train(MLP, *common, "-o", d + "/other2.onnx", "--resume", d + "/ck", "--epochs", 4, expect=1)
    check("is not there any more" in p.stderr and not os.path.exists(d + "/other2.onnx"),
          "best model gone: clear error, no OUT claimed")


def case_out_once(d):
    """Without validation data OUT (the last model) is written after the last epoch, not after every epoch."""
    mlp_data(d + "/d.npz")
    out, log, epochs = d + "/out.onnx", d + "/log.jsonl", 1000
    proc = subprocess.Popen([ONNX_TL, "train", MLP, "--data", d + "/d.npz", "-o", out, "--epochs", str(epochs),
                             "--val-split", "0", "--threads", "1", "--quiet", "--log", log])
    seen = 0
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(log) and len(open(log).read().splitlines()) >= 1:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGSTOP)
        seen = len(open(log).read().splitlines()) if os.path.exists(log) else 0
        written = os.path.exists(out)
        proc.send_signal(signal.SIGCONT)
    finally:
        rc = proc.wait(timeout=300)
    check(rc == 0, "train exits 0")
    check(1 <= seen < epochs - 1, "stopped the run after %d of %d epochs" % (seen, epochs))
    check(not written, "OUT not written after epoch %d of %d" % (seen, epochs))
    prov = json.loads(meta(out)["onnx_tl.provenance"])
    check(prov["epoch"] == epochs, "OUT written at the end (epoch %d)" % prov["epoch"])


def make_folder(root, classes, per=6, empty=(), size=10, seed=0):
    from PIL import Image
    r = np.random.RandomState(seed)
    for ci, c in enumerate(classes):
        os.makedirs(os.path.join(root, c), exist_ok=True)
        if c in empty:
            continue
        for i in range(per):
            a = np.clip(r.randn(size, size, 3) * 30 + 60 + 45 * ci, 0, 255).astype(np.uint8)
            Image.fromarray(a).save(os.path.join(root, c, "%d.png" % i))


def case_classes(d):
    np.savez(d + "/bad.npz", x=np.random.RandomState(0).randn(20, 20).astype(np.float32),
             y=np.arange(20, dtype=np.int64) % 7)
    p = train(MLP, "--data", d + "/bad.npz", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("7 classes" in p.stderr and "outputs 5" in p.stderr, ".npz class count mismatch: clear error")
    make_folder(d + "/f3", ["a", "b", "c"])
    p = train(BN, "--data", d + "/f3", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("3 classes" in p.stderr and "outputs 4" in p.stderr, "folder class count mismatch: clear error")
    make_folder(d + "/fe", ["a", "b", "c", "d"], empty=("c",))
    p = train(BN, "--data", d + "/fe", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("c" in p.stderr and p.stderr.startswith("onnx-tl: "), "empty class directory: error naming it")
    print(p.stderr.strip())
    # labels stored in the model that differ from the folder's class names
    m = onnx.load(BN)
    pr = m.metadata_props.add()
    pr.key, pr.value = "onnx_tl.labels", "w\nx\ny\nz"
    onnx.save(m, d + "/labelled.onnx")
    make_folder(d + "/f4", ["a", "b", "c", "d"])
    p = train(d + "/labelled.onnx", "--data", d + "/f4", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("differ from the labels" in p.stderr, "folder names vs stored labels: clear error")
    make_folder(d + "/v4", ["a", "b", "c", "e"])
    p = train(BN, "--data", d + "/f4", "--val", d + "/v4", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("validation classes differ" in p.stderr, "--val folder with other class names: clear error")
    check(not os.path.exists(d + "/o.onnx"), "no OUT on errors")
    # an unreadable image: an error naming it, or with --skip-bad a note and training goes on
    with open(d + "/f4/b/broken.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")
    p = train(BN, "--data", d + "/f4", "-o", d + "/o.onnx", "--epochs", 1, expect=1)
    check("broken.png" in p.stderr, "unreadable image named")
    p = train(BN, "--data", d + "/f4", "-o", d + "/o.onnx", "--epochs", 1, "--skip-bad", "--threads", 1)
    check("broken.png" in p.stderr and os.path.exists(d + "/o.onnx"), "--skip-bad: skipped image reported, OUT written")


def case_early_stop(d):
    mlp_data(d + "/d.npz")
    train(MLP, "--data", d + "/d.npz", "-o", d + "/o.onnx", "--epochs", 10, "--lr", 1e-9, "--optimizer", "sgd",
          "--early-stop", 1, "--log", d + "/log.jsonl", "--threads", 1)
    lines = log_lines(d + "/log.jsonl")
    check(len(lines) == 2, "stopped after 2 epochs (%d logged)" % len(lines))
    prov = json.loads(meta(d + "/o.onnx")["onnx_tl.provenance"])
    check(prov["epoch"] == 1, "OUT from the best (first) epoch")


def case_unfreeze(d):
    img_data(d + "/i.npz")
    frozen = ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight", "conv2.bias", "bn2.weight",
              "bn2.bias"]
    strip_bn(BN, d + "/m.onnx", frozen)
    base = inits(d + "/m.onnx")
    changed = {}
    for e in (1, 2, 3):
        p = train(d + "/m.onnx", "--data", d + "/i.npz", "-o", d + "/o%d.onnx" % e, "--epochs", e, "--val-split", 0,
                  "--unfreeze-every", 1, "--lr", 0.01, "--threads", 1)
        w = inits(d + "/o%d.onnx" % e)
        changed[e] = sorted(k for k in base if "running" not in k and not np.array_equal(base[k], w[k]))
        print(e, changed[e], [l for l in p.stderr.splitlines() if "unfreez" in l])
    check(changed[1] == ["fc.bias", "fc.weight"], "epoch 1: head only")
    check(changed[2] == ["bn2.bias", "bn2.weight", "fc.bias", "fc.weight"], "epoch 2: + bn2 (next block from the head)")
    check(changed[3] == ["bn2.bias", "bn2.weight", "conv2.bias", "conv2.weight", "fc.bias", "fc.weight"],
          "epoch 3: + conv2")
    fz = meta(d + "/o3.onnx").get("onnx_tl.frozen", "").split("\n")
    check(sorted(fz) == sorted(frozen[:4]), "OUT's frozen marks: conv1/bn1 still frozen")


def case_lr_mult(d):
    img_data(d + "/i.npz", n=32)
    strip_bn(BN, d + "/m.onnx")
    z = np.load(d + "/i.npz")
    np.save(d + "/x.npy", z["x"])
    np.save(d + "/y.npy", z["y"])
    lr = 0.1
    train(d + "/m.onnx", "--data", d + "/i.npz", "-o", d + "/o.onnx", "--epochs", 1, "--batch", 32, "--val-split", 0,
          "--optimizer", "sgd", "--momentum", 0, "--weight-decay", 0, "--lr", lr, "--layer-lr-decay", 0.5,
          "--no-shuffle", "--threads", 1)
    g = subprocess.run([ONNX_TL, "grad", d + "/m.onnx", "--input", "input=" + d + "/x.npy", "--target",
                        d + "/y.npy", "-o", d + "/g", "--threads", "1"], capture_output=True, text=True)
    check(g.returncode == 0, "grad ran: " + g.stderr.strip())
    base, w = inits(d + "/m.onnx"), inits(d + "/o.onnx")
    depth = {"fc": 0, "bn2": 1, "conv2": 2, "bn1": 3, "conv1": 4}
    for name in sorted(depth, key=depth.get):
        for suffix in ("weight", "bias"):
            k = name + "." + suffix
            grad = np.load(d + "/g/grad/" + k + ".npy")
            if np.abs(grad).max() < 1e-5:  # a conv bias before BatchNormalization: no gradient
                print("skip %s: gradient %.2g" % (k, np.abs(grad).max()))
                continue
            step = base[k] - w[k]
            big = np.abs(grad) > 1e-4 * np.abs(grad).max()
            ratio = np.median(step[big] / (lr * grad[big]))
            want = 0.5 ** depth[name]
            check(abs(ratio - want) < 1e-3 * want, "%s: lr multiplier %.6f (expected 0.5^%d = %g)"
                  % (k, ratio, depth[name], want))


def case_bn(d):
    img_data(d + "/i.npz")
    base = inits(BN)
    train(BN, "--data", d + "/i.npz", "-o", d + "/f.onnx", "--epochs", 1, "--bn", "frozen", "--threads", 1)
    train(BN, "--data", d + "/i.npz", "-o", d + "/t.onnx", "--epochs", 1, "--bn", "train", "--threads", 1)
    f, t = inits(d + "/f.onnx"), inits(d + "/t.onnx")
    stats = [k for k in base if "running" in k]
    check(all(np.array_equal(base[k], f[k]) for k in stats), "--bn frozen: running statistics unchanged")
    check(all(not np.array_equal(base[k], t[k]) for k in stats), "--bn train: running statistics updated")
    check(not np.array_equal(base["fc.weight"], f["fc.weight"]), "--bn frozen still trains the weights")


def case_schedule(d):
    mlp_data(d + "/d.npz", n=100)  # 85 train -> 3 steps of 32 per epoch
    def lrs(*extra, lr=0.1):
        if os.path.exists(d + "/log.jsonl"):
            os.unlink(d + "/log.jsonl")
        train(MLP, "--data", d + "/d.npz", "-o", d + "/o.onnx", "--epochs", 6, "--lr", lr, "--optimizer", "sgd",
              "--log", d + "/log.jsonl", "--threads", 1, *extra)
        return [l["lr"] for l in log_lines(d + "/log.jsonl")]
    got = lrs("--schedule", "step", "--step-size", 2, "--gamma", 0.5)
    check(np.allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]), "step: %s" % got)
    got = lrs("--schedule", "constant", "--warmup", 6)
    check(np.allclose(got, [0.05, 0.1, 0.1, 0.1, 0.1, 0.1]), "warmup 6 steps: %s" % got)
    got = lrs("--schedule", "cosine", "--min-lr", 0.01)
    want = [0.01 + 0.09 * (1 + np.cos(np.pi * (3 * e + 2) / 18)) / 2 for e in range(6)]
    check(np.allclose(got, want), "cosine: %s" % got)
    got = lrs("--schedule", "onecycle")
    check(got[-1] < 1e-4 and max(got) > 0.05, "onecycle: %s" % got)
    got = lrs("--schedule", "plateau", "--plateau-patience", 0, "--plateau-factor", 0.5, lr=1e-7)
    check(got[0] == 1e-7 and got[-1] < got[0], "plateau reduces the rate when the loss stalls: %s" % got)


def case_images(d):
    make_folder(d + "/f", ["cat", "dog", "emu", "fox"], per=8)
    shutil.copy(BN, d + "/m.onnx")  # BatchNormalization with the exporter's training outputs
    train(d + "/m.onnx", "--data", d + "/f", "-o", d + "/o.onnx", "--epochs", 2, "--batch", 8, "--augment",
          "hflip,rotate=10", "--threads", 1, "--log", d + "/log.jsonl")
    md = meta(d + "/o.onnx")
    check(md.get("onnx_tl.labels", "").split("\n") == ["cat", "dog", "emu", "fox"], "class names stored as labels")
    check("onnx_tl.preprocess" in md, "preprocessing stored")
    train(d + "/m.onnx", "--data", d + "/f", "-o", d + "/o2.onnx", "--epochs", 2, "--batch", 8, "--threads", 1)
    check(read(d + "/o.onnx") != read(d + "/o2.onnx"), "--augment changes the result")
    x = np.random.RandomState(1).randn(5, 3, 10, 10).astype(np.float32)
    np.save(d + "/x.npy", x)
    r = subprocess.run([ONNX_TL, "run", d + "/o.onnx", "--input", "input=" + d + "/x.npy", "--outdir", d + "/otl"],
                       capture_output=True, text=True)
    o = subprocess.run([NODE, os.path.join(ORT_DIR, "ort_run.js"), d + "/o.onnx", d + "/ort", "--input",
                        "input=" + d + "/x.npy"], capture_output=True, text=True)
    check(r.returncode == 0 and o.returncode == 0, "onnx-tl run and ONNX Runtime ran: %s %s" % (r.stderr, o.stderr))
    if r.returncode == 0 and o.returncode == 0:
        a, b = np.load(d + "/otl/logits.npy"), np.load(d + "/ort/logits.npy")
        check(np.abs(a - b).max() < 1e-4 and (a.argmax(1) == b.argmax(1)).all(),
              "ONNX Runtime: same predictions (max diff %.2g)" % np.abs(a - b).max())
    bn = [n for n in onnx.load(d + "/o.onnx").graph.node if n.op_type == "BatchNormalization"]
    check(bn and all(len(n.output) == 1 for n in bn), "OUT: BatchNormalization without training outputs")
    onnx.checker.check_model(onnx.load(d + "/o.onnx"), full_check=True)
    check(True, "OUT passes onnx.checker (full_check)")


def case_usage(d):
    mlp_data(d + "/d.npz", n=20)
    for bad in (["--epochs", 0], ["--optimizer", "lion"], ["--schedule", "linear"], ["--bn", "eval"],
                ["--batch", "x"], ["--bogus"]):
        train(MLP, "--data", d + "/d.npz", "-o", d + "/o.onnx", *bad, expect=2)
    train(MLP, "--data", d + "/d.npz", expect=2)
    train(MLP, "--data", d + "/d.npz", "-o", MLP, expect=2)
    p = train(MLP, "--data", d + "/missing.npz", "-o", d + "/o.onnx", expect=1)
    check("missing.npz" in p.stderr, "missing data file named")
    p = train(MLP, "--data", d + "/d.npz", "-o", d + "/no/such/dir/o.onnx", "--epochs", 50, expect=1)
    check("no/such/dir/o.onnx" in p.stderr and "epoch 1/" not in p.stderr,
          "unwritable output: error before training")
    enc = os.path.join(ROOT, "testdata", "models", "tiny_encoder.onnx")
    r = np.random.RandomState(0)
    np.savez(d + "/tok.npz", x=r.randint(0, 50, (20, 8)).astype(np.int64), y=r.randint(0, 3, 20).astype(np.int64))
    p = train(enc, "--data", d + "/tok.npz", "-o", d + "/o.onnx", expect=1)
    check("has rank 3" in p.stderr and "swap-head" in p.stderr, "not a classifier: clear error")
    m = onnx.load(MLP)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(m, d + "/b4.onnx")
    p = train(d + "/b4.onnx", "--data", d + "/d.npz", "-o", d + "/o.onnx", "--batch", 8, expect=1)
    check("fixed batch axis of 4" in p.stderr, "fixed batch axis: clear error")
    p = train(MLP, "--data", d + "/d.npz", "-o", d + "/o.onnx", "--resume", d + "/nockpt", expect=1)
    check("nockpt" in p.stderr, "--resume of a missing checkpoint: error naming it")


if __name__ == "__main__":
    sys.exit(otl_test.main(CASE, globals(), prefix="otl-train-"))
