# tests/bf16.cmake - `train --precision bf16` (issue 7): mixed precision as torch.autocast(cpu,
# bfloat16), include()d from tests/CMakeLists.txt.
#
# Registers
#   bf16.grad     tests/bf16/bf16_grad.c through check_bf16.py: one training step in fp32 and
#                 in bf16 on the same batch, relative L2 error of the bf16 gradients per tensor /
#                 over all / of the loss: tiny_resnet (convolutions, no BatchNormalization) within
#                 0.3 / 0.15 / 1e-3 (measured 0.11 / 0.061 / 1.2e-4), fashion_cnn (with BN and
#                 MaxPool) 0.2 / 0.1 / 3e-3 (0.082 / 0.039 / 4e-4), tiny_mlp (Gemm only) 1e-2 /
#                 1e-2 / 1e-3 (3.2e-3 / 2.4e-3 / 7.6e-5); bf16 gradients must not be bit-identical
#                 to fp32 ones. Every input of every convolution and product is rounded to 8
#                 significant bits, so early layers' gradients differ by several percent: PyTorch's
#                 torch.autocast(cpu, bfloat16) differs from its own fp32 gradients of fashion_cnn
#                 by 1-13 % per tensor. (tiny_mobilenet, with random BatchNormalization over 1x1
#                 maps at batch 8, is chaotic: bf16 and fp32 gradients differ by more than 100 %
#                 in onnx-tl and in a PyTorch emulation alike, so it is not compared.) Then
#                 oneDNN's log (ONEDNN_VERBOSE) of one bf16 step of tiny_resnet and tiny_mobilenet:
#                 every convolution and matmul reads bf16 data on avx512_core_bf16 (or gemm)
#                 kernels, none on a reference kernel.
#   bf16.cli      the flag: bad values (exit 2), a CPU without AVX512_BF16 simulated with
#                 ONEDNN_MAX_CPU_ISA=AVX512_CORE (exit 1, one line naming --precision bf16),
#                 provenance and checkpoint record the precision, --resume keeps it.
#   bf16.demo     the demo's transfer recipe (tools/demo.sh data: fashion_cnn, 50 images per
#                 class) in fp32 and bf16 with the same seed: test accuracies within 1 point,
#                 per-epoch training losses within 2 % (measured: 92.34 % vs 92.28 %, 0.1 %).
#
# Needs a CPU with AVX512_BF16 (the tests fail without it) and, for bf16.demo, Debian's
# dataset-fashion-mnist.
set(_otl_bf16_dir ${CMAKE_CURRENT_LIST_DIR}/bf16)
add_executable(bf16_grad ${_otl_bf16_dir}/bf16_grad.c)
target_link_libraries(bf16_grad PRIVATE onnxtl m)
target_include_directories(bf16_grad PRIVATE ${CMAKE_SOURCE_DIR})   # bench/synth_batch.h (shared with train_step)

add_test(NAME bf16.grad COMMAND ${PYTHON} ${_otl_bf16_dir}/check_bf16.py grad $<TARGET_FILE:bf16_grad>
                                ${CMAKE_SOURCE_DIR}/testdata/models)
set_tests_properties(bf16.grad PROPERTIES LABELS "bf16" TIMEOUT 300)
add_test(NAME bf16.cli COMMAND ${PYTHON} ${_otl_bf16_dir}/check_bf16.py cli ${ONNX_TL} ${CMAKE_SOURCE_DIR}/testdata/models
                               ${CMAKE_BINARY_DIR}/bf16-cli)
set_tests_properties(bf16.cli PROPERTIES LABELS "bf16" TIMEOUT 600)
# About 80 s of CPU (two runs of the demo's transfer recipe and two evaluations on 5000 images);
# 5.5 minutes of wall time were measured on a machine loaded 7x over its 2 cores.
add_test(NAME bf16.demo COMMAND ${PYTHON} ${_otl_bf16_dir}/check_bf16.py demo ${ONNX_TL} $<TARGET_FILE:fashion_folder>
                                ${CMAKE_BINARY_DIR}/bf16-demo --data-dir /usr/share/datasets/fashion-mnist --seed 1
                                --tolerance 1)
set_tests_properties(bf16.demo PROPERTIES LABELS "bf16" TIMEOUT 2400)
