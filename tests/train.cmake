# train.cmake - the training loop (tests/train): BatchNormalization running statistics against
# PyTorch, learning-rate schedules against torch.optim.lr_scheduler, and end-to-end
# `onnx-tl train` runs on small synthetic data (every flag family, resume bit-identity after
# SIGKILL and SIGINT, NaN stop, data errors, determinism, ONNX Runtime round trip).
add_executable(test_bn_stats ${CMAKE_CURRENT_LIST_DIR}/train/test_bn_stats.c)
target_link_libraries(test_bn_stats PRIVATE onnxtl)
add_test(NAME train.bn_stats COMMAND test_bn_stats ${CMAKE_CURRENT_LIST_DIR}/train/bn)
set_tests_properties(train.bn_stats PROPERTIES LABELS "train;asan" TIMEOUT 120)

add_executable(test_schedule ${CMAKE_CURRENT_LIST_DIR}/train/test_schedule.c)
target_link_libraries(test_schedule PRIVATE onnxtl)
add_test(NAME train.schedule COMMAND test_schedule ${CMAKE_CURRENT_LIST_DIR}/train/sched)
set_tests_properties(train.schedule PROPERTIES LABELS "train" TIMEOUT 60)

# End-to-end CLI cases (tests/train/check_train.py: one CTest entry per case).
foreach(_otl_case basic determinism sigkill sigint sigint_epoch_end sigint_dropout sigkill_unfreeze flags torch_loop nan out_once resume_out classes early_stop unfreeze lr_mult bn schedule images usage)
  add_test(NAME train.cli.${_otl_case}
    COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/train/check_train.py ${ONNX_TL} ${NODE} ${OTL_ORT_DIR}
            ${CMAKE_CURRENT_LIST_DIR}/train ${_otl_case})
  set_tests_properties(train.cli.${_otl_case} PROPERTIES LABELS "train" TIMEOUT 300)
endforeach()

# train --preprocess FILE.json: stored in OUT and used for the images (weights differ from a run
# without it; bit-identical with the model's own preprocessing), bad JSON / --resume / -o on it refused
add_test(NAME train.preprocess
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/train/check_preprocess.py ${ONNX_TL} $<TARGET_FILE:fashion_folder>
          ${CMAKE_SOURCE_DIR}/testdata/models/fashion_cnn.onnx ${CMAKE_CURRENT_BINARY_DIR}/train_preprocess
          --data-dir /usr/share/datasets/fashion-mnist)
set_tests_properties(train.preprocess PROPERTIES LABELS "train" TIMEOUT 300)
