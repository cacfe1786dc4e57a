/* list_nn.h - neural-network layers: convolution (ops/conv.c, integer ops/conv_quant.c),
 * pooling (ops/pool.c), batch normalization (ops/batchnorm.c). */
#define OTL_OPS_NN(X)                                                                              \
    X(Conv) X(ConvTranspose) X(MaxPool) X(AveragePool) X(GlobalAveragePool) X(GlobalMaxPool)       \
    X(BatchNormalization) X(MaxUnpool) X(ConvInteger) X(QLinearConv)
