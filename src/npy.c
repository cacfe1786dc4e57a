/* npy.c - NumPy .npy reader/writer (format 1.0/2.0/3.0) and .npz reader (ZIP, stored or deflated
 * members, ZIP64). Every size read from a file is checked against the bytes actually present
 * before anything is allocated from it; every error names the file (and the archive member). */
#include "src/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define NPY_MAX_RANK 64              /* numpy's NPY_MAXDIMS */
#define NPY_MAX_HEADER (1u << 20)    /* numpy itself refuses headers over 10000 bytes by default */
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6

typedef struct npy_info {
    int dtype;
    int rank;
    int64_t dims[NPY_MAX_RANK];
    int64_t numel;
    int64_t nbytes;
    size_t data_off; /* offset of the array data from the start of the file */
} npy_info;

/* ------------------------------------------------------------ dtype table */

typedef struct npy_dtype {
    char kind;
    int size;
    int dtype;
    const char *descr; /* what we write */
} npy_dtype;

static const npy_dtype npy_dtypes[] = {
    {'f', 2, OTL_DTYPE_FLOAT16, "<f2"},    {'f', 4, OTL_DTYPE_FLOAT, "<f4"},
    {'f', 8, OTL_DTYPE_DOUBLE, "<f8"},     {'i', 1, OTL_DTYPE_INT8, "|i1"},
    {'i', 2, OTL_DTYPE_INT16, "<i2"},      {'i', 4, OTL_DTYPE_INT32, "<i4"},
    {'i', 8, OTL_DTYPE_INT64, "<i8"},      {'u', 1, OTL_DTYPE_UINT8, "|u1"},
    {'u', 2, OTL_DTYPE_UINT16, "<u2"},     {'u', 4, OTL_DTYPE_UINT32, "<u4"},
    {'u', 8, OTL_DTYPE_UINT64, "<u8"},     {'b', 1, OTL_DTYPE_BOOL, "|b1"},
    {'c', 8, OTL_DTYPE_COMPLEX64, "<c8"},  {'c', 16, OTL_DTYPE_COMPLEX128, "<c16"},
};
#define N_NPY_DTYPES ((int)(sizeof npy_dtypes / sizeof npy_dtypes[0]))

static const char *npy_descr_of(int dtype)
{
    for (int i = 0; i < N_NPY_DTYPES; i++)
        if (npy_dtypes[i].dtype == dtype)
            return npy_dtypes[i].descr;
    return NULL;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

static void fmt_shape(char *buf, size_t cap, const int64_t *dims, int rank)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "(");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%lld", i ? ", " : "",
                              (long long)dims[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, rank == 1 ? ",)" : ")");
}

/* ------------------------------------------------------------ header dict parser */

/* The header is a Python dict literal, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * We parse it as a small subset of Python literals (strings, names, integers, tuples, lists,
 * dicts), in any key order, with either quote style and arbitrary whitespace. */
typedef struct hparse {
    const char *p, *end;
    const char *file;
    otl_error *err;
} hparse;

static otl_status hp_fail(hparse *h, const char *what)
{
    return otl_error_set(h->err, OTL_ERR_INPUT, "%s: malformed .npy header: %s", h->file, what);
}

static void hp_ws(hparse *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

/* A quoted string into out (truncated to cap-1, *trunc set when it did not fit). */
static otl_status hp_string(hparse *h, char *out, size_t cap, int *trunc)
{
    hp_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return hp_fail(h, "expected a string");
    char q = *h->p++;
    size_t n = 0;
    *trunc = 0;
    while (h->p < h->end && *h->p != q) {
        char c = *h->p++;
        if (c == '\\') {
            if (h->p >= h->end)
                break;
            c = *h->p++;
        }
        if (n + 1 < cap)
            out[n++] = c;
        else
            *trunc = 1;
    }
    if (h->p >= h->end)
        return hp_fail(h, "unterminated string");
    h->p++;
    out[n] = 0;
    return OTL_OK;
}

static int hp_is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Skip any value (used for keys we do not know). */
static otl_status hp_skip_value(hparse *h, int depth)
{
    hp_ws(h);
    if (depth > 32)
        return hp_fail(h, "nested too deeply");
    if (h->p >= h->end)
        return hp_fail(h, "unexpected end");
    char c = *h->p;
    if (c == '\'' || c == '"') {
        char tmp[2];
        int tr;
        return hp_string(h, tmp, sizeof tmp, &tr);
    }
    if (c == '(' || c == '[' || c == '{') {
        char close = c == '(' ? ')' : c == '[' ? ']' : '}';
        h->p++;
        for (;;) {
            hp_ws(h);
            if (h->p < h->end && *h->p == close) {
                h->p++;
                return OTL_OK;
            }
            otl_status st = hp_skip_value(h, depth + 1);
            if (st)
                return st;
            hp_ws(h);
            if (h->p < h->end && (*h->p == ',' || *h->p == ':')) {
                h->p++;
                continue;
            }
            if (h->p < h->end && *h->p == close) {
                h->p++;
                return OTL_OK;
            }
            return hp_fail(h, "expected ',' or a closing bracket");
        }
    }
    if (c == '-' || c == '+' || c == '.' || hp_is_name_char(c)) {
        h->p++;
        while (h->p < h->end && (hp_is_name_char(*h->p) || *h->p == '.' || *h->p == '-' ||
                                 *h->p == '+'))
            h->p++;
        return OTL_OK;
    }
    return hp_fail(h, "unexpected character");
}

static otl_status hp_bool(hparse *h, int *v)
{
    hp_ws(h);
    const char *s = h->p;
    while (h->p < h->end && hp_is_name_char(*h->p))
        h->p++;
    size_t n = (size_t)(h->p - s);
    if (n == 4 && memcmp(s, "True", 4) == 0)
        *v = 1;
    else if (n == 5 && memcmp(s, "False", 5) == 0)
        *v = 0;
    else if (n == 1 && (*s == '0' || *s == '1'))
        *v = *s == '1';
    else
        return hp_fail(h, "'fortran_order' must be True or False");
    return OTL_OK;
}

static otl_status hp_shape(hparse *h, npy_info *info)
{
    hp_ws(h);
    if (h->p >= h->end || (*h->p != '(' && *h->p != '['))
        return hp_fail(h, "'shape' must be a tuple of integers");
    char close = *h->p == '(' ? ')' : ']';
    h->p++;
    info->rank = 0;
    for (;;) {
        hp_ws(h);
        if (h->p < h->end && *h->p == close) {
            h->p++;
            return OTL_OK;
        }
        if (h->p < h->end && *h->p == '-')
            return otl_error_set(h->err, OTL_ERR_INPUT, "%s: .npy header: negative dimension in "
                                 "'shape'", h->file);
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return hp_fail(h, "'shape' must be a tuple of non-negative integers");
        int64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            int d = *h->p++ - '0';
            if (v > (INT64_MAX - d) / 10)
                return otl_error_set(h->err, OTL_ERR_INPUT, "%s: .npy header: dimension in "
                                     "'shape' is too large", h->file);
            v = v * 10 + d;
        }
        if (h->p < h->end && (*h->p == 'L' || *h->p == 'l')) /* Python 2 long */
            h->p++;
        if (info->rank >= NPY_MAX_RANK)
            return otl_error_set(h->err, OTL_ERR_INPUT, "%s: .npy header: more than %d dimensions",
                                 h->file, NPY_MAX_RANK);
        info->dims[info->rank++] = v;
        hp_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        if (h->p < h->end && *h->p == close)
            continue;
        return hp_fail(h, "expected ',' or ')' in 'shape'");
    }
}

static otl_status npy_descr(const char *descr, int trunc, const char *file, int *dtype,
                            otl_error *err)
{
    const char *s = descr;
    char order = 0;
    if (*s == '<' || *s == '>' || *s == '=' || *s == '|')
        order = *s++;
    if (trunc)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: unsupported .npy dtype (descr too "
                             "long)", file);
    char kind = *s;
    int size = 0;
    if (kind == '?' && s[1] == 0) {
        kind = 'b';
        size = 1;
    } else if (kind) {
        const char *q = s + 1;
        if (*q < '0' || *q > '9')
            size = -1;
        while (size >= 0 && *q >= '0' && *q <= '9' && size < 1000)
            size = size * 10 + (*q++ - '0');
        if (*q != 0)
            size = -1;
    }
    if (kind == 'O')
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: object arrays (dtype '%s') are not "
                             "supported: save a numeric array", file, descr);
    for (int i = 0; i < N_NPY_DTYPES; i++) {
        if (npy_dtypes[i].kind != kind || npy_dtypes[i].size != size)
            continue;
        if (order == '>' && size > 1)
            return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: big-endian data (dtype '%s') is "
                                 "not supported: convert with arr.astype('<%c%d')", file, descr,
                                 kind, size);
        *dtype = npy_dtypes[i].dtype;
        return OTL_OK;
    }
    return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: unsupported .npy dtype '%s' (supported: "
                         "f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1 c8 c16, little-endian)", file, descr);
}

static otl_status npy_header_dict(const char *hdr, size_t len, const char *file, npy_info *info,
                                  otl_error *err)
{
    hparse h = {hdr, hdr + len, file, err};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    char descr[64] = "";
    int descr_trunc = 0;
    otl_status st;
    hp_ws(&h);
    if (h.p >= h.end || *h.p != '{')
        return hp_fail(&h, "expected a dict '{...}'");
    h.p++;
    for (;;) {
        hp_ws(&h);
        if (h.p < h.end && *h.p == '}') {
            h.p++;
            break;
        }
        char key[32];
        int tr;
        if ((st = hp_string(&h, key, sizeof key, &tr)))
            return st;
        hp_ws(&h);
        if (h.p >= h.end || *h.p != ':')
            return hp_fail(&h, "expected ':' after a key");
        h.p++;
        hp_ws(&h);
        if (!tr && strcmp(key, "descr") == 0) {
            if (have_descr++)
                return hp_fail(&h, "duplicate key 'descr'");
            if (h.p < h.end && (*h.p == '[' || *h.p == '('))
                return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: structured arrays (record "
                                     "dtypes) are not supported", file);
            if ((st = hp_string(&h, descr, sizeof descr, &descr_trunc)))
                return st;
        } else if (!tr && strcmp(key, "fortran_order") == 0) {
            if (have_fortran++)
                return hp_fail(&h, "duplicate key 'fortran_order'");
            if ((st = hp_bool(&h, &fortran)))
                return st;
        } else if (!tr && strcmp(key, "shape") == 0) {
            if (have_shape++)
                return hp_fail(&h, "duplicate key 'shape'");
            if ((st = hp_shape(&h, info)))
                return st;
        } else if ((st = hp_skip_value(&h, 0))) {
            return st;
        }
        hp_ws(&h);
        if (h.p < h.end && *h.p == ',') {
            h.p++;
            continue;
        }
        if (h.p < h.end && *h.p == '}')
            continue;
        return hp_fail(&h, "expected ',' or '}'");
    }
    hp_ws(&h);
    while (h.p < h.end && *h.p == 0) /* tolerate NUL padding from other writers */
        h.p++;
    if (h.p != h.end)
        return hp_fail(&h, "trailing characters after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: malformed .npy header: missing key '%s'",
                             file, !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if ((st = npy_descr(descr, descr_trunc, file, &info->dtype, err)))
        return st;
    if (fortran && info->rank > 1) {
        /* with rank <= 1 (or all but one dim of size 1) C and Fortran order coincide, but numpy
         * only sets fortran_order for arrays that are not C-contiguous: refuse it outright */
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not "
                             "supported: save np.ascontiguousarray(arr)", file);
    }
    int has_zero = 0;
    for (int i = 0; i < info->rank; i++)
        has_zero |= info->dims[i] == 0;
    int64_t numel = 1;
    for (int i = 0; i < info->rank && !has_zero; i++) {
        if (numel > INT64_MAX / info->dims[i]) {
            char sh[64 * 24];
            fmt_shape(sh, sizeof sh, info->dims, info->rank);
            return otl_error_set(err, OTL_ERR_INPUT, "%s: .npy shape %s is too large (element "
                                 "count overflows)", file, sh);
        }
        numel *= info->dims[i];
    }
    info->numel = has_zero ? 0 : numel;
    info->nbytes = otl_dtype_nbytes(info->dtype, info->numel);
    if (info->nbytes < 0 || (uint64_t)info->nbytes > (uint64_t)SIZE_MAX / 2) {
        char sh[64 * 24];
        fmt_shape(sh, sizeof sh, info->dims, info->rank);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: .npy shape %s is too large (byte count "
                             "overflows)", file, sh);
    }
    return OTL_OK;
}

/* Magic and version: sets *hdr_off (where the dict starts) and *hdr_len. `avail` bytes of `b`
 * are present (at least the first min(file size, 12)). */
static otl_status npy_preamble(const uint8_t *b, size_t avail, const char *file, size_t *hdr_off,
                               size_t *hdr_len, otl_error *err)
{
    if (avail < NPY_MAGIC_LEN || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a .npy file (bad magic)", file);
    if (avail < 10)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: truncated .npy file (%zu bytes)", file,
                             avail);
    int major = b[6], minor = b[7];
    if (major == 1 && minor == 0) {
        *hdr_off = 10;
        *hdr_len = rd16(b + 8);
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (avail < 12)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: truncated .npy file (%zu bytes)", file,
                                 avail);
        *hdr_off = 12;
        *hdr_len = rd32(b + 8);
    } else {
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: unsupported .npy format version "
                             "%d.%d (supported: 1.0, 2.0, 3.0)", file, major, minor);
    }
    if (*hdr_len > NPY_MAX_HEADER)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: .npy header length %zu is implausible "
                             "(limit %u)", file, *hdr_len, NPY_MAX_HEADER);
    return OTL_OK;
}

static otl_status npy_check_size(const npy_info *info, uint64_t have, const char *file,
                                 otl_error *err)
{
    if (have == (uint64_t)info->nbytes)
        return OTL_OK;
    char sh[64 * 24];
    fmt_shape(sh, sizeof sh, info->dims, info->rank);
    return otl_error_set(err, OTL_ERR_INPUT, "%s: .npy data is %llu bytes but shape %s of %s needs "
                         "%lld bytes (%s)", file, (unsigned long long)have, sh,
                         otl_dtype_name(info->dtype), (long long)info->nbytes,
                         have < (uint64_t)info->nbytes ? "truncated file" : "trailing bytes");
}

/* Parse magic, version and dict from the start of a file of total size `total`; `b` holds at
 * least the first min(total, hdr_off + hdr_len) bytes when called with avail == total, or the
 * caller reads the dict itself (see otl_npy_load). */
static otl_status npy_header(const uint8_t *b, size_t avail, const char *file, npy_info *info,
                             otl_error *err)
{
    size_t off, hlen;
    otl_status st = npy_preamble(b, avail, file, &off, &hlen, err);
    if (st)
        return st;
    if (hlen > avail - off)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: truncated .npy header (%zu bytes declared, "
                             "%zu present)", file, hlen, avail - off);
    if ((st = npy_header_dict((const char *)b + off, hlen, file, info, err)))
        return st;
    info->data_off = off + hlen;
    return OTL_OK;
}

static void normalize_bool(otl_tensor *t)
{
    if (t->dtype != OTL_DTYPE_BOOL)
        return;
    uint8_t *p = t->data;
    for (size_t i = 0; i < t->nbytes; i++)
        p[i] = p[i] != 0;
}

/* Wrap `data` (malloc'd, info->nbytes long, ownership taken even on failure). */
static otl_status npy_make_tensor(otl_tensor **out, const npy_info *info, void *data,
                                  const char *tname, const char *file, otl_error *err)
{
    otl_tensor *t = otl_tensor_new(tname, info->dtype, info->rank, info->dims);
    if (!t) {
        free(data);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    t->data = data;
    t->nbytes = (size_t)info->nbytes;
    normalize_bool(t);
    *out = t;
    return OTL_OK;
}

static otl_status npy_parse_named(otl_tensor **out, const void *buf, size_t len, const char *file,
                                  const char *tname, otl_error *err)
{
    *out = NULL;
    npy_info info;
    otl_status st = npy_header(buf, len, file, &info, err);
    if (st)
        return st;
    if ((st = npy_check_size(&info, len - info.data_off, file, err)))
        return st;
    void *data = NULL;
    if (info.nbytes > 0) {
        data = malloc((size_t)info.nbytes);
        if (!data)
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory (%lld bytes)", file,
                                 (long long)info.nbytes);
        memcpy(data, (const uint8_t *)buf + info.data_off, (size_t)info.nbytes);
    }
    return npy_make_tensor(out, &info, data, tname, file, err);
}

/* Same, taking ownership of the malloc'd buffer, which becomes the tensor's data. */
static otl_status npy_parse_owned(otl_tensor **out, uint8_t *buf, size_t len, const char *file,
                                  const char *tname, otl_error *err)
{
    *out = NULL;
    npy_info info;
    otl_status st = npy_header(buf, len, file, &info, err);
    if (!st)
        st = npy_check_size(&info, len - info.data_off, file, err);
    if (st) {
        free(buf);
        return st;
    }
    if (info.nbytes == 0) {
        free(buf);
        return npy_make_tensor(out, &info, NULL, tname, file, err);
    }
    memmove(buf, buf + info.data_off, (size_t)info.nbytes);
    uint8_t *shrunk = realloc(buf, (size_t)info.nbytes);
    return npy_make_tensor(out, &info, shrunk ? shrunk : buf, tname, file, err);
}

otl_status otl_npy_parse(otl_tensor **out, const void *buf, size_t len, const char *name,
                         otl_error *err)
{
    const char *file = name ? name : "(npy)";
    if (!buf && len)
        return otl_error_set(err, OTL_ERR_USAGE, "%s: no buffer", file);
    if (!host_is_little_endian())
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: .npy needs a little-endian host", file);
    return npy_parse_named(out, buf ? buf : "", len, file, name ? name : "", err);
}

/* ------------------------------------------------------------ file helpers */

static otl_status pread_exact(int fd, void *buf, size_t n, uint64_t off, const char *file,
                              otl_error *err)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > ((size_t)1 << 30))
            want = (size_t)1 << 30;
        ssize_t r = pread(fd, (uint8_t *)buf + got, want, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return otl_error_set(err, r < 0 ? OTL_ERR_IO : OTL_ERR_INPUT, "%s: read error: %s",
                                 file, r < 0 ? strerror(errno) : "unexpected end of file");
        got += (size_t)r;
    }
    return OTL_OK;
}

static otl_status open_regular(const char *path, int *fd, uint64_t *size, otl_error *err)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK);
    if (*fd < 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return OTL_OK;
}

otl_status otl_npy_load(otl_tensor **out, const char *path, otl_error *err)
{
    *out = NULL;
    if (!host_is_little_endian())
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: .npy needs a little-endian host", path);
    int fd;
    uint64_t size;
    otl_status st = open_regular(path, &fd, &size, err);
    if (st)
        return st;
    uint8_t pre[12];
    size_t npre = size < sizeof pre ? (size_t)size : sizeof pre;
    size_t off = 0, hlen = 0;
    uint8_t *hdr = NULL;
    void *data = NULL;
    npy_info info;
    if ((st = pread_exact(fd, pre, npre, 0, path, err)))
        goto done;
    if ((st = npy_preamble(pre, npre, path, &off, &hlen, err)))
        goto done;
    if (hlen > size - off) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: truncated .npy header (%zu bytes declared, "
                           "%llu present)", path, hlen, (unsigned long long)(size - off));
        goto done;
    }
    hdr = malloc(hlen + 1); /* bounded by NPY_MAX_HEADER and the file size */
    if (!hdr) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = pread_exact(fd, hdr, hlen, off, path, err)))
        goto done;
    if ((st = npy_header_dict((const char *)hdr, hlen, path, &info, err)))
        goto done;
    info.data_off = off + hlen;
    if ((st = npy_check_size(&info, size - info.data_off, path, err)))
        goto done;
    if (info.nbytes > 0) { /* now known to equal the bytes present in the file */
        data = malloc((size_t)info.nbytes);
        if (!data) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory (%lld bytes)", path,
                               (long long)info.nbytes);
            goto done;
        }
        if ((st = pread_exact(fd, data, (size_t)info.nbytes, info.data_off, path, err)))
            goto done;
    }
    st = npy_make_tensor(out, &info, data, path, path, err);
    data = NULL;
done:
    free(hdr);
    free(data);
    close(fd);
    return st;
}

/* ------------------------------------------------------------ writer */

otl_status otl_npy_save(const otl_tensor *t, const char *path, otl_error *err)
{
    if (!t)
        return otl_error_set(err, OTL_ERR_USAGE, "%s: no tensor to write", path);
    const char *tn = t->name && *t->name ? t->name : "(unnamed)";
    const char *descr = npy_descr_of(t->dtype);
    if (!descr)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be "
                             "written as .npy", path, tn, otl_dtype_name(t->dtype));
    if (!host_is_little_endian())
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: .npy needs a little-endian host", path);
    if (t->rank < 0 || t->rank > NPY_MAX_RANK || (t->rank > 0 && !t->dims))
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: tensor '%s': rank %d cannot be written "
                             "as .npy (at most %d)", path, tn, t->rank, NPY_MAX_RANK);
    int64_t numel = 1;
    int has_zero = 0;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: tensor '%s': negative dimension %lld",
                                 path, tn, (long long)t->dims[i]);
        has_zero |= t->dims[i] == 0;
    }
    for (int i = 0; i < t->rank && !has_zero; i++) {
        if (numel > INT64_MAX / t->dims[i])
            return otl_error_set(err, OTL_ERR_INPUT, "%s: tensor '%s': shape overflows", path, tn);
        numel *= t->dims[i];
    }
    if (has_zero)
        numel = 0;
    int64_t nbytes = otl_dtype_nbytes(t->dtype, numel);
    if (nbytes < 0 || (uint64_t)nbytes != (uint64_t)t->nbytes || (nbytes > 0 && !t->data))
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: tensor '%s': holds %zu bytes of data but "
                             "its shape needs %lld", path, tn, t->data ? t->nbytes : (size_t)0,
                             (long long)nbytes);

    /* header: dict, padded with spaces and a final '\n' so that the data starts 64-aligned */
    char dict[96 + NPY_MAX_RANK * 24];
    char sh[NPY_MAX_RANK * 24];
    fmt_shape(sh, sizeof sh, t->dims, t->rank);
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, sh);
    if (dl < 0 || (size_t)dl >= sizeof dict)
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: .npy header too long", path);
    /* numpy's padding rule exactly (a full 64 spaces when already aligned), so that our files
     * are byte-identical to np.save's */
    size_t pre = 10;
    size_t total = pre + (size_t)dl + 1 + (64 - (pre + (size_t)dl + 1) % 64);
    if (total - pre > 65535) {
        pre = 12;
        total = pre + (size_t)dl + 1 + (64 - (pre + (size_t)dl + 1) % 64);
    }
    size_t hlen = total - pre;
    uint8_t *head = malloc(total);
    if (!head)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = pre == 10 ? 1 : 2;
    head[7] = 0;
    for (int i = 0; i < (pre == 10 ? 2 : 4); i++)
        head[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(head + pre, dict, (size_t)dl);
    memset(head + pre + dl, ' ', total - pre - (size_t)dl - 1);
    head[total - 1] = '\n';

    otl_atomic_file af;
    otl_status st = otl_atomic_open(&af, path, err);
    if (st) {
        free(head);
        return st;
    }
    int bad = fwrite(head, 1, total, af.fp) != total;
    free(head);
    if (!bad && nbytes > 0)
        bad = fwrite(t->data, 1, (size_t)nbytes, af.fp) != (size_t)nbytes;
    if (bad) {
        int e = errno;
        otl_atomic_abort(&af);
        return otl_error_set(err, OTL_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return otl_atomic_commit(&af, err);
}

/* ------------------------------------------------------------ .npz (ZIP) reader */

#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOC_SIG 0x07064b50u
#define ZIP_CDIR_SIG 0x02014b50u
#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CHUNK ((size_t)1 << 20)
/* deflate cannot expand data by more than about 1032:1; a declared size beyond that is a lie */
#define DEFLATE_MAX_RATIO 1032

typedef struct npz_ctx {
    int fd;
    uint64_t size;
    const char *path;
    otl_error *err;
} npz_ctx;

static otl_status npz_fail(npz_ctx *z, const char *what)
{
    return otl_error_set(z->err, OTL_ERR_INPUT, "%s: corrupt .npz (ZIP) archive: %s", z->path, what);
}

/* Find the end of central directory; fills entry count, central directory offset and size. */
static otl_status npz_find_cdir(npz_ctx *z, uint64_t *n_entries, uint64_t *cd_off,
                                uint64_t *cd_size)
{
    size_t tail = z->size < 22 + 65535 ? (size_t)z->size : 22 + 65535;
    uint8_t *b = malloc(tail ? tail : 1);
    if (!b)
        return otl_error_set(z->err, OTL_ERR_NOMEM, "%s: out of memory", z->path);
    uint64_t base = z->size - tail;
    otl_status st = pread_exact(z->fd, b, tail, base, z->path, z->err);
    if (st) {
        free(b);
        return st;
    }
    int64_t at = -1;
    for (int64_t i = (int64_t)tail - 22; i >= 0; i--) {
        if (rd32(b + i) == ZIP_EOCD_SIG && (size_t)i + 22 + rd16(b + i + 20) <= tail) {
            at = i;
            break;
        }
    }
    if (at < 0) {
        uint8_t head[NPY_MAGIC_LEN] = {0};
        if (z->size >= NPY_MAGIC_LEN)
            st = pread_exact(z->fd, head, NPY_MAGIC_LEN, 0, z->path, z->err);
        free(b);
        if (st)
            return st;
        if (memcmp(head, NPY_MAGIC, NPY_MAGIC_LEN) == 0)
            return otl_error_set(z->err, OTL_ERR_INPUT, "%s: this is a .npy file, not an .npz "
                                 "archive", z->path);
        if (memcmp(head, "PK\3\4", 4) == 0)
            return otl_error_set(z->err, OTL_ERR_INPUT, "%s: truncated .npz (ZIP) archive: no end "
                                 "of central directory record", z->path);
        return otl_error_set(z->err, OTL_ERR_INPUT, "%s: not an .npz (ZIP) archive: no end of "
                             "central directory record", z->path);
    }
    const uint8_t *e = b + at;
    uint64_t eocd_pos = base + (uint64_t)at;
    unsigned disk = rd16(e + 4), cd_disk = rd16(e + 6);
    uint64_t n_disk = rd16(e + 8), n = rd16(e + 10);
    uint64_t csize = rd32(e + 12), coff = rd32(e + 16);
    int zip64 = n == 0xFFFF || n_disk == 0xFFFF || csize == 0xFFFFFFFFu || coff == 0xFFFFFFFFu;
    if (zip64) {
        /* ZIP64 end of central directory locator just before the classic record */
        uint8_t loc[20], rec[56];
        if (eocd_pos < 20) {
            free(b);
            return npz_fail(z, "missing ZIP64 locator");
        }
        if ((st = pread_exact(z->fd, loc, 20, eocd_pos - 20, z->path, z->err))) {
            free(b);
            return st;
        }
        if (rd32(loc) != ZIP64_LOC_SIG) {
            free(b);
            return npz_fail(z, "missing ZIP64 end of central directory locator");
        }
        uint64_t rec_off = rd64(loc + 8);
        if (rec_off > eocd_pos - 20 || eocd_pos - 20 - rec_off < 56) {
            free(b);
            return npz_fail(z, "ZIP64 end of central directory record out of bounds");
        }
        if ((st = pread_exact(z->fd, rec, 56, rec_off, z->path, z->err))) {
            free(b);
            return st;
        }
        if (rd32(rec) != ZIP64_EOCD_SIG) {
            free(b);
            return npz_fail(z, "bad ZIP64 end of central directory record");
        }
        disk = rd32(rec + 16);
        cd_disk = rd32(rec + 20);
        n_disk = rd64(rec + 24);
        n = rd64(rec + 32);
        csize = rd64(rec + 40);
        coff = rd64(rec + 48);
        eocd_pos = rec_off;
    }
    free(b);
    if (disk != 0 || cd_disk != 0 || n_disk != n)
        return otl_error_set(z->err, OTL_ERR_UNSUPPORTED, "%s: multi-volume ZIP archives are not "
                             "supported", z->path);
    if (coff > eocd_pos || csize > eocd_pos - coff)
        return npz_fail(z, "central directory out of bounds");
    if (n > csize / 46)
        return npz_fail(z, "entry count does not fit the central directory");
    *n_entries = n;
    *cd_off = coff;
    *cd_size = csize;
    return OTL_OK;
}

/* Read one member's bytes (decompressed, CRC-checked) into a malloc'd buffer. */
static otl_status npz_read_member(npz_ctx *z, const char *label, int method, uint64_t data_off,
                                  uint64_t csize, uint64_t usize, uint32_t crc, uint8_t **out)
{
    *out = NULL;
    otl_error *err = z->err;
    if (method == 0 && csize != usize)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: stored member with compressed size %llu "
                             "!= size %llu", label, (unsigned long long)csize,
                             (unsigned long long)usize);
    if (method == 8 && usize / DEFLATE_MAX_RATIO > csize + 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: declared size %llu is impossible for %llu "
                             "compressed bytes", label, (unsigned long long)usize,
                             (unsigned long long)csize);
    if (usize > (uint64_t)SIZE_MAX / 2)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: member too large", label);
    uint8_t *u = malloc(usize ? (size_t)usize : 1);
    if (!u)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory (%llu bytes)", label,
                             (unsigned long long)usize);
    otl_status st = OTL_OK;
    if (method == 0) {
        st = pread_exact(z->fd, u, (size_t)usize, data_off, label, err);
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        size_t cap = csize < ZIP_CHUNK ? (size_t)csize : ZIP_CHUNK;
        uint8_t *cbuf = malloc(cap ? cap : 1);
        if (!cbuf || inflateInit2(&zs, -15) != Z_OK) {
            free(cbuf);
            free(u);
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory (zlib)", label);
        }
        uint64_t in_done = 0, out_done = 0;
        int ended = 0;
        while (!st && !ended) {
            if (zs.avail_in == 0 && in_done < csize) {
                size_t k = csize - in_done < cap ? (size_t)(csize - in_done) : cap;
                st = pread_exact(z->fd, cbuf, k, data_off + in_done, label, err);
                if (st)
                    break;
                zs.next_in = cbuf;
                zs.avail_in = (uInt)k;
                in_done += k;
            }
            uint64_t left = usize - out_done;
            uInt ao = left > ZIP_CHUNK ? (uInt)ZIP_CHUNK : (uInt)left;
            zs.next_out = u + out_done;
            zs.avail_out = ao;
            uInt ai = zs.avail_in;
            int r = inflate(&zs, Z_NO_FLUSH);
            out_done += ao - zs.avail_out;
            int progress = zs.avail_in != ai || zs.avail_out != ao;
            if (r == Z_STREAM_END) {
                ended = 1;
            } else if (r == Z_OK || r == Z_BUF_ERROR) {
                if (!progress) {
                    if (out_done == usize)
                        st = otl_error_set(err, OTL_ERR_INPUT, "%s: decompresses to more than "
                                           "its declared size %llu", label,
                                           (unsigned long long)usize);
                    else
                        st = otl_error_set(err, OTL_ERR_INPUT, "%s: truncated deflate stream",
                                           label);
                }
            } else {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: corrupt deflate data (%s)", label,
                                   zs.msg ? zs.msg : "zlib error");
            }
        }
        inflateEnd(&zs);
        free(cbuf);
        if (!st && out_done != usize)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: decompressed to %llu bytes, declared %llu",
                               label, (unsigned long long)out_done, (unsigned long long)usize);
    }
    if (!st) {
        uint32_t c = (uint32_t)crc32_z(0L, u, (z_size_t)usize);
        if (c != crc)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: CRC-32 mismatch (archive says %08x, data "
                               "has %08x): corrupt file", label, crc, c);
    }
    if (st) {
        free(u);
        return st;
    }
    *out = u;
    return OTL_OK;
}

otl_status otl_npz_load(otl_tensor ***arrays, int *n_out, const char *path, otl_error *err)
{
    *arrays = NULL;
    *n_out = 0;
    if (!host_is_little_endian())
        return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: .npz needs a little-endian host", path);
    npz_ctx z = {-1, 0, path, err};
    otl_status st = open_regular(path, &z.fd, &z.size, err);
    if (st)
        return st;
    uint64_t n_entries = 0, cd_off = 0, cd_size = 0;
    uint8_t *cd = NULL;
    otl_tensor **arr = NULL;
    int n = 0;
    char *label = NULL;
    if ((st = npz_find_cdir(&z, &n_entries, &cd_off, &cd_size)))
        goto done;
    cd = malloc(cd_size ? (size_t)cd_size : 1); /* bounded by the file size */
    arr = calloc(n_entries ? (size_t)n_entries : 1, sizeof *arr);
    if (!cd || !arr) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = pread_exact(z.fd, cd, (size_t)cd_size, cd_off, path, err)))
        goto done;
    size_t pos = 0;
    for (uint64_t k = 0; k < n_entries; k++) {
        if (cd_size - pos < 46 || rd32(cd + pos) != ZIP_CDIR_SIG) {
            st = npz_fail(&z, "bad central directory entry");
            goto done;
        }
        const uint8_t *e = cd + pos;
        unsigned flags = rd16(e + 8), method = rd16(e + 10);
        uint32_t crc = rd32(e + 16);
        uint64_t csize = rd32(e + 20), usize = rd32(e + 24);
        size_t nl = rd16(e + 28), xl = rd16(e + 30), cl = rd16(e + 32);
        unsigned disk = rd16(e + 34);
        uint64_t lho = rd32(e + 42);
        if (cd_size - pos - 46 < nl + xl + cl) {
            st = npz_fail(&z, "central directory entry out of bounds");
            goto done;
        }
        const char *name = (const char *)e + 46;
        const uint8_t *x = e + 46 + nl, *xend = x + xl;
        pos += 46 + nl + xl + cl;
        /* ZIP64 extended information: present fields follow in this order */
        while (xend - x >= 4) {
            unsigned id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xend - x - 4) < sz)
                break;
            if (id == 0x0001) {
                const uint8_t *q = x + 4, *qe = x + 4 + sz;
                if (usize == 0xFFFFFFFFu && qe - q >= 8) {
                    usize = rd64(q);
                    q += 8;
                }
                if (csize == 0xFFFFFFFFu && qe - q >= 8) {
                    csize = rd64(q);
                    q += 8;
                }
                if (lho == 0xFFFFFFFFu && qe - q >= 8) {
                    lho = rd64(q);
                    q += 8;
                }
                if (disk == 0xFFFF && qe - q >= 4)
                    disk = (unsigned)rd32(q);
            }
            x += 4 + sz;
        }
        free(label);
        label = malloc(strlen(path) + nl + 32);
        if (!label) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        sprintf(label, "%s: member '%.*s'", path, (int)nl, name);
        if (memchr(name, 0, nl)) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: NUL in member name", label);
            goto done;
        }
        if (nl > 0 && name[nl - 1] == '/') /* a directory entry */
            continue;
        if (nl < 5 || memcmp(name + nl - 4, ".npy", 4) != 0) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: not an .npy array (.npz members must be "
                               "named <array>.npy)", label);
            goto done;
        }
        if (flags & 1) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: encrypted members are not "
                               "supported", label);
            goto done;
        }
        if (method != 0 && method != 8) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: compression method %u is not "
                               "supported (only stored and deflate, as numpy writes)", label,
                               method);
            goto done;
        }
        if (disk != 0) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: multi-volume ZIP archives are not "
                               "supported", label);
            goto done;
        }
        uint8_t lh[30];
        if (lho > z.size || z.size - lho < 30) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: local header out of bounds (corrupt or "
                               "truncated archive)", label);
            goto done;
        }
        if ((st = pread_exact(z.fd, lh, 30, lho, label, err)))
            goto done;
        if (rd32(lh) != ZIP_LOCAL_SIG) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: bad local header (corrupt archive)",
                               label);
            goto done;
        }
        uint64_t data_off = lho + 30 + rd16(lh + 26) + rd16(lh + 28);
        if (data_off > z.size || csize > z.size - data_off) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: data out of bounds (truncated archive)",
                               label);
            goto done;
        }
        char *tname = otl_strndup(name, nl - 4);
        if (!tname) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            if (strcmp(arr[i]->name, tname) == 0) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: duplicate array name '%s'", label,
                                   tname);
                free(tname);
                goto done;
            }
        }
        uint8_t *buf;
        st = npz_read_member(&z, label, (int)method, data_off, csize, usize, crc, &buf);
        if (!st)
            st = npy_parse_owned(&arr[n], buf, (size_t)usize, label, tname, err);
        free(tname);
        if (st)
            goto done;
        n++;
    }
done:
    free(label);
    free(cd);
    close(z.fd);
    if (st) {
        otl_tensors_free(arr, n);
        return st;
    }
    *arrays = arr;
    *n_out = n;
    return OTL_OK;
}
