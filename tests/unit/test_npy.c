/* test_npy.c - unit test of src/npy.c: every dtype, scalars, empty arrays, header variants,
 * .npz (stored, deflated, ZIP64), malformed files, load -> save -> load round trips.
 * Usage: test_npy DATADIR OUTDIR   (golden files from make_npy_goldens.py; OUTDIR receives the
 * files written by otl_npy_save, which check_npy_numpy.py then reads back with numpy).
 * Exit status 0 only when every check passed. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnxtl.h"

static int n_checks, n_failures;
static const char *g_data, *g_out;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        n_checks++;                                                                               \
        if (!(cond)) {                                                                            \
            n_failures++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

static char *path_in(const char *dir, const char *name)
{
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                       : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* element i of the golden pattern (see make_npy_goldens.py) */
static int elem_ok(const otl_tensor *t, int64_t i)
{
    int64_t s = 7 * i - 5;
    const void *d = t->data;
    switch (t->dtype) {
    case OTL_DTYPE_FLOAT: return ((const float *)d)[i] == (float)((double)s * 0.25);
    case OTL_DTYPE_DOUBLE: return ((const double *)d)[i] == (double)s * 0.25;
    case OTL_DTYPE_FLOAT16: return half_to_float(((const uint16_t *)d)[i]) == (float)s * 0.25f;
    case OTL_DTYPE_INT8: return ((const int8_t *)d)[i] == (int8_t)s;
    case OTL_DTYPE_INT16: return ((const int16_t *)d)[i] == (int16_t)s;
    case OTL_DTYPE_INT32: return ((const int32_t *)d)[i] == (int32_t)s;
    case OTL_DTYPE_INT64: return ((const int64_t *)d)[i] == s;
    case OTL_DTYPE_UINT8: return ((const uint8_t *)d)[i] == (uint8_t)s;
    case OTL_DTYPE_UINT16: return ((const uint16_t *)d)[i] == (uint16_t)s;
    case OTL_DTYPE_UINT32: return ((const uint32_t *)d)[i] == (uint32_t)s;
    case OTL_DTYPE_UINT64: return ((const uint64_t *)d)[i] == (uint64_t)s;
    case OTL_DTYPE_BOOL: return ((const uint8_t *)d)[i] == (i % 3 == 0);
    }
    return 0;
}

static void fill_pattern(otl_tensor *t)
{
    t->nbytes = (size_t)otl_dtype_nbytes(t->dtype, t->numel);
    t->data = t->nbytes ? calloc(1, t->nbytes) : NULL;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t s = 7 * i - 5;
        void *d = t->data;
        switch (t->dtype) {
        case OTL_DTYPE_FLOAT: ((float *)d)[i] = (float)s * 0.25f; break;
        case OTL_DTYPE_DOUBLE: ((double *)d)[i] = (double)s * 0.25; break;
        case OTL_DTYPE_INT32: ((int32_t *)d)[i] = (int32_t)s; break;
        case OTL_DTYPE_INT64: ((int64_t *)d)[i] = s; break;
        case OTL_DTYPE_UINT8: ((uint8_t *)d)[i] = (uint8_t)s; break;
        case OTL_DTYPE_BOOL: ((uint8_t *)d)[i] = i % 3 == 0; break;
        case OTL_DTYPE_FLOAT16: {
            /* the pattern's values are exact in half precision: encode by search */
            uint16_t h = 0;
            for (uint32_t c = 0; c < 65536; c++)
                if (half_to_float((uint16_t)c) == (float)s * 0.25f) {
                    h = (uint16_t)c;
                    break;
                }
            ((uint16_t *)d)[i] = h;
            break;
        }
        default: break;
        }
    }
}

static void check_tensor(const otl_tensor *t, const char *what, int dtype, int rank,
                         const int64_t *dims)
{
    CHECK(t != NULL, "%s: no tensor", what);
    if (!t)
        return;
    CHECK(t->dtype == dtype, "%s: dtype %s, expected %s", what, otl_dtype_name(t->dtype),
          otl_dtype_name(dtype));
    CHECK(t->rank == rank, "%s: rank %d, expected %d", what, t->rank, rank);
    if (t->dtype != dtype || t->rank != rank)
        return;
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        CHECK(t->dims[i] == dims[i], "%s: dim %d is %lld, expected %lld", what, i,
              (long long)t->dims[i], (long long)dims[i]);
        numel *= dims[i];
    }
    CHECK(t->numel == numel, "%s: numel %lld, expected %lld", what, (long long)t->numel,
          (long long)numel);
    CHECK((int64_t)t->nbytes == otl_dtype_nbytes(dtype, numel), "%s: nbytes %zu", what, t->nbytes);
    CHECK(numel == 0 || t->data != NULL, "%s: no data", what);
    if (t->numel != numel || (int64_t)t->nbytes != otl_dtype_nbytes(dtype, numel) || !t->data)
        return;
    int bad = 0;
    for (int64_t i = 0; i < numel && bad < 3; i++)
        if (!elem_ok(t, i)) {
            bad++;
            CHECK(0, "%s: element %lld differs from the pattern", what, (long long)i);
        }
}

typedef struct golden {
    const char *file;
    int dtype;
    int rank;
    int64_t dims[4];
    int numpy_written; /* np.save output: our writer must reproduce it byte for byte */
} golden;

static const golden goldens[] = {
    {"ok_f4.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 1},
    {"ok_f8.npy", OTL_DTYPE_DOUBLE, 2, {3, 2}, 1},
    {"ok_f2.npy", OTL_DTYPE_FLOAT16, 1, {5}, 1},
    {"ok_i8.npy", OTL_DTYPE_INT64, 3, {2, 2, 2}, 1},
    {"ok_i4.npy", OTL_DTYPE_INT32, 1, {7}, 1},
    {"ok_i2.npy", OTL_DTYPE_INT16, 2, {2, 3}, 1},
    {"ok_i1.npy", OTL_DTYPE_INT8, 1, {6}, 1},
    {"ok_u1.npy", OTL_DTYPE_UINT8, 2, {2, 3}, 1},
    {"ok_u2.npy", OTL_DTYPE_UINT16, 1, {4}, 1},
    {"ok_u4.npy", OTL_DTYPE_UINT32, 1, {3}, 1},
    {"ok_u8.npy", OTL_DTYPE_UINT64, 4, {2, 1, 2, 1}, 1},
    {"ok_b1.npy", OTL_DTYPE_BOOL, 1, {7}, 1},
    {"ok_scalar_f4.npy", OTL_DTYPE_FLOAT, 0, {0}, 1},
    {"ok_scalar_i8.npy", OTL_DTYPE_INT64, 0, {0}, 1},
    {"ok_scalar_b1.npy", OTL_DTYPE_BOOL, 0, {0}, 1},
    {"ok_empty_f4.npy", OTL_DTYPE_FLOAT, 1, {0}, 1},
    {"ok_empty3_i8.npy", OTL_DTYPE_INT64, 3, {2, 0, 3}, 1},
    {"ok_v2_f4.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_v3_f4.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_order.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_dquote.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_native.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_noorder.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_list.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_v2.npy", OTL_DTYPE_FLOAT, 2, {2, 3}, 0},
    {"ok_hdr_bool_q.npy", OTL_DTYPE_BOOL, 1, {7}, 0},
    {"ok_hdr_fortran_1d.npy", OTL_DTYPE_FLOAT, 1, {6}, 0},
};
#define N_GOLDENS ((int)(sizeof goldens / sizeof goldens[0]))

static int same_tensor(const otl_tensor *a, const otl_tensor *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank || a->numel != b->numel ||
        a->nbytes != b->nbytes)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static void test_valid(void)
{
    for (int g = 0; g < N_GOLDENS; g++) {
        const golden *gd = &goldens[g];
        const char *p = path_in(g_data, gd->file);
        otl_error err = {0};
        otl_tensor *t = NULL;
        otl_status st = otl_npy_load(&t, p, &err);
        CHECK(st == OTL_OK, "%s: load failed: %s", gd->file, err.msg);
        if (st)
            continue;
        check_tensor(t, gd->file, gd->dtype, gd->rank, gd->dims);
        CHECK(t->name && strcmp(t->name, p) == 0, "%s: tensor name '%s'", gd->file, t->name);

        /* round trip: save, load again, bit-identical; np.save output reproduced exactly */
        char outname[512];
        snprintf(outname, sizeof outname, "rt_%s", gd->file);
        const char *q = path_in(g_out, outname);
        st = otl_npy_save(t, q, &err);
        CHECK(st == OTL_OK, "%s: save failed: %s", q, err.msg);
        otl_tensor *u = NULL;
        if (!st) {
            st = otl_npy_load(&u, q, &err);
            CHECK(st == OTL_OK, "%s: reload failed: %s", q, err.msg);
        }
        if (u)
            CHECK(same_tensor(t, u), "%s: round trip changed the tensor", gd->file);
        size_t la = 0, lb = 0;
        uint8_t *a = read_all(p, &la), *b = read_all(q, &lb);
        CHECK(b != NULL, "%s: unreadable", q);
        if (b) {
            CHECK((lb - t->nbytes) % 64 == 0, "%s: header of %zu bytes is not 64-aligned", q,
                  lb - t->nbytes);
            CHECK(b[6] == 1 && b[7] == 0, "%s: not written as version 1.0", q);
        }
        if (gd->numpy_written && a && b)
            CHECK(la == lb && memcmp(a, b, la) == 0, "%s: differs from np.save's %s", q, p);
        free(a);
        free(b);
        otl_tensor_free(u);

        /* the same through otl_npy_parse on a memory buffer */
        a = read_all(p, &la);
        otl_tensor *m = NULL;
        st = otl_npy_parse(&m, a, la, "membuf", &err);
        CHECK(st == OTL_OK, "%s: parse failed: %s", gd->file, err.msg);
        if (m) {
            CHECK(same_tensor(t, m), "%s: parse differs from load", gd->file);
            CHECK(strcmp(m->name, "membuf") == 0, "%s: parsed tensor named '%s'", gd->file,
                  m->name);
        }
        otl_tensor_free(m);
        /* every proper prefix is refused cleanly (and never crashes) */
        for (size_t cut = 0; a && cut < la; cut++) {
            otl_error e2 = {0};
            otl_tensor *x = (otl_tensor *)1;
            st = otl_npy_parse(&x, a, cut, "prefix", &e2);
            CHECK(st != OTL_OK && x == NULL, "%s: prefix of %zu bytes accepted", gd->file, cut);
            CHECK(strstr(e2.msg, "prefix") != NULL, "%s: message does not name the file: %s",
                  gd->file, e2.msg);
            if (st == OTL_OK)
                otl_tensor_free(x);
        }
        free(a);
        otl_tensor_free(t);
    }
}

static void test_special(void)
{
    otl_error err = {0};
    otl_tensor *t = NULL;
    if (otl_npy_load(&t, path_in(g_data, "ok_special_f4.npy"), &err) == OTL_OK) {
        const float *f = t->data;
        const uint32_t *u = t->data;
        CHECK(t->numel == 6, "special: numel %lld", (long long)t->numel);
        CHECK(isnan(f[0]) && isinf(f[1]) && f[1] > 0 && isinf(f[2]) && f[2] < 0,
              "special: nan/inf wrong");
        CHECK(u[3] == 0x80000000u, "special: -0.0 bits %08x", u[3]);
        CHECK(u[4] == 1u, "special: smallest denormal bits %08x", u[4]);
        CHECK(u[5] == 0x7f7fffffu, "special: max float bits %08x", u[5]);
        otl_error e2 = {0};
        CHECK(otl_npy_save(t, path_in(g_out, "rt_ok_special_f4.npy"), &e2) == OTL_OK, "%s", e2.msg);
    } else {
        CHECK(0, "ok_special_f4.npy: %s", err.msg);
    }
    otl_tensor_free(t);
    t = NULL;
    otl_error_clear(&err);
    if (otl_npy_load(&t, path_in(g_data, "ok_big_u8.npy"), &err) == OTL_OK) {
        const uint64_t *u = t->data;
        CHECK(u[0] == UINT64_MAX && u[1] == (uint64_t)1 << 63, "big_u8 values");
        otl_error e2 = {0};
        CHECK(otl_npy_save(t, path_in(g_out, "rt_ok_big_u8.npy"), &e2) == OTL_OK, "%s", e2.msg);
    } else {
        CHECK(0, "ok_big_u8.npy: %s", err.msg);
    }
    otl_tensor_free(t);
    t = NULL;
    otl_error_clear(&err);
    if (otl_npy_load(&t, path_in(g_data, "ok_big_i8.npy"), &err) == OTL_OK) {
        const int64_t *v = t->data;
        CHECK(v[0] == INT64_MIN && v[1] == INT64_MAX, "big_i8 values");
    } else {
        CHECK(0, "ok_big_i8.npy: %s", err.msg);
    }
    otl_tensor_free(t);
}

typedef struct bad {
    const char *file;
    otl_status code;   /* expected code */
    const char *needle; /* expected in the message (besides the path) */
} bad;

static const bad bad_npy[] = {
    {"bad_truncated.npy", OTL_ERR_INPUT, "truncated"},
    {"bad_trailing.npy", OTL_ERR_INPUT, "trailing"},
    {"bad_trunc_header.npy", OTL_ERR_INPUT, "truncated"},
    {"bad_short.npy", OTL_ERR_INPUT, "truncated"},
    {"bad_magic.npy", OTL_ERR_INPUT, "not a .npy"},
    {"bad_version.npy", OTL_ERR_UNSUPPORTED, "version 4.0"},
    {"bad_hdrlen.npy", OTL_ERR_INPUT, "truncated .npy header"},
    {"bad_empty.npy", OTL_ERR_INPUT, "not a .npy"},
    {"bad_bigendian.npy", OTL_ERR_UNSUPPORTED, "big-endian"},
    {"bad_bigendian_hdr.npy", OTL_ERR_UNSUPPORTED, "big-endian"},
    {"bad_fortran.npy", OTL_ERR_UNSUPPORTED, "Fortran"},
    {"bad_object.npy", OTL_ERR_UNSUPPORTED, "object"},
    {"bad_unicode.npy", OTL_ERR_UNSUPPORTED, "unsupported .npy dtype '<U2'"},
    {"bad_datetime.npy", OTL_ERR_UNSUPPORTED, "unsupported .npy dtype '<M8[ns]'"},
    {"bad_struct.npy", OTL_ERR_UNSUPPORTED, "structured"},
    {"bad_overflow.npy", OTL_ERR_INPUT, "overflows"},
    {"bad_overflow_bytes.npy", OTL_ERR_INPUT, "overflows"},
    {"bad_hugedim.npy", OTL_ERR_INPUT, "too large"},
    {"bad_huge_claim.npy", OTL_ERR_INPUT, "truncated file"},
    {"bad_negdim.npy", OTL_ERR_INPUT, "negative"},
    {"bad_nokey.npy", OTL_ERR_INPUT, "missing key 'fortran_order'"},
    {"bad_garbage.npy", OTL_ERR_INPUT, "trailing characters"},
    {"bad_notdict.npy", OTL_ERR_INPUT, "expected a dict"},
    {"bad_unterminated.npy", OTL_ERR_INPUT, "malformed"},
    {"bad_dupkey.npy", OTL_ERR_INPUT, "duplicate"},
    {"does_not_exist.npy", OTL_ERR_INPUT, "cannot open"},
};

static const bad bad_npz[] = {
    {"bad_crc.npz", OTL_ERR_INPUT, "CRC-32 mismatch"},
    {"bad_truncated.npz", OTL_ERR_INPUT, "truncated .npz"},
    {"bad_notzip.npz", OTL_ERR_INPUT, "not an .npz"},
    {"bad_isnpy.npz", OTL_ERR_INPUT, "is a .npy file"},
    {"bad_bomb.npz", OTL_ERR_INPUT, "impossible"},
    {"bad_deflate.npz", OTL_ERR_INPUT, "deflate"},
    {"bad_member.npz", OTL_ERR_INPUT, "member 'x.npy': .npy data is"},
    {"bad_member_name.npz", OTL_ERR_INPUT, "member 'x.txt'"},
    {"bad_bzip2.npz", OTL_ERR_UNSUPPORTED, "compression method 12"},
    {"ok_f4.npy", OTL_ERR_INPUT, "is a .npy file"},
    {"does_not_exist.npz", OTL_ERR_INPUT, "cannot open"},
};

static void test_bad(void)
{
    for (size_t k = 0; k < sizeof bad_npy / sizeof bad_npy[0]; k++) {
        const bad *b = &bad_npy[k];
        const char *p = path_in(g_data, b->file);
        otl_error err = {0};
        otl_tensor *t = (otl_tensor *)1;
        otl_status st = otl_npy_load(&t, p, &err);
        CHECK(st == b->code, "%s: status %d, expected %d (%s)", b->file, st, b->code, err.msg);
        CHECK(t == NULL, "%s: *out not NULL after failure", b->file);
        CHECK(strstr(err.msg, p) == err.msg, "%s: message does not start with the path: %s",
              b->file, err.msg);
        CHECK(strstr(err.msg, b->needle) != NULL, "%s: message lacks '%s': %s", b->file, b->needle,
              err.msg);
        if (st == OTL_OK)
            otl_tensor_free(t);
        /* the same bytes from memory */
        size_t len;
        uint8_t *buf = read_all(p, &len);
        if (buf) {
            otl_error e2 = {0};
            t = (otl_tensor *)1;
            st = otl_npy_parse(&t, buf, len, p, &e2);
            CHECK(st == b->code && t == NULL, "%s: parse status %d (%s)", b->file, st, e2.msg);
            if (st == OTL_OK)
                otl_tensor_free(t);
            free(buf);
        }
    }
    for (size_t k = 0; k < sizeof bad_npz / sizeof bad_npz[0]; k++) {
        const bad *b = &bad_npz[k];
        const char *p = path_in(g_data, b->file);
        otl_error err = {0};
        otl_tensor **arr = (otl_tensor **)1;
        int n = -1;
        otl_status st = otl_npz_load(&arr, &n, p, &err);
        CHECK(st == b->code, "%s: status %d, expected %d (%s)", b->file, st, b->code, err.msg);
        CHECK(arr == NULL && n == 0, "%s: outputs set after failure", b->file);
        CHECK(strstr(err.msg, p) == err.msg, "%s: message does not start with the path: %s",
              b->file, err.msg);
        CHECK(strstr(err.msg, b->needle) != NULL, "%s: message lacks '%s': %s", b->file, b->needle,
              err.msg);
    }
}

static otl_tensor *find(otl_tensor **arr, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(arr[i]->name, name) == 0)
            return arr[i];
    return NULL;
}

static void test_npz(void)
{
    static const struct {
        const char *file;
        int n;
        const char *names[4];
        int dtypes[4];
        int ranks[4];
        int64_t dims[4][2];
    } cases[] = {
        {"ok_stored.npz", 2, {"x", "y"}, {OTL_DTYPE_FLOAT, OTL_DTYPE_INT64}, {2, 1},
         {{4, 3}, {4}}},
        {"ok_deflated.npz", 4, {"x", "y", "s", "e"},
         {OTL_DTYPE_FLOAT, OTL_DTYPE_INT64, OTL_DTYPE_DOUBLE, OTL_DTYPE_UINT8}, {2, 1, 0, 2},
         {{16, 16}, {16}, {0}, {0, 4}}},
        {"ok_zip64.npz", 2, {"x", "b"}, {OTL_DTYPE_FLOAT, OTL_DTYPE_BOOL}, {2, 1}, {{2, 3}, {7}}},
        {"ok_empty.npz", 0, {NULL}, {0}, {0}, {{0}}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        otl_error err = {0};
        otl_tensor **arr = NULL;
        int n = -1;
        otl_status st = otl_npz_load(&arr, &n, path_in(g_data, cases[c].file), &err);
        CHECK(st == OTL_OK, "%s: %s", cases[c].file, err.msg);
        if (st)
            continue;
        CHECK(n == cases[c].n, "%s: %d arrays, expected %d", cases[c].file, n, cases[c].n);
        for (int i = 0; i < cases[c].n && i < n; i++) {
            /* numpy writes members in keyword order */
            CHECK(strcmp(arr[i]->name, cases[c].names[i]) == 0, "%s: array %d named '%s'",
                  cases[c].file, i, arr[i]->name);
            otl_tensor *t = find(arr, n, cases[c].names[i]);
            char what[256];
            snprintf(what, sizeof what, "%s[%s]", cases[c].file, cases[c].names[i]);
            check_tensor(t, what, cases[c].dtypes[i], cases[c].ranks[i], cases[c].dims[i]);
        }
        otl_tensors_free(arr, n);
    }
}

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp"))
            n++;
    closedir(d);
    return n;
}

static void test_save(void)
{
    /* tensors built in memory; check_npy_numpy.py verifies them with numpy */
    static const struct {
        const char *file;
        int dtype;
        int rank;
        int64_t dims[3];
    } built[] = {
        {"c_f2.npy", OTL_DTYPE_FLOAT16, 2, {3, 4}},
        {"c_f8_scalar.npy", OTL_DTYPE_DOUBLE, 0, {0}},
        {"c_i4.npy", OTL_DTYPE_INT32, 3, {2, 3, 4}},
        {"c_b1_empty.npy", OTL_DTYPE_BOOL, 2, {3, 0}},
        {"c_u1.npy", OTL_DTYPE_UINT8, 1, {300}},
        {"c_f4_long.npy", OTL_DTYPE_FLOAT, 3, {1, 1, 1234567}},
    };
    for (size_t k = 0; k < sizeof built / sizeof built[0]; k++) {
        otl_tensor *t = otl_tensor_new("t", built[k].dtype, built[k].rank, built[k].dims);
        fill_pattern(t);
        otl_error err = {0};
        const char *p = path_in(g_out, built[k].file);
        otl_status st = otl_npy_save(t, p, &err);
        CHECK(st == OTL_OK, "%s: %s", p, err.msg);
        otl_tensor *u = NULL;
        if (!st && otl_npy_load(&u, p, &err) == OTL_OK)
            CHECK(same_tensor(t, u), "%s: reload differs", p);
        else
            CHECK(0, "%s: reload failed: %s", p, err.msg);
        otl_tensor_free(u);
        otl_tensor_free(t);
    }
    /* overwrite an existing file */
    {
        int64_t d = 2;
        otl_tensor *t = otl_tensor_new("t", OTL_DTYPE_INT64, 1, &d);
        fill_pattern(t);
        otl_error err = {0};
        CHECK(otl_npy_save(t, path_in(g_out, "c_i4.npy"), &err) == OTL_OK, "overwrite: %s",
              err.msg);
        otl_tensor *u = NULL;
        CHECK(otl_npy_load(&u, path_in(g_out, "c_i4.npy"), &err) == OTL_OK && same_tensor(t, u),
              "overwrite: reload differs");
        otl_tensor_free(u);
        /* restore the file check_npy_numpy.py expects */
        otl_tensor_free(t);
        int64_t dd[3] = {2, 3, 4};
        t = otl_tensor_new("t", OTL_DTYPE_INT32, 3, dd);
        fill_pattern(t);
        CHECK(otl_npy_save(t, path_in(g_out, "c_i4.npy"), &err) == OTL_OK, "%s", err.msg);
        otl_tensor_free(t);
    }
    /* refusals */
    int64_t d2[2] = {2, 2};
    otl_tensor *t = otl_tensor_new("strs", OTL_DTYPE_STRING, 1, d2);
    otl_error err = {0};
    CHECK(otl_npy_save(t, path_in(g_out, "x_str.npy"), &err) == OTL_ERR_UNSUPPORTED &&
              strstr(err.msg, "strs") && strstr(err.msg, "x_str.npy"),
          "string tensor: %s", err.msg);
    otl_tensor_free(t);
    t = otl_tensor_new("bf", OTL_DTYPE_BFLOAT16, 2, d2);
    t->nbytes = 8;
    t->data = calloc(1, 8);
    otl_error_clear(&err);
    CHECK(otl_npy_save(t, path_in(g_out, "x_bf16.npy"), &err) == OTL_ERR_UNSUPPORTED,
          "bfloat16: %s", err.msg);
    otl_tensor_free(t);
    t = otl_tensor_new("short", OTL_DTYPE_FLOAT, 2, d2);
    t->nbytes = 12;
    t->data = calloc(1, 12);
    otl_error_clear(&err);
    CHECK(otl_npy_save(t, path_in(g_out, "x_short.npy"), &err) != OTL_OK &&
              strstr(err.msg, "short"), "inconsistent nbytes: %s", err.msg);
    otl_error_clear(&err);
    t->nbytes = 16;
    free(t->data);
    t->data = calloc(1, 16);
    CHECK(otl_npy_save(t, path_in(g_out, "no/such/dir/x.npy"), &err) == OTL_ERR_IO &&
              strstr(err.msg, "no/such/dir/x.npy"), "missing directory: %s", err.msg);
    otl_tensor_free(t);
    struct stat st;
    CHECK(stat(path_in(g_out, "x_str.npy"), &st) != 0 && stat(path_in(g_out, "x_short.npy"), &st) != 0,
          "a refused save left a file behind");
    CHECK(count_temp_files(g_out) == 0, "temporary files left in %s", g_out);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DATADIR OUTDIR\n", argv[0]);
        return 2;
    }
    g_data = argv[1];
    g_out = argv[2];
    if (mkdir(g_out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create: %s\n", g_out, strerror(errno));
        return 2;
    }
    test_valid();
    test_special();
    test_bad();
    test_npz();
    test_save();
    printf("test_npy: %d checks, %d failures\n", n_checks, n_failures);
    return n_failures ? 1 : 0;
}
