"""Shared helpers of the PyTorch gradient-parity goldens (tests/torchgrad).

A case directory holds:
    model.onnx     the exported model (initializer names = PyTorch parameter names)
    <input>.npy    one file per model input (float32 images/features or int64 token ids)
    target.npy     int64 class ids (ce) or float32 targets (mse)
    loss.npy       scalar float32: the loss PyTorch computes
    grad/<name>.npy  d loss / d parameter for every trainable parameter (name sanitized: every
                   character outside [A-Za-z0-9._-] -> '_', as `onnx-tl grad` names its files)
    kink/<name>.npy  (only where nonzero) the float32-kink envelope of that gradient, added to
                   the tolerance element by element (see kink_envelope)
    case.json      {"inputs": {name: file}, "loss": "ce"|"mse", "label_smoothing": e, "bn":
                   "train"|"frozen", "rtol", "atol", "reason", "frozen": [names],
                   "torch_f32_err", "torch_f32_rel", "kink_candidates", "kink_factor", "doc"}

The reference values are computed in float64 from the float32 weights that were exported
(model.double() on a copy), so the goldens are the exact gradients of the exported float32
model up to float64 rounding; torch_f32_err records how far PyTorch's own float32 computation is
from them: the smallest rtol with which PyTorch's float32 result would pass the check (with the
case's atol), and torch_f32_rel the plain max|a-b| / max|b| over the tensors with max|b| > atol:
a hint of what float32 accumulation costs.
"""
import copy
import json
import os
import re
import shutil
import tempfile

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

RTOL = 1e-4
ATOL = 1e-5


def sanitize(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def randomize_bn(model, gen):
    """Non-trivial BatchNorm affine parameters and running statistics (a freshly built
    model has weight 1, bias 0, mean 0, var 1, which hides mistakes), and noise on every other
    parameter whose elements are all equal (LayerNorm, attention biases): the exporter merges
    initializers with equal contents, which would lose PyTorch's parameter names."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 0 and bool((p == p.reshape(-1)[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def export(model, args, path, input_names, output_names, opset, training):
    """torch.onnx.export without constant folding, initializers not listed as inputs.
    training: torch.onnx.TrainingMode.PRESERVE (model as it is: eval() gives inference
    BatchNormalization with the running statistics) or TRAINING."""
    torch.onnx.export(model, args, path, input_names=input_names, output_names=output_names,
                      opset_version=opset, do_constant_folding=False, training=training,
                      keep_initializers_as_inputs=False)


def set_frozen(path, names):
    """Store the frozen marks the way onnx-tl reads them: metadata_props key "onnx_tl.frozen",
    one initializer name per line."""
    m = onnx.load(path)
    for p in list(m.metadata_props):
        if p.key == "onnx_tl.frozen":
            m.metadata_props.remove(p)
    e = m.metadata_props.add()
    e.key = "onnx_tl.frozen"
    e.value = "\n".join(names)
    onnx.save(m, path)


def bn_buffers(onnx_model):
    """Names of the BatchNormalization running statistics (inputs 3 and 4): not parameters."""
    out = set()
    for n in onnx_model.graph.node:
        if n.op_type == "BatchNormalization":
            out.update(n.input[3:5])
    return out


def float_initializers(onnx_model):
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
              onnx.TensorProto.BFLOAT16}
    return {t.name for t in onnx_model.graph.initializer if t.data_type in floats}


def loss_fn(kind, out, target, label_smoothing):
    if kind == "ce":
        return F.cross_entropy(out, target, label_smoothing=label_smoothing)
    if kind == "mse":
        return F.mse_loss(out, target)
    raise ValueError(kind)


def forward_backward(model, inputs, target, kind, label_smoothing, bn, logits_fn, dtype):
    """One forward+backward in `dtype` on a deep copy; returns (loss, {param name: grad})."""
    m = copy.deepcopy(model).to(dtype)
    m.train(bn == "train")
    for p in m.parameters():
        p.grad = None
    xs = [x.to(dtype) if x.is_floating_point() else x for x in inputs]
    t = target.to(dtype) if target.is_floating_point() else target
    out = logits_fn(m, *xs) if logits_fn else m(*xs)
    loss = loss_fn(kind, out, t, label_smoothing)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    return loss.detach(), grads


KINK_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


def _hooked_copy(model, dtype, bn):
    """A copy in `dtype` whose ReLU/ReLU6/Hardtanh modules record (module, input, output) of
    every call (not in place, so that the input survives)."""
    m = copy.deepcopy(model).to(dtype)
    m.train(bn == "train")
    calls = []
    for mod in m.modules():
        if isinstance(mod, KINK_ACTS):
            mod.inplace = False
            mod.register_forward_hook(lambda md, i, o: calls.append((md, i[0], o)))
    return m, calls


def kink_envelope(model, inputs, target, kind, label_smoothing, bn, logits_fn, factor=1.0,
                  chunk=16):
    """Float32 kinks: a ReLU/ReLU6 input that lies within float32 rounding of a kink (0, 6) may
    land on either side in a float32 implementation; its mask then passes or drops that
    element's gradient, and batch statistics spread the difference over the channel and the
    layers below (several % at batch 2 in mobilenet_v2). For every activation call, the
    candidates are the elements whose float64 input is within factor * (the largest difference
    between PyTorch's float32 and float64 input of that call) of a kink; flipping one candidate's
    mask changes dL/d(input) there by -+dL/d(output), and its effect on every parameter gradient
    is that vector-Jacobian product. Returns ({param name: sum over candidates of |effect|}
    (float64 tensors, only where nonzero), number of candidates). The checker adds the sum to
    its tolerance element by element, so a rule bug still shows everywhere else."""
    m64, c64 = _hooked_copy(model, torch.float64, bn)
    m32, c32 = _hooked_copy(model, torch.float32, bn)
    xs64 = [x.double() if x.is_floating_point() else x for x in inputs]
    t64 = target.double() if target.is_floating_point() else target
    with torch.no_grad():
        m32(*inputs) if logits_fn is None else logits_fn(m32, *inputs)
    out = logits_fn(m64, *xs64) if logits_fn else m64(*xs64)
    loss = loss_fn(kind, out, t64, label_smoothing)
    named = [(n, p) for n, p in m64.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    env = [None] * len(params)
    assert len(c32) == len(c64)
    # activations with no trainable parameter below them (a frozen prefix) cannot matter
    pairs = [(a, b) for a, b in zip(c64, c32) if a[1].requires_grad]
    if not pairs:
        return {}, 0
    c64, c32 = [a for a, _ in pairs], [b for _, b in pairs]
    gys = torch.autograd.grad(loss, [o for _, _, o in c64], retain_graph=True, allow_unused=True)
    count = 0
    for (mod, v, _), (_, v32, _), gy in zip(c64, c32, gys):
        if gy is None:
            continue
        vd = v.detach()
        delta = factor * float((vd - v32.double()).abs().max())
        if delta <= 0:
            continue
        if isinstance(mod, nn.ReLU):
            kinks, passing = [0.0], vd > 0
        else:  # ReLU6 is a Hardtanh(0, 6)
            kinks, passing = [mod.min_val, mod.max_val], (vd > mod.min_val) & (vd < mod.max_val)
        near = torch.zeros_like(vd, dtype=torch.bool)
        for k in kinks:
            near |= (vd - k).abs() < delta
        idx = torch.nonzero(near.flatten()).flatten()
        if len(idx) == 0:
            continue
        count += len(idx)
        sign = torch.where(passing.flatten(), -1.0, 1.0).to(vd.dtype)
        for part in idx.split(chunk):
            go = torch.zeros((len(part),) + tuple(vd.shape), dtype=vd.dtype)
            go.view(len(part), -1)[torch.arange(len(part)), part] = sign[part] * gy.flatten()[part]
            gs = torch.autograd.grad(v, params, grad_outputs=go, retain_graph=True,
                                     is_grads_batched=True, allow_unused=True)
            for i, g in enumerate(gs):
                if g is not None:
                    a = g.abs().sum(0)
                    env[i] = a if env[i] is None else env[i] + a
    return {n: e.detach() for (n, _), e in zip(named, env)
            if e is not None and bool((e > 0).any())}, count


def make_case(outdir, name, model, inputs, input_names, target, *, opset, loss="ce",
              label_smoothing=0.0, bn="train", frozen=(), logits_fn=None,
              export_mode=None, rtol=RTOL, atol=ATOL, reason="", doc="", output_name="logits",
              kink_factor=1.0):
    """Export `model` (as it is, in eval() unless export_mode says TRAINING), then compute the
    goldens. frozen: parameter names with requires_grad False (stored as onnx_tl.frozen).
    logits_fn(model, *inputs): what the loss is computed from when it is not the model output
    (Keras-style models ending in Softmax)."""
    d = os.path.join(outdir, name)
    os.makedirs(outdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=name + ".", dir=outdir)
    try:
        frozen = list(frozen)
        params = dict(model.named_parameters())
        for f in frozen:
            params[f].requires_grad_(False)
        model.eval()
        mode = export_mode if export_mode is not None else torch.onnx.TrainingMode.PRESERVE
        mpath = os.path.join(tmp, "model.onnx")
        export(copy.deepcopy(model), tuple(inputs), mpath, input_names, [output_name], opset, mode)
        if frozen:
            set_frozen(mpath, frozen)
        om = onnx.load(mpath)
        onnx.checker.check_model(om)
        # the exported float initializers that onnx-tl treats as parameters must be exactly
        # PyTorch's parameters (BatchNormalization running statistics excluded)
        inits = float_initializers(om) - bn_buffers(om)
        if inits != set(params):
            raise SystemExit("%s: exported float initializers differ from the parameters:\n"
                             "  only in ONNX: %s\n  only in PyTorch: %s"
                             % (name, sorted(inits - set(params)), sorted(set(params) - inits)))
        loss64, g64 = forward_backward(model, inputs, target, loss, label_smoothing, bn,
                                       logits_fn, torch.float64)
        loss32, g32 = forward_backward(model, inputs, target, loss, label_smoothing, bn,
                                       logits_fn, torch.float32)
        # the rtol PyTorch's float32 result needs (with atol as given) to pass the check
        f32_err = max(0.0, abs(float(loss32) - float(loss64)) - atol) / abs(float(loss64))
        for k, v in g64.items():
            f32_err = max(f32_err, max(0.0, float((g32[k].double() - v).abs().max()) - atol)
                          / max(float(v.abs().max()), 1e-30))
        # plain max|a-b| / max|b| over the tensors with max|b| > atol
        f32_rel = abs(float(loss32) - float(loss64)) / abs(float(loss64))
        for k, v in g64.items():
            if float(v.abs().max()) > atol:
                f32_rel = max(f32_rel, float((g32[k].double() - v).abs().max() / v.abs().max()))
        trainable = [n for n in params if n not in frozen]
        assert sorted(g64) == sorted(trainable), (name, sorted(g64), trainable)
        env, n_kinks = kink_envelope(model, inputs, target, loss, label_smoothing, bn, logits_fn,
                                     kink_factor)

        files = {}
        graph_inputs = {i.name for i in om.graph.input}
        for n, x in zip(input_names, inputs):
            if n not in graph_inputs:  # the exporter drops unused inputs
                continue
            fn = sanitize(n) + ".npy"
            np.save(os.path.join(tmp, fn), x.numpy())
            files[n] = fn
        np.save(os.path.join(tmp, "target.npy"), target.numpy())
        np.save(os.path.join(tmp, "loss.npy"), np.array(float(loss64), dtype=np.float32))
        os.mkdir(os.path.join(tmp, "grad"))
        seen = set()
        for n, g in g64.items():
            fn = sanitize(n)
            assert fn not in seen, (name, "two parameters sanitize to", fn)
            seen.add(fn)
            np.save(os.path.join(tmp, "grad", fn + ".npy"), g.numpy().astype(np.float32))
        if env:
            os.mkdir(os.path.join(tmp, "kink"))
            for n, e in env.items():
                np.save(os.path.join(tmp, "kink", sanitize(n) + ".npy"), e.numpy().astype(np.float32))
        meta = {"kink_candidates": n_kinks, "kink_factor": kink_factor, "doc": doc, "inputs": files, "loss": loss, "label_smoothing": label_smoothing,
                "bn": bn, "rtol": rtol, "atol": atol, "reason": reason,
                "torch_f32_err": float("%.3g" % f32_err),
                "torch_f32_rel": float("%.3g" % f32_rel), "frozen": frozen,
                "opset": opset, "params": len(params), "trainable": len(trainable)}
        with open(os.path.join(tmp, "case.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.rename(tmp, d)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    print("%-26s %6.1f KB  params %d (trainable %d)  loss %.6f  torch f32: needs rtol %.2g, "
          "rel %.2g; kink candidates %d" % (name, size / 1024, len(params), len(trainable),
                                           float(loss64), f32_err, f32_rel, n_kinks))
    return d
