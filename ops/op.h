/* op.h - the contract between the executor (src/exec.c) and one ONNX op's implementation.
 *
 * Each op file (ops/<op>.c, or one file for a tight family) defines `const otl_op otl_op_<Name>`
 * and is listed once in ops/registry.h. The executor calls, per node and per set of input
 * shapes:
 *   infer   - parse and check attributes (into k->state), check input dtypes/shapes, and set
 *             every present output's dtype and shape with otl_rt_set. Inputs whose data is
 *             known at plan time (initializers, Constants, folded shape subgraphs) have
 *             in[i]->is_const and valid in[i]->data here: ops that need a value (Reshape's
 *             shape, Slice's starts, ...) read it then, and fail cleanly when it is not const.
 *   prepare - optional: build oneDNN primitives now that every shape is final.
 *   forward - compute outputs from inputs. Never write into inputs. Output buffers are
 *             distinct from input buffers (unless the op is OTL_OPF_ALIAS).
 *   release - optional: free what k->state holds (the executor then frees k->state itself).
 * Nodes whose inputs are all const are evaluated once at plan time (constant folding), so
 * ops must not assume they run on the stream of a particular run.
 * Errors: return otl_kfail(k, code, fmt, ...), which prefixes file, node name and op type.
 */
#ifndef OTL_OP_H
#define OTL_OP_H

#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "onnxtl.h"

#define OTL_MAX_RANK 8

/* A runtime value: one tensor of the graph during a run. */
typedef struct otl_rt {
    const char *name;
    int dtype;                  /* otl_dtype */
    int rank;
    int64_t dims[OTL_MAX_RANK];
    int64_t numel;
    size_t nbytes;
    void *data;                 /* plain C-order data (nbytes), valid in forward */
    int is_const;               /* data known at plan time */
    int blocked;                /* data is in the oneDNN layout `md` instead of plain C order
                                   (only ops with OTL_OPF_ANY_LAYOUT ever see such inputs) */
    dnnl_memory_desc_t md;      /* valid when blocked */
    int shape_known;            /* dtype/shape set */
    /* executor bookkeeping */
    int alias_of;               /* value index whose buffer this one shares, or -1 */
    int first, last;            /* schedule steps of definition and last use */
    int owned;                  /* data malloc'd by the plan */
    int is_input, is_output;
    size_t arena_off;
    int in_arena;
} otl_rt;

typedef struct otl_engine {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    int threads;
    /* The one scratchpad every primitive of the session shares (they are created in oneDNN's
       user scratchpad mode: otl_pd_create): grown to the largest need at a primitive's first run,
       passed as DNNL_ARG_SCRATCHPAD by otl_dnnl_run. */
    void *scratch;
    size_t scratch_size;      /* scratch_need rounded up to 4 KiB */
    dnnl_memory_t scratch_mem;
    size_t scratch_need;      /* the largest scratchpad any primitive of the session asked for */
    int n_scratch_prims;      /* primitives created (otl_dnnl_primitive) that use the shared scratchpad,
                                 counted over the session's life (a re-plan creates its primitives again) */
    int n_library_prims;      /* primitives created in library mode (OTL_SCRATCH_CHECK=1: an error) */
    long n_scratch_runs;      /* primitive runs that used the shared scratchpad */
    long n_library_runs;      /* runs of primitives still in library mode (OTL_SCRATCH_CHECK=1: an error) */
} otl_engine;

struct otl_op;
typedef struct otl_gctx otl_gctx; /* gradient-rule context, see graph/autodiff.h */

typedef struct otl_kctx {
    const otl_node *node;
    const struct otl_op *op;
    int64_t opset;              /* the model's opset for the node's domain */
    const char *file;
    otl_error *err;
    otl_engine *eng;
    int training;               /* training semantics (Dropout active, BatchNormalization per bn_training) */
    int bn_training;            /* BatchNormalization uses batch statistics (training && !bn_frozen) */
    int no_grad;                /* training: no gradient flows through this node (none of its inputs
                                   depends on a trainable parameter: a frozen part), so ops without
                                   training semantics may run it as in inference */
    int bf16;                   /* session precision bf16: Conv/Gemm/MatMul primitives (and their
                                   backward) read bfloat16 copies of their float32 inputs */
    uint64_t seed;              /* per-node seed for random ops */
    uint64_t step;              /* index of the current run of the session (0, 1, ...): random
                                   ops draw from (seed, step) so that every step differs */
    int n_in, n_out;
    otl_rt **in;                /* (n_in) NULL for omitted optional inputs */
    otl_rt **out;               /* (n_out) NULL for omitted optional outputs */
    void *state;                /* op-private */
    int alias;                  /* set by infer: output 0 shares input 0's buffer for this node
                                   (as OTL_OPF_ALIAS, decided per node: e.g. Dropout without a
                                   mask in inference); forward is then not called */
} otl_kctx;

enum {
    OTL_OPF_ALIAS = 1 << 0,      /* output 0 is input 0's data reinterpreted (Reshape, Identity,
                                    Flatten, Squeeze, Unsqueeze): forward is not called */
    OTL_OPF_SHAPE_ONLY = 1 << 1, /* outputs depend only on input shapes (Shape, Size): folded
                                    even when the input data is not const */
    OTL_OPF_RANDOM = 1 << 2,     /* never folded (random ops) */
    OTL_OPF_NO_GRAD = 1 << 4,    /* not differentiable at all (comparisons, logic, Shape, ...):
                                    autodiff passes no gradient through it */
    OTL_OPF_ANY_LAYOUT = 1 << 3, /* accepts inputs in oneDNN blocked layouts (in[i]->blocked,
                                    in[i]->md; use otl_rt_md) and may produce one (otl_rt_set_md).
                                    Other ops get plain inputs: the executor inserts reorders */
};

typedef struct otl_op {
    const char *domain;         /* "" for ai.onnx */
    const char *op_type;
    int since;                  /* lowest opset the implementation handles */
    int until;                  /* highest opset whose semantics it implements */
    unsigned flags;
    otl_status (*infer)(otl_kctx *k);
    otl_status (*prepare)(otl_kctx *k);
    otl_status (*forward)(otl_kctx *k);
    void (*release)(otl_kctx *k);
    /* reverse mode (graph/autodiff.c): bit i of grad_inputs set when input i is
     * differentiable (bit 31 stands for inputs 31 and up of variadic ops); grad appends the
     * nodes computing the inputs' gradients. An op with neither a rule nor OTL_OPF_NO_GRAD is
     * "not yet differentiable": an error when it lies on a path to the loss. */
    unsigned grad_inputs;
    otl_status (*grad)(otl_gctx *c);
} otl_op;

/* Registry look-up: the op implementing (domain, op_type) at `opset`, or NULL; *why receives a
 * reason when the op exists but not at that opset. */
const otl_op *otl_op_find(const char *domain, const char *op_type, int64_t opset, const char **why);

/* ------------------------------------------------------------ helpers for op files */

/* Error naming file, node and op: "<file>: node '<name>' (<Op>-<opset>): <message>". */
otl_status otl_kfail(otl_kctx *k, otl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Set a value's dtype and shape (computes numel and nbytes; checks rank and size). */
otl_status otl_rt_set(otl_kctx *k, otl_rt *v, int dtype, int rank, const int64_t *dims);
/* Logical dtype/shape plus a oneDNN layout for the data (nbytes from the descriptor). A plain
 * C-order descriptor leaves the value plain. */
otl_status otl_rt_set_md(otl_kctx *k, otl_rt *v, int dtype, int rank, const int64_t *dims,
                         const dnnl_memory_desc_t *md);
/* The value's memory descriptor: its blocked layout, or the plain one. */
otl_status otl_rt_md(otl_kctx *k, const otl_rt *v, dnnl_memory_desc_t *md);
/* Same shape and dtype as another value (plain layout). */
otl_status otl_rt_like(otl_kctx *k, otl_rt *v, const otl_rt *like);

/* Attributes, with type checks: a present attribute of the wrong type is an error. */
otl_status otl_attr_int(otl_kctx *k, const char *name, int64_t dflt, int64_t *out);
otl_status otl_attr_float(otl_kctx *k, const char *name, float dflt, float *out);
/* NUL-terminated string attribute, or dflt. */
otl_status otl_attr_str(otl_kctx *k, const char *name, const char *dflt, const char **out);
/* INTS: *n = -1 when absent. At most `max` values are copied into out. */
otl_status otl_attr_ints(otl_kctx *k, const char *name, int64_t *out, int max, int *n);
otl_status otl_attr_floats(otl_kctx *k, const char *name, float *out, int max, int *n);
/* TENSOR attribute, or NULL when absent. */
otl_status otl_attr_tensor(otl_kctx *k, const char *name, const otl_tensor **out);

/* Input i present (not omitted)? */
static inline int otl_has_in(const otl_kctx *k, int i)
{
    return i < k->n_in && k->in[i] != NULL;
}
static inline int otl_has_out(const otl_kctx *k, int i)
{
    return i < k->n_out && k->out[i] != NULL;
}
/* Require input i to be present with one of the dtypes in `dtypes` (0-terminated list). */
otl_status otl_check_in(otl_kctx *k, int i, const int *dtypes);
/* Read an integer tensor input (int32/int64) that must be const at plan time into out. */
otl_status otl_const_ints(otl_kctx *k, int i, int64_t *out, int max, int *n);
/* A shape-only stand-in of dtype for a forward tensor, rebuilt from a Shape(...) input i (the
   backward kernels' view of X or W, whose values they do not need). */
otl_status otl_shape_rt(otl_kctx *k, int i, int dtype, otl_rt *v);
/* Normalize an axis into [0, rank) (negative counts from the end); error when out of range. */
otl_status otl_axis(otl_kctx *k, int64_t axis, int rank, int *out);

/* ------------------------------------------------------------ oneDNN helpers */

/* Plain (C-order) memory descriptor for a value of dtype f32/s32/s8/u8/bf16/f16. */
otl_status otl_md_plain(otl_kctx *k, const otl_rt *v, dnnl_memory_desc_t *md);
/* Map a dnnl status to an error naming the node. */
otl_status otl_dnnl_check(otl_kctx *k, dnnl_status_t s, const char *what);
/* Create a dnnl memory object over `data` (NULL allowed: set later). */
otl_status otl_dnnl_memory(otl_kctx *k, const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *out);
/* Execute a primitive on the engine's stream and wait; a primitive that needs a scratchpad gets
 * the engine's shared one (grown when this primitive needs more: the first run only). */
otl_status otl_dnnl_run(otl_kctx *k, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args);
/* dnnl_primitive_create for a pd made by otl_pd_create / otl_reorder_pd_create: grows the engine's
 * shared scratchpad now (plan / prepare time) to what the primitive needs, and counts it. A pd in
 * library scratchpad mode is counted apart (n_library_prims), and refused when OTL_SCRATCH_CHECK=1. */
otl_status otl_dnnl_primitive(otl_kctx *k, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *p, const char *what);
/* dnnl_primitive_desc_create / dnnl_reorder_primitive_desc_create with attr (NULL: default) in
 * the user scratchpad mode, so that the primitive uses the engine's shared scratchpad. */
dnnl_status_t otl_pd_create(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t d, const_dnnl_primitive_attr_t attr,
                            dnnl_engine_t eng, const_dnnl_primitive_desc_t hint);
dnnl_status_t otl_reorder_pd_create(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *src, dnnl_engine_t src_eng,
                                    const dnnl_memory_desc_t *dst, dnnl_engine_t dst_eng,
                                    const_dnnl_primitive_attr_t attr);
/* Release the engine's scratchpad (session end). */
void otl_engine_scratch_free(otl_engine *e);

/* Elements as float/int for generic kernels. */
double otl_get_f(const void *data, int dtype, int64_t i);
int64_t otl_get_i(const void *data, int dtype, int64_t i);
void otl_set_f(void *data, int dtype, int64_t i, double v);
void otl_set_i(void *data, int dtype, int64_t i, int64_t v);

#endif
