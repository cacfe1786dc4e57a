/* shape_scatter.c - ScatterElements (and its older name Scatter, opsets 9-10) and ScatterND:
 * a copy of data with updates written (reduction none) or combined (add/mul from opset 16,
 * max/min from 18) at indices range-checked at run time. Differentiable inputs: data (gradient
 * = output gradient with the scattered positions zeroed, for reduction none) and updates (the
 * output gradient gathered at the indices); indices are not differentiable. */
#include <stdlib.h>
#include <string.h>

#include "ops/shape_copy.h"

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

typedef struct scatter_state {
    int axis;
    int red;
    size_t esz;
} scatter_state;

static const int index_types[] = {OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};

static otl_status parse_reduction(otl_kctx *k, int *red)
{
    const char *r = "none";
    otl_status st;
    *red = RED_NONE;
    if (k->opset >= 16 && (st = otl_attr_str(k, "reduction", "none", &r)))
        return st;
    if (strcmp(r, "none") == 0)
        *red = RED_NONE;
    else if (strcmp(r, "add") == 0)
        *red = RED_ADD;
    else if (strcmp(r, "mul") == 0)
        *red = RED_MUL;
    else if (strcmp(r, "max") == 0 && k->opset >= 18)
        *red = RED_MAX;
    else if (strcmp(r, "min") == 0 && k->opset >= 18)
        *red = RED_MIN;
    else
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "reduction '%s' is not supported at this opset", r);
    if (*red != RED_NONE && k->in[0]->dtype == OTL_DTYPE_BOOL)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "reduction '%s' on dtype %s is not supported", r,
                         otl_dtype_name(k->in[0]->dtype));
    return OTL_OK;
}

/* out[oi] (op)= upd[ui] */
static void combine(void *out, int64_t oi, const void *upd, int64_t ui, int dtype, int red, size_t esz)
{
    if (red == RED_NONE) {
        memcpy((char *)out + (size_t)oi * esz, (const char *)upd + (size_t)ui * esz, esz);
        return;
    }
    if (otl_dtype_is_float(dtype)) {
        double a = otl_get_f(out, dtype, oi), b = otl_get_f(upd, dtype, ui);
        double r = red == RED_ADD ? a + b : red == RED_MUL ? a * b : red == RED_MAX ? (a > b ? a : b) : (a < b ? a : b);
        otl_set_f(out, dtype, oi, r);
    } else {
        int64_t a = otl_get_i(out, dtype, oi), b = otl_get_i(upd, dtype, ui);
        int64_t r = red == RED_ADD ? (int64_t)((uint64_t)a + (uint64_t)b)
                    : red == RED_MUL ? (int64_t)((uint64_t)a * (uint64_t)b)
                    : red == RED_MAX ? (a > b ? a : b) : (a < b ? a : b);
        otl_set_i(out, dtype, oi, r);
    }
}

static int64_t index_at(const otl_rt *ix, int64_t i)
{
    return ix->dtype == OTL_DTYPE_INT64 ? ((const int64_t *)ix->data)[i] : ((const int32_t *)ix->data)[i];
}

/* ---------------------------------------------------------------- ScatterElements / Scatter */

static otl_status scatter_elements_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, index_types)) || (st = otl_check_in(k, 2, NULL)))
        return st;
    scatter_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x = k->in[0], *ix = k->in[1], *u = k->in[2];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", 0, &axis)) || (st = parse_reduction(k, &s->red)))
        return st;
    if (x->rank == 0 || ix->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "data (rank %d) and indices (rank %d) must have the same rank >= 1", x->rank,
                         ix->rank);
    if (u->dtype != x->dtype || u->rank != ix->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "updates must have the data's dtype and the indices' shape");
    for (int d = 0; d < ix->rank; d++)
        if (u->dims[d] != ix->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "updates must have the indices' shape");
    if ((st = otl_axis(k, axis, x->rank, &s->axis)))
        return st;
    for (int d = 0; d < x->rank; d++)
        if (d != s->axis && ix->dims[d] > x->dims[d])
            return otl_kfail(k, OTL_ERR_INPUT, "indices dimension %d (%lld) exceeds the data's (%lld)", d,
                             (long long)ix->dims[d], (long long)x->dims[d]);
    return otl_rt_like(k, k->out[0], x);
}

static otl_status scatter_elements_fwd(otl_kctx *k)
{
    scatter_state *s = k->state;
    const otl_rt *x = k->in[0], *ix = k->in[1], *u = k->in[2];
    otl_rt *y = k->out[0];
    int r = x->rank, ax = s->axis;
    int64_t xs[OTL_MAX_RANK], D = x->dims[ax];
    otl_strides_c(r, x->dims, xs);
    for (int64_t i = 0; i < ix->numel; i++) { /* check everything before writing anything */
        int64_t v = index_at(ix, i);
        if (v < -D || v >= D)
            return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at position %lld is out of range [%lld, %lld) for axis %d",
                             ix->name, (long long)v, (long long)i, (long long)-D, (long long)D, ax);
    }
    if (y->nbytes)
        memcpy(y->data, x->data, y->nbytes);
    int64_t idx[OTL_MAX_RANK] = {0}, off = 0;
    for (int64_t i = 0; i < ix->numel; i++) {
        int64_t v = index_at(ix, i);
        if (v < 0)
            v += D;
        combine(y->data, off + v * xs[ax], u->data, i, x->dtype, s->red, s->esz);
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

const otl_op otl_op_ScatterElements = {
    .op_type = "ScatterElements", .domain = "", .since = 11, .until = 22,
    .infer = scatter_elements_infer, .forward = scatter_elements_fwd,
};

const otl_op otl_op_Scatter = {
    .op_type = "Scatter", .domain = "", .since = 9, .until = 10,
    .infer = scatter_elements_infer, .forward = scatter_elements_fwd,
};

/* ---------------------------------------------------------------- ScatterND */

static otl_status scatter_nd_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, index_types)) || (st = otl_check_in(k, 2, NULL)))
        return st;
    scatter_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    if ((st = parse_reduction(k, &s->red)))
        return st;
    const otl_rt *x = k->in[0], *ix = k->in[1], *u = k->in[2];
    if (ix->rank < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "indices must have rank >= 1");
    int64_t kk = ix->dims[ix->rank - 1];
    if (kk < 1 || kk > x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "the last dimension of indices (%lld) must be in [1, %d]", (long long)kk, x->rank);
    /* updates: indices.shape[:-1] + data.shape[k:] */
    int ur = ix->rank - 1 + x->rank - (int)kk;
    int ok = u->dtype == x->dtype && u->rank == ur;
    for (int d = 0; ok && d < ix->rank - 1; d++)
        ok = u->dims[d] == ix->dims[d];
    for (int d = 0; ok && d < x->rank - kk; d++)
        ok = u->dims[ix->rank - 1 + d] == x->dims[kk + d];
    if (!ok)
        return otl_kfail(k, OTL_ERR_INPUT, "updates must have the data's dtype and shape indices.shape[:-1] + data.shape[%lld:]",
                         (long long)kk);
    return otl_rt_like(k, k->out[0], x);
}

static otl_status scatter_nd_fwd(otl_kctx *k)
{
    scatter_state *s = k->state;
    const otl_rt *x = k->in[0], *ix = k->in[1], *u = k->in[2];
    otl_rt *y = k->out[0];
    int kk = (int)ix->dims[ix->rank - 1];
    int64_t xs[OTL_MAX_RANK], n = kk ? ix->numel / kk : 0, slice = 1;
    otl_strides_c(x->rank, x->dims, xs);
    for (int d = kk; d < x->rank; d++)
        slice *= x->dims[d];
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < kk; j++) {
            int64_t v = index_at(ix, i * kk + j), D = x->dims[j];
            if (v < -D || v >= D)
                return otl_kfail(k, OTL_ERR_INPUT, "indices '%s': value %lld at [%lld, %d] is out of range [%lld, %lld)",
                                 ix->name, (long long)v, (long long)i, j, (long long)-D, (long long)D);
        }
    if (y->nbytes)
        memcpy(y->data, x->data, y->nbytes);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int j = 0; j < kk; j++) {
            int64_t v = index_at(ix, i * kk + j);
            off += (v < 0 ? v + x->dims[j] : v) * xs[j];
        }
        if (slice == 0)
            break;
        if (s->red == RED_NONE)
            memcpy((char *)y->data + (size_t)off * s->esz, (const char *)u->data + (size_t)(i * slice) * s->esz,
                   (size_t)slice * s->esz);
        else
            for (int64_t e = 0; e < slice; e++)
                combine(y->data, off + e, u->data, i * slice + e, x->dtype, s->red, s->esz);
    }
    return OTL_OK;
}

const otl_op otl_op_ScatterND = {
    .op_type = "ScatterND", .domain = "", .since = 11, .until = 22,
    .infer = scatter_nd_infer, .forward = scatter_nd_fwd,
};
