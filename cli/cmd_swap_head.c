/* cmd_swap_head.c - `onnx-tl swap-head MODEL -o OUT --classes N ...` (../shared/CLI.md): replace
 * the classifier head by a new, freshly initialized one (graph/surgery.c does the work), store
 * labels and preprocessing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "onnxtl_surgery.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl swap-head MODEL -o OUT --classes N [--at TENSOR] [--pool cls|mean] [--labels FILE]\n"
    "                         [--hidden H] [--dropout P] [--seed S] [--preprocess FILE.json]\n"
    "                         [--size H,W] [--channels gray|rgb|bgr] [--layout NCHW|NHWC] [--mean M,..]\n"
    "                         [--std S,..] [--scale S] [--resize stretch|shorter-side] [--crop center|none]\n"
    "                         [--threads N]\n"
    "\n"
    "Replace the classifier head (auto-detected: the last Gemm/MatMul(+Add) before the output, or a\n"
    "1x1-Conv classifier) by a new head with N outputs, initialized like torch.nn.Linear from --seed\n"
    "(default 0; the same seed gives the same file). The output keeps its name; a final Softmax\n"
    "that followed the old head is kept.\n"
    "  --classes N       number of classes (default: the number of --labels)\n"
    "  --at TENSOR       cut here instead (a node name stands for its output): everything not\n"
    "                    needed to compute TENSOR is dropped (a final Softmax after a detected head\n"
    "                    is kept); TENSOR is pooled by its rank: 4 (N,C,H,W) GlobalAveragePool +\n"
    "                    Flatten, 3 (N,T,D) --pool cls (first token, default) or mean, 2 (N,F) as is\n"
    "  --hidden H        Gemm(F->H) -> Relu -> [Dropout] -> Gemm(H->N) instead of one Gemm\n"
    "  --dropout P       Dropout(P) before the last Gemm\n"
    "  --labels FILE     class names, one per line (stored in the model; without it, stored labels\n"
    "                    are removed)\n"
    "  --preprocess F    preprocessing JSON ({\"size\": [H, W], \"resize\", \"crop\", \"channels\", \"scale\",\n"
    "                    \"mean\", \"std\", \"layout\"}) over the model's current preprocessing; the\n"
    "                    single-key flags --size ... --crop apply after it\n";

static const cli_opt opts[] = {
    {"o", 1, 0},        {"output", 1, 0},   {"classes", 1, 0}, {"at", 1, 0},      {"pool", 1, 0},
    {"labels", 1, 0},   {"hidden", 1, 0},   {"dropout", 1, 0}, {"seed", 1, 0},    {"preprocess", 1, 0},
    {"size", 1, 0},     {"channels", 1, 0}, {"layout", 1, 0},  {"mean", 1, 0},    {"std", 1, 0},
    {"scale", 1, 0},    {"resize", 1, 0},   {"crop", 1, 0},    {"threads", 1, 0}, {NULL, 0, 0},
};

static int parse_i64(const char *s, int64_t *v)
{
    char *e;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    if (!*s || *e || errno || (*s < '0' || *s > '9'))
        return 0;
    *v = x;
    return 1;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (!*s || *e || errno || *s < '0' || *s > '9')
        return 0;
    *v = x;
    return 1;
}

/* "a,b,c" -> JSON array text of numbers (each checked). 0 on a bad list. */
static int number_list(const char *s, char *out, size_t cap, int ints)
{
    size_t n = 0;
    n += (size_t)snprintf(out + n, cap - n, "[");
    const char *p = s;
    int count = 0;
    while (1) {
        const char *e = p;
        while (*e && *e != ',' && *e != 'x')
            e++;
        if (!ints && *e == 'x')
            return 0;
        char tok[64];
        size_t l = (size_t)(e - p);
        if (l == 0 || l >= sizeof tok)
            return 0;
        memcpy(tok, p, l);
        tok[l] = 0;
        char *end;
        double v = strtod(tok, &end);
        if (*end || tok[0] == '+' || (ints && v != (double)(int64_t)v))
            return 0;
        if (n + l + 2 >= cap)
            return 0;
        n += (size_t)snprintf(out + n, cap - n, "%s%.17g", count ? "," : "", v);
        count++;
        if (!*e)
            break;
        p = e + 1;
    }
    snprintf(out + n, cap - n, "]");
    return 1;
}

int cmd_swap_head(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "swap-head", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const char *model = a.pos[0];
    const char *out = cli_get(&a, "o") ? cli_get(&a, "o") : cli_get(&a, "output");
    if (cli_get(&a, "o") && cli_get(&a, "output"))
        return cli_usage_error(usage, "swap-head: give -o or --output, not both");
    if (!out || !*out)
        return cli_usage_error(usage, "swap-head: -o OUT is required");
    if (strcmp(out, model) == 0 || otl_same_file(out, model))
        return cli_usage_error(usage, "swap-head: -o must differ from the input model '%s'", model);
    if (cli_same_path(out, cli_get(&a, "labels")) || cli_same_path(out, cli_get(&a, "preprocess")))
        return cli_usage_error(usage, "swap-head: -o %s would overwrite the --%s file", out,
                               cli_same_path(out, cli_get(&a, "labels")) ? "labels" : "preprocess");
    otl_swap_head_opts so = {0};
    const char *v;
    if ((v = cli_get(&a, "classes")) && (!parse_i64(v, &so.classes) || so.classes < 1 || so.classes > 100000000))
        return cli_usage_error(usage, "swap-head: --classes must be a positive integer, got '%s'", v);
    if (!v && !cli_get(&a, "labels"))
        return cli_usage_error(usage, "swap-head: --classes N is required");
    so.at = cli_get(&a, "at");
    if (so.at && !*so.at)
        return cli_usage_error(usage, "swap-head: --at needs a tensor name");
    if ((v = cli_get(&a, "pool"))) {
        if (strcmp(v, "cls") == 0)
            so.pool = OTL_POOL_CLS;
        else if (strcmp(v, "mean") == 0)
            so.pool = OTL_POOL_MEAN;
        else
            return cli_usage_error(usage, "swap-head: --pool must be cls or mean, got '%s'", v);
    }
    if ((v = cli_get(&a, "hidden")) && (!parse_i64(v, &so.hidden) || so.hidden < 1 || so.hidden > 1000000))
        return cli_usage_error(usage, "swap-head: --hidden must be a positive integer, got '%s'", v);
    if ((v = cli_get(&a, "dropout"))) {
        char *e;
        so.dropout = strtof(v, &e);
        if (!*v || *e || !(so.dropout >= 0 && so.dropout < 1))
            return cli_usage_error(usage, "swap-head: --dropout must be in [0, 1), got '%s'", v);
        so.has_dropout = 1;
    }
    if ((v = cli_get(&a, "seed")) && !parse_u64(v, &so.seed))
        return cli_usage_error(usage, "swap-head: --seed must be a non-negative integer, got '%s'", v);
    if ((rc = cli_threads(&a, usage, &so.threads)))
        return rc;
    /* single-key preprocessing flags, each a one-key JSON object parsed in this order */
    char flags_json[8][600];
    const char *flag_name[8];
    int n_flags = 0;
    static const char *const str_keys[] = {"channels", "layout", "resize", "crop", NULL};
    for (int i = 0; str_keys[i]; i++)
        if ((v = cli_get(&a, str_keys[i]))) {
            if (strlen(v) > 32 || strpbrk(v, "\"\\"))
                return cli_usage_error(usage, "swap-head: bad --%s value '%s'", str_keys[i], v);
            snprintf(flags_json[n_flags], sizeof flags_json[0], "{\"%s\":\"%s\"}", str_keys[i], v);
            flag_name[n_flags++] = str_keys[i];
        }
    static const char *const num_keys[] = {"size", "mean", "std", NULL};
    for (int i = 0; num_keys[i]; i++)
        if ((v = cli_get(&a, num_keys[i]))) {
            char arr[512];
            if (!number_list(v, arr, sizeof arr, i == 0))
                return cli_usage_error(usage, "swap-head: --%s must be a comma-separated list of numbers%s, got '%s'",
                                       num_keys[i], i == 0 ? " (H,W)" : "", v);
            snprintf(flags_json[n_flags], sizeof flags_json[0], "{\"%s\":%s}", num_keys[i], arr);
            flag_name[n_flags++] = num_keys[i];
        }
    if ((v = cli_get(&a, "scale"))) {
        char *e;
        double s = strtod(v, &e);
        if (!*v || *e || !(s > 0) || s > 1e30)
            return cli_usage_error(usage, "swap-head: --scale must be a positive number, got '%s'", v);
        snprintf(flags_json[n_flags], sizeof flags_json[0], "{\"scale\":%.17g}", s);
        flag_name[n_flags++] = "scale";
    }
    const char *pp_file = cli_get(&a, "preprocess");

    otl_error err = {0};
    otl_model *m = NULL;
    char **labels = NULL;
    int n_labels = 0, status = EXIT_OK;
    uint8_t *ppbuf = NULL;
    size_t pplen;
    otl_preprocess pp;
    char pp_source[1200];
    if ((v = cli_get(&a, "labels"))) {
        if (otl_labels_read(v, &labels, &n_labels, &err))
            goto fail;
        if (!so.classes)
            so.classes = n_labels;
        if (n_labels != so.classes) {
            otl_error_set(&err, OTL_ERR_INPUT, "%s: %d labels but --classes %lld", v, n_labels, (long long)so.classes);
            goto fail;
        }
        so.labels = (const char *const *)labels;
        so.n_labels = n_labels;
    }
    if (otl_model_load(&m, model, NULL, &err))
        goto fail;
    if (pp_file || n_flags) {
        if (otl_preprocess_get(m, &pp, &err))
            goto fail;
        if (pp_file && (otl_read_file(pp_file, 1 << 20, &ppbuf, &pplen, &err) ||
                        otl_preprocess_parse((const char *)ppbuf, &pp, pp_file, &err)))
            goto fail;
        for (int i = 0; i < n_flags; i++) {
            char what[64];
            snprintf(what, sizeof what, "--%s", flag_name[i]);
            if (otl_preprocess_parse(flags_json[i], &pp, what, &err)) {
                err.code = OTL_ERR_USAGE;
                goto fail;
            }
        }
        so.pp = &pp;
        snprintf(pp_source, sizeof pp_source, "%s%s%s", pp_file ? pp_file : "", pp_file && n_flags ? " with " : "",
                 n_flags ? "the preprocessing flags" : "");
        so.pp_source = pp_source;
    }
    otl_swap_head_info info;
    if (otl_swap_head(m, &so, &info, &err) || otl_model_save(m, out, NULL, &err))
        goto fail;
    fprintf(stderr, "swap-head: %s%s%s -> new head %s%lld classes on '%s' (rank %d, %lld features, pooling %s)%s%s\n",
            info.old_head[0] ? "replaced '" : "cut at --at", info.old_head, info.old_head[0] ? "'" : "",
            so.hidden ? "with a hidden layer, " : "", (long long)so.classes, info.cut, info.cut_rank,
            (long long)info.features, info.pooling, labels ? ", labels stored" : "", so.pp ? ", preprocessing stored" : "");
    goto done;
fail:
    status = cli_fail(&err);
done:
    free(ppbuf);
    otl_labels_free(labels, n_labels);
    otl_model_free(m);
    return status;
}
