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
out=${OTL_DEMO_OUT:-$bin/demo}
pretrained=testdata/models/fashion_cnn.onnx
data_dir=${OTL_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
seed=${DEMO_SEED:-1}
mkdir -p "$out"

echo "== onnx-tl info $pretrained"
"$tl" info "$pretrained"
echo
model=$pretrained
# --keep: re-serialized unchanged in meaning (the default export folds BatchNormalization: other summary)
echo "== onnx-tl export $model -o $out/exported.onnx --keep"
"$tl" export "$model" -o "$out/exported.onnx" --keep
"$tl" info "$out/exported.onnx" --json > "$out/exported.json"
"$tl" info "$model" --json > "$out/original.json"
# the summaries differ only in the file name
if [ "$(sed 's/"file":"[^"]*"//' "$out/original.json")" = "$(sed 's/"file":"[^"]*"//' "$out/exported.json")" ]; then
  echo "export round trip: the exported model has the same summary as the original"
else
  echo "export round trip: summaries differ" >&2
  exit 1
fi
echo

echo "== Fashion-MNIST classes 5-9 as ImageFolders in $out/data (seed $seed)"
rm -rf "$out/data"
"$ff" -o "$out/data/train" --split train --per-class 50 --seed "$seed" --data-dir "$data_dir"
"$ff" -o "$out/data/val" --split train --per-class 200 --skip 50 --seed "$seed" --data-dir "$data_dir"
"$ff" -o "$out/data/test" --split test --data-dir "$data_dir"
echo

# The recipe (tests/demo/torch_recipe.py is the same in PyTorch; tests/demo.cmake compares them)
batch=25 head_epochs=10 head_lr=0.01 ft_epochs=10 ft_lr=0.001 decay=0.8
data="--data $out/data/train --val $out/data/val --batch $batch --optimizer adam --seed $seed"
printf '5-Sandal\n6-Shirt\n7-Sneaker\n8-Bag\n9-Ankle-boot\n' > "$out/labels.txt"
run() { echo "\$ onnx-tl $*"; "$tl" "$@"; }

echo "== transfer: new 5-class head, train the head alone, then fine-tune everything"
run swap-head "$pretrained" -o "$out/swapped.onnx" --classes 5 --labels "$out/labels.txt" --seed "$seed"
run freeze "$out/swapped.onnx" -o "$out/head_only.onnx" --all-but-head
# shellcheck disable=SC2086
run train "$out/head_only.onnx" $data -o "$out/head_trained.onnx" --epochs $head_epochs --lr $head_lr \
  --bn frozen --log "$out/head.jsonl"
run freeze "$out/head_trained.onnx" -o "$out/unfrozen.onnx" --unfreeze '*'
# shellcheck disable=SC2086
run train "$out/unfrozen.onnx" $data -o "$out/finetuned.onnx" --epochs $ft_epochs --lr $ft_lr \
  --layer-lr-decay $decay --bn train --log "$out/finetune.jsonl"
run eval "$out/finetuned.onnx" --data "$out/data/test"
"$tl" eval "$out/finetuned.onnx" --data "$out/data/test" --json > "$out/transfer_eval.json"
echo

echo "== from scratch: the same network with random weights, the same 250 images and budget"
run swap-head testdata/models/fashion_cnn_init.onnx -o "$out/scratch_init.onnx" --classes 5 \
  --labels "$out/labels.txt" --seed "$seed"
# shellcheck disable=SC2086
run train "$out/scratch_init.onnx" $data -o "$out/scratch.onnx" --epochs $((head_epochs + ft_epochs)) \
  --lr $head_lr --bn train --log "$out/scratch.jsonl"
echo "\$ onnx-tl eval $out/scratch.onnx --data $out/data/test --json > $out/scratch_eval.json"
"$tl" eval "$out/scratch.onnx" --data "$out/data/test" --json > "$out/scratch_eval.json"
echo

echo "== the fine-tuned model as a clean inference model, and two predictions with it"
run export "$out/finetuned.onnx" -o "$out/fashion_5_9.onnx"
run predict "$out/fashion_5_9.onnx" --top 2 "$out"/data/test/5-Sandal/test-00011.png "$out"/data/test/8-Bag/test-00018.png
echo

# "accuracy" is a top-level key of `eval --json` (../shared/CLI.md); no other key has that name
acc() { grep -o '"accuracy": *[0-9.eE+-]*' "$1" | head -n 1 | sed 's/.*: *//'; }
t=$(acc "$out/transfer_eval.json") s=$(acc "$out/scratch_eval.json")
if [ -z "$t" ] || [ -z "$s" ]; then
  echo "demo: no accuracy in $out/transfer_eval.json or $out/scratch_eval.json" >&2
  exit 1
fi
echo "== summary: Fashion-MNIST classes 5-9, 50 training images per class, 5000 test images"
awk -v t="$t" -v s="$s" 'BEGIN {
  printf "transfer (pretrained on classes 0-4, head then fine-tune): test accuracy %.2f%%\n", 100 * t
  printf "from scratch (same network, same images, same epochs):     test accuracy %.2f%%\n", 100 * s
  d = 100 * (t - s)
  if (d > 0) printf "transfer learning wins by %.2f points\n", d
  else printf "transfer learning does not win: %.2f points behind\n", -d
}'
echo "fine-tuned model: $out/fashion_5_9.onnx"
