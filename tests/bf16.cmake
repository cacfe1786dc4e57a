# tests/bf16.cmake - `train --precision bf16` (issue 7): mixed precision as torch.autocast(cpu,
# bfloat16), include()d from tests/CMakeLists.txt.
#
# Registers
#   bf16.grad     tests/bf16/bf16_grad.c through check_bf16.py: one training step of tiny_resnet
#                 (and tiny_mobilenet, tiny_mlp) in fp32 and bf16 on the same batch: every
#                 gradient within 2e-2 relative (L2) of fp32, not bit-identical to it; oneDNN's
#                 log (ONEDNN_VERBOSE) shows avx512_core_bf16 kernels for every bf16 convolution
#                 and matmul (no reference kernel).
#   bf16.cli      the flag: bad values (exit 2), a CPU without AVX512_BF16 simulated with
#                 ONEDNN_MAX_CPU_ISA=AVX512_CORE (exit 1, one line naming --precision bf16),
#                 provenance and checkpoint record the precision, --resume keeps it.
#   bf16.demo     the demo's transfer recipe (tools/demo.sh data: fashion_cnn, 50 images per
#                 class) in fp32 and bf16 with the same seed: test accuracies within 1 point,
#                 per-epoch training losses close.
#
# Needs a CPU with AVX512_BF16 (the tests fail without it) and, for bf16.demo, Debian's
# dataset-fashion-mnist.
set(_otl_bf16_dir ${CMAKE_CURRENT_LIST_DIR}/bf16)
add_executable(bf16_grad ${_otl_bf16_dir}/bf16_grad.c)
target_link_libraries(bf16_grad PRIVATE onnxtl m)
