/* conv_quant.c - ConvInteger and QLinearConv (opset 10): integer convolutions in plain C over
 * any number of spatial axes, 64-bit accumulation. Not differentiable (quantized inference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/nn_common.h"

typedef struct qconv_state {
    nn_geom g;
    int64_t group;
    int qlinear;                /* QLinearConv (else ConvInteger) */
} qconv_state;

static const int int8s[] = {OTL_DTYPE_UINT8, OTL_DTYPE_INT8, 0};

/* A zero point / scale input: a scalar, or (for the weights) one per output channel. */
static otl_status check_param(otl_kctx *k, int i, int64_t per_channel, const int *dtypes, int required)
{
    if (!otl_has_in(k, i)) {
        if (required)
            return otl_kfail(k, OTL_ERR_INPUT, "required input %d is missing", i);
        return OTL_OK;
    }
    otl_status st = otl_check_in(k, i, dtypes);
    if (st)
        return st;
    const otl_rt *v = k->in[i];
    if (v->numel != 1 && !(per_channel > 0 && v->rank == 1 && v->numel == per_channel))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s' must be a scalar%s", i, v->name,
                         per_channel > 0 ? " or one value per output channel" : "");
    return OTL_OK;
}

static otl_status qconv_infer(otl_kctx *k)
{
    qconv_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->qlinear = strcmp(k->node->op_type, "QLinearConv") == 0;
    int ix = 0, iw = s->qlinear ? 3 : 1;
    otl_status st;
    if ((st = otl_check_in(k, ix, int8s)) || (st = otl_check_in(k, iw, int8s)))
        return st;
    const otl_rt *x = k->in[ix], *w = k->in[iw];
    if (x->rank < 3 || w->rank != x->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "X must have rank >= 3 and W the same rank (got %d and %d)", x->rank, w->rank);
    s->g.nsp = x->rank - 2;
    if ((st = otl_attr_int(k, "group", 1, &s->group)))
        return st;
    int64_t m = w->dims[0], c = x->dims[1];
    if (s->group < 1 || w->dims[1] * s->group != c || m % s->group)
        return otl_kfail(k, OTL_ERR_INPUT, "X has %lld channels, W '%s' (%lld, %lld, ...) and group %lld do not match",
                         (long long)c, w->name, (long long)m, (long long)w->dims[1], (long long)s->group);
    int64_t ks[NN_MAX_SP];
    int n;
    if ((st = otl_attr_ints(k, "kernel_shape", ks, NN_MAX_SP, &n)))
        return st;
    for (int i = 0; i < s->g.nsp; i++) {
        s->g.k[i] = w->dims[2 + i];
        if ((n >= 0 && (n != s->g.nsp || ks[i] != s->g.k[i])) || s->g.k[i] < 1)
            return otl_kfail(k, OTL_ERR_INPUT, "kernel_shape does not match W '%s'", w->name);
    }
    if ((st = nn_geom_attrs(k, &s->g, 1)) || (st = nn_geom_forward(k, &s->g, x->dims + 2)))
        return st;
    static const int f32[] = {OTL_DTYPE_FLOAT, 0}, i32[] = {OTL_DTYPE_INT32, 0};
    int out_dt = OTL_DTYPE_INT32;
    if (s->qlinear) {
        if ((st = check_param(k, 1, 0, f32, 1)) || (st = check_param(k, 2, 0, int8s, 1)) ||
            (st = check_param(k, 4, m, f32, 1)) || (st = check_param(k, 5, m, int8s, 1)) ||
            (st = check_param(k, 6, 0, f32, 1)) || (st = check_param(k, 7, 0, int8s, 1)))
            return st;
        if (k->in[2]->dtype != x->dtype || k->in[5]->dtype != w->dtype)
            return otl_kfail(k, OTL_ERR_INPUT, "zero points must have the dtype of their tensors");
        if (otl_has_in(k, 8)) {
            if ((st = otl_check_in(k, 8, i32)))
                return st;
            if (k->in[8]->numel != m)
                return otl_kfail(k, OTL_ERR_INPUT, "bias must have %lld values", (long long)m);
        }
        out_dt = k->in[7]->dtype;
    } else {
        if ((st = check_param(k, 2, 0, int8s, 0)) || (st = check_param(k, 3, m, int8s, 0)))
            return st;
    }
    int64_t dims[OTL_MAX_RANK] = {x->dims[0], m};
    for (int i = 0; i < s->g.nsp; i++)
        dims[2 + i] = s->g.out[i];
    return otl_rt_set(k, k->out[0], out_dt, x->rank, dims);
}

static double param(const otl_kctx *k, int i, int64_t ch, double dflt)
{
    if (!otl_has_in(k, i))
        return dflt;
    const otl_rt *v = k->in[i];
    return otl_get_f(v->data, v->dtype, v->numel == 1 ? 0 : ch);
}

/* acc[(n, m, o)] = sum over (c in group, kernel) (x - xz) * (w - wz[m]) */
static otl_status qconv_forward(otl_kctx *k)
{
    qconv_state *s = k->state;
    const nn_geom *g = &s->g;
    int ix = 0, iw = s->qlinear ? 3 : 1, nsp = g->nsp;
    const otl_rt *x = k->in[ix], *w = k->in[iw], *y = k->out[0];
    int64_t n = x->dims[0], c = x->dims[1], m = w->dims[0], cg = w->dims[1], mg = m / s->group;
    int64_t in_sz = 1, out_sz = 1, ksz = 1;
    for (int i = 0; i < nsp; i++) {
        in_sz *= g->in[i];
        out_sz *= g->out[i];
        ksz *= g->k[i];
    }
    int64_t xz = (int64_t)param(k, 2, 0, 0); /* x_zero_point is input 2 of both ops */
    double xs = s->qlinear ? param(k, 1, 0, 1) : 1, ys = s->qlinear ? param(k, 6, 0, 1) : 1;
    int64_t yz = s->qlinear ? (int64_t)param(k, 7, 0, 0) : 0;
    int wz_in = s->qlinear ? 5 : 3;
    double lo = y->dtype == OTL_DTYPE_UINT8 ? 0 : -128, hi = y->dtype == OTL_DTYPE_UINT8 ? 255 : 127;
#pragma omp parallel for schedule(static) if (n * m * out_sz * cg * ksz > 65536)
    for (int64_t nm = 0; nm < n * m; nm++) {
        int64_t b = nm / m, oc = nm % m, grp = oc / mg, wz = (int64_t)param(k, wz_in, oc, 0);
        double scale = s->qlinear ? xs * param(k, 4, oc, 1) / ys : 1;
        int64_t bias = s->qlinear && otl_has_in(k, 8) ? ((const int32_t *)k->in[8]->data)[oc] : 0;
        for (int64_t o = 0; o < out_sz; o++) {
            int64_t oco[NN_MAX_SP], rem = o, acc = 0;
            for (int i = nsp - 1; i >= 0; i--) {
                oco[i] = rem % g->out[i];
                rem /= g->out[i];
            }
            for (int64_t kk = 0; kk < ksz; kk++) {
                int64_t r2 = kk, idx = 0, kc[NN_MAX_SP];
                int inside = 1;
                for (int i = nsp - 1; i >= 0; i--) {
                    kc[i] = r2 % g->k[i];
                    r2 /= g->k[i];
                }
                for (int i = 0; i < nsp; i++) {
                    int64_t p = oco[i] * g->s[i] - g->pl[i] + kc[i] * g->d[i];
                    if (p < 0 || p >= g->in[i])
                        inside = 0;
                    idx = idx * g->in[i] + p;
                }
                if (!inside)
                    continue; /* padding holds the zero point: contributes 0 */
                for (int64_t ci = 0; ci < cg; ci++) {
                    int64_t xv = otl_get_i(x->data, x->dtype, (b * c + grp * cg + ci) * in_sz + idx) - xz;
                    int64_t wv = otl_get_i(w->data, w->dtype, (oc * cg + ci) * ksz + kk) - wz;
                    acc += xv * wv;
                }
            }
            int64_t e = nm * out_sz + o;
            if (!s->qlinear) {
                ((int32_t *)y->data)[e] = (int32_t)acc;
            } else {
                double v = nearbyint((double)(acc + bias) * scale) + (double)yz; /* round half to even */
                otl_set_i(y->data, y->dtype, e, (int64_t)(v < lo ? lo : v > hi ? hi : v));
            }
        }
    }
    return OTL_OK;
}

const otl_op otl_op_ConvInteger = {
    .op_type = "ConvInteger", .domain = "", .since = 10, .until = 22,
    .infer = qconv_infer, .forward = qconv_forward,
};

const otl_op otl_op_QLinearConv = {
    .op_type = "QLinearConv", .domain = "", .since = 10, .until = 22,
    .infer = qconv_infer, .forward = qconv_forward,
};
