/* feature_cache.c - where the trainable part of a model starts (the "frontier" tensor T) and the
 * two models around it: the frozen prefix (data input -> T), run once per sample by the training
 * loop (src/fit.c), and the cut model (T -> outputs) trained on the cached T. The nodes are
 * classified in topological order: a node is "trainable" when it reads a trainable parameter or
 * the output of a trainable node, "data" when it reads the data input or the output of a data
 * node. The prefix is every data node that is not trainable; the frontier is the single tensor
 * that prefix nodes (or the data input) hand to the rest. Nodes reading neither (shape and
 * constant chains) stay in both models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "graph/graph_edit.h"
#include "src/feature_cache.h"
#include "src/util.h"

static int in_list(char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* Ops whose result changes from one training step to the next (or with the batch) although the
 * prefix weights do not. */
static const char *unstable_op(const otl_node *n, int bn_frozen)
{
    static const char *const random_ops[] = {"Dropout", "RandomNormal", "RandomNormalLike", "RandomUniform",
                                             "RandomUniformLike", "Bernoulli", "Multinomial", NULL};
    if (*n->domain)
        return NULL;
    for (int i = 0; random_ops[i]; i++)
        if (strcmp(n->op_type, random_ops[i]) == 0)
            return "draws new random values at every step";
    if (!bn_frozen && strcmp(n->op_type, "BatchNormalization") == 0)
        return "uses batch statistics and updates its running statistics (--bn train), so its output changes "
               "between epochs";
    return NULL;
}

static void remove_nodes(otl_graph *g, const unsigned char *drop)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (drop[i])
            otl_node_free(g->nodes[i]);
        else
            g->nodes[k++] = g->nodes[i];
    }
    g->n_nodes = k;
}

/* Replace the dropped nodes by Constant nodes with unread scalar outputs, keeping every other
 * node at its index. (Random ops no longer depend on it: src/exec.c keys their streams by the
 * node's first output name, which fusions in training graphs keep; the padding is dropped by the
 * planner's removal of unread nodes.) */
static otl_status pad_nodes(otl_graph *g, const unsigned char *drop)
{
    for (int i = 0; i < g->n_nodes; i++) {
        if (!drop[i])
            continue;
        char name[64];
        snprintf(name, sizeof name, "otl_cache_pad_%d", i);
        otl_node *n = otl_node_new(name, "Constant", "");
        otl_attr *a = NULL;
        const char *out[1] = {name};
        if (!n || otl_node_set_io(n, 0, NULL, 1, out) || otl_node_add_attr(n, "value", OTL_ATTR_TENSOR, &a) ||
            !(a->t = otl_tensor_new(name, OTL_DTYPE_FLOAT, 0, NULL)) || !(a->t->data = calloc(1, sizeof(float)))) {
            otl_node_free(n);
            return OTL_ERR_NOMEM;
        }
        a->t->nbytes = sizeof(float);
        otl_node_free(g->nodes[i]);
        g->nodes[i] = n;
    }
    return OTL_OK;
}

int otl_fcache_reads(const otl_graph *g, const char *name)
{
    return otl_graph_is_output(g, name) || otl_graph_reads(g, name);
}

/* Remove the nodes whose outputs nothing reads any more (e.g. the Identity nodes on backbone
 * weights of a torch export, which would keep every frozen weight in the cut model), or replace
 * them by placeholders when node indices must stay (pad). drop has room for g->n_nodes. */
static otl_status drop_dead_nodes(otl_graph *g, unsigned char *drop, int pad)
{
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *n = g->nodes[i];
            int used = strncmp(n->name, "otl_cache_pad_", 14) == 0;
            for (int k = 0; k < n->n_outputs && !used; k++)
                used = *n->outputs[k] && otl_fcache_reads(g, n->outputs[k]);
            drop[i] = !used;
            changed |= !used;
        }
        if (changed && pad && pad_nodes(g, drop))
            return OTL_ERR_NOMEM;
        if (changed && !pad)
            remove_nodes(g, drop);
    }
    return OTL_OK;
}

otl_status otl_fcache_plan(const otl_model *m, const char *input, const otl_train_graph *tg, int bn_frozen,
                           otl_model **prefix, otl_model **cut, char **frontier, char *why, size_t nwhy,
                           otl_error *err)
{
    *prefix = *cut = NULL;
    *frontier = NULL;
    why[0] = 0;
    const otl_graph *g = m->graph;
    const char *file = m->path ? m->path : "(model)";
    int N = g->n_nodes;
    int *order = NULL;
    otl_status st = otl_graph_toposort(g, &order, file, err);
    if (st)
        return st;
    unsigned char *trn = calloc((size_t)N + 1, 1), *dat = calloc((size_t)N + 1, 1), *drop = calloc((size_t)N + 1, 1);
    const char *T = NULL;
    int n_front = 0;
    otl_model *pm = NULL, *cm = NULL;
    if (!trn || !dat || !drop) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    for (int oi = 0; oi < N; oi++) {
        int i = order[oi];
        const otl_node *n = g->nodes[i];
        for (int a = 0; a < n->n_attrs; a++)
            if (n->attrs[a].n_graphs > 0 || n->attrs[a].g) {
                snprintf(why, nwhy, "node '%s' (%s) has a subgraph", n->name, n->op_type);
                goto done;
            }
        for (int k = 0; k < n->n_inputs; k++) {
            const char *x = n->inputs[k];
            if (!*x)
                continue;
            if (strcmp(x, input) == 0)
                dat[i] = 1;
            if (in_list(tg->params, tg->n_params, x))
                trn[i] = 1;
            int p = otl_graph_producer(g, x);
            if (p >= 0) {
                dat[i] |= dat[p];
                trn[i] |= trn[p];
            }
        }
    }
    int out_p = otl_graph_producer(g, g->outputs[0]->name);
    if (out_p < 0 || !trn[out_p]) {
        snprintf(why, nwhy, "the output '%s' does not depend on a trainable parameter", g->outputs[0]->name);
        goto done;
    }
    /* the tensors the prefix hands to the trainable part */
    for (int i = 0; i < N && n_front <= 1; i++) {
        const otl_node *n = g->nodes[i];
        if (!trn[i])
            continue;
        for (int k = 0; k < n->n_inputs; k++) {
            const char *x = n->inputs[k];
            int p = *x ? otl_graph_producer(g, x) : -1;
            int from_prefix = (p >= 0 && dat[p] && !trn[p]) || (p < 0 && *x && strcmp(x, input) == 0);
            if (!from_prefix || (T && strcmp(T, x) == 0))
                continue;
            if (T) {
                snprintf(why, nwhy, "the trainable part reads more than one tensor of the frozen part ('%s', '%s')",
                         T, x);
                n_front = 2;
                break;
            }
            T = x;
            n_front = 1;
        }
    }
    if (n_front != 1) {
        if (!why[0])
            snprintf(why, nwhy, "no frozen tensor feeds the trainable part");
        goto done;
    }
    if (strcmp(T, input) == 0) {
        snprintf(why, nwhy, "a trainable parameter is applied to the data input '%s' directly (nothing frozen to "
                 "cache)", input);
        goto done;
    }
    for (int i = 0; i < N; i++) {
        const char *u = dat[i] && !trn[i] ? unstable_op(g->nodes[i], bn_frozen) : NULL;
        if (u) {
            snprintf(why, nwhy, "%s '%s' in the frozen part before '%s' %s", g->nodes[i]->op_type, g->nodes[i]->name,
                     T, u);
            goto done;
        }
    }
    /* graph outputs other than the first produced by the prefix: only the first is trained on */
    /* the prefix: data nodes that are not trainable (plus the constant chains they read) */
    if ((st = otl_model_clone(m, &pm, err)))
        goto done;
    for (int i = 0; i < N; i++)
        drop[i] = trn[i];
    remove_nodes(pm->graph, drop);
    otl_graph *pg = pm->graph;
    const otl_value *tv = otl_graph_find_value(g, T);
    otl_value *pv = NULL;
    if (tv && tv->has_type && tv->is_tensor && tv->has_shape) {
        int64_t dims[16];
        int rank = tv->rank < 16 ? tv->rank : -1;
        for (int d = 0; d < rank; d++)
            dims[d] = tv->dims[d].value;
        pv = otl_value_new_tensor(T, OTL_DTYPE_FLOAT, rank, dims, NULL);
    } else {
        pv = otl_value_new_tensor(T, OTL_DTYPE_FLOAT, -1, NULL, NULL);
    }
    if (!pv) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    for (int i = 0; i < pg->n_outputs; i++)
        otl_value_free(pg->outputs[i]);
    pg->n_outputs = 0;
    if ((st = otl_graph_add_output(pg, pv)))
        goto done;
    /* the cut model: everything but the prefix, with T as its data input */
    if ((st = otl_model_clone(m, &cm, err)))
        goto done;
    int random_head = 0;
    for (int i = 0; i < N; i++) {
        drop[i] = dat[i] && !trn[i];
        random_head |= trn[i] && unstable_op(g->nodes[i], 1) != NULL;
    }
    if (random_head && pad_nodes(cm->graph, drop)) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    if (!random_head)
        remove_nodes(cm->graph, drop);
    otl_graph *cg = cm->graph;
    for (int i = 0; i < cg->n_inputs; i++)
        if (strcmp(cg->inputs[i]->name, input) == 0) {
            otl_value *iv = otl_value_new_tensor(T, OTL_DTYPE_FLOAT, -1, NULL, NULL);
            if (tv && tv->has_type && tv->is_tensor && tv->has_shape && tv->rank < 16) {
                int64_t dims[16];
                for (int d = 0; d < tv->rank; d++)
                    dims[d] = d == 0 ? -1 : tv->dims[d].value;
                otl_value_free(iv);
                iv = otl_value_new_tensor(T, OTL_DTYPE_FLOAT, tv->rank, dims, NULL);
            }
            if (!iv) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
                goto done;
            }
            otl_value_free(cg->inputs[i]);
            cg->inputs[i] = iv;
        }
    /* outputs the cut model no longer computes (other outputs of the frozen part) */
    int k = 0;
    for (int i = 0; i < cg->n_outputs; i++) {
        int p = otl_graph_producer(g, cg->outputs[i]->name);
        if (p >= 0 && drop[p])
            otl_value_free(cg->outputs[i]);
        else
            cg->outputs[k++] = cg->outputs[i];
    }
    cg->n_outputs = k;
    if (drop_dead_nodes(cg, drop, random_head) || drop_dead_nodes(pg, drop, 0)) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    /* unread initializers go (also inside If/Loop bodies): an unread float initializer would count
     * as a trainable parameter of the cut model */
    otl_graph_drop_unused_inits(cg, NULL);
    otl_graph_drop_unused_inits(pg, NULL);
    if ((st = otl_model_validate(cm, err)) || (st = otl_model_validate(pm, err)))
        goto done;
    if (!(*frontier = otl_strdup(T))) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    *prefix = pm;
    *cut = cm;
    pm = cm = NULL;
done:
    otl_model_free(pm);
    otl_model_free(cm);
    free(order);
    free(trn);
    free(dat);
    free(drop);
    return st;
}
