/* list_nn.h - neural-network layers: convolution (ops/conv.c, integer ops/conv_quant.c),
 * quantization (ops/quant.c), pooling (ops/pool.c), batch normalization (ops/batchnorm.c), and
 * their private ops (domain onnx_tl): FusedConv and QDQConv (ops/conv_int8.c; inference) and the
 * backward kernels. */
#define OTL_OPS_NN(X)                                                                              \
    X(Conv) X(ConvTranspose) X(MaxPool) X(AveragePool) X(GlobalAveragePool) X(GlobalMaxPool)       \
    X(BatchNormalization) X(MaxUnpool) X(ConvInteger) X(QLinearConv) X(QuantizeLinear) X(DequantizeLinear)      \
    X(DynamicQuantizeLinear) X(MatMulInteger) X(QLinearMatMul) X(QDQConv) X(FusedConv) X(FusedConvDw)       \
    X(ConvGradData) X(ConvGradWeights) X(ConvGradBias) X(ConvTransposeGradData)                     \
    X(ConvTransposeGradWeights) X(MaxPoolGrad) X(AveragePoolGrad) X(GlobalMaxPoolGrad)              \
    X(GlobalAveragePoolGrad) X(BatchNormalizationGrad) X(BatchNormalizationRelu) \
    X(BatchNormalizationRecompute)
