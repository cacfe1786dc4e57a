/* synth_batch.h - the seeded synthetic training batch of bench/train_step.c and
 * tests/bf16/bf16_grad.c (header only: both are single-file programs linked to libonnxtl):
 * normal(0, 1) float32 values for the model's first graph input without an initializer (batch
 * axis = batch, other axes as declared) and int64 class ids in [0, classes) for a (N, classes)
 * first output (10 classes when that axis is not fixed). splitmix64 (src/hash.c) + Box-Muller. */
#ifndef OTL_SYNTH_BATCH_H
#define OTL_SYNTH_BATCH_H

#include <math.h>
#include <stdlib.h>

#include "onnxtl.h"
#include "../src/hash.h"

/* Uniform in (0, 1), 53 bits. */
static double synth_uniform(uint64_t *s)
{
    return ((otl_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* *x (named after the data input) and *y ("target"), both new; errors name m's file. */
static otl_status synth_batch(const otl_model *m, int batch, uint64_t seed, otl_tensor **x, otl_tensor **y,
                              otl_error *err)
{
    const char *path = m->path ? m->path : "model";
    const otl_value *in = NULL;
    for (int i = 0; i < m->graph->n_inputs && !in; i++)
        if (!otl_graph_find_init(m->graph, m->graph->inputs[i]->name))
            in = m->graph->inputs[i];
    const otl_value *out = m->graph->n_outputs ? m->graph->outputs[0] : NULL;
    if (!in || !in->has_shape || in->rank < 1 || in->rank > 8 || !out || !out->has_shape || out->rank != 2)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: need one data input of known shape and a (N, classes) output",
                             path);
    int64_t dims[8], classes = out->dims[1].value > 0 ? out->dims[1].value : 10, nbatch = batch;
    for (int d = 0; d < in->rank; d++)
        dims[d] = d == 0 ? batch : in->dims[d].value;
    *x = otl_tensor_new(in->name, OTL_DTYPE_FLOAT, in->rank, dims);
    *y = otl_tensor_new("target", OTL_DTYPE_INT64, 1, &nbatch);
    if (!*x || !*y || !((*x)->data = malloc((size_t)(*x)->numel * 4 + 4)) || !((*y)->data = malloc((size_t)batch * 8)))
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    (*x)->nbytes = (size_t)(*x)->numel * 4;
    (*y)->nbytes = (size_t)batch * 8;
    uint64_t rs = seed * 7919 + 1;
    float *xd = (*x)->data;
    for (int64_t i = 0; i < (*x)->numel; i++) { /* normal(0, 1), Box-Muller */
        double u1 = synth_uniform(&rs), u2 = synth_uniform(&rs);
        xd[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
    }
    for (int i = 0; i < batch; i++)
        ((int64_t *)(*y)->data)[i] = (int64_t)(otl_splitmix64(&rs) % (uint64_t)classes);
    return OTL_OK;
}

#endif
