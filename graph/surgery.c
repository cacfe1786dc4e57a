/* surgery.c - graph surgery for transfer learning (include/onnxtl_surgery.h): swap the classifier
 * head, frozen marks, parameter blocks.
 *
 * swap-head. The cut tensor F is the input of the detected head (otl_find_head: the last Gemm/
 * MatMul(+Add) reaching an output through shape-preserving ops; or a 1x1-Conv classifier such as
 * SqueezeNet's, replaced wholesale from its input) or the tensor given with --at. Two ways:
 *  - keep-chain: a Gemm/MatMul head is found on the output's chain and F lies upstream of it:
 *    the head node(s) are removed and the new head writes the old head's output tensor, so that
 *    what followed it (Softmax of a Keras model, Identity, Flatten, other outputs computed from
 *    the logits) keeps its meaning; Reshape/Squeeze/Unsqueeze on that chain are bypassed (their
 *    shape constants name the old class count).
 *  - replace: no head on the chain (encoders, conv heads, --at past the head): the first output's
 *    producer is renamed away and the new head writes the output name. With --at only the first
 *    output is kept.
 * Then: pooling by F's rank (4: GlobalAveragePool + Flatten, 3: first token or mean over axis 1,
 * 2: none), [Dropout], Gemm (transB=1), or Gemm -> Relu -> [Dropout] -> Gemm with a hidden layer;
 * dead nodes, unused initializers and stale value_info removed; declared output shapes [batch,
 * N]; nodes re-sorted topologically. F's shape comes from the head weight, value_info, or a probe
 * run on a zero batch of 1. New parameters are named head.fc.{weight,bias} (head.fc1/head.fc2
 * with a hidden layer; head<k> if taken) and initialized as torch.nn.Linear from splitmix64. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_surgery.h"
#include "src/hash.h"
#include "graph/graph_edit.h"
#include "src/strmap.h"
#include "src/util.h"

/* ---------------------------------------------------------------- random numbers */

/* Uniform in [-bound, bound). */
static float uniform(uint64_t *s, float bound)
{
    float u = (float)(otl_splitmix64(s) >> 40) * (1.0f / 16777216.0f);
    return (2.0f * u - 1.0f) * bound;
}

/* ---------------------------------------------------------------- graph helpers */

static int op_in(const char *op, const char *const *ops)
{
    for (int i = 0; ops[i]; i++)
        if (strcmp(op, ops[i]) == 0)
            return 1;
    return 0;
}

/* Same list as graph/head.c: ops that carry the head's logits to an output. */
static const char *const pass_ops[] = {"Softmax", "LogSoftmax", "Identity", "Flatten", "Reshape", "Squeeze",
                                       "Unsqueeze", "Dropout", "Sigmoid", "Cast", NULL};

/* Any use of `name` as a tensor name or node name in g. */

/* Replace every use of `from` as a node input by `to` (subgraphs included). */
static int rename_uses(otl_graph *g, const char *from, const char *to)
{
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], from) == 0 && !otl_set_str(&n->inputs[k], to))
                return 0;
        for (int a = 0; a < n->n_attrs; a++) {
            otl_attr *at = &n->attrs[a];
            if (at->g && !rename_uses(at->g, from, to))
                return 0;
            for (size_t s = 0; s < at->n_graphs; s++)
                if (!rename_uses(at->graphs[s], from, to))
                    return 0;
        }
    }
    return 1;
}

/* Remove dead nodes, unused initializers (and their graph-input entries); `extra_root` stays with what it
 * needs. Counts the nodes and the float initializers removed. */
static otl_status prune(otl_graph *g, const char *extra_root, int *n_nodes_removed, int *n_inits_removed,
                        otl_error *err)
{
    int n_float = 0, n_inits = 0;
    for (int i = 0; i < g->n_inits; i++)
        n_float += otl_dtype_is_float(g->inits[i]->dtype);
    if (otl_graph_remove_dead(g, extra_root, n_nodes_removed, &n_inits, err))
        return err->code;
    for (int i = 0; i < g->n_inits; i++)
        n_float -= otl_dtype_is_float(g->inits[i]->dtype);
    *n_inits_removed += n_float;
    return OTL_OK;
}

/* ---------------------------------------------------------------- head location */

typedef struct located {
    int keep_chain;        /* new head writes `target` (old head output) */
    char *cut;             /* F (malloc'd) */
    char *target;          /* tensor the new head writes (malloc'd) */
    int out_index;         /* graph output the chain reaches */
    int head_node, bias_node;
    int64_t features;      /* from the head weight, -1 if unknown */
    int64_t old_classes;
    char old_head[512];
} located;

/* The graph output (index) whose pass-through chain starts at tensor t, or -1. */
static int output_reached(const otl_graph *g, const char *t)
{
    for (int o = 0; o < g->n_outputs; o++) {
        const char *name = g->outputs[o]->name;
        for (int hops = 0; hops < 64; hops++) {
            if (strcmp(name, t) == 0)
                return o;
            int p = otl_graph_producer(g, name);
            if (p < 0 || !otl_node_is_onnx(g->nodes[p]) || !op_in(g->nodes[p]->op_type, pass_ops) ||
                g->nodes[p]->n_inputs < 1)
                break;
            name = g->nodes[p]->inputs[0];
        }
    }
    return -1;
}

/* Whether tensor `a` is computed from tensor `b` (b upstream of a), or equal. */
static otl_status depends_on(const otl_graph *g, const char *a, const char *b, int *result, otl_error *err)
{
    *result = strcmp(a, b) == 0;
    if (*result)
        return OTL_OK;
    char *live = calloc((size_t)g->n_nodes + 1, 1);
    if (!live)
        return otl_oom(err);
    if (otl_graph_mark_live(g, &a, 1, live, err)) {
        free(live);
        return err->code;
    }
    for (int i = 0; i < g->n_nodes && !*result; i++)
        if (live[i]) {
            for (int k = 0; k < g->nodes[i]->n_inputs; k++)
                if (strcmp(g->nodes[i]->inputs[k], b) == 0)
                    *result = 1;
        }
    free(live);
    return OTL_OK;
}

/* A head made by an earlier swap-head (onnx_tl.head lists the detected weight): the cut moves to
 * the input of that whole head (its first Gemm and the pooling/flatten/dropout nodes before it,
 * all named "/<prefix>/..."), so that a hidden layer does not stay behind. *cut replaced. */
static int own_head_input(const otl_model *m, const char *weight, char **cut)
{
    const otl_graph *g = m->graph;
    const char *list = otl_model_meta_get(m, "onnx_tl.head");
    if (!list || !weight || !otl_list_has(list, '\n', weight))
        return 0;
    const char *e = strchr(list, '.');
    if (!e || e == list || (size_t)(e - list) > 60)
        return 0;
    char first[128], scope[80];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(list, "\n"), list);
    snprintf(scope, sizeof scope, "/%.*s/", (int)(e - list), list);
    const char *x = NULL;
    for (int i = 0; i < g->n_nodes && !x; i++)
        for (int k = 1; k < g->nodes[i]->n_inputs; k++)
            if (strcmp(g->nodes[i]->inputs[k], first) == 0 && strncmp(g->nodes[i]->name, scope, strlen(scope)) == 0)
                x = g->nodes[i]->inputs[0];
    if (!x)
        return 0;
    for (int hops = 0; hops < 8; hops++) {
        int p = otl_graph_producer(g, x);
        if (p < 0 || strncmp(g->nodes[p]->name, scope, strlen(scope)) != 0 || g->nodes[p]->n_inputs < 1)
            break;
        x = g->nodes[p]->inputs[0];
    }
    if (strcmp(x, *cut) == 0)
        return 0;
    free(*cut);
    *cut = otl_strdup(x);
    return 1;
}

static otl_status locate(const otl_model *m, const otl_swap_head_opts *o, located *L, otl_error *err)
{
    const otl_graph *g = m->graph;
    memset(L, 0, sizeof *L);
    L->head_node = L->bias_node = -1;
    L->features = L->old_classes = -1;
    if (g->n_outputs < 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the graph has no output", otl_model_file(m));
    otl_head h;
    otl_find_head(g, &h);
    int chain_out = -1;
    const char *head_out = NULL;
    if (h.found) {
        const otl_node *hn = g->nodes[h.bias_node >= 0 ? h.bias_node : h.node];
        head_out = hn->outputs[0];
        chain_out = output_reached(g, head_out);
    }
    if (o->at) {
        const char *F = o->at;
        if (otl_graph_find_init(g, F))
            return otl_error_set(err, OTL_ERR_INPUT, "%s: --at '%s' is an initializer (a constant), not a tensor the "
                                 "network computes", otl_model_file(m), F);
        if (otl_graph_producer(g, F) < 0 && !otl_graph_is_input(g, F)) {
            /* a node name stands for its (first) output */
            const char *alias = NULL;
            for (int i = 0; i < g->n_nodes && !alias; i++)
                if (strcmp(g->nodes[i]->name, F) == 0 && g->nodes[i]->n_outputs >= 1 && *g->nodes[i]->outputs[0])
                    alias = g->nodes[i]->outputs[0];
            if (!alias)
                return otl_error_set(err, OTL_ERR_INPUT,
                                     "%s: --at '%s': no such tensor (not a graph input, node output or node name)",
                                     otl_model_file(m), F);
            F = alias;
        }
        L->cut = otl_strdup(F);
        L->out_index = 0;
        if (h.found && chain_out == 0) {
            /* keep the old head's tail when F lies upstream of the head */
            int after = 0;
            if (depends_on(g, F, head_out, &after, err))
                return err->code;
            if (!after) {
                L->keep_chain = 1;
                L->target = otl_strdup(head_out);
                L->head_node = h.node;
                L->bias_node = h.bias_node;
                L->old_classes = h.classes;
                snprintf(L->old_head, sizeof L->old_head, "%s", g->nodes[h.node]->name);
            }
        }
        if (!L->keep_chain)
            L->target = otl_strdup(g->outputs[0]->name);
        if (!L->cut || !L->target)
            return otl_oom(err);
        return OTL_OK;
    }
    if (h.found && chain_out >= 0) {
        const otl_node *hn = g->nodes[h.node];
        const otl_attr *ta = otl_node_attr(hn, "transA");
        if (ta && ta->i)
            return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: head node '%s' (Gemm) has transA=1; cut with --at",
                                 otl_model_file(m), hn->name);
        L->keep_chain = 1;
        L->cut = otl_strdup(h.input_tensor);
        L->target = otl_strdup(head_out);
        L->out_index = chain_out;
        L->head_node = h.node;
        L->bias_node = h.bias_node;
        L->features = strcmp(hn->op_type, "Gemm") == 0 ? h.features : -1;
        if (L->cut && own_head_input(m, h.weight, &L->cut)) {
            L->features = -1;
            if (!L->cut)
                return otl_oom(err);
        }
        L->old_classes = h.classes;
        snprintf(L->old_head, sizeof L->old_head, "%s", hn->name);
        if (!L->cut || !L->target)
            return otl_oom(err);
        return OTL_OK;
    }
    for (int oi = 0; oi < g->n_outputs; oi++) {
        int c = otl_graph_conv_head(g, oi);
        if (c < 0)
            continue;
        const otl_node *cn = g->nodes[c];
        L->cut = otl_strdup(cn->inputs[0]);
        L->target = otl_strdup(g->outputs[oi]->name);
        L->out_index = oi;
        L->old_classes = otl_graph_resolve_init(g, cn->inputs[1])->dims[0];
        snprintf(L->old_head, sizeof L->old_head, "%s", cn->name);
        if (!L->cut || !L->target)
            return otl_oom(err);
        return OTL_OK;
    }
    int p = otl_graph_producer(g, g->outputs[0]->name);
    return otl_error_set(err, OTL_ERR_INPUT,
                         "%s: no classifier head found (output '%s' is produced by %s%s%s, not by a Gemm/MatMul(+Add) or "
                         "1x1-Conv classifier through shape-preserving ops); name the features tensor with --at TENSOR",
                         otl_model_file(m), g->outputs[0]->name, p >= 0 ? g->nodes[p]->op_type : "no node",
                         p >= 0 ? " node " : "", p >= 0 ? g->nodes[p]->name : "");
}

/* ---------------------------------------------------------------- the cut tensor's shape */

/* Feature axis of a rank-r tensor: 1 for rank 2 and 4 (NCHW), 2 for rank 3 (N, T, D). */
static int feature_axis(int rank)
{
    return rank == 3 ? 2 : 1;
}

/* A probe run feeds zeros; symbolic axes of the data input get: 1 for the batch, the image size of
 * `pp` (the preprocessing given to swap-head, else the model's stored or default one) for the spatial
 * axes of a rank-4 input, 8 otherwise (token axes). */
static otl_status probe_shape(const otl_model *m, const otl_preprocess *pp, const char *name, int threads, int *rank,
                              int64_t *dims, otl_error *err)
{
    otl_model *c = NULL;
    otl_session *s = NULL;
    otl_tensor *in[64] = {0};
    otl_tensor **outs = NULL;
    int n_in = 0, n_out = 0;
    otl_status st = OTL_OK;
    if (otl_model_clone(m, &c, err))
        return err->code;
    otl_graph *g = c->graph;
    if (!otl_graph_is_output(g, name)) {
        otl_value *v = otl_value_new(name);
        if (!v || otl_graph_add_output(g, v)) {
            otl_value_free(v);
            st = otl_oom(err);
            goto done;
        }
    }
    for (int i = 0; i < g->n_inputs && n_in < 64; i++) {
        const otl_value *v = g->inputs[i];
        if (otl_graph_find_init(g, v->name))
            continue;
        if (!v->has_type || !v->is_tensor || !v->has_shape) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: cannot infer the shape of '%s': input '%s' has no declared "
                               "shape for a probe run",
                               otl_model_file(m), name, v->name);
            goto done;
        }
        int64_t d[16];
        if (v->rank > 16) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: input '%s' has rank %d", otl_model_file(m), v->name,
                               v->rank);
            goto done;
        }
        for (int k = 0; k < v->rank; k++) {
            d[k] = v->dims[k].value >= 0 ? v->dims[k].value : k == 0 ? 1 : 8;
            if (v->dims[k].value < 0 && v->rank == 4 && pp) {
                int hk = pp->nhwc ? 1 : 2;
                if (k == hk || k == hk + 1)
                    d[k] = k == hk ? pp->height : pp->width;
                else if (k == (pp->nhwc ? 3 : 1))
                    d[k] = otl_preprocess_nchan(pp);
            }
        }
        if (v->rank > 0 && v->dims[0].value < 0)
            d[0] = 1;
        otl_tensor *t = otl_tensor_new(v->name, v->dtype, v->rank, d);
        int64_t nb = t ? otl_dtype_nbytes(v->dtype, t->numel) : -1;
        if (!t || nb < 0 || v->dtype == OTL_DTYPE_STRING) {
            otl_tensor_free(t);
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: cannot make a probe input for '%s' (%s)",
                               otl_model_file(m), v->name, otl_dtype_name(v->dtype));
            goto done;
        }
        t->nbytes = (size_t)nb;
        t->data = calloc(1, t->nbytes + 1);
        in[n_in++] = t;
        if (!t->data) {
            st = otl_oom(err);
            goto done;
        }
    }
    otl_session_opts so = {.threads = threads};
    if (otl_session_new(&s, c, &so, err) || otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, err)) {
        st = err->code;
        goto done;
    }
    st = otl_error_set(err, OTL_ERR_INTERNAL, "%s: probe run did not return '%s'", otl_model_file(m), name);
    for (int i = 0; i < n_out; i++)
        if (strcmp(outs[i]->name, name) == 0) {
            otl_error_clear(err);
            st = OTL_OK;
            if (outs[i]->rank > 8) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: cut tensor '%s' has rank %d", otl_model_file(m), name,
                                   outs[i]->rank);
                break;
            }
            if (outs[i]->dtype != OTL_DTYPE_FLOAT) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: cut tensor '%s' is %s; a head needs float32 features "
                                   "(rank %d)",
                                   otl_model_file(m), name, otl_dtype_name(outs[i]->dtype), outs[i]->rank);
                break;
            }
            *rank = outs[i]->rank;
            memcpy(dims, outs[i]->dims, (size_t)outs[i]->rank * sizeof *dims);
            break;
        }
done:
    otl_tensors_free(outs, n_out);
    for (int i = 0; i < n_in; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_model_free(c);
    return st;
}

static otl_status cut_shape(const otl_model *m, const located *L, const otl_preprocess *given, int threads, int *rank,
                            int64_t *features, otl_error *err)
{
    if (L->features > 0) {
        *rank = 2;
        *features = L->features;
        return OTL_OK;
    }
    const otl_value *v = otl_graph_find_value(m->graph, L->cut);
    if (v && v->has_type && v->is_tensor && v->dtype != OTL_DTYPE_FLOAT)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cut tensor '%s' is %s; a head needs float32 features (rank %d)",
                             otl_model_file(m), L->cut, otl_dtype_name(v->dtype), v->has_shape ? v->rank : -1);
    if (v && v->has_type && v->is_tensor && v->has_shape && v->rank >= 2 && v->rank <= 4 &&
        v->dims[feature_axis(v->rank)].value > 0) {
        *rank = v->rank;
        *features = v->dims[feature_axis(v->rank)].value;
        return OTL_OK;
    }
    int64_t dims[8];
    otl_preprocess stored;
    otl_error ignored = {0};
    const otl_preprocess *pp = given ? given : otl_preprocess_get(m, &stored, &ignored) ? NULL : &stored;
    otl_error_clear(&ignored);
    if (probe_shape(m, pp, L->cut, threads, rank, dims, err))
        return err->code;
    if (*rank < 2 || *rank > 4)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cut tensor '%s' has rank %d; a head needs rank 2 (N, F), 3 "
                             "(N, T, D) or 4 (N, C, H, W)",
                             otl_model_file(m), L->cut, *rank);
    *features = dims[feature_axis(*rank)];
    if (*features < 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cut tensor '%s' has no features (axis %d is %lld)",
                             otl_model_file(m), L->cut, feature_axis(*rank), (long long)*features);
    return OTL_OK;
}

/* ---------------------------------------------------------------- building the head */

static otl_node *add_node(otl_graph *g, const char *name, const char *op, int n_in, const char *const *in,
                          const char *out, otl_error *err)
{
    otl_node *n = otl_node_new(name, op, "");
    if (!n || otl_node_set_io(n, n_in, in, 1, &out) || otl_graph_add_node(g, n)) {
        otl_node_free(n);
        otl_oom(err);
        return NULL;
    }
    return n;
}

static int attr_int(otl_node *n, const char *name, int64_t v)
{
    otl_attr *a;
    if (otl_node_add_attr(n, name, OTL_ATTR_INT, &a))
        return 0;
    a->i = v;
    return 1;
}

static int attr_ints(otl_node *n, const char *name, const int64_t *v, size_t k)
{
    otl_attr *a;
    if (otl_node_add_attr(n, name, OTL_ATTR_INTS, &a) || !(a->ints = malloc(k * sizeof *v)))
        return 0;
    memcpy(a->ints, v, k * sizeof *v);
    a->n_ints = k;
    return 1;
}

/* Float32 Linear parameters (out, in) and (out), torch.nn.Linear's init. */
static otl_status add_linear(otl_graph *g, const char *wname, const char *bname, int64_t out, int64_t in,
                             uint64_t *rng, otl_error *err)
{
    int64_t wd[2] = {out, in};
    otl_tensor *w = otl_tensor_new(wname, OTL_DTYPE_FLOAT, 2, wd);
    otl_tensor *b = otl_tensor_new(bname, OTL_DTYPE_FLOAT, 1, &out);
    if (!w || !b || out > ((int64_t)1 << 40) / in) {
        otl_tensor_free(w);
        otl_tensor_free(b);
        return w && b ? otl_error_set(err, OTL_ERR_INPUT, "head too large (%lld x %lld)", (long long)out,
                                      (long long)in)
                      : otl_oom(err);
    }
    w->nbytes = (size_t)w->numel * 4;
    b->nbytes = (size_t)b->numel * 4;
    w->data = malloc(w->nbytes);
    b->data = malloc(b->nbytes);
    if (!w->data || !b->data) {
        otl_tensor_free(w);
        otl_tensor_free(b);
        return otl_oom(err);
    }
    float bound = 1.0f / sqrtf((float)in);
    float *wp = w->data, *bp = b->data;
    for (int64_t i = 0; i < w->numel; i++)
        wp[i] = uniform(rng, bound);
    for (int64_t i = 0; i < b->numel; i++)
        bp[i] = uniform(rng, bound);
    otl_graph_add_init(g, w);
    otl_graph_add_init(g, b);
    return OTL_OK;
}

/* Set a declared value to [batch, N] float (batch axis from its old first axis when it had one). */
static otl_status set_out_shape(otl_graph *g, otl_value *v, int64_t n, const char *batch_param, int64_t batch_val,
                                otl_error *err)
{
    const char *params[2] = {batch_param ? batch_param : (batch_val >= 0 ? NULL : "batch"), NULL};
    int64_t dims[2] = {batch_val, n};
    /* keep the declared element type (a Cast after the head), float32 otherwise */
    int dtype = v->has_type && v->is_tensor && v->dtype != OTL_DTYPE_UNDEFINED ? v->dtype : OTL_DTYPE_FLOAT;
    otl_value *nv = otl_value_new_tensor(v->name, dtype, 2, dims, params);
    if (!nv)
        return otl_oom(err);
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) {
            nv->doc = v->doc;
            v->doc = NULL;
            otl_value_free(v);
            g->outputs[i] = nv;
            return OTL_OK;
        }
    otl_value_free(nv);
    return OTL_OK;
}

/* Remove value_info entries for names in `dirty` (a strmap) or that no longer exist. */
static void clean_value_info(otl_graph *g, const otl_strmap *dirty)
{
    int w = 0;
    for (int i = 0; i < g->n_value_info; i++) {
        otl_value *v = g->value_info[i];
        int keep = !otl_strmap_has(dirty, v->name) && otl_graph_producer(g, v->name) >= 0;
        if (keep)
            g->value_info[w++] = v;
        else
            otl_value_free(v);
    }
    g->n_value_info = w;
}

static otl_status set_lines(otl_model *m, const char *key, const char *const *names, int n, otl_error *err)
{
    if (n == 0)
        return otl_model_meta_set(m, key, NULL, err);
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return otl_oom(err);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        memcpy(p, names[i], l);
        p += l;
        if (i + 1 < n)
            *p++ = '\n';
    }
    *p = 0;
    otl_status st = otl_model_meta_set(m, key, s, err);
    free(s);
    return st;
}

/* Keep only frozen marks naming existing initializers. */
static otl_status clean_frozen(otl_model *m, otl_error *err)
{
    const otl_graph *g = m->graph;
    const char **names = malloc(((size_t)g->n_inits + 1) * sizeof *names);
    if (!names)
        return otl_oom(err);
    int n = 0;
    for (int i = 0; i < g->n_inits; i++)
        if (otl_model_is_frozen(m, g->inits[i]->name))
            names[n++] = g->inits[i]->name;
    otl_status st = set_lines(m, "onnx_tl.frozen", names, n, err);
    free(names);
    return st;
}

otl_status otl_swap_head(otl_model *m, const otl_swap_head_opts *o, otl_swap_head_info *info, otl_error *err)
{
    otl_swap_head_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    otl_graph *g = m->graph;
    const char *f = otl_model_file(m);
    if (o->classes < 1)
        return otl_error_set(err, OTL_ERR_USAGE, "swap-head: the number of classes must be at least 1, got %lld",
                             (long long)o->classes);
    if (o->hidden < 0)
        return otl_error_set(err, OTL_ERR_USAGE, "swap-head: --hidden must be positive");
    if (o->has_dropout && !(o->dropout >= 0 && o->dropout < 1))
        return otl_error_set(err, OTL_ERR_USAGE, "swap-head: --dropout must be in [0, 1)");
    if (o->labels && o->n_labels != o->classes)
        return otl_error_set(err, OTL_ERR_INPUT, "swap-head: %d labels given for %lld classes", o->n_labels,
                             (long long)o->classes);
    int64_t opset = otl_model_opset(m, "");
    if (opset < 7)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: ai.onnx opset %lld is too old for swap-head (needs 7+)", f,
                             (long long)opset);

    located L;
    otl_status st = locate(m, o, &L, err);
    int rank = 0;
    int64_t F = 0;
    otl_strmap dirty;
    int have_dirty = 0;
    char *prefix = NULL, *pooled = NULL, *renamed = NULL;
    char names[12][96];
    if (st || (st = cut_shape(m, &L, o->pp, o->threads, &rank, &F, err)))
        goto done;
    if (o->pool != OTL_POOL_AUTO && rank != 3) {
        st = otl_error_set(err, OTL_ERR_USAGE, "%s: --pool applies to rank-3 (N, T, D) features; '%s' has rank %d", f,
                           L.cut, rank);
        goto done;
    }
    snprintf(info->cut, sizeof info->cut, "%s", L.cut);
    snprintf(info->old_head, sizeof info->old_head, "%s", L.old_head);
    info->cut_rank = rank;
    info->features = F;
    info->old_classes = L.old_classes;
    if (rank == 3 && o->pool == OTL_POOL_MEAN)
        info->pooling = "mean";
    else if (rank == 3)
        info->pooling = "cls";
    else if (rank == 4)
        info->pooling = "GlobalAveragePool+Flatten";
    else
        info->pooling = "none";
    if (!(have_dirty = otl_strmap_init(&dirty, 64))) {
        st = otl_oom(err);
        goto done;
    }

    /* remember the output's batch axis */
    otl_value *outv = g->outputs[L.out_index];
    const char *batch_param = NULL;
    int64_t batch_val = -1;
    char batch_buf[256];
    if (outv->has_shape && outv->rank >= 1) {
        batch_val = outv->dims[0].value;
        if (outv->dims[0].param) {
            snprintf(batch_buf, sizeof batch_buf, "%s", outv->dims[0].param);
            batch_param = batch_buf;
        }
    } else {
        const otl_value *in0 = NULL;
        for (int i = 0; i < g->n_inputs && !in0; i++)
            if (!otl_graph_find_init(g, g->inputs[i]->name))
                in0 = g->inputs[i];
        if (in0 && in0->has_shape && in0->rank >= 1) {
            batch_val = in0->dims[0].value;
            if (in0->dims[0].param) {
                snprintf(batch_buf, sizeof batch_buf, "%s", in0->dims[0].param);
                batch_param = batch_buf;
            }
        }
    }

    /* 1. detach the old head */
    if (L.keep_chain) {
        int first = L.head_node, second = L.bias_node;
        if (second >= 0 && second < first) {
            int t = first;
            first = second;
            second = t;
        }
        if (second >= 0)
            otl_graph_remove_node(g, second);
        otl_graph_remove_node(g, first);
        /* bypass shape ops on the chain from target to the output */
        for (int changed = 1; changed;) {
            changed = 0;
            for (int i = 0; i < g->n_nodes; i++) {
                otl_node *n = g->nodes[i];
                if (!op_in(n->op_type, (const char *const[]){"Reshape", "Squeeze", "Unsqueeze", NULL}) ||
                    n->n_inputs < 1 || n->n_outputs < 1)
                    continue;
                int down = 0;
                if ((st = depends_on(g, n->inputs[0], L.target, &down, err)))
                    goto done;
                if (!down)
                    continue;
                char *in = otl_strdup(n->inputs[0]), *out = otl_strdup(n->outputs[0]);
                int ok = in && out;
                if (ok && otl_graph_is_output(g, out)) {
                    /* the producer of `in` writes `out` instead */
                    int p = otl_graph_producer(g, in);
                    otl_graph_remove_node(g, i);
                    ok = rename_uses(g, in, out);
                    if (ok && p >= 0) {
                        if (p > i)
                            p--;
                        for (int k = 0; k < g->nodes[p]->n_outputs; k++)
                            if (strcmp(g->nodes[p]->outputs[k], in) == 0)
                                ok = ok && otl_set_str(&g->nodes[p]->outputs[k], out);
                    }
                    if (ok && strcmp(L.target, in) == 0)
                        ok = otl_set_str(&L.target, out);
                } else if (ok) {
                    otl_graph_remove_node(g, i);
                    ok = rename_uses(g, out, in);
                }
                free(in);
                free(out);
                if (!ok) {
                    st = otl_oom(err);
                    goto done;
                }
                changed = 1;
                break;
            }
        }
    } else {
        if (o->at) {
            /* only the first output stays */
            for (int i = g->n_outputs - 1; i >= 1; i--) {
                otl_value_free(g->outputs[i]);
                g->n_outputs--;
            }
        }
        const char *O = L.target;
        if (otl_graph_is_input(g, O)) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: output '%s' is also a graph input", f, O);
            goto done;
        }
        char base[600];
        snprintf(base, sizeof base, "%s_backbone", O);
        if (!(renamed = otl_graph_fresh_name(g, base))) {
            st = otl_oom(err);
            goto done;
        }
        int p = otl_graph_producer(g, O);
        if (p >= 0) {
            for (int k = 0; k < g->nodes[p]->n_outputs; k++)
                if (strcmp(g->nodes[p]->outputs[k], O) == 0 && !otl_set_str(&g->nodes[p]->outputs[k], renamed)) {
                    st = otl_oom(err);
                    goto done;
                }
            if (!rename_uses(g, O, renamed)) {
                st = otl_oom(err);
                goto done;
            }
        }
        if (strcmp(L.cut, O) == 0 && !otl_set_str(&L.cut, renamed)) {
            st = otl_oom(err);
            goto done;
        }
    }

    /* what only the old head used goes now (its names become free again) */
    if ((st = prune(g, L.cut, &info->n_removed_nodes, &info->n_removed_params, err)))
        goto done;

    /* 2. names: head<k>.fc.weight ... all unused */
    for (int k = 0;; k++) {
        free(prefix);
        size_t pl = 32;
        prefix = malloc(pl);
        if (!prefix) {
            st = otl_oom(err);
            goto done;
        }
        if (k == 0)
            snprintf(prefix, pl, "head");
        else
            snprintf(prefix, pl, "head%d", k);
        const char *fc = o->hidden > 0 ? "fc2" : "fc";
        snprintf(names[0], sizeof names[0], "%s.fc1.weight", prefix);
        snprintf(names[1], sizeof names[1], "%s.fc1.bias", prefix);
        snprintf(names[2], sizeof names[2], "%s.%s.weight", prefix, fc);
        snprintf(names[3], sizeof names[3], "%s.%s.bias", prefix, fc);
        snprintf(names[4], sizeof names[4], "/%s/pool", prefix);
        snprintf(names[5], sizeof names[5], "/%s/flatten", prefix);
        snprintf(names[6], sizeof names[6], "/%s/fc1/Gemm", prefix);
        snprintf(names[7], sizeof names[7], "/%s/relu", prefix);
        snprintf(names[8], sizeof names[8], "/%s/dropout", prefix);
        snprintf(names[9], sizeof names[9], "/%s/%s/Gemm", prefix, fc);
        snprintf(names[10], sizeof names[10], "/%s/cls_index", prefix);
        snprintf(names[11], sizeof names[11], "/%s/dropout_ratio", prefix);
        int clash = 0;
        for (int i = 0; i < 12 && !clash; i++) {
            clash = otl_graph_name_used(g, names[i]);
            char buf[sizeof names[0] + 16];
            size_t l = strlen(names[i]);
            memcpy(buf, names[i], l);
            memcpy(buf + l, "_output_0", 10);
            clash = clash || otl_graph_name_used(g, buf);
        }
        if (!clash)
            break;
    }

    /* 3. the new head */
    uint64_t rng = o->seed ^ 0x6F6E6E782D746Cull; /* "onnx-tl" */
    char cur[640], nxt[640];
    snprintf(cur, sizeof cur, "%s", L.cut);
#define NODE_OUT(idx) (snprintf(nxt, sizeof nxt, "%s_output_0", names[idx]), nxt)
    otl_node *n;
    if (rank == 4) {
        const char *in[1] = {cur};
        if (!(n = add_node(g, names[4], "GlobalAveragePool", 1, in, NODE_OUT(4), err)))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
        if (!(n = add_node(g, names[5], "Flatten", 1, in, NODE_OUT(5), err)) || !attr_int(n, "axis", 1))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
    } else if (rank == 3 && o->pool == OTL_POOL_MEAN) {
        const char *in[2] = {cur, names[10]};
        int64_t axes = 1;
        if (opset >= 18) {
            otl_tensor *ax = otl_tensor_new(names[10], OTL_DTYPE_INT64, 1, &axes);
            if (!ax || !(ax->data = malloc(8))) {
                otl_tensor_free(ax);
                goto fail;
            }
            ax->nbytes = 8;
            memcpy(ax->data, &axes, 8);
            otl_graph_add_init(g, ax);
        }
        if (!(n = add_node(g, names[4], "ReduceMean", opset >= 18 ? 2 : 1, in, NODE_OUT(4), err)) ||
            !attr_int(n, "keepdims", 0) || (opset < 18 && !attr_ints(n, "axes", &axes, 1)))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
    } else if (rank == 3) {
        otl_tensor *ix = otl_tensor_new(names[10], OTL_DTYPE_INT64, 0, NULL);
        if (!ix || !(ix->data = calloc(1, 8))) {
            otl_tensor_free(ix);
            goto fail;
        }
        ix->nbytes = 8;
        otl_graph_add_init(g, ix);
        const char *in[2] = {cur, names[10]};
        if (!(n = add_node(g, names[4], "Gather", 2, in, NODE_OUT(4), err)) || !attr_int(n, "axis", 1))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
    }
    int64_t fc_in = F;
    if (o->hidden > 0) {
        if ((st = add_linear(g, names[0], names[1], o->hidden, F, &rng, err)))
            goto done;
        const char *in[3] = {cur, names[0], names[1]};
        if (!(n = add_node(g, names[6], "Gemm", 3, in, NODE_OUT(6), err)) || !attr_int(n, "transB", 1))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
        const char *rin[1] = {cur};
        if (!(n = add_node(g, names[7], "Relu", 1, rin, NODE_OUT(7), err)))
            goto fail;
        snprintf(cur, sizeof cur, "%s", nxt);
        fc_in = o->hidden;
    }
    if (o->has_dropout) {
        if (opset >= 12) {
            /* ratio as a Constant node: an initializer would look like a trainable parameter */
            const char *none[1] = {NULL};
            char rname[640];
            snprintf(rname, sizeof rname, "%s_output_0", names[11]);
            if (!(n = add_node(g, names[11], "Constant", 0, none, rname, err)))
                goto fail;
            otl_attr *a;
            if (otl_node_add_attr(n, "value", OTL_ATTR_TENSOR, &a) ||
                !(a->t = otl_tensor_new(NULL, OTL_DTYPE_FLOAT, 0, NULL)) || !(a->t->data = malloc(4)))
                goto fail;
            a->t->nbytes = 4;
            memcpy(a->t->data, &o->dropout, 4);
            const char *in[2] = {cur, rname};
            if (!(n = add_node(g, names[8], "Dropout", 2, in, NODE_OUT(8), err)))
                goto fail;
        } else {
            const char *in[1] = {cur};
            otl_attr *a;
            if (!(n = add_node(g, names[8], "Dropout", 1, in, NODE_OUT(8), err)) ||
                otl_node_add_attr(n, "ratio", OTL_ATTR_FLOAT, &a))
                goto fail;
            a->f = o->dropout;
        }
        snprintf(cur, sizeof cur, "%s", nxt);
    }
    if ((st = add_linear(g, names[2], names[3], o->classes, fc_in, &rng, err)))
        goto done;
    {
        const char *in[3] = {cur, names[2], names[3]};
        if (!(n = add_node(g, names[9], "Gemm", 3, in, L.target, err)) || !attr_int(n, "transB", 1))
            goto fail;
    }
#undef NODE_OUT

    /* 4. clean up: dead nodes, unused initializers, value_info downstream of the new head */
    if ((st = prune(g, NULL, &info->n_removed_nodes, &info->n_removed_params, err)) || (st = otl_graph_resort(m, err)))
        goto done;
    otl_strmap_put(&dirty, L.target, 1);
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *nd = g->nodes[i];
        int down = 0;
        for (int k = 0; k < nd->n_inputs && !down; k++)
            down = otl_strmap_has(&dirty, nd->inputs[k]);
        for (int k = 0; down && k < nd->n_outputs; k++)
            otl_strmap_put(&dirty, nd->outputs[k], 1);
    }
    clean_value_info(g, &dirty);
    for (int i = 0; i < g->n_outputs; i++) {
        otl_value *v = g->outputs[i];
        if (strcmp(v->name, L.target) == 0 || (i == L.out_index && L.keep_chain)) {
            if ((st = set_out_shape(g, v, o->classes, batch_param, batch_val, err)))
                goto done;
        } else if (otl_strmap_has(&dirty, v->name) && v->has_shape && v->rank >= 1) {
            v->dims[v->rank - 1].value = o->classes;
            free(v->dims[v->rank - 1].param);
            v->dims[v->rank - 1].param = NULL;
        }
    }

    /* 5. metadata */
    {
        const char *hp[4] = {names[0], names[1], names[2], names[3]};
        int off = o->hidden > 0 ? 0 : 2;
        if ((st = set_lines(m, "onnx_tl.head", hp + off, 4 - off, err)) || (st = clean_frozen(m, err)))
            goto done;
    }
    if (o->labels) {
        if ((st = set_lines(m, "onnx_tl.labels", o->labels, o->n_labels, err)))
            goto done;
    } else if ((st = otl_model_meta_set(m, "onnx_tl.labels", NULL, err))) {
        goto done;
    }
    if (o->pp) {
        char *js = otl_preprocess_to_json(o->pp);
        if (!js) {
            st = otl_oom(err);
            goto done;
        }
        st = otl_preprocess_check(m, o->pp, o->pp_source ? o->pp_source : "preprocessing", err) ? err->code
                                                                    : otl_model_meta_set(m, "onnx_tl.preprocess", js, err);
        free(js);
        if (st)
            goto done;
    }
    st = otl_model_validate(m, err);
    goto done;
fail:
    st = err->code ? err->code : otl_oom(err);
done:
    if (have_dirty)
        otl_strmap_free(&dirty);
    free(prefix);
    free(pooled);
    free(renamed);
    free(L.cut);
    free(L.target);
    return st;
}

/* ---------------------------------------------------------------- freeze */

otl_status otl_model_set_frozen(otl_model *m, const char *const *names, int n, otl_error *err)
{
    for (int i = 0; i < n; i++) {
        const otl_tensor *t = otl_graph_find_init(m->graph, names[i]);
        if (!t || !otl_graph_init_is_param(m->graph, t))
            return otl_error_set(err, OTL_ERR_INPUT, "%s: '%s' is not a trainable parameter", otl_model_file(m),
                                 names[i]);
    }
    return set_lines(m, "onnx_tl.frozen", names, n, err);
}

otl_status otl_head_params(const otl_model *m, const char ***names, int *n, otl_error *err)
{
    const otl_graph *g = m->graph;
    *names = malloc(((size_t)g->n_inits + 1) * sizeof **names);
    *n = 0;
    if (!*names)
        return otl_oom(err);
    const char *stored = otl_model_meta_get(m, "onnx_tl.head");
    for (int i = 0; i < g->n_inits; i++) {
        const otl_tensor *t = g->inits[i];
        if (!otl_graph_init_is_param(g, t))
            continue;
        int in = 0;
        if (stored) {
            size_t l = strlen(t->name);
            for (const char *p = stored; *p;) {
                const char *e = strchr(p, '\n');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len == l && memcmp(p, t->name, l) == 0)
                    in = 1;
                p += len;
                if (*p)
                    p++;
            }
        }
        if (in)
            (*names)[(*n)++] = t->name;
    }
    if (*n)
        return OTL_OK;
    otl_head h;
    otl_find_classifier(g, &h);
    if (!h.found)
        return OTL_OK;
    const otl_node *hn = g->nodes[h.node];
    for (int k = 1; k < hn->n_inputs; k++) {
        const otl_tensor *t = otl_graph_resolve_init(g, hn->inputs[k]);
        if (t && otl_graph_init_is_param(g, t))
            (*names)[(*n)++] = t->name;
    }
    if (h.bias_node >= 0) {
        const otl_node *bn = g->nodes[h.bias_node];
        for (int k = 0; k < bn->n_inputs; k++) {
            const otl_tensor *t = otl_graph_resolve_init(g, bn->inputs[k]);
            if (t && otl_graph_init_is_param(g, t))
                (*names)[(*n)++] = t->name;
        }
    }
    return OTL_OK;
}

/* Parameters read by the nodes marked live (through Identity chains). */
static void mark_params_of(const otl_graph *g, const char *live, char *sel, const otl_strmap *init_idx)
{
    for (int i = 0; i < g->n_nodes; i++) {
        if (!live[i])
            continue;
        for (int k = 0; k < g->nodes[i]->n_inputs; k++) {
            const otl_tensor *t = otl_graph_resolve_init(g, g->nodes[i]->inputs[k]);
            if (t)
                sel[otl_strmap_get(init_idx, t->name, 0)] = 1;
        }
    }
}

static otl_status apply_globs(const otl_model *m, const char *list, const char *opt, char *sel, int value,
                              otl_error *err)
{
    const otl_graph *g = m->graph;
    char *copy = otl_strdup(list);
    if (!copy)
        return otl_oom(err);
    otl_status st = OTL_OK;
    char *save = NULL;
    int any_glob = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ')
            tok[--l] = 0;
        if (!*tok)
            continue;
        any_glob = 1;
        int hits = 0;
        for (int i = 0; i < g->n_inits; i++)
            if (otl_graph_init_is_param(g, g->inits[i]) && fnmatch(tok, g->inits[i]->name, 0) == 0) {
                sel[i] = (char)value;
                hits++;
            }
        if (!hits) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: %s '%s' matches no parameter", otl_model_file(m), opt, tok);
            break;
        }
    }
    if (!st && !any_glob)
        st = otl_error_set(err, OTL_ERR_USAGE, "%s: %s needs at least one pattern", otl_model_file(m), opt);
    free(copy);
    return st;
}

otl_status otl_freeze(otl_model *m, const otl_freeze_opts *o, otl_error *err)
{
    const otl_graph *g = m->graph;
    char *frozen = calloc((size_t)g->n_inits + 1, 1);
    char *live = calloc((size_t)g->n_nodes + 1, 1);
    const char **names = malloc(((size_t)g->n_inits + 1) * sizeof *names);
    const char **head = NULL;
    int n_head = 0;
    otl_strmap init_idx;
    int have_idx = 0;
    otl_status st = OTL_OK;
    if (!frozen || !live || !names || !(have_idx = otl_strmap_init(&init_idx, (size_t)g->n_inits + 8))) {
        st = otl_oom(err);
        goto done;
    }
    for (int i = 0; i < g->n_inits; i++) {
        otl_strmap_put(&init_idx, g->inits[i]->name, i);
        frozen[i] = (char)otl_model_is_frozen(m, g->inits[i]->name);
    }
    if (o->all_but_head) {
        if ((st = otl_head_params(m, &head, &n_head, err)))
            goto done;
        if (n_head == 0) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: --all-but-head: no classifier head found (swap-head first, or "
                               "use --until/--params)",
                               otl_model_file(m));
            goto done;
        }
        for (int i = 0; i < g->n_inits; i++) {
            int is_head = 0;
            for (int k = 0; k < n_head; k++)
                is_head |= strcmp(head[k], g->inits[i]->name) == 0;
            if (!is_head && otl_graph_init_is_param(g, g->inits[i]))
                frozen[i] = 1;
        }
    }
    if (o->until) {
        const char *u = o->until;
        if (otl_graph_producer(g, u) >= 0 || otl_graph_is_input(g, u)) {
            st = otl_graph_mark_live(g, &u, 1, live, err);
        } else {
            int node = -1;
            for (int i = 0; i < g->n_nodes && node < 0; i++)
                if (strcmp(g->nodes[i]->name, u) == 0)
                    node = i;
            if (node < 0) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: --until '%s': no tensor or node of that name",
                                   otl_model_file(m), u);
                goto done;
            }
            st = otl_graph_mark_live(g, (const char *const *)g->nodes[node]->outputs, g->nodes[node]->n_outputs, live,
                                     err);
            live[node] = 1;
        }
        if (st)
            goto done;
        char *sel = calloc((size_t)g->n_inits + 1, 1);
        if (!sel) {
            st = otl_oom(err);
            goto done;
        }
        mark_params_of(g, live, sel, &init_idx);
        int hits = 0;
        for (int i = 0; i < g->n_inits; i++)
            if (sel[i] && otl_graph_init_is_param(g, g->inits[i])) {
                frozen[i] = 1;
                hits++;
            }
        free(sel);
        if (!hits) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: --until '%s': no parameter is used to compute it",
                               otl_model_file(m), u);
            goto done;
        }
    }
    if (o->params && (st = apply_globs(m, o->params, "--params", frozen, 1, err)))
        goto done;
    if (o->unfreeze && (st = apply_globs(m, o->unfreeze, "--unfreeze", frozen, 0, err)))
        goto done;
    int n = 0;
    for (int i = 0; i < g->n_inits; i++)
        if (frozen[i] && otl_graph_init_is_param(g, g->inits[i]))
            names[n++] = g->inits[i]->name;
    st = set_lines(m, "onnx_tl.frozen", names, n, err);
done:
    if (have_idx)
        otl_strmap_free(&init_idx);
    free(head);
    free(frozen);
    free(live);
    free(names);
    return st;
}

/* ---------------------------------------------------------------- parameter blocks */

void otl_param_blocks_free(otl_param_blocks *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_params; i++)
        free(b->params[i]);
    free(b->params);
    free(b->block);
    for (int i = 0; i < b->n_blocks; i++)
        free(b->block_names[i]);
    free(b->block_names);
    free(b);
}

int otl_param_blocks_depth(const otl_param_blocks *b, const char *name)
{
    for (int i = 0; i < b->n_params; i++)
        if (strcmp(b->params[i], name) == 0)
            return b->block[i];
    return -1;
}

/* A PyTorch-style name: identifiers/numbers joined by '.', at least two components. */
static int torch_style(const char *s)
{
    int comps = 1;
    if (!*s || *s == '.')
        return 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (p[1] == 0 || p[1] == '.')
                return 0;
            comps++;
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            return 0;
        }
    }
    return comps >= 2;
}

/* Block key of a PyTorch-style name (malloc'd). */
static char *torch_block(const char *s)
{
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, '.');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        int digits = l > 0;
        for (size_t i = 0; i < l; i++)
            digits &= p[i] >= '0' && p[i] <= '9';
        if (digits && e) /* a digit component that is not the last (the last is the leaf name) */
            return otl_strndup(s, (size_t)(p - s) + l);
        if (!e)
            break;
        p = e + 1;
    }
    const char *e = strchr(s, '.');
    return otl_strndup(s, e ? (size_t)(e - s) : strlen(s));
}

static int is_weight_op(const char *op)
{
    static const char *const ops[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "Embedding", "LSTM", "GRU",
                                      "RNN", "ConvInteger", "MatMulInteger", "Einsum", NULL};
    return op_in(op, ops);
}

otl_status otl_param_blocks_get(const otl_model *m, otl_param_blocks **out, otl_error *err)
{
    const otl_graph *g = m->graph;
    *out = NULL;
    otl_param_blocks *b = calloc(1, sizeof *b);
    int *order = NULL, *pos = NULL, *first = NULL, *owner = NULL;
    char **key = NULL;
    const char **head = NULL;
    int n_head = 0;
    otl_status st = OTL_OK;
    if (!b)
        return otl_oom(err);
    int n_init = g->n_inits;
    b->params = calloc((size_t)n_init + 1, sizeof *b->params);
    b->block = calloc((size_t)n_init + 1, sizeof *b->block);
    key = calloc((size_t)n_init + 1, sizeof *key);
    first = malloc(((size_t)n_init + 1) * sizeof *first);
    pos = malloc(((size_t)g->n_nodes + 1) * sizeof *pos);
    owner = malloc(((size_t)n_init + 1) * sizeof *owner);
    if (!b->params || !b->block || !key || !first || !pos || !owner) {
        st = otl_oom(err);
        goto done;
    }
    if ((st = otl_graph_toposort(g, &order, m->path, err)) || (st = otl_head_params(m, &head, &n_head, err)))
        goto done;
    for (int i = 0; i < g->n_nodes; i++)
        pos[order[i]] = i;
    /* parameters and their first consumer (topological position), through Identity chains */
    int all_torch = 1;
    otl_strmap pidx, prod;
    int have_maps = otl_strmap_init(&pidx, (size_t)n_init + 8);
    if (have_maps && !otl_strmap_init(&prod, (size_t)g->n_nodes * 2 + 8)) {
        otl_strmap_free(&pidx);
        have_maps = 0;
    }
    if (!have_maps) {
        st = otl_oom(err);
        goto done;
    }
    for (int i = 0; i < n_init; i++) {
        const otl_tensor *t = g->inits[i];
        if (!otl_graph_init_is_param(g, t))
            continue;
        int k = b->n_params++;
        if (!(b->params[k] = otl_strdup(t->name)) || !otl_strmap_put(&pidx, b->params[k], k)) {
            st = otl_oom(err);
            break;
        }
        first[k] = g->n_nodes;
        owner[k] = -1;
        int is_head = 0;
        for (int h = 0; h < n_head; h++)
            is_head |= strcmp(head[h], t->name) == 0;
        if (!is_head && !torch_style(t->name))
            all_torch = 0;
    }
    for (int ni = 0; !st && ni < g->n_nodes; ni++)
        for (int q = 0; q < g->nodes[ni]->n_outputs; q++)
            if (*g->nodes[ni]->outputs[q] && !otl_strmap_put(&prod, g->nodes[ni]->outputs[q], ni))
                st = otl_oom(err);
    for (int ni = 0; !st && ni < g->n_nodes; ni++) {
        const otl_node *nd = g->nodes[ni];
        if (strcmp(nd->op_type, "Identity") == 0)
            continue;
        for (int q = 0; q < nd->n_inputs; q++) {
            const char *name = nd->inputs[q];
            int k = -1;
            for (int hops = 0; hops < 16 && *name; hops++) {
                if ((k = otl_strmap_get(&pidx, name, -1)) >= 0 || otl_graph_find_init(g, name))
                    break;
                int p = otl_strmap_get(&prod, name, -1);
                if (p < 0 || strcmp(g->nodes[p]->op_type, "Identity") != 0 || g->nodes[p]->n_inputs < 1)
                    break;
                name = g->nodes[p]->inputs[0];
            }
            if (k >= 0 && pos[ni] < first[k]) {
                first[k] = pos[ni];
                owner[k] = ni;
            }
        }
    }
    otl_strmap_free(&pidx);
    otl_strmap_free(&prod);
    if (st)
        goto done;
    b->by_names = all_torch;
    /* block key and its ordering position */
    for (int k = 0; k < b->n_params; k++) {
        int is_head = 0;
        for (int h = 0; h < n_head; h++)
            is_head |= strcmp(head[h], b->params[k]) == 0;
        if (is_head) {
            key[k] = otl_strdup("head");
        } else if (all_torch) {
            key[k] = torch_block(b->params[k]);
        } else {
            int ni = owner[k];
            if (ni >= 0) {
                /* normalization or bias Add right after a weight-bearing node joins its block */
                const otl_node *nd = g->nodes[ni];
                if ((strcmp(nd->op_type, "BatchNormalization") == 0 || strcmp(nd->op_type, "LayerNormalization") == 0 ||
                     strcmp(nd->op_type, "Add") == 0) &&
                    nd->n_inputs >= 1) {
                    for (int q = 0; q < (strcmp(nd->op_type, "Add") == 0 ? 2 : 1); q++) {
                        int p = otl_graph_producer(g, nd->inputs[q]);
                        if (p >= 0 && is_weight_op(g->nodes[p]->op_type)) {
                            int has_w = 0;
                            for (int r = 1; r < g->nodes[p]->n_inputs; r++)
                                has_w |= otl_graph_resolve_init(g, g->nodes[p]->inputs[r]) != NULL;
                            has_w |= otl_graph_resolve_init(g, g->nodes[p]->inputs[0]) != NULL;
                            if (has_w) {
                                ni = p;
                                break;
                            }
                        }
                    }
                }
                char buf[600];
                snprintf(buf, sizeof buf, "%s", *g->nodes[ni]->name ? g->nodes[ni]->name : g->nodes[ni]->outputs[0]);
                key[k] = otl_strdup(buf);
                first[k] = pos[ni];
            } else {
                key[k] = otl_strdup(b->params[k]);
            }
        }
        if (!key[k]) {
            st = otl_oom(err);
            goto done;
        }
    }
    /* blocks ordered by the earliest first-consumer among their parameters; head last */
    int nb = 0;
    char **bn = calloc((size_t)b->n_params + 1, sizeof *bn);
    int *bpos = calloc((size_t)b->n_params + 1, sizeof *bpos);
    int *bidx = calloc((size_t)b->n_params + 1, sizeof *bidx);
    if (!bn || !bpos || !bidx) {
        free(bn);
        free(bpos);
        free(bidx);
        st = otl_oom(err);
        goto done;
    }
    for (int k = 0; k < b->n_params; k++) {
        int f = -1;
        for (int j = 0; j < nb && f < 0; j++)
            if (strcmp(bn[j], key[k]) == 0)
                f = j;
        int p = strcmp(key[k], "head") == 0 && n_head ? 1 << 30 : first[k];
        if (f < 0) {
            f = nb++;
            bn[f] = key[k];
            bpos[f] = p;
        } else if (p < bpos[f]) {
            bpos[f] = p;
        }
        bidx[k] = f;
    }
    /* rank by bpos descending -> depth */
    int *depth = calloc((size_t)nb + 1, sizeof *depth);
    b->block_names = calloc((size_t)nb + 1, sizeof *b->block_names);
    if (!depth || !b->block_names) {
        free(depth);
        free(bn);
        free(bpos);
        free(bidx);
        st = otl_oom(err);
        goto done;
    }
    for (int j = 0; j < nb; j++) {
        int d = 0;
        for (int q = 0; q < nb; q++)
            if (bpos[q] > bpos[j] || (bpos[q] == bpos[j] && q > j))
                d++;
        depth[j] = d;
        b->block_names[d] = otl_strdup(bn[j]);
        if (!b->block_names[d])
            st = otl_oom(err);
    }
    b->n_blocks = nb;
    for (int k = 0; k < b->n_params; k++)
        b->block[k] = depth[bidx[k]];
    free(depth);
    free(bn);
    free(bpos);
    free(bidx);
done:
    for (int k = 0; key && k < n_init; k++)
        free(key[k]);
    free(key);
    free(first);
    free(pos);
    free(owner);
    free(order);
    free(head);
    if (st) {
        otl_param_blocks_free(b);
        return st;
    }
    *out = b;
    return OTL_OK;
}
