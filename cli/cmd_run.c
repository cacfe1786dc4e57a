/* cmd_run.c - `onnx-tl run MODEL --input NAME=FILE.npy ... --outdir DIR`: a plain forward pass
 * with inference semantics; writes DIR/<output name>.npy for every graph output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl run MODEL --input NAME=FILE.npy [--input ...] --outdir DIR [--threads N]\n"
    "\n"
    "Forward pass with inference semantics (BatchNormalization uses running statistics,\n"
    "Dropout is off). Writes DIR/<output name>.npy for every graph output; characters outside\n"
    "[A-Za-z0-9._-] in output names become '_'.\n"
    "  --input NAME=FILE.npy   value of graph input NAME (repeat for each input)\n"
    "  --outdir DIR            output directory (created if missing)\n"
    "  --threads N             compute threads (default: all cores)\n";

static const cli_opt opts[] = {
    {"input", 1, 1}, {"outdir", 1, 0}, {"threads", 1, 0}, {NULL, 0, 0},
};

int cli_threads(const cli_args *a, const char *usage_text, int *threads)
{
    const char *t = cli_get(a, "threads");
    *threads = 0;
    if (!t)
        return 0;
    char *e;
    long v = strtol(t, &e, 10);
    if (!*t || *e || v < 1 || v > 4096)
        return cli_usage_error(usage_text, "--threads must be a positive integer, got '%s'", t);
    *threads = (int)v;
    return 0;
}

static int make_dir(const char *dir, otl_error *err)
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

int cmd_run(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, opts, usage, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (a.n_pos != 1)
        return cli_usage_error(usage, "run: expected one MODEL argument (see --help)");
    const char *outdir = cli_get(&a, "outdir");
    if (!outdir || !*outdir)
        return cli_usage_error(usage, "run: --outdir DIR is required");
    int threads;
    if ((rc = cli_threads(&a, usage, &threads)))
        return rc;
    /* collect --input NAME=FILE */
    int n_in = 0;
    const char *names[128], *files[128];
    for (int i = 0; i < a.n_set; i++) {
        if (strcmp(a.set[i].name, "input") != 0)
            continue;
        const char *eq = strchr(a.set[i].value, '=');
        if (!eq || eq == a.set[i].value || !eq[1])
            return cli_usage_error(usage, "run: --input expects NAME=FILE.npy, got '%s'", a.set[i].value);
        if (n_in >= 128)
            return cli_usage_error(usage, "run: too many --input options");
        names[n_in] = a.set[i].value;
        files[n_in] = eq + 1;
        n_in++;
    }

    otl_error err = {0};
    otl_model *m = NULL;
    otl_session *s = NULL;
    otl_tensor *in[128] = {0};
    otl_tensor **outs = NULL;
    int n_out = 0, status = EXIT_OK;
    if (otl_model_load(&m, a.pos[0], NULL, &err))
        goto fail;
    for (int i = 0; i < n_in; i++) {
        if (otl_npy_load(&in[i], files[i], &err))
            goto fail;
        free(in[i]->name);
        in[i]->name = otl_strndup(names[i], (size_t)(strchr(names[i], '=') - names[i]));
        if (!in[i]->name) {
            otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    otl_session_opts so = {.threads = threads};
    if (otl_session_new(&s, m, &so, &err))
        goto fail;
    if (otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, &err))
        goto fail;
    if (!make_dir(outdir, &err))
        goto fail;
    for (int i = 0; i < n_out; i++) {
        char *base = otl_sanitize_filename(outs[i]->name);
        size_t len = strlen(outdir) + (base ? strlen(base) : 0) + 8;
        char *path = base ? malloc(len) : NULL;
        if (!path) {
            free(base);
            otl_error_set(&err, OTL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        snprintf(path, len, "%s/%s.npy", outdir, base);
        otl_status st = otl_npy_save(outs[i], path, &err);
        free(path);
        free(base);
        if (st)
            goto fail;
    }
    goto done;
fail:
    status = cli_fail(&err);
done:
    for (int i = 0; i < n_out; i++)
        otl_tensor_free(outs[i]);
    free(outs);
    for (int i = 0; i < n_in; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_model_free(m);
    return status;
}
