# bench.cmake - bench/ still runs (issue 7's benchmarks are run on demand, so nothing else would
# notice a change that breaks them), include()d from tests/CMakeLists.txt.
#
# Registers
#   bench.smoke   tests/bench/smoke.py: bench/forward, bench/train and bench/train_epochs at toy
#                 sizes (batch 2, one step, one round; timings not checked) with their models
#                 exported into the build directory (OTL_BENCH_MODELS), JSON results complete and
#                 finite, onnx-tl within 1e-4 of ONNX Runtime, and train_step's peak RSS its own
#                 (VmHWM: not inherited from a 600 MB parent). About a minute; needs PyTorch.
add_test(NAME bench.smoke
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/bench/smoke.py ${CMAKE_SOURCE_DIR} ${ONNX_TL} $<TARGET_FILE:train_step>
          ${NODE} ${CMAKE_BINARY_DIR}/bench-models)
set_tests_properties(bench.smoke PROPERTIES LABELS "bench" TIMEOUT 900)
