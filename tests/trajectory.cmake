# trajectory.cmake - whole training runs against PyTorch: 30 steps of SGD and of AdamW on a
# small CNN reproduce PyTorch's loss trajectory (tests/trajectory).
add_executable(test_trajectory ${CMAKE_CURRENT_LIST_DIR}/trajectory/test_trajectory.c)
target_link_libraries(test_trajectory PRIVATE onnxtl)
add_test(NAME trajectory.sgd_adamw COMMAND test_trajectory ${CMAKE_CURRENT_LIST_DIR}/trajectory/data)
set_tests_properties(trajectory.sgd_adamw PROPERTIES LABELS "train;asan" TIMEOUT 300)
