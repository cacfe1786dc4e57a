/* matmul.c - matrix products: MatMul (NumPy semantics: batched, batch dims broadcast, 1-D
 * operands promoted and their axis dropped) and Gemm (transA/transB, alpha, beta, C broadcast
 * to (M, N)). float32 runs on oneDNN's matmul primitive; double/int32/int64 on a plain C kernel.
 * A constant B (an initializer) of an inference plan is packed once at plan time into oneDNN's
 * preferred layout; training plans may update parameters between runs (as in ops/conv.c).
 * Mixed precision (k->bf16): the primitives read dense bfloat16 copies of A and B (MatMulGrad:
 * of dY and the other operand), converted by layout ports (ops/nn_common.h) into the shared
 * scratch on every run, and write float32.
 * Differentiable inputs: A and B (and C for Gemm). */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/nn_common.h"

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
    /* bf16: A and B (unless packed) converted through ports into the shared scratch */
    int bf16;
    nn_port pa, pb;
    size_t scratch_bytes;
    int reserved;
} mm_state;

static otl_status matmul_grad(otl_gctx *c);
static otl_status gemm_grad(otl_gctx *c);

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
    dnnl_dims_t d = {0}, st = {0}; /* nd <= DNNL_MAX_NDIMS (gcc cannot tell) */
    for (int i = 0; i < nd; i++) {
        d[i] = dims[i];
        st[i] = strides[i];
    }
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, st), "matmul memory descriptor");
}

/* A dense (C-order) bfloat16 descriptor with the dims of md (the primitive's view of an
 * operand in mixed precision; the port's reorder applies md's strides). */
static otl_status md_bf16(otl_kctx *k, const dnnl_memory_desc_t *md, dnnl_memory_desc_t *out)
{
    return nn_md_dense(k, md->ndims, md->dims, dnnl_bf16, out);
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
        st = otl_dnnl_check(k, otl_reorder_pd_create(&rpd, from, k->eng->eng, to, k->eng->eng, NULL), "weights reorder");
    if (!st)
        st = otl_dnnl_primitive(k, rpd, &r, "weights reorder");
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
    dnnl_memory_desc_t mda, mdb, mdy, mdc, pa, pb;
    otl_status st;
    if ((st = md_strided(k, nd, ad, as, &mda)) || (st = md_strided(k, nd, bd, bs, &mdb)) ||
        (st = md_strided(k, nd, yd, ys, &mdy)) || (st = md_strided(k, nd, cd, cs, &mdc)))
        return st;
    s->bf16 = k->bf16;
    pa = mda; /* the primitive's A and B: the tensors, or bf16 copies */
    pb = mdb;
    if (s->bf16 && ((st = md_bf16(k, &mda, &pa)) || (st = md_bf16(k, &mdb, &pb))))
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
    /* constant B of an inference plan or of a node no gradient flows through (the frozen part
       of a training graph: no backward node reads this node's B): let
       oneDNN choose its layout and pack B once */
    int pack = !st && k->in[1]->is_const && (!k->training || k->no_grad);
    const dnnl_memory_desc_t *cmdc = s->use_bias ? &mdc : NULL;
    if (pack) {
        dnnl_memory_desc_t any;
        dnnl_dims_t dd;
        for (int i = 0; i < nd; i++)
            dd[i] = bd[i];
        pack = dnnl_memory_desc_init_by_tag(&any, nd, dd, s->bf16 ? dnnl_bf16 : dnnl_f32, dnnl_format_tag_any) ==
                   dnnl_success &&
               dnnl_matmul_desc_init(&d, &pa, &any, cmdc, &mdy) == dnnl_success &&
               otl_pd_create(&pd, &d, attr, k->eng->eng, NULL) == dnnl_success;
        if (pack) {
            const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            pack = w && !dnnl_memory_desc_equal(w, &pb);
            if (pack)
                st = pack_weights(k, s, &mdb, w);
        }
        if (!pack && pd) {
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
        }
    }
    if (!st && !pack)
        st = otl_dnnl_check(k, dnnl_matmul_desc_init(&d, &pa, &pb, cmdc, &mdy), "matmul");
    if (!st && !pack)
        st = otl_dnnl_check(k, otl_pd_create(&pd, &d, attr, k->eng->eng, NULL), "matmul");
    if (!st)
        st = otl_dnnl_primitive(k, pd, &s->prim, "matmul");
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st)
        return st;
    if (s->bf16) {
        if ((st = nn_port_init(k, &s->pa, &mda, &pa, 0, &s->scratch_bytes)) ||
            (!s->mb && (st = nn_port_init(k, &s->pb, &mdb, &pb, 0, &s->scratch_bytes))))
            return st;
        if (s->scratch_bytes) {
            if ((st = nn_scratch_reserve(k, s->scratch_bytes)))
                return st;
            s->reserved = 1;
        }
    } else if ((st = otl_dnnl_memory(k, &mda, NULL, &s->ma)) ||
               (!s->mb && (st = otl_dnnl_memory(k, &mdb, NULL, &s->mb)))) {
        return st;
    }
    if ((st = otl_dnnl_memory(k, &mdy, NULL, &s->my)))
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
    otl_status st = OTL_OK;
    void *scratch = s->scratch_bytes ? nn_scratch_lock() : NULL;
    dnnl_memory_t ma = s->ma, mb = s->mb;
    if (s->bf16) { /* bf16 copies of A and (unless packed) B */
        st = nn_port_bind(k, &s->pa, k->in[0]->data, scratch);
        ma = s->pa.prim;
        if (!st && !s->packed) {
            st = nn_port_bind(k, &s->pb, k->in[1]->data, scratch);
            mb = s->pb.prim;
        }
    } else {
        dnnl_memory_set_data_handle(s->ma, k->in[0]->data);
        if (!s->packed)
            dnnl_memory_set_data_handle(s->mb, k->in[1]->data);
    }
    dnnl_memory_set_data_handle(s->my, y->data);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, s->my}};
    int n = 3;
    if (s->use_bias) {
        dnnl_memory_set_data_handle(s->mc, k->in[2]->data);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->mc};
    }
    if (!st)
        st = otl_dnnl_run(k, s->prim, n, args);
    if (scratch)
        nn_scratch_unlock();
    return st;
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
    nn_port_free(&s->pa);
    nn_port_free(&s->pb);
    if (s->reserved)
        nn_scratch_unreserve(s->scratch_bytes);
}

/* ---------------------------------------------------------------- MatMul */

/* NumPy matmul geometry of A (ra, da) x B (rb, db) into s (batch broadcast, 1-D operands
 * promoted); the shape of Y into (ry, yd). */
static otl_status matmul_geometry(otl_kctx *k, mm_state *s, int ra, const int64_t *da, const char *na, int rb,
                                  const int64_t *db, const char *nbn, int *ry, int64_t *yd)
{
    if (ra < 1 || rb < 1)
        return otl_kfail(k, OTL_ERR_INPUT, "MatMul needs operands of rank >= 1, got ranks %d and %d", ra, rb);
    s->M = ra == 1 ? 1 : da[ra - 2];
    s->K = da[ra - 1];
    int64_t kb = rb == 1 ? db[0] : db[rb - 2];
    s->N = rb == 1 ? 1 : db[rb - 1];
    if (kb != s->K)
        return otl_kfail(k, OTL_ERR_INPUT, "inner dimensions differ: A '%s' has K=%lld, B '%s' has K=%lld",
                         na, (long long)s->K, nbn, (long long)kb);
    int nba = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    s->nb = nba > nbb ? nba : nbb;
    s->batch = 1;
    for (int i = 0; i < s->nb; i++) {
        int ia = i - (s->nb - nba), ib = i - (s->nb - nbb);
        int64_t a = ia >= 0 ? da[ia] : 1, b = ib >= 0 ? db[ib] : 1;
        if (a != b && a != 1 && b != 1)
            return otl_kfail(k, OTL_ERR_INPUT, "batch dimensions do not broadcast: %lld and %lld (axis %d of the output)",
                             (long long)a, (long long)b, i);
        s->adb[i] = a;
        s->bdb[i] = b;
        s->bdims[i] = a == 1 ? b : a;
        s->batch *= s->bdims[i];
    }
    batch_strides(s, s->adb, s->M * s->K, s->bsa);
    batch_strides(s, s->bdb, s->K * s->N, s->bsb);
    s->sam = s->K, s->sak = 1;
    s->sbk = s->N, s->sbn = 1;
    *ry = 0;
    for (int i = 0; i < s->nb; i++)
        yd[(*ry)++] = s->bdims[i];
    if (ra > 1)
        yd[(*ry)++] = s->M;
    if (rb > 1)
        yd[(*ry)++] = s->N;
    return OTL_OK;
}

static otl_status matmul_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, mm_types)) || (st = otl_check_in(k, 1, mm_types)))
        return st;
    const otl_rt *a = k->in[0], *b = k->in[1];
    if (a->dtype != b->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "inputs have different dtypes (%s and %s)",
                         otl_dtype_name(a->dtype), otl_dtype_name(b->dtype));
    mm_state *s = NULL;
    if ((st = mm_state_new(k, &s)))
        return st;
    int64_t yd[OTL_MAX_RANK];
    int ry;
    if ((st = matmul_geometry(k, s, a->rank, a->dims, a->name, b->rank, b->dims, b->name, &ry, yd)))
        return st;
    return otl_rt_set(k, k->out[0], a->dtype, ry, yd);
}

const otl_op otl_op_MatMul = {
    .op_type = "MatMul", .domain = "", .since = 1, .until = 22,
    .infer = matmul_infer, .prepare = mm_prepare, .forward = mm_forward, .release = mm_release,
    .grad_inputs = 3, .grad = matmul_grad,
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
    .grad_inputs = 7, .grad = gemm_grad,
};

/* ================================================================ reverse mode
 *
 * MatMul: dA = dY B^T, dB = A^T dY, each summed over the batch axes along which its operand
 * was broadcast (and with the axis of a 1-D operand dropped again). Gemm: the same products of
 * op(A) and op(B) with transposes and alpha, dC = Scale(ReduceSumTo(dY, Shape(C)), beta).
 *
 * Private kernel onnx_tl.MatMulGrad(dY, O, Shape(T)) -> dT, attributes wrt (0: T = A, O = B;
 * 1: T = B, O = A), transA, transB (rank-2 operands only), alpha: the gradient of
 * Y = alpha * op(A) op(B) (NumPy matmul broadcasting) with respect to T. It is computed as one
 * product D (R, C) = alpha * X1 (R, L) X2 (L, C) per batch, arranged so that D is T's own
 * row-major storage and every transpose is a stride of X1 or X2 (nothing is materialized):
 *   dA = dY op(B)^T  (or, stored transposed, op(B) dY^T);  dB = op(A)^T dY  (or dY^T op(A)).
 * Batch axes along which T was broadcast are reductions: when the operands' strides allow it
 * (A (b, S, K) x W (K, N): dW = A^T dY with L = b*S) they are folded into the contraction, else
 * the batched product goes to scratch and is summed. Batch axes along which O is broadcast and
 * X1 is contiguous are folded into the rows (dA of (b, S, K) x (K, N) is one (b*S, N) x (N, K)
 * product). float32 runs on one oneDNN matmul primitive (created at prepare; no operand is
 * packed or cached, since parameters change between runs); double in C. Not differentiable. */

typedef struct mmg_state {
    float alpha;
    int64_t R, C, L;                  /* per batch: D (R, C) = alpha * X1 (R, L) X2 (L, C) */
    int64_t rs1, ls1, ls2, cs2;       /* X1's row/contraction and X2's contraction/column strides */
    int x1_dy;                        /* X1 is dY (X2 the other operand), else the reverse */
    int nb;                           /* batch axes left after folding */
    int64_t bd[OTL_MAX_RANK];         /* (nb) their sizes */
    int64_t s1[OTL_MAX_RANK], s2[OTL_MAX_RANK]; /* (nb) X1/X2 batch strides, 0 where broadcast */
    int red[OTL_MAX_RANK];            /* (nb) summed into D (T has size 1 there) */
    int any_red;                      /* unfolded reduction axes: product into scratch first */
    int zero;                         /* empty contraction or empty batch: dT = 0 */
    dnnl_primitive_t prim;
    dnnl_memory_t m1, m2, md;
    float *scratch;                   /* (prod bd, R, C) when any_red */
    int bf16;                         /* X1 and X2 read as bf16 copies through p1, p2 */
    nn_port p1, p2;
    size_t port_bytes;
    int reserved;
} mmg_state;

static const int mmg_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};

/* Drop batch axis i of the view (folded away). */
static void mmg_drop_axis(mmg_state *g, int i)
{
    for (int j = i; j + 1 < g->nb; j++) {
        g->bd[j] = g->bd[j + 1];
        g->s1[j] = g->s1[j + 1];
        g->s2[j] = g->s2[j + 1];
        g->red[j] = g->red[j + 1];
    }
    g->nb--;
}

/* Do the batch axes with flag `red` == want chain contiguously onto a matrix extent: for each
 * operand, innermost axis stride == base, next == base * size, ...? */
static int mmg_chain(const mmg_state *g, int want, const int64_t *str, int64_t base)
{
    for (int i = g->nb - 1; i >= 0; i--) {
        if (g->red[i] != want)
            continue;
        if (str[i] != base)
            return 0;
        base *= g->bd[i];
    }
    return 1;
}

static otl_status mmg_infer(otl_kctx *k)
{
    otl_status st;
    if ((st = otl_check_in(k, 0, mmg_types)) || (st = otl_check_in(k, 1, mmg_types)))
        return st;
    const otl_rt *dy = k->in[0], *o = k->in[1];
    if (o->dtype != dy->dtype)
        return otl_kfail(k, OTL_ERR_INPUT, "operand '%s' (%s) and gradient '%s' (%s) differ in dtype", o->name,
                         otl_dtype_name(o->dtype), dy->name, otl_dtype_name(dy->dtype));
    mmg_state *g = calloc(1, sizeof *g);
    mm_state *s = calloc(1, sizeof *s);
    if (!g || !s) {
        free(g);
        free(s);
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    }
    k->state = g;
    int64_t wrt, ta, tb, td[OTL_MAX_RANK];
    int tr;
    if ((st = otl_attr_int(k, "wrt", 0, &wrt)) || (st = otl_attr_int(k, "transA", 0, &ta)) ||
        (st = otl_attr_int(k, "transB", 0, &tb)) || (st = otl_attr_float(k, "alpha", 1.0f, &g->alpha)) ||
        (st = otl_const_ints(k, 2, td, OTL_MAX_RANK, &tr)))
        goto done;
    if (wrt != 0 && wrt != 1) {
        st = otl_kfail(k, OTL_ERR_INPUT, "attribute wrt must be 0 or 1, got %lld", (long long)wrt);
        goto done;
    }
    /* the forward's operands */
    int ra = wrt ? o->rank : tr, rb = wrt ? tr : o->rank;
    const int64_t *da = wrt ? o->dims : td, *db = wrt ? td : o->dims;
    int64_t yd[OTL_MAX_RANK];
    int ry = 0;
    if (ta || tb) { /* Gemm: rank 2, no batch */
        if (ra != 2 || rb != 2) {
            st = otl_kfail(k, OTL_ERR_INPUT, "transA/transB need rank-2 operands, got ranks %d and %d", ra, rb);
            goto done;
        }
        s->M = ta ? da[1] : da[0];
        s->K = ta ? da[0] : da[1];
        s->sam = ta ? 1 : da[1];
        s->sak = ta ? da[1] : 1;
        s->N = tb ? db[0] : db[1];
        s->sbk = tb ? 1 : db[1];
        s->sbn = tb ? db[1] : 1;
        if ((tb ? db[1] : db[0]) != s->K) {
            st = otl_kfail(k, OTL_ERR_INPUT, "inner dimensions differ (%lld and %lld)", (long long)s->K,
                           (long long)(tb ? db[1] : db[0]));
            goto done;
        }
        s->batch = 1;
        yd[0] = s->M, yd[1] = s->N, ry = 2;
    } else if ((st = matmul_geometry(k, s, ra, da, wrt ? o->name : "A", rb, db, wrt ? "B" : o->name, &ry, yd))) {
        goto done;
    }
    int same = dy->rank == ry;
    for (int i = 0; same && i < ry; i++)
        same = dy->dims[i] == yd[i];
    if (!same) {
        st = otl_kfail(k, OTL_ERR_INPUT, "gradient '%s' does not have the product's shape", dy->name);
        goto done;
    }
    /* Y's batch strides (dY is contiguous) */
    int64_t bsy[OTL_MAX_RANK], sty = s->M * s->N;
    for (int i = s->nb - 1; i >= 0; i--) {
        bsy[i] = sty;
        sty *= s->bdims[i];
    }
    const int64_t *bso = wrt ? s->bsa : s->bsb, *tdb = wrt ? s->bdb : s->adb;
    int tt = wrt ? tb != 0 : ta != 0; /* T stored transposed */
    int64_t M = s->M, K = s->K, N = s->N;
    if (!wrt && !tt) {        /* dA (M, K) = dY (M, N) op(B)^T (N, K) */
        g->R = M, g->C = K, g->L = N, g->x1_dy = 1;
        g->rs1 = N, g->ls1 = 1, g->ls2 = s->sbn, g->cs2 = s->sbk;
    } else if (!wrt) {        /* dA stored (K, M) = op(B) (K, N) dY^T (N, M) */
        g->R = K, g->C = M, g->L = N, g->x1_dy = 0;
        g->rs1 = s->sbk, g->ls1 = s->sbn, g->ls2 = 1, g->cs2 = N;
    } else if (!tt) {         /* dB (K, N) = op(A)^T (K, M) dY (M, N) */
        g->R = K, g->C = N, g->L = M, g->x1_dy = 0;
        g->rs1 = s->sak, g->ls1 = s->sam, g->ls2 = N, g->cs2 = 1;
    } else {                  /* dB stored (N, K) = dY^T (N, M) op(A) (M, K) */
        g->R = N, g->C = K, g->L = M, g->x1_dy = 1;
        g->rs1 = 1, g->ls1 = N, g->ls2 = s->sam, g->cs2 = s->sak;
    }
    g->zero = g->L == 0;
    for (int i = 0; i < s->nb; i++) {
        if (s->bdims[i] == 0)
            g->zero = 1;
        if (s->bdims[i] <= 1)
            continue;
        g->bd[g->nb] = s->bdims[i];
        g->s1[g->nb] = g->x1_dy ? bsy[i] : bso[i];
        g->s2[g->nb] = g->x1_dy ? bso[i] : bsy[i];
        g->red[g->nb] = tdb[i] == 1;
        g->any_red |= g->red[g->nb];
        g->nb++;
    }
    /* fold reductions into the contraction */
    if (g->any_red && mmg_chain(g, 1, g->s1, g->L * g->ls1) && mmg_chain(g, 1, g->s2, g->L * g->ls2)) {
        for (int i = g->nb - 1; i >= 0; i--)
            if (g->red[i]) {
                g->L *= g->bd[i];
                mmg_drop_axis(g, i);
            }
        g->any_red = 0;
    }
    /* fold batch axes along which X2 is broadcast into the rows */
    if (!g->any_red && g->nb > 0) {
        int fold = mmg_chain(g, 0, g->s1, g->R * g->rs1);
        for (int i = 0; i < g->nb && fold; i++)
            fold = g->s2[i] == 0;
        if (fold) {
            while (g->nb > 0) {
                g->R *= g->bd[g->nb - 1];
                g->nb--;
            }
        }
    }
    st = otl_rt_set(k, k->out[0], dy->dtype, tr, td);
done:
    free(s);
    return st;
}

/* A strided descriptor of one operand view: batch dims (1 where the stride is 0), then the
 * matrix (rows, cols) with strides (rstr, cstr). */
static otl_status mmg_md(otl_kctx *k, const mmg_state *g, const int64_t *bstr, int64_t rows, int64_t cols,
                         int64_t rstr, int64_t cstr, dnnl_memory_desc_t *md)
{
    int64_t d[OTL_MAX_RANK + 2], st[OTL_MAX_RANK + 2];
    int nb = g->nb;
    /* size-1 axes get a stride past everything inside them (any value would do) */
    int64_t span = 1 + (rows - 1) * rstr + (cols - 1) * cstr;
    for (int i = nb - 1; i >= 0; i--) {
        d[i] = bstr[i] ? g->bd[i] : 1;
        st[i] = bstr[i] ? bstr[i] : span;
        if (bstr[i])
            span = span > bstr[i] * g->bd[i] ? span : bstr[i] * g->bd[i];
    }
    d[nb] = rows, d[nb + 1] = cols, st[nb] = rstr, st[nb + 1] = cstr;
    return md_strided(k, nb + 2, d, st, md);
}

static otl_status mmg_prepare(otl_kctx *k)
{
    mmg_state *g = k->state;
    if (k->in[0]->dtype != OTL_DTYPE_FLOAT || g->zero || g->R == 0 || g->C == 0 || g->prim)
        return OTL_OK;
    int64_t dst_str[OTL_MAX_RANK], st = g->R * g->C, nbatch = 1;
    for (int i = g->nb - 1; i >= 0; i--) {
        dst_str[i] = st;
        st *= g->bd[i];
        nbatch *= g->bd[i];
    }
    dnnl_memory_desc_t m1, m2, md, q1, q2;
    otl_status s;
    if ((s = mmg_md(k, g, g->s1, g->R, g->L, g->rs1, g->ls1, &m1)) ||
        (s = mmg_md(k, g, g->s2, g->L, g->C, g->ls2, g->cs2, &m2)) ||
        (s = mmg_md(k, g, dst_str, g->R, g->C, g->C, 1, &md)))
        return s;
    g->bf16 = k->bf16;
    q1 = m1; /* the primitive's X1 and X2: the tensors, or dense bf16 copies */
    q2 = m2;
    if (g->bf16 && ((s = md_bf16(k, &m1, &q1)) || (s = md_bf16(k, &m2, &q2))))
        return s;
    if (g->any_red && !(g->scratch = malloc((size_t)(nbatch * g->R * g->C) * sizeof *g->scratch)))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory (%lld bytes of scratch)",
                         (long long)(nbatch * g->R * g->C * 4));
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t d;
    s = otl_dnnl_check(k, dnnl_primitive_attr_create(&attr), "matmul attributes");
    if (!s && g->alpha != 1.0f)
        s = otl_dnnl_check(k, dnnl_primitive_attr_set_output_scales(attr, 1, 0, &g->alpha), "matmul output scale");
    if (!s)
        s = otl_dnnl_check(k, dnnl_matmul_desc_init(&d, &q1, &q2, NULL, &md), "matmul (gradient)");
    if (!s)
        s = otl_dnnl_check(k, otl_pd_create(&pd, &d, attr, k->eng->eng, NULL), "matmul (gradient)");
    if (!s)
        s = otl_dnnl_primitive(k, pd, &g->prim, "matmul (gradient)");
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (!s && g->bf16) {
        s = nn_port_init(k, &g->p1, &m1, &q1, 0, &g->port_bytes);
        if (!s)
            s = nn_port_init(k, &g->p2, &m2, &q2, 0, &g->port_bytes);
        if (!s && g->port_bytes && !(s = nn_scratch_reserve(k, g->port_bytes)))
            g->reserved = 1;
    } else if (!s) {
        s = otl_dnnl_memory(k, &m1, NULL, &g->m1);
        if (!s)
            s = otl_dnnl_memory(k, &m2, NULL, &g->m2);
    }
    if (!s)
        s = otl_dnnl_memory(k, &md, NULL, &g->md);
    return s;
}

/* Offset of batch index b (linear over the axes with flag red == want) given strides str. */
static int64_t mmg_boff(const mmg_state *g, int want, int64_t b, const int64_t *str)
{
    int64_t off = 0;
    for (int i = g->nb - 1; i >= 0; i--) {
        if (g->red[i] != want)
            continue;
        off += (b % g->bd[i]) * str[i];
        b /= g->bd[i];
    }
    return off;
}

/* D (kept batch..., R, C) = alpha * sum over reduced batch indices of X1 X2, in double. */
static void mmg_c(double *d, const double *x1, const double *x2, const mmg_state *g)
{
    int64_t nk = 1, nr = 1;
    for (int i = 0; i < g->nb; i++) {
        if (g->red[i])
            nr *= g->bd[i];
        else
            nk *= g->bd[i];
    }
    int64_t rows = nk * g->R;
    #pragma omp parallel for if (rows * g->C * g->L * nr > 65536)
    for (int64_t t = 0; t < rows; t++) {
        int64_t tb = t / g->R, r = t % g->R;
        int64_t o1 = mmg_boff(g, 0, tb, g->s1) + r * g->rs1, o2 = mmg_boff(g, 0, tb, g->s2);
        for (int64_t c = 0; c < g->C; c++) {
            double acc = 0;
            for (int64_t u = 0; u < nr; u++) {
                const double *p1 = x1 + o1 + mmg_boff(g, 1, u, g->s1);
                const double *p2 = x2 + o2 + mmg_boff(g, 1, u, g->s2) + c * g->cs2;
                for (int64_t l = 0; l < g->L; l++)
                    acc += p1[l * g->ls1] * p2[l * g->ls2];
            }
            d[t * g->C + c] = g->alpha * acc;
        }
    }
}

/* D (kept..., R, C) = sum over the reduced axes of the scratch product (all axes..., R, C). */
static void mmg_sum_scratch(float *d, const float *p, const mmg_state *g)
{
    int64_t str[OTL_MAX_RANK], st = 1, nk = 1, nr = 1, rc = g->R * g->C;
    for (int i = g->nb - 1; i >= 0; i--) {
        str[i] = st;
        st *= g->bd[i];
        if (g->red[i])
            nr *= g->bd[i];
        else
            nk *= g->bd[i];
    }
    #pragma omp parallel for if (nk * nr * rc > 65536)
    for (int64_t tb = 0; tb < nk; tb++) {
        float *dt = d + tb * rc;
        int64_t base = mmg_boff(g, 0, tb, str);
        for (int64_t u = 0; u < nr; u++) {
            const float *pt = p + (base + mmg_boff(g, 1, u, str)) * rc;
            if (u == 0)
                memcpy(dt, pt, (size_t)rc * sizeof *dt);
            else
                for (int64_t i = 0; i < rc; i++)
                    dt[i] += pt[i];
        }
    }
}

static otl_status mmg_forward(otl_kctx *k)
{
    mmg_state *g = k->state;
    otl_rt *out = k->out[0];
    if (out->numel == 0)
        return OTL_OK;
    if (g->zero) {
        memset(out->data, 0, out->nbytes);
        return OTL_OK;
    }
    const void *dy = k->in[0]->data, *o = k->in[1]->data;
    const void *x1 = g->x1_dy ? dy : o, *x2 = g->x1_dy ? o : dy;
    if (k->in[0]->dtype == OTL_DTYPE_DOUBLE) {
        mmg_c(out->data, x1, x2, g);
        return OTL_OK;
    }
    otl_status st = OTL_OK;
    void *scratch = g->port_bytes ? nn_scratch_lock() : NULL;
    dnnl_memory_t m1 = g->m1, m2 = g->m2;
    if (g->bf16) {
        st = nn_port_bind(k, &g->p1, (void *)x1, scratch);
        if (!st)
            st = nn_port_bind(k, &g->p2, (void *)x2, scratch);
        m1 = g->p1.prim;
        m2 = g->p2.prim;
    } else {
        dnnl_memory_set_data_handle(g->m1, (void *)x1);
        dnnl_memory_set_data_handle(g->m2, (void *)x2);
    }
    dnnl_memory_set_data_handle(g->md, g->any_red ? (void *)g->scratch : out->data);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, m1}, {DNNL_ARG_WEIGHTS, m2}, {DNNL_ARG_DST, g->md}};
    if (!st)
        st = otl_dnnl_run(k, g->prim, 3, args);
    if (scratch)
        nn_scratch_unlock();
    if (!st && g->any_red)
        mmg_sum_scratch(out->data, g->scratch, g);
    return st;
}

static void mmg_release(otl_kctx *k)
{
    mmg_state *g = k->state;
    if (!g)
        return;
    if (g->prim)
        dnnl_primitive_destroy(g->prim);
    dnnl_memory_t mems[3] = {g->m1, g->m2, g->md};
    for (int i = 0; i < 3; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(g->scratch);
    nn_port_free(&g->p1);
    nn_port_free(&g->p2);
    if (g->reserved)
        nn_scratch_unreserve(g->port_bytes);
}

const otl_op otl_op_MatMulGrad = {
    .op_type = "MatMulGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = mmg_infer, .prepare = mmg_prepare, .forward = mmg_forward, .release = mmg_release,
};

/* ---------------------------------------------------------------- rules */

static int64_t node_int(const otl_node *n, const char *name, int64_t dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_INT ? a->i : dflt;
}

static float node_float(const otl_node *n, const char *name, float dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_FLOAT ? a->f : dflt;
}

/* d/d input wrt (0: A, 1: B) = MatMulGrad(dY, other operand, Shape(input wrt)). */
static otl_status mm_grad_operand(otl_gctx *c, int wrt, int64_t ta, int64_t tb, float alpha)
{
    const char *t = c->node->inputs[wrt];
    const char *shape = otl_gemit1(c, "", "Shape", 1, &t, NULL);
    const char *in[3] = {c->dy[0], c->node->inputs[1 - wrt], shape};
    otl_node *n = NULL;
    const char *d = shape ? otl_gemit1(c, OTL_GRAD_DOMAIN, "MatMulGrad", 3, in, &n) : NULL;
    otl_status st = OTL_OK;
    if (n) {
        st = otl_gattr_int(c, n, "wrt", wrt);
        if (!st && ta)
            st = otl_gattr_int(c, n, "transA", 1);
        if (!st && tb)
            st = otl_gattr_int(c, n, "transB", 1);
        if (!st && alpha != 1.0f)
            st = otl_gattr_float(c, n, "alpha", alpha);
    }
    otl_grad_set(c, wrt, d);
    return st;
}

static otl_status matmul_grad(otl_gctx *c)
{
    if (!c->dy[0])
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s': no output gradient", c->file, c->node->name);
    otl_status st = OTL_OK;
    for (int i = 0; i < 2 && !st; i++)
        if (c->need[i])
            st = mm_grad_operand(c, i, 0, 0, 1.0f);
    return st;
}

static otl_status gemm_grad(otl_gctx *c)
{
    const otl_node *n = c->node;
    if (!c->dy[0])
        return otl_error_set(c->err, OTL_ERR_INTERNAL, "%s: node '%s': no output gradient", c->file, n->name);
    int64_t ta = node_int(n, "transA", 0) != 0, tb = node_int(n, "transB", 0) != 0;
    float alpha = node_float(n, "alpha", 1.0f), beta = node_float(n, "beta", 1.0f);
    otl_status st = OTL_OK;
    for (int i = 0; i < 2 && !st; i++)
        if (c->need[i])
            st = mm_grad_operand(c, i, ta, tb, alpha);
    if (!st && c->n_in > 2 && c->need[2]) {
        const char *dc = otl_grad_unbroadcast(c, c->dy[0], 2);
        if (dc && beta != 1.0f) { /* onnx_tl.Scale (ops/elementwise_grad.c): any float dtype */
            otl_node *k;
            dc = otl_gemit1(c, OTL_GRAD_DOMAIN, "Scale", 1, &dc, &k);
            if (k && (st = otl_gattr_float(c, k, "scale", beta)))
                return st;
        }
        otl_grad_set(c, 2, dc);
    }
    return st;
}
