/* graph_edit.h - small helpers for graph rewrites (graph/surgery.c, graph/export.c). */
#ifndef OTL_GRAPH_EDIT_H
#define OTL_GRAPH_EDIT_H
#include "onnxtl.h"

/* Whether `name` is an initializer, a declared value, a node name or a node input/output of g. */
int otl_graph_name_used(const otl_graph *g, const char *name);
/* "<base>" or "<base>_<k>", unused in g; malloc'd (NULL when out of memory). */
char *otl_graph_fresh_name(const otl_graph *g, const char *base);
/* Replace the malloc'd string *slot by a copy of v; 0 when out of memory. */
int otl_set_str(char **slot, const char *v);

#endif
