/* list_elementwise.h - element-wise math and activations (ops/elementwise*.c, ops/unary.c,
 * ops/activation.c) and their private backward kernels (domain onnx_tl: ops/elementwise_grad.c,
 * ops/activation_grad.c, WhereGrad, CastGrad/DTypeOf and PReluGrad next to their forward ops). */
#define OTL_OPS_ELEMENTWISE(X)                                                                    \
    X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Mod) X(BitShift) X(Max) X(Min) X(Sum) X(Mean)            \
    X(Equal) X(Less) X(Greater) X(LessOrEqual) X(GreaterOrEqual) X(And) X(Or) X(Xor) X(Not)       \
    X(Where) X(Cast) X(CastLike)                                                                  \
    X(Sqrt) X(Neg) X(Abs) X(Exp) X(Log) X(Reciprocal) X(Erf) X(Floor) X(Ceil) X(Round) X(Sign)    \
    X(Sin) X(Cos) X(Tan) X(Asin) X(Acos) X(Atan) X(Sinh) X(Cosh) X(Asinh) X(Acosh) X(Atanh)       \
    X(IsNaN) X(IsInf)                                                                             \
    X(Relu) X(LeakyRelu) X(PRelu) X(Elu) X(Selu) X(Celu) X(Sigmoid) X(HardSigmoid) X(HardSwish)   \
    X(Tanh) X(Gelu) X(GeluMs) X(Softplus) X(Softsign) X(Mish) X(ThresholdedRelu) X(Shrink)        \
    X(Clip)                                                                                       \
    X(PowGrad) X(MaxMinGrad) X(Scale) X(WhereGrad) X(CastGrad) X(DTypeOf) X(PReluGrad)            \
    X(ReluGrad) X(LeakyReluGrad) X(EluGrad) X(SeluGrad) X(CeluGrad) X(SigmoidGrad)                \
    X(HardSigmoidGrad) X(HardSwishGrad) X(TanhGrad) X(GeluGrad) X(SoftplusGrad) X(SoftsignGrad)   \
    X(MishGrad) X(ThresholdedReluGrad) X(ShrinkGrad) X(SqrtGrad) X(AbsGrad) X(ReciprocalGrad)     \
    X(ErfGrad) X(SinGrad) X(CosGrad) X(TanGrad) X(AsinGrad) X(AcosGrad) X(AtanGrad) X(SinhGrad)   \
    X(CoshGrad) X(AsinhGrad) X(AcoshGrad) X(AtanhGrad) X(ClipGrad)
