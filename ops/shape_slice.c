/* shape_slice.c - Slice: starts/ends/axes/steps (attributes before opset 10, inputs from 10),
 * negative steps, clamping as in the ONNX spec; any fixed-size dtype. Differentiable input: data
 * (its gradient, the private onnx_tl.SliceGrad, is zero with the output gradient written into the
 * sliced window, strided as the slice); starts, ends, axes and steps are not differentiable. */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

typedef struct slice_state {
    int rank;
    int64_t start[OTL_MAX_RANK], step[OTL_MAX_RANK]; /* per input axis */
    size_t esz;
} slice_state;

static otl_status slice_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    slice_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *x = k->in[0];
    int r = x->rank;
    s->rank = r;
    s->esz = esz;
    int64_t starts[OTL_MAX_RANK], ends[OTL_MAX_RANK], axes[OTL_MAX_RANK], steps[OTL_MAX_RANK];
    int ns, ne, na = -1, nst = -1;
    if (k->opset < 10) {
        if ((st = otl_attr_ints(k, "starts", starts, OTL_MAX_RANK, &ns)) ||
            (st = otl_attr_ints(k, "ends", ends, OTL_MAX_RANK, &ne)) ||
            (st = otl_attr_ints(k, "axes", axes, OTL_MAX_RANK, &na)))
            return st;
        if (ns < 0 || ne < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "attributes 'starts' and 'ends' are required");
    } else {
        if ((st = otl_const_ints(k, 1, starts, OTL_MAX_RANK, &ns)) ||
            (st = otl_const_ints(k, 2, ends, OTL_MAX_RANK, &ne)))
            return st;
        if (otl_has_in(k, 3) && (st = otl_const_ints(k, 3, axes, OTL_MAX_RANK, &na)))
            return st;
        if (otl_has_in(k, 4) && (st = otl_const_ints(k, 4, steps, OTL_MAX_RANK, &nst)))
            return st;
    }
    if (ne != ns)
        return otl_kfail(k, OTL_ERR_INPUT, "starts has %d values but ends has %d", ns, ne);
    if (na >= 0 && na != ns)
        return otl_kfail(k, OTL_ERR_INPUT, "starts has %d values but axes has %d", ns, na);
    if (nst >= 0 && nst != ns)
        return otl_kfail(k, OTL_ERR_INPUT, "starts has %d values but steps has %d", ns, nst);
    if (na < 0 && ns > r)
        return otl_kfail(k, OTL_ERR_INPUT, "%d starts for an input of rank %d", ns, r);
    int64_t dims[OTL_MAX_RANK];
    int seen[OTL_MAX_RANK] = {0};
    for (int d = 0; d < r; d++) {
        dims[d] = x->dims[d];
        s->start[d] = 0;
        s->step[d] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a = i;
        if (na >= 0 && (st = otl_axis(k, axes[i], r, &a)))
            return st;
        if (seen[a])
            return otl_kfail(k, OTL_ERR_INPUT, "axis %d is sliced twice", a);
        seen[a] = 1;
        int64_t step = nst >= 0 ? steps[i] : 1;
        if (step == 0)
            return otl_kfail(k, OTL_ERR_INPUT, "steps[%d] is 0", i);
        int64_t D = x->dims[a], b = starts[i], e = ends[i];
        if (b < 0)
            b += D;
        if (e < 0)
            e += D;
        int64_t n;
        if (D == 0) {
            n = 0;
        } else if (step > 0) {
            b = b < 0 ? 0 : b > D ? D : b;
            e = e < 0 ? 0 : e > D ? D : e;
            n = e > b ? (e - b - 1) / step + 1 : 0;
        } else {
            b = b < 0 ? 0 : b > D - 1 ? D - 1 : b;
            e = e < -1 ? -1 : e > D - 1 ? D - 1 : e;
            n = b > e ? (b - e - 1) / (step == INT64_MIN ? INT64_MAX : -step) + 1 : 0;
        }
        s->start[a] = n ? b : 0;
        s->step[a] = n > 1 ? step : 1; /* a huge step that takes one element must not overflow strides */
        dims[a] = n;
    }
    return otl_rt_set(k, k->out[0], x->dtype, r, dims);
}

static otl_status slice_forward(otl_kctx *k)
{
    slice_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    int64_t xs[OTL_MAX_RANK], ys[OTL_MAX_RANK], ss[OTL_MAX_RANK], off = 0;
    otl_strides_c(s->rank, x->dims, xs);
    otl_strides_c(s->rank, y->dims, ys);
    for (int d = 0; d < s->rank; d++) {
        off += s->start[d] * xs[d];
        ss[d] = s->step[d] * xs[d];
    }
    otl_copy_strided(y->data, ys, (const char *)x->data + (size_t)off * s->esz, ss, s->rank, y->dims, s->esz);
    return OTL_OK;
}

/* SliceGrad(dY, Shape(X), starts, ends, axes, steps) with the forward's attributes (opset < 10)
 * and its opset in fwd_opset. */
static otl_status slice_grad(otl_gctx *c)
{
    const char *in[6] = {c->dy[0], NULL, "", "", "", ""};
    const char *x[1] = {c->node->inputs[0]};
    in[1] = otl_gemit1(c, "", "Shape", 1, x, NULL);
    for (int i = 1; i < 5 && i < c->n_in && c->opset >= 10; i++)
        in[1 + i] = c->node->inputs[i];
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "SliceGrad", 6, in, &n);
    otl_status st = dx ? otl_gattr_copy(c, n) : OTL_OK;
    if (!st && dx)
        st = otl_gattr_int(c, n, "fwd_opset", c->opset);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Slice = {
    .op_type = "Slice", .domain = "", .since = 1, .until = 22,
    .infer = slice_infer, .forward = slice_forward, .grad_inputs = 1, .grad = slice_grad,
};

/* ---------------------------------------------------------------- SliceGrad (onnx_tl) */

static otl_status slice_grad_infer(otl_kctx *k)
{
    otl_rt x, y;
    otl_status st = otl_infer_forward(k, slice_infer, 1, 2, 4, &x, &y);
    return st ? st : otl_rt_set(k, k->out[0], x.dtype, x.rank, x.dims);
}

/* dX = 0, then dX[start + i * step] = dY[i] per axis. */
static otl_status slice_grad_forward(otl_kctx *k)
{
    slice_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (dx->nbytes)
        otl_zero_par(dx->data, dx->nbytes);
    if (dy->numel == 0)
        return OTL_OK;
    int64_t xs[OTL_MAX_RANK], ys[OTL_MAX_RANK], ds[OTL_MAX_RANK], off = 0;
    otl_strides_c(s->rank, dx->dims, xs);
    otl_strides_c(s->rank, dy->dims, ys);
    for (int d = 0; d < s->rank; d++) {
        off += s->start[d] * xs[d];
        ds[d] = s->step[d] * xs[d];
    }
    otl_copy_strided((char *)dx->data + (size_t)off * s->esz, ds, dy->data, ys, s->rank, dy->dims, s->esz);
    return OTL_OK;
}

const otl_op otl_op_SliceGrad = {
    .op_type = "SliceGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = slice_grad_infer, .forward = slice_grad_forward,
};
