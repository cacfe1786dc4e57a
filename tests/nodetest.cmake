# tests/nodetest.cmake - ONNX backend conformance: one CTest entry per test of Debian's
# libonnx-testdata (data/node, data/pytorch-converted, data/pytorch-operator, data/simple) whose
# model the library accepts, include()d from tests/CMakeLists.txt.
#
# Which tests those are is only known once the library is built, so a build step
# (target nodetest_discover, part of ALL) runs `otl_nodetest --discover`, which writes
#   ${CMAKE_BINARY_DIR}/nodetest-tests.cmake        add_test(nodetest.<suite>.<test> ...) lines
#   ${CMAKE_BINARY_DIR}/nodetest-unsupported.txt    tests left out: unsupported op, with the error
# and CTest reads the former through TEST_INCLUDE_FILES. Tests in tests/nodetest/skip.txt (one
# per line, with a reason) are not registered. The discovery reruns whenever the library
# (hence otl_nodetest) or the skip list changes.
#
#   OTL_ONNX_TESTDATA   the data directory of libonnx-testdata

set(_otl_nt_dir ${CMAKE_CURRENT_LIST_DIR}/nodetest)
set(OTL_ONNX_TESTDATA /usr/share/libonnx-testdata/data CACHE PATH
    "libonnx-testdata's data directory (node/, pytorch-converted/, ...)")

add_executable(otl_nodetest ${_otl_nt_dir}/nodetest.c)
target_link_libraries(otl_nodetest PRIVATE onnxtl)

set(_otl_nt_gen ${CMAKE_BINARY_DIR}/nodetest-tests.cmake)
set(_otl_nt_report ${CMAKE_BINARY_DIR}/nodetest-unsupported.txt)
add_custom_command(
  OUTPUT ${_otl_nt_gen} ${_otl_nt_report}
  COMMAND otl_nodetest --discover ${OTL_ONNX_TESTDATA} ${_otl_nt_dir}/skip.txt ${_otl_nt_gen}
          --report ${_otl_nt_report} --exe $<TARGET_FILE:otl_nodetest>
  DEPENDS otl_nodetest ${_otl_nt_dir}/skip.txt
  COMMENT "Discovering the ONNX backend node tests the library supports"
  VERBATIM)
add_custom_target(nodetest_discover ALL DEPENDS ${_otl_nt_gen})

# CTest includes this file when it runs; without a build there is nothing to include, and a
# failing placeholder test says so.
set(_otl_nt_include ${CMAKE_CURRENT_BINARY_DIR}/nodetest-include.cmake)
file(WRITE ${_otl_nt_include}
"if(EXISTS \"${_otl_nt_gen}\")
  include(\"${_otl_nt_gen}\")
else()
  add_test(nodetest.not-discovered \"${CMAKE_COMMAND}\" -E echo
           \"${_otl_nt_gen} is missing: build first (cmake --build)\")
  set_tests_properties(nodetest.not-discovered PROPERTIES WILL_FAIL TRUE LABELS nodetest)
endif()
")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${_otl_nt_include})

# The runner itself: wrong values, shapes, dtypes, NaN, tolerances, data-set order, positional
# inputs, discovery with a skip list (tests/nodetest/selftest.py builds the cases).
add_test(NAME nodetest.selftest
  COMMAND ${PYTHON} ${_otl_nt_dir}/selftest.py $<TARGET_FILE:otl_nodetest>
          ${CMAKE_CURRENT_BINARY_DIR}/nodetest_selftest)
set_tests_properties(nodetest.selftest PROPERTIES LABELS "nodetest;asan" TIMEOUT 300)
