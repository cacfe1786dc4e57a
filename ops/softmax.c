/* softmax.c - Softmax and LogSoftmax. Before opset 13 the input is coerced to 2-D at `axis`
 * (default 1) and normalized over the flattened trailing block; from 13 over the single `axis`
 * (default -1). float32 on oneDNN's softmax_v2 primitive, double in C.
 * Differentiable input: input. */
#include <math.h>
#include <stdlib.h>

#include "ops/op.h"

typedef struct softmax_state {
    int log;                    /* LogSoftmax */
    int64_t outer, c, inner;    /* X viewed as (outer, c, inner), normalized over c */
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} softmax_state;

static const int sm_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

static otl_status softmax_infer_common(otl_kctx *k, int log)
{
    otl_status st = otl_check_in(k, 0, sm_types);
    if (st)
        return st;
    const otl_rt *x = k->in[0];
    softmax_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->log = log;
    int64_t axis;
    int legacy = k->opset < 13, a;
    if ((st = otl_attr_int(k, "axis", legacy ? 1 : -1, &axis)))
        return st;
    if (x->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "input '%s' is a scalar; a softmax needs rank >= 1", x->name);
    if ((st = otl_axis(k, axis, x->rank, &a)))
        return st;
    s->outer = s->c = s->inner = 1;
    for (int i = 0; i < x->rank; i++) {
        if (i < a)
            s->outer *= x->dims[i];
        else if (i == a || legacy)
            s->c *= x->dims[i];
        else
            s->inner *= x->dims[i];
    }
    return otl_rt_like(k, k->out[0], x);
}

static otl_status softmax_infer(otl_kctx *k)
{
    return softmax_infer_common(k, 0);
}

static otl_status logsoftmax_infer(otl_kctx *k)
{
    return softmax_infer_common(k, 1);
}

static otl_status softmax_prepare(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (k->in[0]->dtype != OTL_DTYPE_FLOAT || s->prim || k->in[0]->numel == 0)
        return OTL_OK;
    dnnl_dims_t dims = {s->outer, s->c, s->inner};
    dnnl_memory_desc_t md;
    dnnl_softmax_v2_desc_t d;
    dnnl_primitive_desc_t pd;
    otl_status st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&md, 3, dims, dnnl_f32, dnnl_abc), "softmax memory descriptor");
    if (st)
        return st;
    if ((st = otl_dnnl_check(k, dnnl_softmax_v2_forward_desc_init(&d, dnnl_forward_inference,
                                                                  s->log ? dnnl_softmax_log : dnnl_softmax_accurate,
                                                                  &md, &md, 1), "softmax")))
        return st;
    if ((st = otl_dnnl_check(k, dnnl_primitive_desc_create(&pd, &d, NULL, k->eng->eng, NULL), "softmax")))
        return st;
    st = otl_dnnl_check(k, dnnl_primitive_create(&s->prim, pd), "softmax");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, &md, NULL, &s->src)) || (st = otl_dnnl_memory(k, &md, NULL, &s->dst)))
        return st;
    return OTL_OK;
}

/* y = softmax or log-softmax of x over c, x and y of shape (outer, c, inner). */
static void softmax_forward_f64(double *y, const double *x, int64_t outer, int64_t c, int64_t inner, int take_log)
{
    #pragma omp parallel for if (outer * c * inner > 65536)
    for (int64_t r = 0; r < outer * inner; r++) {
        int64_t o = r / inner, i = r % inner;
        const double *xr = x + o * c * inner + i;
        double *yr = y + o * c * inner + i;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < c; j++)
            mx = xr[j * inner] > mx ? xr[j * inner] : mx;
        for (int64_t j = 0; j < c; j++)
            sum += exp(xr[j * inner] - mx);
        double lsum = log(sum);
        for (int64_t j = 0; j < c; j++)
            yr[j * inner] = take_log ? xr[j * inner] - mx - lsum : exp(xr[j * inner] - mx) / sum;
    }
}

static otl_status softmax_forward(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (k->in[0]->numel == 0)
        return OTL_OK;
    if (k->in[0]->dtype == OTL_DTYPE_DOUBLE) {
        softmax_forward_f64(k->out[0]->data, k->in[0]->data, s->outer, s->c, s->inner, s->log);
        return OTL_OK;
    }
    dnnl_memory_set_data_handle(s->src, k->in[0]->data);
    dnnl_memory_set_data_handle(s->dst, k->out[0]->data);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}};
    return otl_dnnl_run(k, s->prim, 2, args);
}

static void softmax_release(otl_kctx *k)
{
    softmax_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->src)
        dnnl_memory_destroy(s->src);
    if (s->dst)
        dnnl_memory_destroy(s->dst);
}

const otl_op otl_op_Softmax = {
    .op_type = "Softmax", .domain = "", .since = 1, .until = 22,
    .infer = softmax_infer, .prepare = softmax_prepare, .forward = softmax_forward, .release = softmax_release,
};

const otl_op otl_op_LogSoftmax = {
    .op_type = "LogSoftmax", .domain = "", .since = 1, .until = 22,
    .infer = logsoftmax_infer, .prepare = softmax_prepare, .forward = softmax_forward, .release = softmax_release,
};
