# fwd2.cmake - forward-speed layout tests (issue 3: mobilenet_v2 against ONNX Runtime),
# include()d from tests/CMakeLists.txt.
#
# Registers (needs the torchvision zoo: CTest fixture "zoo", tests/parity.cmake)
#   fwd2.layout   tests/fwd2/check_layout.py: the nChw16c convolution chains (graph/fuse.c marks
#                 FusedConv out_blocked, ops/conv.c writes nChw16c; OTL_CONV_BLK=0 turns it off),
#                 from ONEDNN_VERBOSE's log at batch 2: MobileNetV2 runs every convolution on
#                 nChw16c with no reorder inside the network (and channels-last with
#                 OTL_CONV_BLK=0, so the switch is live); no model of the zoo or testdata gets a
#                 oneDNN reference kernel in either mode; outputs of both modes agree within 1e-5
#                 (parity.zoo checks the default mode against ONNX Runtime)

# PYTHON and ONNX_TL come from tests/CMakeLists.txt.
set(_otl_fwd2_zoo ${CMAKE_BINARY_DIR}/zoo)
set(_otl_fwd2_td ${CMAKE_CURRENT_LIST_DIR}/../testdata/models)

add_test(NAME fwd2.layout
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/fwd2/check_layout.py ${ONNX_TL} ${CMAKE_BINARY_DIR}/fwd2-layout
          --batch 2 --chain ${_otl_fwd2_zoo}/mobilenet_v2.onnx
          --mixed ${_otl_fwd2_zoo}/resnet18.onnx ${_otl_fwd2_zoo}/mobilenet_v3_small.onnx
                  ${_otl_fwd2_zoo}/efficientnet_b0.onnx ${_otl_fwd2_zoo}/squeezenet1_1.onnx
                  ${_otl_fwd2_zoo}/shufflenet_v2_x0_5.onnx ${_otl_fwd2_td}/tiny_mobilenet.onnx
                  ${_otl_fwd2_td}/tiny_resnet.onnx ${_otl_fwd2_td}/fashion_cnn.onnx)
set_tests_properties(fwd2.layout PROPERTIES LABELS "fwd2;zoo" TIMEOUT 600 FIXTURES_REQUIRED zoo)
