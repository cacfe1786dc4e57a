/* list_elementwise.h - element-wise math and activations (ops/elementwise*.c, ops/activation*.c). */
#define OTL_OPS_ELEMENTWISE(X) X(Relu) X(Add)
