# nn.cmake - convolution, pooling, batch normalization and FusedConv against PyTorch
# (tests/nn/check_nn.py): blocked-layout chains, C fallbacks, dtypes, training statistics,
# FusedConv post-ops and its C epilogue, clean errors; training sessions (tests/nn/nn_session.c:
# BatchNormalization running statistics) and `onnx-tl grad` on conv/pool/BN chains against
# torch.autograd.
add_executable(nn_session ${CMAKE_CURRENT_LIST_DIR}/nn/nn_session.c)
target_link_libraries(nn_session PRIVATE onnxtl)
add_test(NAME nn.check COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/nn/check_nn.py ${ONNX_TL} $<TARGET_FILE:nn_session>)
set_tests_properties(nn.check PROPERTIES LABELS "nn" TIMEOUT 900)
# On demand (not a test): training-step cost, e.g.
#   build/tests/nn_train_bench bench/models/resnet18.onnx input X.npy labels.npy --steps 5
add_executable(nn_train_bench ${CMAKE_CURRENT_LIST_DIR}/nn/nn_train_bench.c)
target_link_libraries(nn_train_bench PRIVATE onnxtl)
