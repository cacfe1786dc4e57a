/* elementwise.c - binary arithmetic with broadcasting: Add (more to come in this family).
 * Differentiable inputs: both operands (gradients reduced over broadcast axes). */
#include <stdlib.h>

#include "ops/broadcast.h"

typedef struct binary_state {
    otl_bcast b;
} binary_state;

static const int numeric[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};

static otl_status binary_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, numeric)) || (st = otl_check_in(k, 1, numeric)))
        return st;
    if (k->in[0]->dtype != k->in[1]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                         otl_dtype_name(k->in[0]->dtype), otl_dtype_name(k->in[1]->dtype));
    binary_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *in[2] = {k->in[0], k->in[1]};
    if ((st = otl_bcast_init(k, &s->b, 2, in)))
        return st;
    return otl_rt_set(k, k->out[0], k->in[0]->dtype, s->b.rank, s->b.dims);
}

static otl_status add_forward(otl_kctx *k)
{
    binary_state *s = k->state;
    const otl_bcast *b = &s->b;
    int dt = k->in[0]->dtype;
    if (dt == OTL_DTYPE_FLOAT) {
        const float *x = k->in[0]->data, *y = k->in[1]->data;
        float *z = k->out[0]->data;
        if (b->same[0] && b->same[1]) {
            #pragma omp parallel for if (b->numel > 65536)
            for (int64_t i = 0; i < b->numel; i++)
                z[i] = x[i] + y[i];
            return OTL_OK;
        }
        #pragma omp parallel for if (b->numel > 65536)
        for (int64_t i = 0; i < b->numel; i++) {
            int64_t off[2];
            otl_bcast_offsets(b, i, off);
            z[i] = x[off[0]] + y[off[1]];
        }
        return OTL_OK;
    }
    for (int64_t i = 0; i < b->numel; i++) {
        int64_t off[2];
        otl_bcast_offsets(b, i, off);
        if (dt == OTL_DTYPE_DOUBLE)
            otl_set_f(k->out[0]->data, dt, i, otl_get_f(k->in[0]->data, dt, off[0]) + otl_get_f(k->in[1]->data, dt, off[1]));
        else
            otl_set_i(k->out[0]->data, dt, i, otl_get_i(k->in[0]->data, dt, off[0]) + otl_get_i(k->in[1]->data, dt, off[1]));
    }
    return OTL_OK;
}

const otl_op otl_op_Add = {
    .op_type = "Add", .domain = "", .since = 7, .until = 22,
    .infer = binary_infer, .forward = add_forward,
};
