/* test_clone.c - otl_model_clone (graph/ir.c, a direct deep copy) and otl_fcache_reads
 * (src/feature_cache.c): for every model given, the clone serializes to the bytes of the
 * original, saves (with its external data) to the same files, owns its memory, and a model
 * cloned from a clone is still equal. With `-reads MODEL`: the subgraph-aware read check on
 * tests/cache/clone_sub.onnx. With `-time MODEL N`: milliseconds per clone vs a protobuf round
 * trip (informational).
 * usage: test_clone OUTDIR MODEL... | test_clone -reads clone_sub.onnx | test_clone -time MODEL N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "onnxtl.h"
#include "src/feature_cache.h"
#include "src/util.h"

static int fails;
#define CHECK(c, ...)                                                                                                \
    do {                                                                                                             \
        if (!(c)) {                                                                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                     \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
            fails++;                                                                                                 \
        }                                                                                                            \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int same_bytes(const otl_model *a, const otl_model *b)
{
    otl_error err = {0};
    uint8_t *ba = NULL, *bb = NULL;
    size_t la = 0, lb = 0;
    int same = otl_model_serialize(a, &ba, &la, &err) == OTL_OK && otl_model_serialize(b, &bb, &lb, &err) == OTL_OK &&
               la == lb && memcmp(ba, bb, la) == 0;
    free(ba);
    free(bb);
    return same;
}

static int same_file(const char *p, const char *q)
{
    otl_error err = {0};
    uint8_t *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    int ok = otl_read_file(p, (size_t)1 << 31, &a, &la, &err) == OTL_OK &&
             otl_read_file(q, (size_t)1 << 31, &b, &lb, &err) == OTL_OK && la == lb && memcmp(a, b, la) == 0;
    free(a);
    free(b);
    return ok;
}

static void check_model(const char *outdir, const char *path, int idx)
{
    otl_error err = {0};
    otl_model *m = NULL, *c = NULL, *cc = NULL;
    otl_load_opts lo = {.skip_validate = 1};
    if (otl_model_load(&m, path, &lo, &err)) {
        CHECK(0, "%s: %s", path, err.msg);
        return;
    }
    CHECK(otl_model_clone(m, &c, &err) == OTL_OK, "%s: clone: %s", path, err.msg);
    if (!c) {
        otl_model_free(m);
        return;
    }
    CHECK(same_bytes(m, c), "%s: the clone serializes to other bytes", path);
    CHECK(otl_model_clone(c, &cc, &err) == OTL_OK && same_bytes(m, cc), "%s: clone of the clone differs", path);
    CHECK(c->had_external_data == m->had_external_data, "%s: had_external_data", path);
    CHECK((!m->path && !c->path) || (m->path && c->path && strcmp(m->path, c->path) == 0), "%s: path", path);
    /* external data locations survive: both save to identical files (model and .data) */
    char p1[4096], p2[4096], d1[4200], d2[4200];
    snprintf(p1, sizeof p1, "%s/orig%d.onnx", outdir, idx);
    snprintf(p2, sizeof p2, "%s/clone%d.onnx", outdir, idx);
    snprintf(d1, sizeof d1, "%s.data", p1);
    snprintf(d2, sizeof d2, "%s.data", p2);
    CHECK(otl_model_save(m, p1, NULL, &err) == OTL_OK, "%s: save: %s", path, err.msg);
    CHECK(otl_model_save(c, p2, NULL, &err) == OTL_OK, "%s: save clone: %s", path, err.msg);
    struct stat sb;
    int has_data = stat(d1, &sb) == 0;
    CHECK(has_data == m->had_external_data, "%s: external data file %s expected %d", path, d1, m->had_external_data);
    CHECK(has_data == (stat(d2, &sb) == 0), "%s: the clone saves its external data differently", path);
    if (has_data) {
        CHECK(same_file(d1, d2), "%s: external data files differ", path);
        /* the model files name their data file: compare after loading both */
        otl_model *l1 = NULL, *l2 = NULL;
        CHECK(otl_model_load(&l1, p1, &lo, &err) == OTL_OK && otl_model_load(&l2, p2, &lo, &err) == OTL_OK, "%s",
              err.msg);
        for (int i = 0; l1 && l2 && i < l1->graph->n_inits; i++)
            CHECK(l1->graph->inits[i]->ext_location && l2->graph->inits[i]->ext_location,
                  "%s: initializer %d not external in the saved clone", path, i);
        otl_model_free(l1);
        otl_model_free(l2);
    } else {
        CHECK(same_file(p1, p2), "%s: saved files differ", path);
    }
    /* the copy owns its memory: changing it leaves the original alone */
    for (int i = 0; i < c->graph->n_inits; i++) {
        otl_tensor *t = c->graph->inits[i];
        if (t->data && t->nbytes) {
            CHECK(t->data != m->graph->inits[i]->data, "%s: shared data", path);
            memset(t->data, 0x5a, t->nbytes);
        }
        if (t->name[0])
            t->name[0] = '#';
    }
    for (int i = 0; i < c->graph->n_nodes; i++)
        otl_node_free(c->graph->nodes[i]);
    c->graph->n_nodes = 0;
    CHECK(!same_bytes(m, c) || m->graph->n_nodes == 0, "%s: changes to the clone not seen", path);
    CHECK(same_bytes(m, cc), "%s: changing a clone changed another", path);
    printf("%s: clone ok (%d nodes, %d initializers%s)\n", path, m->graph->n_nodes, m->graph->n_inits,
           m->had_external_data ? ", external data" : "");
    otl_model_free(m);
    otl_model_free(c);
    otl_model_free(cc);
}

static int check_reads(const char *path)
{
    otl_error err = {0};
    otl_model *m = NULL;
    otl_load_opts lo = {.skip_validate = 1};
    if (otl_model_load(&m, path, &lo, &err)) {
        fprintf(stderr, "FAIL %s: %s\n", path, err.msg);
        return 1;
    }
    const otl_graph *g = m->graph;
    int top = 0;
    for (int j = 0; j < g->n_nodes; j++)
        for (int q = 0; q < g->nodes[j]->n_inputs; q++)
            top |= strcmp(g->nodes[j]->inputs[q], "only_in_if") == 0 ||
                   strcmp(g->nodes[j]->inputs[q], "bn_mean_out") == 0;
    CHECK(!top, "%s: the test model reads only_in_if/bn_mean_out at the top level", path);
    CHECK(otl_fcache_reads(g, "only_in_if"), "only_in_if is read inside the If's then-branch");
    CHECK(otl_fcache_reads(g, "bn_mean_out"), "bn_mean_out is read inside the Loop body");
    CHECK(otl_fcache_reads(g, "bn_scale"), "bn_scale is read by the BatchNormalization");
    CHECK(otl_fcache_reads(g, "z"), "z is a graph output");
    CHECK(!otl_fcache_reads(g, "bn_var_out"), "bn_var_out is read nowhere");
    CHECK(!otl_fcache_reads(g, "names"), "names is read nowhere");
    otl_model_free(m);
    printf("%s: subgraph reads ok\n", path);
    return fails != 0;
}

static int time_clone(const char *path, int n)
{
    otl_error err = {0};
    otl_model *m = NULL;
    if (otl_model_load(&m, path, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        otl_model *c = NULL;
        if (otl_model_clone(m, &c, &err))
            return 1;
        otl_model_free(c);
    }
    double t1 = now_s();
    for (int i = 0; i < n; i++) { /* the former clone: serialize + parse */
        uint8_t *buf = NULL;
        size_t len = 0;
        otl_model *c = NULL;
        otl_load_opts lo = {.skip_validate = 1};
        if (otl_model_serialize(m, &buf, &len, &err) || otl_model_load_buffer(&c, buf, len, path, NULL, &lo, &err))
            return 1;
        free(buf);
        otl_model_free(c);
    }
    double t2 = now_s();
    printf("%s: clone %.2f ms, protobuf round trip %.2f ms\n", path, (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n);
    otl_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "-reads") == 0)
        return check_reads(argv[2]);
    if (argc == 4 && strcmp(argv[1], "-time") == 0)
        return time_clone(argv[2], atoi(argv[3]));
    if (argc < 3) {
        fprintf(stderr, "usage: test_clone OUTDIR MODEL... | -reads MODEL | -time MODEL N\n");
        return 2;
    }
    mkdir(argv[1], 0777);
    for (int i = 2; i < argc; i++)
        check_model(argv[1], argv[i], i);
    if (fails)
        fprintf(stderr, "%d check(s) failed\n", fails);
    return fails != 0;
}
