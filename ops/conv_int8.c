/* conv_int8.c - onnx_tl.QDQConv: the QDQ pattern DequantizeLinear(x uint8/int8, per tensor) +
 * DequantizeLinear(w int8, per output channel or per tensor, zero point 0) -> Conv [-> Relu], with
 * a float bias, as ONE oneDNN int8 convolution (graph/fuse.c makes it; OTL_NO_QCONV=1 keeps the
 * dequantize path). float32 output = act(x_scale * w_scale[m] * (sum (x - x_zp) w + bias[m] /
 * (x_scale * w_scale[m]))): oneDNN 2.x adds the bias before the output scales, so it is given
 * divided by them; x's zero point goes to oneDNN as a run-time source zero point. With inputs 6 and
 * 7 (a QuantizeLinear graph/fuse.c absorbed) the output is that QuantizeLinear's: uint8/int8
 * saturate(round(float32 output / y_scale) + y_zero_point), oneDNN's output scales divided by
 * y_scale and y_zero_point its run-time destination zero point.
 *
 * Inputs: 0 X quantized (N, C, spatial...), 1 x_scale (scalar), 2 x_zero_point (scalar, X's dtype,
 * optional), 3 W int8 (M, C/group, K...), 4 w_scale (scalar or (M)), 5 B float (M) (optional),
 * 6 y_scale (scalar, optional), 7 y_zero_point (scalar uint8/int8, with 6).
 * Attributes: Conv's, plus activation "" or "Relu". Not differentiable (quantized inference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/nn_common.h"

typedef struct qdqconv_state {
    nn_geom g;
    int64_t group, M;
    int64_t pr_dnnl[NN_MAX_SP];
    int relu;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    nn_port src, dst;
    size_t scratch_bytes;
    int reserved;
    void *w_buf;                 /* weights in the primitive's layout (reordered once) */
    dnnl_memory_t w_mem, b_mem, zp_mem;
    float *scales;               /* (M) x_scale * w_scale */
    float *bias;                 /* (M) B / scales */
    float *oscales;              /* (M) scales / y_scale: the primitive's output scales */
    int quant_out;               /* inputs 6, 7: a quantized output */
    float ys;
    int32_t yzp;
    dnnl_memory_t yzp_mem;
    int bias_done;               /* B constant: bias computed once in prepare */
    int ref;                     /* oneDNN has no int8 convolution for this (or OTL_QCONV_REF=1): qc_ref */
    int32_t zp;
} qdqconv_state;

static const int int8s[] = {OTL_DTYPE_UINT8, OTL_DTYPE_INT8, 0};
static const int f32[] = {OTL_DTYPE_FLOAT, 0};

static otl_status qc_infer(otl_kctx *k)
{
    qdqconv_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    otl_status st;
    static const int s8[] = {OTL_DTYPE_INT8, 0};
    if ((st = otl_check_in(k, 0, int8s)) || (st = otl_check_in(k, 1, f32)) || (st = otl_check_in(k, 3, s8)) ||
        (st = otl_check_in(k, 4, f32)))
        return st;
    const otl_rt *x = k->in[0], *w = k->in[3];
    if (x->rank < 3 || x->rank > 5 || w->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "X must have rank 3 to 5 and W the same rank (got %d and %d)", x->rank, w->rank);
    if (!w->is_const || !k->in[1]->is_const || !k->in[4]->is_const || (otl_has_in(k, 2) && !k->in[2]->is_const))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "W, the scales and the zero point must be constants");
    s->g.nsp = x->rank - 2;
    if ((st = otl_attr_int(k, "group", 1, &s->group)))
        return st;
    s->M = w->dims[0];
    int64_t c = x->dims[1];
    if (s->group < 1 || w->dims[1] * s->group != c || s->M % s->group)
        return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels, W '%s' (%lld, %lld, ...) and group %lld do not match",
                         (long long)c, w->name, (long long)s->M, (long long)w->dims[1], (long long)s->group);
    for (int i = 0; i < s->g.nsp; i++)
        if ((s->g.k[i] = w->dims[2 + i]) < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "W '%s' has an empty kernel", w->name);
    if ((st = nn_geom_attrs(k, &s->g, 1)) || (st = nn_geom_forward(k, &s->g, x->dims + 2)))
        return st;
    for (int i = 0; i < s->g.nsp; i++) {
        s->pr_dnnl[i] = (s->g.out[i] - 1) * s->g.s[i] + nn_extent(&s->g, i) - s->g.in[i] - s->g.pl[i];
        if (s->pr_dnnl[i] > s->g.pr[i])
            s->pr_dnnl[i] = s->g.pr[i];
    }
    const otl_rt *xs = k->in[1], *ws = k->in[4];
    if (xs->numel != 1 || (ws->numel != 1 && ws->numel != s->M) ||
        (otl_has_in(k, 2) && (k->in[2]->numel != 1 || k->in[2]->dtype != x->dtype)))
        return otl_kfail(k, OTL_ERR_INPUT, "x_scale and x_zero_point must be scalars (zero point of X's dtype), "
                         "w_scale a scalar or one value per output channel");
    if (otl_has_in(k, 5)) {
        if ((st = otl_check_in(k, 5, f32)))
            return st;
        if (k->in[5]->numel != s->M)
            return otl_kfail(k, OTL_ERR_INPUT, "bias must have %lld values", (long long)s->M);
    }
    const char *act;
    if ((st = otl_attr_str(k, "activation", "", &act)))
        return st;
    if (*act && strcmp(act, "Relu") != 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "activation '%s' (only Relu)", act);
    s->relu = *act != 0;
    int ydt = OTL_DTYPE_FLOAT;
    if (otl_has_in(k, 6)) {
        if (!otl_has_in(k, 7))
            return otl_kfail(k, OTL_ERR_INPUT, "y_scale without y_zero_point");
        const otl_rt *ysr = k->in[6], *yz = k->in[7];
        if ((st = otl_check_in(k, 6, f32)) || (st = otl_check_in(k, 7, int8s)))
            return st;
        if (!ysr->is_const || !yz->is_const || ysr->numel != 1 || yz->numel != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "y_scale and y_zero_point must be constant scalars");
        s->ys = ((const float *)ysr->data)[0];
        if (!(s->ys > 0) || !isfinite(s->ys))
            return otl_kfail(k, OTL_ERR_INPUT, "y_scale must be positive and finite (got %g)", (double)s->ys);
        s->yzp = (int32_t)otl_get_i(yz->data, yz->dtype, 0);
        s->quant_out = 1;
        ydt = yz->dtype;
    }
    int64_t dims[OTL_MAX_RANK] = {x->dims[0], s->M};
    for (int i = 0; i < s->g.nsp; i++)
        dims[2 + i] = s->g.out[i];
    return otl_rt_set(k, k->out[0], ydt, x->rank, dims);
}

static otl_status md_tag(otl_kctx *k, dnnl_memory_desc_t *md, int rank, const int64_t *d, dnnl_data_type_t dt,
                         dnnl_format_tag_t tag)
{
    dnnl_dims_t dims;
    for (int i = 0; i < rank; i++)
        dims[i] = d[i];
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, rank, dims, dt, tag), "memory descriptor");
}

/* Weights (G, M/G, C/G, K...) or (M, C, K...) in ONNX's C order (strides) or format any. */
static otl_status w_md(otl_kctx *k, const qdqconv_state *s, const otl_rt *w, int any, dnnl_memory_desc_t *md)
{
    int nsp = s->g.nsp, r = 0;
    int64_t ksz = 1, g = s->group, oc = s->M / g, ic = w->dims[1];
    for (int i = 0; i < nsp; i++)
        ksz *= s->g.k[i];
    dnnl_dims_t dims, strides;
    if (g > 1) {
        dims[r] = g;
        strides[r++] = oc * ic * ksz;
    }
    dims[r] = oc;
    strides[r++] = ic * ksz;
    dims[r] = ic;
    strides[r++] = ksz;
    int64_t acc = 1;
    for (int i = nsp - 1; i >= 0; i--) {
        dims[r + i] = s->g.k[i];
        strides[r + i] = acc;
        acc *= s->g.k[i];
    }
    r += nsp;
    if (any)
        return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, r, dims, dnnl_s8, dnnl_format_tag_any), "weights");
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, r, dims, dnnl_s8, strides), "weights");
}

/* The int8 convolution without oneDNN, when it has no implementation for the shape, data types or
 * CPU (dnnl_unimplemented), or with OTL_QCONV_REF=1 (tests): exact int32 sums of (x - zp) * w, then
 * the same scaling, bias and Relu as the primitive. Plain loops, one thread. */
static void qc_ref(otl_kctx *k, const qdqconv_state *s)
{
    const otl_rt *x = k->in[0], *w = k->in[3];
    float *y = k->out[0]->data;
    uint8_t *yu = k->out[0]->data;
    int8_t *yi = k->out[0]->data;
    int yu8 = k->out[0]->dtype == OTL_DTYPE_UINT8;
    const int8_t *wd = w->data;
    const float *b = otl_has_in(k, 5) ? k->in[5]->data : NULL;
    int64_t in[3] = {1, 1, 1}, out[3] = {1, 1, 1}, ks[3] = {1, 1, 1}, st[3] = {1, 1, 1}, dl[3] = {1, 1, 1},
            pl[3] = {0, 0, 0};
    for (int i = 0; i < s->g.nsp; i++) {
        int j = 3 - s->g.nsp + i;
        in[j] = s->g.in[i];
        out[j] = s->g.out[i];
        ks[j] = s->g.k[i];
        st[j] = s->g.s[i];
        dl[j] = s->g.d[i];
        pl[j] = s->g.pl[i];
    }
    int64_t N = x->dims[0], C = x->dims[1], cg = C / s->group, mg = s->M / s->group;
    int64_t isz = in[0] * in[1] * in[2], osz = out[0] * out[1] * out[2], ksz = ks[0] * ks[1] * ks[2];
    int u8 = x->dtype == OTL_DTYPE_UINT8;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < s->M; m++) {
            int64_t c0 = m / mg * cg;
            const int8_t *wm = wd + m * cg * ksz;
            int64_t ybase = (n * s->M + m) * osz;
            for (int64_t o0 = 0; o0 < out[0]; o0++)
                for (int64_t o1 = 0; o1 < out[1]; o1++)
                    for (int64_t o2 = 0; o2 < out[2]; o2++) {
                        int64_t acc = 0;
                        for (int64_t c = 0; c < cg; c++) {
                            const uint8_t *xu = (const uint8_t *)x->data + (n * C + c0 + c) * isz;
                            const int8_t *xi = (const int8_t *)x->data + (n * C + c0 + c) * isz;
                            const int8_t *wc = wm + c * ksz;
                            for (int64_t k0 = 0; k0 < ks[0]; k0++) {
                                int64_t i0 = o0 * st[0] - pl[0] + k0 * dl[0];
                                if (i0 < 0 || i0 >= in[0])
                                    continue;
                                for (int64_t k1 = 0; k1 < ks[1]; k1++) {
                                    int64_t i1 = o1 * st[1] - pl[1] + k1 * dl[1];
                                    if (i1 < 0 || i1 >= in[1])
                                        continue;
                                    for (int64_t k2 = 0; k2 < ks[2]; k2++) {
                                        int64_t i2 = o2 * st[2] - pl[2] + k2 * dl[2];
                                        if (i2 < 0 || i2 >= in[2])
                                            continue;
                                        int64_t xo = (i0 * in[1] + i1) * in[2] + i2;
                                        int32_t xv = (u8 ? (int32_t)xu[xo] : (int32_t)xi[xo]) - s->zp;
                                        acc += (int64_t)xv * wc[(k0 * ks[1] + k1) * ks[2] + k2];
                                    }
                                }
                            }
                        }
                        float v = s->scales[m] * (float)acc + (b ? b[m] : 0.0f);
                        v = s->relu && v < 0 ? 0.0f : v;
                        int64_t yo = ybase + (o0 * out[1] + o1) * out[2] + o2;
                        if (!s->quant_out)
                            y[yo] = v;
                        else { /* QuantizeLinear: round half to even (the default rounding mode), saturate */
                            float qv = nearbyintf(v / s->ys) + (float)s->yzp;
                            float lo = yu8 ? 0.0f : -128.0f, hi = yu8 ? 255.0f : 127.0f;
                            qv = qv < lo ? lo : qv > hi ? hi : qv;
                            if (yu8)
                                yu[yo] = (uint8_t)qv;
                            else
                                yi[yo] = (int8_t)qv;
                        }
                    }
        }
}

static otl_status qc_prepare(otl_kctx *k)
{
    qdqconv_state *s = k->state;
    const otl_rt *x = k->in[0], *w = k->in[3], *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    otl_status st;
    const float *xs = k->in[1]->data, *ws = k->in[4]->data;
    s->zp = otl_has_in(k, 2) ? (int32_t)otl_get_i(k->in[2]->data, k->in[2]->dtype, 0) : 0;
    if (!(s->scales = malloc((size_t)s->M * sizeof *s->scales)) || !(s->bias = calloc((size_t)s->M, sizeof *s->bias)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    if (!(s->oscales = malloc((size_t)s->M * sizeof *s->oscales)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    for (int64_t m = 0; m < s->M; m++) {
        s->scales[m] = xs[0] * ws[k->in[4]->numel == 1 ? 0 : m];
        s->oscales[m] = s->quant_out ? s->scales[m] / s->ys : s->scales[m];
    }
    if (otl_has_in(k, 5) && k->in[5]->is_const) { /* once per session, not per run */
        for (int64_t m = 0; m < s->M; m++)
            s->bias[m] = ((const float *)k->in[5]->data)[m] / s->scales[m];
        s->bias_done = 1;
    }
    const char *force_ref = getenv("OTL_QCONV_REF");
    if (force_ref && *force_ref && strcmp(force_ref, "0") != 0) {
        s->ref = 1;
        return OTL_OK;
    }
    dnnl_memory_desc_t x_any, y_any, w_any, w_plain, b_md, x_user, y_user;
    dnnl_data_type_t xdt = x->dtype == OTL_DTYPE_UINT8 ? dnnl_u8 : dnnl_s8;
    dnnl_data_type_t ydt = !s->quant_out ? dnnl_f32 : y->dtype == OTL_DTYPE_UINT8 ? dnnl_u8 : dnnl_s8;
    int64_t bdim = s->M;
    if ((st = md_tag(k, &x_any, x->rank, x->dims, xdt, dnnl_format_tag_any)) ||
        (st = md_tag(k, &y_any, y->rank, y->dims, ydt, dnnl_format_tag_any)) ||
        (st = md_tag(k, &b_md, 1, &bdim, dnnl_f32, dnnl_a)) || (st = w_md(k, s, w, 1, &w_any)) ||
        (st = w_md(k, s, w, 0, &w_plain)) || (st = otl_rt_md(k, x, &x_user)) || (st = otl_rt_md(k, y, &y_user)))
        return st;
    dnnl_primitive_attr_t attr;
    if ((st = otl_dnnl_check(k, dnnl_primitive_attr_create(&attr), "attributes")))
        return st;
    int per_ch = k->in[4]->numel != 1;
    const int32_t rt_zp = DNNL_RUNTIME_S32_VAL;
    st = otl_dnnl_check(k, dnnl_primitive_attr_set_output_scales(attr, per_ch ? s->M : 1, per_ch ? 1 << 1 : 0,
                                                                 s->oscales), "output scales");
    if (!st && s->zp)
        st = otl_dnnl_check(k, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt_zp), "zero points");
    if (!st && s->yzp)
        st = otl_dnnl_check(k, dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &rt_zp),
                            "destination zero point");
    if (!st && s->relu) {
        dnnl_post_ops_t po;
        if (!(st = otl_dnnl_check(k, dnnl_post_ops_create(&po), "post-ops"))) {
            st = otl_dnnl_check(k, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "relu post-op");
            if (!st)
                st = otl_dnnl_check(k, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
            dnnl_post_ops_destroy(po);
        }
    }
    if (!st) {
        dnnl_dims_t strides, dil, pl, pr;
        for (int i = 0; i < s->g.nsp; i++) {
            strides[i] = s->g.s[i];
            dil[i] = s->g.d[i] - 1;
            pl[i] = s->g.pl[i];
            pr[i] = s->pr_dnnl[i];
        }
        dnnl_convolution_desc_t d;
        st = otl_dnnl_check(k, dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_inference,
                                                                          dnnl_convolution_direct, &x_any, &w_any, &b_md,
                                                                          &y_any, strides, dil, pl, pr),
                            "int8 convolution");
        if (!st) {
            dnnl_status_t ds = otl_pd_create(&s->pd, &d, attr, k->eng->eng, NULL);
            if (ds == dnnl_unimplemented) {
                s->pd = NULL;
                s->ref = 1;
            } else
                st = otl_dnnl_check(k, ds, "int8 convolution");
        }
    }
    dnnl_primitive_attr_destroy(attr);
    if (st || s->ref)
        return st;
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wq_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_weights_md, 0);
    if ((st = nn_make_prim(k, s->pd, &s->prim, "int8 convolution")) ||
        (st = nn_port_init(k, &s->src, &x_user, src_md, 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dst, &y_user, dst_md, 1, &s->scratch_bytes)))
        return st;
    /* weights: reordered once (the reorder also computes the compensation oneDNN may ask for) */
    size_t wb = dnnl_memory_desc_get_size(wq_md);
    if (!(s->w_buf = aligned_alloc(64, (wb + 63) & ~(size_t)63)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory for weights");
    if ((st = nn_reorder_once(k, &w_plain, w->data, wq_md, s->w_buf)) ||
        (st = otl_dnnl_memory(k, wq_md, s->w_buf, &s->w_mem)) || (st = otl_dnnl_memory(k, &b_md, s->bias, &s->b_mem)))
        return st;
    if (s->zp) {
        dnnl_memory_desc_t zmd;
        int64_t one = 1;
        if ((st = md_tag(k, &zmd, 1, &one, dnnl_s32, dnnl_a)) || (st = otl_dnnl_memory(k, &zmd, &s->zp, &s->zp_mem)))
            return st;
    }
    if (s->yzp) {
        dnnl_memory_desc_t zmd;
        int64_t one = 1;
        if ((st = md_tag(k, &zmd, 1, &one, dnnl_s32, dnnl_a)) || (st = otl_dnnl_memory(k, &zmd, &s->yzp, &s->yzp_mem)))
            return st;
    }
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status qc_forward(otl_kctx *k)
{
    qdqconv_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    if (s->ref) {
        qc_ref(k, s);
        return OTL_OK;
    }
    if (otl_has_in(k, 5) && !s->bias_done) /* bias / (x_scale * w_scale): oneDNN 2.x adds it before the scales */
        for (int64_t m = 0; m < s->M; m++)
            s->bias[m] = ((const float *)k->in[5]->data)[m] / s->scales[m];
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    otl_status st;
    if (!(st = nn_port_bind(k, &s->src, k->in[0]->data, scratch)) &&
        !(st = nn_port_bind(k, &s->dst, k->out[0]->data, scratch))) {
        dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_WEIGHTS, s->w_mem},
                                   {DNNL_ARG_BIAS, s->b_mem}, {DNNL_ARG_DST, s->dst.prim}};
        int n = 4;
        if (s->zp_mem)
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, s->zp_mem};
        if (s->yzp_mem)
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, s->yzp_mem};
        if (!(st = otl_dnnl_run(k, s->prim, n, args)))
            st = nn_port_finish(k, &s->dst);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

static void qc_release(otl_kctx *k)
{
    qdqconv_state *s = k->state;
    if (!s)
        return;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->pd)
        dnnl_primitive_desc_destroy(s->pd);
    nn_port_free(&s->src);
    nn_port_free(&s->dst);
    dnnl_memory_t mems[] = {s->w_mem, s->b_mem, s->zp_mem, s->yzp_mem};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(s->w_buf);
    free(s->scales);
    free(s->oscales);
    free(s->bias);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

const otl_op otl_op_QDQConv = {
    .op_type = "QDQConv", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = qc_infer, .prepare = qc_prepare, .forward = qc_forward, .release = qc_release,
};
