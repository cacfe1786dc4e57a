/* pool.c - MaxPool (optional Indices), AveragePool, GlobalAveragePool, GlobalMaxPool, MaxUnpool,
 * and the backward kernels of the first four (private ops MaxPoolGrad(dY, X),
 * AveragePoolGrad(dY, Shape(X)), GlobalMaxPoolGrad(dY, X), GlobalAveragePoolGrad(dY, Shape(X))).
 * float32 windows run on oneDNN pooling where it matches ONNX exactly; other dtypes, Indices,
 * dilated averages and ceil_mode windows counted with padding use the plain C kernels below.
 * Max pooling's backward needs oneDNN's workspace (the argmax of each window): the backward op
 * recomputes it by running forward_training on X into scratch, rather than making the forward
 * node emit it, so the forward graph stays standard ONNX (X is kept alive instead; it usually is
 * anyway, for the gradient of the activation before the pool).
 * Differentiable input: X. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/nn_common.h"

enum { POOL_MAX, POOL_AVG };

static otl_status pool_grad(otl_gctx *c);

typedef struct pool_state {
    int kind;                   /* POOL_MAX / POOL_AVG */
    int count_include_pad;
    int storage_order;
    nn_geom g;
    int64_t pr_dnnl[NN_MAX_SP];
    int use_dnnl;
    dnnl_primitive_desc_t pd;   /* made in infer: the output layout is the primitive's choice */
    dnnl_primitive_t prim;
    nn_port src, dst;           /* oneDNN path; for the C kernel src converts a blocked input */
    dnnl_memory_t ws;           /* max pooling backward: the recomputed workspace (scratch) */
    size_t scratch_bytes;
    int reserved;
    /* backward ops */
    int global;
    nn_port dy, dx;             /* (src: X of max pooling) */
    dnnl_primitive_desc_t fwd_pd; /* max: forward_training that recomputes the workspace */
    dnnl_primitive_t fwd_prim;
    dnnl_memory_t fwd_dst;      /* in the shared scratch */
    size_t fwd_dst_off, ws_off;
} pool_state;

/* ---------------------------------------------------------------- C kernel */

static double dtype_lowest(int dtype)
{
    switch (dtype) {
    case OTL_DTYPE_UINT8: return 0;
    case OTL_DTYPE_INT8: return -128;
    default: return -INFINITY;
    }
}

/* out: (N, C, out...) ; indices: same shape or NULL ; inp: (N, C, in...) of `dtype`.
 * Max: the first largest element of the window (dilated, padding skipped). Average: sum over the
 * window's elements inside the input divided by their count, or with count_include_pad by the
 * count of window positions inside the padded input [-pl, in + pr). */
static void pool_forward_ref(void *out, int64_t *indices, const void *inp, int dtype, int64_t nc,
                             const nn_geom *g, int kind, int count_include_pad, int storage_order)
{
    int nsp = g->nsp;
    int64_t in_sz = 1, out_sz = 1, ksz = 1;
    for (int i = 0; i < nsp; i++) {
        in_sz *= g->in[i];
        out_sz *= g->out[i];
        ksz *= g->k[i];
    }
    double lowest = dtype_lowest(dtype);
#pragma omp parallel for schedule(static) if (nc * out_sz * ksz > 65536)
    for (int64_t p = 0; p < nc; p++) {
        for (int64_t o = 0; o < out_sz; o++) {
            int64_t oc[NN_MAX_SP], rem = o;
            for (int i = nsp - 1; i >= 0; i--) {
                oc[i] = rem % g->out[i];
                rem /= g->out[i];
            }
            double acc = kind == POOL_MAX ? lowest : 0.0;
            int64_t best = -1, count = 0, count_pad = 0;
            for (int64_t kk = 0; kk < ksz; kk++) {
                int64_t kc[NN_MAX_SP], r2 = kk, idx = 0, idx_cm = 0, stride_cm = 1;
                int inside = 1, inside_pad = 1;
                for (int i = nsp - 1; i >= 0; i--) {
                    kc[i] = r2 % g->k[i];
                    r2 /= g->k[i];
                }
                for (int i = 0; i < nsp; i++) {
                    int64_t x = oc[i] * g->s[i] - g->pl[i] + kc[i] * g->d[i];
                    if (x < 0 || x >= g->in[i])
                        inside = 0;
                    if (x < -g->pl[i] || x >= g->in[i] + g->pr[i])
                        inside_pad = 0;
                    idx = idx * g->in[i] + x;
                    idx_cm += x * stride_cm;
                    stride_cm *= g->in[i];
                }
                count_pad += inside_pad;
                if (!inside)
                    continue;
                double v = otl_get_f(inp, dtype, p * in_sz + idx);
                if (kind == POOL_MAX) {
                    if (best < 0 || v > acc || (isnan(v) && !isnan(acc))) {
                        acc = v;
                        best = storage_order ? idx_cm : idx;
                    }
                } else {
                    acc += v;
                    count++;
                }
            }
            if (kind == POOL_AVG)
                acc /= (double)(count_include_pad ? count_pad : count);
            otl_set_f(out, dtype, p * out_sz + o, acc);
            if (indices)
                indices[p * out_sz + o] = best < 0 ? -1 : p * in_sz + best;
        }
    }
}

/* ---------------------------------------------------------------- MaxPool / AveragePool */

/* The oneDNN pooling primitive descriptor (float32, when s->use_dnnl) and the output's layout:
 * the input's own layout (blocked or plain) carries through. Geometry oneDNN does not take
 * falls back to the C kernel, whose outputs are plain. */
static otl_status pool_make_pd(otl_kctx *k, pool_state *s, const int64_t *dims)
{
    const otl_rt *x = k->in[0];
    int64_t numel = 1;
    for (int i = 0; i < x->rank; i++)
        numel *= dims[i];
    if (numel == 0)
        s->use_dnnl = 0;
    if (s->use_dnnl) {
        dnnl_memory_desc_t x_md, y_md;
        otl_status st;
        if ((st = nn_md_src(k, x, 0, &x_md)) || (st = nn_md_dst(k, x->rank, dims, 1, &y_md)))
            return st;
        dnnl_dims_t strides, kernel, dil, pl, pr;
        for (int i = 0; i < s->g.nsp; i++) {
            strides[i] = s->g.s[i];
            kernel[i] = s->g.k[i];
            dil[i] = s->g.d[i] - 1;
            pl[i] = s->g.pl[i];
            pr[i] = s->pr_dnnl[i];
        }
        dnnl_alg_kind_t alg = s->kind == POOL_MAX ? dnnl_pooling_max
                              : s->count_include_pad ? dnnl_pooling_avg_include_padding
                                                     : dnnl_pooling_avg_exclude_padding;
        /* forward_inference in training sessions too: the backward recomputes the max
         * pooling workspace itself, so the forward keeps none */
        dnnl_prop_kind_t prop = dnnl_forward_inference;
        dnnl_pooling_v2_desc_t d;
        if (dnnl_pooling_v2_forward_desc_init(&d, prop, alg, &x_md, &y_md, strides, kernel, dil, pl, pr) == dnnl_success &&
            otl_pd_create(&s->pd, &d, NULL, k->eng->eng, NULL) == dnnl_success)
            return otl_rt_set_md(k, k->out[0], x->dtype, x->rank, dims,
                                 dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0));
        s->pd = NULL;
        s->use_dnnl = 0;
    }
    return otl_rt_set(k, k->out[0], x->dtype, x->rank, dims);
}

/* Attributes and window geometry of MaxPool / AveragePool over x (only its dtype and shape are
 * read): fills s (g, pr_dnnl, use_dnnl as far as the geometry goes) and the output dims. */
static otl_status pool_geom(otl_kctx *k, pool_state *s, const otl_rt *x, int64_t *dims)
{
    otl_status st;
    int kind = s->kind;
    if (x->rank < 3)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 3 (N, C, spatial...), got %d", x->name, x->rank);
    nn_geom *g = &s->g;
    g->nsp = x->rank - 2;
    int n;
    if ((st = otl_attr_ints(k, "kernel_shape", g->k, NN_MAX_SP, &n)))
        return st;
    if (n != g->nsp)
        return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape %s %d values, expected %d", n < 0 ? "is required:" : "has",
                         n < 0 ? 0 : n, g->nsp);
    for (int i = 0; i < n; i++)
        if (g->k[i] < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape must be >= 1, got %lld", (long long)g->k[i]);
    int64_t v;
    if ((st = nn_geom_attrs(k, g, 1)) || (st = otl_attr_int(k, "ceil_mode", 0, &v)))
        return st;
    g->ceil_mode = v != 0;
    if (kind == POOL_AVG) {
        if ((st = otl_attr_int(k, "count_include_pad", 0, &v)))
            return st;
        s->count_include_pad = v != 0;
    } else {
        if ((st = otl_attr_int(k, "storage_order", 0, &v)))
            return st;
        if (v != 0 && v != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "storage_order must be 0 or 1, got %lld", (long long)v);
        s->storage_order = (int)v;
    }
    for (int i = 0; i < g->nsp; i++)
        if (g->pl[i] >= nn_extent(g, i) || g->pr[i] >= nn_extent(g, i))
            return otl_kfail(k, OTL_ERR_INPUT, "pads (%lld, %lld) must be smaller than the kernel extent %lld",
                             (long long)g->pl[i], (long long)g->pr[i], (long long)nn_extent(g, i));
    if ((st = nn_geom_forward(k, g, x->dims + 2)))
        return st;
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    int ceil_extra = 0, dilated = 0;
    for (int i = 0; i < g->nsp; i++) {
        dims[2 + i] = g->out[i];
        int64_t pe = (g->out[i] - 1) * g->s[i] + nn_extent(g, i) - g->in[i] - g->pl[i];
        if (pe > g->pr[i])
            ceil_extra = 1;
        s->pr_dnnl[i] = pe < 0 ? 0 : pe;
        dilated |= g->d[i] != 1;
    }
    s->use_dnnl = x->dtype == OTL_DTYPE_FLOAT && g->nsp <= 3 &&
                  !(kind == POOL_AVG && (dilated || (s->count_include_pad && ceil_extra)));
    return OTL_OK;
}

static otl_status pool_infer_kind(otl_kctx *k, int kind)
{
    pool_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->kind = kind;
    static const int max_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_INT8,
                                    OTL_DTYPE_UINT8, 0};
    static const int avg_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, 0};
    otl_status st = otl_check_in(k, 0, kind == POOL_MAX ? max_types : avg_types);
    if (st)
        return st;
    const otl_rt *x = k->in[0];
    int64_t dims[OTL_MAX_RANK];
    if ((st = pool_geom(k, s, x, dims)))
        return st;
    if (otl_has_out(k, 1)) {
        if (kind != POOL_MAX)
            return otl_kfail(k, OTL_ERR_INPUT, "AveragePool has one output");
        if ((st = otl_rt_set(k, k->out[1], OTL_DTYPE_INT64, x->rank, dims)))
            return st;
        s->use_dnnl = 0;
    }
    return pool_make_pd(k, s, dims);
}

static otl_status maxpool_infer(otl_kctx *k)
{
    return pool_infer_kind(k, POOL_MAX);
}

static otl_status avgpool_infer(otl_kctx *k)
{
    return pool_infer_kind(k, POOL_AVG);
}

static otl_status pool_prepare(otl_kctx *k)
{
    pool_state *s = k->state;
    const otl_rt *x = k->in[0], *y = k->out[0];
    dnnl_memory_desc_t x_user, y_user, x_plain;
    otl_status st;
    if (y->numel == 0 || (!s->use_dnnl && !x->blocked))
        return OTL_OK;
    if ((st = otl_rt_md(k, x, &x_user)) || (st = otl_rt_md(k, y, &y_user)))
        return st;
    if (s->use_dnnl) {
        const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
        if ((st = nn_make_prim(k, s->pd, &s->prim, "pooling")) ||
            (st = nn_port_init(k, &s->src, &x_user, src_md, 0, &s->scratch_bytes)) ||
            (st = nn_port_init(k, &s->dst, &y_user, dst_md, 1, &s->scratch_bytes)))
            return st;
    } else if (x->blocked) { /* the C kernel reads plain data */
        if ((st = otl_md_plain(k, x, &x_plain)) || (st = nn_port_init(k, &s->src, &x_user, &x_plain, 0, &s->scratch_bytes)))
            return st;
    }
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status pool_forward(otl_kctx *k)
{
    pool_state *s = k->state;
    const otl_rt *x = k->in[0], *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    otl_status st;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!s->use_dnnl) {
        const void *xd = x->data;
        if (!x->blocked || !(st = nn_port_bind(k, &s->src, x->data, scratch))) {
            if (x->blocked)
                xd = (char *)scratch + s->src.scratch_off;
            pool_forward_ref(y->data, otl_has_out(k, 1) ? k->out[1]->data : NULL, xd, x->dtype, x->dims[0] * x->dims[1],
                             &s->g, s->kind, s->count_include_pad, s->storage_order);
            st = OTL_OK;
        }
    } else if (!(st = nn_port_bind(k, &s->src, x->data, scratch)) && !(st = nn_port_bind(k, &s->dst, y->data, scratch))) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_DST, s->dst.prim}};
        st = otl_dnnl_run(k, s->prim, 2, args);
        if (!st)
            st = nn_port_finish(k, &s->dst);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

static void pool_release(otl_kctx *k)
{
    pool_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->pd)
        dnnl_primitive_desc_destroy(s->pd);
    nn_port_free(&s->src);
    nn_port_free(&s->dst);
    if (s->ws)
        dnnl_memory_destroy(s->ws);
    nn_port_free(&s->dy);
    nn_port_free(&s->dx);
    if (s->fwd_prim)
        dnnl_primitive_destroy(s->fwd_prim);
    if (s->fwd_pd)
        dnnl_primitive_desc_destroy(s->fwd_pd);
    if (s->fwd_dst)
        dnnl_memory_destroy(s->fwd_dst);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

const otl_op otl_op_MaxPool = {
    .op_type = "MaxPool", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = maxpool_infer, .prepare = pool_prepare, .forward = pool_forward, .release = pool_release,
    .grad_inputs = 1, .grad = pool_grad,
};

const otl_op otl_op_AveragePool = {
    .op_type = "AveragePool", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = avgpool_infer, .prepare = pool_prepare, .forward = pool_forward, .release = pool_release,
    .grad_inputs = 1, .grad = pool_grad,
};

/* ---------------------------------------------------------------- global pooling */

/* GlobalAveragePool / GlobalMaxPool: one window over all spatial axes (rank 2 inputs have none:
 * the output is the input). */
static otl_status global_geom(otl_kctx *k, pool_state *s, const otl_rt *x, int64_t *dims)
{
    if (x->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 2 (N, C, spatial...), got %d", x->name, x->rank);
    nn_geom *g = &s->g;
    g->nsp = x->rank - 2;
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 0; i < g->nsp; i++) {
        if (x->dims[2 + i] == 0)
            return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' has an empty spatial axis", x->name);
        g->k[i] = g->in[i] = x->dims[2 + i];
        g->s[i] = g->d[i] = g->out[i] = 1;
        dims[2 + i] = 1;
    }
    s->use_dnnl = x->dtype == OTL_DTYPE_FLOAT && g->nsp >= 1 && g->nsp <= 3;
    return OTL_OK;
}

static otl_status global_infer_kind(otl_kctx *k, int kind)
{
    pool_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->kind = kind;
    static const int types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, 0};
    otl_status st = otl_check_in(k, 0, types);
    if (st)
        return st;
    int64_t dims[OTL_MAX_RANK];
    if ((st = global_geom(k, s, k->in[0], dims)))
        return st;
    return pool_make_pd(k, s, dims);
}

static otl_status gap_infer(otl_kctx *k)
{
    return global_infer_kind(k, POOL_AVG);
}

static otl_status gmp_infer(otl_kctx *k)
{
    return global_infer_kind(k, POOL_MAX);
}

const otl_op otl_op_GlobalAveragePool = {
    .op_type = "GlobalAveragePool", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = gap_infer, .prepare = pool_prepare, .forward = pool_forward, .release = pool_release,
    .grad_inputs = 1, .grad = pool_grad,
};

const otl_op otl_op_GlobalMaxPool = {
    .op_type = "GlobalMaxPool", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = gmp_infer, .prepare = pool_prepare, .forward = pool_forward, .release = pool_release,
    .grad_inputs = 1, .grad = pool_grad,
};

/* ---------------------------------------------------------------- backward */

/* dx (N, C, in...) = 0, then each output position's gradient goes back to its window: to the
 * window's first largest element (max; x as in the forward, padding skipped), or spread over the
 * window's elements divided by the forward's count (average). float/double. */
static void pool_backward_ref(void *dx, const void *dy, const void *x, int dtype, int64_t nc, const nn_geom *g, int kind,
                              int count_include_pad)
{
    int nsp = g->nsp;
    int64_t in_sz = 1, out_sz = 1, ksz = 1;
    for (int i = 0; i < nsp; i++) {
        in_sz *= g->in[i];
        out_sz *= g->out[i];
        ksz *= g->k[i];
    }
#pragma omp parallel for schedule(static) if (nc * out_sz * ksz > 65536)
    for (int64_t p = 0; p < nc; p++) {
        for (int64_t i = 0; i < in_sz; i++)
            otl_set_f(dx, dtype, p * in_sz + i, 0.0);
        for (int64_t o = 0; o < out_sz; o++) {
            int64_t oc[NN_MAX_SP], rem = o;
            for (int i = nsp - 1; i >= 0; i--) {
                oc[i] = rem % g->out[i];
                rem /= g->out[i];
            }
            double gy = otl_get_f(dy, dtype, p * out_sz + o), acc = -INFINITY;
            int64_t best = -1, count = 0, count_pad = 0;
            for (int pass = kind == POOL_AVG ? 0 : 1; pass < 2; pass++) {
                for (int64_t kk = 0; kk < ksz; kk++) {
                    int64_t r2 = kk, idx = 0, kc[NN_MAX_SP];
                    int inside = 1, inside_pad = 1;
                    for (int i = nsp - 1; i >= 0; i--) {
                        kc[i] = r2 % g->k[i];
                        r2 /= g->k[i];
                    }
                    for (int i = 0; i < nsp; i++) {
                        int64_t xi = oc[i] * g->s[i] - g->pl[i] + kc[i] * g->d[i];
                        if (xi < 0 || xi >= g->in[i])
                            inside = 0;
                        if (xi < -g->pl[i] || xi >= g->in[i] + g->pr[i])
                            inside_pad = 0;
                        idx = idx * g->in[i] + xi;
                    }
                    if (pass == 0) { /* average: the forward's divisor */
                        count_pad += inside_pad;
                        count += inside;
                        continue;
                    }
                    if (!inside)
                        continue;
                    if (kind == POOL_MAX) {
                        double v = otl_get_f(x, dtype, p * in_sz + idx);
                        if (best < 0 || v > acc || (isnan(v) && !isnan(acc))) {
                            acc = v;
                            best = idx;
                        }
                    } else {
                        double d = (double)(count_include_pad ? count_pad : count);
                        int64_t e = p * in_sz + idx;
                        otl_set_f(dx, dtype, e, otl_get_f(dx, dtype, e) + gy / d);
                    }
                }
            }
            if (kind == POOL_MAX && best >= 0) {
                int64_t e = p * in_sz + best;
                otl_set_f(dx, dtype, e, otl_get_f(dx, dtype, e) + gy);
            }
        }
    }
}

/* The backward pooling primitive (float32): diff_src in X's layout (max) or in dY's layout
 * family (average); max also keeps a forward_training pd to recompute the workspace. */
static dnnl_status_t pool_bwd_pd(otl_kctx *k, pool_state *s, const otl_rt *x, const otl_rt *dy)
{
    dnnl_memory_desc_t src_md, dy_md;
    dnnl_dims_t strides, kernel, dil, pl, pr;
    for (int i = 0; i < s->g.nsp; i++) {
        strides[i] = s->g.s[i];
        kernel[i] = s->g.k[i];
        dil[i] = s->g.d[i] - 1;
        pl[i] = s->g.pl[i];
        pr[i] = s->pr_dnnl[i];
    }
    dnnl_alg_kind_t alg = s->kind == POOL_MAX ? dnnl_pooling_max
                          : s->count_include_pad ? dnnl_pooling_avg_include_padding
                                                 : dnnl_pooling_avg_exclude_padding;
    static const dnnl_format_tag_t blk16[] = {dnnl_aBc16b, dnnl_aBcd16b, dnnl_aBcde16b};
    if (s->kind == POOL_MAX) {
        if (otl_rt_md(k, x, &src_md) || nn_md_dst(k, dy->rank, dy->dims, 1, &dy_md))
            return dnnl_runtime_error;
    } else if (s->global && !dy->blocked && dy->dtype == OTL_DTYPE_FLOAT && x->rank >= 3 && x->rank <= 5 &&
               x->dims[1] % 16 == 0) {
        /* a CNN's global average pool: dY comes plain from the head, while the ops before the
           pool run blocked; dX in the channel-blocked layout keeps the backward blocked (dY,
           one value per channel, is reordered on the way in) */
        dnnl_dims_t xd = {0}, yd = {0};
        memcpy(xd, x->dims, (size_t)x->rank * sizeof *xd);
        memcpy(yd, dy->dims, (size_t)dy->rank * sizeof *yd);
        if (dnnl_memory_desc_init_by_tag(&src_md, x->rank, xd, dnnl_f32, blk16[x->rank - 3]) != dnnl_success ||
            dnnl_memory_desc_init_by_tag(&dy_md, dy->rank, yd, dnnl_f32, blk16[dy->rank - 3]) != dnnl_success)
            return dnnl_runtime_error;
    } else if (nn_md_like(k, dy, x->rank, x->dims, &src_md) || otl_rt_md(k, dy, &dy_md)) {
        return dnnl_runtime_error;
    }
    dnnl_pooling_v2_desc_t fd, bd;
    dnnl_status_t r = dnnl_pooling_v2_forward_desc_init(&fd, dnnl_forward_training, alg, &src_md, &dy_md, strides, kernel,
                                                        dil, pl, pr);
    if (r == dnnl_success)
        r = otl_pd_create(&s->fwd_pd, &fd, NULL, k->eng->eng, NULL);
    if (r != dnnl_success) {
        s->fwd_pd = NULL;
        return r;
    }
    dy_md = *dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_dst_md, 0);
    r = dnnl_pooling_v2_backward_desc_init(&bd, alg, &src_md, &dy_md, strides, kernel, dil, pl, pr);
    if (r == dnnl_success)
        r = otl_pd_create(&s->pd, &bd, NULL, k->eng->eng, s->fwd_pd);
    if (r != dnnl_success)
        s->pd = NULL;
    if (r != dnnl_success || s->kind != POOL_MAX) {
        dnnl_primitive_desc_destroy(s->fwd_pd);
        s->fwd_pd = NULL;
    }
    return r;
}

/* MaxPoolGrad(dY, X), AveragePoolGrad(dY, Shape(X)), GlobalMaxPoolGrad(dY, X),
 * GlobalAveragePoolGrad(dY, Shape(X)) -> dX; the forward's attributes. */
static otl_status pool_bwd_infer(otl_kctx *k)
{
    pool_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const char *t = k->op->op_type;
    s->global = strncmp(t, "Global", 6) == 0;
    s->kind = strstr(t, "Max") ? POOL_MAX : POOL_AVG;
    static const int types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};
    otl_status st;
    if ((st = otl_check_in(k, 0, types)))
        return st;
    const otl_rt *dy = k->in[0], *x;
    otl_rt xs;
    if (s->kind == POOL_MAX) {
        if ((st = otl_check_in(k, 1, types)))
            return st;
        x = k->in[1];
        if (x->dtype != dy->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "X and the output gradient differ in dtype");
    } else {
        if ((st = otl_shape_rt(k, 1, dy->dtype, &xs)))
            return st;
        x = &xs;
    }
    int64_t dims[OTL_MAX_RANK];
    if ((st = s->global ? global_geom(k, s, x, dims) : pool_geom(k, s, x, dims)))
        return st;
    int same = dy->rank == x->rank;
    for (int i = 0; same && i < x->rank; i++)
        same = dy->dims[i] == dims[i];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "output gradient '%s' does not have the pooled shape", dy->name);
    if (x->numel == 0 || dy->numel == 0)
        s->use_dnnl = 0;
    if (s->use_dnnl && pool_bwd_pd(k, s, x, dy) != dnnl_success)
        s->use_dnnl = 0;
    if (!s->use_dnnl)
        return otl_rt_set(k, k->out[0], x->dtype, x->rank, x->dims);
    return otl_rt_set_md(k, k->out[0], x->dtype, x->rank, x->dims,
                         dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_src_md, 0));
}

static otl_status pool_bwd_prepare(otl_kctx *k)
{
    pool_state *s = k->state;
    const otl_rt *dy = k->in[0], *x = s->kind == POOL_MAX ? k->in[1] : NULL, *dx = k->out[0];
    dnnl_memory_desc_t dy_user, dx_user, x_user, plain;
    otl_status st;
    if (dx->numel == 0)
        return OTL_OK;
    if ((st = otl_rt_md(k, dy, &dy_user)) || (st = otl_rt_md(k, dx, &dx_user)) || (x && (st = otl_rt_md(k, x, &x_user))))
        return st;
    if (!s->use_dnnl) { /* the C kernel reads plain data */
        if (dy->blocked &&
            ((st = otl_md_plain(k, dy, &plain)) || (st = nn_port_init(k, &s->dy, &dy_user, &plain, 0, &s->scratch_bytes))))
            return st;
        if (x && x->blocked &&
            ((st = otl_md_plain(k, x, &plain)) || (st = nn_port_init(k, &s->src, &x_user, &plain, 0, &s->scratch_bytes))))
            return st;
    } else {
        if ((st = nn_make_prim(k, s->pd, &s->prim, "pooling backward")) ||
            (st = nn_port_init(k, &s->dy, &dy_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_dst_md, 0), 0,
                               &s->scratch_bytes)) ||
            (st = nn_port_init(k, &s->dx, &dx_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_src_md, 0), 1,
                               &s->scratch_bytes)))
            return st;
        if (s->fwd_pd) { /* max: the workspace is recomputed into scratch */
            const dnnl_memory_desc_t *ws_md = dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_workspace_md, 0);
            const dnnl_memory_desc_t *fdst = dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_dst_md, 0);
            if ((st = nn_make_prim(k, s->fwd_pd, &s->fwd_prim, "pooling")) ||
                (st = nn_port_init(k, &s->src, &x_user, dnnl_primitive_desc_query_md(s->fwd_pd, dnnl_query_src_md, 0), 0,
                                   &s->scratch_bytes)) ||
                (st = otl_dnnl_memory(k, fdst, NULL, &s->fwd_dst)) || (st = otl_dnnl_memory(k, ws_md, NULL, &s->ws)))
                return st;
            s->fwd_dst_off = s->scratch_bytes;
            s->scratch_bytes += (dnnl_memory_desc_get_size(fdst) + 63) & ~(size_t)63;
            s->ws_off = s->scratch_bytes;
            s->scratch_bytes += (dnnl_memory_desc_get_size(ws_md) + 63) & ~(size_t)63;
        }
    }
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status pool_bwd_forward(otl_kctx *k)
{
    pool_state *s = k->state;
    const otl_rt *dy = k->in[0], *x = s->kind == POOL_MAX ? k->in[1] : NULL, *dx = k->out[0];
    if (dx->numel == 0)
        return OTL_OK;
    otl_status st = OTL_OK;
    char *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!s->use_dnnl) {
        const void *dyd = dy->data, *xd = x ? x->data : NULL;
        if (dy->blocked && !(st = nn_port_bind(k, &s->dy, dy->data, scratch)))
            dyd = scratch + s->dy.scratch_off;
        if (!st && x && x->blocked && !(st = nn_port_bind(k, &s->src, x->data, scratch)))
            xd = scratch + s->src.scratch_off;
        if (!st) {
            if (dy->numel == 0)
                memset(dx->data, 0, dx->nbytes);
            else
                pool_backward_ref(dx->data, dyd, xd, dx->dtype, dx->dims[0] * dx->dims[1], &s->g, s->kind,
                                  s->count_include_pad);
        }
    } else {
        if (s->fwd_prim && !(st = nn_port_bind(k, &s->src, x->data, scratch))) {
            dnnl_memory_set_data_handle(s->fwd_dst, scratch + s->fwd_dst_off);
            dnnl_memory_set_data_handle(s->ws, scratch + s->ws_off);
            dnnl_exec_arg_t fa[3] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_DST, s->fwd_dst}, {DNNL_ARG_WORKSPACE, s->ws}};
            st = otl_dnnl_run(k, s->fwd_prim, 3, fa);
        }
        if (!st && !(st = nn_port_bind(k, &s->dy, dy->data, scratch)) && !(st = nn_port_bind(k, &s->dx, dx->data, scratch))) {
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->dy.prim}, {DNNL_ARG_DIFF_SRC, s->dx.prim}, {DNNL_ARG_WORKSPACE, s->ws}};
            st = otl_dnnl_run(k, s->prim, s->fwd_prim ? 3 : 2, args);
            if (!st)
                st = nn_port_finish(k, &s->dx);
        }
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

/* dX = <Op>Grad(dY, X) for max pooling (the argmax is recomputed from X), <Op>Grad(dY, Shape(X))
 * for average pooling (only X's shape is kept). */
static otl_status pool_grad(otl_gctx *c)
{
    const char *t = c->node->op_type, *x = c->node->inputs[0], *dy = c->dy[0];
    if (!dy)
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s': no output gradient", c->file, c->node->name);
    char name[64];
    snprintf(name, sizeof name, "%sGrad", t);
    const char *second = strstr(t, "Max") ? x : otl_gemit1(c, "", "Shape", 1, &x, NULL);
    const char *in[2] = {dy, second};
    otl_node *n = NULL;
    const char *dx = second ? otl_gemit1(c, OTL_GRAD_DOMAIN, name, 2, in, &n) : NULL;
    otl_status st = n ? otl_gattr_copy(c, n) : OTL_OK;
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_MaxPoolGrad = {
    .op_type = "MaxPoolGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = pool_bwd_infer, .prepare = pool_bwd_prepare, .forward = pool_bwd_forward, .release = pool_release,
};

const otl_op otl_op_AveragePoolGrad = {
    .op_type = "AveragePoolGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = pool_bwd_infer, .prepare = pool_bwd_prepare, .forward = pool_bwd_forward, .release = pool_release,
};

const otl_op otl_op_GlobalMaxPoolGrad = {
    .op_type = "GlobalMaxPoolGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = pool_bwd_infer, .prepare = pool_bwd_prepare, .forward = pool_bwd_forward, .release = pool_release,
};

const otl_op otl_op_GlobalAveragePoolGrad = {
    .op_type = "GlobalAveragePoolGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = pool_bwd_infer, .prepare = pool_bwd_prepare, .forward = pool_bwd_forward, .release = pool_release,
};

/* ---------------------------------------------------------------- MaxUnpool */

/* y: zeros of the output shape, then X[j] goes to the position I[j]. I holds flat indices into
 * the default output shape `def` (as MaxPool's Indices output gives them); a larger explicit
 * output_shape keeps those coordinates (the extra is zero padding at the end). Each index is
 * range-checked at run time: *bad receives the first offending position, or -1. */
static void maxunpool_forward_ref(void *out, const int64_t *out_dims, const void *inp, const int64_t *indices, int64_t n,
                                  const int64_t *def, int rank, int dtype, int64_t *bad)
{
    size_t esz = (size_t)otl_dtype_nbytes(dtype, 1);
    int64_t out_numel = 1, def_numel = 1;
    for (int i = 0; i < rank; i++) {
        out_numel *= out_dims[i];
        def_numel *= def[i];
    }
    memset(out, 0, (size_t)out_numel * esz);
    *bad = -1;
    for (int64_t j = 0; j < n; j++) {
        int64_t t = indices[j], o = 0, stride = 1;
        if (t < 0 || t >= def_numel) {
            *bad = j;
            return;
        }
        for (int i = rank - 1; i >= 0; i--) {
            int64_t c = t % def[i];
            t /= def[i];
            if (c >= out_dims[i]) {
                *bad = j;
                return;
            }
            o += c * stride;
            stride *= out_dims[i];
        }
        memcpy((char *)out + (size_t)o * esz, (const char *)inp + (size_t)j * esz, esz);
    }
}

static otl_status maxunpool_infer(otl_kctx *k)
{
    static const int types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, 0};
    static const int i64[] = {OTL_DTYPE_INT64, 0};
    otl_status st;
    if ((st = otl_check_in(k, 0, types)) || (st = otl_check_in(k, 1, i64)))
        return st;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    if (x->rank < 3)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 3 (N, C, spatial...), got %d", x->name, x->rank);
    if (ix->rank != x->rank || memcmp(ix->dims, x->dims, (size_t)x->rank * sizeof *x->dims) != 0)
        return otl_kfail(k, OTL_ERR_INPUT, "indices I '%s' must have X's shape", ix->name);
    nn_geom g = {.nsp = x->rank - 2};
    int n;
    if ((st = otl_attr_ints(k, "kernel_shape", g.k, NN_MAX_SP, &n)))
        return st;
    if (n != g.nsp)
        return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape %s %d values, expected %d", n < 0 ? "is required:" : "has",
                         n < 0 ? 0 : n, g.nsp);
    if ((st = nn_geom_attrs(k, &g, 0)))
        return st;
    int64_t *def = k->state = calloc(OTL_MAX_RANK, sizeof *def);
    if (!def)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    def[0] = x->dims[0];
    def[1] = x->dims[1];
    for (int i = 0; i < g.nsp; i++) {
        if (g.k[i] < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape must be >= 1");
        def[2 + i] = (x->dims[2 + i] - 1) * g.s[i] + g.k[i] - g.pl[i] - g.pr[i];
        if (def[2 + i] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "pads exceed the output size on spatial axis %d", i);
    }
    int64_t dims[OTL_MAX_RANK];
    memcpy(dims, def, sizeof dims);
    if (otl_has_in(k, 2)) {
        int m;
        if ((st = otl_const_ints(k, 2, dims, OTL_MAX_RANK, &m)))
            return st;
        if (m != x->rank)
            return otl_kfail(k, OTL_ERR_INPUT, "output_shape has %d values, expected %d", m, x->rank);
        if (dims[0] != x->dims[0] || dims[1] != x->dims[1])
            return otl_kfail(k, OTL_ERR_INPUT, "output_shape must keep X's batch and channel sizes");
        for (int i = 2; i < m; i++)
            if (dims[i] < def[i])
                return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output_shape smaller than the default unpooled shape");
    }
    return otl_rt_set(k, k->out[0], x->dtype, x->rank, dims);
}

static otl_status maxunpool_forward(otl_kctx *k)
{
    const otl_rt *x = k->in[0], *y = k->out[0];
    int64_t bad;
    maxunpool_forward_ref(y->data, y->dims, x->data, k->in[1]->data, x->numel, k->state, x->rank, x->dtype, &bad);
    if (bad >= 0)
        return otl_kfail(k, OTL_ERR_INPUT, "index %lld at position %lld of I is outside the unpooled output",
                         (long long)((const int64_t *)k->in[1]->data)[bad], (long long)bad);
    return OTL_OK;
}

const otl_op otl_op_MaxUnpool = {
    .op_type = "MaxUnpool", .domain = "", .since = 9, .until = 22,
    .infer = maxunpool_infer, .forward = maxunpool_forward,
};
