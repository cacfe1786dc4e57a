/* graph_edit.h - small helpers for graph rewrites (graph/surgery.c, export.c, prune.c, quantize*.c). */
#ifndef OTL_GRAPH_EDIT_H
#define OTL_GRAPH_EDIT_H
#include "onnxtl.h"

/* m's file name for error messages ("model" when it has none). */
const char *otl_model_file(const otl_model *m);
/* Set OTL_ERR_NOMEM "out of memory" on err; returns that code. */
otl_status otl_oom(otl_error *err);
/* Whether n is in the default ONNX domain ("" or "ai.onnx"). */
int otl_node_is_onnx(const otl_node *n);
/* Whether `name` is a declared input (output) of g. */
int otl_graph_is_input(const otl_graph *g, const char *name);
int otl_graph_is_output(const otl_graph *g, const char *name);

/* Whether `name` is an initializer, a declared value, a node name or a node input/output of g. */
int otl_graph_name_used(const otl_graph *g, const char *name);
/* "<base>" or "<base>_<k>", unused in g; malloc'd (NULL when out of memory). */
char *otl_graph_fresh_name(const otl_graph *g, const char *base);
/* Replace the malloc'd string *slot by a copy of v; 0 when out of memory. */
int otl_set_str(char **slot, const char *v);

/* Whether any node of g, or a subgraph of them (If/Loop/Scan body: its nodes or its outputs, an
 * outer-scope reference), reads `name`. Conservative: a body's own tensor of that name counts. */
int otl_graph_reads(const otl_graph *g, const char *name);
/* Whether a subgraph (If/Loop/Scan body) of any node of g reads `name` (as otl_graph_reads). */
int otl_graph_reads_in_subgraph(const otl_graph *g, const char *name);
/* Number of top-level node inputs of g reading `name`; 1000 when a subgraph reads it. */
int otl_graph_n_reads(const otl_graph *g, const char *name);
/* A float32 initializer of g named `name` with its data, not overridable (not a graph input); or NULL. */
otl_tensor *otl_graph_const_float(const otl_graph *g, const char *name);
/* Add an initializer named after base (fresh in g) holding a copy of data, stored externally at `ext`
 * when not NULL; NULL with OTL_ERR_NOMEM on err when out of memory. */
otl_tensor *otl_graph_add_init_copy(otl_graph *g, const char *base, int dtype, int rank, const int64_t *dims,
                                    const void *data, size_t nbytes, const char *ext, otl_error *err);
/* Remove the initializers that no node (subgraphs included) reads, that are no graph output and not
 * named `keep` (NULL: none), with their IR < 4 graph-input entries; returns how many went. */
int otl_graph_drop_unused_inits(otl_graph *g, const char *keep);
/* Set live[i] (g->n_nodes entries, not cleared) for every node needed to compute `names` (n of them);
 * reads inside subgraph bodies count as reads of their node (over-approximation: local names too). */
otl_status otl_graph_mark_live(const otl_graph *g, const char *const *names, int n, char *live, otl_error *err);
/* Remove the nodes no graph output (nor `keep`, NULL: none) needs, then the initializers nothing reads
 * (otl_graph_drop_unused_inits); adds the numbers removed to *n_nodes and *n_inits. */
otl_status otl_graph_remove_dead(otl_graph *g, const char *keep, int *n_nodes, int *n_inits, otl_error *err);
/* Remove the value_info entries of names that are no node output, initializer or graph input any more. */
void otl_graph_drop_stale_value_info(otl_graph *g);
/* Free node i of g and close the gap. */
void otl_graph_remove_node(otl_graph *g, int i);
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

/* The 1x1 Conv classifier (SqueezeNet) that produces output o through Relu, pooling and
 * shape-preserving ops: its node index, or -1 (graph/head.c). */
int otl_graph_conv_head(const otl_graph *g, int o);

#endif
