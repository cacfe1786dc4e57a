# frozen.cmake - frozen convolutions of training sessions run like inference (issue 7),
# include()d from tests/CMakeLists.txt.
#
# Registers
#   frozen.convs   tests/frozen/check_frozen.py: a small CNN (made with onnx.helper) under
#                  `onnx-tl grad` with ONEDNN_VERBOSE=1, four freezings x --bn train|frozen: the
#                  convolutions no gradient flows through run forward_inference (Winograd too),
#                  the others forward_training; OTL_FROZEN_INFER=0 (the old per-session rule) runs
#                  every one forward_training; loss and gradients of both agree within 1e-5;
#                  a small MLP with all but the head frozen: its frozen MatMuls run on weights
#                  packed once into oneDNN's layout, as in inference

# PYTHON and ONNX_TL come from tests/CMakeLists.txt.
add_test(NAME frozen.convs
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/frozen/check_frozen.py ${ONNX_TL} ${CMAKE_BINARY_DIR}/frozen-convs)
set_tests_properties(frozen.convs PROPERTIES LABELS "frozen" TIMEOUT 300)
