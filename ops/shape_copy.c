/* shape_copy.c - strided N-d copy by element size (see shape_copy.h), shared by the data-movement
 * ops, and the plumbing of their backward kernels. Not an op itself: no gradient. */
#include <omp.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

#ifndef TILE
#define TILE 32
#endif
#define PAR_BYTES ((int64_t)1 << 17)

void otl_strides_c(int rank, const int64_t *dims, int64_t *strides)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i] ? dims[i] : 1;
    }
}

otl_status otl_movable(otl_kctx *k, int i, size_t *esz)
{
    if (!otl_has_in(k, i))
        return otl_kfail(k, OTL_ERR_INPUT, "required input %d is missing", i);
    int s2 = otl_dtype_size2(k->in[i]->dtype);
    if (s2 < 2 || s2 % 2)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s': dtype %s is not supported", i, k->in[i]->name,
                         otl_dtype_name(k->in[i]->dtype));
    *esz = (size_t)s2 / 2;
    return OTL_OK;
}

void otl_fill_elems(void *dst, const void *value, int64_t n, size_t esz)
{
    char *d = dst;
    if (n <= 0)
        return;
    int zero = 1;
    for (size_t b = 0; b < esz; b++)
        zero &= ((const char *)value)[b] == 0;
    if (zero) {
        memset(d, 0, (size_t)n * esz);
        return;
    }
    /* doubling memcpy */
    memcpy(d, value, esz);
    int64_t done = 1;
    while (done < n) {
        int64_t c = done < n - done ? done : n - done;
        memcpy(d + done * esz, d, (size_t)c * esz);
        done += c;
    }
}

const char *otl_gzeros_like(otl_gctx *c, const char *value)
{
    const char *in[1] = {value};
    const char *shape = otl_gemit1(c, "", "Shape", 1, in, NULL);
    return shape ? otl_gemit1(c, "", "ConstantOfShape", 1, &shape, NULL) : NULL;
}

void otl_zero_par(void *dst, size_t nbytes)
{
    if (nbytes < ((size_t)1 << 20) || omp_in_parallel()) {
        memset(dst, 0, nbytes);
        return;
    }
    int nt = omp_get_max_threads();
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < nt; c++) {
        size_t a = nbytes * (size_t)c / (size_t)nt, b = nbytes * (size_t)(c + 1) / (size_t)nt;
        memset((char *)dst + a, 0, b - a);
    }
}

otl_status otl_infer_forward(otl_kctx *k, otl_status (*infer)(otl_kctx *), int shape_in, int first, int n,
                             otl_rt *x, otl_rt *y)
{
    otl_status st;
    int64_t opset, dims[OTL_MAX_RANK];
    int r;
    if ((st = otl_check_in(k, 0, NULL)) || (st = otl_attr_int(k, "fwd_opset", -1, &opset)))
        return st;
    if (opset < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "attribute 'fwd_opset' (the forward node's opset) is required");
    if ((st = otl_const_ints(k, shape_in, dims, OTL_MAX_RANK, &r)))
        return st;
    const otl_rt *dy = k->in[0];
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    x->name = "X";
    y->name = "Y";
    x->alias_of = y->alias_of = -1;
    if ((st = otl_rt_set(k, x, dy->dtype, r, dims)))
        return st;
    otl_rt *in[1 + 8] = {x};
    otl_rt *out[1] = {y};
    if (n > 8)
        return otl_kfail(k, OTL_ERR_INTERNAL, "too many forward inputs");
    for (int i = 0; i < n; i++)
        in[1 + i] = otl_has_in(k, first + i) ? k->in[first + i] : NULL;
    otl_kctx f = *k;
    f.opset = opset;
    f.n_in = 1 + n;
    f.in = in;
    f.n_out = 1;
    f.out = out;
    f.state = NULL;
    f.alias = 0;
    st = infer(&f);
    k->state = f.state;
    if (st)
        return st;
    if (!y->shape_known || y->rank != dy->rank || memcmp(y->dims, dy->dims, (size_t)dy->rank * sizeof *dy->dims))
        return otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have the forward output's shape", dy->name);
    return OTL_OK;
}

/* one element of a fixed size, through memcpy (no alignment assumptions) */
#define MOVE_LOOP(T, n, d, dsi, s, ssi)                                                            \
    do {                                                                                           \
        for (int64_t i_ = 0; i_ < (n); i_++) {                                                     \
            T v_;                                                                                  \
            memcpy(&v_, (s) + i_ * (ssi) * (int64_t)sizeof(T), sizeof(T));                         \
            memcpy((d) + i_ * (dsi) * (int64_t)sizeof(T), &v_, sizeof(T));                         \
        }                                                                                          \
    } while (0)

typedef struct pair16 {
    uint64_t a, b;
} pair16;

static void row_copy(char *d, int64_t dsi, const char *s, int64_t ssi, int64_t n, size_t esz)
{
    if (dsi == 1 && ssi == 1) {
        memcpy(d, s, (size_t)n * esz);
        return;
    }
    switch (esz) {
    case 1: MOVE_LOOP(uint8_t, n, d, dsi, s, ssi); break;
    case 2: MOVE_LOOP(uint16_t, n, d, dsi, s, ssi); break;
    case 4: MOVE_LOOP(uint32_t, n, d, dsi, s, ssi); break;
    case 8: MOVE_LOOP(uint64_t, n, d, dsi, s, ssi); break;
    case 16: MOVE_LOOP(pair16, n, d, dsi, s, ssi); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(d + i * dsi * (int64_t)esz, s + i * ssi * (int64_t)esz, esz);
    }
}

/* A normalized copy problem: no size-1 axes, contiguous runs merged. */
typedef struct cprob {
    int r;
    int64_t d[OTL_COPY_MAX_RANK], ds[OTL_COPY_MAX_RANK], ss[OTL_COPY_MAX_RANK];
} cprob;

/* Offsets of the outer index `o` over axes [0, na) skipping axis `skip` (or -1). */
static void outer_offsets(const cprob *p, int na, int skip, int64_t o, int64_t *idx, int64_t *doff, int64_t *soff)
{
    *doff = *soff = 0;
    for (int a = na - 1; a >= 0; a--) {
        if (a == skip) {
            idx[a] = 0;
            continue;
        }
        idx[a] = o % p->d[a];
        o /= p->d[a];
        *doff += idx[a] * p->ds[a];
        *soff += idx[a] * p->ss[a];
    }
}

/* rows [o0, o1) of the outer axes 0..r-2, each a row along axis r-1 */
static void copy_rows(char *dst, const char *src, const cprob *p, size_t esz, int64_t o0, int64_t o1)
{
    int r = p->r, L = r - 1;
    int64_t idx[OTL_COPY_MAX_RANK], doff, soff;
    outer_offsets(p, L, -1, o0, idx, &doff, &soff);
    int64_t e = (int64_t)esz;
    for (int64_t o = o0; o < o1; o++) {
        row_copy(dst + doff * e, p->ds[L], src + soff * e, p->ss[L], p->d[L], esz);
        for (int a = L - 1; a >= 0; a--) {
            idx[a]++;
            doff += p->ds[a];
            soff += p->ss[a];
            if (idx[a] < p->d[a])
                break;
            doff -= p->ds[a] * p->d[a];
            soff -= p->ss[a] * p->d[a];
            idx[a] = 0;
        }
    }
}

#define TILE_LOOP(T)                                                                               \
    do {                                                                                           \
        for (int64_t i = t0; i < t1; i++)                                                          \
            for (int64_t j = l0; j < l1; j++) {                                                    \
                T v_;                                                                              \
                memcpy(&v_, s + (i + j * ssl) * (int64_t)sizeof(T), sizeof(T));                    \
                memcpy(d + (i * dst_t + j) * (int64_t)sizeof(T), &v_, sizeof(T));                  \
            }                                                                                      \
    } while (0)

#if defined(__SSE2__)
/* 4-byte elements in 4x4 register transposes (the float32 hot path of attention and NCHW<->NHWC). */
static void copy_tile4(char *d, const char *s, int64_t dst_t, int64_t ssl, int64_t t0, int64_t t1, int64_t l0,
                       int64_t l1)
{
    const float *S = (const float *)s;
    float *D = (float *)d;
    int64_t i = t0;
    for (; i + 4 <= t1; i += 4) {
        int64_t j = l0;
        for (; j + 4 <= l1; j += 4) {
            __m128 r0 = _mm_loadu_ps(S + i + (j + 0) * ssl);
            __m128 r1 = _mm_loadu_ps(S + i + (j + 1) * ssl);
            __m128 r2 = _mm_loadu_ps(S + i + (j + 2) * ssl);
            __m128 r3 = _mm_loadu_ps(S + i + (j + 3) * ssl);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(D + (i + 0) * dst_t + j, r0);
            _mm_storeu_ps(D + (i + 1) * dst_t + j, r1);
            _mm_storeu_ps(D + (i + 2) * dst_t + j, r2);
            _mm_storeu_ps(D + (i + 3) * dst_t + j, r3);
        }
        for (; j < l1; j++)
            for (int64_t ii = i; ii < i + 4; ii++)
                memcpy(d + (ii * dst_t + j) * 4, s + (ii + j * ssl) * 4, 4);
    }
    for (; i < t1; i++)
        for (int64_t j = l0; j < l1; j++)
            memcpy(d + (i * dst_t + j) * 4, s + (i + j * ssl) * 4, 4);
}
#endif

/* Transpose tile: destination contiguous along L, source contiguous along t. */
static void copy_tile(char *d, const char *s, int64_t dst_t, int64_t ssl, int64_t t0, int64_t t1, int64_t l0,
                      int64_t l1, size_t esz)
{
    switch (esz) {
    case 1: TILE_LOOP(uint8_t); break;
    case 2: TILE_LOOP(uint16_t); break;
#if defined(__SSE2__)
    case 4: copy_tile4(d, s, dst_t, ssl, t0, t1, l0, l1); break;
#else
    case 4: TILE_LOOP(uint32_t); break;
#endif
    case 8: TILE_LOOP(uint64_t); break;
    default:
        for (int64_t i = t0; i < t1; i++)
            for (int64_t j = l0; j < l1; j++)
                memcpy(d + (i * dst_t + j) * (int64_t)esz, s + (i + j * ssl) * (int64_t)esz, esz);
    }
}

void otl_copy_strided(void *dst, const int64_t *dst_strides, const void *src, const int64_t *src_strides,
                      int rank, const int64_t *dims, size_t esz)
{
    cprob p;
    p.r = 0;
    int64_t total = 1;
    for (int a = 0; a < rank; a++) {
        if (dims[a] == 0)
            return;
        total *= dims[a];
        if (dims[a] == 1)
            continue;
        if (p.r > 0 && p.ds[p.r - 1] == dst_strides[a] * dims[a] && p.ss[p.r - 1] == src_strides[a] * dims[a]) {
            p.d[p.r - 1] *= dims[a];
            p.ds[p.r - 1] = dst_strides[a];
            p.ss[p.r - 1] = src_strides[a];
            continue;
        }
        p.d[p.r] = dims[a];
        p.ds[p.r] = dst_strides[a];
        p.ss[p.r] = src_strides[a];
        p.r++;
    }
    char *d = dst;
    const char *s = src;
    if (p.r == 0) {
        memcpy(d, s, esz);
        return;
    }
    int par = total * (int64_t)esz >= PAR_BYTES && !omp_in_parallel();
    int L = p.r - 1;
    int t = -1;
    if (p.ds[L] == 1 && p.ss[L] != 1 && p.d[L] >= 4)
        for (int a = 0; a < L; a++)
            if (p.ss[a] == 1 && p.d[a] >= 4)
                t = a;
    if (t >= 0) {
        /* tiled transpose over axes (t, L); units = outer index x tile row */
        int64_t outer = 1;
        for (int a = 0; a < L; a++)
            if (a != t)
                outer *= p.d[a];
        int64_t ntb = (p.d[t] + TILE - 1) / TILE;
        int64_t units = outer * ntb;
        int64_t e = (int64_t)esz;
        #pragma omp parallel for if (par) schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t o = u / ntb, tb = u % ntb;
            int64_t idx[OTL_COPY_MAX_RANK], doff, soff;
            /* decompose o over the axes 0..L-1 without t */
            doff = soff = 0;
            for (int a = L - 1; a >= 0; a--) {
                if (a == t)
                    continue;
                idx[a] = o % p.d[a];
                o /= p.d[a];
                doff += idx[a] * p.ds[a];
                soff += idx[a] * p.ss[a];
            }
            int64_t t0 = tb * TILE, t1 = t0 + TILE < p.d[t] ? t0 + TILE : p.d[t];
            for (int64_t l0 = 0; l0 < p.d[L]; l0 += TILE) {
                int64_t l1 = l0 + TILE < p.d[L] ? l0 + TILE : p.d[L];
                copy_tile(d + doff * e, s + soff * e, p.ds[t], p.ss[L], t0, t1, l0, l1, esz);
            }
        }
        return;
    }
    int64_t rows = total / p.d[L];
    if (!par || rows == 1) {
        if (par && rows == 1 && p.ds[L] == 1 && p.ss[L] == 1) {
            /* one long contiguous run: split it */
            int64_t n = p.d[L];
            int nt = omp_get_max_threads();
            #pragma omp parallel for schedule(static)
            for (int c = 0; c < nt; c++) {
                int64_t a = n * c / nt, b = n * (c + 1) / nt;
                memcpy(d + a * (int64_t)esz, s + a * (int64_t)esz, (size_t)(b - a) * esz);
            }
            return;
        }
        copy_rows(d, s, &p, esz, 0, rows);
        return;
    }
    int nchunks = omp_get_max_threads() * 4;
    if (nchunks > rows)
        nchunks = (int)rows;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < nchunks; c++)
        copy_rows(d, s, &p, esz, rows * c / nchunks, rows * (c + 1) / nchunks);
}
