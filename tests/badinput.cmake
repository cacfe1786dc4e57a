# badinput.cmake - bad input on every command, include()d from tests/CMakeLists.txt.
#
# Uses ONNX_TL and PYTHON (numpy, PIL). Registers
#   badinput.cli  tests/badinput/check_badinput.py: a table of bad inputs (outputs that would land on an
#                 input, conflicting or empty flags, NaN/Inf data, PNG headers with unsupported sizes,
#                 truncated/corrupt .npy/.npz/images, wrong shapes, ...) run against small fixtures; each
#                 must exit 1 or 2 as listed with exactly one "onnx-tl: ..." stderr line matching its
#                 pattern (naming the file), and leave every file of the work directory as it was.
add_test(NAME badinput.cli
         COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/badinput/check_badinput.py ${ONNX_TL}
                 ${CMAKE_SOURCE_DIR}/testdata/models ${CMAKE_CURRENT_BINARY_DIR}/badinput_work)
set_tests_properties(badinput.cli PROPERTIES TIMEOUT 300 LABELS "badinput")
