/* shape_concat.c - Concat and Split, the two directions of joining tensors along one axis; any
 * fixed-size dtype. Differentiable inputs: every Concat input (its gradient is the matching
 * slice of the output gradient); Split's data input (the output gradients concatenated). */
#include <stdlib.h>

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

const otl_op otl_op_Concat = {
    .op_type = "Concat", .domain = "", .since = 4, .until = 22,
    .infer = concat_infer, .forward = concat_forward,
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

const otl_op otl_op_Split = {
    .op_type = "Split", .domain = "", .since = 2, .until = 22,
    .infer = split_infer, .forward = split_forward,
};
