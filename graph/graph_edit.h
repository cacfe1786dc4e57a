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

/* Whether any node of g, or of its subgraphs (If/Loop/Scan bodies), reads `name`. */
int otl_graph_reads(const otl_graph *g, const char *name);
/* Reorder m's nodes topologically (after rewrites appended nodes); errors name m's file. */
otl_status otl_graph_resort(otl_model *m, otl_error *err);

/* --exclude NODE_GLOBS of export's passes: comma-separated fnmatch globs, spaces around each
 * trimmed. Whether one of them matches node n's name (list NULL: none). */
int otl_glob_list_match(const char *list, const otl_node *n);
/* Every glob of list is non-empty, under 512 bytes (else OTL_ERR_USAGE) and matches the name of a
 * node of m for which want(g, n) holds (else OTL_ERR_INPUT naming the file, the glob and `what`,
 * e.g. "Conv, Gemm or MatMul node"). */
otl_status otl_glob_list_check(const otl_model *m, const char *list,
                               int (*want)(const otl_graph *g, const otl_node *n), const char *what, otl_error *err);

#endif
