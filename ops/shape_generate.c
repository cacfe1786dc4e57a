/* shape_generate.c - ops that make a tensor from shapes, scalars or indices: ConstantOfShape,
 * Range, Size, EyeLike, OneHot. None is differentiable (their inputs are shapes, scalars known
 * at plan time, only a shape, or indices). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

/* The rule of these ops: with grad_inputs 0 autodiff treats their outputs as constants (no
 * gradient flows through them) and never calls it. */
static otl_status no_grad(otl_gctx *c)
{
    (void)c;
    return OTL_OK;
}

/* ---------------------------------------------------------------- ConstantOfShape */

typedef struct cos_state {
    size_t esz;
    unsigned char value[16];
} cos_state;

static otl_status constantofshape_infer(otl_kctx *k)
{
    otl_status st;
    cos_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_tensor *t;
    if ((st = otl_attr_tensor(k, "value", &t)))
        return st;
    int dtype = OTL_DTYPE_FLOAT;
    if (t) {
        if (t->numel != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "attribute 'value' must have one element, has %lld", (long long)t->numel);
        int s2 = otl_dtype_size2(t->dtype);
        if (s2 < 2 || s2 % 2 || s2 / 2 > (int)sizeof s->value || !t->data || t->nbytes < (size_t)s2 / 2)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "attribute 'value' of dtype %s is not supported",
                             otl_dtype_name(t->dtype));
        dtype = t->dtype;
        memcpy(s->value, t->data, (size_t)s2 / 2);
    }
    s->esz = (size_t)otl_dtype_size2(dtype) / 2;
    int64_t dims[OTL_MAX_RANK];
    int n;
    if ((st = otl_const_ints(k, 0, dims, OTL_MAX_RANK, &n)))
        return st;
    if (k->in[0]->rank != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "input must be 1-D, got rank %d", k->in[0]->rank);
    return otl_rt_set(k, k->out[0], dtype, n, dims);
}

static otl_status constantofshape_forward(otl_kctx *k)
{
    cos_state *s = k->state;
    otl_fill_elems(k->out[0]->data, s->value, k->out[0]->numel, s->esz);
    return OTL_OK;
}

const otl_op otl_op_ConstantOfShape = {
    .op_type = "ConstantOfShape", .domain = "", .since = 9, .until = 22,
    .infer = constantofshape_infer, .forward = constantofshape_forward,
    .grad_inputs = 0, .grad = no_grad,
};

/* ---------------------------------------------------------------- Range */

typedef struct range_state {
    double fstart, fdelta;
    int64_t istart, idelta;
} range_state;

static const int range_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_INT16, OTL_DTYPE_INT32,
                                  OTL_DTYPE_INT64, 0};

static otl_status range_infer(otl_kctx *k)
{
    otl_status st;
    for (int i = 0; i < 3; i++) {
        if ((st = otl_check_in(k, i, range_types)))
            return st;
        const otl_rt *v = k->in[i];
        if (v->dtype != k->in[0]->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                             otl_dtype_name(k->in[0]->dtype), otl_dtype_name(v->dtype));
        if (v->numel != 1 || v->rank > 1)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must be a scalar", i, v->name);
        if (!v->is_const)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED,
                             "input %d '%s' must be known before the run (the output size depends on it)", i,
                             v->name);
    }
    range_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int dt = k->in[0]->dtype;
    int64_t n;
    if (dt == OTL_DTYPE_FLOAT || dt == OTL_DTYPE_DOUBLE) {
        double a = otl_get_f(k->in[0]->data, dt, 0), b = otl_get_f(k->in[1]->data, dt, 0),
               d = otl_get_f(k->in[2]->data, dt, 0);
        if (d == 0 || !isfinite(a) || !isfinite(b) || !isfinite(d))
            return otl_kfail(k, OTL_ERR_INPUT, "start, limit and delta must be finite and delta non-zero");
        double diff = dt == OTL_DTYPE_FLOAT ? (double)((float)b - (float)a) : b - a;
        double c = ceil(diff / d);
        if (c > (double)((int64_t)1 << 40))
            return otl_kfail(k, OTL_ERR_INPUT, "the range has too many elements");
        n = c > 0 ? (int64_t)c : 0;
        s->fstart = a;
        s->fdelta = d;
    } else {
        int64_t a = otl_get_i(k->in[0]->data, dt, 0), b = otl_get_i(k->in[1]->data, dt, 0),
                d = otl_get_i(k->in[2]->data, dt, 0);
        if (d == 0)
            return otl_kfail(k, OTL_ERR_INPUT, "delta is 0");
        /* |b - a| < 2^63 for int32/int16; guard int64 */
        if ((a > 0 && b < INT64_MIN + a) || (a < 0 && b > INT64_MAX + a))
            return otl_kfail(k, OTL_ERR_INPUT, "the range has too many elements");
        int64_t diff = b - a;
        if ((diff > 0) != (d > 0) || diff == 0)
            n = 0;
        else if (d > 0)
            n = (diff - 1) / d + 1;
        else
            n = (diff + 1) / d + 1;
        if (n > ((int64_t)1 << 40))
            return otl_kfail(k, OTL_ERR_INPUT, "the range has too many elements");
        s->istart = a;
        s->idelta = d;
    }
    return otl_rt_set(k, k->out[0], dt, 1, &n);
}

static otl_status range_forward(otl_kctx *k)
{
    range_state *s = k->state;
    otl_rt *y = k->out[0];
    switch (y->dtype) {
    case OTL_DTYPE_FLOAT:
        for (int64_t i = 0; i < y->numel; i++)
            ((float *)y->data)[i] = (float)(s->fstart + (double)i * s->fdelta);
        break;
    case OTL_DTYPE_DOUBLE:
        for (int64_t i = 0; i < y->numel; i++)
            ((double *)y->data)[i] = s->fstart + (double)i * s->fdelta;
        break;
    default:
        for (int64_t i = 0; i < y->numel; i++)
            otl_set_i(y->data, y->dtype, i, s->istart + i * s->idelta);
    }
    return OTL_OK;
}

const otl_op otl_op_Range = {
    .op_type = "Range", .domain = "", .since = 11, .until = 22,
    .infer = range_infer, .forward = range_forward,
    .grad_inputs = 0, .grad = no_grad,
};

/* ---------------------------------------------------------------- Size */

static otl_status size_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    return otl_rt_set(k, k->out[0], OTL_DTYPE_INT64, 0, NULL);
}

static otl_status size_forward(otl_kctx *k)
{
    *(int64_t *)k->out[0]->data = k->in[0]->numel;
    return OTL_OK;
}

const otl_op otl_op_Size = {
    .op_type = "Size", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_SHAPE_ONLY,
    .infer = size_infer, .forward = size_forward,
    .grad_inputs = 0, .grad = no_grad,
};

/* ---------------------------------------------------------------- EyeLike */

static otl_status eyelike_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    const otl_rt *x = k->in[0];
    int64_t dtype, diag;
    if ((st = otl_attr_int(k, "dtype", x->dtype, &dtype)) || (st = otl_attr_int(k, "k", 0, &diag)))
        return st;
    if (x->rank != 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input must have rank 2, got %d", x->rank);
    int s2 = otl_dtype_size2((int)dtype);
    if (s2 < 2 || s2 % 2 || dtype == OTL_DTYPE_STRING || dtype >= OTL_DTYPE_FLOAT8E4M3FN)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output dtype %s is not supported", otl_dtype_name((int)dtype));
    return otl_rt_set(k, k->out[0], (int)dtype, 2, x->dims);
}

static otl_status eyelike_forward(otl_kctx *k)
{
    otl_rt *y = k->out[0];
    int64_t diag;
    otl_status st = otl_attr_int(k, "k", 0, &diag);
    if (st)
        return st;
    memset(y->data, 0, y->nbytes);
    int64_t N = y->dims[0], M = y->dims[1];
    for (int64_t i = 0; i < N; i++) {
        if (diag >= M || diag <= -N)
            break;
        int64_t j = i + diag;
        if (j >= 0 && j < M)
            otl_set_f(y->data, y->dtype, i * M + j, 1.0);
    }
    return OTL_OK;
}

const otl_op otl_op_EyeLike = {
    .op_type = "EyeLike", .domain = "", .since = 9, .until = 22, .flags = OTL_OPF_SHAPE_ONLY,
    .infer = eyelike_infer, .forward = eyelike_forward,
    .grad_inputs = 0, .grad = no_grad,
};

/* ---------------------------------------------------------------- OneHot */

typedef struct onehot_state {
    int axis;
    int64_t depth;
    size_t esz;
} onehot_state;

static otl_status onehot_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, NULL)) || (st = otl_check_in(k, 1, NULL)) || (st = otl_check_in(k, 2, NULL)))
        return st;
    onehot_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *ix = k->in[0], *dep = k->in[1], *val = k->in[2];
    int s2 = otl_dtype_size2(val->dtype);
    if (s2 < 2 || s2 % 2)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "values of dtype %s are not supported", otl_dtype_name(val->dtype));
    s->esz = (size_t)s2 / 2;
    if (val->numel != 2 || val->rank != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "values must be [off_value, on_value]");
    if (dep->numel != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "depth must be one value");
    if (!dep->is_const)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "depth must be known before the run (the output shape depends on it)");
    double d = otl_get_f(dep->data, dep->dtype, 0);
    if (!(d >= 1 && d <= (double)((int64_t)1 << 40)))
        return otl_kfail(k, OTL_ERR_INPUT, "depth %g is invalid", d);
    s->depth = (int64_t)d;
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", -1, &axis)))
        return st;
    int r = ix->rank + 1;
    if (r > OTL_MAX_RANK)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output rank %d exceeds the supported %d", r, OTL_MAX_RANK);
    if ((st = otl_axis(k, axis, r, &s->axis)))
        return st;
    if (otl_dtype_size2(ix->dtype) < 2 || ix->dtype == OTL_DTYPE_BOOL)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "indices of dtype %s are not supported", otl_dtype_name(ix->dtype));
    int64_t dims[OTL_MAX_RANK];
    for (int i = 0, j = 0; i < r; i++)
        dims[i] = i == s->axis ? s->depth : ix->dims[j++];
    return otl_rt_set(k, k->out[0], val->dtype, r, dims);
}

static otl_status onehot_forward(otl_kctx *k)
{
    onehot_state *s = k->state;
    const otl_rt *ix = k->in[0], *val = k->in[2];
    otl_rt *y = k->out[0];
    int64_t inner = 1, D = s->depth;
    for (int d = s->axis; d < ix->rank; d++)
        inner *= ix->dims[d];
    int64_t outer = inner ? ix->numel / inner : 0;
    const char *off = val->data, *on = off + s->esz;
    otl_fill_elems(y->data, off, y->numel, s->esz);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double v = otl_get_f(ix->data, ix->dtype, o * inner + i);
            if (!(v > -(double)D - 1 && v < (double)D))
                continue; /* out of range: all off_value */
            int64_t d = (int64_t)v; /* indices are cast to integers first */
            if (d < 0)
                d += D;
            if (d < 0 || d >= D)
                continue;
            memcpy((char *)y->data + (size_t)((o * D + d) * inner + i) * s->esz, on, s->esz);
        }
    return OTL_OK;
}

const otl_op otl_op_OneHot = {
    .op_type = "OneHot", .domain = "", .since = 9, .until = 22,
    .infer = onehot_infer, .forward = onehot_forward,
    .grad_inputs = 0, .grad = no_grad,
};
