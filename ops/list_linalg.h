/* list_linalg.h - matrix products, normalization over the last axes, softmax and reductions
 * (ops/matmul.c, ops/softmax.c, ops/reduce.c, ops/layernorm.c). */
#define OTL_OPS_LINALG(X) X(MatMul) X(Gemm) X(Softmax) X(LogSoftmax) \
    X(ReduceSum) X(ReduceMean) X(ReduceMax) X(ReduceMin) X(ReduceProd) X(ReduceL1) X(ReduceL2) \
    X(ReduceSumSquare) X(ReduceLogSum) X(ReduceLogSumExp) X(ArgMax) X(ArgMin) \
    X(LayerNormalization) \
    X(MatMulGrad) X(SoftmaxGrad) X(LayerNormalizationGrad) X(ReduceGrad)
