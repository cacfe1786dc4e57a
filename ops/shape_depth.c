/* shape_depth.c - DepthToSpace (DCR and CRD modes) and SpaceToDepth: a 6-D transpose between
 * two reshapes, as one strided copy; any fixed-size dtype. Differentiable input: input (its
 * gradient is the inverse rearrangement of the output gradient: SpaceToDepth for DCR, the private
 * onnx_tl.DepthToSpaceGrad (the same copy with the strides swapped) for CRD; DepthToSpace in DCR
 * mode for SpaceToDepth). */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

typedef struct depth_state {
    int64_t b;
    int crd;
    size_t esz;
} depth_state;

static otl_status depth_common(otl_kctx *k, depth_state **out)
{
    otl_status st;
    size_t esz;
    if ((st = otl_movable(k, 0, &esz)))
        return st;
    depth_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->esz = esz;
    if ((st = otl_attr_int(k, "blocksize", 0, &s->b)))
        return st;
    if (s->b < 1 || s->b > 65536)
        return otl_kfail(k, OTL_ERR_INPUT, "blocksize %lld is invalid", (long long)s->b);
    if (k->in[0]->rank != 4)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "input must have rank 4 (N, C, H, W), got %d", k->in[0]->rank);
    *out = s;
    return OTL_OK;
}

/* ---------------------------------------------------------------- DepthToSpace */

static otl_status d2s_infer(otl_kctx *k)
{
    otl_status st;
    depth_state *s;
    if ((st = depth_common(k, &s)))
        return st;
    const char *mode = "DCR";
    if (k->opset >= 11 && (st = otl_attr_str(k, "mode", "DCR", &mode)))
        return st;
    if (strcmp(mode, "CRD") == 0)
        s->crd = 1;
    else if (strcmp(mode, "DCR") != 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);
    const int64_t *d = k->in[0]->dims;
    if (d[1] % (s->b * s->b))
        return otl_kfail(k, OTL_ERR_INPUT, "channels (%lld) are not divisible by blocksize^2 (%lld)", (long long)d[1],
                         (long long)(s->b * s->b));
    int64_t dims[4] = {d[0], d[1] / (s->b * s->b), d[2] * s->b, d[3] * s->b};
    return otl_rt_set(k, k->out[0], k->in[0]->dtype, 4, dims);
}

/* The copy box of DepthToSpace on an input of dims d: output strides os, input strides ss. */
static void d2s_layout(const depth_state *s, const int64_t *d, int64_t *od, int64_t *os, int64_t *ss)
{
    int64_t b = s->b, N = d[0], C = d[1] / (b * b), H = d[2], W = d[3];
    /* output viewed as (N, C, H, b1, W, b2); source strides in the input (N, C*b*b, H, W) */
    od[0] = N;
    od[1] = C;
    od[2] = H;
    od[3] = b;
    od[4] = W;
    od[5] = b;
    otl_strides_c(6, od, os);
    int64_t HW = H * W;
    ss[0] = C * b * b * HW;
    ss[2] = W;
    ss[4] = 1;
    if (s->crd) { /* channel c*b*b + b1*b + b2 */
        ss[1] = b * b * HW;
        ss[3] = b * HW;
        ss[5] = HW;
    } else { /* DCR: channel b1*b*C + b2*C + c */
        ss[1] = HW;
        ss[3] = b * C * HW;
        ss[5] = C * HW;
    }
}

static otl_status d2s_fwd(otl_kctx *k)
{
    depth_state *s = k->state;
    int64_t od[6], os[6], ss[6];
    d2s_layout(s, k->in[0]->dims, od, os, ss);
    otl_copy_strided(k->out[0]->data, os, k->in[0]->data, ss, 6, od, s->esz);
    return OTL_OK;
}

/* DCR: SpaceToDepth(dY); CRD: DepthToSpaceGrad(dY). Both with the forward's attributes. */
static otl_status d2s_grad(otl_gctx *c)
{
    const otl_attr *m = c->opset >= 11 ? otl_node_attr(c->node, "mode") : NULL;
    int crd = m && m->type == OTL_ATTR_STRING && m->s.len == 3 && memcmp(m->s.data, "CRD", 3) == 0;
    const char *in[1] = {c->dy[0]};
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, crd ? OTL_GRAD_DOMAIN : "", crd ? "DepthToSpaceGrad" : "SpaceToDepth", 1, in, &n);
    const otl_attr *b = otl_node_attr(c->node, "blocksize");
    otl_status st = OTL_OK;
    if (dx && crd)
        st = otl_gattr_copy(c, n);
    else if (dx)
        st = otl_gattr_int(c, n, "blocksize", b && b->type == OTL_ATTR_INT ? b->i : 0);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_DepthToSpace = {
    .op_type = "DepthToSpace", .domain = "", .since = 1, .until = 22,
    .infer = d2s_infer, .forward = d2s_fwd, .grad_inputs = 1, .grad = d2s_grad,
};

/* ---------------------------------------------------------------- SpaceToDepth */

static otl_status s2d_infer(otl_kctx *k)
{
    otl_status st;
    depth_state *s;
    if ((st = depth_common(k, &s)))
        return st;
    const int64_t *d = k->in[0]->dims;
    if (d[2] % s->b || d[3] % s->b)
        return otl_kfail(k, OTL_ERR_INPUT, "height %lld and width %lld must be divisible by blocksize %lld",
                         (long long)d[2], (long long)d[3], (long long)s->b);
    int64_t dims[4] = {d[0], d[1] * s->b * s->b, d[2] / s->b, d[3] / s->b};
    return otl_rt_set(k, k->out[0], k->in[0]->dtype, 4, dims);
}

static otl_status s2d_fwd(otl_kctx *k)
{
    depth_state *s = k->state;
    const int64_t *d = k->in[0]->dims;
    int64_t b = s->b, N = d[0], C = d[1], H = d[2] / b, W = d[3] / b;
    /* output (N, b1, b2, C, H, W): channel b1*b*C + b2*C + c; source (N, C, H*b, W*b) */
    int64_t od[6] = {N, b, b, C, H, W}, os[6], ss[6];
    otl_strides_c(6, od, os);
    int64_t Wf = W * b;
    ss[0] = C * H * b * Wf;
    ss[1] = Wf;
    ss[2] = 1;
    ss[3] = H * b * Wf;
    ss[4] = b * Wf;
    ss[5] = b;
    otl_copy_strided(k->out[0]->data, os, k->in[0]->data, ss, 6, od, s->esz);
    return OTL_OK;
}

/* DepthToSpace(dY) in DCR mode, the inverse of SpaceToDepth's arrangement. */
static otl_status s2d_grad(otl_gctx *c)
{
    const char *in[1] = {c->dy[0]};
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, "", "DepthToSpace", 1, in, &n);
    const otl_attr *b = otl_node_attr(c->node, "blocksize");
    otl_status st = dx ? otl_gattr_int(c, n, "blocksize", b && b->type == OTL_ATTR_INT ? b->i : 0) : OTL_OK;
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_SpaceToDepth = {
    .op_type = "SpaceToDepth", .domain = "", .since = 1, .until = 22,
    .infer = s2d_infer, .forward = s2d_fwd, .grad_inputs = 1, .grad = s2d_grad,
};

/* ---------------------------------------------------------------- DepthToSpaceGrad (onnx_tl) */

/* DepthToSpaceGrad(dY) with DepthToSpace's attributes: dX (N, C*b*b, H, W) from dY (N, C, H*b,
 * W*b), DepthToSpace's copy run backwards. Shape as SpaceToDepth's. */
static otl_status d2s_grad_infer(otl_kctx *k)
{
    otl_status st = s2d_infer(k);
    const char *mode;
    if (!st)
        st = otl_attr_str(k, "mode", "DCR", &mode);
    if (!st) {
        depth_state *s = k->state;
        s->crd = strcmp(mode, "CRD") == 0;
        if (!s->crd && strcmp(mode, "DCR") != 0)
            st = otl_kfail(k, OTL_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);
    }
    return st;
}

static otl_status d2s_grad_fwd(otl_kctx *k)
{
    depth_state *s = k->state;
    int64_t od[6], os[6], ss[6];
    d2s_layout(s, k->out[0]->dims, od, os, ss);
    otl_copy_strided(k->out[0]->data, ss, k->in[0]->data, os, 6, od, s->esz);
    return OTL_OK;
}

const otl_op otl_op_DepthToSpaceGrad = {
    .op_type = "DepthToSpaceGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = d2s_grad_infer, .forward = d2s_grad_fwd,
};
