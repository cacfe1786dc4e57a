/* test_blocks.c - unit test of otl_param_blocks_get (graph/surgery.c): PyTorch-style names
 * (prefix up to the first all-digit component, first component otherwise), ordering by the
 * first consumer's topological position, the head as block 0 (detected, or onnx_tl.head), and
 * per-node blocks (normalization joined to its weight node) when some name is not PyTorch-style.
 * Models are built in memory; exit status 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_surgery.h"
#include "../common/otl_check.h"

static void add_init(otl_graph *g, const char *name, int64_t r, int64_t c)
{
    int64_t d[2] = {r, c};
    otl_tensor *t = otl_tensor_new(name, OTL_DTYPE_FLOAT, c ? 2 : 1, d);
    t->nbytes = (size_t)t->numel * 4;
    t->data = calloc(1, t->nbytes);
    otl_graph_add_init(g, t);
}

static void add_node(otl_graph *g, const char *name, const char *op, const char *a, const char *b, const char *c,
                     const char *out)
{
    otl_node *n = otl_node_new(name, op, "");
    const char *in[3] = {a, b, c};
    otl_node_set_io(n, c ? 3 : b ? 2 : 1, in, 1, &out);
    otl_graph_add_node(g, n);
}

/* x -> MatMul(w_i) ... -> LayerNorm(ln) -> Gemm(fc) -> y; names[i] for the MatMul weights. The
 * MatMul nodes are added in reverse order (the block order must follow the topology). */
static otl_model *chain(const char *const *names, int n, const char *ln_w, const char *ln_b, const char *fc_w,
                        const char *fc_b)
{
    otl_model *m = otl_model_new();
    m->graph = otl_graph_new();
    otl_graph *g = m->graph;
    int64_t xd[2] = {-1, 4}, yd[2] = {-1, 3};
    otl_graph_add_input(g, otl_value_new_tensor("x", OTL_DTYPE_FLOAT, 2, xd, NULL));
    otl_graph_add_output(g, otl_value_new_tensor("y", OTL_DTYPE_FLOAT, 2, yd, NULL));
    char prev[64] = "x", out[64], nn[64];
    /* added last-to-first: the graph's node list is in reverse topological order */
    for (int i = n - 1; i >= 0; i--) {
        snprintf(out, sizeof out, "t%d", i);
        if (i)
            snprintf(prev, sizeof prev, "t%d", i - 1);
        else
            snprintf(prev, sizeof prev, "x");
        snprintf(nn, sizeof nn, "/mm%d/MatMul", i);
        add_init(g, names[i], 4, 4);
        add_node(g, nn, "MatMul", prev, names[i], NULL, out);
    }
    snprintf(prev, sizeof prev, "t%d", n - 1);
    add_init(g, ln_w, 4, 0);
    add_init(g, ln_b, 4, 0);
    add_node(g, "/ln/LayerNormalization", "LayerNormalization", prev, ln_w, ln_b, "h");
    add_init(g, fc_w, 3, 4);
    add_init(g, fc_b, 3, 0);
    otl_node *gm = otl_node_new("/fc/Gemm", "Gemm", "");
    const char *in[3] = {"h", fc_w, fc_b}, *o = "y";
    otl_node_set_io(gm, 3, in, 1, &o);
    otl_attr *a;
    otl_node_add_attr(gm, "transB", OTL_ATTR_INT, &a);
    a->i = 1;
    otl_graph_add_node(g, gm);
    return m;
}

static const char *block_of(const otl_param_blocks *b, const char *p)
{
    int d = otl_param_blocks_depth(b, p);
    return d < 0 ? "(none)" : b->block_names[d];
}

int main(void)
{
    otl_error err = {0};
    otl_param_blocks *b = NULL;

    static const char *const torch[] = {"conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight",
                                        "layer1.1.conv1.weight", "features.17.conv.0.0.weight",
                                        "encoder.layers.3.linear1.weight", "bn1.weight"};
    otl_model *m = chain(torch, 7, "norm.weight", "norm.bias", "fc.weight", "fc.bias");
    CHECK(otl_model_validate(m, &err) == OTL_OK);
    CHECK(otl_param_blocks_get(m, &b, &err) == OTL_OK);
    if (b) {
        CHECK(b->by_names == 1);
        CHECK(b->n_params == 11);
        CHECK(strcmp(block_of(b, "fc.weight"), "head") == 0 && otl_param_blocks_depth(b, "fc.bias") == 0);
        CHECK(strcmp(block_of(b, "norm.weight"), "norm") == 0 && otl_param_blocks_depth(b, "norm.bias") == 1);
        CHECK(strcmp(block_of(b, "bn1.weight"), "bn1") == 0 && otl_param_blocks_depth(b, "bn1.weight") == 2);
        CHECK(strcmp(block_of(b, "encoder.layers.3.linear1.weight"), "encoder.layers.3") == 0);
        CHECK(otl_param_blocks_depth(b, "encoder.layers.3.linear1.weight") == 3);
        CHECK(strcmp(block_of(b, "features.17.conv.0.0.weight"), "features.17") == 0);
        CHECK(otl_param_blocks_depth(b, "features.17.conv.0.0.weight") == 4);
        CHECK(strcmp(block_of(b, "layer1.1.conv1.weight"), "layer1.1") == 0);
        CHECK(otl_param_blocks_depth(b, "layer1.1.conv1.weight") == 5);
        CHECK(strcmp(block_of(b, "layer1.0.conv2.weight"), "layer1.0") == 0);
        CHECK(otl_param_blocks_depth(b, "layer1.0.conv1.weight") == 6 && otl_param_blocks_depth(b, "layer1.0.conv2.weight") == 6);
        CHECK(strcmp(block_of(b, "conv1.weight"), "conv1") == 0 && otl_param_blocks_depth(b, "conv1.weight") == 7);
        CHECK(b->n_blocks == 8 && strcmp(b->block_names[0], "head") == 0);
        CHECK(otl_param_blocks_depth(b, "x") == -1);
    }
    otl_param_blocks_free(b);
    b = NULL;

    /* onnx_tl.head overrides the detection: two parameters named like the backbone */
    CHECK(otl_model_meta_set(m, "onnx_tl.head", "norm.weight\nnorm.bias\nfc.weight\nfc.bias", &err) == OTL_OK);
    CHECK(otl_param_blocks_get(m, &b, &err) == OTL_OK);
    if (b) {
        CHECK(otl_param_blocks_depth(b, "norm.bias") == 0 && otl_param_blocks_depth(b, "fc.weight") == 0);
        CHECK(otl_param_blocks_depth(b, "bn1.weight") == 1 && b->n_blocks == 7);
    }
    otl_param_blocks_free(b);
    b = NULL;
    /* freeze --all-but-head follows onnx_tl.head too */
    otl_freeze_opts fo = {.all_but_head = 1};
    CHECK(otl_freeze(m, &fo, &err) == OTL_OK);
    CHECK(otl_model_is_frozen(m, "conv1.weight") && otl_model_is_frozen(m, "bn1.weight"));
    CHECK(!otl_model_is_frozen(m, "norm.weight") && !otl_model_is_frozen(m, "fc.bias"));
    otl_model_free(m);

    /* one constant-folded name: per-node blocks, the LayerNormalization joins the MatMul before it */
    static const char *const mixed[] = {"conv1.weight", "onnx::MatMul_12", "layer2.0.weight"};
    m = chain(mixed, 3, "ln.weight", "ln.bias", "onnx::Gemm_20", "onnx::Gemm_21");
    CHECK(otl_param_blocks_get(m, &b, &err) == OTL_OK);
    if (b) {
        CHECK(b->by_names == 0 && b->n_blocks == 4);
        CHECK(otl_param_blocks_depth(b, "onnx::Gemm_20") == 0 && otl_param_blocks_depth(b, "onnx::Gemm_21") == 0);
        CHECK(strcmp(block_of(b, "ln.weight"), "/mm2/MatMul") == 0 && otl_param_blocks_depth(b, "ln.bias") == 1);
        CHECK(otl_param_blocks_depth(b, "layer2.0.weight") == 1);
        CHECK(strcmp(block_of(b, "onnx::MatMul_12"), "/mm1/MatMul") == 0 && otl_param_blocks_depth(b, "onnx::MatMul_12") == 2);
        CHECK(strcmp(block_of(b, "conv1.weight"), "/mm0/MatMul") == 0 && otl_param_blocks_depth(b, "conv1.weight") == 3);
    }
    otl_param_blocks_free(b);
    otl_model_free(m);
    if (err.code)
        fprintf(stderr, "error: %s\n", err.msg);
    if (failures) {
        fprintf(stderr, "test_blocks: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_blocks: ok\n");
    return 0;
}
