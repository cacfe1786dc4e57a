/* shape_copy.h - the kernel under the data-movement ops (Transpose, Slice, Concat, Split, Expand,
 * Tile, Pad, ...): an N-d strided copy by element size, plus small shape helpers. The copy works
 * for every fixed-size dtype because it moves bytes (esz = otl_dtype_size2(dtype)/2). */
#ifndef OTL_SHAPE_COPY_H
#define OTL_SHAPE_COPY_H

#include "ops/op.h"

#define OTL_COPY_MAX_RANK (2 * OTL_MAX_RANK)

/* dst[sum i_a*dst_strides[a]] = src[sum i_a*src_strides[a]] for every index i in the box `dims`.
 * Strides are in elements and may be negative (reversed slices) or 0 on the source side
 * (broadcast); the destination must not overlap itself or the source. Dimensions of size 1 are
 * dropped and contiguous runs merged, rows whose both sides are contiguous become memcpy, and
 * transposes (the source contiguous along another axis than the destination) go through
 * cache-sized tiles. Large copies run on OpenMP threads. rank <= OTL_COPY_MAX_RANK. */
void otl_copy_strided(void *dst, const int64_t *dst_strides, const void *src, const int64_t *src_strides,
                      int rank, const int64_t *dims, size_t esz);

/* Element strides of a C-order (row-major) tensor. */
void otl_strides_c(int rank, const int64_t *dims, int64_t *strides);

/* Bytes per element of input i's dtype for byte-moving kernels; fails (UNSUPPORTED) for strings
 * and the sub-byte int4/uint4 types. The input must be present. */
otl_status otl_movable(otl_kctx *k, int i, size_t *esz);

/* Fill n elements of esz bytes each with the one element at `value`. */
void otl_fill_elems(void *dst, const void *value, int64_t n, size_t esz);

#endif
