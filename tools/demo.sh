#!/bin/sh
# demo.sh ONNX_TL - the demo `make demo` runs. For now: inspect the bundled model and round-trip
# it through export; the fine-tuning demo replaces this when the training workflow lands.
set -eu
tl=$1
model=testdata/models/tiny_mobilenet.onnx
out=build/demo
mkdir -p "$out"
echo "== onnx-tl info $model"
"$tl" info "$model"
echo
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
