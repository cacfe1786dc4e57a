/* test_swap.c - library-level test of otl_swap_head / otl_freeze (graph/surgery.c) on the
 * committed small models, for the sanitizer build (label asan): every path of the surgery (Gemm
 * head, hidden + dropout, --at with a probe run and each pooling, MatMul+Add head with a Reshape
 * tail, opset 11 Dropout, a second swap over an earlier one, error returns) runs, the result
 * validates, runs in a session with output (B, N), and the same seed serializes to the same bytes.
 *
 *   test_swap TESTDATA_MODELS_DIR SURGERY_DATA_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_surgery.h"
#include "../common/otl_check.h"

static otl_model *load(const char *dir, const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    otl_error err = {0};
    otl_model *m = NULL;
    if (otl_model_load(&m, path, NULL, &err)) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        failures++;
    }
    return m;
}

/* Run m on zeros (batch 2, symbolic axes 8); returns the first output's dims in d[0..1]. */
static int run_shape(const otl_model *m, int64_t *d)
{
    otl_error err = {0};
    otl_session *s = NULL;
    otl_tensor *in = NULL, **outs = NULL;
    int n_out = 0, ok = 0;
    const otl_value *v = m->graph->inputs[0];
    int64_t dims[8];
    for (int k = 0; k < v->rank && k < 8; k++)
        dims[k] = v->dims[k].value >= 0 ? v->dims[k].value : k == 0 ? 2 : 8;
    in = otl_tensor_new(v->name, v->dtype, v->rank, dims);
    in->nbytes = (size_t)otl_dtype_nbytes(v->dtype, in->numel);
    in->data = calloc(1, in->nbytes);
    if (!otl_session_new(&s, m, NULL, &err) &&
        !otl_session_run(s, (const otl_tensor *const *)&in, 1, &outs, &n_out, &err) && n_out >= 1 &&
        outs[0]->rank == 2) {
        d[0] = outs[0]->dims[0];
        d[1] = outs[0]->dims[1];
        ok = 1;
    } else {
        fprintf(stderr, "run: %s\n", err.msg);
    }
    otl_tensors_free(outs, n_out);
    otl_tensor_free(in);
    otl_session_free(s);
    return ok;
}

/* Swap a clone of m with o; check validity, (2, N) output, the head metadata, seed determinism.
 * Returns the swapped model (caller frees) or NULL. */
static otl_model *swap_ok(const otl_model *m, const otl_swap_head_opts *o, const char *what)
{
    otl_error err = {0};
    otl_model *a = NULL, *b = NULL;
    otl_swap_head_info info;
    uint8_t *ba = NULL, *bb = NULL;
    size_t la = 0, lb = 0;
    if (otl_model_clone(m, &a, &err) || otl_swap_head(a, o, &info, &err) || otl_model_validate(a, &err)) {
        fprintf(stderr, "%s: %s\n", what, err.msg);
        failures++;
        otl_model_free(a);
        return NULL;
    }
    int64_t d[2] = {0, 0};
    CHECK(run_shape(a, d) && d[0] == 2 && d[1] == o->classes);
    const char *head = otl_model_meta_get(a, "onnx_tl.head");
    CHECK(head && strstr(head, ".bias"));
    CHECK(info.features > 0 && info.cut[0]);
    /* same seed, same bytes */
    if (otl_model_clone(m, &b, &err) || otl_swap_head(b, o, NULL, &err) || otl_model_serialize(a, &ba, &la, &err) ||
        otl_model_serialize(b, &bb, &lb, &err)) {
        fprintf(stderr, "%s (again): %s\n", what, err.msg);
        failures++;
    } else {
        CHECK(la == lb && memcmp(ba, bb, la) == 0);
    }
    free(ba);
    free(bb);
    otl_model_free(b);
    printf("%s: ok (cut '%s' rank %d, %lld features, pooling %s)\n", what, info.cut, info.cut_rank,
           (long long)info.features, info.pooling);
    return a;
}

static void swap_fails(const otl_model *m, const otl_swap_head_opts *o, otl_status want, const char *needle)
{
    otl_error err = {0};
    otl_model *a = NULL;
    otl_status st = otl_model_clone(m, &a, &err) ? err.code : otl_swap_head(a, o, NULL, &err);
    if (st != want || !strstr(err.msg, needle)) {
        fprintf(stderr, "expected status %d naming '%s', got %d: %s\n", want, needle, st, err.msg);
        failures++;
    }
    otl_model_free(a);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_swap TESTDATA_MODELS_DIR SURGERY_DATA_DIR\n");
        return 2;
    }
    otl_error err = {0};
    otl_model *resnet = load(argv[1], "tiny_resnet.onnx");
    otl_model *enc = load(argv[1], "tiny_encoder.onnx");
    otl_model *mlp = load(argv[1], "tiny_mlp.onnx");
    otl_model *mm = load(argv[2], "mm_head.onnx");
    otl_model *old = load(argv[2], "old_opset.onnx");
    if (!resnet || !enc || !mlp || !mm || !old)
        return 1;

    const char *labels[3] = {"a", "b", "c"};
    otl_swap_head_opts o = {.classes = 3, .seed = 5, .labels = labels, .n_labels = 3};
    otl_model *r = swap_ok(resnet, &o, "resnet gemm head");
    otl_model_free(r);
    o = (otl_swap_head_opts){.classes = 4, .hidden = 6, .has_dropout = 1, .dropout = 0.2f};
    r = swap_ok(resnet, &o, "resnet hidden+dropout");
    if (r) {
        /* a second swap replaces the whole earlier head */
        otl_freeze_opts fo = {.all_but_head = 1};
        CHECK(otl_freeze(r, &fo, &err) == OTL_OK);
        CHECK(otl_model_is_frozen(r, "onnx::Conv_117") && !otl_model_is_frozen(r, "head.fc1.weight"));
        o = (otl_swap_head_opts){.classes = 2};
        otl_model *r2 = swap_ok(r, &o, "second swap");
        if (r2) {
            CHECK(!otl_graph_find_init(r2->graph, "head.fc1.weight") && otl_graph_find_init(r2->graph, "head.fc.weight"));
            CHECK(otl_model_is_frozen(r2, "onnx::Conv_117") && !otl_model_is_frozen(r2, "head.fc.weight"));
            CHECK(otl_model_meta_get(r2, "onnx_tl.labels") == NULL);
        }
        otl_model_free(r2);
    }
    otl_model_free(r);
    o = (otl_swap_head_opts){.classes = 5, .at = "/layer3/layer3.0/relu/Relu_output_0"};
    otl_model_free(swap_ok(resnet, &o, "resnet --at rank 4"));
    o = (otl_swap_head_opts){.classes = 3, .at = "hidden_states"};
    otl_model_free(swap_ok(enc, &o, "encoder --at cls"));
    o = (otl_swap_head_opts){.classes = 3, .at = "/encoder/layers.0/norm2/LayerNormalization", .pool = OTL_POOL_MEAN};
    otl_model_free(swap_ok(enc, &o, "encoder --at node, mean"));
    o = (otl_swap_head_opts){.classes = 2, .hidden = 4};
    otl_model_free(swap_ok(mlp, &o, "keras mlp"));
    o = (otl_swap_head_opts){.classes = 3};
    r = swap_ok(mm, &o, "matmul+add head, reshape tail");
    if (r) {
        for (int i = 0; i < r->graph->n_nodes; i++)
            CHECK(strcmp(r->graph->nodes[i]->op_type, "Reshape") != 0);
        CHECK(r->graph->n_outputs == 2 && r->graph->outputs[1]->dims[1].value == 3);
    }
    otl_model_free(r);
    o = (otl_swap_head_opts){.classes = 3, .has_dropout = 1, .dropout = 0.3f};
    otl_model_free(swap_ok(old, &o, "opset 11"));

    /* preprocessing stored through the library, checked against the input */
    otl_preprocess pp;
    CHECK(otl_preprocess_get(resnet, &pp, &err) == OTL_OK);
    pp.scale = 1.0f;
    o = (otl_swap_head_opts){.classes = 2, .pp = &pp};
    r = swap_ok(resnet, &o, "preprocess");
    CHECK(r && strstr(otl_model_meta_get(r, "onnx_tl.preprocess"), "\"scale\":1,"));
    otl_model_free(r);

    /* errors */
    pp.nhwc = 1;
    o = (otl_swap_head_opts){.classes = 2, .pp = &pp, .pp_source = "pp.json"};
    swap_fails(resnet, &o, OTL_ERR_INPUT, "pp.json: preprocessing (layout NHWC");
    o = (otl_swap_head_opts){.classes = 0};
    swap_fails(resnet, &o, OTL_ERR_USAGE, "at least 1");
    o = (otl_swap_head_opts){.classes = 2, .at = "nope"};
    swap_fails(resnet, &o, OTL_ERR_INPUT, "'nope': no such tensor");
    o = (otl_swap_head_opts){.classes = 2, .at = "onnx::Conv_117"};
    swap_fails(resnet, &o, OTL_ERR_INPUT, "initializer");
    o = (otl_swap_head_opts){.classes = 2};
    swap_fails(enc, &o, OTL_ERR_INPUT, "no classifier head found");
    o = (otl_swap_head_opts){.classes = 2, .at = "input_ids"};
    swap_fails(enc, &o, OTL_ERR_INPUT, "is int64");
    o = (otl_swap_head_opts){.classes = 3, .labels = labels, .n_labels = 2};
    swap_fails(resnet, &o, OTL_ERR_INPUT, "2 labels given for 3 classes");
    otl_freeze_opts fo = {.params = "zz*"};
    CHECK(otl_freeze(resnet, &fo, &err) == OTL_ERR_INPUT && strstr(err.msg, "'zz*' matches no parameter"));

    otl_model_free(resnet);
    otl_model_free(enc);
    otl_model_free(mlp);
    otl_model_free(mm);
    otl_model_free(old);
    if (failures) {
        fprintf(stderr, "test_swap: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_swap: ok\n");
    return 0;
}
