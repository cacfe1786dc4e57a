/* quantize.c - static post-training INT8 quantization in QDQ form (`export --quantize int8`, see
 * include/onnxtl_export.h): which tensors get QuantizeLinear/DequantizeLinear pairs (placed as ONNX
 * Runtime's quantizer places them, so that ORT fuses them into integer kernels), calibration
 * (min/max, percentile, entropy) in one pass of an inference session, int8 weights, int32 biases,
 * and a per-tensor report (scale, zero point, SQNR). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnxtl_data.h"
#include "onnxtl_export.h"
#include "graph/graph_edit.h"
#include "src/hash.h"
#include "src/json.h"
#include "src/strmap.h"
#include "src/util.h"

/* ---------------------------------------------------------------- node roles */

enum { ROLE_NONE, ROLE_COMPUTE, ROLE_ACT, ROLE_MOVE, ROLE_OTHER };

static int op_is(const otl_node *n, const char *op)
{
    return strcmp(n->op_type, op) == 0;
}

static int is_qtarget(const otl_node *n)
{
    return otl_node_is_onnx(n) && (op_is(n, "Conv") || op_is(n, "Gemm") || op_is(n, "MatMul"));
}

static int is_other(const otl_node *n)
{
    return otl_node_is_onnx(n) && (op_is(n, "Add") || op_is(n, "Concat") || op_is(n, "GlobalAveragePool") ||
                             op_is(n, "AveragePool"));
}

static int is_move(const otl_node *n)
{
    return otl_node_is_onnx(n) && n->n_outputs >= 1 &&
           ((op_is(n, "MaxPool") && (n->n_outputs == 1 || !*n->outputs[1])) || op_is(n, "Reshape") ||
            op_is(n, "Flatten") || op_is(n, "Transpose") || op_is(n, "Squeeze") || op_is(n, "Unsqueeze"));
}

/* A node --exclude may name: one the pass quantizes. */
static int excludable(const otl_graph *g, const otl_node *n)
{
    (void)g;
    return is_qtarget(n) || is_other(n);
}

/* A first Conv ONNX Runtime runs faster in float than as a QLinearConv: it reads a graph input,
 * has group 1 and a reduction size K = C_in * kh * kw below opts.conv_min_k (default
 * OTL_QUANT_CONV_MIN_K). Measured on the demo model's first Conv (1 input channel, 3x3: K = 9;
 * ORT 1.30, batch 32, 2 threads): QLinearConv 0.63-0.75 ms against 0.12-0.14 ms for the float
 * (NCHWc) Conv, which has a kernel for few input channels while the integer one multiplies 9-deep
 * matrices. Only at the input: a small Conv inside the quantized part would cost a
 * DequantizeLinear and a QuantizeLinear more. */
static int small_conv(const otl_graph *g, const otl_quant_opts *q, const otl_node *n)
{
    int min_k = q->conv_min_k ? q->conv_min_k : OTL_QUANT_CONV_MIN_K;
    if (min_k <= 0 || !otl_node_is_onnx(n) || !op_is(n, "Conv"))
        return 0;
    const otl_attr *gr = otl_node_attr(n, "group");
    const otl_tensor *w = n->n_inputs > 1 ? otl_graph_const_float(g, n->inputs[1]) : NULL;
    if ((gr && gr->i != 1) || !w || w->rank < 3 || n->n_inputs < 1 || !otl_graph_is_input(g, n->inputs[0]))
        return 0;
    int64_t k = 1;
    for (int i = 1; i < w->rank; i++)
        k *= w->dims[i];
    return k < min_k;
}

/* Kept in float: named by --exclude, or a small Conv. */
static int excluded(const otl_graph *g, const otl_quant_opts *q, const otl_node *n)
{
    return otl_glob_list_match(q->exclude, n) || small_conv(g, q, n);
}

/* ---------------------------------------------------------------- element types */

/* Element type of every tensor name (-1 unknown): declared inputs, initializers, value_info,
 * then propagated through the nodes in topological order. Keys borrow g's strings. */
static otl_status infer_dtypes(const otl_graph *g, const int *order, otl_strmap *dt, otl_error *err)
{
    int cap = g->n_inputs + g->n_inits + g->n_value_info + g->n_outputs + 8;
    for (int i = 0; i < g->n_nodes; i++)
        cap += g->nodes[i]->n_outputs;
    if (!otl_strmap_init(dt, (size_t)cap * 2))
        return otl_oom(err);
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->has_type && g->inputs[i]->is_tensor && !otl_strmap_put(dt, g->inputs[i]->name, g->inputs[i]->dtype))
            return otl_oom(err);
    for (int i = 0; i < g->n_inits; i++)
        if (!otl_strmap_put(dt, g->inits[i]->name, g->inits[i]->dtype))
            return otl_oom(err);
    for (int k = 0; k < g->n_nodes; k++) {
        const otl_node *n = g->nodes[order[k]];
        for (int o = 0; o < n->n_outputs; o++) {
            const char *y = n->outputs[o];
            if (!*y)
                continue;
            const otl_value *v = otl_graph_find_value(g, y);
            int t = -1;
            const char *x0 = n->n_inputs > 0 ? n->inputs[0] : "";
            if (v && v->has_type && v->is_tensor)
                t = v->dtype;
            else if (!otl_node_is_onnx(n))
                t = -1;
            else if (op_is(n, "Cast")) {
                const otl_attr *a = otl_node_attr(n, "to");
                t = a ? (int)a->i : -1;
            } else if (op_is(n, "Constant")) {
                const otl_attr *a = otl_node_attr(n, "value");
                t = a && a->t ? a->t->dtype : -1;
            } else if (op_is(n, "DequantizeLinear"))
                t = OTL_DTYPE_FLOAT;
            else if (op_is(n, "Where"))
                t = n->n_inputs > 1 ? otl_strmap_get(dt, n->inputs[1], -1) : -1;
            else if (o == 0 || op_is(n, "Split")) {
                static const char *const changes[] = {
                    "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "Equal", "Less", "Greater", "LessOrEqual",
                    "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "ConstantOfShape",
                    "QuantizeLinear", "DynamicQuantizeLinear", "EyeLike", "RandomNormal", "RandomUniform",
                    "RandomNormalLike", "RandomUniformLike", "Multinomial", "TopK", "Unique", "StringNormalizer",
                    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "If", "Loop", "Scan"};
                int ch = 0;
                for (size_t c = 0; c < sizeof changes / sizeof *changes && !ch; c++)
                    ch = op_is(n, changes[c]);
                t = ch || !*x0 ? -1 : otl_strmap_get(dt, x0, -1);
                if (op_is(n, "TopK") && o == 0)
                    t = otl_strmap_get(dt, x0, -1);
            }
            if (!otl_strmap_put(dt, y, t))
                return otl_oom(err);
        }
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- histograms */

#define QH_BINS 2048

/* Counts over [-t, t] in QH_BINS equal bins; t doubles (pairs of bins merged exactly) when a
 * value falls outside. */
typedef struct qhist {
    double t;
    double c[QH_BINS];
} qhist;

static void hist_add(qhist *h, const float *v, int64_t n, float absmax)
{
    if (h->t <= 0)
        h->t = absmax > 0 ? absmax : 1e-30;
    while (absmax > h->t) {
        double nc[QH_BINS] = {0};
        for (int j = 0; j < QH_BINS; j++)
            nc[QH_BINS / 4 + j / 2] += h->c[j];
        memcpy(h->c, nc, sizeof nc);
        h->t *= 2;
    }
    double k = QH_BINS / (2 * h->t);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        double b = (v[i] + h->t) * k;
        int bi = b < 0 ? 0 : b >= QH_BINS ? QH_BINS - 1 : (int)b;
        h->c[bi] += 1;
    }
}

static double hist_edge(const qhist *h, int i)
{
    return -h->t + (double)i * (2 * h->t / QH_BINS);
}

/* ORT's compute_percentile (asymmetric): cut (100 - p) / 200 of the mass on each side. */
static void range_percentile(const qhist *h, double pct, double *lo, double *hi)
{
    double total = 0, cut = (100.0 - pct) / 200.0, cum = 0;
    for (int i = 0; i < QH_BINS; i++)
        total += h->c[i];
    if (total <= 0)
        return;
    int il = -1, ir = -1;
    for (int i = 0; i < QH_BINS; i++) {
        cum += h->c[i];
        double cdf = cum / total;
        if (il < 0 && cdf >= cut)
            il = i;
        if (ir < 0 && cdf >= 1.0 - cut)
            ir = i;
    }
    if (il < 0)
        il = QH_BINS - 1;
    if (ir < 0)
        ir = QH_BINS - 1;
    double l = hist_edge(h, il), r = hist_edge(h, ir);
    if (l > *lo)
        *lo = l;
    if (r < *hi)
        *hi = r;
}

/* Add eps to the zero entries and take it from the others (ORT's smooth_distribution); 0 when
 * everything is zero or an entry would go non-positive. */
static int smooth(double *p, int n)
{
    const double eps = 1e-4;
    int nz = 0;
    for (int i = 0; i < n; i++)
        nz += p[i] == 0;
    if (nz == n)
        return 0;
    double eps1 = eps * nz / (double)(n - nz);
    for (int i = 0; i < n; i++) {
        p[i] += p[i] == 0 ? eps : -eps1;
        if (p[i] <= 0)
            return 0;
    }
    return 1;
}

/* ORT's / TensorRT's entropy calibration on the symmetric histogram: for every window of 2i+1
 * bins around 0 (i >= 64), the KL divergence between the clipped distribution and its 128-level
 * quantization; the window with the smallest divergence gives the range. */
static void range_entropy(const qhist *h, double *lo, double *hi)
{
    const int nq = 128, zero = QH_BINS / 2;
    double *p = malloc(QH_BINS * sizeof *p), *q = malloc(QH_BINS * sizeof *q);
    if (!p || !q) {
        free(p);
        free(q);
        return;
    }
    double best = INFINITY, bl = *lo, br = *hi;
    double total = 0;
    for (int i = 0; i < QH_BINS; i++)
        total += h->c[i];
    if (total > 0)
        for (int i = nq / 2; i <= zero; i++) {
            int start = zero - i, end = zero + i + 1 < QH_BINS ? zero + i + 1 : QH_BINS, len = end - start;
            double left = 0, right = 0;
            for (int k = 0; k < start; k++)
                left += h->c[k];
            for (int k = end; k < QH_BINS; k++)
                right += h->c[k];
            for (int k = 0; k < len; k++)
                p[k] = h->c[start + k];
            p[0] += left;
            p[len - 1] += right;
            int merged = len / nq;
            for (int b = 0; b < nq; b++) {
                int s0 = b * merged, s1 = b == nq - 1 ? len : s0 + merged;
                double sum = 0;
                int nzc = 0;
                for (int k = s0; k < s1; k++) {
                    sum += h->c[start + k];
                    nzc += p[k] != 0;
                }
                for (int k = s0; k < s1; k++)
                    q[k] = p[k] != 0 && nzc ? sum / nzc : 0;
            }
            double kl = INFINITY;
            if (smooth(p, len) && smooth(q, len)) {
                double sp = 0, sq = 0;
                for (int k = 0; k < len; k++)
                    sp += p[k], sq += q[k];
                kl = 0;
                for (int k = 0; k < len; k++) {
                    double pn = p[k] / sp, qn = q[k] / sq;
                    kl += pn * log(pn / qn);
                }
            }
            if (kl < best) {
                best = kl;
                bl = hist_edge(h, start);
                br = hist_edge(h, end);
            }
        }
    free(p);
    free(q);
    if (isfinite(best)) {
        if (bl > *lo)
            *lo = bl;
        if (br < *hi)
            *hi = br;
    }
}

/* ---------------------------------------------------------------- quantized tensors */

typedef struct qact {
    char *name;             /* owned copy */
    int root;               /* own: its index; shared: the tensor whose scale/zero point it uses */
    char *producer;         /* node name, "" for a graph input */
    double vmin, vmax;      /* observed */
    double lo, hi;          /* calibrated range */
    qhist *h;
    float scale;
    uint8_t zp;
    char *scale_name, *zp_name, *dq;
    int out_idx;            /* calibration session output, -2: the data input */
    double s2, e2;          /* SQNR sums */
} qact;

typedef struct qctx {
    otl_model *m;
    otl_graph *g;
    const otl_quant_opts *q;
    otl_strmap dt;          /* element types */
    otl_strmap idx;         /* name -> index into a (keys: a[i].name) */
    qact *a;
    int na, cap;
    char *role;             /* per node (original indices) */
    char *fold;             /* per node: a Relu/Clip folded into its producer's output range */
} qctx;

static int act_find(const qctx *c, const char *name)
{
    return otl_strmap_get(&c->idx, name, -1);
}

/* Mark `name` quantized (root: -1 for its own range, else the index it shares); 1 when new. */
static int act_mark(qctx *c, const char *name, int root, const char *producer, otl_error *err)
{
    if (act_find(c, name) >= 0)
        return 0;
    if (c->na >= c->cap) {
        otl_error_set(err, OTL_ERR_INTERNAL, "quantize: too many tensors");
        return -1;
    }
    qact *a = &c->a[c->na];
    memset(a, 0, sizeof *a);
    if (!(a->name = otl_strdup(name)) || !(a->producer = otl_strdup(producer ? producer : ""))) {
        otl_oom(err);
        return -1;
    }
    a->root = root >= 0 ? c->a[root].root : c->na;
    a->vmin = INFINITY;
    a->vmax = -INFINITY;
    a->out_idx = -1;
    if (!otl_strmap_put(&c->idx, a->name, c->na)) {
        otl_oom(err);
        return -1;
    }
    c->na++;
    return 1;
}

/* Whether the tensor can carry a pair: float (or untyped for a Conv/Gemm/MatMul input), not an
 * initializer, not read inside a subgraph. */
static int quantizable(const qctx *c, const char *name, int untyped_ok)
{
    if (!*name || otl_graph_find_init(c->g, name) || otl_graph_reads_in_subgraph(c->g, name))
        return 0;
    int t = otl_strmap_get(&c->dt, name, -1);
    return t == OTL_DTYPE_FLOAT || (t < 0 && untyped_ok);
}

/* Activation input slots of a Conv/Gemm/MatMul/other node; returns the count (-1: the node cannot
 * be quantized because an input is not a float activation). */
static int act_slots(const qctx *c, const otl_node *n, int *slots, int cap)
{
    int k = 0;
    if (is_qtarget(n)) {
        int last = op_is(n, "Conv") ? 0 : 1;
        for (int s = 0; s <= last && s < n->n_inputs && k < cap; s++)
            if (quantizable(c, n->inputs[s], 1))
                slots[k++] = s;
        return k;
    }
    int nin = op_is(n, "Add") || op_is(n, "Concat") ? n->n_inputs : 1;
    if (nin < 1 || nin > cap)
        return -1;
    for (int s = 0; s < nin; s++) {
        if (!quantizable(c, n->inputs[s], 0))
            return -1;
        slots[k++] = s;
    }
    return k;
}

/* The constant [min, max] of a Clip (attributes before opset 11, inputs 1 and 2 after). */
static int clip_range(const otl_graph *g, const otl_node *n, double *mn, double *mx)
{
    *mn = -INFINITY;
    *mx = INFINITY;
    if (op_is(n, "Relu")) {
        *mn = 0;
        return 1;
    }
    const otl_attr *a = otl_node_attr(n, "min"), *b = otl_node_attr(n, "max");
    if (a)
        *mn = a->f;
    if (b)
        *mx = b->f;
    for (int s = 1; s <= 2 && s < n->n_inputs; s++) {
        if (!*n->inputs[s])
            continue;
        const otl_tensor *t = otl_graph_resolve_init(g, n->inputs[s]);
        if (!t || t->dtype != OTL_DTYPE_FLOAT || t->numel != 1 || !t->data || otl_graph_is_input(g, t->name))
            return 0;
        *(s == 1 ? mn : mx) = ((const float *)t->data)[0];
    }
    return 1;
}

/* The only reader of `y` when it is a Relu/Clip that can be folded into y's producer. */
static int foldable_act(const qctx *c, const char *y)
{
    const otl_graph *g = c->g;
    if (otl_graph_is_output(g, y) || otl_graph_n_reads(g, y) != 1)
        return -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *r = g->nodes[i];
        double mn, mx;
        if (r->n_inputs >= 1 && strcmp(r->inputs[0], y) == 0 && otl_node_is_onnx(r) && r->n_outputs == 1 &&
            (op_is(r, "Relu") || op_is(r, "Clip")) && *r->outputs[0] && clip_range(g, r, &mn, &mx) && mn <= 0 &&
            !otl_graph_reads_in_subgraph(g, r->outputs[0]))
            return i;
    }
    return -1;
}

/* Whether a data-movement output y feeds a node that is quantized (directly or through more
 * data-movement ops): only then does it get a pair (else an excluded node after it would still
 * see a dequantized input, and ORT would quantize it anyway). */
static int move_needed(const qctx *c, const char *y, int depth)
{
    const otl_graph *g = c->g;
    if (depth > 32)
        return 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *r = g->nodes[i];
        int slots[64], k;
        if ((is_qtarget(r) || is_other(r)) && !excluded(c->g, c->q, r) && (k = act_slots(c, r, slots, 64)) >= 0) {
            for (int j = 0; j < k; j++)
                if (strcmp(r->inputs[slots[j]], y) == 0)
                    return 1;
        } else if (is_move(r) && r->n_inputs >= 1 && strcmp(r->inputs[0], y) == 0 && *r->outputs[0] &&
                   move_needed(c, r->outputs[0], depth + 1))
            return 1;
    }
    return 0;
}

/* Decide which tensors get a pair (fixpoint over the nodes in topological order). */
static otl_status place(qctx *c, const int *order, int *n_nodes, otl_error *err)
{
    otl_graph *g = c->g;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int k = 0; k < g->n_nodes; k++) {
            int ni = order[k];
            const otl_node *n = g->nodes[ni];
            int slots[64], r;
            if ((is_qtarget(n) || is_other(n)) && !excluded(c->g, c->q, n) && n->n_outputs >= 1 &&
                *n->outputs[0] && (r = act_slots(c, n, slots, 64)) >= 0) {
                if (!c->role[ni]) {
                    c->role[ni] = is_qtarget(n) ? ROLE_COMPUTE : ROLE_OTHER;
                    ++*n_nodes;
                    changed = 1;
                }
                for (int j = 0; j < r; j++) {
                    int p = otl_graph_producer(g, n->inputs[slots[j]]);
                    int st = act_mark(c, n->inputs[slots[j]], -1, p >= 0 ? g->nodes[p]->name : "", err);
                    if (st < 0)
                        return err->code;
                    changed |= st;
                }
                const char *y = n->outputs[0];
                if ((op_is(n, "Gemm") || op_is(n, "MatMul")) && otl_graph_is_output(g, y))
                    continue;
                if (otl_strmap_get(&c->dt, y, -1) != OTL_DTYPE_FLOAT && !is_qtarget(n))
                    continue;
                if (otl_graph_reads_in_subgraph(g, y))
                    continue;
                int f = foldable_act(c, y);
                if (f >= 0 && !c->fold[f]) {
                    c->fold[f] = 1;
                    changed = 1;
                }
                int st = act_mark(c, f >= 0 ? g->nodes[f]->outputs[0] : y, -1, n->name, err);
                if (st < 0)
                    return err->code;
                changed |= st;
            } else if (is_move(n) && n->n_inputs >= 1 && act_find(c, n->inputs[0]) >= 0 && *n->outputs[0] &&
                       !otl_graph_reads_in_subgraph(g, n->outputs[0]) && !otl_graph_find_init(g, n->outputs[0]) &&
                       move_needed(c, n->outputs[0], 0)) {
                int st = act_mark(c, n->outputs[0], act_find(c, n->inputs[0]), n->name, err);
                if (st < 0)
                    return err->code;
                changed |= st;
            }
        }
    }
    return OTL_OK;
}

/* A Relu (or Clip) whose only reader is a MaxPool with a quantized output, while the Relu's own
 * output is not quantized (the float part of the model ends there, e.g. after a small first Conv
 * kept in float): the two swap places (MaxPool, then Relu: the same values, as the maximum commutes
 * with a non-decreasing function), so that the QuantizeLinear follows the Relu. Left as it is, ONNX
 * Runtime's QDQ propagation moves that QuantizeLinear above the MaxPool (one of the ops it
 * propagates through) and runs the MaxPool on uint8 in NCHW, which no layout transformation reaches
 * before the first QLinearConv: 13 ms per batch of 32 on the demo model's first pool against
 * 0.08 ms in float. After the swap ORT keeps the MaxPool in float (NCHWc) and fuses the Relu into
 * the QuantizeLinear. */
static otl_status commute_pools(qctx *c, otl_error *err)
{
    otl_graph *g = c->g;
    for (int pi = 0; pi < g->n_nodes; pi++) {
        otl_node *p = g->nodes[pi];
        if (!otl_node_is_onnx(p) || !op_is(p, "MaxPool") || p->n_inputs != 1 || p->n_outputs != 1 || !*p->outputs[0] ||
            act_find(c, p->outputs[0]) < 0 || act_find(c, p->inputs[0]) >= 0)
            continue;
        int ri = otl_graph_producer(g, p->inputs[0]);
        otl_node *r = ri >= 0 ? g->nodes[ri] : NULL;
        if (!r || !otl_node_is_onnx(r) || r->n_outputs != 1 || r->n_inputs < 1 ||
            !(op_is(r, "Relu") || op_is(r, "Clip")) || otl_graph_is_output(g, r->outputs[0]) ||
            otl_graph_n_reads(g, r->outputs[0]) != 1 || otl_graph_reads_in_subgraph(g, r->outputs[0]))
            continue;
        /* x -> Relu -> t -> MaxPool -> y   becomes   x -> MaxPool -> t -> Relu -> y (t changes shape) */
        char *t = r->outputs[0];
        r->outputs[0] = p->outputs[0];
        p->outputs[0] = t;
        char *x = r->inputs[0];
        r->inputs[0] = p->inputs[0];
        p->inputs[0] = x;
        for (int i = 0; i < g->n_value_info; i++)
            if (strcmp(g->value_info[i]->name, t) == 0) {
                otl_value_free(g->value_info[i]);
                g->value_info[i--] = g->value_info[--g->n_value_info];
            }
        g->nodes[ri] = p;   /* keep the node list in topological order */
        g->nodes[pi] = r;
        qact *a = &c->a[act_find(c, r->outputs[0])];
        char *prod = otl_strdup(r->name);
        if (!prod)
            return otl_oom(err);
        free(a->producer);
        a->producer = prod;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- calibration */

static int is_dir_path(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* The items to calibrate on: every item in order, or a seeded random subset of calib_samples,
 * sorted (reading order). */
static otl_status pick_items(const otl_quant_opts *q, int64_t len, int64_t **out, int64_t *n, otl_error *err)
{
    int64_t *all = malloc(((size_t)len + 1) * sizeof *all);
    if (!all)
        return otl_oom(err);
    for (int64_t i = 0; i < len; i++)
        all[i] = i;
    *n = len;
    if (q->calib_samples > 0 && q->calib_samples < len) {
        otl_rng r;
        otl_rng_seed(&r, q->seed, 0x717d71ULL);
        for (int64_t i = 0; i < q->calib_samples; i++) {
            int64_t j = i + (int64_t)otl_rng_below(&r, (uint64_t)(len - i));
            int64_t t = all[i];
            all[i] = all[j];
            all[j] = t;
        }
        *n = q->calib_samples;
        qsort(all, (size_t)*n, sizeof *all, cmp_i64);
    }
    *out = all;
    return OTL_OK;
}

/* Clone of m exposing every tensor of a (a[i].out_idx set; -2 for the data input). */
static otl_status expose(const otl_model *m, qact *a, int na, const char *const *names, otl_model **out,
                         const otl_value **input, otl_error *err)
{
    otl_model *c = NULL;
    if (otl_model_clone(m, &c, err))
        return err->code;
    *input = NULL;
    for (int i = 0; i < c->graph->n_inputs && !*input; i++)
        if (!otl_graph_find_init(c->graph, c->graph->inputs[i]->name))
            *input = c->graph->inputs[i];
    if (!*input) {
        otl_model_free(c);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input to calibrate", otl_model_file(m));
    }
    for (int i = 0; i < na; i++) {
        const char *nm = names ? names[i] : a[i].name;
        a[i].out_idx = -1;
        if (strcmp(nm, (*input)->name) == 0) {
            a[i].out_idx = -2;
            continue;
        }
        for (int k = 0; k < c->graph->n_outputs && a[i].out_idx < 0; k++)
            if (strcmp(c->graph->outputs[k]->name, nm) == 0)
                a[i].out_idx = k;
        if (a[i].out_idx >= 0)
            continue;
        otl_value *v = otl_value_new_tensor(nm, OTL_DTYPE_FLOAT, -1, NULL, NULL);
        if (!v || otl_graph_add_output(c->graph, v)) {
            otl_value_free(v);
            otl_model_free(c);
            return otl_oom(err);
        }
        a[i].out_idx = c->graph->n_outputs - 1;
    }
    *out = c;
    return OTL_OK;
}

/* A batch reader over the chosen items. */
typedef struct qdata {
    otl_dataset *d;
    int64_t *items, n;
    int sdtype, srank;
    int64_t sdims[OTL_DATASET_MAX_RANK + 1];
    size_t sb;
    int64_t b;
    void *x;
} qdata;

static void qdata_free(qdata *qd)
{
    otl_dataset_free(qd->d);
    free(qd->items);
    free(qd->x);
    memset(qd, 0, sizeof *qd);
}

static otl_status qdata_open(qdata *qd, const otl_model *m, const otl_quant_opts *q, otl_error *err)
{
    memset(qd, 0, sizeof *qd);
    otl_preprocess pp;
    otl_dataset_opts o;
    int dir = is_dir_path(q->calib);
    if ((dir && otl_preprocess_get(m, &pp, err)) || otl_dataset_opts_for_model(&o, m, dir ? &pp : NULL, err))
        return err->code;
    o.threads = q->threads;
    if (otl_dataset_open(&qd->d, q->calib, &o, err))
        return err->code;
    if (pick_items(q, otl_dataset_len(qd->d), &qd->items, &qd->n, err))
        return err->code;
    if (qd->n < 1) /* every activation range would be a made-up [0, 1] */
        return otl_error_set(err, OTL_ERR_INPUT, "%s: no calibration samples", q->calib);
    otl_dataset_sample(qd->d, &qd->sdtype, &qd->srank, qd->sdims + 1);
    qd->b = q->batch > 0 ? q->batch : 16;
    if (qd->b > qd->n)
        qd->b = qd->n > 0 ? qd->n : 1;
    qd->sb = otl_dataset_sample_bytes(qd->d);
    if (!(qd->x = malloc((size_t)qd->b * qd->sb + 1)))
        return otl_oom(err);
    return OTL_OK;
}

/* Run session s on items [start, start + nb) of qd; *outs as otl_session_run. */
static otl_status qdata_run(qdata *qd, otl_session *s, const char *input, int64_t start, int64_t nb,
                            otl_tensor ***outs, int *n_outs, otl_error *err)
{
    if (otl_dataset_batch(qd->d, qd->items + start, nb, NULL, 0, qd->x, NULL, err))
        return err->code;
    qd->sdims[0] = nb;
    otl_tensor *in = otl_tensor_new(input, qd->sdtype, qd->srank + 1, qd->sdims);
    if (!in)
        return otl_oom(err);
    in->data = qd->x;
    in->nbytes = (size_t)nb * qd->sb;
    const otl_tensor *ins[1] = {in};
    otl_status st = otl_session_run(s, ins, 1, outs, n_outs, err);
    in->data = NULL;
    otl_tensor_free(in);
    return st;
}

/* The float values of tensor a in one batch (NULL when not float). */
static const float *values_of(const qdata *qd, const qact *a, otl_tensor **outs, int n_outs, int64_t nb,
                              int64_t *n)
{
    if (a->out_idx == -2) {
        if (qd->sdtype != OTL_DTYPE_FLOAT)
            return NULL;
        *n = (int64_t)((size_t)nb * qd->sb / sizeof(float));
        return qd->x;
    }
    if (a->out_idx < 0 || a->out_idx >= n_outs || outs[a->out_idx]->dtype != OTL_DTYPE_FLOAT ||
        (!outs[a->out_idx]->data && outs[a->out_idx]->numel))
        return NULL;
    *n = outs[a->out_idx]->numel;
    return outs[a->out_idx]->data;
}

/* One pass over the calibration items: min/max (and histograms) of every tensor with its own range. */
static otl_status calibrate(qctx *c, qdata *qd, otl_session *s, const char *input, otl_error *err)
{
    int hist = c->q->calib_method != OTL_CALIB_MINMAX;
    for (int i = 0; i < c->na; i++)
        if (hist && c->a[i].root == i && !(c->a[i].h = calloc(1, sizeof *c->a[i].h)))
            return otl_oom(err);
    for (int64_t start = 0; start < qd->n; start += qd->b) {
        int64_t nb = qd->n - start < qd->b ? qd->n - start : qd->b;
        otl_tensor **outs = NULL;
        int n_outs = 0;
        if (qdata_run(qd, s, input, start, nb, &outs, &n_outs, err))
            return err->code;
        for (int i = 0; i < c->na; i++) {
            qact *a = &c->a[i];
            if (a->root != i)
                continue;
            int64_t n = 0;
            const float *v = values_of(qd, a, outs, n_outs, nb, &n);
            if (!v) {
                otl_tensors_free(outs, n_outs);
                return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: tensor '%s' to quantize is not float",
                                     otl_model_file(c->m), a->name);
            }
            float mn = INFINITY, mx = -INFINITY;
            for (int64_t k = 0; k < n; k++)
                if (isfinite(v[k])) {
                    if (v[k] < mn)
                        mn = v[k];
                    if (v[k] > mx)
                        mx = v[k];
                }
            if (mn < a->vmin)
                a->vmin = mn;
            if (mx > a->vmax)
                a->vmax = mx;
            if (a->h && mn <= mx)
                hist_add(a->h, v, n, fabsf(mn) > fabsf(mx) ? fabsf(mn) : fabsf(mx));
        }
        otl_tensors_free(outs, n_outs);
    }
    for (int i = 0; i < c->na; i++) {
        qact *a = &c->a[i];
        if (a->root != i)
            continue;
        a->lo = a->vmin;
        a->hi = a->vmax;
        if (a->h && a->vmin <= a->vmax) {
            if (c->q->calib_method == OTL_CALIB_PERCENTILE)
                range_percentile(a->h, c->q->percentile > 0 ? c->q->percentile : 99.999, &a->lo, &a->hi);
            else
                range_entropy(a->h, &a->lo, &a->hi);
        }
        free(a->h);
        a->h = NULL;
    }
    return OTL_OK;
}

/* ---------------------------------------------------------------- graph rewrite */

/* Append op(in[0..3)) -> output; the output is `outname` when given, else fresh "<base>_(de)quantized";
 * *out receives the output name (owned by the node). */
static otl_status add_q_node(otl_graph *g, const char *op, const char *const *in, const char *base, int axis,
                             const char *outname, const char **out, otl_error *err)
{
    char nb[600];
    snprintf(nb, sizeof nb, "%s_%s", base, op);
    char *nname = otl_graph_fresh_name(g, nb);
    snprintf(nb, sizeof nb, "%s_%s", base, strcmp(op, "QuantizeLinear") == 0 ? "quantized" : "dequantized");
    char *oname = outname ? otl_strdup(outname) : nname ? otl_graph_fresh_name(g, nb) : NULL;
    otl_node *n = oname && nname ? otl_node_new(nname, op, "") : NULL;
    const char *outs[1] = {oname};
    otl_attr *a;
    int bad = !n || otl_node_set_io(n, 3, in, 1, outs) ||
              (axis >= 0 && (otl_node_add_attr(n, "axis", OTL_ATTR_INT, &a) || ((a->i = axis), 0)));
    free(nname);
    free(oname);
    if (bad || otl_graph_add_node(g, n)) {
        otl_node_free(n);
        return otl_oom(err);
    }
    *out = n->outputs[0];
    return OTL_OK;
}

static void act_params(qact *a)
{
    double lo = a->lo < 0 ? a->lo : 0, hi = a->hi > 0 ? a->hi : 0;
    if (!(lo <= hi)) /* never seen (no finite value) */
        lo = hi = 0;
    float scale = (float)((hi - lo) / 255.0);
    if (!(scale > 0) || !isfinite(scale))
        scale = 1.0f;
    double z = nearbyint(-lo / scale);
    a->scale = scale;
    a->zp = (uint8_t)(z < 0 ? 0 : z > 255 ? 255 : z);
}

/* Fold the Relu/Clip nodes marked in c->fold whose quantized range they do not change: the
 * producer writes the activation's output directly. */
static otl_status fold_acts(qctx *c, otl_quant_info *info, otl_error *err)
{
    otl_graph *g = c->g;
    int n0 = g->n_nodes;
    char *drop = calloc((size_t)n0 + 1, 1);
    if (!drop)
        return otl_oom(err);
    for (int i = 0; i < n0; i++) {
        if (!c->fold[i])
            continue;
        otl_node *r = g->nodes[i];
        int ai = act_find(c, r->outputs[0]), p = otl_graph_producer(g, r->inputs[0]);
        double mn, mx;
        if (ai < 0 || p < 0 || !clip_range(g, r, &mn, &mx))
            continue;
        const qact *a = &c->a[c->a[ai].root];
        double qlo = (0.0 - a->zp) * a->scale, qhi = (255.0 - a->zp) * a->scale;
        if (!(mn <= qlo && qhi <= mx))
            continue;   /* the Clip cuts inside the quantized range: kept */
        otl_node *pn = g->nodes[p];
        for (int k = 0; k < pn->n_outputs; k++)
            if (strcmp(pn->outputs[k], r->inputs[0]) == 0 && !otl_set_str(&pn->outputs[k], r->outputs[0])) {
                free(drop);
                return otl_oom(err);
            }
        drop[i] = 1;
        info->n_folded++;
    }
    int w = 0;
    for (int i = 0; i < n0; i++) {
        if (drop[i])
            otl_node_free(g->nodes[i]);
        else
            g->nodes[w++] = g->nodes[i];
    }
    g->n_nodes = w;
    free(drop);
    return OTL_OK;
}

/* Scale and zero-point initializers of every tensor with its own range, then the pairs. */
static otl_status insert_pairs(qctx *c, otl_error *err)
{
    otl_graph *g = c->g;
    for (int i = 0; i < c->na; i++) {
        qact *a = &c->a[i];
        if (a->root != i)
            continue;
        act_params(a);
        char base[600];
        snprintf(base, sizeof base, "%s_scale", a->name);
        otl_tensor *ts =
            otl_graph_add_init_copy(g, base, OTL_DTYPE_FLOAT, 0, NULL, &a->scale, sizeof a->scale, NULL, err);
        snprintf(base, sizeof base, "%s_zero_point", a->name);
        otl_tensor *tz = ts ? otl_graph_add_init_copy(g, base, OTL_DTYPE_UINT8, 0, NULL, &a->zp, 1, NULL, err) : NULL;
        if (!tz || !(a->scale_name = otl_strdup(ts->name)) || !(a->zp_name = otl_strdup(tz->name)))
            return tz ? otl_oom(err) : err->code;
    }
    int n0 = g->n_nodes;
    for (int i = 0; i < c->na; i++) {
        qact *a = &c->a[i];
        const qact *r = &c->a[a->root];
        if (a->root != i) {
            a->scale = r->scale;
            a->zp = r->zp;
        }
        const char *src = a->name, *q, *dq;
        char *renamed = NULL;
        int out = otl_graph_is_output(g, a->name);
        if (out) {
            /* the producer writes "<name>_float"; the DequantizeLinear writes the graph output */
            int p = otl_graph_producer(g, a->name);
            char base[600];
            snprintf(base, sizeof base, "%s_float", a->name);
            if (p < 0)
                continue;   /* a graph input passed through as output: left alone */
            if (!(renamed = otl_graph_fresh_name(g, base)))
                return otl_oom(err);
            otl_node *pn = g->nodes[p];
            for (int k = 0; k < pn->n_outputs; k++)
                if (strcmp(pn->outputs[k], a->name) == 0 && !otl_set_str(&pn->outputs[k], renamed)) {
                    free(renamed);
                    return otl_oom(err);
                }
            /* readers of the output keep reading it: it is now the dequantized value */
            src = renamed;
        }
        const char *qin[3] = {src, r->scale_name, r->zp_name};
        otl_status st = add_q_node(g, "QuantizeLinear", qin, a->name, -1, NULL, &q, err);
        const char *dqin[3] = {q, r->scale_name, r->zp_name};
        if (!st)
            st = add_q_node(g, "DequantizeLinear", dqin, a->name, -1, out ? a->name : NULL, &dq, err);
        free(renamed);
        if (st)
            return st;
        if (!(a->dq = otl_strdup(dq)))
            return otl_oom(err);
        if (out)
            continue;
        for (int j = 0; j < n0; j++) {
            otl_node *n = g->nodes[j];
            for (int k = 0; k < n->n_inputs; k++)
                if (strcmp(n->inputs[k], a->name) == 0 && !otl_set_str(&n->inputs[k], a->dq))
                    return otl_oom(err);
        }
    }
    return OTL_OK;
}

/* Store w as int8 (symmetric, per channel along axis, or per tensor when axis < 0) behind a
 * DequantizeLinear; *dq receives its output name, *scales (malloc'd, nc of them) the scales. */
static otl_status quantize_weight(otl_graph *g, const otl_tensor *w, int axis, const char **dq, float **scales,
                                  int64_t *n_scales, double *sqnr, otl_error *err)
{
    int64_t nc = axis >= 0 ? w->dims[axis] : 1, inner = 1;
    for (int k = axis + 1; axis >= 0 && k < w->rank; k++)
        inner *= w->dims[k];
    float *scale = calloc((size_t)nc + 1, sizeof *scale);
    int8_t *zp = calloc((size_t)nc + 1, 1), *qv = malloc((size_t)w->numel + 1);
    otl_status st = OTL_OK;
    if (!scale || !zp || !qv) {
        st = otl_oom(err);
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
    double s2 = 0, e2 = 0;
    for (int64_t i = 0; i < w->numel; i++) {
        int64_t c = axis >= 0 ? (i / inner) % nc : 0;
        double r = nearbyint(W[i] / scale[c]);
        qv[i] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : (isfinite(r) ? r : 0));
        if (isfinite(W[i])) {
            double d = W[i] - (double)qv[i] * scale[c];
            s2 += (double)W[i] * W[i];
            e2 += d * d;
        }
    }
    *sqnr = e2 > 0 ? 10 * log10(s2 / e2) : INFINITY;
    char base[600];
    snprintf(base, sizeof base, "%s_quantized", w->name);
    otl_tensor *tq = otl_graph_add_init_copy(g, base, OTL_DTYPE_INT8, w->rank, w->dims, qv, (size_t)w->numel,
                                             w->ext_location, err);
    int r1 = axis >= 0 ? 1 : 0;
    snprintf(base, sizeof base, "%s_scale", w->name);
    otl_tensor *ts =
        tq ? otl_graph_add_init_copy(g, base, OTL_DTYPE_FLOAT, r1, &nc, scale, (size_t)nc * 4, NULL, err) : NULL;
    snprintf(base, sizeof base, "%s_zero_point", w->name);
    otl_tensor *tz = ts ? otl_graph_add_init_copy(g, base, OTL_DTYPE_INT8, r1, &nc, zp, (size_t)nc, NULL, err) : NULL;
    if (!tz) {
        st = err->code;
        goto done;
    }
    const char *in[3] = {tq->name, ts->name, tz->name};
    st = add_q_node(g, "DequantizeLinear", in, w->name, axis, NULL, dq, err);
    if (!st) {
        *scales = scale;
        *n_scales = nc;
        scale = NULL;
    }
done:
    free(scale);
    free(zp);
    free(qv);
    return st;
}

/* Store the 1-D bias b as int32 with scale xs * ws[c] (zero point 0) behind a DequantizeLinear. */
static otl_status quantize_bias(otl_graph *g, const otl_tensor *b, float xs, const float *ws, int64_t nws,
                                int per_axis, const char **dq, float **scales, double *sqnr, otl_error *err)
{
    int64_t n = b->numel, ns = per_axis ? n : 1;
    float *scale = malloc(((size_t)ns + 1) * sizeof *scale);
    int32_t *qv = malloc(((size_t)n + 1) * sizeof *qv), *zp = calloc((size_t)ns + 1, sizeof *zp);
    otl_status st = OTL_OK;
    if (!scale || !qv || !zp) {
        st = otl_oom(err);
        goto done;
    }
    for (int64_t c = 0; c < ns; c++) {
        scale[c] = xs * ws[nws > 1 ? c : 0];
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            scale[c] = 1.0f;
    }
    const float *B = b->data;
    double s2 = 0, e2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double sc = scale[per_axis ? i : 0], r = nearbyint(B[i] / sc);
        qv[i] = (int32_t)(r < -2147483647.0 ? -2147483647.0 : r > 2147483647.0 ? 2147483647.0 : isfinite(r) ? r : 0);
        if (isfinite(B[i])) {
            double d = B[i] - qv[i] * sc;
            s2 += (double)B[i] * B[i];
            e2 += d * d;
        }
    }
    *sqnr = e2 > 0 ? 10 * log10(s2 / e2) : INFINITY;
    char base[600];
    snprintf(base, sizeof base, "%s_quantized", b->name);
    otl_tensor *tq = otl_graph_add_init_copy(g, base, OTL_DTYPE_INT32, 1, &n, qv, (size_t)n * 4, NULL, err);
    int r1 = per_axis ? 1 : 0;
    snprintf(base, sizeof base, "%s_scale", b->name);
    otl_tensor *ts =
        tq ? otl_graph_add_init_copy(g, base, OTL_DTYPE_FLOAT, r1, &ns, scale, (size_t)ns * 4, NULL, err) : NULL;
    snprintf(base, sizeof base, "%s_zero_point", b->name);
    otl_tensor *tz =
        ts ? otl_graph_add_init_copy(g, base, OTL_DTYPE_INT32, r1, &ns, zp, (size_t)ns * 4, NULL, err) : NULL;
    if (!tz) {
        st = err->code;
        goto done;
    }
    const char *in[3] = {tq->name, ts->name, tz->name};
    st = add_q_node(g, "DequantizeLinear", in, b->name, per_axis ? 0 : -1, NULL, dq, err);
    if (!st) {
        *scales = scale;
        scale = NULL;
    }
done:
    free(scale);
    free(qv);
    free(zp);
    return st;
}

/* The weight initializer of n (slot 1) and its output-channel axis, or NULL. */
static otl_tensor *weight_of(const otl_graph *g, const otl_node *n, int *axis)
{
    otl_tensor *w = n->n_inputs > 1 ? otl_graph_const_float(g, n->inputs[1]) : NULL;
    if (!w)
        return NULL;
    if (op_is(n, "Conv") && w->rank >= 3)
        *axis = 0;
    else if (op_is(n, "Gemm") && w->rank == 2) {
        const otl_attr *tb = otl_node_attr(n, "transB");
        *axis = tb && tb->i ? 0 : 1;
    } else if (op_is(n, "MatMul") && w->rank == 2)
        *axis = 1;
    else
        return NULL;
    return w;
}

/* ---------------------------------------------------------------- report */

void otl_quant_report_free(otl_quant_report *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        free(r->t[i].name);
        free(r->t[i].node);
        free(r->t[i].shared_with);
        free(r->t[i].scale);
    }
    free(r->t);
    for (int i = 0; i < r->n_float; i++)
        free(r->float_node[i]);
    free(r->float_node);
    free(r->float_why);
    free(r->model);
    free(r->calib);
    free(r);
}

static otl_quant_tensor *report_add(otl_quant_report *r, const char *name, int kind, const char *node, otl_error *err)
{
    otl_quant_tensor *t = realloc(r->t, ((size_t)r->n + 1) * sizeof *t);
    if (!t) {
        otl_oom(err);
        return NULL;
    }
    r->t = t;
    t = &r->t[r->n];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->sqnr_db = t->rel_err = NAN;
    t->lo = t->hi = NAN;
    if (!(t->name = otl_strdup(name)) || !(t->node = otl_strdup(node ? node : ""))) {
        free(t->name);
        otl_oom(err);
        return NULL;
    }
    r->n++;
    return t;
}

static void set_sqnr(otl_quant_tensor *t, double s2, double e2)
{
    t->sqnr_db = e2 > 0 ? 10 * log10(s2 / e2) : s2 > 0 ? INFINITY : NAN;
    t->rel_err = s2 > 0 ? sqrt(e2 / s2) : NAN;
}

static const char *kind_name(int k)
{
    return k == OTL_QT_WEIGHT ? "weight" : k == OTL_QT_BIAS ? "bias" : "activation";
}

static const char *method_name(int m)
{
    return m == OTL_CALIB_PERCENTILE ? "percentile" : m == OTL_CALIB_ENTROPY ? "entropy" : "minmax";
}

otl_status otl_quant_report_write_json(const otl_quant_report *r, const char *path, otl_error *err)
{
    otl_atomic_file af;
    if (otl_atomic_open(&af, path, err))
        return err->code;
    otl_quant_report_json(r, af.fp);
    return otl_atomic_commit(&af, err);
}

void otl_quant_report_json(const otl_quant_report *r, FILE *fp)
{
    otl_json j;
    otl_json_init(&j, fp);
    otl_json_obj(&j);
    otl_json_key(&j, "model");
    otl_json_str(&j, r->model);
    otl_json_key(&j, "calib");
    otl_json_str(&j, r->calib);
    otl_json_key(&j, "calib_method");
    otl_json_str(&j, method_name(r->calib_method));
    if (r->calib_method == OTL_CALIB_PERCENTILE) {
        otl_json_key(&j, "percentile");
        otl_json_num(&j, r->percentile);
    }
    otl_json_key(&j, "calib_samples");
    otl_json_int(&j, r->calib_samples);
    otl_json_key(&j, "calib_subset");
    otl_json_bool(&j, r->subset);
    otl_json_key(&j, "seed");
    otl_json_int(&j, (int64_t)r->seed);
    otl_json_key(&j, "activation_type");
    otl_json_str(&j, "uint8");
    otl_json_key(&j, "weight_type");
    otl_json_str(&j, "int8");
    otl_json_key(&j, "per_channel");
    otl_json_bool(&j, r->per_channel);
    otl_json_key(&j, "sqnr_source");
    otl_json_str(&j, r->sqnr_model ? "quantized_model" : "calibration_values");
    otl_json_key(&j, "sqnr_samples");
    otl_json_int(&j, r->sqnr_samples);
    otl_json_key(&j, "tensors");
    otl_json_arr(&j);
    for (int i = 0; i < r->n; i++) {
        const otl_quant_tensor *t = &r->t[i];
        otl_json_obj(&j);
        otl_json_key(&j, "name");
        otl_json_str(&j, t->name);
        otl_json_key(&j, "kind");
        otl_json_str(&j, kind_name(t->kind));
        otl_json_key(&j, "node");
        otl_json_str(&j, t->node);
        otl_json_key(&j, "dtype");
        otl_json_str(&j, t->kind == OTL_QT_WEIGHT ? "int8" : t->kind == OTL_QT_BIAS ? "int32" : "uint8");
        otl_json_key(&j, "scale");
        if (t->n_scales == 1)
            otl_json_num(&j, t->scale[0]);
        else {
            otl_json_arr(&j);
            for (int64_t k = 0; k < t->n_scales; k++)
                otl_json_num(&j, t->scale[k]);
            otl_json_arr_end(&j);
        }
        otl_json_key(&j, "zero_point");
        otl_json_int(&j, t->zero_point);
        if (t->kind == OTL_QT_ACTIVATION) {
            otl_json_key(&j, "min");
            otl_json_num(&j, t->lo);
            otl_json_key(&j, "max");
            otl_json_num(&j, t->hi);
            otl_json_key(&j, "shared_with");
            otl_json_str(&j, t->shared_with);
        }
        otl_json_key(&j, "sqnr_db");
        if (isinf(t->sqnr_db) && t->sqnr_db > 0)
            otl_json_str(&j, "inf");
        else
            otl_json_num(&j, t->sqnr_db);
        otl_json_key(&j, "rel_error");
        otl_json_num(&j, t->rel_err);
        otl_json_obj_end(&j);
    }
    otl_json_arr_end(&j);
    otl_json_key(&j, "kept_float");
    otl_json_arr(&j);
    for (int i = 0; i < r->n_float; i++) {
        otl_json_obj(&j);
        otl_json_key(&j, "node");
        otl_json_str(&j, r->float_node[i]);
        otl_json_key(&j, "reason");
        otl_json_str(&j, r->float_why[i]);
        otl_json_obj_end(&j);
    }
    otl_json_arr_end(&j);
    otl_json_obj_end(&j);
    fputc('\n', fp);
}

void otl_quant_report_print(const otl_quant_report *r, FILE *fp)
{
    fprintf(fp, "quantize: %s calibration on %lld sample%s%s; SQNR from %s (%lld samples)\n",
            method_name(r->calib_method), (long long)r->calib_samples, r->calib_samples == 1 ? "" : "s",
            r->subset ? " (seeded subset)" : "",
            r->sqnr_model ? "the quantized model vs the float model" : "the float values quantized alone",
            (long long)r->sqnr_samples);
    fprintf(fp, "%-10s %-9s %-11s %4s %9s  %s\n", "kind", "SQNR dB", "scale", "zp", "rel.err", "tensor");
    for (int i = 0; i < r->n; i++) {
        const otl_quant_tensor *t = &r->t[i];
        char sc[32];
        if (t->n_scales == 1)
            snprintf(sc, sizeof sc, "%.4g", t->scale[0]);
        else
            snprintf(sc, sizeof sc, "%lld ch.", (long long)t->n_scales);
        fprintf(fp, "%-10s %9.2f %-11s %4lld %9.3g  %s%s%s\n", kind_name(t->kind), t->sqnr_db, sc,
                (long long)t->zero_point, t->rel_err, t->name, t->shared_with ? " = " : "",
                t->shared_with ? t->shared_with : "");
    }
    for (int i = 0; i < r->n_float; i++)
        fprintf(fp, "kept float: %s (%s)\n", r->float_node[i],
                strcmp(r->float_why[i], "exclude") == 0 ? "--exclude" : "a small first Conv, --conv-min-k");
}

/* Per activation SQNR over at most 256 calibration items: the quantized model's dequantized
 * tensors against the float model's (when onnx-tl runs the QDQ model), else the float values
 * quantized with the tensor's scale and zero point. */
static otl_status measure(qctx *c, qdata *qd, otl_session *fs, const char *input, otl_quant_report *rep,
                          otl_error *err)
{
    otl_model *qm = NULL;
    otl_session *qs = NULL;
    const otl_value *qin = NULL;
    qact *qa = calloc((size_t)c->na + 1, sizeof *qa);
    const char **names = calloc((size_t)c->na + 1, sizeof *names);
    otl_status st = OTL_OK;
    if (!qa || !names) {
        st = otl_oom(err);
        goto done;
    }
    for (int i = 0; i < c->na; i++)
        names[i] = c->a[i].dq ? c->a[i].dq : c->a[i].name;
    otl_error qerr = {0};
    otl_session_opts so = {0};
    so.threads = c->q->threads;
    if (expose(c->m, qa, c->na, names, &qm, &qin, &qerr) == OTL_OK && otl_session_new(&qs, qm, &so, &qerr) == OTL_OK)
        rep->sqnr_model = 1;
    int64_t n = qd->n < 256 ? qd->n : 256;
    for (int64_t start = 0; start < n && !st; start += qd->b) {
        int64_t nb = n - start < qd->b ? n - start : qd->b;
        otl_tensor **fo = NULL, **qo = NULL;
        int nfo = 0, nqo = 0;
        if ((st = qdata_run(qd, fs, input, start, nb, &fo, &nfo, err)))
            break;
        if (qs && qdata_run(qd, qs, qin->name, start, nb, &qo, &nqo, &qerr)) {
            /* the QDQ model fails at run time: fall back for every tensor */
            rep->sqnr_model = 0;
            otl_session_free(qs);
            qs = NULL;
            for (int i = 0; i < c->na; i++)
                c->a[i].s2 = c->a[i].e2 = 0;
            start = -qd->b;
            otl_tensors_free(fo, nfo);
            continue;
        }
        for (int i = 0; i < c->na; i++) {
            qact *a = &c->a[i];
            int64_t nv = 0, nq = 0;
            const float *v = values_of(qd, a, fo, nfo, nb, &nv);
            const float *w = qs ? values_of(qd, &qa[i], qo, nqo, nb, &nq) : NULL;
            if (!v || (qs && (!w || nq != nv)))
                continue;
            for (int64_t k = 0; k < nv; k++) {
                if (!isfinite(v[k]))
                    continue;
                double x;
                if (w)
                    x = w[k];
                else {
                    double qv = nearbyint(v[k] / a->scale) + a->zp;
                    qv = qv < 0 ? 0 : qv > 255 ? 255 : qv;
                    x = (qv - a->zp) * (double)a->scale;
                }
                a->s2 += (double)v[k] * v[k];
                a->e2 += (v[k] - x) * (v[k] - x);
            }
        }
        otl_tensors_free(fo, nfo);
        otl_tensors_free(qo, nqo);
    }
    rep->sqnr_samples = n;
done:
    otl_session_free(qs);
    otl_model_free(qm);
    free(qa);
    free(names);
    return st;
}

/* ---------------------------------------------------------------- entry point */

otl_status otl_export_quantize(otl_model *m, const otl_quant_opts *q, otl_quant_info *info, otl_error *err)
{
    otl_quant_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (!m || !m->graph || !q || !q->calib)
        return otl_error_set(err, OTL_ERR_INTERNAL, "otl_export_quantize: no model or calibration data");
    if (q->calib_method < OTL_CALIB_MINMAX || q->calib_method > OTL_CALIB_ENTROPY ||
        (q->calib_method == OTL_CALIB_PERCENTILE && q->percentile != 0 && !(q->percentile > 50 && q->percentile <= 100)))
        return otl_error_set(err, OTL_ERR_USAGE, "quantize: bad calibration method or percentile");
    otl_graph *g = m->graph;
    int64_t opset = otl_model_opset(m, "");
    if (opset < 0)
        opset = otl_model_opset(m, "ai.onnx");
    if (opset < 10)
        return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                             "%s: opset %lld has no QuantizeLinear/DequantizeLinear (needs 10 or later)",
                             otl_model_file(m), (long long)opset);
    info->per_channel = opset >= 13;
    if (otl_glob_list_check(m, q->exclude, excludable, "Conv, Gemm, MatMul, Add, Concat, GlobalAveragePool or AveragePool node", err))
        return err->code;

    qctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.g = g;
    c.q = q;
    int *order = NULL, n0 = g->n_nodes;
    otl_model *fm = NULL;
    otl_session *fs = NULL;
    const otl_value *input = NULL;
    qdata qd;
    memset(&qd, 0, sizeof qd);
    otl_quant_report *rep = NULL;
    otl_status st = OTL_OK;
    c.cap = g->n_inputs + 1;
    for (int i = 0; i < n0; i++)
        c.cap += g->nodes[i]->n_inputs + g->nodes[i]->n_outputs;
    if (!(c.a = calloc((size_t)c.cap, sizeof *c.a)) || !(c.role = calloc((size_t)n0 + 1, 1)) ||
        !(c.fold = calloc((size_t)n0 + 1, 1)) || !otl_strmap_init(&c.idx, (size_t)c.cap * 2)) {
        st = otl_oom(err);
        goto done;
    }
    if ((st = otl_graph_toposort(g, &order, otl_model_file(m), err)) || (st = infer_dtypes(g, order, &c.dt, err)) ||
        (st = place(&c, order, &info->n_nodes, err)) || (st = commute_pools(&c, err)))
        goto done;
    otl_strmap_free(&c.dt);
    memset(&c.dt, 0, sizeof c.dt);
    if (c.na == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no Conv, Gemm or MatMul to quantize", otl_model_file(m));
        goto done;
    }

    /* calibration: the float model exposing every quantized tensor */
    otl_session_opts so = {0};
    so.threads = q->threads;
    if ((st = expose(m, c.a, c.na, NULL, &fm, &input, err)) || (st = qdata_open(&qd, m, q, err)) ||
        (st = otl_session_new(&fs, fm, &so, err)) || (st = calibrate(&c, &qd, fs, input->name, err)))
        goto done;
    info->samples = qd.n;
    for (int i = 0; i < c.na; i++)
        if (c.a[i].root == i)
            act_params(&c.a[i]);

    if (q->report) {
        if (!(rep = calloc(1, sizeof *rep)) || !(rep->model = otl_strdup(otl_model_file(m))) ||
            !(rep->calib = otl_strdup(q->calib))) {
            st = otl_oom(err);
            goto done;
        }
        rep->calib_method = q->calib_method;
        rep->percentile = q->percentile > 0 ? q->percentile : 99.999;
        rep->calib_samples = qd.n;
        rep->seed = q->seed;
        rep->subset = q->calib_samples > 0 && q->calib_samples < otl_dataset_len(qd.d);
        rep->per_channel = info->per_channel;
        for (int i = 0; i < g->n_nodes && !st; i++) {
            const otl_node *n = g->nodes[i];
            if (!is_qtarget(n) || !excluded(g, q, n))
                continue;
            char **fn = realloc(rep->float_node, ((size_t)rep->n_float + 1) * sizeof *fn);
            const char **fw = fn ? realloc(rep->float_why, ((size_t)rep->n_float + 1) * sizeof *fw) : NULL;
            if (fn)
                rep->float_node = fn;
            if (fw)
                rep->float_why = fw;
            if (!fn || !fw || !(fn[rep->n_float] = otl_strdup(n->name))) {
                st = otl_oom(err);
                break;
            }
            fw[rep->n_float++] = otl_glob_list_match(q->exclude, n) ? "exclude" : "conv_min_k";
        }
        if (st)
            goto done;
    }

    /* the rewrite */
    if ((st = fold_acts(&c, info, err)) || (st = insert_pairs(&c, err)))
        goto done;
    info->n_activations = c.na;
    int nq = g->n_nodes;
    const char **wname = calloc((size_t)nq + 1, sizeof *wname), **wdq = calloc((size_t)nq + 1, sizeof *wdq);
    float **wsc = calloc((size_t)nq + 1, sizeof *wsc);
    int64_t *wns = calloc((size_t)nq + 1, sizeof *wns);
    int nw = 0;
    if (!wname || !wdq || !wsc || !wns)
        st = otl_oom(err);
    for (int i = 0; i < nq && !st; i++) {
        otl_node *n = g->nodes[i];
        int axis = 0;
        if (!is_qtarget(n) || excluded(g, q, n))
            continue;
        otl_tensor *w = weight_of(g, n, &axis);
        if (!w)
            continue;
        int found = -1;
        for (int j = 0; j < nw && found < 0; j++)
            if (strcmp(wname[j], w->name) == 0)
                found = j;
        if (found < 0) {
            const char *dq;
            double sq = NAN;
            int ax = info->per_channel ? axis : -1;
            if ((st = quantize_weight(g, w, ax, &dq, &wsc[nw], &wns[nw], &sq, err)))
                break;
            n = g->nodes[i];
            if (rep) {
                otl_quant_tensor *t = report_add(rep, w->name, OTL_QT_WEIGHT, n->name, err);
                if (!t) {
                    st = err->code;
                    break;
                }
                t->n_scales = wns[nw];
                if (!(t->scale = otl_memdup(wsc[nw], (size_t)wns[nw] * sizeof(float)))) {
                    st = otl_oom(err);
                    break;
                }
                t->sqnr_db = sq;
                t->rel_err = isinf(sq) ? 0 : pow(10, -sq / 20);
            }
            wname[nw] = w->name;
            wdq[nw] = dq;
            found = nw++;
            info->n_weights++;
        }
        if (!otl_set_str(&n->inputs[1], wdq[found])) {
            st = otl_oom(err);
            break;
        }
        /* bias: int32 with scale x_scale * w_scale when the input is quantized */
        int is_gemm = op_is(n, "Gemm");
        const otl_attr *beta = is_gemm ? otl_node_attr(n, "beta") : NULL;
        otl_tensor *b = n->n_inputs > 2 ? otl_graph_const_float(g, n->inputs[2]) : NULL;
        int xi = -1;
        for (int k = 0; k < c.na && xi < 0; k++)
            if (c.a[k].dq && strcmp(c.a[k].dq, n->inputs[0]) == 0)
                xi = k;
        int64_t oc = wns[found] > 1 ? wns[found] : (axis >= 0 && axis < w->rank ? w->dims[axis] : -1);
        if (!b || xi < 0 || b->rank != 1 || b->numel != oc || (beta && beta->f != 1.0f))
            continue;
        const char *bdq;
        float *bsc = NULL;
        double sq = NAN;
        char *bname = otl_strdup(b->name);
        if (!bname) {
            st = otl_oom(err);
            break;
        }
        st = quantize_bias(g, b, c.a[xi].scale, wsc[found], wns[found], info->per_channel, &bdq, &bsc, &sq, err);
        n = g->nodes[i];
        if (!st && rep) {
            otl_quant_tensor *t = report_add(rep, bname, OTL_QT_BIAS, n->name, err);
            if (!t)
                st = err->code;
            else {
                t->n_scales = info->per_channel ? oc : 1;
                t->scale = bsc;
                bsc = NULL;
                t->sqnr_db = sq;
                t->rel_err = isinf(sq) ? 0 : pow(10, -sq / 20);
            }
        }
        free(bsc);
        free(bname);
        if (st)
            break;
        if (!otl_set_str(&n->inputs[2], bdq)) {
            st = otl_oom(err);
            break;
        }
        if (is_gemm && !beta) {
            otl_attr *a;
            if (otl_node_add_attr(n, "beta", OTL_ATTR_FLOAT, &a)) {
                st = otl_oom(err);
                break;
            }
            a->f = 1.0f;
        }
        info->n_biases++;
    }
    for (int j = 0; wsc && j < nw; j++)
        free(wsc[j]);
    free(wname);
    free(wdq);
    free(wsc);
    free(wns);
    if (st)
        goto done;
    otl_graph_drop_unused_inits(g, NULL);
    otl_graph_drop_stale_value_info(g);
    if ((st = otl_graph_resort(m, err)) || (st = otl_model_validate(m, err)))
        goto done;

    if (rep) {
        if ((st = measure(&c, &qd, fs, input->name, rep, err)))
            goto done;
        /* activations first, in placement order */
        int nwb = rep->n;
        for (int i = 0; i < c.na; i++) {
            const qact *a = &c.a[i], *r = &c.a[a->root];
            otl_quant_tensor *t = report_add(rep, a->name, OTL_QT_ACTIVATION, a->producer, err);
            if (!t || !(t->scale = malloc(sizeof(float))) ||
                (a->root != i && !(t->shared_with = otl_strdup(r->name)))) {
                st = t ? otl_oom(err) : err->code;
                goto done;
            }
            t->n_scales = 1;
            t->scale[0] = r->scale;
            t->zero_point = r->zp;
            t->lo = r->lo;
            t->hi = r->hi;
            set_sqnr(t, a->s2, a->e2);
        }
        otl_quant_tensor *tmp = malloc(((size_t)rep->n + 1) * sizeof *tmp);
        if (!tmp) {
            st = otl_oom(err);
            goto done;
        }
        memcpy(tmp, rep->t + nwb, (size_t)(rep->n - nwb) * sizeof *tmp);
        memcpy(tmp + (rep->n - nwb), rep->t, (size_t)nwb * sizeof *tmp);
        free(rep->t);
        rep->t = tmp;
        info->report = rep;
        rep = NULL;
    }
done:
    otl_quant_report_free(rep);
    otl_session_free(fs);
    otl_model_free(fm);
    qdata_free(&qd);
    otl_strmap_free(&c.dt);
    otl_strmap_free(&c.idx);
    for (int i = 0; c.a && i < c.na; i++) {
        free(c.a[i].name);
        free(c.a[i].producer);
        free(c.a[i].scale_name);
        free(c.a[i].zp_name);
        free(c.a[i].dq);
        free(c.a[i].h);
    }
    free(c.a);
    free(c.role);
    free(c.fold);
    free(order);
    return st;
}
