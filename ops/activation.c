/* activation.c - activations on oneDNN eltwise primitives: Relu (more to come in this family).
 * Differentiable input: X. */
#include <stdlib.h>

#include "ops/op.h"

typedef struct eltwise_state {
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} eltwise_state;

static const int floats[] = {OTL_DTYPE_FLOAT, 0};

static otl_status eltwise_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, floats);
    if (st)
        return st;
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static otl_status eltwise_prepare_alg(otl_kctx *k, dnnl_alg_kind_t alg, float alpha, float beta)
{
    eltwise_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    dnnl_memory_desc_t md;
    otl_status st = otl_md_plain(k, k->in[0], &md);
    if (st)
        return st;
    dnnl_eltwise_desc_t d;
    dnnl_primitive_desc_t pd;
    if ((st = otl_dnnl_check(k, dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, &md, alpha, beta), "eltwise")))
        return st;
    if ((st = otl_dnnl_check(k, dnnl_primitive_desc_create(&pd, &d, NULL, k->eng->eng, NULL), "eltwise")))
        return st;
    st = otl_dnnl_check(k, dnnl_primitive_create(&s->prim, pd), "eltwise");
    dnnl_primitive_desc_destroy(pd);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, &md, NULL, &s->src)) || (st = otl_dnnl_memory(k, &md, NULL, &s->dst)))
        return st;
    return OTL_OK;
}

static otl_status eltwise_forward(otl_kctx *k)
{
    eltwise_state *s = k->state;
    if (k->in[0]->numel == 0)
        return OTL_OK;
    dnnl_memory_set_data_handle(s->src, k->in[0]->data);
    dnnl_memory_set_data_handle(s->dst, k->out[0]->data);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}};
    return otl_dnnl_run(k, s->prim, 2, args);
}

static void eltwise_release(otl_kctx *k)
{
    eltwise_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->src)
        dnnl_memory_destroy(s->src);
    if (s->dst)
        dnnl_memory_destroy(s->dst);
}

static otl_status relu_prepare(otl_kctx *k)
{
    return eltwise_prepare_alg(k, dnnl_eltwise_relu, 0.0f, 0.0f);
}

const otl_op otl_op_Relu = {
    .op_type = "Relu", .domain = "", .since = 6, .until = 22,
    .infer = eltwise_infer, .prepare = relu_prepare, .forward = eltwise_forward,
    .release = eltwise_release,
};
