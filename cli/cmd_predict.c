/* cmd_predict.c - `onnx-tl predict MODEL FILE...`: top-K labels with confidence for images
 * (preprocessed exactly as in training: otl_preprocess_get + otl_image_load) and for .npy files
 * holding one preprocessed sample or a batch (../shared/CLI.md). Results are printed only once
 * every file has been read and run, so a bad file leaves stdout empty. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "onnxtl_data.h"
#include "src/json.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl predict MODEL FILE... [--top K] [--json] [--threshold T] [--batch B] [--threads N]\n"
    "\n"
    "Classify images (PNG/JPEG, preprocessed as the model's stored preprocessing says, as in training)\n"
    "or .npy files holding one preprocessed sample (the input's shape without the batch axis) or a\n"
    "batch of them. Prints, per sample, the K most likely labels with their confidence: the softmax\n"
    "of the first output, or the output itself when the model ends in a Softmax (exp of it after a\n"
    "LogSoftmax). Labels are the ones stored in the model (swap-head --labels), else class indices.\n"
    "  --top K         labels per sample (default 5, at most the number of classes)\n"
    "  --threshold T   flag predictions whose top confidence is below T (default 0.5)\n"
    "  --json          one JSON object on stdout: {\"model\", \"threshold\", \"predictions\": [{\"file\",\n"
    "                  [\"item\": index within a batch .npy,] \"top\": [{\"label\", \"index\", \"confidence\"}],\n"
    "                  \"low_confidence\"}]}\n"
    "  --batch B       samples per forward pass (default 32)\n"
    "  --threads N     compute threads (default: all cores)\n";

static const cli_opt opts[] = {
    {"top", 1, 0}, {"json", 0, 0}, {"threshold", 1, 0}, {"batch", 1, 0}, {"threads", 1, 0}, {NULL, 0, 0},
};

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    if (ls < lx)
        return 0;
    for (size_t i = 0; i < lx; i++)
        if (tolower((unsigned char)s[ls - lx + i]) != tolower((unsigned char)suffix[i]))
            return 0;
    return 1;
}

typedef struct pred_item {
    int file;       /* index into the FILE arguments */
    int64_t item;   /* index within a batch .npy, -1 for a single sample */
} pred_item;

/* A .npy argument converted to the input dtype, or NULL for an image. */
typedef struct pred_file {
    otl_tensor *t;
    int64_t n;      /* samples it holds */
} pred_file;

/* Load a .npy and check it against the input: one sample or a batch. float64 -> float32 and
 * int32 -> int64 conversions as for .npz data sets. */
static otl_status load_npy(const otl_classifier *c, const char *path, int64_t *sdims, int *have_sdims, pred_file *pf,
                           otl_error *err)
{
    otl_tensor *t = NULL;
    otl_status st = otl_npy_load(&t, path, err);
    if (st)
        return st;
    pf->t = t;
    if (t->dtype != c->dtype) {
        int f64 = t->dtype == OTL_DTYPE_DOUBLE && c->dtype == OTL_DTYPE_FLOAT;
        int i32 = t->dtype == OTL_DTYPE_INT32 && c->dtype == OTL_DTYPE_INT64;
        if (!f64 && !i32)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: holds %s, input '%s' of %s is %s", path,
                                 otl_dtype_name(t->dtype), c->input, c->file, otl_dtype_name(c->dtype));
        void *nd = malloc((size_t)(t->numel ? t->numel : 1) * (f64 ? sizeof(float) : sizeof(int64_t)));
        if (!nd)
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        for (int64_t i = 0; i < t->numel; i++) {
            if (f64)
                ((float *)nd)[i] = (float)((const double *)t->data)[i];
            else
                ((int64_t *)nd)[i] = ((const int32_t *)t->data)[i];
        }
        free(t->data);
        t->data = nd;
        t->dtype = c->dtype;
        t->nbytes = (size_t)t->numel * (f64 ? sizeof(float) : sizeof(int64_t));
    }
    int srank = c->rank - 1;
    const int64_t *dims;
    if (t->rank == srank) {
        pf->n = 1;
        dims = t->dims;
    } else if (t->rank == srank + 1) {
        pf->n = t->dims[0];
        dims = t->dims + 1;
    } else {
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: has rank %d; input '%s' of %s takes one sample of rank %d or a batch of rank %d",
                             path,
                             t->rank, c->input, c->file, srank, srank + 1);
    }
    if (pf->n < 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: holds no samples", path);
    for (int k = 0; k < srank; k++) {
        int64_t want = *have_sdims ? sdims[k] : c->dims[k + 1];
        if (want > 0 && dims[k] != want)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: sample axis %d has size %lld, input '%s' of %s expects %lld",
                                 path,
                                 k, (long long)dims[k], c->input, c->file, (long long)want);
    }
    for (int k = 0; k < srank; k++)
        sdims[k] = dims[k];
    *have_sdims = 1;
    for (int64_t i = 0; t->dtype == OTL_DTYPE_FLOAT && i < t->numel; i++) /* as for data sets: no NaN/Inf */
        if (!isfinite(((const float *)t->data)[i]))
            return otl_error_set(err, OTL_ERR_INPUT, "%s: sample %lld holds a NaN or infinite value (element %lld)",
                                 path, (long long)(i / (t->numel / pf->n)), (long long)(i % (t->numel / pf->n)));
    return OTL_OK;
}

int cmd_predict(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, opts, usage, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (a.n_pos < 2)
        return cli_usage_error(usage, "predict: expected MODEL and at least one FILE (see --help)");
    int as_json = cli_flag(&a, "json");
    long topk = 5, batch = 32;
    double threshold = 0.5;
    const char *v;
    char *e;
    if ((rc = cli_count(&a, usage, "predict", "top", 1 << 20, &topk)) ||
        (rc = cli_count(&a, usage, "predict", "batch", 1 << 20, &batch)))
        return rc;
    if ((v = cli_get(&a, "threshold"))) {
        threshold = strtod(v, &e);
        if (!*v || *e || !(threshold >= 0 && threshold <= 1))
            return cli_usage_error(usage, "predict: --threshold must be a number in [0, 1], got '%s'", v);
    }
    int threads;
    if ((rc = cli_threads(&a, usage, &threads)))
        return rc;

    const char *model = a.pos[0];
    int n_files = a.n_pos - 1;
    const char *const *files = a.pos + 1;
    otl_error err = {0};
    otl_model *m = NULL;
    otl_classifier *c = NULL;
    pred_file *pf = calloc((size_t)n_files, sizeof *pf);
    pred_item *items = NULL;
    int64_t n_items = 0;
    void *x = NULL;
    float *scores = NULL, *logits = NULL;
    double *probs = NULL, *conf = NULL;
    int *top = NULL;
    int status = EXIT_OK;
    if (!pf) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (otl_model_load(&m, model, NULL, &err) || otl_classifier_new(&c, m, threads, &err))
        goto fail;
    if (c->rank < 1) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: input '%s' has no declared shape; cannot tell a sample's shape", model,
                      c->input);
        goto fail;
    }
    /* sample shape: from the preprocessing for images, from the files for .npy */
    int64_t sdims[8];
    int have_sdims = 0, any_image = 0;
    otl_preprocess pp;
    for (int f = 0; f < n_files; f++)
        any_image |= !ends_with_ci(files[f], ".npy");
    if (any_image) {
        if (otl_preprocess_get(m, &pp, &err))
            goto fail;
        if (c->dtype != OTL_DTYPE_FLOAT) {
            otl_error_set(&err, OTL_ERR_INPUT, "%s: input '%s' is %s; images can only feed a float32 input", model,
                          c->input, otl_dtype_name(c->dtype));
            goto fail;
        }
        int ch = otl_preprocess_nchan(&pp);
        if (c->rank != 4) {
            otl_error_set(&err, OTL_ERR_INPUT, "%s: input '%s' has rank %d; images need a rank-4 input", model,
                          c->input,
                          c->rank);
            goto fail;
        }
        if (pp.nhwc) {
            sdims[0] = pp.height, sdims[1] = pp.width, sdims[2] = ch;
        } else {
            sdims[0] = ch, sdims[1] = pp.height, sdims[2] = pp.width;
        }
        have_sdims = 1;
    }
    for (int f = 0; f < n_files; f++) {
        if (!ends_with_ci(files[f], ".npy")) {
            n_items++;
            continue;
        }
        if (load_npy(c, files[f], sdims, &have_sdims, &pf[f], &err))
            goto fail;
        n_items += pf[f].n;
    }
    if (!(items = malloc((size_t)n_items * sizeof *items))) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int64_t k = 0;
    for (int f = 0; f < n_files; f++) {
        if (!pf[f].t) {
            items[k++] = (pred_item){f, -1};
            continue;
        }
        for (int64_t i = 0; i < pf[f].n; i++)
            items[k++] = (pred_item){f, pf[f].t->rank == c->rank ? i : -1};
    }
    int64_t numel = 1;
    for (int d = 0; d < c->rank - 1; d++)
        numel *= sdims[d];
    int64_t sb = otl_dtype_nbytes(c->dtype, numel);
    int64_t b = batch < n_items ? batch : n_items;
    if (sb <= 0) {
        otl_error_set(&err, OTL_ERR_INPUT, "%s: samples of input '%s' hold no elements", files[0], c->input);
        goto fail;
    }
    if (!(x = malloc((size_t)(b * sb)))) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory for a batch of %lld", (long long)b);
        goto fail;
    }
    int kk = 0;
    for (int64_t start = 0; start < n_items; start += b) {
        int64_t nb = n_items - start < b ? n_items - start : b;
        for (int64_t i = 0; i < nb; i++) {
            const pred_item *it = &items[start + i];
            char *dst = (char *)x + i * sb;
            if (pf[it->file].t) {
                int64_t off = it->item < 0 ? 0 : it->item;
                memcpy(dst, (const char *)pf[it->file].t->data + off * sb, (size_t)sb);
            } else if (otl_image_load(files[it->file], &pp, (float *)dst, &err)) {
                goto fail;
            }
        }
        if (otl_classifier_run(c, x, nb, sdims, &scores, &logits, &err))
            goto fail;
        int nc = (int)c->n_classes;
        if (!top) {
            kk = topk < nc ? (int)topk : nc;
            top = malloc((size_t)n_items * (size_t)kk * sizeof *top);
            conf = malloc((size_t)n_items * (size_t)kk * sizeof *conf);
            probs = malloc((size_t)nc * sizeof *probs);
            if (!top || !conf || !probs) {
                otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        for (int64_t i = 0; i < nb; i++) {
            otl_scores_probs(scores + i * nc, nc, c->kind, probs);
            int *t = top + (start + i) * kk;
            otl_topk(probs, nc, kk, t);
            for (int j = 0; j < kk; j++)
                conf[(start + i) * kk + j] = probs[t[j]];
        }
        free(scores);
        free(logits);
        scores = logits = NULL;
    }

    char buf[32];
    if (as_json) {
        otl_json j;
        otl_json_init(&j, stdout);
        otl_json_obj(&j);
        otl_json_key(&j, "model");
        otl_json_str(&j, model);
        otl_json_key(&j, "threshold");
        otl_json_num(&j, threshold);
        otl_json_key(&j, "predictions");
        otl_json_arr(&j);
        for (int64_t i = 0; i < n_items; i++) {
            otl_json_obj(&j);
            otl_json_key(&j, "file");
            otl_json_str(&j, files[items[i].file]);
            if (items[i].item >= 0) {
                otl_json_key(&j, "item");
                otl_json_int(&j, items[i].item);
            }
            otl_json_key(&j, "top");
            otl_json_arr(&j);
            for (int t = 0; t < kk; t++) {
                int cls = top[i * kk + t];
                otl_json_obj(&j);
                otl_json_key(&j, "label");
                otl_json_str(&j, otl_classifier_label(c, cls, buf, sizeof buf));
                otl_json_key(&j, "index");
                otl_json_int(&j, cls);
                otl_json_key(&j, "confidence");
                otl_json_num(&j, conf[i * kk + t]);
                otl_json_obj_end(&j);
            }
            otl_json_arr_end(&j);
            otl_json_key(&j, "low_confidence");
            otl_json_bool(&j, !(conf[i * kk] >= threshold));
            otl_json_obj_end(&j);
        }
        otl_json_arr_end(&j);
        otl_json_obj_end(&j); /* ends the line */
    } else {
        for (int64_t i = 0; i < n_items; i++) {
            if (items[i].item >= 0)
                printf("%s[%lld]:", files[items[i].file], (long long)items[i].item);
            else
                printf("%s:", files[items[i].file]);
            for (int t = 0; t < kk; t++)
                printf("%s %s %.4f", t ? "," : "", otl_classifier_label(c, top[i * kk + t], buf, sizeof buf),
                       conf[i * kk + t]);
            if (!(conf[i * kk] >= threshold))
                printf("  (low confidence: below %g)", threshold);
            putchar('\n');
        }
    }
    if (cli_flush_stdout(&err))
        goto fail;
    goto done;
fail:
    status = cli_fail(&err);
done:
    free(scores);
    free(logits);
    free(probs);
    free(conf);
    free(top);
    free(x);
    free(items);
    for (int f = 0; pf && f < n_files; f++)
        otl_tensor_free(pf[f].t);
    free(pf);
    otl_classifier_free(c);
    otl_model_free(m);
    return status;
}
