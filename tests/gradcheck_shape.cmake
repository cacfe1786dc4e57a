# gradcheck_shape.cmake - gradient checks of the shape family that finite differences cannot do
# (tests/gradcheck/check_dropout_grad.py: Dropout with a real random mask, through onnx-tl grad).
add_test(NAME gradcheck.Dropout.mask
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/gradcheck/check_dropout_grad.py ${ONNX_TL}
          ${CMAKE_CURRENT_BINARY_DIR}/gradcheck/dropout_mask)
set_tests_properties(gradcheck.Dropout.mask PROPERTIES LABELS "gradcheck;asan" TIMEOUT 600)
