/* nn_common.h - shared by the convolution and pooling ops (ops/conv.c, ops/conv_transpose.c,
 * ops/pool.c, ops/batchnorm.c): window geometry from ONNX attributes (kernel, strides,
 * dilations, pads, auto_pad, ceil_mode) and oneDNN "ports" that connect a plain executor buffer
 * to a primitive argument, reordering when the primitive prefers another layout. */
#ifndef OTL_NN_COMMON_H
#define OTL_NN_COMMON_H

#include "ops/op.h"

#define NN_MAX_SP (OTL_MAX_RANK - 2) /* spatial dimensions */

enum { NN_PAD_NOTSET, NN_PAD_SAME_UPPER, NN_PAD_SAME_LOWER, NN_PAD_VALID };

/* Window geometry of a convolution or pooling over nsp spatial dimensions. */
typedef struct nn_geom {
    int nsp;
    int auto_pad;                 /* NN_PAD_* */
    int ceil_mode;
    int64_t k[NN_MAX_SP];         /* kernel */
    int64_t s[NN_MAX_SP];         /* strides */
    int64_t d[NN_MAX_SP];         /* dilations (1 = dense) */
    int64_t pl[NN_MAX_SP];        /* padding at the start */
    int64_t pr[NN_MAX_SP];        /* padding at the end (after auto_pad/ceil resolution) */
    int64_t in[NN_MAX_SP];        /* input spatial size */
    int64_t out[NN_MAX_SP];       /* output spatial size */
} nn_geom;

/* Read strides, dilations, pads and auto_pad (kernel already in g->k, g->nsp set). Attributes
 * absent default to 1 / 1 / 0 / NOTSET; `has_dilations` = 0 rejects a dilations attribute
 * (ops whose opset has none). */
otl_status nn_geom_attrs(otl_kctx *k, nn_geom *g, int has_dilations);
/* Output sizes of a convolution/pooling window for input spatial sizes `in` (sets g->in,
 * g->out, and resolves g->pl/g->pr for auto_pad and ceil_mode). ceil_mode follows PyTorch and
 * ONNX >= 1.16: a window that would start in the end padding is dropped. */
otl_status nn_geom_forward(otl_kctx *k, nn_geom *g, const int64_t *in);
/* Kernel extent (k - 1) * d + 1 of spatial axis i. */
static inline int64_t nn_extent(const nn_geom *g, int i)
{
    return (g->k[i] - 1) * g->d[i] + 1;
}

/* A memory descriptor over dims with C-order strides (any rank up to DNNL_MAX_NDIMS). */
otl_status nn_md_dense(otl_kctx *k, int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md);
/* The one place that decides activation layouts. The descriptor to request for an input
 * value: its own blocked layout when the executor hands it blocked (OTL_OPF_ANY_LAYOUT ops),
 * else format_tag_any when `any` (the primitive picks and the op reorders the plain data
 * inside; see nn_port) or the plain layout. */
otl_status nn_md_src(otl_kctx *k, const otl_rt *v, int any, dnnl_memory_desc_t *md);
/* The descriptor to request for an output of dims (format_tag_any or plain). The op then
 * publishes the primitive's choice with otl_rt_set_md. */
otl_status nn_md_dst(otl_kctx *k, int rank, const int64_t *dims, int any, dnnl_memory_desc_t *md);

/* A descriptor over dims in the same layout family as value v (channels-last, 16c or 8c
 * blocked), for a gradient that should look like another value; plain when v is plain or in
 * another layout. */
otl_status nn_md_like(otl_kctx *k, const otl_rt *v, int rank, const int64_t *dims, dnnl_memory_desc_t *md);

/* A primitive argument bound to an executor buffer. When the primitive's layout differs from
 * the plain one, `reorder` converts between them through a scratch buffer shared by all ports
 * (sized at init; only valid during one forward call). */
typedef struct nn_port {
    dnnl_memory_t user;           /* the executor's buffer, in its layout */
    dnnl_memory_t prim;           /* in the primitive's layout (== user when no reorder) */
    dnnl_primitive_t reorder;     /* user->prim for inputs, prim->user for outputs, or NULL */
    size_t scratch_off;           /* offset of this port's buffer in the shared scratch */
    size_t prim_bytes;
    int is_output;
} nn_port;

/* Init a port: user_md is the executor's layout of the value (otl_rt_md), prim_md what the
 * primitive's pd reports.
 * *scratch_bytes accumulates the scratch this port needs (pass the same counter to all ports of
 * one primitive). */
otl_status nn_port_init(otl_kctx *k, nn_port *p, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *prim_md, int is_output, size_t *scratch_bytes);
/* Scratch: nn_scratch_reserve(bytes) at prepare (paired with nn_scratch_unreserve at release);
 * nn_scratch_lock returns the shared buffer for the duration of one forward call. */
otl_status nn_scratch_reserve(otl_kctx *k, size_t bytes);
void nn_scratch_unreserve(size_t bytes);
void *nn_scratch_lock(void);
void nn_scratch_unlock(void);
/* Bind the port to the executor buffer and scratch; for an input, run the reorder. */
otl_status nn_port_bind(otl_kctx *k, nn_port *p, void *data, void *scratch);
/* For an output: reorder the primitive's result into the executor buffer. */
otl_status nn_port_finish(otl_kctx *k, nn_port *p);
void nn_port_free(nn_port *p);

/* Create a primitive from a descriptor (op_desc is any dnnl_*_desc_t). On success *pd is kept
 * (caller destroys it). */
otl_status nn_make_pd(otl_kctx *k, const void *op_desc, const dnnl_primitive_attr_t attr,
                      dnnl_primitive_desc_t *pd, const char *what);
otl_status nn_make_prim(otl_kctx *k, dnnl_primitive_desc_t pd, dnnl_primitive_t *prim, const char *what);
/* 1 when oneDNN picked its slow reference implementation for pd ("ref:..."). */
int nn_pd_is_ref(const_dnnl_primitive_desc_t pd);
/* Reorder between two memory descriptors once (src -> dst buffers). */
otl_status nn_reorder_once(otl_kctx *k, const dnnl_memory_desc_t *src_md, void *src,
                           const dnnl_memory_desc_t *dst_md, void *dst);

#endif
