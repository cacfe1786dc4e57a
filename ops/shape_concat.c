/* shape_concat.c - Concat and Split, the two directions of joining tensors along one axis; any
 * fixed-size dtype. Differentiable inputs: every Concat input (its gradient is the matching
 * slice of the output gradient: the private onnx_tl.ConcatGrad, a Split whose sizes come from
 * Shape(input i), folded at plan time); Split's data input (Concat of the output gradients, zeros
 * for outputs without one). Split's sizes input is not differentiable. */
#include <stdlib.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

/* Copy `part` (dims, C order) into / out of `whole` at offset `at` along `axis`. to_whole=1:
 * Concat direction, 0: Split direction. */
static void part_copy(void *whole, const int64_t *whole_dims, void *part, const int64_t *part_dims, int rank,
                      int axis, int64_t at, size_t esz, int to_whole)
{
    int64_t ws[OTL_MAX_RANK], ps[OTL_MAX_RANK];
    otl_strides_c(rank, whole_dims, ws);
    otl_strides_c(rank, part_dims, ps);
    char *w = (char *)whole + (size_t)(at * ws[axis]) * esz;
    if (to_whole)
        otl_copy_strided(w, ws, part, ps, rank, part_dims, esz);
    else
        otl_copy_strided(part, ps, w, ws, rank, part_dims, esz);
}

/* ---------------------------------------------------------------- Concat */

typedef struct concat_state {
    int axis;
    size_t esz;
} concat_state;

static otl_status concat_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if (k->n_in < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "at least one input is required");
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    concat_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x0 = k->in[0];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", INT64_MIN, &axis)))
        return st;
    if (axis == INT64_MIN)
        return otl_kfail(k, OTL_ERR_INPUT, "attribute 'axis' is required");
    if (x0->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "cannot concatenate scalars");
    if ((st = otl_axis(k, axis, x0->rank, &s->axis)))
        return st;
    int64_t dims[OTL_MAX_RANK];
    for (int d = 0; d < x0->rank; d++)
        dims[d] = x0->dims[d];
    dims[s->axis] = 0;
    for (int i = 0; i < k->n_in; i++) {
        if (!otl_has_in(k, i))
            return otl_kfail(k, OTL_ERR_INPUT, "input %d is missing", i);
        const otl_rt *x = k->in[i];
        if (x->dtype != x0->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has dtype %s, input 0 has %s", i, x->name,
                             otl_dtype_name(x->dtype), otl_dtype_name(x0->dtype));
        if (x->rank != x0->rank)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has rank %d, input 0 has rank %d", i, x->name,
                             x->rank, x0->rank);
        for (int d = 0; d < x0->rank; d++)
            if (d != s->axis && x->dims[d] != x0->dims[d])
                return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s': dimension %d is %lld, input 0 has %lld", i,
                                 x->name, d, (long long)x->dims[d], (long long)x0->dims[d]);
        dims[s->axis] += x->dims[s->axis];
    }
    return otl_rt_set(k, k->out[0], x0->dtype, x0->rank, dims);
}

static otl_status concat_forward(otl_kctx *k)
{
    concat_state *s = k->state;
    otl_rt *y = k->out[0];
    int64_t at = 0;
    for (int i = 0; i < k->n_in; i++) {
        const otl_rt *x = k->in[i];
        part_copy(y->data, y->dims, x->data, x->dims, y->rank, s->axis, at, s->esz, 1);
        at += x->dims[s->axis];
    }
    return OTL_OK;
}

/* ConcatGrad(dY, Shape(x_0), ..., Shape(x_n-1)) -> dx_i for the inputs that need one. */
static otl_status concat_grad(otl_gctx *c)
{
    int n = c->n_in;
    const char **in = calloc((size_t)n + 1, sizeof *in), **out = calloc((size_t)n, sizeof *out);
    otl_status st = OTL_OK;
    if (!in || !out) {
        free(in);
        free(out);
        return otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
    }
    in[0] = c->dy[0];
    for (int i = 0; i < n; i++) {
        const char *x[1] = {c->node->inputs[i]};
        in[1 + i] = otl_gemit1(c, "", "Shape", 1, x, NULL);
        out[i] = c->need[i] ? otl_gname(c, c->node->inputs[i]) : "";
    }
    otl_node *g = otl_gemit(c, OTL_GRAD_DOMAIN, "ConcatGrad", n + 1, in, n, out);
    if (g)
        st = otl_gattr_copy(c, g);
    for (int i = 0; i < n; i++)
        if (c->need[i])
            otl_grad_set(c, i, g ? out[i] : NULL);
    free(in);
    free(out);
    return st;
}

const otl_op otl_op_Concat = {
    .op_type = "Concat", .domain = "", .since = 4, .until = 22,
    .infer = concat_infer, .forward = concat_forward, .grad_inputs = ~0u, .grad = concat_grad,
};

/* ---------------------------------------------------------------- ConcatGrad (onnx_tl) */

/* Inputs dY and the shapes of Concat's n inputs (const); outputs the n parts of dY along `axis`
 * (omitted outputs are skipped). */
static otl_status concat_grad_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    if (k->n_in != k->n_out + 1)
        return otl_kfail(k, OTL_ERR_INPUT, "%d inputs for %d outputs (dY and one shape per output expected)", k->n_in,
                         k->n_out);
    concat_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *dy = k->in[0];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", INT64_MIN, &axis)))
        return st;
    if (axis == INT64_MIN)
        return otl_kfail(k, OTL_ERR_INPUT, "attribute 'axis' is required");
    if ((st = otl_axis(k, axis, dy->rank, &s->axis)))
        return st;
    int64_t total = 0;
    for (int i = 0; i < k->n_out; i++) {
        int64_t dims[OTL_MAX_RANK];
        int r;
        if ((st = otl_const_ints(k, 1 + i, dims, OTL_MAX_RANK, &r)))
            return st;
        if (r != dy->rank)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d has rank %d, the gradient %d", i, r, dy->rank);
        for (int d = 0; d < r; d++)
            if (d != s->axis && dims[d] != dy->dims[d])
                return otl_kfail(k, OTL_ERR_INPUT, "input %d: dimension %d is %lld, the gradient's %lld", i, d,
                                 (long long)dims[d], (long long)dy->dims[d]);
        total += dims[s->axis];
        if (otl_has_out(k, i) && (st = otl_rt_set(k, k->out[i], dy->dtype, r, dims)))
            return st;
    }
    if (total != dy->dims[s->axis])
        return otl_kfail(k, OTL_ERR_INPUT, "the inputs' sizes along axis %d sum to %lld, the gradient has %lld",
                         s->axis, (long long)total, (long long)dy->dims[s->axis]);
    return OTL_OK;
}

static otl_status concat_grad_forward(otl_kctx *k)
{
    concat_state *s = k->state;
    const otl_rt *dy = k->in[0];
    int64_t at = 0;
    for (int i = 0; i < k->n_out; i++) {
        int64_t part = k->in[1 + i]->numel ? otl_get_i(k->in[1 + i]->data, k->in[1 + i]->dtype, s->axis) : 0;
        otl_rt *y = k->out[i];
        if (y)
            part_copy(dy->data, dy->dims, y->data, y->dims, dy->rank, s->axis, at, s->esz, 0);
        at += part;
    }
    return OTL_OK;
}

const otl_op otl_op_ConcatGrad = {
    .op_type = "ConcatGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = concat_grad_infer, .forward = concat_grad_forward,
};

/* ---------------------------------------------------------------- Split */

typedef struct split_state {
    int axis;
    size_t esz;
    int64_t off[]; /* (n_out + 1) start of each output along the axis */
} split_state;

#define SPLIT_MAX 4096

static otl_status split_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    int n_out = k->n_out;
    if (n_out < 1 || n_out > SPLIT_MAX)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%d outputs (1 to %d supported)", n_out, SPLIT_MAX);
    split_state *s = calloc(1, sizeof *s + ((size_t)n_out + 1) * sizeof *s->off);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    const otl_rt *x = k->in[0];
    int64_t axis;
    if ((st = otl_attr_int(k, "axis", 0, &axis)))
        return st;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "cannot split a scalar");
    if ((st = otl_axis(k, axis, x->rank, &s->axis)))
        return st;
    int64_t *split = calloc(SPLIT_MAX, sizeof *split);
    if (!split)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    int n = -1;
    if (k->opset < 13)
        st = otl_attr_ints(k, "split", split, SPLIT_MAX, &n);
    else if (otl_has_in(k, 1) && k->in[1]->numel > 0) /* an empty split input counts as absent */
        st = otl_const_ints(k, 1, split, SPLIT_MAX, &n);
    int64_t num_outputs = -1;
    if (!st && k->opset >= 18)
        st = otl_attr_int(k, "num_outputs", -1, &num_outputs);
    int64_t D = x->dims[s->axis];
    if (!st && n >= 0 && num_outputs >= 0)
        st = otl_kfail(k, OTL_ERR_INPUT, "both 'split' and 'num_outputs' are given");
    if (!st && num_outputs >= 0 && num_outputs != n_out)
        st = otl_kfail(k, OTL_ERR_INPUT, "num_outputs is %lld but the node has %d outputs", (long long)num_outputs,
                       n_out);
    if (!st && n >= 0) {
        int64_t sum = 0;
        for (int i = 0; i < n; i++) {
            if (split[i] < 0) {
                st = otl_kfail(k, OTL_ERR_INPUT, "split[%d] = %lld is negative", i, (long long)split[i]);
                break;
            }
            if (split[i] > D - sum) { /* larger than what is left: also keeps the sum from overflowing */
                st = otl_kfail(k, OTL_ERR_INPUT, "split sums to more than the size %lld of axis %d", (long long)D,
                               s->axis);
                break;
            }
            sum += split[i];
        }
        if (!st && n != n_out)
            st = otl_kfail(k, OTL_ERR_INPUT, "split has %d values for %d outputs", n, n_out);
        if (!st && sum != D)
            st = otl_kfail(k, OTL_ERR_INPUT, "split sums to %lld, but axis %d has size %lld", (long long)sum,
                           s->axis, (long long)D);
    } else if (!st && num_outputs >= 0) {
        /* opset 18: chunks of ceil(D / n), the last one smaller */
        int64_t c = (D + n_out - 1) / n_out;
        for (int i = 0; i < n_out; i++) {
            int64_t lo = c * i < D ? c * i : D, hi = c * (i + 1) < D ? c * (i + 1) : D;
            split[i] = hi - lo;
        }
    } else if (!st) {
        if (D % n_out)
            st = otl_kfail(k, OTL_ERR_INPUT, "axis %d of size %lld cannot be split into %d equal parts", s->axis,
                           (long long)D, n_out);
        for (int i = 0; i < n_out; i++)
            split[i] = D / n_out;
    }
    int64_t dims[OTL_MAX_RANK];
    for (int d = 0; d < x->rank; d++)
        dims[d] = x->dims[d];
    for (int i = 0; !st && i < n_out; i++) {
        s->off[i + 1] = s->off[i] + split[i];
        dims[s->axis] = split[i];
        st = otl_rt_set(k, k->out[i], x->dtype, x->rank, dims);
    }
    free(split);
    return st;
}

static otl_status split_forward(otl_kctx *k)
{
    split_state *s = k->state;
    const otl_rt *x = k->in[0];
    for (int i = 0; i < k->n_out; i++) {
        otl_rt *y = k->out[i];
        if (y)
            part_copy(x->data, x->dims, y->data, y->dims, x->rank, s->axis, s->off[i], s->esz, 0);
    }
    return OTL_OK;
}

/* dX = Concat(dy_0, ..., dy_n-1) along the axis; outputs without a gradient contribute zeros. */
static otl_status split_grad(otl_gctx *c)
{
    int n = c->n_out;
    if (n == 1 && c->dy[0]) {
        otl_grad_set(c, 0, c->dy[0]);
        return OTL_OK;
    }
    const char **parts = calloc((size_t)n, sizeof *parts);
    if (!parts)
        return otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
    for (int j = 0; j < n; j++) {
        if (!c->dy[j] && !*c->node->outputs[j]) {
            free(parts);
            return otl_error_set(c->err, OTL_ERR_UNSUPPORTED, "%s: node '%s' (Split): output %d is omitted", c->file,
                                 c->node->name, j);
        }
        parts[j] = c->dy[j] ? c->dy[j] : otl_gzeros_like(c, c->node->outputs[j]);
    }
    otl_node *g = NULL;
    const char *dx = otl_gemit1(c, "", "Concat", n, parts, &g);
    const otl_attr *a = otl_node_attr(c->node, "axis");
    otl_status st = dx ? otl_gattr_int(c, g, "axis", a && a->type == OTL_ATTR_INT ? a->i : 0) : OTL_OK;
    free(parts);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Split = {
    .op_type = "Split", .domain = "", .since = 2, .until = 22,
    .infer = split_infer, .forward = split_forward, .grad_inputs = 1, .grad = split_grad,
};
