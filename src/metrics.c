/* metrics.c - classification metrics (scikit-learn's definitions, zero_division=0), the score
 * conventions of classifier outputs (logits / Softmax / LogSoftmax, as `grad --loss ce`), and the
 * class labels stored in a model. Used by eval, predict and train's validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_data.h"
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

otl_status otl_model_labels(const otl_model *m, char ***labels, int *n, otl_error *err)
{
    *labels = NULL;
    *n = 0;
    const char *file = m->path ? m->path : "(model)";
    const char *text = otl_model_meta_get(m, "onnx_tl.labels");
    if (!text)
        return OTL_OK;
    size_t len = strlen(text);
    int count = 0;
    for (size_t i = 0; i < len; i++)
        count += text[i] == '\n';
    count++;
    char **v = malloc((size_t)count * sizeof *v + len + 1);
    if (!v)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory reading its labels", file);
    char *buf = (char *)(v + count);
    memcpy(buf, text, len + 1);
    int k = 0;
    for (char *p = buf; *p || p == buf;) {
        char *e = strchr(p, '\n');
        char *next = e ? e + 1 : p + strlen(p);
        if (e)
            *e = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = 0;
        if (!l) {
            free(v);
            return otl_error_set(err, OTL_ERR_INPUT, "%s: metadata 'onnx_tl.labels': label %d is empty", file, k + 1);
        }
        for (int j = 0; j < k; j++)
            if (strcmp(v[j], p) == 0) {
                otl_error_set(err, OTL_ERR_INPUT, "%s: metadata 'onnx_tl.labels': label '%s' is given twice", file, p);
                free(v);
                return OTL_ERR_INPUT;
            }
        v[k++] = p;
        if (!e)
            break;
        p = next;
    }
    *labels = v;
    *n = k;
    return OTL_OK;
}
