/* otl_check.h - CHECK(cond) of the C unit tests (tests/surgery/test_*.c): a failed condition is
 * printed with its file and line and counted in `failures`; the test's main returns 1 when
 * failures is not 0. Include once, in the test's only source file. */
#ifndef OTL_CHECK_H
#define OTL_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                                   \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

#endif
