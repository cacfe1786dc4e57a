# data.cmake - the data layer (src/dataset.c, src/image.c, src/augment.c): .npz data sets,
# ImageFolder directories, splits, batches, prefetch, augmentation, and images against PIL /
# torchvision goldens. One C program, tests/data/test_data.c:
#   data.fixtures  make_fixtures.py writes the test-time inputs (.npz files good and bad, folder
#                  trees built from the committed images) into the build directory
#   data.npz       .npz contents, every validation error, hashes, stratified/seeded/duplicate-aware
#                  splits, batches, prefetch, augmentation refused on token ids
#   data.images    decode + convert + resize/crop + normalize of tests/data/img against the
#                  goldens of make_images.py (PIL Image.resize / torchvision Resize+CenterCrop,
#                  ToTensor+Normalize); regenerate with: /usr/bin/python3 tests/data/make_images.py tests/data
#   data.folder    ImageFolder listing rules, errors (no class, empty class, truncated PNG/JPEG,
#                  garbage), skip_bad, cache on/off/partial, augmented batches via prefetch
#   data.augment   spec parsing and errors, transform properties (identity, hflip twice, 180
#                  degrees, determinism, ranges, jitter statistics)
#   data.hash      SHA-256 (src/hash.c, also train's base-model hash) against FIPS 180-4 vectors
#   data.robust    the committed images cut at every 5th length and with random byte flips: never
#                  a crash, errors name the buffer (run under ASan by make asan-test)
set(_otl_data_dir ${CMAKE_CURRENT_LIST_DIR}/data)
set(_otl_data_fx ${CMAKE_CURRENT_BINARY_DIR}/data_fixtures)
add_executable(test_data ${_otl_data_dir}/test_data.c)
target_link_libraries(test_data PRIVATE onnxtl)
target_include_directories(test_data PRIVATE ${CMAKE_SOURCE_DIR})

add_test(NAME data.fixtures COMMAND ${PYTHON} ${_otl_data_dir}/make_fixtures.py ${_otl_data_fx} ${_otl_data_dir}/img)
set_tests_properties(data.fixtures PROPERTIES FIXTURES_SETUP data_fx LABELS "data" TIMEOUT 120)
add_test(NAME data.npz COMMAND test_data npz ${_otl_data_fx} ${CMAKE_SOURCE_DIR}/testdata/models/tiny_resnet.onnx)
add_test(NAME data.folder COMMAND test_data folder ${_otl_data_fx})
set_tests_properties(data.npz data.folder PROPERTIES FIXTURES_REQUIRED data_fx LABELS "data;asan" TIMEOUT 120)
add_test(NAME data.images COMMAND test_data images ${_otl_data_dir})
add_test(NAME data.augment COMMAND test_data augment)
add_test(NAME data.robust COMMAND test_data robust ${_otl_data_dir})
add_test(NAME data.hash COMMAND test_data hash)
set_tests_properties(data.images data.augment data.robust data.hash PROPERTIES LABELS "data;asan" TIMEOUT 120)
