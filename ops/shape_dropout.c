/* shape_dropout.c - Dropout (opsets 7-22): identity in inference; in training (session training,
 * or training_mode input true at opset 12+) a mask drawn from a counter-based hash of the node
 * seed, the run index (k->step) and the element index: a seed gives the same masks in the same
 * order, every run differs. Differentiable input: data (gradient = output gradient * mask / (1 - ratio)). */
#include <stdlib.h>
#include <string.h>

#include "ops/shape_copy.h"

typedef struct dropout_state {
    float ratio_attr;   /* opset < 12 */
    int mask_bool;      /* mask dtype: bool from opset 10, else the data dtype */
} dropout_state;

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Keep element i of run `call` with probability 1 - ratio (threshold = ratio * 2^32). */
static int dropout_keep(uint64_t seed, uint64_t call, int64_t i, uint64_t threshold)
{
    uint64_t h = mix64(mix64(seed ^ mix64(call)) + (uint64_t)i);
    return (h >> 32) >= threshold;
}

static const int float_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_FLOAT16, OTL_DTYPE_BFLOAT16, 0};

static otl_status dropout_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, float_types)))
        return st;
    dropout_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    const otl_rt *x = k->in[0];
    s->ratio_attr = 0.5f;
    if (k->opset < 12 && (st = otl_attr_float(k, "ratio", 0.5f, &s->ratio_attr)))
        return st;
    if (k->opset >= 12) {
        if (otl_has_in(k, 1)) {
            const otl_rt *r = k->in[1];
            if (!otl_dtype_is_float(r->dtype) || r->numel != 1)
                return otl_kfail(k, OTL_ERR_INPUT, "input 'ratio' must be one float value");
        }
        if (otl_has_in(k, 2) && (k->in[2]->dtype != OTL_DTYPE_BOOL || k->in[2]->numel != 1))
            return otl_kfail(k, OTL_ERR_INPUT, "input 'training_mode' must be one bool value");
    }
    s->mask_bool = k->opset >= 10;
    if ((st = otl_rt_like(k, k->out[0], x)))
        return st;
    if (otl_has_out(k, 1))
        st = otl_rt_set(k, k->out[1], s->mask_bool ? OTL_DTYPE_BOOL : x->dtype, x->rank, x->dims);
    return st;
}

static otl_status dropout_forward(otl_kctx *k)
{
    dropout_state *s = k->state;
    const otl_rt *x = k->in[0];
    otl_rt *y = k->out[0], *m = otl_has_out(k, 1) ? k->out[1] : NULL;
    int dt = x->dtype;
    double ratio = s->ratio_attr;
    int training = k->training;
    if (k->opset >= 12) {
        if (otl_has_in(k, 1))
            ratio = otl_get_f(k->in[1]->data, k->in[1]->dtype, 0);
        if (otl_has_in(k, 2) && *(const uint8_t *)k->in[2]->data)
            training = 1;
    }
    if (!training || ratio == 0) {
        if (y->nbytes)
            memcpy(y->data, x->data, y->nbytes);
        if (m) {
            if (s->mask_bool)
                memset(m->data, 1, m->nbytes);
            else
                for (int64_t i = 0; i < m->numel; i++)
                    otl_set_f(m->data, m->dtype, i, 1.0);
        }
        return OTL_OK;
    }
    if (!(ratio >= 0 && ratio <= 1))
        return otl_kfail(k, OTL_ERR_INPUT, "ratio %g is outside [0, 1]", ratio);
    uint64_t threshold = ratio >= 1 ? ((uint64_t)1 << 32) : (uint64_t)(ratio * 4294967296.0);
    double scale = ratio >= 1 ? 0 : 1 / (1 - ratio);
    uint64_t seed = k->seed, call = k->step;
    int64_t n = x->numel;
    if (dt == OTL_DTYPE_FLOAT) {
        const float *xp = x->data;
        float *yp = y->data, sc = (float)scale;
        uint8_t *mp = m && s->mask_bool ? m->data : NULL;
        #pragma omp parallel for if (n > 65536) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            int keep = dropout_keep(seed, call, i, threshold);
            yp[i] = keep ? xp[i] * sc : 0.0f;
            if (mp)
                mp[i] = (uint8_t)keep;
        }
        if (m && !mp)
            for (int64_t i = 0; i < n; i++)
                ((float *)m->data)[i] = (float)dropout_keep(seed, call, i, threshold);
        return OTL_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        int keep = dropout_keep(seed, call, i, threshold);
        otl_set_f(y->data, dt, i, keep ? otl_get_f(x->data, dt, i) * scale : 0.0);
        if (m)
            otl_set_f(m->data, m->dtype, i, keep);
    }
    return OTL_OK;
}

const otl_op otl_op_Dropout = {
    .op_type = "Dropout", .domain = "", .since = 7, .until = 22, .flags = OTL_OPF_RANDOM,
    .infer = dropout_infer, .forward = dropout_forward,
};
