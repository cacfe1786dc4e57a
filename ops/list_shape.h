/* list_shape.h - shape and data-movement ops (reshape, transpose, concat, slice, gather, pad,
 * resize, scatter, ...), in ops/shape_*.c, and their private backward kernels (domain onnx_tl),
 * each next to its forward op. */
#define OTL_OPS_SHAPE(X)                                                                           \
    X(Reshape) X(Flatten) X(Squeeze) X(Unsqueeze) X(Transpose) X(Concat) X(Split) X(Slice)       \
    X(Gather) X(GatherElements) X(GatherND) X(ScatterElements) X(Scatter) X(ScatterND)          \
    X(Expand) X(Tile) X(Pad) X(Resize) X(Upsample) X(DepthToSpace) X(SpaceToDepth) X(Trilu)      \
    X(ReverseSequence) X(ConstantOfShape) X(Range) X(Size) X(EyeLike) X(OneHot) X(Dropout)    \
    X(ConcatGrad) X(SliceGrad) X(GatherGrad) X(GatherElementsGrad) X(TileGrad) X(PadGrad)        \
    X(ResizeGrad) X(DropoutGrad) X(DepthToSpaceGrad)
