/* shape_transpose.c - Transpose: permute axes, any fixed-size dtype (tiled strided copy, see
 * shape_copy.c). Differentiable input: data; its gradient is the output gradient transposed by
 * the inverse permutation (a Transpose node). */
#include <stdlib.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

typedef struct transpose_state {
    int rank;
    int perm[OTL_MAX_RANK];
    size_t esz;
} transpose_state;

/* out (dims[perm[0]], ..., dims[perm[r-1]]) = inp (dims) with axes permuted. */
static void transpose_forward(void *out, const void *inp, int rank, const int64_t *dims, const int *perm, size_t esz)
{
    int64_t in_strides[OTL_MAX_RANK], out_dims[OTL_MAX_RANK], out_strides[OTL_MAX_RANK], src_strides[OTL_MAX_RANK];
    otl_strides_c(rank, dims, in_strides);
    for (int i = 0; i < rank; i++) {
        out_dims[i] = dims[perm[i]];
        src_strides[i] = in_strides[perm[i]];
    }
    otl_strides_c(rank, out_dims, out_strides);
    otl_copy_strided(out, out_strides, inp, src_strides, rank, out_dims, esz);
}

static otl_status transpose_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    const otl_rt *x = k->in[0];
    transpose_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->rank = x->rank;
    s->esz = esz;
    int64_t perm[OTL_MAX_RANK];
    int n;
    if ((st = otl_attr_ints(k, "perm", perm, OTL_MAX_RANK, &n)))
        return st;
    if (n < 0) {
        for (int i = 0; i < x->rank; i++)
            s->perm[i] = x->rank - 1 - i;
    } else {
        if (n != x->rank)
            return otl_kfail(k, OTL_ERR_INPUT, "perm has %d entries for an input of rank %d", n, x->rank);
        int seen[OTL_MAX_RANK] = {0};
        for (int i = 0; i < n; i++) {
            if (perm[i] < 0 || perm[i] >= n || seen[perm[i]])
                return otl_kfail(k, OTL_ERR_INPUT, "perm is not a permutation of 0..%d", n - 1);
            seen[perm[i]] = 1;
            s->perm[i] = (int)perm[i];
        }
    }
    int64_t dims[OTL_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        dims[i] = x->dims[s->perm[i]];
    return otl_rt_set(k, k->out[0], x->dtype, x->rank, dims);
}

static otl_status transpose_fwd(otl_kctx *k)
{
    transpose_state *s = k->state;
    transpose_forward(k->out[0]->data, k->in[0]->data, s->rank, k->in[0]->dims, s->perm, s->esz);
    return OTL_OK;
}

/* dX = Transpose(dY, perm = inverse of perm); without perm (axes reversed) the same reversal. */
static otl_status transpose_grad(otl_gctx *c)
{
    const otl_attr *a = otl_node_attr(c->node, "perm");
    const char *in[1] = {c->dy[0]};
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, "", "Transpose", 1, in, &n);
    otl_status st = OTL_OK;
    if (dx && a) {
        int64_t inv[OTL_MAX_RANK];
        int r = (int)a->n_ints, seen[OTL_MAX_RANK] = {0};
        if (a->type != OTL_ATTR_INTS || r > OTL_MAX_RANK)
            return otl_error_set(c->err, OTL_ERR_INPUT, "%s: node '%s' (Transpose): invalid attribute 'perm'", c->file,
                                 c->node->name);
        for (int i = 0; i < r; i++) {
            int64_t p = a->ints[i];
            if (p < 0 || p >= r || seen[p])
                return otl_error_set(c->err, OTL_ERR_INPUT, "%s: node '%s' (Transpose): perm is not a permutation",
                                     c->file, c->node->name);
            seen[p] = 1;
            inv[p] = i;
        }
        st = otl_gattr_ints(c, n, "perm", inv, r);
    }
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Transpose = {
    .op_type = "Transpose", .domain = "", .since = 1, .until = 22,
    .infer = transpose_infer, .forward = transpose_fwd, .grad_inputs = 1, .grad = transpose_grad,
};
