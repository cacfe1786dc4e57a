# alloc.cmake - no per-step allocation (issue 7), include()d from tests/CMakeLists.txt.
#
# tests/alloc/test_alloc.c counts the library's own malloc/calloc/realloc/aligned_alloc/
# posix_memalign calls (linked with -Wl,--wrap=...). Registers
#   alloc.step.<model>        5 trainer steps after 2 warm-up steps allocate nothing, nor do
#                             batches alternating between two sizes (full and tail batch)
#   alloc.step.resnet_frozen  the same with the backbone frozen (head-only training)
#   alloc.fit                 otl_fit: 2 epochs over 84 samples allocate exactly as often as over 44
#                             (the extra steps allocate nothing; the tail batch is the same)
set(_otl_alloc_dir ${CMAKE_CURRENT_LIST_DIR}/alloc)
add_executable(test_alloc ${_otl_alloc_dir}/test_alloc.c)
target_link_libraries(test_alloc PRIVATE onnxtl)
target_link_options(test_alloc PRIVATE
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=posix_memalign)

set(_otl_alloc_models ${CMAKE_SOURCE_DIR}/testdata/models)
add_test(NAME alloc.step.tiny_resnet
         COMMAND test_alloc step ${_otl_alloc_models}/tiny_resnet.onnx input 8 3 32 32)
add_test(NAME alloc.step.tiny_mobilenet
         COMMAND test_alloc step ${_otl_alloc_models}/tiny_mobilenet.onnx input 8 3 32 32)
add_test(NAME alloc.step.fashion_cnn
         COMMAND test_alloc step ${_otl_alloc_models}/fashion_cnn.onnx input 16 1 28 28)
add_test(NAME alloc.step.resnet_frozen
         COMMAND test_alloc step ${_otl_alloc_models}/tiny_resnet.onnx input 8 3 32 32 frozen)
# 44 and 84 samples in batches of 8: 5 and 10 full batches, the same tail of 4
add_test(NAME alloc.fit.data
         COMMAND ${PYTHON} -c "import numpy as np; r = np.random.RandomState(0); [np.savez('${CMAKE_CURRENT_BINARY_DIR}/alloc_fit%d.npz' % n, x=r.randn(n, 1, 28, 28).astype(np.float32), y=(np.arange(n) % 5).astype(np.int64)) for n in (44, 84)]")
set_tests_properties(alloc.fit.data PROPERTIES FIXTURES_SETUP alloc_fit LABELS "alloc")
add_test(NAME alloc.fit
         COMMAND test_alloc fit ${_otl_alloc_models}/fashion_cnn.onnx ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit44.npz
                 ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit84.npz 8 ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit_out.onnx)
set_tests_properties(alloc.fit PROPERTIES FIXTURES_REQUIRED alloc_fit)
set_tests_properties(alloc.step.tiny_resnet alloc.step.tiny_mobilenet alloc.step.fashion_cnn
                     alloc.step.resnet_frozen alloc.fit PROPERTIES LABELS "alloc;asan" TIMEOUT 300)
