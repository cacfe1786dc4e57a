/* error.c - the sticky first-error record every fallible library call fills in. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "onnxtl.h"

otl_status otl_error_set(otl_error *err, otl_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    if (err->code != OTL_OK)
        return err->code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* one line: fold any newline that came from file contents */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return code;
}

void otl_error_clear(otl_error *err)
{
    if (err) {
        err->code = OTL_OK;
        err->msg[0] = 0;
    }
}
