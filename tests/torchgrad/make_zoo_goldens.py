#!/usr/bin/python3
"""PyTorch gradient parity on the full-size torchvision architectures (too big to commit).

    /usr/bin/python3 tests/torchgrad/make_zoo_goldens.py BUILD_DIR [--check ONNX_TL] [CASE...]

Writes BUILD_DIR/<case>/ exactly like make_goldens.py (layout in tg_common.py): torchvision
resnet18 and mobilenet_v2 (random weights, nothing downloaded; BatchNorm affine parameters and
running statistics randomized; mobilenet_v2's classifier Dropout set to p=0), 1000 classes,
input 2x3x112x112, opset 13, exported in eval() with do_constant_folding=False. With --check,
then runs check_grad.py ONNX_TL on every case written and exits 1 if any fails (the CTest entry
torchgrad.zoo).

Cases: resnet18 (--bn train), resnet18_bnfrozen (--bn frozen, PyTorch eval()),
resnet18_headonly (everything but fc frozen via onnx_tl.frozen), mobilenet_v2 (--bn train,
label_smoothing 0.1). Each case also gets its float32-kink envelope (tg_common.kink_envelope),
which check_grad.py adds to the tolerance element by element.
"""
import argparse
import os
import subprocess
import sys

import torch
import torchvision.models as tvm

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tg_common as tg  # noqa: E402

SEED = 112

# float32 accumulation over ~20 layers stays well inside 1e-4 here (PyTorch's own float32
# gradients are within a few 1e-5 of the float64 reference: torch_f32_rel in case.json), so the
# issue's tolerance is kept. What does not stay inside it are ReLU/ReLU6 masks of inputs that lie
# within float32 rounding of a kink (mobilenet_v2 at batch 2 has dozens): the float32-kink
# envelope of each case (tg_common.kink_envelope) covers exactly those elements.
REASON = ""


def resnet18():
    m = tvm.resnet18(weights=None)
    tg.randomize_bn(m, torch.Generator().manual_seed(SEED + 1))
    return m


def mobilenet_v2():
    m = tvm.mobilenet_v2(weights=None)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    tg.randomize_bn(m, torch.Generator().manual_seed(SEED + 2))
    return m


def data(seed):
    tg.seed_all(seed)
    return torch.randn(2, 3, 112, 112), torch.randint(0, 1000, (2,), dtype=torch.int64)


def case_resnet18(out, name, bn="train", headonly=False):
    x, y = data(SEED)
    m = resnet18()
    frozen = [n for n, _ in m.named_parameters() if not n.startswith("fc.")] if headonly else []
    doc = "torchvision resnet18, 2x3x112x112, CE, --bn %s" % bn
    if headonly:
        doc += ", everything but fc frozen"
    return tg.make_case(out, name, m, [x], ["input"], y, opset=13, bn=bn, frozen=frozen,
                        doc=doc, reason=REASON)


def case_mobilenet_v2(out):
    x, y = data(SEED + 1)
    return tg.make_case(out, "mobilenet_v2", mobilenet_v2(), [x], ["input"], y, opset=13,
                        label_smoothing=0.1, reason=REASON,
                        doc="torchvision mobilenet_v2, 2x3x112x112, CE with label_smoothing 0.1, "
                            "--bn train")


CASES = {
    "resnet18": lambda o: case_resnet18(o, "resnet18"),
    "resnet18_bnfrozen": lambda o: case_resnet18(o, "resnet18_bnfrozen", bn="frozen"),
    "resnet18_headonly": lambda o: case_resnet18(o, "resnet18_headonly", headonly=True),
    "mobilenet_v2": case_mobilenet_v2,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--check", metavar="ONNX_TL", help="run check_grad.py on every case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("cases", nargs="*")
    args = ap.parse_intermixed_args()
    names = args.cases or list(CASES)
    bad = [n for n in names if n not in CASES]
    if bad:
        ap.error("unknown case(s): %s (known: %s)" % (", ".join(bad), ", ".join(CASES)))
    torch.set_num_threads(args.threads)
    dirs = [CASES[n](args.build_dir) for n in names]
    if not args.check:
        return 0
    check = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_grad.py")
    failed = []
    for n, d in zip(names, dirs):
        sys.stdout.flush()
        rc = subprocess.call([sys.executable, check, args.check, d, "--threads",
                              str(args.threads), "--workdir", d + ".out"])
        if rc != 0:
            failed.append(n)
    print("torchgrad.zoo: %d of %d cases match PyTorch%s"
          % (len(names) - len(failed), len(names),
             "; failed: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
