/* fuse.h - inference-time rewrites (BatchNormalization folding, Conv + activation / residual
 * Add fusion into onnx_tl.FusedConv). See graph/fuse.c. */
#ifndef OTL_FUSE_H
#define OTL_FUSE_H

#include "onnxtl.h"

typedef struct otl_fused {
    otl_graph *g;          /* shallow view: shares everything but `nodes`/`inits` arrays with the model */
    int n_nodes;
    otl_node **nodes;      /* nodes created by fusion (owned) */
    int n_inits;
    otl_tensor **inits;    /* folded weights (owned) */
} otl_fused;

otl_status otl_fuse_inference(const otl_model *m, otl_fused **out, otl_error *err);
/* The same rewrites on a training graph, only where no gradient node reads a fused-away value;
 * graph inputs (trainable parameters) are not constants; no BatchNormalization folding when
 * bn_training (batch statistics). */
otl_status otl_fuse_training(const otl_model *m, int bn_training, otl_fused **out, otl_error *err);
void otl_fused_free(otl_fused *f);

/* Training graphs name the gradient of a trainable parameter P (a graph input) "onnx_tl::grad::P"
 * (src/train_graph.c). */
#define OTL_GRAD_PREFIX "onnx_tl::grad::"
/* Per node of g: 1 when no gradient flows through it, i.e. none of its inputs depends on a
 * trainable parameter (a graph input P with a graph output OTL_GRAD_PREFIX P): the frozen part of
 * a training graph, which runs like inference. A graph without such outputs: every node. NULL
 * when out of memory. OTL_FROZEN_INFER=0: none (every node of a training graph runs as before). */
char *otl_no_grad_nodes(const otl_graph *g);

#endif
