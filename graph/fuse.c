/* fuse.c - inference-time graph rewrites: fold BatchNormalization into the preceding Conv and
 * fuse Conv with what follows it (an activation, a residual Add, Add+Relu) into one
 * onnx_tl.FusedConv node that oneDNN runs with post-ops.
 *
 * The result is a shallow view of the model's graph: it shares inputs, outputs, value_info,
 * initializers and untouched nodes with the original and owns only what it created (fused
 * nodes, folded weights). The user's model is never modified.
 * Training graphs (otl_fuse_training) are fused where the backward does not read the values a
 * fusion removes: every fused intermediate must have the next op of the chain as its only
 * consumer, which a gradient node reading it would break; so what gets fused is, in practice,
 * the frozen part (a frozen backbone then costs an inference pass) and Conv+Relu pairs whose
 * gradient reads only Relu's output. Trainable parameters are graph inputs there and never
 * count as constants; BatchNormalization is folded only with frozen (running) statistics.
 * Training graphs also get two rewrites of their own around BatchNormalization: BatchNormalization
 * + Relu fused with the backward applying the ReLU mask (fuse_bn_relu), and the normalized and
 * activated output recomputed in the backward instead of kept alive (recompute_acts).
 * Inference graphs mark their convolution chains for oneDNN's nChw16c layout (mark_blocked), and
 * so do training graphs in their frozen part, where no value depends on a trainable parameter
 * (grad_values; src/exec.c runs those nodes as in inference: otl_no_grad_nodes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/fuse.h"
#include "src/strmap.h"
#include "src/util.h"

void otl_fused_free(otl_fused *f)
{
    if (!f)
        return;
    if (f->g) {
        free(f->g->nodes);
        free(f->g->inits);
        free(f->g);
    }
    for (int i = 0; i < f->n_nodes; i++)
        otl_node_free(f->nodes[i]);
    free(f->nodes);
    for (int i = 0; i < f->n_inits; i++)
        otl_tensor_free(f->inits[i]);
    free(f->inits);
    free(f);
}

static int is_default(const otl_node *n)
{
    return !*n->domain || strcmp(n->domain, "ai.onnx") == 0;
}

typedef struct fctx {
    const otl_model *m;
    const otl_graph *g;
    otl_fused *f;
    otl_strmap uses;      /* value -> number of consumers (graph outputs count as many) */
    otl_strmap producer;  /* value -> node index */
    char *dead;           /* per original node: replaced */
    int failed;
    int training;         /* a training graph: graph inputs (parameters) are not constants */
    int bn_training;      /* BatchNormalization uses batch statistics: never folded */
    otl_strmap grad;      /* training: values that depend on a trainable parameter (grad_values) */
} fctx;

static int uses(const fctx *c, const char *name)
{
    return otl_strmap_get(&c->uses, name, 0);
}

static const otl_node *sole_consumer(const fctx *c, const char *name, int *idx)
{
    if (uses(c, name) != 1)
        return NULL;
    for (int i = 0; i < c->g->n_nodes; i++) {
        const otl_node *n = c->g->nodes[i];
        if (c->dead[i])
            continue;
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0) {
                *idx = i;
                return n;
            }
    }
    return NULL;
}

/* Values of g that depend on a trainable parameter (see otl_no_grad_nodes) into r (value -> 1),
 * and per node (when `node` is not NULL) whether one of its inputs does. 0 when out of memory. */
static int grad_values(const otl_graph *g, otl_strmap *r, char *node)
{
    size_t pl = strlen(OTL_GRAD_PREFIX);
    if (!otl_strmap_init(r, (size_t)g->n_nodes * 2 + 16))
        return 0;
    for (int i = 0; i < g->n_outputs; i++) {
        const char *o = g->outputs[i]->name;
        if (strncmp(o, OTL_GRAD_PREFIX, pl) != 0)
            continue;
        for (int k = 0; k < g->n_inputs; k++)
            if (strcmp(g->inputs[k]->name, o + pl) == 0 && !otl_strmap_put(r, g->inputs[k]->name, 1))
                return 0;
    }
    if (r->n == 0) /* no trainable parameter */
        return 1;
    /* nodes mostly come in topological order: a second sweep usually finds nothing new */
    char *done = calloc((size_t)g->n_nodes + 1, 1);
    if (!done)
        return 0;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *n = g->nodes[i];
            int dep = 0;
            for (int k = 0; !done[i] && k < n->n_inputs && !dep; k++)
                dep = *n->inputs[k] && otl_strmap_has(r, n->inputs[k]);
            if (!dep)
                continue;
            done[i] = 1;
            changed = 1;
            for (int k = 0; k < n->n_outputs; k++)
                if (*n->outputs[k] && !otl_strmap_put(r, n->outputs[k], 1)) {
                    free(done);
                    return 0;
                }
        }
    }
    if (node)
        memcpy(node, done, (size_t)g->n_nodes);
    free(done);
    return 1;
}

/* OTL_FROZEN_INFER=0: every node of a training graph runs as a training node (the behaviour
 * before per-node frozen parts; tests compare both). */
/* A switch variable is on when set to anything but "" or "0" (OTL_NO_QCONV=0 is off). */
static int env_on(const char *name)
{
    const char *e = getenv(name);
    return e && *e && strcmp(e, "0") != 0;
}

static int frozen_infer(void)
{
    const char *e = getenv("OTL_FROZEN_INFER");
    return !(e && strcmp(e, "0") == 0);
}

char *otl_no_grad_nodes(const otl_graph *g)
{
    if (!frozen_infer())
        return calloc((size_t)g->n_nodes + 1, 1);
    char *ng = malloc((size_t)g->n_nodes + 1);
    otl_strmap r = {0};
    if (!ng || !grad_values(g, &r, ng)) {
        free(ng);
        if (r.cap)
            otl_strmap_free(&r);
        return NULL;
    }
    for (int i = 0; i < g->n_nodes; i++)
        ng[i] = r.n == 0 || !ng[i];
    otl_strmap_free(&r);
    return ng;
}

static const otl_tensor *init_of(const fctx *c, const char *name)
{
    /* an initializer, a tensor this pass made, a Constant node's tensor (PyTorch exports Clip bounds
       that way), or any of these behind Identity nodes (PyTorch's exports without constant folding,
       e.g. in training mode, read every weight through one) */
    for (int depth = 0; name && *name && depth < 16; depth++) {
        for (int i = 0; c->training && i < c->g->n_inputs; i++)
            if (strcmp(c->g->inputs[i]->name, name) == 0)
                return NULL; /* fed at run time (a trainable parameter) */
        const otl_tensor *t = otl_graph_find_init(c->g, name);
        if (t)
            return t;
        for (int i = 0; i < c->f->n_inits; i++)
            if (strcmp(c->f->inits[i]->name, name) == 0)
                return c->f->inits[i];
        int p = otl_strmap_get(&c->producer, name, -1);
        const otl_node *n = p >= 0 ? c->g->nodes[p] : NULL;
        if (!n || !is_default(n))
            return NULL;
        if (strcmp(n->op_type, "Constant") == 0) {
            const otl_attr *a = otl_node_attr(n, "value");
            return a && a->type == OTL_ATTR_TENSOR ? a->t : NULL;
        }
        if (strcmp(n->op_type, "Identity") != 0 || n->n_inputs != 1)
            return NULL;
        name = n->inputs[0];
    }
    return NULL;
}

static otl_tensor *own_init(fctx *c, otl_tensor *t)
{
    otl_tensor **a = t ? realloc(c->f->inits, (size_t)(c->f->n_inits + 1) * sizeof *a) : NULL;
    if (!a) {
        otl_tensor_free(t);
        c->failed = 1;
        return NULL;
    }
    c->f->inits = a;
    a[c->f->n_inits++] = t;
    return t;
}

static otl_node *own_node(fctx *c, otl_node *n)
{
    otl_node **a = n ? realloc(c->f->nodes, (size_t)(c->f->n_nodes + 1) * sizeof *a) : NULL;
    if (!a) {
        otl_node_free(n);
        c->failed = 1;
        return NULL;
    }
    c->f->nodes = a;
    a[c->f->n_nodes++] = n;
    return n;
}

/* Activation attributes of a node FusedConv can absorb; 0 when it cannot. */
static int activation_of(const fctx *c, const otl_node *n, const char **act, float *params, int *n_params)
{
    *n_params = 0;
    if (!is_default(n) || n->n_outputs != 1)
        return 0;
    if (strcmp(n->op_type, "Relu") == 0 || strcmp(n->op_type, "HardSwish") == 0 ||
        strcmp(n->op_type, "Sigmoid") == 0 || strcmp(n->op_type, "Tanh") == 0) {
        *act = n->op_type;
        return 1;
    }
    if (strcmp(n->op_type, "LeakyRelu") == 0) {
        const otl_attr *a = otl_node_attr(n, "alpha");
        *act = n->op_type;
        params[0] = a ? a->f : 0.01f;
        *n_params = 1;
        return 1;
    }
    if (strcmp(n->op_type, "Clip") == 0) {
        float lo = -INFINITY, hi = INFINITY;
        if (otl_model_opset(c->m, "") < 11) {
            const otl_attr *a = otl_node_attr(n, "min"), *b = otl_node_attr(n, "max");
            lo = a ? a->f : lo;
            hi = b ? b->f : hi;
        } else {
            for (int k = 1; k < 3 && k < n->n_inputs; k++) {
                if (!*n->inputs[k])
                    continue;
                const otl_tensor *t = init_of(c, n->inputs[k]);
                if (!t || t->dtype != OTL_DTYPE_FLOAT || t->numel != 1)
                    return 0;
                float v = *(const float *)t->data;
                if (k == 1)
                    lo = v;
                else
                    hi = v;
            }
        }
        *act = "Clip";
        params[0] = lo;
        params[1] = hi;
        *n_params = 2;
        return 1;
    }
    return 0;
}

/* Ops whose output has the shape of their (first) input in a CNN: a residual operand made by one
 * of them has the conv output's shape whenever the Add does not broadcast in practice. */
static int same_shape_producer(const fctx *c, const char *name)
{
    static const char *const ops[] = {"Conv", "BatchNormalization", "Relu", "Clip", "HardSwish",
                                      "LeakyRelu", "Add", "MaxPool", "AveragePool", "Sigmoid", NULL};
    int p = otl_strmap_get(&c->producer, name, -1);
    if (p < 0)
        return 0;
    const otl_node *n = c->g->nodes[p];
    if (strcmp(n->domain, "onnx_tl") == 0 && strcmp(n->op_type, "FusedConv") == 0)
        return 1;
    if (!is_default(n))
        return 0;
    for (int i = 0; ops[i]; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return 1;
    return 0;
}

/* Fold BatchNormalization (inference) into the conv's weights: W' = W * s, B' = (B - mean) * s + beta,
 * s = gamma / sqrt(var + eps). Returns 1 and the new weight/bias names on success. */
static int fold_bn(fctx *c, const otl_node *conv, const otl_node *bn, const char **w_name, const char **b_name)
{
    if (!is_default(bn) || bn->n_inputs < 5 || bn->n_outputs < 1 || c->bn_training)
        return 0;
    for (int k = 1; k < bn->n_outputs; k++)
        if (*bn->outputs[k])
            return 0;
    const otl_attr *tm = otl_node_attr(bn, "training_mode");
    if (tm && tm->i)
        return 0;
    const otl_tensor *w = init_of(c, conv->inputs[1]);
    const otl_tensor *b = conv->n_inputs > 2 && *conv->inputs[2] ? init_of(c, conv->inputs[2]) : NULL;
    const otl_tensor *p[4];
    for (int k = 0; k < 4; k++)
        p[k] = init_of(c, bn->inputs[1 + k]);
    if (!w || w->dtype != OTL_DTYPE_FLOAT || w->rank < 3 || (conv->n_inputs > 2 && *conv->inputs[2] && !b))
        return 0;
    int64_t oc = w->dims[0], per = oc ? w->numel / oc : 0;
    for (int k = 0; k < 4; k++)
        if (!p[k] || p[k]->dtype != OTL_DTYPE_FLOAT || p[k]->numel != oc)
            return 0;
    if (b && (b->dtype != OTL_DTYPE_FLOAT || b->numel != oc))
        return 0;
    const otl_attr *ea = otl_node_attr(bn, "epsilon");
    double eps = ea ? ea->f : 1e-5;
    char name[600];
    snprintf(name, sizeof name, "%s::folded_w", bn->name);
    otl_tensor *nw = own_init(c, otl_tensor_new(name, OTL_DTYPE_FLOAT, w->rank, w->dims));
    snprintf(name, sizeof name, "%s::folded_b", bn->name);
    otl_tensor *nb = own_init(c, otl_tensor_new(name, OTL_DTYPE_FLOAT, 1, &oc));
    if (!nw || !nb || !(nw->data = malloc(w->nbytes ? w->nbytes : 1)) || !(nb->data = malloc((size_t)oc * 4 + 4))) {
        c->failed = 1;
        return 0;
    }
    nw->nbytes = w->nbytes;
    nb->nbytes = (size_t)oc * 4;
    const float *W = w->data, *B = b ? b->data : NULL, *gam = p[0]->data, *bet = p[1]->data,
                *mean = p[2]->data, *var = p[3]->data;
    float *NW = nw->data, *NB = nb->data;
    for (int64_t o = 0; o < oc; o++) {
        double s = gam[o] / sqrt((double)var[o] + eps);
        for (int64_t j = 0; j < per; j++)
            NW[o * per + j] = (float)(W[o * per + j] * s);
        NB[o] = (float)(((B ? B[o] : 0.0) - mean[o]) * s + bet[o]);
    }
    *w_name = nw->name;
    *b_name = nb->name;
    return 1;
}

static int copy_attrs(otl_node *dst, const otl_node *src)
{
    for (int i = 0; i < src->n_attrs; i++) {
        const otl_attr *a = &src->attrs[i];
        otl_attr *d;
        if (otl_node_add_attr(dst, a->name, a->type, &d))
            return 0;
        d->f = a->f;
        d->i = a->i;
        if (a->s.data && !(d->s.data = otl_memdup(a->s.data, a->s.len + 1)))
            return 0;
        d->s.len = a->s.len;
        if (a->n_ints && !(d->ints = otl_memdup(a->ints, a->n_ints * sizeof *a->ints)))
            return 0;
        d->n_ints = a->n_ints;
        if (a->n_floats && !(d->floats = otl_memdup(a->floats, a->n_floats * sizeof *a->floats)))
            return 0;
        d->n_floats = a->n_floats;
        if (a->type != OTL_ATTR_INT && a->type != OTL_ATTR_INTS && a->type != OTL_ATTR_FLOAT &&
            a->type != OTL_ATTR_FLOATS && a->type != OTL_ATTR_STRING)
            return 0;
    }
    return 1;
}

/* Try to fuse the Conv at index ci; returns the fused node (owned) or NULL. */
static otl_node *fuse_conv(fctx *c, int ci)
{
    const otl_node *conv = c->g->nodes[ci];
    if (!is_default(conv) || strcmp(conv->op_type, "Conv") != 0 || conv->n_inputs < 2 || conv->n_outputs != 1)
        return NULL;
    const char *x = conv->inputs[0], *w = conv->inputs[1];
    const char *b = conv->n_inputs > 2 ? conv->inputs[2] : "";
    const char *y = conv->outputs[0], *z = "", *act = "";
    float params[2];
    int n_params = 0, idx, bn_i = -1, add_i = -1, act_i = -1;
    const otl_node *next = sole_consumer(c, y, &idx);
    if (next && is_default(next) && strcmp(next->op_type, "BatchNormalization") == 0 &&
        strcmp(next->inputs[0], y) == 0 && fold_bn(c, conv, next, &w, &b)) {
        bn_i = idx;
        y = next->outputs[0];
        next = sole_consumer(c, y, &idx);
    }
    if (next && is_default(next) && strcmp(next->op_type, "Add") == 0 && next->n_inputs == 2 &&
        strcmp(next->inputs[0], next->inputs[1]) != 0) {
        const char *other = strcmp(next->inputs[0], y) == 0 ? next->inputs[1] : next->inputs[0];
        if (same_shape_producer(c, other)) {
            z = other;
            add_i = idx;
            y = next->outputs[0];
            next = sole_consumer(c, y, &idx);
        }
    }
    if (next && activation_of(c, next, &act, params, &n_params)) {
        act_i = idx;
        y = next->outputs[0];
    }
    if (bn_i < 0 && add_i < 0 && act_i < 0)
        return NULL;
    char name[600];
    snprintf(name, sizeof name, "%s::fused", conv->name);
    otl_node *f = own_node(c, otl_node_new(name, "FusedConv", "onnx_tl"));
    const char *in[4] = {x, w, b, z}, *out[1] = {y};
    int n_in = *z ? 4 : (*b ? 3 : 2);
    otl_attr *a;
    int bad = !f || otl_node_set_io(f, n_in, in, 1, out) || !copy_attrs(f, conv) ||
              otl_node_add_attr(f, "activation", OTL_ATTR_STRING, &a);
    if (!bad) {
        a->s.data = (uint8_t *)otl_strdup(act);
        a->s.len = strlen(act);
        bad = !a->s.data || otl_node_add_attr(f, "activation_params", OTL_ATTR_FLOATS, &a);
    }
    if (!bad && n_params) {
        a->floats = otl_memdup(params, (size_t)n_params * sizeof(float));
        a->n_floats = (size_t)n_params;
        bad = !a->floats;
    }
    if (bad) {
        c->failed = 1;
        return NULL;
    }
    c->dead[ci] = 1;
    if (bn_i >= 0)
        c->dead[bn_i] = 1;
    if (add_i >= 0)
        c->dead[add_i] = 1;
    if (act_i >= 0)
        c->dead[act_i] = 1;
    return f;
}

/* The DequantizeLinear producing `name` (live, standard domain, output 0), or NULL. */
static const otl_node *dq_of(const fctx *c, const char *name, int *idx)
{
    int p = otl_strmap_get(&c->producer, name, -1);
    const otl_node *n = p >= 0 && !c->dead[p] ? c->g->nodes[p] : NULL;
    if (!n || !is_default(n) || strcmp(n->op_type, "DequantizeLinear") != 0 || n->n_inputs < 2 ||
        strcmp(n->outputs[0], name) != 0)
        return NULL;
    *idx = p;
    return n;
}

/* DequantizeLinear's axis is 0 (default 1). */
static int dq_axis0(const otl_node *n)
{
    const otl_attr *a = otl_node_attr(n, "axis");
    return a && a->type == OTL_ATTR_INT && a->i == 0;
}

/* DequantizeLinear(x uint8/int8, scalar scale and zero point given) + DequantizeLinear(w int8
 * initializer, scale per output channel (axis 0) or scalar, zero point 0) -> Conv [-> Relu]
 * [-> QuantizeLinear (scalar scale and uint8/int8 zero point given)], with no bias, a float one or
 * a dequantized one, as one onnx_tl.QDQConv (ops/conv_int8.c: a oneDNN int8 convolution, writing
 * the quantized tensor itself when the QuantizeLinear is absorbed; OTL_NO_QCONV_Q=1 keeps it apart).
 * Inference only; OTL_NO_QCONV=1 disables it. Returns the node (owned) or NULL. */
static otl_node *fuse_qdq_conv(fctx *c, int ci)
{
    const otl_node *conv = c->g->nodes[ci];
    if (c->training || !is_default(conv) || strcmp(conv->op_type, "Conv") != 0 || conv->n_inputs < 2 ||
        conv->n_outputs != 1 || env_on("OTL_NO_QCONV"))
        return NULL;
    int xi, wi, idx;
    const otl_node *dx = dq_of(c, conv->inputs[0], &xi), *dw = dq_of(c, conv->inputs[1], &wi);
    if (!dx || !dw)
        return NULL;
    const otl_tensor *xs = init_of(c, dx->inputs[1]), *xz = dx->n_inputs > 2 ? init_of(c, dx->inputs[2]) : NULL;
    const otl_tensor *wq = init_of(c, dw->inputs[0]), *ws = init_of(c, dw->inputs[1]);
    const otl_tensor *wz = dw->n_inputs > 2 ? init_of(c, dw->inputs[2]) : NULL;
    if (!xs || xs->dtype != OTL_DTYPE_FLOAT || xs->numel != 1 || init_of(c, dx->inputs[0]) ||
        !xz || xz->numel != 1 || (xz->dtype != OTL_DTYPE_UINT8 && xz->dtype != OTL_DTYPE_INT8) ||
        !wq || wq->dtype != OTL_DTYPE_INT8 || wq->rank < 3 || !ws || ws->dtype != OTL_DTYPE_FLOAT ||
        (ws->numel != 1 && (ws->numel != wq->dims[0] || !dq_axis0(dw))) ||
        (dw->n_inputs > 2 && *dw->inputs[2] && !wz))
        return NULL;
    if (wz) {
        if (wz->dtype != OTL_DTYPE_INT8 || !wz->data)
            return NULL;
        for (int64_t i = 0; i < wz->numel; i++)
            if (((const int8_t *)wz->data)[i] != 0)
                return NULL;
    }
    const char *b = conv->n_inputs > 2 ? conv->inputs[2] : "";
    if (*b) { /* a float initializer, or a DequantizeLinear (int32 bias) the executor folds */
        const otl_tensor *bt = init_of(c, b);
        int bi;
        if ((!bt || bt->dtype != OTL_DTYPE_FLOAT) && !dq_of(c, b, &bi))
            return NULL;
    }
    const char *y = conv->outputs[0], *act = "";
    const otl_node *next = sole_consumer(c, y, &idx);
    int act_i = -1;
    if (next && is_default(next) && strcmp(next->op_type, "Relu") == 0 && next->n_outputs == 1) {
        act_i = idx;
        act = "Relu";
        y = next->outputs[0];
    }
    int q_i = -1;
    const otl_node *q = env_on("OTL_NO_QCONV_Q") ? NULL : sole_consumer(c, y, &idx);
    if (q && is_default(q) && strcmp(q->op_type, "QuantizeLinear") == 0 && q->n_inputs == 3 && q->n_outputs == 1 &&
        strcmp(q->inputs[0], y) == 0) {
        const otl_tensor *ys = init_of(c, q->inputs[1]), *yz = init_of(c, q->inputs[2]);
        if (ys && ys->dtype == OTL_DTYPE_FLOAT && ys->numel == 1 && ys->data && yz && yz->numel == 1 &&
            (yz->dtype == OTL_DTYPE_UINT8 || yz->dtype == OTL_DTYPE_INT8) && ((const float *)ys->data)[0] > 0)
            q_i = idx;
    }
    char name[600];
    snprintf(name, sizeof name, "%s::qdq", conv->name);
    otl_node *f = own_node(c, otl_node_new(name, "QDQConv", "onnx_tl"));
    const char *in[8] = {dx->inputs[0], dx->inputs[1], dx->n_inputs > 2 ? dx->inputs[2] : "", dw->inputs[0],
                         dw->inputs[1], b, q_i >= 0 ? q->inputs[1] : "", q_i >= 0 ? q->inputs[2] : ""};
    const char *out[1] = {q_i >= 0 ? q->outputs[0] : y};
    otl_attr *a;
    if (!f || otl_node_set_io(f, q_i >= 0 ? 8 : *b ? 6 : 5, in, 1, out) || !copy_attrs(f, conv) ||
        otl_node_add_attr(f, "activation", OTL_ATTR_STRING, &a) || !(a->s.data = (uint8_t *)otl_strdup(act))) {
        c->failed = 1;
        return NULL;
    }
    a->s.len = strlen(act);
    c->dead[ci] = 1;
    if (act_i >= 0)
        c->dead[act_i] = 1;
    if (q_i >= 0)
        c->dead[q_i] = 1;
    if (uses(c, conv->inputs[0]) == 1)
        c->dead[xi] = 1;
    if (uses(c, conv->inputs[1]) == 1)
        c->dead[wi] = 1;
    return f;
}

/* ints attribute `name` of n equal to v[0..n) (absent counts as `dflt` for every element). */
static int attr_ints_are(const otl_node *n, const char *name, int64_t dflt, int count)
{
    const otl_attr *a = otl_node_attr(n, name);
    if (!a)
        return 1;
    if (a->type != OTL_ATTR_INTS || (int)a->n_ints != count)
        return 0;
    for (int i = 0; i < count; i++)
        if (a->ints[i] != dflt)
            return 0;
    return 1;
}

static int attr_int_is(const otl_node *n, const char *name, int64_t dflt, int64_t v)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a ? a->type == OTL_ATTR_INT && a->i == v : dflt == v;
}

/* A FusedConv made by fuse_conv that has no residual input, plain 2-D geometry, and weights
 * (M, wc, kh, kw) held in an initializer; returns the weights. */
static const otl_tensor *plain_fused(const fctx *c, const otl_node *n, int64_t kh)
{
    if (!n || strcmp(n->op_type, "FusedConv") != 0 || n->n_inputs > 3 || n->n_outputs != 1)
        return NULL;
    const otl_tensor *w = init_of(c, n->inputs[1]);
    if (!w || w->dtype != OTL_DTYPE_FLOAT || w->rank != 4 || w->dims[2] != kh || w->dims[3] != kh)
        return NULL;
    const otl_attr *ap = otl_node_attr(n, "auto_pad");
    if (ap && !(ap->type == OTL_ATTR_STRING && ap->s.len == 6 && memcmp(ap->s.data, "NOTSET", 6) == 0))
        return NULL;
    if (!attr_ints_are(n, "dilations", 1, 2))
        return NULL;
    return w;
}

static int copy_act(otl_node *dst, const otl_node *src, const char *act_name, const char *params_name)
{
    const otl_attr *a = otl_node_attr(src, "activation");
    const otl_attr *p = otl_node_attr(src, "activation_params");
    otl_attr *d;
    if (otl_node_add_attr(dst, act_name, OTL_ATTR_STRING, &d))
        return 0;
    const char *s = a && a->s.data ? (const char *)a->s.data : "";
    d->s.len = strlen(s);
    if (!(d->s.data = (uint8_t *)otl_strdup(s)))
        return 0;
    if (p && p->n_floats) {
        if (otl_node_add_attr(dst, params_name, OTL_ATTR_FLOATS, &d) ||
            !(d->floats = otl_memdup(p->floats, p->n_floats * sizeof *p->floats)))
            return 0;
        d->n_floats = p->n_floats;
    }
    return 1;
}

/* MobileNet's expand + depthwise pair: a fused 1x1 convolution whose only consumer is a fused
 * 3x3 depthwise convolution (stride 1 or 2, padding 1) becomes one onnx_tl.FusedConvDw (oneDNN
 * depthwise post-op: the expanded tensor is never written out). */
static void fuse_dw(fctx *c, otl_node **slot, int n)
{
    /* opt-in (OTL_DW_FUSE=1): with oneDNN 2.6 on AVX-512 the depthwise post-op is either
       ref_fused_convolution (the two kernels in a row) or jit_1x1 on channel-blocked layouts,
       and on mobilenet_v2 (batch 32, 2 threads) both were slower than the unfused pair
       (about 106 and 240 ms against 101 ms per batch) */
    const char *on = getenv("OTL_DW_FUSE");
    if (!on || !*on || strcmp(on, "0") == 0)
        return;
    for (int i = 0; i < n && !c->failed; i++) {
        const otl_node *f1 = slot[i];
        const otl_tensor *w1 = plain_fused(c, f1, 1);
        if (!w1 || !attr_ints_are(f1, "strides", 1, 2) || !attr_ints_are(f1, "pads", 0, 4) ||
            !attr_int_is(f1, "group", 1, 1) || uses(c, f1->outputs[0]) != 1)
            continue;
        int j = i + 1;
        while (j < n && !(slot[j] && slot[j]->n_inputs > 0 && strcmp(slot[j]->inputs[0], f1->outputs[0]) == 0))
            j++;
        if (j == n)
            continue;
        const otl_node *f2 = slot[j];
        const otl_tensor *w2 = plain_fused(c, f2, 3);
        int64_t m = w1->dims[0], stride = 0;
        const otl_attr *sa = otl_node_attr(f2, "strides");
        if (!sa)
            stride = 1;
        else if (sa->type == OTL_ATTR_INTS && sa->n_ints == 2 && sa->ints[0] == sa->ints[1])
            stride = sa->ints[0];
        const otl_attr *pa = otl_node_attr(f2, "pads"); /* absent means 0: FusedConvDw pads by 1 */
        if (!w2 || w2->dims[0] != m || w2->dims[1] != 1 || !attr_int_is(f2, "group", 1, m) ||
            (stride != 1 && stride != 2) || !pa || !attr_ints_are(f2, "pads", 1, 4))
            continue;
        char name[600];
        snprintf(name, sizeof name, "%s::dw", f1->name);
        otl_node *f = own_node(c, otl_node_new(name, "FusedConvDw", "onnx_tl"));
        const char *in[5] = {f1->inputs[0], f1->inputs[1], f1->n_inputs > 2 ? f1->inputs[2] : "", f2->inputs[1],
                             f2->n_inputs > 2 ? f2->inputs[2] : ""};
        const char *out[1] = {f2->outputs[0]};
        otl_attr *a;
        if (!f || otl_node_set_io(f, 5, in, 1, out) || !copy_act(f, f1, "activation", "activation_params") ||
            !copy_act(f, f2, "dw_activation", "dw_activation_params") ||
            otl_node_add_attr(f, "dw_stride", OTL_ATTR_INT, &a)) {
            c->failed = 1;
            return;
        }
        a->i = stride;
        slot[i] = f;
        slot[j] = NULL;
    }
}

/* Inference: convolutions whose outputs only pooling and other such convolutions read (or that
 * are graph outputs) get the FusedConv attribute out_blocked = 1: ops/conv.c then writes oneDNN's
 * nChw16c layout, on which the next convolution runs oneDNN's jit kernels without a reorder (a
 * plain Conv becomes a FusedConv without activation to carry it). Only convolutions whose shapes
 * suit those kernels (blk_conv) take part. A convolution read by anything
 * else (a broadcasting Mul in a squeeze-excitation block, the Sigmoid of a SiLU, ...: oneDNN 2.6
 * has only reference kernels for some of them on nChw16c) keeps oneDNN's preferred layout, and
 * so do, to the fixpoint, the convolutions that feed it (no reorder between the two layouts in
 * the middle of a chain). OTL_CONV_BLK=0 (read in ops/conv.c) turns the layout off. */
static const otl_node *live_node(const fctx *c, otl_node **slot, int i)
{
    return slot[i] ? slot[i] : c->dead[i] ? NULL : c->g->nodes[i];
}

/* A 2-D convolution with constant weights whose channel counts suit oneDNN's nChw16c kernels:
 * group 1 with at least 16 input channels (fewer only from a graph input: the first layer reads
 * it plain) and at least 16 output channels, a multiple of 8 (24 pads to 32); or depthwise over a
 * multiple of 16 channels. */
static int blk_conv(const fctx *c, const otl_node *n)
{
    if (!n || n->n_outputs != 1 || n->n_inputs < 2 ||
        !((strcmp(n->domain, "onnx_tl") == 0 && strcmp(n->op_type, "FusedConv") == 0) ||
          (is_default(n) && strcmp(n->op_type, "Conv") == 0)))
        return 0;
    const otl_tensor *w = init_of(c, n->inputs[1]);
    const otl_attr *ga = otl_node_attr(n, "group");
    int64_t g = ga && ga->type == OTL_ATTR_INT ? ga->i : 1;
    if (!w || w->rank != 4 || g < 1)
        return 0;
    int64_t m = w->dims[0], cin = w->dims[1] * g;
    if (g > 1)
        return g == m && w->dims[1] == 1 && m % 16 == 0;
    int from_input = 0;
    for (int i = 0; i < c->g->n_inputs; i++)
        from_input |= strcmp(c->g->inputs[i]->name, n->inputs[0]) == 0;
    return m >= 16 && m % 8 == 0 && (cin >= 16 || from_input);
}

/* Pooling passes the layout on: 2 when n reads input k as a global pooling (its tiny output may
 * be reordered), 1 as a windowed pooling (its readers must be candidates too), else 0. */
static int blk_pool(const otl_node *n, int k)
{
    if (k != 0 || !is_default(n) || n->n_outputs < 1)
        return 0;
    if (strcmp(n->op_type, "GlobalAveragePool") == 0 || strcmp(n->op_type, "GlobalMaxPool") == 0)
        return 2;
    return (strcmp(n->op_type, "MaxPool") == 0 && n->n_outputs == 1) || strcmp(n->op_type, "AveragePool") == 0;
}

/* Every reader of value y is a candidate convolution (input X or FusedConv's residual Z) or a
 * pooling whose own readers are. */
static int blk_readers_ok(const fctx *c, otl_node **slot, const char *cand, int n, const char *y, int depth)
{
    for (int j = 0; j < n; j++) {
        const otl_node *r = live_node(c, slot, j);
        for (int k = 0; r && k < r->n_inputs; k++) {
            if (strcmp(r->inputs[k], y) != 0)
                continue;
            int pool = blk_pool(r, k);
            if (pool == 2 || (cand[j] && (k == 0 || (k == 3 && strcmp(r->domain, "onnx_tl") == 0))))
                continue;
            if (!pool || depth > 4 || !blk_readers_ok(c, slot, cand, n, r->outputs[0], depth + 1))
                return 0;
        }
    }
    return 1;
}

static void mark_blocked(fctx *c, otl_node **slot, int n)
{
    char *cand = calloc((size_t)n + 1, 1);
    if (!cand) {
        c->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const otl_node *cv = live_node(c, slot, i);
        cand[i] = blk_conv(c, cv) && !otl_node_attr(cv, "out_blocked");
        for (int k = 0; cand[i] && c->training && k < cv->n_inputs; k++) /* training: the frozen part only */
            cand[i] = !(*cv->inputs[k] && otl_strmap_has(&c->grad, cv->inputs[k]));
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (!cand[i])
                continue;
            if (!blk_readers_ok(c, slot, cand, n, live_node(c, slot, i)->outputs[0], 0))
                cand[i] = 0, changed = 1;
        }
    }
    for (int i = 0; i < n && !c->failed; i++) {
        if (!cand[i])
            continue;
        const otl_node *cv = live_node(c, slot, i);
        otl_node *f = slot[i];
        otl_attr *a;
        if (!f) { /* a plain Conv: a FusedConv without activation in its place; a FusedConv of the graph
                     itself: a copy (all its inputs, residual Z included, and attributes) */
            int is_fc = strcmp(cv->op_type, "FusedConv") == 0;
            char name[600];
            snprintf(name, sizeof name, "%s::fused", cv->name);
            f = own_node(c, otl_node_new(name, "FusedConv", "onnx_tl"));
            if (!f ||
                otl_node_set_io(f, is_fc || cv->n_inputs <= 3 ? cv->n_inputs : 3, (const char *const *)cv->inputs, 1,
                                (const char *const *)cv->outputs) ||
                !copy_attrs(f, cv) ||
                (!is_fc && (otl_node_add_attr(f, "activation", OTL_ATTR_STRING, &a) ||
                            !(a->s.data = (uint8_t *)otl_strdup(""))))) {
                c->failed = 1;
                break;
            }
            slot[i] = f;
        }
        if (otl_node_add_attr(f, "out_blocked", OTL_ATTR_INT, &a)) {
            c->failed = 1;
            break;
        }
        a->i = 1;
    }
    free(cand);
}

/* The node (not yet replaced) at index i when it is domain/op_type, else NULL. */
static const otl_node *live_op(const fctx *c, otl_node **slot, int i, const char *domain, const char *op_type)
{
    const otl_node *n = c->g->nodes[i];
    if (c->dead[i] || slot[i] || strcmp(n->op_type, op_type) != 0)
        return NULL;
    return (*domain ? strcmp(n->domain, domain) == 0 : is_default(n)) ? n : NULL;
}

/* Training: BatchNormalization -> Relu whose backward is ReluGrad(dR, relu output) ->
 * BatchNormalizationGrad becomes onnx_tl.BatchNormalizationRelu (oneDNN fuse_norm_relu: one pass
 * over the data, a bit mask kept for the backward) and BatchNormalizationGrad(dR, ..., mask),
 * which applies the mask itself: Relu and ReluGrad disappear. Only when the BatchNormalization
 * output feeds nothing but the Relu, the ReluGrad reads the Relu's output (use_dst) and its
 * result feeds nothing but that BatchNormalizationGrad; without any backward (a frozen part) the
 * forward pair alone is fused. OTL_BN_RELU_FUSE=0 turns it off (tests compare both). */
static void fuse_bn_relu(fctx *c, otl_node **slot, int n)
{
    const char *on = getenv("OTL_BN_RELU_FUSE");
    if (on && *on && strcmp(on, "0") == 0)
        return;
    for (int i = 0; i < n && !c->failed; i++) {
        const otl_node *bn = live_op(c, slot, i, "", "BatchNormalization");
        if (!bn || bn->n_inputs != 5 || bn->n_outputs < 1 || bn->n_outputs > 5 || !otl_strmap_get(&c->uses, bn->outputs[0], 0))
            continue;
        const otl_attr *sp = otl_node_attr(bn, "spatial");
        int ri = -1, gi = -1, bi = -1;
        if ((sp && !(sp->type == OTL_ATTR_INT && sp->i == 1)) || !sole_consumer(c, bn->outputs[0], &ri) ||
            !live_op(c, slot, ri, "", "Relu"))
            continue;
        const otl_node *relu = c->g->nodes[ri];
        if (relu->n_inputs != 1 || relu->n_outputs != 1)
            continue;
        const char *r = relu->outputs[0];
        const char *sm = bn->n_outputs == 5 ? bn->outputs[3] : "";
        int ok = 1;
        for (int j = 0; j < n && ok; j++) {
            const otl_node *q = c->g->nodes[j];
            if (c->dead[j] || strcmp(q->domain, "onnx_tl") != 0)
                continue;
            if (strcmp(q->op_type, "ReluGrad") == 0 && q->n_inputs == 2 && strcmp(q->inputs[1], r) == 0) {
                const otl_attr *ud = otl_node_attr(q, "use_dst");
                ok = gi < 0 && !slot[j] && ud && ud->type == OTL_ATTR_INT && ud->i == 1 && q->n_outputs == 1;
                gi = j;
            } else if (*sm && strcmp(q->op_type, "BatchNormalizationGrad") == 0 && q->n_inputs == 7 &&
                       strcmp(q->inputs[5], sm) == 0) {
                ok = bi < 0 && !slot[j] && strcmp(q->inputs[1], bn->inputs[0]) == 0;
                bi = j;
            }
        }
        if (!ok || (gi < 0) != (bi < 0))
            continue;
        int dyi = -1;
        if (gi >= 0 && (strcmp(c->g->nodes[bi]->inputs[0], c->g->nodes[gi]->outputs[0]) != 0 ||
                        !sole_consumer(c, c->g->nodes[gi]->outputs[0], &dyi) || dyi != bi))
            continue;
        char name[600], ws[640];
        snprintf(name, sizeof name, "%s::relu", bn->name);
        snprintf(ws, sizeof ws, "%s::relu_mask", bn->name);
        const char *out[6] = {r, "", "", "", "", ws};
        for (int k = 1; k < bn->n_outputs; k++)
            out[k] = bn->outputs[k];
        otl_node *f = own_node(c, otl_node_new(name, "BatchNormalizationRelu", "onnx_tl"));
        if (!f || otl_node_set_io(f, 5, (const char *const *)bn->inputs, 6, out) || !copy_attrs(f, bn)) {
            c->failed = 1;
            return;
        }
        slot[i] = f;
        c->dead[ri] = 1;
        if (gi < 0)
            continue;
        const otl_node *bg = c->g->nodes[bi];
        snprintf(name, sizeof name, "%s::relu", bg->name);
        otl_node *fg = own_node(c, otl_node_new(name, "BatchNormalizationGrad", "onnx_tl"));
        const char *in[8];
        for (int k = 0; k < 7; k++)
            in[k] = bg->inputs[k];
        in[0] = c->g->nodes[gi]->inputs[0];
        in[7] = ws;
        if (!fg || otl_node_set_io(fg, 8, in, bg->n_outputs, (const char *const *)bg->outputs) || !copy_attrs(fg, bg)) {
            c->failed = 1;
            return;
        }
        slot[bi] = fg;
        c->dead[gi] = 1;
    }
}

/* A copy of n (owned by the view) to edit, or NULL (out of memory: c->failed). n has no tensor or
 * graph attributes. */
static otl_node *own_copy(fctx *c, const otl_node *n)
{
    otl_node *f = own_node(c, otl_node_new(n->name, n->op_type, n->domain));
    if (!f || otl_node_set_io(f, n->n_inputs, (const char *const *)n->inputs, n->n_outputs,
                              (const char *const *)n->outputs) || !copy_attrs(f, n)) {
        c->failed = 1;
        return NULL;
    }
    return f;
}

/* Training: the output R of a BatchNormalization with batch or running statistics followed by a
 * Relu or Clip (min <= 0 <= max), or of a BatchNormalizationRelu, is read by backward nodes (the
 * next convolution's weights gradient, ClipGrad, MaxPoolGrad) while the BatchNormalizationGrad
 * keeps the normalization's input X alive anyway: those backward nodes read instead
 * BatchNormalizationRecompute(X, scale, B, saved mean, saved var) placed just before the first
 * of them, and R dies after the forward. That drops one activation tensor per such layer from the
 * peak (the end of the forward pass) for one inference-style pass in the backward.
 * By default only Relu outputs are recomputed (BatchNormalizationRelu: one fused pass, no
 * measurable cost on resnet18 for 8% less peak memory); a Clip (ReLU6) costs a separate Clip pass
 * per layer (mobilenet_v2: 35% less peak memory but a 14% slower step), so that is opt-in:
 * OTL_RECOMPUTE=1 recomputes both, OTL_RECOMPUTE=0 none. pre[j] receives the node to schedule
 * before node j. */
static void recompute_acts(fctx *c, otl_node **slot, otl_node **pre, int n)
{
    const char *on = getenv("OTL_RECOMPUTE");
    if (on && *on && strcmp(on, "0") == 0)
        return;
    int with_clip = on && strcmp(on, "1") == 0;
    int loss = -1; /* the loss node (src/train_graph.c): the backward follows it */
    for (int i = 0; i < n && loss < 0; i++)
        if (strcmp(c->g->nodes[i]->name, "onnx_tl::loss_node") == 0)
            loss = i;
    for (int i = 0; loss >= 0 && i < loss && !c->failed; i++) {
        const otl_node *bn = slot[i] ? slot[i] : (c->dead[i] ? NULL : c->g->nodes[i]);
        if (!bn || bn->n_inputs != 5 || bn->n_outputs < 5 || !*bn->outputs[3] || !*bn->outputs[4])
            continue;
        const char *r = NULL, *act = "";
        float lo = 0, hi = 0;
        if (slot[i] && strcmp(bn->op_type, "BatchNormalizationRelu") == 0) {
            r = bn->outputs[0];
            act = "Relu";
        } else if (!slot[i] && is_default(bn) && strcmp(bn->op_type, "BatchNormalization") == 0) {
            const otl_attr *sp = otl_node_attr(bn, "spatial");
            int ai = -1;
            const otl_node *a = sole_consumer(c, bn->outputs[0], &ai);
            float params[2];
            int n_params = 0;
            if ((sp && !(sp->type == OTL_ATTR_INT && sp->i == 1)) || !a || slot[ai] || ai > loss ||
                !activation_of(c, a, &act, params, &n_params))
                continue;
            if (strcmp(act, "Clip") == 0 && params[0] <= 0 && params[1] >= 0) {
                if (!with_clip)
                    continue;
                lo = params[0];
                hi = params[1];
            } else if (strcmp(act, "Relu") != 0) {
                continue;
            }
            r = a->outputs[0];
        } else {
            continue;
        }
        if (uses(c, r) >= 1000000) /* a graph output: alive to the end anyway */
            continue;
        int first = -1, x_read = 0;
        for (int j = loss + 1; j < n; j++) {
            const otl_node *q = slot[j] ? slot[j] : (c->dead[j] ? NULL : c->g->nodes[j]);
            for (int k = 0; q && k < q->n_inputs; k++) {
                if (strcmp(q->inputs[k], r) == 0 && first < 0)
                    first = j;
                x_read |= strcmp(q->inputs[k], bn->inputs[0]) == 0;
            }
        }
        if (first < 0 || !x_read || pre[first])
            continue;
        int copyable = 1;
        for (int j = first; j < n && copyable; j++) {
            const otl_node *q = slot[j] ? slot[j] : (c->dead[j] ? NULL : c->g->nodes[j]);
            int reads = 0;
            for (int k = 0; q && k < q->n_inputs; k++)
                reads |= strcmp(q->inputs[k], r) == 0;
            for (int a = 0; reads && !slot[j] && a < q->n_attrs; a++)
                copyable &= !q->attrs[a].t && !q->attrs[a].g && !q->attrs[a].n_tensors && !q->attrs[a].n_graphs;
        }
        if (!copyable)
            continue;
        char name[600], rn[640];
        snprintf(name, sizeof name, "%s::recompute", bn->name);
        snprintf(rn, sizeof rn, "%s::recomputed", r);
        const char *in[5] = {bn->inputs[0], bn->inputs[1], bn->inputs[2], bn->outputs[3], bn->outputs[4]};
        const char *out[1] = {rn};
        otl_node *f = own_node(c, otl_node_new(name, "BatchNormalizationRecompute", "onnx_tl"));
        const otl_attr *eps = otl_node_attr(bn, "epsilon");
        otl_attr *a;
        if (!f || otl_node_set_io(f, 5, in, 1, out) || otl_node_add_attr(f, "epsilon", OTL_ATTR_FLOAT, &a)) {
            c->failed = 1;
            return;
        }
        a->f = eps && eps->type == OTL_ATTR_FLOAT ? eps->f : 1e-5f;
        if (otl_node_add_attr(f, "activation", OTL_ATTR_STRING, &a) || !(a->s.data = (uint8_t *)otl_strdup(act))) {
            c->failed = 1;
            return;
        }
        a->s.len = strlen(act);
        if (otl_node_add_attr(f, "min", OTL_ATTR_FLOAT, &a)) {
            c->failed = 1;
            return;
        }
        a->f = lo;
        if (otl_node_add_attr(f, "max", OTL_ATTR_FLOAT, &a)) {
            c->failed = 1;
            return;
        }
        a->f = hi;
        /* every backward reader of r reads the recomputed value (copies of shared nodes) */
        for (int j = first; j < n; j++) {
            otl_node *q = slot[j];
            const otl_node *orig = q ? q : (c->dead[j] ? NULL : c->g->nodes[j]);
            int reads = 0;
            for (int k = 0; orig && k < orig->n_inputs; k++)
                reads |= strcmp(orig->inputs[k], r) == 0;
            if (!reads)
                continue;
            if (!q && !(q = own_copy(c, orig)))
                return; /* out of memory (c->failed) */
            slot[j] = q;
            for (int k = 0; k < q->n_inputs; k++)
                if (strcmp(q->inputs[k], r) == 0) {
                    char *nn = otl_strdup(rn);
                    if (!nn) {
                        c->failed = 1;
                        return;
                    }
                    free(q->inputs[k]);
                    q->inputs[k] = nn;
                }
        }
        pre[first] = f;
    }
}

static otl_status fuse(const otl_model *m, int training, int bn_training, otl_fused **out, otl_error *err)
{
    *out = NULL;
    const otl_graph *g = m->graph;
    const char *file = m->path ? m->path : "(model)";
    otl_fused *f = calloc(1, sizeof *f);
    fctx c = {.m = m, .g = g, .f = f, .training = training, .bn_training = bn_training};
    c.dead = calloc((size_t)g->n_nodes + 1, 1);
    int ok = f && c.dead && otl_strmap_init(&c.uses, (size_t)g->n_nodes * 2) &&
             otl_strmap_init(&c.producer, (size_t)g->n_nodes * 2) && (!training || grad_values(g, &c.grad, NULL));
    /* graphs with subgraphs are left alone (outer-scope uses are not counted here) */
    for (int i = 0; ok && i < g->n_nodes; i++)
        for (int a = 0; a < g->nodes[i]->n_attrs; a++)
            if (g->nodes[i]->attrs[a].g || g->nodes[i]->attrs[a].n_graphs)
                ok = -1;
    if (ok == 1) {
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *n = g->nodes[i];
            for (int k = 0; k < n->n_inputs; k++)
                if (*n->inputs[k])
                    otl_strmap_put(&c.uses, n->inputs[k], uses(&c, n->inputs[k]) + 1);
            for (int k = 0; k < n->n_outputs; k++)
                if (*n->outputs[k])
                    otl_strmap_put(&c.producer, n->outputs[k], i);
        }
        for (int i = 0; i < g->n_outputs; i++)
            otl_strmap_put(&c.uses, g->outputs[i]->name, 1000000);
    }
    otl_graph *fg = ok ? calloc(1, sizeof *fg) : NULL;
    if (fg) {
        *fg = *g;
        fg->nodes = calloc((size_t)g->n_nodes + 1, sizeof *fg->nodes);
        fg->n_nodes = 0;
        fg->inits = NULL;
        f->g = fg;
    }
    if (!fg || !fg->nodes) {
        if (c.dead)
            free(c.dead);
        if (c.uses.cap)
            otl_strmap_free(&c.uses);
        if (c.producer.cap)
            otl_strmap_free(&c.producer);
        if (c.grad.cap)
            otl_strmap_free(&c.grad);
        otl_fused_free(f);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    /* rewrite, keeping the original order (a fused node takes its conv's place; its residual
       input may come later in that order, which the executor's topological sort handles) */
    otl_node **slot = calloc((size_t)g->n_nodes + 1, sizeof *slot);
    otl_node **pre = calloc((size_t)g->n_nodes + 1, sizeof *pre); /* recomputations scheduled before node i */
    if (!slot || !pre)
        c.failed = 1;
    for (int i = 0; slot && ok == 1 && i < g->n_nodes && !c.failed; i++)
        if (!c.dead[i] && !(slot[i] = fuse_qdq_conv(&c, i)) && !c.failed)
            slot[i] = fuse_conv(&c, i);
    if (slot && ok == 1 && !c.failed)
        fuse_dw(&c, slot, g->n_nodes);
    if (slot && ok == 1 && !c.failed && (!training || frozen_infer()))
        mark_blocked(&c, slot, g->n_nodes);
    if (slot && ok == 1 && !c.failed && training)
        fuse_bn_relu(&c, slot, g->n_nodes);
    if (slot && pre && ok == 1 && !c.failed && training)
        recompute_acts(&c, slot, pre, g->n_nodes);
    int n_pre = 0;
    for (int i = 0; pre && i < g->n_nodes; i++)
        n_pre += pre[i] != NULL;
    if (n_pre) {
        otl_node **nn = realloc(fg->nodes, ((size_t)g->n_nodes + (size_t)n_pre + 1) * sizeof *nn);
        if (nn)
            fg->nodes = nn;
        else
            c.failed = 1;
    }
    for (int i = 0; slot && !c.failed && i < g->n_nodes; i++) {
        if (pre && pre[i])
            fg->nodes[fg->n_nodes++] = pre[i];
        if (slot[i])
            fg->nodes[fg->n_nodes++] = slot[i];
        else if (!c.dead[i])
            fg->nodes[fg->n_nodes++] = g->nodes[i];
    }
    free(slot);
    free(pre);
    fg->n_inits = g->n_inits + f->n_inits;
    fg->inits = calloc((size_t)fg->n_inits + 1, sizeof *fg->inits);
    if (fg->inits && g->n_inits)
        memcpy(fg->inits, g->inits, (size_t)g->n_inits * sizeof *fg->inits);
    if (fg->inits && f->n_inits)
        memcpy(fg->inits + g->n_inits, f->inits, (size_t)f->n_inits * sizeof *fg->inits);
    free(c.dead);
    otl_strmap_free(&c.uses);
    otl_strmap_free(&c.producer);
    if (c.grad.cap)
        otl_strmap_free(&c.grad);
    if (c.failed || !fg->inits) {
        otl_fused_free(f);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory while fusing", file);
    }
    *out = f;
    return OTL_OK;
}

otl_status otl_fuse_inference(const otl_model *m, otl_fused **out, otl_error *err)
{
    return fuse(m, 0, 0, out, err);
}

otl_status otl_fuse_training(const otl_model *m, int bn_training, otl_fused **out, otl_error *err)
{
    return fuse(m, 1, bn_training, out, err);
}
