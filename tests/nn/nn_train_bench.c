/* nn_train_bench.c - time training steps (forward, backward, SGD update) of a model on one
 * batch: what a step of fine-tuning costs. On demand, not a test.
 *
 *   nn_train_bench MODEL INPUT_NAME X.npy LABELS.npy [--steps N] [--threads T] [--bn frozen]
 *
 * LABELS.npy: int64 class ids (cross-entropy loss). Prints each step's wall and CPU time (CPU
 * time is steadier on a shared machine; run with OMP_WAIT_POLICY=PASSIVE so that idle threads
 * do not spin) and the median of the steps after the first (which includes planning and oneDNN
 * primitive creation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "onnxtl.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void) /* user + system time of the process (all threads) */
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: nn_train_bench MODEL INPUT_NAME X.npy LABELS.npy [--steps N] [--threads T] [--bn frozen]\n");
        return 2;
    }
    int steps = 5, threads = 2, frozen = 0;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--bn") == 0 && i + 1 < argc)
            frozen = strcmp(argv[++i], "frozen") == 0;
        else {
            fprintf(stderr, "nn_train_bench: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (steps < 1 || steps > 10000)
        steps = 5;
    otl_error err = {0};
    otl_model *m = NULL;
    otl_trainer *t = NULL;
    otl_tensor *x = NULL, *y = NULL;
    double *ms = calloc((size_t)steps, sizeof *ms), *cpu = calloc((size_t)steps, sizeof *cpu);
    int status = 1;
    otl_trainer_opts o = {.grad = {.loss = OTL_LOSS_CE}, .optim = {.kind = OTL_OPT_SGD, .momentum = 0.9f},
                          .threads = threads, .bn_frozen = frozen};
    if (!ms || !cpu || otl_model_load(&m, argv[1], NULL, &err) || otl_npy_load(&x, argv[3], &err) ||
        otl_npy_load(&y, argv[4], &err))
        goto fail;
    free(x->name);
    x->name = malloc(strlen(argv[2]) + 1);
    strcpy(x->name, argv[2]);
    double t0 = now_ms();
    if (otl_trainer_new(&t, m, &o, &err))
        goto fail;
    printf("trainer_new %.1f ms\n", now_ms() - t0);
    for (int s = 0; s < steps; s++) {
        float loss;
        t0 = now_ms();
        double c0 = cpu_ms();
        if (otl_trainer_step(t, (const otl_tensor *const *)&x, 1, y, 1e-3f, &loss, &err))
            goto fail;
        ms[s] = now_ms() - t0;
        cpu[s] = cpu_ms() - c0;
        printf("step %d %.1f ms (cpu %.1f ms) loss %.5f\n", s, ms[s], cpu[s], loss);
    }
    if (steps > 1) {
        qsort(ms + 1, (size_t)steps - 1, sizeof *ms, cmp_d);
        qsort(cpu + 1, (size_t)steps - 1, sizeof *cpu, cmp_d);
        printf("steps after the first: median %.1f ms, min %.1f ms; cpu median %.1f ms\n", ms[1 + (steps - 1) / 2], ms[1],
               cpu[1 + (steps - 1) / 2]);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "nn_train_bench: %s\n", err.msg[0] ? err.msg : "out of memory");
done:
    free(ms);
    free(cpu);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_trainer_free(t);
    otl_model_free(m);
    return status;
}
