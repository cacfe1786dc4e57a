/* nodetest.c - runner of ONNX's backend tests (Debian libonnx-testdata: data/node, data/simple,
 * data/pytorch-converted, data/pytorch-operator): every data set, every output compared.
 *
 *   otl_nodetest TESTDIR [--rtol R] [--atol A] [--threads N]
 *       run TESTDIR/model.onnx on every TESTDIR/test_data_set_* and compare each output with
 *       output_K.pb: same dtype and shape, |got - want| <= atol + rtol*|want| for floating types
 *       (defaults rtol 1e-3, atol 1e-7 as ONNX's backend tests; NaN matches NaN), exact otherwise.
 *       One line per mismatch on stdout. Exit 0 only if everything matched, 1 otherwise, 2 usage.
 *   otl_nodetest --discover DATADIR SKIPFILE OUT.cmake [--report FILE] [--exe PATH]
 *       write add_test() lines into OUT.cmake for every DATADIR/<suite>/test_* whose model the
 *       library accepts (a session can be created). Tests listed in SKIPFILE are left out; tests
 *       whose session fails with OTL_ERR_UNSUPPORTED are left out and listed, with the message,
 *       in the report; any other failure registers the test, so that it fails loudly.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnxtl.h"

#define MAX_PRINT_PER_OUTPUT 10

static const char *const SUITES[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
#define N_SUITES ((int)(sizeof SUITES / sizeof SUITES[0]))

/* ------------------------------------------------------------ small helpers */

/* snprintf into a path buffer; a path that does not fit is an error, reported by the caller
 * when the file is then not found (through a va_list, so that -Wformat-truncation stays quiet) */
static void pathf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        buf[0] = 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sub-directories of dir whose names start with prefix, sorted; NULL-terminated */
static char **list_dirs(const char *dir, const char *prefix, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t cap = 64;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    char path[PATH_MAX];
    while (v && (e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        pathf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!is_dir(path))
            continue;
        if ((size_t)*n + 1 >= cap) {
            char **w = realloc(v, (cap *= 2) * sizeof *v);
            if (!w)
                break;
            v = w;
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (!v)
        return NULL;
    v[*n] = NULL;
    qsort(v, (size_t)*n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, int n)
{
    for (int i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* data sets in numeric order (test_data_set_10 after test_data_set_9) */
static int cmp_dataset(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    long i = strtol(x + strlen("test_data_set_"), NULL, 10);
    long j = strtol(y + strlen("test_data_set_"), NULL, 10);
    return i < j ? -1 : i > j ? 1 : strcmp(x, y);
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                        : ldexp((double)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static double bf16_to_double(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------ comparison */

typedef enum { K_FLOAT, K_SIGNED, K_UNSIGNED, K_BYTES } kind;

static kind dtype_kind(int dt)
{
    switch (dt) {
    case OTL_DTYPE_FLOAT: case OTL_DTYPE_DOUBLE: case OTL_DTYPE_FLOAT16: case OTL_DTYPE_BFLOAT16:
    case OTL_DTYPE_COMPLEX64: case OTL_DTYPE_COMPLEX128:
        return K_FLOAT;
    case OTL_DTYPE_INT8: case OTL_DTYPE_INT16: case OTL_DTYPE_INT32: case OTL_DTYPE_INT64:
        return K_SIGNED;
    case OTL_DTYPE_UINT8: case OTL_DTYPE_UINT16: case OTL_DTYPE_UINT32: case OTL_DTYPE_UINT64:
    case OTL_DTYPE_BOOL:
        return K_UNSIGNED;
    }
    return K_BYTES; /* float8, int4, ...: compared bit for bit */
}

/* element i (component c for complex numbers) as double */
static double get_f(const otl_tensor *t, int64_t i, int c)
{
    const void *d = t->data;
    switch (t->dtype) {
    case OTL_DTYPE_FLOAT: return ((const float *)d)[i];
    case OTL_DTYPE_DOUBLE: return ((const double *)d)[i];
    case OTL_DTYPE_FLOAT16: return half_to_double(((const uint16_t *)d)[i]);
    case OTL_DTYPE_BFLOAT16: return bf16_to_double(((const uint16_t *)d)[i]);
    case OTL_DTYPE_COMPLEX64: return ((const float *)d)[2 * i + c];
    case OTL_DTYPE_COMPLEX128: return ((const double *)d)[2 * i + c];
    }
    return NAN;
}

static int64_t get_i(const otl_tensor *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case OTL_DTYPE_INT8: return ((const int8_t *)d)[i];
    case OTL_DTYPE_INT16: return ((const int16_t *)d)[i];
    case OTL_DTYPE_INT32: return ((const int32_t *)d)[i];
    case OTL_DTYPE_INT64: return ((const int64_t *)d)[i];
    }
    return 0;
}

static uint64_t get_u(const otl_tensor *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case OTL_DTYPE_UINT8: case OTL_DTYPE_BOOL: return ((const uint8_t *)d)[i];
    case OTL_DTYPE_UINT16: return ((const uint16_t *)d)[i];
    case OTL_DTYPE_UINT32: return ((const uint32_t *)d)[i];
    case OTL_DTYPE_UINT64: return ((const uint64_t *)d)[i];
    }
    return 0;
}

static void fmt_dims(char *buf, size_t cap, const int64_t *dims, int rank)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, ")");
}

/* flat index -> "[i, j, k]" */
static void fmt_index(char *buf, size_t cap, int64_t flat, const int64_t *dims, int rank)
{
    int64_t idx[64];
    for (int k = rank - 1; k >= 0 && k < 64; k--) {
        idx[k] = dims[k] ? flat % dims[k] : 0;
        flat = dims[k] ? flat / dims[k] : 0;
    }
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < rank && k < 64 && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? ", " : "", (long long)idx[k]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static int close_enough(double a, double b, double rtol, double atol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (a == b) /* also equal infinities */
        return 1;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

/* Compare one output; prints mismatches prefixed by `where`; returns the number of problems. */
static long compare(const char *where, const otl_tensor *got, const otl_tensor *want, double rtol,
                    double atol)
{
    char gs[512], ws[512];
    if (got->dtype != want->dtype) {
        printf("%s: dtype %s, expected %s\n", where, otl_dtype_name(got->dtype),
               otl_dtype_name(want->dtype));
        return 1;
    }
    int same_shape = got->rank == want->rank;
    for (int i = 0; same_shape && i < got->rank; i++)
        same_shape = got->dims[i] == want->dims[i];
    if (!same_shape) {
        fmt_dims(gs, sizeof gs, got->dims, got->rank);
        fmt_dims(ws, sizeof ws, want->dims, want->rank);
        printf("%s: shape %s, expected %s\n", where, gs, ws);
        return 1;
    }
    int64_t n = want->numel;
    if (want->dtype == OTL_DTYPE_STRING) {
        long bad = 0;
        for (int64_t i = 0; i < n; i++) {
            const otl_blob *a = got->strs ? &got->strs[i] : NULL, *b = want->strs ? &want->strs[i] : NULL;
            int eq = a && b && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
            if (!eq && bad++ < MAX_PRINT_PER_OUTPUT) {
                fmt_index(gs, sizeof gs, i, want->dims, want->rank);
                printf("%s: index %s: got \"%.*s\", expected \"%.*s\"\n", where, gs,
                       a ? (int)a->len : 0, a ? (const char *)a->data : "",
                       b ? (int)b->len : 0, b ? (const char *)b->data : "");
            }
        }
        if (bad > MAX_PRINT_PER_OUTPUT)
            printf("%s: ... %ld mismatches in all\n", where, bad);
        return bad;
    }
    int64_t nb = otl_dtype_nbytes(want->dtype, n);
    if (nb < 0 || got->nbytes != (size_t)nb || want->nbytes != (size_t)nb ||
        (nb > 0 && (!got->data || !want->data))) {
        printf("%s: data size %zu, expected %lld bytes\n", where, got->nbytes, (long long)nb);
        return 1;
    }
    kind k = dtype_kind(want->dtype);
    long bad = 0;
    double max_abs = 0, max_rel = 0;
    int ncomp = want->dtype == OTL_DTYPE_COMPLEX64 || want->dtype == OTL_DTYPE_COMPLEX128 ? 2 : 1;
    if (k == K_BYTES) {
        if (nb > 0 && memcmp(got->data, want->data, (size_t)nb) != 0) {
            printf("%s: %s data differs (compared bit for bit)\n", where,
                   otl_dtype_name(want->dtype));
            return 1;
        }
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        int ok = 1;
        if (k == K_FLOAT) {
            for (int c = 0; c < ncomp; c++) {
                double a = get_f(got, i, c), b = get_f(want, i, c);
                if (close_enough(a, b, rtol, atol))
                    continue;
                ok = 0;
                double d = fabs(a - b);
                if (!isnan(d)) {
                    if (d > max_abs)
                        max_abs = d;
                    if (b != 0 && d / fabs(b) > max_rel)
                        max_rel = d / fabs(b);
                }
                if (bad < MAX_PRINT_PER_OUTPUT) {
                    fmt_index(gs, sizeof gs, i, want->dims, want->rank);
                    printf("%s: index %s%s: got %.9g, expected %.9g (|diff| %.3g > %.3g)\n",
                           where, gs, ncomp == 2 ? (c ? " imag" : " real") : "", a, b, d,
                           atol + rtol * fabs(b));
                }
            }
        } else if (k == K_SIGNED) {
            int64_t a = get_i(got, i), b = get_i(want, i);
            if (a != b) {
                ok = 0;
                if (bad < MAX_PRINT_PER_OUTPUT) {
                    fmt_index(gs, sizeof gs, i, want->dims, want->rank);
                    printf("%s: index %s: got %lld, expected %lld\n", where, gs, (long long)a,
                           (long long)b);
                }
            }
        } else {
            uint64_t a = get_u(got, i), b = get_u(want, i);
            if (a != b) {
                ok = 0;
                if (bad < MAX_PRINT_PER_OUTPUT) {
                    fmt_index(gs, sizeof gs, i, want->dims, want->rank);
                    printf("%s: index %s: got %llu, expected %llu\n", where, gs,
                           (unsigned long long)a, (unsigned long long)b);
                }
            }
        }
        bad += !ok;
    }
    if (bad > MAX_PRINT_PER_OUTPUT || (bad && k == K_FLOAT))
        printf("%s: %ld of %lld elements differ%s", where, bad, (long long)n,
               k == K_FLOAT ? "" : "\n");
    if (bad && k == K_FLOAT)
        printf(" (max |diff| %.3g, max rel %.3g; rtol %g, atol %g)\n", max_abs, max_rel, rtol,
               atol);
    return bad;
}

/* ------------------------------------------------------------ running one test */

/* The test data of ONNX <= 1.13 stores bfloat16 tensors as uint16 (numpy has no bfloat16): take
 * the graph's declared type for them. */
static void bf16_quirk(otl_tensor *t, const otl_value *declared)
{
    if (t && declared && declared->has_type && declared->is_tensor &&
        declared->dtype == OTL_DTYPE_BFLOAT16 && t->dtype == OTL_DTYPE_UINT16)
        t->dtype = OTL_DTYPE_BFLOAT16;
}

static int run_test(const char *dir, double rtol, double atol, int threads)
{
    char path[PATH_MAX];
    otl_error err = {0};
    otl_model *m = NULL;
    otl_session *s = NULL;
    int failures = 0, n_sets = 0;
    char **sets = NULL;
    int n_set_dirs = 0;
    const char **names = NULL;
    int n_names = 0;

    pathf(path, sizeof path, "%s/model.onnx", dir);
    if (otl_model_load(&m, path, NULL, &err)) {
        printf("%s\n", err.msg);
        return 1;
    }
    otl_session_opts so = {.threads = threads};
    if (otl_session_new(&s, m, &so, &err)) {
        printf("%s\n", err.msg);
        otl_model_free(m);
        return 1;
    }
    /* graph inputs that are not initializers, in order: positional names */
    const otl_graph *g = m->graph;
    names = calloc((size_t)g->n_inputs + 1, sizeof *names);
    for (int i = 0; names && i < g->n_inputs; i++)
        if (!otl_graph_find_init(g, g->inputs[i]->name))
            names[n_names++] = g->inputs[i]->name;

    sets = list_dirs(dir, "test_data_set_", &n_set_dirs);
    if (sets)
        qsort(sets, (size_t)n_set_dirs, sizeof *sets, cmp_dataset);
    if (!sets || n_set_dirs == 0) {
        printf("%s: no test_data_set_* directory\n", dir);
        failures++;
    }
    for (int d = 0; d < n_set_dirs; d++) {
        const char *set = sets[d];
        char setdir[PATH_MAX];
        pathf(setdir, sizeof setdir, "%s/%s", dir, set);
        otl_tensor *in[256] = {0};
        int n_in = 0;
        int ok = 1;
        for (; n_in < 256; n_in++) {
            pathf(path, sizeof path, "%s/input_%d.pb", setdir, n_in);
            if (!is_file(path))
                break;
            otl_error_clear(&err);
            if (otl_tensor_load_pb(&in[n_in], path, &err)) {
                printf("%s: %s\n", set, err.msg);
                ok = 0;
                break;
            }
            otl_tensor *t = in[n_in];
            int known = 0;
            for (int i = 0; t->name && *t->name && i < g->n_inputs; i++)
                known |= strcmp(g->inputs[i]->name, t->name) == 0;
            if (!known) {
                if (n_in >= n_names) {
                    printf("%s: input_%d.pb: '%s' is not a graph input and the graph has only %d "
                           "inputs without initializer\n", set, n_in, t->name ? t->name : "",
                           n_names);
                    ok = 0;
                    n_in++;
                    break;
                }
                free(t->name);
                t->name = strdup(names[n_in]);
            }
            bf16_quirk(t, otl_graph_find_value(g, t->name));
        }
        otl_tensor **outs = NULL;
        int n_out = 0;
        if (ok) {
            otl_error_clear(&err);
            if (otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, &err)) {
                printf("%s: %s\n", set, err.msg);
                ok = 0;
            }
        }
        if (ok) {
            int n_expected = 0;
            for (;; n_expected++) {
                pathf(path, sizeof path, "%s/output_%d.pb", setdir, n_expected);
                if (!is_file(path))
                    break;
            }
            if (n_expected != n_out || n_out != g->n_outputs) {
                printf("%s: %d outputs, expected %d (graph has %d)\n", set, n_out, n_expected,
                       g->n_outputs);
                ok = 0;
            }
            for (int k = 0; k < n_expected && k < n_out; k++) {
                pathf(path, sizeof path, "%s/output_%d.pb", setdir, k);
                otl_tensor *want = NULL;
                otl_error_clear(&err);
                if (otl_tensor_load_pb(&want, path, &err)) {
                    printf("%s: %s\n", set, err.msg);
                    ok = 0;
                    continue;
                }
                if (k < g->n_outputs && outs[k]->dtype == OTL_DTYPE_BFLOAT16)
                    bf16_quirk(want, g->outputs[k]);
                char where[1024];
                snprintf(where, sizeof where, "%s: output %d '%s'", set, k,
                         k < g->n_outputs ? g->outputs[k]->name : "?");
                if (compare(where, outs[k], want, rtol, atol))
                    ok = 0;
                otl_tensor_free(want);
            }
        }
        otl_tensors_free(outs, n_out);
        for (int i = 0; i < n_in; i++)
            otl_tensor_free(in[i]);
        failures += !ok;
        n_sets++;
    }
    printf("%s: %d data set%s, %d failed\n", dir, n_sets, n_sets == 1 ? "" : "s", failures);
    free_list(sets, n_set_dirs);
    free(names);
    otl_session_free(s);
    otl_model_free(m);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------ discovery */

typedef struct skip_entry {
    char *pattern;
    char *reason;
    int used;
} skip_entry;

/* SKIPFILE: `suite.test_name  # reason` per line (fnmatch patterns allowed), '#' lines are
 * comments. Every entry must give a reason. */
static skip_entry *read_skips(const char *file, int *n, int *bad)
{
    *n = 0;
    *bad = 0;
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", file, strerror(errno));
        *bad = 1;
        return NULL;
    }
    skip_entry *v = NULL;
    size_t cap = 0;
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == 0)
            continue;
        char *hash = strchr(p, '#');
        char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '#' && *e != '\n')
            e++;
        char *reason = hash ? hash + 1 : NULL;
        while (reason && (*reason == ' ' || *reason == '\t'))
            reason++;
        if (reason)
            reason[strcspn(reason, "\n")] = 0;
        if (!reason || !*reason) {
            fprintf(stderr, "%s:%d: skip entry '%.*s' has no reason ('name  # reason')\n", file,
                    lineno, (int)(e - p), p);
            *bad = 1;
            continue;
        }
        if ((size_t)*n >= cap) {
            cap = cap ? 2 * cap : 64;
            skip_entry *w = realloc(v, cap * sizeof *v);
            if (!w)
                break;
            v = w;
        }
        v[*n].pattern = strndup(p, (size_t)(e - p));
        v[*n].reason = strdup(reason);
        v[*n].used = 0;
        (*n)++;
    }
    fclose(f);
    return v;
}

/* Sequence, optional and map values at the graph boundary: the API passes tensors only. */
static int non_tensor_io(const otl_model *m, const char *file, otl_error *err)
{
    const otl_graph *g = m->graph;
    for (int io = 0; io < 2; io++) {
        int n = io ? g->n_outputs : g->n_inputs;
        otl_value **v = io ? g->outputs : g->inputs;
        for (int i = 0; i < n; i++)
            if (v[i]->has_type && !v[i]->is_tensor) {
                otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: graph %s '%s' is not a tensor "
                              "(sequence, optional and map values are not supported)", file,
                              io ? "output" : "input", v[i]->name);
                return 1;
            }
    }
    return 0;
}

static int discover(const char *datadir, const char *skipfile, const char *out,
                    const char *report, const char *exe)
{
    int n_skips, bad;
    skip_entry *skips = read_skips(skipfile, &n_skips, &bad);
    if (bad)
        return 1;
    char tmp[PATH_MAX], rtmp[PATH_MAX];
    pathf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *fo = fopen(tmp, "w");
    FILE *fr = NULL;
    if (report) {
        pathf(rtmp, sizeof rtmp, "%s.tmp", report);
        fr = fopen(rtmp, "w");
    }
    if (!fo || (report && !fr)) {
        fprintf(stderr, "%s: cannot write: %s\n", !fo ? tmp : rtmp, strerror(errno));
        return 1;
    }
    fprintf(fo, "# generated by otl_nodetest --discover %s %s: do not edit\n", datadir, skipfile);
    if (fr)
        fprintf(fr, "# ONNX backend tests not registered because the library reports an op or "
                    "feature as unsupported (generated by otl_nodetest --discover)\n");
    int n_reg = 0, n_skip = 0, n_unsup = 0, n_total = 0;
    for (int su = 0; su < N_SUITES; su++) {
        char sdir[PATH_MAX];
        pathf(sdir, sizeof sdir, "%s/%s", datadir, SUITES[su]);
        int nt;
        char **tests = list_dirs(sdir, "test_", &nt);
        if (!tests || nt == 0) {
            fprintf(stderr, "%s: no test_* directories (is libonnx-testdata installed?)\n", sdir);
            fprintf(fo, "add_test(\"nodetest.%s.missing\" \"%s\" \"%s/test_missing\")\n",
                    SUITES[su], exe, sdir);
            free_list(tests, nt);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            char name[512], dir[PATH_MAX];
            pathf(name, sizeof name, "%s.%s", SUITES[su], tests[t]);
            pathf(dir, sizeof dir, "%s/%s", sdir, tests[t]);
            n_total++;
            int skipped = 0;
            for (int k = 0; k < n_skips; k++)
                if (fnmatch(skips[k].pattern, name, 0) == 0) {
                    skips[k].used = 1;
                    skipped = 1;
                }
            if (skipped) {
                n_skip++;
                continue;
            }
            char model[PATH_MAX];
            pathf(model, sizeof model, "%s/model.onnx", dir);
            otl_error err = {0};
            otl_model *m = NULL;
            otl_session *s = NULL;
            otl_session_opts so = {.threads = 1};
            if (otl_model_load(&m, model, NULL, &err) == OTL_OK && !non_tensor_io(m, model, &err))
                otl_session_new(&s, m, &so, &err);
            otl_session_free(s);
            otl_model_free(m);
            if (err.code == OTL_ERR_UNSUPPORTED) {
                n_unsup++;
                if (fr)
                    fprintf(fr, "%s  # %s\n", name, err.msg);
                continue;
            }
            fprintf(fo, "add_test(\"nodetest.%s\" \"%s\" \"%s\")\n", name, exe, dir);
            fprintf(fo, "set_tests_properties(\"nodetest.%s\" PROPERTIES LABELS nodetest "
                        "TIMEOUT 300)\n", name);
            n_reg++;
        }
        free_list(tests, nt);
    }
    for (int k = 0; k < n_skips; k++) {
        if (!skips[k].used)
            fprintf(stderr, "%s: warning: entry '%s' matches no test\n", skipfile,
                    skips[k].pattern);
        free(skips[k].pattern);
        free(skips[k].reason);
    }
    free(skips);
    fprintf(fo, "# %d tests: %d registered, %d in the skip list, %d unsupported\n", n_total, n_reg,
            n_skip, n_unsup);
    int werr = fclose(fo) != 0;
    if (fr)
        werr |= fclose(fr) != 0;
    if (werr || rename(tmp, out) != 0 || (report && rename(rtmp, report) != 0)) {
        fprintf(stderr, "%s: cannot write: %s\n", out, strerror(errno));
        return 1;
    }
    fprintf(stderr, "nodetest: %d tests: %d registered, %d in the skip list, %d unsupported%s%s%s\n",
            n_total, n_reg, n_skip, n_unsup, report ? " (see " : "", report ? report : "",
            report ? ")" : "");
    return 0;
}

/* ------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr,
            "usage: otl_nodetest TESTDIR [--rtol R] [--atol A] [--threads N]\n"
            "       otl_nodetest --discover DATADIR SKIPFILE OUT.cmake [--report FILE] "
            "[--exe PATH]\n");
    return 2;
}

static int parse_double(const char *s, double *v)
{
    char *e;
    errno = 0;
    *v = strtod(s, &e);
    return *s && !*e && !errno && *v >= 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--discover") == 0) {
        if (argc < 5)
            return usage();
        const char *report = NULL, *exe = NULL;
        for (int i = 5; i < argc; i++) {
            if (strcmp(argv[i], "--report") == 0 && i + 1 < argc)
                report = argv[++i];
            else if (strcmp(argv[i], "--exe") == 0 && i + 1 < argc)
                exe = argv[++i];
            else
                return usage();
        }
        char self[PATH_MAX];
        if (!exe) {
            ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
            if (k <= 0)
                return usage();
            self[k] = 0;
            exe = self;
        }
        return discover(argv[2], argv[3], argv[4], report, exe);
    }
    const char *dir = NULL;
    double rtol = 1e-3, atol = 1e-7;
    int threads = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rtol") == 0 && i + 1 < argc) {
            if (!parse_double(argv[++i], &rtol))
                return usage();
        } else if (strcmp(argv[i], "--atol") == 0 && i + 1 < argc) {
            if (!parse_double(argv[++i], &atol))
                return usage();
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads < 0)
                return usage();
        } else if (argv[i][0] == '-' || dir) {
            return usage();
        } else {
            dir = argv[i];
        }
    }
    if (!dir)
        return usage();
    if (!is_dir(dir)) {
        printf("%s: not a directory\n", dir);
        return 1;
    }
    return run_test(dir, rtol, atol, threads);
}
