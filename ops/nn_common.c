/* nn_common.c - window geometry and oneDNN ports shared by the convolution and pooling ops
 * (see ops/nn_common.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ops/nn_common.h"

/* ------------------------------------------------------------ geometry */

otl_status nn_geom_attrs(otl_kctx *k, nn_geom *g, int has_dilations)
{
    int64_t v[2 * NN_MAX_SP];
    int n;
    otl_status st;
    for (int i = 0; i < g->nsp; i++) {
        g->s[i] = 1;
        g->d[i] = 1;
        g->pl[i] = g->pr[i] = 0;
    }
    if ((st = otl_attr_ints(k, "strides", v, NN_MAX_SP, &n)))
        return st;
    if (n >= 0) {
        if (n != g->nsp)
            return otl_kfail(k, OTL_ERR_INPUT, "strides has %d values, expected %d", n, g->nsp);
        for (int i = 0; i < n; i++) {
            if (v[i] < 1)
                return otl_kfail(k, OTL_ERR_INPUT, "strides must be >= 1, got %lld", (long long)v[i]);
            g->s[i] = v[i];
        }
    }
    if ((st = otl_attr_ints(k, "dilations", v, NN_MAX_SP, &n)))
        return st;
    if (n >= 0) {
        if (n != g->nsp)
            return otl_kfail(k, OTL_ERR_INPUT, "dilations has %d values, expected %d", n, g->nsp);
        for (int i = 0; i < n; i++) {
            if (v[i] < 1)
                return otl_kfail(k, OTL_ERR_INPUT, "dilations must be >= 1, got %lld", (long long)v[i]);
            if (v[i] != 1 && !has_dilations)
                return otl_kfail(k, OTL_ERR_INPUT, "dilations are not defined for this op at this opset");
            g->d[i] = v[i];
        }
    }
    const char *ap;
    if ((st = otl_attr_str(k, "auto_pad", "NOTSET", &ap)))
        return st;
    if (strcmp(ap, "NOTSET") == 0 || *ap == 0)
        g->auto_pad = NN_PAD_NOTSET;
    else if (strcmp(ap, "SAME_UPPER") == 0)
        g->auto_pad = NN_PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        g->auto_pad = NN_PAD_SAME_LOWER;
    else if (strcmp(ap, "VALID") == 0)
        g->auto_pad = NN_PAD_VALID;
    else
        return otl_kfail(k, OTL_ERR_INPUT, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    if ((st = otl_attr_ints(k, "pads", v, 2 * NN_MAX_SP, &n)))
        return st;
    if (n >= 0 && g->auto_pad == NN_PAD_NOTSET) {
        if (n != 2 * g->nsp)
            return otl_kfail(k, OTL_ERR_INPUT, "pads has %d values, expected %d", n, 2 * g->nsp);
        for (int i = 0; i < n; i++)
            if (v[i] < 0)
                return otl_kfail(k, OTL_ERR_UNSUPPORTED, "negative pads (%lld) are not supported", (long long)v[i]);
        for (int i = 0; i < g->nsp; i++) {
            g->pl[i] = v[i];
            g->pr[i] = v[g->nsp + i];
        }
    }
    return OTL_OK;
}

otl_status nn_geom_forward(otl_kctx *k, nn_geom *g, const int64_t *in)
{
    for (int i = 0; i < g->nsp; i++) {
        int64_t ext = nn_extent(g, i), s = g->s[i], o;
        g->in[i] = in[i];
        switch (g->auto_pad) {
        case NN_PAD_SAME_UPPER:
        case NN_PAD_SAME_LOWER: {
            o = (in[i] + s - 1) / s;
            int64_t total = (o - 1) * s + ext - in[i];
            if (total < 0)
                total = 0;
            g->pl[i] = g->auto_pad == NN_PAD_SAME_UPPER ? total / 2 : total - total / 2;
            g->pr[i] = total - g->pl[i];
            break;
        }
        case NN_PAD_VALID:
            g->pl[i] = g->pr[i] = 0;
            if (in[i] < ext)
                return otl_kfail(k, OTL_ERR_INPUT, "spatial axis %d: input size %lld is smaller than the kernel extent %lld",
                                 i, (long long)in[i], (long long)ext);
            o = (in[i] - ext) / s + 1;
            break;
        default: {
            int64_t span = in[i] + g->pl[i] + g->pr[i] - ext;
            if (span < 0)
                return otl_kfail(k, OTL_ERR_INPUT,
                                 "spatial axis %d: padded input size %lld is smaller than the kernel extent %lld", i,
                                 (long long)(in[i] + g->pl[i] + g->pr[i]), (long long)ext);
            o = (g->ceil_mode ? (span + s - 1) / s : span / s) + 1;
            if (g->ceil_mode && (o - 1) * s >= in[i] + g->pl[i])
                o--;
            break;
        }
        }
        g->out[i] = o;
    }
    return OTL_OK;
}

/* ------------------------------------------------------------ memory descriptors */

otl_status nn_md_dense(otl_kctx *k, int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d, s;
    int64_t acc = 1;
    if (rank < 1 || rank > DNNL_MAX_NDIMS)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "rank %d is not supported by oneDNN", rank);
    for (int i = rank - 1; i >= 0; i--) {
        d[i] = dims[i];
        s[i] = acc;
        acc *= dims[i] ? dims[i] : 1;
    }
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, rank, d, dt, s), "memory descriptor");
}

otl_status nn_md_src(otl_kctx *k, const otl_rt *v, int any, dnnl_memory_desc_t *md)
{
    if (v->blocked || !any)
        return otl_rt_md(k, v, md);
    return nn_md_dst(k, v->rank, v->dims, 1, md);
}

otl_status nn_md_dst(otl_kctx *k, int rank, const int64_t *dims, int any, dnnl_memory_desc_t *md)
{
    if (!any)
        return nn_md_dense(k, rank, dims, dnnl_f32, md);
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, rank, d, dnnl_f32, dnnl_format_tag_any), "memory descriptor");
}

otl_status nn_md_like(otl_kctx *k, const otl_rt *v, int rank, const int64_t *dims, dnnl_memory_desc_t *md)
{
    static const dnnl_format_tag_t tags[3][3] = {
        {dnnl_acb, dnnl_acdb, dnnl_acdeb},
        {dnnl_aBc16b, dnnl_aBcd16b, dnnl_aBcde16b},
        {dnnl_aBc8b, dnnl_aBcd8b, dnnl_aBcde8b},
    };
    if (v->blocked && v->rank == rank && rank >= 3 && rank <= 5) {
        dnnl_dims_t vd, d;
        for (int i = 0; i < rank; i++) {
            vd[i] = v->dims[i];
            d[i] = dims[i];
        }
        for (int t = 0; t < 3; t++) {
            dnnl_memory_desc_t cand;
            if (dnnl_memory_desc_init_by_tag(&cand, rank, vd, dnnl_f32, tags[t][rank - 3]) == dnnl_success &&
                dnnl_memory_desc_equal(&cand, &v->md))
                return otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(md, rank, d, dnnl_f32, tags[t][rank - 3]),
                                      "memory descriptor");
        }
    }
    return nn_md_dense(k, rank, dims, dnnl_f32, md);
}

/* ------------------------------------------------------------ shared scratch */

static struct {
    pthread_mutex_t mu;
    void *buf;
    size_t cap;
    int users;
} scratch = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

otl_status nn_scratch_reserve(otl_kctx *k, size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    pthread_mutex_lock(&scratch.mu);
    if (bytes > scratch.cap) {
        void *p = aligned_alloc(64, bytes);
        if (!p) {
            pthread_mutex_unlock(&scratch.mu);
            return otl_kfail(k, OTL_ERR_NOMEM, "cannot allocate %zu bytes of layout scratch", bytes);
        }
        free(scratch.buf);
        scratch.buf = p;
        scratch.cap = bytes;
    }
    scratch.users++;
    pthread_mutex_unlock(&scratch.mu);
    return OTL_OK;
}

void nn_scratch_unreserve(size_t bytes)
{
    (void)bytes;
    pthread_mutex_lock(&scratch.mu);
    if (--scratch.users == 0) {
        free(scratch.buf);
        scratch.buf = NULL;
        scratch.cap = 0;
    }
    pthread_mutex_unlock(&scratch.mu);
}

void *nn_scratch_lock(void)
{
    pthread_mutex_lock(&scratch.mu);
    return scratch.buf;
}

void nn_scratch_unlock(void)
{
    pthread_mutex_unlock(&scratch.mu);
}

/* ------------------------------------------------------------ ports */

otl_status nn_port_init(otl_kctx *k, nn_port *p, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *prim_md, int is_output, size_t *scratch_bytes)
{
    otl_status st;
    memset(p, 0, sizeof *p);
    p->is_output = is_output;
    if ((st = otl_dnnl_memory(k, user_md, NULL, &p->user)))
        return st;
    if (dnnl_memory_desc_equal(user_md, prim_md)) {
        p->prim = p->user;
        return OTL_OK;
    }
    if ((st = otl_dnnl_memory(k, prim_md, NULL, &p->prim)))
        return st;
    p->prim_bytes = dnnl_memory_desc_get_size(prim_md);
    p->scratch_off = *scratch_bytes;
    *scratch_bytes += (p->prim_bytes + 63) & ~(size_t)63;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = is_output ? prim_md : user_md, *to = is_output ? user_md : prim_md;
    if ((st = otl_dnnl_check(k, otl_reorder_pd_create(&rpd, from, k->eng->eng, to, k->eng->eng, NULL),
                             "layout reorder")))
        return st;
    st = otl_dnnl_primitive(k, rpd, &p->reorder, "layout reorder");
    dnnl_primitive_desc_destroy(rpd);
    return st;
}

otl_status nn_port_bind(otl_kctx *k, nn_port *p, void *data, void *scratch_buf)
{
    dnnl_memory_set_data_handle(p->user, data);
    if (!p->reorder)
        return OTL_OK;
    dnnl_memory_set_data_handle(p->prim, (char *)scratch_buf + p->scratch_off);
    if (p->is_output)
        return OTL_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->user}, {DNNL_ARG_TO, p->prim}};
    return otl_dnnl_run(k, p->reorder, 2, args);
}

otl_status nn_port_finish(otl_kctx *k, nn_port *p)
{
    if (!p->reorder || !p->is_output)
        return OTL_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, p->prim}, {DNNL_ARG_TO, p->user}};
    return otl_dnnl_run(k, p->reorder, 2, args);
}

void nn_port_free(nn_port *p)
{
    if (p->reorder)
        dnnl_primitive_destroy(p->reorder);
    if (p->prim && p->prim != p->user)
        dnnl_memory_destroy(p->prim);
    if (p->user)
        dnnl_memory_destroy(p->user);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ primitives */

otl_status nn_make_pd(otl_kctx *k, const void *op_desc, const dnnl_primitive_attr_t attr,
                      dnnl_primitive_desc_t *pd, const char *what)
{
    *pd = NULL;
    return otl_dnnl_check(k, otl_pd_create(pd, op_desc, attr, k->eng->eng, NULL), what);
}

otl_status nn_make_prim(otl_kctx *k, dnnl_primitive_desc_t pd, dnnl_primitive_t *prim, const char *what)
{
    return otl_dnnl_primitive(k, pd, prim, what);
}

int nn_pd_is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    if (!pd || dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
        return 0;
    return strncmp(impl, "ref", 3) == 0;
}

otl_status nn_reorder_once(otl_kctx *k, const dnnl_memory_desc_t *src_md, void *src,
                           const dnnl_memory_desc_t *dst_md, void *dst)
{
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t ms = NULL, md = NULL;
    otl_status st = otl_dnnl_check(k, otl_reorder_pd_create(&rpd, src_md, k->eng->eng, dst_md, k->eng->eng, NULL),
                                   "weights reorder");
    if (!st)
        st = otl_dnnl_primitive(k, rpd, &r, "weights reorder");
    if (!st)
        st = otl_dnnl_memory(k, src_md, src, &ms);
    if (!st)
        st = otl_dnnl_memory(k, dst_md, dst, &md);
    if (!st) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
        st = otl_dnnl_run(k, r, 2, args);
    }
    if (md)
        dnnl_memory_destroy(md);
    if (ms)
        dnnl_memory_destroy(ms);
    if (r)
        dnnl_primitive_destroy(r);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    return st;
}
