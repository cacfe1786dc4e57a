# qexec.cmake - onnx-tl runs quantized models (issue 6), include()d from tests/CMakeLists.txt.
# The quantized ops themselves (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
# MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv) are covered by the libonnx-testdata node
# tests (tests/nodetest.cmake registers them). Here, tests/qexec/check_qexec.py, one entry per case:
#   qexec.fashion   the demo model exported with --quantize int8 (QDQ), run by `onnx-tl run`, `eval`
#                   and `predict` on 1000 Fashion-MNIST test images, against ONNX Runtime (without
#                   optimizations: dequantizing like onnx-tl; with all: its integer kernels).
#                   Needs Debian's dataset-fashion-mnist (fails without it).
#   qexec.dynamic   `export --quantize int8-dynamic` (graph/quantize_dynamic.c) of the transformer
#                   encoder testdata/models/tiny_encoder.onnx and of a generated MatMul/Gemm model:
#                   checker, structure, file size, ORT and onnx-tl close to the float model and to
#                   each other; --exclude.
#   qexec.dynamic_errors  int8-dynamic usage and input errors.
#   qexec.qconv     the int8 convolution fusion (graph/fuse.c -> onnx_tl.QDQConv, ops/conv_int8.c)
#                   against the dequantize path (OTL_NO_QCONV=1) and ORT: generated QDQ convolutions
#                   (uint8/int8 input, zero points, pads, strides, dilations, groups, per-channel
#                   and per-tensor weights, bias or none, Relu or none) within 1e-5, and the int8
#                   exports of the demo model and of an opset-12 mobilenet.
# (see the script's docstring for the checks and tolerances)
set(OTL_QEXEC_FASHION_DIR /usr/share/datasets/fashion-mnist)
foreach(_otl_case fashion dynamic dynamic_errors qconv)
  add_test(NAME qexec.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/qexec/check_qexec.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}
            ${CMAKE_BINARY_DIR}/qexec-work ${_otl_case} --fashion-dir ${OTL_QEXEC_FASHION_DIR})
  set_tests_properties(qexec.${_otl_case} PROPERTIES LABELS "qexec" TIMEOUT 600)
endforeach()
