# cache.cmake - the frozen-prefix feature cache of `onnx-tl train` (src/feature_cache.c): results
# equal to --no-cache, resume, and the cases where no cache applies (tests/train/check_cache.py).
foreach(_otl_case same resume refused)
  add_test(NAME cache.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/train/check_cache.py ${ONNX_TL} ${CMAKE_CURRENT_LIST_DIR}/train
            ${_otl_case})
  set_tests_properties(cache.${_otl_case} PROPERTIES LABELS "train;cache" TIMEOUT 300)
endforeach()
