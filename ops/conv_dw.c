/* conv_dw.c - onnx_tl.FusedConvDw (inference only, made by graph/fuse.c): a 1x1 convolution
 * followed by a 3x3 depthwise convolution (MobileNet's expand + depthwise pair), each with an
 * optional activation:
 *
 *   Y = act2(dwconv3x3(act1(conv1x1(X, W1, B1)), W2, B2))
 *
 * oneDNN runs it as one primitive with a depthwise post-op, so the expanded tensor (the largest
 * activation of the network) never goes to memory. When oneDNN has no fused kernel for the
 * shapes, the two convolutions run one after the other through a private buffer. graph/fuse.c
 * makes the node only with OTL_DW_FUSE=1: measured slower than the unfused pair on mobilenet_v2.
 *
 * Inputs X (N, C, H, W), W1 (M, C, 1, 1), B1 (M) or "", W2 (M, 1, 3, 3), B2 (M) or "".
 * Attributes: activation, activation_params (after the 1x1), dw_stride (1 or 2),
 * dw_activation, dw_activation_params. The depthwise padding is 1 on every side. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/nn_common.h"
#include "ops/op.h"

typedef struct eltw {
    int on;
    dnnl_alg_kind_t alg;
    float a, b;
} eltw;

typedef struct wport { /* const weights reordered once into the primitive's layout */
    dnnl_memory_t user, prim;
    void *buf;
} wport;

typedef struct dw_state {
    eltw act1, act2;
    int64_t stride;
    int64_t mid_dims[4];
    int split;                      /* two primitives through `mid` */
    dnnl_primitive_desc_t pd, pd2;  /* fused (or 1x1 when split), depthwise when split */
    dnnl_primitive_t prim, prim2;
    nn_port src, dst;
    wport w1, w2;
    dnnl_memory_t b1, b2, mid_mem;
    void *mid;
    size_t scratch_bytes;
    int reserved;
} dw_state;

static const int floats[] = {OTL_DTYPE_FLOAT, 0};

static otl_status act_attrs(otl_kctx *k, const char *name, const char *params_name, eltw *e)
{
    const char *act;
    float p[2];
    int n;
    otl_status st;
    if ((st = otl_attr_str(k, name, "", &act)) || (st = otl_attr_floats(k, params_name, p, 2, &n)))
        return st;
    memset(e, 0, sizeof *e);
    e->on = 1;
    if (!*act) {
        e->on = 0;
    } else if (strcmp(act, "Relu") == 0) {
        e->alg = dnnl_eltwise_relu;
    } else if (strcmp(act, "LeakyRelu") == 0) {
        e->alg = dnnl_eltwise_relu;
        e->a = n >= 1 ? p[0] : 0.01f;
    } else if (strcmp(act, "Clip") == 0) {
        e->alg = dnnl_eltwise_clip;
        e->a = n >= 1 ? p[0] : -INFINITY;
        e->b = n >= 2 ? p[1] : INFINITY;
        if (!(e->a <= e->b))
            return otl_kfail(k, OTL_ERR_INPUT, "%s Clip: min %g > max %g", name, e->a, e->b);
    } else if (strcmp(act, "HardSwish") == 0) {
        e->alg = dnnl_eltwise_hardswish;
    } else if (strcmp(act, "Sigmoid") == 0) {
        e->alg = dnnl_eltwise_logistic;
    } else if (strcmp(act, "Tanh") == 0) {
        e->alg = dnnl_eltwise_tanh;
    } else {
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%s '%s' is not one of \"\", Relu, LeakyRelu, Clip, HardSwish, Sigmoid, Tanh",
                         name, act);
    }
    return OTL_OK;
}

/* Post-ops: act1 [, depthwise, act2]. *attr stays NULL when there is nothing to add. */
static dnnl_status_t make_attr(const eltw *a1, int dw, int64_t stride, const eltw *a2, dnnl_primitive_attr_t *attr)
{
    *attr = NULL;
    if (!a1->on && !dw && !a2->on)
        return dnnl_success;
    dnnl_post_ops_t po;
    dnnl_status_t r = dnnl_post_ops_create(&po);
    if (r != dnnl_success)
        return r;
    if (a1->on)
        r = dnnl_post_ops_append_eltwise(po, 1.0f, a1->alg, a1->a, a1->b);
    if (r == dnnl_success && dw)
        r = dnnl_post_ops_append_dw(po, dnnl_f32, dnnl_f32, dnnl_f32, 3, stride, 1, 0, 0, NULL);
    if (r == dnnl_success && a2->on)
        r = dnnl_post_ops_append_eltwise(po, 1.0f, a2->alg, a2->a, a2->b);
    if (r == dnnl_success)
        r = dnnl_primitive_attr_create(attr);
    if (r == dnnl_success)
        r = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
    if (r != dnnl_success && *attr) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return r;
}

static dnnl_status_t conv_pd(otl_kctx *k, const dnnl_memory_desc_t *x, const dnnl_memory_desc_t *w, const dnnl_memory_desc_t *b,
                             const dnnl_memory_desc_t *y, int64_t stride, int64_t pad, dnnl_primitive_attr_t attr,
                             dnnl_primitive_desc_t *pd)
{
    dnnl_convolution_desc_t d;
    dnnl_dims_t s = {stride, stride}, p = {pad, pad};
    *pd = NULL;
    dnnl_status_t r = dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, dnnl_convolution_direct, x, w, b, y, s, p, p);
    if (r == dnnl_success)
        r = otl_pd_create(pd, &d, attr, k->eng->eng, NULL);
    if (r != dnnl_success)
        *pd = NULL;
    return r;
}

static otl_status dw_infer(otl_kctx *k)
{
    dw_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    otl_status st;
    if (k->n_in != 5)
        return otl_kfail(k, OTL_ERR_INPUT, "FusedConvDw takes 5 inputs (X, W1, B1, W2, B2), got %d", k->n_in);
    static const int idx[] = {0, 1, 3};
    for (int i = 0; i < 3; i++)
        if ((st = otl_check_in(k, idx[i], floats)))
            return st;
    if ((otl_has_in(k, 2) && (st = otl_check_in(k, 2, floats))) || (otl_has_in(k, 4) && (st = otl_check_in(k, 4, floats))))
        return st;
    if ((st = act_attrs(k, "activation", "activation_params", &s->act1)) ||
        (st = act_attrs(k, "dw_activation", "dw_activation_params", &s->act2)) ||
        (st = otl_attr_int(k, "dw_stride", 1, &s->stride)))
        return st;
    const otl_rt *x = k->in[0], *w1 = k->in[1], *w2 = k->in[3];
    if (s->stride != 1 && s->stride != 2)
        return otl_kfail(k, OTL_ERR_INPUT, "dw_stride must be 1 or 2, got %lld", (long long)s->stride);
    if (x->rank != 4 || w1->rank != 4 || w2->rank != 4)
        return otl_kfail(k, OTL_ERR_INPUT, "X, W1 and W2 must have rank 4");
    int64_t m = w1->dims[0];
    if (w1->dims[1] != x->dims[1] || w1->dims[2] != 1 || w1->dims[3] != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "W1 '%s' must be (M, %lld, 1, 1)", w1->name, (long long)x->dims[1]);
    if (w2->dims[0] != m || w2->dims[1] != 1 || w2->dims[2] != 3 || w2->dims[3] != 3)
        return otl_kfail(k, OTL_ERR_INPUT, "W2 '%s' must be (%lld, 1, 3, 3)", w2->name, (long long)m);
    for (int i = 2; i <= 4; i += 2)
        if (otl_has_in(k, i) && k->in[i]->numel != m)
            return otl_kfail(k, OTL_ERR_INPUT, "bias '%s' must have %lld elements", k->in[i]->name, (long long)m);
    int64_t dims[4] = {x->dims[0], m, (x->dims[2] - 1) / s->stride + 1, (x->dims[3] - 1) / s->stride + 1};
    memcpy(s->mid_dims, (int64_t[4]){x->dims[0], m, x->dims[2], x->dims[3]}, sizeof s->mid_dims);
    if (x->numel == 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "empty input");

    dnnl_memory_desc_t x_md, y_md, w1_md, b_md, w2_md;
    dnnl_dims_t w1d = {m, x->dims[1], 1, 1}, w2d = {m, 1, 1, 3, 3}, bd = {m};
    if ((st = nn_md_src(k, x, 1, &x_md)) || (st = nn_md_dst(k, 4, dims, 1, &y_md)) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&w1_md, 4, w1d, dnnl_f32, dnnl_format_tag_any), "weights")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&w2_md, 5, w2d, dnnl_f32, dnnl_format_tag_any), "weights")) ||
        (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a), "bias")))
        return st;
    const dnnl_memory_desc_t *b1 = otl_has_in(k, 2) ? &b_md : NULL;
    dnnl_primitive_attr_t attr;
    dnnl_status_t r = make_attr(&s->act1, 1, s->stride, &s->act2, &attr);
    /* the fused primitive is described by the 1x1 convolution's own dims; the depthwise
       post-op shrinks its destination (dst_md then reports the final dims) */
    dnnl_memory_desc_t y1_md;
    if (r == dnnl_success && (st = nn_md_dst(k, 4, s->mid_dims, 1, &y1_md))) {
        if (attr)
            dnnl_primitive_attr_destroy(attr);
        return st;
    }
    if (r == dnnl_success)
        r = conv_pd(k, &x_md, &w1_md, b1, &y1_md, 1, 0, attr, &s->pd);
    if (r != dnnl_success && x->blocked && attr) {
        /* the fused kernel may want another input layout (channel-blocked, not channels-last):
           let it choose, the input port reorders */
        dnnl_memory_desc_t x_any;
        dnnl_dims_t xd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
        if (dnnl_memory_desc_init_by_tag(&x_any, 4, xd, dnnl_f32, dnnl_format_tag_any) == dnnl_success)
            r = conv_pd(k, &x_any, &w1_md, b1, &y1_md, 1, 0, attr, &s->pd);
    }
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (r == dnnl_success && nn_pd_is_ref(s->pd)) {
        dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
        r = dnnl_unimplemented;
    }
    if (r == dnnl_success && getenv("OTL_DW_SPLIT")) { /* tests: the two-primitive path */
        dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
        r = dnnl_unimplemented;
    }
    if (r != dnnl_success) { /* two primitives */
        s->split = 1;
        dnnl_memory_desc_t mid_md;
        eltw none = {0};
        if ((st = nn_md_dst(k, 4, s->mid_dims, 1, &mid_md)) ||
            (st = otl_dnnl_check(k, make_attr(&s->act1, 0, 0, &none, &attr), "post-ops")))
            return st;
        r = conv_pd(k, &x_md, &w1_md, b1, &mid_md, 1, 0, attr, &s->pd);
        if (attr)
            dnnl_primitive_attr_destroy(attr);
        if ((st = otl_dnnl_check(k, r, "convolution")))
            return st;
        const dnnl_memory_desc_t *mq = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
        if ((st = otl_dnnl_check(k, make_attr(&s->act2, 0, 0, &none, &attr), "post-ops")))
            return st;
        dnnl_convolution_desc_t d;
        dnnl_dims_t st2 = {s->stride, s->stride}, p1 = {1, 1};
        r = dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, dnnl_convolution_direct, mq, &w2_md,
                                               otl_has_in(k, 4) ? &b_md : NULL, &y_md, st2, p1, p1);
        if (r == dnnl_success)
            r = otl_pd_create(&s->pd2, &d, attr, k->eng->eng, NULL);
        if (attr)
            dnnl_primitive_attr_destroy(attr);
        if (r != dnnl_success)
            s->pd2 = NULL;
        if ((st = otl_dnnl_check(k, r, "depthwise convolution")))
            return st;
    }
    const_dnnl_primitive_desc_t last = s->split ? s->pd2 : s->pd;
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, 4, dims, dnnl_primitive_desc_query_md(last, dnnl_query_dst_md, 0));
}

/* Plain weights (as the initializer holds them) reordered once into the layout `want`. */
static otl_status wport_init(otl_kctx *k, wport *p, int rank, const int64_t *dims, const void *data,
                             const dnnl_memory_desc_t *want)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    otl_status st;
    if ((st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&plain, rank, d, dnnl_f32, rank == 4 ? dnnl_abcd : dnnl_abcde),
                             "weights")))
        return st;
    size_t wb = dnnl_memory_desc_get_size(want);
    p->buf = aligned_alloc(64, (wb + 63) & ~(size_t)63);
    if (!p->buf)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory for weights");
    if ((st = otl_dnnl_memory(k, want, p->buf, &p->prim)))
        return st;
    return nn_reorder_once(k, &plain, (void *)data, want, p->buf);
}

static otl_status dw_prepare(otl_kctx *k)
{
    dw_state *s = k->state;
    const otl_rt *x = k->in[0], *y = k->out[0];
    if (!k->in[1]->is_const || !k->in[3]->is_const)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "FusedConvDw needs constant weights");
    dnnl_memory_desc_t x_user, y_user, b_md;
    otl_status st;
    if ((st = otl_rt_md(k, x, &x_user)) || (st = otl_rt_md(k, y, &y_user)))
        return st;
    const_dnnl_primitive_desc_t last = s->split ? s->pd2 : s->pd;
    if ((st = nn_make_prim(k, s->pd, &s->prim, "convolution")) ||
        (s->split && (st = nn_make_prim(k, s->pd2, &s->prim2, "depthwise convolution"))) ||
        (st = nn_port_init(k, &s->src, &x_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0), 0,
                           &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dst, &y_user, dnnl_primitive_desc_query_md(last, dnnl_query_dst_md, 0), 1,
                           &s->scratch_bytes)))
        return st;
    int64_t w2d[5] = {s->mid_dims[1], 1, 1, 3, 3};
    const dnnl_memory_desc_t *w2q =
        s->split ? dnnl_primitive_desc_query_md(s->pd2, dnnl_query_weights_md, 0)
                 : dnnl_primitive_desc_query_md(s->pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
    if (!w2q)
        return otl_kfail(k, OTL_ERR_INTERNAL, "no depthwise weights descriptor");
    if ((st = wport_init(k, &s->w1, 4, k->in[1]->dims, k->in[1]->data,
                         dnnl_primitive_desc_query_md(s->pd, dnnl_query_weights_md, 0))) ||
        (st = wport_init(k, &s->w2, 5, w2d, k->in[3]->data, w2q)))
        return st;
    dnnl_dims_t bd = {s->mid_dims[1]};
    if ((st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a), "bias")))
        return st;
    if (otl_has_in(k, 2) && (st = otl_dnnl_memory(k, &b_md, k->in[2]->data, &s->b1)))
        return st;
    if (otl_has_in(k, 4) && (st = otl_dnnl_memory(k, &b_md, k->in[4]->data, &s->b2)))
        return st;
    if (s->split) {
        const dnnl_memory_desc_t *mq = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
        size_t mb = dnnl_memory_desc_get_size(mq);
        s->mid = aligned_alloc(64, (mb + 63) & ~(size_t)63);
        if (!s->mid)
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
        if ((st = otl_dnnl_memory(k, mq, s->mid, &s->mid_mem)))
            return st;
    }
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status dw_forward(otl_kctx *k)
{
    dw_state *s = k->state;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    otl_status st;
    if (!(st = nn_port_bind(k, &s->src, k->in[0]->data, scratch)) && !(st = nn_port_bind(k, &s->dst, k->out[0]->data, scratch))) {
        dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_WEIGHTS, s->w1.prim}};
        int n = 2;
        if (s->b1)
            a[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->b1};
        if (!s->split) {
            a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->dst.prim};
            a[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS, s->w2.prim};
            if (s->b2)
                a[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, s->b2};
            st = otl_dnnl_run(k, s->prim, n, a);
        } else {
            a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->mid_mem};
            st = otl_dnnl_run(k, s->prim, n, a);
            dnnl_exec_arg_t a2[4] = {{DNNL_ARG_SRC, s->mid_mem}, {DNNL_ARG_WEIGHTS, s->w2.prim}, {DNNL_ARG_DST, s->dst.prim}};
            int n2 = 3;
            if (s->b2)
                a2[n2++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->b2};
            if (!st)
                st = otl_dnnl_run(k, s->prim2, n2, a2);
        }
        if (!st)
            st = nn_port_finish(k, &s->dst);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

static void dw_release(otl_kctx *k)
{
    dw_state *s = k->state;
    if (!s)
        return;
    dnnl_primitive_t prims[] = {s->prim, s->prim2};
    for (int i = 0; i < 2; i++)
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    dnnl_primitive_desc_t pds[] = {s->pd, s->pd2};
    for (int i = 0; i < 2; i++)
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
    nn_port_free(&s->src);
    nn_port_free(&s->dst);
    dnnl_memory_t mems[] = {s->w1.prim, s->w2.prim, s->b1, s->b2, s->mid_mem};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(s->w1.buf);
    free(s->w2.buf);
    free(s->mid);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

const otl_op otl_op_FusedConvDw = {
    .op_type = "FusedConvDw", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = dw_infer, .prepare = dw_prepare, .forward = dw_forward, .release = dw_release,
};
