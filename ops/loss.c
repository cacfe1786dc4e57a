/* loss.c - training losses as private ops (domain onnx_tl), each with its gradient op.
 *   SoftmaxCrossEntropy(logits (N,C), labels (N) int64) -> mean loss; attributes
 *       label_smoothing (PyTorch semantics), ignore_index (default -100, as PyTorch)
 *   MeanSquaredError(pred, target) -> mean((pred - target)^2)
 *   BCEWithLogits(logits, targets) -> mean binary cross-entropy on logits (multi-label)
 * Differentiable input: the first (logits / predictions). Sums are accumulated in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

static const int f32[] = {OTL_DTYPE_FLOAT, 0};
static const int i64[] = {OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};

/* ------------------------------------------------------------ softmax cross-entropy */

typedef struct sce_state {
    float smoothing;
    int64_t ignore;
} sce_state;

static otl_status sce_check(otl_kctx *k, int logits, int labels)
{
    otl_status st;
    if ((st = otl_check_in(k, logits, f32)) || (st = otl_check_in(k, labels, i64)))
        return st;
    const otl_rt *x = k->in[logits], *y = k->in[labels];
    if (x->rank != 2)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "logits '%s' must have shape (N, C), got rank %d", x->name, x->rank);
    if (y->numel != x->dims[0])
        return otl_kfail(k, OTL_ERR_INPUT, "labels '%s' hold %lld values for a batch of %lld", y->name,
                         (long long)y->numel, (long long)x->dims[0]);
    sce_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = otl_attr_float(k, "label_smoothing", 0.0f, &s->smoothing)) ||
        (st = otl_attr_int(k, "ignore_index", -100, &s->ignore)))
        return st;
    if (!(s->smoothing >= 0.0f && s->smoothing <= 1.0f))
        return otl_kfail(k, OTL_ERR_INPUT, "label_smoothing must be in [0, 1], got %g", s->smoothing);
    return OTL_OK;
}

static otl_status sce_infer(otl_kctx *k)
{
    otl_status st = sce_check(k, 0, 1);
    return st ? st : otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, 0, NULL);
}

/* Walk the batch: for each counted row, log-softmax terms. Returns the number of rows counted
 * or -1 after reporting a bad label. grad (optional) receives (softmax - q) per row. */
static int64_t sce_rows(otl_kctx *k, const sce_state *s, const float *x, const otl_rt *labels, int64_t n,
                        int64_t c, double *loss, float *grad)
{
    int64_t counted = 0;
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t y = otl_get_i(labels->data, labels->dtype, i);
        const float *row = x + i * c;
        if (y == s->ignore) {
            if (grad)
                memset(grad + i * c, 0, (size_t)c * sizeof *grad);
            continue;
        }
        if (y < 0 || y >= c) {
            otl_kfail(k, OTL_ERR_INPUT, "label %lld of sample %lld is outside [0, %lld)", (long long)y,
                      (long long)i, (long long)c);
            return -1;
        }
        double mx = row[0];
        for (int64_t j = 1; j < c; j++)
            mx = row[j] > mx ? row[j] : mx;
        double z = 0, sum_logp = 0;
        for (int64_t j = 0; j < c; j++)
            z += exp(row[j] - mx);
        double lse = mx + log(z);
        for (int64_t j = 0; j < c; j++)
            sum_logp += row[j] - lse;
        double eps = s->smoothing;
        total += -(1.0 - eps) * (row[y] - lse) - eps * sum_logp / (double)c;
        if (grad)
            for (int64_t j = 0; j < c; j++) {
                double q = eps / (double)c + (j == y ? 1.0 - eps : 0.0);
                grad[i * c + j] = (float)(exp(row[j] - lse) - q);
            }
        counted++;
    }
    *loss = total;
    return counted;
}

static otl_status sce_forward(otl_kctx *k)
{
    const otl_rt *x = k->in[0];
    double total;
    int64_t cnt = sce_rows(k, k->state, x->data, k->in[1], x->dims[0], x->dims[1], &total, NULL);
    if (cnt < 0)
        return k->err->code;
    *(float *)k->out[0]->data = cnt ? (float)(total / (double)cnt) : 0.0f;
    return OTL_OK;
}

static otl_status sce_grad(otl_gctx *c)
{
    otl_node *n;
    const char *in[3] = {c->dy[0], c->node->inputs[0], c->node->inputs[1]};
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "SoftmaxCrossEntropyGrad", 3, in, &n);
    otl_status st = otl_gattr_copy(c, n);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_SoftmaxCrossEntropy = {
    .op_type = "SoftmaxCrossEntropy", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = sce_infer, .forward = sce_forward, .grad_inputs = 1, .grad = sce_grad,
};

static otl_status sce_grad_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, f32);
    if (!st)
        st = sce_check(k, 1, 2);
    return st ? st : otl_rt_like(k, k->out[0], k->in[1]);
}

static otl_status sce_grad_forward(otl_kctx *k)
{
    const otl_rt *x = k->in[1];
    float *g = k->out[0]->data;
    double total;
    int64_t cnt = sce_rows(k, k->state, x->data, k->in[2], x->dims[0], x->dims[1], &total, g);
    if (cnt < 0)
        return k->err->code;
    float scale = cnt ? *(const float *)k->in[0]->data / (float)cnt : 0.0f;
    for (int64_t i = 0; i < x->numel; i++)
        g[i] *= scale;
    return OTL_OK;
}

const otl_op otl_op_SoftmaxCrossEntropyGrad = {
    .op_type = "SoftmaxCrossEntropyGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = sce_grad_infer, .forward = sce_grad_forward,
};

/* ------------------------------------------------------------ element-wise losses */

static otl_status pair_check(otl_kctx *k, int a, int b)
{
    otl_status st;
    if ((st = otl_check_in(k, a, f32)) || (st = otl_check_in(k, b, f32)))
        return st;
    if (k->in[a]->numel != k->in[b]->numel)
        return otl_kfail(k, OTL_ERR_INPUT, "'%s' has %lld elements but the target '%s' has %lld",
                         k->in[a]->name, (long long)k->in[a]->numel, k->in[b]->name, (long long)k->in[b]->numel);
    return OTL_OK;
}

static otl_status scalar_loss_infer(otl_kctx *k)
{
    otl_status st = pair_check(k, 0, 1);
    return st ? st : otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, 0, NULL);
}

static otl_status grad_loss_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, f32);
    if (!st)
        st = pair_check(k, 1, 2);
    return st ? st : otl_rt_like(k, k->out[0], k->in[1]);
}

static otl_status mse_forward(otl_kctx *k)
{
    const float *p = k->in[0]->data, *t = k->in[1]->data;
    int64_t n = k->in[0]->numel;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)p[i] - t[i];
        s += d * d;
    }
    *(float *)k->out[0]->data = n ? (float)(s / (double)n) : 0.0f;
    return OTL_OK;
}

static otl_status mse_grad_forward(otl_kctx *k)
{
    const float *p = k->in[1]->data, *t = k->in[2]->data;
    float *g = k->out[0]->data;
    int64_t n = k->in[1]->numel;
    float scale = n ? 2.0f * *(const float *)k->in[0]->data / (float)n : 0.0f;
    for (int64_t i = 0; i < n; i++)
        g[i] = scale * (p[i] - t[i]);
    return OTL_OK;
}

static otl_status pair_grad(otl_gctx *c, const char *grad_op)
{
    const char *in[3] = {c->dy[0], c->node->inputs[0], c->node->inputs[1]};
    otl_grad_set(c, 0, otl_gemit1(c, OTL_GRAD_DOMAIN, grad_op, 3, in, NULL));
    return OTL_OK;
}

static otl_status mse_grad(otl_gctx *c) { return pair_grad(c, "MeanSquaredErrorGrad"); }

const otl_op otl_op_MeanSquaredError = {
    .op_type = "MeanSquaredError", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = scalar_loss_infer, .forward = mse_forward, .grad_inputs = 1, .grad = mse_grad,
};

const otl_op otl_op_MeanSquaredErrorGrad = {
    .op_type = "MeanSquaredErrorGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = grad_loss_infer, .forward = mse_grad_forward,
};

static otl_status bce_forward(otl_kctx *k)
{
    const float *x = k->in[0]->data, *t = k->in[1]->data;
    int64_t n = k->in[0]->numel;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        s += (v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v)));
    }
    *(float *)k->out[0]->data = n ? (float)(s / (double)n) : 0.0f;
    return OTL_OK;
}

static otl_status bce_grad_forward(otl_kctx *k)
{
    const float *x = k->in[1]->data, *t = k->in[2]->data;
    float *g = k->out[0]->data;
    int64_t n = k->in[1]->numel;
    float scale = n ? *(const float *)k->in[0]->data / (float)n : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        double sig = x[i] >= 0 ? 1.0 / (1.0 + exp(-(double)x[i])) : exp((double)x[i]) / (1.0 + exp((double)x[i]));
        g[i] = scale * (float)(sig - t[i]);
    }
    return OTL_OK;
}

static otl_status bce_grad(otl_gctx *c) { return pair_grad(c, "BCEWithLogitsGrad"); }

const otl_op otl_op_BCEWithLogits = {
    .op_type = "BCEWithLogits", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = scalar_loss_infer, .forward = bce_forward, .grad_inputs = 1, .grad = bce_grad,
};

const otl_op otl_op_BCEWithLogitsGrad = {
    .op_type = "BCEWithLogitsGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = grad_loss_infer, .forward = bce_grad_forward,
};
