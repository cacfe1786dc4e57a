/* broadcast.c - output shape and strides for multidirectional broadcasting, collapsed
 * iteration in runs along the innermost axis, and the parallel loops element-wise ops use. */
#include "ops/broadcast.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

otl_status otl_bcast_init_dims(otl_kctx *k, otl_bcast *b, int n_in, const int *ranks,
                               const int64_t *const *dims, const char *const *names)
{
    memset(b, 0, sizeof *b);
    if (n_in < 1 || n_in > OTL_BCAST_MAX)
        return otl_kfail(k, OTL_ERR_INTERNAL, "broadcast of %d inputs", n_in);
    b->n_in = n_in;
    for (int j = 0; j < n_in; j++) {
        if (ranks[j] < 0 || ranks[j] > OTL_MAX_RANK)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "rank %d exceeds the supported %d", ranks[j], OTL_MAX_RANK);
        if (ranks[j] > b->rank)
            b->rank = ranks[j];
    }
    for (int d = 0; d < b->rank; d++) {
        int64_t dim = 1;
        for (int j = 0; j < n_in; j++) {
            int off = b->rank - ranks[j];
            int64_t x = d < off ? 1 : dims[j][d - off];
            if (x == dim || x == 1)
                continue;
            if (dim != 1)
                return otl_kfail(k, OTL_ERR_INPUT,
                                 "inputs cannot be broadcast together: dimension %d is %lld in one and %lld in '%s'",
                                 d, (long long)dim, (long long)x, names && names[j] ? names[j] : "?");
            dim = x;
        }
        b->dims[d] = dim;
    }
    b->numel = 1;
    for (int d = 0; d < b->rank; d++) {
        if (b->dims[d] && b->numel > ((int64_t)1 << 40) / b->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "broadcast output has more than 2^40 elements");
        b->numel *= b->dims[d];
    }
    for (int j = 0; j < n_in; j++) {
        int off = b->rank - ranks[j];
        int64_t s = 1;
        b->same[j] = ranks[j] == b->rank;
        for (int d = b->rank - 1; d >= 0; d--) {
            int64_t x = d < off ? 1 : dims[j][d - off];
            b->strides[j][d] = x == 1 ? 0 : s;
            if (x != b->dims[d])
                b->same[j] = 0;
            s *= x;
        }
    }
    /* collapse: drop size-1 axes, merge an axis into the next when every input's stride over
     * the pair is one linear stride (contiguous or broadcast across both) */
    int cr = 0;
    for (int d = 0; d < b->rank; d++) {
        if (b->dims[d] == 1)
            continue;
        int merge = cr > 0;
        for (int j = 0; merge && j < n_in; j++)
            if (b->cstrides[j][cr - 1] != b->strides[j][d] * b->dims[d])
                merge = 0;
        if (merge) {
            b->cdims[cr - 1] *= b->dims[d];
            for (int j = 0; j < n_in; j++)
                b->cstrides[j][cr - 1] = b->strides[j][d];
        } else {
            b->cdims[cr] = b->dims[d];
            for (int j = 0; j < n_in; j++)
                b->cstrides[j][cr] = b->strides[j][d];
            cr++;
        }
    }
    if (cr == 0) {
        b->cdims[0] = 1;
        for (int j = 0; j < n_in; j++)
            b->cstrides[j][0] = 0;
        cr = 1;
    }
    b->crank = cr;
    for (int j = 0; j < n_in; j++)
        b->inner[j] = b->cstrides[j][cr - 1];
    return OTL_OK;
}

otl_status otl_bcast_init(otl_kctx *k, otl_bcast *b, int n_in, const otl_rt *const *in)
{
    int ranks[OTL_BCAST_MAX];
    const int64_t *dims[OTL_BCAST_MAX];
    const char *names[OTL_BCAST_MAX];
    if (n_in < 1 || n_in > OTL_BCAST_MAX)
        return otl_kfail(k, OTL_ERR_INTERNAL, "broadcast of %d inputs", n_in);
    for (int j = 0; j < n_in; j++) {
        ranks[j] = in[j]->rank;
        dims[j] = in[j]->dims;
        names[j] = in[j]->name;
    }
    return otl_bcast_init_dims(k, b, n_in, ranks, dims, names);
}

otl_status otl_bcast_init_binary(otl_kctx *k, otl_bcast *b, const otl_rt *a, const otl_rt *bv)
{
    const otl_rt *in[2] = {a, bv};
    if (k->opset >= 7)
        return otl_bcast_init(k, b, 2, in);
    int64_t bc, axis;
    otl_status st;
    if ((st = otl_attr_int(k, "broadcast", 0, &bc)) || (st = otl_attr_int(k, "axis", a->rank - bv->rank, &axis)))
        return st;
    int same = a->rank == bv->rank;
    for (int d = 0; same && d < a->rank; d++)
        same = a->dims[d] == bv->dims[d];
    if (!bc) {
        if (!same)
            return otl_kfail(k, OTL_ERR_INPUT, "inputs '%s' and '%s' differ in shape and broadcast=0", a->name, bv->name);
        return otl_bcast_init(k, b, 2, in);
    }
    if (axis < 0)
        axis += a->rank;
    if (bv->rank > a->rank || axis < 0 || axis > a->rank - bv->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "B '%s' (rank %d) cannot be placed at axis %lld of A (rank %d)",
                         bv->name, bv->rank, (long long)axis, a->rank);
    int64_t pd[OTL_MAX_RANK];
    for (int d = 0; d < a->rank; d++)
        pd[d] = 1;
    for (int d = 0; d < bv->rank; d++) {
        int64_t x = bv->dims[d];
        if (x != 1 && x != a->dims[axis + d])
            return otl_kfail(k, OTL_ERR_INPUT, "B '%s' dimension %d is %lld, A's dimension %lld is %lld", bv->name,
                             d, (long long)x, (long long)(axis + d), (long long)a->dims[axis + d]);
        pd[axis + d] = x;
    }
    int ranks[2] = {a->rank, a->rank};
    const int64_t *dims[2] = {a->dims, pd};
    const char *names[2] = {a->name, bv->name};
    return otl_bcast_init_dims(k, b, 2, ranks, dims, names);
}

void otl_bcast_rows(const otl_bcast *b, int64_t start, int64_t end, otl_bcast_row_fn fn, void *ctx)
{
    if (start >= end)
        return;
    const int r = b->crank, n_in = b->n_in;
    const int64_t inner = b->cdims[r - 1];
    int64_t idx[OTL_MAX_RANK], off[OTL_BCAST_MAX] = {0};
    int64_t t = start;
    for (int d = r - 1; d >= 0; d--) {
        idx[d] = t % b->cdims[d];
        t /= b->cdims[d];
        for (int j = 0; j < n_in; j++)
            off[j] += idx[d] * b->cstrides[j][d];
    }
    int64_t o = start;
    while (o < end) {
        int64_t n = inner - idx[r - 1];
        if (n > end - o)
            n = end - o;
        fn(ctx, o, off, n);
        o += n;
        if (o >= end)
            break;
        idx[r - 1] += n;
        for (int j = 0; j < n_in; j++)
            off[j] += n * b->cstrides[j][r - 1];
        for (int d = r - 1; d > 0 && idx[d] == b->cdims[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
            for (int j = 0; j < n_in; j++)
                off[j] += b->cstrides[j][d - 1] - b->cdims[d] * b->cstrides[j][d];
        }
    }
}

static int threads_for(int64_t n, int64_t grain)
{
    if (grain < 1)
        grain = 1;
    int64_t t = n / grain;
    int max = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (t > max)
        t = max;
    return t < 2 ? 1 : (int)t;
}

/* chunk boundaries aligned to 16 elements (whole cache lines for 4-byte types) */
static int64_t chunk_start(int64_t n, int nt, int t)
{
    if (t >= nt)
        return n;
    int64_t s = (int64_t)((double)n * t / nt);
    s &= ~(int64_t)15;
    return s > n ? n : s;
}

void otl_bcast_run(const otl_bcast *b, otl_bcast_row_fn fn, void *ctx, int64_t grain)
{
    int nt = threads_for(b->numel, grain);
    if (nt == 1) {
        otl_bcast_rows(b, 0, b->numel, fn, ctx);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        otl_bcast_rows(b, chunk_start(b->numel, n, t), chunk_start(b->numel, n, t + 1), fn, ctx);
    }
}

void otl_parallel_range(int64_t n, int64_t grain, otl_range_fn fn, void *ctx)
{
    int nt = threads_for(n, grain);
    if (nt == 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), m = omp_get_num_threads();
        int64_t s = chunk_start(n, m, t), e = chunk_start(n, m, t + 1);
        if (s < e)
            fn(ctx, s, e);
    }
}

/* ---------------------------------------------------------------- blocked inputs */

otl_status otl_plain_prepare(otl_kctx *k, const otl_rt *v, otl_plain *p)
{
    if (!v->blocked || p->reorder)
        return OTL_OK;
    dnnl_memory_desc_t plain;
    dnnl_primitive_desc_t pd;
    otl_status st = otl_md_plain(k, v, &plain);
    if (st)
        return st;
    if ((st = otl_dnnl_check(k, otl_reorder_pd_create(&pd, &v->md, k->eng->eng, &plain, k->eng->eng, NULL),
                             "reorder to plain")))
        return st;
    st = otl_dnnl_primitive(k, pd, &p->reorder, "reorder to plain");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    size_t n = dnnl_memory_desc_get_size(&plain);
    p->buf = malloc(n ? n : 1);
    if (!p->buf)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory for a plain copy of '%s'", v->name);
    if ((st = otl_dnnl_memory(k, &v->md, NULL, &p->src)) || (st = otl_dnnl_memory(k, &plain, p->buf, &p->dst)))
        return st;
    return OTL_OK;
}

otl_status otl_plain_get(otl_kctx *k, const otl_rt *v, otl_plain *p, const void **data)
{
    *data = v->data;
    if (!v->blocked)
        return OTL_OK;
    if (!p->reorder)
        return otl_kfail(k, OTL_ERR_INTERNAL, "input '%s' is blocked but no reorder was prepared", v->name);
    dnnl_memory_set_data_handle(p->src, v->data);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->src}, {DNNL_ARG_TO, p->dst}};
    otl_status st = otl_dnnl_run(k, p->reorder, 2, args);
    *data = p->buf;
    return st;
}

void otl_plain_release(otl_plain *p)
{
    if (p->reorder)
        dnnl_primitive_destroy(p->reorder);
    if (p->src)
        dnnl_memory_destroy(p->src);
    if (p->dst)
        dnnl_memory_destroy(p->dst);
    free(p->buf);
    memset(p, 0, sizeof *p);
}
