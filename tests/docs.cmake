# tests/docs.cmake - the documentation's promises held to the code, include()d from
# tests/CMakeLists.txt. `make demo` failed for a day at its first step while every test passed;
# these tests run what README.md and bench/README.md promise and no other test runs.
#
# Registers (tests/docs/check_docs.py; about 10 s together)
#   docs.flags   every command of `onnx-tl --help` has a line in README's Commands block, and every
#                --flag documented for a command (that block, backticked `onnx-tl CMD ...` and
#                `CMD --flag` spans of README.md and bench/README.md) is named by
#                `onnx-tl CMD --help` and accepted by its parser
#   docs.env     every OTL_* variable of README.md / bench/README.md is read by the code
#   docs.tests   every test name of README's Tests section matches a registered test (fuzz.*:
#                registered in tests/*.cmake, sanitizer build), and every suite is described there
#   docs.bench   every bench script in a code block of bench/README.md prints --help naming the
#                flags of its examples; bench/quant runs on the bundled fashion_cnn (1 round of 2
#                runs, ONNX Runtime); the train_step driver prints the JSON keys bench/train reads

set(_otl_docs_py ${CMAKE_CURRENT_LIST_DIR}/docs/check_docs.py)

add_test(NAME docs.flags COMMAND ${PYTHON} ${_otl_docs_py} flags ${CMAKE_SOURCE_DIR} ${ONNX_TL})
add_test(NAME docs.env COMMAND ${PYTHON} ${_otl_docs_py} env ${CMAKE_SOURCE_DIR})
add_test(NAME docs.tests COMMAND ${PYTHON} ${_otl_docs_py} tests ${CMAKE_SOURCE_DIR} ${CMAKE_CTEST_COMMAND}
                                 ${CMAKE_BINARY_DIR})
add_test(NAME docs.bench COMMAND ${PYTHON} ${_otl_docs_py} bench ${CMAKE_SOURCE_DIR} ${ONNX_TL}
                                 $<TARGET_FILE:train_step> ${NODE})
set_tests_properties(docs.flags docs.env docs.tests docs.bench PROPERTIES LABELS "docs" TIMEOUT 120)
