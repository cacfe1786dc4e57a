# Round-trip tests: include()d from tests/CMakeLists.txt.
#
# Expects (defaults below when unset):
#   ONNX_TL      path of the onnx-tl executable (e.g. $<TARGET_FILE:onnx-tl>)
#   PYTHON       Python with onnx, numpy (and torch + torchvision for the zoo): /usr/bin/python3
#   NODE         node executable
#   OTL_ORT_DIR  tests/ort, where `npm ci` has installed onnxruntime-node
#
# Registers
#   roundtrip.<model>  for every testdata/models/*.onnx: tests/roundtrip/check_model.py
#                      (info vs python-onnx, export + onnx.checker + lossless, ORT at batch 1 and 8)
#   zoo.info           tests/zoo/run_zoo.py: exports the torchvision zoo into
#                      ${CMAKE_BINARY_DIR}/zoo, then check_model.py on each (ORT at batch 1)
#
# A missing tool (python module, node, onnxruntime-node, the binary) makes the test FAIL:
# nothing is skipped. Paths that cannot be found are passed on as-is (e.g. NODE-NOTFOUND)
# so the test itself reports them.

set(_otl_rt_src ${CMAKE_CURRENT_LIST_DIR}/..)
get_filename_component(_otl_rt_src ${_otl_rt_src} ABSOLUTE)

# ONNX_TL, PYTHON, NODE and OTL_ORT_DIR come from tests/CMakeLists.txt.

if(NOT EXISTS ${OTL_ORT_DIR}/node_modules/onnxruntime-node)
  message(WARNING "onnxruntime-node is not installed in ${OTL_ORT_DIR} (run `npm ci` there): "
                  "the roundtrip.* and zoo.info tests will fail")
endif()

set(_otl_rt_common --node ${NODE} --ort-compare ${OTL_ORT_DIR}/ort_compare.js)

file(GLOB _otl_rt_models CONFIGURE_DEPENDS ${_otl_rt_src}/testdata/models/*.onnx)
list(SORT _otl_rt_models)
if(NOT _otl_rt_models)
  message(SEND_ERROR "no test models in ${_otl_rt_src}/testdata/models (run testdata/make_models.py)")
endif()
foreach(_m ${_otl_rt_models})
  get_filename_component(_name ${_m} NAME_WE)
  add_test(NAME roundtrip.${_name}
    COMMAND ${PYTHON} ${_otl_rt_src}/tests/roundtrip/check_model.py
            ${ONNX_TL} ${_m} ${CMAKE_BINARY_DIR}/roundtrip/${_name} ${_otl_rt_common})
  set_tests_properties(roundtrip.${_name} PROPERTIES LABELS "roundtrip" TIMEOUT 300)
endforeach()

add_test(NAME zoo.info
  COMMAND ${PYTHON} ${_otl_rt_src}/tests/zoo/run_zoo.py
          ${ONNX_TL} ${CMAKE_BINARY_DIR}/zoo ${CMAKE_BINARY_DIR}/zoo-work
          --batches 1 ${_otl_rt_common})
set_tests_properties(zoo.info PROPERTIES LABELS "zoo" TIMEOUT 1200 FIXTURES_REQUIRED zoo)

add_test(NAME roundtrip.external_data
  COMMAND ${PYTHON} ${_otl_rt_src}/tests/roundtrip/check_external.py ${ONNX_TL}
          ${_otl_rt_src}/testdata/models/tiny_resnet.onnx ${CMAKE_BINARY_DIR}/roundtrip/external
          ${_otl_rt_common})
set_tests_properties(roundtrip.external_data PROPERTIES LABELS "roundtrip" TIMEOUT 300)
