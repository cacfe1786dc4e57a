/* list_linalg.h - matrix products, normalization over the last axes, softmax and reductions (ops/gemm.c, ops/matmul.c, ...). */
#define OTL_OPS_LINALG(X)
