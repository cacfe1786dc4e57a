/* core.c - ops the executor leans on: Identity, Constant, Shape.
 * None is differentiable except Identity (gradient passes through). */
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/op.h"

/* ---------------------------------------------------------------- Identity */

static otl_status identity_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    return otl_rt_like(k, k->out[0], k->in[0]);
}

static otl_status identity_grad(otl_gctx *c)
{
    otl_grad_set(c, 0, c->dy[0]);
    return OTL_OK;
}

const otl_op otl_op_Identity = {
    .op_type = "Identity", .domain = "", .since = 1, .until = 22, .flags = OTL_OPF_ALIAS,
    .infer = identity_infer, .grad_inputs = 1, .grad = identity_grad,
};

/* ---------------------------------------------------------------- Constant */

typedef struct constant_state {
    int dtype;
    int rank;
    int64_t dims[OTL_MAX_RANK];
    const void *data;      /* borrowed from the attribute tensor */
    float f;               /* value_float */
    int64_t i;             /* value_int */
} constant_state;

static otl_status constant_infer(otl_kctx *k)
{
    constant_state *c = calloc(1, sizeof *c);
    if (!c)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = c;
    const otl_attr *a = NULL;
    int n_set = 0;
    for (int i = 0; i < k->node->n_attrs; i++)
        if (strncmp(k->node->attrs[i].name, "value", 5) == 0 || strcmp(k->node->attrs[i].name, "sparse_value") == 0) {
            a = &k->node->attrs[i];
            n_set++;
        }
    if (n_set != 1)
        return otl_kfail(k, OTL_ERR_INPUT, "exactly one value attribute is required, found %d", n_set);
    if (strcmp(a->name, "value") == 0 && a->type == OTL_ATTR_TENSOR && a->t) {
        const otl_tensor *t = a->t;
        if (t->rank > OTL_MAX_RANK || t->dtype == OTL_DTYPE_STRING)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "constant of rank %d / dtype %s is not supported",
                             t->rank, otl_dtype_name(t->dtype));
        c->dtype = t->dtype;
        c->rank = t->rank;
        if (t->rank)
            memcpy(c->dims, t->dims, (size_t)t->rank * sizeof *t->dims);
        c->data = t->data;
    } else if (strcmp(a->name, "value_float") == 0 && a->type == OTL_ATTR_FLOAT) {
        c->dtype = OTL_DTYPE_FLOAT;
        c->f = a->f;
        c->data = &c->f;
    } else if (strcmp(a->name, "value_int") == 0 && a->type == OTL_ATTR_INT) {
        c->dtype = OTL_DTYPE_INT64;
        c->i = a->i;
        c->data = &c->i;
    } else if (strcmp(a->name, "value_ints") == 0 && a->type == OTL_ATTR_INTS) {
        c->dtype = OTL_DTYPE_INT64;
        c->rank = 1;
        c->dims[0] = (int64_t)a->n_ints;
        c->data = a->ints;
    } else if (strcmp(a->name, "value_floats") == 0 && a->type == OTL_ATTR_FLOATS) {
        c->dtype = OTL_DTYPE_FLOAT;
        c->rank = 1;
        c->dims[0] = (int64_t)a->n_floats;
        c->data = a->floats;
    } else {
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "attribute '%s' (type %d) is not supported", a->name, a->type);
    }
    return otl_rt_set(k, k->out[0], c->dtype, c->rank, c->dims);
}

static otl_status constant_forward(otl_kctx *k)
{
    constant_state *c = k->state;
    if (k->out[0]->nbytes)
        memcpy(k->out[0]->data, c->data, k->out[0]->nbytes);
    return OTL_OK;
}

const otl_op otl_op_Constant = {
    .op_type = "Constant", .domain = "", .since = 1, .until = 22,
    .infer = constant_infer, .forward = constant_forward,
};

/* ---------------------------------------------------------------- Shape */

typedef struct shape_state {
    int64_t start, end;
} shape_state;

static otl_status shape_infer(otl_kctx *k)
{
    otl_status st = otl_check_in(k, 0, NULL);
    if (st)
        return st;
    shape_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    int r = k->in[0]->rank;
    int64_t start = 0, end = r;
    if (k->opset >= 15) {
        if ((st = otl_attr_int(k, "start", 0, &start)) || (st = otl_attr_int(k, "end", r, &end)))
            return st;
    }
    if (start < 0)
        start += r;
    if (end < 0)
        end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    s->start = start;
    s->end = end > start ? end : start;
    int64_t n = s->end - s->start;
    return otl_rt_set(k, k->out[0], OTL_DTYPE_INT64, 1, &n);
}

static otl_status shape_forward(otl_kctx *k)
{
    shape_state *s = k->state;
    int64_t *o = k->out[0]->data;
    for (int64_t i = s->start; i < s->end; i++)
        o[i - s->start] = k->in[0]->dims[i];
    return OTL_OK;
}

const otl_op otl_op_Shape = {
    .op_type = "Shape", .domain = "", .since = 1, .until = 22,
    .flags = OTL_OPF_SHAPE_ONLY | OTL_OPF_ANY_LAYOUT | OTL_OPF_NO_GRAD,
    .infer = shape_infer, .forward = shape_forward,
};
