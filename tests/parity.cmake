# Parity of `onnx-tl run` with ONNX Runtime on whole models: include()d from tests/CMakeLists.txt.
#
# Expects (defaults below when unset):
#   ONNX_TL      path of the onnx-tl executable (e.g. $<TARGET_FILE:onnx-tl>)
#   PYTHON       Python with onnx, numpy (and torch + torchvision for the zoo): /usr/bin/python3
#   NODE         node executable
#   OTL_ORT_DIR  tests/ort, where `npm ci` has installed onnxruntime-node
#
# Registers
#   parity.<model>  for every testdata/models/*.onnx: tests/parity/check_parity.py at batch 1
#                   and 8 (seeded random inputs; every output within max relative error 1e-4
#                   of ONNX Runtime, same dtype and shape)
#   zoo.generate    tests/zoo/make_zoo.py: exports the torchvision zoo into
#                   ${CMAKE_BINARY_DIR}/zoo (existing files are kept). It is the setup of the
#                   CTest fixture "zoo": every test that reads the zoo requires that fixture,
#                   so the models are written by one process, before any reader starts.
#   parity.zoo      tests/parity/run_parity_zoo.py: check_parity.py on every zoo model at
#                   batch 1 and 8 (requires the fixture "zoo")
#
# zoo.info (tests/roundtrip.cmake) reads the zoo too and requires the same fixture.
#
# A missing tool (python module, node, onnxruntime-node, the binary) makes the test FAIL:
# nothing is skipped.

set(_otl_par_src ${CMAKE_CURRENT_LIST_DIR}/..)
get_filename_component(_otl_par_src ${_otl_par_src} ABSOLUTE)

# ONNX_TL, PYTHON, NODE and OTL_ORT_DIR come from tests/CMakeLists.txt.

if(NOT EXISTS ${OTL_ORT_DIR}/node_modules/onnxruntime-node)
  message(WARNING "onnxruntime-node is not installed in ${OTL_ORT_DIR} (run `npm ci` there): "
                  "the parity.* tests will fail")
endif()

set(_otl_par_check ${_otl_par_src}/tests/parity/check_parity.py)
set(_otl_par_common --node ${NODE} --ort-run ${OTL_ORT_DIR}/ort_run.js --threads 2)

# ---------------------------------------------------------------- testdata models
file(GLOB _otl_par_models CONFIGURE_DEPENDS ${_otl_par_src}/testdata/models/*.onnx)
list(SORT _otl_par_models)
if(NOT _otl_par_models)
  message(SEND_ERROR "no test models in ${_otl_par_src}/testdata/models (run testdata/make_models.py)")
endif()
foreach(_m ${_otl_par_models})
  get_filename_component(_name ${_m} NAME_WE)
  add_test(NAME parity.${_name}
    COMMAND ${PYTHON} ${_otl_par_check} ${ONNX_TL} ${_m} ${CMAKE_BINARY_DIR}/parity/${_name}
            --batches 1,8 ${_otl_par_common})
  set_tests_properties(parity.${_name} PROPERTIES LABELS "parity" TIMEOUT 300)
endforeach()
# onnx_tl.FusedConvDw (1x1 + depthwise fusion, opt-in with OTL_DW_FUSE=1): oneDNN's fused
# primitive, and the two-primitive path forced by OTL_DW_SPLIT=1 (tiny_mobilenet has 16 pairs)
add_test(NAME parity.tiny_mobilenet.dw_split
  COMMAND ${PYTHON} ${_otl_par_check} ${ONNX_TL} ${_otl_par_src}/testdata/models/tiny_mobilenet.onnx
          ${CMAKE_BINARY_DIR}/parity/tiny_mobilenet_dw_split --batches 1,8 ${_otl_par_common})
set_tests_properties(parity.tiny_mobilenet.dw_split PROPERTIES LABELS "parity" TIMEOUT 300
                     ENVIRONMENT "OTL_DW_FUSE=1;OTL_DW_SPLIT=1")
add_test(NAME parity.tiny_mobilenet.dw_fuse
  COMMAND ${PYTHON} ${_otl_par_check} ${ONNX_TL} ${_otl_par_src}/testdata/models/tiny_mobilenet.onnx
          ${CMAKE_BINARY_DIR}/parity/tiny_mobilenet_dw_fuse --batches 1,8 ${_otl_par_common})
set_tests_properties(parity.tiny_mobilenet.dw_fuse PROPERTIES LABELS "parity" TIMEOUT 300
                     ENVIRONMENT OTL_DW_FUSE=1)
# 1x1 + 3x3 depthwise pairs with and without padding / stride (a depthwise conv without `pads`
# has no padding and must not be fused): generated models against ONNX Runtime
foreach(_c nopad pad1 pad1_s2 pad0_s2)
  add_test(NAME parity.dw_${_c}
    COMMAND sh -c "\"$1\" \"$2\" \"$3\" && \"$1\" \"$4\" \"$5\" \"$3/dw_${_c}.onnx\" \"$3/out_${_c}\" --batches 1,3 --node \"$6\" --ort-run \"$7\" --threads 2"
            sh ${PYTHON} ${_otl_par_src}/tests/parity/make_dw_cases.py ${CMAKE_BINARY_DIR}/parity/dw
            ${_otl_par_check} ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}/ort_run.js)
  set_tests_properties(parity.dw_${_c} PROPERTIES LABELS "parity" TIMEOUT 300 RESOURCE_LOCK parity_dw
                       ENVIRONMENT OTL_DW_FUSE=1)
endforeach()

# ---------------------------------------------------------------- torchvision zoo
set(OTL_ZOO_DIR ${CMAKE_BINARY_DIR}/zoo)
set(OTL_ZOO_MODELS resnet18 mobilenet_v2 mobilenet_v3_small efficientnet_b0 squeezenet1_1
                   shufflenet_v2_x0_5 vit bert)

add_test(NAME zoo.generate
  COMMAND ${PYTHON} ${_otl_par_src}/tests/zoo/make_zoo.py ${OTL_ZOO_DIR})
set_tests_properties(zoo.generate PROPERTIES LABELS "zoo;parity" TIMEOUT 1200
                     FIXTURES_SETUP zoo)

add_test(NAME parity.zoo
  COMMAND ${PYTHON} ${_otl_par_src}/tests/parity/run_parity_zoo.py
          ${ONNX_TL} ${OTL_ZOO_DIR} ${CMAKE_BINARY_DIR}/parity-zoo
          --batches 1,8 ${_otl_par_common} ${OTL_ZOO_MODELS})
set_tests_properties(parity.zoo PROPERTIES LABELS "zoo;parity" TIMEOUT 900
                     FIXTURES_REQUIRED zoo)
