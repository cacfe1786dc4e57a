/* grad_ops.c - private backward kernels shared by many gradient rules (domain onnx_tl).
 * ReduceSumTo(dY, shape): sums dY over the axes along which a value of `shape` was broadcast
 * to dY's shape (the gradient of any broadcasting op). Not differentiable. */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

typedef struct reduce_to_state {
    int rank;                       /* dY's rank */
    int64_t tdims[OTL_MAX_RANK];    /* target dims padded to dY's rank */
    int64_t out_dims[OTL_MAX_RANK]; /* target shape as given */
    int out_rank;
    int identity;                   /* nothing to reduce */
    int64_t A, K, B;                /* fast path: plain float32 dY viewed as (A, K, B), summed over A, B */
    int akb;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} reduce_to_state;

static const int float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

static otl_status reduce_to_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, float_types);
    if (st)
        return st;
    reduce_to_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int n;
    if ((st = otl_const_ints(k, 1, s->out_dims, OTL_MAX_RANK, &n)))
        return st;
    const otl_rt *dy = k->in[0];
    if (n > dy->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "target rank %d exceeds the gradient's rank %d", n, dy->rank);
    s->rank = dy->rank;
    s->out_rank = n;
    s->identity = 1;
    for (int d = 0; d < dy->rank; d++) {
        int off = dy->rank - n;
        int64_t t = d < off ? 1 : s->out_dims[d - off];
        if (t != dy->dims[d] && t != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "cannot reduce dimension %d of size %lld to %lld", d,
                             (long long)dy->dims[d], (long long)t);
        s->tdims[d] = t;
        if (t != dy->dims[d])
            s->identity = 0;
    }
    if (s->identity && n == dy->rank) {
        /* nothing to reduce: the gradient is passed on as it is, in its layout */
        k->alias = 1;
        return dy->blocked ? otl_rt_set_md(k, k->out[0], dy->dtype, n, s->out_dims, &dy->md)
                           : otl_rt_set(k, k->out[0], dy->dtype, n, s->out_dims);
    }
    return otl_rt_set(k, k->out[0], dy->dtype, n, s->out_dims);
}

/* Whether dY's reduction is (A, K, B) -> (K): summed axes only before and after one run of
 * kept axes (axes of size 1 ignored). Bias gradients are all like that: (N, C) -> (C),
 * (N, C, H, W) -> (1, C, 1, 1), (B, S, D) -> (D). */
static int akb_shape(reduce_to_state *s, const otl_rt *dy)
{
    int64_t p[3] = {1, 1, 1};
    int seg = 0; /* 0: leading summed axes, 1: kept, 2: trailing summed */
    for (int d = 0; d < s->rank; d++) {
        if (dy->dims[d] == 1)
            continue;
        int keep = s->tdims[d] == dy->dims[d];
        if (keep && seg == 2)
            return 0;
        if (keep)
            seg = 1;
        else if (seg == 1)
            seg = 2;
        p[seg] *= dy->dims[d];
    }
    s->A = p[0];
    s->K = p[1];
    s->B = p[2];
    return 1;
}

/* y[k] = sum over a, b of x[(a K + k) B + b], accumulated in double. */
static void sum_akb_f32(float *y, const float *x, int64_t A, int64_t K, int64_t B)
{
    enum { BLK = 256 };
    if (B == 1) { /* column sums: blocks of K accumulated across rows */
        int64_t nblk = (K + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) if (A * K > 32768 && nblk > 1)
        for (int64_t t = 0; t < nblk; t++) {
            int64_t k0 = t * BLK, n = K - k0 < BLK ? K - k0 : BLK;
            double acc[BLK] = {0};
            for (int64_t a = 0; a < A; a++) {
                const float *r = x + a * K + k0;
                for (int64_t i = 0; i < n; i++)
                    acc[i] += r[i];
            }
            for (int64_t i = 0; i < n; i++)
                y[k0 + i] = (float)acc[i];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (A * K * B > 32768 && K > 1)
    for (int64_t kk = 0; kk < K; kk++) {
        double acc = 0;
        for (int64_t a = 0; a < A; a++) {
            const float *r = x + (a * K + kk) * B;
            float part = 0; /* short float runs (vectorized), summed in double */
            for (int64_t b = 0; b < B; b++) {
                part += r[b];
                if ((b & 255) == 255) {
                    acc += part;
                    part = 0;
                }
            }
            acc += part;
        }
        y[kk] = (float)acc;
    }
}

static otl_status reduce_to_prepare(otl_kctx *k)
{
    reduce_to_state *s = k->state;
    /* plain float32 bias-like reductions: a C column / channel sum (oneDNN's reduction falls to
       its reference kernel at these shapes) */
    if (!s->identity && !k->in[0]->blocked && k->in[0]->dtype == OTL_DTYPE_FLOAT && k->in[0]->numel > 0 &&
        akb_shape(s, k->in[0])) {
        s->akb = 1;
        return OTL_OK;
    }
    /* plain identity: a copy; blocked input (float32 only): oneDNN reduction, which also
       converts to the plain layout */
    if ((s->identity && !k->in[0]->blocked) || k->in[0]->dtype != OTL_DTYPE_FLOAT || k->in[0]->numel == 0)
        return OTL_OK;
    dnnl_memory_desc_t src_md, dst_md;
    otl_rt padded = *k->out[0];
    padded.rank = s->rank;
    padded.blocked = 0;
    memcpy(padded.dims, s->tdims, sizeof s->tdims);
    otl_status st;
    if ((st = otl_rt_md(k, k->in[0], &src_md)) || (st = otl_md_plain(k, &padded, &dst_md)))
        return st;
    dnnl_reduction_desc_t d;
    dnnl_primitive_desc_t pd;
    if ((st = otl_dnnl_check(k, dnnl_reduction_desc_init(&d, dnnl_reduction_sum, &src_md, &dst_md, 0.f, 0.f),
                             "reduction")))
        return st;
    if ((st = otl_dnnl_check(k, otl_pd_create(&pd, &d, NULL, k->eng->eng, NULL), "reduction")))
        return st;
    st = otl_dnnl_primitive(k, pd, &s->prim, "reduction");
    dnnl_primitive_desc_destroy(pd);
    if (!st)
        st = otl_dnnl_memory(k, &src_md, NULL, &s->src);
    if (!st)
        st = otl_dnnl_memory(k, &dst_md, NULL, &s->dst);
    return st;
}

static otl_status reduce_to_forward(otl_kctx *k)
{
    reduce_to_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *out = k->out[0];
    if (s->akb) {
        sum_akb_f32(out->data, dy->data, s->A, s->K, s->B);
        return OTL_OK;
    }
    if (s->prim) {
        dnnl_memory_set_data_handle(s->src, dy->data);
        dnnl_memory_set_data_handle(s->dst, out->data);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}};
        return otl_dnnl_run(k, s->prim, 2, args);
    }
    if (s->identity) {
        memcpy(out->data, dy->data, out->nbytes);
        return OTL_OK;
    }
    /* generic: accumulate in double over output positions */
    int64_t ostr[OTL_MAX_RANK], o = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        ostr[d] = s->tdims[d] == 1 ? 0 : o;
        o *= s->tdims[d];
    }
    double *acc = calloc((size_t)(out->numel ? out->numel : 1), sizeof *acc);
    if (!acc)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < dy->numel; i++) {
        int64_t r = i, off = 0;
        for (int d = s->rank - 1; d >= 0; d--) {
            off += (r % dy->dims[d]) * ostr[d];
            r /= dy->dims[d];
        }
        acc[off] += otl_get_f(dy->data, dy->dtype, i);
    }
    for (int64_t i = 0; i < out->numel; i++)
        otl_set_f(out->data, out->dtype, i, acc[i]);
    free(acc);
    return OTL_OK;
}

static void reduce_to_release(otl_kctx *k)
{
    reduce_to_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->src)
        dnnl_memory_destroy(s->src);
    if (s->dst)
        dnnl_memory_destroy(s->dst);
}

const otl_op otl_op_ReduceSumTo = {
    .op_type = "ReduceSumTo", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .flags = OTL_OPF_ANY_LAYOUT | OTL_OPF_NO_GRAD, .infer = reduce_to_infer, .prepare = reduce_to_prepare, .forward = reduce_to_forward,
    .release = reduce_to_release,
};
