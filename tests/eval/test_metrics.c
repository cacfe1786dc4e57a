/* test_metrics.c - src/metrics.c against tests/eval/data/metrics_goldens.txt (numpy from
 * scikit-learn's definitions, made by make_metrics_goldens.py); otl_topk against a brute-force
 * ranking; otl_model_labels on well-formed and malformed label lists.
 * usage: test_metrics GOLDENS.txt   (exit 0 only when every check passes) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_data.h"

static int failures, checks;

static void close_to(const char *what, const char *name, int c, double got, double want, double tol)
{
    checks++;
    if ((isnan(want) && isnan(got)) || fabs(got - want) <= tol)
        return;
    failures++;
    fprintf(stderr, "FAIL %s %s[%d]: got %.17g, want %.17g\n", name, what, c, got, want);
}

static int read_ints(FILE *fp, const char *tag, int64_t *v, int n)
{
    char word[32];
    if (fscanf(fp, "%31s", word) != 1 || strcmp(word, tag) != 0)
        return 0;
    for (int i = 0; i < n; i++) {
        long long x;
        if (fscanf(fp, "%lld", &x) != 1)
            return 0;
        v[i] = x;
    }
    return 1;
}

static int read_doubles(FILE *fp, const char *tag, double *v, int n)
{
    char word[32];
    if (fscanf(fp, "%31s", word) != 1 || strcmp(word, tag) != 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char num[64];
        if (fscanf(fp, "%63s", num) != 1)
            return 0;
        v[i] = strtod(num, NULL); /* accepts "nan" */
    }
    return 1;
}

static int check_case(FILE *fp, const char *name, int n_classes, int n)
{
    int64_t *t = malloc((size_t)n * sizeof *t), *p = malloc((size_t)n * sizeof *p);
    otl_metrics mt;
    otl_error err = {0};
    int ok = t && p && read_ints(fp, "true", t, n) && read_ints(fp, "pred", p, n);
    if (!ok || otl_metrics_init(&mt, n_classes, &err)) {
        fprintf(stderr, "%s: bad golden record or init failure (%s)\n", name, err.msg);
        free(t);
        free(p);
        return 0;
    }
    for (int i = 0; i < n; i++)
        otl_metrics_add(&mt, t[i], p[i]);
    otl_metrics_add(&mt, n_classes, 0); /* out of range: ignored */
    otl_metrics_add(&mt, 0, -1);
    checks++;
    if (mt.total != n) {
        failures++;
        fprintf(stderr, "FAIL %s: total %lld, want %d\n", name, (long long)mt.total, n);
    }
    double v[4] = {0};
    const double tol = 1e-12;
    ok = read_doubles(fp, "accuracy", v, 1);
    close_to("accuracy", name, 0, otl_metrics_accuracy(&mt), v[0], tol);
    ok = ok && read_doubles(fp, "macro", v, 3);
    double mp, mr, mf;
    otl_metrics_macro(&mt, &mp, &mr, &mf);
    close_to("macro_precision", name, 0, mp, v[0], tol);
    close_to("macro_recall", name, 0, mr, v[1], tol);
    close_to("macro_f1", name, 0, mf, v[2], tol);
    close_to("macro_f1()", name, 0, otl_metrics_macro_f1(&mt), v[2], tol);
    ok = ok && read_doubles(fp, "weighted", v, 1);
    close_to("weighted_f1", name, 0, otl_metrics_weighted_f1(&mt), v[0], tol);
    for (int c = 0; ok && c < n_classes; c++) {
        char word[32];
        int cc;
        ok = fscanf(fp, "%31s %d", word, &cc) == 2 && strcmp(word, "class") == 0 && cc == c;
        for (int k = 0; ok && k < 4; k++) {
            char num[64];
            ok = fscanf(fp, "%63s", num) == 1;
            v[k] = strtod(num, NULL);
        }
        double pr, re, f1;
        int64_t sup;
        otl_metrics_class(&mt, c, &pr, &re, &f1, &sup);
        close_to("precision", name, c, pr, v[0], tol);
        close_to("recall", name, c, re, v[1], tol);
        close_to("f1", name, c, f1, v[2], tol);
        close_to("support", name, c, (double)sup, v[3], 0);
        /* predicted count = column sum, checked against the golden predictions */
        int64_t np_ = 0;
        for (int i = 0; i < n; i++)
            np_ += p[i] == c;
        close_to("predicted", name, c, (double)otl_metrics_predicted(&mt, c), (double)np_, 0);
    }
    char word[32];
    ok = ok && fscanf(fp, "%31s", word) == 1 && strcmp(word, "end") == 0;
    if (!ok)
        fprintf(stderr, "%s: malformed golden record\n", name);
    otl_metrics_free(&mt);
    otl_metrics_free(&mt); /* twice: no-op */
    free(t);
    free(p);
    return ok;
}

static int check_scores(FILE *fp, int kind, int n, int y)
{
    float *z = malloc((size_t)n * sizeof *z);
    double *zz = malloc((size_t)n * sizeof *zz), *want = malloc((size_t)n * sizeof *want);
    double *got = malloc((size_t)n * sizeof *got), ce;
    int ok = z && zz && want && got;
    for (int i = 0; ok && i < n; i++) {
        char num[64];
        ok = fscanf(fp, "%63s", num) == 1;
        zz[i] = strtod(num, NULL);
        z[i] = (float)zz[i];
    }
    ok = ok && read_doubles(fp, "probs", want, n) && read_doubles(fp, "ce", &ce, 1);
    if (ok) {
        otl_scores_probs(z, n, kind, got);
        for (int i = 0; i < n; i++)
            close_to("probs", "scores", i, got[i], want[i], 1e-12);
        if (kind == OTL_SCORES_LOGITS)
            close_to("ce", "scores", y, otl_scores_ce(z, n, y), ce, 1e-9);
    } else {
        fprintf(stderr, "scores: malformed golden record\n");
    }
    free(z);
    free(zz);
    free(want);
    free(got);
    return ok;
}

static void check_topk(void)
{
    unsigned s = 12345;
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + trial % 17, k = 1 + (trial / 3) % 8;
        double v[17];
        for (int i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            v[i] = (double)((s >> 16) % 7); /* many ties */
            if (trial % 11 == 0 && i == 2)
                v[i] = NAN;
        }
        int idx[17], kk = k < n ? k : n;
        otl_topk(v, n, k, idx);
        /* brute force: position j holds the element of rank j (larger first, lower index on
         * ties, NaN last) */
        int used[17] = {0};
        for (int j = 0; j < kk; j++) {
            int best = -1;
            for (int i = 0; i < n; i++) {
                if (used[i])
                    continue;
                if (best < 0 || v[i] > v[best] || (isnan(v[best]) && !isnan(v[i])))
                    best = i;
            }
            used[best] = 1;
            checks++;
            if (idx[j] != best) {
                failures++;
                fprintf(stderr, "FAIL topk trial %d: position %d is %d, want %d\n", trial, j, idx[j], best);
            }
        }
    }
}

static void check_labels(const char *text, int want_n, const char *want_last, int want_error)
{
    otl_model *m = otl_model_new();
    otl_error err = {0};
    char **labels = NULL;
    int n = -1;
    checks++;
    if (!m || (text && otl_model_meta_set(m, "onnx_tl.labels", text, &err))) {
        failures++;
        fprintf(stderr, "FAIL labels: setup\n");
        otl_model_free(m);
        return;
    }
    otl_status st = otl_model_labels(m, &labels, &n, &err);
    int bad = 0;
    if (want_error)
        bad = st == OTL_OK || labels || n != 0 || !strstr(err.msg, "onnx_tl.labels");
    else
        bad = st != OTL_OK || n != want_n || (n && strcmp(labels[n - 1], want_last) != 0);
    if (bad) {
        failures++;
        fprintf(stderr, "FAIL labels %s: status %d, n %d, last '%s', error '%s'\n", text ? text : "(none)", (int)st,
                n, n > 0 && labels ? labels[n - 1] : "", err.msg);
    }
    free(labels);
    otl_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_metrics GOLDENS.txt\n");
        return 2;
    }
    FILE *fp = fopen(argv[1], "r");
    if (!fp) {
        perror(argv[1]);
        return 1;
    }
    char word[32];
    int n_cases = 0, n_scores = 0, ok = 1;
    while (ok && fscanf(fp, "%31s", word) == 1) {
        if (strcmp(word, "case") == 0) {
            char name[64];
            int nc, n;
            ok = fscanf(fp, "%63s %d %d", name, &nc, &n) == 3 && check_case(fp, name, nc, n);
            n_cases++;
        } else if (strcmp(word, "scores") == 0) {
            int kind, n, y;
            ok = fscanf(fp, "%d %d %d", &kind, &n, &y) == 3 && check_scores(fp, kind, n, y);
            n_scores++;
        } else {
            fprintf(stderr, "%s: unexpected '%s'\n", argv[1], word);
            ok = 0;
        }
    }
    fclose(fp);
    if (!ok || n_cases < 10 || n_scores < 5) {
        fprintf(stderr, "%s: malformed or incomplete (%d cases, %d score rows)\n", argv[1], n_cases, n_scores);
        return 1;
    }
    /* empty metrics */
    otl_metrics mt;
    otl_error err = {0};
    if (otl_metrics_init(&mt, 4, &err) == OTL_OK) {
        close_to("accuracy", "empty", 0, otl_metrics_accuracy(&mt), 0, 0);
        close_to("macro_f1", "empty", 0, otl_metrics_macro_f1(&mt), 0, 0);
        otl_metrics_free(&mt);
    }
    checks++;
    if (otl_metrics_init(&mt, 0, &err) == OTL_OK) {
        failures++;
        fprintf(stderr, "FAIL init with 0 classes succeeded\n");
    }
    check_topk();
    check_labels(NULL, 0, NULL, 0);
    check_labels("cat\ndog\nbird", 3, "bird", 0);
    check_labels("cat\ndog\n", 2, "dog", 0);
    check_labels("cat\r\ndog\r\n", 2, "dog", 0);
    check_labels("single", 1, "single", 0);
    check_labels("", 0, NULL, 1);
    check_labels("cat\n\ndog", 0, NULL, 1);
    check_labels("cat\ndog\ncat", 0, NULL, 1);
    printf("test_metrics: %d cases, %d score rows, %d checks, %d failures\n", n_cases, n_scores, checks, failures);
    return failures ? 1 : 0;
}
