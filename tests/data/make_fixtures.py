#!/usr/bin/python3
"""make_fixtures.py OUTDIR IMGDIR - test-time inputs of the data suite (tests/data.cmake).

.npz files (good and bad) and ImageFolder trees built from the committed images in IMGDIR.
Everything the C test checks is derived from what is written here (expect.txt holds the facts
that are not visible in the files themselves).
"""
import os
import shutil
import sys

import numpy as np

out, imgdir = sys.argv[1], sys.argv[2]
if os.path.isdir(out):
    shutil.rmtree(out)
os.makedirs(out)
rng = np.random.RandomState(3)

# ---------------------------------------------------------------- .npz
# 4 classes of 30, 20, 7, 3 items, shuffled; items 5 and 17 identical, 40 duplicates 9 and 33
# (a duplicate group of three).
y = np.repeat(np.arange(4), [30, 20, 7, 3]).astype(np.int64)
rng.shuffle(y)
n = len(y)
x = rng.randn(n, 3, 8, 6).astype(np.float32)
x[17] = x[5]
x[33] = x[9]
x[40] = x[9]
np.savez(os.path.join(out, "good.npz"), x=x, y=y)
y2 = y.copy()
y2[0] = (y2[0] + 1) % 4
np.savez(os.path.join(out, "good_relabel.npz"), x=x, y=y2)      # other data set hash
np.savez_compressed(os.path.join(out, "good_deflate.npz"), x=x, y=y)  # same content, same hash
np.savez(os.path.join(out, "f64.npz"), x=x.astype(np.float64), y=y.astype(np.int32))
np.savez(os.path.join(out, "tokens.npz"), x=rng.randint(0, 1000, (n, 12)).astype(np.int64), y=y)
np.savez(os.path.join(out, "hwc.npz"), x=rng.rand(n, 8, 6, 3).astype(np.float32), y=y)
np.savez(os.path.join(out, "chan4.npz"), x=rng.rand(n, 4, 8, 8).astype(np.float32), y=y)
np.savez(os.path.join(out, "bad_noy.npz"), x=x)
np.savez(os.path.join(out, "bad_nox.npz"), y=y, z=x)
np.savez(os.path.join(out, "bad_yfloat.npz"), x=x, y=y.astype(np.float32))
np.savez(os.path.join(out, "bad_y2d.npz"), x=x, y=y.reshape(-1, 1))
np.savez(os.path.join(out, "bad_len.npz"), x=x, y=y[:-1])
yn = y.copy()
yn[7] = -2
np.savez(os.path.join(out, "bad_neg.npz"), x=x, y=yn)
np.savez(os.path.join(out, "bad_empty.npz"), x=x[:0], y=y[:0])
with open(os.path.join(out, "bad_notzip.npz"), "wb") as f:
    f.write(b"this is not a zip archive")
with open(os.path.join(out, "expect.txt"), "w") as f:
    f.write("dups 5 17\ndups 9 33\ndups 9 40\n")

# ---------------------------------------------------------------- image folders
def cp(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(os.path.join(imgdir, src), dst)


imgs = sorted(f for f in os.listdir(imgdir) if not f.startswith("."))
F = os.path.join(out, "folder")
# class order is byte order: "B" < "a" < "cat"
for i, f in enumerate(imgs):
    cls = ["a", "B", "cat"][i % 3]
    cp(f, os.path.join(F, cls, "%02d_%s" % (i, f)))
cp(imgs[0], os.path.join(F, "a", "zz_dup_of_first.PNG" if imgs[0].lower().endswith("png") else "zz_dup.jpg"))
cp(imgs[1], os.path.join(F, "cat", "UPPER.JPEG" if imgs[1].lower().endswith("jpg") else "upper_copy.PnG"))
open(os.path.join(F, "a", ".hidden.png"), "wb").write(b"hidden files are ignored")
open(os.path.join(F, "a", "notes.txt"), "w").write("ignored")
open(os.path.join(F, "README"), "w").write("a file at the top level is ignored")
os.makedirs(os.path.join(F, ".git"))
os.makedirs(os.path.join(F, "cat", "nested"))
cp(imgs[2], os.path.join(F, "cat", "nested", "ignored.png"))

# no class directories
os.makedirs(os.path.join(out, "noclass"))
cp(imgs[0], os.path.join(out, "noclass", "img.png"))
# a class without images
cp(imgs[0], os.path.join(out, "emptyclass", "dog", "a.png"))
os.makedirs(os.path.join(out, "emptyclass", "empty_cls"))
open(os.path.join(out, "emptyclass", "empty_cls", "readme.txt"), "w").write("no images here")
# truncated / corrupt images
png = [f for f in imgs if f.endswith(".png")][0]
jpg = [f for f in imgs if f.endswith(".jpg")][0]
for name, src, keep in [("trunc_png", png, 0.6), ("trunc_jpg", jpg, 0.85)]:
    d = os.path.join(out, name)
    cp(png, os.path.join(d, "ok", "fine.png"))
    cp(jpg, os.path.join(d, "ok", "fine2.jpg"))
    cp(png, os.path.join(d, "bad", "good.png"))
    data = open(os.path.join(imgdir, src), "rb").read()
    open(os.path.join(d, "bad", "broken" + os.path.splitext(src)[1]), "wb").write(data[: int(len(data) * keep)])
d = os.path.join(out, "garbage")
cp(png, os.path.join(d, "ok", "fine.png"))
open(os.path.join(d, "ok", "text.png"), "wb").write(b"not an image at all, just text")
# skip_bad leaving a class empty
d = os.path.join(out, "allbad")
cp(png, os.path.join(d, "ok", "fine.png"))
os.makedirs(os.path.join(d, "bad"))
open(os.path.join(d, "bad", "x.jpg"), "wb").write(b"\xff\xd8\xff\xe0 truncated")
print("fixtures in", out)

# the expected listing of `folder` by the documented rule (classes: sorted non-hidden
# directories; files: sorted non-hidden regular files named *.png/*.jpg/*.jpeg in any case)
classes = sorted(c for c in os.listdir(F) if not c.startswith(".") and os.path.isdir(os.path.join(F, c)))
with open(os.path.join(out, "expect_folder.txt"), "w") as f:
    for ci, c in enumerate(classes):
        names = sorted(n for n in os.listdir(os.path.join(F, c))
                       if not n.startswith(".") and os.path.isfile(os.path.join(F, c, n))
                       and n.lower().endswith((".png", ".jpg", ".jpeg")))
        for nm in names:
            f.write("%d %s %s\n" % (ci, c, nm))
