/* shape_pad.c - Pad: constant, reflect, edge and wrap (opset 19) modes; pads as an attribute
 * (opsets 2-10) or input (11+), optional axes input (18+); negative pads crop. Any fixed-size
 * dtype. Differentiable input: data (its gradient, the private onnx_tl.PadGrad, sends each output
 * gradient element back through the same per-axis index maps, summing the reflected/replicated/
 * wrapped copies; in constant mode the padding gets nothing); pads, constant_value and axes are
 * not differentiable. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

typedef struct pad_state {
    int mode;
    int rank;
    size_t esz;
    int64_t before[OTL_MAX_RANK]; /* positive part of the begin pads */
    int64_t lo[OTL_MAX_RANK];     /* first input index kept (negative begin pads crop) */
    int64_t w[OTL_MAX_RANK];      /* input extent kept */
    unsigned char value[16];      /* constant, from the attribute (opset < 11) */
    int value_from_input;         /* constant from input 2 at run time */
    int64_t *map;                 /* per axis, per output index: input index or -1 (constant) */
    int64_t map_off[OTL_MAX_RANK];
} pad_state;

static void pad_release(otl_kctx *k)
{
    pad_state *s = k->state;
    free(s->map);
}

/* Input index for output index o of an axis (i = o - before, kept window of w from lo), or -1. */
static int64_t pad_src(int mode, int64_t i, int64_t w)
{
    if (i >= 0 && i < w)
        return i;
    switch (mode) {
    case PAD_EDGE:
        return i < 0 ? 0 : w - 1;
    case PAD_WRAP: {
        int64_t m = i % w;
        return m < 0 ? m + w : m;
    }
    case PAD_REFLECT: {
        if (w == 1)
            return 0;
        int64_t p = 2 * (w - 1), m = i % p;
        if (m < 0)
            m += p;
        return m < w ? m : p - m;
    }
    default:
        return -1;
    }
}

static otl_status pad_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    pad_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *x = k->in[0];
    int r = x->rank;
    s->rank = r;
    s->esz = esz;
    const char *mode;
    if ((st = otl_attr_str(k, "mode", "constant", &mode)))
        return st;
    if (strcmp(mode, "constant") == 0)
        s->mode = PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0)
        s->mode = PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0)
        s->mode = PAD_EDGE;
    else if (strcmp(mode, "wrap") == 0 && k->opset >= 19)
        s->mode = PAD_WRAP;
    else
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);
    int64_t raw[2 * OTL_MAX_RANK], axes[OTL_MAX_RANK];
    int n, na = -1;
    if (k->opset < 11) {
        float v;
        if ((st = otl_attr_ints(k, "pads", raw, 2 * OTL_MAX_RANK, &n)) || (st = otl_attr_float(k, "value", 0.0f, &v)))
            return st;
        if (n < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "attribute 'pads' is required");
        otl_set_f(s->value, x->dtype, 0, v);
    } else {
        if ((st = otl_const_ints(k, 1, raw, 2 * OTL_MAX_RANK, &n)))
            return st;
        if (otl_has_in(k, 2) && k->in[2]->numel > 0) {
            const otl_rt *c = k->in[2];
            if (c->dtype != x->dtype || c->numel != 1)
                return otl_kfail(k, OTL_ERR_INPUT, "constant_value must be one %s value", otl_dtype_name(x->dtype));
            s->value_from_input = 1;
        }
        if (k->opset >= 18 && otl_has_in(k, 3) && (st = otl_const_ints(k, 3, axes, OTL_MAX_RANK, &na)))
            return st;
    }
    int npad = na >= 0 ? na : r;
    if (n != 2 * npad)
        return otl_kfail(k, OTL_ERR_INPUT, "pads has %d values, expected %d", n, 2 * npad);
    int64_t pb[OTL_MAX_RANK] = {0}, pe[OTL_MAX_RANK] = {0};
    int seen[OTL_MAX_RANK] = {0};
    for (int i = 0; i < npad; i++) {
        int a = i;
        if (na >= 0 && (st = otl_axis(k, axes[i], r, &a)))
            return st;
        if (seen[a])
            return otl_kfail(k, OTL_ERR_INPUT, "axis %d is repeated", a);
        seen[a] = 1;
        pb[a] = raw[i];
        pe[a] = raw[i + npad];
    }
    int64_t dims[OTL_MAX_RANK], total = 0;
    for (int a = 0; a < r; a++) {
        int64_t D = x->dims[a];
        if (pb[a] < -D || pe[a] < -D || pb[a] > ((int64_t)1 << 40) || pe[a] > ((int64_t)1 << 40))
            return otl_kfail(k, OTL_ERR_INPUT, "pads (%lld, %lld) are out of range for axis %d of size %lld",
                             (long long)pb[a], (long long)pe[a], a, (long long)D);
        s->lo[a] = pb[a] < 0 ? -pb[a] : 0;
        s->w[a] = D - s->lo[a] - (pe[a] < 0 ? -pe[a] : 0);
        s->before[a] = pb[a] > 0 ? pb[a] : 0;
        dims[a] = D + pb[a] + pe[a];
        if (dims[a] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "pads (%lld, %lld) crop more than axis %d of size %lld",
                             (long long)pb[a], (long long)pe[a], a, (long long)D);
        if (s->w[a] <= 0 && dims[a] > 0 && s->mode != PAD_CONSTANT)
            return otl_kfail(k, OTL_ERR_INPUT, "axis %d has nothing to pad from in mode '%s'", a, mode);
        s->map_off[a] = total;
        total += dims[a];
    }
    if ((st = otl_rt_set(k, k->out[0], x->dtype, r, dims)))
        return st;
    s->map = malloc((size_t)(total ? total : 1) * sizeof *s->map);
    if (!s->map)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    for (int a = 0; a < r; a++)
        for (int64_t o = 0; o < dims[a]; o++) {
            int64_t i = s->w[a] > 0 ? pad_src(s->mode, o - s->before[a], s->w[a]) : -1;
            s->map[s->map_off[a] + o] = i < 0 ? -1 : s->lo[a] + i;
        }
    return OTL_OK;
}

/* rows [r0, r1) of the output (outer axes 0..rank-2, row along the last axis) */
static void pad_rows(const pad_state *s, char *y, const int64_t *ydims, const char *x, const int64_t *xdims,
                     const void *value, int64_t r0, int64_t r1)
{
    int R = s->rank, L = R - 1;
    size_t e = s->esz;
    int64_t xs[OTL_MAX_RANK], idx[OTL_MAX_RANK];
    otl_strides_c(R, xdims, xs);
    int64_t n = ydims[L];
    const int64_t *ml = s->map + s->map_off[L];
    int64_t q = r0;
    for (int a = L - 1; a >= 0; a--) {
        idx[a] = q % ydims[a];
        q /= ydims[a];
    }
    for (int64_t row = r0; row < r1; row++) {
        char *yr = y + (size_t)(row * n) * e;
        int64_t off = 0;
        int outside = 0;
        for (int a = 0; a < L; a++) {
            int64_t i = s->map[s->map_off[a] + idx[a]];
            if (i < 0)
                outside = 1;
            off += i * xs[a];
        }
        if (outside) {
            otl_fill_elems(yr, value, n, e);
        } else {
            const char *xr = x + (size_t)off * e;
            int64_t b = s->before[L], w = s->w[L];
            int64_t m0 = b < n ? b : n, m1 = b + w < n ? b + w : n;
            for (int64_t o = 0; o < m0; o++) {
                int64_t i = ml[o];
                memcpy(yr + (size_t)o * e, i < 0 ? value : xr + (size_t)i * e, e);
            }
            if (m1 > m0)
                memcpy(yr + (size_t)m0 * e, xr + (size_t)ml[m0] * e, (size_t)(m1 - m0) * e);
            for (int64_t o = m1 > m0 ? m1 : m0; o < n; o++) {
                int64_t i = ml[o];
                memcpy(yr + (size_t)o * e, i < 0 ? value : xr + (size_t)i * e, e);
            }
        }
        for (int a = L - 1; a >= 0; a--) {
            if (++idx[a] < ydims[a])
                break;
            idx[a] = 0;
        }
    }
}

static otl_status pad_forward(otl_kctx *k)
{
    pad_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    const void *value = s->value_from_input ? k->in[2]->data : s->value;
    if (s->rank == 0) {
        memcpy(y->data, x->data, s->esz);
        return OTL_OK;
    }
    int64_t rows = y->numel / y->dims[s->rank - 1];
    int par = (int64_t)y->nbytes >= ((int64_t)1 << 17) && rows > 1;
    int nchunks = par ? omp_get_max_threads() * 4 : 1;
    if (nchunks > rows)
        nchunks = (int)rows;
    #pragma omp parallel for if (par) schedule(static)
    for (int c = 0; c < nchunks; c++)
        pad_rows(s, y->data, y->dims, x->data, x->dims, value, rows * c / nchunks, rows * (c + 1) / nchunks);
    return OTL_OK;
}

/* PadGrad(dY, Shape(X), pads, constant_value, axes) with the forward's attributes and opset. */
static otl_status pad_grad(otl_gctx *c)
{
    const char *x[1] = {c->node->inputs[0]};
    const char *in[5] = {c->dy[0], otl_gemit1(c, "", "Shape", 1, x, NULL), "", "", ""};
    for (int i = 1; i < 4 && i < c->n_in && c->opset >= 11; i++)
        in[1 + i] = c->node->inputs[i];
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "PadGrad", 5, in, &n);
    otl_status st = dx ? otl_gattr_copy(c, n) : OTL_OK;
    if (!st && dx)
        st = otl_gattr_int(c, n, "fwd_opset", c->opset);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Pad = {
    .op_type = "Pad", .domain = "", .since = 2, .until = 22,
    .infer = pad_infer, .forward = pad_forward, .release = pad_release, .grad_inputs = 1, .grad = pad_grad,
};

/* ---------------------------------------------------------------- PadGrad (onnx_tl) */

static otl_status pad_grad_infer(otl_kctx *k)
{
    static const int grad_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};
    otl_rt x, y;
    otl_status st = otl_check_in(k, 0, grad_types);
    if (!st)
        st = otl_infer_forward(k, pad_infer, 1, 2, 3, &x, &y);
    return st ? st : otl_rt_set(k, k->out[0], x.dtype, x.rank, x.dims);
}

/* dx[map(o)] += dy[o] for the output rows [r0, r1) (rows along the last axis). */
#define PAD_GRAD_ROWS(T)                                                                          \
    do {                                                                                          \
        T *dxp = dx;                                                                              \
        const T *dyp = dy;                                                                        \
        for (int64_t row = r0; row < r1; row++) {                                                 \
            int64_t q = row, off = 0;                                                             \
            int outside = 0;                                                                      \
            for (int a = L - 1; a >= 0; a--) {                                                    \
                int64_t i = s->map[s->map_off[a] + q % ydims[a]];                                 \
                q /= ydims[a];                                                                    \
                outside |= i < 0;                                                                 \
                off += i * xs[a];                                                                 \
            }                                                                                     \
            if (outside)                                                                          \
                continue;                                                                         \
            T *d = dxp + off;                                                                     \
            const T *y = dyp + row * n;                                                           \
            for (int64_t o = 0; o < m0; o++)                                                      \
                if (ml[o] >= 0)                                                                   \
                    d[ml[o]] += y[o];                                                             \
            T *dm = d + s->lo[L];                                                                 \
            const T *ym = y + s->before[L];                                                       \
            for (int64_t o = 0; o < m1 - m0; o++) /* the kept window: one-to-one, contiguous */   \
                dm[o] += ym[o];                                                                   \
            for (int64_t o = m1 > m0 ? m1 : m0; o < n; o++)                                       \
                if (ml[o] >= 0)                                                                   \
                    d[ml[o]] += y[o];                                                             \
        }                                                                                         \
    } while (0)

static void pad_grad_rows(const pad_state *s, void *dx, const int64_t *xdims, const void *dy, const int64_t *ydims,
                          int dtype, int64_t r0, int64_t r1)
{
    int L = s->rank - 1;
    int64_t xs[OTL_MAX_RANK], n = ydims[L];
    otl_strides_c(s->rank, xdims, xs);
    const int64_t *ml = s->map + s->map_off[L];
    /* output indices [m0, m1) of the last axis read the kept input window */
    int64_t b = s->before[L], w = s->w[L] > 0 ? s->w[L] : 0;
    int64_t m0 = b < n ? b : n, m1 = b + w < n ? b + w : n;
    if (dtype == OTL_DTYPE_FLOAT)
        PAD_GRAD_ROWS(float);
    else
        PAD_GRAD_ROWS(double);
}

static otl_status pad_grad_forward(otl_kctx *k)
{
    pad_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (dx->nbytes)
        otl_zero_par(dx->data, dx->nbytes);
    if (dy->numel == 0 || dx->numel == 0)
        return OTL_OK;
    if (s->rank == 0) {
        memcpy(dx->data, dy->data, dx->nbytes);
        return OTL_OK;
    }
    /* Rows in different blocks never meet in dx: in constant mode every row is its own block
     * (the maps are one-to-one); otherwise blocks are the indices of the leading axes that are
     * not padded (their maps are the identity). */
    int L = s->rank - 1;
    int64_t rows = dy->numel / dy->dims[L], blocks = 1;
    if (s->mode == PAD_CONSTANT) {
        blocks = rows;
    } else {
        for (int a = 0; a < L; a++) {
            int ident = dy->dims[a] == dx->dims[a];
            for (int64_t o = 0; ident && o < dy->dims[a]; o++)
                ident = s->map[s->map_off[a] + o] == o;
            if (!ident)
                break;
            blocks *= dy->dims[a];
        }
    }
    int64_t per = rows / blocks;
    int par = dy->numel >= 65536 && blocks > 1 && !omp_in_parallel();
    int nchunks = par ? omp_get_max_threads() * 4 : 1;
    if (nchunks > blocks)
        nchunks = (int)blocks;
    #pragma omp parallel for if (par) schedule(static)
    for (int c = 0; c < nchunks; c++)
        pad_grad_rows(s, dx->data, dx->dims, dy->data, dy->dims, dy->dtype, blocks * c / nchunks * per,
                      blocks * (c + 1) / nchunks * per);
    return OTL_OK;
}

const otl_op otl_op_PadGrad = {
    .op_type = "PadGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = pad_grad_infer, .forward = pad_grad_forward, .release = pad_release,
};
