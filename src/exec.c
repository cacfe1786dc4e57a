/* exec.c - the executor: plans a model for concrete input shapes (shape inference, constant
 * folding of shape subgraphs and constant chains, liveness-based activation arena) and runs
 * the schedule through the op kernels of ops/.
 *
 * Plan: values = initializers (const, borrowed), graph inputs, node outputs. Nodes are visited
 * in topological order; each op infers its outputs; a node whose inputs are all const (or
 * that depends only on shapes) is computed right away and its outputs become const. The rest
 * is the schedule. Buffers of scheduled outputs live in one arena, assigned by best fit from
 * first definition to last use; alias ops (Reshape, Identity, ...) share their input's buffer.
 * The plan is cached and rebuilt when input shapes or dtypes change. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/fuse.h"
#include "src/hash.h"
#include "ops/op.h"
#include "src/strmap.h"
#include "src/util.h"

extern const otl_op otl_op_internal_reorder;

typedef struct plan {
    int n_vals, cap_vals;
    otl_rt *vals;          /* fixed capacity: kernels hold pointers into it */
    otl_strmap idx;        /* value name -> index */
    int *plain_of;         /* value -> its plain-layout twin, or -1 */
    int n_kc, cap_kc;
    otl_kctx *kc;          /* graph nodes in topological order, then inserted reorders */
    otl_node **synth;      /* nodes made up for inserted reorders (n_kc - n_nodes of them) */
    int n_nodes;
    int *folded;           /* per kc: computed at plan time */
    int n_sched;
    int *sched;            /* indices into kc */
    uint8_t *arena;
    size_t arena_size;
    size_t peak_live;      /* most bytes live at one step (the arena's lower bound) */
    int n_sig;
    otl_rt *sig;           /* input dtypes/shapes this plan was built for */
    int *out_val;          /* graph output -> value index */
    uint8_t *external;     /* per value: its data is a caller's buffer bound to an output (not in the arena) */
    int *out_bind;         /* graph output -> index of the binding that receives it, or -1 */
    uint8_t *out_direct;   /* graph output: its kernel writes straight into the bound buffer */
    otl_tensor *views;     /* graph outputs as tensors over the plan's buffers (otl_session_run_views) */
    const otl_tensor **view_ptrs;
} plan;

typedef struct out_binding {
    char *name;
    void *data;
    size_t nbytes;
} out_binding;

struct otl_session {
    const otl_model *m;
    const otl_graph *g;    /* the graph planned: the model's, or a fused view of it */
    otl_fused *fused;
    otl_session_opts opts;
    otl_engine eng;
    int *order;
    plan *plan;
    plan *spare;           /* the plan of the input shapes before the last change (a training loop's
                              full and tail batches), kept so that alternating shapes do not re-plan */
    uint64_t runs;
    int n_bind;
    out_binding *bind;     /* outputs written into caller memory (otl_session_bind_output) */
    /* OTL_PROFILE=1: wall time per op type, printed to stderr when the session is freed */
    int profile;
    int n_prof;
    struct { const char *op; double ms; long calls; } prof[128];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void prof_add(otl_session *s, const char *op, double ms)
{
    int i = 0;
    while (i < s->n_prof && strcmp(s->prof[i].op, op) != 0)
        i++;
    if (i == s->n_prof) {
        if (s->n_prof == 128)
            return;
        s->prof[s->n_prof++].op = op;
    }
    s->prof[i].ms += ms;
    s->prof[i].calls++;
}

static void prof_print(const otl_session *s)
{
    double total = 0;
    for (int i = 0; i < s->n_prof; i++)
        total += s->prof[i].ms;
    fprintf(stderr, "profile: %llu runs, %.1f ms in kernels\n", (unsigned long long)s->runs, total);
    fprintf(stderr, "profile: oneDNN scratchpad %zu bytes, one for the session: shared by %d primitives (%ld runs; "
            "%d primitives and %ld runs in library mode)\n", s->eng.scratch_size, s->eng.n_scratch_prims,
            s->eng.n_scratch_runs, s->eng.n_library_prims, s->eng.n_library_runs);
    if (s->plan)
        fprintf(stderr, "profile: activation arena %zu bytes (%.1f MB; at most %.1f MB live at once)\n",
                s->plan->arena_size, s->plan->arena_size / 1048576.0, s->plan->peak_live / 1048576.0);
    for (int i = 0; i < s->n_prof; i++)
        fprintf(stderr, "profile: %-24s %10.1f ms %5.1f%% %8ld calls\n", s->prof[i].op, s->prof[i].ms,
                total > 0 ? 100 * s->prof[i].ms / total : 0, s->prof[i].calls);
}

static const char *sfile(const otl_session *s)
{
    return s->m->path ? s->m->path : "(model)";
}

/* ------------------------------------------------------------ engine */

static otl_status engine_init(otl_engine *e, int threads, const char *file, otl_error *err)
{
    memset(e, 0, sizeof *e);
    if (threads > 0)
        omp_set_num_threads(threads);
    e->threads = threads > 0 ? threads : omp_get_max_threads();
    if (dnnl_engine_create(&e->eng, dnnl_cpu, 0) != dnnl_success)
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: cannot create the oneDNN CPU engine", file);
    if (dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(e->eng);
        e->eng = NULL;
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: cannot create a oneDNN stream", file);
    }
    return OTL_OK;
}

static void engine_free(otl_engine *e)
{
    otl_engine_scratch_free(e);
    if (e->stream)
        dnnl_stream_destroy(e->stream);
    if (e->eng)
        dnnl_engine_destroy(e->eng);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------ plan lifetime */

static void plan_free(plan *p)
{
    if (!p)
        return;
    for (int i = 0; p->kc && i < p->n_kc; i++) {
        otl_kctx *k = &p->kc[i];
        if (k->op && k->op->release && k->state)
            k->op->release(k);
        free(k->state);
        free(k->in);
        free(k->out);
    }
    for (int i = 0; p->vals && i < p->n_vals; i++)
        if (p->vals[i].owned)
            free(p->vals[i].data);
    free(p->vals);
    otl_strmap_free(&p->idx);
    free(p->plain_of);
    for (int i = 0; p->synth && i < p->n_kc - p->n_nodes; i++)
        otl_node_free(p->synth[i]);
    free(p->synth);
    free(p->kc);
    free(p->folded);
    free(p->sched);
    free(p->arena);
    free(p->sig);
    free(p->out_val);
    free(p->external);
    free(p->out_bind);
    free(p->out_direct);
    free(p->views);
    free(p->view_ptrs);
    free(p);
}

void otl_session_free(otl_session *s)
{
    if (!s)
        return;
    if (s->profile)
        prof_print(s);
    plan_free(s->plan);
    plan_free(s->spare);
    otl_fused_free(s->fused);
    engine_free(&s->eng);
    free(s->order);
    for (int i = 0; i < s->n_bind; i++)
        free(s->bind[i].name);
    free(s->bind);
    free(s);
}

static int64_t node_opset(const otl_model *m, const otl_node *n)
{
    int64_t v = otl_model_opset(m, n->domain);
    if (v < 0 && strcmp(n->domain, "onnx_tl") == 0)
        v = 1; /* our private ops, e.g. fused nodes made by the session itself */
    return v;
}

otl_status otl_session_new(otl_session **out, const otl_model *m, const otl_session_opts *opts,
                           otl_error *err)
{
    *out = NULL;
    otl_session *s = calloc(1, sizeof *s);
    if (!s)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->g = m->graph;
    const char *pe = getenv("OTL_PROFILE");
    s->profile = pe && *pe && strcmp(pe, "0") != 0;
    if (opts)
        s->opts = *opts;
    const otl_graph *g = m->graph;
    otl_status st = otl_precision_check(s->opts.precision, err);
    if (!st)
        st = otl_graph_toposort(g, &s->order, m->path, err);
    for (int i = 0; !st && i < g->n_inputs + g->n_outputs; i++) {
        const otl_value *v = i < g->n_inputs ? g->inputs[i] : g->outputs[i - g->n_inputs];
        if (v->has_type && !v->is_tensor)
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: graph %s '%s' is not a tensor (sequences, maps and optionals are not supported)",
                               sfile(s), i < g->n_inputs ? "input" : "output", v->name);
    }
    /* every op must be implemented: report the first that is not, before any computation */
    for (int i = 0; !st && i < g->n_nodes; i++) {
        const otl_node *n = g->nodes[i];
        int64_t opset = node_opset(m, n);
        const char *why = NULL;
        if (opset < 0)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: node '%s' (%s): the model imports no opset for domain '%s'",
                               sfile(s), n->name, n->op_type, *n->domain ? n->domain : "ai.onnx");
        else if (!otl_op_find(n->domain, n->op_type, opset, &why))
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED,
                               "%s: node '%s' (%s): op %s%s%s at opset %lld is not supported%s%s%s",
                               sfile(s), n->name, n->op_type, *n->domain ? n->domain : "",
                               *n->domain ? "." : "", n->op_type, (long long)opset,
                               why ? " (" : "", why ? why : "", why ? ")" : "");
    }
    /* fold BatchNormalization and fuse Conv chains (training graphs: only where the backward
       reads none of the fused-away values, e.g. a frozen backbone) */
    const char *nofuse = getenv("OTL_NO_FUSE");
    if (!st && !s->opts.no_fuse && !(nofuse && *nofuse && strcmp(nofuse, "0")) &&
        otl_op_find("onnx_tl", "FusedConv", 1, NULL)) {
        st = s->opts.training ? otl_fuse_training(m, !s->opts.bn_frozen, &s->fused, err)
                              : otl_fuse_inference(m, &s->fused, err);
        if (!st) {
            s->g = s->fused->g;
            free(s->order);
            s->order = NULL;
            st = otl_graph_toposort(s->g, &s->order, m->path, err);
        }
    }
    if (!st)
        st = engine_init(&s->eng, s->opts.threads, sfile(s), err);
    if (st) {
        otl_session_free(s);
        return st;
    }
    *out = s;
    return OTL_OK;
}

/* ------------------------------------------------------------ arena assignment */

typedef struct block {
    size_t off, size;
} block;

typedef struct arena_plan {
    block *free_list;
    size_t n_free, cap_free;
    size_t end;
} arena_plan;

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static int arena_take(arena_plan *a, size_t size, size_t *off)
{
    size = align64(size ? size : 1);
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < a->n_free; i++)
        if (a->free_list[i].size >= size && (best == SIZE_MAX || a->free_list[i].size < a->free_list[best].size))
            best = i;
    if (best != SIZE_MAX) {
        block *b = &a->free_list[best];
        *off = b->off;
        b->off += size;
        b->size -= size;
        if (b->size == 0) {
            memmove(b, b + 1, (a->n_free - best - 1) * sizeof *b);
            a->n_free--;
        }
        return 1;
    }
    /* grow: reuse a free block that touches the end */
    if (a->n_free && a->free_list[a->n_free - 1].off + a->free_list[a->n_free - 1].size == a->end) {
        block *b = &a->free_list[a->n_free - 1];
        *off = b->off;
        a->end = b->off + size;
        a->n_free--;
        return 1;
    }
    *off = a->end;
    a->end += size;
    return 1;
}

static int arena_give(arena_plan *a, size_t off, size_t size)
{
    size = align64(size ? size : 1);
    size_t i = 0;
    while (i < a->n_free && a->free_list[i].off < off)
        i++;
    if (!otl_grow((void **)&a->free_list, sizeof *a->free_list, &a->cap_free, a->n_free + 1))
        return 0;
    memmove(&a->free_list[i + 1], &a->free_list[i], (a->n_free - i) * sizeof *a->free_list);
    a->free_list[i].off = off;
    a->free_list[i].size = size;
    a->n_free++;
    /* coalesce with neighbours */
    if (i + 1 < a->n_free && a->free_list[i].off + a->free_list[i].size == a->free_list[i + 1].off) {
        a->free_list[i].size += a->free_list[i + 1].size;
        memmove(&a->free_list[i + 1], &a->free_list[i + 2], (a->n_free - i - 2) * sizeof *a->free_list);
        a->n_free--;
    }
    if (i > 0 && a->free_list[i - 1].off + a->free_list[i - 1].size == a->free_list[i].off) {
        a->free_list[i - 1].size += a->free_list[i].size;
        memmove(&a->free_list[i], &a->free_list[i + 1], (a->n_free - i - 1) * sizeof *a->free_list);
        a->n_free--;
    }
    return 1;
}

static int root_of(const plan *p, int v)
{
    while (p->vals[v].alias_of >= 0)
        v = p->vals[v].alias_of;
    return v;
}

static int val_index(const plan *p, const otl_rt *v)
{
    return (int)(v - p->vals);
}

static otl_status assign_arena(plan *p, const char *file, otl_error *err)
{
    for (int i = 0; i < p->n_vals; i++) {
        p->vals[i].first = -1;
        p->vals[i].last = -1;
    }
    for (int s = 0; s < p->n_sched; s++) {
        otl_kctx *k = &p->kc[p->sched[s]];
        for (int i = 0; i < k->n_in; i++)
            if (k->in[i] && !k->in[i]->is_const)
                k->in[i]->last = s;
        for (int i = 0; i < k->n_out; i++)
            if (k->out[i]) {
                k->out[i]->first = s;
                if (k->out[i]->last < s)
                    k->out[i]->last = s;
            }
    }
    for (int i = 0; i < p->n_vals; i++)
        if (p->vals[i].is_output && !p->vals[i].is_const)
            p->vals[i].last = p->n_sched;
    /* an alias keeps its root's buffer alive */
    for (int i = 0; i < p->n_vals; i++)
        if (p->vals[i].alias_of >= 0) {
            int r = root_of(p, i);
            if (p->vals[r].last < p->vals[i].last)
                p->vals[r].last = p->vals[i].last;
        }
    /* release lists: values whose buffer dies after step s */
    int *count = calloc((size_t)p->n_sched + 2, sizeof *count);
    int *start = calloc((size_t)p->n_sched + 3, sizeof *start);
    int *list = malloc(((size_t)p->n_vals + 1) * sizeof *list);
    arena_plan a = {0};
    otl_status st = OTL_OK;
    size_t live = 0;
    if (!count || !start || !list) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory planning buffers", file);
        goto done;
    }
    for (int i = 0; i < p->n_vals; i++) {
        otl_rt *v = &p->vals[i];
        if (v->first >= 0 && v->alias_of < 0 && !v->is_const && v->last < p->n_sched)
            count[v->last]++;
    }
    for (int s = 0; s <= p->n_sched; s++)
        start[s + 1] = start[s] + count[s];
    memset(count, 0, ((size_t)p->n_sched + 2) * sizeof *count);
    for (int i = 0; i < p->n_vals; i++) {
        otl_rt *v = &p->vals[i];
        if (v->first >= 0 && v->alias_of < 0 && !v->is_const && v->last < p->n_sched)
            list[start[v->last] + count[v->last]++] = i;
    }
    for (int s = 0; s < p->n_sched; s++) {
        otl_kctx *k = &p->kc[p->sched[s]];
        for (int i = 0; i < k->n_out; i++) {
            otl_rt *v = k->out[i];
            if (!v || v->alias_of >= 0 || p->external[val_index(p, v)])
                continue;
            if (!arena_take(&a, v->nbytes, &v->arena_off)) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory planning buffers", file);
                goto done;
            }
            v->in_arena = 1;
            live += align64(v->nbytes ? v->nbytes : 1);
        }
        if (live > p->peak_live)
            p->peak_live = live;
        for (int j = start[s]; j < start[s + 1]; j++) {
            otl_rt *v = &p->vals[list[j]];
            if (v->in_arena && !arena_give(&a, v->arena_off, v->nbytes)) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory planning buffers", file);
                goto done;
            }
            if (v->in_arena)
                live -= align64(v->nbytes ? v->nbytes : 1);
        }
    }
    p->arena_size = a.end;
    p->arena = aligned_alloc(64, align64(a.end ? a.end : 64));
    if (!p->arena) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: cannot allocate %zu bytes of activations", file, a.end);
        goto done;
    }
    for (int i = 0; i < p->n_vals; i++)
        if (p->vals[i].in_arena)
            p->vals[i].data = p->arena + p->vals[i].arena_off;
done:
    free(count);
    free(start);
    free(list);
    free(a.free_list);
    return st;
}

/* ------------------------------------------------------------ planning */

static otl_status add_value(plan *p, const char *name, otl_error *err)
{
    if (!*name || otl_strmap_has(&p->idx, name))
        return OTL_OK;
    if (p->n_vals >= p->cap_vals)
        return otl_error_set(err, OTL_ERR_INTERNAL, "value table full");
    otl_rt *v = &p->vals[p->n_vals];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->alias_of = -1;
    if (!otl_strmap_put(&p->idx, name, p->n_vals))
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    p->n_vals++;
    return OTL_OK;
}

static otl_rt *find_val(plan *p, const char *name)
{
    int i = otl_strmap_get(&p->idx, name, -1);
    return i >= 0 ? &p->vals[i] : NULL;
}

static otl_status check_input(const otl_session *s, const otl_value *decl, const otl_tensor *t,
                              otl_error *err)
{
    if (!decl || !decl->has_type || !decl->is_tensor)
        return OTL_OK;
    if (decl->dtype && decl->dtype != t->dtype)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s': expected dtype %s, got %s", sfile(s),
                             decl->name, otl_dtype_name(decl->dtype), otl_dtype_name(t->dtype));
    if (!decl->has_shape)
        return OTL_OK;
    if (decl->rank != t->rank)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s': expected rank %d, got rank %d", sfile(s),
                             decl->name, decl->rank, t->rank);
    for (int i = 0; i < t->rank; i++)
        if (!decl->dims[i].param && decl->dims[i].value >= 0 && decl->dims[i].value != t->dims[i])
            return otl_error_set(err, OTL_ERR_INPUT,
                                 "%s: input '%s': dimension %d must be %lld, got %lld", sfile(s),
                                 decl->name, i, (long long)decl->dims[i].value, (long long)t->dims[i]);
    return OTL_OK;
}

static void rt_from_tensor(otl_rt *v, const otl_tensor *t)
{
    v->dtype = t->dtype;
    v->rank = t->rank;
    for (int i = 0; i < t->rank && i < OTL_MAX_RANK; i++)
        v->dims[i] = t->dims[i];
    v->numel = t->numel;
    v->nbytes = t->nbytes;
    v->data = t->data;
    v->shape_known = 1;
}

/* Infer one kctx's outputs, then fold it (all inputs const), alias it, or schedule it. */
static otl_status plan_node(plan *p, int ki, int all_const)
{
    otl_kctx *k = &p->kc[ki];
    const char *dom = k->node->domain;
    if ((!*dom || strcmp(dom, "ai.onnx") == 0) && (k->n_out == 0 || !k->out[0])) /* every ONNX op has output 0 */
        return otl_kfail(k, OTL_ERR_INPUT, "%s lists no output 0", k->node->op_type);
    otl_status st = k->op->infer(k);
    if (st)
        return st;
    for (int i = 0; i < k->n_out; i++)
        if (k->out[i] && !k->out[i]->shape_known) /* beyond output 0: the model lists more outputs than we produce */
            return i ? otl_kfail(k, OTL_ERR_INPUT, "output %d '%s' is not produced by %s (more outputs than the op "
                                 "has, or an optional output that is not implemented)", i, k->out[i]->name,
                                 k->node->op_type)
                     : otl_kfail(k, OTL_ERR_INTERNAL, "output %d '%s' got no shape", i, k->out[i]->name);
    unsigned fl = k->op->flags;
    if ((fl & OTL_OPF_ALIAS) || k->alias) {
        k->alias = 1;
        otl_rt *src = k->n_in ? k->in[0] : NULL, *dst = k->n_out ? k->out[0] : NULL;
        if (!src || !dst) /* e.g. an Identity listing no output: nothing to alias */
            return otl_kfail(k, OTL_ERR_INPUT, "%s needs input 0 and output 0", k->node->op_type);
        if (dst->nbytes != src->nbytes || src->blocked != dst->blocked ||
            (src->blocked && !dnnl_memory_desc_equal(&src->md, &dst->md)))
            return otl_kfail(k, OTL_ERR_INTERNAL, "alias output differs from its input");
        if (src->is_const) {
            dst->data = src->data;
            dst->is_const = 1;
            p->folded[ki] = 1;
        } else {
            dst->alias_of = root_of(p, val_index(p, src));
            p->sched[p->n_sched++] = ki;
        }
        return OTL_OK;
    }
    if (!(fl & OTL_OPF_RANDOM) && (all_const || (fl & OTL_OPF_SHAPE_ONLY))) {
        for (int i = 0; i < k->n_out; i++) {
            otl_rt *v = k->out[i];
            if (!v)
                continue;
            v->data = malloc(v->nbytes ? v->nbytes : 1);
            v->owned = 1;
            if (!v->data)
                return otl_kfail(k, OTL_ERR_NOMEM, "out of memory for output '%s'", v->name);
        }
        if (k->op->prepare && (st = k->op->prepare(k)))
            return st;
        if ((st = k->op->forward(k)))
            return st;
        for (int i = 0; i < k->n_out; i++)
            if (k->out[i])
                k->out[i]->is_const = 1;
        p->folded[ki] = 1;
        return OTL_OK;
    }
    p->sched[p->n_sched++] = ki;
    return OTL_OK;
}

/* The plain-layout twin of value v (v itself when plain), adding a reorder step. */
static otl_status ensure_plain(otl_session *s, plan *p, int v, int *out, otl_error *err)
{
    *out = v;
    if (!p->vals[v].blocked)
        return OTL_OK;
    if (p->plain_of[v] >= 0) {
        *out = p->plain_of[v];
        return OTL_OK;
    }
    if (p->n_kc >= p->cap_kc || p->n_vals >= p->cap_vals)
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: plan tables full", sfile(s));
    int si = p->n_kc - p->n_nodes;
    char name[64];
    snprintf(name, sizeof name, "onnx_tl::reorder%d", si);
    otl_node *n = otl_node_new(name, "Reorder", "onnx_tl.internal");
    const char *in[1] = {p->vals[v].name};
    char out_name[80];
    snprintf(out_name, sizeof out_name, "%s:plain", name);
    const char *outs[1] = {out_name};
    if (!n || otl_node_set_io(n, 1, in, 1, outs)) {
        otl_node_free(n);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    p->synth[si] = n;
    int w = p->n_vals++;
    otl_rt *pv = &p->vals[w];
    memset(pv, 0, sizeof *pv);
    pv->name = n->outputs[0];
    pv->alias_of = -1;
    otl_kctx *k = &p->kc[p->n_kc];
    k->node = n;
    k->op = &otl_op_internal_reorder;
    k->opset = 1;
    k->file = sfile(s);
    k->err = err;
    k->eng = &s->eng;
    k->n_in = k->n_out = 1;
    k->in = calloc(2, sizeof *k->in);
    k->out = calloc(2, sizeof *k->out);
    int ki = p->n_kc++;
    if (!k->in || !k->out)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    k->in[0] = &p->vals[v];
    k->out[0] = pv;
    p->plain_of[v] = w;
    *out = w;
    return plan_node(p, ki, p->vals[v].is_const);
}

/* Inputs small enough to be shapes, axes, pads or scales (integer vectors of up to 64 values,
 * float vectors of up to 8): planned as constants, so that ops needing their values at plan
 * time work when a model takes them as graph inputs. */
static int is_shape_like(const otl_tensor *t)
{
    if (t->rank > 1)
        return 0;
    if (t->dtype == OTL_DTYPE_INT64 || t->dtype == OTL_DTYPE_INT32)
        return t->numel <= 64;
    return (t->dtype == OTL_DTYPE_FLOAT || t->dtype == OTL_DTYPE_DOUBLE) && t->numel <= 8;
}

/* Graph output i and a buffer bound to it: the kernel that makes the output writes into the buffer
 * when the output is a plain value of its own (not a constant, an input or an alias of another
 * value, and not bound twice); otherwise the run copies it there at the end. */
static otl_status bind_output(const otl_session *s, plan *p, int i, otl_error *err)
{
    const char *name = s->g->outputs[i]->name;
    p->out_bind[i] = -1;
    for (int b = 0; b < s->n_bind; b++)
        if (strcmp(s->bind[b].name, name) == 0)
            p->out_bind[i] = b;
    if (p->out_bind[i] < 0)
        return OTL_OK;
    const out_binding *b = &s->bind[p->out_bind[i]];
    int vi = p->out_val[i];
    otl_rt *v = &p->vals[vi];
    if (v->nbytes != b->nbytes)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: output '%s' holds %zu bytes (%s, %d dims); the buffer bound to it has %zu",
                             sfile(s), name, v->nbytes, otl_dtype_name(v->dtype), v->rank, b->nbytes);
    if (!v->is_const && !v->is_input && v->alias_of < 0 && !v->blocked && !p->external[vi]) {
        p->external[vi] = 1;
        v->data = b->data;
        p->out_direct[i] = 1;
    }
    return OTL_OK;
}

static otl_status build_plan(otl_session *s, plan **out, const otl_tensor *const *inputs, int n_inputs,
                             otl_error *err)
{
    const otl_graph *g = s->g;
    const char *file = sfile(s);
    *out = NULL;
    plan *p = calloc(1, sizeof *p);
    if (!p)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    otl_status st = OTL_OK;
    size_t max_vals = (size_t)g->n_inits + (size_t)g->n_inputs;
    for (int i = 0; i < g->n_nodes; i++)
        max_vals += (size_t)g->nodes[i]->n_outputs;
    /* room for a plain twin of every value and a reorder step for each */
    p->cap_vals = (int)(2 * max_vals + 1);
    p->cap_kc = g->n_nodes + (int)max_vals + 1;
    p->vals = calloc((size_t)p->cap_vals, sizeof *p->vals);
    p->plain_of = malloc((size_t)p->cap_vals * sizeof *p->plain_of);
    p->kc = calloc((size_t)p->cap_kc, sizeof *p->kc);
    p->synth = calloc((size_t)p->cap_kc, sizeof *p->synth);
    p->folded = calloc((size_t)p->cap_kc, sizeof *p->folded);
    p->sched = calloc((size_t)p->cap_kc, sizeof *p->sched);
    p->sig = calloc((size_t)n_inputs + 1, sizeof *p->sig);
    p->out_val = calloc((size_t)g->n_outputs + 1, sizeof *p->out_val);
    p->external = calloc((size_t)p->cap_vals, 1);
    p->out_bind = calloc((size_t)g->n_outputs + 1, sizeof *p->out_bind);
    p->out_direct = calloc((size_t)g->n_outputs + 1, 1);
    p->views = calloc((size_t)g->n_outputs + 1, sizeof *p->views);
    p->view_ptrs = calloc((size_t)g->n_outputs + 1, sizeof *p->view_ptrs);
    if (!p->vals || !p->plain_of || !p->kc || !p->synth || !p->folded || !p->sched || !p->sig ||
        !p->out_val || !p->external || !p->out_bind || !p->out_direct || !p->views || !p->view_ptrs ||
        !otl_strmap_init(&p->idx, max_vals)) {
        plan_free(p);
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    }
    p->n_nodes = g->n_nodes;
    p->n_kc = g->n_nodes;
    for (int i = 0; i < p->cap_vals; i++)
        p->plain_of[i] = -1;

    /* values: initializers (const), graph inputs, node outputs */
    for (int i = 0; !st && i < g->n_inits; i++) {
        const otl_tensor *t = g->inits[i];
        if ((st = add_value(p, t->name, err)))
            break;
        otl_rt *v = find_val(p, t->name);
        if (t->rank > OTL_MAX_RANK) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: initializer '%s': rank %d exceeds the supported %d",
                               file, t->name, t->rank, OTL_MAX_RANK);
            break;
        }
        rt_from_tensor(v, t);
        v->is_const = 1;
    }
    for (int i = 0; !st && i < g->n_inputs; i++)
        st = add_value(p, g->inputs[i]->name, err);
    for (int i = 0; !st && i < g->n_nodes; i++)
        for (int k = 0; !st && k < g->nodes[i]->n_outputs; k++)
            st = add_value(p, g->nodes[i]->outputs[k], err);
    /* feed the inputs */
    for (int i = 0; !st && i < n_inputs; i++) {
        const otl_tensor *t = inputs[i];
        const otl_value *decl = NULL;
        for (int k = 0; k < g->n_inputs && !decl; k++)
            if (strcmp(g->inputs[k]->name, t->name) == 0)
                decl = g->inputs[k];
        if (!decl) {
            char names[512] = "";
            size_t o = 0;
            for (int k = 0; k < g->n_inputs && o < sizeof names - 64; k++)
                if (!otl_graph_find_init(g, g->inputs[k]->name))
                    o += (size_t)snprintf(names + o, sizeof names - o, "%s'%s'", o ? ", " : "", g->inputs[k]->name);
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no input named '%s' (inputs: %s)", file,
                               t->name, names);
            break;
        }
        if (t->rank > OTL_MAX_RANK || t->dtype == OTL_DTYPE_STRING) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: input '%s': rank %d / dtype %s not supported",
                               file, t->name, t->rank, otl_dtype_name(t->dtype));
            break;
        }
        if ((st = check_input(s, decl, t, err)))
            break;
        otl_rt *v = find_val(p, t->name);
        rt_from_tensor(v, t);
        v->is_input = 1;
        int varying = 0;
        for (int k = 0; k < s->opts.n_varying && !varying; k++)
            varying = strcmp(s->opts.varying[k], t->name) == 0;
        if (is_shape_like(t) && !varying) {
            /* small integer vectors (shapes, axes, pads fed as inputs) are planned as
               constants; the plan is rebuilt when their values change */
            v->data = t->nbytes ? otl_memdup(t->data, t->nbytes) : calloc(1, 1);
            if (!v->data) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
                break;
            }
            v->owned = 1;
            v->is_const = 1;
        } else {
            v->is_const = 0;
            v->data = NULL; /* bound at run time */
        }
        p->sig[i] = *v;
    }
    p->n_sig = n_inputs;
    for (int i = 0; !st && i < g->n_inputs; i++) {
        otl_rt *v = find_val(p, g->inputs[i]->name);
        if (!v->shape_known)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' is required but was not given", file,
                               g->inputs[i]->name);
    }

    /* training: the nodes no gradient flows through (a frozen part) run like inference */
    char *no_grad = !st && s->opts.training ? otl_no_grad_nodes(g) : NULL;
    if (!st && s->opts.training && !no_grad)
        st = otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    /* nodes in topological order: infer, fold or schedule */
    for (int oi = 0; !st && oi < g->n_nodes; oi++) {
        const otl_node *n = g->nodes[s->order[oi]];
        otl_kctx *k = &p->kc[oi];
        k->node = n;
        k->opset = node_opset(s->m, n);
        k->op = otl_op_find(n->domain, n->op_type, k->opset, NULL);
        k->file = file;
        k->err = err;
        k->eng = &s->eng;
        k->training = s->opts.training;
        k->bn_training = s->opts.training && !s->opts.bn_frozen;
        k->no_grad = no_grad && no_grad[s->order[oi]];
        k->bf16 = s->opts.precision == OTL_PRECISION_BF16;
        /* random ops (Dropout) draw from a stream named by the session seed and the node's first
           output (unique in the graph): the same in the whole training graph, in a fused one and in
           the feature cache's cut model, whatever the node indices */
        k->seed = s->opts.seed * 6364136223846793005ULL +
                  (n->n_outputs > 0 ? otl_hash64(n->outputs[0], strlen(n->outputs[0]), 0x0d40u) : 0) + 1;
        k->n_in = n->n_inputs;
        k->n_out = n->n_outputs;
        k->in = calloc((size_t)n->n_inputs + 1, sizeof *k->in);
        k->out = calloc((size_t)n->n_outputs + 1, sizeof *k->out);
        if (!k->in || !k->out) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
            break;
        }
        if (!k->op) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: node '%s' (%s): op is not supported", file,
                               n->name, n->op_type);
            break;
        }
        int all_const = 1;
        for (int i = 0; i < n->n_inputs; i++) {
            if (!*n->inputs[i])
                continue;
            k->in[i] = find_val(p, n->inputs[i]);
            if (!k->in[i] || !k->in[i]->shape_known) {
                st = otl_error_set(err, OTL_ERR_UNSUPPORTED,
                                   "%s: node '%s' (%s): input %d '%s' has no known value (outer-scope or unsupported construct)",
                                   file, n->name, n->op_type, i, n->inputs[i]);
                break;
            }
            if (k->in[i]->blocked && !(k->op->flags & OTL_OPF_ANY_LAYOUT)) {
                int v;
                if ((st = ensure_plain(s, p, val_index(p, k->in[i]), &v, err)))
                    break;
                k->in[i] = &p->vals[v];
            }
            all_const &= k->in[i]->is_const;
        }
        if (st)
            break;
        for (int i = 0; i < n->n_outputs; i++)
            k->out[i] = *n->outputs[i] ? find_val(p, n->outputs[i]) : NULL;
        if ((st = plan_node(p, oi, all_const)))
            break;
    }
    free(no_grad);
    /* graph outputs leave in plain layout */
    for (int i = 0; !st && i < g->n_outputs; i++) {
        int v = val_index(p, find_val(p, g->outputs[i]->name));
        if ((st = ensure_plain(s, p, v, &v, err)))
            break;
        p->vals[v].is_output = 1;
        p->out_val[i] = v;
    }
    for (int i = 0; !st && i < g->n_outputs; i++)
        st = bind_output(s, p, i, err);
    if (!st)
        st = assign_arena(p, file, err);
    for (int i = 0; !st && i < g->n_outputs; i++) {
        otl_rt *v = &p->vals[p->out_val[i]];
        otl_tensor *t = &p->views[i];
        t->name = g->outputs[i]->name;
        t->dtype = v->dtype;
        t->rank = v->rank;
        t->dims = v->dims;
        t->numel = v->numel;
        t->nbytes = v->nbytes;
        p->view_ptrs[i] = t;
    }
    for (int si = 0; !st && si < p->n_sched; si++) {
        otl_kctx *k = &p->kc[p->sched[si]];
        if (!k->alias && k->op->prepare)
            st = k->op->prepare(k);
    }
    if (st) {
        plan_free(p);
        return st;
    }
    *out = p;
    return OTL_OK;
}

static int plan_matches(const plan *p, const otl_tensor *const *inputs, int n_inputs)
{
    if (!p || p->n_sig != n_inputs)
        return 0;
    for (int i = 0; i < n_inputs; i++) {
        const otl_rt *v = &p->sig[i];
        const otl_tensor *t = inputs[i];
        if (strcmp(v->name, t->name) != 0 || v->dtype != t->dtype || v->rank != t->rank)
            return 0;
        for (int d = 0; d < t->rank; d++)
            if (v->dims[d] != t->dims[d])
                return 0;
        if (v->is_const && (v->nbytes != t->nbytes || memcmp(v->data, t->data, t->nbytes) != 0))
            return 0;
    }
    return 1;
}

/* Plan if needed, run the schedule, and deliver bound outputs. Allocates only when it (re)plans. */
static otl_status session_exec(otl_session *s, const otl_tensor *const *inputs, int n_inputs, otl_error *err)
{
    for (int i = 0; i < n_inputs; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(inputs[i]->name, inputs[j]->name) == 0)
                return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' given twice", sfile(s), inputs[i]->name);
    if (!plan_matches(s->plan, inputs, n_inputs) && plan_matches(s->spare, inputs, n_inputs)) {
        plan *t = s->plan;
        s->plan = s->spare;
        s->spare = t;
    }
    if (!plan_matches(s->plan, inputs, n_inputs)) {
        plan_free(s->spare);
        s->spare = s->plan;
        s->plan = NULL;
        otl_status st = build_plan(s, &s->plan, inputs, n_inputs, err);
        if (st && s->fused && st != OTL_ERR_NOMEM) {
            plan_free(s->spare); /* planned for the fused graph */
            s->spare = NULL;
            /* a fusion that the concrete shapes do not allow (e.g. a residual Add that
               broadcasts the conv output): plan the model as it is written instead */
            otl_fused_free(s->fused);
            s->fused = NULL;
            s->g = s->m->graph;
            free(s->order);
            s->order = NULL;
            otl_error_clear(err);
            st = otl_graph_toposort(s->g, &s->order, s->m->path, err);
            if (!st)
                st = build_plan(s, &s->plan, inputs, n_inputs, err);
        }
        if (st)
            return st;
    }
    plan *p = s->plan;
    for (int i = 0; i < n_inputs; i++) {
        otl_rt *v = find_val(p, inputs[i]->name);
        if (!v->is_const)
            v->data = inputs[i]->data;
    }
    for (int si = 0; si < p->n_sched; si++) {
        otl_kctx *k = &p->kc[p->sched[si]];
        k->err = err;
        k->step = s->runs;
        if (k->alias) {
            k->out[0]->data = k->in[0]->data;
            continue;
        }
        double t0 = s->profile ? now_ms() : 0;
        otl_status st = k->op->forward(k);
        if (st)
            return st;
        if (s->profile)
            prof_add(s, k->node->op_type, now_ms() - t0);
    }
    s->runs++;
    for (int i = 0; i < s->g->n_outputs; i++) {
        const otl_rt *v = &p->vals[p->out_val[i]];
        p->views[i].data = v->data;
        if (p->out_bind[i] >= 0 && !p->out_direct[i]) {
            const out_binding *b = &s->bind[p->out_bind[i]];
            if (v->nbytes && b->data != v->data)
                memcpy(b->data, v->data, v->nbytes);
            p->views[i].data = b->data;
        }
    }
    return OTL_OK;
}

otl_status otl_session_run(otl_session *s, const otl_tensor *const *inputs, int n_inputs,
                           otl_tensor ***outputs, int *n_outputs, otl_error *err)
{
    *outputs = NULL;
    *n_outputs = 0;
    otl_status st = session_exec(s, inputs, n_inputs, err);
    if (st)
        return st;
    const otl_graph *g = s->g;
    otl_tensor **outs = calloc((size_t)g->n_outputs + 1, sizeof *outs);
    if (!outs)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_outputs; i++) {
        const otl_tensor *v = &s->plan->views[i];
        otl_tensor *t = otl_tensor_new(v->name, v->dtype, v->rank, v->dims);
        if (t) {
            t->nbytes = v->nbytes;
            t->data = malloc(v->nbytes ? v->nbytes : 1);
        }
        if (!t || !t->data) {
            otl_tensor_free(t);
            for (int j = 0; j < i; j++)
                otl_tensor_free(outs[j]);
            free(outs);
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        }
        if (v->nbytes)
            memcpy(t->data, v->data, v->nbytes);
        outs[i] = t;
    }
    *outputs = outs;
    *n_outputs = g->n_outputs;
    return OTL_OK;
}

otl_status otl_session_run_views(otl_session *s, const otl_tensor *const *inputs, int n_inputs,
                                 const otl_tensor *const **outputs, int *n_outputs, otl_error *err)
{
    *outputs = NULL;
    *n_outputs = 0;
    otl_status st = session_exec(s, inputs, n_inputs, err);
    if (st)
        return st;
    *outputs = s->plan->view_ptrs;
    *n_outputs = s->g->n_outputs;
    return OTL_OK;
}

otl_status otl_session_bind_output(otl_session *s, const char *name, void *data, size_t nbytes, otl_error *err)
{
    int found = 0;
    for (int i = 0; i < s->m->graph->n_outputs && !found; i++)
        found = strcmp(s->m->graph->outputs[i]->name, name) == 0;
    if (!found)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no output named '%s'", sfile(s), name);
    if (!data)
        return otl_error_set(err, OTL_ERR_USAGE, "%s: output '%s': no buffer to bind", sfile(s), name);
    int b = 0;
    while (b < s->n_bind && strcmp(s->bind[b].name, name) != 0)
        b++;
    if (b == s->n_bind) {
        out_binding *nb = realloc(s->bind, ((size_t)s->n_bind + 1) * sizeof *nb);
        if (!nb)
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        s->bind = nb;
        if (!(nb[b].name = otl_strdup(name)))
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        s->n_bind++;
    }
    s->bind[b].data = data;
    s->bind[b].nbytes = nbytes;
    plan_free(s->plan); /* planned again at the next run, with the kernel writing into the buffer */
    plan_free(s->spare);
    s->plan = s->spare = NULL;
    return OTL_OK;
}

void otl_session_set_runs(otl_session *s, uint64_t runs)
{
    s->runs = runs;
}

otl_status otl_session_stats_get(const otl_session *s, otl_session_stats *st, otl_error *err)
{
    memset(st, 0, sizeof *st);
    const plan *p = s->plan;
    if (!p)
        return otl_error_set(err, OTL_ERR_USAGE, "%s: the session has not run yet", sfile(s));
    st->arena_bytes = p->arena_size;
    st->scratch_bytes = s->eng.scratch_size;
    st->n_library_runs = s->eng.n_library_runs;
    st->n_scratch_runs = s->eng.n_scratch_runs;
    for (int i = 0; i < p->n_kc; i++)
        st->n_folded += p->folded[i];
    for (int i = 0; i < p->n_vals; i++)
        if (p->vals[i].owned)
            st->const_bytes += p->vals[i].nbytes;
    for (int i = 0; i < p->n_sched; i++)
        st->n_steps += !p->kc[p->sched[i]].alias;
    return OTL_OK;
}
