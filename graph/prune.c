/* prune.c - pruning for `onnx-tl export --prune / --prune-channels` (see include/onnxtl_export.h):
 * global unstructured magnitude pruning of Conv/Gemm/MatMul weights (torch.nn.utils.prune.
 * global_unstructured with L1Unstructured), structured removal of whole Conv output channels with
 * the smallest L1 norm (torch.nn.utils.prune.ln_structured(n=1, dim=0) per layer, but the channels
 * really go: the following BatchNormalization, activations, pooling and every consumer are rewired),
 * and the zero masks `train` keeps (metadata onnx_tl.pruned). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/util.h"

#define PRUNED_KEY "onnx_tl.pruned"

static int is_op(const otl_node *n, const char *op)
{
    return otl_node_is_onnx(n) && strcmp(n->op_type, op) == 0;
}

static int is_target(const otl_node *n)
{
    return is_op(n, "Conv") || is_op(n, "Gemm") || is_op(n, "MatMul");
}

/* Number of inputs of n reading `name`; 1000 or more when one of its subgraphs reads it. */
static int node_reads(const otl_node *n, const char *name)
{
    int c = 0;
    for (int k = 0; k < n->n_inputs; k++)
        c += strcmp(n->inputs[k], name) == 0;
    for (int a = 0; a < n->n_attrs; a++) {
        if (n->attrs[a].g)
            c += 1000 * otl_graph_reads(n->attrs[a].g, name);
        for (size_t s = 0; s < n->attrs[a].n_graphs; s++)
            c += 1000 * otl_graph_reads(n->attrs[a].graphs[s], name);
    }
    return c;
}

static int excludable(const otl_graph *g, const otl_node *n)
{
    (void)g;
    return is_target(n);
}

static int excluded(const char *list, const otl_node *n)
{
    return otl_glob_list_match(list, n);
}

/* A float32 initializer with data named `name` (following Identity aliases), or NULL. */
static otl_tensor *float_init(const otl_graph *g, const char *name)
{
    const otl_tensor *r = *name ? otl_graph_resolve_init(g, name) : NULL;
    otl_tensor *t = r ? otl_graph_find_init(g, r->name) : NULL;
    if (!t || t->dtype != OTL_DTYPE_FLOAT || (t->numel && !t->data) || t->nbytes != (size_t)t->numel * sizeof(float))
        return NULL;
    return t;
}

/* The weight of a Conv (rank >= 3), Gemm (rank 2) or MatMul (second input, rank 2), or NULL. */
static otl_tensor *weight_of(const otl_graph *g, const otl_node *n)
{
    otl_tensor *w = n->n_inputs > 1 ? float_init(g, n->inputs[1]) : NULL;
    if (!w)
        return NULL;
    if (is_op(n, "Conv") ? w->rank >= 3 : w->rank == 2)
        return w;
    return NULL;
}

static int64_t float_params(const otl_graph *g)
{
    int64_t s = 0;
    for (int i = 0; i < g->n_inits; i++)
        if (otl_dtype_is_float(g->inits[i]->dtype))
            s += g->inits[i]->numel;
    return s;
}

/* ---------------------------------------------------------------- unstructured */

/* The k-th smallest (0-based) of a[0..n) (reorders a). */
static float kth_smallest(float *a, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float p = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

static otl_status prune_unstructured(otl_model *m, const otl_prune_opts *o, otl_prune_info *info, char ***names,
                                     int *n_names, otl_error *err)
{
    otl_graph *g = m->graph;
    otl_tensor **ws = calloc((size_t)g->n_nodes + 1, sizeof *ws);
    if (!ws)
        return otl_oom(err);
    int nw = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        otl_tensor *w = is_target(n) ? weight_of(g, n) : NULL;
        int dup = 0;
        for (int j = 0; w && j < nw; j++)
            dup |= ws[j] == w;
        if (w && !dup)
            ws[nw++] = w;
    }
    /* a weight that an excluded node reads stays dense */
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        otl_tensor *w = is_target(n) && excluded(o->exclude, n) ? weight_of(g, n) : NULL;
        for (int j = 0; w && j < nw; j++)
            if (ws[j] == w) {
                memmove(&ws[j], &ws[j + 1], (size_t)(nw - j - 1) * sizeof *ws);
                nw--;
                break;
            }
    }
    int64_t total = 0;
    for (int j = 0; j < nw; j++) {
        const float *v = ws[j]->data;
        for (int64_t e = 0; e < ws[j]->numel; e++)
            if (!isfinite(v[e])) {
                otl_status st = otl_error_set(err, OTL_ERR_INPUT, "%s: weight '%s' has a non-finite value at element "
                                              "%lld", otl_model_file(m), ws[j]->name, (long long)e);
                free(ws);
                return st;
            }
        total += ws[j]->numel;
    }
    if (total == 0) {
        free(ws);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: no Conv, Gemm or MatMul weight initializer to prune",
                             otl_model_file(m));
    }
    /* PyTorch's L1Unstructured: round(amount * n) entries, the smallest |w| (ties: first in node order) */
    int64_t k = (int64_t)nearbyint(o->sparsity * (double)total);
    float thr = 0;
    if (k > 0) {
        float *a = malloc((size_t)total * sizeof *a);
        if (!a) {
            free(ws);
            return otl_oom(err);
        }
        int64_t at = 0;
        for (int j = 0; j < nw; j++) {
            const float *v = ws[j]->data;
            for (int64_t e = 0; e < ws[j]->numel; e++)
                a[at++] = fabsf(v[e]);
        }
        thr = kth_smallest(a, total, k - 1);
        free(a);
        int64_t below = 0;
        for (int j = 0; j < nw; j++) {
            const float *v = ws[j]->data;
            for (int64_t e = 0; e < ws[j]->numel; e++)
                below += fabsf(v[e]) < thr;
        }
        int64_t ties = k - below; /* entries equal to thr that go too */
        for (int j = 0; j < nw; j++) {
            float *v = ws[j]->data;
            for (int64_t e = 0; e < ws[j]->numel; e++) {
                float x = fabsf(v[e]);
                if (x < thr)
                    v[e] = 0.0f;
                else if (x == thr && ties > 0) {
                    v[e] = 0.0f;
                    ties--;
                }
            }
        }
    }
    info->threshold = thr;
    info->n_tensors = nw;
    info->n_weights = total;
    *names = calloc((size_t)nw + 1, sizeof **names);
    if (!*names) {
        free(ws);
        return otl_oom(err);
    }
    for (int j = 0; j < nw; j++)
        if (!((*names)[j] = otl_strdup(ws[j]->name))) {
            *n_names = j;
            free(ws);
            return otl_oom(err);
        }
    *n_names = nw;
    free(ws);
    return OTL_OK;
}

/* ---------------------------------------------------------------- structured (channels) */

typedef enum { ACT_BN, ACT_CONV_IN, ACT_DW, ACT_FC } act_kind;

typedef struct act {
    act_kind kind;
    int node;
} act;

typedef struct plan {
    int node;          /* the Conv whose output channels go */
    int64_t c;         /* its output channels */
    int n_keep;
    int64_t *keep;     /* (n_keep) kept channels, ascending */
    int n_acts;
    act *acts;
    int n_vals;
    char **vals;       /* tensors carrying the channels (value_info dropped) */
} plan;

static void plan_free(plan *p)
{
    free(p->keep);
    free(p->acts);
    for (int i = 0; i < p->n_vals; i++)
        free(p->vals[i]);
    free(p->vals);
    memset(p, 0, sizeof *p);
}

static int64_t attr_int(const otl_node *n, const char *name, int64_t dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_INT ? a->i : dflt;
}

/* Value of a scalar float constant input (initializer or Constant node); 0 when absent ("" input),
 * 1 when found, -1 when not a known constant. */
static int const_scalar(const otl_graph *g, const char *name, float *v)
{
    if (!*name)
        return 0;
    const otl_tensor *t = otl_graph_resolve_init(g, name);
    int p = t ? -1 : otl_graph_producer(g, name);
    if (!t && p >= 0 && is_op(g->nodes[p], "Constant")) {
        const otl_attr *a = otl_node_attr(g->nodes[p], "value");
        t = a && a->type == OTL_ATTR_TENSOR ? a->t : NULL;
    }
    if (!t || t->numel != 1 || t->dtype != OTL_DTYPE_FLOAT || !t->data || t->nbytes < sizeof(float))
        return -1;
    memcpy(v, t->data, sizeof *v);
    return 1;
}

/* Whether n maps each channel to itself with f(0) = 0 (a zeroed channel stays zero). */
static int zero_preserving(const otl_graph *g, const otl_node *n)
{
    static const char *const ops[] = {"Relu", "LeakyRelu", "Elu", "Selu", "Tanh", "HardSwish", "Identity",
                                      "Gelu", "Softsign", "Neg", "Abs"};
    if (!otl_node_is_onnx(n) || n->n_inputs < 1 || n->n_outputs < 1)
        return 0;
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(n->op_type, ops[i]) == 0)
            return n->n_inputs == 1;
    if (strcmp(n->op_type, "Clip") == 0) {
        float lo = 0, hi = 0;
        int a = n->n_inputs > 1 ? const_scalar(g, n->inputs[1], &lo) : 0;
        int b = n->n_inputs > 2 ? const_scalar(g, n->inputs[2], &hi) : 0;
        const otl_attr *amin = otl_node_attr(n, "min"), *amax = otl_node_attr(n, "max");
        if (a == 0 && amin)
            lo = amin->f, a = 1;
        if (b == 0 && amax)
            hi = amax->f, b = 1;
        return a >= 0 && b >= 0 && (a == 0 || lo <= 0) && (b == 0 || hi >= 0);
    }
    if (strcmp(n->op_type, "MaxPool") == 0)
        return n->n_outputs == 1 || !*n->outputs[1];
    return strcmp(n->op_type, "AveragePool") == 0 || strcmp(n->op_type, "GlobalAveragePool") == 0 ||
           strcmp(n->op_type, "GlobalMaxPool") == 0 || strcmp(n->op_type, "LpPool") == 0 ||
           strcmp(n->op_type, "GlobalLpPool") == 0;
}

/* An initializer read only by node input `slot` (no alias, not a graph input or output). */
static otl_tensor *own_init(const otl_graph *g, const otl_node *n, int slot)
{
    if (slot >= n->n_inputs || !*n->inputs[slot])
        return NULL;
    otl_tensor *t = otl_graph_find_init(g, n->inputs[slot]);
    if (!t || !t->data || otl_graph_is_input(g, t->name) || otl_graph_is_output(g, t->name) ||
        otl_graph_n_reads(g, t->name) != 1 || otl_dtype_size2(t->dtype) < 2)
        return NULL;
    return t;
}

static int add_act(plan *p, act_kind k, int node)
{
    act *a = realloc(p->acts, ((size_t)p->n_acts + 1) * sizeof *a);
    if (!a)
        return 0;
    p->acts = a;
    a[p->n_acts].kind = k;
    a[p->n_acts++].node = node;
    return 1;
}

static int add_val(plan *p, const char *name, int flat)
{
    char **v = realloc(p->vals, ((size_t)p->n_vals + 1) * sizeof *v);
    if (!v)
        return 0;
    p->vals = v;
    size_t len = strlen(name);
    if (!(v[p->n_vals] = malloc(len + 2)))
        return 0;
    v[p->n_vals][0] = flat ? 'F' : 'C';   /* channel layout marker, then the name */
    memcpy(v[p->n_vals] + 1, name, len + 1);
    p->n_vals++;
    return 1;
}

/* Follow the channels of conv `ci`'s output to every reader. Returns 1 when every path ends in a
 * supported consumer (the plan's actions filled), 0 when the conv must be skipped (why set), -1 on
 * out of memory. */
static int trace(const otl_graph *g, int ci, plan *p, const char **why, char *whybuf, size_t whylen)
{
    const otl_node *conv = g->nodes[ci];
    int64_t c = p->c;
    if (!add_val(p, conv->outputs[0], 0))
        return -1;
    for (int q = 0; q < p->n_vals; q++) {
        const char *v = p->vals[q] + 1;
        int flat = p->vals[q][0] == 'F';
        if (otl_graph_is_output(g, v)) {
            *why = "reaches a graph output";
            return 0;
        }
        int readers = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *n = g->nodes[i];
            int r = node_reads(n, v);
            if (!r)
                continue;
            readers++;
            if (r >= 1000) {
                *why = "read inside a subgraph";
                return 0;
            }
            if (r != 1 || strcmp(n->inputs[0], v) != 0) {
                snprintf(whybuf, whylen, "reaches %s '%s' beside other inputs", n->op_type, n->name);
                *why = whybuf;
                return 0;
            }
            if (n->n_outputs < 1 || !*n->outputs[0]) {
                *why = "reader without output";
                return 0;
            }
            if (!flat && is_op(n, "BatchNormalization")) {
                for (int k = 1; k <= 4; k++) {
                    otl_tensor *t = own_init(g, n, k);
                    if (!t || t->numel != c || t->rank != 1) {
                        *why = "BatchNormalization parameters shared or not initializers";
                        return 0;
                    }
                }
                if (n->n_outputs > 1 && *n->outputs[1]) {
                    *why = "BatchNormalization in training form";
                    return 0;
                }
                if (!add_act(p, ACT_BN, i) || !add_val(p, n->outputs[0], 0))
                    return -1;
            } else if (!flat && is_op(n, "Conv")) {
                otl_tensor *w = own_init(g, n, 1);
                int64_t grp = attr_int(n, "group", 1);
                if (!w || w->dtype != OTL_DTYPE_FLOAT || w->rank < 3) {
                    *why = "a following Conv's weight is shared or not an initializer";
                    return 0;
                }
                if (grp == 1 && w->dims[1] == c) {
                    if (!add_act(p, ACT_CONV_IN, i))
                        return -1;
                } else if (grp == c && w->dims[0] == c && w->dims[1] == 1 && n->n_outputs == 1) {
                    otl_tensor *b = n->n_inputs > 2 && *n->inputs[2] ? own_init(g, n, 2) : NULL;
                    if (n->n_inputs > 2 && *n->inputs[2] && (!b || b->numel != c)) {
                        *why = "a following depthwise Conv's bias is shared or not an initializer";
                        return 0;
                    }
                    if (!add_act(p, ACT_DW, i) || !add_val(p, n->outputs[0], 0))
                        return -1;
                } else {
                    *why = "feeds a grouped Conv";
                    return 0;
                }
            } else if ((is_op(n, "Gemm") || is_op(n, "MatMul")) && flat) {
                otl_tensor *w = own_init(g, n, 1);
                int tb = (int)attr_int(n, "transB", 0);
                if (!w || w->dtype != OTL_DTYPE_FLOAT || w->rank != 2 || attr_int(n, "transA", 0) != 0) {
                    *why = "a following Gemm/MatMul's weight is shared or not an initializer";
                    return 0;
                }
                int64_t kdim = tb ? w->dims[1] : w->dims[0];
                if (kdim % c != 0 || kdim == 0) {
                    *why = "a following Gemm/MatMul's input size is not a multiple of the channels";
                    return 0;
                }
                if (!add_act(p, ACT_FC, i))
                    return -1;
            } else if (is_op(n, "Flatten") && attr_int(n, "axis", 1) == 1) {
                if (!add_val(p, n->outputs[0], 1))
                    return -1;
            } else if (zero_preserving(g, n) && (!flat || !strstr(n->op_type, "Pool"))) {
                if (n->n_outputs > 1) {
                    *why = "reader with several outputs";
                    return 0;
                }
                if (!add_val(p, n->outputs[0], flat))
                    return -1;
            } else {
                snprintf(whybuf, whylen, "reaches %s '%s'", n->op_type, n->name);
                *why = whybuf;
                return 0;
            }
        }
        if (readers == 0 && q == 0) {
            *why = "output not read";
            return 0;
        }
    }
    return 1;
}

/* Keep n_keep of dims[axis] along `axis` in blocks of `block` entries per channel. */
static otl_status slice(otl_tensor *t, int axis, const int64_t *keep, int n_keep, int64_t c, otl_error *err)
{
    int64_t d = t->dims[axis], block = d / c, outer = 1, inner = 1;
    for (int k = 0; k < axis; k++)
        outer *= t->dims[k];
    for (int k = axis + 1; k < t->rank; k++)
        inner *= t->dims[k];
    size_t es = (size_t)otl_dtype_size2(t->dtype) / 2, run = (size_t)(block * inner) * es;
    int64_t nd = n_keep * block;
    uint8_t *nv = malloc((size_t)(outer * nd * inner) * es + 1);
    if (!nv)
        return otl_oom(err);
    const uint8_t *src = t->data;
    uint8_t *dst = nv;
    for (int64_t o = 0; o < outer; o++)
        for (int j = 0; j < n_keep; j++) {
            memcpy(dst, src + ((size_t)(o * d + keep[j] * block) * (size_t)inner) * es, run);
            dst += run;
        }
    free(t->data);
    t->data = nv;
    t->dims[axis] = nd;
    t->numel = outer * nd * inner;
    t->nbytes = (size_t)t->numel * es;
    return OTL_OK;
}

static int cmp_l1(const void *a, const void *b)
{
    const double *x = a, *y = b; /* (l1, index) pairs */
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static otl_status apply_plan(otl_model *m, const plan *p, otl_error *err)
{
    otl_graph *g = m->graph;
    otl_node *conv = g->nodes[p->node];
    otl_tensor *w = otl_graph_find_init(g, conv->inputs[1]);
    otl_tensor *b = conv->n_inputs > 2 && *conv->inputs[2] ? otl_graph_find_init(g, conv->inputs[2]) : NULL;
    if (slice(w, 0, p->keep, p->n_keep, p->c, err) || (b && slice(b, 0, p->keep, p->n_keep, p->c, err)))
        return err->code;
    for (int i = 0; i < p->n_acts; i++) {
        otl_node *n = g->nodes[p->acts[i].node];
        otl_tensor *t;
        switch (p->acts[i].kind) {
        case ACT_BN:
            for (int k = 1; k <= 4; k++)
                if (slice(otl_graph_find_init(g, n->inputs[k]), 0, p->keep, p->n_keep, p->c, err))
                    return err->code;
            break;
        case ACT_CONV_IN:
            if (slice(otl_graph_find_init(g, n->inputs[1]), 1, p->keep, p->n_keep, p->c, err))
                return err->code;
            break;
        case ACT_DW:
            if (slice(otl_graph_find_init(g, n->inputs[1]), 0, p->keep, p->n_keep, p->c, err) ||
                (n->n_inputs > 2 && *n->inputs[2] &&
                 slice(otl_graph_find_init(g, n->inputs[2]), 0, p->keep, p->n_keep, p->c, err)))
                return err->code;
            for (int a = 0; a < n->n_attrs; a++)
                if (strcmp(n->attrs[a].name, "group") == 0)
                    n->attrs[a].i = p->n_keep;
            break;
        case ACT_FC:
            t = otl_graph_find_init(g, n->inputs[1]);
            if (slice(t, attr_int(n, "transB", 0) ? 1 : 0, p->keep, p->n_keep, p->c, err))
                return err->code;
            break;
        }
    }
    /* declared shapes of the rewired tensors are stale */
    int w2 = 0;
    for (int i = 0; i < g->n_value_info; i++) {
        int stale = 0;
        for (int k = 0; k < p->n_vals && !stale; k++)
            stale = strcmp(g->value_info[i]->name, p->vals[k] + 1) == 0;
        if (stale)
            otl_value_free(g->value_info[i]);
        else
            g->value_info[w2++] = g->value_info[i];
    }
    g->n_value_info = w2;
    return OTL_OK;
}

static otl_status prune_channels(otl_model *m, const otl_prune_opts *o, otl_prune_info *info, otl_error *err)
{
    otl_graph *g = m->graph;
    plan *plans = calloc((size_t)g->n_nodes + 1, sizeof *plans);
    if (!plans)
        return otl_oom(err);
    int np = 0;
    otl_status st = OTL_OK;
    for (int i = 0; i < g->n_nodes && !st; i++) {
        const otl_node *n = g->nodes[i];
        if (!is_op(n, "Conv") || excluded(o->exclude, n))
            continue;
        const otl_tensor *w0 = n->n_inputs > 1 ? otl_graph_find_init(g, n->inputs[1]) : NULL;
        if (attr_int(n, "group", 1) > 1 && w0 && w0->rank >= 3 && w0->dims[1] == 1)
            continue; /* depthwise: loses the channels of the Conv before it, if any */
        info->n_convs++;
        const char *why = NULL;
        char whybuf[600];
        otl_tensor *w = own_init(g, n, 1);
        otl_tensor *b = n->n_inputs > 2 && *n->inputs[2] ? own_init(g, n, 2) : NULL;
        plan *p = &plans[np];
        p->node = i;
        if (!w || w->dtype != OTL_DTYPE_FLOAT || w->rank < 3)
            why = "weight shared or not a float initializer";
        else if (attr_int(n, "group", 1) != 1)
            why = "grouped or depthwise Conv";
        else if (n->n_inputs > 2 && *n->inputs[2] && (!b || b->numel != w->dims[0]))
            why = "bias shared or not an initializer";
        else if (n->n_outputs != 1 || !*n->outputs[0])
            why = "unexpected outputs";
        else if ((p->c = w->dims[0]) < 2)
            why = "a single output channel";
        if (!why) {
            int r = trace(g, i, p, &why, whybuf, sizeof whybuf);
            if (r < 0)
                st = otl_oom(err);
        }
        int64_t n_rm = why ? 0 : (int64_t)nearbyint(o->channels * (double)p->c);
        if (!why && n_rm > p->c - 1)
            n_rm = p->c - 1;
        int64_t mult = o->channel_multiple;
        if (!why && mult > 1 && p->c >= 2 * mult) { /* kept channels a multiple of mult (vector-friendly) */
            int64_t keep = (int64_t)nearbyint((double)(p->c - n_rm) / (double)mult) * mult;
            keep = keep < mult ? mult : keep > p->c ? p->c : keep;
            n_rm = p->c - keep;
        }
        if (!why && n_rm == 0)
            why = "rounds to no channel";
        if (why || st) {
            if (!st && o->msg)
                fprintf(o->msg, "prune-channels: %s '%s' kept: %s\n", n->op_type, n->name, why);
            info->n_convs_skipped += !st;
            plan_free(p);
            continue;
        }
        /* L1 norm of each output channel of the original weight; the smallest go */
        int64_t per = w->numel / p->c;
        double *l1 = malloc((size_t)p->c * 2 * sizeof *l1);
        p->n_keep = (int)(p->c - n_rm);
        p->keep = malloc((size_t)p->n_keep * sizeof *p->keep);
        if (!l1 || !p->keep) {
            free(l1);
            plan_free(p);
            st = otl_oom(err);
            break;
        }
        const float *wv = w->data;
        for (int64_t c = 0; c < p->c; c++) {
            double s = 0;
            for (int64_t j = 0; j < per; j++)
                s += fabs((double)wv[c * per + j]);
            l1[2 * c] = s;
            l1[2 * c + 1] = (double)c;
            if (!isfinite(s)) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: node '%s' (Conv): weight '%s' has a non-finite value in "
                                   "output channel %lld", otl_model_file(m), n->name, w->name, (long long)c);
                break;
            }
        }
        if (st) {
            free(l1);
            plan_free(p);
            break;
        }
        qsort(l1, (size_t)p->c, 2 * sizeof *l1, cmp_l1);
        for (int j = 0; j < p->n_keep; j++)
            p->keep[j] = (int64_t)l1[2 * (n_rm + j) + 1];
        free(l1);
        qsort(p->keep, (size_t)p->n_keep, sizeof *p->keep, cmp_i64);
        info->n_convs_pruned++;
        info->channels_before += p->c;
        info->channels_removed += n_rm;
        np++;
    }
    for (int i = 0; i < np && !st; i++)
        st = apply_plan(m, &plans[i], err);
    for (int i = 0; i < np; i++)
        plan_free(&plans[i]);
    free(plans);
    return st;
}

/* ---------------------------------------------------------------- entry points */

otl_status otl_export_prune(otl_model *m, const otl_prune_opts *o, otl_prune_info *info, otl_error *err)
{
    otl_prune_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph || !o)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_prune: no model");
    if (!(o->sparsity >= 0 && o->sparsity < 1) || !(o->channels >= 0 && o->channels < 1) ||
        (o->sparsity == 0 && o->channels == 0))
        return otl_error_set(err, OTL_ERR_USAGE, "prune: sparsity and channel fraction must lie in [0, 1), one above 0");
    if (otl_glob_list_check(m, o->exclude, excludable, "Conv, Gemm or MatMul node", err))
        return err->code;
    otl_graph *g = m->graph;
    info->params_before = float_params(g);
    char **names = NULL;
    int n_names = 0;
    otl_status st = OTL_OK;
    if (o->channels > 0 && (st = prune_channels(m, o, info, err)))
        return st;
    if (o->sparsity > 0 && (st = prune_unstructured(m, o, info, &names, &n_names, err)))
        goto done;
    info->params_after = float_params(g);
    /* fold BatchNormalization into the pruned weights now (zeros stay zero) */
    otl_export_opts eo = {.fold_bn = o->fold_bn};
    if ((st = otl_export_clean(m, &eo, NULL, err)))
        goto done;
    g = m->graph;
    if (n_names) {
        /* the pruned weights under their names after folding (a shared one became "<name>_bnfold...") */
        size_t cap = 1, len = 0;
        for (int i = 0; i < g->n_inits; i++)
            cap += strlen(g->inits[i]->name) + 1;
        char *list = malloc(cap);
        if (!list) {
            st = otl_oom(err);
            goto done;
        }
        list[0] = 0;
        for (int i = 0; i < g->n_inits; i++) {
            const otl_tensor *t = g->inits[i];
            int hit = 0;
            for (int j = 0; j < n_names && !hit; j++) {
                size_t l = strlen(names[j]);
                hit = strcmp(t->name, names[j]) == 0 || (strncmp(t->name, names[j], l) == 0 &&
                                                         strncmp(t->name + l, "_bnfold", 7) == 0);
            }
            if (!hit || t->dtype != OTL_DTYPE_FLOAT || !t->data)
                continue;
            const float *v = t->data;
            for (int64_t e = 0; e < t->numel; e++)
                info->n_zero += v[e] == 0.0f;
            info->n_masked += t->numel;
            len += (size_t)sprintf(list + len, "%s%s", len ? "\n" : "", t->name);
        }
        st = otl_model_meta_set(m, PRUNED_KEY, list, err);
        free(list);
    }
done:
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return st;
}

void otl_prune_masks_free(otl_prune_masks *pm)
{
    if (!pm)
        return;
    for (int i = 0; i < pm->n; i++) {
        free(pm->names[i]);
        free(pm->zero[i]);
    }
    free(pm->names);
    free(pm->zero);
    free(pm->numel);
    free(pm);
}

otl_status otl_prune_masks_get(const otl_model *m, otl_prune_masks **out, otl_error *err)
{
    *out = NULL;
    const char *list = otl_model_meta_get(m, PRUNED_KEY);
    if (!list || !*list)
        return OTL_OK;
    otl_prune_masks *pm = calloc(1, sizeof *pm);
    int cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == '\n';
    if (!pm || !(pm->names = calloc((size_t)cap, sizeof *pm->names)) || !(pm->zero = calloc((size_t)cap, sizeof *pm->zero)) ||
        !(pm->numel = calloc((size_t)cap, sizeof *pm->numel))) {
        otl_prune_masks_free(pm);
        return otl_oom(err);
    }
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char *name = otl_strndup(p, l);
        if (!name) {
            otl_prune_masks_free(pm);
            return otl_oom(err);
        }
        p += l + (e != NULL);
        if (!*name) {
            free(name);
            continue;
        }
        const otl_tensor *t = otl_graph_find_init(m->graph, name);
        if (!t || t->dtype != OTL_DTYPE_FLOAT || (t->numel && !t->data)) {
            otl_status st = otl_error_set(err, OTL_ERR_INPUT,
                                          "%s: metadata %s names '%s', which is not a float32 initializer",
                                          otl_model_file(m), PRUNED_KEY, name);
            free(name);
            otl_prune_masks_free(pm);
            return st;
        }
        uint8_t *z = malloc((size_t)t->numel + 1);
        if (!z) {
            free(name);
            otl_prune_masks_free(pm);
            return otl_oom(err);
        }
        const float *v = t->data;
        for (int64_t k = 0; k < t->numel; k++)
            z[k] = v[k] == 0.0f;
        pm->names[pm->n] = name;
        pm->zero[pm->n] = z;
        pm->numel[pm->n++] = t->numel;
    }
    *out = pm;
    return OTL_OK;
}
