/* cmd_run.c - `onnx-tl run MODEL --input NAME=FILE.npy ... --outdir DIR`: a plain forward pass
 * with inference semantics; writes DIR/<output name>.npy for every graph output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl run MODEL --input NAME=FILE.npy [--input ...] --outdir DIR [--threads N] [--repeat N]\n"
    "\n"
    "Forward pass with inference semantics (BatchNormalization uses running statistics,\n"
    "Dropout is off). Writes DIR/<output name>.npy for every graph output; characters outside\n"
    "[A-Za-z0-9._-] in output names become '_'.\n"
    "  --input NAME=FILE.npy   value of graph input NAME (repeat for each input)\n"
    "  --outdir DIR            output directory (created if missing)\n"
    "  --threads N             compute threads (default: all cores)\n"
    "  --repeat N              run the forward pass N times (outputs of the last run are written)\n"
    "                          and print per-run wall times, their median and items/s (batch / median)\n"
    "                          to stderr; the first run includes planning and is reported apart\n";

static const cli_opt opts[] = {
    {"input", 1, 1}, {"outdir", 1, 0}, {"threads", 1, 0}, {"repeat", 1, 0}, {NULL, 0, 0},
};

int cli_threads(const cli_args *a, const char *usage_text, int *threads)
{
    long v = 0;
    int rc = cli_count(a, usage_text, NULL, "threads", 4096, &v);
    *threads = (int)v;
    return rc;
}

int cli_make_dir(const char *dir, otl_error *err)
{
    char *p = otl_strdup(dir);
    if (!p)
        return 0;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = 0;
        mkdir(p, 0755);
        *q = '/';
    }
    int ok = mkdir(p, 0755) == 0 || errno == EEXIST;
    struct stat st;
    if (ok && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)))
        ok = 0;
    if (!ok)
        otl_error_set(err, OTL_ERR_IO, "%s: cannot create output directory: %s", dir, strerror(errno));
    free(p);
    return ok;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cli_collect_inputs(const cli_args *a, const char *usage_text, const char **names, const char **files,
                       int max, int *n)
{
    *n = 0;
    for (int i = 0; i < a->n_set; i++) {
        if (strcmp(a->set[i].name, "input") != 0)
            continue;
        const char *eq = strchr(a->set[i].value, '=');
        if (!eq || eq == a->set[i].value || !eq[1])
            return cli_usage_error(usage_text, "--input expects NAME=FILE.npy, got '%s'", a->set[i].value);
        if (*n >= max)
            return cli_usage_error(usage_text, "too many --input options");
        names[*n] = a->set[i].value;
        files[*n] = eq + 1;
        (*n)++;
    }
    return 0;
}

/* Load each FILE.npy and name the tensor NAME (names[i] is "NAME=FILE"). */
otl_status cli_load_inputs(otl_tensor **in, const char **names, const char **files, int n, otl_error *err)
{
    for (int i = 0; i < n; i++) {
        otl_status st = otl_npy_load(&in[i], files[i], err);
        if (st)
            return st;
        free(in[i]->name);
        in[i]->name = otl_strndup(names[i], (size_t)(strchr(names[i], '=') - names[i]));
        if (!in[i]->name)
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    return OTL_OK;
}

/* Write t as DIR/<sanitized name>.npy. */
otl_status cli_save_named(const char *dir, const char *name, const otl_tensor *t, otl_error *err)
{
    char *base = otl_sanitize_filename(name);
    size_t len = strlen(dir) + (base ? strlen(base) : 0) + 8;
    char *path = base ? malloc(len) : NULL;
    if (!path) {
        free(base);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    snprintf(path, len, "%s/%s.npy", dir, base);
    otl_status st = otl_npy_save(t, path, err);
    free(path);
    free(base);
    return st;
}

/* Fail when two of the names map to the same DIR/<sanitized name>.npy (one file would silently
 * replace the other, e.g. outputs 'y:0' and 'y_0'). */
int cli_check_file_names(const char *file, const char *what, const char *const *names, int n, otl_error *err)
{
    char **san = calloc((size_t)n + 1, sizeof *san);
    int ok = san != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = (san[i] = otl_sanitize_filename(names[i])) != NULL;
    if (!ok)
        otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    for (int i = 0; ok && i < n; i++)
        for (int j = 0; ok && j < i; j++)
            if (strcmp(san[i], san[j]) == 0 && strcmp(names[i], names[j]) != 0) { /* one name twice: same data */
                otl_error_set(err, OTL_ERR_INPUT, "%s: %s '%s' and '%s' would both be written to %s.npy", file, what,
                              names[j], names[i], san[i]);
                ok = 0;
            }
    for (int i = 0; san && i < n; i++)
        free(san[i]);
    free(san);
    return ok;
}

int cli_check_overwrite(const char *dir, const char *const *names, int n, const char *const *inputs, int n_in,
                        otl_error *err)
{
    for (int i = 0; i < n; i++) {
        char *base = otl_sanitize_filename(names[i]);
        size_t len = strlen(dir) + (base ? strlen(base) : 0) + 8;
        char *path = base ? malloc(len) : NULL;
        if (!path) {
            free(base);
            otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
            return 0;
        }
        snprintf(path, len, "%s/%s.npy", dir, base);
        int k = 0;
        while (k < n_in && !cli_same_path(path, inputs[k]))
            k++;
        if (k < n_in)
            otl_error_set(err, OTL_ERR_USAGE, "%s: writing '%s' there would overwrite the input %s", path, names[i],
                          inputs[k]);
        free(path);
        free(base);
        if (k < n_in)
            return 0;
    }
    return 1;
}

int cmd_run(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "run", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const char *outdir = cli_get(&a, "outdir");
    if (!outdir || !*outdir)
        return cli_usage_error(usage, "run: --outdir DIR is required");
    int threads;
    if ((rc = cli_threads(&a, usage, &threads)))
        return rc;
    long repeat = 1;
    if ((rc = cli_count(&a, usage, "run", "repeat", 1000000, &repeat)))
        return rc;
    const char *names[128], *files[128];
    int n_in;
    if ((rc = cli_collect_inputs(&a, usage, names, files, 128, &n_in)))
        return rc;

    otl_error err = {0};
    otl_model *m = NULL;
    otl_session *s = NULL;
    otl_tensor *in[128] = {0};
    otl_tensor **outs = NULL;
    int n_out = 0, status = EXIT_OK;
    if (otl_model_load(&m, a.pos[0], NULL, &err))
        goto fail;
    const char **out_names = calloc((size_t)m->graph->n_outputs + 1, sizeof *out_names);
    if (!out_names) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->graph->n_outputs; i++)
        out_names[i] = m->graph->outputs[i]->name;
    int names_ok = cli_check_file_names(a.pos[0], "graph outputs", out_names, m->graph->n_outputs, &err) &&
                   cli_check_overwrite(outdir, out_names, m->graph->n_outputs, files, n_in, &err);
    free(out_names);
    if (!names_ok)
        goto fail;
    if (cli_load_inputs(in, names, files, n_in, &err))
        goto fail;
    otl_session_opts so = {.threads = threads};
    if (otl_session_new(&s, m, &so, &err))
        goto fail;
    double *ms = calloc((size_t)repeat, sizeof *ms);
    if (!ms) {
        otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (long r = 0; r < repeat; r++) {
        otl_tensors_free(outs, n_out);
        outs = NULL;
        n_out = 0;
        double t0 = now_ms();
        if (otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, &err)) {
            free(ms);
            goto fail;
        }
        ms[r] = now_ms() - t0;
    }
    if (repeat > 1) {
        int64_t batch = n_in && in[0]->rank ? in[0]->dims[0] : 1;
        fprintf(stderr, "run: first run (with planning) %.3f ms\n", ms[0]);
        for (long r = 1; r < repeat; r++)
            fprintf(stderr, "run: iteration %ld %.3f ms\n", r, ms[r]);
        qsort(ms + 1, (size_t)(repeat - 1), sizeof *ms, cmp_double);
        double med = (repeat - 1) % 2 ? ms[1 + (repeat - 1) / 2]
                                      : 0.5 * (ms[(repeat - 1) / 2] + ms[(repeat - 1) / 2 + 1]);
        fprintf(stderr, "run: %ld timed iterations, median %.3f ms, min %.3f ms, %.2f items/s (batch %lld)\n",
                repeat - 1, med, ms[1], 1e3 * (double)batch / med, (long long)batch);
    }
    free(ms);
    if (!cli_make_dir(outdir, &err))
        goto fail;
    for (int i = 0; i < n_out; i++)
        if (cli_save_named(outdir, outs[i]->name, outs[i], &err))
            goto fail;
    goto done;
fail:
    status = cli_fail(&err);
done:
    otl_tensors_free(outs, n_out);
    for (int i = 0; i < n_in; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_model_free(m);
    return status;
}
