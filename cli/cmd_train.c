/* cmd_train.c - `onnx-tl train MODEL --data DATA -o OUT ...` (../shared/CLI.md): parses the
 * options into otl_fit_opts and runs the training loop of src/fit.c. SIGINT stops after the
 * current step (a second one exits at once). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "onnxtl_fit.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl train MODEL --data DATA -o OUT [--val DATA] [--epochs E] [--batch B] [--lr LR]\n"
    "                     [--optimizer sgd|adam|adamw] [--momentum M] [--nesterov] [--weight-decay W]\n"
    "                     [--schedule constant|step|cosine|onecycle|plateau] [--warmup STEPS]\n"
    "                     [--step-size EPOCHS] [--gamma G] [--min-lr LR] [--plateau-patience P]\n"
    "                     [--plateau-factor F] [--early-stop PATIENCE] [--layer-lr-decay F]\n"
    "                     [--unfreeze-every EPOCHS] [--augment LIST] [--bn train|frozen] [--seed S]\n"
    "                     [--label-smoothing E] [--clip-norm N] [--val-split F] [--skip-bad]\n"
    "                     [--log FILE.jsonl] [--checkpoint DIR] [--resume DIR] [--no-shuffle]\n"
    "                     [--no-cache] [--cache-mem BYTES|auto] [--cache-dtype fp32|bf16] [--cache-dir DIR]\n"
    "                     [--precision fp32|bf16] [--preprocess FILE.json] [--threads N] [--quiet]\n"
    "\n"
    "Fine-tune MODEL on DATA (an ImageFolder directory or a .npz with x and y) with cross-entropy.\n"
    "OUT is the model with the best validation accuracy (the last one without validation data).\n"
    "  --val DATA            validation data; without it a stratified --val-split (0.15) of DATA\n"
    "                        is held out (seeded; --val-split 0: no validation)\n"
    "  --epochs E            (10)    --batch B (32; the last partial batch is kept)\n"
    "  --lr LR               base learning rate (1e-3; the maximum with onecycle)\n"
    "  --optimizer           adamw (default, weight decay 0.01), adam or sgd (momentum 0.9);\n"
    "                        --weight-decay W overrides (default 0 for sgd/adam)\n"
    "  --schedule            constant (default); step: lr * gamma every --step-size epochs (gamma 0.1,\n"
    "                        step size epochs/3); cosine: to --min-lr over the run, per step;\n"
    "                        onecycle: PyTorch OneCycleLR (momentum cycled); plateau: lr * --plateau-factor\n"
    "                        (0.1) after --plateau-patience (10) epochs without a lower validation loss\n"
    "  --warmup STEPS        linear warmup over the first STEPS steps (not with onecycle)\n"
    "  --early-stop P        stop after P epochs without a better validation accuracy\n"
    "  --layer-lr-decay F    each parameter block further from the head gets F times the rate\n"
    "  --unfreeze-every E    every E epochs the frozen block nearest the head becomes trainable\n"
    "  --augment LIST        training data only: hflip,rotate=15,zoom=0.1,crop,jitter=0.2\n"
    "  --bn train|frozen     BatchNormalization: batch statistics and updated running statistics\n"
    "                        (default), or the running statistics unchanged\n"
    "  --seed S              shuffling, split, augmentation, dropout (0)\n"
    "  --log FILE.jsonl      one JSON object per epoch: epoch, lr, train_loss, train_acc, val_loss,\n"
    "                        val_acc, seconds, images_per_s\n"
    "  --checkpoint DIR      checkpoint after every epoch (and on Ctrl-C)\n"
    "  --resume DIR          continue a checkpointed run exactly where it stopped (hyper-parameters\n"
    "                        from the checkpoint: one given again must be equal; the same MODEL and\n"
    "                        DATA are required); with --epochs E it trains up to E epochs instead\n"
    "                        (schedules then span the new total)\n"
    "  --no-cache            always run the whole model; by default, when the trainable part reads one\n"
    "                        frozen tensor and nothing before it changes between epochs (no --augment,\n"
    "                        no Dropout, BatchNormalization frozen there), that tensor is computed once\n"
    "                        per sample and kept in memory (fp32), and the epochs train from it\n"
    "  --cache-mem BYTES     bound of that cache (2G; suffixes K, M, G; auto: half the free memory)\n"
    "  --cache-dtype T       fp32 (default) or bf16: the cached features rounded to bfloat16 (half the\n"
    "                        memory; the results then differ slightly from --no-cache)\n"
    "  --cache-dir DIR       also keep that cache in a file in DIR (created if missing), named by a hash of\n"
    "                        the frozen part (graph and weights), the data, preprocessing, split, seed,\n"
    "                        threads and dtype: a later run with the same inputs reads it instead of\n"
    "                        computing it; a damaged file is rebuilt\n"
    "  --preprocess F.json   image preprocessing ({\"size\": [H, W], \"resize\", \"crop\", \"channels\",\n"
    "                        \"scale\", \"mean\", \"std\", \"layout\"}) over the model's stored or default\n"
    "                        one, used for the images and stored in OUT (not with --resume)\n"
    "  --precision fp32|bf16 fp32 (default), or bf16 mixed precision (CPUs with AVX512_BF16): Conv, Gemm\n"
    "                        and MatMul, forward and backward, compute on bfloat16 copies of their\n"
    "                        inputs with float32 results; weights, optimizer state and every other op\n"
    "                        stay float32, validation runs in float32\n";

static const cli_opt opts[] = {
    {"data", 1, 0}, {"val", 1, 0}, {"o", 1, 0}, {"output", 1, 0}, {"epochs", 1, 0}, {"batch", 1, 0},
    {"lr", 1, 0}, {"optimizer", 1, 0}, {"momentum", 1, 0}, {"nesterov", 0, 0}, {"weight-decay", 1, 0},
    {"schedule", 1, 0}, {"warmup", 1, 0}, {"step-size", 1, 0}, {"gamma", 1, 0}, {"min-lr", 1, 0},
    {"plateau-patience", 1, 0}, {"plateau-factor", 1, 0}, {"early-stop", 1, 0}, {"layer-lr-decay", 1, 0},
    {"unfreeze-every", 1, 0}, {"augment", 1, 0}, {"bn", 1, 0}, {"seed", 1, 0}, {"label-smoothing", 1, 0},
    {"clip-norm", 1, 0}, {"val-split", 1, 0}, {"skip-bad", 0, 0}, {"log", 1, 0}, {"checkpoint", 1, 0},
    {"resume", 1, 0}, {"no-shuffle", 0, 0}, {"no-cache", 0, 0}, {"cache-mem", 1, 0}, {"cache-dtype", 1, 0}, {"cache-dir", 1, 0}, {"precision", 1, 0}, {"threads", 1, 0}, {"quiet", 0, 0}, {"preprocess", 1, 0}, {NULL, 0, 0},
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    if (interrupted)
        _exit(130);
    interrupted = 1;
}

/* A number option in [lo, hi]; 0 when absent or fine, EXIT_USAGE after a message. */
static int get_num(const cli_args *a, const char *name, double lo, double hi, int integer, double *v)
{
    const char *s = cli_get(a, name);
    if (!s)
        return 0;
    char *e;
    double d = strtod(s, &e);
    if (!*s || *e || !(d >= lo && d <= hi) || (integer && d != (double)(long long)d))
        return cli_usage_error(usage, "train: --%s must be %s in [%g, %g], got '%s'", name,
                               integer ? "an integer" : "a number", lo, hi, s);
    *v = d;
    return 0;
}

int cmd_train(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, opts, usage, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (a.n_pos != 1)
        return cli_usage_error(usage, "train: expected one MODEL argument (see --help)");
    otl_fit_opts o;
    otl_fit_opts_init(&o);
    o.out = cli_get(&a, "o") ? cli_get(&a, "o") : cli_get(&a, "output");
    o.data = cli_get(&a, "data");
    o.val = cli_get(&a, "val");
    if (!o.data || !*o.data)
        return cli_usage_error(usage, "train: --data DATA is required");
    if (!o.out || !*o.out)
        return cli_usage_error(usage, "train: -o OUT is required");
    if (o.val && cli_get(&a, "val-split"))
        return cli_usage_error(usage, "train: --val-split goes without --val (the validation data are given)");
    if (otl_same_file(a.pos[0], o.out) || strcmp(a.pos[0], o.out) == 0)
        return cli_usage_error(usage, "train: -o must differ from the input model");
    if (cli_same_path(o.out, o.data) || cli_same_path(o.out, o.val))
        return cli_usage_error(usage, "train: -o %s would overwrite the %s", o.out,
                               cli_same_path(o.out, o.data) ? "--data DATA" : "--val DATA");
    if (cli_same_path(o.out, cli_get(&a, "preprocess")) || cli_same_path(cli_get(&a, "log"), cli_get(&a, "preprocess")))
        return cli_usage_error(usage, "train: an output would overwrite --preprocess %s", cli_get(&a, "preprocess"));
    const char *logf = cli_get(&a, "log");
    if (logf) { /* the log is opened for writing: never over an input or OUT */
        const char *others[] = {a.pos[0], o.out, o.data, o.val};
        for (int i = 0; i < 4; i++)
            if (others[i] && (strcmp(logf, others[i]) == 0 || otl_same_file(logf, others[i])))
                return cli_usage_error(usage, "train: --log %s would overwrite %s", logf,
                                       i == 0 ? "the input model" : i == 1 ? "OUT" : "the data");
    }
    double v;
    const char *s;
    if ((s = cli_get(&a, "optimizer"))) {
        if (strcmp(s, "sgd") == 0)
            o.optim.kind = OTL_OPT_SGD;
        else if (strcmp(s, "adam") == 0)
            o.optim.kind = OTL_OPT_ADAM;
        else if (strcmp(s, "adamw") == 0)
            o.optim.kind = OTL_OPT_ADAMW;
        else
            return cli_usage_error(usage, "train: --optimizer must be sgd, adam or adamw, got '%s'", s);
        o.optim.weight_decay = o.optim.kind == OTL_OPT_ADAMW ? 0.01f : 0.0f;
    }
    if ((s = cli_get(&a, "schedule")) && (o.schedule = otl_schedule_parse(s)) < 0)
        return cli_usage_error(usage, "train: --schedule must be constant, step, cosine, onecycle or plateau, got '%s'",
                               s);
    if ((s = cli_get(&a, "bn"))) {
        if (strcmp(s, "train") != 0 && strcmp(s, "frozen") != 0)
            return cli_usage_error(usage, "train: --bn must be train or frozen, got '%s'", s);
        o.bn_frozen = strcmp(s, "frozen") == 0;
    }
    v = o.epochs;
    if ((rc = get_num(&a, "epochs", 1, 1e6, 1, &v)))
        return rc;
    o.epochs = (int)v;
    v = (double)o.batch;
    if ((rc = get_num(&a, "batch", 1, 1e9, 1, &v)))
        return rc;
    o.batch = (int64_t)v;
    if ((rc = get_num(&a, "lr", 1e-30, 1e30, 0, &o.lr)))
        return rc;
    v = o.optim.momentum;
    if ((rc = get_num(&a, "momentum", 0, 1, 0, &v)))
        return rc;
    o.optim.momentum = (float)v;
    o.optim.nesterov = cli_flag(&a, "nesterov");
    v = o.optim.weight_decay;
    if ((rc = get_num(&a, "weight-decay", 0, 1e6, 0, &v)))
        return rc;
    o.optim.weight_decay = (float)v;
    v = 0;
    if ((rc = get_num(&a, "warmup", 0, 1e12, 1, &v)))
        return rc;
    o.warmup = (int64_t)v;
    v = 0;
    if ((rc = get_num(&a, "step-size", 1, 1e6, 1, &v)))
        return rc;
    o.step_size = (int)v;
    if ((rc = get_num(&a, "gamma", 0, 1e30, 0, &o.gamma)) || (rc = get_num(&a, "min-lr", 0, 1e30, 0, &o.min_lr)) ||
        (rc = get_num(&a, "plateau-factor", 0, 1, 0, &o.plateau_factor)) ||
        (rc = get_num(&a, "layer-lr-decay", 1e-12, 1e6, 0, &o.layer_lr_decay)) ||
        (rc = get_num(&a, "clip-norm", 0, 1e30, 0, &o.clip_norm)) ||
        (rc = get_num(&a, "val-split", 0, 0.99, 0, &o.val_frac)))
        return rc;
    v = o.plateau_patience;
    if ((rc = get_num(&a, "plateau-patience", 0, 1e6, 1, &v)))
        return rc;
    o.plateau_patience = (int)v;
    v = 0;
    if ((rc = get_num(&a, "early-stop", 1, 1e6, 1, &v)))
        return rc;
    o.early_stop = (int)v;
    v = 0;
    if ((rc = get_num(&a, "unfreeze-every", 1, 1e6, 1, &v)))
        return rc;
    o.unfreeze_every = (int)v;
    v = 0;
    if ((rc = get_num(&a, "label-smoothing", 0, 1, 0, &v)))
        return rc;
    o.label_smoothing = (float)v;
    if ((s = cli_get(&a, "seed"))) {
        char *e;
        errno = 0;
        o.seed = strtoull(s, &e, 10);
        if (!*s || *e || errno || *s < '0' || *s > '9')
            return cli_usage_error(usage, "train: --seed must be a non-negative integer, got '%s'", s);
    }
    if ((rc = cli_threads(&a, usage, &o.threads)))
        return rc;
    o.augment = cli_get(&a, "augment");
    o.no_shuffle = cli_flag(&a, "no-shuffle");
    o.no_cache = cli_flag(&a, "no-cache");
    if ((s = cli_get(&a, "precision")) && (o.precision = otl_precision_parse(s)) < 0)
        return cli_usage_error(usage, "train: --precision must be fp32 or bf16, got '%s'", s);
    if ((s = cli_get(&a, "cache-dtype")) && strcmp(s, "fp32") != 0 && strcmp(s, "bf16") != 0)
        return cli_usage_error(usage, "train: --cache-dtype must be fp32 or bf16, got '%s'", s);
    o.cache_dtype = s && strcmp(s, "bf16") == 0 ? OTL_CACHE_BF16 : OTL_CACHE_FP32;
    o.cache_dir = cli_get(&a, "cache-dir");
    if ((s = cli_get(&a, "cache-mem"))) {
        char *e;
        double b = strtod(s, &e);
        double mul = *e == 'K' || *e == 'k' ? 1024.0 : *e == 'M' || *e == 'm' ? 1048576.0
                     : *e == 'G' || *e == 'g' ? 1073741824.0 : 1.0;
        if (mul > 1)
            e++;
        if (strcmp(s, "auto") == 0)
            o.cache_mem = -1;
        else if (!*s || *e || !(b >= 0) || b * mul > 9e18)
            return cli_usage_error(usage, "train: --cache-mem must be a byte count (suffix K, M or G) or auto, got "
                                   "'%s'", s);
        else
            o.cache_mem = b * mul < 1 ? 1 : (int64_t)(b * mul); /* 0 means the default: --cache-mem 0 refuses */
    }
    o.skip_bad = cli_flag(&a, "skip-bad");
    o.log = cli_get(&a, "log");
    o.checkpoint = cli_get(&a, "checkpoint");
    o.resume = cli_get(&a, "resume");
    if (o.resume && cli_get(&a, "epochs"))
        o.resume_epochs = o.epochs;
    /* hyper-parameters given again with --resume must be the checkpoint's (otl_fit checks) */
    static const char *const hp_flags[][2] = {
        {"batch", "batch"}, {"lr", "lr"}, {"optimizer", "optimizer"}, {"momentum", "momentum"},
        {"nesterov", "nesterov"}, {"weight-decay", "weight_decay"}, {"label-smoothing", "label_smoothing"},
        {"clip-norm", "clip_norm"}, {"schedule", "schedule"}, {"warmup", "warmup"}, {"step-size", "step_size"},
        {"gamma", "gamma"}, {"min-lr", "min_lr"}, {"plateau-patience", "plateau_patience"},
        {"plateau-factor", "plateau_factor"}, {"early-stop", "early_stop"}, {"layer-lr-decay", "layer_lr_decay"},
        {"unfreeze-every", "unfreeze_every"}, {"augment", "augment"}, {"bn", "bn_frozen"}, {"seed", "seed"},
        {"no-shuffle", "no_shuffle"}, {"val-split", "val_frac"}, {"precision", "precision"},
        {"cache-dtype", "cache_dtype"},
    };
    char given[512] = "";
    for (size_t i = 0; o.resume && i < sizeof hp_flags / sizeof hp_flags[0]; i++)
        if (cli_get(&a, hp_flags[i][0])) {
            strcat(given, *given ? "," : "");
            strcat(given, hp_flags[i][1]);
        }
    if (*given)
        o.resume_given = given;
    uint8_t *ppbuf = NULL;
    const char *ppf = cli_get(&a, "preprocess");
    if (ppf) {
        if (o.resume)
            return cli_usage_error(usage, "train: --preprocess cannot be given with --resume (the checkpoint's model "
                                   "keeps the preprocessing it was trained with)");
        size_t pplen;
        otl_error perr = {0};
        if (otl_read_file(ppf, 1 << 20, &ppbuf, &pplen, &perr))
            return cli_fail(&perr);
        o.preprocess = (const char *)ppbuf;
        o.preprocess_what = ppf;
    }
    o.msg = stderr;
    o.progress = cli_flag(&a, "quiet") ? OTL_FIT_QUIET : isatty(fileno(stderr)) ? OTL_FIT_BAR : OTL_FIT_LINES;
    o.interrupt = &interrupted;

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    otl_error err = {0};
    otl_fit_result r;
    otl_status st = otl_fit(a.pos[0], &o, &r, &err);
    sigaction(SIGINT, &old, NULL);
    free(ppbuf);
    if (st)
        return cli_fail(&err);
    return EXIT_OK;
}
