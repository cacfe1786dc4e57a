/* test_scratch.c - one oneDNN scratchpad per session (issue 7: scratchpads shared).
 *
 *   test_scratch unit
 *       The engine's scratchpad (ops/kernel_util.c) on primitives made here: after each creation
 *       through otl_dnnl_primitive its size is the largest scratchpad any of them needs (rounded up
 *       to 4 KiB), found by querying each primitive descriptor here, and the count of primitives
 *       that use it is right; runs never grow it; a primitive created after the runs grows it, and
 *       the earlier primitives then run on the new buffer with the same results; a convolution in
 *       oneDNN's library scratchpad mode computes the same numbers, and OTL_SCRATCH_CHECK=1 refuses
 *       to create or run such a primitive.
 *   test_scratch model MODEL INPUT.npy INPUT_NAME [inference]
 *       A whole model, in inference and (unless `inference`) as a training graph (forward and backward, training-mode
 *       BatchNormalization; cross-entropy on a rank-2 output, else mean squared error), 3 runs
 *       each: no primitive in library mode, the scratchpad sized at the first run and unchanged by
 *       the later ones, the same number of scratchpad runs per pass; the outputs (loss and
 *       gradients included) equal bit for bit those of the same session with every primitive in
 *       library mode (OTL_SCRATCH_LIBRARY=1, the behaviour before the shared scratchpad), and that
 *       session fails under OTL_SCRATCH_CHECK=1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "ops/op.h"

static int fails;

#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, "test_scratch: %s:%d: ", __FILE__, __LINE__);                                            \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fprintf(stderr, "\n");                                                                                   \
            fails++;                                                                                                 \
        }                                                                                                            \
    } while (0)

static size_t round4k(size_t n)
{
    return (n + 4095) & ~(size_t)4095;
}

/* ------------------------------------------------------------ unit */

typedef struct conv {
    int ic, oc, hw, kk;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    size_t need;                /* the pd's scratchpad, queried here */
    dnnl_memory_t src, wei, dst;
    float *x, *w, *y, *y0;
    size_t ny;
} conv;

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffff) / 65536.0f - 0.5f;
}

/* A plain-layout (nchw, oihw) convolution, padded to keep the size: oneDNN runs these as
 * im2col + GEMM, with a scratchpad. user: through otl_pd_create (user mode), else library mode. */
static int conv_pd(otl_kctx *k, conv *c, int user)
{
    dnnl_memory_desc_t s, w, d;
    dnnl_dims_t sd = {2, c->ic, c->hw, c->hw}, wd = {c->oc, c->ic, c->kk, c->kk}, dd = {2, c->oc, c->hw, c->hw};
    dnnl_dims_t st = {1, 1}, pad = {c->kk / 2, c->kk / 2};
    dnnl_convolution_desc_t cd;
    if (dnnl_memory_desc_init_by_tag(&s, 4, sd, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&d, 4, dd, dnnl_f32, dnnl_nchw) ||
        dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &s, &w, NULL, &d, st,
                                           pad, pad))
        return -1;
    dnnl_status_t r = user ? otl_pd_create(&c->pd, &cd, NULL, k->eng->eng, NULL)
                           : dnnl_primitive_desc_create(&c->pd, &cd, NULL, k->eng->eng, NULL);
    if (r != dnnl_success)
        return -1;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(c->pd, dnnl_query_scratchpad_md, 0);
    c->need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    size_t nx = (size_t)2 * c->ic * c->hw * c->hw, nw = (size_t)c->oc * c->ic * c->kk * c->kk;
    c->ny = (size_t)2 * c->oc * c->hw * c->hw;
    if (!c->x) {
        c->x = malloc(nx * sizeof(float));
        c->w = malloc(nw * sizeof(float));
        c->y = calloc(c->ny, sizeof(float));
        c->y0 = calloc(c->ny, sizeof(float));
        if (!c->x || !c->w || !c->y || !c->y0)
            return -1;
        for (size_t i = 0; i < nx; i++)
            c->x[i] = frand();
        for (size_t i = 0; i < nw; i++)
            c->w[i] = frand();
    }
    if (dnnl_memory_create(&c->src, &s, k->eng->eng, c->x) || dnnl_memory_create(&c->wei, &w, k->eng->eng, c->w) ||
        dnnl_memory_create(&c->dst, &d, k->eng->eng, c->y))
        return -1;
    return 0;
}

static otl_status conv_run(otl_kctx *k, conv *c)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->wei}, {DNNL_ARG_DST, c->dst}};
    return otl_dnnl_run(k, c->prim, 3, args);
}

static void conv_free(conv *c)
{
    if (c->prim)
        dnnl_primitive_destroy(c->prim);
    if (c->pd)
        dnnl_primitive_desc_destroy(c->pd);
    if (c->src)
        dnnl_memory_destroy(c->src);
    if (c->wei)
        dnnl_memory_destroy(c->wei);
    if (c->dst)
        dnnl_memory_destroy(c->dst);
    free(c->x);
    free(c->w);
    free(c->y);
    free(c->y0);
}

static int test_unit(void)
{
    unsetenv("OTL_SCRATCH_CHECK");
    unsetenv("OTL_SCRATCH_LIBRARY");
    otl_engine e = {0};
    otl_error err = {0};
    otl_node node = {.name = "scratch", .op_type = "Test"};
    otl_kctx k = {.node = &node, .file = "test_scratch", .err = &err, .eng = &e};
    if (dnnl_engine_create(&e.eng, dnnl_cpu, 0) || dnnl_stream_create(&e.stream, e.eng, dnnl_stream_default_flags)) {
        fprintf(stderr, "test_scratch: cannot create a oneDNN engine\n");
        return 1;
    }
    /* the largest in the middle; the last one only after the runs */
    enum { NC = 4 };
    static const int shapes[NC][4] = {{8, 8, 8, 3}, {3, 8, 16, 3}, {4, 8, 12, 3}, {0}};
    conv cs[NC] = {0};
    for (int i = 0; i < NC; i++) {
        cs[i].ic = shapes[i][0];
        cs[i].oc = shapes[i][1];
        cs[i].hw = shapes[i][2];
        cs[i].kk = shapes[i][3];
    }
    size_t max = 0;
    int users = 0, distinct = 0;
    for (int i = 0; i < NC - 1; i++) {
        conv *c = &cs[i];
        if (conv_pd(&k, c, 1)) {
            fprintf(stderr, "test_scratch: cannot make convolution %d\n", i);
            return 1;
        }
        if (otl_dnnl_primitive(&k, c->pd, &c->prim, "convolution")) {
            fprintf(stderr, "test_scratch: %s\n", err.msg);
            return 1;
        }
        if (c->need > 0) {
            users++;
            distinct += c->need != max;
        }
        if (c->need > max)
            max = c->need;
        printf("convolution %d: scratchpad %zu bytes; engine: %zu bytes (largest need %zu), %d primitives\n", i,
               c->need, e.scratch_size, e.scratch_need, e.n_scratch_prims);
        CHECK(e.scratch_need == max, "largest need %zu, expected %zu", e.scratch_need, max);
        CHECK(e.scratch_size == round4k(max), "scratchpad %zu bytes, expected %zu", e.scratch_size, round4k(max));
        CHECK(e.n_scratch_prims == users, "%d primitives counted, expected %d", e.n_scratch_prims, users);
        CHECK(e.n_library_prims == 0, "%d library-mode primitives", e.n_library_prims);
        CHECK((e.scratch_mem != NULL) == (max > 0), "scratchpad memory object");
    }
    /* the test means something only if several primitives need different scratchpads */
    CHECK(users >= 3 && distinct >= 3, "only %d convolutions need a scratchpad (%d sizes): choose other shapes", users,
          distinct);
    dnnl_memory_t mem = e.scratch_mem;
    size_t size = e.scratch_size;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < NC - 1; i++)
            if (conv_run(&k, &cs[i])) {
                fprintf(stderr, "test_scratch: %s\n", err.msg);
                return 1;
            }
    CHECK(e.scratch_mem == mem && e.scratch_size == size, "runs grew the scratchpad (%zu -> %zu bytes)", size,
          e.scratch_size);
    CHECK(e.n_scratch_runs == 2 * users, "%ld scratchpad runs, expected %d", e.n_scratch_runs, 2 * users);
    CHECK(e.n_library_runs == 0, "%ld library-mode runs", e.n_library_runs);
    for (int i = 0; i < NC - 1; i++)
        memcpy(cs[i].y0, cs[i].y, cs[i].ny * sizeof(float));

    /* a larger one after the runs: the scratchpad grows at its creation */
    conv *big = &cs[NC - 1];
    /* oneDNN's im2col works by chunks, so its scratchpad does not simply grow with the shape: the
     * first of these that needs more than the others */
    static const int larger[][4] = {{16, 16, 24, 5}, {16, 16, 24, 7}, {32, 16, 24, 5}, {32, 32, 32, 7}};
    for (int j = 0; j < (int)(sizeof larger / sizeof *larger); j++) {
        conv_free(big);
        memset(big, 0, sizeof *big);
        big->ic = larger[j][0];
        big->oc = larger[j][1];
        big->hw = larger[j][2];
        big->kk = larger[j][3];
        if (conv_pd(&k, big, 1)) {
            fprintf(stderr, "test_scratch: cannot make the large convolution\n");
            return 1;
        }
        if (big->need > max)
            break;
    }
    if (otl_dnnl_primitive(&k, big->pd, &big->prim, "convolution")) {
        fprintf(stderr, "test_scratch: the large convolution: %s\n", err.msg);
        return 1;
    }
    printf("large convolution: scratchpad %zu bytes; engine: %zu bytes, %d primitives\n", big->need, e.scratch_size,
           e.n_scratch_prims);
    CHECK(big->need > max, "the large convolution needs %zu bytes, not more than %zu", big->need, max);
    if (big->need > max)
        max = big->need;
    CHECK(e.scratch_size == round4k(max) && e.scratch_need == max, "scratchpad %zu bytes after growth, expected %zu",
          e.scratch_size, round4k(max));
    CHECK(e.n_scratch_prims == users + 1, "%d primitives counted, expected %d", e.n_scratch_prims, users + 1);
    long runs = e.n_scratch_runs;
    for (int i = 0; i < NC; i++) {
        memset(cs[i].y, 0, cs[i].ny * sizeof(float));
        if (conv_run(&k, &cs[i])) {
            fprintf(stderr, "test_scratch: %s\n", err.msg);
            return 1;
        }
        if (i < NC - 1)
            CHECK(memcmp(cs[i].y, cs[i].y0, cs[i].ny * sizeof(float)) == 0,
                  "convolution %d computes other numbers on the grown scratchpad", i);
    }
    CHECK(e.scratch_size == round4k(max), "runs after growth changed the scratchpad");
    CHECK(e.n_scratch_runs == runs + users + 1, "%ld scratchpad runs, expected %ld", e.n_scratch_runs,
          runs + users + 1);

    /* library mode: the same numbers; counted; refused under OTL_SCRATCH_CHECK=1 */
    conv lib = cs[1];
    lib.pd = NULL;
    lib.prim = NULL;
    lib.src = lib.wei = lib.dst = NULL;
    lib.x = lib.w = lib.y = lib.y0 = NULL;
    if (conv_pd(&k, &lib, 0)) {
        fprintf(stderr, "test_scratch: cannot make the library-mode convolution\n");
        return 1;
    }
    memcpy(lib.x, cs[1].x, (size_t)2 * lib.ic * lib.hw * lib.hw * sizeof(float));
    memcpy(lib.w, cs[1].w, (size_t)lib.oc * lib.ic * lib.kk * lib.kk * sizeof(float));
    CHECK(otl_dnnl_primitive(&k, lib.pd, &lib.prim, "convolution") == OTL_OK, "library mode refused without the check");
    CHECK(e.n_library_prims == 1, "%d library-mode primitives counted, expected 1", e.n_library_prims);
    CHECK(lib.prim && conv_run(&k, &lib) == OTL_OK, "library-mode run: %s", err.msg);
    CHECK(e.n_library_runs == 1, "%ld library-mode runs, expected 1", e.n_library_runs);
    CHECK(memcmp(lib.y, cs[1].y0, lib.ny * sizeof(float)) == 0,
          "the convolution computes other numbers in library mode than with the shared scratchpad");
    setenv("OTL_SCRATCH_CHECK", "1", 1);
    memset(&err, 0, sizeof err);
    CHECK(lib.prim && conv_run(&k, &lib) != OTL_OK && strstr(err.msg, "library scratchpad mode"),
          "OTL_SCRATCH_CHECK=1 let a library-mode primitive run (%s)", err.msg);
    dnnl_primitive_t p2 = NULL;
    memset(&err, 0, sizeof err);
    CHECK(otl_dnnl_primitive(&k, lib.pd, &p2, "convolution") != OTL_OK && !p2 && strstr(err.msg, "library scratchpad"),
          "OTL_SCRATCH_CHECK=1 let a library-mode primitive be created (%s)", err.msg);
    CHECK(conv_run(&k, &cs[0]) == OTL_OK, "OTL_SCRATCH_CHECK=1 refused a user-mode primitive: %s", err.msg);
    unsetenv("OTL_SCRATCH_CHECK");

    for (int i = 0; i < NC; i++)
        conv_free(&cs[i]);
    conv_free(&lib);
    otl_engine_scratch_free(&e);
    CHECK(!e.scratch && !e.scratch_mem && !e.scratch_size, "scratchpad not released");
    dnnl_stream_destroy(e.stream);
    dnnl_engine_destroy(e.eng);
    printf("%s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}

/* ------------------------------------------------------------ model */

typedef struct pass {
    otl_tensor **outs;          /* of the last run */
    int n_out;
    otl_session_stats st;
} pass;

/* 3 runs of m on inputs in a new session (library: with OTL_SCRATCH_LIBRARY=1), and the checks of
 * one session; p receives the last run's outputs. */
static int run_session(const char *what, const otl_model *m, int training, const otl_tensor *const *in, int n_in,
                       int library, pass *p)
{
    otl_error err = {0};
    otl_session *s = NULL;
    otl_session_opts o = {.threads = 2, .training = training};
    otl_session_stats st[3];
    memset(p, 0, sizeof *p);
    if (otl_session_new(&s, m, &o, &err)) {
        fprintf(stderr, "test_scratch: %s: %s\n", what, err.msg);
        return -1;
    }
    for (int r = 0; r < 3; r++) {
        otl_tensors_free(p->outs, p->n_out);
        p->outs = NULL;
        p->n_out = 0;
        if (otl_session_run(s, in, n_in, &p->outs, &p->n_out, &err) || otl_session_stats_get(s, &st[r], &err)) {
            fprintf(stderr, "test_scratch: %s: run %d: %s\n", what, r, err.msg);
            otl_session_free(s);
            return -1;
        }
    }
    otl_session_free(s);
    p->st = st[2];
    long r1 = st[0].n_scratch_runs, r2 = st[1].n_scratch_runs - r1, r3 = st[2].n_scratch_runs - st[1].n_scratch_runs;
    printf("%s: scratchpad %zu bytes, %ld + %ld + %ld scratchpad runs, %ld library-mode runs\n", what,
           st[2].scratch_bytes, r1, r2, r3, st[2].n_library_runs);
    if (library) {
        CHECK(st[2].scratch_bytes == 0 && st[2].n_scratch_runs == 0, "%s: primitives used the shared scratchpad", what);
        return 0;
    }
    CHECK(st[2].n_library_runs == 0, "%s: %ld primitive runs in library mode", what, st[2].n_library_runs);
    CHECK(st[0].scratch_bytes > 0 && r2 > 0, "%s: no primitive uses the shared scratchpad", what);
    CHECK(st[0].scratch_bytes % 4096 == 0, "%s: scratchpad of %zu bytes", what, st[0].scratch_bytes);
    CHECK(st[1].scratch_bytes == st[0].scratch_bytes && st[2].scratch_bytes == st[0].scratch_bytes,
          "%s: the scratchpad changed after the first run (%zu, %zu, %zu bytes)", what, st[0].scratch_bytes,
          st[1].scratch_bytes, st[2].scratch_bytes);
    CHECK(r2 == r3 && r1 >= r2, "%s: scratchpad runs per pass vary: %ld, %ld, %ld", what, r1, r2, r3);
    return 0;
}

static int same_outputs(const char *what, const pass *a, const pass *b)
{
    if (a->n_out != b->n_out) {
        fprintf(stderr, "test_scratch: %s: %d vs %d outputs\n", what, a->n_out, b->n_out);
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < a->n_out; i++)
        if (a->outs[i]->nbytes != b->outs[i]->nbytes ||
            memcmp(a->outs[i]->data, b->outs[i]->data, a->outs[i]->nbytes) != 0) {
            fprintf(stderr, "test_scratch: %s: output '%s' differs between the shared scratchpad and library mode\n",
                    what, a->outs[i]->name);
            ok = 0;
        }
    return ok;
}

static void pass_free(pass *p)
{
    otl_tensors_free(p->outs, p->n_out);
    memset(p, 0, sizeof *p);
}

static int test_model(const char *path, const char *npy, const char *name, int inference_only)
{
    unsetenv("OTL_SCRATCH_CHECK");
    unsetenv("OTL_SCRATCH_LIBRARY");
    otl_error err = {0};
    otl_model *m = NULL;
    otl_tensor *x = NULL, *y = NULL;
    otl_train_graph *tg = NULL;
    int status = 1;
    pass inf = {0}, inf_lib = {0}, trn = {0}, trn_lib = {0};
    if (otl_model_load(&m, path, NULL, &err) || otl_npy_load(&x, npy, &err)) {
        fprintf(stderr, "test_scratch: %s\n", err.msg);
        goto done;
    }
    free(x->name);
    x->name = strdup(name);
    const otl_tensor *in1[1] = {x};

    /* inference */
    setenv("OTL_SCRATCH_CHECK", "1", 1);
    if (run_session("inference", m, 0, in1, 1, 0, &inf))
        goto done;
    unsetenv("OTL_SCRATCH_CHECK");
    setenv("OTL_SCRATCH_LIBRARY", "1", 1);
    if (run_session("inference, library mode", m, 0, in1, 1, 1, &inf_lib))
        goto done;
    unsetenv("OTL_SCRATCH_LIBRARY");
    if (!same_outputs("inference", &inf, &inf_lib))
        fails++;
    if (inference_only) {
        CHECK(inf_lib.st.n_library_runs > 0, "OTL_SCRATCH_LIBRARY=1 had no effect");
        goto check;
    }

    /* training graph: loss and gradients */
    const otl_tensor *out0 = inf.outs[0];
    otl_grad_spec spec = {.loss = out0->rank == 2 ? OTL_LOSS_CE : OTL_LOSS_MSE};
    if (otl_train_graph_build(&tg, m, &spec, &err)) {
        fprintf(stderr, "test_scratch: training graph: %s\n", err.msg);
        goto done;
    }
    if (spec.loss == OTL_LOSS_CE) {
        int64_t n = out0->dims[0];
        y = otl_tensor_new(tg->target, OTL_DTYPE_INT64, 1, &n);
        if (y && (y->data = calloc((size_t)n, sizeof(int64_t))))
            for (int64_t i = 0; i < n; i++)
                ((int64_t *)y->data)[i] = i % out0->dims[1];
    } else {
        y = otl_tensor_new(tg->target, OTL_DTYPE_FLOAT, out0->rank, out0->dims);
        if (y && (y->data = calloc((size_t)out0->numel, sizeof(float))))
            for (int64_t i = 0; i < out0->numel; i++)
                ((float *)y->data)[i] = frand();
    }
    if (!y || !y->data) {
        fprintf(stderr, "test_scratch: out of memory\n");
        goto done;
    }
    y->nbytes = (size_t)y->numel * (spec.loss == OTL_LOSS_CE ? sizeof(int64_t) : sizeof(float));
    const otl_tensor *in2[2] = {x, y};
    setenv("OTL_SCRATCH_CHECK", "1", 1);
    if (run_session("training", tg->m, 1, in2, 2, 0, &trn))
        goto done;
    unsetenv("OTL_SCRATCH_CHECK");
    setenv("OTL_SCRATCH_LIBRARY", "1", 1);
    if (run_session("training, library mode", tg->m, 1, in2, 2, 1, &trn_lib))
        goto done;
    if (!same_outputs("training", &trn, &trn_lib))
        fails++;
    CHECK(trn_lib.st.n_library_runs > 0 && inf_lib.st.n_library_runs > 0, "OTL_SCRATCH_LIBRARY=1 had no effect");

check:
    /* the check catches library mode in a whole model */
    setenv("OTL_SCRATCH_LIBRARY", "1", 1);
    setenv("OTL_SCRATCH_CHECK", "1", 1);
    otl_session *s = NULL;
    otl_tensor **outs = NULL;
    int n_out = 0;
    otl_session_opts o = {.threads = 2};
    memset(&err, 0, sizeof err);
    otl_status st = otl_session_new(&s, m, &o, &err);
    if (!st)
        st = otl_session_run(s, in1, 1, &outs, &n_out, &err);
    otl_tensors_free(outs, n_out);
    otl_session_free(s);
    CHECK(st != OTL_OK && strstr(err.msg, "library scratchpad mode"),
          "OTL_SCRATCH_CHECK=1 did not catch primitives in library mode (%s)", err.msg);
    unsetenv("OTL_SCRATCH_LIBRARY");
    unsetenv("OTL_SCRATCH_CHECK");
    status = 0;
done:
    pass_free(&inf);
    pass_free(&inf_lib);
    pass_free(&trn);
    pass_free(&trn_lib);
    otl_train_graph_free(tg);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_model_free(m);
    if (status || fails)
        printf("FAILED\n");
    else
        printf("ok\n");
    return status || fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "unit") == 0)
        return test_unit();
    if ((argc == 5 || (argc == 6 && strcmp(argv[5], "inference") == 0)) && strcmp(argv[1], "model") == 0)
        return test_model(argv[2], argv[3], argv[4], argc == 6);
    fprintf(stderr, "usage: test_scratch unit | test_scratch model MODEL INPUT.npy INPUT_NAME [inference]\n");
    return 2;
}
