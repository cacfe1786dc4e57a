#!/usr/bin/python3
"""Generate the small test models in testdata/models/ (committed together with this script).

Run with Debian's python3 (torch 1.13, torchvision 0.14, onnx 1.12):

    /usr/bin/python3 testdata/make_models.py [OUTDIR]

Everything is seeded and uses random weights (nothing is downloaded), so running the script
again rewrites byte-identical files. It also writes OUTDIR/expect.json, the facts the
round-trip tests (tests/roundtrip/check_model.py) assert about each model beyond what
python-onnx can tell by itself:

    head_classes  number of classes of the classifier head `onnx-tl info` must detect,
                  or null when the model has no classifier head (the encoders: their
                  graph output comes from LayerNormalization, not from a Gemm/MatMul
                  reached through shape-preserving ops only, so `head` must be null);
    head_node     name of the Gemm/MatMul (or Add after MatMul) that is the head;
    bn_nodes      BatchNormalization nodes kept in the graph (checked here);
    ln_nodes      LayerNormalization nodes (checked here);
    ort_batches   batch sizes the ONNX Runtime comparison runs at.

Models:
    tiny_resnet.onnx      torchvision ResNet (BasicBlock, [1,1,1,1]) narrowed to widths
                          8/16/32/64, 3x32x32 input, 10 classes, opset 13, BN folded
                          into Conv (default export), dynamic batch.
    tiny_mobilenet.onnx   torchvision mobilenet_v2(width_mult=0.25, num_classes=10),
                          3x32x32 input, opset 12, BatchNormalization kept as nodes.
    tiny_encoder.onnx     embedding + positional embedding + 2 nn.TransformerEncoderLayer
                          (batch_first, d=32, 2 heads, ff=64), int64 token ids [batch, seq],
                          opset 17 (LayerNormalization nodes), no classifier head.
    tiny_mlp.onnx         Keras-style MLP: Gemm -> Relu -> Gemm -> Softmax, 20 features,
                          5 classes, opset 13; carries metadata_props and a doc_string, and
                          stores its initializers in float_data instead of raw_data (so the
                          round trip is checked on decoded values, not protobuf bytes).
"""
import collections
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from torchvision.models import mobilenet_v2
from torchvision.models.resnet import BasicBlock, ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240601


def seed(s):
    torch.manual_seed(s)
    np.random.seed(s % (2**32))


def randomize_bn(model):
    """Give every BatchNorm non-trivial affine parameters and running statistics, so that BN
    folding / BN evaluation is actually exercised (defaults are weight 1, bias 0, mean 0, var 1)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)


class TinyResNet(ResNet):
    """torchvision's ResNet (same forward, same _make_layer, same BasicBlock) at widths
    8/16/32/64 instead of 64/128/256/512."""

    def __init__(self, layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), num_classes=10):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
        self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class TinyEncoder(nn.Module):
    """BERT-style encoder: token + learned positional embedding, N post-norm encoder layers."""

    def __init__(self, vocab=100, d=32, heads=2, ff=64, layers=2, max_len=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.norm(self.tok(input_ids) + self.pos(pos))
        return self.encoder(x)


class TinyMLP(nn.Module):
    def __init__(self, features=20, hidden=32, classes=5):
        super().__init__()
        self.dense = nn.Linear(features, hidden)
        self.act = nn.ReLU()
        self.dense_1 = nn.Linear(hidden, classes)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        return self.softmax(self.dense_1(self.act(self.dense(x))))


def export(model, args, path, opset, input_names, output_names, dynamic_axes, **kw):
    # Not under torch.no_grad(): with grad enabled PyTorch skips the fused
    # TransformerEncoderLayer / MultiheadAttention fast path, which has no ONNX export.
    model.eval()
    torch.onnx.export(model, args, path, opset_version=opset, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes, **kw)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    return m


def ops(m):
    return collections.Counter(n.op_type for n in m.graph.node)


def last_node_named(m, op_type):
    names = [n.name for n in m.graph.node if n.op_type == op_type]
    return names[-1] if names else None


def to_float_data(m):
    """Re-encode every float32 initializer with float_data instead of raw_data (same values)."""
    for init in m.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and init.HasField("raw_data"):
            arr = numpy_helper.to_array(init)
            init.ClearField("raw_data")
            init.float_data.extend(arr.flatten().tolist())
            assert numpy_helper.to_array(init).tobytes() == arr.tobytes()


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "models")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    expect = {}

    # ---- tiny ResNet: default export, BN folded into Conv
    seed(SEED + 1)
    net = TinyResNet()
    randomize_bn(net)
    path = os.path.join(outdir, "tiny_resnet.onnx")
    m = export(net, torch.randn(1, 3, 32, 32), path, 13, ["input"], ["logits"],
               {"input": {0: "batch"}, "logits": {0: "batch"}})
    assert "BatchNormalization" not in ops(m), ops(m)
    expect["tiny_resnet.onnx"] = {"head_classes": 10, "head_node": last_node_named(m, "Gemm"),
                                  "bn_nodes": 0, "ln_nodes": 0, "ort_batches": [1, 8]}

    # ---- tiny MobileNetV2: BatchNormalization kept
    seed(SEED + 2)
    net = mobilenet_v2(weights=None, width_mult=0.25, num_classes=10)
    randomize_bn(net)
    path = os.path.join(outdir, "tiny_mobilenet.onnx")
    m = export(net, torch.randn(1, 3, 32, 32), path, 12, ["input"], ["logits"],
               {"input": {0: "batch"}, "logits": {0: "batch"}},
               do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    n_bn = ops(m)["BatchNormalization"]
    assert n_bn > 20, ops(m)
    expect["tiny_mobilenet.onnx"] = {"head_classes": 10, "head_node": last_node_named(m, "Gemm"),
                                     "bn_nodes": n_bn, "ln_nodes": 0, "ort_batches": [1, 8]}

    # ---- tiny BERT-style encoder at opset 17: LayerNormalization nodes, int64 ids
    seed(SEED + 3)
    net = TinyEncoder()
    # nn.TransformerEncoder deep-copies one layer: give every layer its own weights (the
    # exporter would otherwise de-duplicate the identical initializers into Identity nodes).
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = os.path.join(outdir, "tiny_encoder.onnx")
    ids = torch.randint(0, 100, (2, 8), dtype=torch.int64)
    m = export(net, (ids,), path, 17, ["input_ids"], ["hidden_states"],
               {"input_ids": {0: "batch", 1: "seq"}, "hidden_states": {0: "batch", 1: "seq"}})
    n_ln = ops(m)["LayerNormalization"]
    assert n_ln == 5, ops(m)  # embedding norm + 2 per encoder layer
    expect["tiny_encoder.onnx"] = {"head_classes": None, "head_node": None,
                                   "bn_nodes": 0, "ln_nodes": n_ln, "ort_batches": [1, 8]}

    # ---- Keras-style MLP ending in Softmax
    seed(SEED + 4)
    net = TinyMLP()
    path = os.path.join(outdir, "tiny_mlp.onnx")
    m = export(net, torch.randn(4, 20), path, 13, ["features"], ["probabilities"],
               {"features": {0: "batch"}, "probabilities": {0: "batch"}})
    assert [n.op_type for n in m.graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"], ops(m)
    to_float_data(m)
    m.doc_string = "Keras-style MLP classifier (onnx-tl test model)"
    onnx.helper.set_model_props(m, {"source": "testdata/make_models.py",
                                    "note": "metadata must survive the round trip"})
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    expect["tiny_mlp.onnx"] = {"head_classes": 5, "head_node": last_node_named(m, "Gemm"),
                               "bn_nodes": 0, "ln_nodes": 0, "ort_batches": [1, 8]}

    with open(os.path.join(outdir, "expect.json"), "w") as f:
        json.dump(expect, f, indent=2, sort_keys=True)
        f.write("\n")

    total = 0
    for name in sorted(expect):
        size = os.path.getsize(os.path.join(outdir, name))
        total += size
        m = onnx.load(os.path.join(outdir, name))
        print(f"{name:22s} {size:9d} bytes  opset {m.opset_import[0].version:2d}  "
              f"{len(m.graph.node):4d} nodes  ops {dict(sorted(ops(m).items()))}")
    print(f"{'total':22s} {total:9d} bytes")
    assert total < 3_000_000, "testdata models must stay well under 3 MB"


if __name__ == "__main__":
    main()
