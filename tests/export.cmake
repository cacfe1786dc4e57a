# export.cmake - `onnx-tl export` clean inference export (tests/export/check_export.py, one CTest
# entry per case): Dropout removed, BatchNormalization folded (or kept in inference form with
# --no-fold-bn), training metadata removed, the result passes onnx.checker, runs in ONNX Runtime
# and matches `onnx-tl run` of the input within 1e-5 relative; --keep; error cases.
foreach(_otl_case resnet mobilenet mobilenet_bn fashion trained gemm_bn external keep errors
                  quant_fashion quant_mobilenet quant_encoder quant_trained)
  add_test(NAME export.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/export/check_export.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}
            ${CMAKE_CURRENT_LIST_DIR}/export ${CMAKE_BINARY_DIR}/export-work ${_otl_case})
  set_tests_properties(export.${_otl_case} PROPERTIES LABELS "export" TIMEOUT 300)
endforeach()
