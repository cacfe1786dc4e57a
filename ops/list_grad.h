/* list_grad.h - private ops (domain "onnx_tl") used by training graphs: losses and the
 * backward kernels that gradient rules emit (ops/loss.c, ops/grad_ops.c). */
#define OTL_OPS_GRAD(X) X(ReduceSumTo) X(SoftmaxCrossEntropy) X(SoftmaxCrossEntropyGrad) \
    X(MeanSquaredError) X(MeanSquaredErrorGrad) X(BCEWithLogits) X(BCEWithLogitsGrad)
