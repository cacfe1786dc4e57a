/* nn_session.c - run a model once in a training session (what `onnx-tl train` does per step)
 * and save every output as .npy, so that tests/nn/check_nn.py can check training-mode forward
 * semantics (BatchNormalization batch statistics and running-statistics updates) against
 * PyTorch.
 *
 *   nn_session MODEL OUTDIR [--frozen] NAME=FILE.npy ...
 *
 * --frozen: BatchNormalization keeps its running statistics (bn_frozen). Exit status 0 on
 * success, 1 with the library's message on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nn_session MODEL OUTDIR [--frozen] NAME=FILE.npy ...\n");
        return 2;
    }
    otl_error err = {0};
    otl_model *m = NULL;
    otl_session *s = NULL;
    otl_tensor *in[64] = {0}, **outs = NULL;
    int n_in = 0, n_out = 0, frozen = 0, status = 1;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--frozen") == 0) {
            frozen = 1;
            continue;
        }
        char *eq = strchr(argv[i], '=');
        if (!eq || n_in == 64) {
            fprintf(stderr, "nn_session: bad argument '%s'\n", argv[i]);
            return 2;
        }
        *eq = 0;
        if (otl_npy_load(&in[n_in], eq + 1, &err))
            goto fail;
        free(in[n_in]->name);
        in[n_in]->name = malloc(strlen(argv[i]) + 1);
        strcpy(in[n_in]->name, argv[i]);
        n_in++;
    }
    otl_session_opts so = {.threads = 2, .training = 1, .bn_frozen = frozen};
    if (otl_model_load(&m, argv[1], NULL, &err) || otl_session_new(&s, m, &so, &err) ||
        otl_session_run(s, (const otl_tensor *const *)in, n_in, &outs, &n_out, &err))
        goto fail;
    for (int i = 0; i < n_out; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.npy", argv[2], outs[i]->name);
        if (otl_npy_save(outs[i], path, &err))
            goto fail;
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "nn_session: %s\n", err.msg[0] ? err.msg : "out of memory");
done:
    otl_tensors_free(outs, n_out);
    for (int i = 0; i < n_in; i++)
        otl_tensor_free(in[i]);
    otl_session_free(s);
    otl_model_free(m);
    return status;
}
