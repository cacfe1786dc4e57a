/* validate.c - structural checks on the IR and topological ordering.
 * Every node input must be produced (graph input, initializer, node output, or an enclosing
 * graph for subgraphs), no name produced twice, no cycles; errors name the node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "src/strmap.h"
#include "src/util.h"

/* A chain of name scopes: a subgraph sees everything its enclosing graphs define. */
typedef struct scope {
    const otl_strmap *names;
    const struct scope *outer;
} scope;

static int scope_has(const scope *s, const char *name)
{
    for (; s; s = s->outer)
        if (otl_strmap_has(s->names, name))
            return 1;
    return 0;
}

static const char *fname(const char *file)
{
    return file ? file : "(model)";
}

/* Names a graph uses without defining them (implicit inputs of If/Loop/Scan nodes). */
static int add_free_names(const otl_graph *g, const char ***out, size_t *n, size_t *cap);

static int graph_defines(const otl_graph *g, otl_strmap *def)
{
    for (int i = 0; i < g->n_inputs; i++)
        if (!otl_strmap_put(def, g->inputs[i]->name, 1))
            return 0;
    for (int i = 0; i < g->n_inits; i++)
        if (!otl_strmap_put(def, g->inits[i]->name, 1))
            return 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i]->n_outputs; k++)
            if (*g->nodes[i]->outputs[k] && !otl_strmap_put(def, g->nodes[i]->outputs[k], 1))
                return 0;
    return 1;
}

static int push_name(const char ***out, size_t *n, size_t *cap, const char *name)
{
    if (!otl_grow((void **)out, sizeof **out, cap, *n + 1))
        return 0;
    (*out)[(*n)++] = name;
    return 1;
}

static int node_free_names(const otl_node *nd, const char ***out, size_t *n, size_t *cap)
{
    for (int a = 0; a < nd->n_attrs; a++) {
        const otl_attr *at = &nd->attrs[a];
        if (at->g && !add_free_names(at->g, out, n, cap))
            return 0;
        for (size_t k = 0; k < at->n_graphs; k++)
            if (!add_free_names(at->graphs[k], out, n, cap))
                return 0;
    }
    return 1;
}

static int add_free_names(const otl_graph *g, const char ***out, size_t *n, size_t *cap)
{
    otl_strmap def;
    if (!otl_strmap_init(&def, (size_t)(g->n_inputs + g->n_inits + g->n_nodes)))
        return 0;
    int ok = graph_defines(g, &def);
    for (int i = 0; ok && i < g->n_nodes; i++) {
        const otl_node *nd = g->nodes[i];
        for (int k = 0; ok && k < nd->n_inputs; k++)
            if (*nd->inputs[k] && !otl_strmap_has(&def, nd->inputs[k]))
                ok = push_name(out, n, cap, nd->inputs[k]);
        size_t before = *n;
        if (ok)
            ok = node_free_names(nd, out, n, cap);
        /* names the nested graphs take from this graph are not free here */
        size_t w = before;
        for (size_t r = before; ok && r < *n; r++)
            if (!otl_strmap_has(&def, (*out)[r]))
                (*out)[w++] = (*out)[r];
        if (ok)
            *n = w;
    }
    for (int i = 0; ok && i < g->n_outputs; i++)
        if (!otl_strmap_has(&def, g->outputs[i]->name))
            ok = push_name(out, n, cap, g->outputs[i]->name);
    otl_strmap_free(&def);
    return ok;
}

/* ------------------------------------------------------------ topological sort */

static void heap_push(int *h, int *n, int v)
{
    int i = (*n)++;
    h[i] = v;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *n)
{
    int top = h[0];
    h[0] = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l] < h[m])
            m = l;
        if (r < *n && h[r] < h[m])
            m = r;
        if (m == i)
            break;
        int t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

/* Kahn's algorithm with a min-heap on the original index: an already sorted graph keeps its
 * order exactly. */
otl_status otl_graph_toposort(const otl_graph *g, int **order_out, const char *file, otl_error *err)
{
    *order_out = NULL;
    int n = g->n_nodes;
    otl_status st = OTL_OK;
    otl_strmap prod;
    int *indeg = calloc((size_t)n + 1, sizeof *indeg);
    int *order = malloc(((size_t)n + 1) * sizeof *order);
    int *heap = malloc(((size_t)n + 1) * sizeof *heap);
    /* edges as CSR: for each producer, the consumer list */
    int *ecount = calloc((size_t)n + 1, sizeof *ecount);
    int *estart = calloc((size_t)n + 2, sizeof *estart);
    int *edges = NULL, *deps = NULL;
    size_t n_edges = 0, deps_cap = 0, n_deps = 0;
    int *dep_from = NULL;
    if (!indeg || !order || !heap || !ecount || !estart || !otl_strmap_init(&prod, (size_t)n * 2)) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", fname(file));
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i]->n_outputs; k++)
            if (*g->nodes[i]->outputs[k] && !otl_strmap_put(&prod, g->nodes[i]->outputs[k], i)) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", fname(file));
                goto done;
            }
    /* collect (producer -> consumer) pairs: explicit inputs and names used inside subgraphs */
    for (int i = 0; i < n; i++) {
        const otl_node *nd = g->nodes[i];
        const char **names = NULL;
        size_t nn = 0, cap = 0;
        int ok = 1;
        for (int k = 0; ok && k < nd->n_inputs; k++)
            if (*nd->inputs[k])
                ok = push_name(&names, &nn, &cap, nd->inputs[k]);
        if (ok)
            ok = node_free_names(nd, &names, &nn, &cap);
        for (size_t k = 0; ok && k < nn; k++) {
            int p = otl_strmap_get(&prod, names[k], -1);
            if (p < 0)
                continue;
            size_t old_cap = deps_cap;
            if (!otl_grow((void **)&dep_from, sizeof *dep_from, &deps_cap, n_deps + 1)) {
                ok = 0;
                break;
            }
            if (deps_cap != old_cap) {
                int *nd = realloc(deps, deps_cap * sizeof *deps);
                if (!nd) {
                    ok = 0;
                    break;
                }
                deps = nd;
            }
            dep_from[n_deps] = p;
            deps[n_deps++] = i;
        }
        free(names);
        if (!ok) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", fname(file));
            goto done;
        }
    }
    n_edges = n_deps;
    for (size_t e = 0; e < n_edges; e++) {
        ecount[dep_from[e]]++;
        indeg[deps[e]]++;
    }
    for (int i = 0; i < n; i++)
        estart[i + 1] = estart[i] + ecount[i];
    edges = malloc((n_edges + 1) * sizeof *edges);
    if (!edges) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", fname(file));
        goto done;
    }
    memset(ecount, 0, ((size_t)n + 1) * sizeof *ecount);
    for (size_t e = 0; e < n_edges; e++) {
        int p = dep_from[e];
        edges[estart[p] + ecount[p]++] = deps[e];
    }
    int hn = 0, on = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            heap_push(heap, &hn, i);
    while (hn > 0) {
        int v = heap_pop(heap, &hn);
        order[on++] = v;
        for (int e = estart[v]; e < estart[v + 1]; e++)
            if (--indeg[edges[e]] == 0)
                heap_push(heap, &hn, edges[e]);
    }
    if (on < n) {
        /* walk back from an unplaced node along unplaced producers until a node repeats */
        int *seen = calloc((size_t)n, sizeof *seen);
        int v = -1;
        for (int i = 0; i < n && v < 0; i++)
            if (indeg[i] > 0)
                v = i;
        int step = 1;
        while (seen && !seen[v]) {
            seen[v] = step++;
            int next = -1;
            /* pairs were collected in consumer order: v's producers are one contiguous run */
            size_t lo = 0, hi = n_edges;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (deps[mid] < v)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (size_t e = lo; e < n_edges && deps[e] == v && next < 0; e++)
                if (indeg[dep_from[e]] > 0)
                    next = dep_from[e];
            if (next < 0)
                break;
            v = next;
        }
        free(seen);
        const otl_node *nd = g->nodes[v];
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: graph has a cycle through node '%s' (%s): it depends on its own output",
                           fname(file), nd->name, nd->op_type);
        goto done;
    }
    *order_out = order;
    order = NULL;
done:
    otl_strmap_free(&prod);
    free(indeg);
    free(order);
    free(heap);
    free(ecount);
    free(estart);
    free(edges);
    free(deps);
    free(dep_from);
    return st;
}

/* ------------------------------------------------------------ validation */

static otl_status validate_graph(const otl_graph *g, const scope *outer, const char *file,
                                 otl_error *err, int depth)
{
    const char *f = fname(file);
    otl_strmap avail, prod;
    int have_avail = otl_strmap_init(&avail, (size_t)(g->n_inputs + g->n_inits));
    int have_prod = otl_strmap_init(&prod, (size_t)g->n_nodes * 2);
    otl_status st = OTL_OK;
    if (!have_avail || !have_prod) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", f);
        goto done;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const char *nm = g->inputs[i]->name;
        if (!*nm) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: graph input %d has no name", f, i);
            goto done;
        }
        if (otl_strmap_has(&avail, nm)) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: graph input '%s' is declared twice", f, nm);
            goto done;
        }
        if (!otl_strmap_put(&avail, nm, 0))
            goto oom;
    }
    for (int i = 0; i < g->n_inits; i++) {
        const char *nm = g->inits[i]->name;
        if (!*nm) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: initializer %d has no name", f, i);
            goto done;
        }
        if (otl_strmap_get(&avail, nm, 0) == 1) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: initializer '%s' is defined twice", f, nm);
            goto done;
        }
        if (!otl_strmap_put(&avail, nm, 1)) /* an initializer may also be listed as an input */
            goto oom;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *nd = g->nodes[i];
        if (!*nd->op_type) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: node %d '%s' has no op_type", f, i, nd->name);
            goto done;
        }
        for (int k = 0; k < nd->n_outputs; k++) {
            const char *o = nd->outputs[k];
            if (!*o)
                continue;
            int other = otl_strmap_get(&prod, o, -1);
            if (other >= 0) {
                const otl_node *od = g->nodes[other];
                st = otl_error_set(err, OTL_ERR_INPUT,
                                   "%s: node '%s' (%s): output '%s' is also produced by node '%s' (%s)",
                                   f, nd->name, nd->op_type, o, od->name, od->op_type);
                goto done;
            }
            if (otl_strmap_has(&avail, o)) {
                st = otl_error_set(err, OTL_ERR_INPUT,
                                   "%s: node '%s' (%s): output '%s' is also a graph input or initializer",
                                   f, nd->name, nd->op_type, o);
                goto done;
            }
            if (!otl_strmap_put(&prod, o, i))
                goto oom;
        }
    }
    scope here_avail = {&avail, outer};
    for (int i = 0; i < g->n_nodes; i++) {
        const otl_node *nd = g->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            const char *in = nd->inputs[k];
            if (!*in || otl_strmap_has(&prod, in) || scope_has(&here_avail, in))
                continue;
            st = otl_error_set(err, OTL_ERR_INPUT,
                               "%s: node '%s' (%s): input %d '%s' is not produced by any node and is not a graph input or initializer",
                               f, nd->name, nd->op_type, k, in);
            goto done;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const char *o = g->outputs[i]->name;
        if (!*o || !(otl_strmap_has(&prod, o) || scope_has(&here_avail, o))) {
            st = otl_error_set(err, OTL_ERR_INPUT,
                               "%s: graph output '%s' is not produced by any node and is not a graph input or initializer",
                               f, o);
            goto done;
        }
    }
    /* subgraphs see everything this graph defines */
    if (depth < 64) {
        scope inner_prod = {&prod, &here_avail};
        for (int i = 0; i < g->n_nodes && !st; i++) {
            const otl_node *nd = g->nodes[i];
            for (int a = 0; a < nd->n_attrs && !st; a++) {
                const otl_attr *at = &nd->attrs[a];
                if (at->g)
                    st = validate_graph(at->g, &inner_prod, file, err, depth + 1);
                for (size_t k = 0; k < at->n_graphs && !st; k++)
                    st = validate_graph(at->graphs[k], &inner_prod, file, err, depth + 1);
            }
        }
        if (st)
            goto done;
    }
    int *order = NULL;
    st = otl_graph_toposort(g, &order, file, err);
    free(order);
    goto done;
oom:
    st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", f);
done:
    if (have_avail)
        otl_strmap_free(&avail);
    if (have_prod)
        otl_strmap_free(&prod);
    return st;
}

otl_status otl_model_validate(const otl_model *m, otl_error *err)
{
    const char *f = fname(m->path);
    if (!m->graph)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: model has no graph", f);
    for (int i = 0; i < m->n_opsets; i++)
        if (m->opsets[i].version <= 0)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: opset import '%s' has invalid version %lld",
                                 f, m->opsets[i].domain, (long long)m->opsets[i].version);
    /* two versions of one domain ('' and 'ai.onnx' are one): which one applies is ambiguous */
    otl_strmap seen;
    if (!otl_strmap_init(&seen, (size_t)m->n_opsets + 1))
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", f);
    for (int i = 0; i < m->n_opsets; i++) {
        const char *d = strcmp(m->opsets[i].domain, "ai.onnx") == 0 ? "" : m->opsets[i].domain;
        int j = otl_strmap_get(&seen, d, -1);
        if (j >= 0 || !otl_strmap_put(&seen, d, i)) {
            otl_strmap_free(&seen);
            if (j < 0)
                return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", f);
            return otl_error_set(err, OTL_ERR_INPUT, "%s: opset import '%s' is given twice (versions %lld and %lld)",
                                 f, m->opsets[i].domain, (long long)m->opsets[j].version,
                                 (long long)m->opsets[i].version);
        }
    }
    otl_strmap_free(&seen);
    return validate_graph(m->graph, NULL, m->path, err, 0);
}
