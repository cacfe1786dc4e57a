/* test_schedule.c - learning-rate schedules (src/schedule.c) against the sequences of
 * torch.optim.lr_scheduler in tests/train/sched (made by make_sched_golden.py): 12 epochs of 5
 * steps, relative difference at most 1e-9 per step. Exit 1 on mismatch or error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "onnxtl_fit.h"

static int check(const char *dir, const char *name, const otl_schedule *s0, int momentum, const double *metric)
{
    char path[1024];
    otl_error err = {0};
    otl_tensor *ref = NULL;
    snprintf(path, sizeof path, "%s/sched_%s.npy", dir, name);
    if (otl_npy_load(&ref, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    otl_schedule s = *s0;
    const double *want = ref->data;
    int bad = ref->dtype != OTL_DTYPE_DOUBLE || ref->numel != 60;
    double worst = 0;
    for (int64_t i = 0; !bad && i < ref->numel; i++) {
        double got = momentum ? otl_schedule_momentum(&s, i) : otl_schedule_lr(&s, i);
        double e = fabs(got - want[i]) / fmax(fabs(want[i]), 1e-12);
        worst = fmax(worst, e);
        if (e > 1e-9) {
            fprintf(stderr, "%s: step %lld: %.12g, PyTorch %.12g\n", name, (long long)i, got, want[i]);
            bad = 1;
        }
        if (metric && (i + 1) % s.steps_per_epoch == 0)
            otl_schedule_epoch_end(&s, metric[i / s.steps_per_epoch]);
    }
    printf("%-14s max relative difference %.3g %s\n", name, worst, bad ? "FAILED" : "ok");
    otl_tensor_free(ref);
    return bad;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/train/sched";
    otl_schedule s;
    int bad = 0;
    otl_schedule_init(&s, OTL_SCHED_STEP, 0.1, 60, 5);
    s.step_size = 3;
    s.gamma = 0.5;
    bad |= check(dir, "step", &s, 0, NULL);
    otl_schedule_init(&s, OTL_SCHED_COSINE, 0.1, 60, 5);
    s.min_lr = 1e-3;
    bad |= check(dir, "cosine", &s, 0, NULL);
    s.min_lr = 0;
    s.warmup = 10;
    bad |= check(dir, "cosine_warm", &s, 0, NULL);
    otl_schedule_init(&s, OTL_SCHED_CONSTANT, 0.05, 60, 5);
    s.warmup = 7;
    bad |= check(dir, "constant_warm", &s, 0, NULL);
    otl_schedule_init(&s, OTL_SCHED_ONECYCLE, 0.1, 60, 5);
    bad |= check(dir, "onecycle", &s, 0, NULL);
    bad |= check(dir, "onecycle_mom", &s, 1, NULL);
    otl_tensor *metric = NULL;
    otl_error err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/plateau_metric.npy", dir);
    if (otl_npy_load(&metric, path, &err) || metric->dtype != OTL_DTYPE_DOUBLE || metric->numel != 12) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        bad = 1;
    } else {
        otl_schedule_init(&s, OTL_SCHED_PLATEAU, 0.1, 60, 5);
        s.plateau_patience = 2;
        s.plateau_factor = 0.5;
        bad |= check(dir, "plateau", &s, 0, metric->data);
    }
    otl_tensor_free(metric);
    if (otl_schedule_parse("cosine") != OTL_SCHED_COSINE || otl_schedule_parse("bogus") != -1)
        bad = 1;
    return bad;
}
