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

/* For gradient rules: a value of float zeros shaped like `value` (ConstantOfShape(Shape(value)),
 * both folded at plan time). NULL after an error. */
const char *otl_gzeros_like(otl_gctx *c, const char *value);

/* Zero `nbytes` at dst (OpenMP threads for large buffers). */
void otl_zero_par(void *dst, size_t nbytes);

/* For the backward kernels of data-movement ops (SliceGrad, PadGrad, ResizeGrad): rebuild the
 * forward op's plan (index maps, taps) by running its infer on a stand-in for its data input X:
 * a value of dY's (input 0) dtype shaped by the const int input `shape_in` of k (Shape(X)),
 * followed by k's inputs [first, first + n) as the forward's inputs 1..n, at the forward's opset
 * (k's attribute fwd_opset) and with k's attributes (copied from the forward node). *x receives
 * the stand-in, *y the forward output's shape; the forward's state is left in k->state (to be
 * released by the forward's release). Fails when *y's shape differs from dY's. */
otl_status otl_infer_forward(otl_kctx *k, otl_status (*infer)(otl_kctx *), int shape_in, int first, int n,
                             otl_rt *x, otl_rt *y);

#endif
