#!/usr/bin/python3
"""Write tests/eval/data/metrics_goldens.txt: classification metrics computed with numpy from
scikit-learn's definitions (precision_recall_fscore_support, zero_division=0; macro averages over
sklearn's unique_labels(y_true, y_pred), i.e. without a `labels` argument), plus softmax /
cross-entropy rows, for tests/eval/test_metrics.c.

    /usr/bin/python3 tests/eval/make_metrics_goldens.py [OUT]

Seeded: running it again rewrites the same file.

Format (one record per line, numbers with 17 significant digits):
    case NAME N_CLASSES N_SAMPLES
    true t0 t1 ...
    pred p0 p1 ...
    accuracy A
    macro P R F
    weighted F
    class C P R F SUPPORT          (one line per class 0..N_CLASSES-1)
    end
    scores KIND N Y s0 s1 ...      (KIND 0 logits, 1 probabilities, 2 log-probabilities)
    probs p0 p1 ...                (expected probabilities, float64)
    ce LOSS                        (logsumexp - z[y] for logits, nan otherwise)
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def prfs(y_true, y_pred, n_classes):
    """sklearn.metrics.precision_recall_fscore_support(labels=range(n), average=None,
    zero_division=0), written out from its definition (multilabel confusion matrix)."""
    p = np.zeros(n_classes)
    r = np.zeros(n_classes)
    f = np.zeros(n_classes)
    s = np.zeros(n_classes, dtype=np.int64)
    for c in range(n_classes):
        tp = int(np.sum((y_true == c) & (y_pred == c)))
        fp = int(np.sum((y_true != c) & (y_pred == c)))
        fn = int(np.sum((y_true == c) & (y_pred != c)))
        p[c] = tp / (tp + fp) if tp + fp else 0.0
        r[c] = tp / (tp + fn) if tp + fn else 0.0
        # sklearn >= 1.3 computes F from counts: 2tp / (2tp + fp + fn), 0 when undefined
        denom = 2 * tp + fp + fn
        f[c] = 2 * tp / denom if denom else 0.0
        s[c] = tp + fn
    return p, r, f, s


def fmt(x):
    return repr(float(x)) if np.isfinite(x) else 'nan'


def write_case(out, name, n_classes, y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    p, r, f, s = prfs(y_true, y_pred, n_classes)
    present = np.union1d(np.unique(y_true), np.unique(y_pred))  # sklearn unique_labels
    out.append(f'case {name} {n_classes} {len(y_true)}')
    out.append('true ' + ' '.join(str(int(v)) for v in y_true))
    out.append('pred ' + ' '.join(str(int(v)) for v in y_pred))
    out.append(f'accuracy {fmt(np.mean(y_true == y_pred))}')
    out.append(f'macro {fmt(p[present].mean())} {fmt(r[present].mean())} {fmt(f[present].mean())}')
    out.append(f'weighted {fmt(np.sum(f * s) / np.sum(s))}')
    for c in range(n_classes):
        out.append(f'class {c} {fmt(p[c])} {fmt(r[c])} {fmt(f[c])} {s[c]}')
    out.append('end')


def write_scores(out, kind, z, y):
    z = np.asarray(z, dtype=np.float32)
    zd = z.astype(np.float64)
    if kind == 0:
        e = np.exp(zd - zd.max())
        probs = e / e.sum()
        m = zd.max()
        ce = m + np.log(np.sum(np.exp(zd - m))) - zd[y]
    elif kind == 1:
        probs = zd
        ce = float('nan')
    else:
        probs = np.exp(zd)
        ce = float('nan')
    out.append(f'scores {kind} {len(z)} {y} ' + ' '.join(fmt(v) for v in z))
    out.append('probs ' + ' '.join(fmt(v) for v in probs))
    out.append(f'ce {fmt(ce)}')


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'data', 'metrics_goldens.txt')
    rs = np.random.RandomState(20261126)
    out = []
    write_case(out, 'perfect', 3, [0, 1, 2, 2, 1, 0], [0, 1, 2, 2, 1, 0])
    write_case(out, 'all_wrong', 3, [0, 1, 2, 0], [1, 2, 0, 2])
    write_case(out, 'single', 2, [1], [1])
    write_case(out, 'never_predicted', 3, [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 0])
    write_case(out, 'predicted_never_true', 4, [0, 0, 1, 1], [0, 3, 1, 3])
    # class 3 and 4 neither true nor predicted: not part of the macro average
    write_case(out, 'absent_classes', 5, [0, 1, 2, 0, 1, 2, 0], [0, 1, 1, 2, 1, 2, 0])
    for k in range(6):
        n_classes = int(rs.randint(2, 12))
        n = int(rs.randint(5, 400))
        y_true = rs.randint(0, n_classes, n)
        # mostly right, some noise, with a skew towards class 0
        y_pred = np.where(rs.rand(n) < 0.6, y_true, rs.randint(0, n_classes, n))
        y_pred = np.where(rs.rand(n) < 0.1, 0, y_pred)
        write_case(out, f'random{k}', n_classes, y_true, y_pred)
    write_scores(out, 0, [1.0, 2.0, 3.0, -1.0], 2)
    write_scores(out, 0, [1000.0, -1000.0, 999.5], 1)  # needs the max subtraction
    write_scores(out, 0, rs.randn(10) * 5, 7)
    write_scores(out, 1, [0.1, 0.7, 0.2], 1)
    write_scores(out, 2, np.log(np.array([0.25, 0.5, 0.25])), 0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as fp:
        fp.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
