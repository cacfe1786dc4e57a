/* test_optim.c - the optimizers against torch.optim trajectories (tests/unit/data/optim, made
 * by make_optim_goldens.py): SGD with momentum/dampening/Nesterov/weight decay, Adam with L2,
 * AdamW, global norm clipping, per-parameter learning-rate multipliers. Exit 1 on mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

static const char *const configs[] = {"sgd", "sgd_momentum_wd", "sgd_nesterov", "sgd_dampening_clip",
                                      "adam_wd", "adamw", "adamw_clip"};

static const otl_tensor *get(otl_tensor **arr, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(arr[i]->name, name) == 0)
            return arr[i];
    fprintf(stderr, "test_optim: array '%s' missing\n", name);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/unit/data/optim";
    int failures = 0;
    for (size_t c = 0; c < sizeof configs / sizeof *configs; c++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.npz", dir, configs[c]);
        otl_error err = {0};
        otl_tensor **arr;
        int n;
        if (otl_npz_load(&arr, &n, path, &err)) {
            fprintf(stderr, "test_optim: %s\n", err.msg);
            return 1;
        }
        const double *cfg = get(arr, n, "cfg")->data;
        otl_optim_opts o = {.kind = (otl_opt_kind)cfg[0], .momentum = (float)cfg[2], .dampening = (float)cfg[3],
                            .nesterov = (int)cfg[4], .weight_decay = (float)cfg[5]};
        const otl_tensor *p[2] = {get(arr, n, "p0"), get(arr, n, "p1")};
        int64_t numel[2] = {p[0]->numel, p[1]->numel};
        otl_optim *opt;
        if (otl_optim_new(&opt, 2, numel, &o, &err)) {
            fprintf(stderr, "test_optim: %s\n", err.msg);
            return 1;
        }
        opt->lr_mult[1] = (float)cfg[7];
        for (int i = 0; i < 2; i++)
            memcpy(opt->param + opt->offset[i], p[i]->data, p[i]->nbytes);
        double worst = 0;
        for (int s = 0; s < 6; s++) {
            for (int i = 0; i < 2; i++) {
                char name[32];
                snprintf(name, sizeof name, "g%d_%d", s, i);
                const otl_tensor *g = get(arr, n, name);
                memcpy(opt->grad + opt->offset[i], g->data, g->nbytes);
            }
            if (cfg[6] > 0)
                otl_optim_clip(opt, cfg[6]);
            otl_optim_step(opt, (float)cfg[1]);
            for (int i = 0; i < 2; i++) {
                char name[32];
                snprintf(name, sizeof name, "w%d_%d", s, i);
                const otl_tensor *w = get(arr, n, name);
                const float *ref = w->data, *got = opt->param + opt->offset[i];
                for (int64_t j = 0; j < w->numel; j++) {
                    double e = fabs((double)ref[j] - got[j]) / (fabs(ref[j]) + 1e-3);
                    worst = e > worst ? e : worst;
                }
            }
        }
        int ok = worst < 2e-5;
        printf("%-20s max relative error %.3g %s\n", configs[c], worst, ok ? "ok" : "FAILED");
        failures += !ok;
        otl_optim_free(opt);
        otl_tensors_free(arr, n);
    }
    return failures ? 1 : 0;
}
