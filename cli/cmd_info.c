/* cmd_info.c - `onnx-tl info MODEL [--json]`: inputs/outputs, opset, producer, parameter
 * counts, op histogram, per-layer table, classifier head, frozen state, preprocessing. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "src/json.h"
#include "src/strmap.h"

static const char usage[] =
    "usage: onnx-tl info MODEL [--json] [--threads N]\n"
    "\n"
    "Summarize an ONNX model: inputs and outputs (name, dtype, shape), opset, producer,\n"
    "parameter counts (elements of floating-point initializers), op histogram, the layers that\n"
    "own parameters, the detected classifier head, frozen/trainable state and the stored\n"
    "preprocessing and labels.\n"
    "  --json    print one JSON object on stdout\n"
    "  --threads N  accepted for symmetry with the other commands (info computes nothing)\n";

static const cli_opt opts[] = {{"json", 0, 0}, {"threads", 1, 0}, {NULL, 0, 0}};

typedef struct op_count {
    const char *op;
    int count;
} op_count;

static int cmp_count(const void *a, const void *b)
{
    const op_count *x = a, *y = b;
    if (x->count != y->count)
        return y->count - x->count;
    return strcmp(x->op, y->op);
}

/* Text mode prints names from the file: control bytes (and DEL) are shown as \xNN so that a crafted
 * name cannot move the cursor or clear the terminal. JSON mode escapes them itself. */
static const char *vis_char(char c)
{
    static char buf[8];
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u != 0x7f) {
        buf[0] = c;
        buf[1] = 0;
    } else {
        snprintf(buf, sizeof buf, "\\x%02x", u);
    }
    return buf;
}

/* Printable copy of s in one of 8 rotating buffers (enough for one printf call), cut at 1000 bytes. */
static const char *vis(const char *s)
{
    static char ring[8][1024];
    static int next;
    char *b = ring[next++ & 7];
    size_t o = 0;
    for (; *s && o + 8 < sizeof ring[0]; s++) {
        const char *e = vis_char(*s);
        size_t k = strlen(e);
        memcpy(b + o, e, k);
        o += k;
    }
    if (*s)
        memcpy(b + o, "...", 3), o += 3;
    b[o] = 0;
    return b;
}

static void shape_text(const otl_value *v, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    if (!v->has_type) {
        snprintf(buf, n, "(no type)");
        return;
    }
    if (!v->is_tensor) {
        snprintf(buf, n, "(non-tensor type)");
        return;
    }
    if (!v->has_shape) {
        snprintf(buf, n, "(unknown shape)");
        return;
    }
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < v->rank && o < n - 32; i++) {
        const otl_dim *d = &v->dims[i];
        if (d->param)
            o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", vis(d->param));
        else if (d->value >= 0)
            o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, i ? ", " : "", d->value);
        else
            o += (size_t)snprintf(buf + o, n - o, "%s?", i ? ", " : "");
    }
    snprintf(buf + o, n - o, "]");
}

/* v, or null when negative (unknown). */
static void json_int_or_null(otl_json *j, int64_t v)
{
    if (v >= 0)
        otl_json_int(j, v);
    else
        otl_json_null(j);
}

static void json_value(otl_json *j, const otl_value *v)
{
    otl_json_obj(j);
    otl_json_key(j, "name");
    otl_json_str(j, v->name);
    otl_json_key(j, "dtype");
    if (v->has_type && v->is_tensor)
        otl_json_str(j, otl_dtype_name(v->dtype));
    else
        otl_json_null(j);
    otl_json_key(j, "shape");
    if (v->has_type && v->is_tensor && v->has_shape) {
        otl_json_arr(j);
        for (int i = 0; i < v->rank; i++) {
            if (v->dims[i].param)
                otl_json_str(j, v->dims[i].param);
            else
                json_int_or_null(j, v->dims[i].value);
        }
        otl_json_arr_end(j);
    } else {
        otl_json_null(j);
    }
    otl_json_obj_end(j);
}

/* "<title>:" and one line per value (name, dtype, shape), leaving out the names in skip (may be NULL). */
static void print_values(const char *title, otl_value *const *v, int n, const otl_strmap *skip)
{
    char shape[1024];
    printf("%s:\n", title);
    for (int i = 0; i < n; i++) {
        if (skip && otl_strmap_has(skip, v[i]->name))
            continue;
        shape_text(v[i], shape, sizeof shape);
        printf("  %-24s %-8s %s\n", vis(v[i]->name), v[i]->is_tensor ? otl_dtype_name(v[i]->dtype) : "-", shape);
    }
}

static void print_num(FILE *fp, int64_t v)
{
    char tmp[32], out[48];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0 && tmp[i - 1] != '-')
            out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = 0;
    fputs(out, fp);
}

/* Lines of a newline-separated metadata list. */
static void json_lines(otl_json *j, const char *list)
{
    otl_json_arr(j);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len)
            otl_json_strn(j, p, len);
        p += len;
        if (*p)
            p++;
    }
    otl_json_arr_end(j);
}

/* Initializer behind a node input: directly, or through an Identity of an initializer (how
 * PyTorch exports shared parameters). -1 if none. */
static int input_init(const otl_graph *g, const otl_strmap *init_idx, const otl_strmap *alias,
                      const char *name)
{
    int t = otl_strmap_get(init_idx, name, -1);
    if (t < 0)
        t = otl_strmap_get(alias, name, -1);
    return t >= 0 && otl_dtype_is_float(g->inits[t]->dtype) ? t : -1;
}

/* Whether node i is only an Identity alias of an initializer (not a layer of its own). */
static int is_alias_node(const otl_graph *g, const otl_strmap *init_idx, int i)
{
    const otl_node *nd = g->nodes[i];
    return strcmp(nd->op_type, "Identity") == 0 && nd->n_inputs == 1 &&
           otl_strmap_has(init_idx, nd->inputs[0]);
}

/* Parameter elements a layer reads and whether any of them is frozen; 0 if it reads none. */
static int layer_params(const otl_model *m, const otl_strmap *init_idx, const otl_strmap *alias,
                        int i, int64_t *np, int *any_frozen)
{
    const otl_graph *g = m->graph;
    const otl_node *nd = g->nodes[i];
    int any = 0;
    *np = 0;
    *any_frozen = 0;
    if (is_alias_node(g, init_idx, i))
        return 0;
    for (int k = 0; k < nd->n_inputs; k++) {
        int t = input_init(g, init_idx, alias, nd->inputs[k]);
        if (t < 0)
            continue;
        any = 1;
        *np += g->inits[t]->numel;
        *any_frozen |= otl_model_is_frozen(m, g->inits[t]->name);
    }
    return any;
}

int cmd_info(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "info", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    int as_json = cli_flag(&a, "json");

    otl_error err = {0};
    otl_model *m = NULL;
    if (otl_model_load(&m, a.pos[0], NULL, &err))
        return cli_fail(&err);
    const otl_graph *g = m->graph;

    /* parameters */
    int64_t total = 0, trainable = 0, frozen = 0;
    size_t bytes = 0;
    char *is_param = calloc((size_t)g->n_inits + 1, 1);
    otl_strmap init_idx;
    if (!is_param || !otl_strmap_init(&init_idx, (size_t)g->n_inits)) {
        free(is_param);
        otl_model_free(m);
        fprintf(stderr, "onnx-tl: %s: out of memory\n", a.pos[0]);
        return EXIT_INPUT;
    }
    for (int i = 0; i < g->n_inits; i++) {
        const otl_tensor *t = g->inits[i];
        otl_strmap_put(&init_idx, t->name, i);
        bytes += t->nbytes;
        if (!otl_dtype_is_float(t->dtype))
            continue;
        total += t->numel;
        is_param[i] = (char)otl_graph_init_is_param(g, t);
        if (otl_model_is_frozen(m, t->name))
            frozen += t->numel;
        else if (is_param[i])
            trainable += t->numel;
    }
    otl_strmap alias;
    otl_strmap_init(&alias, 16);
    for (int i = 0; i < g->n_nodes; i++)
        if (is_alias_node(g, &init_idx, i))
            otl_strmap_put(&alias, g->nodes[i]->outputs[0],
                           otl_strmap_get(&init_idx, g->nodes[i]->inputs[0], -1));
    /* op histogram in first-appearance order */
    op_count *ops = calloc((size_t)g->n_nodes + 1, sizeof *ops);
    int n_ops = 0;
    otl_strmap op_idx;
    otl_strmap_init(&op_idx, 64);
    for (int i = 0; ops && i < g->n_nodes; i++) {
        int k = otl_strmap_get(&op_idx, g->nodes[i]->op_type, -1);
        if (k < 0) {
            k = n_ops++;
            ops[k].op = g->nodes[i]->op_type;
            otl_strmap_put(&op_idx, ops[k].op, k);
        }
        ops[k].count++;
    }
    otl_head head;
    otl_find_classifier(g, &head);
    const char *pre = otl_model_meta_get(m, "onnx_tl.preprocess");
    const char *labels = otl_model_meta_get(m, "onnx_tl.labels");
    const char *frozen_list = otl_model_meta_get(m, "onnx_tl.frozen");
    int64_t opset = otl_model_opset(m, "");
    char producer[512];
    snprintf(producer, sizeof producer, "%s%s%s", m->producer_name ? m->producer_name : "",
             m->producer_version && *m->producer_version ? " " : "",
             m->producer_version ? m->producer_version : "");

    if (as_json) {
        otl_json j;
        otl_json_init(&j, stdout);
        otl_json_obj(&j);
        otl_json_key(&j, "file");
        otl_json_str(&j, a.pos[0]);
        otl_json_key(&j, "ir_version");
        otl_json_int(&j, m->ir_version);
        otl_json_key(&j, "opset");
        json_int_or_null(&j, opset);
        otl_json_key(&j, "opsets");
        otl_json_obj(&j);
        for (int i = 0; i < m->n_opsets; i++) {
            otl_json_key(&j, m->opsets[i].domain);
            otl_json_int(&j, m->opsets[i].version);
        }
        otl_json_obj_end(&j);
        otl_json_key(&j, "producer");
        otl_json_str(&j, producer);
        otl_json_key(&j, "inputs");
        otl_json_arr(&j);
        for (int i = 0; i < g->n_inputs; i++)
            if (!otl_strmap_has(&init_idx, g->inputs[i]->name))
                json_value(&j, g->inputs[i]);
        otl_json_arr_end(&j);
        otl_json_key(&j, "outputs");
        otl_json_arr(&j);
        for (int i = 0; i < g->n_outputs; i++)
            json_value(&j, g->outputs[i]);
        otl_json_arr_end(&j);
        otl_json_key(&j, "params_total");
        otl_json_int(&j, total);
        otl_json_key(&j, "params_trainable");
        otl_json_int(&j, trainable);
        otl_json_key(&j, "params_frozen");
        otl_json_int(&j, frozen);
        otl_json_key(&j, "initializers");
        otl_json_int(&j, g->n_inits);
        otl_json_key(&j, "initializer_bytes");
        otl_json_int(&j, (int64_t)bytes);
        otl_json_key(&j, "nodes");
        otl_json_int(&j, g->n_nodes);
        otl_json_key(&j, "ops");
        otl_json_obj(&j);
        for (int k = 0; k < n_ops; k++) {
            otl_json_key(&j, ops[k].op);
            otl_json_int(&j, ops[k].count);
        }
        otl_json_obj_end(&j);
        otl_json_key(&j, "layers");
        otl_json_arr(&j);
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *nd = g->nodes[i];
            int64_t np;
            int any_frozen;
            if (!layer_params(m, &init_idx, &alias, i, &np, &any_frozen))
                continue;
            otl_json_obj(&j);
            otl_json_key(&j, "node");
            otl_json_str(&j, nd->name);
            otl_json_key(&j, "op");
            otl_json_str(&j, nd->op_type);
            otl_json_key(&j, "params");
            otl_json_int(&j, np);
            otl_json_key(&j, "frozen");
            otl_json_bool(&j, any_frozen);
            otl_json_key(&j, "weights");
            otl_json_arr(&j);
            for (int k = 0; k < nd->n_inputs; k++) {
                int t = input_init(g, &init_idx, &alias, nd->inputs[k]);
                if (t < 0)
                    continue;
                const otl_tensor *w = g->inits[t];
                otl_json_obj(&j);
                otl_json_key(&j, "name");
                otl_json_str(&j, w->name);
                otl_json_key(&j, "shape");
                otl_json_arr(&j);
                for (int d = 0; d < w->rank; d++)
                    otl_json_int(&j, w->dims[d]);
                otl_json_arr_end(&j);
                otl_json_obj_end(&j);
            }
            otl_json_arr_end(&j);
            otl_json_obj_end(&j);
        }
        otl_json_arr_end(&j);
        otl_json_key(&j, "head");
        if (head.found) {
            otl_json_obj(&j);
            otl_json_key(&j, "node");
            otl_json_str(&j, g->nodes[head.node]->name);
            otl_json_key(&j, "op");
            otl_json_str(&j, g->nodes[head.node]->op_type);
            otl_json_key(&j, "input_tensor");
            otl_json_str(&j, head.input_tensor);
            otl_json_key(&j, "weight");
            otl_json_str(&j, head.weight);
            otl_json_key(&j, "bias_node");
            otl_json_str(&j, head.bias_node >= 0 ? g->nodes[head.bias_node]->name : NULL);
            otl_json_key(&j, "features");
            json_int_or_null(&j, head.features);
            otl_json_key(&j, "classes");
            json_int_or_null(&j, head.classes);
            otl_json_obj_end(&j);
        } else {
            otl_json_null(&j);
        }
        otl_json_key(&j, "frozen");
        json_lines(&j, frozen_list);
        otl_json_key(&j, "labels");
        if (labels)
            json_lines(&j, labels);
        else
            otl_json_null(&j);
        otl_json_key(&j, "preprocess");
        otl_json_str(&j, pre); /* NULL: null */
        otl_json_key(&j, "metadata");
        otl_json_obj(&j);
        for (int i = 0; i < m->n_meta; i++) {
            otl_json_key(&j, m->meta[i].key);
            otl_json_str(&j, m->meta[i].value);
        }
        otl_json_obj_end(&j);
        otl_json_obj_end(&j);
    } else {
        printf("model:     %s\n", vis(a.pos[0]));
        printf("format:    ir_version %" PRId64 ", opset", m->ir_version);
        for (int i = 0; i < m->n_opsets; i++)
            printf("%s %s %" PRId64, i ? "," : "", *m->opsets[i].domain ? vis(m->opsets[i].domain) : "ai.onnx",
                   m->opsets[i].version);
        printf("\nproducer:  %s\n", *producer ? vis(producer) : "(unknown)");
        print_values("inputs", g->inputs, g->n_inputs, &init_idx);
        print_values("outputs", g->outputs, g->n_outputs, NULL);
        printf("parameters: ");
        print_num(stdout, total);
        printf(" total, ");
        print_num(stdout, trainable);
        printf(" trainable, ");
        print_num(stdout, frozen);
        printf(" frozen (%d initializers, %.2f MiB)\n", g->n_inits, (double)bytes / (1 << 20));
        printf("ops (%d nodes):", g->n_nodes);
        qsort(ops, (size_t)n_ops, sizeof *ops, cmp_count);
        for (int k = 0; k < n_ops; k++)
            printf("%s %s %d", k ? "," : "", vis(ops[k].op), ops[k].count);
        printf("\nlayers with parameters:\n");
        printf("  %-40s %-20s %12s  %s\n", "node", "op", "params", "state");
        for (int i = 0; i < g->n_nodes; i++) {
            const otl_node *nd = g->nodes[i];
            int64_t np;
            int any_frozen;
            if (!layer_params(m, &init_idx, &alias, i, &np, &any_frozen))
                continue;
            printf("  %-40s %-20s %12" PRId64 "  %s\n", *nd->name ? vis(nd->name) : "(unnamed)", vis(nd->op_type),
                   np, any_frozen ? "frozen" : "trainable");
        }
        if (head.found) {
            const otl_node *hn = g->nodes[head.node];
            printf("head:      node '%s' (%s%s) reads '%s'", vis(hn->name), vis(hn->op_type),
                   head.bias_node >= 0 ? "+Add" : "", vis(head.input_tensor));
            if (head.classes >= 0)
                printf(", %" PRId64 " features -> %" PRId64 " classes", head.features, head.classes);
            printf("\n");
        } else {
            printf("head:      none detected (no Gemm/MatMul or 1x1-Conv classifier feeding an output)\n");
        }
        if (labels) {
            int n = 1;
            for (const char *c = labels; *c; c++)
                n += *c == '\n' && c[1];
            printf("labels:    %d: ", n);
            for (const char *c = labels; *c; c++) {
                if (*c != '\n')
                    fputs(vis_char(*c), stdout);
                else if (c[1])
                    fputs(", ", stdout);
            }
            putchar('\n');
        }
        printf("preprocessing: %s\n", pre ? vis(pre) : "(none stored)");
    }
    otl_strmap_free(&op_idx);
    otl_strmap_free(&alias);
    otl_strmap_free(&init_idx);
    free(ops);
    free(is_param);
    otl_model_free(m);
    return cli_flush_stdout(&err) ? cli_fail(&err) : EXIT_OK; /* a full disk or closed stdout: not a success */
}
