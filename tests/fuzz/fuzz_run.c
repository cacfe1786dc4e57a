/* fuzz_run.c - libFuzzer target for `run` on small shapes: load (from memory, no external data),
 * session, one forward pass with tiny inputs built from the model's declared input shapes.
 *
 * Inputs: every graph input without an initializer gets its declared dtype and shape, with
 * symbolic/unknown dims set to 1 and every dim capped at 4 (at most rank 6): small tensors, fast
 * passes. Data are deterministic small values (integers: 0..2, so that index inputs stay in range
 * often). Any failure is fine as long as it is a clean error (a message, not OTL_ERR_INTERNAL);
 * a success must give one output per graph output with consistent sizes. Never a crash, a
 * sanitizer report, a leak or a timeout.
 *
 * Models whose ops make tensor sizes from data (ConstantOfShape, Expand, Tile, Range, Resize, Pad,
 * OneHot, ConvTranspose, ...) are skipped before running: a hostile model may legitimately ask
 * for gigabytes there (refused only beyond 2^40 elements), which would turn the fuzzer's memory
 * limit into false findings. They are covered by the malformed corpus (run_constantofshape_*).
 * Build: clang -fsanitize=fuzzer,address,undefined (tests/rely.cmake, OTL_FUZZ=ON).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

#define MAX_DIM 4
#define MAX_RANK 6
#define MAX_NODES 256

static void fail(const char *what, const otl_error *err)
{
    fprintf(stderr, "fuzz_run: %s: %s\n", what, err ? err->msg : "");
    abort(); /* a finding: libFuzzer saves the input as crash-* */
}

/* Ops whose output sizes come from tensor values or attributes that can ask for any size. */
static int grows(const otl_graph *g)
{
    static const char *const ops[] = {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad",
                                      "OneHot", "ConvTranspose", "MaxUnpool", "CenterCropPad", "Col2Im",
                                      "EyeLike", "Loop", "Scan", "If", "SequenceConstruct", NULL};
    if (g->n_nodes > MAX_NODES)
        return 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        if (*n->domain && strcmp(n->domain, "ai.onnx") != 0)
            continue; /* unknown domains are refused by the session */
        for (int k = 0; ops[k]; k++)
            if (strcmp(n->op_type, ops[k]) == 0)
                return 1;
    }
    return 0;
}

static otl_tensor *make_input(const otl_value *v)
{
    int rank = v->has_type && v->is_tensor && v->has_shape ? v->rank : 1;
    if (rank > MAX_RANK)
        return NULL;
    int dtype = v->has_type && v->is_tensor ? v->dtype : OTL_DTYPE_FLOAT;
    if (otl_dtype_size2(dtype) == 0)
        return NULL; /* strings, unknown types: the session must report the missing input */
    int64_t dims[MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int64_t d = v->has_shape ? v->dims[i].value : 1;
        dims[i] = d < 0 ? 1 : d > MAX_DIM ? MAX_DIM : d;
    }
    otl_tensor *t = otl_tensor_new(v->name, dtype, rank, dims);
    int64_t nb = t ? otl_dtype_nbytes(dtype, t->numel) : -1;
    if (!t || nb < 0 || !(t->data = calloc((size_t)nb + 1, 1))) {
        otl_tensor_free(t);
        return NULL;
    }
    t->nbytes = (size_t)nb;
    uint8_t *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (dtype) {
        case OTL_DTYPE_FLOAT:
            ((float *)p)[i] = (float)((i * 7) % 11) * 0.25f - 1.25f;
            break;
        case OTL_DTYPE_DOUBLE:
            ((double *)p)[i] = (double)((i * 7) % 11) * 0.25 - 1.25;
            break;
        case OTL_DTYPE_INT64:
            ((int64_t *)p)[i] = i % 3;
            break;
        case OTL_DTYPE_INT32:
            ((int32_t *)p)[i] = (int32_t)(i % 3);
            break;
        case OTL_DTYPE_BOOL:
        case OTL_DTYPE_UINT8:
        case OTL_DTYPE_INT8:
            p[i] = (uint8_t)(i % 2);
            break;
        default:
            break; /* zeros */
        }
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    otl_error err;
    otl_error_clear(&err);
    otl_model *m = NULL;
    if (otl_model_load_buffer(&m, data, size, "fuzz.onnx", NULL, NULL, &err) != OTL_OK) {
        if (m || !err.msg[0] || err.code == OTL_ERR_INTERNAL)
            fail("bad load failure", &err);
        return 0;
    }
    const otl_graph *g = m->graph;
    if (!g || grows(g)) {
        otl_model_free(m);
        return 0;
    }
    otl_tensor *in[64] = {0};
    int n_in = 0;
    for (int i = 0; i < g->n_inputs && n_in < 64; i++) {
        if (otl_graph_find_init(g, g->inputs[i]->name))
            continue;
        otl_tensor *t = make_input(g->inputs[i]);
        if (t)
            in[n_in++] = t;
    }
    otl_session *s = NULL;
    otl_session_opts so = {.threads = 1, .seed = 1};
    otl_tensor **outs = NULL;
    int n_out = 0;
    otl_status st = otl_session_new(&s, m, &so, &err);
    if (!st)
        st = otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, &err);
    if (st) {
        if (!err.msg[0] || st == OTL_ERR_INTERNAL || err.code == OTL_ERR_INTERNAL)
            fail("run failed with an internal error or without a message", &err);
    } else {
        if (n_out != g->n_outputs)
            fail("wrong number of outputs", NULL);
        for (int i = 0; i < n_out; i++) {
            const otl_tensor *o = outs[i];
            int64_t n = 1;
            for (int d = 0; d < o->rank; d++)
                n *= o->dims[d];
            if (n != o->numel || strcmp(o->name, g->outputs[i]->name) != 0)
                fail("output shape/name inconsistent", NULL);
            if (o->dtype != OTL_DTYPE_STRING && (int64_t)o->nbytes != otl_dtype_nbytes(o->dtype, n))
                fail("output byte size inconsistent", NULL);
        }
    }
    otl_tensors_free(outs, n_out);
    for (int i = 0; i < n_in; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_model_free(m);
    return 0;
}
