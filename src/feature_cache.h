/* feature_cache.h - frozen-prefix activation cache of `onnx-tl train` (src/feature_cache.c):
 * when every trainable parameter lies downstream of one tensor T of the data path, the frozen
 * prefix (data input -> T) is run once per sample and the epochs train the cut model (T -> outputs). */
#ifndef OTL_FEATURE_CACHE_H
#define OTL_FEATURE_CACHE_H

#include <stddef.h>

#include "onnxtl.h"

/* Split m at the frontier of the trainable parameters of tg. On success with *cut != NULL:
 * *prefix computes only *frontier (malloc'd) from `input`, *cut has *frontier as its data input
 * and m's outputs. When no cache applies, returns OTL_OK with *cut == NULL and the reason in why. */
otl_status otl_fcache_plan(const otl_model *m, const char *input, const otl_train_graph *tg, int bn_frozen,
                           otl_model **prefix, otl_model **cut, char **frontier, char *why, size_t nwhy,
                           otl_error *err);

/* 1 when `name` is read by a node of g or of any subgraph nested in its nodes (an outer-scope
 * reference of an If/Loop/Scan body), or is an output of g or of such a subgraph. Conservative:
 * a subgraph's own tensor shadowing `name` counts as a read. */
int otl_fcache_reads(const otl_graph *g, const char *name);

#endif
