/* train_step.c - training-step throughput of libonnxtl on synthetic tensors (bench/train).
 *
 *   train_step MODEL.onnx [--batch 32] [--threads 2] [--steps 5] [--warmup 2] [--head-only]
 *              [--bn train|frozen] [--lr 0.01] [--momentum 0.9] [--seed 0] [--precision fp32|bf16] [--json]
 *
 * Uses otl_trainer directly (no data pipeline): one seeded batch of normal(0, 1) images of the
 * model's input shape and int64 class ids in [0, classes), the same every step, SGD with
 * momentum, softmax cross-entropy on the first output. --head-only freezes every initializer
 * but the classifier head's (otl_find_head), like `onnx-tl freeze --all-but-head`. The first
 * --warmup steps (planning, oneDNN primitive creation) are not timed; then --steps steps are,
 * each on its own. Prints one line per timed step and a summary; --json prints the summary as
 * one JSON object instead: median / min step time (ms), images/s from the median, CPU time per
 * step, peak RSS of the process (VmHWM), first and last loss.
 * OTL_PROFILE=1 prints the per-op wall time of the training session when it ends. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "onnxtl.h"
#include "synth_batch.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* Peak RSS of this process image in KiB: VmHWM of /proc/self/status. Not getrusage's ru_maxrss:
 * Linux carries that across fork and exec, so a process started by a Python parent that has
 * loaded PyTorch reports at least the parent's RSS (bench/train's parent: about 500 MB). */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int usage(void)
{
    fprintf(stderr, "usage: train_step MODEL.onnx [--batch N] [--threads N] [--steps N] [--warmup N] [--head-only]\n"
                    "                  [--bn train|frozen] [--lr F] [--momentum F] [--seed N] [--precision fp32|bf16]\n"
                    "                  [--json]\n");
    return 2;
}

/* Mark every initializer but the head's as frozen (metadata onnx_tl.frozen). */
static int freeze_all_but_head(otl_model *m, otl_error *err)
{
    otl_head head;
    otl_find_head(m->graph, &head);
    if (!head.found) {
        otl_error_set(err, OTL_ERR_INPUT, "%s: no classifier head to keep trainable", m->path);
        return 0;
    }
    const otl_graph *g = m->graph;
    const otl_node *hn = g->nodes[head.node];
    const otl_node *bn = head.bias_node >= 0 ? g->nodes[head.bias_node] : NULL;
    size_t cap = 1;
    for (int i = 0; i < g->n_inits; i++)
        cap += strlen(g->inits[i]->name) + 1;
    char *list = calloc(cap, 1);
    if (!list) {
        otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        return 0;
    }
    for (int i = 0; i < g->n_inits; i++) {
        const char *nm = g->inits[i]->name;
        int in_head = 0;
        for (int k = 0; k < hn->n_inputs; k++)
            in_head |= strcmp(hn->inputs[k], nm) == 0;
        for (int k = 0; bn && k < bn->n_inputs; k++)
            in_head |= strcmp(bn->inputs[k], nm) == 0;
        if (!in_head) {
            strcat(list, nm);
            strcat(list, "\n");
        }
    }
    otl_status st = otl_model_meta_set(m, "onnx_tl.frozen", list, err);
    free(list);
    return st == OTL_OK;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *bn = "train", *prec = "fp32";
    int batch = 32, threads = 2, steps = 5, warmup = 2, head_only = 0, json = 0;
    double lr = 0.01, momentum = 0.9;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--head-only") == 0)
            head_only = 1;
        else if (strcmp(a, "--json") == 0)
            json = 1;
        else if (a[0] == '-' && a[1] == '-' && !v)
            return usage();
        else if (strcmp(a, "--batch") == 0)
            batch = atoi(argv[++i]);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(argv[++i]);
        else if (strcmp(a, "--steps") == 0)
            steps = atoi(argv[++i]);
        else if (strcmp(a, "--warmup") == 0)
            warmup = atoi(argv[++i]);
        else if (strcmp(a, "--bn") == 0)
            bn = argv[++i];
        else if (strcmp(a, "--lr") == 0)
            lr = atof(argv[++i]);
        else if (strcmp(a, "--momentum") == 0)
            momentum = atof(argv[++i]);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--precision") == 0)
            prec = argv[++i];
        else if (a[0] == '-' || path)
            return usage();
        else
            path = a;
    }
    if (!path || batch < 1 || steps < 1 || warmup < 0 || threads < 0 ||
        (strcmp(bn, "train") != 0 && strcmp(bn, "frozen") != 0) || otl_precision_parse(prec) < 0)
        return usage();

    otl_error err = {0};
    otl_model *m = NULL;
    otl_trainer *tr = NULL;
    otl_tensor *x = NULL, *y = NULL;
    double *times = calloc((size_t)steps, sizeof *times);
    int status = 1;
    if (!times || otl_model_load(&m, path, NULL, &err))
        goto fail;
    if (head_only && !freeze_all_but_head(m, &err))
        goto fail;
    if (synth_batch(m, batch, seed, &x, &y, &err)) /* the same seeded batch every step */
        goto fail;

    otl_trainer_opts o = {.grad = {.loss = OTL_LOSS_CE},
                          .optim = {.kind = OTL_OPT_SGD, .momentum = (float)momentum},
                          .threads = threads, .bn_frozen = strcmp(bn, "frozen") == 0, .seed = seed,
                          .precision = otl_precision_parse(prec)};
    if (otl_trainer_new(&tr, m, &o, &err))
        goto fail;
    int n_params = otl_trainer_graph(tr)->n_params;
    const otl_tensor *xin[1] = {x};
    float loss = 0, loss0 = 0;
    double c0 = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup)
            c0 = cpu_ms();
        double t0 = now_ms();
        if (otl_trainer_step(tr, xin, 1, y, (float)lr, &loss, &err))
            goto fail;
        double t = now_ms() - t0;
        if (s == 0)
            loss0 = loss;
        if (s >= warmup) {
            times[s - warmup] = t;
            if (!json)
                printf("step %d: %.1f ms, loss %.5f\n", s - warmup, t, loss);
        } else if (!json) {
            printf("warm-up %d: %.1f ms, loss %.5f\n", s, t, loss);
        }
    }
    double cpu = (cpu_ms() - c0) / steps;
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double med = steps % 2 ? times[steps / 2] : (times[steps / 2 - 1] + times[steps / 2]) / 2;
    long rss_kb = peak_rss_kb();
    if (!isfinite(loss)) {
        otl_error_set(&err, OTL_ERR_INTERNAL, "%s: the loss is not finite (%g)", path, loss);
        goto fail;
    }
    if (json)
        printf("{\"model\": \"%s\", \"batch\": %d, \"threads\": %d, \"head_only\": %s, \"bn\": \"%s\", "
               "\"precision\": \"%s\", \"trainable_tensors\": %d, \"steps\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, "
               "\"img_s\": %.3f, \"cpu_ms_per_step\": %.3f, \"peak_rss_kb\": %ld, \"loss_first\": %.6f, "
               "\"loss_last\": %.6f}\n",
               path, batch, threads, head_only ? "true" : "false", bn, prec, n_params, steps, med, times[0],
               batch * 1000.0 / med, cpu, rss_kb, loss0, loss);
    else
        printf("%s: batch %d, %d threads, %s, %s, %d trainable tensors: median %.1f ms/step (min %.1f), %.2f img/s, "
               "CPU %.1f ms/step, peak RSS %ld MB, loss %.4f -> %.4f\n",
               path, batch, threads, head_only ? "head only" : "full", prec, n_params, med, times[0],
               batch * 1000.0 / med, cpu, rss_kb / 1024, loss0, loss);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "train_step: %s\n", err.msg);
done:
    otl_trainer_free(tr);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_model_free(m);
    free(times);
    return status;
}
