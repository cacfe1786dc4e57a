/* list_nn.h - neural-network layers on oneDNN (conv, gemm/matmul, pooling, normalization, softmax, reductions). */
#define OTL_OPS_NN(X)
