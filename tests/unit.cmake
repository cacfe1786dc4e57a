# tests/unit.cmake - C unit tests of library internals, include()d from tests/CMakeLists.txt.
#
# Registers
#   unit.npy        tests/unit/test_npy.c on the golden files of tests/unit/data
#                   (regenerate with tests/unit/make_npy_goldens.py)
#   unit.npy.numpy  numpy reads back everything otl_npy_save wrote (check_npy_numpy.py)
# Both carry the label "asan" so that the sanitizer build (make asan-test) runs them.

set(_otl_unit_dir ${CMAKE_CURRENT_LIST_DIR}/unit)

add_executable(test_npy ${_otl_unit_dir}/test_npy.c)
target_link_libraries(test_npy PRIVATE onnxtl)

add_test(NAME unit.npy
  COMMAND test_npy ${_otl_unit_dir}/data ${CMAKE_CURRENT_BINARY_DIR}/unit_npy_out)
add_test(NAME unit.npy.numpy
  COMMAND ${PYTHON} ${_otl_unit_dir}/check_npy_numpy.py $<TARGET_FILE:test_npy>
          ${_otl_unit_dir}/data ${CMAKE_CURRENT_BINARY_DIR}/unit_npy_numpy_out)
set_tests_properties(unit.npy unit.npy.numpy PROPERTIES LABELS "unit;asan" TIMEOUT 120)

# Optimizers against torch.optim trajectories (goldens made by make_optim_goldens.py).
add_executable(test_optim ${_otl_unit_dir}/test_optim.c)
target_link_libraries(test_optim PRIVATE onnxtl)
add_test(NAME unit.optim COMMAND test_optim ${_otl_unit_dir}/data/optim)
set_tests_properties(unit.optim PROPERTIES LABELS "unit;asan" TIMEOUT 60)

# Frozen means free (issue 4): a head-only training graph costs a forward pass (same activation
# arena, a few kernels more), on the tiny ResNet with a seeded input batch.
add_executable(test_frozen ${_otl_unit_dir}/test_frozen.c)
target_link_libraries(test_frozen PRIVATE onnxtl)
add_test(NAME unit.frozen_is_free
  COMMAND ${PYTHON} -c "import numpy as np; np.save('${CMAKE_CURRENT_BINARY_DIR}/frozen_x.npy', np.random.RandomState(0).randn(8,3,32,32).astype(np.float32))")
add_test(NAME unit.frozen_is_free.run
  COMMAND test_frozen ${CMAKE_SOURCE_DIR}/testdata/models/tiny_resnet.onnx
          ${CMAKE_CURRENT_BINARY_DIR}/frozen_x.npy input)
set_tests_properties(unit.frozen_is_free PROPERTIES FIXTURES_SETUP frozen_x LABELS "unit")
set_tests_properties(unit.frozen_is_free.run PROPERTIES FIXTURES_REQUIRED frozen_x LABELS "unit;asan" TIMEOUT 120)
