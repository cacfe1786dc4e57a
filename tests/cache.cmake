# cache.cmake - the frozen-prefix feature cache of `onnx-tl train` (src/feature_cache.c): results
# equal to --no-cache, resume, and the cases where no cache applies (tests/train/check_cache.py).
foreach(_otl_case same resume refused)
  add_test(NAME cache.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/train/check_cache.py ${ONNX_TL} ${CMAKE_CURRENT_LIST_DIR}/train
            ${_otl_case})
  set_tests_properties(cache.${_otl_case} PROPERTIES LABELS "train;cache" TIMEOUT 300)
endforeach()

# otl_model_clone (graph/ir.c, a direct IR deep copy) equals the original byte for byte after
# serialization (subgraphs, every attribute kind, metadata, functions, external data), and the
# subgraph-aware read check of the cache planner and of train's BatchNormalization-output pruning
# (models from tests/cache/make_clone_models.py).
add_executable(test_clone ${CMAKE_CURRENT_LIST_DIR}/cache/test_clone.c)
target_link_libraries(test_clone PRIVATE onnxtl)
target_include_directories(test_clone PRIVATE ${CMAKE_SOURCE_DIR})
add_test(NAME cache.clone
  COMMAND test_clone ${CMAKE_CURRENT_BINARY_DIR}/cache_clone_out ${CMAKE_CURRENT_LIST_DIR}/cache/clone_sub.onnx
          ${CMAKE_CURRENT_LIST_DIR}/cache/clone_ext.onnx ${CMAKE_SOURCE_DIR}/testdata/models/tiny_resnet.onnx
          ${CMAKE_SOURCE_DIR}/testdata/models/fashion_cnn.onnx ${CMAKE_SOURCE_DIR}/testdata/models/tiny_encoder.onnx)
add_test(NAME cache.subgraph_reads COMMAND test_clone -reads ${CMAKE_CURRENT_LIST_DIR}/cache/clone_sub.onnx)
set_tests_properties(cache.clone cache.subgraph_reads PROPERTIES LABELS "cache;unit;asan" TIMEOUT 60)

# train --cache-dtype bf16 against --no-cache (stated tolerance) and --cache-dir (a file cache keyed by
# everything the rows depend on; damaged files rebuilt), tests/cache/check_opts.py.
foreach(_otl_case bf16 dir)
  add_test(NAME cache.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/cache/check_opts.py ${ONNX_TL} ${CMAKE_SOURCE_DIR} ${_otl_case})
  set_tests_properties(cache.${_otl_case} PROPERTIES LABELS "train;cache" TIMEOUT 300)
endforeach()
