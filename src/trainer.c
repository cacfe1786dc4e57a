/* trainer.c - one training step at a time: the training graph (src/train_graph.c) run by a
 * training session whose gradient outputs are bound to the optimizer's flat gradient block (the
 * kernels write them there), an update, and the parameters fed back as inputs of the next step.
 * After the first step nothing is allocated per step: the outputs are the session's views. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"
#include "src/util.h"

struct otl_trainer {
    otl_trainer_opts o;
    otl_train_graph *tg;
    otl_session *s;
    otl_optim *opt;
    otl_tensor *views;     /* (n_params) tensors over the optimizer's parameter block */
    int *grad_out;         /* (n_params) output index of each gradient, -1 before the first run */
    int loss_out;
    otl_tensor *stats;     /* (n_stats) BatchNormalization running statistics (own data) */
    int *stat_out;         /* (n_stats) output index of each updated statistic */
    const otl_tensor *pred; /* the model's first output at the last step (a session view) */
    const otl_tensor **in; /* (cap_in) the run's inputs: data, target, parameters, statistics */
    int cap_in;
    const char **varying;  /* (n_params + n_stats + 1) names the session must not plan as constants */
    uint8_t *zero;         /* (opt->total) pruning mask: 1 where a parameter stays 0, or NULL */
};

void otl_trainer_free(otl_trainer *t)
{
    if (!t)
        return;
    for (int i = 0; t->views && t->tg && i < t->tg->n_params; i++)
        free(t->views[i].dims);
    free(t->views);
    free(t->grad_out);
    for (int i = 0; t->stats && t->tg && i < t->tg->n_stats; i++) {
        free(t->stats[i].dims);
        free(t->stats[i].data);
    }
    free(t->stats);
    free(t->stat_out);
    free(t->in);
    free(t->varying);
    free(t->zero);
    otl_session_free(t->s);
    otl_optim_free(t->opt);
    otl_train_graph_free(t->tg);
    free(t);
}

otl_optim *otl_trainer_optim(otl_trainer *t) { return t->opt; }

/* Zero the masked parameters and their optimizer state. */
static void mask_apply(otl_trainer *t)
{
    otl_optim *o = t->opt;
    for (int64_t j = 0; j < o->total; j++)
        if (t->zero[j]) {
            o->param[j] = 0.0f;
            if (o->m)
                o->m[j] = 0.0f;
            if (o->v)
                o->v[j] = 0.0f;
        }
}

otl_status otl_trainer_set_mask(otl_trainer *t, const char *name, const uint8_t *zero, int64_t n, otl_error *err)
{
    for (int i = 0; i < t->tg->n_params; i++) {
        if (strcmp(t->tg->params[i], name) != 0)
            continue;
        if (n != t->opt->numel[i])
            return otl_error_set(err, OTL_ERR_INPUT, "pruning mask of '%s': %lld elements for a parameter of %lld",
                                 name, (long long)n, (long long)t->opt->numel[i]);
        if (!t->zero && !(t->zero = calloc((size_t)t->opt->total + 1, 1)))
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        memcpy(t->zero + t->opt->offset[i], zero, (size_t)n);
        mask_apply(t);
    }
    return OTL_OK;
}
const otl_train_graph *otl_trainer_graph(const otl_trainer *t) { return t->tg; }

otl_status otl_trainer_new(otl_trainer **out, const otl_model *m, const otl_trainer_opts *o, otl_error *err)
{
    *out = NULL;
    const char *file = m->path ? m->path : "(model)";
    otl_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    t->o = *o;
    otl_grad_spec spec = o->grad;
    spec.bn_stats = !o->bn_frozen;
    otl_status st = otl_train_graph_build(&t->tg, m, &spec, err);
    if (st) {
        otl_trainer_free(t);
        return st;
    }
    const otl_graph *g = t->tg->m->graph;
    int n = t->tg->n_params;
    int64_t *numel = calloc((size_t)n + 1, sizeof *numel);
    t->views = calloc((size_t)n + 1, sizeof *t->views);
    t->grad_out = malloc(((size_t)n + 1) * sizeof *t->grad_out);
    if (!numel || !t->views || !t->grad_out) {
        free(numel);
        otl_trainer_free(t);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    for (int i = 0; i < n; i++) {
        const otl_tensor *p = otl_graph_find_init(g, t->tg->params[i]);
        if (p->dtype != OTL_DTYPE_FLOAT) {
            free(numel);
            otl_trainer_free(t);
            return otl_error_set(err, OTL_ERR_UNSUPPORTED, "%s: parameter '%s' is %s; only float32 parameters can be trained",
                                 file, p->name, otl_dtype_name(p->dtype));
        }
        numel[i] = p->numel;
        t->grad_out[i] = -1;
    }
    st = otl_optim_new(&t->opt, n, numel, &o->optim, err);
    free(numel);
    if (st) {
        otl_trainer_free(t);
        return st;
    }
    for (int i = 0; i < n; i++) {
        const otl_tensor *p = otl_graph_find_init(g, t->tg->params[i]);
        otl_tensor *v = &t->views[i];
        v->name = t->tg->params[i];
        v->dtype = p->dtype;
        v->rank = p->rank;
        v->numel = p->numel;
        v->nbytes = p->nbytes;
        v->data = t->opt->param + t->opt->offset[i];
        if (p->rank && !(v->dims = otl_memdup(p->dims, (size_t)p->rank * sizeof *p->dims))) {
            otl_trainer_free(t);
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        }
        memcpy(v->data, p->data, p->nbytes);
    }
    int ns = t->tg->n_stats;
    t->stats = calloc((size_t)ns + 1, sizeof *t->stats);
    t->stat_out = malloc(((size_t)ns + 1) * sizeof *t->stat_out);
    if (!t->stats || !t->stat_out) {
        otl_trainer_free(t);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    for (int i = 0; i < ns; i++) {
        const otl_tensor *p = otl_graph_find_init(g, t->tg->stats[i]);
        otl_tensor *v = &t->stats[i];
        t->stat_out[i] = -1;
        v->name = t->tg->stats[i];
        v->dtype = p->dtype;
        v->rank = p->rank;
        v->numel = p->numel;
        v->nbytes = p->nbytes;
        if ((p->rank && !(v->dims = otl_memdup(p->dims, (size_t)p->rank * sizeof *p->dims))) ||
            (p->nbytes && !(v->data = otl_memdup(p->data, p->nbytes)))) {
            otl_trainer_free(t);
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
        }
    }
    /* the target, parameters and statistics change every step: runtime inputs of the plan, never
       constants (a batch of up to 64 int64 labels would otherwise be planned as one) */
    if (!(t->varying = malloc(((size_t)n + (size_t)ns + 2) * sizeof *t->varying))) {
        otl_trainer_free(t);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    for (int i = 0; i < n; i++)
        t->varying[i] = t->tg->params[i];
    for (int i = 0; i < ns; i++)
        t->varying[n + i] = t->tg->stats[i];
    t->varying[n + ns] = t->tg->target;
    otl_session_opts so = {.threads = o->threads, .training = 1, .bn_frozen = o->bn_frozen, .seed = o->seed,
                           .precision = o->precision, .n_varying = n + ns + 1, .varying = t->varying};
    if ((st = otl_session_new(&t->s, t->tg->m, &so, err))) {
        otl_trainer_free(t);
        return st;
    }
    for (int i = 0; i < n; i++)
        if ((st = otl_session_bind_output(t->s, t->tg->grads[i], t->opt->grad + t->opt->offset[i],
                                          t->views[i].nbytes, err))) {
            otl_trainer_free(t);
            return st;
        }
    t->loss_out = -1;
    *out = t;
    return OTL_OK;
}

otl_status otl_trainer_step(otl_trainer *t, const otl_tensor *const *inputs, int n_inputs,
                            const otl_tensor *target, float lr, float *loss, otl_error *err)
{
    int n = t->tg->n_params, ns = t->tg->n_stats;
    t->pred = NULL;
    if (n_inputs + 1 + n + ns > t->cap_in) {
        const otl_tensor **in = realloc(t->in, (size_t)(n_inputs + 1 + n + ns) * sizeof *in);
        if (!in)
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
        t->in = in;
        t->cap_in = n_inputs + 1 + n + ns;
    }
    otl_tensor tgt = *target; /* shallow copy renamed to the graph's target input */
    tgt.name = t->tg->target;
    int k = 0;
    for (int i = 0; i < n_inputs; i++)
        t->in[k++] = inputs[i];
    t->in[k++] = &tgt;
    for (int i = 0; i < n; i++)
        t->in[k++] = &t->views[i];
    for (int i = 0; i < ns; i++)
        t->in[k++] = &t->stats[i];
    const otl_tensor *const *outs = NULL;
    int n_out = 0;
    otl_status st = otl_session_run_views(t->s, t->in, k, &outs, &n_out, err);
    if (st)
        return st;
    if (t->loss_out < 0) {
        for (int i = 0; i < n_out; i++) {
            if (strcmp(outs[i]->name, t->tg->loss) == 0)
                t->loss_out = i;
            for (int p = 0; p < n; p++)
                if (strcmp(outs[i]->name, t->tg->grads[p]) == 0)
                    t->grad_out[p] = i;
            for (int p = 0; p < ns; p++)
                if (strcmp(outs[i]->name, t->tg->stat_outs[p]) == 0)
                    t->stat_out[p] = i;
        }
    }
    for (int p = 0; !st && p < ns; p++) {
        const otl_tensor *ot = t->stat_out[p] >= 0 ? outs[t->stat_out[p]] : NULL;
        if (!ot || ot->nbytes != t->stats[p].nbytes || ot->dtype != t->stats[p].dtype)
            st = otl_error_set(err, OTL_ERR_INTERNAL, "running statistic '%s' missing or of the wrong size",
                               t->tg->stats[p]);
    }
    /* the gradients are already in the optimizer's block: the session writes bound outputs there */
    for (int p = 0; !st && p < n; p++) {
        const otl_tensor *gt = t->grad_out[p] >= 0 ? outs[t->grad_out[p]] : NULL;
        if (!gt || gt->nbytes != t->views[p].nbytes || gt->data != (void *)(t->opt->grad + t->opt->offset[p]))
            st = otl_error_set(err, OTL_ERR_INTERNAL, "gradient of '%s' missing or of the wrong size", t->tg->params[p]);
    }
    if (st)
        return st;
    *loss = t->loss_out >= 0 ? *(const float *)outs[t->loss_out]->data : 0.0f;
    /* a non-finite loss leaves the parameters and statistics as they were (the caller stops) */
    if (isfinite(*loss)) {
        if (t->zero) /* pruned weights get no gradient (PyTorch's prune: grad * mask) */
            for (int64_t j = 0; j < t->opt->total; j++)
                if (t->zero[j])
                    t->opt->grad[j] = 0.0f;
        if (t->o.clip_norm > 0)
            otl_optim_clip(t->opt, t->o.clip_norm);
        otl_optim_step(t->opt, lr);
        if (t->zero)
            mask_apply(t);
        for (int p = 0; p < ns; p++)
            memcpy(t->stats[p].data, outs[t->stat_out[p]]->data, t->stats[p].nbytes);
    }
    t->pred = n_out > 0 ? outs[0] : NULL;
    return OTL_OK;
}

const otl_tensor *otl_trainer_prediction(const otl_trainer *t) { return t->pred; }

void otl_trainer_set_runs(otl_trainer *t, uint64_t runs) { otl_session_set_runs(t->s, runs); }

otl_status otl_trainer_write_params(const otl_trainer *t, otl_model *m, otl_error *err)
{
    for (int i = 0; i < t->tg->n_params; i++) {
        otl_tensor *p = otl_graph_find_init(m->graph, t->tg->params[i]);
        if (!p || p->nbytes != t->views[i].nbytes)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: parameter '%s' missing or of another shape",
                                 m->path ? m->path : "(model)", t->tg->params[i]);
        memcpy(p->data, t->views[i].data, p->nbytes);
    }
    for (int i = 0; i < t->tg->n_stats; i++) {
        otl_tensor *p = otl_graph_find_init(m->graph, t->tg->stats[i]);
        if (!p || p->nbytes != t->stats[i].nbytes)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: running statistic '%s' missing or of another shape",
                                 m->path ? m->path : "(model)", t->tg->stats[i]);
        memcpy(p->data, t->stats[i].data, p->nbytes);
    }
    return OTL_OK;
}
