#!/usr/bin/python3
"""CLI checks of freeze, swap-head metadata (labels, preprocessing) and error cases.

    check_cli.py PART --onnx-tl BIN --models testdata/models --workdir DIR

PART:
  freeze  freeze --all-but-head / --until NODE / --until TENSOR / --params / --unfreeze and their
          combinations on a swapped tiny ResNet: the frozen set equals the one computed here from
          the ONNX graph (python, independently), `info --json` params_trainable/params_frozen
          agree, `onnx-tl grad` writes gradients for exactly the trainable parameters, freeze
          --list --json blocks (head = block 0, depth grows toward the input), marks of removed
          parameters dropped by a later swap-head
  meta    --labels and --preprocess / single-key flags stored and shown by `info --json`,
          stale labels removed, preprocessing kept when not given
  errors  every bad input and usage: exit status 1 or 2, one line "onnx-tl: ..." naming the
          culprit, no output file written, the input never modified
"""
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import onnx
except ImportError as e:
    sys.stderr.write(f"check_cli.py: missing python module ({e})\n")
    sys.exit(1)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import otl_test  # noqa: E402
from otl_test import check, npy_name  # noqa: E402


def tl(args, *a, expect=0):
    p = subprocess.run([args.onnx_tl] + list(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    check(p.returncode == expect, f"{' '.join(a)}: exit {p.returncode}, expected {expect}: {err.strip()[-800:]}")
    return out, err


def info(args, path):
    out, _ = tl(args, "info", path, "--json")
    return json.loads(out)


def params_of(model):
    """Trainable-parameter candidates: float initializers that are not BN running stats."""
    g = model.graph
    stats = {n.input[k] for n in g.node if n.op_type == "BatchNormalization" for k in (3, 4) if k < len(n.input)}
    return [t.name for t in g.initializer if t.data_type in (1, 10, 11, 16) and t.name not in stats]


def numel(model):
    return {t.name: int(np.prod(t.dims)) if t.dims else 1 for t in model.graph.initializer}


def upstream_params(model, tensors, extra_nodes=()):
    """Parameters read by the nodes needed to compute `tensors` (plus extra nodes)."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    need, seen, nodes = list(tensors) + [i for n in extra_nodes for i in n.input], set(), list(extra_nodes)
    while need:
        t = need.pop()
        if t in seen or t not in prod:
            continue
        seen.add(t)
        nodes.append(prod[t])
        need.extend(prod[t].input)
    ps = set(params_of(model))
    return {i for n in nodes for i in n.input if i in ps}


def frozen_of(path):
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    return set(meta["onnx_tl.frozen"].split("\n")) if meta.get("onnx_tl.frozen") else set(), m


def part_freeze(args, wd):
    src = os.path.join(args.models, "tiny_resnet.onnx")
    base = os.path.join(wd, "swapped.onnx")
    tl(args, "swap-head", src, "-o", base, "--classes", "4", "--hidden", "8")
    m = onnx.load(base)
    allp = params_of(m)
    sizes = numel(m)
    head = [p for p in allp if p.startswith("head.")]
    check(len(head) == 4, f"head params {head}")

    def run_case(tag, expected, *opts, src_model=base):
        out = os.path.join(wd, tag + ".onnx")
        tl(args, "freeze", src_model, "-o", out, *opts)
        got, _ = frozen_of(out)
        check(got == expected, f"{tag}: frozen {sorted(got)} != expected {sorted(expected)}")
        d = info(args, out)
        exp_frozen = sum(sizes[p] for p in expected)
        check(d["params_frozen"] == exp_frozen, f"{tag}: info params_frozen {d['params_frozen']} != {exp_frozen}")
        exp_train = sum(sizes[p] for p in allp) - exp_frozen
        check(d["params_trainable"] == exp_train, f"{tag}: info params_trainable {d['params_trainable']} != {exp_train}")
        return out

    non_head = set(allp) - set(head)
    abh = run_case("all_but_head", non_head, "--all-but-head")
    node = "/layer2/layer2.0/conv2/Conv"
    nd = [n for n in m.graph.node if n.name == node][0]
    exp_until = upstream_params(m, list(nd.output), [nd])
    check(len(exp_until) >= 8 and "onnx::Conv_132" not in exp_until, f"until set {sorted(exp_until)}")
    run_case("until_node", exp_until, "--until", node)
    tensor = "/layer3/layer3.0/relu/Relu_output_0"
    run_case("until_tensor", upstream_params(m, [tensor]), "--until", tensor)
    glob = "onnx::Conv_12*"
    exp_glob = {p for p in allp if fnmatch.fnmatchcase(p, glob)}
    run_case("params", exp_glob, "--params", glob)
    run_case("params2", exp_glob | {"head.fc1.weight"}, "--params", glob + ",head.fc1.weight")
    unf = "onnx::Conv_15*"
    run_case("abh_unfreeze", non_head - {p for p in allp if fnmatch.fnmatchcase(p, unf)}, "--all-but-head",
             "--unfreeze", unf)
    run_case("until_params", exp_until | {"head.fc2.bias"}, "--until", node, "--params", "head.fc2.bias")
    # marks add to the stored ones; '*' unfreezes all
    run_case("combine", non_head | {"head.fc1.weight", "head.fc1.bias"}, "--params", "head.fc1.*", src_model=abh)
    allfree = run_case("unfreeze_all", set(), "--unfreeze", "*", src_model=abh)
    _, m2 = frozen_of(allfree)
    check("onnx_tl.frozen" not in {p.key for p in m2.metadata_props}, "unfreeze '*' leaves an onnx_tl.frozen key")

    # --list --json: blocks and totals
    out, _ = tl(args, "freeze", abh, "--list", "--json")
    lj = json.loads(out)
    names = [p["name"] for p in lj["params"]]
    check(sorted(names) == sorted(allp), f"--list params {names}")
    blocks = {p["name"]: p["block"] for p in lj["params"]}
    check(all(blocks[p] == 0 for p in head), f"head not in block 0: {blocks}")
    check(all(blocks[p] > 0 for p in non_head), "backbone parameter in block 0")
    order = [n.name for n in m.graph.node]
    first = {}
    for i, n in enumerate(m.graph.node):
        for x in n.input:
            first.setdefault(x, i)
    conv1 = blocks["onnx::Conv_117"]
    check(conv1 == max(blocks.values()), f"the stem conv is not the deepest block ({conv1})")
    check(lj["blocks"][0] == "head" and len(lj["blocks"]) == max(blocks.values()) + 1, f"blocks {lj['blocks']}")
    check(lj["params_frozen"] == sum(sizes[p] for p in non_head), "--list params_frozen")
    check(all(p["frozen"] == (p["name"] in non_head) for p in lj["params"]), "--list frozen flags")
    # depth decreases along the graph: a parameter consumed later is never deeper
    for a in allp:
        for b in allp:
            if first[a] < first[b]:
                check(blocks[a] >= blocks[b], f"block order: {a} (node {order[first[a]]}) vs {b}")
    out, _ = tl(args, "freeze", abh, "--list")
    check("head.fc2.weight" in out and "frozen" in out and "trainable" in out, "--list table")
    # dry run: --list with options and no -o shows the result, writes nothing
    out, _ = tl(args, "freeze", base, "--list", "--json", "--all-but-head")
    check(json.loads(out)["params_frozen"] == sum(sizes[p] for p in non_head), "--list dry run")

    # grad honours the marks: gradients exactly for the trainable parameters
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = np.array([1, 3], dtype=np.int64)
    np.save(os.path.join(wd, "x.npy"), x)
    np.save(os.path.join(wd, "y.npy"), y)
    for tag, model, trainable in (("abh", abh, set(head)),
                                  ("until", os.path.join(wd, "until_node.onnx"), set(allp) - exp_until)):
        gd = os.path.join(wd, "grad_" + tag)
        shutil.rmtree(gd, ignore_errors=True)
        tl(args, "grad", model, "--input", "input=" + os.path.join(wd, "x.npy"), "--target",
           os.path.join(wd, "y.npy"), "-o", gd)
        got = set(os.listdir(os.path.join(gd, "grad"))) if os.path.isdir(os.path.join(gd, "grad")) else set()
        check(got == {npy_name(p) + ".npy" for p in trainable}, f"grad {tag}: wrote {sorted(got)}")

    # swap-head again: the old head's marks are dropped, the new head is trainable
    frozen_head = os.path.join(wd, "frozen_head.onnx")
    tl(args, "freeze", base, "-o", frozen_head, "--params", "head.*,onnx::Conv_117")
    again = os.path.join(wd, "again.onnx")
    tl(args, "swap-head", frozen_head, "-o", again, "--classes", "2")
    got, m3 = frozen_of(again)
    check(got == {"onnx::Conv_117"}, f"after a second swap-head: frozen {sorted(got)}")
    check(all(t.name != "head.fc1.weight" for t in m3.graph.initializer), "old hidden layer still present")
    check(any(t.name == "head.fc.weight" for t in m3.graph.initializer), "new head not named head.fc.*")


def part_meta(args, wd):
    src = os.path.join(args.models, "tiny_resnet.onnx")
    labels = os.path.join(wd, "labels.txt")
    with open(labels, "w") as f:
        f.write("cat\ndog\nbird\r\n")
    pre = os.path.join(wd, "pre.json")
    with open(pre, "w") as f:
        json.dump({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize": "stretch"}, f)
    out = os.path.join(wd, "meta.onnx")
    tl(args, "swap-head", src, "-o", out, "--classes", "3", "--labels", labels, "--preprocess", pre)
    d = info(args, out)
    check(d.get("labels") == ["cat", "dog", "bird"], f"labels {d.get('labels')}")
    p = d.get("preprocess")
    if isinstance(p, str):
        p = json.loads(p)
    check(p == {"size": [32, 32], "resize": "stretch", "crop": "none", "channels": "rgb", "scale": 255,
                "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "layout": "NCHW"}, f"preprocess {p}")
    check(d["head"] and d["head"]["classes"] == 3, f"info head {d['head']}")
    text, _ = tl(args, "info", out)
    check("labels:    3: cat, dog, bird\n" in text and '"std":[0.25,0.25,0.25]' in text, "info text: labels/preprocess")
    out2 = os.path.join(wd, "meta2.onnx")
    # single-key flags over the stored preprocessing; no --labels: stale labels removed
    tl(args, "swap-head", out, "-o", out2, "--classes", "5", "--channels", "bgr", "--scale", "1", "--size", "32,32")
    d2 = info(args, out2)
    check(not d2.get("labels"), f"stale labels kept: {d2.get('labels')}")
    p2 = d2.get("preprocess")
    if isinstance(p2, str):
        p2 = json.loads(p2)
    check(p2 and p2["channels"] == "bgr" and p2["scale"] == 1 and p2["mean"] == [0.5, 0.5, 0.5]
          and p2["resize"] == "stretch", f"preprocess after flags {p2}")
    # no preprocessing option: the stored one is kept
    out3 = os.path.join(wd, "meta3.onnx")
    tl(args, "swap-head", out2, "-o", out3, "--classes", "2")
    d3 = info(args, out3)
    check(d3.get("preprocess") == d2.get("preprocess"), "preprocessing not kept")
    # --at a node name: its output (rank 4 here: GlobalAveragePool + Flatten)
    out5 = os.path.join(wd, "meta5.onnx")
    tl(args, "swap-head", src, "-o", out5, "--classes", "2", "--at", "/layer4/layer4.0/relu_1/Relu")
    m5 = onnx.load(out5)
    ops5 = [n.op_type for n in m5.graph.node if n.name.startswith("/head/")]
    check(ops5 == ["GlobalAveragePool", "Flatten", "Gemm"], f"--at node name: head ops {ops5}")
    check(info(args, out5)["head"]["classes"] == 2, "--at node name: head classes")
    # --classes taken from --labels
    out4 = os.path.join(wd, "meta4.onnx")
    tl(args, "swap-head", src, "-o", out4, "--labels", labels)
    check(info(args, out4)["outputs"][0]["shape"][1] == 3, "classes from --labels")


def part_errors(args, wd):
    src = os.path.join(args.models, "tiny_resnet.onnx")
    enc = os.path.join(args.models, "tiny_encoder.onnx")
    h0 = hashlib.sha256(open(src, "rb").read()).hexdigest()
    out = os.path.join(wd, "never.onnx")

    def bad(expect, needle, *a):
        if os.path.exists(out):
            os.unlink(out)
        _, err = tl(args, *a, expect=expect)
        lines = [x for x in err.strip().split("\n") if x]
        check(len(lines) == 1 and lines[0].startswith("onnx-tl: ") and needle in lines[0],
              f"{' '.join(a)}: stderr {err.strip()!r} should be one line naming {needle!r}")
        check(not os.path.exists(out), f"{' '.join(a)}: wrote an output")

    w = lambda name, text: (open(os.path.join(wd, name), "w").write(text), os.path.join(wd, name))[1]
    sw = ("swap-head", src, "-o", out)
    bad(1, "no_such_tensor", *sw, "--classes", "3", "--at", "no_such_tensor")
    bad(1, "onnx::Conv_117", *sw, "--classes", "3", "--at", "onnx::Conv_117")
    bad(2, "--classes", *sw, "--classes", "0")
    bad(2, "--classes", *sw, "--classes", "-3")
    bad(2, "--classes", *sw, "--classes", "x")
    bad(2, "--classes", *sw)
    bad(1, "2 labels", *sw, "--classes", "3", "--labels", w("l2.txt", "a\nb\n"))
    bad(1, "duplicate", *sw, "--classes", "3", "--labels", w("ld.txt", "a\nb\na\n"))
    bad(1, "empty", *sw, "--classes", "3", "--labels", w("le.txt", "a\n\nb\n"))
    bad(1, "nope.txt", *sw, "--classes", "3", "--labels", os.path.join(wd, "nope.txt"))
    bad(1, "bad.json", *sw, "--classes", "3", "--preprocess", w("bad.json", "{\"size\": [224]"))
    bad(1, "unknown key", *sw, "--classes", "3", "--preprocess", w("bad2.json", "{\"sise\": [32, 32]}"))
    bad(1, "contradicts", *sw, "--classes", "3", "--preprocess", w("bad3.json", "{\"layout\": \"NHWC\"}"))
    bad(1, "contradicts", *sw, "--classes", "3", "--size", "64,64")
    bad(2, "--size", *sw, "--classes", "3", "--size", "a,b")
    bad(2, "--mean", *sw, "--classes", "3", "--mean", "0.5")
    bad(2, "--channels", *sw, "--classes", "3", "--channels", "rgba")
    bad(1, "not an image", "swap-head", enc, "-o", out, "--classes", "3", "--at", "hidden_states", "--size", "8,8")
    bad(2, "--pool", *sw, "--classes", "3", "--pool", "max")
    bad(2, "--pool applies to rank-3", *sw, "--classes", "3", "--at", "/conv1/Conv_output_0", "--pool", "mean")
    bad(2, "--hidden", *sw, "--classes", "3", "--hidden", "0")
    bad(2, "--dropout", *sw, "--classes", "3", "--dropout", "1.5")
    bad(2, "--seed", *sw, "--classes", "3", "--seed", "-1")
    bad(2, "unknown option", *sw, "--classes", "3", "--bogus")
    bad(2, "differ", "swap-head", src, "-o", src, "--classes", "3")
    bad(2, "-o", "swap-head", src, "--classes", "3")
    bad(1, "no classifier head", "swap-head", enc, "-o", out, "--classes", "3")
    bad(1, "rank", "swap-head", enc, "-o", out, "--classes", "3", "--at", "input_ids")
    fz = ("freeze", src, "-o", out)
    bad(1, "no_glob*", *fz, "--params", "no_glob*")
    bad(1, "zzz", *fz, "--unfreeze", "zzz")
    bad(1, "nothing_here", *fz, "--until", "nothing_here")
    bad(2, "at least one", *fz)
    bad(2, "differ", "freeze", src, "-o", src, "--all-but-head")
    bad(2, "--json", "freeze", src, "--json")
    bad(2, "-o OUT", "freeze", src, "--all-but-head")
    bad(1, "no classifier head", "freeze", enc, "-o", out, "--all-but-head")
    bad(1, "nonexistent.onnx", "freeze", os.path.join(wd, "nonexistent.onnx"), "--list")
    check(hashlib.sha256(open(src, "rb").read()).hexdigest() == h0, "the input model was modified")
    _, err = tl(args, "swap-head", "--help")
    _, err = tl(args, "freeze", "--help")


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["freeze", "meta", "errors"])
    ap.add_argument("--onnx-tl", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    wd = os.path.join(args.workdir, args.part)
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    {"freeze": part_freeze, "meta": part_meta, "errors": part_errors}[args.part](args, wd)
    return otl_test.finish()


if __name__ == "__main__":
    sys.exit(main())
