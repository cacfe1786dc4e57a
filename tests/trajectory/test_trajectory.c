/* test_trajectory.c - 30 training steps with SGD (momentum, weight decay) and AdamW on a small
 * CNN must reproduce PyTorch's loss trajectory (tests/trajectory/data, made by
 * make_goldens.py) within 1e-4 relative. Exit 1 on mismatch or error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

static int run(const char *dir, const char *name, otl_optim_opts oo, float lr)
{
    char path[1024];
    otl_error err = {0};
    otl_model *m = NULL;
    otl_tensor *x = NULL, *y = NULL, *ref = NULL;
    otl_trainer *t = NULL;
    int bad = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (otl_model_load(&m, path, NULL, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/x.npy", dir);
    if (otl_npy_load(&x, path, &err))
        goto fail;
    free(x->name);
    x->name = strdup("input");
    snprintf(path, sizeof path, "%s/y.npy", dir);
    if (otl_npy_load(&y, path, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/loss_%s.npy", dir, name);
    if (otl_npy_load(&ref, path, &err))
        goto fail;
    otl_trainer_opts to = {.grad = {.loss = OTL_LOSS_CE}, .optim = oo, .threads = 1};
    if (otl_trainer_new(&t, m, &to, &err))
        goto fail;
    const float *want = ref->data;
    double worst = 0;
    for (int s = 0; s < ref->numel; s++) {
        float loss;
        const otl_tensor *in[1] = {x};
        if (otl_trainer_step(t, in, 1, y, lr, &loss, &err))
            goto fail;
        double e = fabs((double)loss - want[s]) / fmax(1.0, fabs(want[s]));
        if (e > worst)
            worst = e;
        if (e > 1e-4) {
            fprintf(stderr, "%s: step %d: loss %.7f, PyTorch %.7f\n", name, s, loss, want[s]);
            bad = 1;
        }
    }
    printf("%-6s %lld steps, max relative loss difference %.3g %s\n", name, (long long)ref->numel, worst,
           bad ? "FAILED" : "ok");
    goto done;
fail:
    fprintf(stderr, "%s: %s\n", name, err.msg);
    bad = 1;
done:
    otl_trainer_free(t);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_tensor_free(ref);
    otl_model_free(m);
    return bad;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/trajectory/data";
    otl_optim_opts sgd = {.kind = OTL_OPT_SGD, .momentum = 0.9f, .weight_decay = 1e-4f};
    otl_optim_opts adamw = {.kind = OTL_OPT_ADAMW, .weight_decay = 0.01f};
    int bad = run(dir, "sgd", sgd, 0.05f);
    bad |= run(dir, "adamw", adamw, 3e-3f);
    return bad;
}
