/* list_shape.h - shape and data-movement ops (reshape, transpose, concat, slice, gather, ...). */
#define OTL_OPS_SHAPE(X)
