/* list_shape.h - shape and data-movement ops (reshape, transpose, concat, slice, gather, pad,
 * resize, ...), in ops/shape_*.c. */
#define OTL_OPS_SHAPE(X)                                                                           \
    X(Reshape) X(Flatten) X(Squeeze) X(Unsqueeze) X(Transpose) X(Concat) X(Split) X(Slice)       \
    X(Gather) X(Expand) X(Tile) X(ConstantOfShape) X(Range) X(Size) X(Pad) X(Resize)            \
    X(Upsample) X(Dropout) X(GatherElements) X(ScatterElements) X(Scatter) X(ScatterND)         \
    X(DepthToSpace) X(SpaceToDepth) X(GatherND)
