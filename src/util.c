/* util.c - strings, growable arrays and careful file I/O (bounded reads, atomic writes). */
#include "src/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *otl_strdup(const char *s)
{
    return s ? otl_strndup(s, strlen(s)) : NULL;
}

char *otl_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void *otl_memdup(const void *p, size_t n)
{
    if (!p || n == 0)
        return NULL;
    void *d = malloc(n);
    if (d)
        memcpy(d, p, n);
    return d;
}

int otl_grow(void **p, size_t sz, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 1;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / sz)
            return 0;
        nc *= 2;
    }
    void *q = realloc(*p, nc * sz);
    if (!q)
        return 0;
    *p = q;
    *cap = nc;
    return 1;
}

char *otl_sanitize_filename(const char *name)
{
    char *s = otl_strdup(name ? name : "");
    if (!s)
        return NULL;
    for (char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            *p = '_';
    }
    return s;
}

otl_status otl_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                         otl_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: file too large (%lld bytes, limit %zu)",
                             path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n + 1);
    if (!b) {
        close(fd);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(b);
            close(fd);
            return otl_error_set(err, OTL_ERR_IO, "%s: read error: %s", path,
                                 r < 0 ? strerror(errno) : "unexpected end of file");
        }
        got += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return OTL_OK;
}

char *otl_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return otl_strdup(".");
    if (slash == path)
        return otl_strdup("/");
    return otl_strndup(path, (size_t)(slash - path));
}

int otl_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

otl_status otl_atomic_open(otl_atomic_file *af, const char *path, otl_error *err)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = otl_strdup(path);
    af->tmp = malloc(n + 32);
    if (!af->path || !af->tmp) {
        otl_atomic_abort(af);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
    }
    /* hidden temporary next to the target so that rename() stays within one file system */
    char *dir = otl_dirname(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(af->tmp, n + 32, "%s/.%s.tmpXXXXXX", dir ? dir : ".", base);
    free(dir);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        otl_status st = otl_error_set(err, OTL_ERR_IO, "%s: cannot create output file: %s", path,
                                      strerror(errno));
        free(af->tmp);
        af->tmp = NULL;
        otl_atomic_abort(af);
        return st;
    }
    fchmod(fd, 0644);
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        close(fd);
        otl_atomic_abort(af);
        return otl_error_set(err, OTL_ERR_IO, "%s: cannot open output: %s", path, strerror(errno));
    }
    return OTL_OK;
}

otl_status otl_atomic_commit(otl_atomic_file *af, otl_error *err)
{
    int bad = ferror(af->fp);
    if (fflush(af->fp) != 0)
        bad = 1;
    if (!bad && fsync(fileno(af->fp)) != 0)
        bad = 1;
    int e = errno;
    if (fclose(af->fp) != 0)
        bad = 1;
    af->fp = NULL;
    if (bad) {
        otl_status st = otl_error_set(err, OTL_ERR_IO, "%s: write failed: %s", af->path,
                                      strerror(e ? e : EIO));
        otl_atomic_abort(af);
        return st;
    }
    if (rename(af->tmp, af->path) != 0) {
        otl_status st = otl_error_set(err, OTL_ERR_IO, "%s: cannot rename temporary file: %s",
                                      af->path, strerror(errno));
        otl_atomic_abort(af);
        return st;
    }
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
    return OTL_OK;
}

void otl_atomic_abort(otl_atomic_file *af)
{
    if (af->fp)
        fclose(af->fp);
    if (af->tmp)
        unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

otl_status otl_write_file_atomic(const char *path, const void *buf, size_t len, otl_error *err)
{
    otl_atomic_file af;
    otl_status st = otl_atomic_open(&af, path, err);
    if (st)
        return st;
    if (len && fwrite(buf, 1, len, af.fp) != len) {
        otl_atomic_abort(&af);
        return otl_error_set(err, OTL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return otl_atomic_commit(&af, err);
}

int otl_list_has(const char *list, char sep, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, item, n) == 0)
            return 1;
        p += len + (e != NULL);
    }
    return 0;
}
