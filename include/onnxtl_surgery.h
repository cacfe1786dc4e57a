/* onnxtl_surgery.h - graph surgery for transfer learning: replace the classifier head
 * (swap-head), frozen marks (freeze) and parameter blocks (gradual unfreezing, discriminative
 * learning rates). Implemented in graph/surgery.c; the CLI commands are thin layers over it.
 *
 * Metadata written (metadata_props):
 *   onnx_tl.labels      class names, one per line (swap-head --labels; removed without it)
 *   onnx_tl.preprocess  canonical preprocessing JSON (include/onnxtl_data.h)
 *   onnx_tl.frozen      frozen parameter names, one per line (otl_model_is_frozen)
 *   onnx_tl.head        the parameters of the head swap-head created, one per line: block 0 of
 *                       otl_param_blocks and what `freeze --all-but-head` leaves trainable. */
#ifndef ONNXTL_SURGERY_H
#define ONNXTL_SURGERY_H

#include "onnxtl.h"
#include "onnxtl_data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ swap-head */

enum { OTL_POOL_AUTO = 0, OTL_POOL_CLS = 1, OTL_POOL_MEAN = 2 };

typedef struct otl_swap_head_opts {
    int64_t classes;           /* N >= 1 */
    const char *at;            /* cut tensor; NULL: auto-detect the head */
    int pool;                  /* rank-3 (N, T, D) cut tensors: OTL_POOL_CLS (AUTO) or OTL_POOL_MEAN */
    int64_t hidden;            /* > 0: Gemm(F->H) -> Relu -> [Dropout] -> Gemm(H->N) */
    int has_dropout;           /* insert Dropout(dropout) (before the last Gemm) */
    float dropout;             /* in [0, 1) */
    uint64_t seed;             /* initialization (torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))) */
    const char *const *labels; /* n_labels == classes names, or NULL (stale labels removed) */
    int n_labels;
    const otl_preprocess *pp;  /* stored (checked against the input) when non-NULL; else kept */
    const char *pp_source;     /* names pp's origin in errors (file name, flags); NULL: "preprocessing" */
    int threads;               /* for the shape probe run (0: all cores) */
} otl_swap_head_opts;

/* What swap-head did (for messages); strings point into the model or are static. */
typedef struct otl_swap_head_info {
    char cut[512];             /* the tensor the new head reads (before pooling) */
    int cut_rank;
    int64_t features;          /* F */
    const char *pooling;       /* "none", "GlobalAveragePool+Flatten", "cls", "mean" */
    char old_head[512];        /* removed head node ("" when cut with --at / conv head) */
    int64_t old_classes;       /* -1 if unknown */
    int n_removed_nodes, n_removed_params;
} otl_swap_head_info;

/* Replace the classifier head of m in place (see ../shared/CLI.md and the header comment of
 * graph/surgery.c). On failure m may be partly modified: work on a clone. info may be NULL. */
otl_status otl_swap_head(otl_model *m, const otl_swap_head_opts *o, otl_swap_head_info *info, otl_error *err);

/* Class labels: read a file (one name per line, no empty lines, no duplicates, '\r' stripped; the
 * parser of otl_model_labels in onnxtl_data.h, src/metrics.c); *labels is one malloc'd block of
 * pointers and text (free with otl_labels_free or free()). */
otl_status otl_labels_read(const char *path, char ***labels, int *n, otl_error *err);
void otl_labels_free(char **labels, int n);

/* ------------------------------------------------------------ freeze */

typedef struct otl_freeze_opts {
    int all_but_head;          /* freeze every parameter outside the head */
    const char *until;         /* tensor or node: every parameter upstream of it frozen */
    const char *params;        /* comma-separated fnmatch globs on initializer names: frozen */
    const char *unfreeze;      /* comma-separated globs, applied last ('*': everything) */
} otl_freeze_opts;

/* Update the frozen marks of m (added to the existing ones). A glob or name that matches
 * nothing is an OTL_ERR_INPUT error naming it. */
otl_status otl_freeze(otl_model *m, const otl_freeze_opts *o, otl_error *err);
/* Replace the marks by `names` (parameters only; unknown names are an error). n == 0 removes
 * the key. */
otl_status otl_model_set_frozen(otl_model *m, const char *const *names, int n, otl_error *err);
/* The parameters of the head: onnx_tl.head when stored, else the detected head's weight and
 * bias. *names malloc'd (the strings point into m). */
otl_status otl_head_params(const otl_model *m, const char ***names, int *n, otl_error *err);

/* ------------------------------------------------------------ parameter blocks */

/* Every trainable-parameter candidate (otl_graph_init_is_param) with its block: depth 0 = the
 * head, 1 = the block just before it, ... increasing toward the input.
 * Blocks come from PyTorch-style names when every parameter has one (identifiers joined by '.':
 * the prefix up to and including the first all-digit component, layer4.1.conv2.weight ->
 * "layer4.1"; names without a digit component group by their first component: conv1, fc),
 * ordered by the topological position of their first consumer; otherwise (onnx::Conv_193 style
 * names of constant-folded exports) one block per weight-bearing node (Conv/ConvTranspose/Gemm/
 * MatMul/Gather..., with the BatchNormalization/LayerNormalization or bias Add that directly
 * follows it), named after the node. The head parameters (otl_head_params) always form block 0
 * "head". */
typedef struct otl_param_blocks {
    int n_params;
    char **params;       /* (n_params) initializer names, graph order */
    int *block;          /* (n_params) depth */
    int n_blocks;
    char **block_names;  /* (n_blocks) indexed by depth */
    int by_names;        /* 1: from PyTorch-style names, 0: per node */
} otl_param_blocks;

otl_status otl_param_blocks_get(const otl_model *m, otl_param_blocks **out, otl_error *err);
void otl_param_blocks_free(otl_param_blocks *b);
/* Depth of a parameter, or -1 when it is not one. */
int otl_param_blocks_depth(const otl_param_blocks *b, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* ONNXTL_SURGERY_H */
