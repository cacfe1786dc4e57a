# valgrind.cmake - the CLI under valgrind memcheck, include()d from tests/CMakeLists.txt.
#
# Registers valgrind.<model>.<command> (info, info --json, export, run, grad on the testdata
# models, batch 1, one thread; swap-head, freeze, eval, predict, train with and without a frozen
# backbone on a 16-sample .npz) and valgrind.err.<what> (error paths: truncated model, wrong input
# shape, bad target, output path is a directory), label "valgrind". Each fails on any memcheck
# error or definite leak (tests/valgrind/run_valgrind.py; suppressions: tests/valgrind/onnx-tl.supp).
# Needs the Debian package valgrind (Makefile TEST_PKGS); a missing valgrind fails the tests.
# About 2-10 s of CPU each (about 100 s in all), 14 tests. Not registered in sanitizer builds
# (ASan and valgrind do not mix).
if(NOT OTL_SANITIZE)
  set(_otl_vg_cases
      tiny_mlp:info tiny_mlp:info_json tiny_mlp:export tiny_mlp:run tiny_mlp:grad
      tiny_resnet:run tiny_resnet:grad tiny_encoder:grad
      tiny_mobilenet:info_json tiny_mobilenet:run
      tiny_mlp:swap_head tiny_mlp:freeze tiny_mlp:eval tiny_mlp:predict tiny_resnet:train tiny_resnet:train_head
      err:truncated err:run_shape err:grad_target err:export_dir)
  foreach(_c ${_otl_vg_cases})
    string(REPLACE ":" "." _n ${_c})
    add_test(NAME valgrind.${_n}
             COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/valgrind/run_valgrind.py ${ONNX_TL}
                     ${CMAKE_SOURCE_DIR}/testdata/models ${CMAKE_CURRENT_BINARY_DIR}/valgrind_work ${_c})
    set_tests_properties(valgrind.${_n} PROPERTIES TIMEOUT 900 LABELS "valgrind")
  endforeach()
endif()
