# gradcheck_linalg.cmake - the linalg family's gradients (matrix products, layer norm, softmax,
# reductions) against float64 PyTorch autograd at realistic sizes, exactly rather than by
# sampled finite differences (tests/gradcheck/check_linalg_grad.py; needs torch). The
# finite-difference cases are in tests/gradcheck/cases_linalg.py.
add_test(NAME gradcheck.linalg_vs_torch
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/gradcheck/check_linalg_grad.py ${ONNX_TL}
          ${CMAKE_CURRENT_BINARY_DIR}/gradcheck_linalg)
set_tests_properties(gradcheck.linalg_vs_torch PROPERTIES LABELS "gradcheck" TIMEOUT 600)
