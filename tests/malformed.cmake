# malformed.cmake - hostile-input tests, include()d from tests/CMakeLists.txt.
#
# Uses ONNX_TL (the onnx-tl executable), PYTHON (/usr/bin/python3 with onnx and numpy), the option
# OTL_FUZZ and the library target onnxtl. Registers
#   malformed.corpus  tests/malformed/make_corpus.py builds ~100 hostile models into the build dir,
#                     run_malformed.py checks every one gives exit 1 and one clear line on stderr
#                     (and the valid controls exit 0), with a timeout and a memory limit.
#   fuzz.load         (OTL_FUZZ=ON, clang) libFuzzer over the loader for 15 s from tests/fuzz/seed;
#                     fails on any crash, sanitizer report, leak, timeout or out-of-memory.
set(_otl_mf_src ${CMAKE_CURRENT_LIST_DIR})

add_test(NAME malformed.corpus
         COMMAND ${PYTHON} ${_otl_mf_src}/malformed/run_malformed.py ${ONNX_TL}
                 ${CMAKE_CURRENT_BINARY_DIR}/malformed_corpus --generate)
set_tests_properties(malformed.corpus PROPERTIES TIMEOUT 900 LABELS "malformed")

if(OTL_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "OTL_FUZZ=ON needs clang (libFuzzer): configure with CC=clang")
  endif()
  # Coverage feedback for the library under test; the target itself links libFuzzer's main.
  target_compile_options(onnxtl PRIVATE -fsanitize=fuzzer-no-link)
  add_executable(fuzz_load ${_otl_mf_src}/fuzz/fuzz_load.c)
  target_compile_options(fuzz_load PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_load PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_load PRIVATE onnxtl)
  add_test(NAME fuzz.load
           COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:fuzz_load>
                   -DSEEDS=${_otl_mf_src}/fuzz/seed -DDICT=${_otl_mf_src}/fuzz/onnx.dict
                   -DWORK=${CMAKE_CURRENT_BINARY_DIR}/fuzz_load.work -DSECONDS=15
                   -P ${_otl_mf_src}/fuzz/run_fuzz.cmake)
  set_tests_properties(fuzz.load PROPERTIES TIMEOUT 300 LABELS "fuzz")
endif()
