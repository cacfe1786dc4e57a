/* shape_expand.c - Expand (NumPy broadcast to a shape) and Tile (repeat along each axis), both a
 * strided copy with zero source strides; any fixed-size dtype. Differentiable input: data (its
 * gradient sums the output gradient over the broadcast/repeated copies); shape and repeats are
 * not differentiable. */
#include <stdlib.h>

#include "ops/shape_copy.h"

typedef struct expand_state {
    size_t esz;
} expand_state;

static otl_status alloc_state(otl_kctx *k, size_t esz)
{
    expand_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    s->esz = esz;
    k->state = s;
    return OTL_OK;
}

/* ---------------------------------------------------------------- Expand */

static otl_status expand_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = alloc_state(k, esz)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t shape[OTL_MAX_RANK], dims[OTL_MAX_RANK];
    int n;
    if ((st = otl_const_ints(k, 1, shape, OTL_MAX_RANK, &n)))
        return st;
    if (k->in[1]->rank != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "input 'shape' must be 1-D, got rank %d", k->in[1]->rank);
    int r = n > x->rank ? n : x->rank;
    for (int i = 0; i < r; i++) {
        int ix = i - (r - x->rank), is = i - (r - n);
        int64_t a = ix >= 0 ? x->dims[ix] : 1, b = is >= 0 ? shape[is] : 1;
        if (b < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "shape[%d] = %lld is negative", is, (long long)b);
        if (a != b && a != 1 && b != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "input dimension %d (%lld) cannot be broadcast to %lld", ix,
                             (long long)a, (long long)b);
        dims[i] = a == 1 ? b : a;
    }
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

/* out (out_dims) = inp (in_dims, right-aligned, broadcast where 1). */
static void expand_forward(void *out, const void *inp, int out_rank, const int64_t *out_dims, int in_rank,
                           const int64_t *in_dims, size_t esz)
{
    int64_t xs[OTL_MAX_RANK], ys[OTL_MAX_RANK], ss[OTL_MAX_RANK];
    otl_strides_c(in_rank, in_dims, xs);
    otl_strides_c(out_rank, out_dims, ys);
    for (int i = 0; i < out_rank; i++) {
        int ix = i - (out_rank - in_rank);
        ss[i] = ix >= 0 && in_dims[ix] != 1 ? xs[ix] : 0;
    }
    otl_copy_strided(out, ys, inp, ss, out_rank, out_dims, esz);
}

static otl_status expand_fwd(otl_kctx *k)
{
    expand_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    expand_forward(y->data, x->data, y->rank, y->dims, x->rank, x->dims, s->esz);
    return OTL_OK;
}

const otl_op otl_op_Expand = {
    .op_type = "Expand", .domain = "", .since = 8, .until = 22,
    .infer = expand_infer, .forward = expand_fwd,
};

/* ---------------------------------------------------------------- Tile */

static otl_status tile_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)) || (st = alloc_state(k, esz)))
        return st;
    const otl_rt *x = k->in[0];
    int64_t rep[OTL_MAX_RANK], dims[OTL_MAX_RANK];
    int n;
    if ((st = otl_const_ints(k, 1, rep, OTL_MAX_RANK, &n)))
        return st;
    if (k->in[1]->rank != 1 || n != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "input 'repeats' must be 1-D with %d values (the input rank)", x->rank);
    for (int i = 0; i < n; i++) {
        if (rep[i] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "repeats[%d] = %lld is negative", i, (long long)rep[i]);
        if (rep[i] && x->dims[i] > ((int64_t)1 << 40) / rep[i])
            return otl_kfail(k, OTL_ERR_INPUT, "repeats[%d] = %lld makes the output too large", i, (long long)rep[i]);
        dims[i] = x->dims[i] * rep[i];
    }
    return otl_rt_set(k, k->out[0], x->dtype, n, dims);
}

/* out (dims[a] * rep[a]) = inp (dims) repeated; as a (rep, dim) pair of axes per input axis. */
static void tile_forward(void *out, const void *inp, int rank, const int64_t *dims, const int64_t *out_dims, size_t esz)
{
    int64_t xs[OTL_MAX_RANK], ys[OTL_MAX_RANK];
    int64_t bd[OTL_COPY_MAX_RANK], bds[OTL_COPY_MAX_RANK], bss[OTL_COPY_MAX_RANK];
    otl_strides_c(rank, dims, xs);
    otl_strides_c(rank, out_dims, ys);
    for (int a = 0; a < rank; a++) {
        bd[2 * a] = dims[a] ? out_dims[a] / dims[a] : 0;
        bds[2 * a] = dims[a] * ys[a];
        bss[2 * a] = 0;
        bd[2 * a + 1] = dims[a];
        bds[2 * a + 1] = ys[a];
        bss[2 * a + 1] = xs[a];
    }
    otl_copy_strided(out, bds, inp, bss, 2 * rank, bd, esz);
}

static otl_status tile_fwd(otl_kctx *k)
{
    expand_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    tile_forward(y->data, x->data, x->rank, x->dims, y->dims, s->esz);
    return OTL_OK;
}

const otl_op otl_op_Tile = {
    .op_type = "Tile", .domain = "", .since = 6, .until = 22,
    .infer = tile_infer, .forward = tile_fwd,
};
