/* export.c - clean inference export (see include/onnxtl_export.h): training-only metadata,
 * Dropout and BatchNormalization training outputs removed, BatchNormalization folded into the
 * preceding Conv/Gemm, dead nodes and unused initializers pruned.
 *
 * Folding (same math as graph/fuse.c's fold_bn, so `onnx-tl run` of the input and of the export
 * agree to rounding): s = gamma / sqrt(var + eps); W'[o] = W[o] * s[o]; b'[o] = (b[o] - mean[o]) *
 * s[o] + beta[o]. A weight or bias that only this node reads is rewritten in place (its name and
 * external-data placement kept); a shared one gets a new initializer "<name>_bnfold". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/strmap.h"
#include "src/util.h"

/* Remove attribute k of n (freed through a temporary node). */
static otl_status remove_attr(otl_node *n, int k, otl_error *err)
{
    otl_node *tmp = otl_node_new("", "", "");
    if (!tmp || !(tmp->attrs = malloc(sizeof *tmp->attrs))) {
        otl_node_free(tmp);
        return otl_oom(err);
    }
    tmp->attrs[0] = n->attrs[k];
    tmp->n_attrs = 1;
    otl_node_free(tmp);
    memmove(&n->attrs[k], &n->attrs[k + 1], (size_t)(n->n_attrs - k - 1) * sizeof *n->attrs);
    n->n_attrs--;
    return OTL_OK;
}

/* ---------------------------------------------------------------- Dropout */

static otl_status drop_dropouts(otl_model *m, otl_export_info *info, otl_error *err)
{
    otl_graph *g = m->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        if (!otl_node_is_onnx(n) || strcmp(n->op_type, "Dropout") != 0 || n->n_inputs < 1 || n->n_outputs < 1)
            continue;
        if (n->n_outputs > 1 && *n->outputs[1] &&
            (otl_graph_reads(g, n->outputs[1]) || otl_graph_is_output(g, n->outputs[1])))
            return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                                 "%s: node '%s' (Dropout): its mask output '%s' is used; cannot remove the Dropout",
                                 otl_model_file(m), n->name, n->outputs[1]);
        const char *x = n->inputs[0], *y = n->outputs[0];
        info->n_dropout_removed++;
        if (!*y)
            continue;   /* nothing read: pruned below */
        if (otl_graph_is_output(g, y) || otl_graph_reads_in_subgraph(g, y) || !*x) {
            /* keep the output name: Identity(x) */
            otl_node *id = otl_node_new(n->name, "Identity", "");
            const char *in[1] = {x}, *out[1] = {y};
            if (!id || otl_node_set_io(id, 1, in, 1, out)) {
                otl_node_free(id);
                return otl_oom(err);
            }
            otl_node_free(n);
            g->nodes[i] = id;
            continue;
        }
        for (int j = 0; j < g->n_nodes; j++)
            for (int k = 0; k < g->nodes[j]->n_inputs; k++)
                if (j != i && strcmp(g->nodes[j]->inputs[k], y) == 0 && !otl_set_str(&g->nodes[j]->inputs[k], x))
                    return otl_oom(err);
        otl_graph_remove_node(g, i);
        i--;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- BatchNormalization */

/* Drop training_mode and the running-statistic outputs. */
static otl_status bn_inference(otl_model *m, otl_node *n, otl_error *err)
{
    otl_graph *g = m->graph;
    for (int k = 1; k < n->n_outputs; k++)
        if (*n->outputs[k] && (otl_graph_reads(g, n->outputs[k]) || otl_graph_is_output(g, n->outputs[k])))
            return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                                 "%s: node '%s' (BatchNormalization): training output '%s' is used; cannot export "
                                 "it for inference",
                                 otl_model_file(m), n->name, n->outputs[k]);
    for (int k = 1; k < n->n_outputs; k++)
        free(n->outputs[k]);
    if (n->n_outputs > 1)
        n->n_outputs = 1;
    for (int k = 0; k < n->n_attrs; k++)
        if (strcmp(n->attrs[k].name, "training_mode") == 0) {
            if (remove_attr(n, k, err))
                return err->code;
            k--;
        }
    return OTL_OK;
}

/* The initializer to write node input `slot` into: t itself when only this node reads it and it
 * is no graph output, else a new copy "<name>_bnfold" that the node is switched to. */
static otl_tensor *writable(otl_graph *g, otl_node *n, int slot, otl_tensor *t, otl_error *err)
{
    if (otl_graph_n_reads(g, t->name) == 1 && !otl_graph_is_output(g, t->name))
        return t;
    char base[600];
    snprintf(base, sizeof base, "%s_bnfold", t->name);
    char *name = otl_graph_fresh_name(g, base);
    otl_tensor *c = name ? otl_tensor_new(name, t->dtype, t->rank, t->dims) : NULL;
    free(name);
    if (!c || !(c->data = otl_memdup(t->data, t->nbytes ? t->nbytes : 1)) ||
        (t->ext_location && !(c->ext_location = otl_strdup(t->ext_location)))) {
        otl_tensor_free(c);
        otl_oom(err);
        return NULL;
    }
    c->nbytes = t->nbytes;
    if (otl_graph_add_init(g, c)) {
        otl_tensor_free(c);
        otl_oom(err);
        return NULL;
    }
    if (!otl_set_str(&n->inputs[slot], c->name)) {
        otl_oom(err);
        return NULL;
    }
    return c;
}

static int attr_float_is(const otl_node *n, const char *name, float v)
{
    const otl_attr *a = otl_node_attr(n, name);
    return !a || (a->type == OTL_ATTR_FLOAT && a->f == v);
}

/* Fold bn (index bi) into its producer when possible; returns 1 when folded, 0 when not, -1 on
 * error. */
static int fold_one(otl_model *m, int bi, otl_error *err)
{
    otl_graph *g = m->graph;
    otl_node *bn = g->nodes[bi];
    if (bn->n_inputs < 5 || bn->n_outputs != 1 || !*bn->inputs[0])
        return 0;
    const char *x = bn->inputs[0];
    int pi = otl_graph_producer(g, x);
    if (pi < 0)
        return 0;
    otl_node *p = g->nodes[pi];
    int is_conv = strcmp(p->op_type, "Conv") == 0, is_gemm = strcmp(p->op_type, "Gemm") == 0;
    if (!otl_node_is_onnx(p) || (!is_conv && !is_gemm) || p->n_outputs != 1 || p->n_inputs < 2 ||
        otl_graph_n_reads(g, x) != 1 || otl_graph_is_output(g, x))
        return 0;
    otl_tensor *w = otl_graph_const_float(g, p->inputs[1]);
    int has_b = p->n_inputs > 2 && *p->inputs[2];
    otl_tensor *b = has_b ? otl_graph_const_float(g, p->inputs[2]) : NULL;
    if (!w || (has_b && !b))
        return 0;
    int64_t oc, per = 0, k_in = 0;
    int trans_b = 0;
    if (is_conv) {
        if (w->rank < 3)
            return 0;
        oc = w->dims[0];
        per = oc ? w->numel / oc : 0;
    } else {
        const otl_attr *tb = otl_node_attr(p, "transB");
        trans_b = tb && tb->i;
        if (w->rank != 2 || !attr_float_is(p, "alpha", 1.0f) || !attr_float_is(p, "beta", 1.0f))
            return 0;
        oc = trans_b ? w->dims[0] : w->dims[1];
        k_in = trans_b ? w->dims[1] : w->dims[0];
    }
    if (b && b->numel != oc)
        return 0;
    otl_tensor *q[4];
    for (int k = 0; k < 4; k++)
        if (!(q[k] = otl_graph_const_float(g, bn->inputs[1 + k])) || q[k]->numel != oc)
            return 0;
    const otl_attr *ea = otl_node_attr(bn, "epsilon");
    double eps = ea ? ea->f : 1e-5;

    /* the weight and bias to write */
    otl_tensor *nw = writable(g, p, 1, w, err);
    if (!nw)
        return -1;
    otl_tensor *nb = NULL;
    if (b) {
        if (!(nb = writable(g, p, 2, b, err)))
            return -1;
    } else {
        char base[600];
        snprintf(base, sizeof base, "%s_bias", *p->name ? p->name : bn->name);
        char *name = otl_graph_fresh_name(g, base);
        nb = name ? otl_tensor_new(name, OTL_DTYPE_FLOAT, 1, &oc) : NULL;
        free(name);
        if (!nb || !(nb->data = calloc((size_t)oc + 1, sizeof(float))) ||
            (w->ext_location && !(nb->ext_location = otl_strdup(w->ext_location)))) {
            otl_tensor_free(nb);
            return otl_oom(err), -1;
        }
        nb->nbytes = (size_t)oc * sizeof(float);
        if (otl_graph_add_init(g, nb)) {
            otl_tensor_free(nb);
            return otl_oom(err), -1;
        }
        char *in[3] = {otl_strdup(p->inputs[0]), otl_strdup(p->inputs[1]), otl_strdup(nb->name)};
        char *out0 = otl_strdup(p->outputs[0]);
        int bad = !in[0] || !in[1] || !in[2] || !out0 ||
                  otl_node_set_io(p, 3, (const char *const *)in, 1, (const char *const *)&out0);
        for (int k = 0; k < 3; k++)
            free(in[k]);
        free(out0);
        if (bad)
            return otl_oom(err), -1;
    }
    const float *gam = q[0]->data, *bet = q[1]->data, *mean = q[2]->data, *var = q[3]->data;
    float *W = nw->data, *B = nb->data;
    for (int64_t o = 0; o < oc; o++) {
        double s = gam[o] / sqrt((double)var[o] + eps);
        if (is_conv)
            for (int64_t j = 0; j < per; j++)
                W[o * per + j] = (float)(W[o * per + j] * s);
        else
            for (int64_t j = 0; j < k_in; j++) {
                int64_t at = trans_b ? o * k_in + j : j * oc + o;
                W[at] = (float)(W[at] * s);
            }
        B[o] = (float)((B[o] - mean[o]) * s + bet[o]);
    }
    if (!otl_set_str(&p->outputs[0], bn->outputs[0]))
        return otl_oom(err), -1;
    otl_graph_remove_node(g, bi);
    return 1;
}

static otl_status do_bn(otl_model *m, const otl_export_opts *o, otl_export_info *info, otl_error *err)
{
    otl_graph *g = m->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        if (!otl_node_is_onnx(n) || strcmp(n->op_type, "BatchNormalization") != 0)
            continue;
        if (bn_inference(m, n, err))
            return err->code;
        int r = o->fold_bn ? fold_one(m, i, err) : 0;
        if (r < 0)
            return err->code;
        if (r) {
            info->n_bn_folded++;
            i--;
        } else
            info->n_bn_kept++;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- pruning */

/* Dead nodes, unused initializers, value_info of names gone. */
static otl_status prune(otl_model *m, otl_export_info *info, otl_error *err)
{
    if (otl_graph_remove_dead(m->graph, NULL, &info->n_nodes_removed, &info->n_inits_removed, err))
        return err->code;
    otl_graph_drop_stale_value_info(m->graph);
    return OTL_OK;
}

/* ---------------------------------------------------------------- entry point */

otl_status otl_export_clean(otl_model *m, const otl_export_opts *o, otl_export_info *info, otl_error *err)
{
    otl_export_info local;
    otl_export_opts dflt = {1};
    if (!info)
        info = &local;
    if (!o)
        o = &dflt;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_clean: no model");
    static const char *const training_keys[] = {"onnx_tl.frozen", "onnx_tl.head", "onnx_tl.pruned"};
    for (size_t k = 0; k < sizeof training_keys / sizeof *training_keys; k++)
        if (otl_model_meta_get(m, training_keys[k])) {
            if (otl_model_meta_set(m, training_keys[k], NULL, err))
                return err->code;
            info->n_meta_removed++;
        }
    if (drop_dropouts(m, info, err) || do_bn(m, o, info, err) || prune(m, info, err))
        return err->code;
    return otl_model_validate(m, err);
}
