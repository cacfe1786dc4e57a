#!/usr/bin/python3
"""Goldens of the PyTorch gradient-parity test (`onnx-tl grad` against torch.autograd).

    /usr/bin/python3 tests/torchgrad/make_goldens.py OUTDIR [CASE...]

Writes OUTDIR/<case>/ (layout in tg_common.py) for every case below, or the named ones. The
committed goldens are tests/torchgrad/data/; regenerate them with
    /usr/bin/python3 tests/torchgrad/make_goldens.py tests/torchgrad/data
(deterministic: seeded weights and inputs, float64 reference).

Models are small (narrow widths, small inputs) so that the goldens stay small; the full-size
torchvision architectures are checked by make_zoo_goldens.py at test time. Every model is
exported with do_constant_folding=False and keep_initializers_as_inputs=False, so that the
initializer names are PyTorch's parameter names; in eval() unless stated (BatchNormalization is
then an inference node holding its running statistics; `onnx-tl grad --bn train` switches it to
batch statistics, as PyTorch's train() does). CNNs at opset 13, transformer blocks at opset 17
(LayerNormalization). No Dropout (or p=0), so that results are deterministic. Each case records
its float32-kink candidates (tg_common.kink_envelope); these small cases have none.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.ops import SqueezeExcitation

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tg_common as tg  # noqa: E402

SEED = 20240604


# ---------------------------------------------------------------- models

class TinyResNet(nn.Module):
    """torchvision ResNet layout (stem conv/BN/ReLU/MaxPool, BasicBlocks with a strided
    downsample, global average pool, fc) at widths 8/16."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2, downsample=down))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyMobileNetV2(nn.Module):
    """MobileNetV2 layout: stem conv/BN/ReLU6 (Clip), torchvision InvertedResidual blocks
    (expand 1x1, depthwise 3x3, project 1x1; with and without the residual), last 1x1 conv,
    mean over H, W, classifier (Dropout p=0 omitted)."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU6(inplace=True)),
            InvertedResidual(8, 8, 1, expand_ratio=1),
            InvertedResidual(8, 12, 2, expand_ratio=3),
            InvertedResidual(12, 12, 1, expand_ratio=3),
            nn.Sequential(nn.Conv2d(12, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6(inplace=True)),
        )
        self.classifier = nn.Linear(24, classes)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MBConvSE(nn.Module):
    """EfficientNet MBConv: expand 1x1 + BN + SiLU, depthwise + BN + SiLU, squeeze-excite
    (GlobalAveragePool, 1x1 convs, SiLU, Sigmoid, Mul broadcast), project 1x1 + BN, residual."""

    def __init__(self, c, expand=4, se=4):
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                nn.BatchNorm2d(h), nn.SiLU())
        self.se = SqueezeExcitation(h, max(1, c // se), activation=nn.SiLU)
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.se(self.dw(self.expand(x))))


class TinyEfficientNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.SiLU())
        self.block = MBConvSE(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class EncoderClassifier(nn.Module):
    """nn.TransformerEncoderLayer (batch_first, dropout 0) on float features, classifier on the
    first token (Gather on the sequence axis)."""

    def __init__(self, d=16, heads=2, ff=32, classes=5, norm_first=False, activation="gelu"):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation=activation,
                                                  batch_first=True, norm_first=norm_first)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


class TinyViT(nn.Module):
    """ViT: patch embedding (Conv stride = patch), Flatten + Transpose, class token (Expand +
    Concat), position embedding Add, one pre-norm encoder layer, LayerNorm, head on the class
    token."""

    def __init__(self, image=16, patch=4, d=16, heads=2, ff=32, classes=5):
        super().__init__()
        n = (image // patch) ** 2
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, n + 1, d))
        self.encoder = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                                  batch_first=True, norm_first=True)
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.ln(self.encoder(x))
        return self.head(x[:, 0])


class EmbedMeanPool(nn.Module):
    """BERT-style ids input (int64): token + position embeddings (Gather), LayerNorm, mean over
    the sequence, Linear classifier."""

    def __init__(self, vocab=50, d=16, max_len=16, classes=4):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)
        self.position_embeddings = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.classifier = nn.Linear(d, classes)

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        x = self.norm(self.word_embeddings(input_ids) + self.position_embeddings(pos))
        return self.classifier(x.mean(dim=1))


class KerasStyle(nn.Module):
    """Keras-style CNN that outputs probabilities: Conv/ReLU, Conv/ReLU, GlobalAveragePool,
    Dense, Dense, Softmax. The loss is -log p[y] computed from the Softmax input."""

    def __init__(self, classes=6):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(),
            nn.Linear(16, classes))

    def forward(self, x):
        return torch.softmax(self.body(x), dim=-1)


class ParamLogits(nn.Module):
    """The logits are a parameter (Identity, or Softmax for the probabilities case): checks the
    losses alone (cross-entropy, label smoothing, MSE, -log p[y] from a Softmax input)."""

    def __init__(self, n=4, c=5, softmax=False):
        super().__init__()
        self.w = nn.Parameter(2 * torch.randn(n, c))
        self.softmax = softmax

    def forward(self, x):
        return torch.softmax(self.w, dim=-1) if self.softmax else self.w.clone()


# ---------------------------------------------------------------- cases

def images(n, c, h, w):
    return torch.randn(n, c, h, w)


def classes(n, k):
    return torch.randint(0, k, (n,), dtype=torch.int64)


def build(cls, *a, **kw):
    gen = torch.Generator().manual_seed(SEED + 1)
    m = cls(*a, **kw)
    tg.randomize_bn(m, gen)
    return m


def case_resnet(out, name="resnet_tiny", bn="train", frozen_prefix=False, training_export=False):
    tg.seed_all(SEED)
    m = build(TinyResNet)
    x, y = images(4, 3, 16, 16), classes(4, 10)
    frozen = []
    doc = "torchvision BasicBlock ResNet, widths 8/16, 4x3x16x16, CE, --bn %s" % bn
    if frozen_prefix:
        frozen = [n for n, _ in m.named_parameters()
                  if n.startswith(("conv1.", "bn1.", "layer1."))]
        doc += "; stem and layer1 frozen (onnx_tl.frozen): gradients only for layer2 and fc"
    mode = None
    if training_export:
        mode = torch.onnx.TrainingMode.TRAINING
        doc += "; exported with TrainingMode.TRAINING (BatchNormalization with 5 outputs)"
    return tg.make_case(out, name, m, [x], ["input"], y, opset=13, bn=bn, frozen=frozen,
                        export_mode=mode, doc=doc)


def case_mobilenet(out):
    tg.seed_all(SEED + 10)
    m = build(TinyMobileNetV2)
    x, y = images(4, 3, 16, 16), classes(4, 10)
    return tg.make_case(out, "mobilenet_v2_tiny", m, [x], ["input"], y, opset=13,
                        label_smoothing=0.1,
                        doc="MobileNetV2 InvertedResidual blocks (depthwise, ReLU6 = Clip), "
                            "4x3x16x16, CE with label_smoothing 0.1")


def case_efficientnet(out):
    tg.seed_all(SEED + 20)
    m = build(TinyEfficientNet)
    x = images(4, 3, 16, 16)
    y = torch.randn(4, 10)
    return tg.make_case(out, "efficientnet_tiny", m, [x], ["input"], y, opset=13, loss="mse",
                        doc="MBConv with squeeze-excite (SiLU = Sigmoid*Mul, GlobalAveragePool, "
                            "Mul broadcast), 4x3x16x16, MSE against float targets")


def case_transformer(out, name, norm_first, activation):
    tg.seed_all(SEED + 30)
    m = build(EncoderClassifier, norm_first=norm_first, activation=activation)
    x, y = torch.randn(3, 6, 16), classes(3, 5)
    return tg.make_case(out, name, m, [x], ["input"], y, opset=17,
                        doc="nn.TransformerEncoderLayer d=16 heads=2 ff=32 %s %s, batch_first, "
                            "3x6x16 features, classifier on token 0, CE"
                            % ("pre-norm" if norm_first else "post-norm", activation))


def case_vit(out):
    tg.seed_all(SEED + 40)
    m = build(TinyViT)
    x, y = images(3, 3, 16, 16), classes(3, 5)
    return tg.make_case(out, "vit_tiny", m, [x], ["input"], y, opset=17,
                        doc="ViT: patch 4 conv embedding, class token Concat, position Add, "
                            "pre-norm encoder layer, LayerNorm, head; 3x3x16x16, CE")


def case_embedding(out):
    tg.seed_all(SEED + 50)
    m = build(EmbedMeanPool)
    ids = torch.randint(0, 50, (3, 9), dtype=torch.int64)
    ids[1, 4] = ids[0, 2] = ids[2, 7]  # repeated ids: gradients accumulate into one row
    y = classes(3, 4)
    return tg.make_case(out, "embedding_meanpool", m, [ids], ["input_ids"], y, opset=17,
                        doc="token + position Embedding (Gather, int64 ids with repeats), "
                            "LayerNorm, mean over the sequence, Linear; CE")


def case_keras(out):
    tg.seed_all(SEED + 60)
    m = build(KerasStyle)
    x, y = images(4, 3, 12, 12), classes(4, 6)
    return tg.make_case(out, "keras_softmax", m, [x], ["input"], y, opset=13,
                        logits_fn=lambda mm, xx: mm.body(xx), output_name="probs",
                        doc="model ending in Softmax (Keras style): CE is -log p[y] computed "
                            "from the Softmax input (PyTorch: cross_entropy on the logits)")


def case_loss(out, name, loss="ce", label_smoothing=0.0, softmax=False):
    tg.seed_all(SEED + 70)
    m = ParamLogits(softmax=softmax)
    x = torch.zeros(4, 5)  # unused: the exported model has no inputs
    y = torch.randn(4, 5) if loss == "mse" else classes(4, 5)
    kw = {}
    if softmax:
        kw = dict(logits_fn=lambda mm, xx: mm.w, output_name="probs")
    what = {"ce": "CE", "mse": "MSE"}[loss]
    if label_smoothing:
        what += " with label_smoothing %g" % label_smoothing
    if softmax:
        what += " from the input of a final Softmax"
    return tg.make_case(out, name, m, [x], ["input"], y, opset=13, loss=loss,
                        label_smoothing=label_smoothing, doc="loss only: 4x5 logits are a "
                        "parameter; " + what, **kw)


CASES = {
    "loss_ce": lambda o: case_loss(o, "loss_ce"),
    "loss_ce_smoothing": lambda o: case_loss(o, "loss_ce_smoothing", label_smoothing=0.1),
    "loss_mse": lambda o: case_loss(o, "loss_mse", loss="mse"),
    "loss_softmax_probs": lambda o: case_loss(o, "loss_softmax_probs", softmax=True),
    "resnet_tiny": lambda o: case_resnet(o),
    "resnet_tiny_bnfrozen": lambda o: case_resnet(o, "resnet_tiny_bnfrozen", bn="frozen"),
    "resnet_tiny_frozenprefix": lambda o: case_resnet(o, "resnet_tiny_frozenprefix",
                                                      frozen_prefix=True),
    "resnet_tiny_trainexport": lambda o: case_resnet(o, "resnet_tiny_trainexport",
                                                     training_export=True),
    "mobilenet_v2_tiny": case_mobilenet,
    "efficientnet_tiny": case_efficientnet,
    "transformer_postnorm": lambda o: case_transformer(o, "transformer_postnorm", False, "gelu"),
    "transformer_prenorm_relu": lambda o: case_transformer(o, "transformer_prenorm_relu", True,
                                                           "relu"),
    "vit_tiny": case_vit,
    "embedding_meanpool": case_embedding,
    "keras_softmax": case_keras,
}


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    out = argv[1]
    names = argv[2:] or list(CASES)
    bad = [n for n in names if n not in CASES]
    if bad:
        print("unknown case(s): %s (known: %s)" % (", ".join(bad), ", ".join(CASES)),
              file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for n in names:
        CASES[n](out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
