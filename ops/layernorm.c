/* layernorm.c - LayerNormalization (opset 17): X normalized over its trailing dims from `axis`
 * (flattened into one of size D), then scaled and shifted; optional Mean and InvStdDev outputs.
 * float32 on oneDNN's layer_normalization primitive; double (or stash_type double) in C.
 * Differentiable inputs: X, Scale, B. Reverse mode: the private kernel
 *   onnx_tl.LayerNormalizationGrad(dY, X, Scale, Shape(B), dMean, dInvStdDev) -> (dX, dScale, dB)
 * with the forward's attributes; every input but X and Scale and every output optional (dMean
 * and dInvStdDev: gradients reaching the forward's optional statistics outputs). The row
 * statistics are recomputed from X (one pass over a row that the backward reads anyway), so
 * that the forward keeps only X alive and need not emit Mean/InvStdDev. float32 runs on
 * oneDNN's layer_normalization backward primitive (the forward_training pd as hint); double,
 * stash_type double and gradients through Mean/InvStdDev in C (sums in double). dScale and dB
 * come out in Scale's and B's own shapes (summed over the positions they were broadcast to). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
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
static otl_status check_param(otl_kctx *k, lnorm_state *s, int i, const otl_rt *v, int dt, int64_t *d, int *expand)
{
    if (v->dtype != dt)
        return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has dtype %s, X has %s", i, v->name,
                         otl_dtype_name(v->dtype), otl_dtype_name(dt));
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

/* Attributes and the (outer, D) view of X = in[xi]; the shape of the statistics into md. */
static otl_status lnorm_geometry(otl_kctx *k, lnorm_state *s, int xi, int64_t *md)
{
    const otl_rt *x = k->in[xi];
    int64_t axis, stash;
    int a;
    otl_status st;
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
    for (int i = 0; i < x->rank; i++) {
        if (i < a) {
            s->outer *= x->dims[i];
        } else {
            s->D *= x->dims[i];
            s->xd[s->nd++] = x->dims[i];
        }
        md[i] = i < a ? x->dims[i] : 1;
    }
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
    int64_t md[OTL_MAX_RANK];
    if ((st = lnorm_geometry(k, s, 0, md)))
        return st;
    if ((st = check_param(k, s, 1, k->in[1], x->dtype, s->sd, &s->expand_scale)))
        return st;
    if (otl_has_in(k, 2) && (st = check_param(k, s, 2, k->in[2], x->dtype, s->bd, &s->expand_bias)))
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
    if ((st = otl_dnnl_check(k, otl_pd_create(&pd, &d, NULL, k->eng->eng, NULL), "layer norm")))
        return st;
    st = otl_dnnl_primitive(k, pd, &s->prim, "layer norm");
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

/* ================================================================ reverse mode */

typedef struct lng_state {
    lnorm_state g;              /* geometry, epsilon, stash type, Scale/B shapes (g.sd, g.bd) */
    int has_b;                  /* Shape(B) given: dB wanted */
    int use_dnnl;
    dnnl_primitive_t prim;
    int full;                   /* prop dnnl_backward (diff scale/shift), else backward_data */
    int shift;                  /* dnnl_use_shift (dB wanted) */
    dnnl_memory_t src, ddst, dsrc, mmean, mvar, scale, dscale, dshift;
    float *mean, *var;          /* (outer) recomputed statistics */
    float *sbuf;                /* (D) expanded Scale */
    float *dsbuf, *dbbuf;       /* (D) diff scale/shift when not written to the outputs */
    float *zshift;              /* (D) zeros: oneDNN takes a SHIFT argument with use_shift, unused */
    dnnl_memory_t mshift;
} lng_state;

static otl_status lng_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 1, ln_types)) || (st = otl_check_in(k, 2, ln_types)))
        return st;
    const otl_rt *x = k->in[1];
    lng_state *g = calloc(1, sizeof *g);
    if (!g)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = g;
    lnorm_state *s = &g->g;
    int64_t md[OTL_MAX_RANK];
    if ((st = lnorm_geometry(k, s, 1, md)) ||
        (st = check_param(k, s, 2, k->in[2], x->dtype, s->sd, &s->expand_scale)))
        return st;
    otl_rt bv = {.name = "B", .dtype = x->dtype, .numel = 1};
    if (otl_has_in(k, 3)) {
        int n;
        if ((st = otl_const_ints(k, 3, bv.dims, OTL_MAX_RANK, &n)))
            return st;
        bv.rank = n;
        for (int i = 0; i < n; i++)
            bv.numel *= bv.dims[i];
        if ((st = check_param(k, s, 3, &bv, x->dtype, s->bd, &s->expand_bias)))
            return st;
        g->has_b = 1;
    }
    if (otl_has_in(k, 0)) {
        const otl_rt *dy = k->in[0];
        int same = dy->dtype == x->dtype && dy->rank == x->rank;
        for (int i = 0; same && i < x->rank; i++)
            same = dy->dims[i] == x->dims[i];
        if (!same)
            return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' differs from X '%s' in shape or dtype", dy->name, x->name);
    }
    for (int i = 4; i < 6; i++)
        if (otl_has_in(k, i) && (k->in[i]->dtype != s->stash || k->in[i]->numel != s->outer))
            return otl_kfail(k, OTL_ERR_INPUT, "statistics gradient '%s' must hold %lld values of dtype %s",
                             k->in[i]->name, (long long)s->outer, otl_dtype_name(s->stash));
    if (otl_has_out(k, 0) && (st = otl_rt_like(k, k->out[0], x)))
        return st;
    if (otl_has_out(k, 1) && (st = otl_rt_like(k, k->out[1], k->in[2])))
        return st;
    if (otl_has_out(k, 2)) {
        if (!g->has_b)
            return otl_kfail(k, OTL_ERR_INPUT, "dB is requested but Shape(B) (input 3) is missing");
        if ((st = otl_rt_set(k, k->out[2], x->dtype, bv.rank, bv.dims)))
            return st;
    }
    g->use_dnnl = x->dtype == OTL_DTYPE_FLOAT && s->stash == OTL_DTYPE_FLOAT && s->outer > 0 && s->D > 0 &&
                  otl_has_in(k, 0) && otl_has_out(k, 0) && !otl_has_in(k, 4) && !otl_has_in(k, 5);
    return OTL_OK;
}

static otl_status lng_prepare(otl_kctx *k)
{
    lng_state *g = k->state;
    lnorm_state *s = &g->g;
    if (!g->use_dnnl || g->prim)
        return OTL_OK;
    int want_ds = otl_has_out(k, 1), want_db = otl_has_out(k, 2);
    g->full = 1; /* oneDNN 2.6 has no backward_data with a scale: diff scale into scratch if unwanted */
    g->shift = want_db;
    dnnl_dims_t dd = {s->outer, s->D}, sd = {s->outer}, pd1 = {s->D};
    dnnl_memory_desc_t mdd, mds, mdp;
    otl_status st;
    if ((st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mdd, 2, dd, dnnl_f32, dnnl_ab), "layer norm memory")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mds, 1, sd, dnnl_f32, dnnl_a), "layer norm memory")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&mdp, 1, pd1, dnnl_f32, dnnl_a), "layer norm memory")))
        return st;
    unsigned flags = dnnl_use_scale | (g->shift ? dnnl_use_shift : 0);
    dnnl_layer_normalization_desc_t fd, bd;
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    st = otl_dnnl_check(k, dnnl_layer_normalization_forward_desc_init(&fd, dnnl_forward_training, &mdd, &mds, s->eps, flags),
                        "layer norm");
    if (!st)
        st = otl_dnnl_check(k, otl_pd_create(&hint, &fd, NULL, k->eng->eng, NULL), "layer norm");
    if (!st)
        st = otl_dnnl_check(k, dnnl_layer_normalization_backward_desc_init(&bd, g->full ? dnnl_backward : dnnl_backward_data,
                                                                           &mdd, &mdd, &mds, s->eps, flags),
                            "layer norm backward");
    if (!st)
        st = otl_dnnl_check(k, otl_pd_create(&pd, &bd, NULL, k->eng->eng, hint), "layer norm backward");
    const char *impl = NULL;
    int ref = !st && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
              strncmp(impl, "ref", 3) == 0;
    if (!st && !ref)
        st = otl_dnnl_primitive(k, pd, &g->prim, "layer norm backward");
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    if (st || ref) { /* the C loops (oneDNN's reference kernel is slower) */
        g->use_dnnl = 0;
        return st;
    }
    if ((st = otl_dnnl_memory(k, &mdd, NULL, &g->src)) || (st = otl_dnnl_memory(k, &mdd, NULL, &g->ddst)) ||
        (st = otl_dnnl_memory(k, &mdd, NULL, &g->dsrc)) || (st = otl_dnnl_memory(k, &mds, NULL, &g->mmean)) ||
        (st = otl_dnnl_memory(k, &mds, NULL, &g->mvar)) || (st = otl_dnnl_memory(k, &mdp, NULL, &g->scale)))
        return st;
    if (g->full && (st = otl_dnnl_memory(k, &mdp, NULL, &g->dscale)))
        return st;
    if (g->shift && ((st = otl_dnnl_memory(k, &mdp, NULL, &g->dshift)) || (st = otl_dnnl_memory(k, &mdp, NULL, &g->mshift))))
        return st;
    size_t D = (size_t)s->D;
    if (!(g->mean = malloc((size_t)s->outer * sizeof *g->mean)) || !(g->var = malloc((size_t)s->outer * sizeof *g->var)) ||
        (s->expand_scale && !(g->sbuf = malloc(D * sizeof *g->sbuf))) ||
        (g->full && (s->expand_scale || !want_ds) && !(g->dsbuf = malloc(D * sizeof *g->dsbuf))) ||
        (g->shift && s->expand_bias && !(g->dbbuf = malloc(D * sizeof *g->dbbuf))) ||
        (g->shift && !(g->zshift = calloc(D, sizeof *g->zshift))))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    return OTL_OK;
}

/* v (Scale's or B's shape d) = full (D) summed over the positions v was broadcast to. */
static void reduce_param(otl_rt *v, const double *full, const lnorm_state *s, const int64_t *d)
{
    double *acc = calloc((size_t)(v->numel ? v->numel : 1), sizeof *acc);
    if (acc) {
        for (int64_t i = 0; i < s->D; i++) {
            int64_t rem = i, off = 0, st = 1;
            for (int j = s->nd - 1; j >= 0; j--) {
                int64_t c = rem % s->xd[j];
                rem /= s->xd[j];
                off += (d[j] == 1 ? 0 : c) * st;
                st *= d[j];
            }
            acc[off] += full[i];
        }
        for (int64_t i = 0; i < v->numel; i++)
            otl_set_f(v->data, v->dtype, i, acc[i]);
    }
    free(acc);
}

/* Per row r of x (outer, D): mean[r], rstd[r] and, when dx, dX from dY (NULL: zero), Scale
 * (expanded, double) and the statistics' gradients dmean/drstd (NULL: none), in double:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) + dmean / D - drstd * rstd^2 * xhat / D,
 * g = dy * scale, xhat = (x - mean) * rstd. */
#define LNG_ROWS(NAME, T)                                                                         \
    static void NAME(T *dx, double *mean, double *rstd, const T *dy, const T *x, const double *scale, \
                     const double *dmean, const double *drstd, int64_t outer, int64_t D, double eps) \
    {                                                                                             \
        _Pragma("omp parallel for if (outer * D > 32768)")                                        \
        for (int64_t r = 0; r < outer; r++) {                                                     \
            const T *xr = x + r * D;                                                              \
            double m = 0, v = 0;                                                                  \
            _Pragma("omp simd reduction(+:m)")                                                    \
            for (int64_t i = 0; i < D; i++)                                                       \
                m += xr[i];                                                                       \
            m /= (double)D;                                                                       \
            _Pragma("omp simd reduction(+:v)")                                                    \
            for (int64_t i = 0; i < D; i++)                                                       \
                v += ((double)xr[i] - m) * ((double)xr[i] - m);                                   \
            v /= (double)D;                                                                       \
            double rs = 1.0 / sqrt(v + eps);                                                      \
            mean[r] = m;                                                                          \
            rstd[r] = rs;                                                                         \
            if (!dx)                                                                              \
                continue;                                                                         \
            const T *gr = dy ? dy + r * D : NULL;                                                 \
            double mg = 0, mgx = 0;                                                               \
            if (gr) {                                                                             \
                _Pragma("omp simd reduction(+:mg, mgx)")                                          \
                for (int64_t i = 0; i < D; i++) {                                                 \
                    double gi = gr[i] * scale[i];                                                 \
                    mg += gi;                                                                     \
                    mgx += gi * ((double)xr[i] - m) * rs;                                         \
                }                                                                                 \
            }                                                                                     \
            mg /= (double)D;                                                                      \
            mgx /= (double)D;                                                                     \
            double cm = dmean ? dmean[r] / (double)D : 0.0;                                       \
            double cr = drstd ? drstd[r] * rs * rs / (double)D : 0.0;                             \
            T *dxr = dx + r * D;                                                                  \
            for (int64_t i = 0; i < D; i++) {                                                     \
                double xh = ((double)xr[i] - m) * rs, gi = gr ? gr[i] * scale[i] : 0.0;          \
                dxr[i] = (T)(rs * (gi - mg - xh * mgx) + cm - cr * xh);                           \
            }                                                                                     \
        }                                                                                         \
    }

/* dscale[j] = sum_r dy[r, j] * xhat[r, j], db[j] = sum_r dy[r, j] (either may be NULL), over
 * blocks of columns so that threads never share an accumulator. */
#define LNG_PARAMS(NAME, T)                                                                       \
    static void NAME(double *dscale, double *db, const T *dy, const T *x, const double *mean,      \
                     const double *rstd, int64_t outer, int64_t D)                                \
    {                                                                                             \
        int64_t nblk = (D + 63) / 64;                                                             \
        _Pragma("omp parallel for if (outer * D > 32768)")                                        \
        for (int64_t b = 0; b < nblk; b++) {                                                      \
            int64_t j0 = b * 64, j1 = j0 + 64 < D ? j0 + 64 : D;                                  \
            for (int64_t j = j0; j < j1; j++) {                                                   \
                if (dscale)                                                                       \
                    dscale[j] = 0;                                                                \
                if (db)                                                                           \
                    db[j] = 0;                                                                    \
            }                                                                                     \
            for (int64_t r = 0; r < outer; r++) {                                                 \
                const T *gr = dy + r * D, *xr = x + r * D;                                        \
                for (int64_t j = j0; j < j1; j++) {                                               \
                    if (dscale)                                                                   \
                        dscale[j] += gr[j] * ((double)xr[j] - mean[r]) * rstd[r];                 \
                    if (db)                                                                       \
                        db[j] += gr[j];                                                           \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

LNG_ROWS(lng_rows_f32, float)
LNG_ROWS(lng_rows_f64, double)
LNG_PARAMS(lng_params_f32, float)
LNG_PARAMS(lng_params_f64, double)

/* Write a (D) parameter gradient into output v of shape d (reduced when Scale/B broadcast). */
static void put_param(otl_rt *v, const double *full, const lnorm_state *s, const int64_t *d, int expand)
{
    if (expand) {
        reduce_param(v, full, s, d);
        return;
    }
    for (int64_t i = 0; i < s->D; i++)
        otl_set_f(v->data, v->dtype, i, full[i]);
}

static otl_status lng_forward_c(otl_kctx *k)
{
    lng_state *g = k->state;
    lnorm_state *s = &g->g;
    const otl_rt *x = k->in[1];
    const void *dy = otl_has_in(k, 0) ? k->in[0]->data : NULL;
    int64_t O = s->outer, D = s->D;
    size_t n = (size_t)(3 * D + 4 * O);
    double *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    double *scale = buf, *dscale = buf + D, *db = dscale + D, *mean = db + D, *rstd = mean + O;
    double *dmean = otl_has_in(k, 4) ? rstd + O : NULL, *drstd = otl_has_in(k, 5) ? rstd + 2 * O : NULL;
    for (int64_t r = 0; r < O; r++) {
        if (dmean)
            dmean[r] = otl_get_f(k->in[4]->data, k->in[4]->dtype, r);
        if (drstd)
            drstd[r] = otl_get_f(k->in[5]->data, k->in[5]->dtype, r);
    }
    expand_param(scale, NULL, k->in[2], s, s->sd);
    void *dx = otl_has_out(k, 0) ? k->out[0]->data : NULL;
    int f32 = x->dtype == OTL_DTYPE_FLOAT;
    if (f32)
        lng_rows_f32(dx, mean, rstd, dy, x->data, scale, dmean, drstd, O, D, s->eps);
    else
        lng_rows_f64(dx, mean, rstd, dy, x->data, scale, dmean, drstd, O, D, s->eps);
    int want_ds = otl_has_out(k, 1), want_db = otl_has_out(k, 2);
    if ((want_ds || want_db) && dy) {
        if (f32)
            lng_params_f32(want_ds ? dscale : NULL, want_db ? db : NULL, dy, x->data, mean, rstd, O, D);
        else
            lng_params_f64(want_ds ? dscale : NULL, want_db ? db : NULL, dy, x->data, mean, rstd, O, D);
    } else {
        memset(dscale, 0, 2 * (size_t)D * sizeof *dscale);
    }
    if (want_ds)
        put_param(k->out[1], dscale, s, s->sd, s->expand_scale);
    if (want_db)
        put_param(k->out[2], db, s, s->bd, s->expand_bias);
    free(buf);
    return OTL_OK;
}

/* Statistics of the rows of x (outer, D) as oneDNN takes them: mean and biased variance, two
 * passes in float like oneDNN's own forward (vectorized sums; a double loop costs as much as
 * the whole oneDNN backward). */
static void lng_stats_f32(float *mean, float *var, const float *x, int64_t outer, int64_t D)
{
    #pragma omp parallel for if (outer * D > 32768)
    for (int64_t r = 0; r < outer; r++) {
        const float *xr = x + r * D;
        float m = 0, v = 0;
        #pragma omp simd reduction(+:m)
        for (int64_t i = 0; i < D; i++)
            m += xr[i];
        m /= (float)D;
        #pragma omp simd reduction(+:v)
        for (int64_t i = 0; i < D; i++)
            v += (xr[i] - m) * (xr[i] - m);
        mean[r] = m;
        var[r] = v / (float)D;
    }
}

/* A float (D) buffer summed into output v of shape d. */
static otl_status put_param_f32(otl_kctx *k, otl_rt *v, const float *full, const lnorm_state *s, const int64_t *d)
{
    double *tmp = malloc((size_t)s->D * sizeof *tmp);
    if (!tmp)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < s->D; i++)
        tmp[i] = full[i];
    reduce_param(v, tmp, s, d);
    free(tmp);
    return OTL_OK;
}

static otl_status lng_forward(otl_kctx *k)
{
    lng_state *g = k->state;
    lnorm_state *s = &g->g;
    if (s->outer == 0 || s->D == 0) { /* no rows: zero parameter gradients */
        for (int i = 1; i < 3; i++)
            if (otl_has_out(k, i) && k->out[i]->nbytes)
                memset(k->out[i]->data, 0, k->out[i]->nbytes);
        return OTL_OK;
    }
    if (!g->use_dnnl)
        return lng_forward_c(k);
    const float *x = k->in[1]->data;
    lng_stats_f32(g->mean, g->var, x, s->outer, s->D);
    void *scale = k->in[2]->data;
    if (s->expand_scale) {
        expand_param(NULL, g->sbuf, k->in[2], s, s->sd);
        scale = g->sbuf;
    }
    float *ds = g->dsbuf ? g->dsbuf : otl_has_out(k, 1) ? k->out[1]->data : NULL;
    float *db = g->dbbuf ? g->dbbuf : otl_has_out(k, 2) ? k->out[2]->data : NULL;
    dnnl_memory_set_data_handle(g->src, (void *)x);
    dnnl_memory_set_data_handle(g->ddst, k->in[0]->data);
    dnnl_memory_set_data_handle(g->dsrc, k->out[0]->data);
    dnnl_memory_set_data_handle(g->mmean, g->mean);
    dnnl_memory_set_data_handle(g->mvar, g->var);
    dnnl_memory_set_data_handle(g->scale, scale);
    dnnl_exec_arg_t args[9] = {{DNNL_ARG_SRC, g->src}, {DNNL_ARG_DIFF_DST, g->ddst}, {DNNL_ARG_DIFF_SRC, g->dsrc},
                               {DNNL_ARG_MEAN, g->mmean}, {DNNL_ARG_VARIANCE, g->mvar}, {DNNL_ARG_SCALE, g->scale}};
    int n = 6;
    if (g->full) {
        dnnl_memory_set_data_handle(g->dscale, ds);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, g->dscale};
    }
    if (g->shift) {
        dnnl_memory_set_data_handle(g->dshift, db);
        dnnl_memory_set_data_handle(g->mshift, g->zshift);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, g->dshift};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, g->mshift};
    }
    otl_status st = otl_dnnl_run(k, g->prim, n, args);
    if (!st && otl_has_out(k, 1) && s->expand_scale)
        st = put_param_f32(k, k->out[1], g->dsbuf, s, s->sd);
    if (!st && otl_has_out(k, 2) && s->expand_bias)
        st = put_param_f32(k, k->out[2], g->dbbuf, s, s->bd);
    return st;
}

static void lng_release(otl_kctx *k)
{
    lng_state *g = k->state;
    if (!g)
        return;
    if (g->prim)
        dnnl_primitive_destroy(g->prim);
    dnnl_memory_t mems[9] = {g->src, g->ddst, g->dsrc, g->mmean, g->mvar, g->scale, g->dscale, g->dshift, g->mshift};
    for (int i = 0; i < 9; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(g->mean);
    free(g->var);
    free(g->sbuf);
    free(g->dsbuf);
    free(g->dbbuf);
    free(g->zshift);
}

/* dX, dScale, dB = LayerNormalizationGrad(dY, X, Scale, Shape(B), dMean, dInvStdDev). */
static otl_status lnorm_grad(otl_gctx *c)
{
    const otl_node *n = c->node;
    const char *dy = c->dy[0], *dm = c->n_out > 1 ? c->dy[1] : NULL, *dr = c->n_out > 2 ? c->dy[2] : NULL;
    int need_b = c->n_in > 2 && *n->inputs[2] && c->need[2];
    const char *sb = "", *b = need_b ? n->inputs[2] : "";
    if (need_b && !(sb = otl_gemit1(c, "", "Shape", 1, &b, NULL)))
        return OTL_OK; /* failure recorded */
    const char *in[6] = {dy ? dy : "", n->inputs[0], n->inputs[1], sb, dm ? dm : "", dr ? dr : ""};
    int n_in = 6;
    while (n_in > 3 && !*in[n_in - 1])
        n_in--;
    const char *out[3] = {c->need[0] ? otl_gname(c, n->inputs[0]) : "", c->need[1] ? otl_gname(c, n->inputs[1]) : "",
                          need_b ? otl_gname(c, n->inputs[2]) : ""};
    int n_out = 3;
    while (n_out > 1 && !*out[n_out - 1])
        n_out--;
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "LayerNormalizationGrad", n_in, in, n_out, out);
    otl_status st = g ? otl_gattr_copy(c, g) : OTL_OK;
    for (int i = 0; i < 3 && !st; i++)
        if (*out[i])
            otl_grad_set(c, i, g ? out[i] : NULL);
    return st;
}

const otl_op otl_op_LayerNormalization = {
    .op_type = "LayerNormalization", .domain = "", .since = 17, .until = 22,
    .infer = lnorm_infer, .prepare = lnorm_prepare, .forward = lnorm_forward, .release = lnorm_release,
    .grad_inputs = 7, .grad = lnorm_grad,
};

const otl_op otl_op_LayerNormalizationGrad = {
    .op_type = "LayerNormalizationGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = lng_infer, .prepare = lng_prepare, .forward = lng_forward, .release = lng_release,
};
