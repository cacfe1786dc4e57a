/* head.c - find the classifier head (the last Gemm/MatMul(+Add) before the outputs, else a 1x1-Conv
 * classifier as in SqueezeNet) and the
 * parameter facts `info`, `swap-head` and `freeze` share. */
#include <string.h>

#include "onnxtl.h"
#include "graph/graph_edit.h"
#include "src/util.h"

/* Ops that pass the head's logits through to an output without mixing features. */
static int passes_through(const char *op)
{
    static const char *const ops[] = {"Softmax", "LogSoftmax", "Identity", "Flatten", "Reshape",
                                      "Squeeze", "Unsqueeze", "Dropout", "Sigmoid", "Cast", NULL};
    for (int i = 0; ops[i]; i++)
        if (strcmp(op, ops[i]) == 0)
            return 1;
    return 0;
}

/* Follow Identity chains back to an initializer. */
const otl_tensor *otl_graph_resolve_init(const otl_graph *g, const char *name)
{
    for (int hops = 0; hops < 16 && name && *name; hops++) {
        const otl_tensor *t = otl_graph_find_init(g, name);
        if (t)
            return t;
        int p = otl_graph_producer(g, name);
        if (p < 0 || strcmp(g->nodes[p]->op_type, "Identity") != 0 || g->nodes[p]->n_inputs < 1)
            return NULL;
        name = g->nodes[p]->inputs[0];
    }
    return NULL;
}

static int try_matmul(const otl_graph *g, int idx, otl_head *h)
{
    const otl_node *n = g->nodes[idx];
    if (strcmp(n->op_type, "MatMul") != 0 || n->n_inputs < 2)
        return 0;
    const otl_tensor *w = otl_graph_resolve_init(g, n->inputs[1]);
    if (!w || w->rank != 2)
        return 0;
    h->found = 1;
    h->node = idx;
    h->input_tensor = n->inputs[0];
    h->weight = w->name;
    h->features = w->dims[0];
    h->classes = w->dims[1];
    return 1;
}

void otl_find_head(const otl_graph *g, otl_head *h)
{
    memset(h, 0, sizeof *h);
    h->node = h->bias_node = -1;
    h->classes = h->features = -1;
    for (int o = 0; o < g->n_outputs; o++) {
        const char *name = g->outputs[o]->name;
        for (int hops = 0; hops < 64; hops++) {
            int p = otl_graph_producer(g, name);
            if (p < 0)
                break;
            const otl_node *n = g->nodes[p];
            if (!otl_node_is_onnx(n))
                break;
            if (strcmp(n->op_type, "Gemm") == 0 && n->n_inputs >= 2) {
                const otl_tensor *w = otl_graph_resolve_init(g, n->inputs[1]);
                const otl_attr *tb = otl_node_attr(n, "transB");
                int transB = tb && tb->i;
                h->found = 1;
                h->node = p;
                h->input_tensor = n->inputs[0];
                if (w && w->rank == 2) {
                    h->weight = w->name;
                    h->classes = transB ? w->dims[0] : w->dims[1];
                    h->features = transB ? w->dims[1] : w->dims[0];
                }
                return;
            }
            if (try_matmul(g, p, h))
                return;
            if (strcmp(n->op_type, "Add") == 0 && n->n_inputs == 2) {
                /* MatMul + bias */
                for (int side = 0; side < 2; side++) {
                    const otl_tensor *b = otl_graph_resolve_init(g, n->inputs[1 - side]);
                    int mm = otl_graph_producer(g, n->inputs[side]);
                    if (b && mm >= 0 && try_matmul(g, mm, h)) {
                        h->bias_node = p;
                        return;
                    }
                }
                break;
            }
            if (!passes_through(n->op_type) || n->n_inputs < 1)
                break;
            name = n->inputs[0];
        }
    }
}

int otl_graph_conv_head(const otl_graph *g, int o)
{
    static const char *const ops[] = {"Softmax", "LogSoftmax", "Identity", "Flatten", "Reshape", "Squeeze",
                                      "Dropout", "Sigmoid", "Relu", "GlobalAveragePool", "ReduceMean",
                                      "AveragePool", NULL};
    const char *name = g->outputs[o]->name;
    for (int hops = 0; hops < 64; hops++) {
        int p = otl_graph_producer(g, name);
        if (p < 0 || !otl_node_is_onnx(g->nodes[p]) || g->nodes[p]->n_inputs < 1)
            return -1;
        const otl_node *n = g->nodes[p];
        if (strcmp(n->op_type, "Conv") == 0) {
            const otl_tensor *w = n->n_inputs >= 2 ? otl_graph_resolve_init(g, n->inputs[1]) : NULL;
            if (w && w->rank == 4 && w->dims[2] == 1 && w->dims[3] == 1)
                return p;
            return -1;
        }
        int known = 0;
        for (int i = 0; ops[i] && !known; i++)
            known = strcmp(n->op_type, ops[i]) == 0;
        if (!known)
            return -1;
        name = n->inputs[0];
    }
    return -1;
}

void otl_find_classifier(const otl_graph *g, otl_head *h)
{
    otl_find_head(g, h);
    for (int o = 0; !h->found && o < g->n_outputs; o++) {
        int c = otl_graph_conv_head(g, o);
        if (c < 0)
            continue;
        const otl_node *n = g->nodes[c];
        const otl_tensor *w = otl_graph_resolve_init(g, n->inputs[1]);
        h->found = 1;
        h->conv = 1;
        h->node = c;
        h->input_tensor = n->inputs[0];
        h->weight = w->name;
        h->classes = w->dims[0];
        h->features = w->dims[1];
    }
}

int otl_model_is_frozen(const otl_model *m, const char *init_name)
{
    return otl_list_has(otl_model_meta_get(m, "onnx_tl.frozen"), '\n', init_name);
}

int otl_graph_init_is_param(const otl_graph *g, const otl_tensor *t)
{
    if (!otl_dtype_is_float(t->dtype))
        return 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        if (strcmp(n->op_type, "BatchNormalization") != 0)
            continue;
        for (int k = 3; k < n->n_inputs && k < 5; k++)
            if (strcmp(n->inputs[k], t->name) == 0)
                return 0;
    }
    return 1;
}
