/* test_preprocess.c - unit test of src/preprocess.c: defaults from the model input, the strict
 * JSON parser (every rejection), canonical JSON round trip, stored metadata over defaults and
 * the checks against the model's input. Models are built in memory; exit status 1 on failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_data.h"
#include "../common/otl_check.h"

/* A model whose only graph input is `dims` (rank 4, -1 = symbolic) of dtype. */
static otl_model *image_model(int rank, const int64_t *dims, int dtype)
{
    otl_model *m = otl_model_new();
    m->graph = otl_graph_new();
    const char *params[4] = {"batch", "h", "w", "c"};
    otl_graph_add_input(m->graph, otl_value_new_tensor("image", dtype, rank, dims, params));
    return m;
}

static int near(float a, float b)
{
    return fabsf(a - b) < 1e-6f;
}

/* Parse over pp; expect failure mentioning `needle`. */
static void expect_bad(const otl_preprocess *base, const char *json, const char *needle)
{
    otl_preprocess pp = *base;
    otl_error err = {0};
    otl_status st = otl_preprocess_parse(json, &pp, "bad.json", &err);
    if (st == OTL_OK || !strstr(err.msg, needle) || !strstr(err.msg, "bad.json")) {
        fprintf(stderr, "expected a failure naming '%s' for %s, got status %d: %s\n", needle, json, st, err.msg);
        failures++;
    }
    if (memcmp(&pp, base, sizeof pp) != 0) {
        fprintf(stderr, "failed parse of %s changed the preprocessing\n", json);
        failures++;
    }
}

int main(void)
{
    otl_error err = {0};
    otl_preprocess pp;

    /* ImageNet-sized NCHW input with a symbolic batch */
    int64_t d224[4] = {-1, 3, 224, 224};
    otl_model *m = image_model(4, d224, OTL_DTYPE_FLOAT);
    CHECK(otl_preprocess_default(m, &pp, &err) == OTL_OK);
    CHECK(pp.height == 224 && pp.width == 224 && pp.channels == OTL_CHANNELS_RGB && !pp.nhwc);
    CHECK(pp.resize == OTL_RESIZE_SHORTER_SIDE && pp.crop == OTL_CROP_CENTER && pp.scale == 255.0f);
    CHECK(near(pp.mean[0], 0.485f) && near(pp.mean[2], 0.406f) && near(pp.std[1], 0.224f));
    CHECK(otl_preprocess_nchan(&pp) == 3);
    char *js = otl_preprocess_to_json(&pp);
    CHECK(js && strcmp(js, "{\"size\":[224,224],\"resize\":\"shorter-side\",\"crop\":\"center\",\"channels\":\"rgb\","
                           "\"scale\":255,\"mean\":[0.485,0.456,0.406],\"std\":[0.229,0.224,0.225],"
                           "\"layout\":\"NCHW\"}") == 0);
    if (js)
        printf("default 224: %s\n", js);
    /* canonical JSON parses back to the same struct (over anything) */
    otl_preprocess back;
    memset(&back, 0, sizeof back);
    back.channels = OTL_CHANNELS_GRAY;
    CHECK(otl_preprocess_parse(js, &back, "canon", &err) == OTL_OK);
    CHECK(memcmp(&back, &pp, sizeof pp) == 0);
    free(js);
    /* stored JSON overrides defaults, partially */
    otl_preprocess base = pp;
    CHECK(otl_preprocess_parse(" { \"scale\" : 1.0, \"resize\": \"stretch\", \"crop\":\"none\" } ", &pp, "x", &err) ==
          OTL_OK);
    CHECK(pp.scale == 1.0f && pp.resize == OTL_RESIZE_STRETCH && pp.crop == OTL_CROP_NONE && pp.height == 224);
    CHECK(near(pp.mean[1], 0.456f));
    /* channel order change without mean/std: the defaults follow the order */
    pp = base;
    CHECK(otl_preprocess_parse("{\"channels\": \"bgr\"}", &pp, "x", &err) == OTL_OK);
    CHECK(pp.channels == OTL_CHANNELS_BGR && near(pp.mean[0], 0.406f) && near(pp.std[2], 0.229f));
    pp = base;
    CHECK(otl_preprocess_parse("{\"mean\": [0.5, 0.25, 0.125], \"std\": [2, 3, 4]}", &pp, "x", &err) == OTL_OK);
    CHECK(pp.mean[1] == 0.25f && pp.std[2] == 4.0f);
    CHECK(otl_preprocess_parse("{}", &pp, "x", &err) == OTL_OK);
    CHECK(err.code == OTL_OK);

    /* every rejection names the source and leaves pp unchanged */
    expect_bad(&base, "", "expected a JSON object");
    expect_bad(&base, "[1]", "expected a JSON object");
    expect_bad(&base, "{\"sizes\": [1, 2]}", "unknown key \"sizes\"");
    expect_bad(&base, "{\"size\": [224]}", "two positive integers");
    expect_bad(&base, "{\"size\": [224, 224, 3]}", "too many values");
    expect_bad(&base, "{\"size\": [0, 224]}", "two positive integers");
    expect_bad(&base, "{\"size\": [-5, 224]}", "two positive integers");
    expect_bad(&base, "{\"size\": [22.5, 224]}", "integers");
    expect_bad(&base, "{\"size\": \"224\"}", "array of numbers");
    expect_bad(&base, "{\"size\": []}", "must not be empty");
    expect_bad(&base, "{\"resize\": 1}", "\"resize\" must be a string");
    expect_bad(&base, "{\"resize\": \"crop\"}", "\"stretch\" or \"shorter-side\"");
    expect_bad(&base, "{\"crop\": \"left\"}", "\"center\" or \"none\"");
    expect_bad(&base, "{\"channels\": \"rgba\"}", "\"gray\", \"rgb\" or \"bgr\"");
    expect_bad(&base, "{\"channels\": 3}", "\"channels\" must be a string");
    expect_bad(&base, "{\"layout\": \"CHW\"}", "\"NCHW\" or \"NHWC\"");
    expect_bad(&base, "{\"scale\": 0}", "positive");
    expect_bad(&base, "{\"scale\": \"255\"}", "must be a number");
    expect_bad(&base, "{\"mean\": [0.5]}", "\"mean\" has 1 value(s) but channels \"rgb\" has 3");
    expect_bad(&base, "{\"std\": [0.5, 0.5]}", "\"std\" has 2 value(s)");
    expect_bad(&base, "{\"channels\": \"gray\", \"mean\": [0.1, 0.2, 0.3]}", "channels \"gray\" has 1");
    expect_bad(&base, "{\"std\": [0.5, 0, 0.5]}", "positive");
    expect_bad(&base, "{\"std\": [0.5, -1, 0.5]}", "positive");
    expect_bad(&base, "{\"mean\": [0.5, \"a\", 0.5]}", "expected a number");
    expect_bad(&base, "{\"scale\": 255,}", "expected a string");
    expect_bad(&base, "{\"scale\": 255} x", "trailing text");
    expect_bad(&base, "{\"scale\": 255, \"scale\": 1}", "given twice");
    expect_bad(&base, "{\"scale\": 1 2}", "expected ',' or '}'");
    expect_bad(&base, "{\"size\": [01, 2]}", "expected ',' or ']'");
    expect_bad(&base, "{\"scale\": 1e999}", "out of range");
    expect_bad(&base, "{\"scale\" 1}", "expected ':'");
    expect_bad(&base, "{\"layout\": \"NCHW", "unterminated");
    expect_bad(&base, "{'scale': 1}", "expected a string");

    /* stored metadata over defaults, checked against the input */
    err = (otl_error){0};
    otl_model_meta_set(m, "onnx_tl.preprocess", "{\"scale\": 1, \"crop\": \"none\"}", &err);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_OK && pp.scale == 1.0f && pp.crop == OTL_CROP_NONE);
    otl_model_meta_set(m, "onnx_tl.preprocess", "{\"layout\": \"NHWC\"}", &err);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "contradicts input 'image'") &&
          strstr(err.msg, "metadata onnx_tl.preprocess"));
    err = (otl_error){0};
    otl_model_meta_set(m, "onnx_tl.preprocess", "{\"channels\": \"gray\"}", &err);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "channel axis 1 has 3"));
    err = (otl_error){0};
    otl_model_meta_set(m, "onnx_tl.preprocess", "{\"size\": [200, 224]}", &err);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "size [200, 224]"));
    err = (otl_error){0};
    otl_model_meta_set(m, "onnx_tl.preprocess", "{\"mean\": 3}", &err);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "array of numbers"));
    err = (otl_error){0};
    otl_model_free(m);

    /* small gray NHWC input (Keras style), fixed batch */
    int64_t dg[4] = {1, 28, 28, 1};
    m = image_model(4, dg, OTL_DTYPE_FLOAT);
    CHECK(otl_preprocess_default(m, &pp, &err) == OTL_OK);
    CHECK(pp.nhwc && pp.channels == OTL_CHANNELS_GRAY && pp.height == 28 && pp.width == 28);
    CHECK(pp.resize == OTL_RESIZE_STRETCH && pp.crop == OTL_CROP_NONE && pp.mean[0] == 0.5f && pp.std[0] == 0.5f);
    js = otl_preprocess_to_json(&pp);
    CHECK(js && strstr(js, "\"channels\":\"gray\",\"scale\":255,\"mean\":[0.5],\"std\":[0.5],\"layout\":\"NHWC\""));
    free(js);
    /* switching channels to rgb: mean/std become ImageNet's (and the check refuses it) */
    CHECK(otl_preprocess_parse("{\"channels\": \"rgb\"}", &pp, "x", &err) == OTL_OK && near(pp.mean[0], 0.485f));
    CHECK(otl_preprocess_check(m, &pp, "x.json", &err) == OTL_ERR_INPUT && strstr(err.msg, "x.json"));
    err = (otl_error){0};
    otl_model_free(m);

    /* symbolic spatial axes: default 224 and any size accepted */
    int64_t ds[4] = {-1, 3, -1, -1};
    m = image_model(4, ds, OTL_DTYPE_FLOAT);
    CHECK(otl_preprocess_default(m, &pp, &err) == OTL_OK && pp.height == 224 && pp.width == 224 && !pp.nhwc);
    CHECK(otl_preprocess_parse("{\"size\": [96, 128]}", &pp, "x", &err) == OTL_OK);
    CHECK(otl_preprocess_check(m, &pp, "x", &err) == OTL_OK && pp.height == 96 && pp.width == 128);
    otl_model_free(m);

    /* not an image input: clear errors */
    int64_t df[2] = {-1, 20};
    m = image_model(2, df, OTL_DTYPE_FLOAT);
    CHECK(otl_preprocess_get(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "not an image batch"));
    err = (otl_error){0};
    otl_model_free(m);
    int64_t d4[4] = {-1, 4, 32, 32};
    m = image_model(4, d4, OTL_DTYPE_FLOAT);
    CHECK(otl_preprocess_default(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "4 channels"));
    err = (otl_error){0};
    otl_model_free(m);
    m = image_model(4, d224, OTL_DTYPE_INT64);
    CHECK(otl_preprocess_default(m, &pp, &err) == OTL_ERR_INPUT && strstr(err.msg, "int64"));
    otl_model_free(m);

    if (failures) {
        fprintf(stderr, "test_preprocess: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_preprocess: ok\n");
    return 0;
}
