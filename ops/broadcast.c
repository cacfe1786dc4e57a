/* broadcast.c - output shape and strides for multidirectional broadcasting. */
#include "ops/broadcast.h"

#include <string.h>

otl_status otl_bcast_init(otl_kctx *k, otl_bcast *b, int n_in, const otl_rt *const *in)
{
    memset(b, 0, sizeof *b);
    b->n_in = n_in;
    for (int j = 0; j < n_in; j++)
        if (in[j]->rank > b->rank)
            b->rank = in[j]->rank;
    for (int d = 0; d < b->rank; d++) {
        int64_t dim = 1;
        for (int j = 0; j < n_in; j++) {
            int off = b->rank - in[j]->rank;
            int64_t x = d < off ? 1 : in[j]->dims[d - off];
            if (x == dim || x == 1)
                continue;
            if (dim != 1)
                return otl_kfail(k, OTL_ERR_INPUT,
                                 "inputs cannot be broadcast together: dimension %d is %lld in one and %lld in '%s'",
                                 d, (long long)dim, (long long)x, in[j]->name);
            dim = x;
        }
        b->dims[d] = dim;
    }
    b->numel = 1;
    for (int d = 0; d < b->rank; d++)
        b->numel *= b->dims[d];
    for (int j = 0; j < n_in; j++) {
        int off = b->rank - in[j]->rank;
        int64_t s = 1;
        b->same[j] = in[j]->rank == b->rank;
        for (int d = b->rank - 1; d >= 0; d--) {
            int64_t x = d < off ? 1 : in[j]->dims[d - off];
            b->strides[j][d] = x == 1 ? 0 : s;
            if (x != b->dims[d])
                b->same[j] = 0;
            s *= x;
        }
    }
    return OTL_OK;
}
