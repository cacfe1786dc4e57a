/* broadcast.h - NumPy-style multidirectional broadcasting for element-wise ops.
 * otl_bcast_init computes the output shape of up to OTL_BCAST_MAX inputs and, for each input,
 * element strides over the output shape (0 along broadcast axes). Iterate with
 * otl_bcast_offsets (one element), or better with otl_bcast_run, which walks the output in runs
 * along the innermost axis of a collapsed shape (size-1 axes dropped, axes merged where every
 * input is contiguous or broadcast across both) and splits the work across threads. */
#ifndef OTL_BROADCAST_H
#define OTL_BROADCAST_H

#include "ops/op.h"

#define OTL_BCAST_MAX 4

typedef struct otl_bcast {
    int n_in;
    int rank;
    int64_t dims[OTL_MAX_RANK];                  /* output shape */
    int64_t numel;
    int64_t strides[OTL_BCAST_MAX][OTL_MAX_RANK]; /* per input, in elements */
    int same[OTL_BCAST_MAX];                      /* input has exactly the output shape */
    /* collapsed form of the same iteration (crank >= 1) */
    int crank;
    int64_t cdims[OTL_MAX_RANK];
    int64_t cstrides[OTL_BCAST_MAX][OTL_MAX_RANK];
    int64_t inner[OTL_BCAST_MAX];                 /* step of input j along a run: 0 or 1 */
} otl_bcast;

/* Fails (naming the node) when shapes are not broadcast-compatible. */
otl_status otl_bcast_init(otl_kctx *k, otl_bcast *b, int n_in, const otl_rt *const *in);
/* Same from bare shapes (n_in rank/dims pairs); `names` (may be NULL) for messages. */
otl_status otl_bcast_init_dims(otl_kctx *k, otl_bcast *b, int n_in, const int *ranks,
                               const int64_t *const *dims, const char *const *names);

/* Binary ops: multidirectional broadcasting, or before opset 7 (k->opset < 7) the legacy rule:
 * attribute broadcast=0 requires equal shapes, broadcast=1 lays B's dims over A's starting at
 * attribute `axis` (default: aligned to the end), where each must match or be 1. */
otl_status otl_bcast_init_binary(otl_kctx *k, otl_bcast *b, const otl_rt *a, const otl_rt *bv);

/* Offsets of output element `i` in each input. */
static inline void otl_bcast_offsets(const otl_bcast *b, int64_t i, int64_t *off)
{
    for (int j = 0; j < b->n_in; j++)
        off[j] = 0;
    for (int d = b->rank - 1; d >= 0; d--) {
        int64_t c = i % b->dims[d];
        i /= b->dims[d];
        for (int j = 0; j < b->n_in; j++)
            off[j] += c * b->strides[j][d];
    }
}

/* A run: output elements o .. o+n-1; input j starts at off[j] and steps by b->inner[j]. */
typedef void (*otl_bcast_row_fn)(void *ctx, int64_t o, const int64_t *off, int64_t n);

/* Visit output elements [start, end) run by run. */
void otl_bcast_rows(const otl_bcast *b, int64_t start, int64_t end, otl_bcast_row_fn fn, void *ctx);
/* Visit every output element, in parallel (OpenMP) when there are at least 2*grain of them;
 * grain is the smallest number of elements worth a thread (e.g. 32768 for an add, less for
 * costly functions). */
void otl_bcast_run(const otl_bcast *b, otl_bcast_row_fn fn, void *ctx, int64_t grain);

/* Parallel loop over [0, n) in contiguous chunks: fn(ctx, start, end). */
typedef void (*otl_range_fn)(void *ctx, int64_t start, int64_t end);
void otl_parallel_range(int64_t n, int64_t grain, otl_range_fn fn, void *ctx);

/* A plain C-order copy of an input that arrives in a oneDNN blocked layout, for ops with
 * OTL_OPF_ANY_LAYOUT on paths that have no kernel for the layout. prepare builds the reorder
 * (nothing for a plain value); get runs it and returns the plain data (v->data when plain). */
typedef struct otl_plain {
    dnnl_primitive_t reorder;
    dnnl_memory_t src, dst;
    void *buf;
} otl_plain;
otl_status otl_plain_prepare(otl_kctx *k, const otl_rt *v, otl_plain *p);
otl_status otl_plain_get(otl_kctx *k, const otl_rt *v, otl_plain *p, const void **data);
void otl_plain_release(otl_plain *p);

#endif
