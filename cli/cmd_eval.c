/* cmd_eval.c - `onnx-tl eval MODEL --data DATA`: accuracy, macro F1, per-class precision/recall/
 * F1/support, confusion matrix, mean cross-entropy and top-5 accuracy of a classifier on an
 * ImageFolder directory or a .npz (../shared/CLI.md). Metrics: src/metrics.c (sklearn's
 * definitions); the model runs through otl_classifier (first output = scores). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "onnxtl_data.h"
#include "src/json.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl eval MODEL --data DATA [--json] [--batch B] [--by-index] [--skip-bad] [--threads N]\n"
    "\n"
    "Evaluate a classifier: accuracy, macro F1, per-class precision/recall/F1/support (scikit-learn's\n"
    "definitions, 0 where undefined), confusion matrix (rows: true class, columns: predicted), mean\n"
    "cross-entropy loss (the rule of `grad --loss ce`), and top-5 accuracy when there are more than\n"
    "5 classes. The prediction is the argmax of the model's first output.\n"
    "  --data DATA   ImageFolder directory (DATA/<class>/*.png|jpg|jpeg, preprocessed as the model's\n"
    "                stored preprocessing says) or .npz with x (N, ...) and y (N,) int64\n"
    "  --json        one JSON object on stdout: n, accuracy, macro_f1, macro_precision, macro_recall,\n"
    "                weighted_f1, loss, top5 (more than 5 classes), labels, per_class (list of {label,\n"
    "                index, precision, recall, f1, support}), confusion (rows true, columns predicted,\n"
    "                in the order of labels)\n"
    "  --batch B     samples per forward pass (default 32)\n"
    "  --by-index    class k (k-th sorted directory) is output k even when the model stores labels\n"
    "  --skip-bad    leave out unreadable images (listed on stderr) instead of failing\n"
    "  --threads N   compute threads (default: all cores)\n"
    "Class mapping: when the model stores labels (swap-head --labels), each class directory of an\n"
    "ImageFolder must be one of them and maps to its position; otherwise (and for .npz, whose y are\n"
    "output indices) class k is output k. The report lists the data set's classes and every class\n"
    "that was predicted; macro averages run over the classes that occur as truth or prediction.\n";

static const cli_opt opts[] = {
    {"data", 1, 0}, {"json", 0, 0}, {"batch", 1, 0}, {"by-index", 0, 0}, {"skip-bad", 0, 0}, {"threads", 1, 0},
    {NULL, 0, 0},
};

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Class mapping data class -> model output. Fails naming the class or the counts. */
static otl_status map_classes(const otl_classifier *c, const otl_dataset *d, const char *data, int by_index, int **map,
                              otl_error *err)
{
    int nd = otl_dataset_n_classes(d);
    *map = malloc((size_t)(nd > 0 ? nd : 1) * sizeof **map);
    if (!*map)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    int by_name = c->labels && otl_dataset_is_images(d) && !by_index;
    for (int k = 0; k < nd; k++) {
        (*map)[k] = k;
        if (!by_name)
            continue;
        const char *name = otl_dataset_class_name(d, k);
        int found = -1;
        for (int j = 0; j < c->n_labels && found < 0; j++)
            if (strcmp(c->labels[j], name) == 0)
                found = j;
        if (found < 0) {
            char list[512] = "";
            for (int j = 0; j < c->n_labels; j++) {
                size_t l = strlen(list);
                if (l > sizeof list - 64) {
                    snprintf(list + l, sizeof list - l, ", ...");
                    break;
                }
                snprintf(list + l, sizeof list - l, "%s%s", j ? ", " : "", c->labels[j]);
            }
            return otl_error_set(err, OTL_ERR_INPUT,
                                 "%s: class '%s' is not among the labels stored in %s (%s); --by-index maps class k "
                                 "to output k instead", data, name, c->file, list);
        }
        (*map)[k] = found;
    }
    if (!by_name && c->n_classes > 0 && nd > c->n_classes)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the data set has %d classes but output '%s' of %s has only %lld",
                             data, nd, c->output, c->file, (long long)c->n_classes);
    return OTL_OK;
}

typedef struct eval_result {
    otl_metrics mt;
    double loss_sum;
    int64_t top5;
    int n_show;     /* classes reported */
    int *show;      /* their output indices, increasing */
    char **names;   /* their labels (point into the classifier/data set or name_buf) */
    char *name_buf;
} eval_result;

static void result_free(eval_result *r)
{
    otl_metrics_free(&r->mt);
    free(r->show);
    free(r->names);
    free(r->name_buf);
}

/* Classes to report: every data class (mapped) and every predicted class. */
static otl_status pick_classes(eval_result *r, const otl_classifier *c, const otl_dataset *d, const int *map,
                               otl_error *err)
{
    int nc = r->mt.n_classes, nd = otl_dataset_n_classes(d);
    char *mark = calloc((size_t)nc, 1);
    r->show = malloc((size_t)nc * sizeof *r->show);
    r->names = malloc((size_t)nc * sizeof *r->names);
    r->name_buf = malloc((size_t)nc * 24);
    if (!mark || !r->show || !r->names || !r->name_buf) {
        free(mark);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < nd; k++)
        mark[map[k]] = 1;
    for (int k = 0; k < nc; k++)
        if (otl_metrics_present(&r->mt, k))
            mark[k] = 1;
    /* data class names of the outputs (without stored labels, class k is output k) */
    for (int k = 0; k < nc; k++) {
        if (!mark[k])
            continue;
        const char *name = NULL;
        if (c->labels)
            name = c->labels[k];
        for (int j = 0; !name && j < nd; j++)
            if (map[j] == k)
                name = otl_dataset_class_name(d, j);
        if (!name) {
            snprintf(r->name_buf + (size_t)k * 24, 24, "%d", k);
            name = r->name_buf + (size_t)k * 24;
        }
        r->names[r->n_show] = (char *)name;
        r->show[r->n_show++] = k;
    }
    free(mark);
    return OTL_OK;
}

static void print_json(const eval_result *r, const char *model, const char *data, int has_top5)
{
    const otl_metrics *mt = &r->mt;
    double mp, mr, mf;
    otl_metrics_macro(mt, &mp, &mr, &mf);
    otl_json j;
    otl_json_init(&j, stdout);
    otl_json_obj(&j);
    otl_json_key(&j, "model");
    otl_json_str(&j, model);
    otl_json_key(&j, "data");
    otl_json_str(&j, data);
    otl_json_key(&j, "n");
    otl_json_int(&j, mt->total);
    otl_json_key(&j, "correct");
    otl_json_int(&j, mt->correct);
    otl_json_key(&j, "accuracy");
    otl_json_num(&j, otl_metrics_accuracy(mt));
    if (has_top5) {
        otl_json_key(&j, "top5");
        otl_json_num(&j, (double)r->top5 / (double)mt->total);
    }
    otl_json_key(&j, "macro_f1");
    otl_json_num(&j, mf);
    otl_json_key(&j, "macro_precision");
    otl_json_num(&j, mp);
    otl_json_key(&j, "macro_recall");
    otl_json_num(&j, mr);
    otl_json_key(&j, "weighted_f1");
    otl_json_num(&j, otl_metrics_weighted_f1(mt));
    otl_json_key(&j, "loss");
    otl_json_num(&j, r->loss_sum / (double)mt->total);
    otl_json_key(&j, "labels");
    otl_json_arr(&j);
    for (int i = 0; i < r->n_show; i++)
        otl_json_str(&j, r->names[i]);
    otl_json_arr_end(&j);
    otl_json_key(&j, "per_class");
    otl_json_arr(&j);
    for (int i = 0; i < r->n_show; i++) {
        double p, rc, f;
        int64_t sup;
        otl_metrics_class(mt, r->show[i], &p, &rc, &f, &sup);
        otl_json_obj(&j);
        otl_json_key(&j, "label");
        otl_json_str(&j, r->names[i]);
        otl_json_key(&j, "index");
        otl_json_int(&j, r->show[i]);
        otl_json_key(&j, "precision");
        otl_json_num(&j, p);
        otl_json_key(&j, "recall");
        otl_json_num(&j, rc);
        otl_json_key(&j, "f1");
        otl_json_num(&j, f);
        otl_json_key(&j, "support");
        otl_json_int(&j, sup);
        otl_json_obj_end(&j);
    }
    otl_json_arr_end(&j);
    otl_json_key(&j, "confusion");
    otl_json_arr(&j);
    for (int i = 0; i < r->n_show; i++) {
        otl_json_arr(&j);
        for (int k = 0; k < r->n_show; k++)
            otl_json_int(&j, mt->confusion[(int64_t)r->show[i] * mt->n_classes + r->show[k]]);
        otl_json_arr_end(&j);
    }
    otl_json_arr_end(&j);
    otl_json_obj_end(&j); /* ends the line */
}

static void print_text(const eval_result *r, const char *model, const char *data, int has_top5)
{
    const otl_metrics *mt = &r->mt;
    double mp, mr, mf;
    otl_metrics_macro(mt, &mp, &mr, &mf);
    printf("eval: %s on %s: %lld samples, %d classes reported\n", model, data, (long long)mt->total, r->n_show);
    printf("accuracy     %.4f (%lld/%lld)\n", otl_metrics_accuracy(mt), (long long)mt->correct, (long long)mt->total);
    if (has_top5)
        printf("top-5        %.4f\n", (double)r->top5 / (double)mt->total);
    printf("macro F1     %.4f\n", mf);
    printf("loss         %.4f (mean cross-entropy)\n", r->loss_sum / (double)mt->total);
    int w = 12;
    for (int i = 0; i < r->n_show; i++) {
        int l = (int)strlen(r->names[i]);
        if (l > w)
            w = l < 40 ? l : 40;
    }
    printf("\n%-*s  %9s  %9s  %9s  %9s\n", w, "label", "precision", "recall", "f1", "support");
    for (int i = 0; i < r->n_show; i++) {
        double p, rc, f;
        int64_t sup;
        otl_metrics_class(mt, r->show[i], &p, &rc, &f, &sup);
        printf("%-*.*s  %9.4f  %9.4f  %9.4f  %9lld\n", w, w, r->names[i], p, rc, f, (long long)sup);
    }
    printf("%-*s  %9.4f  %9.4f  %9.4f  %9lld\n", w, "macro avg", mp, mr, mf, (long long)mt->total);
    printf("%-*s  %9s  %9s  %9.4f  %9lld\n", w, "weighted avg", "", "", otl_metrics_weighted_f1(mt),
           (long long)mt->total);
    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n");
    int cw = 5;
    for (int i = 0; i < r->n_show; i++) {
        int l = (int)strlen(r->names[i]);
        if (l > cw)
            cw = l < 12 ? l : 12;
        char num[32];
        for (int k = 0; k < r->n_show; k++) {
            l = snprintf(num, sizeof num, "%lld",
                         (long long)mt->confusion[(int64_t)r->show[i] * mt->n_classes + r->show[k]]);
            if (l > cw)
                cw = l;
        }
    }
    printf("%-*s", w, "");
    for (int k = 0; k < r->n_show; k++)
        printf(" %*.*s", cw, cw, r->names[k]);
    putchar('\n');
    for (int i = 0; i < r->n_show; i++) {
        printf("%-*.*s", w, w, r->names[i]);
        for (int k = 0; k < r->n_show; k++)
            printf(" %*lld", cw, (long long)mt->confusion[(int64_t)r->show[i] * mt->n_classes + r->show[k]]);
        putchar('\n');
    }
}

int cmd_eval(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "eval", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const char *data = cli_get(&a, "data");
    if (!data || !*data)
        return cli_usage_error(usage, "eval: --data DATA is required");
    int as_json = cli_flag(&a, "json");
    long batch = 32;
    if ((rc = cli_count(&a, usage, "eval", "batch", 1 << 20, &batch)))
        return rc;
    int threads;
    if ((rc = cli_threads(&a, usage, &threads)))
        return rc;

    otl_error err = {0};
    otl_model *m = NULL;
    otl_classifier *c = NULL;
    otl_dataset *d = NULL;
    int *map = NULL;
    int64_t *idx = NULL, *y = NULL;
    void *x = NULL;
    float *scores = NULL, *logits = NULL;
    double *probs = NULL;
    eval_result r;
    memset(&r, 0, sizeof r);
    int status = EXIT_OK;
    const char *model = a.pos[0];
    if (otl_model_load(&m, model, NULL, &err) || otl_classifier_new(&c, m, threads, &err))
        goto fail;
    otl_preprocess pp;
    otl_dataset_opts o;
    otl_dataset_opts_init(&o);
    o.threads = threads;
    o.skip_bad = cli_flag(&a, "skip-bad");
    if (is_dir(data)) {
        if (otl_preprocess_get(m, &pp, &err))
            goto fail;
        o.pp = &pp;
    } else {
        o.dtype = c->dtype;
        o.rank = c->rank >= 1 ? c->rank - 1 : -1;
        for (int k = 0; k + 1 < c->rank && k < OTL_DATASET_MAX_RANK; k++)
            o.dims[k] = c->dims[k + 1];
    }
    if (otl_dataset_open(&d, data, &o, &err))
        goto fail;
    if (*otl_dataset_skipped(d))
        fprintf(stderr, "onnx-tl: skipped unreadable items of %s:\n%s", data, otl_dataset_skipped(d));
    int64_t n = otl_dataset_len(d);
    if (n < 1) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: the data set holds no samples", data);
        goto fail;
    }
    if (map_classes(c, d, data, cli_flag(&a, "by-index"), &map, &err))
        goto fail;
    int sdtype, srank;
    int64_t sdims[OTL_DATASET_MAX_RANK];
    otl_dataset_sample(d, &sdtype, &srank, sdims);
    if (sdtype != c->dtype) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: samples are %s, input '%s' of %s is %s", data, otl_dtype_name(sdtype),
                      c->input, model, otl_dtype_name(c->dtype));
        goto fail;
    }
    if (c->rank >= 1 && srank != c->rank - 1) {
        otl_error_set(&err, OTL_ERR_INPUT,
                      "%s: samples have rank %d, input '%s' of %s takes rank %d (with the batch axis)",
                      data, srank, c->input, model, c->rank);
        goto fail;
    }
    size_t sb = otl_dataset_sample_bytes(d);
    int64_t b = batch < n ? batch : n;
    idx = malloc((size_t)b * sizeof *idx);
    y = malloc((size_t)b * sizeof *y);
    x = malloc((size_t)b * sb + 1);
    if (!idx || !y || !x) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory for a batch of %lld", (long long)b);
        goto fail;
    }
    int nd = otl_dataset_n_classes(d);
    int tty = n > b && isatty(STDERR_FILENO);
    for (int64_t start = 0; start < n; start += b) {
        int64_t nb = n - start < b ? n - start : b;
        for (int64_t i = 0; i < nb; i++)
            idx[i] = start + i;
        if (otl_dataset_batch(d, idx, nb, NULL, 0, x, y, &err) ||
            otl_classifier_run(c, x, nb, sdims, &scores, &logits, &err))
            goto fail;
        int nc = (int)c->n_classes;
        if (!r.mt.confusion) {
            for (int k = 0; k < nd; k++)
                if (map[k] >= nc) {
                    otl_error_set(&err, OTL_ERR_INPUT,
                                  "%s: the data set has %d classes but output '%s' of %s has only %d",
                                  data, nd, c->output, model, nc);
                    goto fail;
                }
            if (otl_metrics_init(&r.mt, nc, &err))
                goto fail;
            if (!(probs = malloc((size_t)nc * sizeof *probs))) {
                otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        for (int64_t i = 0; i < nb; i++) {
            if (y[i] < 0 || y[i] >= nd) {
                otl_error_set(&err, OTL_ERR_INPUT, "%s: %s: label %lld outside 0..%d", data,
                              otl_dataset_item_name(d, idx[i]), (long long)y[i], nd - 1);
                goto fail;
            }
            int64_t truth = map[y[i]];
            const float *s = scores + i * nc;
            otl_scores_probs(s, nc, c->kind, probs);
            int top[5];
            otl_topk(probs, nc, 5, top);
            /* argmax of the first output itself (probabilities rank as their scores) */
            int pred = 0;
            for (int k = 1; k < nc; k++)
                if (s[k] > s[pred] || (isnan(s[pred]) && !isnan(s[k])))
                    pred = k;
            otl_metrics_add(&r.mt, truth, pred);
            for (int k = 0; k < 5 && k < nc; k++)
                r.top5 += top[k] == truth;
            r.loss_sum += otl_scores_ce(logits + i * nc, nc, truth);
        }
        free(scores);
        free(logits);
        scores = logits = NULL;
        if (tty) /* progress only on a terminal (CLI.md) */
            fprintf(stderr, "\reval: %lld/%lld samples", (long long)(start + nb), (long long)n);
    }
    if (tty)
        fputs("\r\033[K", stderr);
    if (pick_classes(&r, c, d, map, &err))
        goto fail;
    if (as_json)
        print_json(&r, model, data, r.mt.n_classes > 5);
    else
        print_text(&r, model, data, r.mt.n_classes > 5);
    if (cli_flush_stdout(&err))
        goto fail;
    goto done;
fail:
    status = cli_fail(&err);
done:
    free(scores);
    free(logits);
    free(probs);
    free(idx);
    free(y);
    free(x);
    free(map);
    result_free(&r);
    otl_dataset_free(d);
    otl_classifier_free(c);
    otl_model_free(m);
    return status;
}
