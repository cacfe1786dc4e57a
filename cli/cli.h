/* cli.h - shared pieces of the onnx-tl command-line tool: option parsing, error reporting.
 * Each command lives in its own cli/cmd_*.c and returns the process exit status. */
#ifndef OTL_CLI_H
#define OTL_CLI_H

#include "onnxtl.h"

enum { EXIT_OK = 0, EXIT_INPUT = 1, EXIT_USAGE = 2 };

/* A parsed option list: `--name value`, `--name=value`, flags, and positional arguments. */
typedef struct cli_opt {
    const char *name;     /* without the leading "--" */
    int takes_value;
    int repeatable;
} cli_opt;

typedef struct cli_args {
    int n_pos;
    const char **pos;     /* (n_pos) argv entries; storage lives until exit */
    int n_set;
    struct { const char *name; const char *value; } set[128];
} cli_args;

/* Parse argv against the option table; prints a usage error and returns EXIT_USAGE on
 * unknown options or missing values, -1 if --help was given (usage printed), 0 otherwise. */
int cli_parse(int argc, char **argv, const cli_opt *opts, const char *usage, cli_args *a);
/* cli_parse for a command of exactly one positional argument, MODEL: also EXIT_USAGE ("<cmd>: expected
 * one MODEL argument") when there is not one. */
int cli_parse_model(int argc, char **argv, const cli_opt *opts, const char *usage, const char *cmd, cli_args *a);
const char *cli_get(const cli_args *a, const char *name); /* last value, or NULL */
int cli_flag(const cli_args *a, const char *name);
/* 1 when a and b name the same file (equal strings, or one inode); 0 when either is NULL. */
int cli_same_path(const char *a, const char *b);
/* Print "onnx-tl: <message>" for an error and return the matching exit status. */
int cli_fail(const otl_error *err);
int cli_usage_error(const char *usage, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* --threads N (0 when absent); returns EXIT_USAGE on a bad value. */
int cli_threads(const cli_args *a, const char *usage, int *threads);
/* --<name> N, a whole number in [1, max], into *v (left as it is when absent): 0, or EXIT_USAGE with
 * "<cmd>: --<name> must be a positive integer, got '...'" (no "<cmd>: " when cmd is NULL). */
int cli_count(const cli_args *a, const char *usage, const char *cmd, const char *name, long max, long *v);

/* fflush(stdout); OTL_ERR_IO "cannot write to standard output" when it fails (disk full, closed pipe). */
otl_status cli_flush_stdout(otl_error *err);
/* mkdir -p; 0 (error recorded) on failure. */
int cli_make_dir(const char *dir, otl_error *err);
/* --input NAME=FILE options into parallel arrays (names[i] points at "NAME=FILE"). */
int cli_collect_inputs(const cli_args *a, const char *usage, const char **names, const char **files,
                       int max, int *n);
otl_status cli_load_inputs(otl_tensor **in, const char **names, const char **files, int n, otl_error *err);
/* Write t as DIR/<name with characters outside [A-Za-z0-9._-] replaced>.npy, atomically. */
otl_status cli_save_named(const char *dir, const char *name, const otl_tensor *t, otl_error *err);
/* 0 (error recorded, naming `file`) when two names map to the same sanitized file name. */
int cli_check_file_names(const char *file, const char *what, const char *const *names, int n, otl_error *err);
/* 0 (OTL_ERR_USAGE recorded) when DIR/<sanitized name>.npy of one of the names is one of the input files. */
int cli_check_overwrite(const char *dir, const char *const *names, int n, const char *const *inputs, int n_in,
                        otl_error *err);

int cmd_info(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_swap_head(int argc, char **argv);
int cmd_freeze(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);

#endif
