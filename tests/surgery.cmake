# tests/surgery.cmake - swap-head, freeze and the preprocessing metadata (issue 5), include()d
# from tests/CMakeLists.txt.
#
# Registers
#   surgery.preprocess   tests/surgery/test_preprocess.c: defaults, strict JSON parser, canonical
#                        JSON, stored metadata over defaults, checks against the model input

set(_otl_surg_dir ${CMAKE_CURRENT_LIST_DIR}/surgery)

add_executable(test_preprocess ${_otl_surg_dir}/test_preprocess.c)
target_link_libraries(test_preprocess PRIVATE onnxtl)
add_test(NAME surgery.preprocess COMMAND test_preprocess)
set_tests_properties(surgery.preprocess PROPERTIES LABELS "surgery;unit;asan" TIMEOUT 60)

# ---------------------------------------------------------------- swap-head end to end
# tests/surgery/check_swap.py: swap-head, onnx.checker (full), ORT vs `onnx-tl run` (1e-4),
# output shape (B, N), the new head applied in numpy to the cut tensor of the ORIGINAL model
# (backbone unchanged), head structure, torch.nn.Linear init bounds, seeds -> identical bytes.
if(NOT DEFINED OTL_ZOO_DIR)
  set(OTL_ZOO_DIR ${CMAKE_BINARY_DIR}/zoo)
endif()
set(_otl_surg_models ${CMAKE_SOURCE_DIR}/testdata/models)
set(_otl_surg_work ${CMAKE_CURRENT_BINARY_DIR}/surgery)
set(_otl_surg_check ${PYTHON} ${_otl_surg_dir}/check_swap.py --onnx-tl ${ONNX_TL} --node ${NODE}
    --ort-run ${OTL_ORT_DIR}/ort_run.js)

add_test(NAME surgery.swap.tiny_resnet
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_resnet.onnx --workdir ${_otl_surg_work}/resnet
          --classes 4 --seed-check --expect-old-head fc.weight)
add_test(NAME surgery.swap.tiny_mobilenet
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_mobilenet.onnx --workdir ${_otl_surg_work}/mobilenet
          --classes 5 --batch 3 --seed-check)
# Keras-style model: its final Softmax is kept after the new head; hidden layer and dropout
add_test(NAME surgery.swap.tiny_mlp.hidden
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_mlp.onnx --workdir ${_otl_surg_work}/mlp
          --classes 3 --expect-softmax --expect-hidden 16 --expect-dropout 0.25 --seed-check
          -- --hidden 16 --dropout 0.25)
add_test(NAME surgery.swap.tiny_mlp.dropout
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_mlp.onnx --workdir ${_otl_surg_work}/mlp_d
          --classes 2 --expect-softmax --expect-dropout 0.5 -- --dropout 0.5)
add_test(NAME surgery.swap.tiny_resnet.at4
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_resnet.onnx --workdir ${_otl_surg_work}/resnet_at
          --classes 6 --expect-hidden 8 -- --at /layer4/layer4.0/relu_1/Relu_output_0 --hidden 8)
add_test(NAME surgery.swap.tiny_encoder.cls
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_encoder.onnx --workdir ${_otl_surg_work}/enc_cls
          --classes 3 --seed-check -- --at hidden_states)
add_test(NAME surgery.swap.tiny_encoder.mean
  COMMAND ${_otl_surg_check} --model ${_otl_surg_models}/tiny_encoder.onnx --workdir ${_otl_surg_work}/enc_mean
          --classes 3 -- --at hidden_states --pool mean)
# hand-built models (tests/surgery/make_models.py): MatMul+Add head followed by Reshape + Softmax
# with the logits as a second output (Reshape bypassed, both outputs [N, 3]); opset 11 with
# initializers listed as inputs (Dropout ratio as attribute)
add_test(NAME surgery.swap.mm_head
  COMMAND ${_otl_surg_check} --model ${_otl_surg_dir}/data/mm_head.onnx --workdir ${_otl_surg_work}/mm_head
          --classes 3 --expect-softmax --expect-old-head out/kernel --seed-check)
add_test(NAME surgery.swap.old_opset
  COMMAND ${_otl_surg_check} --model ${_otl_surg_dir}/data/old_opset.onnx --workdir ${_otl_surg_work}/old_opset
          --classes 3 --expect-hidden 5 --expect-dropout 0.3 --expect-old-head fc2.weight -- --hidden 5 --dropout 0.3)
# symbolic H, W: the cut after Flatten is sized by a probe at the stored preprocessing size (32)
add_test(NAME surgery.swap.flat_probe
  COMMAND ${_otl_surg_check} --model ${_otl_surg_dir}/data/flat_head.onnx --workdir ${_otl_surg_work}/flat_probe
          --classes 3 --image-size 32 -- --at flat)
set_tests_properties(surgery.swap.mm_head surgery.swap.old_opset surgery.swap.flat_probe PROPERTIES LABELS "surgery" TIMEOUT 300)
set_tests_properties(surgery.swap.tiny_resnet surgery.swap.tiny_mobilenet surgery.swap.tiny_mlp.hidden
                     surgery.swap.tiny_mlp.dropout surgery.swap.tiny_resnet.at4 surgery.swap.tiny_encoder.cls
                     surgery.swap.tiny_encoder.mean
                     PROPERTIES LABELS "surgery" TIMEOUT 300)

# every zoo architecture at batch 1 (squeezenet: its 1x1-Conv classifier is replaced from its
# input; bert: an encoder without head, cut at its output with the CLS token). The backbone check
# (one more ORT run) on one model per path: resnet18 (Gemm head), squeezenet (conv head), vit, bert.
foreach(z resnet18 mobilenet_v2 mobilenet_v3_small efficientnet_b0 squeezenet1_1 shufflenet_v2_x0_5 vit)
  set(_otl_surg_nb --no-backbone)
  if(z MATCHES "^(resnet18|squeezenet1_1|vit)$")
    set(_otl_surg_nb)
  endif()
  add_test(NAME surgery.swap.zoo.${z}
    COMMAND ${_otl_surg_check} --model ${OTL_ZOO_DIR}/${z}.onnx --workdir ${_otl_surg_work}/zoo_${z}
            --classes 7 --batch 1 ${_otl_surg_nb})
  set_tests_properties(surgery.swap.zoo.${z} PROPERTIES LABELS "surgery;zoo" TIMEOUT 600 FIXTURES_REQUIRED zoo)
endforeach()
# squeezenet's 1x1-Conv classifier is the head for info, freeze --all-but-head and swap-head alike
add_test(NAME surgery.conv_head
  COMMAND ${PYTHON} ${CMAKE_CURRENT_LIST_DIR}/surgery/check_conv_head.py ${ONNX_TL} ${OTL_ZOO_DIR}/squeezenet1_1.onnx
          ${_otl_surg_work}/conv_head)
set_tests_properties(surgery.conv_head PROPERTIES LABELS "surgery;zoo" TIMEOUT 300 FIXTURES_REQUIRED zoo)
add_test(NAME surgery.swap.zoo.bert
  COMMAND ${_otl_surg_check} --model ${OTL_ZOO_DIR}/bert.onnx --workdir ${_otl_surg_work}/zoo_bert
          --classes 2 --batch 1 -- --at last_hidden_state)
set_tests_properties(surgery.swap.zoo.bert PROPERTIES LABELS "surgery;zoo" TIMEOUT 600 FIXTURES_REQUIRED zoo)

# freeze (option combinations against a python reference of the graph, info --json counts,
# grad writing only trainable gradients, --list blocks), labels/preprocessing metadata, errors
foreach(part freeze meta errors)
  add_test(NAME surgery.cli.${part}
    COMMAND ${PYTHON} ${_otl_surg_dir}/check_cli.py ${part} --onnx-tl ${ONNX_TL} --models ${_otl_surg_models}
            --workdir ${_otl_surg_work}/cli)
  set_tests_properties(surgery.cli.${part} PROPERTIES LABELS "surgery" TIMEOUT 300)
endforeach()

# parameter blocks (gradual unfreezing / discriminative learning rates) on in-memory models
add_executable(test_blocks ${_otl_surg_dir}/test_blocks.c)
target_link_libraries(test_blocks PRIVATE onnxtl)
add_test(NAME surgery.blocks COMMAND test_blocks)
set_tests_properties(surgery.blocks PROPERTIES LABELS "surgery;unit;asan" TIMEOUT 60)

# swap-head / freeze through the library on the small models (every surgery path, seeds ->
# identical bytes, error returns): the sanitizer build runs it (label asan)
add_executable(test_swap ${_otl_surg_dir}/test_swap.c)
target_link_libraries(test_swap PRIVATE onnxtl)
add_test(NAME surgery.library COMMAND test_swap ${_otl_surg_models} ${_otl_surg_dir}/data)
set_tests_properties(surgery.library PROPERTIES LABELS "surgery;unit;asan" TIMEOUT 120)
