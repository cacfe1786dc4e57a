/* list_linalg.h - matrix products, normalization over the last axes, softmax and reductions (ops/matmul.c, ...). */
#define OTL_OPS_LINALG(X) X(MatMul) X(Gemm) X(Softmax) X(LogSoftmax)
