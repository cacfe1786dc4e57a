# prune.cmake - `onnx-tl export --prune SPARSITY / --prune-channels FRACTION` (graph/prune.c) and the
# pruning masks `train` keeps (tests/prune/check_prune.py, one CTest entry per case): exact global
# magnitude sparsity against numpy, masks through train/--resume/export, channel removal equal to
# zeroing those channels (ONNX Runtime), the 50%-sparsity accuracy on the demo task, error cases.
# Every pruned model passes onnx.checker (full_check) and matches `onnx-tl run` in ONNX Runtime.
foreach(_otl_case sparsity train channels accuracy errors)
  add_test(NAME prune.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/prune/check_prune.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}
            ${CMAKE_BINARY_DIR}/prune-work ${_otl_case} --fashion-folder $<TARGET_FILE:fashion_folder>
            --data-dir /usr/share/datasets/fashion-mnist)
  set_tests_properties(prune.${_otl_case} PROPERTIES LABELS "prune" TIMEOUT 600)
endforeach()
