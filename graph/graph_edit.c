/* graph_edit.c - small helpers for graph rewrites (see graph_edit.h). */
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
