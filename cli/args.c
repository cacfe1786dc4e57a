/* args.c - option parsing and error reporting shared by all commands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "src/util.h"

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("onnx-tl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    (void)usage;
    return EXIT_USAGE;
}

/* Positional arguments of the (one) command line being parsed: as many as argv has. */
static const char **pos_store;

int cli_parse(int argc, char **argv, const cli_opt *opts, const char *usage, cli_args *a)
{
    memset(a, 0, sizeof *a);
    const char **ps = realloc(pos_store, ((size_t)argc + 1) * sizeof *ps);
    if (!ps) {
        fprintf(stderr, "onnx-tl: out of memory\n");
        return EXIT_INPUT;
    }
    pos_store = ps;
    a->pos = ps;
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!*arg) /* an empty MODEL or FILE: not a file name to report */
            return cli_usage_error(usage, "empty argument (a file name was expected)");
        if (only_pos || arg[0] != '-' || arg[1] == 0) {
            a->pos[a->n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (const cli_opt *p = opts; p->name; p++)
            if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0)
                o = p;
        if (!o)
            return cli_usage_error(usage, "unknown option '%s' (see --help)", arg);
        const char *val = NULL;
        if (o->takes_value) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return cli_usage_error(usage, "option '--%s' needs a value", o->name);
            if (!*val)
                return cli_usage_error(usage, "option '--%s' needs a value, got an empty one", o->name);
        } else if (eq) {
            return cli_usage_error(usage, "option '--%s' takes no value", o->name);
        }
        if (!o->repeatable)
            for (int k = 0; k < a->n_set; k++)
                if (strcmp(a->set[k].name, o->name) == 0)
                    return cli_usage_error(usage, "option '--%s' given twice", o->name);
        if (a->n_set >= 128)
            return cli_usage_error(usage, "too many options");
        a->set[a->n_set].name = o->name;
        a->set[a->n_set].value = val ? val : "";
        a->n_set++;
    }
    if (cli_get(a, "o") && cli_get(a, "output")) /* one output: -o and --output are the same option */
        return cli_usage_error(usage, "give -o or --output, not both");
    return 0;
}

int cli_parse_model(int argc, char **argv, const cli_opt *opts, const char *usage, const char *cmd, cli_args *a)
{
    int rc = cli_parse(argc, argv, opts, usage, a);
    if (rc == 0 && a->n_pos != 1)
        return cli_usage_error(usage, "%s: expected one MODEL argument (see --help)", cmd);
    return rc;
}

int cli_count(const cli_args *a, const char *usage, const char *cmd, const char *name, long max, long *v)
{
    const char *s = cli_get(a, name);
    if (!s)
        return 0;
    char *e;
    long x = strtol(s, &e, 10);
    if (!*s || *e || x < 1 || x > max)
        return cli_usage_error(usage, "%s%s--%s must be a positive integer, got '%s'", cmd ? cmd : "", cmd ? ": " : "",
                               name, s);
    *v = x;
    return 0;
}

const char *cli_get(const cli_args *a, const char *name)
{
    const char *v = NULL;
    for (int k = 0; k < a->n_set; k++)
        if (strcmp(a->set[k].name, name) == 0)
            v = a->set[k].value;
    return v;
}

int cli_flag(const cli_args *a, const char *name)
{
    return cli_get(a, name) != NULL;
}

int cli_same_path(const char *a, const char *b)
{
    return a && b && (strcmp(a, b) == 0 || otl_same_file(a, b));
}

otl_status cli_flush_stdout(otl_error *err)
{
    if (fflush(stdout) != 0 || ferror(stdout)) /* ferror: an earlier flush of a long output failed */
        return otl_error_set(err, OTL_ERR_IO, "cannot write to standard output");
    return OTL_OK;
}

int cli_fail(const otl_error *err)
{
    fprintf(stderr, "onnx-tl: %s\n", err->msg[0] ? err->msg : "unknown error");
    switch (err->code) {
    case OTL_OK:
        return EXIT_OK;
    case OTL_ERR_USAGE:
        return EXIT_USAGE;
    default:
        return EXIT_INPUT;
    }
}
