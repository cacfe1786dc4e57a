# gradcheck.cmake - per-op finite-difference checks of the gradient rules (tests/gradcheck).
# One CTest entry per op: gradcheck.<Op> builds that op's cases and checks each with
# otl_gradcheck. The ops come from the '# ops: A B C' line of each tests/gradcheck/cases_*.py.
add_executable(otl_gradcheck ${CMAKE_CURRENT_LIST_DIR}/gradcheck/gradcheck.c)
target_link_libraries(otl_gradcheck PRIVATE onnxtl)

file(GLOB _otl_gc_files CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/gradcheck/cases_*.py)
set(OTL_GRADCHECK_OPS)
foreach(f ${_otl_gc_files})
  file(STRINGS ${f} _line REGEX "^# ops:")
  string(REGEX REPLACE "^# ops:[ ]*" "" _line "${_line}")
  separate_arguments(_ops UNIX_COMMAND "${_line}")
  list(APPEND OTL_GRADCHECK_OPS ${_ops})
endforeach()
foreach(op ${OTL_GRADCHECK_OPS})
  add_test(NAME gradcheck.${op}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/gradcheck/run_gradcheck.py
            $<TARGET_FILE:otl_gradcheck> ${op} ${CMAKE_CURRENT_BINARY_DIR}/gradcheck)
  set_tests_properties(gradcheck.${op} PROPERTIES LABELS "gradcheck;asan" TIMEOUT 600)
endforeach()

# oneDNN eltwise backward choices against PyTorch float64 autograd (needs torch)
add_test(NAME gradcheck.eltwise_vs_torch
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/gradcheck/check_eltwise_grad.py ${ONNX_TL}
          ${CMAKE_CURRENT_BINARY_DIR}/gradcheck_eltwise)
set_tests_properties(gradcheck.eltwise_vs_torch PROPERTIES LABELS "gradcheck" TIMEOUT 600)
