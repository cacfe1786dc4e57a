/* fuzz_load.c - libFuzzer target for the ONNX model loader (otl_model_load_buffer).
 *
 * Any input may be rejected, but never with a crash, a sanitizer report, a leak or an unbounded
 * allocation. What loads must sort and have its head detected (as `info` does), and must
 * serialize; the serialized bytes must load again and serialize to the same bytes (a round trip
 * loses nothing and is deterministic). Runs twice per input: with validation (what the CLI does)
 * and with skip_validate (so the serializer also sees IR that validation would refuse). External
 * data is refused (dir NULL).
 * Build: clang -fsanitize=fuzzer,address,undefined (tests/malformed.cmake, OTL_FUZZ=ON).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

static void fail(const char *what, const otl_error *err)
{
    fprintf(stderr, "fuzz_load: %s: %s\n", what, err ? err->msg : "");
    abort(); /* a finding: libFuzzer saves the input as crash-* */
}

/* What `info` asks of the library, on a model that passed validation. */
static void inspect(const otl_model *m)
{
    otl_error err;
    otl_error_clear(&err);
    const otl_graph *g = m->graph;
    int *order = NULL;
    if (otl_graph_toposort(g, &order, "fuzz.onnx", &err) != OTL_OK)
        fail("a validated graph does not sort", &err);
    free(order);
    otl_head h;
    otl_find_head(g, &h);
    if (h.found && (h.node < 0 || h.node >= g->n_nodes))
        fail("head node index out of range", NULL);
    int64_t params = 0;
    for (int i = 0; i < g->n_inits; i++)
        if (otl_graph_init_is_param(g, g->inits[i]))
            params += g->inits[i]->numel + otl_model_is_frozen(m, g->inits[i]->name);
    (void)otl_model_opset(m, "");
    (void)params;
}

static void round_trip(const uint8_t *data, size_t size, int skip_validate)
{
    otl_load_opts opts = {skip_validate};
    otl_error err;
    otl_error_clear(&err);
    otl_model *m = NULL;
    otl_status st = otl_model_load_buffer(&m, data, size, "fuzz.onnx", NULL, &opts, &err);
    if (st != OTL_OK) {
        if (m)
            fail("load failed but returned a model", &err);
        if (st == OTL_ERR_INTERNAL)
            fail("internal error on load", &err);
        if (!err.msg[0])
            fail("load failed without a message", &err);
        return;
    }
    if (!m)
        fail("load succeeded without a model", &err);
    if (!skip_validate && m->graph)
        inspect(m);

    uint8_t *buf = NULL;
    size_t len = 0;
    if (otl_model_serialize(m, &buf, &len, &err) != OTL_OK)
        fail("serializing a loaded model failed", &err);

    otl_model *m2 = NULL;
    otl_error_clear(&err);
    if (otl_model_load_buffer(&m2, buf, len, "fuzz-roundtrip.onnx", NULL, &opts, &err) != OTL_OK)
        fail("re-loading the serialized model failed", &err);

    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    if (otl_model_serialize(m2, &buf2, &len2, &err) != OTL_OK)
        fail("serializing the re-loaded model failed", &err);
    if (len2 != len || memcmp(buf, buf2, len) != 0)
        fail("load(serialize(m)) serializes to different bytes", NULL);

    free(buf2);
    free(buf);
    otl_model_free(m2);
    otl_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    round_trip(data, size, 0);
    round_trip(data, size, 1);
    return 0;
}
