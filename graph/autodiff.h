/* autodiff.h - reverse-mode differentiation on the IR: gradient rules append nodes.
 *
 * otl_autodiff walks the nodes between the trainable parameters and the loss in reverse
 * topological order and asks each op's `grad` rule (ops/<op>.c) to append the nodes that turn
 * the gradients of its outputs into gradients of its inputs. Rules work on names only; shapes
 * are resolved when the executor plans the graph (e.g. ReduceSumTo(dY, Shape(X)) sums a
 * broadcast gradient back to X's shape, and Shape is folded at plan time, so X itself is not
 * kept alive). Nodes that cannot reach a trainable parameter get no gradient nodes at all. */
#ifndef OTL_AUTODIFF_H
#define OTL_AUTODIFF_H

#include "ops/op.h"

#define OTL_GRAD_DOMAIN "onnx_tl" /* private ops: ReduceSumTo, ReluGrad, ConvGrad, ... */

struct otl_gctx {
    otl_graph *g;               /* graph being extended */
    const otl_model *m;
    const otl_node *node;       /* the forward node */
    int64_t opset;
    const char *file;
    otl_error *err;
    int n_in, n_out;
    const int *need;            /* (n_in) 1 when input i needs a gradient */
    const char *const *dy;      /* (n_out) gradient of output j, or NULL when none flows */
    const char **dx;            /* (n_in) set with otl_grad_set */
    struct otl_ad *ad;          /* internal */
};

/* A fresh value name "<hint>_grad<N>" (owned by the autodiff run). NULL on allocation failure. */
const char *otl_gname(otl_gctx *c, const char *hint);
/* Append a node (named after the forward node) reading `in` and writing `out`; omitted optional
 * inputs are "". Returns the node (to add attributes) or NULL after recording an error. */
otl_node *otl_gemit(otl_gctx *c, const char *domain, const char *op_type, int n_in,
                    const char *const *in, int n_out, const char *const *out);
/* Convenience: one output with a fresh name, returned. */
const char *otl_gemit1(otl_gctx *c, const char *domain, const char *op_type, int n_in,
                       const char *const *in, otl_node **node);
otl_status otl_gattr_int(otl_gctx *c, otl_node *n, const char *name, int64_t v);
otl_status otl_gattr_float(otl_gctx *c, otl_node *n, const char *name, float v);
otl_status otl_gattr_ints(otl_gctx *c, otl_node *n, const char *name, const int64_t *v, int count);
otl_status otl_gattr_str(otl_gctx *c, otl_node *n, const char *name, const char *v);
/* Copy every attribute of the forward node onto n. */
otl_status otl_gattr_copy(otl_gctx *c, otl_node *n);
/* Record the gradient of input i (the name must exist in the graph by the time it runs). */
void otl_grad_set(otl_gctx *c, int i, const char *name);
/* Gradient of input i when the output is broadcast from it: ReduceSumTo(dy, Shape(input i)). */
const char *otl_grad_unbroadcast(otl_gctx *c, const char *dy, int i);

/* Differentiate `loss` (a scalar value of g) with respect to `params` (initializer or input
 * names), appending nodes to g. grads[i] receives the name of the value holding d loss /
 * d params[i] (malloc'd; a parameter the loss does not depend on gets zeros). Fails, naming the
 * node, when a node on a path from a parameter to the loss has no gradient rule. */
otl_status otl_autodiff(otl_graph *g, const otl_model *m, const char *loss, const char *const *params,
                        int n_params, char **grads, otl_error *err);

#endif
