#!/usr/bin/python3
"""Check `onnx-tl eval` and `onnx-tl predict` against a reference computed here: inputs
preprocessed with numpy/PIL (or taken from the .npz/.npy as they are), run through ONNX Runtime
(tests/ort/ort_run.js), metrics from scikit-learn's definitions (make_metrics_goldens.prfs).

    check_eval.py ONNX_TL NODE ORT_DIR DATA_DIR WORK CASE

DATA_DIR is what make_data.py wrote. CASE is one of the functions named case_* below. Exit 0
only when every check of the case passes."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_metrics_goldens import prfs  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "common"))
import otl_test  # noqa: E402
from otl_test import check  # noqa: E402

ONNX_TL, NODE, ORT_DIR, DATA, WORK = sys.argv[1:6]


def run(args, expect_rc=0):
    p = subprocess.run([ONNX_TL] + args, cwd=DATA, capture_output=True, text=True)
    if p.returncode != expect_rc:
        print(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f'onnx-tl {" ".join(args)}: exit {p.returncode}, expected {expect_rc}')
    return p


def ort(model, name, x, tag):
    """Every output of `model` on x through ONNX Runtime, as {sanitized name: array}."""
    os.makedirs(WORK, exist_ok=True)
    xf = os.path.join(WORK, f'{tag}_x.npy')
    np.save(xf, x)
    out = os.path.join(WORK, f'{tag}_ort')
    subprocess.run([NODE, os.path.join(ORT_DIR, 'ort_run.js'), os.path.join(DATA, model), out, '--input',
                    f'{name}={xf}'], check=True)
    return {f[:-4]: np.load(os.path.join(out, f)) for f in os.listdir(out) if f.endswith('.npy')}


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def preprocess(path, mean, std, size=(32, 32)):
    """ImageFolder pixels as src/image.c documents them: PIL convert("RGB"), PIL bilinear resize
    (stretch) when the size differs, (pixel / 255 - mean) / std in float32, CHW."""
    im = Image.open(path).convert('RGB')
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / np.float32(255)
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return a.transpose(2, 0, 1).astype(np.float32)


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CIFAR = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


def folder_items(folder):
    classes = sorted(d for d in os.listdir(os.path.join(DATA, folder)) if not d.startswith('.'))
    items = []
    for k, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(DATA, folder, c))):
            if f.lower().endswith(('.png', '.jpg', '.jpeg')):
                items.append((os.path.join(DATA, folder, c, f), k))
    return classes, items


def ambiguous(scores, i, pred):
    """ORT's top two scores of row i within float32 noise: a different argmax is not an error."""
    s = np.sort(scores[i])[::-1]
    return s[0] - s[1] < 1e-5 * max(1.0, abs(s[0]))


def check_eval(args, scores, logits, y, n_classes, names_of, data_map, probs_out):
    """Compare `onnx-tl eval ... --json` with the reference from ORT scores.
    y: true output indices; names_of(k): expected label of output k; data_map: output index of
    every data class (reported even without samples)."""
    r = json.loads(run(args + ['--json']).stdout)
    n = len(y)
    pred = scores.argmax(axis=1)
    # where ORT's top two are within noise, take onnx-tl's choice (from its confusion) as valid
    check(r['n'] == n, f'n {r["n"]} != {n}')
    probs = scores.astype(np.float64) if probs_out else softmax(scores)
    p, rc, f, s = prfs(y, pred, n_classes)
    present = np.union1d(np.unique(y), np.unique(pred))
    check(abs(r['accuracy'] - np.mean(pred == y)) < 1e-9, f'accuracy {r["accuracy"]} != {np.mean(pred == y)}')
    check(abs(r['macro_f1'] - f[present].mean()) < 1e-7, f'macro_f1 {r["macro_f1"]} != {f[present].mean()}')
    check(abs(r['macro_precision'] - p[present].mean()) < 1e-7, 'macro_precision')
    check(abs(r['macro_recall'] - rc[present].mean()) < 1e-7, 'macro_recall')
    check(abs(r['weighted_f1'] - np.sum(f * s) / np.sum(s)) < 1e-7, 'weighted_f1')
    zd = logits.astype(np.float64)
    m = zd.max(axis=1)
    ce = m + np.log(np.exp(zd - m[:, None]).sum(axis=1)) - zd[np.arange(n), y]
    check(abs(r['loss'] - ce.mean()) <= 1e-5 * max(1, abs(ce.mean())), f'loss {r["loss"]} != {ce.mean()}')
    if n_classes > 5:
        top5 = np.argsort(-probs, axis=1, kind='stable')[:, :5]
        want = np.mean([y[i] in top5[i] for i in range(n)])
        check(abs(r.get('top5', -1) - want) < 1e-9, f'top5 {r.get("top5")} != {want}')
    else:
        check('top5' not in r, 'top5 reported with at most 5 classes')
    shown = sorted(set(data_map) | set(pred.tolist()))
    check([c['index'] for c in r['per_class']] == shown, f'classes {[c["index"] for c in r["per_class"]]} != {shown}')
    check(r['labels'] == [names_of(k) for k in shown], f'labels {r["labels"]}')
    for c in r['per_class']:
        k = c['index']
        check(c['label'] == names_of(k), f'label of {k}: {c["label"]}')
        for key, v in (('precision', p[k]), ('recall', rc[k]), ('f1', f[k])):
            check(abs(c[key] - v) < 1e-7, f'class {k} {key} {c[key]} != {v}')
        check(c['support'] == s[k], f'class {k} support {c["support"]} != {s[k]}')
    conf = [[int(np.sum((y == a) & (pred == b))) for b in shown] for a in shown]
    if r['confusion'] != conf:
        amb = [i for i in range(n) if ambiguous(scores, i, pred[i])]
        check(False, f'confusion {r["confusion"]} != {conf} (ORT near-ties at samples {amb})')
    return r


def npz(name):
    z = np.load(os.path.join(DATA, name))
    return z['x'], z['y']


def case_eval_npz_softmax():
    """tiny_mlp ends in Softmax: predictions from the probabilities, loss from the Softmax input
    (here: -log p[y] in float64 from ORT's probabilities, equal within float32 rounding)."""
    x, y = npz('mlp.npz')
    o = ort('mlp_labels.onnx', 'features', x, 'mlp')
    probs = o['probabilities']
    logp = np.log(probs.astype(np.float64))  # logits up to a per-row constant: same CE
    labels = list('abcde')
    for model, batch in (('mlp_labels.onnx', '5'), ('mlp_labels.onnx', '64'), ('mlp_fixed.onnx', '5')):
        names = (lambda k: labels[k]) if model == 'mlp_labels.onnx' else str
        check_eval([ 'eval', model, '--data', 'mlp.npz', '--batch', batch], probs, logp.astype(np.float32)
                   if False else logp, y, 5, names, range(5), True)


def case_eval_npz_logits():
    """tiny_resnet (logits, 10 outputs, no labels) on a .npz: top-5 reported, class k = output k."""
    x, y = npz('resnet.npz')
    z = ort('resnet.onnx', 'input', x, 'resnet_npz')['logits']
    check_eval(['eval', 'resnet.onnx', '--data', 'resnet.npz', '--batch', '4', '--threads', '2'], z, z, y, 10, str,
               range(int(y.max()) + 1), False)


def case_eval_folder_labels():
    """ImageFolder classes matched by name to the stored labels (cat, dog, frog -> 3, 5, 6), default
    ImageNet normalization; `folder` also holds a grayscale, a 40x24 and a JPEG image (PIL
    conversions); with --by-index class k is output k."""
    for folder in ('folder_exact', 'folder'):
        classes, items = folder_items(folder)
        x = np.stack([preprocess(f, *IMAGENET) for f, _ in items])
        y = np.array([CIFAR.index(classes[k]) for _, k in items], np.int64)
        z = ort('resnet_labels.onnx', 'input', x, f'resnet_{folder}')['logits']
        check_eval(['eval', 'resnet_labels.onnx', '--data', folder, '--batch', '3'], z, z, y, 10,
                   lambda k: CIFAR[k], [CIFAR.index(c) for c in classes], False)
    # --by-index: class k is output k (names still the stored labels)
    y = np.array([k for _, k in items], np.int64)
    check_eval(['eval', 'resnet_labels.onnx', '--data', 'folder', '--by-index'], z, z, y, 10, lambda k: CIFAR[k],
               range(len(classes)), False)


def case_eval_folder_nolabels():
    """Without stored labels: class k (sorted directory k) is output k; names from the data set."""
    classes, items = folder_items('folder_exact')
    x = np.stack([preprocess(f, *IMAGENET) for f, _ in items])
    y = np.array([k for _, k in items], np.int64)
    z = ort('resnet.onnx', 'input', x, 'resnet_nolabels')['logits']
    check_eval(['eval', 'resnet.onnx', '--data', 'folder_exact'], z, z, y, 10,
               lambda k: classes[k] if k < len(classes) else str(k), range(len(classes)), False)


def case_eval_folder_preprocess():
    """The model's stored preprocessing (mean 0.5, std 0.25) is what eval applies."""
    classes, items = folder_items('folder_exact')
    x = np.stack([preprocess(f, [0.5] * 3, [0.25] * 3) for f, _ in items])
    y = np.array([CIFAR.index(classes[k]) for _, k in items], np.int64)
    z = ort('resnet_pp.onnx', 'input', x, 'resnet_pp')['logits']
    check_eval(['eval', 'resnet_pp.onnx', '--data', 'folder_exact'], z, z, y, 10, lambda k: CIFAR[k],
               [CIFAR.index(c) for c in classes], False)


def check_predict(args, x, scores, probs_out, names, files, items, k, threshold):
    r = json.loads(run(args + ['--json']).stdout)
    probs = scores.astype(np.float64) if probs_out else softmax(scores)
    preds = r['predictions']
    check(len(preds) == len(x), f'{len(preds)} predictions for {len(x)} samples')
    check(abs(r['threshold'] - threshold) <= 1e-8 * threshold, f'threshold {r["threshold"]} != {threshold}')
    for i, pr in enumerate(preds[:len(x)]):
        check(pr['file'] == files[i], f'prediction {i}: file {pr["file"]} != {files[i]}')
        check(pr.get('item') == items[i], f'prediction {i}: item {pr.get("item")} != {items[i]}')
        order = np.argsort(-probs[i], kind='stable')[:k]
        got = [t['index'] for t in pr['top']]
        if got != order.tolist():
            s = np.sort(probs[i])[::-1]
            near = np.any(np.abs(np.diff(s[:k + 1])) < 1e-6)
            check(near and sorted(got) == sorted(order.tolist()), f'prediction {i}: top {got} != {order.tolist()}')
        for t in pr['top']:
            check(t['label'] == names(t['index']), f'prediction {i}: label {t["label"]} of {t["index"]}')
            check(abs(t['confidence'] - probs[i][t['index']]) <= 1e-5,
                  f'prediction {i}: confidence {t["confidence"]} != {probs[i][t["index"]]} (ORT)')
        check(pr['low_confidence'] == bool(probs[i].max() < threshold),
              f'prediction {i}: low_confidence {pr["low_confidence"]} with top {probs[i].max()}')
    return r


def case_predict_images():
    """PNG files (RGB, grayscale, 40x24), a JPEG and .npy files (one sample, a batch) through the same
    preprocessing as eval; labels, indices and confidences equal ONNX Runtime's softmax within 1e-5."""
    pngs = ['folder/cat/cat0.png', 'folder/dog/gray.png', 'folder/frog/wide.png', 'folder/cat/photo.jpg']
    xs = [preprocess(os.path.join(DATA, f), *IMAGENET) for f in pngs]
    files, items = list(pngs), [None] * len(pngs)
    xs.append(np.load(os.path.join(DATA, 'one.npy')))
    files.append('one.npy')
    items.append(None)
    b = np.load(os.path.join(DATA, 'batch.npy'))
    for i in range(len(b)):
        xs.append(b[i])
        files.append('batch.npy')
        items.append(i)
    x = np.stack(xs).astype(np.float32)
    z = ort('resnet_labels.onnx', 'input', x, 'predict_images')['logits']
    top1 = np.sort(softmax(z).max(axis=1))
    thr = float(np.round((top1[len(top1) // 2 - 1] + top1[len(top1) // 2]) / 2, 6))  # about half flagged, no tie
    args = ['predict', 'resnet_labels.onnx'] + pngs + ['one.npy', 'batch.npy', '--top', '3', '--threshold', repr(thr),
                                                        '--batch', '3']
    check_predict(args, x, z, False, lambda k: CIFAR[k], files, items, 3, thr)
    # default --top (5) and threshold (0.5); no labels: indices as labels
    r = check_predict(['predict', 'resnet.onnx'] + pngs + ['one.npy', 'batch.npy'], x, z, False, str, files, items, 5,
                      0.5)
    check(all(len(p['top']) == 5 for p in r['predictions']), 'default --top is 5')
    # text output: one line per sample, flagged ones say so
    out = run(args).stdout.splitlines()
    check(len(out) == len(x), f'text output has {len(out)} lines for {len(x)} samples')
    probs = softmax(z)
    for i, line in enumerate(out[:len(x)]):
        head = f'{files[i]}[{items[i]}]:' if items[i] is not None else f'{files[i]}:'
        check(line.startswith(head), f'text line {i} {line!r} does not start with {head!r}')
        best = CIFAR[int(np.argmax(probs[i]))]
        check(line[len(head):].strip().startswith(best + ' '), f'text line {i} {line!r}: top label {best}')
        check(('low confidence' in line) == bool(probs[i].max() < thr), f'text line {i} {line!r}: low-confidence flag')


def case_predict_softmax():
    """tiny_mlp ends in Softmax: the confidence is the output itself."""
    x = np.load(os.path.join(DATA, 'mlp_batch.npy'))
    p = ort('mlp_labels.onnx', 'features', x, 'predict_mlp')['probabilities']
    check_predict(['predict', 'mlp_labels.onnx', 'mlp_batch.npy', '--top', '5', '--threshold', '0.3'], x, p, True,
                  lambda k: 'abcde'[k], ['mlp_batch.npy'] * len(x), list(range(len(x))), 5, 0.3)
    check_predict(['predict', 'mlp_fixed.onnx', 'mlp_batch.npy', '--top', '2', '--threshold', '0.3'], x, p, True, str,
                  ['mlp_batch.npy'] * len(x), list(range(len(x))), 2, 0.3)


def case_workflow():
    """swap-head (3 classes with labels, stored preprocessing) -> train a few
    epochs -> eval and predict on the trained model: the model train wrote runs in ONNX Runtime with
    the same predictions and confidences as onnx-tl eval / predict."""
    labels = ['cat', 'dog', 'frog']  # train requires the class directories in the labels' order
    lf = os.path.join(WORK, 'labels.txt')
    with open(lf, 'w') as f:
        f.write('\n'.join(labels) + '\n')
    sw, tr = os.path.join(WORK, 'swapped.onnx'), os.path.join(WORK, 'trained.onnx')
    run(['swap-head', 'resnet.onnx', '-o', sw, '--classes', '3', '--labels', lf, '--seed', '3', '--mean',
         '0.5,0.5,0.5', '--std', '0.25,0.25,0.25'])
    run(['train', sw, '--data', 'folder_exact', '-o', tr, '--epochs', '4', '--batch', '4', '--lr', '0.01',
         '--val-split', '0', '--seed', '1', '--threads', '2', '--quiet'])
    classes, items = folder_items('folder')
    x = np.stack([preprocess(f, [0.5] * 3, [0.25] * 3) for f, _ in items])
    y = np.array([labels.index(classes[k]) for _, k in items], np.int64)
    z = ort(tr, 'input', x, 'workflow')['logits']
    r = check_eval(['eval', tr, '--data', 'folder'], z, z, y, 3, lambda k: labels[k],
                   [labels.index(c) for c in classes], False)
    print(f'workflow: accuracy after training {r["accuracy"]:.3f} on {r["n"]} images')
    files = [os.path.relpath(f, DATA) for f, _ in items]
    check_predict(['predict', tr] + files + ['--top', '2'], x, z, False, lambda k: labels[k], files,
                  [None] * len(files), 2, 0.5)


def expect_error(args, rc, words):
    p = run(args, rc)
    line = p.stderr.strip()
    check(p.stdout == '', f'{" ".join(args)}: stdout not empty: {p.stdout[:200]!r}')
    check(line.startswith('onnx-tl: ') and '\n' not in line, f'{" ".join(args)}: stderr is not one line: {line!r}')
    for w in words:
        check(w in line, f'{" ".join(args)}: error {line!r} does not mention {w!r}')


def case_errors():
    expect_error(['eval', 'resnet_labels.onnx', '--data', 'folder_unknown'], 1,
                 ['folder_unknown', "'unicorn'", '--by-index'])
    expect_error(['eval', 'mlp_labels.onnx', '--data', 'mlp_many.npz'], 1, ['mlp_many.npz', '8 classes'])
    expect_error(['eval', 'resnet_labels.onnx', '--data', 'folder_bad', '--json'], 1, ['c1.png'])
    expect_error(['eval', 'mlp_labels.onnx', '--data', 'mlp_empty.npz', '--json'], 1, ['mlp_empty.npz'])
    # --skip-bad: the unreadable image is left out and named on stderr, the rest evaluated
    p = run(['eval', 'resnet_labels.onnx', '--data', 'folder_bad', '--json', '--skip-bad'])
    check(json.loads(p.stdout)['n'] == 1, f'--skip-bad: n is not 1: {p.stdout[:200]}')
    check('c1.png' in p.stderr, f'--skip-bad: the skipped file is not named: {p.stderr!r}')
    os.makedirs(os.path.join(DATA, 'folder_empty'), exist_ok=True)
    expect_error(['eval', 'resnet.onnx', '--data', 'folder_empty'], 1, ['folder_empty'])
    expect_error(['eval', 'resnet.onnx', '--data', 'missing.npz'], 1, ['missing.npz'])
    expect_error(['eval', 'mlp_labels.onnx', '--data', 'resnet.npz'], 1, ['resnet.npz'])
    expect_error(['eval', 'missing.onnx', '--data', 'mlp.npz'], 1, ['missing.onnx'])
    expect_error(['eval', 'mlp_labels.onnx'], 2, ['--data'])
    expect_error(['eval', 'mlp_labels.onnx', '--data', 'mlp.npz', '--batch', '0'], 2, ['--batch'])
    expect_error(['predict', 'resnet_labels.onnx', 'folder/cat/cat0.png', 'bad.png', '--json'], 1, ['bad.png'])
    expect_error(['predict', 'resnet_labels.onnx', 'folder/cat/cat0.png', 'nothere.png'], 1, ['nothere.png'])
    expect_error(['predict', 'resnet_labels.onnx', 'mlp_batch.npy', '--json'], 1, ['mlp_batch.npy'])
    expect_error(['predict', 'mlp_labels.onnx', 'folder/cat/cat0.png'], 1, ['mlp_labels.onnx'])
    expect_error(['predict', 'resnet_labels.onnx'], 2, ['FILE'])
    expect_error(['predict', 'resnet_labels.onnx', 'one.npy', '--top', '0'], 2, ['--top'])
    expect_error(['predict', 'resnet_labels.onnx', 'one.npy', '--threshold', '1.5'], 2, ['--threshold'])
    # labels that do not fit the model
    import onnx
    m = onnx.load(os.path.join(DATA, 'mlp_labels.onnx'))
    for p in m.metadata_props:
        if p.key == 'onnx_tl.labels':
            p.value = 'a\nb\nc'
    onnx.save(m, os.path.join(WORK, 'mlp_3labels.onnx'))
    expect_error(['predict', os.path.join(WORK, 'mlp_3labels.onnx'), 'mlp_batch.npy'], 1,
                 ['onnx_tl.labels', '3 labels'])
    expect_error(['eval', os.path.join(WORK, 'mlp_3labels.onnx'), '--data', 'mlp.npz'], 1, ['onnx_tl.labels'])
    for a in (['eval', '--help'], ['predict', '--help']):
        p = run(a)
        check('usage: onnx-tl ' + a[0] in p.stdout, f'{a}: no usage')


def main():
    case = sys.argv[6]
    os.makedirs(WORK, exist_ok=True)
    globals()['case_' + case]()
    return otl_test.finish()


if __name__ == '__main__':
    sys.exit(main())
