# run_fuzz.cmake - CTest driver for a libFuzzer target (cmake -P).
#
#   cmake -DFUZZER=path -DSEEDS=dir[:dir...] -DWORK=dir [-DDICT=file] [-DSECONDS=15] -P run_fuzz.cmake
#
# OTL_FUZZ_SECONDS in the environment overrides SECONDS (make fuzz: longer runs).
# Copies the seed corpus into WORK/corpus (the source tree is never written), runs the fuzzer for a
# bounded time with crash artifacts in WORK/artifacts, and fails if it reports anything (crash,
# leak, timeout, out-of-memory, sanitizer report): libFuzzer then exits non-zero.
foreach(v FUZZER SEEDS WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED SECONDS)
  set(SECONDS 15)
endif()
if(DEFINED ENV{OTL_FUZZ_SECONDS} AND NOT "$ENV{OTL_FUZZ_SECONDS}" STREQUAL "")
  set(SECONDS $ENV{OTL_FUZZ_SECONDS})
endif()

file(REMOVE_RECURSE ${WORK}/corpus)
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB _old ${WORK}/artifacts/*)
string(REPLACE ":" ";" _seed_dirs "${SEEDS}")
foreach(_d ${_seed_dirs})
  file(GLOB _seeds ${_d}/*)
  file(COPY ${_seeds} DESTINATION ${WORK}/corpus)
endforeach()

# -timeout: one input may take 60 s (every input takes well under 1 s here; a loaded CI machine must
# not turn a stall into a finding, a hang is still found)
set(_args -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=60 -max_len=65536
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/)
if(DEFINED DICT AND EXISTS "${DICT}")
  list(APPEND _args -dict=${DICT})
endif()
# A sanitizer report must abort so that libFuzzer records the input.
set(ENV{ASAN_OPTIONS} "abort_on_error=1:detect_leaks=1:$ENV{ASAN_OPTIONS}")
set(ENV{UBSAN_OPTIONS} "halt_on_error=1:abort_on_error=1:print_stacktrace=1:$ENV{UBSAN_OPTIONS}")

math(EXPR _limit "${SECONDS} + 120")
execute_process(COMMAND ${FUZZER} ${_args} ${WORK}/corpus
                RESULT_VARIABLE _rc TIMEOUT ${_limit} OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
file(GLOB _found ${WORK}/artifacts/crash-* ${WORK}/artifacts/leak-* ${WORK}/artifacts/timeout-*
     ${WORK}/artifacts/oom-*)
if(_old AND _found)
  list(REMOVE_ITEM _found ${_old})
endif()
if(NOT _rc EQUAL 0 OR _found)
  # The whole fuzzer log first, then what a truncated CI log must still show: the report (the
  # lines from the first sanitizer/libFuzzer ERROR on) and each reproducer as hex (up to 8 KiB).
  message("${_out}")
  string(FIND "${_out}" "ERROR" _at)
  if(_at GREATER_EQUAL 0)
    string(SUBSTRING "${_out}" ${_at} 6000 _report)
  else()
    set(_report "(no ERROR line; exit status ${_rc})")
  endif()
  set(_hex "")
  foreach(_f ${_found})
    file(SIZE ${_f} _size)
    if(_size LESS_EQUAL 8192)
      file(READ ${_f} _h HEX)
      string(APPEND _hex "\n${_f} (${_size} bytes, hex): ${_h}")
    endif()
  endforeach()
  message(FATAL_ERROR "fuzzer failed (result: ${_rc}); reproducers: ${_found}\n"
          "reproduce with: ${FUZZER} <file>\nreport:\n${_report}${_hex}")
endif()
message("${_out}")
message(STATUS "fuzzer ran ${SECONDS}s without findings")
