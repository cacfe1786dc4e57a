# nn.cmake - convolution, pooling, batch normalization and FusedConv against PyTorch
# (tests/nn/check_nn.py): blocked-layout chains, C fallbacks, dtypes, training statistics,
# FusedConv post-ops and its C epilogue, clean errors.
add_test(NAME nn.check COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/nn/check_nn.py ${ONNX_TL})
set_tests_properties(nn.check PROPERTIES LABELS "nn" TIMEOUT 600)
