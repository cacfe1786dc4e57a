# rely.cmake - reliability tests, include()d from tests/CMakeLists.txt.
#
# Uses ONNX_TL, PYTHON (from tests/CMakeLists.txt) and the option OTL_FUZZ. Registers
#   rely.output_faults  tests/rely/check_output_faults.py: disk full (RLIMIT_FSIZE), unwritable
#                       output directory, output path that is a directory, for export, run --outdir,
#                       grad -o (and swap-head/freeze -o once implemented): exit 1, one line naming the
#                       file, the previous output intact, no temporary file left behind.
#   rely.determinism    tests/rely/check_determinism.py: run and grad twice in separate processes
#                       with the same seed and threads give bit-identical outputs and gradients.
#   fuzz.info           (OTL_FUZZ=ON, clang) libFuzzer over `info` (cli/cmd_info.c compiled in:
#                       summary, head detection, histogram, JSON checked by a strict parser), 15 s
#   fuzz.run            (OTL_FUZZ=ON) libFuzzer over load + session + one forward pass with tiny
#                       inputs built from the declared input shapes, 15 s
# Longer fuzzing: `make fuzz` (OTL_FUZZ_SECONDS, default 300 per target).
set(_otl_rely_src ${CMAKE_CURRENT_LIST_DIR})

add_test(NAME rely.output_faults
         COMMAND ${PYTHON} ${_otl_rely_src}/rely/check_output_faults.py ${ONNX_TL}
                 ${CMAKE_SOURCE_DIR}/testdata/models ${CMAKE_CURRENT_BINARY_DIR}/rely_faults)
set_tests_properties(rely.output_faults PROPERTIES TIMEOUT 300 LABELS "rely")
add_test(NAME rely.determinism
         COMMAND ${PYTHON} ${_otl_rely_src}/rely/check_determinism.py ${ONNX_TL}
                 ${CMAKE_SOURCE_DIR}/testdata/models ${CMAKE_CURRENT_BINARY_DIR}/rely_determinism)
set_tests_properties(rely.determinism PROPERTIES TIMEOUT 300 LABELS "rely")

if(OTL_FUZZ)
  # malformed.cmake (included first) already instruments onnxtl with -fsanitize=fuzzer-no-link.
  add_executable(fuzz_info ${_otl_rely_src}/fuzz/fuzz_info.c ${CMAKE_SOURCE_DIR}/cli/cmd_info.c
                           ${CMAKE_SOURCE_DIR}/cli/args.c)
  target_include_directories(fuzz_info PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(fuzz_info PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_info PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_info PRIVATE onnxtl)
  add_executable(fuzz_run ${_otl_rely_src}/fuzz/fuzz_run.c)
  target_compile_options(fuzz_run PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_run PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_run PRIVATE onnxtl)
  foreach(_t info run)
    add_test(NAME fuzz.${_t}
             COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:fuzz_${_t}>
                     -DSEEDS=${_otl_rely_src}/fuzz/seed_run:${_otl_rely_src}/fuzz/seed:${_otl_rely_src}/fuzz/found
                     -DDICT=${_otl_rely_src}/fuzz/onnx.dict
                     -DWORK=${CMAKE_CURRENT_BINARY_DIR}/fuzz_${_t}.work -DSECONDS=15
                     -P ${_otl_rely_src}/fuzz/run_fuzz.cmake)
    # one thread: the run target's oneDNN/OpenMP pools stay small and timings steady
    set_tests_properties(fuzz.${_t} PROPERTIES TIMEOUT 300 LABELS "fuzz"
                         ENVIRONMENT "OMP_NUM_THREADS=1;ASAN_OPTIONS=allocator_may_return_null=1")
  endforeach()
endif()
