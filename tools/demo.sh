#!/bin/sh
# demo.sh ONNX_TL - the demo `make demo` runs: transfer learning on Fashion-MNIST with 50 images per class.
# The bundled testdata/models/fashion_cnn.onnx was pretrained on classes 0-4 (testdata/make_fashion_cnn.py);
# the demo turns classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) into ImageFolders with
# fashion_folder (built next to onnx-tl): 50 training images per class, 200 other training images per
# class for validation, the 5000 test images of those classes for the final evaluation.
set -eu
tl=$1
bin=$(dirname "$tl")
ff=$bin/fashion_folder
out=$bin/demo
pretrained=testdata/models/fashion_cnn.onnx
data_dir=${OTL_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
seed=${DEMO_SEED:-1}
mkdir -p "$out"

echo "== onnx-tl info $pretrained"
"$tl" info "$pretrained"
echo

echo "== Fashion-MNIST classes 5-9 as ImageFolders in $out/data (seed $seed)"
rm -rf "$out/data"
"$ff" -o "$out/data/train" --split train --per-class 50 --seed "$seed" --data-dir "$data_dir"
"$ff" -o "$out/data/val" --split train --per-class 200 --skip 50 --seed "$seed" --data-dir "$data_dir"
"$ff" -o "$out/data/test" --split test --data-dir "$data_dir"
echo

model=$pretrained
echo "== onnx-tl export $model -o $out/exported.onnx"
"$tl" export "$model" -o "$out/exported.onnx"
"$tl" info "$out/exported.onnx" --json > "$out/exported.json"
"$tl" info "$model" --json > "$out/original.json"
# the summaries differ only in the file name
if [ "$(sed 's/"file":"[^"]*"//' "$out/original.json")" = "$(sed 's/"file":"[^"]*"//' "$out/exported.json")" ]; then
  echo "export round trip: the exported model has the same summary as the original"
else
  echo "export round trip: summaries differ" >&2
  exit 1
fi
