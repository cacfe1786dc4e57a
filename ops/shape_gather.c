/* shape_gather.c - Gather (along any axis), GatherElements and GatherND: negative indices, indices
 * range-checked at run time; any fixed-size data dtype, int32/int64 indices. Differentiable
 * input: data; indices are not differentiable. The gradients are private onnx_tl ops:
 * GatherGrad(dY, indices, Shape(data)) scatter-adds the rows of dY into zeros of data's shape
 * (embedding tables; repeated indices accumulate), GatherElementsGrad likewise per element.
 * GatherND has no gradient rule yet. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

typedef struct gather_state {
    int axis;
    size_t esz;
    int64_t outer, inner; /* prod(dims[:axis]), prod(dims[axis+1:]) */
} gather_state;

static const int index_types[] = {OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};

static otl_status gather_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, index_types)))
        return st;
    gather_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", 0, &axis)))
        return st;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "data must have rank >= 1");
    if ((st = otl_axis(k, axis, x->rank, &s->axis)))
        return st;
    int r = x->rank - 1 + ix->rank;
    if (r > OTL_MAX_RANK)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output rank %d exceeds the supported %d", r, OTL_MAX_RANK);
    int64_t dims[OTL_MAX_RANK];
    int n = 0;
    s->outer = s->inner = 1;
    for (int d = 0; d < s->axis; d++) {
        dims[n++] = x->dims[d];
        s->outer *= x->dims[d];
    }
    for (int d = 0; d < ix->rank; d++)
        dims[n++] = ix->dims[d];
    for (int d = s->axis + 1; d < x->rank; d++) {
        dims[n++] = x->dims[d];
        s->inner *= x->dims[d];
    }
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

/* out (outer, nidx, inner) = inp (outer, D, inner) at idx; every idx already in [0, D). */
static void gather_forward(void *out, const void *inp, const int64_t *idx, int64_t outer, int64_t D,
                           int64_t nidx, int64_t inner, size_t esz)
{
    size_t row = (size_t)inner * esz;
    int64_t n = outer * nidx;
    #pragma omp parallel for if (n * (int64_t)row > ((int64_t)1 << 17)) schedule(static)
    for (int64_t u = 0; u < n; u++) {
        int64_t o = u / nidx, j = u % nidx;
        memcpy((char *)out + (size_t)u * row, (const char *)inp + (size_t)(o * D + idx[j]) * row, row);
    }
}

static otl_status gather_fwd(otl_kctx *k)
{
    gather_state *s = k->state;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    int64_t D = x->dims[s->axis], n = ix->numel;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < n; j++) {
        int64_t v = ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[j] : ((const int32_t *)ix->data)[j];
        int64_t w = v < 0 ? v + D : v;
        if (w < 0 || w >= D) {
            free(idx);
            return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at position %lld is out of range [%lld, %lld) for axis %d",
                             ix->name, (long long)v, (long long)j, (long long)-D, (long long)D, s->axis);
        }
        idx[j] = w;
    }
    gather_forward(k->out[0]->data, x->data, idx, s->outer, D, n, s->inner, s->esz);
    free(idx);
    return OTL_OK;
}

/* <Op>Grad(dY, indices, Shape(data)) with the forward's attributes. */
static otl_status gather_any_grad(otl_gctx *c, const char *op)
{
    const char *x[1] = {c->node->inputs[0]};
    const char *in[3] = {c->dy[0], c->node->inputs[1], otl_gemit1(c, "", "Shape", 1, x, NULL)};
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, op, 3, in, &n);
    otl_status st = dx ? otl_gattr_copy(c, n) : OTL_OK;
    otl_grad_set(c, 0, dx);
    return st;
}

static otl_status gather_grad(otl_gctx *c)
{
    return gather_any_grad(c, "GatherGrad");
}

const otl_op otl_op_Gather = {
    .op_type = "Gather", .domain = "", .since = 1, .until = 22,
    .infer = gather_infer, .forward = gather_fwd, .grad_inputs = 1, .grad = gather_grad,
};

/* ---------------------------------------------------------------- GatherGrad (onnx_tl) */

static const int grad_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

/* The data's shape (const input i) into dims/rank. */
static otl_status data_shape(otl_kctx *k, int i, int64_t *dims, int *rank)
{
    otl_status st = otl_const_ints(k, i, dims, OTL_MAX_RANK, rank);
    for (int d = 0; !st && d < *rank; d++)
        if (dims[d] < 0)
            st = otl_kfail(k, OTL_ERR_INPUT, "shape input '%s' has a negative dimension", k->in[i]->name);
    return st;
}

static otl_status gather_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, grad_types)) || (st = otl_check_in(k, 1, index_types)))
        return st;
    gather_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *dy = k->in[0], *ix = k->in[1];
    int64_t dims[OTL_MAX_RANK], axis;
    int r;
    if ((st = data_shape(k, 2, dims, &r)) || (st = otl_attr_int(k, "axis", 0, &axis)))
        return st;
    if (r == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "data must have rank >= 1");
    if ((st = otl_axis(k, axis, r, &s->axis)))
        return st;
    /* dY must be (dims[:axis], indices' dims, dims[axis+1:]) */
    int ok = dy->rank == r - 1 + ix->rank, j = 0;
    s->outer = s->inner = 1;
    for (int d = 0; ok && d < s->axis; d++, j++) {
        ok = dy->dims[j] == dims[d];
        s->outer *= dims[d];
    }
    for (int d = 0; ok && d < ix->rank; d++, j++)
        ok = dy->dims[j] == ix->dims[d];
    for (int d = s->axis + 1; ok && d < r; d++, j++) {
        ok = dy->dims[j] == dims[d];
        s->inner *= dims[d];
    }
    if (!ok)
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have Gather's output shape", dy->name);
    s->esz = (size_t)otl_dtype_size2(dy->dtype) / 2;
    return otl_rt_set(k, k->out[0], dy->dtype, r, dims);
}

/* Indices of input i normalized into [0, D) (malloc'd), or NULL after an error. */
static int64_t *norm_indices(otl_kctx *k, int i, int64_t D, int axis)
{
    const otl_rt *ix = k->in[i];
    int64_t n = ix->numel;
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) {
        otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t v = ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[j] : ((const int32_t *)ix->data)[j];
        int64_t w = v < 0 ? v + D : v;
        if (w < 0 || w >= D) {
            free(idx);
            otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at position %lld is out of range [%lld, %lld) for axis %d",
                      ix->name, (long long)v, (long long)j, (long long)-D, (long long)D, axis);
            return NULL;
        }
        idx[j] = w;
    }
    return idx;
}

/* dx (outer, D, inner) += dy (outer, nidx, inner) rows at idx. Work units are (outer index,
 * column block): each unit owns its columns of dx, so repeated indices need no atomics and the
 * sums come out in index order, deterministically. */
#define GATHER_GRAD_LOOP(T)                                                                       \
    do {                                                                                          \
        T *dxp = dx;                                                                              \
        const T *dyp = dy;                                                                        \
        _Pragma("omp parallel for if (par) schedule(static)")                                     \
        for (int64_t u = 0; u < units; u++) {                                                     \
            int64_t o = u / nblk, b = u % nblk;                                                   \
            int64_t c0 = inner * b / nblk, c1 = inner * (b + 1) / nblk;                           \
            for (int64_t j = 0; j < nidx; j++) {                                                  \
                T *d = dxp + (o * D + idx[j]) * inner;                                            \
                const T *y = dyp + (o * nidx + j) * inner;                                        \
                for (int64_t c = c0; c < c1; c++)                                                 \
                    d[c] += y[c];                                                                 \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static void gather_grad_kernel(void *dx, const void *dy, const int64_t *idx, int64_t outer, int64_t D, int64_t nidx,
                               int64_t inner, int dtype)
{
    int64_t work = outer * nidx * inner;
    int par = work >= 32768 && !omp_in_parallel();
    int nt = par ? omp_get_max_threads() : 1;
    /* column blocks of >= 16 elements, enough units for every thread */
    int64_t nblk = 1;
    if (par && outer < 4 * nt) {
        nblk = (4 * nt + outer - 1) / outer;
        if (nblk > inner / 16)
            nblk = inner / 16 > 0 ? inner / 16 : 1;
    }
    int64_t units = outer * nblk;
    if (dtype == OTL_DTYPE_FLOAT)
        GATHER_GRAD_LOOP(float);
    else
        GATHER_GRAD_LOOP(double);
}

static otl_status gather_grad_forward(otl_kctx *k)
{
    gather_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    int64_t D = dx->dims[s->axis], n = k->in[1]->numel;
    if (dx->nbytes)
        otl_zero_par(dx->data, dx->nbytes);
    if (dy->numel == 0)
        return OTL_OK;
    int64_t *idx = norm_indices(k, 1, D, s->axis);
    if (!idx)
        return k->err->code;
    gather_grad_kernel(dx->data, dy->data, idx, s->outer, D, n, s->inner, dy->dtype);
    free(idx);
    return OTL_OK;
}

const otl_op otl_op_GatherGrad = {
    .op_type = "GatherGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = gather_grad_infer, .forward = gather_grad_forward,
};

/* ---------------------------------------------------------------- GatherElements */

typedef struct gather_el_state {
    int axis;
    size_t esz;
} gather_el_state;

static otl_status gather_elements_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, index_types)))
        return st;
    gather_el_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", 0, &axis)))
        return st;
    if (x->rank == 0 || ix->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "data (rank %d) and indices (rank %d) must have the same rank >= 1", x->rank,
                         ix->rank);
    if ((st = otl_axis(k, axis, x->rank, &s->axis)))
        return st;
    for (int d = 0; d < x->rank; d++)
        if (d != s->axis && ix->dims[d] > x->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "indices dimension %d (%lld) exceeds the data's (%lld)", d,
                             (long long)ix->dims[d], (long long)x->dims[d]);
    return otl_rt_set(k, k->out[0], x->dtype, ix->rank, ix->dims);
}

static otl_status gather_elements_fwd(otl_kctx *k)
{
    gather_el_state *s = k->state;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    otl_rt *y = k->out[0];
    int r = x->rank, ax = s->axis;
    int64_t xs[OTL_MAX_RANK], D = x->dims[ax];
    otl_strides_c(r, x->dims, xs);
    size_t e = s->esz;
    int64_t idx[OTL_MAX_RANK] = {0}, off = 0; /* data offset of the current position, axis excluded */
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t v = ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[i] : ((const int32_t *)ix->data)[i];
        int64_t w = v < 0 ? v + D : v;
        if (w < 0 || w >= D)
            return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at position %lld is out of range [%lld, %lld) for axis %d",
                             ix->name, (long long)v, (long long)i, (long long)-D, (long long)D, ax);
        memcpy((char *)y->data + (size_t)i * e, (const char *)x->data + (size_t)(off + w * xs[ax]) * e, e);
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < ix->dims[d]) {
                if (d != ax)
                    off += xs[d];
                break;
            }
            if (d != ax)
                off -= (ix->dims[d] - 1) * xs[d];
            idx[d] = 0;
        }
    }
    return OTL_OK;
}

static otl_status gather_elements_grad(otl_gctx *c)
{
    return gather_any_grad(c, "GatherElementsGrad");
}

const otl_op otl_op_GatherElements = {
    .op_type = "GatherElements", .domain = "", .since = 11, .until = 22,
    .infer = gather_elements_infer, .forward = gather_elements_fwd, .grad_inputs = 1, .grad = gather_elements_grad,
};

/* ---------------------------------------------------------------- GatherElementsGrad (onnx_tl) */

static otl_status gather_elements_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, grad_types)) || (st = otl_check_in(k, 1, index_types)))
        return st;
    gather_el_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *dy = k->in[0], *ix = k->in[1];
    int64_t dims[OTL_MAX_RANK], axis;
    int r;
    if ((st = data_shape(k, 2, dims, &r)) || (st = otl_attr_int(k, "axis", 0, &axis)))
        return st;
    if (r == 0 || ix->rank != r || dy->rank != r)
        return otl_kfail(k, OTL_ERR_INPUT, "data, indices and gradient must have the same rank >= 1");
    if ((st = otl_axis(k, axis, r, &s->axis)))
        return st;
    for (int d = 0; d < r; d++) {
        if (dy->dims[d] != ix->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have the indices' shape", dy->name);
        if (d != s->axis && ix->dims[d] > dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "indices dimension %d (%lld) exceeds the data's (%lld)", d,
                             (long long)ix->dims[d], (long long)dims[d]);
    }
    return otl_rt_set(k, k->out[0], dy->dtype, r, dims);
}

/* dx = 0; dx[i with i[axis] = idx[i]] += dy[i] over the indices' positions, in order. */
static otl_status gather_elements_grad_forward(otl_kctx *k)
{
    gather_el_state *s = k->state;
    const otl_rt *dy = k->in[0], *ix = k->in[1];
    otl_rt *dx = k->out[0];
    int r = dx->rank, ax = s->axis;
    int64_t xs[OTL_MAX_RANK], D = dx->dims[ax];
    otl_strides_c(r, dx->dims, xs);
    if (dx->nbytes)
        otl_zero_par(dx->data, dx->nbytes);
    int64_t idx[OTL_MAX_RANK] = {0}, off = 0;
    int f32 = dy->dtype == OTL_DTYPE_FLOAT;
    for (int64_t i = 0; i < dy->numel; i++) {
        int64_t v = ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[i] : ((const int32_t *)ix->data)[i];
        int64_t w = v < 0 ? v + D : v;
        if (w < 0 || w >= D)
            return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at position %lld is out of range [%lld, %lld) for axis %d",
                             ix->name, (long long)v, (long long)i, (long long)-D, (long long)D, ax);
        int64_t o = off + w * xs[ax];
        if (f32)
            ((float *)dx->data)[o] += ((const float *)dy->data)[i];
        else
            ((double *)dx->data)[o] += ((const double *)dy->data)[i];
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < ix->dims[d]) {
                if (d != ax)
                    off += xs[d];
                break;
            }
            if (d != ax)
                off -= (ix->dims[d] - 1) * xs[d];
            idx[d] = 0;
        }
    }
    return OTL_OK;
}

const otl_op otl_op_GatherElementsGrad = {
    .op_type = "GatherElementsGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = gather_elements_grad_infer, .forward = gather_elements_grad_forward,
};

/* ---------------------------------------------------------------- GatherND */

typedef struct gather_nd_state {
    int bd;                      /* batch_dims */
    int64_t batch, n, kk, slice; /* batches, index tuples per batch, tuple length, elements per slice */
    size_t esz;
} gather_nd_state;

static otl_status gather_nd_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, index_types)))
        return st;
    gather_nd_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    int64_t b = 0;
    if (k->opset >= 12 && (st = otl_attr_int(k, "batch_dims", 0, &b)))
        return st;
    if (x->rank < 1 || ix->rank < 1 || b < 0 || b >= x->rank || b >= ix->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "invalid ranks (data %d, indices %d) for batch_dims %lld", x->rank, ix->rank,
                         (long long)b);
    s->bd = (int)b;
    s->batch = 1;
    for (int d = 0; d < b; d++) {
        if (x->dims[d] != ix->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "batch dimension %d differs between data and indices", d);
        s->batch *= x->dims[d];
    }
    s->kk = ix->dims[ix->rank - 1];
    if (s->kk < 1 || s->kk > x->rank - b)
        return otl_kfail(k, OTL_ERR_INPUT, "the last dimension of indices (%lld) must be in [1, %lld]", (long long)s->kk,
                         (long long)(x->rank - b));
    int64_t dims[OTL_MAX_RANK];
    int r = 0;
    s->n = 1;
    for (int d = 0; d < ix->rank - 1; d++) {
        dims[r++] = ix->dims[d];
        if (d >= b)
            s->n *= ix->dims[d];
    }
    s->slice = 1;
    for (int d = (int)(b + s->kk); d < x->rank; d++) {
        if (r >= OTL_MAX_RANK)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output rank exceeds the supported %d", OTL_MAX_RANK);
        dims[r++] = x->dims[d];
        s->slice *= x->dims[d];
    }
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

static otl_status gather_nd_fwd(otl_kctx *k)
{
    gather_nd_state *s = k->state;
    const otl_rt *x = k->in[0], *ix = k->in[1];
    int64_t xs[OTL_MAX_RANK];
    otl_strides_c(x->rank, x->dims, xs);
    int bd = s->bd;
    int64_t bstride = bd > 0 ? xs[bd - 1] : 0; /* elements per batch in data */
    size_t row = (size_t)s->slice * s->esz;
    for (int64_t bi = 0; bi < s->batch; bi++)
        for (int64_t j = 0; j < s->n; j++) {
            int64_t t = bi * s->n + j, off = bi * bstride;
            for (int64_t c = 0; c < s->kk; c++) {
                int64_t v = ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[t * s->kk + c]
                                                          : ((const int32_t *)ix->data)[t * s->kk + c];
                int64_t D = x->dims[bd + c];
                if (v < -D || v >= D)
                    return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld is out of range [%lld, %lld) for axis %lld",
                                     ix->name, (long long)v, (long long)-D, (long long)D, (long long)(bd + c));
                off += (v < 0 ? v + D : v) * xs[bd + c];
            }
            memcpy((char *)k->out[0]->data + (size_t)t * row, (const char *)x->data + (size_t)off * s->esz, row);
        }
    return OTL_OK;
}

const otl_op otl_op_GatherND = {
    .op_type = "GatherND", .domain = "", .since = 11, .until = 22,
    .infer = gather_nd_infer, .forward = gather_nd_fwd,
};
