/* list_elementwise.h - element-wise math and activations (ops/elementwise*.c, ops/unary.c,
 * ops/activation.c). */
#define OTL_OPS_ELEMENTWISE(X)                                                                    \
    X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Mod) X(BitShift) X(Max) X(Min) X(Sum) X(Mean)            \
    X(Equal) X(Less) X(Greater) X(LessOrEqual) X(GreaterOrEqual) X(And) X(Or) X(Xor) X(Not)       \
    X(Where) X(Cast) X(CastLike)                                                                  \
    X(Sqrt) X(Neg) X(Abs) X(Exp) X(Log) X(Reciprocal) X(Erf) X(Floor) X(Ceil) X(Round) X(Sign)    \
    X(Sin) X(Cos) X(Tan) X(Asin) X(Acos) X(Atan) X(Sinh) X(Cosh) X(Asinh) X(Acosh) X(Atanh)       \
    X(IsNaN) X(IsInf)                                                                             \
    X(Relu) X(LeakyRelu) X(PRelu) X(Elu) X(Selu) X(Celu) X(Sigmoid) X(HardSigmoid) X(HardSwish)   \
    X(Tanh) X(Gelu) X(GeluMs) X(Softplus) X(Softsign) X(Mish) X(ThresholdedRelu) X(Shrink)        \
    X(Clip)
