# eval.cmake - `onnx-tl eval` / `onnx-tl predict` and src/metrics.c (tests/eval): include()d from
# tests/CMakeLists.txt.
#
# Registers
#   eval.metrics   tests/eval/test_metrics.c on tests/eval/data/metrics_goldens.txt (numpy from
#                  scikit-learn's definitions, zero_division=0; made by make_metrics_goldens.py),
#                  top-k ranking, stored labels parsing

set(_otl_eval_src ${CMAKE_CURRENT_LIST_DIR}/eval)

add_executable(test_metrics ${_otl_eval_src}/test_metrics.c)
target_link_libraries(test_metrics PRIVATE onnxtl)
add_test(NAME eval.metrics COMMAND test_metrics ${_otl_eval_src}/data/metrics_goldens.txt)
set_tests_properties(eval.metrics PROPERTIES LABELS "eval;asan" TIMEOUT 60)

# `onnx-tl eval` / `onnx-tl predict` end to end (tests/eval/check_eval.py): tiny data sets and model
# variants (stored labels, stored preprocessing, fixed batch axis) written by make_data.py into the
# build tree, references through ONNX Runtime (tests/ort/ort_run.js) on inputs preprocessed with
# numpy/PIL, metrics from scikit-learn's definitions.
#   eval.data                  fixture: make_data.py
#   eval.npz_softmax           Softmax model on .npz (batches 5/64, fixed batch axis padded)
#   eval.npz_logits            logits model, 10 classes (top-5), class k = output k
#   eval.folder_labels         ImageFolder classes matched to stored labels; gray and resized PNGs
#   eval.folder_nolabels       ImageFolder without stored labels
#   eval.folder_preprocess     the model's stored preprocessing is applied
#   eval.predict_images        predict on PNGs, a JPEG and .npy (one sample, a batch) vs ORT within 1e-5;
#                              --top, --threshold, default top-5, text output
#   eval.predict_softmax       predict on a Softmax model: the output itself is the confidence
#   eval.workflow              swap-head (labels, preprocessing) -> train -> eval/predict: the
#                              model train wrote gives ORT's predictions in eval and predict
#   eval.errors                class not among the labels, too many classes, unreadable image,
#                              empty data, wrong shapes, labels that do not fit, usage errors
set(_otl_eval_data ${CMAKE_CURRENT_BINARY_DIR}/eval_data)
add_test(NAME eval.data
  COMMAND ${PYTHON} ${_otl_eval_src}/make_data.py ${CMAKE_SOURCE_DIR}/testdata/models ${_otl_eval_data})
set_tests_properties(eval.data PROPERTIES FIXTURES_SETUP eval_data LABELS eval TIMEOUT 120)
foreach(_c npz_softmax npz_logits folder_labels folder_nolabels folder_preprocess predict_images predict_softmax
           workflow errors)
  if(_c MATCHES "^predict_" OR _c STREQUAL "errors" OR _c STREQUAL "workflow")
    set(_case ${_c})
  else()
    set(_case eval_${_c})
  endif()
  add_test(NAME eval.${_c}
    COMMAND ${PYTHON} ${_otl_eval_src}/check_eval.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR} ${_otl_eval_data}
            ${CMAKE_CURRENT_BINARY_DIR}/eval_work/${_c} ${_case})
  set_tests_properties(eval.${_c} PROPERTIES FIXTURES_REQUIRED eval_data LABELS eval TIMEOUT 300)
endforeach()
# error paths and both commands' main paths also run in the sanitizer build (make asan-test)
set_tests_properties(eval.errors eval.predict_images eval.npz_softmax eval.folder_labels PROPERTIES LABELS "eval;asan")
