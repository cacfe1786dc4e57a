/* bf16_grad.c - one training step of MODEL in float32 and in bf16 mixed precision on the same
 * seeded batch (normal(0, 1) inputs, random class ids): per trainable tensor the relative error
 * of the bf16 gradient, ||g_bf16 - g_fp32|| / max(||g_fp32||, floor * the largest ||g_fp32||)
 * (the floor keeps gradients that are analytically zero, such as a bias before a
 * BatchNormalization in training mode, from dividing noise by noise), the same over all
 * parameters at once, and the two losses (tests/bf16.cmake).
 *
 *   bf16_grad MODEL.onnx [--batch 8] [--seed 1] [--threads 2] [--bn train|frozen] [--tol 0.2]
 *             [--global-tol 0.05] [--loss-tol 1e-3] [--floor 1e-3] [--precision-only bf16|fp32]
 *
 * Prints one line per tensor ("grad NAME rel R norm N") and a summary ("max_rel R global_rel G
 * loss_fp32 L loss_bf16 L loss_rel E"). Exit status 0 when every tensor is within --tol, all of
 * them together within --global-tol, the losses within --loss-tol (relative) and the bf16
 * gradients are not bit-identical to the fp32 ones (which would mean bf16 was not used); 1
 * otherwise or on an error (one line on stderr). --precision-only P runs one step at precision P
 * and nothing else (for ONEDNN_VERBOSE logs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "bench/synth_batch.h"

/* One step at `precision` with lr 0: the gradients (copied, opt->total floats) and the loss. */
static otl_status one_step(const otl_model *m, int precision, int threads, int bn_frozen, const otl_tensor *x,
                           const otl_tensor *y, float **grad, int64_t *n, float *loss, otl_trainer **keep,
                           otl_error *err)
{
    otl_trainer_opts o = {.grad = {.loss = OTL_LOSS_CE}, .optim = {.kind = OTL_OPT_SGD}, .threads = threads,
                          .bn_frozen = bn_frozen, .seed = 1, .precision = precision};
    otl_trainer *t = NULL;
    otl_status st = otl_trainer_new(&t, m, &o, err);
    const otl_tensor *in[1] = {x};
    if (!st)
        st = otl_trainer_step(t, in, 1, y, 0.0f, loss, err);
    if (!st) {
        otl_optim *opt = otl_trainer_optim(t);
        *n = opt->total;
        if (!(*grad = malloc((size_t)opt->total * sizeof **grad + 1)))
            st = otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        else
            memcpy(*grad, opt->grad, (size_t)opt->total * sizeof **grad);
    }
    if (st || !keep)
        otl_trainer_free(t);
    else
        *keep = t;
    return st;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *bn = "train", *only = NULL;
    int batch = 8, threads = 2;
    uint64_t seed = 1;
    double tol = 0.2, global_tol = 0.05, loss_tol = 1e-3, floor_rel = 1e-3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] == '-' && !v) {
            fprintf(stderr, "bf16_grad: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--batch") == 0)
            batch = atoi(argv[++i]);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(argv[++i]);
        else if (strcmp(a, "--bn") == 0)
            bn = argv[++i];
        else if (strcmp(a, "--tol") == 0)
            tol = atof(argv[++i]);
        else if (strcmp(a, "--global-tol") == 0)
            global_tol = atof(argv[++i]);
        else if (strcmp(a, "--loss-tol") == 0)
            loss_tol = atof(argv[++i]);
        else if (strcmp(a, "--floor") == 0)
            floor_rel = atof(argv[++i]);
        else if (strcmp(a, "--precision-only") == 0)
            only = argv[++i];
        else if (a[0] == '-' || path) {
            fprintf(stderr, "usage: bf16_grad MODEL.onnx [--batch N] [--seed S] [--threads N] [--bn train|frozen] "
                            "[--tol T] [--global-tol T] [--loss-tol T] [--floor F] [--precision-only P]\n");
            return 2;
        }
        else
            path = a;
    }
    if (!path || batch < 1 || (only && otl_precision_parse(only) < 0)) {
        fprintf(stderr, "bf16_grad: bad arguments\n");
        return 2;
    }
    otl_error err = {0};
    otl_model *m = NULL;
    otl_tensor *x = NULL, *y = NULL;
    float *gf = NULL, *gb = NULL, lf = 0, lb = 0;
    int64_t nf = 0, nb = 0;
    otl_trainer *tf = NULL;
    int status = 1;
    if (otl_model_load(&m, path, NULL, &err) || synth_batch(m, batch, seed, &x, &y, &err))
        goto fail;
    int bn_frozen = strcmp(bn, "frozen") == 0;
    if (only) {
        if (one_step(m, otl_precision_parse(only), threads, bn_frozen, x, y, &gf, &nf, &lf, NULL, &err))
            goto fail;
        printf("loss_%s %.7g\n", only, (double)lf);
        status = 0;
        goto done;
    }
    if (one_step(m, OTL_PRECISION_FP32, threads, bn_frozen, x, y, &gf, &nf, &lf, &tf, &err) ||
        one_step(m, OTL_PRECISION_BF16, threads, bn_frozen, x, y, &gb, &nb, &lb, NULL, &err))
        goto fail;
    if (nf != nb) {
        otl_error_set(&err, OTL_ERR_INTERNAL, "%s: %lld and %lld gradient values", path, (long long)nf, (long long)nb);
        goto fail;
    }
    const otl_train_graph *tg = otl_trainer_graph(tf);
    const otl_optim *opt = otl_trainer_optim(tf);
    double max_rel = 0, max_norm = 0, d2_all = 0, f2_all = 0;
    int differ = 0, finite = 1;
    double *d2 = calloc((size_t)tg->n_params + 1, sizeof *d2), *f2 = calloc((size_t)tg->n_params + 1, sizeof *f2);
    if (!d2 || !f2) {
        free(d2);
        free(f2);
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int p = 0; p < tg->n_params; p++) {
        for (int64_t j = opt->offset[p]; j < opt->offset[p] + opt->numel[p]; j++) {
            double d = (double)gb[j] - (double)gf[j];
            d2[p] += d * d;
            f2[p] += (double)gf[j] * gf[j];
            differ |= gb[j] != gf[j];
            finite &= isfinite(gb[j]) && isfinite(gf[j]);
        }
        d2_all += d2[p];
        f2_all += f2[p];
        max_norm = fmax(max_norm, sqrt(f2[p]));
    }
    for (int p = 0; p < tg->n_params; p++) {
        double rel = sqrt(d2[p]) / fmax(sqrt(f2[p]), fmax(floor_rel * max_norm, 1e-30));
        if (rel > max_rel || isnan(rel))
            max_rel = isnan(rel) ? INFINITY : rel;
        printf("grad %s rel %.3e norm %.3e\n", tg->params[p], rel, sqrt(f2[p]));
    }
    free(d2);
    free(f2);
    double grel = sqrt(d2_all / fmax(f2_all, 1e-60));
    double lrel = fabs((double)lb - lf) / fmax(fabs((double)lf), 1e-30);
    printf("max_rel %.3e global_rel %.3e loss_fp32 %.7g loss_bf16 %.7g loss_rel %.3e\n", max_rel, grel, (double)lf,
           (double)lb, lrel);
    if (!finite)
        fprintf(stderr, "bf16_grad: non-finite gradients\n");
    else if (!differ)
        fprintf(stderr, "bf16_grad: bf16 gradients are bit-identical to fp32 ones: bf16 was not used\n");
    else if (max_rel > tol || grel > global_tol || lrel > loss_tol)
        fprintf(stderr, "bf16_grad: relative errors %.3e per tensor (tolerance %.3g), %.3e in all (%.3g), %.3e of the "
                        "loss (%.3g)\n", max_rel, tol, grel, global_tol, lrel, loss_tol);
    else
        status = 0;
    goto done;
fail:
    fprintf(stderr, "bf16_grad: %s\n", err.msg);
done:
    otl_trainer_free(tf);
    free(gf);
    free(gb);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_model_free(m);
    return status;
}
