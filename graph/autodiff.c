/* autodiff.c - reverse-mode differentiation by graph extension (see graph/autodiff.h).
 * 1. forward sweep: which values depend on a trainable parameter through differentiable
 *    inputs ("requires grad");
 * 2. backward sweep from the loss in reverse topological order: for each node with a
 *    gradient on an output and an input that requires grad, its op's rule appends nodes;
 *    partial gradients of a value used several times are summed with Add. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "src/strmap.h"
#include "src/util.h"

typedef struct partials {
    int n, cap;
    char **names;
} partials;

typedef struct otl_ad {
    otl_graph *g;
    const otl_model *m;
    otl_error *err;
    const char *file;
    int counter;
    int failed;
    /* strings handed out by otl_gname */
    char **pool;
    size_t n_pool, cap_pool;
    /* value name -> index into parts */
    otl_strmap idx;
    partials *parts;
    int n_parts, cap_parts;
} otl_ad;

static char *pool_add(otl_ad *ad, char *s)
{
    if (!s || !otl_grow((void **)&ad->pool, sizeof *ad->pool, &ad->cap_pool, ad->n_pool + 1)) {
        free(s);
        ad->failed = 1;
        return NULL;
    }
    ad->pool[ad->n_pool++] = s;
    return s;
}

static const char *fresh(otl_ad *ad, const char *hint)
{
    size_t n = strlen(hint) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s_grad%d", hint, ad->counter++);
    return pool_add(ad, s);
}

const char *otl_gname(otl_gctx *c, const char *hint)
{
    return fresh(c->ad, hint && *hint ? hint : "t");
}

static otl_node *emit(otl_ad *ad, const char *name_hint, const char *domain, const char *op_type, int n_in,
                      const char *const *in, int n_out, const char *const *out)
{
    char name[512];
    snprintf(name, sizeof name, "%s_%s%d", name_hint, op_type, ad->counter++);
    otl_node *n = otl_node_new(name, op_type, domain);
    if (!n || otl_node_set_io(n, n_in, in, n_out, out) || otl_graph_add_node(ad->g, n)) {
        otl_node_free(n);
        ad->failed = 1;
        otl_error_set(ad->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", ad->file);
        return NULL;
    }
    return n;
}

otl_node *otl_gemit(otl_gctx *c, const char *domain, const char *op_type, int n_in,
                    const char *const *in, int n_out, const char *const *out)
{
    for (int i = 0; i < n_in; i++)
        if (!in[i])
            return c->ad->failed = 1, NULL;
    for (int i = 0; i < n_out; i++)
        if (!out[i])
            return c->ad->failed = 1, NULL;
    char hint[400];
    snprintf(hint, sizeof hint, "%s/grad", *c->node->name ? c->node->name : c->node->op_type);
    return emit(c->ad, hint, domain, op_type, n_in, in, n_out, out);
}

const char *otl_gemit1(otl_gctx *c, const char *domain, const char *op_type, int n_in,
                       const char *const *in, otl_node **node)
{
    const char *out = otl_gname(c, c->node->outputs[0]);
    otl_node *n = out ? otl_gemit(c, domain, op_type, n_in, in, 1, &out) : NULL;
    if (node)
        *node = n;
    return n ? out : NULL;
}

static otl_status attr_fail(otl_gctx *c)
{
    c->ad->failed = 1;
    return otl_error_set(c->err, OTL_ERR_NOMEM, "%s: out of memory building gradients", c->file);
}

otl_status otl_gattr_int(otl_gctx *c, otl_node *n, const char *name, int64_t v)
{
    otl_attr *a;
    if (!n || otl_node_add_attr(n, name, OTL_ATTR_INT, &a))
        return attr_fail(c);
    a->i = v;
    return OTL_OK;
}

otl_status otl_gattr_float(otl_gctx *c, otl_node *n, const char *name, float v)
{
    otl_attr *a;
    if (!n || otl_node_add_attr(n, name, OTL_ATTR_FLOAT, &a))
        return attr_fail(c);
    a->f = v;
    return OTL_OK;
}

otl_status otl_gattr_ints(otl_gctx *c, otl_node *n, const char *name, const int64_t *v, int count)
{
    otl_attr *a;
    if (!n || otl_node_add_attr(n, name, OTL_ATTR_INTS, &a))
        return attr_fail(c);
    if (count > 0 && !(a->ints = otl_memdup(v, (size_t)count * sizeof *v)))
        return attr_fail(c);
    a->n_ints = (size_t)count;
    return OTL_OK;
}

otl_status otl_gattr_str(otl_gctx *c, otl_node *n, const char *name, const char *v)
{
    otl_attr *a;
    if (!n || otl_node_add_attr(n, name, OTL_ATTR_STRING, &a))
        return attr_fail(c);
    a->s.len = strlen(v);
    if (!(a->s.data = (uint8_t *)otl_strdup(v)))
        return attr_fail(c);
    return OTL_OK;
}

otl_status otl_gattr_copy(otl_gctx *c, otl_node *n)
{
    const otl_node *f = c->node;
    for (int i = 0; i < f->n_attrs; i++) {
        const otl_attr *src = &f->attrs[i];
        otl_status st;
        switch (src->type) {
        case OTL_ATTR_INT: st = otl_gattr_int(c, n, src->name, src->i); break;
        case OTL_ATTR_FLOAT: st = otl_gattr_float(c, n, src->name, src->f); break;
        case OTL_ATTR_INTS: st = otl_gattr_ints(c, n, src->name, src->ints, (int)src->n_ints); break;
        case OTL_ATTR_STRING: st = otl_gattr_str(c, n, src->name, src->s.data ? (const char *)src->s.data : ""); break;
        default:
            return otl_error_set(c->err, OTL_ERR_UNSUPPORTED,
                                 "%s: node '%s' (%s): attribute '%s' of type %d cannot be copied to its gradient",
                                 c->file, f->name, f->op_type, src->name, src->type);
        }
        if (st)
            return st;
    }
    return OTL_OK;
}

void otl_grad_set(otl_gctx *c, int i, const char *name)
{
    if (!name) {
        c->ad->failed = 1;
        return;
    }
    if (i >= 0 && i < c->n_in)
        c->dx[i] = name;
}

const char *otl_grad_unbroadcast(otl_gctx *c, const char *dy, int i)
{
    const char *in_shape[1] = {c->node->inputs[i]};
    const char *shape = otl_gemit1(c, "", "Shape", 1, in_shape, NULL);
    const char *args[2] = {dy, shape};
    return shape ? otl_gemit1(c, OTL_GRAD_DOMAIN, "ReduceSumTo", 2, args, NULL) : NULL;
}

/* ------------------------------------------------------------ partial gradients */

static partials *parts_of(otl_ad *ad, const char *name, int create)
{
    int i = otl_strmap_get(&ad->idx, name, -1);
    if (i >= 0)
        return &ad->parts[i];
    if (!create)
        return NULL;
    if (ad->n_parts == ad->cap_parts) {
        /* grow without moving: the map keys point at value names in the graph, which stay put */
        int nc = ad->cap_parts ? ad->cap_parts * 2 : 64;
        partials *np = realloc(ad->parts, (size_t)nc * sizeof *np);
        if (!np)
            return ad->failed = 1, NULL;
        ad->parts = np;
        ad->cap_parts = nc;
    }
    memset(&ad->parts[ad->n_parts], 0, sizeof ad->parts[0]);
    if (!otl_strmap_put(&ad->idx, name, ad->n_parts))
        return ad->failed = 1, NULL;
    return &ad->parts[ad->n_parts++];
}

static void parts_add(otl_ad *ad, const char *value, const char *grad)
{
    partials *p = parts_of(ad, value, 1);
    if (!p)
        return;
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 2;
        char **nn = realloc(p->names, (size_t)nc * sizeof *nn);
        if (!nn) {
            ad->failed = 1;
            return;
        }
        p->names = nn;
        p->cap = nc;
    }
    p->names[p->n++] = (char *)grad; /* pool-owned or graph-owned; not freed here */
}

/* Sum of the partial gradients of a value (NULL when there are none). */
static const char *parts_sum(otl_ad *ad, const char *value)
{
    partials *p = parts_of(ad, value, 0);
    if (!p || p->n == 0)
        return NULL;
    const char *acc = p->names[0];
    for (int i = 1; i < p->n && acc; i++) {
        const char *out = fresh(ad, value);
        const char *in[2] = {acc, p->names[i]};
        if (!out || !emit(ad, "grad_accumulate", "", "Add", 2, in, 1, &out))
            return NULL;
        acc = out;
    }
    /* collapse so that later look-ups reuse the sum */
    p->n = 1;
    p->names[0] = (char *)acc;
    return acc;
}

/* ------------------------------------------------------------ the pass */

/* Whether input i of a node carries gradient: 1 yes, 0 no; an op without a rule (and not marked
 * OTL_OPF_NO_GRAD) counts as differentiable so that the sweep can name it. */
static int input_differentiable(const otl_op *op, int i)
{
    if (!op)
        return 1;
    if (op->flags & OTL_OPF_NO_GRAD)
        return 0;
    if (!op->grad)
        return 1;
    return (op->grad_inputs >> (i < 31 ? i : 31)) & 1;
}

otl_status otl_autodiff(otl_graph *g, const otl_model *m, const char *loss, const char *const *params,
                        int n_params, char **grads, otl_error *err)
{
    const char *file = m->path ? m->path : "(model)";
    otl_ad ad = {.g = g, .m = m, .err = err, .file = file};
    otl_strmap rg;
    int *order = NULL, n_fwd = g->n_nodes;
    otl_status st = otl_graph_toposort(g, &order, file, err);
    if (st)
        return st;
    if (!otl_strmap_init(&rg, (size_t)n_fwd * 2 + (size_t)n_params) ||
        !otl_strmap_init(&ad.idx, (size_t)n_fwd * 2 + 16)) {
        free(order);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    for (int i = 0; i < n_params; i++) {
        grads[i] = NULL;
        otl_strmap_put(&rg, params[i], 1);
    }
    /* 1. forward sweep: requires-grad values */
    for (int oi = 0; oi < n_fwd; oi++) {
        const otl_node *n = g->nodes[order[oi]];
        const otl_op *op = otl_op_find(n->domain, n->op_type, otl_model_opset(m, n->domain), NULL);
        int any = 0;
        for (int i = 0; i < n->n_inputs && !any; i++)
            if (*n->inputs[i] && otl_strmap_has(&rg, n->inputs[i]))
                any = input_differentiable(op, i);
        if (any)
            for (int k = 0; k < n->n_outputs; k++)
                if (*n->outputs[k])
                    otl_strmap_put(&rg, n->outputs[k], 1);
    }
    if (!otl_strmap_has(&rg, loss)) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: the loss '%s' does not depend on any trainable parameter",
                           file, loss);
        goto done;
    }
    /* 2. seed: d loss / d loss = 1 (the loss is a float32 scalar; Constant exists at every opset) */
    {
        const char *seed = fresh(&ad, "loss");
        otl_node *cn = seed ? emit(&ad, "grad_seed", "", "Constant", 0, NULL, 1, &seed) : NULL;
        otl_attr *a;
        otl_tensor *one = NULL;
        if (!cn || otl_node_add_attr(cn, "value", OTL_ATTR_TENSOR, &a) ||
            !(one = otl_tensor_new("", OTL_DTYPE_FLOAT, 0, NULL)) ||
            !(one->data = malloc(sizeof(float)))) {
            otl_tensor_free(one);
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
            goto done;
        }
        *(float *)one->data = 1.0f;
        one->nbytes = sizeof(float);
        a->t = one;
        parts_add(&ad, loss, seed);
    }
    /* 3. backward sweep */
    for (int oi = n_fwd - 1; oi >= 0 && !st; oi--) {
        const otl_node *n = g->nodes[order[oi]];
        int has_dy = 0, needs = 0;
        for (int k = 0; k < n->n_outputs; k++)
            has_dy |= *n->outputs[k] && parts_of(&ad, n->outputs[k], 0) != NULL;
        if (!has_dy)
            continue;
        int64_t opset = otl_model_opset(m, n->domain);
        const char *why = NULL;
        const otl_op *op = otl_op_find(n->domain, n->op_type, opset, &why);
        int *need = calloc((size_t)n->n_inputs + 1, sizeof *need);
        const char **dy = calloc((size_t)n->n_outputs + 1, sizeof *dy);
        const char **dx = calloc((size_t)n->n_inputs + 1, sizeof *dx);
        if (!need || !dy || !dx) {
            free(need);
            free(dy);
            free(dx);
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
            break;
        }
        for (int i = 0; i < n->n_inputs; i++) {
            need[i] = *n->inputs[i] && otl_strmap_has(&rg, n->inputs[i]) && input_differentiable(op, i);
            needs |= need[i];
        }
        if (needs && !op && opset < 0) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: node '%s' (%s): the model imports no opset for domain '%s'",
                               file, n->name, n->op_type, *n->domain ? n->domain : "ai.onnx");
        } else if (needs && !op && why) { /* known op, opset outside what is implemented: say so */
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: node '%s' (%s): op %s at opset %lld is not supported (%s)",
                               file, n->name, n->op_type, n->op_type, (long long)opset, why);
        } else if (needs && (!op || !op->grad)) {
            st = otl_error_set(err, OTL_ERR_UNSUPPORTED,
                               "%s: node '%s' (%s): no gradient rule for %s, and it lies between a trainable parameter and the loss",
                               file, n->name, n->op_type, n->op_type);
        } else if (needs) {
            for (int k = 0; k < n->n_outputs; k++)
                dy[k] = *n->outputs[k] ? parts_sum(&ad, n->outputs[k]) : NULL;
            otl_gctx c = {.g = g, .m = m, .node = n, .opset = opset, .file = file, .err = err,
                          .n_in = n->n_inputs, .n_out = n->n_outputs, .need = need, .dy = dy,
                          .dx = dx, .ad = &ad};
            st = ad.failed ? otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file) : op->grad(&c);
            for (int i = 0; !st && i < n->n_inputs; i++) {
                if (!need[i])
                    continue;
                if (!dx[i]) {
                    st = otl_error_set(err, OTL_ERR_INTERNAL,
                                       "%s: node '%s' (%s): gradient rule gave no gradient for input %d",
                                       file, n->name, n->op_type, i);
                    break;
                }
                parts_add(&ad, n->inputs[i], dx[i]);
            }
            if (!st && ad.failed)
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory building gradients", file);
        }
        free(need);
        free(dy);
        free(dx);
    }
    /* 4. the parameters' gradients (zeros when the loss does not depend on one) */
    for (int i = 0; !st && i < n_params; i++) {
        const char *gname = parts_sum(&ad, params[i]);
        if (!gname) {
            const char *shape_in[1] = {params[i]};
            const char *shape = fresh(&ad, params[i]), *zero = fresh(&ad, params[i]);
            otl_node *sn = shape ? emit(&ad, "grad_zero", "", "Shape", 1, shape_in, 1, &shape) : NULL;
            otl_node *cn = sn && zero ? emit(&ad, "grad_zero", "", "ConstantOfShape", 1, &shape, 1, &zero) : NULL;
            if (!cn) {
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
                break;
            }
            gname = zero; /* ConstantOfShape defaults to float zeros */
        }
        if (!(grads[i] = otl_strdup(gname)))
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    if (!st && ad.failed)
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory building gradients", file);
done:
    if (st)
        for (int i = 0; i < n_params; i++) {
            free(grads[i]);
            grads[i] = NULL;
        }
    for (int i = 0; i < ad.n_parts; i++)
        free(ad.parts[i].names);
    free(ad.parts);
    for (size_t i = 0; i < ad.n_pool; i++)
        free(ad.pool[i]);
    free(ad.pool);
    otl_strmap_free(&ad.idx);
    otl_strmap_free(&rg);
    free(order);
    return st;
}
