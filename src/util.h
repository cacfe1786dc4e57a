/* util.h - small internal helpers shared by the library: strings, growable arrays, files.
 * Not part of the public API. Nothing here exits: failures return NULL / an otl_status. */
#ifndef OTL_UTIL_H
#define OTL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "onnxtl.h"

char *otl_strdup(const char *s);                 /* NULL in -> NULL out */
char *otl_strndup(const char *s, size_t n);
void *otl_memdup(const void *p, size_t n);       /* n == 0 -> NULL */
/* Grow *p (element size `sz`) so that it holds at least `need` elements; *cap tracks capacity. */
int otl_grow(void **p, size_t sz, size_t *cap, size_t need);

/* Replace every character outside [A-Za-z0-9._-] by '_' (CLI.md file naming rule). */
char *otl_sanitize_filename(const char *name);

/* Read a whole file. Fails with OTL_ERR_INPUT for missing/unreadable files and for files larger
 * than max_bytes. *buf is malloc'd (one extra NUL byte appended, not counted in *len). */
otl_status otl_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                         otl_error *err);

/* Atomic output: write into a temporary file in the target's directory, then commit (fsync +
 * rename) or abort (unlink). */
typedef struct otl_atomic_file {
    FILE *fp;
    char *path;
    char *tmp;
} otl_atomic_file;
otl_status otl_atomic_open(otl_atomic_file *af, const char *path, otl_error *err);
otl_status otl_atomic_commit(otl_atomic_file *af, otl_error *err);
void otl_atomic_abort(otl_atomic_file *af);
/* Write a whole buffer atomically. */
otl_status otl_write_file_atomic(const char *path, const void *buf, size_t len, otl_error *err);

/* Directory part of a path ("." when there is none); malloc'd. */
char *otl_dirname(const char *path);
/* Whether two paths name the same existing file (same device and inode). */
int otl_same_file(const char *a, const char *b);
/* Whether item is one of the sep-separated entries of list (NULL: none), e.g. a metadata value
   holding one name per line. */
int otl_list_has(const char *list, char sep, const char *item);

#endif
