/* shape_reshape.c - ops that only reinterpret the shape of their input, zero copy (OTL_OPF_ALIAS):
 * Reshape, Flatten, Squeeze, Unsqueeze. Differentiable input: data (input 0); the gradient is
 * the output gradient reshaped back. Shape/axes inputs are not differentiable. */
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

/* Input 0 present and any dtype. */
static otl_status need_data(otl_kctx *k)
{
    return otl_check_in(k, 0, NULL);
}

/* The gradient of every op here: dX = Reshape(dY, Shape(X)). Shape(X) is folded at plan time,
 * so X is not kept alive; allowzero (opset 14+) keeps empty dimensions of X as they are. */
static otl_status reshape_back_grad(otl_gctx *c)
{
    const char *x[1] = {c->node->inputs[0]};
    const char *shape = otl_gemit1(c, "", "Shape", 1, x, NULL);
    const char *args[2] = {c->dy[0], shape};
    otl_node *n = NULL;
    const char *dx = shape && c->dy[0] ? otl_gemit1(c, "", "Reshape", 2, args, &n) : NULL;
    otl_status st = OTL_OK;
    if (dx && c->opset >= 14)
        st = otl_gattr_int(c, n, "allowzero", 1);
    otl_grad_set(c, 0, dx);
    return st;
}

/* ---------------------------------------------------------------- Reshape */

static otl_status reshape_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = need_data(k)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t shape[OTL_MAX_RANK];
    int n;
    if ((st = otl_const_ints(k, 1, shape, OTL_MAX_RANK, &n)))
        return st;
    if (k->in[1]->rank != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "input 'shape' must be 1-D, got rank %d", k->in[1]->rank);
    int64_t allowzero = 0;
    if (k->opset >= 14 && (st = otl_attr_int(k, "allowzero", 0, &allowzero)))
        return st;
    int infer_at = -1, has_zero = 0;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        if (shape[i] == -1) {
            if (infer_at >= 0)
                return otl_kfail(k, OTL_ERR_INPUT, "shape has more than one -1");
            infer_at = i;
            continue;
        }
        if (shape[i] < -1)
            return otl_kfail(k, OTL_ERR_INPUT, "shape[%d] = %lld is invalid", i, (long long)shape[i]);
        if (shape[i] == 0) {
            has_zero = 1;
            if (!allowzero) {
                if (i >= x->rank)
                    return otl_kfail(k, OTL_ERR_INPUT, "shape[%d] = 0 copies a dimension the rank-%d input does not have",
                                     i, x->rank);
                shape[i] = x->dims[i];
            }
        }
        if (shape[i] && known > (((int64_t)1 << 62) / shape[i])) /* no signed overflow on hostile shapes */
            return otl_kfail(k, OTL_ERR_INPUT, "shape[%d] = %lld: the shape has more than 2^62 elements", i,
                             (long long)shape[i]);
        known *= shape[i];
    }
    if (allowzero && has_zero && infer_at >= 0)
        return otl_kfail(k, OTL_ERR_INPUT, "shape has both 0 and -1 with allowzero=1");
    if (infer_at >= 0) {
        if (known == 0) {
            if (x->numel != 0)
                return otl_kfail(k, OTL_ERR_INPUT, "cannot reshape %lld elements with a zero-sized shape",
                                 (long long)x->numel);
            return otl_kfail(k, OTL_ERR_INPUT, "-1 in shape is ambiguous for an empty tensor");
        }
        if (x->numel % known)
            return otl_kfail(k, OTL_ERR_INPUT, "cannot reshape %lld elements: not divisible by %lld",
                             (long long)x->numel, (long long)known);
        shape[infer_at] = x->numel / known;
        known *= shape[infer_at];
    }
    if (known != x->numel)
        return otl_kfail(k, OTL_ERR_INPUT, "cannot reshape %lld elements into a shape of %lld elements",
                         (long long)x->numel, (long long)known);
    return otl_rt_set(k, k->out[0], x->dtype, n, shape);
}

const otl_op otl_op_Reshape = {
    .op_type = "Reshape", .domain = "", .since = 5, .until = 22, .flags = OTL_OPF_ALIAS,
    .infer = reshape_infer, .grad_inputs = 1, .grad = reshape_back_grad,
};

/* ---------------------------------------------------------------- Flatten */

static otl_status flatten_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = need_data(k)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", 1, &axis)))
        return st;
    if (axis < 0)
        axis += x->rank;
    if (axis < 0 || axis > x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "axis %lld is out of range for rank %d", (long long)axis, x->rank);
    int64_t dims[2] = {1, 1};
    for (int i = 0; i < x->rank; i++)
        dims[i >= axis] *= x->dims[i];
    return otl_rt_set(k, k->out[0], x->dtype, 2, dims);
}

const otl_op otl_op_Flatten = {
    .op_type = "Flatten", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ALIAS,
    .infer = flatten_infer, .grad_inputs = 1, .grad = reshape_back_grad,
};

/* ---------------------------------------------------------------- Squeeze / Unsqueeze */

/* axes: attribute before opset 13, input 1 from 13 (optional for Squeeze). *n = -1 when absent. */
static otl_status read_axes(otl_kctx *k, int64_t *axes, int *n)
{
    *n = -1;
    if (k->opset < 13)
        return otl_attr_ints(k, "axes", axes, OTL_MAX_RANK, n);
    if (!otl_has_in(k, 1))
        return OTL_OK;
    otl_status st = otl_const_ints(k, 1, axes, OTL_MAX_RANK, n);
    if (!st && k->in[1]->rank > 1)
        return otl_kfail(k, OTL_ERR_INPUT, "input 'axes' must be 1-D or a scalar, got rank %d", k->in[1]->rank);
    return st;
}

/* Normalize axes against `rank` into a mask; duplicates are an error. */
static otl_status axes_mask(otl_kctx *k, const int64_t *axes, int n, int rank, int *mask)
{
    memset(mask, 0, (size_t)(rank ? rank : 1) * sizeof *mask);
    if (rank == 0 && n > 0)
        return otl_kfail(k, OTL_ERR_INPUT, "axes given for a scalar");
    for (int i = 0; i < n; i++) {
        int a;
        otl_status st = otl_axis(k, axes[i], rank, &a);
        if (st)
            return st;
        if (mask[a])
            return otl_kfail(k, OTL_ERR_INPUT, "axis %lld is repeated", (long long)axes[i]);
        mask[a] = 1;
    }
    return OTL_OK;
}

static otl_status squeeze_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = need_data(k)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t axes[OTL_MAX_RANK], dims[OTL_MAX_RANK];
    int n, mask[OTL_MAX_RANK];
    if ((st = read_axes(k, axes, &n)))
        return st;
    if (n > 0) { /* an empty axes input squeezes every size-1 axis, as ONNX Runtime does */
        if ((st = axes_mask(k, axes, n, x->rank, mask)))
            return st;
        for (int i = 0; i < x->rank; i++)
            if (mask[i] && x->dims[i] != 1)
                return otl_kfail(k, OTL_ERR_INPUT, "cannot squeeze axis %d of size %lld", i, (long long)x->dims[i]);
    } else {
        for (int i = 0; i < x->rank; i++)
            mask[i] = x->dims[i] == 1;
    }
    int r = 0;
    for (int i = 0; i < x->rank; i++)
        if (!mask[i])
            dims[r++] = x->dims[i];
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

const otl_op otl_op_Squeeze = {
    .op_type = "Squeeze", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ALIAS,
    .infer = squeeze_infer, .grad_inputs = 1, .grad = reshape_back_grad,
};

static otl_status unsqueeze_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = need_data(k)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t axes[OTL_MAX_RANK], dims[OTL_MAX_RANK];
    int n, mask[OTL_MAX_RANK];
    if ((st = read_axes(k, axes, &n)))
        return st;
    if (n < 0)
        return otl_kfail(k, OTL_ERR_INPUT, "axes are required");
    int r = x->rank + n;
    if (r > OTL_MAX_RANK)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output rank %d exceeds the supported %d", r, OTL_MAX_RANK);
    if ((st = axes_mask(k, axes, n, r, mask)))
        return st;
    for (int i = 0, j = 0; i < r; i++)
        dims[i] = mask[i] ? 1 : x->dims[j++];
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

const otl_op otl_op_Unsqueeze = {
    .op_type = "Unsqueeze", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ALIAS,
    .infer = unsqueeze_infer, .grad_inputs = 1, .grad = reshape_back_grad,
};
