/* error.c - the sticky first-error record every fallible library call fills in. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

otl_status otl_error_set(otl_error *err, otl_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    if (err->code != OTL_OK)
        return err->code;
    err->code = code;
    /* Format in full, then keep the head and the tail: names from a file can be huge, and the
       end of a message says what is wrong. */
    char stack_buf[16384], *big = stack_buf;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(stack_buf, sizeof stack_buf, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= sizeof stack_buf) {
        char *heap = malloc(len + 1);
        if (heap && vsnprintf(heap, len + 1, fmt, ap2) >= 0)
            big = heap;
        else {
            free(heap);
            len = sizeof stack_buf - 1;
        }
    }
    va_end(ap2);
    size_t cap = sizeof err->msg - 1;
    if (len <= cap) {
        memcpy(err->msg, big, len);
        err->msg[len] = 0;
    } else {
        static const char cut[] = " [...] ";
        size_t head = cap / 3, tail = cap - head - (sizeof cut - 1);
        memcpy(err->msg, big, head);
        memcpy(err->msg + head, cut, sizeof cut - 1);
        memcpy(err->msg + head + sizeof cut - 1, big + len - tail, tail);
        err->msg[cap] = 0;
    }
    if (big != stack_buf)
        free(big);
    /* one line of printable text: control characters from file contents (newlines, terminal
       escapes) become '?' or a space */
    for (char *p = err->msg; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r' || c == '\t')
            *p = ' ';
        else if (c < 0x20 || c == 0x7f)
            *p = '?';
    }
    return code;
}

void otl_error_clear(otl_error *err)
{
    if (err) {
        err->code = OTL_OK;
        err->msg[0] = 0;
    }
}
