# tests/surgery.cmake - swap-head, freeze and the preprocessing metadata (issue 5), include()d
# from tests/CMakeLists.txt.
#
# Registers
#   surgery.preprocess   tests/surgery/test_preprocess.c: defaults, strict JSON parser, canonical
#                        JSON, stored metadata over defaults, checks against the model input

set(_otl_surg_dir ${CMAKE_CURRENT_LIST_DIR}/surgery)

add_executable(test_preprocess ${_otl_surg_dir}/test_preprocess.c)
target_link_libraries(test_preprocess PRIVATE onnxtl)
add_test(NAME surgery.preprocess COMMAND test_preprocess)
set_tests_properties(surgery.preprocess PROPERTIES LABELS "surgery;unit;asan" TIMEOUT 60)
