#!/usr/bin/python3
"""Tiny data sets and model variants for the eval/predict tests (tests/eval.cmake), written into
OUTDIR at test time (seeded: the same bytes every run).

    /usr/bin/python3 tests/eval/make_data.py MODELS_DIR OUTDIR

Models (copies of testdata/models with metadata_props added by onnx):
    resnet_labels.onnx   tiny_resnet (logits, 10 outputs) + onnx_tl.labels (CIFAR-10 names)
    resnet_pp.onnx       tiny_resnet + labels + onnx_tl.preprocess (mean 0.5, std 0.25, gray
                         input replicated: "channels": "rgb" kept; a non-default normalization)
    resnet.onnx          tiny_resnet as is (no labels: class k = output k)
    mlp_labels.onnx      tiny_mlp (ends in Softmax, 5 outputs) + labels a..e
    mlp_fixed.onnx       tiny_mlp with its batch axis fixed to 4 (eval pads the last batch)
Data:
    folder/              ImageFolder: cat (5), dog (4), frog (3) 32x32 RGB PNGs, plus one
                         grayscale PNG, one 40x24 PNG (resized) and one JPEG (PIL's decoding
                         and bilinear resize are the reference, see check_eval.py)
    folder_exact/        the same classes, only 32x32 RGB images (numpy reference preprocessing)
    folder_unknown/      classes cat, unicorn (unicorn is not a stored label)
    folder_bad/          cat with one PNG whose bytes are garbage
    mlp.npz              x (37, 20) float32, y (37,) int64 in 0..4
    mlp_many.npz         y up to 7: more classes than the model's 5 outputs
    mlp_empty.npz        x (0, 20), y (0,)
    resnet.npz           x (9, 3, 32, 32) float32, y in 0..9
    one.npy / batch.npy  one (3, 32, 32) sample / a (4, 3, 32, 32) batch for predict
    mlp_batch.npy        (6, 20) float32
    bad.png              not an image
"""
import os
import sys

import numpy as np
import onnx
from PIL import Image

CIFAR = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


def set_meta(m, key, value):
    for p in m.metadata_props:
        if p.key == key:
            p.value = value
            return
    p = m.metadata_props.add()
    p.key = key
    p.value = value


def save_png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def main():
    models, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rs = np.random.RandomState(5050)

    m = onnx.load(os.path.join(models, 'tiny_resnet.onnx'))
    onnx.save(m, os.path.join(out, 'resnet.onnx'))
    set_meta(m, 'onnx_tl.labels', '\n'.join(CIFAR) + '\n')
    onnx.save(m, os.path.join(out, 'resnet_labels.onnx'))
    set_meta(m, 'onnx_tl.preprocess', '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "scale": 255}')
    onnx.save(m, os.path.join(out, 'resnet_pp.onnx'))

    m = onnx.load(os.path.join(models, 'tiny_mlp.onnx'))
    set_meta(m, 'onnx_tl.labels', 'a\nb\nc\nd\ne')
    onnx.save(m, os.path.join(out, 'mlp_labels.onnx'))
    m = onnx.load(os.path.join(models, 'tiny_mlp.onnx'))
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = 4
    onnx.save(m, os.path.join(out, 'mlp_fixed.onnx'))

    # images: smooth-ish random colours so that predictions vary
    def img(h=32, w=32, c=3):
        base = rs.randint(0, 256, (1, 1, c)).astype(np.float64)
        noise = rs.randint(-60, 61, (h, w, c))
        a = np.clip(base + noise, 0, 255).astype(np.uint8)
        return a[:, :, 0] if c == 1 else a

    for name, count in (('cat', 5), ('dog', 4), ('frog', 3)):
        for i in range(count):
            a = img()
            save_png(os.path.join(out, 'folder', name, f'{name}{i}.png'), a)
            save_png(os.path.join(out, 'folder_exact', name, f'{name}{i}.png'), a)
    save_png(os.path.join(out, 'folder', 'dog', 'gray.png'), img(c=1))
    save_png(os.path.join(out, 'folder', 'frog', 'wide.png'), img(24, 40))
    Image.fromarray(img()).save(os.path.join(out, 'folder', 'cat', 'photo.jpg'), quality=90)
    save_png(os.path.join(out, 'folder_unknown', 'cat', 'c0.png'), img())
    save_png(os.path.join(out, 'folder_unknown', 'unicorn', 'u0.png'), img())
    save_png(os.path.join(out, 'folder_bad', 'cat', 'c0.png'), img())
    os.makedirs(os.path.join(out, 'folder_bad', 'cat'), exist_ok=True)
    with open(os.path.join(out, 'folder_bad', 'cat', 'c1.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + bytes(rs.randint(0, 256, 200).astype(np.uint8)))
    with open(os.path.join(out, 'bad.png'), 'wb') as f:
        f.write(b'this is not an image\n')

    x = rs.randn(37, 20).astype(np.float32) * 2
    y = rs.randint(0, 5, 37).astype(np.int64)
    np.savez(os.path.join(out, 'mlp.npz'), x=x, y=y)
    y2 = y.copy()
    y2[3] = 7
    np.savez(os.path.join(out, 'mlp_many.npz'), x=x, y=y2)
    np.savez(os.path.join(out, 'mlp_empty.npz'), x=np.zeros((0, 20), np.float32), y=np.zeros((0,), np.int64))
    np.save(os.path.join(out, 'mlp_batch.npy'), rs.randn(6, 20).astype(np.float32))
    xr = rs.randn(9, 3, 32, 32).astype(np.float32)
    np.savez(os.path.join(out, 'resnet.npz'), x=xr, y=rs.randint(0, 10, 9).astype(np.int64))
    np.save(os.path.join(out, 'one.npy'), rs.randn(3, 32, 32).astype(np.float32))
    np.save(os.path.join(out, 'batch.npy'), rs.randn(4, 3, 32, 32).astype(np.float32))


if __name__ == '__main__':
    main()
