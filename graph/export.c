/* export.c - clean inference export (see include/onnxtl_export.h): training-only metadata,
 * Dropout and BatchNormalization training outputs removed, BatchNormalization folded into the
 * preceding Conv/Gemm, dead nodes and unused initializers pruned.
 *
 * Folding (same math as graph/fuse.c's fold_bn, so `onnx-tl run` of the input and of the export
 * agree to rounding): s = gamma / sqrt(var + eps); W'[o] = W[o] * s[o]; b'[o] = (b[o] - mean[o]) *
 * s[o] + beta[o]. A weight or bias that only this node reads is rewritten in place (its name and
 * external-data placement kept); a shared one gets a new initializer "<name>_bnfold". */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnxtl_data.h"
#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/strmap.h"
#include "src/util.h"

static const char *fname(const otl_model *m)
{
    return m->path ? m->path : "model";
}

static otl_status oom(otl_error *err)
{
    return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
}

static int is_default(const otl_node *n)
{
    return !n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0;
}

static int is_graph_output(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->outputs[i]->name, name) == 0)
            return 1;
    return 0;
}

static int is_graph_input(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->inputs[i]->name, name) == 0)
            return 1;
    return 0;
}

/* Whether any node of g (subgraphs included) reads `name`. */
static int is_read(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0)
                return 1;
        for (int a = 0; a < n->n_attrs; a++) {
            if (n->attrs[a].g && is_read(n->attrs[a].g, name))
                return 1;
            for (size_t s = 0; s < n->attrs[a].n_graphs; s++)
                if (is_read(n->attrs[a].graphs[s], name))
                    return 1;
        }
    }
    return 0;
}

/* Whether a subgraph of any node of g reads `name`. */
static int read_in_subgraph(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        for (int a = 0; a < g->nodes[i]->n_attrs; a++) {
            const otl_attr *at = &g->nodes[i]->attrs[a];
            if (at->g && is_read(at->g, name))
                return 1;
            for (size_t s = 0; s < at->n_graphs; s++)
                if (is_read(at->graphs[s], name))
                    return 1;
        }
    return 0;
}

/* Number of top-level node inputs reading `name` (a subgraph read counts as many). */
static int n_reads(const otl_graph *g, const char *name)
{
    if (read_in_subgraph(g, name))
        return 1000;
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_inputs; k++)
            c += strcmp(g->nodes[i]->inputs[k], name) == 0;
    return c;
}


static void remove_node_at(otl_graph *g, int i)
{
    otl_node_free(g->nodes[i]);
    memmove(&g->nodes[i], &g->nodes[i + 1], (size_t)(g->n_nodes - i - 1) * sizeof *g->nodes);
    g->n_nodes--;
}

/* Remove attribute k of n (freed through a temporary node). */
static otl_status remove_attr(otl_node *n, int k, otl_error *err)
{
    otl_node *tmp = otl_node_new("", "", "");
    if (!tmp || !(tmp->attrs = malloc(sizeof *tmp->attrs))) {
        otl_node_free(tmp);
        return oom(err);
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
        if (!is_default(n) || strcmp(n->op_type, "Dropout") != 0 || n->n_inputs < 1 || n->n_outputs < 1)
            continue;
        if (n->n_outputs > 1 && *n->outputs[1] && (is_read(g, n->outputs[1]) || is_graph_output(g, n->outputs[1])))
            return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                                 "%s: node '%s' (Dropout): its mask output '%s' is used; cannot remove the Dropout",
                                 fname(m), n->name, n->outputs[1]);
        const char *x = n->inputs[0], *y = n->outputs[0];
        info->n_dropout_removed++;
        if (!*y)
            continue;   /* nothing read: pruned below */
        if (is_graph_output(g, y) || read_in_subgraph(g, y) || !*x) {
            /* keep the output name: Identity(x) */
            otl_node *id = otl_node_new(n->name, "Identity", "");
            const char *in[1] = {x}, *out[1] = {y};
            if (!id || otl_node_set_io(id, 1, in, 1, out)) {
                otl_node_free(id);
                return oom(err);
            }
            otl_node_free(n);
            g->nodes[i] = id;
            continue;
        }
        for (int j = 0; j < g->n_nodes; j++)
            for (int k = 0; k < g->nodes[j]->n_inputs; k++)
                if (j != i && strcmp(g->nodes[j]->inputs[k], y) == 0 && !otl_set_str(&g->nodes[j]->inputs[k], x))
                    return oom(err);
        remove_node_at(g, i);
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
        if (*n->outputs[k] && (is_read(g, n->outputs[k]) || is_graph_output(g, n->outputs[k])))
            return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                                 "%s: node '%s' (BatchNormalization): training output '%s' is used; cannot export "
                                 "it for inference",
                                 fname(m), n->name, n->outputs[k]);
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

/* A float initializer of g named `name` that is not overridable (not a graph input). */
static otl_tensor *const_float(const otl_graph *g, const char *name)
{
    otl_tensor *t = *name ? otl_graph_find_init(g, name) : NULL;
    if (!t || t->dtype != OTL_DTYPE_FLOAT || !t->data || is_graph_input(g, name) ||
        t->nbytes != (size_t)t->numel * sizeof(float))
        return NULL;
    return t;
}

/* The initializer to write node input `slot` into: t itself when only this node reads it and it
 * is no graph output, else a new copy "<name>_bnfold" that the node is switched to. */
static otl_tensor *writable(otl_graph *g, otl_node *n, int slot, otl_tensor *t, otl_error *err)
{
    if (n_reads(g, t->name) == 1 && !is_graph_output(g, t->name))
        return t;
    char base[600];
    snprintf(base, sizeof base, "%s_bnfold", t->name);
    char *name = otl_graph_fresh_name(g, base);
    otl_tensor *c = name ? otl_tensor_new(name, t->dtype, t->rank, t->dims) : NULL;
    free(name);
    if (!c || !(c->data = otl_memdup(t->data, t->nbytes ? t->nbytes : 1)) ||
        (t->ext_location && !(c->ext_location = otl_strdup(t->ext_location)))) {
        otl_tensor_free(c);
        oom(err);
        return NULL;
    }
    c->nbytes = t->nbytes;
    if (otl_graph_add_init(g, c)) {
        otl_tensor_free(c);
        oom(err);
        return NULL;
    }
    if (!otl_set_str(&n->inputs[slot], c->name)) {
        oom(err);
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
    if (!is_default(p) || (!is_conv && !is_gemm) || p->n_outputs != 1 || p->n_inputs < 2 ||
        n_reads(g, x) != 1 || is_graph_output(g, x))
        return 0;
    otl_tensor *w = const_float(g, p->inputs[1]);
    int has_b = p->n_inputs > 2 && *p->inputs[2];
    otl_tensor *b = has_b ? const_float(g, p->inputs[2]) : NULL;
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
        if (!(q[k] = const_float(g, bn->inputs[1 + k])) || q[k]->numel != oc)
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
            return oom(err), -1;
        }
        nb->nbytes = (size_t)oc * sizeof(float);
        if (otl_graph_add_init(g, nb)) {
            otl_tensor_free(nb);
            return oom(err), -1;
        }
        char *in[3] = {otl_strdup(p->inputs[0]), otl_strdup(p->inputs[1]), otl_strdup(nb->name)};
        char *out0 = otl_strdup(p->outputs[0]);
        int bad = !in[0] || !in[1] || !in[2] || !out0 ||
                  otl_node_set_io(p, 3, (const char *const *)in, 1, (const char *const *)&out0);
        for (int k = 0; k < 3; k++)
            free(in[k]);
        free(out0);
        if (bad)
            return oom(err), -1;
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
        return oom(err), -1;
    remove_node_at(g, bi);
    return 1;
}

static otl_status do_bn(otl_model *m, const otl_export_opts *o, otl_export_info *info, otl_error *err)
{
    otl_graph *g = m->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        if (!is_default(n) || strcmp(n->op_type, "BatchNormalization") != 0)
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

static void mark_reads(const otl_strmap *prod, char *live, int *stack, int *sp, const otl_node *n)
{
    for (int k = 0; k < n->n_inputs; k++) {
        int p = otl_strmap_get(prod, n->inputs[k], -1);
        if (p >= 0 && !live[p]) {
            live[p] = 1;
            stack[(*sp)++] = p;
        }
    }
    for (int a = 0; a < n->n_attrs; a++) {
        const otl_attr *at = &n->attrs[a];
        for (int i = 0; at->g && i < at->g->n_nodes; i++)
            mark_reads(prod, live, stack, sp, at->g->nodes[i]);
        for (size_t s = 0; s < at->n_graphs; s++)
            for (int i = 0; i < at->graphs[s]->n_nodes; i++)
                mark_reads(prod, live, stack, sp, at->graphs[s]->nodes[i]);
    }
}

static otl_status prune(otl_model *m, otl_export_info *info, otl_error *err)
{
    otl_graph *g = m->graph;
    char *live = calloc((size_t)g->n_nodes + 1, 1);
    int *stack = malloc(((size_t)g->n_nodes + 1) * sizeof *stack);
    otl_strmap prod = {0};
    if (!live || !stack || !otl_strmap_init(&prod, (size_t)g->n_nodes * 2 + 8)) {
        free(live);
        free(stack);
        return oom(err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_outputs; k++)
            if (*g->nodes[i]->outputs[k] && !otl_strmap_put(&prod, g->nodes[i]->outputs[k], i)) {
                otl_strmap_free(&prod);
                free(live);
                free(stack);
                return oom(err);
            }
    int sp = 0;
    for (int i = 0; i < g->n_outputs; i++) {
        int p = otl_strmap_get(&prod, g->outputs[i]->name, -1);
        if (p >= 0 && !live[p]) {
            live[p] = 1;
            stack[sp++] = p;
        }
    }
    while (sp > 0) {
        int p = stack[--sp];
        mark_reads(&prod, live, stack, &sp, g->nodes[p]);
    }
    otl_strmap_free(&prod);
    free(stack);
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (live[i])
            g->nodes[w++] = g->nodes[i];
        else {
            otl_node_free(g->nodes[i]);
            info->n_nodes_removed++;
        }
    }
    g->n_nodes = w;
    free(live);
    w = 0;
    for (int i = 0; i < g->n_inits; i++) {
        otl_tensor *t = g->inits[i];
        if (is_read(g, t->name) || is_graph_output(g, t->name)) {
            g->inits[w++] = t;
            continue;
        }
        for (int k = 0; k < g->n_inputs; k++) /* its IR < 4 graph-input entry goes too */
            if (strcmp(g->inputs[k]->name, t->name) == 0) {
                otl_value_free(g->inputs[k]);
                memmove(&g->inputs[k], &g->inputs[k + 1], (size_t)(g->n_inputs - k - 1) * sizeof *g->inputs);
                g->n_inputs--;
                break;
            }
        otl_tensor_free(t);
        info->n_inits_removed++;
    }
    g->n_inits = w;
    /* value_info of names that no longer exist */
    w = 0;
    for (int i = 0; i < g->n_value_info; i++) {
        otl_value *v = g->value_info[i];
        int exists = otl_graph_producer(g, v->name) >= 0 || otl_graph_find_init(g, v->name) ||
                     is_graph_input(g, v->name);
        if (exists)
            g->value_info[w++] = v;
        else
            otl_value_free(v);
    }
    g->n_value_info = w;
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
    static const char *const training_keys[] = {"onnx_tl.frozen", "onnx_tl.head"};
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

/* ---------------------------------------------------------------- INT8 quantization (QDQ) */

typedef struct qact {
    char *name;             /* owned copy */
    double lo, hi;
    char *dq;               /* the DequantizeLinear output readers switch to */
} qact;

static int is_qtarget(const otl_node *n)
{
    return is_default(n) && (strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "Gemm") == 0 ||
                             strcmp(n->op_type, "MatMul") == 0);
}

/* Input slots of n holding activations (not initializers) to quantize; returns the count. */
static int act_slots(const otl_graph *g, const otl_node *n, int *slots)
{
    int k = 0, last = strcmp(n->op_type, "Conv") == 0 ? 0 : 1;
    for (int s = 0; s <= last && s < n->n_inputs; s++) {
        const otl_value *v = *n->inputs[s] ? otl_graph_find_value(g, n->inputs[s]) : NULL;
        if (*n->inputs[s] && !otl_graph_find_init(g, n->inputs[s]) && (!v || !v->has_type || v->dtype == OTL_DTYPE_FLOAT))
            slots[k++] = s;
    }
    return k;
}

/* The weight initializer of n (slot 1) and its output-channel axis, or NULL. */
static otl_tensor *weight_of(const otl_graph *g, const otl_node *n, int *axis)
{
    otl_tensor *w = n->n_inputs > 1 ? const_float(g, n->inputs[1]) : NULL;
    if (!w)
        return NULL;
    if (strcmp(n->op_type, "Conv") == 0 && w->rank >= 3)
        *axis = 0;
    else if (strcmp(n->op_type, "Gemm") == 0 && w->rank == 2) {
        const otl_attr *tb = otl_node_attr(n, "transB");
        *axis = tb && tb->i ? 0 : 1;
    } else if (strcmp(n->op_type, "MatMul") == 0 && w->rank == 2)
        *axis = 1;
    else
        return NULL;
    return w;
}

/* Whether n's name matches one of the comma-separated globs in list (NULL: none). */
static int excluded(const char *list, const otl_node *n)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char glob[512];
        if (len && len < sizeof glob) {
            memcpy(glob, p, len);
            glob[len] = 0;
            if (fnmatch(glob, n->name, 0) == 0)
                return 1;
        }
        p = e ? e + 1 : p + len;
    }
    return 0;
}

/* Every glob of list matches a Conv/Gemm/MatMul node of g. */
static otl_status check_excludes(const otl_model *m, const char *list, otl_error *err)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char glob[512];
        if (!len || len >= sizeof glob)
            return otl_error_set(err, OTL_ERR_USAGE, "--exclude: empty or too long glob in '%s'", list);
        memcpy(glob, p, len);
        glob[len] = 0;
        int hit = 0;
        for (int i = 0; i < m->graph->n_nodes && !hit; i++)
            hit = is_qtarget(m->graph->nodes[i]) && fnmatch(glob, m->graph->nodes[i]->name, 0) == 0;
        if (!hit)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: --exclude '%s' matches no Conv, Gemm or MatMul node",
                                 fname(m), glob);
        p = e ? e + 1 : p + len;
    }
    return OTL_OK;
}

static int find_act(const qact *a, int na, const char *name)
{
    for (int i = 0; i < na; i++)
        if (strcmp(a[i].name, name) == 0)
            return i;
    return -1;
}

static void minmax(qact *a, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        if (v[i] < a->lo)
            a->lo = v[i];
        if (v[i] > a->hi)
            a->hi = v[i];
    }
}

static int is_dir_path(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Min/max of every activation over the calibration data (a clone of m exposes them as outputs). */
static otl_status calibrate(const otl_model *m, qact *acts, int na, const otl_quant_opts *q, int64_t *used,
                            otl_error *err)
{
    otl_model *c = NULL;
    otl_session *s = NULL;
    otl_dataset *d = NULL;
    int *out_idx = calloc((size_t)na + 1, sizeof *out_idx);
    void *x = NULL;
    int64_t *idx = NULL;
    otl_tensor *in = NULL;
    otl_status st = OTL_OK;
    if (!out_idx)
        return oom(err);
    if ((st = otl_model_clone(m, &c, err)))
        goto done;
    const otl_value *input = NULL;
    for (int i = 0; i < c->graph->n_inputs && !input; i++)
        if (!otl_graph_find_init(c->graph, c->graph->inputs[i]->name))
            input = c->graph->inputs[i];
    if (!input) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input to calibrate", fname(m));
        goto done;
    }
    for (int i = 0; i < na; i++) {
        acts[i].lo = INFINITY;
        acts[i].hi = -INFINITY;
        out_idx[i] = -1;
        if (strcmp(acts[i].name, input->name) == 0) {
            out_idx[i] = -2;
            continue;
        }
        for (int k = 0; k < c->graph->n_outputs && out_idx[i] < 0; k++)
            if (strcmp(c->graph->outputs[k]->name, acts[i].name) == 0)
                out_idx[i] = k;
        if (out_idx[i] >= 0)
            continue;
        otl_value *v = otl_value_new_tensor(acts[i].name, OTL_DTYPE_FLOAT, -1, NULL, NULL);
        if (!v || otl_graph_add_output(c->graph, v)) {
            otl_value_free(v);
            st = oom(err);
            goto done;
        }
        out_idx[i] = c->graph->n_outputs - 1;
    }
    otl_preprocess pp;
    otl_dataset_opts o;
    int dir = is_dir_path(q->calib);
    if ((dir && (st = otl_preprocess_get(m, &pp, err))) ||
        (st = otl_dataset_opts_for_model(&o, m, dir ? &pp : NULL, err)))
        goto done;
    o.threads = q->threads;
    if ((st = otl_dataset_open(&d, q->calib, &o, err)))
        goto done;
    int64_t n = otl_dataset_len(d);
    if (q->calib_samples > 0 && q->calib_samples < n)
        n = q->calib_samples;
    int sdtype, srank;
    int64_t sdims[OTL_DATASET_MAX_RANK + 1];
    otl_dataset_sample(d, &sdtype, &srank, sdims + 1);
    int64_t b = q->batch > 0 ? q->batch : 16;
    if (b > n)
        b = n;
    size_t sb = otl_dataset_sample_bytes(d);
    otl_session_opts so = {0};
    so.threads = q->threads;
    if (!(x = malloc((size_t)b * sb + 1)) || !(idx = malloc((size_t)b * sizeof *idx))) {
        st = oom(err);
        goto done;
    }
    if ((st = otl_session_new(&s, c, &so, err)))
        goto done;
    for (int64_t start = 0; start < n; start += b) {
        int64_t nb = n - start < b ? n - start : b;
        for (int64_t i = 0; i < nb; i++)
            idx[i] = start + i;
        if ((st = otl_dataset_batch(d, idx, nb, NULL, 0, x, NULL, err)))
            goto done;
        sdims[0] = nb;
        if (!(in = otl_tensor_new(input->name, sdtype, srank + 1, sdims))) {
            st = oom(err);
            goto done;
        }
        in->data = x;
        in->nbytes = (size_t)nb * sb;
        otl_tensor **outs = NULL;
        int n_outs = 0;
        const otl_tensor *ins[1] = {in};
        st = otl_session_run(s, ins, 1, &outs, &n_outs, err);
        in->data = NULL;
        otl_tensor_free(in);
        in = NULL;
        if (st)
            goto done;
        for (int i = 0; i < na; i++) {
            if (out_idx[i] == -2 && sdtype == OTL_DTYPE_FLOAT)
                minmax(&acts[i], x, (int64_t)(nb * sb / sizeof(float)));
            else if (out_idx[i] >= 0 && out_idx[i] < n_outs && outs[out_idx[i]]->dtype == OTL_DTYPE_FLOAT && outs[out_idx[i]]->data)
                minmax(&acts[i], outs[out_idx[i]]->data, outs[out_idx[i]]->numel);
        }
        for (int k = 0; k < n_outs; k++)
            otl_tensor_free(outs[k]);
        free(outs);
    }
    *used = n;
done:
    otl_session_free(s);
    otl_dataset_free(d);
    otl_model_free(c);
    free(out_idx);
    free(x);
    free(idx);
    return st;
}

/* Add an initializer named after base (fresh); data copied. */
static otl_tensor *add_init(otl_graph *g, const char *base, int dtype, int rank, const int64_t *dims,
                            const void *data, size_t nbytes, const char *ext, otl_error *err)
{
    char *name = otl_graph_fresh_name(g, base);
    otl_tensor *t = name ? otl_tensor_new(name, dtype, rank, dims) : NULL;
    free(name);
    if (!t || !(t->data = malloc(nbytes ? nbytes : 1)) || (ext && !(t->ext_location = otl_strdup(ext))) ||
        otl_graph_add_init(g, t)) {
        otl_tensor_free(t);
        oom(err);
        return NULL;
    }
    memcpy(t->data, data, nbytes);
    t->nbytes = nbytes;
    return t;
}

/* Append op(in[0..3)) -> fresh "<base>" output; *out receives the output name (owned by the node). */
static otl_status add_q_node(otl_graph *g, const char *op, const char *const *in, const char *base, int axis,
                             const char **out, otl_error *err)
{
    char nb[600];
    snprintf(nb, sizeof nb, "%s_%s", base, op);
    char *nname = otl_graph_fresh_name(g, nb);
    snprintf(nb, sizeof nb, "%s_%s", base, strcmp(op, "QuantizeLinear") == 0 ? "quantized" : "dequantized");
    char *oname = nname ? otl_graph_fresh_name(g, nb) : NULL;
    otl_node *n = oname ? otl_node_new(nname, op, "") : NULL;
    const char *outs[1] = {oname};
    otl_attr *a;
    int bad = !n || otl_node_set_io(n, 3, in, 1, outs) ||
              (axis >= 0 && (otl_node_add_attr(n, "axis", OTL_ATTR_INT, &a) || ((a->i = axis), 0)));
    free(nname);
    free(oname);
    if (bad || otl_graph_add_node(g, n)) {
        otl_node_free(n);
        return oom(err);
    }
    *out = n->outputs[0];
    return OTL_OK;
}

static otl_status quantize_act(otl_graph *g, qact *a, otl_error *err)
{
    double lo = a->lo < 0 ? a->lo : 0, hi = a->hi > 0 ? a->hi : 0;
    if (!(lo <= hi)) /* never seen (no finite value) */
        lo = hi = 0;
    float scale = (float)((hi - lo) / 255.0);
    if (!(scale > 0) || !isfinite(scale))
        scale = 1.0f;
    double z = nearbyint(-lo / scale);
    uint8_t zp = (uint8_t)(z < 0 ? 0 : z > 255 ? 255 : z);
    char base[600];
    snprintf(base, sizeof base, "%s_scale", a->name);
    otl_tensor *ts = add_init(g, base, OTL_DTYPE_FLOAT, 0, NULL, &scale, sizeof scale, NULL, err);
    snprintf(base, sizeof base, "%s_zero_point", a->name);
    otl_tensor *tz = ts ? add_init(g, base, OTL_DTYPE_UINT8, 0, NULL, &zp, 1, NULL, err) : NULL;
    if (!tz)
        return err->code;
    const char *q, *dq;
    const char *qin[3] = {a->name, ts->name, tz->name};
    if (add_q_node(g, "QuantizeLinear", qin, a->name, -1, &q, err))
        return err->code;
    const char *dqin[3] = {q, ts->name, tz->name};
    if (add_q_node(g, "DequantizeLinear", dqin, a->name, -1, &dq, err))
        return err->code;
    if (!(a->dq = otl_strdup(dq)))
        return oom(err);
    return OTL_OK;
}

/* Store w as int8 (symmetric, per channel along axis, or per tensor when axis < 0) behind a
 * DequantizeLinear; *dq receives its output name. */
static otl_status quantize_weight(otl_graph *g, const otl_tensor *w, int axis, const char **dq, otl_error *err)
{
    int64_t nc = axis >= 0 ? w->dims[axis] : 1, inner = 1;
    for (int k = axis + 1; axis >= 0 && k < w->rank; k++)
        inner *= w->dims[k];
    float *scale = calloc((size_t)nc + 1, sizeof *scale);
    int8_t *zp = calloc((size_t)nc + 1, 1), *qv = malloc((size_t)w->numel + 1);
    otl_status st = OTL_OK;
    if (!scale || !zp || !qv) {
        st = oom(err);
        goto done;
    }
    const float *W = w->data;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t c = axis >= 0 ? (i / inner) % nc : 0;
        float v = fabsf(W[i]);
        if (isfinite(v) && v > scale[c])
            scale[c] = v;
    }
    for (int64_t c = 0; c < nc; c++)
        scale[c] = scale[c] > 0 ? scale[c] / 127.0f : 1.0f;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t c = axis >= 0 ? (i / inner) % nc : 0;
        double r = nearbyint(W[i] / scale[c]);
        qv[i] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : (isfinite(r) ? r : 0));
    }
    char base[600];
    snprintf(base, sizeof base, "%s_quantized", w->name);
    otl_tensor *tq = add_init(g, base, OTL_DTYPE_INT8, w->rank, w->dims, qv, (size_t)w->numel, w->ext_location, err);
    int r1 = axis >= 0 ? 1 : 0;
    snprintf(base, sizeof base, "%s_scale", w->name);
    otl_tensor *ts = tq ? add_init(g, base, OTL_DTYPE_FLOAT, r1, &nc, scale, (size_t)nc * 4, NULL, err) : NULL;
    snprintf(base, sizeof base, "%s_zero_point", w->name);
    otl_tensor *tz = ts ? add_init(g, base, OTL_DTYPE_INT8, r1, &nc, zp, (size_t)nc, NULL, err) : NULL;
    if (!tz) {
        st = err->code;
        goto done;
    }
    const char *in[3] = {tq->name, ts->name, tz->name};
    st = add_q_node(g, "DequantizeLinear", in, w->name, axis, dq, err);
done:
    free(scale);
    free(zp);
    free(qv);
    return st;
}

static otl_status resort(otl_model *m, otl_error *err)
{
    otl_graph *g = m->graph;
    int *order;
    if (otl_graph_toposort(g, &order, fname(m), err))
        return err->code;
    otl_node **nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *nodes);
    if (!nodes) {
        free(order);
        return oom(err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        nodes[i] = g->nodes[order[i]];
    memcpy(g->nodes, nodes, (size_t)g->n_nodes * sizeof *nodes);
    free(nodes);
    free(order);
    return OTL_OK;
}

otl_status otl_export_quantize(otl_model *m, const otl_quant_opts *q, otl_quant_info *info, otl_error *err)
{
    otl_quant_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph || !q || !q->calib)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_quantize: no model or calibration data");
    otl_graph *g = m->graph;
    int64_t opset = otl_model_opset(m, "");
    if (opset < 0)
        opset = otl_model_opset(m, "ai.onnx");
    if (opset < 10)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                             "%s: opset %lld has no QuantizeLinear/DequantizeLinear (needs 10 or later)", fname(m),
                             (long long)opset);
    info->per_channel = opset >= 13;
    if (check_excludes(m, q->exclude, err))
        return err->code;
    /* the activations to calibrate */
    int n_orig = g->n_nodes, na = 0;
    qact *acts = calloc((size_t)n_orig * 2 + 1, sizeof *acts);
    if (!acts)
        return oom(err);
    otl_status st = OTL_OK;
    for (int i = 0; i < n_orig; i++) {
        const otl_node *n = g->nodes[i];
        int slots[2];
        if (!is_qtarget(n) || excluded(q->exclude, n))
            continue;
        int k = act_slots(g, n, slots);
        for (int j = 0; j < k; j++)
            if (find_act(acts, na, n->inputs[slots[j]]) < 0 && !(acts[na++].name = otl_strdup(n->inputs[slots[j]]))) {
                st = oom(err);
                goto done;
            }
    }
    if (na == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no Conv, Gemm or MatMul to quantize", fname(m));
        goto done;
    }
    if ((st = calibrate(m, acts, na, q, &info->samples, err)))
        goto done;
    for (int i = 0; i < na; i++)
        if ((st = quantize_act(g, &acts[i], err)))
            goto done;
    info->n_activations = na;
    /* weights (a weight read by several quantized nodes is quantized once) */
    const char **wname = calloc((size_t)n_orig + 1, sizeof *wname), **wdq = calloc((size_t)n_orig + 1, sizeof *wdq);
    int nw = 0;
    if (!wname || !wdq) {
        free(wname);
        free(wdq);
        st = oom(err);
        goto done;
    }
    for (int i = 0; i < n_orig && !st; i++) {
        otl_node *n = g->nodes[i];
        int slots[2], axis;
        if (!is_qtarget(n) || excluded(q->exclude, n))
            continue;
        info->n_nodes++;
        int k = act_slots(g, n, slots);
        for (int j = 0; j < k && !st; j++) {
            int a = find_act(acts, na, n->inputs[slots[j]]);
            if (a >= 0 && !otl_set_str(&n->inputs[slots[j]], acts[a].dq))
                st = oom(err);
        }
        otl_tensor *w = st ? NULL : weight_of(g, n, &axis);
        if (!w)
            continue;
        int found = -1;
        for (int j = 0; j < nw && found < 0; j++)
            if (strcmp(wname[j], w->name) == 0)
                found = j;
        if (found < 0) {
            const char *dq;
            if ((st = quantize_weight(g, w, info->per_channel ? axis : -1, &dq, err)))
                break;
            wname[nw] = w->name;
            wdq[nw] = dq;
            found = nw++;
            info->n_weights++;
        }
        if (!otl_set_str(&n->inputs[1], wdq[found]))
            st = oom(err);
    }
    free(wname);
    free(wdq);
    otl_export_info ei;
    memset(&ei, 0, sizeof ei);
    if (!st)
        st = prune(m, &ei, err);
    if (!st)
        st = resort(m, err);
    if (!st)
        st = otl_model_validate(m, err);
done:
    for (int i = 0; i < na; i++) {
        free(acts[i].name);
        free(acts[i].dq);
    }
    free(acts);
    return st;
}
