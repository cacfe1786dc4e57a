/* conv.c - Conv and ConvTranspose (1-D, 2-D, 3-D; groups, dilations, strides, pads, auto_pad,
 * optional bias) on oneDNN convolution / deconvolution primitives, float32.
 * Differentiable inputs: X, W, B. */
#include <stdlib.h>
#include <string.h>

#include "ops/nn_common.h"

/* Layout policy: let oneDNN choose src/dst layouts (it picks nhwc/blocked for its brgemm
 * kernels) and hand the blocked output on to the next layout-aware op; plain NCHW would run the
 * slower im2col+gemm path. OTL_CONV_LAYOUT=plain forces plain layouts (for measurements). */
static int conv_any_layout(void)
{
    const char *e = getenv("OTL_CONV_LAYOUT");
    return !(e && strcmp(e, "plain") == 0);
}

typedef struct conv_state {
    int transposed;
    int64_t group;
    nn_geom g;
    int64_t pr_dnnl[NN_MAX_SP];   /* end padding as oneDNN wants it (may be negative) */
    dnnl_primitive_desc_t pd;     /* made in infer: the output layout is the primitive's choice */
    dnnl_primitive_t prim;
    nn_port src, dst;
    dnnl_memory_t w_user, w_prim, b_mem;
    dnnl_primitive_t w_reorder;   /* plain -> preferred weights layout, or NULL */
    void *w_buf;                  /* weights in the preferred layout (when w_reorder) */
    int w_ready;                  /* w_buf holds the const weights */
    size_t scratch_bytes;
    int reserved;
} conv_state;

static const int floats[] = {OTL_DTYPE_FLOAT, 0};

static conv_state *conv_state_new(otl_kctx *k)
{
    conv_state *s = calloc(1, sizeof *s);
    k->state = s;
    return s;
}

/* Common input checks and attributes: X (N, C, D1..Dn), W, kernel_shape, group, geometry. */
static otl_status conv_common(otl_kctx *k, conv_state *s)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)))
        return st;
    if (otl_has_in(k, 2) && (st = otl_check_in(k, 2, floats)))
        return st;
    const otl_rt *x = k->in[0], *w = k->in[1];
    if (x->rank < 3)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 3 (N, C, spatial...), got %d", x->name, x->rank);
    if (x->rank > 5)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%d spatial dimensions (at most 3 supported)", x->rank - 2);
    if (w->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "weights W '%s' have rank %d, expected %d like X", w->name, w->rank, x->rank);
    s->g.nsp = x->rank - 2;
    if ((st = otl_attr_int(k, "group", 1, &s->group)))
        return st;
    if (s->group < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "group must be >= 1, got %lld", (long long)s->group);
    int64_t ks[NN_MAX_SP];
    int n;
    if ((st = otl_attr_ints(k, "kernel_shape", ks, NN_MAX_SP, &n)))
        return st;
    if (n >= 0 && n != s->g.nsp)
        return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape has %d values, expected %d", n, s->g.nsp);
    for (int i = 0; i < s->g.nsp; i++) {
        s->g.k[i] = w->dims[2 + i];
        if (n >= 0 && ks[i] != w->dims[2 + i])
            return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape[%d] = %lld but W has %lld", i, (long long)ks[i],
                             (long long)w->dims[2 + i]);
        if (s->g.k[i] < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "W '%s' has an empty kernel", w->name);
    }
    return nn_geom_attrs(k, &s->g, 1);
}

static otl_status check_bias(otl_kctx *k, int64_t m)
{
    if (!otl_has_in(k, 2))
        return OTL_OK;
    const otl_rt *b = k->in[2];
    if (b->rank != 1 || b->dims[0] != m)
        return otl_kfail(k, OTL_ERR_INPUT, "bias B '%s' must have shape (%lld), got %lld values in rank %d", b->name,
                         (long long)m, (long long)b->numel, b->rank);
    return OTL_OK;
}

/* ---------------------------------------------------------------- primitives */

/* oneDNN weights dims (G, OC/G, IC/G, K...) and the strides of the ONNX layout: Conv's W is
 * (M, C/G, K...) = (G, OC/G, IC/G, K...) in C order; ConvTranspose's W is (C, M/G, K...) =
 * (G, IC/G, OC/G, K...). */
static otl_status weights_plain_md(otl_kctx *k, const conv_state *s, dnnl_memory_desc_t *md, int any)
{
    const otl_rt *w = k->in[1];
    int nsp = s->g.nsp, g1 = s->group > 1, r = 0;
    int64_t g = s->group, ksz = 1;
    for (int i = 0; i < nsp; i++)
        ksz *= s->g.k[i];
    int64_t oc = s->transposed ? w->dims[1] : w->dims[0] / g; /* per group */
    int64_t ic = s->transposed ? w->dims[0] / g : w->dims[1];
    dnnl_dims_t dims, strides;
    if (g1) {
        dims[r] = g;
        strides[r++] = oc * ic * ksz;
    }
    dims[r] = oc;
    strides[r++] = s->transposed ? ksz : ic * ksz;
    dims[r] = ic;
    strides[r++] = s->transposed ? oc * ksz : ksz;
    int64_t acc = 1;
    for (int i = nsp - 1; i >= 0; i--) {
        dims[r + i] = s->g.k[i];
        strides[r + i] = acc;
        acc *= s->g.k[i];
    }
    r += nsp;
    if (any)
        return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, r, dims, dnnl_f32, dnnl_format_tag_any), "weights");
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, r, dims, dnnl_f32, strides), "weights");
}

/* The convolution primitive descriptor for output dims; sets the output's dtype, shape and
 * layout. Empty tensors get no primitive. */
static otl_status conv_make_pd(otl_kctx *k, conv_state *s, const int64_t *dims)
{
    const otl_rt *x = k->in[0];
    int64_t numel = 1;
    for (int i = 0; i < x->rank; i++)
        numel *= dims[i];
    if (x->numel == 0 || numel == 0)
        return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, dims);
    int any = conv_any_layout();
    dnnl_memory_desc_t x_md, y_md, w_md, b_md;
    otl_status st;
    if ((st = nn_md_src(k, x, any, &x_md)) || (st = nn_md_dst(k, x->rank, dims, any, &y_md)) ||
        (st = weights_plain_md(k, s, &w_md, 1)))
        return st;
    const dnnl_memory_desc_t *b = NULL;
    if (otl_has_in(k, 2)) {
        if ((st = otl_md_plain(k, k->in[2], &b_md)))
            return st;
        b = &b_md;
    }
    dnnl_dims_t strides, dil, pl, pr;
    for (int i = 0; i < s->g.nsp; i++) {
        strides[i] = s->g.s[i];
        dil[i] = s->g.d[i] - 1;
        pl[i] = s->g.pl[i];
        pr[i] = s->pr_dnnl[i];
    }
    dnnl_prop_kind_t prop = k->training ? dnnl_forward_training : dnnl_forward_inference;
    if (s->transposed) {
        dnnl_deconvolution_desc_t d;
        if ((st = otl_dnnl_check(k, dnnl_dilated_deconvolution_forward_desc_init(&d, prop, dnnl_deconvolution_direct, &x_md, &w_md, b,
                                                                                 &y_md, strides, dil, pl, pr),
                                 "deconvolution")))
            return st;
        st = nn_make_pd(k, &d, NULL, &s->pd, "deconvolution");
    } else {
        dnnl_convolution_desc_t d;
        if ((st = otl_dnnl_check(k, dnnl_dilated_convolution_forward_desc_init(&d, prop, dnnl_convolution_direct, &x_md, &w_md, b,
                                                                               &y_md, strides, dil, pl, pr),
                                 "convolution")))
            return st;
        st = nn_make_pd(k, &d, NULL, &s->pd, "convolution");
    }
    if (st)
        return st;
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, dims,
                         dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0));
}

static otl_status conv_prepare(otl_kctx *k)
{
    conv_state *s = k->state;
    if (!s->pd)
        return OTL_OK;
    const otl_rt *x = k->in[0], *y = k->out[0];
    dnnl_memory_desc_t x_user, y_user, w_plain, b_md;
    otl_status st;
    if ((st = otl_rt_md(k, x, &x_user)) || (st = otl_rt_md(k, y, &y_user)) || (st = weights_plain_md(k, s, &w_plain, 0)))
        return st;
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wq_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_weights_md, 0);
    if ((st = nn_make_prim(k, s->pd, &s->prim, "convolution")) ||
        (st = nn_port_init(k, &s->src, &x_user, src_md, 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dst, &y_user, dst_md, 1, &s->scratch_bytes)) ||
        (st = otl_dnnl_memory(k, &w_plain, NULL, &s->w_user)))
        return st;
    if (!dnnl_memory_desc_equal(&w_plain, wq_md)) {
        size_t wb = dnnl_memory_desc_get_size(wq_md);
        s->w_buf = aligned_alloc(64, (wb + 63) & ~(size_t)63);
        if (!s->w_buf)
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory for weights");
        dnnl_primitive_desc_t rpd;
        if ((st = otl_dnnl_check(k, dnnl_reorder_primitive_desc_create(&rpd, &w_plain, k->eng->eng, wq_md, k->eng->eng, NULL),
                                 "weights reorder")))
            return st;
        st = otl_dnnl_check(k, dnnl_primitive_create(&s->w_reorder, rpd), "weights reorder");
        dnnl_primitive_desc_destroy(rpd);
        if (st || (st = otl_dnnl_memory(k, wq_md, s->w_buf, &s->w_prim)))
            return st;
    } else {
        s->w_prim = s->w_user;
    }
    if (otl_has_in(k, 2) &&
        ((st = otl_md_plain(k, k->in[2], &b_md)) || (st = otl_dnnl_memory(k, &b_md, NULL, &s->b_mem))))
        return st;
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    /* const weights (initializers) of an inference plan: reorder once now. Training updates
     * the parameters between runs, so there they are reordered on every forward. */
    if (s->w_reorder && k->in[1]->is_const && !k->training) {
        dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, s->w_user}, {DNNL_ARG_TO, s->w_prim}};
        if ((st = otl_dnnl_run(k, s->w_reorder, 2, args)))
            return st;
        s->w_ready = 1;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- shape inference */

static otl_status conv_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    otl_status st = conv_common(k, s);
    if (st)
        return st;
    const otl_rt *x = k->in[0], *w = k->in[1];
    int64_t c = x->dims[1], m = w->dims[0];
    if (w->dims[1] * s->group != c)
        return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels but W '%s' expects %lld x group %lld", (long long)c,
                         w->name, (long long)w->dims[1], (long long)s->group);
    if (m % s->group)
        return otl_kfail(k, OTL_ERR_INPUT, "%lld output channels are not divisible by group %lld", (long long)m,
                         (long long)s->group);
    if ((st = check_bias(k, m)) || (st = nn_geom_forward(k, &s->g, x->dims + 2)))
        return st;
    int64_t dims[OTL_MAX_RANK] = {x->dims[0], m};
    for (int i = 0; i < s->g.nsp; i++) {
        dims[2 + i] = s->g.out[i];
        /* oneDNN checks (in - ext + pl + pr) / s + 1 == out: give it the end padding that
         * matches the output (ONNX floor semantics drop the rest). */
        s->pr_dnnl[i] = (s->g.out[i] - 1) * s->g.s[i] + nn_extent(&s->g, i) - s->g.in[i] - s->g.pl[i];
        if (s->pr_dnnl[i] > s->g.pr[i])
            s->pr_dnnl[i] = s->g.pr[i];
        if (s->pr_dnnl[i] < 0)
            s->pr_dnnl[i] = 0;
    }
    return conv_make_pd(k, s, dims);
}

static otl_status convt_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    s->transposed = 1;
    otl_status st = conv_common(k, s);
    if (st)
        return st;
    const otl_rt *x = k->in[0], *w = k->in[1];
    int nsp = s->g.nsp;
    int64_t c = x->dims[1], m = w->dims[1] * s->group;
    if (w->dims[0] != c)
        return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels but W '%s' has %lld input channels", (long long)c,
                         w->name, (long long)w->dims[0]);
    if (c % s->group)
        return otl_kfail(k, OTL_ERR_INPUT, "%lld input channels are not divisible by group %lld", (long long)c,
                         (long long)s->group);
    if ((st = check_bias(k, m)))
        return st;
    int64_t op[NN_MAX_SP] = {0}, os[OTL_MAX_RANK];
    int n_op, n_os;
    if ((st = otl_attr_ints(k, "output_padding", op, NN_MAX_SP, &n_op)) ||
        (st = otl_attr_ints(k, "output_shape", os, OTL_MAX_RANK, &n_os)))
        return st;
    if (n_op >= 0 && n_op != nsp)
        return otl_kfail(k, OTL_ERR_INPUT, "output_padding has %d values, expected %d", n_op, nsp);
    if (n_op < 0)
        memset(op, 0, sizeof op);
    if (n_os >= 0 && n_os != nsp && n_os != nsp + 2)
        return otl_kfail(k, OTL_ERR_INPUT, "output_shape has %d values, expected %d", n_os, nsp);
    const int64_t *oshape = n_os == nsp + 2 ? os + 2 : os;
    int64_t dims[OTL_MAX_RANK] = {x->dims[0], m};
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->dims[2 + i], ext = nn_extent(&s->g, i);
        if (op[i] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "output_padding must be >= 0");
        int64_t full = s->g.s[i] * (in - 1) + op[i] + ext, out;
        s->g.in[i] = in;
        if (n_os >= 0 || s->g.auto_pad == NN_PAD_SAME_UPPER || s->g.auto_pad == NN_PAD_SAME_LOWER) {
            out = n_os >= 0 ? oshape[i] : in * s->g.s[i];
            if (out < 0)
                return otl_kfail(k, OTL_ERR_INPUT, "output_shape[%d] is negative", i);
            int64_t total = full - out;
            if (total < 0) { /* larger than the full output: the extra end is bias only */
                s->g.pl[i] = 0;
                s->g.pr[i] = total;
            } else if (s->g.auto_pad == NN_PAD_SAME_UPPER) {
                s->g.pl[i] = total / 2;
                s->g.pr[i] = total - total / 2;
            } else {
                s->g.pr[i] = total / 2;
                s->g.pl[i] = total - total / 2;
            }
        } else {
            if (s->g.auto_pad == NN_PAD_VALID)
                s->g.pl[i] = s->g.pr[i] = 0;
            out = full - s->g.pl[i] - s->g.pr[i];
            if (out < 0)
                return otl_kfail(k, OTL_ERR_INPUT, "pads exceed the output size on spatial axis %d", i);
        }
        s->g.out[i] = out;
        dims[2 + i] = out;
        /* oneDNN checks (out - ext + pl + pr) / s + 1 == in: output_padding and output_shape
         * extras go into a smaller (possibly negative) end padding. */
        s->pr_dnnl[i] = s->g.s[i] * (in - 1) + ext - s->g.pl[i] - out;
    }
    return conv_make_pd(k, s, dims);
}

/* Output for an empty input: bias (or zero) everywhere. */
static void conv_fill_bias(otl_kctx *k)
{
    const otl_rt *y = k->out[0];
    float *out = y->data;
    int64_t n = y->dims[0], m = y->dims[1], sp = (n != 0 && m != 0) ? y->numel / (n * m) : 0;
    const float *b = otl_has_in(k, 2) ? k->in[2]->data : NULL;
    for (int64_t i = 0; i < n * m; i++)
        for (int64_t j = 0; j < sp; j++)
            out[i * sp + j] = b ? b[i % m] : 0.0f;
}

static otl_status conv_forward(otl_kctx *k)
{
    conv_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    if (k->in[0]->numel == 0) {
        conv_fill_bias(k);
        return OTL_OK;
    }
    otl_status st = OTL_OK;
    if (s->w_reorder && !s->w_ready) { /* non-const or trainable weights: reorder on every run */
        dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, s->w_user}, {DNNL_ARG_TO, s->w_prim}};
        if ((st = otl_dnnl_run(k, s->w_reorder, 2, args)))
            return st;
    } else if (!s->w_reorder) {
        dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
    }
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!(st = nn_port_bind(k, &s->src, k->in[0]->data, scratch)) &&
        !(st = nn_port_bind(k, &s->dst, k->out[0]->data, scratch))) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_WEIGHTS, s->w_prim}, {DNNL_ARG_DST, s->dst.prim}};
        int nargs = 3;
        if (s->b_mem) {
            dnnl_memory_set_data_handle(s->b_mem, k->in[2]->data);
            args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->b_mem};
        }
        st = otl_dnnl_run(k, s->prim, nargs, args);
        if (!st)
            st = nn_port_finish(k, &s->dst);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

static void conv_release(otl_kctx *k)
{
    conv_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->pd)
        dnnl_primitive_desc_destroy(s->pd);
    nn_port_free(&s->src);
    nn_port_free(&s->dst);
    if (s->w_reorder)
        dnnl_primitive_destroy(s->w_reorder);
    if (s->w_prim && s->w_prim != s->w_user)
        dnnl_memory_destroy(s->w_prim);
    if (s->w_user)
        dnnl_memory_destroy(s->w_user);
    if (s->b_mem)
        dnnl_memory_destroy(s->b_mem);
    free(s->w_buf);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

const otl_op otl_op_Conv = {
    .op_type = "Conv", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = conv_infer, .prepare = conv_prepare, .forward = conv_forward, .release = conv_release,
};

const otl_op otl_op_ConvTranspose = {
    .op_type = "ConvTranspose", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = convt_infer, .prepare = conv_prepare, .forward = conv_forward, .release = conv_release,
};
