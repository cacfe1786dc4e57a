/* quant.c - linear quantization: QuantizeLinear and DequantizeLinear (opsets 10-18: per tensor,
 * per axis from opset 13; uint8/int8, int32 input for DequantizeLinear), DynamicQuantizeLinear
 * (opset 11), MatMulInteger and QLinearMatMul (opset 10). Rounding is half to even and results
 * saturate, as the spec says; float arithmetic in float32 as ONNX Runtime's kernels do. The
 * integer products subtract the zero points into int16 and accumulate in int32 (exact for
 * K < 33025); MatMulInteger with a constant 2-D int8 B of zero point 0 (the weights of
 * `export --quantize int8-dynamic`) runs on oneDNN's int8 matmul instead (OTL_NO_DNNL_QMM=1:
 * the C kernel). Not differentiable (quantized inference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/nn_common.h"

static const int int8s[] = {OTL_DTYPE_UINT8, OTL_DTYPE_INT8, 0};
static const int f32[] = {OTL_DTYPE_FLOAT, 0};

/* ---------------------------------------------------------------- Quantize / Dequantize */

#define QDQ_CHUNK 16384

typedef struct qdq_state {
    int64_t outer, axis_n, inner;      /* x viewed as (outer, axis_n, inner); per tensor: axis_n 1 and
                                          rows of QDQ_CHUNK elements */
    float scale;                       /* DynamicQuantizeLinear: computed per run */
} qdq_state;

/* Scale (input 1) and zero point (input 2) of QuantizeLinear/DequantizeLinear: scalars, or 1-D
 * tensors along `axis` (opset 13). Sets the (outer, axis_n, inner) view of x. */
static otl_status qdq_params(otl_kctx *k, qdq_state *s, const int *scale_types)
{
    otl_status st;
    const otl_rt *x = k->in[0];
    if ((st = otl_check_in(k, 1, scale_types)))
        return st;
    const otl_rt *sc = k->in[1], *zp = otl_has_in(k, 2) ? k->in[2] : NULL;
    /* per tensor: chunks of QDQ_CHUNK elements (the last one shorter) */
    s->axis_n = 1, s->inner = QDQ_CHUNK, s->outer = (x->numel + QDQ_CHUNK - 1) / QDQ_CHUNK;
    int per_axis = sc->numel != 1;
    if (per_axis) {
        if (k->opset < 13)
            return otl_kfail(k, OTL_ERR_INPUT, "scale '%s' must be a scalar below opset 13 (has %lld values)",
                             sc->name, (long long)sc->numel);
        int64_t axis;
        int ax;
        if ((st = otl_attr_int(k, "axis", 1, &axis)) || (st = otl_axis(k, axis, x->rank, &ax)))
            return st;
        if (sc->rank != 1 || sc->numel != x->dims[ax])
            return otl_kfail(k, OTL_ERR_INPUT, "scale '%s' must be a scalar or have %lld values (axis %d of '%s')",
                             sc->name, (long long)x->dims[ax], ax, x->name);
        s->axis_n = x->dims[ax];
        s->outer = 1;
        s->inner = 1;
        for (int i = 0; i < ax; i++)
            s->outer *= x->dims[i];
        for (int i = ax + 1; i < x->rank; i++)
            s->inner *= x->dims[i];
    }
    if (zp) {
        if (zp->numel != sc->numel)
            return otl_kfail(k, OTL_ERR_INPUT, "zero point '%s' must have the shape of scale '%s'", zp->name, sc->name);
    }
    return OTL_OK;
}

static otl_status quantize_infer(otl_kctx *k)
{
    static const int xt[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_INT32, 0};
    otl_status st;
    qdq_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = otl_check_in(k, 0, xt)) || (st = qdq_params(k, s, f32)))
        return st;
    int dt = OTL_DTYPE_UINT8;
    if (otl_has_in(k, 2)) {
        if ((st = otl_check_in(k, 2, int8s)))
            return st;
        dt = k->in[2]->dtype;
    }
    return otl_rt_set(k, k->out[0], dt, k->in[0]->rank, k->in[0]->dims);
}

/* saturate(round_half_even(v) + zp) over [lo, hi] (NaN gives the zero point). Rounding by the
 * 1.5 * 2^23 trick (exact for |v| <= 2^22 in the default rounding mode, as nearbyintf; larger
 * values saturate anyway): inlined and vectorizable, unlike the libm call. */
#if defined(__GNUC__) && !defined(__clang__)
#define QUANT_VEC __attribute__((optimize("no-trapping-math"))) /* if-conversion of the clamps */
#else
#define QUANT_VEC
#endif

static inline QUANT_VEC int32_t round_sat(float v, int32_t zp, int32_t lo, int32_t hi)
{
    v = v == v ? v : 0.0f;
    v = v < -4e6f ? -4e6f : v;
    v = v > 4e6f ? 4e6f : v;
    float r = (v + 12582912.0f) - 12582912.0f + (float)zp;
    r = r < (float)lo ? (float)lo : r;
    r = r > (float)hi ? (float)hi : r;
    return (int32_t)r;
}

/* y = saturate(round_half_even(x / scale) + zp): float32 like ONNX Runtime. */
static inline QUANT_VEC int32_t quantize1(float x, float scale, int32_t zp, int32_t lo, int32_t hi)
{
    return round_sat(x / scale, zp, lo, hi);
}

static QUANT_VEC otl_status quantize_forward(otl_kctx *k)
{
    const qdq_state *s = k->state;
    const otl_rt *x = k->in[0], *sc = k->in[1], *zp = otl_has_in(k, 2) ? k->in[2] : NULL;
    otl_rt *y = k->out[0];
    int u8 = y->dtype == OTL_DTYPE_UINT8;
    int32_t lo = u8 ? 0 : -128, hi = u8 ? 255 : 127;
    int64_t rows = s->outer * s->axis_n;
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (int64_t r = 0; r < rows; r++) {
        int64_t a = r % s->axis_n;
        float scale = ((const float *)sc->data)[a];
        int32_t z = zp ? (int32_t)otl_get_i(zp->data, zp->dtype, a) : 0;
        int64_t o = r * s->inner, n = x->numel - o < s->inner ? x->numel - o : s->inner;
        if (x->dtype == OTL_DTYPE_FLOAT) {
            const float *xp = (const float *)x->data + o;
            if (u8) {
                uint8_t *yp = (uint8_t *)y->data + o;
                #pragma omp simd
                for (int64_t i = 0; i < n; i++)
                    yp[i] = (uint8_t)quantize1(xp[i], scale, z, lo, hi);
            } else {
                int8_t *yp = (int8_t *)y->data + o;
                #pragma omp simd
                for (int64_t i = 0; i < n; i++)
                    yp[i] = (int8_t)quantize1(xp[i], scale, z, lo, hi);
            }
        } else {
            const int32_t *xp = (const int32_t *)x->data + o;
            for (int64_t i = 0; i < n; i++)
                otl_set_i(y->data, y->dtype, o + i, quantize1((float)xp[i], scale, z, lo, hi));
        }
    }
    return OTL_OK;
}

static otl_status dequantize_infer(otl_kctx *k)
{
    static const int xt[] = {OTL_DTYPE_UINT8, OTL_DTYPE_INT8, OTL_DTYPE_INT32, 0};
    otl_status st;
    qdq_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    if ((st = otl_check_in(k, 0, xt)) || (st = qdq_params(k, s, f32)))
        return st;
    if (otl_has_in(k, 2) && k->in[2]->dtype != k->in[0]->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "zero point '%s' (%s) must have the dtype of x '%s' (%s)", k->in[2]->name,
                         otl_dtype_name(k->in[2]->dtype), k->in[0]->name, otl_dtype_name(k->in[0]->dtype));
    return otl_rt_set(k, k->out[0], OTL_DTYPE_FLOAT, k->in[0]->rank, k->in[0]->dims);
}

static otl_status dequantize_forward(otl_kctx *k)
{
    const qdq_state *s = k->state;
    const otl_rt *x = k->in[0], *sc = k->in[1], *zp = otl_has_in(k, 2) ? k->in[2] : NULL;
    if (x->dtype == OTL_DTYPE_INT32 && zp) /* int32: the zero point must be 0 */
        for (int64_t i = 0; i < zp->numel; i++)
            if (((const int32_t *)zp->data)[i] != 0)
                return otl_kfail(k, OTL_ERR_INPUT, "zero point '%s' of int32 x must be 0", zp->name);
    float *y = k->out[0]->data;
    int64_t rows = s->outer * s->axis_n;
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (int64_t r = 0; r < rows; r++) {
        int64_t a = r % s->axis_n, o = r * s->inner, n = x->numel - o < s->inner ? x->numel - o : s->inner;
        float scale = ((const float *)sc->data)[a];
        int32_t z = zp ? (int32_t)otl_get_i(zp->data, zp->dtype, a) : 0;
        float *yp = y + o;
        switch (x->dtype) {
        case OTL_DTYPE_UINT8: {
            const uint8_t *xp = (const uint8_t *)x->data + o;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yp[i] = (float)((int32_t)xp[i] - z) * scale;
            break;
        }
        case OTL_DTYPE_INT8: {
            const int8_t *xp = (const int8_t *)x->data + o;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yp[i] = (float)((int32_t)xp[i] - z) * scale;
            break;
        }
        default: {
            const int32_t *xp = (const int32_t *)x->data + o;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                yp[i] = (float)xp[i] * scale;
        }
        }
    }
    return OTL_OK;
}

const otl_op otl_op_QuantizeLinear = {
    .op_type = "QuantizeLinear", .domain = "", .since = 10, .until = 18,
    .infer = quantize_infer, .forward = quantize_forward,
};

const otl_op otl_op_DequantizeLinear = {
    .op_type = "DequantizeLinear", .domain = "", .since = 10, .until = 18,
    .infer = dequantize_infer, .forward = dequantize_forward,
};

/* ---------------------------------------------------------------- DynamicQuantizeLinear */

static otl_status dynq_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, f32)))
        return st;
    const otl_rt *x = k->in[0];
    if ((st = otl_rt_set(k, k->out[0], OTL_DTYPE_UINT8, x->rank, x->dims)))
        return st;
    if (otl_has_out(k, 1) && (st = otl_rt_set(k, k->out[1], OTL_DTYPE_FLOAT, 0, NULL)))
        return st;
    if (otl_has_out(k, 2) && (st = otl_rt_set(k, k->out[2], OTL_DTYPE_UINT8, 0, NULL)))
        return st;
    return OTL_OK;
}

/* scale = (max(x, 0) - min(x, 0)) / 255 (1 when x is all zeros, as ONNX Runtime), zero point =
 * saturate(round(-min / scale)), y = saturate(round(x / scale) + zero point) in uint8. */
static otl_status dynq_forward(otl_kctx *k)
{
    const otl_rt *x = k->in[0];
    const float *xp = x->data;
    float mn = 0, mx = 0;
    int nan = 0; /* NaN never compares below mn or above mx: tracked apart */
    for (int64_t i = 0; i < x->numel; i++) {
        if (xp[i] < mn)
            mn = xp[i];
        if (xp[i] > mx)
            mx = xp[i];
        nan |= xp[i] != xp[i];
    }
    if (nan || isinf(mn) || isinf(mx))
        return otl_kfail(k, OTL_ERR_INPUT, "input '%s' holds NaN or infinite values", x->name);
    float scale = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    float zf = nearbyintf(0.0f - mn / scale);
    int32_t zp = zf < 0 ? 0 : zf > 255 ? 255 : (int32_t)zf;
    uint8_t *y = k->out[0]->data;
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (int64_t i = 0; i < x->numel; i++)
        y[i] = (uint8_t)quantize1(xp[i], scale, zp, 0, 255);
    if (otl_has_out(k, 1))
        *(float *)k->out[1]->data = scale;
    if (otl_has_out(k, 2))
        *(uint8_t *)k->out[2]->data = (uint8_t)zp;
    return OTL_OK;
}

const otl_op otl_op_DynamicQuantizeLinear = {
    .op_type = "DynamicQuantizeLinear", .domain = "", .since = 11, .until = 22,
    .infer = dynq_infer, .forward = dynq_forward,
};

/* ---------------------------------------------------------------- MatMulInteger, QLinearMatMul */

typedef struct qmm_state {
    int64_t M, N, K;
    int nb;                            /* batch rank of Y */
    int64_t bdims[OTL_MAX_RANK];       /* (nb) batch dims of Y */
    int64_t bsa[OTL_MAX_RANK];         /* (nb) A's batch strides in elements, 0 where broadcast */
    int64_t bsb[OTL_MAX_RANK];         /* (nb) B's batch strides, 0 where broadcast */
    int64_t batch;                     /* prod(bdims) */
    int64_t nbat_b;                    /* number of distinct B matrices */
    int qlinear;
    int ia_zp, ib, ib_zp;              /* input indices of a_zero_point, B, b_zero_point */
    int16_t *bt;                       /* (nbat_b, N, K) B - b_zero_point transposed, packed once when B is const */
    int16_t *bt_run;                   /* per-run packing when B is not const */
    /* oneDNN path (MatMulInteger, 2-D constant int8 B with zero point 0: dynamic quantization's
       weights): one (rows, K) x (K, N) u8/s8 x s8 -> s32 matmul, A's zero point at run time */
    dnnl_primitive_t prim;
    dnnl_memory_t ma, mb, my, mz;
    int32_t zp;
} qmm_state;

static void qmm_release(otl_kctx *k)
{
    qmm_state *s = k->state;
    if (s) {
        free(s->bt);
        free(s->bt_run);
        if (s->prim)
            dnnl_primitive_destroy(s->prim);
        dnnl_memory_t mems[] = {s->ma, s->mb, s->my, s->mz};
        for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
            if (mems[i])
                dnnl_memory_destroy(mems[i]);
    }
}

static otl_status md2(otl_kctx *k, dnnl_memory_desc_t *md, int64_t r, int64_t c, dnnl_data_type_t dt,
                      dnnl_format_tag_t tag)
{
    dnnl_dims_t d = {r, c};
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, 2, d, dt, tag), "matmul memory descriptor");
}

/* The oneDNN path when it applies (else s->prim stays NULL and the C kernel runs). */
static otl_status qmm_prepare(otl_kctx *k)
{
    qmm_state *s = k->state;
    const otl_rt *a = k->in[0], *b = k->in[s->ib];
    const otl_rt *bz = otl_has_in(k, s->ib_zp) ? k->in[s->ib_zp] : NULL;
    const otl_rt *az = otl_has_in(k, s->ia_zp) ? k->in[s->ia_zp] : NULL;
    if (s->qlinear || getenv("OTL_NO_DNNL_QMM") || b->rank != 2 || !b->is_const || b->dtype != OTL_DTYPE_INT8 ||
        (az && az->numel != 1) || s->batch * s->M == 0 || s->N == 0 || s->K == 0)
        return OTL_OK;
    if (bz) {
        if (!bz->is_const)
            return OTL_OK;
        for (int64_t i = 0; i < bz->numel; i++)
            if (((const int8_t *)bz->data)[i] != 0)
                return OTL_OK;
    }
    int64_t rows = s->batch * s->M; /* B is 2-D: A's batches are contiguous rows */
    dnnl_memory_desc_t mda, mdb, mdy;
    otl_status st;
    if ((st = md2(k, &mda, rows, s->K, a->dtype == OTL_DTYPE_UINT8 ? dnnl_u8 : dnnl_s8, dnnl_ab)) ||
        (st = md2(k, &mdb, s->K, s->N, dnnl_s8, dnnl_ab)) ||
        (st = md2(k, &mdy, rows, s->N, dnnl_s32, dnnl_ab)))
        return st;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t d;
    const int32_t rt = DNNL_RUNTIME_S32_VAL;
    /* B stays in its plain layout: oneDNN 2.6 traps (SIGFPE) reordering s8 weights into the
       packed layout it asks for with a source zero point */
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             (!az || dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &rt) == dnnl_success) &&
             dnnl_matmul_desc_init(&d, &mda, &mdb, NULL, &mdy) == dnnl_success &&
             otl_pd_create(&pd, &d, attr, k->eng->eng, NULL) == dnnl_success;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (!ok) { /* no int8 matmul here: the C kernel */
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        return OTL_OK;
    }
    dnnl_memory_desc_t zmd;
    dnnl_dims_t one = {1};
    st = otl_dnnl_primitive(k, pd, &s->prim, "int8 matmul");
    dnnl_primitive_desc_destroy(pd);
    free(s->bt); /* the C kernel's copy is not needed */
    s->bt = NULL;
    if (!st && !(st = otl_dnnl_memory(k, &mda, NULL, &s->ma)) && !(st = otl_dnnl_memory(k, &mdb, b->data, &s->mb)) &&
        !(st = otl_dnnl_memory(k, &mdy, NULL, &s->my)) && az &&
        !(st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&zmd, 1, one, dnnl_s32, dnnl_a), "zero point")))
        st = otl_dnnl_memory(k, &zmd, &s->zp, &s->mz);
    return st;
}

/* A zero point or scale: scalar, or one value per row of A (per_row = M) / column of B (N). */
static otl_status qmm_param(otl_kctx *k, int i, const int *dtypes, int64_t per, const char *what, int required)
{
    if (!otl_has_in(k, i)) {
        if (required)
            return otl_kfail(k, OTL_ERR_INPUT, "required input %d (%s) is missing", i, what);
        return OTL_OK;
    }
    otl_status st = otl_check_in(k, i, dtypes);
    if (st)
        return st;
    const otl_rt *v = k->in[i];
    if (v->numel != 1 && !(per > 0 && v->rank == 1 && v->numel == per))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%s '%s' must be a scalar or a 1-D tensor of %lld values", what,
                         v->name, (long long)per);
    return OTL_OK;
}

/* B - b_zero_point transposed into (nbat_b, N, K) int16. */
static void qmm_pack_b(const qmm_state *s, const otl_kctx *k, int16_t *bt)
{
    const otl_rt *b = k->in[s->ib], *zp = otl_has_in(k, s->ib_zp) ? k->in[s->ib_zp] : NULL;
    int64_t mat = s->K * s->N;
    for (int64_t bb = 0; bb < s->nbat_b; bb++)
        for (int64_t n = 0; n < s->N; n++) {
            int32_t z = zp ? (int32_t)otl_get_i(zp->data, zp->dtype, zp->numel == 1 ? 0 : n) : 0;
            int16_t *d = bt + (bb * s->N + n) * s->K;
            if (b->dtype == OTL_DTYPE_UINT8) {
                const uint8_t *src = (const uint8_t *)b->data + bb * mat + n;
                for (int64_t kk = 0; kk < s->K; kk++)
                    d[kk] = (int16_t)((int32_t)src[kk * s->N] - z);
            } else {
                const int8_t *src = (const int8_t *)b->data + bb * mat + n;
                for (int64_t kk = 0; kk < s->K; kk++)
                    d[kk] = (int16_t)((int32_t)src[kk * s->N] - z);
            }
        }
}

static otl_status qmm_infer(otl_kctx *k)
{
    otl_status st;
    qmm_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->qlinear = strcmp(k->node->op_type, "QLinearMatMul") == 0;
    s->ib = s->qlinear ? 3 : 1;
    s->ia_zp = 2;
    s->ib_zp = s->qlinear ? 5 : 3;
    if ((st = otl_check_in(k, 0, int8s)) || (st = otl_check_in(k, s->ib, int8s)))
        return st;
    const otl_rt *a = k->in[0], *b = k->in[s->ib];
    int ra = a->rank, rb = b->rank;
    if (ra < 1 || rb < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "operands must have rank >= 1, got ranks %d and %d", ra, rb);
    s->M = ra == 1 ? 1 : a->dims[ra - 2];
    s->K = a->dims[ra - 1];
    int64_t kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    s->N = rb == 1 ? 1 : b->dims[rb - 1];
    if (kb != s->K)
        return otl_kfail(k, OTL_ERR_INPUT, "inner dimensions differ: A '%s' has K=%lld, B '%s' has K=%lld", a->name,
                         (long long)s->K, b->name, (long long)kb);
    if (s->K >= 33025)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "inner dimension %lld is too large for int32 accumulation",
                         (long long)s->K);
    int nba = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    s->nb = nba > nbb ? nba : nbb;
    s->batch = 1;
    s->nbat_b = 1;
    int64_t adb[OTL_MAX_RANK], bdb[OTL_MAX_RANK];
    for (int i = 0; i < s->nb; i++) {
        int ia = i - (s->nb - nba), ibb = i - (s->nb - nbb);
        adb[i] = ia >= 0 ? a->dims[ia] : 1;
        bdb[i] = ibb >= 0 ? b->dims[ibb] : 1;
        if (adb[i] != bdb[i] && adb[i] != 1 && bdb[i] != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "batch dimensions do not broadcast: %lld and %lld (axis %d of the output)",
                             (long long)adb[i], (long long)bdb[i], i);
        s->bdims[i] = adb[i] == 1 ? bdb[i] : adb[i];
        s->batch *= s->bdims[i];
        s->nbat_b *= bdb[i];
    }
    int64_t sta = s->M * s->K, stb = 1; /* B strides counted in matrices (index into the packed copy) */
    for (int i = s->nb - 1; i >= 0; i--) {
        s->bsa[i] = adb[i] == 1 ? 0 : sta;
        s->bsb[i] = bdb[i] == 1 ? 0 : stb;
        sta *= adb[i];
        stb *= bdb[i];
    }
    int out_dt = OTL_DTYPE_INT32;
    if (s->qlinear) {
        if ((st = qmm_param(k, 1, f32, s->M, "a_scale", 1)) || (st = qmm_param(k, 2, int8s, s->M, "a_zero_point", 1)) ||
            (st = qmm_param(k, 4, f32, s->N, "b_scale", 1)) || (st = qmm_param(k, 5, int8s, s->N, "b_zero_point", 1)) ||
            (st = qmm_param(k, 6, f32, 0, "y_scale", 1)) || (st = qmm_param(k, 7, int8s, 0, "y_zero_point", 1)))
            return st;
        out_dt = k->in[7]->dtype;
    } else {
        if ((st = qmm_param(k, 2, int8s, s->M, "a_zero_point", 0)) ||
            (st = qmm_param(k, 3, int8s, s->N, "b_zero_point", 0)))
            return st;
    }
    if ((otl_has_in(k, s->ia_zp) && k->in[s->ia_zp]->dtype != a->dtype) ||
        (otl_has_in(k, s->ib_zp) && k->in[s->ib_zp]->dtype != b->dtype))
        return otl_kfail(k, OTL_ERR_INPUT, "zero points must have the dtype of their tensors");
    /* a constant B (a weight) is packed once */
    int zp_const = !otl_has_in(k, s->ib_zp) || k->in[s->ib_zp]->is_const;
    if (b->is_const && zp_const) {
        size_t n = (size_t)(s->nbat_b * s->N * s->K);
        if (!(s->bt = malloc((n ? n : 1) * sizeof *s->bt)))
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory packing B '%s'", b->name);
        qmm_pack_b(s, k, s->bt);
    }
    int64_t yd[OTL_MAX_RANK];
    int ry = 0;
    for (int i = 0; i < s->nb; i++)
        yd[ry++] = s->bdims[i];
    if (ra > 1)
        yd[ry++] = s->M;
    if (rb > 1)
        yd[ry++] = s->N;
    return otl_rt_set(k, k->out[0], out_dt, ry, yd);
}

static otl_status qmm_forward(otl_kctx *k)
{
    qmm_state *s = k->state;
    const otl_rt *a = k->in[0], *y = k->out[0];
    const otl_rt *azp = otl_has_in(k, s->ia_zp) ? k->in[s->ia_zp] : NULL;
    if (s->prim) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->ma}, {DNNL_ARG_WEIGHTS, s->mb}, {DNNL_ARG_DST, s->my}};
        int n = 3;
        dnnl_memory_set_data_handle(s->ma, a->data);
        dnnl_memory_set_data_handle(s->mb, k->in[s->ib]->data);
        dnnl_memory_set_data_handle(s->my, y->data);
        if (s->mz) {
            s->zp = (int32_t)otl_get_i(azp->data, azp->dtype, 0);
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, s->mz};
        }
        return otl_dnnl_run(k, s->prim, n, args);
    }
    const int16_t *bt = s->bt;
    if (!bt) {
        size_t n = (size_t)(s->nbat_b * s->N * s->K);
        free(s->bt_run);
        if (!(s->bt_run = malloc((n ? n : 1) * sizeof *s->bt_run)))
            return otl_kfail(k, OTL_ERR_NOMEM, "out of memory packing B");
        qmm_pack_b(s, k, s->bt_run);
        bt = s->bt_run;
    }
    /* QLinearMatMul requantization: multiplier a_scale * b_scale / y_scale in float32 */
    float ys = 1;
    int32_t yz = 0, lo = 0, hi = 255;
    if (s->qlinear) {
        ys = *(const float *)k->in[6]->data;
        yz = (int32_t)otl_get_i(k->in[7]->data, k->in[7]->dtype, 0);
        if (y->dtype == OTL_DTYPE_INT8)
            lo = -128, hi = 127;
    }
    int64_t rows = s->batch * s->M;
    int err = 0;
#pragma omp parallel if (rows * s->N * s->K > 65536)
    {
        int16_t *ar = malloc((size_t)(s->K ? s->K : 1) * sizeof *ar);
        if (!ar) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!ar)
                continue;
            int64_t bi = r / s->M, m = r % s->M, ao = 0, bo = 0;
            for (int d = s->nb - 1; d >= 0; d--) {
                int64_t i = bi % s->bdims[d];
                bi /= s->bdims[d];
                ao += i * s->bsa[d];
                bo += i * s->bsb[d];
            }
            int32_t za = azp ? (int32_t)otl_get_i(azp->data, azp->dtype, azp->numel == 1 ? 0 : m) : 0;
            if (a->dtype == OTL_DTYPE_UINT8) {
                const uint8_t *src = (const uint8_t *)a->data + ao + m * s->K;
                for (int64_t kk = 0; kk < s->K; kk++)
                    ar[kk] = (int16_t)((int32_t)src[kk] - za);
            } else {
                const int8_t *src = (const int8_t *)a->data + ao + m * s->K;
                for (int64_t kk = 0; kk < s->K; kk++)
                    ar[kk] = (int16_t)((int32_t)src[kk] - za);
            }
            const int16_t *bm = bt + bo * s->N * s->K;
            float as = s->qlinear ? ((const float *)k->in[1]->data)[k->in[1]->numel == 1 ? 0 : m] : 1;
            for (int64_t n = 0; n < s->N; n++) {
                const int16_t *bc = bm + n * s->K;
                int32_t acc = 0;
#pragma omp simd reduction(+ : acc)
                for (int64_t kk = 0; kk < s->K; kk++)
                    acc += (int32_t)ar[kk] * (int32_t)bc[kk];
                int64_t e = r * s->N + n;
                if (!s->qlinear) {
                    ((int32_t *)y->data)[e] = acc;
                } else {
                    float bs = ((const float *)k->in[4]->data)[k->in[4]->numel == 1 ? 0 : n];
                    int32_t v = round_sat((float)acc * (as * bs / ys), yz, lo, hi);
                    otl_set_i(y->data, y->dtype, e, v);
                }
            }
        }
        free(ar);
    }
    if (err)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    return OTL_OK;
}

const otl_op otl_op_MatMulInteger = {
    .op_type = "MatMulInteger", .domain = "", .since = 10, .until = 22,
    .infer = qmm_infer, .prepare = qmm_prepare, .forward = qmm_forward, .release = qmm_release,
};

const otl_op otl_op_QLinearMatMul = {
    .op_type = "QLinearMatMul", .domain = "", .since = 10, .until = 20,
    .infer = qmm_infer, .forward = qmm_forward, .release = qmm_release,
};
