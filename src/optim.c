/* optim.c - SGD (momentum, Nesterov), Adam and AdamW over one flat parameter block, with
 * PyTorch's update rules, global gradient-norm clipping and per-parameter learning-rate
 * multipliers (discriminative fine-tuning). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

void otl_optim_free(otl_optim *o)
{
    if (!o)
        return;
    free(o->offset);
    free(o->numel);
    free(o->lr_mult);
    free(o->steps);
    free(o->param);
    free(o->grad);
    free(o->m);
    free(o->v);
    free(o);
}

otl_status otl_optim_new(otl_optim **out, int n, const int64_t *numel, const otl_optim_opts *opts,
                         otl_error *err)
{
    *out = NULL;
    otl_optim *o = calloc(1, sizeof *o);
    if (!o)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory for the optimizer");
    o->o = *opts;
    if (o->o.beta1 == 0)
        o->o.beta1 = 0.9f;
    if (o->o.beta2 == 0)
        o->o.beta2 = 0.999f;
    if (o->o.eps == 0)
        o->o.eps = 1e-8f;
    o->n = n;
    o->offset = calloc((size_t)n + 1, sizeof *o->offset);
    o->numel = calloc((size_t)n + 1, sizeof *o->numel);
    o->lr_mult = calloc((size_t)n + 1, sizeof *o->lr_mult);
    o->steps = calloc((size_t)n + 1, sizeof *o->steps);
    if (!o->offset || !o->numel || !o->lr_mult || !o->steps) {
        otl_optim_free(o);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory for the optimizer");
    }
    for (int i = 0; i < n; i++) {
        /* 16-float alignment keeps every tensor 64-byte aligned for the kernels */
        o->offset[i] = o->total;
        o->numel[i] = numel[i];
        o->lr_mult[i] = 1.0f;
        o->total += (numel[i] + 15) & ~(int64_t)15;
    }
    size_t bytes = (size_t)(o->total ? o->total : 16) * sizeof(float);
    int need_m = o->o.kind != OTL_OPT_SGD || o->o.momentum != 0;
    int need_v = o->o.kind != OTL_OPT_SGD;
    o->param = aligned_alloc(64, bytes);
    o->grad = aligned_alloc(64, bytes);
    o->m = need_m ? aligned_alloc(64, bytes) : NULL;
    o->v = need_v ? aligned_alloc(64, bytes) : NULL;
    if (!o->param || !o->grad || (need_m && !o->m) || (need_v && !o->v)) {
        long long total = (long long)o->total;
        otl_optim_free(o);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory for %lld parameters", total);
    }
    memset(o->param, 0, bytes);
    memset(o->grad, 0, bytes);
    if (o->m)
        memset(o->m, 0, bytes);
    if (o->v)
        memset(o->v, 0, bytes);
    *out = o;
    return OTL_OK;
}

double otl_optim_clip(otl_optim *o, double max_norm)
{
    double sq = 0;
    for (int i = 0; i < o->n; i++) {
        const float *g = o->grad + o->offset[i];
        for (int64_t j = 0; j < o->numel[i]; j++)
            sq += (double)g[j] * g[j];
    }
    double norm = sqrt(sq);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0)
            for (int i = 0; i < o->n; i++) {
                float *g = o->grad + o->offset[i];
                for (int64_t j = 0; j < o->numel[i]; j++)
                    g[j] = (float)(g[j] * coef);
            }
    }
    return norm;
}

void otl_optim_step(otl_optim *o, float base_lr)
{
    const otl_optim_opts *p = &o->o;
    o->step++;
    float wd = p->weight_decay;
    for (int i = 0; i < o->n; i++) {
        int64_t step = ++o->steps[i];
        double bc1 = 1.0 - pow(p->beta1, (double)step), bc2 = 1.0 - pow(p->beta2, (double)step);
        float lr = base_lr * o->lr_mult[i];
        float *w = o->param + o->offset[i], *g = o->grad + o->offset[i];
        float *m = o->m ? o->m + o->offset[i] : NULL, *v = o->v ? o->v + o->offset[i] : NULL;
        int64_t n = o->numel[i];
        if (p->kind == OTL_OPT_SGD) {
            #pragma omp parallel for if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                float d = g[j] + wd * w[j];
                if (m) {
                    m[j] = step == 1 ? d : p->momentum * m[j] + (1.0f - p->dampening) * d;
                    d = p->nesterov ? d + p->momentum * m[j] : m[j];
                }
                w[j] -= lr * d;
            }
        } else {
            float b1 = p->beta1, b2 = p->beta2, eps = p->eps;
            int decoupled = p->kind == OTL_OPT_ADAMW;
            float step_size = (float)(lr / bc1);
            float bc2_sqrt = (float)sqrt(bc2);
            #pragma omp parallel for if (n > 65536)
            for (int64_t j = 0; j < n; j++) {
                float d = g[j];
                if (decoupled)
                    w[j] *= 1.0f - lr * wd;
                else
                    d += wd * w[j];
                m[j] = b1 * m[j] + (1.0f - b1) * d;
                v[j] = b2 * v[j] + (1.0f - b2) * d * d;
                w[j] -= step_size * m[j] / (sqrtf(v[j]) / bc2_sqrt + eps);
            }
        }
    }
}
