/* kernel_util.c - helpers every op file uses: errors naming the node, attribute access with
 * type checks, shape setting, const inputs, oneDNN glue, generic element access. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

otl_status otl_kfail(otl_kctx *k, otl_status code, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return otl_error_set(k->err, code, "%s: node '%s' (%s-%lld): %s", k->file ? k->file : "(model)",
                         k->node->name, k->node->op_type, (long long)k->opset, msg);
}

otl_status otl_rt_set(otl_kctx *k, otl_rt *v, int dtype, int rank, const int64_t *dims)
{
    if (!v)
        return OTL_OK;
    if (rank < 0 || rank > OTL_MAX_RANK)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output '%s': rank %d exceeds the supported %d",
                         v->name, rank, OTL_MAX_RANK);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "output '%s': negative dimension %lld", v->name,
                             (long long)dims[i]);
        if (dims[i] && n > (((int64_t)1 << 40) - 1) / dims[i])
            return otl_kfail(k, OTL_ERR_INPUT, "output '%s': 2^40 elements or more, refused", v->name);
        n *= dims[i];
        v->dims[i] = dims[i];
    }
    int64_t nb = otl_dtype_nbytes(dtype, n);
    if (nb < 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "output '%s': dtype %s is not supported", v->name,
                         otl_dtype_name(dtype));
    v->dtype = dtype;
    v->blocked = 0;
    v->rank = rank;
    v->numel = n;
    v->nbytes = (size_t)nb;
    v->shape_known = 1;
    return OTL_OK;
}

otl_status otl_rt_set_md(otl_kctx *k, otl_rt *v, int dtype, int rank, const int64_t *dims,
                         const dnnl_memory_desc_t *md)
{
    otl_status st = otl_rt_set(k, v, dtype, rank, dims);
    if (st || !v)
        return st;
    dnnl_memory_desc_t plain;
    if ((st = otl_md_plain(k, v, &plain)))
        return st;
    v->blocked = !dnnl_memory_desc_equal(&plain, md);
    if (v->blocked) {
        v->md = *md;
        v->nbytes = dnnl_memory_desc_get_size(md);
    }
    return OTL_OK;
}

otl_status otl_rt_md(otl_kctx *k, const otl_rt *v, dnnl_memory_desc_t *md)
{
    if (v->blocked) {
        *md = v->md;
        return OTL_OK;
    }
    return otl_md_plain(k, v, md);
}

otl_status otl_rt_like(otl_kctx *k, otl_rt *v, const otl_rt *like)
{
    return otl_rt_set(k, v, like->dtype, like->rank, like->dims);
}

static const otl_attr *find_attr(otl_kctx *k, const char *name, int type, otl_status *st)
{
    *st = OTL_OK;
    const otl_attr *a = otl_node_attr(k->node, name);
    if (!a)
        return NULL;
    if (a->type != type) {
        *st = otl_kfail(k, OTL_ERR_INPUT, "attribute '%s' has type %d, expected %d", name, a->type, type);
        return NULL;
    }
    return a;
}

otl_status otl_attr_int(otl_kctx *k, const char *name, int64_t dflt, int64_t *out)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_INT, &st);
    *out = a ? a->i : dflt;
    return st;
}

otl_status otl_attr_float(otl_kctx *k, const char *name, float dflt, float *out)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_FLOAT, &st);
    *out = a ? a->f : dflt;
    return st;
}

otl_status otl_attr_str(otl_kctx *k, const char *name, const char *dflt, const char **out)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_STRING, &st);
    *out = a && a->s.data ? (const char *)a->s.data : (a ? "" : dflt);
    return st;
}

otl_status otl_attr_ints(otl_kctx *k, const char *name, int64_t *out, int max, int *n)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_INTS, &st);
    *n = -1;
    if (!a)
        return st;
    if (a->n_ints > (size_t)max)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "attribute '%s' has %zu values (at most %d supported)",
                         name, a->n_ints, max);
    *n = (int)a->n_ints;
    if (a->n_ints)
        memcpy(out, a->ints, a->n_ints * sizeof *out);
    return OTL_OK;
}

otl_status otl_attr_floats(otl_kctx *k, const char *name, float *out, int max, int *n)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_FLOATS, &st);
    *n = -1;
    if (!a)
        return st;
    if (a->n_floats > (size_t)max)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "attribute '%s' has %zu values (at most %d supported)",
                         name, a->n_floats, max);
    *n = (int)a->n_floats;
    if (a->n_floats)
        memcpy(out, a->floats, a->n_floats * sizeof *out);
    return OTL_OK;
}

otl_status otl_attr_tensor(otl_kctx *k, const char *name, const otl_tensor **out)
{
    otl_status st;
    const otl_attr *a = find_attr(k, name, OTL_ATTR_TENSOR, &st);
    *out = a ? a->t : NULL;
    return st;
}

otl_status otl_check_in(otl_kctx *k, int i, const int *dtypes)
{
    if (!otl_has_in(k, i))
        return otl_kfail(k, OTL_ERR_INPUT, "required input %d is missing", i);
    const otl_rt *v = k->in[i];
    if (!dtypes)
        return OTL_OK;
    for (const int *d = dtypes; *d; d++)
        if (*d == v->dtype)
            return OTL_OK;
    return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s': dtype %s is not supported", i, v->name,
                     otl_dtype_name(v->dtype));
}

otl_status otl_const_ints(otl_kctx *k, int i, int64_t *out, int max, int *n)
{
    *n = 0;
    static const int ints[] = {OTL_DTYPE_INT64, OTL_DTYPE_INT32, 0};
    otl_status st = otl_check_in(k, i, ints);
    if (st)
        return st;
    const otl_rt *v = k->in[i];
    if (!v->is_const)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED,
                         "input %d '%s' must be known before the run (a constant or computed from shapes); data-dependent values are not supported",
                         i, v->name);
    if (v->numel > max)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input %d '%s' has %lld values (at most %d supported)",
                         i, v->name, (long long)v->numel, max);
    for (int64_t j = 0; j < v->numel; j++)
        out[j] = otl_get_i(v->data, v->dtype, j);
    *n = (int)v->numel;
    return OTL_OK;
}

otl_status otl_shape_rt(otl_kctx *k, int i, int dtype, otl_rt *v)
{
    memset(v, 0, sizeof *v);
    int n;
    otl_status st = otl_const_ints(k, i, v->dims, OTL_MAX_RANK, &n);
    if (st)
        return st;
    v->name = k->in[i]->name;
    v->dtype = dtype;
    v->rank = n;
    v->numel = 1;
    for (int d = 0; d < n; d++) {
        if (v->dims[d] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "shape input '%s' has a negative dimension", v->name);
        v->numel *= v->dims[d];
    }
    v->shape_known = 1;
    return OTL_OK;
}

otl_status otl_axis(otl_kctx *k, int64_t axis, int rank, int *out)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= (rank ? rank : 1))
        return otl_kfail(k, OTL_ERR_INPUT, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)a;
    return OTL_OK;
}

/* ------------------------------------------------------------ oneDNN */

otl_status otl_md_plain(otl_kctx *k, const otl_rt *v, dnnl_memory_desc_t *md)
{
    dnnl_data_type_t dt;
    switch (v->dtype) {
    case OTL_DTYPE_FLOAT: dt = dnnl_f32; break;
    case OTL_DTYPE_INT32: dt = dnnl_s32; break;
    case OTL_DTYPE_INT8: dt = dnnl_s8; break;
    case OTL_DTYPE_UINT8: dt = dnnl_u8; break;
    case OTL_DTYPE_BFLOAT16: dt = dnnl_bf16; break;
    case OTL_DTYPE_FLOAT16: dt = dnnl_f16; break;
    default:
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "value '%s': dtype %s has no oneDNN equivalent",
                         v->name, otl_dtype_name(v->dtype));
    }
    dnnl_dims_t dims, strides;
    int rank = v->rank ? v->rank : 1;
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        dims[i] = v->rank ? v->dims[i] : 1;
        strides[i] = s;
        s *= dims[i] ? dims[i] : 1;
    }
    return otl_dnnl_check(k, dnnl_memory_desc_init_by_strides(md, rank, dims, dt, strides),
                          "memory descriptor");
}

otl_status otl_dnnl_check(otl_kctx *k, dnnl_status_t s, const char *what)
{
    if (s == dnnl_success)
        return OTL_OK;
    if (s == dnnl_unimplemented)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "oneDNN has no implementation for this %s", what);
    if (s == dnnl_out_of_memory)
        return otl_kfail(k, OTL_ERR_NOMEM, "oneDNN out of memory (%s)", what);
    return otl_kfail(k, OTL_ERR_INTERNAL, "oneDNN error %d (%s)", (int)s, what);
}

otl_status otl_dnnl_memory(otl_kctx *k, const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *out)
{
    return otl_dnnl_check(k, dnnl_memory_create(out, md, k->eng->eng, data ? data : DNNL_MEMORY_NONE),
                          "memory object");
}

/* attr (or a default one) cloned into the user scratchpad mode; *own is set to destroy it.
 * OTL_SCRATCH_LIBRARY=1 (tests only) keeps oneDNN's library mode, as before the shared scratchpad:
 * tests/scratch compares the two, and checks that OTL_SCRATCH_CHECK=1 catches it. */
static dnnl_status_t user_scratch_attr(const_dnnl_primitive_attr_t attr, dnnl_primitive_attr_t *own)
{
    dnnl_status_t r = attr ? dnnl_primitive_attr_clone(own, attr) : dnnl_primitive_attr_create(own);
    if (r != dnnl_success)
        return r;
    const char *lib = getenv("OTL_SCRATCH_LIBRARY");
    if (lib && strcmp(lib, "1") == 0)
        return dnnl_success;
    r = dnnl_primitive_attr_set_scratchpad_mode(*own, dnnl_scratchpad_mode_user);
    if (r != dnnl_success) {
        dnnl_primitive_attr_destroy(*own);
        *own = NULL;
    }
    return r;
}

dnnl_status_t otl_pd_create(dnnl_primitive_desc_t *pd, const_dnnl_op_desc_t d, const_dnnl_primitive_attr_t attr,
                            dnnl_engine_t eng, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_attr_t a = NULL;
    dnnl_status_t r = user_scratch_attr(attr, &a);
    if (r != dnnl_success)
        return r;
    r = dnnl_primitive_desc_create(pd, d, a, eng, hint);
    dnnl_primitive_attr_destroy(a);
    return r;
}

dnnl_status_t otl_reorder_pd_create(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *src, dnnl_engine_t src_eng,
                                    const dnnl_memory_desc_t *dst, dnnl_engine_t dst_eng,
                                    const_dnnl_primitive_attr_t attr)
{
    dnnl_primitive_attr_t a = NULL;
    dnnl_status_t r = user_scratch_attr(attr, &a);
    if (r != dnnl_success)
        return r;
    r = dnnl_reorder_primitive_desc_create(pd, src, src_eng, dst, dst_eng, a);
    dnnl_primitive_attr_destroy(a);
    return r;
}

void otl_engine_scratch_free(otl_engine *e)
{
    if (e->scratch_mem)
        dnnl_memory_destroy(e->scratch_mem);
    free(e->scratch);
    e->scratch = NULL;
    e->scratch_mem = NULL;
    e->scratch_size = 0;
}

/* The engine's scratchpad memory, at least `need` bytes: grown here when a primitive is created
 * (otl_dnnl_primitive), or at the first run of one created otherwise; never by later runs. */
static otl_status scratch_reserve(otl_kctx *k, size_t need)
{
    otl_engine *e = k->eng;
    if (need > e->scratch_need)
        e->scratch_need = need;
    if (e->scratch_mem && need <= e->scratch_size)
        return OTL_OK;
    size_t size = need > e->scratch_size ? need : e->scratch_size;
    size = (size + 4095) & ~(size_t)4095;
    void *buf = aligned_alloc(4096, size);
    if (!buf)
        return otl_kfail(k, OTL_ERR_NOMEM, "cannot allocate a %zu-byte oneDNN scratchpad", size);
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {(dnnl_dim_t)size};
    dnnl_memory_t mem = NULL;
    otl_status st = otl_dnnl_check(k, dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_u8, dnnl_a), "scratchpad");
    if (!st)
        st = otl_dnnl_check(k, dnnl_memory_create(&mem, &md, e->eng, buf), "scratchpad");
    if (st) {
        free(buf);
        return st;
    }
    otl_engine_scratch_free(e);
    e->scratch = buf;
    e->scratch_size = size;
    e->scratch_mem = mem;
    return OTL_OK;
}

static int scratch_check_env(void)
{
    const char *chk = getenv("OTL_SCRATCH_CHECK");
    return chk && strcmp(chk, "1") == 0;
}

/* pd's scratchpad mode (*user: the user mode) and the bytes of scratchpad it needs in that mode. */
static otl_status pd_scratch(otl_kctx *k, const_dnnl_primitive_desc_t pd, int *user, size_t *need)
{
    const_dnnl_primitive_attr_t attr = NULL;
    dnnl_scratchpad_mode_t mode = dnnl_scratchpad_mode_library;
    otl_status st = otl_dnnl_check(k, dnnl_primitive_desc_get_attr(pd, &attr), "primitive attributes");
    if (!st)
        st = otl_dnnl_check(k, dnnl_primitive_attr_get_scratchpad_mode(attr, &mode), "scratchpad mode");
    if (st)
        return st;
    *user = mode == dnnl_scratchpad_mode_user;
    const dnnl_memory_desc_t *smd = *user ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    *need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    return OTL_OK;
}

otl_status otl_dnnl_primitive(otl_kctx *k, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *p, const char *what)
{
    int user = 0;
    size_t need = 0;
    otl_status st = pd_scratch(k, pd, &user, &need);
    if (st)
        return st;
    otl_engine *e = k->eng;
    if (!user) {
        e->n_library_prims++;
        if (scratch_check_env())
            return otl_kfail(k, OTL_ERR_INTERNAL, "%s: a oneDNN primitive in library scratchpad mode "
                             "(OTL_SCRATCH_CHECK=1)", what);
    } else if (need > 0 && (st = scratch_reserve(k, need))) {
        return st;
    }
    if ((st = otl_dnnl_check(k, dnnl_primitive_create(p, pd), what)))
        return st;
    if (user && need > 0)
        e->n_scratch_prims++;
    return OTL_OK;
}

otl_status otl_dnnl_run(otl_kctx *k, dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args)
{
    const_dnnl_primitive_desc_t pd = NULL;
    int user = 0;
    size_t need = 0;
    otl_status st = otl_dnnl_check(k, dnnl_primitive_get_primitive_desc(p, &pd), "primitive descriptor");
    if (!st)
        st = pd_scratch(k, pd, &user, &need);
    if (st)
        return st;
    dnnl_exec_arg_t all[32];
    if (user) {
        if (need > 0) {
            if (nargs >= 32)
                return otl_kfail(k, OTL_ERR_INTERNAL, "a primitive with %d arguments", nargs);
            if ((st = scratch_reserve(k, need)))
                return st;
            k->eng->n_scratch_runs++;
            memcpy(all, args, (size_t)nargs * sizeof *args);
            all[nargs].arg = DNNL_ARG_SCRATCHPAD;
            all[nargs].memory = k->eng->scratch_mem;
            args = all;
            nargs++;
        }
    } else {
        k->eng->n_library_runs++;
        if (scratch_check_env())
            return otl_kfail(k, OTL_ERR_INTERNAL,
                             "a oneDNN primitive in library scratchpad mode (OTL_SCRATCH_CHECK=1)");
    }
    st = otl_dnnl_check(k, dnnl_primitive_execute(p, k->eng->stream, nargs, args), "execution");
    if (st)
        return st;
    return otl_dnnl_check(k, dnnl_stream_wait(k->eng->stream), "stream wait");
}

/* ------------------------------------------------------------ generic element access */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, f;
    if (exp == 0) {
        if (man == 0) {
            f = sign;
        } else { /* subnormal */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            f = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        f = sign | 0x7f800000 | (man << 13);
    } else {
        f = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float r;
    memcpy(&r, &f, 4);
    return r;
}

static uint16_t float_to_half(float x)
{
    uint32_t f;
    memcpy(&f, &x, 4);
    uint32_t sign = (f >> 16) & 0x8000;
    int32_t exp = (int32_t)((f >> 23) & 0xff) - 127 + 15;
    uint32_t man = f & 0x7fffff;
    if (((f >> 23) & 0xff) == 0xff) /* inf/nan */
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)h;
}

double otl_get_f(const void *data, int dtype, int64_t i)
{
    switch (dtype) {
    case OTL_DTYPE_FLOAT: return ((const float *)data)[i];
    case OTL_DTYPE_DOUBLE: return ((const double *)data)[i];
    case OTL_DTYPE_FLOAT16: return half_to_float(((const uint16_t *)data)[i]);
    case OTL_DTYPE_BFLOAT16: {
        uint32_t u = (uint32_t)((const uint16_t *)data)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case OTL_DTYPE_UINT64: return (double)((const uint64_t *)data)[i];
    default: return (double)otl_get_i(data, dtype, i);
    }
}

/* double -> int64 without undefined behaviour: NaN gives 0, out-of-range values saturate. */
static int64_t sat_i64(double f)
{
    if (f != f)
        return 0;
    if (f >= 9223372036854775807.0)
        return INT64_MAX;
    if (f <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)f;
}

int64_t otl_get_i(const void *data, int dtype, int64_t i)
{
    switch (dtype) {
    case OTL_DTYPE_INT64: return ((const int64_t *)data)[i];
    case OTL_DTYPE_INT32: return ((const int32_t *)data)[i];
    case OTL_DTYPE_INT16: return ((const int16_t *)data)[i];
    case OTL_DTYPE_INT8: return ((const int8_t *)data)[i];
    case OTL_DTYPE_UINT8: return ((const uint8_t *)data)[i];
    case OTL_DTYPE_UINT16: return ((const uint16_t *)data)[i];
    case OTL_DTYPE_UINT32: return ((const uint32_t *)data)[i];
    case OTL_DTYPE_UINT64: return (int64_t)((const uint64_t *)data)[i];
    case OTL_DTYPE_BOOL: return ((const uint8_t *)data)[i] != 0;
    default: return sat_i64(otl_get_f(data, dtype, i));
    }
}

void otl_set_f(void *data, int dtype, int64_t i, double v)
{
    switch (dtype) {
    case OTL_DTYPE_FLOAT: ((float *)data)[i] = (float)v; break;
    case OTL_DTYPE_DOUBLE: ((double *)data)[i] = v; break;
    case OTL_DTYPE_FLOAT16: ((uint16_t *)data)[i] = float_to_half((float)v); break;
    case OTL_DTYPE_BFLOAT16: {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        if ((u & 0x7fffffff) > 0x7f800000)
            u = 0x7fc00000; /* NaN */
        else
            u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
        ((uint16_t *)data)[i] = (uint16_t)(u >> 16);
        break;
    }
    case OTL_DTYPE_BOOL: ((uint8_t *)data)[i] = v != 0; break;
    default: otl_set_i(data, dtype, i, sat_i64(v));
    }
}

void otl_set_i(void *data, int dtype, int64_t i, int64_t v)
{
    switch (dtype) {
    case OTL_DTYPE_INT64: ((int64_t *)data)[i] = v; break;
    case OTL_DTYPE_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case OTL_DTYPE_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case OTL_DTYPE_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case OTL_DTYPE_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case OTL_DTYPE_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case OTL_DTYPE_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
    case OTL_DTYPE_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
    case OTL_DTYPE_BOOL: ((uint8_t *)data)[i] = v != 0; break;
    default: otl_set_f(data, dtype, i, (double)v);
    }
}
