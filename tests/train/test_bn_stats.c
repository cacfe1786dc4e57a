/* test_bn_stats.c - BatchNormalization running statistics during training: after 6 SGD steps
 * on a small BN CNN the running mean/var written back by the trainer match PyTorch's
 * model.train() steps within 1e-5 (tests/train/bn, made by make_bn_golden.py), both with the
 * exporter's statistics outputs and with them removed from the nodes; with --bn frozen they do
 * not change. Exit 1 on mismatch or error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

static const char *const stats[] = {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"};

static otl_tensor *slice(const otl_tensor *t, int i, const char *name)
{
    otl_tensor *s = otl_tensor_new(name, t->dtype, t->rank - 1, t->dims + 1);
    if (!s)
        return NULL;
    s->nbytes = (size_t)otl_dtype_nbytes(t->dtype, s->numel);
    if (!(s->data = malloc(s->nbytes))) {
        otl_tensor_free(s);
        return NULL;
    }
    memcpy(s->data, (const char *)t->data + (size_t)i * s->nbytes, s->nbytes);
    return s;
}

static int run(const char *dir, int strip, int frozen)
{
    char path[1024];
    otl_error err = {0};
    otl_model *m = NULL, *orig = NULL;
    otl_tensor *x = NULL, *y = NULL;
    otl_trainer *t = NULL;
    int bad = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (otl_model_load(&m, path, NULL, &err) || otl_model_clone(m, &orig, &err))
        goto fail;
    if (strip) /* keep only output 0 of each BatchNormalization */
        for (int i = 0; i < m->graph->n_nodes; i++) {
            otl_node *n = m->graph->nodes[i];
            if (strcmp(n->op_type, "BatchNormalization") == 0)
                for (; n->n_outputs > 1; n->n_outputs--)
                    free(n->outputs[n->n_outputs - 1]);
        }
    snprintf(path, sizeof path, "%s/x.npy", dir);
    if (otl_npy_load(&x, path, &err))
        goto fail;
    snprintf(path, sizeof path, "%s/y.npy", dir);
    if (otl_npy_load(&y, path, &err))
        goto fail;
    otl_trainer_opts to = {.grad = {.loss = OTL_LOSS_CE}, .optim = {.kind = OTL_OPT_SGD, .momentum = 0.9f},
                           .threads = 1, .bn_frozen = frozen};
    if (otl_trainer_new(&t, m, &to, &err))
        goto fail;
    for (int s = 0; s < x->dims[0]; s++) {
        otl_tensor *xs = slice(x, s, "input"), *ys = slice(y, s, "y");
        float loss = 0;
        const otl_tensor *in[1] = {xs};
        otl_status st = xs && ys ? otl_trainer_step(t, in, 1, ys, 0.1f, &loss, &err) : OTL_ERR_NOMEM;
        otl_tensor_free(xs);
        otl_tensor_free(ys);
        if (st)
            goto fail;
    }
    if (otl_trainer_write_params(t, m, &err))
        goto fail;
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        const otl_tensor *got = otl_graph_find_init(m->graph, stats[k]);
        const otl_tensor *ref0 = otl_graph_find_init(orig->graph, stats[k]);
        otl_tensor *want = NULL;
        snprintf(path, sizeof path, "%s/%s.npy", dir, stats[k]);
        if (!frozen && otl_npy_load(&want, path, &err))
            goto fail;
        const otl_tensor *ref = frozen ? ref0 : want;
        if (!got || got->numel != ref->numel) {
            fprintf(stderr, "%s: missing or wrong size\n", stats[k]);
            bad = 1;
        } else {
            for (int64_t i = 0; i < got->numel; i++) {
                double e = fabs((double)((float *)got->data)[i] - ((float *)ref->data)[i]);
                worst = fmax(worst, e);
                if (frozen ? e != 0 : e > 1e-5) {
                    fprintf(stderr, "%s[%lld]: %.7g, expected %.7g\n", stats[k], (long long)i,
                            ((float *)got->data)[i], ((float *)ref->data)[i]);
                    bad = 1;
                }
            }
            /* the statistics must have moved in training mode */
            if (!frozen && memcmp(got->data, ref0->data, got->nbytes) == 0) {
                fprintf(stderr, "%s: unchanged by training\n", stats[k]);
                bad = 1;
            }
        }
        otl_tensor_free(want);
    }
    printf("%s%s: max difference %.3g %s\n", frozen ? "frozen" : "train", strip ? " (outputs added)" : "", worst,
           bad ? "FAILED" : "ok");
    goto done;
fail:
    fprintf(stderr, "error: %s\n", err.msg);
    bad = 1;
done:
    otl_trainer_free(t);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_model_free(m);
    otl_model_free(orig);
    return bad;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/train/bn";
    int bad = run(dir, 0, 0);
    bad |= run(dir, 1, 0);
    bad |= run(dir, 0, 1);
    return bad;
}
