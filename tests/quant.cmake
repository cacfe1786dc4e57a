# quant.cmake - static INT8 quantization (`export --quantize int8`, graph/quantize.c; issue 6),
# include()d from tests/CMakeLists.txt. tests/quant/check_quant.py, one entry per case (see its
# docstring): kernels (ONNX Runtime's optimized graph really runs integer kernels: QLinearConv,
# QGemm, QLinearAdd, ... and no float fallback), demo (the demo model and data: int8 accuracy
# within 1.0 point of float for every --calib-method, file <= 0.3x; needs Debian's
# dataset-fashion-mnist), calib (minmax/percentile/entropy against a numpy reference), subset
# (seeded --calib-samples subset), exclude, report (--report JSON schema, -v, usage errors).
# The older export.quant_* cases (tests/export.cmake) keep covering structure and closeness.
set(OTL_QUANT_FASHION_DIR /usr/share/datasets/fashion-mnist)
foreach(_otl_case kernels placement demo calib subset exclude report)
  add_test(NAME quant.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/quant/check_quant.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}
            $<TARGET_FILE:fashion_folder> ${CMAKE_BINARY_DIR}/quant-work ${_otl_case}
            --fashion-dir ${OTL_QUANT_FASHION_DIR})
  set_tests_properties(quant.${_otl_case} PROPERTIES LABELS "quant" TIMEOUT 600)
endforeach()
