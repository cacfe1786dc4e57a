/* matmul.c - matrix products: MatMul (NumPy semantics: batched, batch dims broadcast, 1-D
 * operands promoted and their axis dropped) and Gemm (transA/transB, alpha, beta, C broadcast
 * to (M, N)). float32 runs on oneDNN's matmul primitive; double/int32/int64 on a plain C kernel.
 * A constant B (an initializer) of an inference plan is packed once at plan time into oneDNN's
 * preferred layout; training plans may update parameters between runs (as in ops/conv.c).
 * Differentiable inputs: A and B (and C for Gemm). */
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

typedef struct mm_state {
    int64_t M, N, K;
    int nb;                            /* batch rank of Y */
    int64_t bdims[OTL_MAX_RANK];       /* (nb) batch dims of Y */
    int64_t adb[OTL_MAX_RANK];         /* (nb) A's batch dims, left-padded with 1 */
    int64_t bdb[OTL_MAX_RANK];         /* (nb) B's batch dims, left-padded with 1 */
    int64_t bsa[OTL_MAX_RANK];         /* (nb) A's batch strides in elements, 0 where broadcast */
    int64_t bsb[OTL_MAX_RANK];         /* (nb) B's batch strides in elements, 0 where broadcast */
    int64_t batch;                     /* prod(bdims) */
    int64_t sam, sak, sbk, sbn;        /* element strides inside one matrix of A and of B */
    /* Gemm: Y = alpha * A B + beta * C */
    float alpha, beta;
    int has_c;                         /* C present and beta != 0 */
    int64_t cm, cn;                    /* C's shape padded to rank 2: (1|M, 1|N) */
    int64_t scm, scn;                  /* C's strides over (M, N), 0 along broadcast axes */
    /* oneDNN (float32) */
    int use_bias;                      /* C given to oneDNN as bias (alpha == beta == 1, C is (1, N)) */
    int use_sum;                       /* Y prefilled with C, then sum post-op with scale beta */
    dnnl_primitive_t prim;
    dnnl_memory_t ma, mb, mc, my;
    void *packed;                      /* B reordered once into oneDNN's layout (B constant) */
} mm_state;

static const int mm_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};

static otl_status mm_state_new(otl_kctx *k, mm_state **out)
{
    mm_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    s->alpha = 1.0f;
    s->batch = 1;
    k->state = s;
    *out = s;
    return OTL_OK;
}

/* Batch strides from the padded batch dims of a C-order operand whose matrices hold `mat`
 * elements: 0 along broadcast axes (dim 1 where Y's dim is not). */
static void batch_strides(const mm_state *s, const int64_t *db, int64_t mat, int64_t *bs)
{
    int64_t st = mat;
    for (int i = s->nb - 1; i >= 0; i--) {
        bs[i] = db[i] == 1 ? 0 : st;
        st *= db[i];
    }
}

/* ---------------------------------------------------------------- the C kernel */

/* Y[b, m, n] = alpha * sum_k A[b, m, k] B[b, k, n] + beta * C[m, n], any batch broadcast. */
#define MM_GENERIC(NAME, T, ACC)                                                                  \
    static void NAME(T *y, const T *a, const T *b, const T *c, const mm_state *s)                 \
    {                                                                                             \
        int64_t rows = s->batch * s->M;                                                           \
        _Pragma("omp parallel for if (rows * s->N * s->K > 65536)")                               \
        for (int64_t r = 0; r < rows; r++) {                                                      \
            int64_t bi = r / s->M, m = r % s->M, ao = 0, bo = 0;                                   \
            for (int d = s->nb - 1; d >= 0; d--) {                                                \
                int64_t i = bi % s->bdims[d];                                                     \
                bi /= s->bdims[d];                                                                \
                ao += i * s->bsa[d];                                                              \
                bo += i * s->bsb[d];                                                              \
            }                                                                                     \
            const T *ar = a + ao + m * s->sam;                                                    \
            T *yr = y + r * s->N;                                                                 \
            for (int64_t n = 0; n < s->N; n++) {                                                  \
                const T *bc = b + bo + n * s->sbn;                                                \
                ACC acc = 0;                                                                      \
                for (int64_t kk = 0; kk < s->K; kk++)                                             \
                    acc += (ACC)ar[kk * s->sak] * (ACC)bc[kk * s->sbk];                           \
                if (s->alpha != 1.0f)                                                             \
                    acc = (ACC)(acc * s->alpha);                                                  \
                if (c)                                                                            \
                    acc += s->beta == 1.0f ? (ACC)c[m * s->scm + n * s->scn]                      \
                                           : (ACC)(s->beta * c[m * s->scm + n * s->scn]);         \
                yr[n] = (T)acc;                                                                   \
            }                                                                                     \
        }                                                                                         \
    }

MM_GENERIC(mm_f32, float, double)
MM_GENERIC(mm_f64, double, double)
/* integers wrap modulo 2^64 like NumPy's int64 (unsigned arithmetic: no undefined overflow) */
MM_GENERIC(mm_i64, int64_t, uint64_t)
MM_GENERIC(mm_i32, int32_t, uint64_t)

static otl_status mm_generic(otl_kctx *k)
{
    mm_state *s = k->state;
    const void *c = s->has_c ? k->in[2]->data : NULL;
    void *y = k->out[0]->data;
    const void *a = k->in[0]->data, *b = k->in[1]->data;
    switch (k->in[0]->dtype) {
    case OTL_DTYPE_FLOAT: mm_f32(y, a, b, c, s); break;
    case OTL_DTYPE_DOUBLE: mm_f64(y, a, b, c, s); break;
    case OTL_DTYPE_INT64: mm_i64(y, a, b, c, s); break;
    case OTL_DTYPE_INT32: mm_i32(y, a, b, c, s); break;
    default:
        return otl_kfail(k, OTL_ERR_INTERNAL, "dtype %s reached the generic kernel",
                         otl_dtype_name(k->in[0]->dtype));
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- oneDNN (float32) */

static otl_status md_strided(otl_kctx *k, int nd, const int64_t *dims, const int64_t *strides,
                             dnnl_memory_desc_t *md)
{
    dnnl_dims_t d, st;
    for (int i = 0; i < nd; i++) {
        d[i] = dims[i];
        st[i] = strides[i];
    }
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, st), "matmul memory descriptor");
}

/* Reorder constant B (plain layout `from`) once into the primitive's layout `to`: s->packed. */
static otl_status pack_weights(otl_kctx *k, mm_state *s, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to)
{
    size_t n = dnnl_memory_desc_get_size(to);
    if (!(s->packed = malloc(n ? n : 1)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory packing weights (%zu bytes)", n);
    dnnl_memory_t src = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    otl_status st = otl_dnnl_memory(k, from, k->in[1]->data, &src);
    if (!st)
        st = otl_dnnl_memory(k, to, s->packed, &s->mb);
    if (!st)
        st = otl_dnnl_check(k, dnnl_reorder_primitive_desc_create(&rpd, from, k->eng->eng, to, k->eng->eng, NULL), "weights reorder");
    if (!st)
        st = otl_dnnl_check(k, dnnl_primitive_create(&r, rpd), "weights reorder");
    if (!st) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, s->mb}};
        st = otl_dnnl_run(k, r, 2, args);
    }
    if (r)
        dnnl_primitive_destroy(r);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (src)
        dnnl_memory_destroy(src);
    return st;
}

static otl_status mm_prepare(otl_kctx *k)
{
    mm_state *s = k->state;
    if (k->in[0]->dtype != OTL_DTYPE_FLOAT || s->prim)
        return OTL_OK;
    /* oneDNN rejects (or traps on) empty dims: forward handles them without a primitive */
    if (s->batch == 0 || s->M == 0 || s->N == 0 || s->K == 0)
        return OTL_OK;
    int64_t ad[OTL_MAX_RANK + 2], as[OTL_MAX_RANK + 2], bd[OTL_MAX_RANK + 2], bs[OTL_MAX_RANK + 2];
    int64_t yd[OTL_MAX_RANK + 2], ys[OTL_MAX_RANK + 2], cd[OTL_MAX_RANK + 2], cs[OTL_MAX_RANK + 2];
    int nb = s->nb;
    /* B shared by every batch and A's batches contiguous: one (batch*M, K) x (K, N) product */
    int fold = nb > 0 && s->sam == s->K && s->sak == 1;
    for (int i = 0; i < nb && fold; i++)
        fold = s->bdb[i] == 1 && s->adb[i] == s->bdims[i];
    int64_t M = s->M;
    if (fold) {
        M = s->batch * s->M;
        nb = 0;
    }
    int nd = nb + 2;
    int64_t sta = s->M * s->K, stb = s->K * s->N, sty = s->M * s->N;
    for (int i = nb - 1; i >= 0; i--) {
        ad[i] = s->adb[i];
        as[i] = sta;
        sta *= ad[i];
        bd[i] = s->bdb[i];
        bs[i] = stb;
        stb *= bd[i];
        yd[i] = s->bdims[i];
        ys[i] = sty;
        sty *= yd[i];
        cd[i] = 1;
        cs[i] = s->N;
    }
    ad[nb] = M, ad[nb + 1] = s->K, as[nb] = s->sam, as[nb + 1] = s->sak;
    bd[nb] = s->K, bd[nb + 1] = s->N, bs[nb] = s->sbk, bs[nb + 1] = s->sbn;
    yd[nb] = M, yd[nb + 1] = s->N, ys[nb] = s->N, ys[nb + 1] = 1;
    cd[nb] = 1, cd[nb + 1] = s->N, cs[nb] = s->N, cs[nb + 1] = 1;
    dnnl_memory_desc_t mda, mdb, mdy, mdc;
    otl_status st;
    if ((st = md_strided(k, nd, ad, as, &mda)) || (st = md_strided(k, nd, bd, bs, &mdb)) ||
        (st = md_strided(k, nd, yd, ys, &mdy)) || (st = md_strided(k, nd, cd, cs, &mdc)))
        return st;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t d;
    st = otl_dnnl_check(k, dnnl_primitive_attr_create(&attr), "matmul attributes");
    if (!st && s->alpha != 1.0f)
        st = otl_dnnl_check(k, dnnl_primitive_attr_set_output_scales(attr, 1, 0, &s->alpha), "matmul output scale");
    if (!st && s->use_sum) {
        st = otl_dnnl_check(k, dnnl_post_ops_create(&po), "matmul post-ops");
        if (!st)
            st = otl_dnnl_check(k, dnnl_post_ops_append_sum(po, s->beta), "matmul sum post-op");
        if (!st)
            st = otl_dnnl_check(k, dnnl_primitive_attr_set_post_ops(attr, po), "matmul post-ops");
    }
    /* constant B of an inference plan: let oneDNN choose its layout and pack B once */
    int pack = !st && k->in[1]->is_const && !k->training;
    const dnnl_memory_desc_t *cmdc = s->use_bias ? &mdc : NULL;
    if (pack) {
        dnnl_memory_desc_t any;
        dnnl_dims_t dd;
        for (int i = 0; i < nd; i++)
            dd[i] = bd[i];
        pack = dnnl_memory_desc_init_by_tag(&any, nd, dd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
               dnnl_matmul_desc_init(&d, &mda, &any, cmdc, &mdy) == dnnl_success &&
               dnnl_primitive_desc_create(&pd, &d, attr, k->eng->eng, NULL) == dnnl_success;
        if (pack) {
            const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            pack = w && !dnnl_memory_desc_equal(w, &mdb);
            if (pack)
                st = pack_weights(k, s, &mdb, w);
        }
        if (!pack && pd) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
    }
    if (!st && !pack)
        st = otl_dnnl_check(k, dnnl_matmul_desc_init(&d, &mda, &mdb, cmdc, &mdy), "matmul");
    if (!st && !pack)
        st = otl_dnnl_check(k, dnnl_primitive_desc_create(&pd, &d, attr, k->eng->eng, NULL), "matmul");
    if (!st)
        st = otl_dnnl_check(k, dnnl_primitive_create(&s->prim, pd), "matmul");
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st)
        return st;
    if ((st = otl_dnnl_memory(k, &mda, NULL, &s->ma)) || (!s->mb && (st = otl_dnnl_memory(k, &mdb, NULL, &s->mb))) ||
        (st = otl_dnnl_memory(k, &mdy, NULL, &s->my)))
        return st;
    if (s->use_bias && (st = otl_dnnl_memory(k, &mdc, NULL, &s->mc)))
        return st;
    return OTL_OK;
}

/* Y = beta * C broadcast over (M, N) (scale 1 when the sum post-op applies beta). */
static void fill_c(float *y, const float *c, const mm_state *s, float scale)
{
    #pragma omp parallel for if (s->M * s->N > 65536)
    for (int64_t m = 0; m < s->M; m++)
        for (int64_t n = 0; n < s->N; n++)
            y[m * s->N + n] = scale * c[m * s->scm + n * s->scn];
}

static otl_status mm_forward(otl_kctx *k)
{
    mm_state *s = k->state;
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    if (s->K == 0) { /* empty sum */
        if (s->has_c && y->dtype == OTL_DTYPE_FLOAT && s->nb == 0) {
            fill_c(y->data, k->in[2]->data, s, s->beta);
            return OTL_OK;
        }
        if (!s->has_c) {
            memset(y->data, 0, y->nbytes);
            return OTL_OK;
        }
        return mm_generic(k);
    }
    if (!s->prim)
        return mm_generic(k);
    if (s->use_sum)
        fill_c(y->data, k->in[2]->data, s, 1.0f);
    dnnl_memory_set_data_handle(s->ma, k->in[0]->data);
    if (!s->packed)
        dnnl_memory_set_data_handle(s->mb, k->in[1]->data);
    dnnl_memory_set_data_handle(s->my, y->data);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->ma}, {DNNL_ARG_WEIGHTS, s->mb}, {DNNL_ARG_DST, s->my}};
    int n = 3;
    if (s->use_bias) {
        dnnl_memory_set_data_handle(s->mc, k->in[2]->data);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->mc};
    }
    return otl_dnnl_run(k, s->prim, n, args);
}

static void mm_release(otl_kctx *k)
{
    mm_state *s = k->state;
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    dnnl_memory_t mems[4] = {s->ma, s->mb, s->mc, s->my};
    for (int i = 0; i < 4; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(s->packed);
}

/* ---------------------------------------------------------------- MatMul */

static otl_status matmul_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, mm_types)) || (st = otl_check_in(k, 1, mm_types)))
        return st;
    const otl_rt *a = k->in[0], *b = k->in[1];
    if (a->dtype != b->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                         otl_dtype_name(a->dtype), otl_dtype_name(b->dtype));
    if (a->rank < 1 || b->rank < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "MatMul needs operands of rank >= 1, got ranks %d and %d",
                         a->rank, b->rank);
    mm_state *s = NULL;
    if ((st = mm_state_new(k, &s)))
        return st;
    int ra = a->rank, rb = b->rank;
    s->M = ra == 1 ? 1 : a->dims[ra - 2];
    s->K = a->dims[ra - 1];
    int64_t kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    s->N = rb == 1 ? 1 : b->dims[rb - 1];
    if (kb != s->K)
        return otl_kfail(k, OTL_ERR_INPUT, "inner dimensions differ: A '%s' has K=%lld, B '%s' has K=%lld",
                         a->name, (long long)s->K, b->name, (long long)kb);
    int nba = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    s->nb = nba > nbb ? nba : nbb;
    for (int i = 0; i < s->nb; i++) {
        int ia = i - (s->nb - nba), ib = i - (s->nb - nbb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "batch dimensions do not broadcast: %lld and %lld (axis %d of the output)",
                             (long long)da, (long long)db, i);
        s->adb[i] = da;
        s->bdb[i] = db;
        s->bdims[i] = da == 1 ? db : da;
        s->batch *= s->bdims[i];
    }
    batch_strides(s, s->adb, s->M * s->K, s->bsa);
    batch_strides(s, s->bdb, s->K * s->N, s->bsb);
    s->sam = s->K, s->sak = 1;
    s->sbk = s->N, s->sbn = 1;
    int64_t yd[OTL_MAX_RANK];
    int ry = 0;
    for (int i = 0; i < s->nb; i++)
        yd[ry++] = s->bdims[i];
    if (ra > 1)
        yd[ry++] = s->M;
    if (rb > 1)
        yd[ry++] = s->N;
    return otl_rt_set(k, k->out[0], a->dtype, ry, yd);
}

const otl_op otl_op_MatMul = {
    .op_type = "MatMul", .domain = "", .since = 1, .until = 22,
    .infer = matmul_infer, .prepare = mm_prepare, .forward = mm_forward, .release = mm_release,
};

/* ---------------------------------------------------------------- Gemm */

static otl_status gemm_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, mm_types)) || (st = otl_check_in(k, 1, mm_types)))
        return st;
    if (k->opset < 11 && !otl_has_in(k, 2)) /* C optional since 11 */
        return otl_kfail(k, OTL_ERR_INPUT, "input C is required before opset 11");
    const otl_rt *a = k->in[0], *b = k->in[1], *c = otl_has_in(k, 2) ? k->in[2] : NULL;
    int dt = a->dtype;
    if (b->dtype != dt || (c && c->dtype != dt))
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s, %s%s%s)", otl_dtype_name(dt),
                         otl_dtype_name(b->dtype), c ? ", " : "", c ? otl_dtype_name(c->dtype) : "");
    if (a->rank != 2 || b->rank != 2)
        return otl_kfail(k, OTL_ERR_INPUT, "A and B must have rank 2, got ranks %d and %d", a->rank, b->rank);
    mm_state *s = NULL;
    if ((st = mm_state_new(k, &s)))
        return st;
    int64_t ta, tb;
    if ((st = otl_attr_int(k, "transA", 0, &ta)) || (st = otl_attr_int(k, "transB", 0, &tb)) ||
        (st = otl_attr_float(k, "alpha", 1.0f, &s->alpha)) || (st = otl_attr_float(k, "beta", 1.0f, &s->beta)))
        return st;
    int64_t bcast = 1; /* before opset 7, C broadcasts only with broadcast=1 */
    if (k->opset < 7 && (st = otl_attr_int(k, "broadcast", 0, &bcast)))
        return st;
    s->M = ta ? a->dims[1] : a->dims[0];
    s->K = ta ? a->dims[0] : a->dims[1];
    s->sam = ta ? 1 : a->dims[1];
    s->sak = ta ? a->dims[1] : 1;
    int64_t kb = tb ? b->dims[1] : b->dims[0];
    s->N = tb ? b->dims[0] : b->dims[1];
    s->sbk = tb ? 1 : b->dims[1];
    s->sbn = tb ? b->dims[1] : 1;
    if (kb != s->K)
        return otl_kfail(k, OTL_ERR_INPUT, "inner dimensions differ: A '%s' gives K=%lld, B '%s' gives K=%lld",
                         a->name, (long long)s->K, b->name, (long long)kb);
    if (c) {
        if (c->rank > 2)
            return otl_kfail(k, OTL_ERR_INPUT, "C '%s' has rank %d, at most 2 expected", c->name, c->rank);
        s->cm = c->rank == 2 ? c->dims[0] : 1;
        s->cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if ((s->cm != 1 && s->cm != s->M) || (s->cn != 1 && s->cn != s->N))
            return otl_kfail(k, OTL_ERR_INPUT, "C '%s' of shape (%lld, %lld) does not broadcast to (%lld, %lld)",
                             c->name, (long long)s->cm, (long long)s->cn, (long long)s->M, (long long)s->N);
        if (!bcast && (c->rank != 2 || s->cm != s->M || s->cn != s->N))
            return otl_kfail(k, OTL_ERR_INPUT, "C '%s' must have shape (%lld, %lld) when broadcast=0",
                             c->name, (long long)s->M, (long long)s->N);
        s->scm = s->cm == 1 ? 0 : s->cn;
        s->scn = s->cn == 1 ? 0 : 1;
        s->has_c = s->beta != 0.0f;
    }
    if (dt != OTL_DTYPE_FLOAT && dt != OTL_DTYPE_DOUBLE &&
        (s->alpha != 1.0f || (s->has_c && s->beta != 1.0f)))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "integer Gemm with alpha=%g, beta=%g is not supported",
                         (double)s->alpha, (double)s->beta);
    if (s->has_c) {
        s->use_bias = s->alpha == 1.0f && s->beta == 1.0f && s->cm == 1 && s->cn == s->N;
        s->use_sum = !s->use_bias;
    }
    int64_t yd[2] = {s->M, s->N};
    return otl_rt_set(k, k->out[0], dt, 2, yd);
}

const otl_op otl_op_Gemm = {
    .op_type = "Gemm", .domain = "", .since = 1, .until = 22,
    .infer = gemm_infer, .prepare = mm_prepare, .forward = mm_forward, .release = mm_release,
};
