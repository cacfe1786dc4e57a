# gradcheck.cmake - per-op finite-difference checks of the gradient rules (tests/gradcheck).
# One CTest entry per op: gradcheck.<Op> builds that op's cases (run_gradcheck.py) and checks
# each with otl_gradcheck. Add an op here when its gradient rule lands.
add_executable(otl_gradcheck ${CMAKE_CURRENT_LIST_DIR}/gradcheck/gradcheck.c)
target_link_libraries(otl_gradcheck PRIVATE onnxtl)

set(OTL_GRADCHECK_OPS Identity)
foreach(op ${OTL_GRADCHECK_OPS})
  add_test(NAME gradcheck.${op}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/gradcheck/run_gradcheck.py
            $<TARGET_FILE:otl_gradcheck> ${op} ${CMAKE_CURRENT_BINARY_DIR}/gradcheck)
  set_tests_properties(gradcheck.${op} PROPERTIES LABELS "gradcheck;asan" TIMEOUT 600)
endforeach()
