# tests/demo.cmake - the demo's pieces (issue 5), include()d from tests/CMakeLists.txt.
#
# Registers
#   demo.folder   tests/demo/check_folder.py: tools/fashion_folder.c (Fashion-MNIST idx files ->
#                 ImageFolder PNGs) against the idx files read with numpy and the PNGs read with
#                 PIL: directory names, per-class counts, pixel identity, seeded choice, errors.
#   demo.ort_predict  tests/demo/check_ort_predict.py: a model written by `train` on the demo data
#                 (and its export) in ONNX Runtime agrees with `onnx-tl predict`.
#   demo.parity   tests/demo/check_parity.py: the demo's recipe in onnx-tl and in PyTorch reaches
#                 the same validation accuracy (within 1.5 points).
#   demo.script   tools/demo.sh, what `make demo` runs, end to end (about 10 s; its output under
#                 build/demo-script): every step must succeed, the export round trip included.
#
# Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist): the tests fail
# without it.

set(_otl_demo_dir ${CMAKE_CURRENT_LIST_DIR}/demo)
set(OTL_FASHION_DIR /usr/share/datasets/fashion-mnist)

add_test(NAME demo.folder
  COMMAND ${PYTHON} ${_otl_demo_dir}/check_folder.py $<TARGET_FILE:fashion_folder>
          ${CMAKE_BINARY_DIR}/demo-folder --data-dir ${OTL_FASHION_DIR})
set_tests_properties(demo.folder PROPERTIES LABELS "demo" TIMEOUT 120)

# The model written by `train` (2 epochs on 100 demo images, BatchNormalization statistics updated)
# and its `export`: ONNX Runtime on PIL/numpy-preprocessed PNGs gives the same top-5 ranking and
# confidences (1e-4) as `onnx-tl predict --json` on the same files.
add_test(NAME demo.ort_predict
  COMMAND ${PYTHON} ${_otl_demo_dir}/check_ort_predict.py ${ONNX_TL} $<TARGET_FILE:fashion_folder>
          ${CMAKE_BINARY_DIR}/demo-ort --node ${NODE} --ort-run ${OTL_ORT_DIR}/ort_run.js
          --data-dir ${OTL_FASHION_DIR})
set_tests_properties(demo.ort_predict PROPERTIES LABELS "demo" TIMEOUT 600)

# Accuracy parity (issue 5): the demo's fine-tuning recipe (head only, then everything with
# --layer-lr-decay) in onnx-tl and in PyTorch (tests/demo/torch_recipe.py) from the same swapped
# model, on the same 250 training / 1000 validation images: validation accuracies within 1.5
# points. One seed: over seeds 1, 2, 3 the two sides differed by +0.2, -0.3, +0.4 points (onnx-tl
# 93.0/92.9/93.2 %, PyTorch 92.8/93.2/92.8 %), so single-seed noise is well inside the tolerance
# (check_parity.py --seeds 1,2,3 averages when wanted). About 2 minutes of CPU; 10-15 minutes of
# wall time were measured on a machine loaded 6x over its 2 cores, hence the timeout.
add_test(NAME demo.parity
  COMMAND ${PYTHON} ${_otl_demo_dir}/check_parity.py ${ONNX_TL} $<TARGET_FILE:fashion_folder>
          ${CMAKE_BINARY_DIR}/demo-parity --seeds 1 --tolerance 1.5 --python ${PYTHON}
          --data-dir ${OTL_FASHION_DIR})
set_tests_properties(demo.parity PROPERTIES LABELS "demo" TIMEOUT 3600)

# `make demo` itself: tools/demo.sh from the source directory with this build's onnx-tl (it finds
# fashion_folder next to it). It once failed at its first export (the round-trip check predated
# --fold-bn as export's default) while every test here passed.
add_test(NAME demo.script COMMAND sh ${CMAKE_SOURCE_DIR}/tools/demo.sh ${ONNX_TL}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(demo.script PROPERTIES LABELS "demo" TIMEOUT 600
                     ENVIRONMENT "OTL_DEMO_OUT=${CMAKE_BINARY_DIR}/demo-script;OTL_FASHION_DIR=${OTL_FASHION_DIR}")
