/* shape_dropout.c - Dropout (opsets 7-22): identity in inference (output 0 then aliases the input
 * when there is no mask output); in training (session training, or training_mode input true at
 * opset 12+) a mask drawn from a counter-based hash of the node seed, the run index (k->step) and
 * the element index: a seed gives the same masks in the same order, every run differs.
 * Differentiable input: data; ratio and training_mode are not differentiable. Its gradient, the
 * private onnx_tl.DropoutGrad(dY, mask, ratio, training_mode), is dY * mask / (1 - ratio) when
 * the forward was active, dY otherwise. The mask is Dropout's own optional output 1, which the
 * rule adds to the forward node when the model does not have it: the mask costs one byte per
 * element (bool, opset 10+) kept from forward to backward, and the executor's per-node seeds
 * (node index based) need no coupling between the two nodes. */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"
#include "src/util.h"

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
        return otl_rt_set(k, k->out[1], s->mask_bool ? OTL_DTYPE_BOOL : x->dtype, x->rank, x->dims);
    /* no mask to produce: when Dropout is known to be inactive, output 0 is input 0 */
    int active = k->training;
    if (k->opset >= 12 && otl_has_in(k, 2))
        active |= !k->in[2]->is_const || *(const uint8_t *)k->in[2]->data;
    if (!active)
        k->alias = 1;
    return OTL_OK;
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

/* The mask output of the forward node, added to it when absent (see the file header). */
static const char *dropout_mask(otl_gctx *c)
{
    const otl_node *f = c->node;
    if (f->n_outputs >= 2 && *f->outputs[1])
        return f->outputs[1];
    otl_node *n = NULL;
    for (int i = 0; i < c->g->n_nodes && !n; i++)
        if (c->g->nodes[i] == f)
            n = c->g->nodes[i];
    const char *hint = otl_gname(c, f->outputs[0]);
    char *name = hint ? otl_strdup(hint) : NULL;
    if (!n || !name) {
        free(name);
        otl_error_set(c->err, n ? OTL_ERR_NOMEM : OTL_ERR_INTERNAL, "%s: node '%s' (Dropout): cannot add the mask output",
                      c->file, f->name);
        return NULL;
    }
    if (n->n_outputs >= 2) {
        free(n->outputs[1]); /* "" (omitted): no map holds it */
        n->outputs[1] = name;
        return name;
    }
    char **o = realloc(n->outputs, 2 * sizeof *o); /* the name strings themselves stay put */
    if (!o) {
        free(name);
        otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
        return NULL;
    }
    o[1] = name;
    n->outputs = o;
    n->n_outputs = 2;
    return name;
}

static otl_status dropout_grad(otl_gctx *c)
{
    if (!c->dy[0]) { /* only the mask (float before opset 10) was used downstream */
        otl_grad_set(c, 0, otl_gzeros_like(c, c->node->inputs[0]));
        return OTL_OK;
    }
    const char *mask = dropout_mask(c);
    if (!mask)
        return c->err->code;
    const char *in[4] = {c->dy[0], mask, "", ""};
    for (int i = 1; i < 3 && i < c->n_in && c->opset >= 12; i++)
        in[1 + i] = c->node->inputs[i];
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "DropoutGrad", 4, in, &n);
    otl_status st = OTL_OK;
    if (dx && c->opset < 12) {
        const otl_attr *a = otl_node_attr(c->node, "ratio");
        st = otl_gattr_float(c, n, "ratio", a && a->type == OTL_ATTR_FLOAT ? a->f : 0.5f);
    }
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Dropout = {
    .op_type = "Dropout", .domain = "", .since = 7, .until = 22, .flags = OTL_OPF_RANDOM,
    .infer = dropout_infer, .forward = dropout_forward, .grad_inputs = 1, .grad = dropout_grad,
};

/* ---------------------------------------------------------------- DropoutGrad (onnx_tl) */

/* DropoutGrad(dY, mask, ratio?, training_mode?), attribute ratio (default 0.5) when there is no
 * ratio input: dX = dY * mask / (1 - ratio) when the forward was active (session training or
 * training_mode true, ratio > 0), dX = dY otherwise (the mask is then all ones). */
static otl_status dropout_grad_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, float_types)) || (st = otl_check_in(k, 1, NULL)))
        return st;
    const otl_rt *dy = k->in[0], *m = k->in[1];
    if (m->numel != dy->numel || m->rank != dy->rank)
        return otl_kfail(k, OTL_ERR_INPUT, "mask '%s' does not have the gradient's shape", m->name);
    if (m->dtype != OTL_DTYPE_BOOL && m->dtype != dy->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "mask '%s' must be bool or %s", m->name, otl_dtype_name(dy->dtype));
    if (otl_has_in(k, 2) && (!otl_dtype_is_float(k->in[2]->dtype) || k->in[2]->numel != 1))
        return otl_kfail(k, OTL_ERR_INPUT, "input 'ratio' must be one float value");
    if (otl_has_in(k, 3) && (k->in[3]->dtype != OTL_DTYPE_BOOL || k->in[3]->numel != 1))
        return otl_kfail(k, OTL_ERR_INPUT, "input 'training_mode' must be one bool value");
    dropout_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = otl_attr_float(k, "ratio", 0.5f, &s->ratio_attr)))
        return st;
    return otl_rt_like(k, k->out[0], dy);
}

static otl_status dropout_grad_forward(otl_kctx *k)
{
    dropout_state *s = k->state;
    const otl_rt *dy = k->in[0], *m = k->in[1];
    otl_rt *dx = k->out[0];
    double ratio = otl_has_in(k, 2) ? otl_get_f(k->in[2]->data, k->in[2]->dtype, 0) : s->ratio_attr;
    int training = k->training || (otl_has_in(k, 3) && *(const uint8_t *)k->in[3]->data);
    if (!training || ratio == 0) {
        if (dx->nbytes)
            memcpy(dx->data, dy->data, dx->nbytes);
        return OTL_OK;
    }
    double scale = ratio >= 1 ? 0 : 1 / (1 - ratio);
    int64_t n = dy->numel;
    if (dy->dtype == OTL_DTYPE_FLOAT && m->dtype == OTL_DTYPE_BOOL) {
        const float *g = dy->data;
        const uint8_t *mp = m->data;
        float *o = dx->data, sc = (float)scale;
        #pragma omp parallel for simd if (n > 65536) schedule(static)
        for (int64_t i = 0; i < n; i++)
            o[i] = mp[i] ? g[i] * sc : 0.0f;
        return OTL_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        int keep = otl_get_f(m->data, m->dtype, i) != 0;
        otl_set_f(dx->data, dx->dtype, i, keep ? otl_get_f(dy->data, dy->dtype, i) * scale : 0.0);
    }
    return OTL_OK;
}

const otl_op otl_op_DropoutGrad = {
    .op_type = "DropoutGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = dropout_grad_infer, .forward = dropout_grad_forward,
};
