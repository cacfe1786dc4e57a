/* layernorm.c - LayerNormalization (opset 17): X normalized over its trailing dims from `axis`
 * (flattened into one of size D), then scaled and shifted; optional Mean and InvStdDev outputs.
 * float32 on oneDNN's layer_normalization primitive; double (or stash_type double) in C.
 * Differentiable inputs: X, Scale, B. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

typedef struct lnorm_state {
    int64_t outer, D;           /* X viewed as (outer, D) */
    float eps;
    int stash;                  /* dtype of Mean/InvStdDev and of the statistics */
    int expand_scale, expand_bias; /* Scale/B smaller than D: broadcast into buf */
    int64_t sd[OTL_MAX_RANK], bd[OTL_MAX_RANK]; /* their shapes right-aligned to X's trailing dims */
    int nd;                     /* number of normalized dims */
    int64_t xd[OTL_MAX_RANK];   /* normalized dims of X */
    float *sbuf, *bbuf;         /* (D) expanded Scale / B (float32 path) */
    float *mean, *var;          /* (outer) oneDNN statistics when not written to outputs */
    dnnl_primitive_t prim;
    int training;               /* primitive computes mean and variance */
    dnnl_memory_t src, dst, scale, shift, mmean, mvar;
} lnorm_state;

static const int ln_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

/* Checks that v (Scale or B) broadcasts onto the normalized dims without enlarging X; sets
 * its shape right-aligned to them in d and whether it needs expanding. */
static otl_status check_param(otl_kctx *k, lnorm_state *s, int i, int64_t *d, int *expand)
{
    const otl_rt *v = k->in[i];
    if (v->dtype != k->in[0]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has dtype %s, X has %s", i, v->name,
                         otl_dtype_name(v->dtype), otl_dtype_name(k->in[0]->dtype));
    for (int j = 0; j < s->nd; j++)
        d[j] = 1;
    for (int j = 0; j < v->rank; j++) {
        int t = s->nd - v->rank + j; /* normalized dim this one aligns with */
        if (t < 0) {
            if (v->dims[j] != 1)
                return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s' broadcasts over the non-normalized axes of X; only shapes broadcastable to X.shape[axis:] are supported",
                                 i, v->name);
            continue;
        }
        if (v->dims[j] != s->xd[t] && v->dims[j] != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s': dimension %d (%lld) does not broadcast to %lld",
                             i, v->name, j, (long long)v->dims[j], (long long)s->xd[t]);
        d[t] = v->dims[j];
    }
    *expand = v->numel != s->D;
    return OTL_OK;
}

static otl_status lnorm_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, ln_types)) || (st = otl_check_in(k, 1, ln_types)))
        return st;
    const otl_rt *x = k->in[0];
    lnorm_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int64_t axis, stash;
    int a;
    if ((st = otl_attr_int(k, "axis", -1, &axis)) || (st = otl_attr_float(k, "epsilon", 1e-5f, &s->eps)) ||
        (st = otl_attr_int(k, "stash_type", 1, &stash)))
        return st;
    if (stash != OTL_DTYPE_FLOAT && stash != OTL_DTYPE_DOUBLE)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "stash_type %lld is not supported (float32 or double only)", (long long)stash);
    s->stash = (int)stash;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' is a scalar", x->name);
    if ((st = otl_axis(k, axis, x->rank, &a)))
        return st;
    s->outer = s->D = 1;
    int64_t md[OTL_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        if (i < a) {
            s->outer *= x->dims[i];
        } else {
            s->D *= x->dims[i];
            s->xd[s->nd++] = x->dims[i];
        }
        md[i] = i < a ? x->dims[i] : 1;
    }
    if ((st = check_param(k, s, 1, s->sd, &s->expand_scale)))
        return st;
    if (otl_has_in(k, 2) && (st = check_param(k, s, 2, s->bd, &s->expand_bias)))
        return st;
    if ((st = otl_rt_like(k, k->out[0], x)))
        return st;
    if (otl_has_out(k, 1) && (st = otl_rt_set(k, k->out[1], s->stash, x->rank, md)))
        return st;
    if (otl_has_out(k, 2) && (st = otl_rt_set(k, k->out[2], s->stash, x->rank, md)))
        return st;
    return OTL_OK;
}

static int use_dnnl(const otl_kctx *k)
{
    const lnorm_state *s = k->state;
    return k->in[0]->dtype == OTL_DTYPE_FLOAT && s->stash == OTL_DTYPE_FLOAT && s->outer > 0 && s->D > 0;
}

static otl_status lnorm_prepare(otl_kctx *k)
{
    lnorm_state *s = k->state;
    if (!use_dnnl(k) || s->prim)
        return OTL_OK;
    otl_status st;
    s->training = otl_has_out(k, 1) || otl_has_out(k, 2);
    if (s->expand_scale && !(s->sbuf = malloc((size_t)s->D * sizeof *s->sbuf)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    if (s->expand_bias && !(s->bbuf = malloc((size_t)s->D * sizeof *s->bbuf)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    if (s->training && (!(s->mean = malloc((size_t)s->outer * sizeof *s->mean)) ||
                        !(s->var = malloc((size_t)s->outer * sizeof *s->var))))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    dnnl_dims_t dd = {s->outer, s->D}, sd = {s->outer}, pd1 = {s->D};
    dnnl_memory_desc_t mdd, mds, mdp;
    if ((st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mdd, 2, dd, dnnl_f32, dnnl_ab), "layer norm memory")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mds, 1, sd, dnnl_f32, dnnl_a), "layer norm memory")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mdp, 1, pd1, dnnl_f32, dnnl_a), "layer norm memory")))
        return st;
    unsigned flags = dnnl_use_scale | (otl_has_in(k, 2) ? dnnl_use_shift : 0);
    dnnl_layer_normalization_desc_t d;
    dnnl_primitive_desc_t pd;
    if ((st = otl_dnnl_check(k, dnnl_layer_normalization_forward_desc_init(&d, s->training ? dnnl_forward_training : dnnl_forward_inference,
                                                                           &mdd, &mds, s->eps, flags), "layer norm")))
        return st;
    if ((st = otl_dnnl_check(k, dnnl_primitive_desc_create(&pd, &d, NULL, k->eng->eng, NULL), "layer norm")))
        return st;
    st = otl_dnnl_check(k, dnnl_primitive_create(&s->prim, pd), "layer norm");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, &mdd, NULL, &s->src)) || (st = otl_dnnl_memory(k, &mdd, NULL, &s->dst)) ||
        (st = otl_dnnl_memory(k, &mdp, NULL, &s->scale)) || (st = otl_dnnl_memory(k, &mdp, NULL, &s->shift)))
        return st;
    if (s->training && ((st = otl_dnnl_memory(k, &mds, NULL, &s->mmean)) || (st = otl_dnnl_memory(k, &mds, NULL, &s->mvar))))
        return st;
    return OTL_OK;
}

/* v (shape d right-aligned to the normalized dims xd) broadcast into buf (D). */
static void expand_param(double *dbuf, float *fbuf, const otl_rt *v, const lnorm_state *s, const int64_t *d)
{
    for (int64_t i = 0; i < s->D; i++) {
        int64_t rem = i, off = 0, st = 1;
        for (int j = s->nd - 1; j >= 0; j--) {
            int64_t c = rem % s->xd[j];
            rem /= s->xd[j];
            off += (d[j] == 1 ? 0 : c) * st;
            st *= d[j];
        }
        double val = otl_get_f(v->data, v->dtype, off);
        if (dbuf)
            dbuf[i] = val;
        else
            fbuf[i] = (float)val;
    }
}

/* y = (x - mean) / sqrt(var + eps) * scale + bias over rows of D, statistics in double. */
#define LNORM_FORWARD(NAME, T)                                                                    \
    static void NAME(T *y, double *mean, double *rstd, const T *x, const double *scale,           \
                     const double *bias, int64_t outer, int64_t D, double eps)                    \
    {                                                                                             \
        _Pragma("omp parallel for if (outer * D > 32768)")                                        \
        for (int64_t r = 0; r < outer; r++) {                                                     \
            const T *xr = x + r * D;                                                              \
            T *yr = y + r * D;                                                                    \
            double m = 0, v = 0;                                                                  \
            for (int64_t i = 0; i < D; i++)                                                       \
                m += xr[i];                                                                       \
            m /= (double)D;                                                                       \
            for (int64_t i = 0; i < D; i++)                                                       \
                v += ((double)xr[i] - m) * ((double)xr[i] - m);                                   \
            v /= (double)D;                                                                       \
            double rs = 1.0 / sqrt(v + eps);                                                      \
            for (int64_t i = 0; i < D; i++)                                                       \
                yr[i] = (T)(((double)xr[i] - m) * rs * scale[i] + (bias ? bias[i] : 0.0));        \
            mean[r] = m;                                                                          \
            rstd[r] = rs;                                                                         \
        }                                                                                         \
    }

LNORM_FORWARD(lnorm_forward_f32, float)
LNORM_FORWARD(lnorm_forward_f64, double)

static otl_status lnorm_forward_c(otl_kctx *k)
{
    lnorm_state *s = k->state;
    int has_b = otl_has_in(k, 2);
    size_t n = (size_t)(2 * s->D + 2 * s->outer);
    double *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    double *scale = buf, *bias = buf + s->D, *mean = buf + 2 * s->D, *rstd = mean + s->outer;
    expand_param(scale, NULL, k->in[1], s, s->sd);
    if (has_b)
        expand_param(bias, NULL, k->in[2], s, s->bd);
    if (k->in[0]->dtype == OTL_DTYPE_FLOAT)
        lnorm_forward_f32(k->out[0]->data, mean, rstd, k->in[0]->data, scale, has_b ? bias : NULL, s->outer, s->D, s->eps);
    else
        lnorm_forward_f64(k->out[0]->data, mean, rstd, k->in[0]->data, scale, has_b ? bias : NULL, s->outer, s->D, s->eps);
    for (int64_t r = 0; r < s->outer; r++) {
        if (otl_has_out(k, 1))
            otl_set_f(k->out[1]->data, s->stash, r, mean[r]);
        if (otl_has_out(k, 2))
            otl_set_f(k->out[2]->data, s->stash, r, rstd[r]);
    }
    free(buf);
    return OTL_OK;
}

static otl_status lnorm_forward(otl_kctx *k)
{
    lnorm_state *s = k->state;
    if (k->in[0]->numel == 0)
        return OTL_OK;
    if (!use_dnnl(k))
        return lnorm_forward_c(k);
    void *scale = k->in[1]->data, *shift = otl_has_in(k, 2) ? k->in[2]->data : NULL;
    if (s->expand_scale) {
        expand_param(NULL, s->sbuf, k->in[1], s, s->sd);
        scale = s->sbuf;
    }
    if (shift && s->expand_bias) {
        expand_param(NULL, s->bbuf, k->in[2], s, s->bd);
        shift = s->bbuf;
    }
    float *mean = otl_has_out(k, 1) ? k->out[1]->data : s->mean;
    dnnl_memory_set_data_handle(s->src, k->in[0]->data);
    dnnl_memory_set_data_handle(s->dst, k->out[0]->data);
    dnnl_memory_set_data_handle(s->scale, scale);
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}, {DNNL_ARG_SCALE, s->scale}};
    int n = 3;
    if (shift) {
        dnnl_memory_set_data_handle(s->shift, shift);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, s->shift};
    }
    if (s->training) {
        dnnl_memory_set_data_handle(s->mmean, mean);
        dnnl_memory_set_data_handle(s->mvar, s->var);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, s->mmean};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, s->mvar};
    }
    otl_status st = otl_dnnl_run(k, s->prim, n, args);
    if (st)
        return st;
    if (otl_has_out(k, 2)) {
        float *rstd = k->out[2]->data;
        for (int64_t r = 0; r < s->outer; r++)
            rstd[r] = 1.0f / sqrtf(s->var[r] + s->eps);
    }
    return OTL_OK;
}

static void lnorm_release(otl_kctx *k)
{
    lnorm_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    dnnl_memory_t mems[6] = {s->src, s->dst, s->scale, s->shift, s->mmean, s->mvar};
    for (int i = 0; i < 6; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(s->sbuf);
    free(s->bbuf);
    free(s->mean);
    free(s->var);
}

const otl_op otl_op_LayerNormalization = {
    .op_type = "LayerNormalization", .domain = "", .since = 17, .until = 22,
    .infer = lnorm_infer, .prepare = lnorm_prepare, .forward = lnorm_forward, .release = lnorm_release,
};
