#!/usr/bin/python3
"""Export the full torchvision 0.14 architectures (random weights, nothing downloaded) to ONNX.

    /usr/bin/python3 tests/zoo/make_zoo.py OUTDIR [NAME...]

Models (224x224 images, opset 13, dynamic batch axis, default export = BN folded into Conv):
resnet18, mobilenet_v2, mobilenet_v3_small, efficientnet_b0, squeezenet1_1,
shufflenet_v2_x0_5; at opset 17 (LayerNormalization nodes): vit (torchvision
VisionTransformer, image 224, patch 16, 4 layers, hidden 192, 3 heads, mlp 768, 1000 classes)
and bert (BERT-style encoder: token + positional embedding, LayerNorm, 4 post-norm
TransformerEncoderLayers, hidden 256, 4 heads, ff 1024, vocab 1000, no classifier head).

A model whose file already exists in OUTDIR is skipped. Files are written through a
temporary name and renamed, so an interrupted run never leaves a truncated model behind.
Writes OUTDIR/expect.json (same format as testdata/models/expect.json) and prints one line
per model with its size and the time taken.
"""
import json
import os
import sys
import time

import onnx
import torch
import torch.nn as nn
import torchvision.models as tvm

SEED = 1234


class BertEncoder(nn.Module):
    def __init__(self, vocab=1000, d=256, heads=4, ff=1024, layers=4, max_len=128):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)
        self.position_embeddings = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                           batch_first=True, layer_norm_eps=1e-12)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.word_embeddings(input_ids) + self.position_embeddings(pos))
        return self.encoder(x)


def image(name, ctor):
    return dict(make=ctor, args=lambda: (torch.randn(1, 3, 224, 224),), opset=13,
                inputs=["input"], outputs=["logits"],
                dynamic={"input": {0: "batch"}, "logits": {0: "batch"}},
                head_classes=1000)


# head_classes: what `onnx-tl info` must report as head.classes (null: "head" must be null;
# a list: any of these). squeezenet's classifier is a 1x1 Conv -> ReLU -> global pool, not a
# Gemm/MatMul, so by the documented rule it has no head; a tool that also recognizes
# 1x1-conv heads may report its 1000 classes. The BERT encoder ends in LayerNormalization.
MODELS = {
    "resnet18": image("resnet18", lambda: tvm.resnet18(weights=None)),
    "mobilenet_v2": image("mobilenet_v2", lambda: tvm.mobilenet_v2(weights=None)),
    "mobilenet_v3_small": image("mobilenet_v3_small", lambda: tvm.mobilenet_v3_small(weights=None)),
    "efficientnet_b0": image("efficientnet_b0", lambda: tvm.efficientnet_b0(weights=None)),
    "squeezenet1_1": dict(image("squeezenet1_1", lambda: tvm.squeezenet1_1(weights=None)),
                          head_classes=[None, 1000]),
    "shufflenet_v2_x0_5": image("shufflenet_v2_x0_5", lambda: tvm.shufflenet_v2_x0_5(weights=None)),
    "vit": dict(image("vit", lambda: tvm.VisionTransformer(
        image_size=224, patch_size=16, num_layers=4, num_heads=3, hidden_dim=192,
        mlp_dim=768, num_classes=1000)), opset=17),
    "bert": dict(make=BertEncoder, opset=17,
                 args=lambda: (torch.randint(0, 1000, (2, 16), dtype=torch.int64),),
                 inputs=["input_ids"], outputs=["last_hidden_state"],
                 dynamic={"input_ids": {0: "batch", 1: "seq"},
                          "last_hidden_state": {0: "batch", 1: "seq"}},
                 head_classes=None),
}


def perturb(model):
    """Make the random weights look like trained ones: distinct values everywhere. Fresh
    torchvision models have BN at weight 1/bias 0/mean 0/var 1 (folded Conv biases all zero)
    and nn.TransformerEncoder deep-copies one layer N times; the exporter de-duplicates
    identical initializers into Identity nodes, which a pretrained model would not have."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
        for p in model.parameters():
            scale = float(p.std()) * 0.1 if p.numel() > 1 and float(p.std()) > 0 else 0.02
            p.add_(torch.randn_like(p) * scale)


def export(name, spec, path):
    torch.manual_seed(SEED)
    model = spec["make"]()
    perturb(model)
    model.eval()
    tmp = path + ".tmp"
    # Not under torch.no_grad(): with grad enabled PyTorch skips the fused attention fast
    # path (aten::_transformer_encoder_layer_fwd / _native_multi_head_attention), which has
    # no ONNX export.
    torch.onnx.export(model, spec["args"](), tmp, opset_version=spec["opset"],
                      input_names=spec["inputs"], output_names=spec["outputs"],
                      dynamic_axes=spec["dynamic"])
    onnx.checker.check_model(tmp)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: make_zoo.py OUTDIR [NAME...]\n")
        return 2
    outdir = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.stderr.write(f"make_zoo.py: unknown model {n}; known: {' '.join(MODELS)}\n")
            return 2
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    t_all = time.time()
    expect = {}
    for n in names:
        spec = MODELS[n]
        path = os.path.join(outdir, n + ".onnx")
        t0 = time.time()
        status = "exists"
        if not os.path.exists(path):
            export(n, spec, path)
            status = "exported"
        expect[n + ".onnx"] = {"head_classes": spec["head_classes"], "ort_batches": [1]}
        print(f"{n:20s} {os.path.getsize(path):10d} bytes  opset {spec['opset']}  "
              f"{status} in {time.time() - t0:.1f}s", flush=True)
    with open(os.path.join(outdir, "expect.json"), "w") as f:
        json.dump(expect, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{'total':20s} {time.time() - t_all:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
