/* fuzz_info.c - libFuzzer target for `onnx-tl info` (the summary code path: loading, validation,
 * parameter counts, op histogram, head detection, layer table, JSON writer). It calls the CLI's
 * own cmd_info (cli/cmd_info.c is compiled in) on the input written to a file, with stdout and
 * stderr captured, in text mode and with --json, and checks the contract:
 *   exit 0: text mode printed something, with no control byte but newlines; --json printed exactly one JSON object (checked by a
 *           strict RFC 8259 parser below), in valid UTF-8, with the contract's keys;
 *   exit 1: nothing on stdout with --json, and stderr is exactly one line "onnx-tl: ..." that
 *           names the file;
 *   anything else (exit 2, a crash, a sanitizer report, a leak, a timeout) is a finding.
 * Build: clang -fsanitize=fuzzer,address,undefined (tests/rely.cmake, OTL_FUZZ=ON).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cli.h"

static char model_path[4096];
static int out_fd = -1, err_fd = -1;

static void fail(const char *what, const char *text, size_t len)
{
    fprintf(stderr, "fuzz_info: %s\n--- output (%zu bytes) ---\n%.*s\n", what, len, (int)(len < 4000 ? len : 4000),
            text ? text : "");
    abort(); /* a finding: libFuzzer saves the input as crash-* */
}

/* ---------------------------------------------------------------- strict JSON syntax check */
typedef struct jp {
    const char *s;
    size_t n, i;
    int depth;
} jp;

static void ws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int lit(jp *p, const char *w)
{
    size_t l = strlen(w);
    if (p->n - p->i < l || memcmp(p->s + p->i, w, l) != 0)
        return 0;
    p->i += l;
    return 1;
}

static int string(jp *p)
{
    if (p->i >= p->n || p->s[p->i] != '"')
        return 0;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i++];
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0; /* control characters must be escaped */
        if (c == '\\') {
            if (p->i >= p->n)
                return 0;
            char e = p->s[p->i++];
            if (e == 'u') {
                for (int k = 0; k < 4; k++, p->i++)
                    if (p->i >= p->n || !strchr("0123456789abcdefABCDEF", p->s[p->i]) || !p->s[p->i])
                        return 0;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return 0;
            }
        }
    }
    return 0;
}

static int number(jp *p)
{
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->n)
        return 0;
    if (p->s[p->i] == '0')
        p->i++;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9')
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    else
        return 0;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == d)
            return 0;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (p->i == d)
            return 0;
    }
    return p->i > st;
}

static int value(jp *p);

static int container(jp *p, char open, char close, int is_obj)
{
    if (p->s[p->i] != open || ++p->depth > 200)
        return 0;
    p->i++;
    ws(p);
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        p->depth--;
        return 1;
    }
    for (;;) {
        ws(p);
        if (is_obj) {
            if (!string(p))
                return 0;
            ws(p);
            if (p->i >= p->n || p->s[p->i++] != ':')
                return 0;
        }
        if (!value(p))
            return 0;
        ws(p);
        if (p->i >= p->n)
            return 0;
        char c = p->s[p->i++];
        if (c == close) {
            p->depth--;
            return 1;
        }
        if (c != ',')
            return 0;
    }
}

static int value(jp *p)
{
    ws(p);
    if (p->i >= p->n)
        return 0;
    char c = p->s[p->i];
    if (c == '{')
        return container(p, '{', '}', 1);
    if (c == '[')
        return container(p, '[', ']', 0);
    if (c == '"')
        return string(p);
    if (c == 't')
        return lit(p, "true");
    if (c == 'f')
        return lit(p, "false");
    if (c == 'n')
        return lit(p, "null");
    return number(p);
}

/* Strict UTF-8 as Python decodes it: no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if ((c & 0xF0) == 0xE0)
            k = 2;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3;
        else
            return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) || (c == 0xF0 && s[i + 1] < 0x90) ||
            (c == 0xF4 && s[i + 1] >= 0x90))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* ---------------------------------------------------------------- the target */
static char *slurp(int fd, size_t *len)
{
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!buf)
        abort();
    *len = n > 0 ? (size_t)pread(fd, buf, (size_t)n, 0) : 0;
    buf[*len] = 0;
    if (ftruncate(fd, 0) != 0)
        abort();
    lseek(fd, 0, SEEK_SET);
    return buf;
}

static int call_info(int json, char **out, size_t *out_len, char **errtxt, size_t *err_len)
{
    char *argv[] = {model_path, json ? "--json" : NULL, NULL};
    fflush(stdout);
    fflush(stderr);
    int save_out = dup(1), save_err = dup(2);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    int rc = cmd_info(json ? 2 : 1, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(save_out, 1);
    dup2(save_err, 2);
    close(save_out);
    close(save_err);
    *out = slurp(out_fd, out_len);
    *errtxt = slurp(err_fd, err_len);
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz_info.XXXXXX", tmp);
    if (!mkdtemp(dir))
        abort();
    snprintf(model_path, sizeof model_path, "%s/fuzz.onnx", dir);
    out_fd = memfd_create("fuzz_info.stdout", 0);
    err_fd = memfd_create("fuzz_info.stderr", 0);
    if (out_fd < 0 || err_fd < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(model_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    for (int json = 0; json <= 1; json++) {
        char *out, *err;
        size_t ol, el;
        int rc = call_info(json, &out, &ol, &err, &el);
        if (rc == 0) {
            if (!json && ol == 0)
                fail("info exit 0 printed nothing", err, el);
            for (size_t i = 0; !json && i < ol; i++)
                if (((unsigned char)out[i] < 0x20 && out[i] != '\n') || out[i] == 0x7f)
                    fail("info printed a control byte in text mode", out, ol);
            if (json) {
                jp p = {out, ol, 0, 0};
                if (!value(&p) || (ws(&p), p.i != p.n) || out[0] != '{')
                    fail("info --json printed something other than one JSON object", out, ol);
                if (!utf8_valid((const unsigned char *)out, ol))
                    fail("info --json printed invalid UTF-8", out, ol);
                static const char *const keys[] = {"\"inputs\":", "\"outputs\":", "\"opset\":", "\"params_total\":",
                                                   "\"params_trainable\":", "\"ops\":", "\"head\":", NULL};
                for (int k = 0; keys[k]; k++)
                    if (!strstr(out, keys[k]))
                        fail("info --json misses a contract key", out, ol);
            }
        } else if (rc == 1) {
            if (json && ol)
                fail("info --json wrote to stdout on error", out, ol);
            if (el < 10 || strncmp(err, "onnx-tl: ", 9) != 0 || err[el - 1] != '\n' || memchr(err, '\n', el - 1))
                fail("error is not one line 'onnx-tl: ...'", err, el);
            if (!strstr(err, "fuzz.onnx"))
                fail("error does not name the file", err, el);
        } else {
            fail("info exited with a status other than 0 or 1", err, el);
        }
        free(out);
        free(err);
    }
    return 0;
}
