/* batchnorm.c - BatchNormalization (opsets 6-15): inference with the running statistics, or
 * training with batch statistics and the optional running-statistics outputs updated with
 * momentum; and its backward kernel BatchNormalizationGrad. float32 on oneDNN (any layout),
 * other dtypes (double, float16, mixed at opset 15) in plain C (forward only).
 *
 * Which statistics: in a training session (k->training) batch statistics when k->bn_training,
 * the running ones otherwise (frozen BN: an affine per-channel op); in an inference session
 * batch statistics only with training_mode=1 (opset >= 14). Running statistics (outputs 1, 2,
 * at every opset): running = momentum * running + (1 - momentum) * batch (ONNX momentum m is
 * PyTorch's 1 - p); in a training session the batch variance in that update is the unbiased one
 * (PyTorch), elsewhere the biased one (the ONNX reference). Frozen: the outputs pass the inputs
 * through.
 *
 * Saved statistics (outputs 3, 4; at opset >= 14 an extension of ours): the statistics this
 * run normalized with, i.e. the batch mean and biased variance, or the running ones when frozen.
 *
 * Backward: BatchNormalizationGrad(dY, X, scale, mean, var, [saved_mean, saved_var]) -> dX,
 * dScale, dB on oneDNN's batch normalization backward (use_global_stats when frozen). With
 * batch statistics it takes them from the forward's saved outputs, which the gradient rule adds
 * to the forward node when absent; without them (a hand-made graph) it recomputes them from X
 * (a forward_training pass into scratch).
 * Differentiable inputs: X, scale, B.
 *
 * Training-graph rewrites (graph/fuse.c): onnx_tl.BatchNormalizationRelu is BatchNormalization
 * followed by Relu in one oneDNN primitive (fuse_norm_relu) with the ReLU mask as output 5, which
 * BatchNormalizationGrad then takes as input 7 (its dY is then the Relu output's gradient);
 * onnx_tl.BatchNormalizationRecompute recomputes a normalized (+ Relu/Clip) output in the backward
 * from the saved statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/nn_common.h"
#include "src/util.h"

typedef struct bn_state {
    float epsilon, momentum;
    int training;                     /* batch statistics */
    int unbiased;                     /* running variance updated with the unbiased batch variance */
    int64_t c, spatial;               /* channels; elements per (n, c) */
    int64_t count;                    /* elements per channel (N * spatial) */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    nn_port src, dst;
    dnnl_memory_t mean, var, scale, shift;
    float *batch_mean, *batch_var;    /* (C) training, oneDNN: this batch's statistics (biased var) */
    double *stat_mean, *stat_var;     /* (C) training: the same in double (C path computes these) */
    size_t scratch_bytes;
    int reserved;
    int relu;                         /* BatchNormalizationRelu: ReLU fused, workspace in output 5 */
    dnnl_memory_t ws;
    int recompute;                    /* BatchNormalizationRecompute: given statistics, an activation */
    int act_relu, act_clip;           /* its activation: ReLU fused in oneDNN, or Clip(lo, hi) after it */
    float lo, hi;
} bn_state;

enum { BN_PLAIN, BN_RELU, BN_RECOMPUTE };

static const int float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

static int bn_all_f32(const otl_kctx *k)
{
    for (int i = 0; i < 5; i++)
        if (k->in[i]->dtype != OTL_DTYPE_FLOAT)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- shape inference */

/* Batch or running statistics (see the file comment). */
static otl_status bn_mode(otl_kctx *k, bn_state *s)
{
    int64_t v = 0;
    otl_status st;
    if (k->opset >= 14 && (st = otl_attr_int(k, "training_mode", 0, &v)))
        return st;
    s->training = k->training ? k->bn_training : v != 0;
    s->unbiased = k->training;
    return OTL_OK;
}

static otl_status bn_infer_common(otl_kctx *k, int kind)
{
    bn_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int relu = kind == BN_RELU;
    s->relu = relu;
    s->recompute = kind == BN_RECOMPUTE;
    otl_status st;
    for (int i = 0; i < 5; i++)
        if ((st = otl_check_in(k, i, float_types)))
            return st;
    const otl_rt *x = k->in[0];
    if (x->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 2 (N, C, ...), got %d", x->name, x->rank);
    s->c = x->dims[1];
    s->spatial = 1;
    for (int i = 2; i < x->rank; i++)
        s->spatial *= x->dims[i];
    for (int i = 1; i < 5; i++)
        if (k->in[i]->rank != 1 || k->in[i]->dims[0] != s->c)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must have shape (%lld)", i, k->in[i]->name, (long long)s->c);
    if (k->opset < 15)
        for (int i = 1; i < 5; i++)
            if (k->in[i]->dtype != x->dtype)
                return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must have X's dtype before opset 15", i, k->in[i]->name);
    if (k->opset >= 15 && (k->in[2]->dtype != k->in[1]->dtype || k->in[4]->dtype != k->in[3]->dtype))
        return otl_kfail(k, OTL_ERR_INPUT, "scale/B and mean/var must share a dtype");
    if ((st = otl_attr_float(k, "epsilon", 1e-5f, &s->epsilon)) || (st = otl_attr_float(k, "momentum", 0.9f, &s->momentum)))
        return st;
    int64_t v;
    if (k->opset < 9) {
        if ((st = otl_attr_int(k, "spatial", 1, &v)))
            return st;
        if (v != 1)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "spatial=0 (per-activation statistics) is not supported");
    }
    if ((st = bn_mode(k, s)))
        return st;
    if (s->recompute) {
        const char *act;
        s->training = 0;
        if ((st = otl_attr_str(k, "activation", "", &act)) || (st = otl_attr_float(k, "min", 0.0f, &s->lo)) ||
            (st = otl_attr_float(k, "max", 0.0f, &s->hi)))
            return st;
        s->act_relu = strcmp(act, "Relu") == 0;
        s->act_clip = strcmp(act, "Clip") == 0;
        if ((!s->act_relu && !s->act_clip && *act) || (s->act_clip && !(s->lo <= 0.0f && s->hi >= 0.0f)))
            return otl_kfail(k, OTL_ERR_INPUT, "activation '%s' is not Relu or Clip with min <= 0 <= max", act);
        if (k->n_out != 1 || !bn_all_f32(k) || (x->rank > 5 && !x->blocked))
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "recomputation needs float32 data of rank <= 5 and one output");
    }
    s->count = x->dims[0] * s->spatial;
    /* outputs 3, 4 (saved statistics) exist up to opset 9; later opsets take them as an
     * extension that training graphs use to hand the batch statistics to the backward */
    for (int i = relu ? 6 : 5; i < k->n_out; i++)
        if (otl_has_out(k, i))
            return otl_kfail(k, OTL_ERR_INPUT, "BatchNormalization has at most 5 outputs");
    /* running statistics (1, 2) have the dtype of input_mean; saved ones (3, 4) of X */
    for (int i = 1; i < k->n_out && i < 5; i++)
        if (otl_has_out(k, i) && (st = otl_rt_set(k, k->out[i], i < 3 ? k->in[3]->dtype : x->dtype, 1, &s->c)))
            return st;
    if (s->training) {
        s->batch_mean = calloc((size_t)s->c + 1, sizeof *s->batch_mean);
        s->batch_var = calloc((size_t)s->c + 1, sizeof *s->batch_var);
        s->stat_mean = calloc((size_t)s->c + 1, sizeof *s->stat_mean);
        s->stat_var = calloc((size_t)s->c + 1, sizeof *s->stat_var);
        if (!s->batch_mean || !s->batch_var || !s->stat_mean || !s->stat_var)
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    }
    if (relu && (!bn_all_f32(k) || (x->rank > 5 && !x->blocked) || !k->training))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "the fused ReLU needs float32 data of rank <= 5 in a training session");
    if (relu && x->numel == 0) {
        int64_t none = 0;
        if (otl_has_out(k, 5) && (st = otl_rt_set(k, k->out[5], OTL_DTYPE_UINT8, 1, &none)))
            return st;
    }
    if (!bn_all_f32(k) || x->numel == 0)
        return otl_rt_set(k, k->out[0], x->dtype, x->rank, x->dims);

    /* oneDNN: the data keeps its layout; ranks it does not take are viewed as (N, C, S) */
    dnnl_memory_desc_t x_md;
    if (x->rank <= 5 || x->blocked) {
        if ((st = nn_md_src(k, x, 0, &x_md)))
            return st;
    } else {
        int64_t d3[3] = {x->dims[0], s->c, s->spatial};
        if ((st = nn_md_dense(k, 3, d3, dnnl_f32, &x_md)))
            return st;
    }
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (s->training ? 0 : dnnl_use_global_stats) |
                     (relu || s->act_relu ? dnnl_fuse_norm_relu : 0);
    dnnl_batch_normalization_desc_t d;
    if ((st = otl_dnnl_check(k, dnnl_batch_normalization_forward_desc_init(
                                    &d, s->training || relu ? dnnl_forward_training : dnnl_forward_inference, &x_md,
                                    s->epsilon, flags),
                             "batch normalization")) ||
        (st = nn_make_pd(k, &d, NULL, &s->pd, "batch normalization")))
        return st;
    if (relu) { /* the ReLU mask the backward applies, as opaque bytes */
        int64_t ws = (int64_t)dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(s->pd, dnnl_query_workspace_md, 0));
        if (!otl_has_out(k, 5) || ws <= 0)
            return otl_kfail(k, OTL_ERR_INTERNAL, "the fused ReLU has no workspace");
        if ((st = otl_rt_set(k, k->out[5], OTL_DTYPE_UINT8, 1, &ws)))
            return st;
    }
    if (x->rank > 5 && !x->blocked)
        return otl_rt_set(k, k->out[0], x->dtype, x->rank, x->dims);
    return otl_rt_set_md(k, k->out[0], x->dtype, x->rank, x->dims, dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0));
}

static otl_status bn_infer(otl_kctx *k)
{
    return bn_infer_common(k, BN_PLAIN);
}

/* onnx_tl.BatchNormalizationRelu: Relu(BatchNormalization(...)) as one oneDNN primitive
 * (fuse_norm_relu), made by graph/fuse.c in training sessions only. Inputs, attributes and
 * outputs 0-4 as BatchNormalization's (output 0 is the ReLU's), output 5 the ReLU mask (opaque
 * bytes) that BatchNormalizationGrad takes as input 7. Attributes are read with opset 15
 * semantics (the fusion skips the spatial attribute of opsets < 9). */
static otl_status bn_relu_infer(otl_kctx *k)
{
    k->opset = 15;
    return bn_infer_common(k, BN_RELU);
}

/* onnx_tl.BatchNormalizationRecompute(X, scale, B, mean, var) -> Y: the output of a training
 * BatchNormalization (+ its Relu or Clip) computed again in the backward from the statistics it
 * saved, so that the forward's output need not stay alive until then (graph/fuse.c). Attributes:
 * epsilon, activation ("Relu", "Clip" or ""), min and max (Clip, min <= 0 <= max so that a
 * blocked layout's zero padding stays zero). float32, rank <= 5 or blocked. */
static otl_status bn_recompute_infer(otl_kctx *k)
{
    k->opset = 15;
    return bn_infer_common(k, BN_RECOMPUTE);
}

/* ---------------------------------------------------------------- forward */

static otl_status bn_prepare(otl_kctx *k)
{
    bn_state *s = k->state;
    if (!s->pd)
        return OTL_OK;
    otl_status st;
    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(s->pd, dnnl_query_dst_md, 0);
    dnnl_memory_desc_t c_md;
    if ((st = nn_md_dense(k, 1, &s->c, dnnl_f32, &c_md)) || (st = nn_make_prim(k, s->pd, &s->prim, "batch normalization")))
        return st;
    /* a plain rank > 5 value is viewed as (N, C, S): same bytes, no reorder */
    dnnl_memory_desc_t x_user = *src_md, y_user = *dst_md;
    if (k->in[0]->rank <= 5 || k->in[0]->blocked) {
        if ((st = otl_rt_md(k, k->in[0], &x_user)) || (st = otl_rt_md(k, k->out[0], &y_user)))
            return st;
    }
    if ((st = nn_port_init(k, &s->src, &x_user, src_md, 0, &s->scratch_bytes)) ||
        (st = nn_port_init(k, &s->dst, &y_user, dst_md, 1, &s->scratch_bytes)) ||
        (st = otl_dnnl_memory(k, &c_md, NULL, &s->mean)) || (st = otl_dnnl_memory(k, &c_md, NULL, &s->var)) ||
        (st = otl_dnnl_memory(k, &c_md, NULL, &s->scale)) || (st = otl_dnnl_memory(k, &c_md, NULL, &s->shift)))
        return st;
    if (s->relu && (st = otl_dnnl_memory(k, dnnl_primitive_desc_query_md(s->pd, dnnl_query_workspace_md, 0), NULL, &s->ws)))
        return st;
    if (s->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
            return st;
        s->reserved = 1;
    }
    return OTL_OK;
}

/* Plain C for any float dtype mix. y: like x (N, C, S); stats in double. */
static void bn_forward_ref(bn_state *s, otl_kctx *k)
{
    const otl_rt *x = k->in[0], *y = k->out[0];
    int64_t n = x->dims[0], c = s->c, sp = s->spatial;
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (int64_t ch = 0; ch < c; ch++) {
        double mean, var;
        if (s->training) {
            double sum = 0, sq = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < sp; j++)
                    sum += otl_get_f(x->data, x->dtype, (i * c + ch) * sp + j);
            double cnt = (double)(n * sp);
            mean = cnt > 0 ? sum / cnt : 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < sp; j++) {
                    double dlt = otl_get_f(x->data, x->dtype, (i * c + ch) * sp + j) - mean;
                    sq += dlt * dlt;
                }
            var = cnt > 0 ? sq / cnt : 0;
            s->stat_mean[ch] = mean;
            s->stat_var[ch] = var;
        } else {
            mean = otl_get_f(k->in[3]->data, k->in[3]->dtype, ch);
            var = otl_get_f(k->in[4]->data, k->in[4]->dtype, ch);
        }
        double a = otl_get_f(k->in[1]->data, k->in[1]->dtype, ch) / sqrt(var + (double)s->epsilon);
        double b = otl_get_f(k->in[2]->data, k->in[2]->dtype, ch) - mean * a;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < sp; j++) {
                int64_t e = (i * c + ch) * sp + j;
                otl_set_f(y->data, y->dtype, e, otl_get_f(x->data, x->dtype, e) * a + b);
            }
    }
}

/* Optional outputs: running statistics (1, 2) and, before opset 14, the batch statistics (3, 4).
 * Inference passes the given statistics through. */
static void bn_stat_outputs(bn_state *s, otl_kctx *k)
{
    const otl_rt *m = k->in[3], *v = k->in[4];
    double mom = s->momentum;
    for (int64_t ch = 0; ch < s->c; ch++) {
        double rm = otl_get_f(m->data, m->dtype, ch), rv = otl_get_f(v->data, v->dtype, ch);
        double bm = s->training ? s->stat_mean[ch] : rm, bv = s->training ? s->stat_var[ch] : rv;
        double uv = s->unbiased && s->count > 1 ? bv * (double)s->count / (double)(s->count - 1) : bv;
        if (otl_has_out(k, 1))
            otl_set_f(k->out[1]->data, k->out[1]->dtype, ch, s->training ? rm * mom + bm * (1 - mom) : rm);
        if (otl_has_out(k, 2))
            otl_set_f(k->out[2]->data, k->out[2]->dtype, ch, s->training ? rv * mom + uv * (1 - mom) : rv);
        if (otl_has_out(k, 3))
            otl_set_f(k->out[3]->data, k->out[3]->dtype, ch, bm);
        if (otl_has_out(k, 4))
            otl_set_f(k->out[4]->data, k->out[4]->dtype, ch, bv);
    }
}

static otl_status bn_forward(otl_kctx *k)
{
    bn_state *s = k->state;
    const otl_rt *x = k->in[0];
    if (x->numel == 0) {
        if (s->training)
            for (int64_t ch = 0; ch < s->c; ch++) { /* no elements: statistics of nothing */
                s->stat_mean[ch] = 0;
                s->stat_var[ch] = 0;
            }
        bn_stat_outputs(s, k);
        return OTL_OK;
    }
    if (!s->pd) {
        bn_forward_ref(s, k);
        bn_stat_outputs(s, k);
        return OTL_OK;
    }
    otl_status st;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    if (!(st = nn_port_bind(k, &s->src, x->data, scratch)) && !(st = nn_port_bind(k, &s->dst, k->out[0]->data, scratch))) {
        dnnl_memory_set_data_handle(s->scale, k->in[1]->data);
        dnnl_memory_set_data_handle(s->shift, k->in[2]->data);
        dnnl_memory_set_data_handle(s->mean, s->training ? (void *)s->batch_mean : k->in[3]->data);
        dnnl_memory_set_data_handle(s->var, s->training ? (void *)s->batch_var : k->in[4]->data);
        dnnl_exec_arg_t args[7] = {{DNNL_ARG_SRC, s->src.prim}, {DNNL_ARG_DST, s->dst.prim}, {DNNL_ARG_SCALE, s->scale},
                                   {DNNL_ARG_SHIFT, s->shift},  {DNNL_ARG_MEAN, s->mean},    {DNNL_ARG_VARIANCE, s->var},
                                   {DNNL_ARG_WORKSPACE, s->ws}};
        if (s->ws)
            dnnl_memory_set_data_handle(s->ws, k->out[5]->data);
        st = otl_dnnl_run(k, s->prim, s->ws ? 7 : 6, args);
        if (!st)
            st = nn_port_finish(k, &s->dst);
    }
    if (scratch)
        nn_scratch_unlock();
    if (st)
        return st;
    if (s->act_clip) { /* elementwise: any layout (padding is 0 and stays 0) */
        float *y = k->out[0]->data, lo = s->lo, hi = s->hi;
        int64_t n = (int64_t)(k->out[0]->nbytes / sizeof *y);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++)
            y[i] = y[i] < lo ? lo : (y[i] > hi ? hi : y[i]);
    }
    if (s->recompute)
        return OTL_OK;
    for (int64_t ch = 0; s->training && ch < s->c; ch++) {
        s->stat_mean[ch] = s->batch_mean[ch];
        s->stat_var[ch] = s->batch_var[ch];
    }
    bn_stat_outputs(s, k);
    return st;
}

static void bn_release(otl_kctx *k)
{
    bn_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->pd)
        dnnl_primitive_desc_destroy(s->pd);
    nn_port_free(&s->src);
    nn_port_free(&s->dst);
    dnnl_memory_t mems[5] = {s->mean, s->var, s->scale, s->shift, s->ws};
    for (int i = 0; i < 5; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(s->batch_mean);
    free(s->batch_var);
    free(s->stat_mean);
    free(s->stat_var);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

/* ---------------------------------------------------------------- backward */

typedef struct bn_grad_state {
    bn_state b;                       /* mode, epsilon, c, spatial */
    int view3;                        /* plain rank > 5 data viewed as (N, C, S) */
    int saved;                        /* inputs 5, 6: the forward's saved batch statistics */
    dnnl_primitive_desc_t pd, stat_pd; /* backward; forward_training recomputing the batch statistics */
    dnnl_primitive_t prim, stat_prim;
    nn_port x, dy, dx;
    dnnl_memory_t mean, var, scale, shift, dscale, dshift, stat_dst;
    float *buf;                       /* (6C) mean, var, scale, dscale, dshift, shift (zeros: oneDNN
                                         wants a shift argument it does not use) in float32 */
    size_t stat_dst_off;
    size_t scratch_bytes;
    int reserved;
    int relu;                         /* input 7: BatchNormalizationRelu's workspace; dY is the ReLU's */
    dnnl_memory_t ws;
} bn_grad_state;

static const int f32_only[] = {OTL_DTYPE_FLOAT, 0};

/* The descriptor of the data as oneDNN sees it: its layout, or (N, C, S) for plain rank > 5. */
static otl_status bn_data_md(otl_kctx *k, const bn_grad_state *g, const otl_rt *v, dnnl_memory_desc_t *md)
{
    if (!g->view3)
        return otl_rt_md(k, v, md);
    int64_t d3[3] = {v->dims[0], g->b.c, g->b.spatial};
    return nn_md_dense(k, 3, d3, dnnl_f32, md);
}

/* BatchNormalizationGrad(dY, X, scale, mean, var) -> dX (X's layout), dScale, dB (C). */
static otl_status bn_grad_infer(otl_kctx *k)
{
    bn_grad_state *g = calloc(1, sizeof *g);
    if (!g)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = g;
    otl_status st;
    for (int i = 0; i < 5; i++)
        if ((st = otl_check_in(k, i, i < 3 ? f32_only : float_types)))
            return st;
    g->saved = otl_has_in(k, 5) && otl_has_in(k, 6);
    for (int i = 5; g->saved && i < 7; i++)
        if ((st = otl_check_in(k, i, float_types)))
            return st;
    g->relu = otl_has_in(k, 7);
    if (g->relu && (st = otl_check_in(k, 7, (const int[]){OTL_DTYPE_UINT8, 0})))
        return st;
    const otl_rt *dy = k->in[0], *x = k->in[1];
    if (x->rank < 2)
        return otl_kfail(k, OTL_ERR_INPUT, "input X '%s' must have rank >= 2 (N, C, ...), got %d", x->name, x->rank);
    int same = dy->rank == x->rank;
    for (int i = 0; same && i < x->rank; i++)
        same = dy->dims[i] == x->dims[i];
    if (!same)
        return otl_kfail(k, OTL_ERR_INPUT, "output gradient '%s' does not have X's shape", dy->name);
    g->b.c = x->dims[1];
    g->b.spatial = 1;
    for (int i = 2; i < x->rank; i++)
        g->b.spatial *= x->dims[i];
    for (int i = 2; i < (g->saved ? 7 : 5); i++)
        if (k->in[i]->rank != 1 || k->in[i]->dims[0] != g->b.c)
            return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must have shape (%lld)", i, k->in[i]->name, (long long)g->b.c);
    if ((st = otl_attr_float(k, "epsilon", 1e-5f, &g->b.epsilon)) || (st = bn_mode(k, &g->b)))
        return st;
    for (int i = 1; i < 3; i++)
        if (otl_has_out(k, i) && (st = otl_rt_set(k, k->out[i], OTL_DTYPE_FLOAT, 1, &g->b.c)))
            return st;
    if (!(g->buf = calloc((size_t)g->b.c * 6 + 1, sizeof *g->buf)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    if (x->numel == 0)
        return otl_has_out(k, 0) ? otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, x->dims) : OTL_OK;
    g->view3 = x->rank > 5 && !x->blocked;
    if (g->relu && g->view3)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "the fused ReLU needs data of rank <= 5");
    dnnl_memory_desc_t x_md;
    if ((st = bn_data_md(k, g, x, &x_md)))
        return st;
    /* always prop backward with scale and shift: oneDNN 2.6 has backward_data only without a
     * scale; dScale/dB land in scratch when not wanted */
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (g->b.training ? 0 : dnnl_use_global_stats) |
                     (g->relu ? dnnl_fuse_norm_relu : 0);
    dnnl_batch_normalization_desc_t fd, bd;
    dnnl_primitive_desc_t hint = NULL;
    if ((st = otl_dnnl_check(k, dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, &x_md, g->b.epsilon, flags),
                             "batch normalization")) ||
        (st = nn_make_pd(k, &fd, NULL, &hint, "batch normalization")))
        return st;
    st = otl_dnnl_check(k, dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &x_md,
                                                                        &x_md, g->b.epsilon, flags),
                        "batch normalization backward");
    if (!st)
        st = otl_dnnl_check(k, otl_pd_create(&g->pd, &bd, NULL, k->eng->eng, hint), "batch normalization backward");
    dnnl_primitive_desc_destroy(hint);
    if (st)
        return st;
    if (g->relu && dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(g->pd, dnnl_query_workspace_md, 0)) !=
                       k->in[7]->nbytes)
        return otl_kfail(k, OTL_ERR_INPUT, "workspace '%s' does not match the data's layout", k->in[7]->name);
    if (g->b.training && !g->saved) { /* this batch's statistics, recomputed */
        if ((st = otl_dnnl_check(k, dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_training, &x_md, g->b.epsilon, 0),
                                 "batch normalization")) ||
            (st = nn_make_pd(k, &fd, NULL, &g->stat_pd, "batch normalization")))
            return st;
    }
    if (!otl_has_out(k, 0))
        return OTL_OK;
    if (g->view3)
        return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, x->dims);
    return otl_rt_set_md(k, k->out[0], OTL_DTYPE_FLOAT, x->rank, x->dims,
                         dnnl_primitive_desc_query_md(g->pd, dnnl_query_diff_src_md, 0));
}

static otl_status bn_grad_prepare(otl_kctx *k)
{
    bn_grad_state *g = k->state;
    if (!g->pd)
        return OTL_OK;
    otl_status st;
    dnnl_memory_desc_t c_md, x_user, dy_user, dx_user;
    if ((st = nn_md_dense(k, 1, &g->b.c, dnnl_f32, &c_md)) || (st = bn_data_md(k, g, k->in[1], &x_user)) ||
        (st = bn_data_md(k, g, k->in[0], &dy_user)) || (st = nn_make_prim(k, g->pd, &g->prim, "batch normalization backward")) ||
        (st = nn_port_init(k, &g->x, &x_user, dnnl_primitive_desc_query_md(g->pd, dnnl_query_src_md, 0), 0, &g->scratch_bytes)) ||
        (st = nn_port_init(k, &g->dy, &dy_user, dnnl_primitive_desc_query_md(g->pd, dnnl_query_diff_dst_md, 0), 0, &g->scratch_bytes)))
        return st;
    if (otl_has_out(k, 0) &&
        ((st = bn_data_md(k, g, k->out[0], &dx_user)) ||
         (st = nn_port_init(k, &g->dx, &dx_user, dnnl_primitive_desc_query_md(g->pd, dnnl_query_diff_src_md, 0), 1, &g->scratch_bytes))))
        return st;
    if (!otl_has_out(k, 0)) { /* dX is not wanted: oneDNN still writes it, into scratch */
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(g->pd, dnnl_query_diff_src_md, 0);
        if ((st = otl_dnnl_memory(k, md, NULL, &g->dx.prim)))
            return st;
        g->dx.user = g->dx.prim;
        g->dx.is_output = 1;
        g->dx.scratch_off = g->scratch_bytes;
        g->scratch_bytes += (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63;
    }
    float *b = g->buf;
    int64_t c = g->b.c;
    if ((st = otl_dnnl_memory(k, &c_md, b, &g->mean)) || (st = otl_dnnl_memory(k, &c_md, b + c, &g->var)) ||
        (st = otl_dnnl_memory(k, &c_md, b + 2 * c, &g->scale)) || (st = otl_dnnl_memory(k, &c_md, b + 3 * c, &g->dscale)) ||
        (st = otl_dnnl_memory(k, &c_md, b + 4 * c, &g->dshift)) || (st = otl_dnnl_memory(k, &c_md, b + 5 * c, &g->shift)))
        return st;
    if (g->relu && (st = otl_dnnl_memory(k, dnnl_primitive_desc_query_md(g->pd, dnnl_query_workspace_md, 0), NULL, &g->ws)))
        return st;
    if (g->stat_pd) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(g->stat_pd, dnnl_query_dst_md, 0);
        if ((st = nn_make_prim(k, g->stat_pd, &g->stat_prim, "batch normalization")) ||
            (st = otl_dnnl_memory(k, md, NULL, &g->stat_dst)))
            return st;
        g->stat_dst_off = g->scratch_bytes;
        g->scratch_bytes += (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63;
    }
    if (g->scratch_bytes) {
        if ((st = nn_scratch_reserve(k, g->scratch_bytes)))
            return st;
        g->reserved = 1;
    }
    return OTL_OK;
}

static otl_status bn_grad_forward(otl_kctx *k)
{
    bn_grad_state *g = k->state;
    int64_t c = g->b.c;
    float *b = g->buf;
    otl_status st = OTL_OK;
    if (!g->pd) { /* empty X: no contribution */
        memset(b + 3 * c, 0, (size_t)(2 * c) * sizeof *b);
    } else {
        memcpy(b + 2 * c, k->in[2]->data, (size_t)c * sizeof *b);
        if (!g->b.training || g->saved) { /* running or saved statistics, as float32 */
            const otl_rt *m = k->in[g->b.training ? 5 : 3], *v = k->in[g->b.training ? 6 : 4];
            for (int64_t i = 0; i < c; i++) {
                b[i] = (float)otl_get_f(m->data, m->dtype, i);
                b[c + i] = (float)otl_get_f(v->data, v->dtype, i);
            }
        }
        char *scratch = g->scratch_bytes ? nn_scratch_lock() : NULL;
        if (!(st = nn_port_bind(k, &g->x, k->in[1]->data, scratch)) && !(st = nn_port_bind(k, &g->dy, k->in[0]->data, scratch))) {
            if (otl_has_out(k, 0))
                st = nn_port_bind(k, &g->dx, k->out[0]->data, scratch);
            else
                dnnl_memory_set_data_handle(g->dx.prim, scratch + g->dx.scratch_off);
        }
        if (!st && g->stat_prim) {
            dnnl_memory_set_data_handle(g->stat_dst, scratch + g->stat_dst_off);
            dnnl_exec_arg_t sa[4] = {{DNNL_ARG_SRC, g->x.prim}, {DNNL_ARG_DST, g->stat_dst}, {DNNL_ARG_MEAN, g->mean},
                                     {DNNL_ARG_VARIANCE, g->var}};
            st = otl_dnnl_run(k, g->stat_prim, 4, sa);
        }
        if (!st) {
            dnnl_exec_arg_t args[10] = {{DNNL_ARG_SRC, g->x.prim},       {DNNL_ARG_DIFF_DST, g->dy.prim},
                                        {DNNL_ARG_MEAN, g->mean},        {DNNL_ARG_VARIANCE, g->var},
                                        {DNNL_ARG_SCALE, g->scale},      {DNNL_ARG_DIFF_SRC, g->dx.prim},
                                        {DNNL_ARG_SHIFT, g->shift},      {DNNL_ARG_DIFF_SCALE, g->dscale},
                                        {DNNL_ARG_DIFF_SHIFT, g->dshift}, {DNNL_ARG_WORKSPACE, g->ws}};
            if (g->ws)
                dnnl_memory_set_data_handle(g->ws, k->in[7]->data);
            st = otl_dnnl_run(k, g->prim, g->ws ? 10 : 9, args);
        }
        if (!st && otl_has_out(k, 0))
            st = nn_port_finish(k, &g->dx);
        if (scratch)
            nn_scratch_unlock();
    }
    if (!st && otl_has_out(k, 1))
        memcpy(k->out[1]->data, b + 3 * c, (size_t)c * sizeof *b);
    if (!st && otl_has_out(k, 2))
        memcpy(k->out[2]->data, b + 4 * c, (size_t)c * sizeof *b);
    return st;
}

static void bn_grad_release(otl_kctx *k)
{
    bn_grad_state *g = k->state;
    if (g->prim)
        dnnl_primitive_destroy(g->prim);
    if (g->pd)
        dnnl_primitive_desc_destroy(g->pd);
    if (g->stat_prim)
        dnnl_primitive_destroy(g->stat_prim);
    if (g->stat_pd)
        dnnl_primitive_desc_destroy(g->stat_pd);
    nn_port_free(&g->x);
    nn_port_free(&g->dy);
    nn_port_free(&g->dx);
    dnnl_memory_t mems[8] = {g->mean, g->var, g->scale, g->shift, g->dscale, g->dshift, g->stat_dst, g->ws};
    for (int i = 0; i < 8; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(g->buf);
    if (g->reserved)
        nn_scratch_unreserve(g->scratch_bytes);
}

/* The forward node's saved-statistics outputs (3, 4), added to it when absent (outputs 1, 2
 * then become "" if the node had none): the backward reads this batch's statistics instead of
 * recomputing them. In the frozen mode they hold the running statistics, which the backward
 * reads from the inputs anyway. 0 after recording an error. */
static int bn_saved_outputs(otl_gctx *c, const char **mean, const char **var)
{
    const otl_node *f = c->node;
    if (f->n_outputs >= 5 && *f->outputs[3] && *f->outputs[4]) {
        *mean = f->outputs[3];
        *var = f->outputs[4];
        return 1;
    }
    otl_node *n = NULL;
    for (int i = 0; i < c->g->n_nodes && !n; i++)
        if (c->g->nodes[i] == f)
            n = c->g->nodes[i];
    if (!n) {
        otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s' (BatchNormalization): not in the graph", c->file, f->name);
        return 0;
    }
    if (n->n_outputs < 5) { /* the name strings themselves stay put: maps keyed by them hold */
        char **o = realloc(n->outputs, 5 * sizeof *o);
        if (!o)
            goto nomem;
        n->outputs = o;
        for (int i = n->n_outputs; i < 5; i++)
            o[i] = NULL;
        n->n_outputs = 5;
        for (int i = 1; i < 5; i++)
            if (!o[i] && !(o[i] = otl_strdup("")))
                goto nomem;
    }
    for (int i = 3; i < 5; i++) {
        if (*n->outputs[i])
            continue;
        const char *hint = otl_gname(c, i == 3 ? "saved_mean" : "saved_var");
        char *name = hint ? otl_strdup(hint) : NULL;
        if (!name)
            goto nomem;
        free(n->outputs[i]); /* "" (omitted): no map holds it */
        n->outputs[i] = name;
    }
    *mean = n->outputs[3];
    *var = n->outputs[4];
    return 1;
nomem:
    otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
    return 0;
}

/* dX, dScale, dB = BatchNormalizationGrad(dY, X, scale, mean, var, saved_mean, saved_var): one
 * node whose kernel picks batch or running statistics the way the forward does (the rule cannot:
 * the mode is a session option); the saved statistics when the forward node outputs them. No
 * gradient flows back through the statistics outputs. */
static otl_status bn_grad(otl_gctx *c)
{
    const otl_node *f = c->node;
    if (!c->dy[0])
        return otl_error_set(c->err, OTL_ERR_UNSUPPORTED,
                             "%s: node '%s' (BatchNormalization): no gradient flows through its statistics outputs",
                             c->file, f->name);
    const char *sm, *sv;
    if (!bn_saved_outputs(c, &sm, &sv))
        return c->err->code;
    const char *in[7] = {c->dy[0], f->inputs[0], f->inputs[1], f->inputs[3], f->inputs[4], sm, sv};
    const char *out[3];
    for (int i = 0; i < 3; i++)
        out[i] = c->need[i] ? otl_gname(c, f->inputs[i]) : "";
    otl_node *n = otl_gemit(c, OTL_GRAD_DOMAIN, "BatchNormalizationGrad", 7, in, 3, out);
    otl_status st = n ? otl_gattr_copy(c, n) : OTL_OK;
    for (int i = 0; i < 3; i++)
        if (c->need[i])
            otl_grad_set(c, i, n ? out[i] : NULL);
    return st;
}

const otl_op otl_op_BatchNormalization = {
    .op_type = "BatchNormalization", .domain = "", .since = 6, .until = 22, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bn_infer, .prepare = bn_prepare, .forward = bn_forward, .release = bn_release,
    .grad_inputs = 7, .grad = bn_grad,
};

const otl_op otl_op_BatchNormalizationRelu = {
    .op_type = "BatchNormalizationRelu", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bn_relu_infer, .prepare = bn_prepare, .forward = bn_forward, .release = bn_release,
};

const otl_op otl_op_BatchNormalizationRecompute = {
    .op_type = "BatchNormalizationRecompute", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bn_recompute_infer, .prepare = bn_prepare, .forward = bn_forward, .release = bn_release,
};

const otl_op otl_op_BatchNormalizationGrad = {
    .op_type = "BatchNormalizationGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1, .flags = OTL_OPF_ANY_LAYOUT,
    .infer = bn_grad_infer, .prepare = bn_grad_prepare, .forward = bn_grad_forward, .release = bn_grad_release,
};
