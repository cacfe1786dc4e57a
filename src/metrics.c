/* metrics.c - classification metrics (scikit-learn's definitions, zero_division=0), the score
 * conventions of classifier outputs (logits / Softmax / LogSoftmax, as `grad --loss ce`), and the
 * class labels stored in a model or read from a file (swap-head --labels). Used by eval, predict,
 * swap-head and train's validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_data.h"
#include "onnxtl_surgery.h"
#include "src/util.h"

otl_status otl_metrics_init(otl_metrics *mt, int n_classes, otl_error *err)
{
    memset(mt, 0, sizeof *mt);
    if (n_classes < 1 || n_classes > 1 << 15)
        return otl_error_set(err, OTL_ERR_INPUT, "metrics: %d classes (expected 1 to %d)", n_classes, 1 << 15);
    mt->confusion = calloc((size_t)n_classes * (size_t)n_classes, sizeof *mt->confusion);
    if (!mt->confusion)
        return otl_error_set(err, OTL_ERR_NOMEM, "metrics: out of memory for %d classes", n_classes);
    mt->n_classes = n_classes;
    return OTL_OK;
}

void otl_metrics_free(otl_metrics *mt)
{
    if (!mt)
        return;
    free(mt->confusion);
    memset(mt, 0, sizeof *mt);
}

void otl_metrics_add(otl_metrics *mt, int64_t truth, int64_t pred)
{
    if (truth < 0 || truth >= mt->n_classes || pred < 0 || pred >= mt->n_classes)
        return;
    mt->confusion[truth * mt->n_classes + pred]++;
    mt->total++;
    mt->correct += truth == pred;
}

double otl_metrics_accuracy(const otl_metrics *mt)
{
    return mt->total ? (double)mt->correct / (double)mt->total : 0.0;
}

int64_t otl_metrics_predicted(const otl_metrics *mt, int c)
{
    int64_t s = 0;
    for (int t = 0; t < mt->n_classes; t++)
        s += mt->confusion[(int64_t)t * mt->n_classes + c];
    return s;
}

static int64_t support_of(const otl_metrics *mt, int c)
{
    int64_t s = 0;
    const int64_t *row = mt->confusion + (int64_t)c * mt->n_classes;
    for (int p = 0; p < mt->n_classes; p++)
        s += row[p];
    return s;
}

void otl_metrics_class(const otl_metrics *mt, int c, double *precision, double *recall, double *f1, int64_t *support)
{
    int64_t tp = mt->confusion[(int64_t)c * mt->n_classes + c];
    int64_t sup = support_of(mt, c), pred = otl_metrics_predicted(mt, c);
    double p = pred ? (double)tp / (double)pred : 0.0;
    double r = sup ? (double)tp / (double)sup : 0.0;
    /* sklearn: F = 2 tp / (2 tp + fp + fn) = 2 tp / (pred + sup), 0 when that is 0 */
    double f = pred + sup ? 2.0 * (double)tp / (double)(pred + sup) : 0.0;
    if (precision)
        *precision = p;
    if (recall)
        *recall = r;
    if (f1)
        *f1 = f;
    if (support)
        *support = sup;
}

int otl_metrics_present(const otl_metrics *mt, int c)
{
    return support_of(mt, c) > 0 || otl_metrics_predicted(mt, c) > 0;
}

void otl_metrics_macro(const otl_metrics *mt, double *precision, double *recall, double *f1)
{
    double sp = 0, sr = 0, sf = 0;
    int n = 0;
    for (int c = 0; c < mt->n_classes; c++) {
        if (!otl_metrics_present(mt, c))
            continue;
        double p, r, f;
        otl_metrics_class(mt, c, &p, &r, &f, NULL);
        sp += p;
        sr += r;
        sf += f;
        n++;
    }
    if (precision)
        *precision = n ? sp / n : 0.0;
    if (recall)
        *recall = n ? sr / n : 0.0;
    if (f1)
        *f1 = n ? sf / n : 0.0;
}

double otl_metrics_macro_f1(const otl_metrics *mt)
{
    double f;
    otl_metrics_macro(mt, NULL, NULL, &f);
    return f;
}

double otl_metrics_weighted_f1(const otl_metrics *mt)
{
    double s = 0;
    int64_t total = 0;
    for (int c = 0; c < mt->n_classes; c++) {
        double f;
        int64_t sup;
        otl_metrics_class(mt, c, NULL, NULL, &f, &sup);
        s += f * (double)sup;
        total += sup;
    }
    return total ? s / (double)total : 0.0;
}

/* ------------------------------------------------------------ scores */

int otl_scores_kind(const otl_model *m, const char **logits)
{
    const otl_graph *g = m->graph;
    if (logits)
        *logits = g && g->n_outputs ? g->outputs[0]->name : NULL;
    if (!g || g->n_outputs < 1)
        return OTL_SCORES_LOGITS;
    const otl_value *out = g->outputs[0];
    int p = otl_graph_producer(g, out->name);
    if (p < 0)
        return OTL_SCORES_LOGITS;
    const otl_node *n = g->nodes[p];
    int soft = strcmp(n->op_type, "Softmax") == 0, logsoft = strcmp(n->op_type, "LogSoftmax") == 0;
    if ((*n->domain && strcmp(n->domain, "ai.onnx")) || !(soft || logsoft) || n->n_inputs < 1 || !*n->inputs[0])
        return OTL_SCORES_LOGITS;
    /* the same rule as the training graph's loss: the last axis of the output */
    const otl_attr *a = otl_node_attr(n, "axis");
    int64_t opset = otl_model_opset(m, "");
    int64_t axis = a ? a->i : (opset >= 13 ? -1 : 1);
    int rank = out->has_shape ? out->rank : -1;
    if (!(axis == -1 || (rank > 0 && axis == rank - 1) || (rank < 0 && axis == 1 && opset < 13)))
        return OTL_SCORES_LOGITS;
    if (logits)
        *logits = n->inputs[0];
    return soft ? OTL_SCORES_PROBS : OTL_SCORES_LOGPROBS;
}

void otl_scores_probs(const float *s, int n, int kind, double *probs)
{
    if (kind == OTL_SCORES_PROBS) {
        for (int i = 0; i < n; i++)
            probs[i] = s[i];
        return;
    }
    if (kind == OTL_SCORES_LOGPROBS) {
        for (int i = 0; i < n; i++)
            probs[i] = exp((double)s[i]);
        return;
    }
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (s[i] > mx)
            mx = s[i];
    for (int i = 0; i < n; i++)
        sum += probs[i] = exp((double)s[i] - mx);
    for (int i = 0; i < n; i++)
        probs[i] /= sum;
}

double otl_scores_ce(const float *z, int n, int64_t y)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (z[i] > mx)
            mx = z[i];
    for (int i = 0; i < n; i++)
        sum += exp((double)z[i] - mx);
    return mx + log(sum) - (double)z[y];
}

/* a ranks before b: larger, and NaN after every number */
static int ranks_before(double a, double b)
{
    return a > b || (isnan(b) && !isnan(a));
}

void otl_topk(const double *v, int n, int k, int *idx)
{
    if (k > n)
        k = n;
    if (k <= 0)
        return;
    /* insertion into a sorted list of k: k is small */
    int m = 0;
    for (int i = 0; i < n; i++) {
        double x = v[i];
        if (m == k && !ranks_before(x, v[idx[m - 1]]))
            continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && ranks_before(x, v[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

/* ------------------------------------------------------------ labels */

/* Split text (len bytes) into class names, one per line (a final newline and a CR before LF ignored;
 * no empty line, NUL byte or duplicate; at least one name), into one malloc'd block of pointers
 * and text. Errors start with `what`. */
static otl_status split_labels(const char *text, size_t len, const char *what, char ***labels, int *n,
                               otl_error *err)
{
    *labels = NULL;
    *n = 0;
    if (len == 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: no class names", what);
    size_t count = 1;
    for (size_t i = 0; i < len; i++)
        count += text[i] == '\n';
    char **v = malloc(count * sizeof *v + len + 1);
    if (!v)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", what);
    char *buf = (char *)(v + count);
    memcpy(buf, text, len);
    buf[len] = 0;
    int k = 0;
    for (size_t p = 0; p < len;) {
        size_t e = p;
        while (e < len && buf[e] != '\n')
            e++;
        size_t l = e - p;
        if (l && buf[p + l - 1] == '\r')
            l--;
        const char *bad = !l ? "is empty (one class name per line)" : memchr(buf + p, 0, l) ? "contains a NUL byte" : NULL;
        if (bad) {
            free(v);
            return otl_error_set(err, OTL_ERR_INPUT, "%s: line %d %s", what, k + 1, bad);
        }
        buf[p + l] = 0;
        for (int j = 0; j < k; j++)
            if (strcmp(v[j], buf + p) == 0) {
                otl_error_set(err, OTL_ERR_INPUT, "%s: line %d: duplicate class name '%s' (line %d)", what, k + 1,
                              v[j], j + 1);
                free(v);
                return OTL_ERR_INPUT;
            }
        v[k++] = buf + p;
        p = e + 1;
    }
    *labels = v;
    *n = k;
    return OTL_OK;
}

otl_status otl_model_labels(const otl_model *m, char ***labels, int *n, otl_error *err)
{
    *labels = NULL;
    *n = 0;
    const char *text = otl_model_meta_get(m, "onnx_tl.labels");
    if (!text)
        return OTL_OK;
    char what[600];
    snprintf(what, sizeof what, "%s: metadata 'onnx_tl.labels'", m->path ? m->path : "(model)");
    return split_labels(text, strlen(text), what, labels, n, err);
}

otl_status otl_labels_read(const char *path, char ***labels, int *n, otl_error *err)
{
    uint8_t *buf;
    size_t len;
    *labels = NULL;
    *n = 0;
    if (otl_read_file(path, (size_t)64 << 20, &buf, &len, err))
        return err->code;
    otl_status st = split_labels((const char *)buf, len, path, labels, n, err);
    free(buf);
    return st;
}

void otl_labels_free(char **labels, int n)
{
    (void)n;
    free(labels);
}

/* ------------------------------------------------------------ classifier sessions */

static int is_init(const otl_graph *g, const char *name)
{
    return otl_graph_find_init(g, name) != NULL;
}

void otl_classifier_free(otl_classifier *c)
{
    if (!c)
        return;
    otl_session_free(c->s);
    otl_model_free(c->run_model);
    free(c->labels);
    free(c);
}

otl_status otl_classifier_new(otl_classifier **out, const otl_model *m, int threads, otl_error *err)
{
    *out = NULL;
    const char *file = m->path ? m->path : "(model)";
    const otl_graph *g = m->graph;
    if (!g || g->n_outputs < 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no output", file);
    const otl_value *in = NULL;
    int n_data = 0;
    char names[512] = "";
    for (int i = 0; i < g->n_inputs; i++) {
        if (is_init(g, g->inputs[i]->name))
            continue;
        if (!in)
            in = g->inputs[i];
        size_t l = strlen(names);
        if (l < sizeof names - 1)
            snprintf(names + l, sizeof names - l, "%s'%s'", n_data ? ", " : "", g->inputs[i]->name);
        n_data++;
    }
    if (!in)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input (every input has an initializer)",
                             file);
    if (n_data > 1)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has %d data inputs (%s); a classifier takes one", file,
                             n_data, names);
    if (!in->has_type || !in->is_tensor)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' is not a tensor", file, in->name);
    if (in->has_shape && (in->rank < 1 || in->rank > 8))
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: input '%s' has rank %d; expected a batch of samples (rank 1 to 8)",
                             file, in->name, in->rank);
    const otl_value *ov = g->outputs[0];
    if (ov->has_type && (!ov->is_tensor || (ov->dtype && ov->dtype != OTL_DTYPE_FLOAT)))
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' is %s, expected float32 class scores", file, ov->name,
                             ov->is_tensor ? otl_dtype_name(ov->dtype) : "not a tensor");
    otl_classifier *c = calloc(1, sizeof *c);
    if (!c)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    c->m = m;
    c->file = file;
    c->input = in->name;
    c->dtype = in->dtype;
    c->rank = in->has_shape ? in->rank : -1;
    for (int k = 0; k < 8; k++)
        c->dims[k] = -1;
    for (int k = 0; k < c->rank; k++)
        c->dims[k] = in->dims[k].value > 0 ? in->dims[k].value : -1;
    c->fixed_batch = c->rank >= 1 && c->dims[0] > 0 ? c->dims[0] : 0;
    c->output = ov->name;
    c->kind = otl_scores_kind(m, &c->logits);
    c->n_classes = ov->has_shape && ov->rank == 2 && ov->dims[1].value > 0 ? ov->dims[1].value : -1;
    otl_status st = otl_model_labels(m, &c->labels, &c->n_labels, err);
    if (!st && c->labels && c->n_classes > 0 && c->n_labels != c->n_classes)
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: metadata 'onnx_tl.labels' holds %d labels but output '%s' has %lld classes",
                           file, c->n_labels, ov->name, (long long)c->n_classes);
    int logits_out = c->kind == OTL_SCORES_LOGITS;
    for (int i = 0; i < g->n_outputs; i++)
        logits_out |= strcmp(g->outputs[i]->name, c->logits) == 0;
    if (!st && !logits_out) {
        /* a private copy that also outputs the Softmax's input */
        st = otl_model_clone(m, &c->run_model, err);
        otl_value *v = st ? NULL : otl_value_new_tensor(c->logits, OTL_DTYPE_FLOAT, -1, NULL, NULL);
        if (!st && (!v || otl_graph_add_output(c->run_model->graph, v))) {
            otl_value_free(v);
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        }
    }
    if (!st) {
        otl_session_opts so = {.threads = threads};
        st = otl_session_new(&c->s, c->run_model ? c->run_model : m, &so, err);
    }
    if (st) {
        otl_classifier_free(c);
        return st;
    }
    *out = c;
    return OTL_OK;
}

const char *otl_classifier_label(const otl_classifier *c, int64_t k, char *buf, size_t size)
{
    if (c->labels && k >= 0 && k < c->n_labels)
        return c->labels[k];
    snprintf(buf, size, "%lld", (long long)k);
    return buf;
}

/* Copy rows [0, m) of a float32 (b, C) output into dst (n, C) at row `row`; checks the shape. */
static otl_status take_rows(otl_classifier *c, const otl_tensor *t, int64_t b, int64_t m, int64_t row, int64_t n,
                            float **dst, otl_error *err)
{
    if (t->dtype != OTL_DTYPE_FLOAT)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' is %s, expected float32 class scores", c->file,
                             t->name, otl_dtype_name(t->dtype));
    if (t->rank < 1 || t->dims[0] != b || t->numel % b)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' has no batch axis of %lld (rank %d, %lld elements)",
                             c->file, t->name, (long long)b, t->rank, (long long)t->numel);
    int64_t nc = t->numel / b;
    if (nc < 2)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: output '%s' has %lld score(s) per sample; a classifier needs one per "
                             "class (at least 2)", c->file, t->name, (long long)nc);
    if (c->n_classes > 0 && nc != c->n_classes)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' has %lld scores per sample, expected %lld", c->file,
                             t->name, (long long)nc, (long long)c->n_classes);
    if (c->labels && c->n_labels != nc)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: metadata 'onnx_tl.labels' holds %d labels but output '%s' has %lld "
                             "classes", c->file, c->n_labels, t->name, (long long)nc);
    c->n_classes = nc;
    if (!*dst && !(*dst = malloc((size_t)(n * nc) * sizeof **dst)))
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for %lld scores", c->file, (long long)(n * nc));
    memcpy(*dst + row * nc, t->data, (size_t)(m * nc) * sizeof(float));
    return OTL_OK;
}

otl_status otl_classifier_run(otl_classifier *c, const void *x, int64_t n, const int64_t *sdims, float **scores,
                              float **logits, otl_error *err)
{
    *scores = NULL;
    *logits = NULL;
    if (n < 1)
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: classifier run on no samples", c->file);
    int srank = c->rank >= 1 ? c->rank - 1 : -1;
    if (srank < 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' has no declared shape; cannot tell a sample's rank",
                             c->file, c->input);
    int64_t numel = 1;
    for (int k = 0; k < srank; k++) {
        if (c->dims[k + 1] > 0 && sdims[k] != c->dims[k + 1])
            return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' expects axis %d of size %lld, the data has %lld",
                                 c->file, c->input, k + 1, (long long)c->dims[k + 1], (long long)sdims[k]);
        numel *= sdims[k];
    }
    int64_t sb = otl_dtype_nbytes(c->dtype, numel);
    if (sb <= 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' of dtype %s is not supported", c->file, c->input,
                             otl_dtype_name(c->dtype));
    int64_t chunk = c->fixed_batch > 0 ? c->fixed_batch : n;
    otl_status st = OTL_OK;
    for (int64_t row = 0; row < n && !st; row += chunk) {
        int64_t m = n - row < chunk ? n - row : chunk, b = c->fixed_batch > 0 ? c->fixed_batch : m;
        int64_t dims[9];
        dims[0] = b;
        for (int k = 0; k < srank; k++)
            dims[k + 1] = sdims[k];
        otl_tensor *t = otl_tensor_new(c->input, c->dtype, srank + 1, dims);
        if (!t || !(t->data = malloc((size_t)(b * sb)))) {
            otl_tensor_free(t);
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a batch of %lld", c->file, (long long)b);
            break;
        }
        t->nbytes = (size_t)(b * sb);
        memcpy(t->data, (const char *)x + row * sb, (size_t)(m * sb));
        for (int64_t i = m; i < b; i++) /* padding of a fixed batch: repeat the last sample */
            memcpy((char *)t->data + i * sb, (const char *)x + (row + m - 1) * sb, (size_t)sb);
        otl_tensor **outs = NULL;
        int n_out = 0;
        st = otl_session_run(c->s, (const otl_tensor *const *)&t, 1, &outs, &n_out, err);
        otl_tensor_free(t);
        const otl_tensor *so = NULL, *lo = NULL;
        for (int i = 0; !st && i < n_out; i++) {
            if (!so && strcmp(outs[i]->name, c->output) == 0)
                so = outs[i];
            if (!lo && strcmp(outs[i]->name, c->logits) == 0)
                lo = outs[i];
        }
        if (!st && (!so || !lo))
            st = otl_error_set(err, OTL_ERR_INTERNAL, "%s: output '%s' missing from the run", c->file,
                               so ? c->logits : c->output);
        if (!st)
            st = take_rows(c, so, b, m, row, n, scores, err);
        if (!st)
            st = take_rows(c, lo, b, m, row, n, logits, err);
        otl_tensors_free(outs, n_out);
    }
    if (st) {
        free(*scores);
        free(*logits);
        *scores = *logits = NULL;
    }
    return st;
}
