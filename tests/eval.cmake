# eval.cmake - `onnx-tl eval` / `onnx-tl predict` and src/metrics.c (tests/eval): include()d from
# tests/CMakeLists.txt.
#
# Registers
#   eval.metrics   tests/eval/test_metrics.c on tests/eval/data/metrics_goldens.txt (numpy from
#                  scikit-learn's definitions, zero_division=0; made by make_metrics_goldens.py),
#                  top-k ranking, stored labels parsing

set(_otl_eval_src ${CMAKE_CURRENT_LIST_DIR}/eval)
if(NOT DEFINED PYTHON OR PYTHON STREQUAL "")
  set(PYTHON /usr/bin/python3)
endif()

add_executable(test_metrics ${_otl_eval_src}/test_metrics.c)
target_link_libraries(test_metrics PRIVATE onnxtl)
add_test(NAME eval.metrics COMMAND test_metrics ${_otl_eval_src}/data/metrics_goldens.txt)
set_tests_properties(eval.metrics PROPERTIES LABELS "eval;asan" TIMEOUT 60)
