# tests/demo.cmake - the demo's pieces (issue 5), include()d from tests/CMakeLists.txt.
#
# Registers
#   demo.folder   tests/demo/check_folder.py: tools/fashion_folder.c (Fashion-MNIST idx files ->
#                 ImageFolder PNGs) against the idx files read with numpy and the PNGs read with
#                 PIL: directory names, per-class counts, pixel identity, seeded choice, errors.
#
# Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist): the tests fail
# without it.

set(_otl_demo_dir ${CMAKE_CURRENT_LIST_DIR}/demo)
set(OTL_FASHION_DIR /usr/share/datasets/fashion-mnist)

add_test(NAME demo.folder
  COMMAND ${PYTHON} ${_otl_demo_dir}/check_folder.py $<TARGET_FILE:fashion_folder>
          ${CMAKE_BINARY_DIR}/demo-folder --data-dir ${OTL_FASHION_DIR})
set_tests_properties(demo.folder PROPERTIES LABELS "demo" TIMEOUT 120)
