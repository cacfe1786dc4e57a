#!/usr/bin/python3
"""make_images.py - the tiny test images of tests/data/img and their PIL/torchvision goldens.

Run once (output committed): /usr/bin/python3 tests/data/make_images.py tests/data
Writes img/*.png|jpg (a few hundred bytes each), cases.txt (one case per line:
  name file H W resize crop channels layout) and golden.npz with, per case,
  <name>_u8  (H, W, C) uint8: torchvision on PIL: convert -> Resize -> CenterCrop (before ToTensor)
  <name>_f32 model input (C, H, W) or (H, W, C) float32: + ToTensor + Normalize (ImageNet mean/std,
             or 0.5/0.5 for gray), channel order swapped for bgr.
The C side (test_data images) decodes, resizes and normalizes the same files and compares.
"""
import os
import sys

import numpy as np
from PIL import Image
import torch
import torchvision.transforms as T

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
IMG = os.path.join(OUT, "img")
os.makedirs(IMG, exist_ok=True)
rng = np.random.RandomState(7)


def smooth(h, w, c):
    """A smooth image plus a little noise: realistic for resampling, small once compressed."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for k in range(c):
        f = 127 + 90 * np.sin(x / (3.0 + k) + k) * np.cos(y / (4.0 + 2 * k)) + rng.randn(h, w) * 12
        chans.append(f)
    a = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
    return a[:, :, 0] if c == 1 else a


def save(name, arr, mode, **kw):
    p = os.path.join(IMG, name)
    im = Image.fromarray(arr, mode)
    if mode == "P":
        im.putpalette(list(rng.randint(0, 256, 768).astype(np.uint8)))
    im.save(p, **kw)
    return name


files = {
    "rgb": save("rgb_37x23.png", smooth(23, 37, 3), "RGB", optimize=True),
    "gray": save("gray_19x31.png", smooth(31, 19, 1), "L", optimize=True),
    "rgba": save("rgba_29x17.png", smooth(17, 29, 4), "RGBA", optimize=True),
    "la": save("la_15x21.png", smooth(21, 15, 2), "LA", optimize=True),
    "pal": save("pal_20x14.png", rng.randint(0, 16, (14, 20)).astype(np.uint8), "P", optimize=True),
    "jpg": save("rgb_40x30.jpg", smooth(30, 40, 3), "RGB", quality=85),
    "jpggray": save("gray_33x26.JPG", smooth(26, 33, 1), "L", quality=90),
    "big": save("rgb_64x48.jpg", smooth(48, 64, 3), "RGB", quality=80, subsampling=2),
}

# name, file, H, W, resize, crop, channels, layout
cases = [
    ("rgb_down", "rgb", 16, 12, "stretch", "none", "rgb", "NCHW"),
    ("rgb_up", "rgb", 50, 60, "stretch", "none", "rgb", "NHWC"),
    ("rgb_to_gray", "rgb", 20, 20, "stretch", "none", "gray", "NCHW"),
    ("gray_to_rgb", "gray", 24, 16, "stretch", "none", "rgb", "NCHW"),
    ("gray_bgr", "gray", 9, 11, "stretch", "none", "bgr", "NHWC"),
    ("rgba_rgb", "rgba", 14, 30, "stretch", "none", "rgb", "NCHW"),
    ("rgba_gray", "rgba", 10, 10, "stretch", "none", "gray", "NHWC"),
    ("la_rgb", "la", 12, 12, "stretch", "none", "rgb", "NCHW"),
    ("pal_rgb", "pal", 7, 9, "stretch", "none", "bgr", "NCHW"),
    ("jpg_center", "jpg", 24, 24, "shorter-side", "center", "rgb", "NCHW"),
    ("jpg_gray", "jpggray", 16, 16, "shorter-side", "center", "gray", "NCHW"),
    ("big_center", "big", 32, 32, "shorter-side", "center", "bgr", "NHWC"),
    ("big_cover", "big", 20, 12, "shorter-side", "none", "rgb", "NCHW"),
    ("big_cover_c", "big", 14, 28, "shorter-side", "center", "rgb", "NCHW"),
    ("rgb_stretch_c", "rgb", 16, 16, "stretch", "center", "rgb", "NCHW"),
    ("pal_same", "pal", 14, 20, "stretch", "none", "rgb", "NHWC"),
    ("big_tiny", "big", 4, 5, "stretch", "none", "rgb", "NCHW"),        # downscale x13 / x12
    ("big_tiny_c", "big", 6, 6, "shorter-side", "center", "gray", "NCHW"),
]

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def resized_size(w, h, H, W, resize, crop):
    """Intermediate size before the centre crop (the rule documented in onnxtl_data.h)."""
    Ht, Wt = (H * 256 // 224, W * 256 // 224) if crop == "center" else (H, W)
    if resize == "stretch":
        return Wt, Ht
    if Wt * h >= Ht * w:
        return Wt, max(Ht, int(Wt * h / w))
    return max(Wt, int(Ht * w / h)), Ht


gold = {}
lines = []
for name, key, H, W, resize, crop, chans, layout in cases:
    fn = files[key]
    im = Image.open(os.path.join(IMG, fn)).convert("L" if chans == "gray" else "RGB")
    w, h = im.size
    if resize == "shorter-side" and crop == "center" and H == W:
        # exactly torchvision's ImageNet eval transform
        im2 = T.CenterCrop(H)(T.Resize(H * 256 // 224)(im))
    else:
        rw, rh = resized_size(w, h, H, W, resize, crop)
        im2 = T.CenterCrop((H, W))(im.resize((rw, rh), Image.BILINEAR))
    u8 = np.asarray(im2, dtype=np.uint8)
    if u8.ndim == 2:
        u8 = u8[:, :, None]
    assert u8.shape == (H, W, 1 if chans == "gray" else 3), (name, u8.shape)
    mean, std = ([0.5], [0.5]) if chans == "gray" else IMAGENET
    t = T.Normalize(mean, std)(T.ToTensor()(im2))  # (C, H, W) float32, RGB
    if chans == "bgr":
        t = t[[2, 1, 0]]
        mean, std = mean[::-1], std[::-1]
    f32 = t.numpy()
    if layout == "NHWC":
        f32 = f32.transpose(1, 2, 0)
    gold[name + "_u8"] = np.ascontiguousarray(u8)
    gold[name + "_f32"] = np.ascontiguousarray(f32.astype(np.float32))
    lines.append("%s %s %d %d %s %s %s %s %s %s" % (name, fn, H, W, resize, crop, chans, layout,
                                                   ",".join("%r" % m for m in mean), ",".join("%r" % s for s in std)))

np.savez_compressed(os.path.join(OUT, "golden.npz"), **gold)
with open(os.path.join(OUT, "cases.txt"), "w") as f:
    f.write("# name file H W resize crop channels layout mean std (made by make_images.py)\n")
    f.write("\n".join(lines) + "\n")
print("wrote", len(cases), "cases")
