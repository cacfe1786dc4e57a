# scratch.cmake - one oneDNN scratchpad per session (issue 7: scratchpads shared), include()d from
# tests/CMakeLists.txt (which also runs every test with OTL_SCRATCH_CHECK=1).
#
# tests/scratch/test_scratch.c. Registers
#   scratch.unit             the engine's scratchpad is the largest any of its primitives needs (each
#                            queried by the test), counts them, grows at creation only, never by a run;
#                            library mode computes the same numbers and OTL_SCRATCH_CHECK=1 refuses it
#   scratch.model.<model>    whole models, 3 runs in inference and 3 of the training graph (forward +
#                            backward): no primitive in library mode, the scratchpad fixed after the
#                            first run, outputs and gradients bit for bit those of library mode
#                            (OTL_SCRATCH_LIBRARY=1), which OTL_SCRATCH_CHECK=1 then refuses:
#                            tiny_resnet (convolutions, max and global average pooling backward),
#                            tiny_mobilenet (depthwise, BatchNormalization training, Clip), fashion_cnn
#                            (BatchNormalization + MaxPool), tiny_encoder (a transformer: MatMul,
#                            Softmax, LayerNormalization, Gemm, Erf; mean squared error)
#   scratch.model.qdq_cnn    fashion_cnn exported with --quantize int8 (QDQ convolutions run as oneDNN
#                            int8 convolutions), inference only
set(_otl_scratch_dir ${CMAKE_CURRENT_LIST_DIR}/scratch)
set(_otl_scratch_out ${CMAKE_CURRENT_BINARY_DIR}/scratch)
set(_otl_scratch_models ${CMAKE_SOURCE_DIR}/testdata/models)
add_executable(test_scratch ${_otl_scratch_dir}/test_scratch.c)
target_include_directories(test_scratch PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(test_scratch PRIVATE onnxtl)

add_test(NAME scratch.unit COMMAND test_scratch unit)
set_tests_properties(scratch.unit PROPERTIES LABELS "scratch;unit;asan" TIMEOUT 120)

# inputs (seeded), calibration data and the int8 export
add_test(NAME scratch.data
  COMMAND ${PYTHON} -c "import numpy as np, os; d = '${_otl_scratch_out}'; os.makedirs(d, exist_ok=True); r = np.random.RandomState(0); np.save(d + '/img32.npy', r.randn(8, 3, 32, 32).astype(np.float32)); np.save(d + '/img28.npy', r.randn(16, 1, 28, 28).astype(np.float32)); np.save(d + '/ids.npy', r.randint(0, 100, (4, 16)).astype(np.int64)); np.savez(d + '/calib.npz', x=r.randn(32, 1, 28, 28).astype(np.float32), y=(np.arange(32) % 10).astype(np.int64))")
add_test(NAME scratch.export_int8
  COMMAND ${ONNX_TL} export ${_otl_scratch_models}/fashion_cnn.onnx -o ${_otl_scratch_out}/fashion_int8.onnx
          --quantize int8 --calib ${_otl_scratch_out}/calib.npz)
set_tests_properties(scratch.data PROPERTIES FIXTURES_SETUP scratch_data LABELS "scratch")
set_tests_properties(scratch.export_int8 PROPERTIES FIXTURES_REQUIRED scratch_data FIXTURES_SETUP scratch_int8
                     LABELS "scratch")

set(_otl_scratch_cases
  "tiny_resnet|${_otl_scratch_models}/tiny_resnet.onnx|img32.npy|input|"
  "tiny_mobilenet|${_otl_scratch_models}/tiny_mobilenet.onnx|img32.npy|input|"
  "fashion_cnn|${_otl_scratch_models}/fashion_cnn.onnx|img28.npy|input|"
  "tiny_encoder|${_otl_scratch_models}/tiny_encoder.onnx|ids.npy|input_ids|"
  "qdq_cnn|${_otl_scratch_out}/fashion_int8.onnx|img28.npy|input|inference")
foreach(_c ${_otl_scratch_cases})
  string(REPLACE "|" ";" _f "${_c}")
  list(GET _f 0 _name)
  list(GET _f 1 _model)
  list(GET _f 2 _npy)
  list(GET _f 3 _input)
  list(GET _f 4 _mode)
  add_test(NAME scratch.model.${_name}
    COMMAND test_scratch model ${_model} ${_otl_scratch_out}/${_npy} ${_input} ${_mode})
  set_tests_properties(scratch.model.${_name} PROPERTIES FIXTURES_REQUIRED scratch_data LABELS "scratch" TIMEOUT 300)
endforeach()
set_tests_properties(scratch.model.qdq_cnn PROPERTIES FIXTURES_REQUIRED "scratch_data;scratch_int8")
