/* quantize_dynamic.c - dynamic INT8 quantization (`export --quantize int8-dynamic`, see
 * include/onnxtl_export.h), as ONNX Runtime's quantize_dynamic: weights stored as int8, activations
 * quantized at run time. No calibration data. Each MatMul X W / Gemm (transA 0) with a float
 * initializer weight becomes
 *   DynamicQuantizeLinear(X) -> (Xq uint8, Xs, Xz)        (one per activation, shared)
 *   MatMulInteger(Xq, Wq int8 (K, N), Xz) -> int32
 *   Cast(to float) -> Mul(., Mul(Xs, Ws)) [-> Add(., bias)] -> the node's original output
 * with Ws the symmetric weight scales per output column (or one per tensor); Gemm's alpha is
 * folded into Ws and beta into the bias. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/util.h"

static int64_t attr_i(const otl_node *n, const char *name, int64_t dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_INT ? a->i : dflt;
}

static float attr_f(const otl_node *n, const char *name, float dflt)
{
    const otl_attr *a = otl_node_attr(n, name);
    return a && a->type == OTL_ATTR_FLOAT ? a->f : dflt;
}

/* The quantizable shape of n: MatMul(X, W) or Gemm(X, W[, C]) with transA 0, W a float (K, N)
 * initializer ((N, K) with transB), C absent or a float initializer; X not an initializer. */
static int is_target(const otl_graph *g, const otl_node *n)
{
    if (!otl_node_is_onnx(n) || n->n_outputs < 1 || !*n->outputs[0] || n->n_inputs < 2)
        return 0;
    int mm = strcmp(n->op_type, "MatMul") == 0, gemm = strcmp(n->op_type, "Gemm") == 0;
    if (!mm && !gemm)
        return 0;
    const otl_tensor *w = otl_graph_const_float(g, n->inputs[1]);
    if (!w || w->rank != 2 || !*n->inputs[0] || otl_graph_find_init(g, n->inputs[0]))
        return 0;
    const otl_value *v = otl_graph_find_value(g, n->inputs[0]);
    if (v && v->has_type && v->dtype != OTL_DTYPE_FLOAT)
        return 0;
    if (gemm) {
        if (attr_i(n, "transA", 0) != 0)
            return 0;
        if (n->n_inputs > 2 && *n->inputs[2] && !otl_graph_const_float(g, n->inputs[2]))
            return 0;
    }
    return 1;
}

static int excluded(const char *list, const otl_node *n)
{
    return otl_glob_list_match(list, n);
}

/* Append node op(in) named after base with outputs: out[i] set to a fresh "<base>_<suffix[i]>"
 * unless fixed[i] gives the name. The output names returned are owned by the node. */
static otl_status add_node(otl_graph *g, const char *op, int n_in, const char *const *in, const char *base,
                           int n_out, const char *const *suffix, const char *const *fixed, const char **out,
                           otl_error *err)
{
    char nb[700];
    snprintf(nb, sizeof nb, "%s_%s", base, op);
    char *nname = otl_graph_fresh_name(g, nb);
    char *names[3] = {NULL, NULL, NULL};
    int bad = !nname;
    for (int i = 0; i < n_out && !bad; i++) {
        if (fixed && fixed[i]) {
            bad = !(names[i] = otl_strdup(fixed[i]));
        } else {
            snprintf(nb, sizeof nb, "%s_%s", base, suffix[i]);
            /* fresh against the graph and against the names taken just before */
            bad = !(names[i] = otl_graph_fresh_name(g, nb));
            for (int j = 0; j < i && !bad; j++)
                if (strcmp(names[j], names[i]) == 0) {
                    snprintf(nb, sizeof nb, "%s_%s_%d", base, suffix[i], i);
                    free(names[i]);
                    bad = !(names[i] = otl_graph_fresh_name(g, nb));
                }
        }
    }
    otl_node *n = bad ? NULL : otl_node_new(nname, op, "");
    bad = !n || otl_node_set_io(n, n_in, in, n_out, (const char *const *)names);
    free(nname);
    for (int i = 0; i < 3; i++)
        free(names[i]);
    if (bad || otl_graph_add_node(g, n)) {
        otl_node_free(n);
        return otl_oom(err);
    }
    for (int i = 0; i < n_out; i++)
        out[i] = n->outputs[i];
    return OTL_OK;
}

typedef struct dyn_act {
    const char *name;       /* the float activation (owned by the graph's nodes) */
    char *q, *scale, *zp;   /* DynamicQuantizeLinear outputs (owned copies) */
} dyn_act;

/* W (K, N) (transposed from (N, K) when trans) as int8, symmetric, with per-column scales times
 * `mul` (or one scale when per_tensor). */
static otl_status quantize_weight(otl_graph *g, const otl_tensor *w, int trans, int per_tensor, float mul,
                                  const char **wq, const char **ws, otl_error *err)
{
    int64_t K = trans ? w->dims[1] : w->dims[0], N = trans ? w->dims[0] : w->dims[1];
    int64_t nc = per_tensor ? 1 : N;
    float *scale = calloc((size_t)nc + 1, sizeof *scale);
    int8_t *qv = malloc((size_t)(K * N) + 1);
    otl_status st = OTL_OK;
    if (!scale || !qv) {
        st = otl_oom(err);
        goto done;
    }
    const float *W = w->data;
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) {
            float v = fabsf(W[trans ? n * K + k : k * N + n]);
            int64_t c = per_tensor ? 0 : n;
            if (isfinite(v) && v > scale[c])
                scale[c] = v;
        }
    for (int64_t c = 0; c < nc; c++)
        scale[c] = scale[c] > 0 ? scale[c] / 127.0f : 1.0f;
    for (int64_t k = 0; k < K; k++)
        for (int64_t n = 0; n < N; n++) {
            double r = nearbyint(W[trans ? n * K + k : k * N + n] / scale[per_tensor ? 0 : n]);
            qv[k * N + n] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : (isfinite(r) ? r : 0));
        }
    for (int64_t c = 0; c < nc; c++)
        scale[c] *= mul;
    char base[600];
    int64_t dims[2] = {K, N};
    snprintf(base, sizeof base, "%s_quantized", w->name);
    otl_tensor *tq =
        otl_graph_add_init_copy(g, base, OTL_DTYPE_INT8, 2, dims, qv, (size_t)(K * N), w->ext_location, err);
    snprintf(base, sizeof base, "%s_scale", w->name);
    otl_tensor *ts = tq ? otl_graph_add_init_copy(g, base, OTL_DTYPE_FLOAT, per_tensor ? 0 : 1, &nc, scale,
                                                  (size_t)nc * 4, NULL, err)
                        : NULL;
    if (!ts) {
        st = err->code;
        goto done;
    }
    *wq = tq->name;
    *ws = ts->name;
done:
    free(scale);
    free(qv);
    return st;
}

/* Replace node n (index i of g) by the dynamic quantized form. */
static otl_status rewrite(otl_graph *g, int i, dyn_act *acts, int *na, int per_tensor, otl_quant_dynamic_info *info,
                          otl_error *err)
{
    otl_node *n = g->nodes[i];
    int gemm = strcmp(n->op_type, "Gemm") == 0;
    const otl_tensor *w = otl_graph_const_float(g, n->inputs[1]);
    const otl_tensor *c = gemm && n->n_inputs > 2 && *n->inputs[2] ? otl_graph_const_float(g, n->inputs[2]) : NULL;
    float alpha = gemm ? attr_f(n, "alpha", 1.0f) : 1.0f, beta = gemm ? attr_f(n, "beta", 1.0f) : 1.0f;
    int trans = gemm && attr_i(n, "transB", 0) != 0;
    char base[600];
    snprintf(base, sizeof base, "%s", *n->name ? n->name : n->outputs[0]);
    otl_status st;
    /* the activation's DynamicQuantizeLinear, shared */
    dyn_act *a = NULL;
    for (int k = 0; k < *na && !a; k++)
        if (strcmp(acts[k].name, n->inputs[0]) == 0)
            a = &acts[k];
    if (!a) {
        const char *outs[3] = {NULL, NULL, NULL};
        static const char *const sfx[3] = {"quantized", "scale", "zero_point"};
        char ab[600];
        snprintf(ab, sizeof ab, "%s", n->inputs[0]);
        const char *in[1] = {n->inputs[0]};
        if ((st = add_node(g, "DynamicQuantizeLinear", 1, in, ab, 3, sfx, NULL, outs, err)))
            return st;
        n = g->nodes[i];
        a = &acts[(*na)++];
        a->name = g->nodes[g->n_nodes - 1]->inputs[0];
        if (!(a->q = otl_strdup(outs[0])) || !(a->scale = otl_strdup(outs[1])) || !(a->zp = otl_strdup(outs[2])))
            return otl_oom(err);
        info->n_activations++;
    }
    const char *wq = NULL, *ws = NULL;
    if ((st = quantize_weight(g, w, trans, per_tensor, alpha, &wq, &ws, err)))
        return st;
    info->n_weights++;
    const char *y32 = NULL, *yf = NULL, *sc = NULL, *ym = NULL;
    static const char *const s_mm[1] = {"int32"}, *const s_cast[1] = {"float"}, *const s_sc[1] = {"scale"},
                             *const s_mul[1] = {"scaled"};
    const char *in_mm[3] = {a->q, wq, a->zp};
    if ((st = add_node(g, "MatMulInteger", 3, in_mm, base, 1, s_mm, NULL, &y32, err)))
        return st;
    const char *in_cast[1] = {y32};
    if ((st = add_node(g, "Cast", 1, in_cast, base, 1, s_cast, NULL, &yf, err)))
        return st;
    otl_attr *at;
    if (otl_node_add_attr(g->nodes[g->n_nodes - 1], "to", OTL_ATTR_INT, &at))
        return otl_oom(err);
    at->i = OTL_DTYPE_FLOAT;
    const char *in_sc[2] = {a->scale, ws};
    if ((st = add_node(g, "Mul", 2, in_sc, base, 1, s_sc, NULL, &sc, err)))
        return st;
    n = g->nodes[i];
    const char *out_name = n->outputs[0];
    const char *bias = NULL;
    if (c && beta != 0) {
        if (beta != 1.0f) {
            float *bv = malloc((size_t)c->numel * sizeof *bv + 1);
            if (!bv)
                return otl_oom(err);
            for (int64_t k = 0; k < c->numel; k++)
                bv[k] = ((const float *)c->data)[k] * beta;
            char bb[600];
            snprintf(bb, sizeof bb, "%s_scaled", c->name);
            otl_tensor *tb =
                otl_graph_add_init_copy(g, bb, OTL_DTYPE_FLOAT, c->rank, c->dims, bv, (size_t)c->numel * 4, NULL, err);
            free(bv);
            if (!tb)
                return err->code;
            bias = tb->name;
        } else {
            bias = c->name;
        }
    }
    char *keep = otl_strdup(out_name);
    if (!keep)
        return otl_oom(err);
    const char *in_mul[2] = {yf, sc};
    const char *fixed[1] = {bias ? NULL : keep};
    st = add_node(g, "Mul", 2, in_mul, base, 1, s_mul, fixed, &ym, err);
    if (!st && bias) {
        static const char *const s_add[1] = {"biased"};
        const char *in_add[2] = {ym, bias};
        const char *fx[1] = {keep}, *yo = NULL;
        st = add_node(g, "Add", 2, in_add, base, 1, s_add, fx, &yo, err);
    }
    free(keep);
    if (st)
        return st;
    /* the original node goes */
    otl_node_free(g->nodes[i]);
    memmove(&g->nodes[i], &g->nodes[i + 1], (size_t)(g->n_nodes - i - 1) * sizeof *g->nodes);
    g->n_nodes--;
    info->n_nodes++;
    return OTL_OK;
}

otl_status otl_export_quantize_dynamic(otl_model *m, const otl_quant_dynamic_opts *o, otl_quant_dynamic_info *info,
                                       otl_error *err)
{
    otl_quant_dynamic_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_quantize_dynamic: no model");
    otl_graph *g = m->graph;
    int64_t opset = otl_model_opset(m, "");
    if (opset < 0)
        opset = otl_model_opset(m, "ai.onnx");
    if (opset < 11)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                             "%s: opset %lld has no DynamicQuantizeLinear (needs 11 or later)", otl_model_file(m),
                             (long long)opset);
    const char *exclude = o ? o->exclude : NULL;
    int per_tensor = o ? o->per_tensor : 0;
    if (otl_glob_list_check(m, exclude, is_target, "MatMul or Gemm with a float weight", err))
        return err->code;
    info->per_channel = !per_tensor;
    int cap = g->n_nodes + 1;
    dyn_act *acts = calloc((size_t)cap, sizeof *acts);
    if (!acts)
        return otl_oom(err);
    int na = 0;
    otl_status st = OTL_OK;
    /* the rewritten node is removed and its replacements appended: walk the original nodes by name */
    int n_orig = g->n_nodes;
    otl_node **orig = malloc((size_t)n_orig * sizeof *orig + 1);
    if (!orig) {
        free(acts);
        return otl_oom(err);
    }
    memcpy(orig, g->nodes, (size_t)n_orig * sizeof *orig);
    for (int j = 0; j < n_orig && !st; j++) {
        otl_node *n = orig[j];
        if (!is_target(g, n) || excluded(exclude, n))
            continue;
        int i = 0;
        while (i < g->n_nodes && g->nodes[i] != n)
            i++;
        st = rewrite(g, i, acts, &na, per_tensor, info, err);
    }
    free(orig);
    if (!st && info->n_nodes == 0)
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no MatMul or Gemm with a float weight initializer to quantize",
                           otl_model_file(m));
    if (!st)
        otl_graph_drop_unused_inits(g, NULL);
    if (!st)
        st = otl_graph_resort(m, err);
    if (!st)
        st = otl_model_validate(m, err);
    for (int k = 0; k < na; k++) {
        free(acts[k].q);
        free(acts[k].scale);
        free(acts[k].zp);
    }
    free(acts);
    return st;
}
