/* quantize.c - static post-training INT8 quantization in QDQ form (`export --quantize int8`, see
 * include/onnxtl_export.h): calibration over a data set with an inference session, then
 * QuantizeLinear/DequantizeLinear pairs around the quantized operators. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnxtl_data.h"
#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/util.h"

static const char *fname(const otl_model *m)
{
    return m->path ? m->path : "model";
}

static otl_status oom(otl_error *err)
{
    return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
}

static int is_default(const otl_node *n)
{
    return !n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0;
}

static int is_graph_input(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_inputs; i++)
        if (strcmp(g->inputs[i]->name, name) == 0)
            return 1;
    return 0;
}

static int is_graph_output(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (strcmp(g->outputs[i]->name, name) == 0)
            return 1;
    return 0;
}

/* Whether any node of g (subgraphs included) reads `name`. */
static int is_read(const otl_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (strcmp(n->inputs[k], name) == 0)
                return 1;
        for (int a = 0; a < n->n_attrs; a++) {
            if (n->attrs[a].g && is_read(n->attrs[a].g, name))
                return 1;
            for (size_t s = 0; s < n->attrs[a].n_graphs; s++)
                if (is_read(n->attrs[a].graphs[s], name))
                    return 1;
        }
    }
    return 0;
}

/* A float initializer of g named `name` that is not overridable (not a graph input). */
static otl_tensor *const_float(const otl_graph *g, const char *name)
{
    otl_tensor *t = *name ? otl_graph_find_init(g, name) : NULL;
    if (!t || t->dtype != OTL_DTYPE_FLOAT || !t->data || is_graph_input(g, name) ||
        t->nbytes != (size_t)t->numel * sizeof(float))
        return NULL;
    return t;
}

/* Remove the initializers nothing reads any more (the float weights replaced by int8 ones), with
 * their IR < 4 graph-input entries. */
static void drop_unused_inits(otl_graph *g)
{
    int w = 0;
    for (int i = 0; i < g->n_inits; i++) {
        otl_tensor *t = g->inits[i];
        if (is_read(g, t->name) || is_graph_output(g, t->name)) {
            g->inits[w++] = t;
            continue;
        }
        for (int k = 0; k < g->n_inputs; k++)
            if (strcmp(g->inputs[k]->name, t->name) == 0) {
                otl_value_free(g->inputs[k]);
                memmove(&g->inputs[k], &g->inputs[k + 1], (size_t)(g->n_inputs - k - 1) * sizeof *g->inputs);
                g->n_inputs--;
                break;
            }
        otl_tensor_free(t);
    }
    g->n_inits = w;
}

typedef struct qact {
    char *name;             /* owned copy */
    double lo, hi;
    char *dq;               /* the DequantizeLinear output readers switch to */
} qact;

static int is_qtarget(const otl_node *n)
{
    return is_default(n) && (strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "Gemm") == 0 ||
                             strcmp(n->op_type, "MatMul") == 0);
}

/* Input slots of n holding activations (not initializers) to quantize; returns the count. */
static int act_slots(const otl_graph *g, const otl_node *n, int *slots)
{
    int k = 0, last = strcmp(n->op_type, "Conv") == 0 ? 0 : 1;
    for (int s = 0; s <= last && s < n->n_inputs; s++) {
        const otl_value *v = *n->inputs[s] ? otl_graph_find_value(g, n->inputs[s]) : NULL;
        if (*n->inputs[s] && !otl_graph_find_init(g, n->inputs[s]) && (!v || !v->has_type || v->dtype == OTL_DTYPE_FLOAT))
            slots[k++] = s;
    }
    return k;
}

/* The weight initializer of n (slot 1) and its output-channel axis, or NULL. */
static otl_tensor *weight_of(const otl_graph *g, const otl_node *n, int *axis)
{
    otl_tensor *w = n->n_inputs > 1 ? const_float(g, n->inputs[1]) : NULL;
    if (!w)
        return NULL;
    if (strcmp(n->op_type, "Conv") == 0 && w->rank >= 3)
        *axis = 0;
    else if (strcmp(n->op_type, "Gemm") == 0 && w->rank == 2) {
        const otl_attr *tb = otl_node_attr(n, "transB");
        *axis = tb && tb->i ? 0 : 1;
    } else if (strcmp(n->op_type, "MatMul") == 0 && w->rank == 2)
        *axis = 1;
    else
        return NULL;
    return w;
}

/* Whether n's name matches one of the comma-separated globs in list (NULL: none). */
static int excluded(const char *list, const otl_node *n)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char glob[512];
        if (len && len < sizeof glob) {
            memcpy(glob, p, len);
            glob[len] = 0;
            if (fnmatch(glob, n->name, 0) == 0)
                return 1;
        }
        p = e ? e + 1 : p + len;
    }
    return 0;
}

/* Every glob of list matches a Conv/Gemm/MatMul node of g. */
static otl_status check_excludes(const otl_model *m, const char *list, otl_error *err)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char glob[512];
        if (!len || len >= sizeof glob)
            return otl_error_set(err, OTL_ERR_USAGE, "--exclude: empty or too long glob in '%s'", list);
        memcpy(glob, p, len);
        glob[len] = 0;
        int hit = 0;
        for (int i = 0; i < m->graph->n_nodes && !hit; i++)
            hit = is_qtarget(m->graph->nodes[i]) && fnmatch(glob, m->graph->nodes[i]->name, 0) == 0;
        if (!hit)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: --exclude '%s' matches no Conv, Gemm or MatMul node",
                                 fname(m), glob);
        p = e ? e + 1 : p + len;
    }
    return OTL_OK;
}

static int find_act(const qact *a, int na, const char *name)
{
    for (int i = 0; i < na; i++)
        if (strcmp(a[i].name, name) == 0)
            return i;
    return -1;
}

static void minmax(qact *a, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        if (v[i] < a->lo)
            a->lo = v[i];
        if (v[i] > a->hi)
            a->hi = v[i];
    }
}

static int is_dir_path(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Min/max of every activation over the calibration data (a clone of m exposes them as outputs). */
static otl_status calibrate(const otl_model *m, qact *acts, int na, const otl_quant_opts *q, int64_t *used,
                            otl_error *err)
{
    otl_model *c = NULL;
    otl_session *s = NULL;
    otl_dataset *d = NULL;
    int *out_idx = calloc((size_t)na + 1, sizeof *out_idx);
    void *x = NULL;
    int64_t *idx = NULL;
    otl_tensor *in = NULL;
    otl_status st = OTL_OK;
    if (!out_idx)
        return oom(err);
    if ((st = otl_model_clone(m, &c, err)))
        goto done;
    const otl_value *input = NULL;
    for (int i = 0; i < c->graph->n_inputs && !input; i++)
        if (!otl_graph_find_init(c->graph, c->graph->inputs[i]->name))
            input = c->graph->inputs[i];
    if (!input) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input to calibrate", fname(m));
        goto done;
    }
    for (int i = 0; i < na; i++) {
        acts[i].lo = INFINITY;
        acts[i].hi = -INFINITY;
        out_idx[i] = -1;
        if (strcmp(acts[i].name, input->name) == 0) {
            out_idx[i] = -2;
            continue;
        }
        for (int k = 0; k < c->graph->n_outputs && out_idx[i] < 0; k++)
            if (strcmp(c->graph->outputs[k]->name, acts[i].name) == 0)
                out_idx[i] = k;
        if (out_idx[i] >= 0)
            continue;
        otl_value *v = otl_value_new_tensor(acts[i].name, OTL_DTYPE_FLOAT, -1, NULL, NULL);
        if (!v || otl_graph_add_output(c->graph, v)) {
            otl_value_free(v);
            st = oom(err);
            goto done;
        }
        out_idx[i] = c->graph->n_outputs - 1;
    }
    otl_preprocess pp;
    otl_dataset_opts o;
    int dir = is_dir_path(q->calib);
    if ((dir && (st = otl_preprocess_get(m, &pp, err))) ||
        (st = otl_dataset_opts_for_model(&o, m, dir ? &pp : NULL, err)))
        goto done;
    o.threads = q->threads;
    if ((st = otl_dataset_open(&d, q->calib, &o, err)))
        goto done;
    int64_t n = otl_dataset_len(d);
    if (q->calib_samples > 0 && q->calib_samples < n)
        n = q->calib_samples;
    int sdtype, srank;
    int64_t sdims[OTL_DATASET_MAX_RANK + 1];
    otl_dataset_sample(d, &sdtype, &srank, sdims + 1);
    int64_t b = q->batch > 0 ? q->batch : 16;
    if (b > n)
        b = n;
    size_t sb = otl_dataset_sample_bytes(d);
    otl_session_opts so = {0};
    so.threads = q->threads;
    if (!(x = malloc((size_t)b * sb + 1)) || !(idx = malloc((size_t)b * sizeof *idx))) {
        st = oom(err);
        goto done;
    }
    if ((st = otl_session_new(&s, c, &so, err)))
        goto done;
    for (int64_t start = 0; start < n; start += b) {
        int64_t nb = n - start < b ? n - start : b;
        for (int64_t i = 0; i < nb; i++)
            idx[i] = start + i;
        if ((st = otl_dataset_batch(d, idx, nb, NULL, 0, x, NULL, err)))
            goto done;
        sdims[0] = nb;
        if (!(in = otl_tensor_new(input->name, sdtype, srank + 1, sdims))) {
            st = oom(err);
            goto done;
        }
        in->data = x;
        in->nbytes = (size_t)nb * sb;
        otl_tensor **outs = NULL;
        int n_outs = 0;
        const otl_tensor *ins[1] = {in};
        st = otl_session_run(s, ins, 1, &outs, &n_outs, err);
        in->data = NULL;
        otl_tensor_free(in);
        in = NULL;
        if (st)
            goto done;
        for (int i = 0; i < na; i++) {
            if (out_idx[i] == -2 && sdtype == OTL_DTYPE_FLOAT)
                minmax(&acts[i], x, (int64_t)(nb * sb / sizeof(float)));
            else if (out_idx[i] >= 0 && out_idx[i] < n_outs && outs[out_idx[i]]->dtype == OTL_DTYPE_FLOAT && outs[out_idx[i]]->data)
                minmax(&acts[i], outs[out_idx[i]]->data, outs[out_idx[i]]->numel);
        }
        for (int k = 0; k < n_outs; k++)
            otl_tensor_free(outs[k]);
        free(outs);
    }
    *used = n;
done:
    otl_session_free(s);
    otl_dataset_free(d);
    otl_model_free(c);
    free(out_idx);
    free(x);
    free(idx);
    return st;
}

/* Add an initializer named after base (fresh); data copied. */
static otl_tensor *add_init(otl_graph *g, const char *base, int dtype, int rank, const int64_t *dims,
                            const void *data, size_t nbytes, const char *ext, otl_error *err)
{
    char *name = otl_graph_fresh_name(g, base);
    otl_tensor *t = name ? otl_tensor_new(name, dtype, rank, dims) : NULL;
    free(name);
    if (!t || !(t->data = malloc(nbytes ? nbytes : 1)) || (ext && !(t->ext_location = otl_strdup(ext))) ||
        otl_graph_add_init(g, t)) {
        otl_tensor_free(t);
        oom(err);
        return NULL;
    }
    memcpy(t->data, data, nbytes);
    t->nbytes = nbytes;
    return t;
}

/* Append op(in[0..3)) -> fresh "<base>" output; *out receives the output name (owned by the node). */
static otl_status add_q_node(otl_graph *g, const char *op, const char *const *in, const char *base, int axis,
                             const char **out, otl_error *err)
{
    char nb[600];
    snprintf(nb, sizeof nb, "%s_%s", base, op);
    char *nname = otl_graph_fresh_name(g, nb);
    snprintf(nb, sizeof nb, "%s_%s", base, strcmp(op, "QuantizeLinear") == 0 ? "quantized" : "dequantized");
    char *oname = nname ? otl_graph_fresh_name(g, nb) : NULL;
    otl_node *n = oname ? otl_node_new(nname, op, "") : NULL;
    const char *outs[1] = {oname};
    otl_attr *a;
    int bad = !n || otl_node_set_io(n, 3, in, 1, outs) ||
              (axis >= 0 && (otl_node_add_attr(n, "axis", OTL_ATTR_INT, &a) || ((a->i = axis), 0)));
    free(nname);
    free(oname);
    if (bad || otl_graph_add_node(g, n)) {
        otl_node_free(n);
        return oom(err);
    }
    *out = n->outputs[0];
    return OTL_OK;
}

static otl_status quantize_act(otl_graph *g, qact *a, otl_error *err)
{
    double lo = a->lo < 0 ? a->lo : 0, hi = a->hi > 0 ? a->hi : 0;
    if (!(lo <= hi)) /* never seen (no finite value) */
        lo = hi = 0;
    float scale = (float)((hi - lo) / 255.0);
    if (!(scale > 0) || !isfinite(scale))
        scale = 1.0f;
    double z = nearbyint(-lo / scale);
    uint8_t zp = (uint8_t)(z < 0 ? 0 : z > 255 ? 255 : z);
    char base[600];
    snprintf(base, sizeof base, "%s_scale", a->name);
    otl_tensor *ts = add_init(g, base, OTL_DTYPE_FLOAT, 0, NULL, &scale, sizeof scale, NULL, err);
    snprintf(base, sizeof base, "%s_zero_point", a->name);
    otl_tensor *tz = ts ? add_init(g, base, OTL_DTYPE_UINT8, 0, NULL, &zp, 1, NULL, err) : NULL;
    if (!tz)
        return err->code;
    const char *q, *dq;
    const char *qin[3] = {a->name, ts->name, tz->name};
    if (add_q_node(g, "QuantizeLinear", qin, a->name, -1, &q, err))
        return err->code;
    const char *dqin[3] = {q, ts->name, tz->name};
    if (add_q_node(g, "DequantizeLinear", dqin, a->name, -1, &dq, err))
        return err->code;
    if (!(a->dq = otl_strdup(dq)))
        return oom(err);
    return OTL_OK;
}

/* Store w as int8 (symmetric, per channel along axis, or per tensor when axis < 0) behind a
 * DequantizeLinear; *dq receives its output name. */
static otl_status quantize_weight(otl_graph *g, const otl_tensor *w, int axis, const char **dq, otl_error *err)
{
    int64_t nc = axis >= 0 ? w->dims[axis] : 1, inner = 1;
    for (int k = axis + 1; axis >= 0 && k < w->rank; k++)
        inner *= w->dims[k];
    float *scale = calloc((size_t)nc + 1, sizeof *scale);
    int8_t *zp = calloc((size_t)nc + 1, 1), *qv = malloc((size_t)w->numel + 1);
    otl_status st = OTL_OK;
    if (!scale || !zp || !qv) {
        st = oom(err);
        goto done;
    }
    const float *W = w->data;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t c = axis >= 0 ? (i / inner) % nc : 0;
        float v = fabsf(W[i]);
        if (isfinite(v) && v > scale[c])
            scale[c] = v;
    }
    for (int64_t c = 0; c < nc; c++)
        scale[c] = scale[c] > 0 ? scale[c] / 127.0f : 1.0f;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t c = axis >= 0 ? (i / inner) % nc : 0;
        double r = nearbyint(W[i] / scale[c]);
        qv[i] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : (isfinite(r) ? r : 0));
    }
    char base[600];
    snprintf(base, sizeof base, "%s_quantized", w->name);
    otl_tensor *tq = add_init(g, base, OTL_DTYPE_INT8, w->rank, w->dims, qv, (size_t)w->numel, w->ext_location, err);
    int r1 = axis >= 0 ? 1 : 0;
    snprintf(base, sizeof base, "%s_scale", w->name);
    otl_tensor *ts = tq ? add_init(g, base, OTL_DTYPE_FLOAT, r1, &nc, scale, (size_t)nc * 4, NULL, err) : NULL;
    snprintf(base, sizeof base, "%s_zero_point", w->name);
    otl_tensor *tz = ts ? add_init(g, base, OTL_DTYPE_INT8, r1, &nc, zp, (size_t)nc, NULL, err) : NULL;
    if (!tz) {
        st = err->code;
        goto done;
    }
    const char *in[3] = {tq->name, ts->name, tz->name};
    st = add_q_node(g, "DequantizeLinear", in, w->name, axis, dq, err);
done:
    free(scale);
    free(zp);
    free(qv);
    return st;
}

static otl_status resort(otl_model *m, otl_error *err)
{
    otl_graph *g = m->graph;
    int *order;
    if (otl_graph_toposort(g, &order, fname(m), err))
        return err->code;
    otl_node **nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *nodes);
    if (!nodes) {
        free(order);
        return oom(err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        nodes[i] = g->nodes[order[i]];
    memcpy(g->nodes, nodes, (size_t)g->n_nodes * sizeof *nodes);
    free(nodes);
    free(order);
    return OTL_OK;
}

otl_status otl_export_quantize(otl_model *m, const otl_quant_opts *q, otl_quant_info *info, otl_error *err)
{
    otl_quant_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph || !q || !q->calib)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_quantize: no model or calibration data");
    otl_graph *g = m->graph;
    int64_t opset = otl_model_opset(m, "");
    if (opset < 0)
        opset = otl_model_opset(m, "ai.onnx");
    if (opset < 10)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                             "%s: opset %lld has no QuantizeLinear/DequantizeLinear (needs 10 or later)", fname(m),
                             (long long)opset);
    info->per_channel = opset >= 13;
    if (check_excludes(m, q->exclude, err))
        return err->code;
    /* the activations to calibrate */
    int n_orig = g->n_nodes, na = 0;
    qact *acts = calloc((size_t)n_orig * 2 + 1, sizeof *acts);
    if (!acts)
        return oom(err);
    otl_status st = OTL_OK;
    for (int i = 0; i < n_orig; i++) {
        const otl_node *n = g->nodes[i];
        int slots[2];
        if (!is_qtarget(n) || excluded(q->exclude, n))
            continue;
        int k = act_slots(g, n, slots);
        for (int j = 0; j < k; j++)
            if (find_act(acts, na, n->inputs[slots[j]]) < 0 && !(acts[na++].name = otl_strdup(n->inputs[slots[j]]))) {
                st = oom(err);
                goto done;
            }
    }
    if (na == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no Conv, Gemm or MatMul to quantize", fname(m));
        goto done;
    }
    if ((st = calibrate(m, acts, na, q, &info->samples, err)))
        goto done;
    for (int i = 0; i < na; i++)
        if ((st = quantize_act(g, &acts[i], err)))
            goto done;
    info->n_activations = na;
    /* weights (a weight read by several quantized nodes is quantized once) */
    const char **wname = calloc((size_t)n_orig + 1, sizeof *wname), **wdq = calloc((size_t)n_orig + 1, sizeof *wdq);
    int nw = 0;
    if (!wname || !wdq) {
        free(wname);
        free(wdq);
        st = oom(err);
        goto done;
    }
    for (int i = 0; i < n_orig && !st; i++) {
        otl_node *n = g->nodes[i];
        int slots[2], axis;
        if (!is_qtarget(n) || excluded(q->exclude, n))
            continue;
        info->n_nodes++;
        int k = act_slots(g, n, slots);
        for (int j = 0; j < k && !st; j++) {
            int a = find_act(acts, na, n->inputs[slots[j]]);
            if (a >= 0 && !otl_set_str(&n->inputs[slots[j]], acts[a].dq))
                st = oom(err);
        }
        otl_tensor *w = st ? NULL : weight_of(g, n, &axis);
        if (!w)
            continue;
        int found = -1;
        for (int j = 0; j < nw && found < 0; j++)
            if (strcmp(wname[j], w->name) == 0)
                found = j;
        if (found < 0) {
            const char *dq;
            if ((st = quantize_weight(g, w, info->per_channel ? axis : -1, &dq, err)))
                break;
            wname[nw] = w->name;
            wdq[nw] = dq;
            found = nw++;
            info->n_weights++;
        }
        if (!otl_set_str(&n->inputs[1], wdq[found]))
            st = oom(err);
    }
    free(wname);
    free(wdq);
    if (!st)
        drop_unused_inits(g);
    if (!st)
        st = resort(m, err);
    if (!st)
        st = otl_model_validate(m, err);
done:
    for (int i = 0; i < na; i++) {
        free(acts[i].name);
        free(acts[i].dq);
    }
    free(acts);
    return st;
}
