/* cmd_grad.c - `onnx-tl grad MODEL --input NAME=X.npy --target Y.npy -o DIR`: one forward and
 * backward pass, no update. Writes DIR/loss.npy and DIR/grad/<initializer>.npy for every
 * trainable floating-point initializer, so that the differentiator can be checked against
 * another framework. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl grad MODEL --input NAME=X.npy [--input ...] --target Y.npy -o DIR\n"
    "                    [--loss ce|mse|bce] [--label-smoothing E] [--bn train|frozen] [--seed S] [--threads N]\n"
    "\n"
    "One forward+backward pass, no update. Writes DIR/loss.npy (scalar float32) and\n"
    "DIR/grad/<initializer>.npy for every trainable floating-point initializer (names with\n"
    "characters outside [A-Za-z0-9._-] replaced by '_').\n"
    "  --loss ce    mean cross-entropy of the first output against int64 class ids (default);\n"
    "               the output is taken as logits, or, when a Softmax/LogSoftmax over the last\n"
    "               axis produces it, the loss is computed stably from that op's input\n"
    "  --loss mse   mean squared error against float targets\n"
    "  --loss bce   binary cross-entropy on logits against float 0/1 targets (multi-label)\n"
    "  --bn train   BatchNormalization uses batch statistics (default)\n"
    "  --bn frozen  BatchNormalization uses its running statistics\n"
    "  --seed S     Dropout and other random ops (0)\n";

static const cli_opt opts[] = {
    {"input", 1, 1}, {"target", 1, 0}, {"o", 1, 0}, {"output", 1, 0}, {"loss", 1, 0},
    {"label-smoothing", 1, 0}, {"bn", 1, 0}, {"threads", 1, 0}, {"seed", 1, 0}, {NULL, 0, 0},
};

int cmd_grad(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "grad", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const char *outdir = cli_get(&a, "o") ? cli_get(&a, "o") : cli_get(&a, "output");
    if (!outdir || !*outdir)
        return cli_usage_error(usage, "grad: -o DIR is required");
    const char *target = cli_get(&a, "target");
    if (!target)
        return cli_usage_error(usage, "grad: --target Y.npy is required");
    otl_grad_spec spec = {0};
    const char *loss = cli_get(&a, "loss");
    if (!loss || strcmp(loss, "ce") == 0)
        spec.loss = OTL_LOSS_CE;
    else if (strcmp(loss, "mse") == 0)
        spec.loss = OTL_LOSS_MSE;
    else if (strcmp(loss, "bce") == 0)
        spec.loss = OTL_LOSS_BCE;
    else
        return cli_usage_error(usage, "grad: --loss must be ce, mse or bce, got '%s'", loss);
    if (cli_get(&a, "label-smoothing")) {
        char *e;
        const char *v = cli_get(&a, "label-smoothing");
        spec.label_smoothing = strtof(v, &e);
        if (!*v || *e || !(spec.label_smoothing >= 0 && spec.label_smoothing <= 1))
            return cli_usage_error(usage, "grad: --label-smoothing must be in [0, 1], got '%s'", v);
    }
    uint64_t seed = 0;
    if (cli_get(&a, "seed")) {
        char *e;
        const char *v = cli_get(&a, "seed");
        errno = 0;
        seed = strtoull(v, &e, 10);
        if (!*v || *e || errno || *v < '0' || *v > '9')
            return cli_usage_error(usage, "grad: --seed must be a non-negative integer, got '%s'", v);
    }
    const char *bn = cli_get(&a, "bn");
    if (bn && strcmp(bn, "train") != 0 && strcmp(bn, "frozen") != 0)
        return cli_usage_error(usage, "grad: --bn must be train or frozen, got '%s'", bn);
    int threads;
    if ((rc = cli_threads(&a, usage, &threads)))
        return rc;
    const char *names[128], *files[128];
    int n_in;
    if ((rc = cli_collect_inputs(&a, usage, names, files, 127, &n_in)))
        return rc;

    otl_error err = {0};
    otl_model *m = NULL;
    otl_train_graph *tg = NULL;
    otl_session *s = NULL;
    otl_tensor *in[128] = {0};
    otl_tensor **outs = NULL;
    int n_out = 0, status = EXIT_OK;
    size_t dl = strlen(outdir) + 8;
    char *graddir = malloc(dl);
    if (!graddir) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(graddir, dl, "%s/grad", outdir);
    if (otl_model_load(&m, a.pos[0], NULL, &err) || otl_train_graph_build(&tg, m, &spec, &err))
        goto fail;
    if (!cli_check_file_names(a.pos[0], "parameters", (const char *const *)tg->params, tg->n_params, &err))
        goto fail; /* two gradients would go to one DIR/grad/<name>.npy */
    files[n_in] = target;
    const char *loss_name = "loss";
    if (!cli_check_overwrite(outdir, &loss_name, 1, files, n_in + 1, &err) ||
        !cli_check_overwrite(graddir, (const char *const *)tg->params, tg->n_params, files, n_in + 1, &err))
        goto fail; /* never write over --input or --target files */
    otl_model_free(m); /* the training graph holds its own copy: one copy of the weights, not two */
    m = NULL;
    names[n_in] = NULL;
    if (cli_load_inputs(in, names, files, n_in, &err))
        goto fail;
    if (otl_npy_load(&in[n_in], target, &err))
        goto fail;
    free(in[n_in]->name);
    if (!(in[n_in]->name = otl_strdup(tg->target))) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (spec.loss == OTL_LOSS_CE && in[n_in]->dtype != OTL_DTYPE_INT64 && in[n_in]->dtype != OTL_DTYPE_INT32) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: cross-entropy targets must be int64 class ids, got %s", target,
                      otl_dtype_name(in[n_in]->dtype));
        goto fail;
    }
    if (spec.loss != OTL_LOSS_CE && in[n_in]->dtype != OTL_DTYPE_FLOAT) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: targets must be float32, got %s", target,
                      otl_dtype_name(in[n_in]->dtype));
        goto fail;
    }
    otl_session_opts so = {.threads = threads, .training = 1, .bn_frozen = bn && strcmp(bn, "frozen") == 0,
                           .seed = seed};
    if (otl_session_new(&s, tg->m, &so, &err) ||
        otl_session_run(s, (const otl_tensor *const *)in, n_in + 1, &outs, &n_out, &err))
        goto fail;
    /* outputs: the model's own, then loss, then gradients (in graph order) */
    int ok = cli_make_dir(outdir, &err) && cli_make_dir(graddir, &err);
    for (int i = 0; ok && i < n_out; i++) {
        if (strcmp(outs[i]->name, tg->loss) == 0) {
            ok = !cli_save_named(outdir, "loss", outs[i], &err);
            continue;
        }
        for (int p = 0; p < tg->n_params; p++)
            if (strcmp(outs[i]->name, tg->grads[p]) == 0)
                ok = ok && !cli_save_named(graddir, tg->params[p], outs[i], &err);
    }
    if (ok)
        goto done;
fail:
    status = cli_fail(&err);
done:
    free(graddir);
    otl_tensors_free(outs, n_out);
    for (int i = 0; i < 128; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_train_graph_free(tg);
    otl_model_free(m);
    return status;
}
