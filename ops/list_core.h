/* list_core.h - ops that the executor itself relies on (see ops/core.c). */
#define OTL_OPS_CORE(X) X(Identity) X(Constant) X(Shape)
