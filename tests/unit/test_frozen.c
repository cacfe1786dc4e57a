/* test_frozen.c - frozen means free: with every parameter but the classifier head frozen, the
 * training graph of a CNN adds no gradient or saved-activation buffers for the backbone: its
 * activation arena and its kernel count stay close to a forward pass in training mode.
 *   test_frozen MODEL INPUT.npy INPUT_NAME [inference]
 * With `inference`, also against the inference plan (what `onnx-tl run` executes: fused
 * convolutions): the frozen backbone must then run as the same fused kernels, with the same
 * buffers (for models whose BatchNormalization, if any, is folded already, e.g. the zoo's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "inference") == 0)) {
        fprintf(stderr, "usage: test_frozen MODEL INPUT.npy INPUT_NAME [inference]\n");
        return 2;
    }
    int vs_inference = argc == 5;
    otl_error err = {0};
    otl_model *m = NULL;
    otl_tensor *x = NULL, *y = NULL, **outs = NULL;
    otl_session *fwd = NULL, *trn = NULL, *inf = NULL;
    otl_train_graph *tg = NULL;
    int n_out = 0, status = 1;
    if (otl_model_load(&m, argv[1], NULL, &err) || otl_npy_load(&x, argv[2], &err))
        goto fail;
    free(x->name);
    x->name = strdup(argv[3]);
    otl_head head;
    otl_find_head(m->graph, &head);
    if (!head.found) {
        fprintf(stderr, "test_frozen: %s: no classifier head\n", argv[1]);
        goto done;
    }
    /* freeze everything but the head's own parameters */
    const otl_node *hn = m->graph->nodes[head.node];
    size_t cap = 1;
    for (int i = 0; i < m->graph->n_inits; i++)
        cap += strlen(m->graph->inits[i]->name) + 1;
    char *list = calloc(cap, 1);
    for (int i = 0; i < m->graph->n_inits; i++) {
        const char *nm = m->graph->inits[i]->name;
        int in_head = 0;
        for (int k = 0; k < hn->n_inputs; k++)
            in_head |= strcmp(hn->inputs[k], nm) == 0;
        if (!in_head) {
            strcat(list, nm);
            strcat(list, "\n");
        }
    }
    otl_model_meta_set(m, "onnx_tl.frozen", list, &err);
    free(list);
    otl_grad_spec spec = {.loss = OTL_LOSS_CE};
    if (otl_train_graph_build(&tg, m, &spec, &err))
        goto fail;
    printf("trainable parameters: %d (the head's)\n", tg->n_params);
    /* forward pass in training mode */
    otl_session_opts so = {.threads = 1, .training = 1};
    otl_session_stats fs, ts, is = {0};
    if (vs_inference) {
        otl_session_opts io = {.threads = 1};
        if (otl_session_new(&inf, m, &io, &err) ||
            otl_session_run(inf, (const otl_tensor *const *)&x, 1, &outs, &n_out, &err) ||
            otl_session_stats_get(inf, &is, &err))
            goto fail;
        otl_tensors_free(outs, n_out);
        outs = NULL;
    }
    if (otl_session_new(&fwd, m, &so, &err) ||
        otl_session_run(fwd, (const otl_tensor *const *)&x, 1, &outs, &n_out, &err) ||
        otl_session_stats_get(fwd, &fs, &err))
        goto fail;
    otl_tensors_free(outs, n_out);
    outs = NULL;
    int64_t n = x->dims[0];
    y = otl_tensor_new(tg->target, OTL_DTYPE_INT64, 1, &n);
    y->nbytes = (size_t)n * 8;
    y->data = calloc((size_t)n, 8);
    const otl_tensor *in[2] = {x, y};
    if (otl_session_new(&trn, tg->m, &so, &err) || otl_session_run(trn, in, 2, &outs, &n_out, &err) ||
        otl_session_stats_get(trn, &ts, &err))
        goto fail;
    printf("forward:  arena %zu bytes, %d kernels\n", fs.arena_bytes, fs.n_steps);
    printf("training: arena %zu bytes, %d kernels\n", ts.arena_bytes, ts.n_steps);
    if (vs_inference)
        printf("inference: arena %zu bytes, %d kernels\n", is.arena_bytes, is.n_steps);
    /* the head's backward: a few kernels and buffers of the head's size */
    size_t head_bytes = 0;
    for (int i = 0; i < tg->n_params; i++)
        head_bytes += otl_graph_find_init(tg->m->graph, tg->params[i])->nbytes;
    int ok_mem = ts.arena_bytes <= fs.arena_bytes + 4 * head_bytes + (1 << 16);
    int ok_steps = ts.n_steps <= fs.n_steps + 12;
    if (!ok_mem)
        fprintf(stderr, "test_frozen: the training arena exceeds the forward arena by more than the head's gradients\n");
    if (!ok_steps)
        fprintf(stderr, "test_frozen: the training graph runs more than a few kernels beyond the forward pass\n");
    if (vs_inference) {
        int ok_imem = ts.arena_bytes <= is.arena_bytes + 4 * head_bytes + (1 << 16);
        int ok_isteps = ts.n_steps <= is.n_steps + 12;
        if (!ok_imem)
            fprintf(stderr, "test_frozen: the training arena exceeds the inference arena by more than the head's gradients\n");
        if (!ok_isteps)
            fprintf(stderr, "test_frozen: the frozen backbone does not run as the inference kernels (%d vs %d)\n",
                    ts.n_steps, is.n_steps);
        ok_mem &= ok_imem;
        ok_steps &= ok_isteps;
    }
    status = ok_mem && ok_steps ? 0 : 1;
    goto done;
fail:
    fprintf(stderr, "test_frozen: %s\n", err.msg);
done:
    otl_tensors_free(outs, n_out);
    otl_session_free(inf);
    otl_session_free(fwd);
    otl_session_free(trn);
    otl_train_graph_free(tg);
    otl_tensor_free(x);
    otl_tensor_free(y);
    otl_model_free(m);
    return status;
}
