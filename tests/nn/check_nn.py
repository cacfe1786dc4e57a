#!/usr/bin/python3
"""check_nn.py - convolution, pooling and batch-normalization ops (ops/conv.c, ops/pool.c,
ops/batchnorm.c) against PyTorch on cases the ONNX node tests do not reach: chains of oneDNN ops
that hand blocked layouts to each other (Conv -> MaxPool -> Conv -> BN -> global pools), C
fallbacks reading blocked inputs (MaxPool Indices, ceil_mode averages counting padding), 1-D/3-D
and 4-D windows, non-const weights, ConvTranspose with groups/dilations/output_padding,
BatchNormalization in double/float16/mixed and training mode, MaxUnpool, empty batches, and
clean errors for bad input.

Also, with the nn_session helper (tests/nn/nn_session.c, a training session), BatchNormalization
in training sessions (batch statistics, running statistics updated with PyTorch semantics, and
frozen), and `onnx-tl grad` on conv/pool/BN chains against torch.autograd (loss and every
parameter gradient within 1e-4 relative: max abs diff over max abs value).

    /usr/bin/python3 tests/nn/check_nn.py path/to/onnx-tl [path/to/nn_session]

Needs numpy, onnx and torch. Prints one line per case and 'N passed, N failed'; exit status 1
when a case fails.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

BIN = sys.argv[1]
SESSION = sys.argv[2] if len(sys.argv) > 2 else None
D = tempfile.mkdtemp(prefix='otl_check_nn_')
rs = np.random.RandomState(0)
NP2TP = {np.float32: TP.FLOAT, np.float64: TP.DOUBLE, np.float16: TP.FLOAT16, np.int64: TP.INT64, np.uint8: TP.UINT8}
ok = fail = 0
def save_model(name, nodes, inputs, inits, outs, opset):
    g = h.make_graph(nodes, name,
        [h.make_tensor_value_info(k, NP2TP[v.dtype.type], list(v.shape)) for k, v in inputs.items()],
        [h.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outs],
        [nh.from_array(v, k) for k, v in inits.items()])
    imports = [h.make_opsetid('', opset)]
    if any(n.domain == 'onnx_tl' for n in nodes):
        imports.append(h.make_opsetid('onnx_tl', 1))
    m = h.make_model(g, opset_imports=imports)
    p = '%s/%s.onnx' % (D, name); onnx.save(m, p)
    return p
def run(name, nodes, inputs, inits, outs, expect, opset=13, tol=(1e-4, 1e-5), threads=2, error=None, env=None, session=None):
    """Run a one-graph model; compare outputs, or with error='text' expect exit status 1 and
    that text in the message. env: extra environment variables for onnx-tl. session='train' or
    'frozen': run it in a training session (nn_session) instead of `onnx-tl run`."""
    global ok, fail
    p = save_model(name, nodes, inputs, inits, outs, opset)
    args = [BIN, 'run', p, '--outdir', D + '/out_' + name, '--threads', str(threads)]
    for k, v in inputs.items():
        np.save('%s/%s_%s.npy' % (D, name, k), v); args += ['--input', '%s=%s/%s_%s.npy' % (k, D, name, k)]
    if session is not None:  # a training session (nn_session), frozen BN or not
        os.makedirs(D + '/out_' + name, exist_ok=True)
        args = [SESSION, p, D + '/out_' + name] + (['--frozen'] if session == 'frozen' else []) + \
               ['%s=%s/%s_%s.npy' % (k, D, name, k) for k in inputs]
    r = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if error is not None:
        good = r.returncode == 1 and error in r.stderr
        print('PASS' if good else 'FAIL', name, '' if good else 'rc=%d %s' % (r.returncode, r.stderr.strip()))
        ok += good; fail += not good
        return
    if r.returncode:
        print('FAIL', name, r.stderr.strip()); fail += 1; return
    good = True
    for o, e in zip(outs, expect):
        got = np.load('%s/out_%s/%s.npy' % (D, name, o))
        e = np.asarray(e)
        if got.shape != e.shape or got.dtype != e.dtype or not np.allclose(got.astype(np.float64), e.astype(np.float64), rtol=tol[0], atol=tol[1]):
            d = np.abs(got.astype(np.float64) - e.astype(np.float64)).max() if got.shape == e.shape else None
            print('FAIL', name, o, got.shape, got.dtype, e.shape, e.dtype, 'maxdiff', d); good = False
    print('PASS' if good else 'FAIL', name); ok += good; fail += not good
T = lambda a: torch.from_numpy(a)
f32 = lambda *s: rs.randn(*s).astype(np.float32)

# 1. chain conv -> maxpool -> conv -> BN -> relu? -> GAP ; conv -> avgpool ceil include pad (C path on blocked input); conv -> maxpool with indices
x = f32(2, 8, 17, 19); w1 = f32(32, 8, 3, 3); b1 = f32(32); w2 = f32(32, 16, 3, 3) * .1; sc = f32(32); bb = f32(32); mu = f32(32); va = np.abs(f32(32)) + .5
y1 = F.conv2d(T(x), T(w1), T(b1), padding=1)
p1 = F.max_pool2d(y1, 3, 2, 1)
y2 = F.conv2d(p1, T(w2), None, padding=(1, 2), groups=2, dilation=(1, 2))
bn = F.batch_norm(y2, T(mu), T(va), T(sc), T(bb), False, 0.1, 1e-5)
gap = bn.mean(dim=(2, 3), keepdim=True); gmp = bn.amax(dim=(2, 3), keepdim=True)
ap = F.avg_pool2d(y1, 3, 2, 1, ceil_mode=True, count_include_pad=True)
mp, idx = F.max_pool2d(y1, 2, 2, return_indices=True)
idx = idx + (torch.arange(2 * 32).reshape(2, 32, 1, 1) * 17 * 19)
ap2 = F.avg_pool2d(y1, 2, 1, 0)
run('chain', [
    h.make_node('Conv', ['x', 'w1', 'b1'], ['y1'], pads=[1, 1, 1, 1]),
    h.make_node('MaxPool', ['y1'], ['p1'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    h.make_node('Conv', ['p1', 'w2'], ['y2'], pads=[1, 2, 1, 2], group=2, dilations=[1, 2]),
    h.make_node('BatchNormalization', ['y2', 'sc', 'bb', 'mu', 'va'], ['bn']),
    h.make_node('GlobalAveragePool', ['bn'], ['gap']),
    h.make_node('GlobalMaxPool', ['bn'], ['gmp']),
    h.make_node('AveragePool', ['y1'], ['ap'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    h.make_node('MaxPool', ['y1'], ['mp', 'idx'], kernel_shape=[2, 2], strides=[2, 2]),
    h.make_node('AveragePool', ['y1'], ['ap2'], kernel_shape=[2, 2]),
], {'x': x}, {'w1': w1, 'b1': b1, 'w2': w2, 'sc': sc, 'bb': bb, 'mu': mu, 'va': va},
   ['y1', 'p1', 'y2', 'bn', 'gap', 'gmp', 'ap', 'mp', 'idx', 'ap2'],
   [t.numpy() if t.dtype != torch.int64 else t.numpy() for t in [y1, p1, y2, bn, gap, gmp, ap, mp, idx, ap2]])

# 2. non-const weights and bias, 1-D and 3-D conv, auto_pad
x1 = f32(3, 4, 20); w = f32(6, 2, 4); b = f32(6)
ref = F.conv1d(F.pad(T(x1), (1, 2)), T(w), T(b), stride=2, groups=2)  # SAME_UPPER: out=10, total=(10-1)*2+4-20=2 -> 1,1 ; hmm compute below
out = -(-20 // 2); total = max(0, (out - 1) * 2 + 4 - 20); pl = total // 2; pr = total - pl
ref = F.conv1d(F.pad(T(x1), (pl, pr)), T(w), T(b), stride=2, groups=2)
run('conv1d_inputs', [h.make_node('Conv', ['x', 'w', 'b'], ['y'], strides=[2], group=2, auto_pad='SAME_UPPER')],
    {'x': x1, 'w': w, 'b': b}, {}, ['y'], [ref.numpy()])
x3 = f32(2, 3, 6, 7, 5); w3 = f32(4, 3, 2, 3, 2)
pl3 = [1, 0, 1]; pr3 = [0, 1, 1]
ref = F.conv3d(F.pad(T(x3), (pl3[2], pr3[2], pl3[1], pr3[1], pl3[0], pr3[0])), T(w3), stride=(2, 1, 2), dilation=(1, 2, 1))
run('conv3d', [h.make_node('Conv', ['x', 'w'], ['y'], strides=[2, 1, 2], dilations=[1, 2, 1], pads=pl3 + pr3)],
    {'x': x3, 'w': w3}, {}, ['y'], [ref.numpy()])

# 3. ConvTranspose groups + dilation + output_padding, chained after a conv (blocked input), with W as input
x = f32(2, 4, 5, 6); wc = f32(4, 4, 1, 1); wt = f32(4, 3, 3, 2)
yc = F.conv2d(T(x), T(wc))
ref = F.conv_transpose2d(yc, T(wt), None, stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(2, 1))
run('convt_chain', [h.make_node('Conv', ['x', 'wc'], ['yc']),
                    h.make_node('ConvTranspose', ['yc', 'wt'], ['y'], strides=[2, 3], pads=[1, 0, 1, 0], output_padding=[1, 2], group=2, dilations=[2, 1])],
    {'x': x, 'wt': wt}, {'wc': wc}, ['y'], [ref.numpy()])

# 4. BN C path: double, float16, mixed (opset 15), training, rank 6, rank 2
M = float(np.float32(0.8))
for dt, tol in [(np.float64, (1e-9, 1e-12)), (np.float16, (2e-2, 2e-2))]:
    x = rs.randn(3, 5, 4, 2).astype(dt); sc = rs.randn(5).astype(dt); bb = rs.randn(5).astype(dt); mu = rs.randn(5).astype(dt); va = (np.abs(rs.randn(5)) + .5).astype(dt)
    ref = F.batch_norm(T(x.astype(np.float64)), T(mu.astype(np.float64)), T(va.astype(np.float64)), T(sc.astype(np.float64)), T(bb.astype(np.float64)), False, 0.1, 1e-5).numpy().astype(dt)
    run('bn_%s' % dt.__name__, [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y'])], {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y'], [ref], opset=15, tol=tol)
    rm = T(mu.astype(np.float64)).clone(); rv = T(va.astype(np.float64)).clone()
    ref = F.batch_norm(T(x.astype(np.float64)), rm, rv, T(sc.astype(np.float64)), T(bb.astype(np.float64)), True, 0.2, 1e-3)
    xd = x.astype(np.float64); bm = xd.mean(axis=(0, 2, 3)); bv = xd.var(axis=(0, 2, 3))
    run('bn_train_%s' % dt.__name__, [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'], training_mode=1, momentum=0.8, epsilon=1e-3)],
        {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y', 'rm', 'rv'],
        [ref.numpy().astype(dt), (mu * M + bm * (1 - M)).astype(dt), (va * M + bv * (1 - M)).astype(dt)], opset=15, tol=tol)
x = f32(2, 3, 2, 2, 3, 2); sc = f32(3); bb = f32(3); mu = f32(3); va = np.abs(f32(3)) + .5
ref = F.batch_norm(T(x), T(mu), T(va), T(sc), T(bb), False, 0.1, 1e-5)
run('bn_rank6', [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y'])], {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y'], [ref.numpy()])
x = f32(4, 3)
ref = F.batch_norm(T(x), T(mu), T(va), T(sc), T(bb), False, 0.1, 1e-5)
run('bn_rank2', [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y'])], {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y'], [ref.numpy()])
x = f32(6, 3, 5)
rm = T(mu).clone(); rv = T(va).clone()
ref = F.batch_norm(T(x), rm, rv, T(sc), T(bb), True, 0.1, 1e-5)
bm = x.mean(axis=(0, 2)); bv = x.var(axis=(0, 2))
run('bn_train_f32_opset9', [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y'])], {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y'], [F.batch_norm(T(x), T(mu), T(va), T(sc), T(bb), False, 0.1, 1e-5).numpy()], opset=9)
run('bn_train_f32_14', [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'], training_mode=1)], {'x': x}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y', 'rm', 'rv'],
    [ref.numpy(), mu * .9 + bm * .1, va * .9 + bv * .1], opset=14)

# 5. pooling dtypes and C path features
x = rs.randn(2, 3, 9, 8)
run('gap_f64', [h.make_node('GlobalAveragePool', ['x'], ['y']), h.make_node('GlobalMaxPool', ['x'], ['z'])], {'x': x}, {}, ['y', 'z'], [x.mean(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)], tol=(1e-12, 1e-12))
ref = F.avg_pool2d(T(x), 3, 2, 1, ceil_mode=True, count_include_pad=False)
run('avgpool_f64', [h.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], {'x': x}, {}, ['y'], [ref.numpy()], tol=(1e-12, 1e-12))
xf = x.astype(np.float32)
ref = F.max_pool2d(T(xf), (3, 2), (2, 3), (1, 1), dilation=(2, 1), ceil_mode=True)
run('maxpool_ceil_dil', [h.make_node('MaxPool', ['x'], ['y'], kernel_shape=[3, 2], strides=[2, 3], pads=[1, 1, 1, 1], dilations=[2, 1], ceil_mode=1)], {'x': xf}, {}, ['y'], [ref.numpy()])
ref = F.avg_pool2d(T(xf), 3, 2, 1, ceil_mode=True, count_include_pad=True)
run('avgpool_ceil_incl', [h.make_node('AveragePool', ['x'], ['y'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)], {'x': xf}, {}, ['y'], [ref.numpy()])
x3 = f32(1, 2, 5, 6, 7)
ref = F.max_pool3d(T(x3), 2, (1, 2, 3), (1, 0, 1))
run('maxpool3d', [h.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2, 2, 2], strides=[1, 2, 3], pads=[1, 0, 1, 1, 0, 1])], {'x': x3}, {}, ['y'], [ref.numpy()])
ref = F.avg_pool3d(T(x3), 2, (1, 2, 3), (1, 0, 1), count_include_pad=False)
run('avgpool3d', [h.make_node('AveragePool', ['x'], ['y'], kernel_shape=[2, 2, 2], strides=[1, 2, 3], pads=[1, 0, 1, 1, 0, 1])], {'x': x3}, {}, ['y'], [ref.numpy()])
x4 = f32(1, 2, 3, 4, 3, 4)  # 4 spatial dims: C kernel
run('maxpool4d', [h.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2, 2, 2, 2])], {'x': x4}, {}, ['y'],
    [np.lib.stride_tricks.sliding_window_view(x4, (2, 2, 2, 2), axis=(2, 3, 4, 5)).max(axis=(-1, -2, -3, -4))])
# 6. empty batch
x = np.zeros((0, 8, 5, 5), np.float32); w = f32(4, 8, 3, 3); b = f32(4)
run('conv_empty', [h.make_node('Conv', ['x', 'w', 'b'], ['y']), h.make_node('MaxPool', ['y'], ['z'], kernel_shape=[2, 2])], {'x': x}, {'w': w, 'b': b}, ['y', 'z'], [np.zeros((0, 4, 3, 3), np.float32), np.zeros((0, 4, 2, 2), np.float32)])
# 8. MaxUnpool round trip vs torch, and a bad index
x = f32(2, 3, 6, 8)
mp, idx = F.max_pool2d(T(x), 2, 2, return_indices=True)
ref = F.max_unpool2d(mp, idx, 2, 2)
run('unpool', [h.make_node('MaxPool', ['x'], ['p', 'i'], kernel_shape=[2, 2], strides=[2, 2]),
               h.make_node('MaxUnpool', ['p', 'i'], ['y'], kernel_shape=[2, 2], strides=[2, 2])], {'x': x}, {}, ['y'], [ref.numpy()])
run('unpool_bad_index', [h.make_node('MaxUnpool', ['p', 'i'], ['y'], kernel_shape=[2, 2], strides=[2, 2])],
    {'p': f32(1, 1, 2, 2), 'i': np.array([0, 1, 2, 99], np.int64).reshape(1, 1, 2, 2)}, {}, ['y'], [],
    error='index 99 at position 3 of I is outside')
# 9. clean errors
x = f32(1, 4, 8, 8)
run('err_channels', [h.make_node('Conv', ['x', 'w'], ['y'])], {'x': x}, {'w': f32(2, 3, 3, 3)}, ['y'], [], error='X has 4 channels')
run('err_kernel', [h.make_node('Conv', ['x', 'w'], ['y'])], {'x': x}, {'w': f32(2, 4, 9, 9)}, ['y'], [], error='smaller than the kernel extent')
run('err_4d_conv', [h.make_node('Conv', ['x', 'w'], ['y'])], {'x': f32(1, 1, 3, 3, 3, 3)}, {'w': f32(1, 1, 2, 2, 2, 2)}, ['y'], [], error='at most 3 supported')
run('err_pool_pads', [h.make_node('MaxPool', ['x'], ['y'], kernel_shape=[2, 2], pads=[2, 2, 2, 2])], {'x': x}, {}, ['y'], [], error='smaller than the kernel extent')
run('err_bn_spatial', [h.make_node('BatchNormalization', ['x', 's', 'b', 'm', 'v'], ['y'], spatial=0)], {'x': x},
    {'s': f32(4), 'b': f32(4), 'm': f32(4), 'v': f32(4)}, ['y'], [], opset=7, error='spatial=0')
# 10. onnx_tl.FusedConv: Y = act(conv(X, W, B) + Z) with oneDNN post-ops (Z as a sum or a
# binary post-op), blocked inputs and residuals, broadcast residuals (C epilogue), every activation
def fc(ins, out, **kw):
    return h.make_node('FusedConv', ins, [out], domain='onnx_tl', **kw)
ACTS = {'': lambda t: t, 'Relu': F.relu, 'LeakyRelu': lambda t: F.leaky_relu(t, 0.2), 'Clip': lambda t: t.clamp(-0.5, 0.7),
        'HardSwish': F.hardswish, 'Sigmoid': torch.sigmoid, 'Tanh': torch.tanh}
PARAMS = {'LeakyRelu': [0.2], 'Clip': [-0.5, 0.7]}
x = f32(2, 16, 9, 10); w0 = f32(32, 16, 3, 3) * .2; w1 = f32(32, 32, 3, 3) * .1; b1 = f32(32); wz = f32(32, 16, 1, 1) * .3
y0 = F.conv2d(T(x), T(w0), None, padding=1)            # blocked input of the fused conv
zr = F.conv2d(T(x), T(wz), None)                       # blocked residual
for zmode in ['sum', 'binary']:
    for act, fn in ACTS.items():
        attrs = dict(pads=[1, 1, 1, 1], activation=act)
        if act in PARAMS:
            attrs['activation_params'] = PARAMS[act]
        ref = fn(F.conv2d(y0, T(w1), T(b1), padding=1) + zr)
        run('fused_%s_%s' % (zmode, act or 'none'), [h.make_node('Conv', ['x', 'w0'], ['y0'], pads=[1, 1, 1, 1]),
                                                     h.make_node('Conv', ['x', 'wz'], ['z']),
                                                     fc(['y0', 'w1', 'b1', 'z'], 'y', **attrs)],
            {'x': x}, {'w0': w0, 'w1': w1, 'b1': b1, 'wz': wz}, ['y'], [ref.numpy()], env={'OTL_FUSEDCONV_Z': zmode})
# no Z, no bias, strided depthwise + HardSwish (MobileNet block), plain graph-input residual
xd = f32(2, 24, 11, 9); wd = f32(24, 1, 3, 3)
run('fused_depthwise_hswish', [fc(['x', 'w'], 'y', group=24, strides=[2, 2], pads=[1, 1, 1, 1], activation='HardSwish')],
    {'x': xd}, {'w': wd}, ['y'], [F.hardswish(F.conv2d(T(xd), T(wd), None, 2, 1, groups=24)).numpy()])
z = f32(2, 32, 9, 10)
for zmode in ['sum', 'binary']:
    run('fused_plain_z_%s' % zmode, [h.make_node('Conv', ['x', 'w0'], ['y0'], pads=[1, 1, 1, 1]), fc(['y0', 'w1', '', 'z'], 'y', pads=[1, 1, 1, 1], activation='Relu')],
        {'x': x, 'z': z}, {'w0': w0, 'w1': w1}, ['y'], [F.relu(F.conv2d(y0, T(w1), None, padding=1) + T(z)).numpy()], env={'OTL_FUSEDCONV_Z': zmode})
# broadcast residuals: per channel (rank 3 and rank 4), per sample, scalar
for zname, zb in [('chan3', f32(32, 1, 1)), ('chan4', f32(1, 32, 1, 1)), ('sample', f32(2, 1, 1, 1)), ('row', f32(10)), ('scalar', f32(1))]:
    ref = F.leaky_relu(F.conv2d(y0, T(w1), T(b1), padding=1) + T(zb), 0.2)
    run('fused_bcast_%s' % zname, [h.make_node('Conv', ['x', 'w0'], ['y0'], pads=[1, 1, 1, 1]),
                                   fc(['y0', 'w1', 'b1', 'z'], 'y', pads=[1, 1, 1, 1], activation='LeakyRelu', activation_params=[0.2])],
        {'x': x}, {'w0': w0, 'w1': w1, 'b1': b1, 'z': zb}, ['y'], [ref.numpy()])
# 1-D and 3-D, Clip without max, SAME_UPPER
x1 = f32(2, 4, 13); w1d = f32(8, 4, 3); z1 = f32(2, 8, 7)
run('fused_1d_clip_min', [fc(['x', 'w', '', 'z'], 'y', strides=[2], auto_pad='SAME_UPPER', activation='Clip', activation_params=[0.0])],
    {'x': x1, 'z': z1}, {'w': w1d}, ['y'], [(F.conv1d(F.pad(T(x1), (1, 1)), T(w1d), None, 2) + T(z1)).clamp(min=0).numpy()])
x3 = f32(1, 3, 5, 6, 4); w3 = f32(4, 3, 2, 2, 2); b3 = f32(4)
run('fused_3d_tanh', [fc(['x', 'w', 'b'], 'y', activation='Tanh')], {'x': x3}, {'w': w3, 'b': b3}, ['y'],
    [torch.tanh(F.conv3d(T(x3), T(w3), T(b3))).numpy()])
# empty batch: act(bias + Z) of nothing; empty channels: act(bias + Z)
xe = np.zeros((2, 0, 5, 5), np.float32); we = np.zeros((3, 0, 3, 3), np.float32); be = f32(3); ze = f32(2, 3, 3, 3)
run('fused_empty_channels', [fc(['x', 'w', 'b', 'z'], 'y', activation='Relu')], {'x': xe, 'z': ze}, {'w': we, 'b': be}, ['y'],
    [F.relu(T(be).reshape(1, 3, 1, 1) + T(ze)).numpy()])
run('fused_empty_batch', [fc(['x', 'w', 'b'], 'y', activation='Sigmoid')], {'x': np.zeros((0, 2, 5, 5), np.float32)},
    {'w': f32(3, 2, 3, 3), 'b': be}, ['y'], [np.zeros((0, 3, 3, 3), np.float32)])
# errors
run('fused_err_act', [fc(['x', 'w'], 'y', activation='Gelu')], {'x': x1}, {'w': w1d}, ['y'], [], error="activation 'Gelu'")
run('fused_err_z', [fc(['x', 'w', '', 'z'], 'y')], {'x': x1, 'z': f32(2, 8, 5)}, {'w': w1d}, ['y'], [], error='does not broadcast')
run('fused_err_z_larger', [fc(['x', 'w', '', 'z'], 'y')], {'x': x1, 'z': f32(3, 2, 8, 11)}, {'w': w1d}, ['y'], [], error='more than the output')

# 11. BatchNormalization in training sessions: batch statistics; running statistics outputs
# (1, 2; what the training graph builder adds) = m * running + (1 - m) * batch with the unbiased
# batch variance (PyTorch, momentum p = 1 - m); opset < 14 saved statistics (3, 4) biased;
# frozen: running statistics used and passed through. oneDNN (float32, blocked after a conv) and C.
def bn_ref(x, sc, bb, mu, va, m, eps, train):
    m, eps = float(np.float32(m)), float(np.float32(eps))  # float attributes
    rm = T(mu.astype(np.float64)).clone(); rv = T(va.astype(np.float64)).clone()
    y = F.batch_norm(T(x.astype(np.float64)), rm, rv, T(sc.astype(np.float64)), T(bb.astype(np.float64)), train, 1 - m, eps)
    return y.numpy().astype(x.dtype), rm.numpy().astype(mu.dtype), rv.numpy().astype(va.dtype)
if SESSION:
    for dt, tol in [(np.float32, (1e-4, 1e-5)), (np.float64, (1e-9, 1e-12))]:
        x = rs.randn(4, 5, 3, 2).astype(dt); sc = rs.randn(5).astype(dt); bb = rs.randn(5).astype(dt); mu = rs.randn(5).astype(dt); va = (np.abs(rs.randn(5)) + .5).astype(dt)
        prm = {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}
        M = 0.8
        y, rm, rv = bn_ref(x, sc, bb, mu, va, M, 1e-3, True)
        node15 = h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'], momentum=M, epsilon=1e-3)
        run('session_bn15_%s' % dt.__name__, [node15], {'x': x}, prm, ['y', 'rm', 'rv'], [y, rm, rv], opset=15, tol=tol, session='train')
        xd = x.astype(np.float64)
        run('session_bn9_%s' % dt.__name__, [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv', 'sm', 'sv'], momentum=M, epsilon=1e-3)],
            {'x': x}, prm, ['y', 'rm', 'rv', 'sm', 'sv'], [y, rm, rv, xd.mean(axis=(0, 2, 3)).astype(dt), xd.var(axis=(0, 2, 3)).astype(dt)], opset=9, tol=tol, session='train')
        y, _, _ = bn_ref(x, sc, bb, mu, va, M, 1e-3, False)
        run('session_bn15_frozen_%s' % dt.__name__, [node15], {'x': x}, prm, ['y', 'rm', 'rv'], [y, mu, va], opset=15, tol=tol, session='frozen')
    # blocked (after a 16-channel conv), rank 2, training_mode=1 under --bn frozen
    x = f32(3, 8, 6, 5); w = f32(16, 8, 3, 3) * .2; sc = f32(16); bb = f32(16); mu = f32(16); va = np.abs(f32(16)) + .5
    yc = F.conv2d(T(x), T(w), None, padding=1).numpy()
    y, rm, rv = bn_ref(yc, sc, bb, mu, va, 0.9, 1e-5, True)
    run('session_bn_blocked', [h.make_node('Conv', ['x', 'w'], ['c'], pads=[1, 1, 1, 1]), h.make_node('BatchNormalization', ['c', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'])],
        {'x': x}, {'w': w, 'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y', 'rm', 'rv'], [y, rm, rv], opset=14, session='train')
    y, _, _ = bn_ref(yc, sc, bb, mu, va, 0.9, 1e-5, False)
    run('session_bn_blocked_frozen', [h.make_node('Conv', ['x', 'w'], ['c'], pads=[1, 1, 1, 1]), h.make_node('BatchNormalization', ['c', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'], training_mode=1)],
        {'x': x}, {'w': w, 'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y', 'rm', 'rv'], [y, mu, va], opset=14, session='frozen')
    x2 = f32(7, 5); sc = f32(5); bb = f32(5); mu = f32(5); va = np.abs(f32(5)) + .5
    y, rm, rv = bn_ref(x2, sc, bb, mu, va, 0.9, 1e-5, True)
    run('session_bn_rank2', [h.make_node('BatchNormalization', ['x', 'sc', 'bb', 'mu', 'va'], ['y', 'rm', 'rv'])],
        {'x': x2}, {'sc': sc, 'bb': bb, 'mu': mu, 'va': va}, ['y', 'rm', 'rv'], [y, rm, rv], session='train')

# 12. `onnx-tl grad --loss mse` on chains of conv/pool/BN ops against torch.autograd, BN in both
# modes: the loss and every parameter gradient within 1e-4 relative (max abs diff / max abs value).
def grad_case(name, nodes, x, inits, out, fn, bn='train', opset=13, tol=1e-4, threads=2):
    global ok, fail
    p = save_model(name, nodes, {'x': x}, inits, [out], opset)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in inits.items()}
    y = fn(T(x), params)
    tgt = rs.randn(*y.shape).astype(np.float32)
    loss = F.mse_loss(y, T(tgt)); loss.backward()
    np.save('%s/%s_x.npy' % (D, name), x); np.save('%s/%s_t.npy' % (D, name), tgt)
    od = '%s/grad_%s' % (D, name)
    r = subprocess.run([BIN, 'grad', p, '--input', 'x=%s/%s_x.npy' % (D, name), '--target', '%s/%s_t.npy' % (D, name),
                        '--loss', 'mse', '--bn', bn, '-o', od, '--threads', str(threads)], capture_output=True, text=True)
    if r.returncode:
        print('FAIL', name, r.stderr.strip()); fail += 1; return
    bad = []
    got = float(np.load(od + '/loss.npy'))
    if abs(got - loss.item()) > 1e-5 * max(1.0, abs(loss.item())):
        bad.append('loss %g vs %g' % (got, loss.item()))
    gmax = max(np.abs(t.grad.numpy()).max() for k, t in params.items() if not k.startswith('run_'))
    for k, t in params.items():
        if k.startswith('run_'):  # running statistics: not parameters
            continue
        g = np.load('%s/grad/%s.npy' % (od, k)); e = t.grad.numpy()
        # a bias before batch-statistics BN has a zero gradient: both sides are rounding noise,
        # compared with the case's largest gradient instead
        den = max(np.abs(e).max(), 1e-12) if np.abs(e).max() > 1e-5 * gmax else 1e-2 * gmax
        rel = np.abs(g - e).max() / den if g.shape == e.shape else np.inf
        if not rel <= tol:
            bad.append('%s rel %.3g' % (k, rel))
    good = not bad
    print('PASS' if good else 'FAIL', name, ' '.join(bad)); ok += good; fail += not good
def bnp(c, pre):
    return {pre + 's': (np.abs(f32(c)) + .5), pre + 'b': f32(c), 'run_' + pre + 'm': f32(c) * .1, 'run_' + pre + 'v': np.abs(f32(c)) + .5}
def tbn(t, P, pre, bn, eps=1e-5):
    return F.batch_norm(t, P['run_' + pre + 'm'].detach().clone(), P['run_' + pre + 'v'].detach().clone(), P[pre + 's'], P[pre + 'b'], bn == 'train', 0.1, eps)
def obn(i, o, pre, **kw):
    return h.make_node('BatchNormalization', [i, pre + 's', pre + 'b', 'run_' + pre + 'm', 'run_' + pre + 'v'], [o], **kw)
for bn in ['train', 'frozen']:
    # A: conv(bias) -> BN -> maxpool -> grouped dilated strided conv -> BN -> avgpool(include pad) -> depthwise -> GAP
    x = f32(4, 3, 14, 13)
    P = dict(w1=f32(16, 3, 3, 3) * .3, b1=f32(16), w2=f32(32, 8, 3, 3) * .2, w3=f32(32, 1, 3, 3) * .3, b3=f32(32), **bnp(16, 'n1'), **bnp(32, 'n2'))
    def fa(t, P, bn=bn):
        t = tbn(F.conv2d(t, P['w1'], P['b1'], padding=1), P, 'n1', bn)
        t = F.max_pool2d(t, 3, 2, 1)
        t = tbn(F.conv2d(t, P['w2'], None, stride=2, padding=(2, 1), dilation=(2, 1), groups=2), P, 'n2', bn, 1e-3)
        t = F.avg_pool2d(t, 2, 1, 1, count_include_pad=True)
        t = F.conv2d(t, P['w3'], P['b3'], padding=1, groups=32)
        return t.mean(dim=(2, 3), keepdim=True)
    grad_case('grad_chain2d_%s' % bn, [
        h.make_node('Conv', ['x', 'w1', 'b1'], ['c1'], pads=[1, 1, 1, 1]), obn('c1', 'n1', 'n1'),
        h.make_node('MaxPool', ['n1'], ['p1'], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        h.make_node('Conv', ['p1', 'w2'], ['c2'], strides=[2, 2], pads=[2, 1, 2, 1], dilations=[2, 1], group=2), obn('c2', 'n2', 'n2', epsilon=1e-3),
        h.make_node('AveragePool', ['n2'], ['p2'], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        h.make_node('Conv', ['p2', 'w3', 'b3'], ['c3'], pads=[1, 1, 1, 1], group=32),
        h.make_node('GlobalAveragePool', ['c3'], ['y'])], x, P, 'y', fa, bn)
    # B: conv -> ConvTranspose (groups, output_padding, bias) -> BN -> GlobalMaxPool
    x = f32(2, 4, 6, 5)
    P = dict(w1=f32(16, 4, 1, 1) * .5, wt=f32(16, 4, 3, 3) * .2, bt=f32(8), **bnp(8, 'n1'))
    def fb(t, P, bn=bn):
        t = F.conv2d(t, P['w1'])
        t = F.conv_transpose2d(t, P['wt'], P['bt'], stride=2, padding=1, output_padding=1, groups=2)
        return tbn(t, P, 'n1', bn).amax(dim=(2, 3), keepdim=True)
    grad_case('grad_convt_%s' % bn, [
        h.make_node('Conv', ['x', 'w1'], ['c1']),
        h.make_node('ConvTranspose', ['c1', 'wt', 'bt'], ['t1'], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], group=2),
        obn('t1', 'n1', 'n1'), h.make_node('GlobalMaxPool', ['n1'], ['y'])], x, P, 'y', fb, bn)
    # C: 1-D: conv SAME_UPPER strided -> BN -> maxpool ceil -> avgpool exclude pad
    x = f32(3, 5, 23)
    P = dict(w1=f32(16, 5, 4) * .3, b1=f32(16), **bnp(16, 'n1'))
    def fc1(t, P, bn=bn):
        t = F.conv1d(F.pad(t, (1, 2)), P['w1'], P['b1'], stride=2)  # SAME_UPPER: out 12, total pad 3
        t = F.max_pool1d(tbn(t, P, 'n1', bn), 3, 2, 1, ceil_mode=True)
        return F.avg_pool1d(t, 3, 1, 1, count_include_pad=False)
    grad_case('grad_chain1d_%s' % bn, [
        h.make_node('Conv', ['x', 'w1', 'b1'], ['c1'], strides=[2], auto_pad='SAME_UPPER'), obn('c1', 'n1', 'n1'),
        h.make_node('MaxPool', ['n1'], ['p1'], kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1),
        h.make_node('AveragePool', ['p1'], ['y'], kernel_shape=[3], pads=[1, 1])], x, P, 'y', fc1, bn)
    # D: residual block (the ResNet pattern): conv -> BN -> Relu -> conv -> BN -> Add(identity) -> Relu -> maxpool -> GAP
    x = f32(4, 16, 9, 8)
    P = dict(w1=f32(16, 16, 3, 3) * .15, w2=f32(16, 16, 3, 3) * .15, **bnp(16, 'n1'), **bnp(16, 'n2'))
    def fd(t, P, bn=bn):
        u = F.relu(tbn(F.conv2d(t, P['w1'], None, padding=1), P, 'n1', bn))
        u = F.relu(tbn(F.conv2d(u, P['w2'], None, padding=1), P, 'n2', bn) + t)
        return F.max_pool2d(u, 2, 2).mean(dim=(2, 3), keepdim=True)
    grad_case('grad_residual_%s' % bn, [
        h.make_node('Conv', ['x', 'w1'], ['c1'], pads=[1, 1, 1, 1]), obn('c1', 'n1', 'n1'), h.make_node('Relu', ['n1'], ['r1']),
        h.make_node('Conv', ['r1', 'w2'], ['c2'], pads=[1, 1, 1, 1]), obn('c2', 'n2', 'n2'), h.make_node('Add', ['n2', 'x'], ['a']),
        h.make_node('Relu', ['a'], ['r2']), h.make_node('MaxPool', ['r2'], ['p'], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node('GlobalAveragePool', ['p'], ['y'])], x, P, 'y', fd, bn)

shutil.rmtree(D, ignore_errors=True)
print('%d passed, %d failed' % (ok, fail))
sys.exit(1 if fail else 0)
