/* graph_edit.c - small helpers for graph rewrites (see graph_edit.h). */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph_edit.h"
#include "src/util.h"

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
                                 m->path ? m->path : "model", glob, what);
    }
    return OTL_OK;
}

otl_status otl_graph_resort(otl_model *m, otl_error *err)
{
    otl_graph *g = m->graph;
    int *order;
    if (otl_graph_toposort(g, &order, m->path ? m->path : "model", err))
        return err->code;
    otl_node **nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *nodes);
    if (!nodes) {
        free(order);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < g->n_nodes; i++)
        nodes[i] = g->nodes[order[i]];
    memcpy(g->nodes, nodes, (size_t)g->n_nodes * sizeof *nodes);
    free(nodes);
    free(order);
    return OTL_OK;
}

int otl_graph_reads(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0)
                return 1;
        for (int a = 0; a < n->n_attrs; a++) {
            if (n->attrs[a].g && otl_graph_reads(n->attrs[a].g, name))
                return 1;
            for (size_t s = 0; s < n->attrs[a].n_graphs; s++)
                if (otl_graph_reads(n->attrs[a].graphs[s], name))
                    return 1;
        }
    }
    return 0;
}
