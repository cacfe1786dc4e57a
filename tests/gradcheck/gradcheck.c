/* gradcheck.c - finite-difference check of the differentiator on one small model.
 *
 *   otl_gradcheck MODEL [--rtol R] [--atol A] [--eps E] [--samples K] [--seed S] [--bn-frozen]
 *
 * Every floating-point initializer of MODEL is a parameter. The loss is the mean squared error
 * of the first output against a seeded random target. The analytic gradient (onnx-tl's
 * training graph) is compared with central differences of the same loss, at up to K elements
 * per parameter: |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|).
 * Exit status 0 when every checked element agrees, 1 otherwise (each mismatch printed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

static uint64_t rng_state = 88172645463325252ULL;
static double rnd(void) /* uniform [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

typedef struct run_ctx {
    otl_session *s;
    otl_train_graph *tg;
    otl_tensor **inputs; /* target + parameters */
    int n_inputs;
} run_ctx;

static int run(run_ctx *r, double *loss, otl_tensor ***outs, int *n_out, otl_error *err)
{
    if (otl_session_run(r->s, (const otl_tensor *const *)r->inputs, r->n_inputs, outs, n_out, err))
        return 0;
    for (int i = 0; i < *n_out; i++)
        if (strcmp((*outs)[i]->name, r->tg->loss) == 0)
            *loss = *(const float *)(*outs)[i]->data;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: otl_gradcheck MODEL [--rtol R] [--atol A] [--eps E] [--samples K] [--seed S] [--bn-frozen]\n");
        return 2;
    }
    const char *path = argv[1];
    double rtol = 2e-2, atol = 1e-4, eps = 1e-2;
    int samples = 24, bn_frozen = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--rtol") == 0 && i + 1 < argc)
            rtol = atof(argv[++i]);
        else if (strcmp(argv[i], "--atol") == 0 && i + 1 < argc)
            atol = atof(argv[++i]);
        else if (strcmp(argv[i], "--eps") == 0 && i + 1 < argc)
            eps = atof(argv[++i]);
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng_state += strtoull(argv[++i], NULL, 10) * 0x9E3779B97F4A7C15ULL;
        else if (strcmp(argv[i], "--bn-frozen") == 0)
            bn_frozen = 1;
        else {
            fprintf(stderr, "otl_gradcheck: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    otl_error err = {0};
    otl_model *m = NULL;
    run_ctx r = {0};
    int failures = 0, checked = 0, status = 1;
    otl_tensor **outs = NULL;
    int n_out = 0;
    otl_grad_spec spec = {.loss = OTL_LOSS_MSE};
    if (otl_model_load(&m, path, NULL, &err) || otl_train_graph_build(&r.tg, m, &spec, &err))
        goto fail;
    otl_session_opts so = {.threads = 1, .training = 1, .bn_frozen = bn_frozen};
    if (otl_session_new(&r.s, r.tg->m, &so, &err))
        goto fail;
    /* inputs: a random target shaped like the first output, then every parameter */
    r.inputs = calloc((size_t)r.tg->n_params + 2, sizeof *r.inputs);
    if (!r.inputs)
        goto fail;
    const otl_graph *g = r.tg->m->graph;
    for (int i = 0; i < r.tg->n_params; i++) {
        const otl_tensor *p = otl_graph_find_init(g, r.tg->params[i]);
        otl_tensor *t = otl_tensor_new(p->name, p->dtype, p->rank, p->dims);
        t->data = malloc(p->nbytes ? p->nbytes : 1);
        t->nbytes = p->nbytes;
        memcpy(t->data, p->data, p->nbytes);
        r.inputs[1 + i] = t;
    }
    /* the first output's shape: run once with a dummy scalar target to learn it */
    {
        otl_model *fm = m;
        otl_session *fs = NULL;
        otl_session_opts fo = so;
        if (otl_session_new(&fs, fm, &fo, &err) || otl_session_run(fs, NULL, 0, &outs, &n_out, &err)) {
            otl_session_free(fs);
            goto fail;
        }
        otl_session_free(fs);
        otl_tensor *y = outs[0];
        otl_tensor *t = otl_tensor_new(r.tg->target, OTL_DTYPE_FLOAT, y->rank, y->dims);
        t->nbytes = (size_t)y->numel * sizeof(float);
        t->data = malloc(t->nbytes ? t->nbytes : 1);
        for (int64_t i = 0; i < y->numel; i++)
            ((float *)t->data)[i] = (float)(2.0 * rnd() - 1.0);
        r.inputs[0] = t;
        otl_tensors_free(outs, n_out);
        outs = NULL;
    }
    r.n_inputs = 1 + r.tg->n_params;
    double loss0;
    if (!run(&r, &loss0, &outs, &n_out, &err))
        goto fail;
    for (int pi = 0; pi < r.tg->n_params; pi++) {
        otl_tensor *p = r.inputs[1 + pi];
        if (p->dtype != OTL_DTYPE_FLOAT)
            continue;
        const otl_tensor *ga = NULL;
        for (int i = 0; i < n_out; i++)
            if (strcmp(outs[i]->name, r.tg->grads[pi]) == 0)
                ga = outs[i];
        if (!ga || ga->numel != p->numel) {
            fprintf(stderr, "%s: no gradient output for '%s'\n", path, p->name);
            failures++;
            continue;
        }
        int64_t n = p->numel, k = n < samples ? n : samples;
        for (int64_t s = 0; s < k; s++) {
            int64_t idx = n <= samples ? s : (int64_t)(rnd() * (double)n);
            float *x = (float *)p->data + idx, orig = *x;
            double h = eps * (fabs(orig) > 1 ? fabs(orig) : 1), lp, lm;
            otl_tensor **o2;
            int n2;
            *x = (float)(orig + h);
            h = (double)*x - orig;
            if (!run(&r, &lp, &o2, &n2, &err))
                goto fail;
            otl_tensors_free(o2, n2);
            float xm = (float)(orig - h);
            *x = xm;
            double hm = orig - (double)xm;
            if (!run(&r, &lm, &o2, &n2, &err))
                goto fail;
            otl_tensors_free(o2, n2);
            *x = orig;
            double num = (lp - lm) / (h + hm), ana = ((const float *)ga->data)[idx];
            double tol = atol + rtol * fmax(fabs(num), fabs(ana));
            checked++;
            if (!(fabs(num - ana) <= tol)) {
                failures++;
                fprintf(stderr, "%s: d loss / d %s[%lld]: numeric %.6g, analytic %.6g (|diff| %.3g > tol %.3g)\n",
                        path, p->name, (long long)idx, num, ana, fabs(num - ana), tol);
            }
        }
    }
    printf("%s: %d gradient elements checked, %d mismatches (loss %.6g)\n", path, checked, failures, loss0);
    status = failures || !checked ? 1 : 0;
    if (!checked)
        fprintf(stderr, "%s: nothing was checked\n", path);
    goto done;
fail:
    fprintf(stderr, "otl_gradcheck: %s\n", err.msg[0] ? err.msg : "out of memory");
    status = 1;
done:
    otl_tensors_free(outs, n_out);
    for (int i = 0; r.inputs && i < r.n_inputs; i++)
        otl_tensor_free(r.inputs[i]);
    free(r.inputs);
    otl_session_free(r.s);
    otl_train_graph_free(r.tg);
    otl_model_free(m);
    return status;
}
