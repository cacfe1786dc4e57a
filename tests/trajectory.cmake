# trajectory.cmake - whole training runs against PyTorch: 30 steps of SGD and of AdamW on a
# small CNN reproduce PyTorch's loss trajectory (tests/trajectory).
add_executable(test_trajectory ${CMAKE_CURRENT_LIST_DIR}/trajectory/test_trajectory.c)
target_link_libraries(test_trajectory PRIVATE onnxtl)
# Registered once the gradient rules of its ops (Conv, BatchNormalization, Relu, MaxPool,
# GlobalAveragePool, Flatten, Gemm) have all landed; run it by hand until then:
#   build/tests/test_trajectory tests/trajectory/data
