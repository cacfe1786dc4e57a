/* shape_expand.c - Expand (NumPy broadcast to a shape) and Tile (repeat along each axis), both a
 * strided copy with zero source strides; any fixed-size dtype. Differentiable input: data (its
 * gradient sums the output gradient over the broadcast/repeated copies: ReduceSumTo(dY, Shape(X))
 * for Expand, the private onnx_tl.TileGrad(dY, Shape(X)) for Tile); shape and repeats are not
 * differentiable. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
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

static otl_status expand_grad(otl_gctx *c)
{
    otl_grad_set(c, 0, otl_grad_unbroadcast(c, c->dy[0], 0));
    return OTL_OK;
}

const otl_op otl_op_Expand = {
    .op_type = "Expand", .domain = "", .since = 8, .until = 22,
    .infer = expand_infer, .forward = expand_fwd, .grad_inputs = 1, .grad = expand_grad,
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

static otl_status tile_grad(otl_gctx *c)
{
    const char *x[1] = {c->node->inputs[0]};
    const char *in[2] = {c->dy[0], otl_gemit1(c, "", "Shape", 1, x, NULL)};
    otl_grad_set(c, 0, otl_gemit1(c, OTL_GRAD_DOMAIN, "TileGrad", 2, in, NULL));
    return OTL_OK;
}

const otl_op otl_op_Tile = {
    .op_type = "Tile", .domain = "", .since = 6, .until = 22,
    .infer = tile_infer, .forward = tile_fwd, .grad_inputs = 1, .grad = tile_grad,
};

/* ---------------------------------------------------------------- TileGrad (onnx_tl) */

static const int grad_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

/* TileGrad(dY, Shape(X)): dX = the sum of the tiles of dY (each of X's shape). */
static otl_status tile_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, grad_types)))
        return st;
    const otl_rt *dy = k->in[0];
    int64_t dims[OTL_MAX_RANK];
    int r;
    if ((st = otl_const_ints(k, 1, dims, OTL_MAX_RANK, &r)))
        return st;
    if (r != dy->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "the input has rank %d, the gradient %d", r, dy->rank);
    for (int a = 0; a < r; a++)
        if (dims[a] < 0 || (dims[a] == 0 ? dy->dims[a] != 0 : dy->dims[a] % dims[a] != 0))
            return otl_kfail(k, OTL_ERR_INPUT, "gradient dimension %d (%lld) is not a multiple of the input's (%lld)", a,
                             (long long)dy->dims[a], (long long)dims[a]);
    return otl_rt_set(k, k->out[0], dy->dtype, r, dims);
}

/* Rows of dX (along the last axis) are independent: each adds its copies from every tile. */
#define TILE_GRAD_LOOP(T)                                                                         \
    do {                                                                                          \
        T *dxp = dx->data;                                                                        \
        const T *dyp = dy->data;                                                                  \
        _Pragma("omp parallel for if (par) schedule(static)")                                     \
        for (int64_t row = 0; row < rows; row++) {                                                \
            int64_t base = 0, q = row;                                                            \
            for (int a = L - 1; a >= 0; a--) {                                                    \
                base += (q % xd[a]) * ys[a];                                                      \
                q /= xd[a];                                                                       \
            }                                                                                     \
            T *d = dxp + row * n;                                                                 \
            int64_t t[OTL_MAX_RANK] = {0};                                                        \
            for (;;) {                                                                            \
                int64_t off = base;                                                               \
                for (int a = 0; a < R; a++)                                                       \
                    off += t[a] * xd[a] * ys[a];                                                  \
                const T *y = dyp + off;                                                           \
                for (int64_t i = 0; i < n; i++)                                                   \
                    d[i] += y[i];                                                                 \
                int a = R - 1;                                                                    \
                while (a >= 0 && ++t[a] == rep[a])                                                \
                    t[a--] = 0;                                                                   \
                if (a < 0)                                                                        \
                    break;                                                                        \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static otl_status tile_grad_forward(otl_kctx *k)
{
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (dx->nbytes)
        memset(dx->data, 0, dx->nbytes);
    if (dy->numel == 0 || dx->numel == 0)
        return OTL_OK;
    int R = dx->rank;
    if (R == 0) {
        memcpy(dx->data, dy->data, dx->nbytes);
        return OTL_OK;
    }
    int L = R - 1;
    int64_t xd[OTL_MAX_RANK], ys[OTL_MAX_RANK], rep[OTL_MAX_RANK];
    otl_strides_c(R, dy->dims, ys);
    for (int a = 0; a < R; a++) {
        xd[a] = dx->dims[a];
        rep[a] = dy->dims[a] / dx->dims[a];
    }
    int64_t n = xd[L], rows = dx->numel / n;
    int par = dy->numel >= 65536 && rows > 1 && !omp_in_parallel();
    if (dy->dtype == OTL_DTYPE_FLOAT)
        TILE_GRAD_LOOP(float);
    else
        TILE_GRAD_LOOP(double);
    return OTL_OK;
}

const otl_op otl_op_TileGrad = {
    .op_type = "TileGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = tile_grad_infer, .forward = tile_grad_forward,
};
