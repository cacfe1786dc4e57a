# alloc.cmake - no per-step allocation (issue 7), include()d from tests/CMakeLists.txt.
#
# tests/alloc/test_alloc.c counts the library's own malloc/calloc/realloc/aligned_alloc/
# posix_memalign calls (linked with -Wl,--wrap=...). Registers
#   alloc.step.<model>        5 trainer steps after 2 warm-up steps allocate nothing, nor do
#                             batches alternating between two sizes (full and tail batch)
#   alloc.step.resnet_frozen  the same with the backbone frozen (head-only training)
#   alloc.fit                 otl_fit: 2 epochs over 84 samples allocate exactly as often as over 44
#                             (the extra steps allocate nothing; the tail batch is the same)
#   alloc.fit_images          the same over an image folder with augmentation (batches of 4 and 8)
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
         COMMAND test_alloc fit ${_otl_alloc_models}/fashion_cnn.onnx ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit44.npz 8
                 ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit84.npz 8 ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit_out.onnx)
# an image folder of 42 PNGs (10 classes, 40x40, resized to the model's 32x32) in batches of 4 and 8
# (10 and 5 full batches, a tail of 2 in both), with geometric augmentation
add_test(NAME alloc.fit_images.data
         COMMAND ${PYTHON} -c "import numpy as np, os; from PIL import Image; r = np.random.RandomState(0); d = '${CMAKE_CURRENT_BINARY_DIR}/alloc_images'; [os.makedirs(d + '/' + c, exist_ok=True) for c in 'abcdefghij']; [Image.fromarray(r.randint(0, 256, (40, 40, 3)).astype(np.uint8)).save('%s/%s/%02d.png' % (d, 'abcdefghij'[i % 10], i)) for i in range(42)]")
set_tests_properties(alloc.fit_images.data PROPERTIES FIXTURES_SETUP alloc_images LABELS "alloc")
add_test(NAME alloc.fit_images
         COMMAND test_alloc fit ${_otl_alloc_models}/tiny_resnet.onnx ${CMAKE_CURRENT_BINARY_DIR}/alloc_images 4
                 ${CMAKE_CURRENT_BINARY_DIR}/alloc_images 8 ${CMAKE_CURRENT_BINARY_DIR}/alloc_fit_images_out.onnx
                 hflip,rotate=15,zoom=0.1,crop,jitter=0.2)
set_tests_properties(alloc.fit PROPERTIES FIXTURES_REQUIRED alloc_fit)
set_tests_properties(alloc.fit_images PROPERTIES FIXTURES_REQUIRED alloc_images)
set_tests_properties(alloc.step.tiny_resnet alloc.step.tiny_mobilenet alloc.step.fashion_cnn
                     alloc.step.resnet_frozen alloc.fit alloc.fit_images PROPERTIES LABELS "alloc;asan" TIMEOUT 300)
