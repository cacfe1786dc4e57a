/* reorder.c - the executor's layout conversion (not an ONNX op, not in the registry): turns a
 * value held in a oneDNN blocked layout into plain C order for ops that need plain data. */
#include <stdlib.h>

#include "ops/op.h"

typedef struct reorder_state {
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} reorder_state;

static otl_status reorder_infer(otl_kctx *k)
{
    return otl_rt_set(k, k->out[0], k->in[0]->dtype, k->in[0]->rank, k->in[0]->dims);
}

static otl_status reorder_prepare(otl_kctx *k)
{
    reorder_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    dnnl_memory_desc_t src_md, dst_md;
    otl_status st;
    if ((st = otl_rt_md(k, k->in[0], &src_md)) || (st = otl_md_plain(k, k->out[0], &dst_md)))
        return st;
    dnnl_primitive_desc_t pd;
    if ((st = otl_dnnl_check(k, otl_reorder_pd_create(&pd, &src_md, k->eng->eng, &dst_md,
                                                                   k->eng->eng, NULL), "reorder")))
        return st;
    st = otl_dnnl_primitive(k, pd, &s->prim, "reorder");
    dnnl_primitive_desc_destroy(pd);
    if (!st)
        st = otl_dnnl_memory(k, &src_md, NULL, &s->src);
    if (!st)
        st = otl_dnnl_memory(k, &dst_md, NULL, &s->dst);
    return st;
}

static otl_status reorder_forward(otl_kctx *k)
{
    reorder_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    dnnl_memory_set_data_handle(s->src, k->in[0]->data);
    dnnl_memory_set_data_handle(s->dst, k->out[0]->data);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, s->src}, {DNNL_ARG_TO, s->dst}};
    return otl_dnnl_run(k, s->prim, 2, args);
}

static void reorder_release(otl_kctx *k)
{
    reorder_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->src)
        dnnl_memory_destroy(s->src);
    if (s->dst)
        dnnl_memory_destroy(s->dst);
}

const otl_op otl_op_internal_reorder = {
    .op_type = "Reorder", .domain = "onnx_tl.internal", .since = 1, .until = 1,
    .infer = reorder_infer, .prepare = reorder_prepare, .forward = reorder_forward,
    .release = reorder_release,
};
