/* test_alloc.c - no per-step allocation (issue 7): once the input shapes repeat, a training step
 * and a pass of the training loop allocate nothing.
 *
 * The test links with -Wl,--wrap=malloc,... (tests/alloc.cmake), so every malloc, calloc,
 * realloc, aligned_alloc and posix_memalign call made by the library's own code (and this file)
 * goes through the counters below; oneDNN's, OpenMP's and libc's internal allocations are not
 * counted (they are not ours to remove).
 *
 *   test_alloc step MODEL INPUT_NAME N C H W [frozen]
 *       otl_trainer steps on random data (Adam, every parameter trainable, or only the classifier
 *       head's with `frozen`): 2 warm-up steps, then 5 counted steps must allocate nothing, and a
 *       batch of another size after them must not make the first size allocate again (the
 *       session keeps the plan of each of the last two input shapes).
 *   test_alloc fit MODEL DATA_A BATCH_A DATA_B BATCH_B OUT.onnx [AUGMENT]
 *       otl_fit without validation or feature cache, 2 epochs over DATA_A in batches of BATCH_A
 *       and over DATA_B in batches of BATCH_B (chosen so that the two runs take different numbers
 *       of steps but plan the same shapes: one full and one tail batch size each, and open data
 *       sets that allocate alike: the same image folder, or .npz files): the two runs must
 *       allocate exactly as often, so the extra steps allocate nothing (per-epoch work such as the
 *       end-of-epoch model snapshot may allocate; it is the same in both runs).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "onnxtl_fit.h"

static long n_alloc;
/* OTL_ALLOC_TRACE=1: the counted calls' return addresses and counts are printed on failure (offsets
 * in the executable: addr2line -f -e test_alloc OFFSET names the allocating code). */
static int tracing;
static struct { void *pc; long n; } trace[256];

static void note(void *pc)
{
    n_alloc++;
    if (!tracing)
        return;
    int i = 0;
    while (i < 256 && trace[i].pc && trace[i].pc != pc)
        i++;
    if (i < 256) {
        trace[i].pc = pc;
        trace[i].n++;
    }
}

extern char __executable_start;

static void trace_print(void)
{
    for (int i = 0; i < 256 && trace[i].pc; i++)
        fprintf(stderr, "test_alloc: %ld allocations from 0x%lx\n", trace[i].n,
                (unsigned long)((char *)trace[i].pc - &__executable_start));
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t k);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);

void *__wrap_malloc(size_t n)
{
    note(__builtin_return_address(0));
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t k)
{
    note(__builtin_return_address(0));
    return __real_calloc(n, k);
}

void *__wrap_realloc(void *p, size_t n)
{
    note(__builtin_return_address(0));
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    note(__builtin_return_address(0));
    return __real_aligned_alloc(a, n);
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    note(__builtin_return_address(0));
    return __real_posix_memalign(p, a, n);
}

static int fail(const char *what, const otl_error *err)
{
    fprintf(stderr, "test_alloc: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    return 1;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffff) / 65536.0f - 0.5f;
}

static otl_tensor *batch(const char *name, int64_t n, int64_t c, int64_t h, int64_t w, otl_tensor **y, int classes)
{
    int64_t dims[4] = {n, c, h, w};
    otl_tensor *x = otl_tensor_new(name, OTL_DTYPE_FLOAT, 4, dims);
    *y = otl_tensor_new("y", OTL_DTYPE_INT64, 1, &n);
    if (!x || !*y)
        return NULL;
    x->nbytes = (size_t)(n * c * h * w) * sizeof(float);
    (*y)->nbytes = (size_t)n * sizeof(int64_t);
    x->data = malloc(x->nbytes);
    (*y)->data = malloc((*y)->nbytes);
    if (!x->data || !(*y)->data)
        return NULL;
    for (int64_t i = 0; i < n * c * h * w; i++)
        ((float *)x->data)[i] = frand();
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)(*y)->data)[i] = i % classes;
    return x;
}

/* Freeze every initializer but the classifier head's (as `freeze` would). */
static int freeze_backbone(otl_model *m, otl_error *err)
{
    otl_head head;
    otl_find_head(m->graph, &head);
    if (!head.found)
        return fail("no classifier head to keep trainable", NULL);
    const otl_node *hn = m->graph->nodes[head.node];
    size_t cap = 1;
    for (int i = 0; i < m->graph->n_inits; i++)
        cap += strlen(m->graph->inits[i]->name) + 1;
    char *list = calloc(cap, 1);
    if (!list)
        return fail("out of memory", NULL);
    for (int i = 0; i < m->graph->n_inits; i++) {
        const char *nm = m->graph->inits[i]->name;
        int in_head = 0;
        for (int k = 0; k < hn->n_inputs; k++)
            in_head |= strcmp(hn->inputs[k], nm) == 0;
        if (!in_head) {
            strcat(list, nm);
            strcat(list, "\n");
        }
    }
    otl_status st = otl_model_meta_set(m, "onnx_tl.frozen", list, err);
    free(list);
    return st ? fail("freezing the backbone", err) : 0;
}

/* n steps on x; the labels change from step to step, as a shuffled data set's do */
static int run_steps(otl_trainer *t, const otl_tensor *x, otl_tensor *y, int n, float *loss, otl_error *err)
{
    for (int i = 0; i < n; i++) {
        int64_t *l = y->data;
        for (int64_t k = 0; k < y->numel; k++)
            l[k] = (l[k] + k + 1) % 2;
        if (otl_trainer_step(t, &x, 1, y, 1e-3f, loss, err))
            return fail("training step", err);
    }
    return 0;
}

static int test_step(int argc, char **argv)
{
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "frozen") == 0))
        return fail("usage: test_alloc step MODEL INPUT_NAME N C H W [frozen]", NULL);
    int64_t n = atoll(argv[4]), c = atoll(argv[5]), h = atoll(argv[6]), w = atoll(argv[7]);
    otl_error err = {0};
    otl_model *m = NULL;
    if (otl_model_load(&m, argv[2], NULL, &err))
        return fail("loading the model", &err);
    if (argc == 9 && freeze_backbone(m, &err))
        return 1;
    otl_trainer_opts o = {.grad = {.loss = OTL_LOSS_CE}, .optim = {.kind = OTL_OPT_ADAM}, .threads = 2, .seed = 1};
    otl_trainer *t = NULL;
    if (otl_trainer_new(&t, m, &o, &err))
        return fail("creating the trainer", &err);
    otl_tensor *y = NULL, *y2 = NULL;
    otl_tensor *x = batch(argv[3], n, c, h, w, &y, 2);
    otl_tensor *x2 = batch(argv[3], n / 2 + 1, c, h, w, &y2, 2);
    if (!x || !x2)
        return fail("out of memory", NULL);
    float loss0 = 0, loss = 0;
    if (run_steps(t, x, y, 1, &loss0, &err) || run_steps(t, x, y, 1, &loss, &err))
        return 1;
    long before = n_alloc;
    tracing = getenv("OTL_ALLOC_TRACE") != NULL;
    if (run_steps(t, x, y, 5, &loss, &err))
        return 1;
    long steady = n_alloc - before;
    tracing = 0;
    /* a tail batch of another size, then the first size again: both plans are kept */
    if (run_steps(t, x2, y2, 2, &loss, &err))
        return 1;
    before = n_alloc;
    if (run_steps(t, x, y, 2, &loss, &err) || run_steps(t, x2, y2, 2, &loss, &err))
        return 1;
    long alternating = n_alloc - before;
    const otl_tensor *pred = otl_trainer_prediction(t);
    printf("%s: loss %.4f -> %.4f; allocations in 5 steps: %ld; in 4 steps alternating batch %lld / %lld: %ld\n",
           argv[2], loss0, loss, steady, (long long)n, (long long)x2->dims[0], alternating);
    int bad = 0;
    if (steady != 0 || alternating != 0) {
        trace_print();
        bad = fail("training steps allocated memory", NULL);
    }
    if (!pred || pred->rank != 2 || pred->dims[0] != x2->dims[0])
        bad = fail("the prediction view does not have the last batch's shape", NULL);
    if (!(loss == loss) || !(loss0 == loss0))
        bad = fail("non-finite loss", NULL);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_tensor_free(x2);
    otl_tensor_free(y2);
    otl_trainer_free(t);
    otl_model_free(m);
    return bad;
}

static int fit_count(const char *model, const char *data, const char *out, int64_t batch, const char *augment,
                     long *count)
{
    otl_fit_opts o;
    otl_fit_opts_init(&o);
    o.data = data;
    o.out = out;
    o.val_frac = 0;
    o.epochs = 2;
    o.batch = batch;
    o.lr = 1e-3;
    o.threads = 2;
    o.no_cache = 1;
    o.augment = augment;
    o.msg = NULL;
    otl_fit_result r;
    otl_error err = {0};
    long before = n_alloc;
    memset(trace, 0, sizeof trace);
    tracing = getenv("OTL_ALLOC_TRACE") != NULL;
    if (otl_fit(model, &o, &r, &err))
        return fail("otl_fit", &err);
    *count = n_alloc - before;
    tracing = 0;
    if (getenv("OTL_ALLOC_TRACE")) {
        fprintf(stderr, "test_alloc: %s, batch %lld:\n", data, (long long)batch);
        trace_print();
    }
    printf("%s, batch %lld, 2 epochs: %ld allocations, train loss %.4f\n", data, (long long)batch, *count,
           r.train_loss);
    return 0;
}

static int test_fit(int argc, char **argv)
{
    if (argc != 8 && argc != 9)
        return fail("usage: test_alloc fit MODEL DATA_A BATCH_A DATA_B BATCH_B OUT.onnx [AUGMENT]", NULL);
    long a = 0, b = 0;
    const char *aug = argc == 9 ? argv[8] : NULL;
    if (fit_count(argv[2], argv[3], argv[7], atoll(argv[4]), aug, &a) ||
        fit_count(argv[2], argv[5], argv[7], atoll(argv[6]), aug, &b))
        return 1;
    if (a != b) {
        fprintf(stderr, "test_alloc: 2 epochs over %s (batch %s) made %ld allocations, over %s (batch %s) %ld: "
                "training steps allocate\n", argv[3], argv[4], a, argv[5], argv[6], b);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "step") == 0)
        return test_step(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "fit") == 0)
        return test_fit(argc, argv);
    return fail("usage: test_alloc step|fit ...", NULL);
}
