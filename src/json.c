/* json.c - streaming JSON writer. */
#include "src/json.h"

#include <math.h>
#include <string.h>

void otl_json_init(otl_json *j, FILE *fp)
{
    memset(j, 0, sizeof *j);
    j->fp = fp;
    j->first[0] = 1;
}

static void sep(otl_json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (!j->first[j->depth])
        fputc(',', j->fp);
    j->first[j->depth] = 0;
}

static void open_(otl_json *j, char c)
{
    sep(j);
    fputc(c, j->fp);
    if (j->depth < 63)
        j->depth++;
    j->first[j->depth] = 1;
}

static void close_(otl_json *j, char c)
{
    fputc(c, j->fp);
    if (j->depth > 0)
        j->depth--;
    if (j->depth == 0)
        fputc('\n', j->fp);
}

void otl_json_obj(otl_json *j) { open_(j, '{'); }
void otl_json_obj_end(otl_json *j) { close_(j, '}'); }
void otl_json_arr(otl_json *j) { open_(j, '['); }
void otl_json_arr_end(otl_json *j) { close_(j, ']'); }

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), 0 if there is none
 * (no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c >= 0xC2 && c <= 0xDF ? 2 : (c & 0xF0) == 0xE0 ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k || k > n)
        return 0;
    for (size_t j = 1; j < k; j++)
        if ((s[j] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] >= 0x90))
        return 0;
    return k;
}

static void put_str(FILE *fp, const char *s, size_t n)
{
    fputc('"', fp);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        default:
            if (c < 0x20) {
                fprintf(fp, "\\u%04x", c);
            } else if (c < 0x80) {
                fputc(c, fp);
            } else { /* a whole valid UTF-8 sequence, or U+FFFD for each byte that is not one */
                size_t k = utf8_len((const unsigned char *)s + i, n - i);
                if (k) {
                    fwrite(s + i, 1, k, fp);
                    i += k - 1;
                } else {
                    fputs("\\ufffd", fp);
                }
            }
        }
    }
    fputc('"', fp);
}

void otl_json_key(otl_json *j, const char *k)
{
    sep(j);
    put_str(j->fp, k, strlen(k));
    fputc(':', j->fp);
    j->after_key = 1;
}

void otl_json_strn(otl_json *j, const char *s, size_t n)
{
    sep(j);
    put_str(j->fp, s, n);
}

void otl_json_str(otl_json *j, const char *s)
{
    if (!s) {
        otl_json_null(j);
        return;
    }
    otl_json_strn(j, s, strlen(s));
}

void otl_json_int(otl_json *j, int64_t v)
{
    sep(j);
    fprintf(j->fp, "%lld", (long long)v);
}

void otl_json_num(otl_json *j, double v)
{
    sep(j);
    if (isfinite(v))
        fprintf(j->fp, "%.9g", v);
    else
        fputs("null", j->fp);
}

void otl_json_bool(otl_json *j, int v)
{
    sep(j);
    fputs(v ? "true" : "false", j->fp);
}

void otl_json_null(otl_json *j)
{
    sep(j);
    fputs("null", j->fp);
}

void otl_json_raw(otl_json *j, const char *text)
{
    sep(j);
    fputs(text, j->fp);
}
