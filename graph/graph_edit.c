/* graph_edit.c - small helpers for graph rewrites (see graph_edit.h). */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_edit.h"
#include "src/strmap.h"
#include "src/util.h"

const char *otl_model_file(const otl_model *m)
{
    return m->path ? m->path : "model";
}

otl_status otl_oom(otl_error *err)
{
    return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
}

int otl_node_is_onnx(const otl_node *n)
{
    return !n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0;
}

int otl_graph_is_input(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->inputs[i]->name, name) == 0)
            return 1;
    return 0;
}

int otl_graph_is_output(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->outputs[i]->name, name) == 0)
            return 1;
    return 0;
}

int otl_graph_name_used(const otl_graph *g, const char *name)
{
    if (otl_graph_find_init(g, name) || otl_graph_find_value(g, name))
        return 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        if (strcmp(n->name, name) == 0)
            return 1;
        for (int k = 0; k < n->n_outputs; k++)
            if (strcmp(n->outputs[k], name) == 0)
                return 1;
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0)
                return 1;
    }
    return 0;
}

/* "<base>" or "<base>_<k>", unused in g; malloc'd. */
char *otl_graph_fresh_name(const otl_graph *g, const char *base)
{
    size_t len = strlen(base) + 24;
    char *s = malloc(len);
    if (!s)
        return NULL;
    snprintf(s, len, "%s", base);
    for (int k = 1; otl_graph_name_used(g, s); k++)
        snprintf(s, len, "%s_%d", base, k);
    return s;
}

int otl_set_str(char **slot, const char *v)
{
    char *c = otl_strdup(v);
    if (!c)
        return 0;
    free(*slot);
    *slot = c;
    return 1;
}

/* Next glob of a comma-separated list into buf (trimmed of spaces); the rest, or NULL at the end. */
static const char *next_glob(const char *p, char *buf, size_t cap, int *too_long)
{
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    while (len && *p == ' ')
        p++, len--;
    while (len && p[len - 1] == ' ')
        len--;
    *too_long = len >= cap;
    if (len >= cap)
        len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return e ? e + 1 : NULL;
}

int otl_glob_list_match(const char *list, const otl_node *n)
{
    char glob[512];
    int tl;
    for (const char *p = list; p;) {
        p = next_glob(p, glob, sizeof glob, &tl);
        if (*glob && !tl && fnmatch(glob, n->name, 0) == 0)
            return 1;
    }
    return 0;
}

otl_status otl_glob_list_check(const otl_model *m, const char *list,
                               int (*want)(const otl_graph *g, const otl_node *n), const char *what, otl_error *err)
{
    char glob[512];
    int tl;
    for (const char *p = list; p;) {
        p = next_glob(p, glob, sizeof glob, &tl);
        if (!*glob || tl)
            return otl_error_set(err, OTL_ERR_USAGE, "--exclude: empty or too long glob in '%s'", list);
        int hit = 0;
        for (int i = 0; i < m->graph->n_nodes && !hit; i++)
            hit = want(m->graph, m->graph->nodes[i]) && fnmatch(glob, m->graph->nodes[i]->name, 0) == 0;
        if (!hit)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: --exclude '%s' matches no %s",
                                 otl_model_file(m), glob, what);
    }
    return OTL_OK;
}

otl_status otl_graph_resort(otl_model *m, otl_error *err)
{
    otl_graph *g = m->graph;
    int *order;
    if (otl_graph_toposort(g, &order, otl_model_file(m), err))
        return err->code;
    otl_node **nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *nodes);
    if (!nodes) {
        free(order);
        return otl_oom(err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        nodes[i] = g->nodes[order[i]];
    memcpy(g->nodes, nodes, (size_t)g->n_nodes * sizeof *nodes);
    free(nodes);
    free(order);
    return OTL_OK;
}

/* A subgraph reads an outer name through its nodes or by naming it as one of its outputs. */
static int body_reads(const otl_graph *b, const char *name)
{
    return b && (otl_graph_is_output(b, name) || otl_graph_reads(b, name));
}

int otl_graph_reads(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0)
                return 1;
    }
    return otl_graph_reads_in_subgraph(g, name);
}

int otl_graph_reads_in_subgraph(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        for (int a = 0; a < g->nodes[i]->n_attrs; a++) {
            const otl_attr *at = &g->nodes[i]->attrs[a];
            if (body_reads(at->g, name))
                return 1;
            for (size_t s = 0; s < at->n_graphs; s++)
                if (body_reads(at->graphs[s], name))
                    return 1;
        }
    return 0;
}

int otl_graph_n_reads(const otl_graph *g, const char *name)
{
    if (otl_graph_reads_in_subgraph(g, name))
        return 1000;
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_inputs; k++)
            c += strcmp(g->nodes[i]->inputs[k], name) == 0;
    return c;
}

otl_tensor *otl_graph_const_float(const otl_graph *g, const char *name)
{
    otl_tensor *t = *name ? otl_graph_find_init(g, name) : NULL;
    if (!t || t->dtype != OTL_DTYPE_FLOAT || !t->data || otl_graph_is_input(g, name) ||
        t->nbytes != (size_t)t->numel * sizeof(float))
        return NULL;
    return t;
}

otl_tensor *otl_graph_add_init_copy(otl_graph *g, const char *base, int dtype, int rank, const int64_t *dims,
                                    const void *data, size_t nbytes, const char *ext, otl_error *err)
{
    char *name = otl_graph_fresh_name(g, base);
    otl_tensor *t = name ? otl_tensor_new(name, dtype, rank, dims) : NULL;
    free(name);
    if (!t || !(t->data = malloc(nbytes ? nbytes : 1)) || (ext && !(t->ext_location = otl_strdup(ext))) ||
        otl_graph_add_init(g, t)) {
        otl_tensor_free(t);
        otl_oom(err);
        return NULL;
    }
    memcpy(t->data, data, nbytes);
    t->nbytes = nbytes;
    return t;
}

int otl_graph_drop_unused_inits(otl_graph *g, const char *keep)
{
    int w = 0, n = g->n_inits;
    for (int i = 0; i < g->n_inits; i++) {
        otl_tensor *t = g->inits[i];
        if (otl_graph_reads(g, t->name) || otl_graph_is_output(g, t->name) || (keep && strcmp(t->name, keep) == 0)) {
            g->inits[w++] = t;
            continue;
        }
        for (int k = 0; k < g->n_inputs; k++)
            if (strcmp(g->inputs[k]->name, t->name) == 0) {
                otl_value_free(g->inputs[k]);
                memmove(&g->inputs[k], &g->inputs[k + 1], (size_t)(g->n_inputs - k - 1) * sizeof *g->inputs);
                g->n_inputs--;
                break;
            }
        otl_tensor_free(t);
    }
    g->n_inits = w;
    return n - w;
}

/* Mark the producers of what n reads, in its subgraph bodies too, and push them on the stack. */
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

otl_status otl_graph_mark_live(const otl_graph *g, const char *const *names, int n, char *live, otl_error *err)
{
    otl_strmap prod = {0};
    int *stack = malloc(((size_t)g->n_nodes + 1) * sizeof *stack);
    if (!stack || !otl_strmap_init(&prod, (size_t)g->n_nodes * 2 + 8)) {
        free(stack);
        return otl_oom(err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_outputs; k++)
            if (*g->nodes[i]->outputs[k] && !otl_strmap_put(&prod, g->nodes[i]->outputs[k], i)) {
                otl_strmap_free(&prod);
                free(stack);
                return otl_oom(err);
            }
    int sp = 0;
    for (int i = 0; i < n; i++) {
        int p = otl_strmap_get(&prod, names[i], -1);
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
    return OTL_OK;
}

otl_status otl_graph_remove_dead(otl_graph *g, const char *keep, int *n_nodes, int *n_inits, otl_error *err)
{
    char *live = calloc((size_t)g->n_nodes + 1, 1);
    const char **roots = malloc(((size_t)g->n_outputs + 2) * sizeof *roots);
    if (!live || !roots) {
        free(live);
        free(roots);
        return otl_oom(err);
    }
    int n_roots = 0;
    for (int i = 0; i < g->n_outputs; i++)
        roots[n_roots++] = g->outputs[i]->name;
    if (keep)
        roots[n_roots++] = keep;
    otl_status st = otl_graph_mark_live(g, roots, n_roots, live, err);
    free(roots);
    if (st) {
        free(live);
        return st;
    }
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (live[i])
            g->nodes[w++] = g->nodes[i];
        else {
            otl_node_free(g->nodes[i]);
            (*n_nodes)++;
        }
    }
    g->n_nodes = w;
    free(live);
    *n_inits += otl_graph_drop_unused_inits(g, keep);
    return OTL_OK;
}

void otl_graph_drop_stale_value_info(otl_graph *g)
{
    int w = 0;
    for (int i = 0; i < g->n_value_info; i++) {
        otl_value *v = g->value_info[i];
        if (otl_graph_producer(g, v->name) >= 0 || otl_graph_find_init(g, v->name) || otl_graph_is_input(g, v->name))
            g->value_info[w++] = v;
        else
            otl_value_free(v);
    }
    g->n_value_info = w;
}

void otl_graph_remove_node(otl_graph *g, int i)
{
    otl_node_free(g->nodes[i]);
    memmove(&g->nodes[i], &g->nodes[i + 1], (size_t)(g->n_nodes - i - 1) * sizeof *g->nodes);
    g->n_nodes--;
}
