/* train_graph.c - turn an inference model into a training graph: a loss on the first output,
 * trainable parameters promoted to graph inputs (so the planner never folds them), and the
 * gradient of each parameter as a graph output (graph/autodiff.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "graph/graph_edit.h"
#include "src/util.h"

#define TARGET_NAME "onnx_tl::target"
#define LOSS_NAME "onnx_tl::loss"

void otl_train_graph_free(otl_train_graph *t)
{
    if (!t)
        return;
    otl_model_free(t->m);
    free(t->target);
    free(t->loss);
    for (int i = 0; i < t->n_params; i++) {
        free(t->params[i]);
        if (t->grads)
            free(t->grads[i]);
    }
    free(t->params);
    free(t->grads);
    for (int i = 0; i < t->n_stats; i++) {
        free(t->stats[i]);
        free(t->stat_outs[i]);
    }
    free(t->stats);
    free(t->stat_outs);
    free(t);
}

static otl_status nomem(const char *file, otl_error *err)
{
    return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory building the training graph", file);
}

/* The tensor the loss reads: the output itself, or for cross-entropy the input of a final
 * Softmax/LogSoftmax over the last axis. */
static const char *loss_input(const otl_model *m, const otl_graph *g, int kind, const otl_value *out)
{
    if (kind != OTL_LOSS_CE)
        return out->name;
    int p = otl_graph_producer(g, out->name);
    if (p < 0)
        return out->name;
    const otl_node *n = g->nodes[p];
    if ((*n->domain && strcmp(n->domain, "ai.onnx")) ||
        (strcmp(n->op_type, "Softmax") != 0 && strcmp(n->op_type, "LogSoftmax") != 0) || n->n_inputs < 1)
        return out->name;
    const otl_attr *a = otl_node_attr(n, "axis");
    int64_t opset = otl_model_opset(m, "");
    int64_t axis = a ? a->i : (opset >= 13 ? -1 : 1);
    /* last axis of a (N, C) output either way */
    int rank = out->has_shape ? out->rank : -1;
    if (axis == -1 || (rank > 0 && axis == rank - 1) || (rank < 0 && axis == 1 && opset < 13))
        return n->inputs[0];
    return out->name;
}

static int add_opset(otl_model *m, const char *domain, int64_t version)
{
    if (otl_model_opset(m, domain) >= 0)
        return 1;
    otl_opset *o = realloc(m->opsets, (size_t)(m->n_opsets + 1) * sizeof *o);
    if (!o)
        return 0;
    m->opsets = o;
    o[m->n_opsets].domain = otl_strdup(domain);
    o[m->n_opsets].version = version;
    if (!o[m->n_opsets].domain)
        return 0;
    m->n_opsets++;
    return 1;
}

/* Give every BatchNormalization whose running mean/var (inputs 3, 4) are float initializers its
 * running-statistics outputs (1, 2), expose them as graph outputs and the initializers as graph
 * inputs (fed with the current values each step, never folded). 0 on allocation failure. */
static int add_bn_stats(otl_train_graph *t, otl_graph *g)
{
    int cap = 0;
    for (int i = 0; i < g->n_nodes; i++)
        cap += strcmp(g->nodes[i]->op_type, "BatchNormalization") == 0 && !*g->nodes[i]->domain ? 2 : 0;
    t->stats = calloc((size_t)cap + 1, sizeof *t->stats);
    t->stat_outs = calloc((size_t)cap + 1, sizeof *t->stat_outs);
    if (!t->stats || !t->stat_outs)
        return 0;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        if (strcmp(n->op_type, "BatchNormalization") != 0 || *n->domain || n->n_inputs < 5)
            continue;
        for (int k = 3; k < 5; k++) {
            const otl_tensor *init = otl_graph_find_init(g, n->inputs[k]);
            int seen = 0;
            for (int j = 0; j < t->n_stats; j++)
                seen |= strcmp(t->stats[j], n->inputs[k]) == 0;
            if (!init || !otl_dtype_is_float(init->dtype) || seen)
                continue;
            if (n->n_outputs < 3) {
                char **o = realloc(n->outputs, 3 * sizeof *o);
                if (!o)
                    return 0;
                n->outputs = o;
                for (int j = n->n_outputs; j < 3; j++)
                    o[j] = NULL;
                n->n_outputs = 3;
                for (int j = 1; j < 3; j++)
                    if (!o[j] && !(o[j] = otl_strdup("")))
                        return 0;
            }
            char **slot = &n->outputs[k - 2];
            if (!**slot) {
                size_t len = strlen(init->name) + 32;
                char *name = malloc(len);
                if (!name)
                    return 0;
                snprintf(name, len, "onnx_tl::bn_stat::%s", init->name);
                free(*slot);
                *slot = name;
            }
            t->stats[t->n_stats] = otl_strdup(init->name);
            t->stat_outs[t->n_stats] = otl_strdup(*slot);
            if (!t->stats[t->n_stats] || !t->stat_outs[t->n_stats]) {
                free(t->stats[t->n_stats]);
                free(t->stat_outs[t->n_stats]);
                return 0;
            }
            t->n_stats++;
            if (!otl_graph_is_output(g, *slot)) {
                otl_value *ov = otl_value_new_tensor(*slot, init->dtype, init->rank, init->dims, NULL);
                if (!ov || otl_graph_add_output(g, ov)) {
                    otl_value_free(ov);
                    return 0;
                }
            }
            if (!otl_graph_is_input(g, init->name)) {
                otl_value *iv = otl_value_new_tensor(init->name, init->dtype, init->rank, init->dims, NULL);
                if (!iv || otl_graph_add_input(g, iv)) {
                    otl_value_free(iv);
                    return 0;
                }
            }
        }
    }
    return 1;
}

otl_status otl_train_graph_build(otl_train_graph **out, const otl_model *src, const otl_grad_spec *spec,
                                 otl_error *err)
{
    *out = NULL;
    const char *file = src->path ? src->path : "(model)";
    if (!src->graph || src->graph->n_outputs < 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no output to train", file);
    otl_train_graph *t = calloc(1, sizeof *t);
    if (!t)
        return nomem(file, err);
    otl_status st = otl_model_clone(src, &t->m, err);
    if (st) {
        otl_train_graph_free(t);
        return st;
    }
    otl_model *m = t->m;
    otl_graph *g = m->graph;
    const otl_value *pred = g->outputs[0];
    if (!pred->has_type || !pred->is_tensor || (pred->dtype && !otl_dtype_is_float(pred->dtype))) {
        otl_train_graph_free(t);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' is not a floating-point tensor; cannot compute a loss on it",
                             file, pred->name);
    }
    const char *x = loss_input(m, g, spec->loss, pred);
    /* the target input */
    otl_value *tv;
    if (spec->loss == OTL_LOSS_CE)
        tv = otl_value_new_tensor(TARGET_NAME, OTL_DTYPE_INT64, 1, NULL, (const char *const[]){"N"});
    else
        tv = otl_value_new_tensor(TARGET_NAME, OTL_DTYPE_FLOAT, -1, NULL, NULL);
    if (!tv || otl_graph_add_input(g, tv) || !add_opset(m, OTL_GRAD_DOMAIN, 1)) {
        otl_value_free(tv);
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    /* the loss node */
    static const char *const ops[] = {"SoftmaxCrossEntropy", "MeanSquaredError", "BCEWithLogits"};
    otl_node *ln = otl_node_new("onnx_tl::loss_node", ops[spec->loss], OTL_GRAD_DOMAIN);
    const char *lin[2] = {x, TARGET_NAME}, *lout[1] = {LOSS_NAME};
    otl_attr *a;
    int bad = !ln || otl_node_set_io(ln, 2, lin, 1, lout);
    if (!bad && spec->loss == OTL_LOSS_CE) {
        bad = otl_node_add_attr(ln, "label_smoothing", OTL_ATTR_FLOAT, &a) != OTL_OK;
        if (!bad)
            a->f = spec->label_smoothing;
    }
    if (bad || otl_graph_add_node(g, ln)) {
        otl_node_free(ln);
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    otl_value *lv = otl_value_new_tensor(LOSS_NAME, OTL_DTYPE_FLOAT, 0, NULL, NULL);
    if (!lv || otl_graph_add_output(g, lv)) {
        otl_value_free(lv);
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    t->target = otl_strdup(TARGET_NAME);
    t->loss = otl_strdup(LOSS_NAME);
    /* the parameters */
    int cap = spec->params ? spec->n_params : g->n_inits;
    t->params = calloc((size_t)cap + 1, sizeof *t->params);
    t->grads = calloc((size_t)cap + 1, sizeof *t->grads);
    if (!t->target || !t->loss || !t->params || !t->grads) {
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    if (spec->params) {
        for (int i = 0; i < spec->n_params; i++) {
            const otl_tensor *p = otl_graph_find_init(g, spec->params[i]);
            if (!p || !otl_dtype_is_float(p->dtype)) {
                otl_train_graph_free(t);
                return otl_error_set(err, OTL_ERR_INPUT, "%s: '%s' is not a floating-point initializer", file,
                                     spec->params[i]);
            }
            t->params[t->n_params++] = otl_strdup(p->name);
        }
    } else {
        for (int i = 0; i < g->n_inits; i++) {
            const otl_tensor *p = g->inits[i];
            if (otl_graph_init_is_param(g, p) && !otl_model_is_frozen(m, p->name))
                t->params[t->n_params++] = otl_strdup(p->name);
        }
    }
    for (int i = 0; i < t->n_params; i++) {
        if (!t->params[i]) {
            otl_train_graph_free(t);
            return nomem(file, err);
        }
        int is_input = 0;
        for (int k = 0; k < g->n_inputs; k++)
            is_input |= strcmp(g->inputs[k]->name, t->params[i]) == 0;
        if (is_input)
            continue;
        const otl_tensor *p = otl_graph_find_init(g, t->params[i]);
        otl_value *pv = otl_value_new_tensor(p->name, p->dtype, p->rank, p->dims, NULL);
        if (!pv || otl_graph_add_input(g, pv)) {
            otl_value_free(pv);
            otl_train_graph_free(t);
            return nomem(file, err);
        }
    }
    if (t->n_params == 0) {
        otl_train_graph_free(t);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: no trainable parameters (all frozen?)", file);
    }
    if (spec->bn_stats && !add_bn_stats(t, g)) {
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    char **raw = calloc((size_t)t->n_params + 1, sizeof *raw);
    if (!raw) {
        otl_train_graph_free(t);
        return nomem(file, err);
    }
    st = otl_autodiff(g, m, LOSS_NAME, (const char *const *)t->params, t->n_params, raw, err);
    /* expose each gradient under a stable name */
    for (int i = 0; !st && i < t->n_params; i++) {
        size_t n = strlen(t->params[i]) + 32;
        t->grads[i] = malloc(n);
        if (!t->grads[i]) {
            st = nomem(file, err);
            break;
        }
        snprintf(t->grads[i], n, "onnx_tl::grad::%s", t->params[i]);
        char nn[64];
        snprintf(nn, sizeof nn, "onnx_tl::grad_out%d", i);
        otl_node *idn = otl_node_new(nn, "Identity", "");
        const char *in1[1] = {raw[i]}, *out1[1] = {t->grads[i]};
        const otl_tensor *p = otl_graph_find_init(g, t->params[i]);
        otl_value *gv = otl_value_new_tensor(t->grads[i], p->dtype, p->rank, p->dims, NULL);
        if (!idn || !gv || otl_node_set_io(idn, 1, in1, 1, out1) || otl_graph_add_node(g, idn) ||
            otl_graph_add_output(g, gv)) {
            otl_node_free(idn);
            otl_value_free(gv);
            st = nomem(file, err);
        }
    }
    for (int i = 0; i < t->n_params; i++)
        free(raw[i]);
    free(raw);
    if (!st)
        st = otl_model_validate(m, err);
    if (st) {
        otl_train_graph_free(t);
        return st;
    }
    *out = t;
    return OTL_OK;
}
