/* broadcast.h - NumPy-style multidirectional broadcasting for element-wise ops.
 * otl_bcast_init computes the output shape of up to OTL_BCAST_MAX inputs and, for each input,
 * element strides over the output shape (0 along broadcast axes). Iterate with
 * otl_bcast_offsets, or use otl_bcast_same when no input needs broadcasting. */
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
} otl_bcast;

/* Fails (naming the node) when shapes are not broadcast-compatible. */
otl_status otl_bcast_init(otl_kctx *k, otl_bcast *b, int n_in, const otl_rt *const *in);
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

#endif
