/* shape_trilu.c - Trilu (upper/lower triangle of the last two axes, diagonal offset k) and
 * ReverseSequence (reverse the first sequence_lens[b] steps of each batch entry); any fixed-size
 * dtype. Differentiable input: the data input of each (gradient = the same op on the output
 * gradient: the same mask / the same reversal); k and sequence_lens are not differentiable. */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

/* dX = <the same op>(dY, <the forward's other inputs>) with the forward's attributes: the op is
 * linear in its data input and its own transpose. */
static otl_status self_adjoint_grad(otl_gctx *c)
{
    const char *in[2] = {c->dy[0], c->n_in > 1 ? c->node->inputs[1] : ""};
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, "", c->node->op_type, c->n_in > 1 ? 2 : 1, in, &n);
    otl_status st = dx ? otl_gattr_copy(c, n) : OTL_OK;
    otl_grad_set(c, 0, dx);
    return st;
}

/* ---------------------------------------------------------------- Trilu */

typedef struct trilu_state {
    int upper;
    size_t esz;
} trilu_state;

static otl_status trilu_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    trilu_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    int64_t upper;
    if ((st = otl_attr_int(k, "upper", 1, &upper)))
        return st;
    s->upper = upper != 0;
    if (k->in[0]->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input must have rank >= 2, got %d", k->in[0]->rank);
    if (otl_has_in(k, 1)) {
        static const int i64[] = {OTL_DTYPE_INT64, 0};
        if ((st = otl_check_in(k, 1, i64)))
            return st;
        if (k->in[1]->numel != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "input 'k' must be one int64 value");
    }
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static otl_status trilu_fwd(otl_kctx *k)
{
    trilu_state *s = k->state;
    const otl_rt *x = k->in[0];
    int r = x->rank;
    int64_t N = x->dims[r - 2], M = x->dims[r - 1], diag = otl_has_in(k, 1) ? *(const int64_t *)k->in[1]->data : 0;
    int64_t rows = N ? x->numel / M : 0;
    if (M == 0)
        return OTL_OK;
    size_t e = s->esz;
    /* clamp k so that i + k cannot overflow */
    if (diag > M + 1)
        diag = M + 1;
    if (diag < -N - 1)
        diag = -N - 1;
    #pragma omp parallel for if (x->nbytes > (1 << 17)) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t i = row % N, c = i + diag; /* first kept column (upper) / last kept column (lower) */
        const char *xr = (const char *)x->data + (size_t)(row * M) * e;
        char *yr = (char *)k->out[0]->data + (size_t)(row * M) * e;
        int64_t a, b; /* kept columns [a, b) */
        if (s->upper) {
            a = c < 0 ? 0 : c > M ? M : c;
            b = M;
        } else {
            a = 0;
            b = c + 1 < 0 ? 0 : c + 1 > M ? M : c + 1;
        }
        memset(yr, 0, (size_t)a * e);
        memcpy(yr + (size_t)a * e, xr + (size_t)a * e, (size_t)(b - a) * e);
        memset(yr + (size_t)b * e, 0, (size_t)(M - b) * e);
    }
    return OTL_OK;
}

const otl_op otl_op_Trilu = {
    .op_type = "Trilu", .domain = "", .since = 14, .until = 22,
    .infer = trilu_infer, .forward = trilu_fwd, .grad_inputs = 1, .grad = self_adjoint_grad,
};

/* ---------------------------------------------------------------- ReverseSequence */

typedef struct revseq_state {
    int batch_axis, time_axis;
    size_t esz;
} revseq_state;

static otl_status revseq_infer(otl_kctx *k)
{
    otl_status st;
    size_t esz;
    static const int i64[] = {OTL_DTYPE_INT64, 0};
    if ((st = otl_movable(k, 0, &esz)) || (st = otl_check_in(k, 1, i64)))
        return st;
    revseq_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    int64_t ba, ta;
    if ((st = otl_attr_int(k, "batch_axis", 1, &ba)) || (st = otl_attr_int(k, "time_axis", 0, &ta)))
        return st;
    if (!((ba == 0 && ta == 1) || (ba == 1 && ta == 0)))
        return otl_kfail(k, OTL_ERR_INPUT, "batch_axis and time_axis must be 0 and 1 in some order");
    s->batch_axis = (int)ba;
    s->time_axis = (int)ta;
    const otl_rt *x = k->in[0];
    if (x->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input must have rank >= 2, got %d", x->rank);
    if (k->in[1]->rank != 1 || k->in[1]->dims[0] != x->dims[ba])
        return otl_kfail(k, OTL_ERR_INPUT, "sequence_lens must have shape [%lld]", (long long)x->dims[ba]);
    return otl_rt_like(k, k->out[0], x);
}

static otl_status revseq_fwd(otl_kctx *k)
{
    revseq_state *s = k->state;
    const otl_rt *x = k->in[0];
    const int64_t *lens = k->in[1]->data;
    int64_t B = x->dims[s->batch_axis], T = x->dims[s->time_axis], inner = 1;
    for (int d = 2; d < x->rank; d++)
        inner *= x->dims[d];
    int64_t xs[OTL_MAX_RANK];
    otl_strides_c(x->rank, x->dims, xs);
    int64_t bs = xs[s->batch_axis], ts = xs[s->time_axis];
    size_t row = (size_t)inner * s->esz;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    for (int64_t b = 0; b < B; b++)
        if (lens[b] < 0 || lens[b] > T)
            return otl_kfail(k, OTL_ERR_INPUT, "sequence_lens[%lld] = %lld is outside [0, %lld]", (long long)b,
                             (long long)lens[b], (long long)T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t src = t < lens[b] ? lens[b] - 1 - t : t;
            memcpy((char *)k->out[0]->data + (size_t)(b * bs + t * ts) * s->esz,
                   (const char *)x->data + (size_t)(b * bs + src * ts) * s->esz, row);
        }
    return OTL_OK;
}

const otl_op otl_op_ReverseSequence = {
    .op_type = "ReverseSequence", .domain = "", .since = 10, .until = 22,
    .infer = revseq_infer, .forward = revseq_fwd, .grad_inputs = 1, .grad = self_adjoint_grad,
};
