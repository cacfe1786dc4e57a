/* conv.c - Conv and ConvTranspose (1-D, 2-D, 3-D; groups, dilations, strides, pads, auto_pad,
 * optional bias) on oneDNN convolution / deconvolution primitives, float32; onnx_tl.FusedConv
 * (Conv + residual Z + activation as oneDNN post-ops, for inference rewrites); and their
 * backward: gradient rules and the private backward kernels ConvGradData (dX),
 * ConvGradWeights (dW and dB), ConvGradBias (dB alone), ConvTransposeGradData and
 * ConvTransposeGradWeights, on oneDNN's backward-data / backward-weights primitives created
 * with a forward_training descriptor as hint. Sessions with bf16 precision (k->bf16) give every
 * primitive bfloat16 copies of X, W and dY (float32 Y, dX, dW, dB): see bf16_md.
 * Differentiable inputs: X, W, B. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/broadcast.h"
#include "ops/nn_common.h"

/* Layout policy: let oneDNN choose src/dst layouts (it picks nhwc/blocked for its brgemm
 * kernels) and hand the blocked output on to the next layout-aware op; plain NCHW would run the
 * slower im2col+gemm path. OTL_CONV_LAYOUT=plain forces plain layouts (for measurements). */
static int conv_any_layout(void)
{
    const char *e = getenv("OTL_CONV_LAYOUT");
    return !(e && strcmp(e, "plain") == 0);
}

/* Mixed precision (k->bf16): the primitive reads bfloat16 copies of X, W and dY (the ports and
 * the weights reorder convert from the float32 tensors) and writes float32 Y, dX, dW and dB. A
 * bf16 descriptor in oneDNN's choice of layout (plain with OTL_CONV_LAYOUT=plain). */
static otl_status bf16_md(otl_kctx *k, int rank, const int64_t *dims, int any, dnnl_memory_desc_t *md)
{
    if (!any)
        return nn_md_dense(k, rank, dims, dnnl_bf16, md);
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, rank, d, dnnl_bf16, dnnl_format_tag_any), "memory descriptor");
}

/* A forward convolution with a gradient: a training session's node that some gradient flows
 * through (k->no_grad unset). Such a node runs oneDNN's forward_training direct convolution in
 * oneDNN's default layouts, like the backward primitives made for it (their own forward_training
 * hint, direct algorithm); Winograd, the stem and the nChw16c chains were introduced for
 * inference only (Winograd's transforms round differently from PyTorch's direct convolution,
 * which the gradient tests compare against). Nothing of a forward convolution is kept for the
 * backward (no workspace), so a node no gradient flows through (the frozen part of a training
 * graph: no backward node exists for it) runs like in inference (but see frozen_training_kernels). */
static int conv_training(const otl_kctx *k)
{
    return k->training && !k->no_grad;
}

enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHTS };
enum { ACT_NONE, ACT_RELU, ACT_LEAKY, ACT_CLIP, ACT_HARDSWISH, ACT_SIGMOID, ACT_TANH };
enum { Z_NONE, Z_SUM, Z_BINARY, Z_EPILOGUE };

typedef struct conv_state {
    int transposed;
    int kind;                     /* CONV_* */
    int64_t group;
    nn_geom g;
    int64_t pr_dnnl[NN_MAX_SP];   /* end padding as oneDNN wants it (may be negative) */
    dnnl_primitive_desc_t pd;     /* made in infer: the output layout is the primitive's choice */
    dnnl_primitive_t prim;
    /* forward */
    nn_port src, dst;
    dnnl_memory_t w_user, w_prim, b_mem;
    dnnl_primitive_t w_reorder;   /* plain -> preferred weights layout, or NULL */
    void *w_buf;                  /* weights in the preferred layout (when w_reorder) */
    int w_ready;                  /* w_buf holds the const weights */
    int wino;                     /* forward by Winograd (dnnl_convolution_winograd), see conv_wino_eligible */
    int stem;                     /* plain input, nChw16c output: see conv_stem_eligible */
    int blk;                      /* nChw16c output (input as it comes): see conv_blk_eligible */
    int src_any;                  /* the input in oneDNN's choice of layout, not as it comes (see conv_make_pd) */
    /* FusedConv: Y = act(conv(X, W, B) + Z) */
    int act;                      /* ACT_* */
    float act_a, act_b;           /* LeakyRelu alpha; Clip min, max */
    int z_mode;                   /* Z_*: sum post-op, binary post-op, or C epilogue */
    int epilogue;                 /* activation (and Z) applied in C on a plain output */
    nn_port z;                    /* Z as the binary post-op reads it (or plain for the epilogue) */
    dnnl_primitive_t z_reorder;   /* Z_SUM: Z -> the primitive's dst layout */
    dnnl_memory_t z_user, z_dst;
    /* backward */
    nn_port dy, w, dx, x, dw, db;
    int64_t ydims[OTL_MAX_RANK];  /* forward output dims */
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

/* ---------------------------------------------------------------- geometry */

/* Attributes and input shapes of a (transposed) convolution of X by W (only dtype/rank/dims
 * are read: the backward ops pass shapes rebuilt from Shape(X) / Shape(W)); fills s and the
 * forward output dims. */
static otl_status conv_geom(otl_kctx *k, conv_state *s, const otl_rt *x, const otl_rt *w, const otl_rt *b, int64_t *dims)
{
    otl_status st;
    if (x->rank < 3)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 3 (N, C, spatial...), got %d", x->name, x->rank);
    if (x->rank > 5)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%d spatial dimensions (at most 3 supported)", x->rank - 2);
    if (w->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "weights W '%s' have rank %d, expected %d like X", w->name, w->rank, x->rank);
    int nsp = s->g.nsp = x->rank - 2;
    if ((st = otl_attr_int(k, "group", 1, &s->group)))
        return st;
    if (s->group < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "group must be >= 1, got %lld", (long long)s->group);
    int64_t ks[NN_MAX_SP];
    int n;
    if ((st = otl_attr_ints(k, "kernel_shape", ks, NN_MAX_SP, &n)))
        return st;
    if (n >= 0 && n != nsp)
        return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape has %d values, expected %d", n, nsp);
    for (int i = 0; i < nsp; i++) {
        s->g.k[i] = w->dims[2 + i];
        if (n >= 0 && ks[i] != w->dims[2 + i])
            return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape[%d] = %lld but W has %lld", i, (long long)ks[i],
                             (long long)w->dims[2 + i]);
        if (s->g.k[i] < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "W '%s' has an empty kernel", w->name);
    }
    if ((st = nn_geom_attrs(k, &s->g, 1)))
        return st;
    int64_t c = x->dims[1], m;
    if (!s->transposed) {
        m = w->dims[0];
        if (w->dims[1] * s->group != c)
            return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels but W '%s' expects %lld x group %lld", (long long)c,
                             w->name, (long long)w->dims[1], (long long)s->group);
        if (m % s->group)
            return otl_kfail(k, OTL_ERR_INPUT, "%lld output channels are not divisible by group %lld", (long long)m,
                             (long long)s->group);
    } else {
        m = w->dims[1] * s->group;
        if (w->dims[0] != c)
            return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels but W '%s' has %lld input channels", (long long)c,
                             w->name, (long long)w->dims[0]);
        if (c % s->group)
            return otl_kfail(k, OTL_ERR_INPUT, "%lld input channels are not divisible by group %lld", (long long)c,
                             (long long)s->group);
    }
    if (b && (b->rank != 1 || b->dims[0] != m))
        return otl_kfail(k, OTL_ERR_INPUT, "bias B '%s' must have shape (%lld), got %lld values in rank %d", b->name,
                         (long long)m, (long long)b->numel, b->rank);
    dims[0] = x->dims[0];
    dims[1] = m;
    if (!s->transposed) {
        if ((st = nn_geom_forward(k, &s->g, x->dims + 2)))
            return st;
        for (int i = 0; i < nsp; i++) {
            dims[2 + i] = s->g.out[i];
            /* oneDNN checks (in - ext + pl + pr) / s + 1 == out: give it the end padding that
             * matches the output (ONNX floor semantics drop the rest). */
            s->pr_dnnl[i] = (s->g.out[i] - 1) * s->g.s[i] + nn_extent(&s->g, i) - s->g.in[i] - s->g.pl[i];
            if (s->pr_dnnl[i] > s->g.pr[i])
                s->pr_dnnl[i] = s->g.pr[i];
            if (s->pr_dnnl[i] < 0)
                s->pr_dnnl[i] = 0;
        }
        memcpy(s->ydims, dims, sizeof s->ydims);
        return OTL_OK;
    }
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
    memcpy(s->ydims, dims, sizeof s->ydims);
    return OTL_OK;
}

/* ---------------------------------------------------------------- primitives */

/* oneDNN weights dims (G, OC/G, IC/G, K...) and the strides of the ONNX layout: Conv's W is
 * (M, C/G, K...) = (G, OC/G, IC/G, K...) in C order; ConvTranspose's W is (C, M/G, K...) =
 * (G, IC/G, OC/G, K...). */
static otl_status weights_plain_md(otl_kctx *k, const conv_state *s, const otl_rt *w, dnnl_memory_desc_t *md, int any)
{
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

static void conv_params(const conv_state *s, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr)
{
    for (int i = 0; i < s->g.nsp; i++) {
        strides[i] = s->g.s[i];
        dil[i] = s->g.d[i] - 1;
        pl[i] = s->g.pl[i];
        pr[i] = s->pr_dnnl[i];
    }
}

/* A forward (de)convolution primitive descriptor; quiet: return the dnnl status instead of
 * recording an error (callers that have a fallback). */
static dnnl_status_t conv_fwd_pd(otl_kctx *k, const conv_state *s, dnnl_prop_kind_t prop, const dnnl_memory_desc_t *x_md,
                                 const dnnl_memory_desc_t *w_md, const dnnl_memory_desc_t *b_md,
                                 const dnnl_memory_desc_t *y_md, const_dnnl_primitive_attr_t attr,
                                 dnnl_primitive_desc_t *pd)
{
    dnnl_dims_t strides, dil, pl, pr;
    conv_params(s, strides, dil, pl, pr);
    dnnl_status_t r;
    *pd = NULL;
    if (s->transposed) {
        dnnl_deconvolution_desc_t d;
        r = dnnl_dilated_deconvolution_forward_desc_init(&d, prop, dnnl_deconvolution_direct, x_md, w_md, b_md, y_md,
                                                         strides, dil, pl, pr);
        if (r == dnnl_success)
            r = otl_pd_create(pd, &d, attr, k->eng->eng, NULL);
    } else {
        dnnl_convolution_desc_t d;
        r = dnnl_dilated_convolution_forward_desc_init(&d, prop, s->wino ? dnnl_convolution_winograd : dnnl_convolution_direct,
                                                       x_md, w_md, b_md, y_md, strides, dil, pl, pr);
        if (r == dnnl_success)
            r = otl_pd_create(pd, &d, attr, k->eng->eng, NULL);
    }
    if (r != dnnl_success)
        *pd = NULL;
    return r;
}

/* ---------------------------------------------------------------- FusedConv attributes */

/* activation / activation_params of FusedConv into s->act, act_a, act_b. */
static otl_status fused_attrs(otl_kctx *k, conv_state *s)
{
    const char *act;
    float p[2];
    int n;
    otl_status st;
    if ((st = otl_attr_str(k, "activation", "", &act)) || (st = otl_attr_floats(k, "activation_params", p, 2, &n)))
        return st;
    if (n < 0)
        n = 0;
    s->act_a = 0;
    s->act_b = 0;
    if (!*act) {
        s->act = ACT_NONE;
    } else if (strcmp(act, "Relu") == 0) {
        s->act = ACT_RELU;
    } else if (strcmp(act, "LeakyRelu") == 0) {
        s->act = ACT_LEAKY;
        s->act_a = n >= 1 ? p[0] : 0.01f;
    } else if (strcmp(act, "Clip") == 0) {
        s->act = ACT_CLIP;
        s->act_a = n >= 1 ? p[0] : -INFINITY;
        s->act_b = n >= 2 ? p[1] : INFINITY;
        if (!(s->act_a <= s->act_b) && !isnan(s->act_a) && !isnan(s->act_b))
            return otl_kfail(k, OTL_ERR_INPUT, "Clip activation: min %g > max %g", s->act_a, s->act_b);
    } else if (strcmp(act, "HardSwish") == 0) {
        s->act = ACT_HARDSWISH;
    } else if (strcmp(act, "Sigmoid") == 0) {
        s->act = ACT_SIGMOID;
    } else if (strcmp(act, "Tanh") == 0) {
        s->act = ACT_TANH;
    } else {
        return otl_kfail(k, OTL_ERR_UNSUPPORTED,
                         "activation '%s' is not one of \"\", Relu, LeakyRelu, Clip, HardSwish, Sigmoid, Tanh", act);
    }
    return OTL_OK;
}

static float act_apply(const conv_state *s, float v)
{
    switch (s->act) {
    case ACT_RELU: return v > 0 ? v : 0.0f;
    case ACT_LEAKY: return v >= 0 ? v : v * s->act_a;
    case ACT_CLIP: return v < s->act_a ? s->act_a : v > s->act_b ? s->act_b : v;
    case ACT_HARDSWISH: {
        float t = v / 6.0f + 0.5f;
        return v * (t < 0 ? 0.0f : t > 1 ? 1.0f : t);
    }
    case ACT_SIGMOID: return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
    case ACT_TANH: return tanhf(v);
    default: return v;
    }
}

/* The post-ops attribute of FusedConv: Z (sum or binary add, z_md its layout for binary) then
 * the activation. *attr = NULL when there is nothing to fuse. */
static otl_status fused_attr(otl_kctx *k, const conv_state *s, int z_mode, const dnnl_memory_desc_t *z_md,
                             dnnl_primitive_attr_t *attr)
{
    *attr = NULL;
    if (z_mode == Z_NONE && s->act == ACT_NONE)
        return OTL_OK;
    dnnl_post_ops_t po;
    if (dnnl_post_ops_create(&po) != dnnl_success)
        return otl_kfail(k, OTL_ERR_NOMEM, "cannot create post-ops");
    dnnl_status_t r = dnnl_success;
    if (z_mode == Z_SUM)
        r = dnnl_post_ops_append_sum(po, 1.0f);
    else if (z_mode == Z_BINARY)
        r = dnnl_post_ops_append_binary(po, dnnl_binary_add, z_md);
    if (r == dnnl_success && s->act != ACT_NONE) {
        dnnl_alg_kind_t alg;
        float a = 0, b = 0;
        switch (s->act) {
        case ACT_RELU: alg = dnnl_eltwise_relu; break;
        case ACT_LEAKY: alg = dnnl_eltwise_relu; a = s->act_a; break;
        case ACT_CLIP: alg = dnnl_eltwise_clip; a = s->act_a; b = s->act_b; break;
        case ACT_HARDSWISH: alg = dnnl_eltwise_hardswish; break;
        case ACT_SIGMOID: alg = dnnl_eltwise_logistic; break;
        default: alg = dnnl_eltwise_tanh; break;
        }
        r = dnnl_post_ops_append_eltwise(po, 1.0f, alg, a, b);
    }
    if (r == dnnl_success)
        r = dnnl_primitive_attr_create(attr);
    if (r == dnnl_success)
        r = dnnl_primitive_attr_set_post_ops(*attr, po);
    dnnl_post_ops_destroy(po);
    if (r != dnnl_success) {
        if (*attr)
            dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return otl_dnnl_check(k, r, "post-ops");
    }
    return OTL_OK;
}

/* How FusedConv adds a full-shape Z: a sum post-op over dst pre-filled with Z (default: oneDNN
 * keeps its brgconv kernels), or a binary add post-op reading Z (2.6 then falls back to its
 * older jit kernels; the default for the nChw16c chains, which run those anyway: see
 * conv_make_pd). OTL_FUSEDCONV_Z=sum|binary overrides (measurements). */
static int fused_z_pref(void)
{
    const char *e = getenv("OTL_FUSEDCONV_Z");
    if (e && strcmp(e, "binary") == 0)
        return Z_BINARY;
    return Z_SUM;
}

static int fused_z_forced(void)
{
    const char *e = getenv("OTL_FUSEDCONV_Z");
    return e && (strcmp(e, "binary") == 0 || strcmp(e, "sum") == 0);
}

/* ---------------------------------------------------------------- forward: Conv, ConvTranspose, FusedConv */

typedef struct zcopy {
    void *dst;
    const void *src;
} zcopy;

static void zcopy_range(void *ctx, int64_t start, int64_t end)
{
    const zcopy *c = ctx;
    memcpy((char *)c->dst + start, (const char *)c->src + start, (size_t)(end - start));
}

/* Z's descriptor as the binary post-op reads it: its own layout when it has the output's dims,
 * else its plain dims right-aligned to the output's rank (broadcast). */
static otl_status z_md_for(otl_kctx *k, const otl_rt *z, int rank, dnnl_memory_desc_t *md)
{
    if (z->rank == rank)
        return otl_rt_md(k, z, md);
    int64_t d[OTL_MAX_RANK];
    for (int i = 0; i < rank; i++)
        d[i] = i < rank - z->rank ? 1 : z->dims[i - (rank - z->rank)];
    return nn_md_dense(k, rank, d, dnnl_f32, md);
}

/* The forward primitive descriptor for output dims; sets the output's dtype, shape and
 * layout. Empty tensors get no primitive. FusedConv puts Z and the activation into post-ops;
 * when oneDNN refuses them (a Z it cannot broadcast) the output is plain and a C epilogue
 * finishes it. */
/* A frozen convolution (k->no_grad) of a training session whose BatchNormalizations use batch
 * statistics, and that gets none of the inference-only layouts (Winograd, stem, nChw16c chain):
 * forward_training all the same, for oneDNN's kernel choice only (a convolution keeps nothing for
 * a backward). oneDNN 2.6 picks nChw16c jit kernels for forward_training and channels-last brgemm
 * ones for forward_inference, and the training-mode BatchNormalization between the convolutions
 * (not folded) was slower on channels-last: mobilenet_v2 head-only steps with batch statistics
 * took 5-9% longer with forward_inference here (resnet18's few such convolutions, strided, gained
 * about 5% from it). OTL_FROZEN_PROP=inference / training forces one (A/B measurements). */
static int frozen_training_kernels(const otl_kctx *k, const conv_state *s)
{
    const char *e = getenv("OTL_FROZEN_PROP");
    if (!k->training || s->wino || s->stem || s->blk || (e && strcmp(e, "inference") == 0))
        return 0;
    return k->bn_training || (e && strcmp(e, "training") == 0);
}

static otl_status conv_make_pd_alg(otl_kctx *k, conv_state *s, const int64_t *dims, int *wino_ok)
{
    const otl_rt *x = k->in[0];
    const otl_rt *z = s->kind == CONV_FWD && s->z_mode != Z_NONE ? k->in[3] : NULL;
    int64_t numel = 1;
    for (int i = 0; i < x->rank; i++)
        numel *= dims[i];
    if (x->numel == 0 || numel == 0) {
        s->epilogue = s->act != ACT_NONE || z;
        return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, dims);
    }
    int any = conv_any_layout();
    dnnl_memory_desc_t x_md, y_md, w_md, b_md, z_md;
    memset(&z_md, 0, sizeof z_md);
    otl_status st;
    if ((st = k->bf16 ? bf16_md(k, x->rank, x->dims, any, &x_md)
               : s->src_any ? nn_md_dst(k, x->rank, x->dims, 1, &x_md) : nn_md_src(k, x, any, &x_md)) ||
        (st = nn_md_dst(k, x->rank, dims, any, &y_md)) || (st = weights_plain_md(k, s, k->in[1], &w_md, 1)))
        return st;
    if (k->bf16)
        w_md.data_type = dnnl_bf16; /* format_tag_any: no strides to adjust */
    const dnnl_memory_desc_t *b = NULL;
    if (otl_has_in(k, 2)) {
        if ((st = otl_md_plain(k, k->in[2], &b_md)))
            return st;
        b = &b_md;
    }
    if (s->wino) { /* oneDNN's Winograd kernels read and write nChw16c only */
        dnnl_dims_t xd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]}, yd = {dims[0], dims[1], dims[2], dims[3]};
        if ((st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&x_md, 4, xd, dnnl_f32, dnnl_nChw16c), "memory descriptor")) ||
            (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&y_md, 4, yd, dnnl_f32, dnnl_nChw16c), "memory descriptor")))
            return st;
    } else if (s->stem || s->blk) { /* the input as it comes */
        dnnl_dims_t yd = {dims[0], dims[1], dims[2], dims[3]};
        if ((st = otl_rt_md(k, x, &x_md)) ||
            (st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&y_md, 4, yd, dnnl_f32, dnnl_nChw16c), "memory descriptor")))
            return st;
    }
    dnnl_prop_kind_t prop = conv_training(k) || frozen_training_kernels(k, s) ? dnnl_forward_training
                                                                            : dnnl_forward_inference;
    dnnl_status_t r;
    if (z || s->act != ACT_NONE) {
        /* 1. the activation alone: the primitive picks the output layout */
        dnnl_primitive_attr_t attr = NULL;
        if ((st = fused_attr(k, s, Z_NONE, NULL, &attr)))
            return st;
        r = conv_fwd_pd(k, s, prop, &x_md, &w_md, b, &y_md, attr, &s->pd);
        if (attr)
            dnnl_primitive_attr_destroy(attr);
        /* 2. Z as a sum post-op (dst pre-filled with Z) or a binary one reading Z in the output's
         * layout (a full-shape Z in another layout is reordered first: oneDNN's fast kernels
         * want src1 like dst) or broadcast from its plain dims. oneDNN's reference kernel is
         * no option: then the C epilogue adds Z. */
        if (r == dnnl_success && s->z_mode == Z_EPILOGUE) {
            dnnl_primitive_desc_destroy(s->pd);
            s->pd = NULL;
            r = dnnl_unimplemented;
        }
        if (r == dnnl_success && z) {
            int ref0 = nn_pd_is_ref(s->pd);
            dnnl_memory_desc_t dst_md = *dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
            dnnl_primitive_desc_t pd2 = NULL;
            if (s->z_mode == Z_BINARY && z->rank == x->rank && memcmp(z->dims, dims, sizeof(int64_t) * (size_t)z->rank) == 0)
                z_md = dst_md;
            else if ((st = z_md_for(k, z, x->rank, &z_md))) {
                dnnl_primitive_desc_destroy(s->pd);
                s->pd = NULL;
                return st;
            }
            if ((st = fused_attr(k, s, s->z_mode, &z_md, &attr))) {
                dnnl_primitive_desc_destroy(s->pd);
                s->pd = NULL;
                return st;
            }
            r = conv_fwd_pd(k, s, prop, &x_md, &w_md, b, &dst_md, attr, &pd2);
            if (attr)
                dnnl_primitive_attr_destroy(attr);
            dnnl_primitive_desc_destroy(s->pd);
            s->pd = pd2;
            if (r == dnnl_success && nn_pd_is_ref(pd2) && !ref0) {
                dnnl_primitive_desc_destroy(pd2);
                s->pd = NULL;
                r = dnnl_unimplemented;
            }
        }
        if (r != dnnl_success && wino_ok) { /* refused with the post-ops: the default path instead */
            *wino_ok = 0;
            return OTL_OK;
        }
        if (r != dnnl_success) { /* plain output, Z and activation in C */
            s->epilogue = 1;
            if (z)
                s->z_mode = Z_EPILOGUE;
            if ((st = nn_md_dst(k, x->rank, dims, 0, &y_md)))
                return st;
            r = conv_fwd_pd(k, s, prop, &x_md, &w_md, b, &y_md, NULL, &s->pd);
        }
    } else {
        r = conv_fwd_pd(k, s, prop, &x_md, &w_md, b, &y_md, NULL, &s->pd);
    }
    if (wino_ok) {
        *wino_ok = r == dnnl_success && !nn_pd_is_ref(s->pd);
        if (!*wino_ok)
            return OTL_OK;
    }
    if ((st = otl_dnnl_check(k, r, s->transposed ? "deconvolution" : "convolution")))
        return st;
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, dims,
                         dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0));
}

/* Winograd F(4x4, 3x3) (oneDNN's jit_wino_4x3 / jit_fp32_wino_2x3, nChw16c): about half the
 * time of the direct kernels on 3x3 stride-1 convolutions with 16k channels, float32
 * inference. Its transforms round differently from a direct convolution (relative error about
 * 1e-6 per layer). OTL_CONV_WINO=0 turns it off (measurements, comparisons). */
static int conv_wino_eligible(otl_kctx *k, const conv_state *s, const int64_t *dims)
{
    const char *e = getenv("OTL_CONV_WINO");
    const otl_rt *x = k->in[0], *w = k->in[1];
    if ((e && strcmp(e, "0") == 0) || !conv_any_layout() || conv_training(k) || s->kind != CONV_FWD || s->transposed ||
        s->g.nsp != 2 || s->group != 1 || x->dtype != OTL_DTYPE_FLOAT || x->numel == 0 || w->numel == 0)
        return 0;
    for (int i = 0; i < 2; i++)
        if (s->g.k[i] != 3 || s->g.s[i] != 1 || s->g.d[i] != 1 || s->g.pl[i] > 1 || s->pr_dnnl[i] > 1 ||
            s->pr_dnnl[i] != s->g.pr[i] || dims[2 + i] < 2)
            return 0;
    return x->dims[1] % 16 == 0 && dims[1] % 16 == 0;
}

/* A large-kernel first layer (a plain input with fewer than 16 channels, e.g. an image's 3, and a
 * kernel of at least 5x5: ResNet's 7x7 stem) writes nChw16c: oneDNN's direct kernel reads the
 * plain input as it is (no input reorder) and the Winograd convolutions after it read nChw16c (no
 * reorder there either), where the brgemm kernel would want the input and write the output
 * channels-last. Not for small first kernels (MobileNet's 3x3): the depthwise convolutions that
 * follow them got oneDNN's reference kernel on nChw16c with an `any` output layout (the blocked
 * chains below, conv_blk_eligible, give them nChw16c explicitly and cover MobileNet's first layer).
 * OTL_CONV_STEM=0 turns it off. */
static int conv_stem_eligible(otl_kctx *k, const conv_state *s, const int64_t *dims)
{
    const char *e = getenv("OTL_CONV_STEM");
    const otl_rt *x = k->in[0];
    return !(e && strcmp(e, "0") == 0) && conv_any_layout() && !conv_training(k) && s->kind == CONV_FWD && !s->transposed &&
           s->g.nsp == 2 && s->group == 1 && x->dtype == OTL_DTYPE_FLOAT && !x->blocked && x->numel > 0 &&
           k->in[1]->numel > 0 && x->dims[1] < 16 && dims[1] % 16 == 0 && s->g.k[0] >= 5 && s->g.k[1] >= 5;
}

/* A FusedConv marked out_blocked by graph/fuse.c (only convolutions and pooling read its output)
 * writes nChw16c too, reading its input as it comes: a chain of them runs in oneDNN's
 * channel-blocked layout from the first layer on (what ONNX Runtime's NCHWc transformer does), on
 * oneDNN's jit direct, jit_1x1 and jit_dw kernels, instead of channels-last brgemm kernels behind
 * an input reorder. mobilenet_v2 (batch 32, 1 thread, CPU time per forward on a busy machine, 5
 * alternating pairs): 173 ms against 204 ms on average (1-25% less per pair); the 1x1 layers at
 * 112x112 and 56x56 gain most. resnet18 runs the same kernels either way. The
 * output layout is given explicitly: with `any`, a depthwise convolution reading nChw16c got
 * oneDNN's reference kernel. When oneDNN has only its reference kernel for nChw16c, the default
 * layouts are used instead. OTL_CONV_BLK=0 turns it off. */
static int conv_blk_eligible(otl_kctx *k, const conv_state *s, const int64_t *dims)
{
    const char *e = getenv("OTL_CONV_BLK");
    const otl_rt *x = k->in[0];
    int64_t mark = 0;
    if ((e && strcmp(e, "0") == 0) || otl_attr_int(k, "out_blocked", 0, &mark) != OTL_OK || !mark)
        return 0;
    if (!conv_any_layout() || conv_training(k) || k->bf16 || s->kind != CONV_FWD || s->transposed || s->g.nsp != 2 ||
        x->dtype != OTL_DTYPE_FLOAT || x->numel == 0 || k->in[1]->numel == 0)
        return 0;
    if (!x->blocked) /* a plain input only for a first layer (oneDNN reads it as it is) */
        return x->dims[1] < 16;
    /* a blocked input must be nChw16c already (channels-last from a convolution outside the
       chain: the default layouts avoid a reorder there) */
    dnnl_memory_desc_t xm, want;
    dnnl_dims_t xd = {x->dims[0], x->dims[1], x->dims[2], x->dims[3]};
    return otl_rt_md(k, x, &xm) == OTL_OK &&
           dnnl_memory_desc_init_by_tag(&want, 4, xd, dnnl_f32, dnnl_nChw16c) == dnnl_success &&
           dnnl_memory_desc_equal(&xm, &want);
}

/* The forward primitive descriptor: Winograd or the stem layout where eligible and oneDNN
 * accepts them with the post-ops, else the direct algorithm in oneDNN's layout. */
static otl_status conv_make_pd(otl_kctx *k, conv_state *s, const int64_t *dims)
{
    int alt = conv_wino_eligible(k, s, dims)   ? 1
              : conv_stem_eligible(k, s, dims) ? 2
              : conv_blk_eligible(k, s, dims)  ? 3
                                               : 0;
    if (alt) {
        int z_mode = s->z_mode, ok = 0;
        s->wino = alt == 1;
        s->stem = alt == 2;
        s->blk = alt == 3;
        /* oneDNN's jit kernels on nChw16c read a full-shape Z with a binary post-op as fast as
           with a sum post-op, which needs Z copied into the output first (mobilenet_v2: ~2 ms
           of 87 per batch of 32); OTL_FUSEDCONV_Z=sum keeps the copy */
        if (s->blk && s->z_mode == Z_SUM && !fused_z_forced())
            s->z_mode = Z_BINARY;
        otl_status st = conv_make_pd_alg(k, s, dims, &ok);
        if (st || ok)
            return st;
        if (s->pd)
            dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
        s->wino = 0;
        s->stem = 0;
        s->blk = 0;
        s->z_mode = z_mode;
        s->epilogue = 0;
    }
    int z_mode = s->z_mode;
    otl_status st = conv_make_pd_alg(k, s, dims, NULL);
    /* a blocked input (e.g. a padded nChw16c one) for which oneDNN has only its reference kernel
       (a depthwise convolution over 24 channels: 10-100x slower): reorder it to oneDNN's choice */
    if (!st && s->pd && k->in[0]->blocked && conv_any_layout() && !k->bf16 && nn_pd_is_ref(s->pd)) {
        dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
        s->src_any = 1;
        s->z_mode = z_mode;
        s->epilogue = 0;
        st = conv_make_pd_alg(k, s, dims, NULL);
    }
    return st;
}

static otl_status conv_prepare(otl_kctx *k)
{
    conv_state *s = k->state;
    const otl_rt *x = k->in[0], *y = k->out[0];
    dnnl_memory_desc_t x_user, y_user, w_plain, b_md;
    otl_status st;
    if (!s->pd) { /* empty input: the epilogue may still read a blocked Z */
        if (s->z_mode == Z_NONE || !k->in[3]->blocked || y->numel == 0)
            return OTL_OK;
        s->z_mode = Z_EPILOGUE;
        dnnl_memory_desc_t z_user, z_plain;
        if ((st = otl_rt_md(k, k->in[3], &z_user)) || (st = otl_md_plain(k, k->in[3], &z_plain)) ||
            (st = nn_port_init(k, &s->z, &z_user, &z_plain, 0, &s->scratch_bytes)) ||
            (st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
        return OTL_OK;
    }
    if ((st = otl_rt_md(k, x, &x_user)) || (st = otl_rt_md(k, y, &y_user)) ||
        (st = weights_plain_md(k, s, k->in[1], &w_plain, 0)))
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
        if ((st = otl_dnnl_check(k, otl_reorder_pd_create(&rpd, &w_plain, k->eng->eng, wq_md, k->eng->eng, NULL),
                                 "weights reorder")))
            return st;
        st = otl_dnnl_primitive(k, rpd, &s->w_reorder, "weights reorder");
        dnnl_primitive_desc_destroy(rpd);
        if (st || (st = otl_dnnl_memory(k, wq_md, s->w_buf, &s->w_prim)))
            return st;
    } else {
        s->w_prim = s->w_user;
    }
    if (otl_has_in(k, 2) &&
        ((st = otl_md_plain(k, k->in[2], &b_md)) || (st = otl_dnnl_memory(k, &b_md, NULL, &s->b_mem))))
        return st;
    /* FusedConv's Z */
    if (s->z_mode != Z_NONE) {
        const otl_rt *z = k->in[3];
        dnnl_memory_desc_t z_user, z_plain;
        if ((st = z_md_for(k, z, y->rank, &z_user)))
            return st;
        if (s->z_mode == Z_SUM) {
            if ((st = otl_dnnl_memory(k, &z_user, NULL, &s->z_user)))
                return st;
            if (!dnnl_memory_desc_equal(&z_user, dst_md)) {
                dnnl_primitive_desc_t rpd;
                if ((st = otl_dnnl_check(k, otl_reorder_pd_create(&rpd, &z_user, k->eng->eng, dst_md, k->eng->eng, NULL),
                                         "residual reorder")))
                    return st;
                st = otl_dnnl_primitive(k, rpd, &s->z_reorder, "residual reorder");
                dnnl_primitive_desc_destroy(rpd);
                if (st || (st = otl_dnnl_memory(k, dst_md, NULL, &s->z_dst)))
                    return st;
            }
        } else if (s->z_mode == Z_BINARY) {
            const dnnl_memory_desc_t *zq = dnnl_primitive_desc_query_md(
                s->pd, dnnl_query_exec_arg_md, DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1);
            if (!zq || (st = nn_port_init(k, &s->z, &z_user, zq, 0, &s->scratch_bytes)))
                return st ? st : otl_kfail(k, OTL_ERR_INTERNAL, "no residual descriptor");
        } else if (z->blocked) { /* epilogue reads Z plain */
            if ((st = otl_md_plain(k, z, &z_plain)) || (st = nn_port_init(k, &s->z, &z_user, &z_plain, 0, &s->scratch_bytes)))
                return st;
        }
    }
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    /* const weights (initializers, frozen parameters in training): reorder once now. Trainable
     * parameters are fed as inputs (not const) and reordered on every forward. */
    if (s->w_reorder && k->in[1]->is_const) {
        dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, s->w_user}, {DNNL_ARG_TO, s->w_prim}};
        if ((st = otl_dnnl_run(k, s->w_reorder, 2, args)))
            return st;
        s->w_ready = 1;
    }
    return OTL_OK;
}

static otl_status conv_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    otl_status st;
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)))
        return st;
    if (otl_has_in(k, 2) && (st = otl_check_in(k, 2, floats)))
        return st;
    s->transposed = k->op->op_type[4] == 'T'; /* ConvTranspose */
    int64_t dims[OTL_MAX_RANK];
    if ((st = conv_geom(k, s, k->in[0], k->in[1], otl_has_in(k, 2) ? k->in[2] : NULL, dims)))
        return st;
    return conv_make_pd(k, s, dims);
}

/* FusedConv(X, W, [B], [Z]): Conv attributes plus activation / activation_params. Z must have
 * the output's shape or broadcast to it. */
static otl_status fused_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    otl_status st;
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)))
        return st;
    if (otl_has_in(k, 2) && (st = otl_check_in(k, 2, floats)))
        return st;
    if (otl_has_in(k, 3) && (st = otl_check_in(k, 3, floats)))
        return st;
    if (k->n_in > 4)
        return otl_kfail(k, OTL_ERR_INPUT, "FusedConv takes at most 4 inputs (X, W, B, Z), got %d", k->n_in);
    if ((st = fused_attrs(k, s)))
        return st;
    int64_t dims[OTL_MAX_RANK];
    if ((st = conv_geom(k, s, k->in[0], k->in[1], otl_has_in(k, 2) ? k->in[2] : NULL, dims)))
        return st;
    if (otl_has_in(k, 3)) {
        const otl_rt *z = k->in[3];
        int same = z->rank == k->in[0]->rank;
        if (z->rank > k->in[0]->rank)
            return otl_kfail(k, OTL_ERR_INPUT, "residual Z '%s' has rank %d, more than the output's %d", z->name, z->rank,
                             k->in[0]->rank);
        for (int i = 0; i < z->rank; i++) {
            int64_t o = dims[k->in[0]->rank - z->rank + i];
            if (z->dims[i] != o && z->dims[i] != 1)
                return otl_kfail(k, OTL_ERR_UNSUPPORTED,
                                 "residual Z '%s' does not broadcast to the convolution output (axis %d: %lld vs %lld)",
                                 z->name, i, (long long)z->dims[i], (long long)o);
            same &= z->dims[i] == o;
        }
        /* broadcast: oneDNN's per-channel and scalar binary post-ops are reliable; other
         * broadcasts (per sample, along a spatial axis) go to the C epilogue */
        int chan_or_scalar = 1, rank = k->in[0]->rank;
        for (int i = 0; i < z->rank; i++)
            chan_or_scalar &= z->dims[i] == 1 || rank - z->rank + i == 1;
        s->z_mode = same ? fused_z_pref() : chan_or_scalar ? Z_BINARY : Z_EPILOGUE;
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

/* FusedConv's C epilogue on a plain output: y = act(y + Z), Z (plain) broadcast from the right. */
static void conv_epilogue(const conv_state *s, const otl_rt *y, const float *z, const otl_rt *zr)
{
    float *out = y->data;
    int rank = y->rank;
    int64_t zs[OTL_MAX_RANK] = {0}, acc = 1;
    if (z)
        for (int i = rank - 1; i >= rank - zr->rank; i--) {
            int64_t d = zr->dims[i - (rank - zr->rank)];
            zs[i] = d == 1 ? 0 : acc;
            acc *= d;
        }
    int64_t inner = y->dims[rank - 1], rows = inner ? y->numel / inner : 0;
#pragma omp parallel for schedule(static) if (y->numel > 65536)
    for (int64_t r = 0; r < rows; r++) {
        int64_t zo = 0, rem = r;
        for (int i = rank - 2; i >= 0 && z; i--) {
            zo += (rem % y->dims[i]) * zs[i];
            rem /= y->dims[i];
        }
        float *row = out + r * inner;
        for (int64_t j = 0; j < inner; j++)
            row[j] = act_apply(s, row[j] + (z ? z[zo + j * zs[rank - 1]] : 0.0f));
    }
}

static otl_status conv_forward(otl_kctx *k)
{
    conv_state *s = k->state;
    if (k->out[0]->numel == 0)
        return OTL_OK;
    otl_status st = OTL_OK;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!s->pd) { /* empty input */
        conv_fill_bias(k);
    } else {
        if (s->w_reorder && !s->w_ready) { /* non-const or trainable weights: reorder on every run */
            dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, s->w_user}, {DNNL_ARG_TO, s->w_prim}};
            st = otl_dnnl_run(k, s->w_reorder, 2, args);
        } else if (!s->w_reorder) {
            dnnl_memory_set_data_handle(s->w_user, k->in[1]->data);
        }
        if (!st && !(st = nn_port_bind(k, &s->src, k->in[0]->data, scratch)) &&
            !(st = nn_port_bind(k, &s->dst, k->out[0]->data, scratch))) {
            dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_WEIGHTS, s->w_prim}, {DNNL_ARG_DST, s->dst.prim}};
            int nargs = 3;
            if (s->b_mem) {
                dnnl_memory_set_data_handle(s->b_mem, k->in[2]->data);
                args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->b_mem};
            }
            if (s->z_mode == Z_SUM) { /* dst starts as Z */
                void *dst_data;
                dnnl_memory_get_data_handle(s->dst.prim, &dst_data);
                if (s->z_reorder) {
                    dnnl_memory_set_data_handle(s->z_user, k->in[3]->data);
                    dnnl_memory_set_data_handle(s->z_dst, dst_data);
                    dnnl_exec_arg_t za[2] = {{DNNL_ARG_FROM, s->z_user}, {DNNL_ARG_TO, s->z_dst}};
                    st = otl_dnnl_run(k, s->z_reorder, 2, za);
                } else { /* on all threads: resnet18 copies ~100 MB of residuals per batch of 32 */
                    zcopy c = {dst_data, k->in[3]->data};
                    otl_parallel_range((int64_t)k->in[3]->nbytes, 1 << 20, zcopy_range, &c);
                }
            } else if (s->z_mode == Z_BINARY && !(st = nn_port_bind(k, &s->z, k->in[3]->data, scratch))) {
                args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, s->z.prim};
            }
            if (!st)
                st = otl_dnnl_run(k, s->prim, nargs, args);
            if (!st)
                st = nn_port_finish(k, &s->dst);
        }
    }
    if (!st && s->epilogue) {
        const otl_rt *z = s->z_mode == Z_EPILOGUE || (!s->pd && s->z_mode != Z_NONE) ? k->in[3] : NULL;
        const float *zd = z ? z->data : NULL;
        if (z && z->blocked) {
            if (!(st = nn_port_bind(k, &s->z, z->data, scratch)))
                zd = (const float *)((char *)scratch + s->z.scratch_off);
        }
        if (!st)
            conv_epilogue(s, k->out[0], zd, z);
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
    nn_port *ports[] = {&s->src, &s->dst, &s->z, &s->dy, &s->w, &s->dx, &s->x, &s->dw, &s->db};
    for (size_t i = 0; i < sizeof ports / sizeof *ports; i++)
        nn_port_free(ports[i]);
    if (s->w_reorder)
        dnnl_primitive_destroy(s->w_reorder);
    if (s->w_prim && s->w_prim != s->w_user)
        dnnl_memory_destroy(s->w_prim);
    dnnl_memory_t mems[] = {s->w_user, s->b_mem, s->z_user, s->z_dst};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (s->z_reorder)
        dnnl_primitive_destroy(s->z_reorder);
    free(s->w_buf);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

/* ---------------------------------------------------------------- backward kernels */

static otl_status check_dy(otl_kctx *k, const conv_state *s, int rank)
{
    const otl_rt *dy = k->in[0];
    int same = dy->rank == rank;
    for (int i = 0; same && i < rank; i++)
        same = dy->dims[i] == s->ydims[i];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "output gradient '%s' does not have the forward output's shape", dy->name);
    return OTL_OK;
}

/* Backward primitive choice over two attempts (inputs in their own layouts, then all layouts
 * left to oneDNN): keep s->pd unless it failed or is oneDNN's reference kernel while another
 * attempt remains; a reference pd is kept in *fallback meanwhile. Returns 1 when done (s->pd is
 * the choice, or NULL with r the error). */
static int conv_bwd_keep(conv_state *s, dnnl_primitive_desc_t *fallback, dnnl_status_t r, int attempt, int can_retry)
{
    int last = attempt == 1 || !can_retry;
    if (r == dnnl_success && (!nn_pd_is_ref(s->pd) || last)) {
        if (*fallback && nn_pd_is_ref(s->pd)) { /* both reference kernels: the first will do */
            dnnl_primitive_desc_destroy(s->pd);
            s->pd = *fallback;
        } else if (*fallback) {
            dnnl_primitive_desc_destroy(*fallback);
        }
        *fallback = NULL;
        return 1;
    }
    if (r == dnnl_success) { /* reference kernel: try the other layouts */
        *fallback = s->pd;
        s->pd = NULL;
        return 0;
    }
    if (last) {
        s->pd = *fallback;
        *fallback = NULL;
        return 1;
    }
    return 0;
}

/* Backward data: (dY, W, Shape(X)) -> dX, in the layout oneDNN picks. */
static otl_status bwd_data_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    s->kind = CONV_BWD_DATA;
    s->transposed = strcmp(k->op->op_type, "ConvTransposeGradData") == 0;
    otl_status st;
    otl_rt x;
    int64_t ydims[OTL_MAX_RANK];
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)) || (st = otl_shape_rt(k, 2, OTL_DTYPE_FLOAT, &x)) ||
        (st = conv_geom(k, s, &x, k->in[1], NULL, ydims)) || (st = check_dy(k, s, x.rank)))
        return st;
    const otl_rt *dy = k->in[0];
    if (x.numel == 0 || dy->numel == 0 || k->in[1]->numel == 0)
        return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, x.rank, x.dims);
    int any = conv_any_layout();
    dnnl_memory_desc_t dx_md, w_md, dy_md, hx_md;
    dnnl_dims_t strides, dil, pl, pr;
    conv_params(s, strides, dil, pl, pr);
    dnnl_primitive_desc_t fallback = NULL;
    dnnl_status_t r = dnnl_success;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* first dY in its own layout; then whatever the primitive prefers (bf16: always) */
        if ((st = nn_md_dst(k, x.rank, x.dims, any, &dx_md)) || (st = weights_plain_md(k, s, k->in[1], &w_md, 1)) ||
            (st = k->bf16 ? bf16_md(k, dy->rank, dy->dims, any, &dy_md)
                          : attempt ? nn_md_dst(k, dy->rank, dy->dims, any, &dy_md) : nn_md_src(k, dy, any, &dy_md)))
            return st;
        hx_md = dx_md;
        if (k->bf16) { /* the forward hint reads bf16 X; dX itself stays float32 */
            w_md.data_type = dnnl_bf16;
            if ((st = bf16_md(k, x.rank, x.dims, any, &hx_md)))
                return st;
        }
        dnnl_primitive_desc_t hint;
        r = conv_fwd_pd(k, s, dnnl_forward_training, &hx_md, &w_md, NULL, &dy_md, NULL, &hint);
        if (r == dnnl_success) {
            if (s->transposed) {
                dnnl_deconvolution_desc_t d;
                r = dnnl_dilated_deconvolution_backward_data_desc_init(&d, dnnl_deconvolution_direct, &dx_md, &w_md, &dy_md,
                                                                       strides, dil, pl, pr);
                if (r == dnnl_success)
                    r = otl_pd_create(&s->pd, &d, NULL, k->eng->eng, hint);
            } else {
                dnnl_convolution_desc_t d;
                r = dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &dx_md, &w_md, &dy_md,
                                                                     strides, dil, pl, pr);
                if (r == dnnl_success)
                    r = otl_pd_create(&s->pd, &d, NULL, k->eng->eng, hint);
            }
            dnnl_primitive_desc_destroy(hint);
        }
        if (r != dnnl_success)
            s->pd = NULL;
        if (conv_bwd_keep(s, &fallback, r, attempt, dy->blocked && !k->bf16))
            break;
    }
    if (!s->pd)
        return otl_dnnl_check(k, r, "convolution backward data");
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, x.rank, x.dims,
                         dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_src_md, 0));
}

static otl_status bwd_data_prepare(otl_kctx *k)
{
    conv_state *s = k->state;
    if (!s->pd)
        return OTL_OK;
    dnnl_memory_desc_t dy_user, dx_user, w_plain;
    otl_status st;
    if ((st = otl_rt_md(k, k->in[0], &dy_user)) || (st = otl_rt_md(k, k->out[0], &dx_user)) ||
        (st = weights_plain_md(k, s, k->in[1], &w_plain, 0)) || (st = nn_make_prim(k, s->pd, &s->prim, "convolution backward data")) ||
        (st = nn_port_init(k, &s->dy, &dy_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_dst_md, 0), 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->w, &w_plain, dnnl_primitive_desc_query_md(s->pd, dnnl_query_weights_md, 0), 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dx, &dx_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_src_md, 0), 1, &s->scratch_bytes)))
        return st;
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status bwd_data_forward(otl_kctx *k)
{
    conv_state *s = k->state;
    if (!s->pd) { /* empty: no contribution */
        memset(k->out[0]->data, 0, k->out[0]->nbytes);
        return OTL_OK;
    }
    otl_status st;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!(st = nn_port_bind(k, &s->dy, k->in[0]->data, scratch)) && !(st = nn_port_bind(k, &s->w, k->in[1]->data, scratch)) &&
        !(st = nn_port_bind(k, &s->dx, k->out[0]->data, scratch))) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->dy.prim}, {DNNL_ARG_WEIGHTS, s->w.prim}, {DNNL_ARG_DIFF_SRC, s->dx.prim}};
        st = otl_dnnl_run(k, s->prim, 3, args);
        if (!st)
            st = nn_port_finish(k, &s->dx);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

/* Backward weights: (dY, X, Shape(W)) -> dW, [dB], both plain. */
static otl_status bwd_weights_infer(otl_kctx *k)
{
    conv_state *s = conv_state_new(k);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    s->kind = CONV_BWD_WEIGHTS;
    s->transposed = strcmp(k->op->op_type, "ConvTransposeGradWeights") == 0;
    otl_status st;
    otl_rt w;
    int64_t ydims[OTL_MAX_RANK];
    if ((st = otl_check_in(k, 0, floats)) || (st = otl_check_in(k, 1, floats)) || (st = otl_shape_rt(k, 2, OTL_DTYPE_FLOAT, &w)) ||
        (st = conv_geom(k, s, k->in[1], &w, NULL, ydims)) || (st = check_dy(k, s, w.rank)))
        return st;
    if (!otl_has_out(k, 0))
        return otl_kfail(k, OTL_ERR_INPUT, "the weights gradient output is required");
    if ((st = otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, w.rank, w.dims)))
        return st;
    int64_t m = ydims[1];
    if (otl_has_out(k, 1) && (st = otl_rt_set(k, k->out[1], OTL_DTYPE_FLOAT, 1, &m)))
        return st;
    const otl_rt *x = k->in[1], *dy = k->in[0];
    if (x->numel == 0 || dy->numel == 0 || w.numel == 0)
        return OTL_OK;
    int any = conv_any_layout();
    dnnl_memory_desc_t x_md, dw_md, db_md, dy_md, hw_md;
    dnnl_dims_t strides, dil, pl, pr;
    conv_params(s, strides, dil, pl, pr);
    dnnl_primitive_desc_t fallback = NULL;
    dnnl_status_t r = dnnl_success;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* first X and dY in their own layouts; then whatever the primitive prefers (bf16: always) */
        if ((st = k->bf16 ? bf16_md(k, x->rank, x->dims, any, &x_md)
                          : attempt ? nn_md_dst(k, x->rank, x->dims, any, &x_md) : nn_md_src(k, x, any, &x_md)) ||
            (st = weights_plain_md(k, s, &w, &dw_md, 1)) ||
            (st = k->bf16 ? bf16_md(k, dy->rank, dy->dims, any, &dy_md)
                          : attempt ? nn_md_dst(k, dy->rank, dy->dims, any, &dy_md) : nn_md_src(k, dy, any, &dy_md)) ||
            (st = nn_md_dense(k, 1, &m, dnnl_f32, &db_md)))
            return st;
        const dnnl_memory_desc_t *b = otl_has_out(k, 1) ? &db_md : NULL;
        hw_md = dw_md;
        if (k->bf16) /* the forward hint reads bf16 W; dW itself stays float32 */
            hw_md.data_type = dnnl_bf16;
        dnnl_primitive_desc_t hint;
        r = conv_fwd_pd(k, s, dnnl_forward_training, &x_md, &hw_md, b, &dy_md, NULL, &hint);
        if (r == dnnl_success) {
            if (s->transposed) {
                dnnl_deconvolution_desc_t d;
                r = dnnl_dilated_deconvolution_backward_weights_desc_init(&d, dnnl_deconvolution_direct, &x_md, &dw_md, b,
                                                                          &dy_md, strides, dil, pl, pr);
                if (r == dnnl_success)
                    r = otl_pd_create(&s->pd, &d, NULL, k->eng->eng, hint);
            } else {
                dnnl_convolution_desc_t d;
                r = dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &x_md, &dw_md, b,
                                                                        &dy_md, strides, dil, pl, pr);
                if (r == dnnl_success)
                    r = otl_pd_create(&s->pd, &d, NULL, k->eng->eng, hint);
            }
            dnnl_primitive_desc_destroy(hint);
        }
        if (r != dnnl_success)
            s->pd = NULL;
        if (conv_bwd_keep(s, &fallback, r, attempt, (dy->blocked || x->blocked) && !k->bf16))
            break;
    }
    return s->pd ? OTL_OK : otl_dnnl_check(k, r, "convolution backward weights");
}

static otl_status bwd_weights_prepare(otl_kctx *k)
{
    conv_state *s = k->state;
    if (!s->pd)
        return OTL_OK;
    otl_rt w;
    dnnl_memory_desc_t x_user, dy_user, w_plain, b_plain;
    otl_status st;
    if ((st = otl_shape_rt(k, 2, OTL_DTYPE_FLOAT, &w)) || (st = otl_rt_md(k, k->in[1], &x_user)) || (st = otl_rt_md(k, k->in[0], &dy_user)) ||
        (st = weights_plain_md(k, s, &w, &w_plain, 0)) || (st = nn_make_prim(k, s->pd, &s->prim, "convolution backward weights")) ||
        (st = nn_port_init(k, &s->x, &x_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0), 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dy, &dy_user, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_dst_md, 0), 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dw, &w_plain, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_weights_md, 0), 1, &s->scratch_bytes)))
        return st;
    if (otl_has_out(k, 1) &&
        ((st = otl_md_plain(k, k->out[1], &b_plain)) ||
         (st = nn_port_init(k, &s->db, &b_plain, dnnl_primitive_desc_query_md(s->pd, dnnl_query_diff_weights_md, 1), 1, &s->scratch_bytes))))
        return st;
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

static otl_status bwd_weights_forward(otl_kctx *k)
{
    conv_state *s = k->state;
    if (!s->pd) {
        memset(k->out[0]->data, 0, k->out[0]->nbytes);
        if (otl_has_out(k, 1))
            memset(k->out[1]->data, 0, k->out[1]->nbytes);
        return OTL_OK;
    }
    otl_status st;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    int has_b = otl_has_out(k, 1);
    if (!(st = nn_port_bind(k, &s->x, k->in[1]->data, scratch)) && !(st = nn_port_bind(k, &s->dy, k->in[0]->data, scratch)) &&
        !(st = nn_port_bind(k, &s->dw, k->out[0]->data, scratch)) &&
        !(st = has_b ? nn_port_bind(k, &s->db, k->out[1]->data, scratch) : OTL_OK)) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->x.prim}, {DNNL_ARG_DIFF_DST, s->dy.prim},
                                   {DNNL_ARG_DIFF_WEIGHTS, s->dw.prim}, {DNNL_ARG_DIFF_BIAS, s->db.prim}};
        st = otl_dnnl_run(k, s->prim, has_b ? 4 : 3, args);
        if (!st)
            st = nn_port_finish(k, &s->dw);
        if (!st && has_b)
            st = nn_port_finish(k, &s->db);
    }
    if (scratch)
        nn_scratch_unlock();
    return st;
}

/* ConvGradBias(dY) -> dB (M): sum of dY over the batch and spatial axes (plain dY). */
static otl_status bwd_bias_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, floats);
    if (st)
        return st;
    const otl_rt *dy = k->in[0];
    if (dy->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "output gradient '%s' must have rank >= 2", dy->name);
    return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, 1, &dy->dims[1]);
}

static otl_status bwd_bias_forward(otl_kctx *k)
{
    const otl_rt *dy = k->in[0];
    const float *g = dy->data;
    float *db = k->out[0]->data;
    int64_t n = dy->dims[0], m = dy->dims[1], sp = n && m ? dy->numel / (n * m) : 0;
#pragma omp parallel for schedule(static) if (dy->numel > 65536)
    for (int64_t c = 0; c < m; c++) {
        double acc = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < sp; j++)
                acc += g[(i * m + c) * sp + j];
        db[c] = (float)acc;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- gradient rule */

/* dX = ConvGradData(dY, W, Shape(X)); dW, dB = ConvGradWeights(dY, X, Shape(W)) (dB from the
 * same primitive when both are needed); dB alone = ConvGradBias(dY). X is kept only for dW. */
static otl_status conv_grad(otl_gctx *c)
{
    int tr = strcmp(c->node->op_type, "ConvTranspose") == 0;
    const char *dy = c->dy[0], *x = c->node->inputs[0], *w = c->node->inputs[1];
    int need_b = c->n_in > 2 && *c->node->inputs[2] && c->need[2];
    otl_status st;
    otl_node *n;
    if (!dy)
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s': no output gradient", c->file, c->node->name);
    if (c->need[0]) {
        const char *sx = otl_gemit1(c, "", "Shape", 1, &x, NULL);
        const char *in[3] = {dy, w, sx};
        const char *dx = sx ? otl_gemit1(c, OTL_GRAD_DOMAIN, tr ? "ConvTransposeGradData" : "ConvGradData", 3, in, &n) : NULL;
        if (dx && (st = otl_gattr_copy(c, n)))
            return st;
        otl_grad_set(c, 0, dx);
    }
    if (c->need[1]) {
        const char *sw = otl_gemit1(c, "", "Shape", 1, &w, NULL);
        const char *in[3] = {dy, x, sw};
        const char *out[2] = {otl_gname(c, w), need_b ? otl_gname(c, c->node->inputs[2]) : ""};
        n = sw ? otl_gemit(c, OTL_GRAD_DOMAIN, tr ? "ConvTransposeGradWeights" : "ConvGradWeights", 3, in, need_b ? 2 : 1, out)
               : NULL;
        if (n && (st = otl_gattr_copy(c, n)))
            return st;
        otl_grad_set(c, 1, n ? out[0] : NULL);
        if (need_b)
            otl_grad_set(c, 2, n ? out[1] : NULL);
    } else if (need_b) {
        otl_grad_set(c, 2, otl_gemit1(c, OTL_GRAD_DOMAIN, "ConvGradBias", 1, &dy, NULL));
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- ops */

const otl_op otl_op_Conv = {
    .op_type = "Conv", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = conv_infer, .prepare = conv_prepare, .forward = conv_forward, .release = conv_release,
    .grad_inputs = 7, .grad = conv_grad,
};

const otl_op otl_op_ConvTranspose = {
    .op_type = "ConvTranspose", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = conv_infer, .prepare = conv_prepare, .forward = conv_forward, .release = conv_release,
    .grad_inputs = 7, .grad = conv_grad,
};

/* Made by the graph rewrites of graph/fuse.c (inference, and the frozen parts of training graphs). */
const otl_op otl_op_FusedConv = {
    .op_type = "FusedConv", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = fused_infer, .prepare = conv_prepare, .forward = conv_forward, .release = conv_release,
};

const otl_op otl_op_ConvGradData = {
    .op_type = "ConvGradData", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bwd_data_infer, .prepare = bwd_data_prepare, .forward = bwd_data_forward, .release = conv_release,
};

const otl_op otl_op_ConvTransposeGradData = {
    .op_type = "ConvTransposeGradData", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bwd_data_infer, .prepare = bwd_data_prepare, .forward = bwd_data_forward, .release = conv_release,
};

const otl_op otl_op_ConvGradWeights = {
    .op_type = "ConvGradWeights", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bwd_weights_infer, .prepare = bwd_weights_prepare, .forward = bwd_weights_forward, .release = conv_release,
};

const otl_op otl_op_ConvTransposeGradWeights = {
    .op_type = "ConvTransposeGradWeights", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bwd_weights_infer, .prepare = bwd_weights_prepare, .forward = bwd_weights_forward, .release = conv_release,
};

const otl_op otl_op_ConvGradBias = {
    .op_type = "ConvGradBias", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = bwd_bias_infer, .forward = bwd_bias_forward,
};
