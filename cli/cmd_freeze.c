/* cmd_freeze.c - `onnx-tl freeze MODEL -o OUT [--all-but-head | --until X | --params GLOB]
 * [--unfreeze GLOB]` and `onnx-tl freeze MODEL --list [--json]` (../shared/CLI.md): frozen marks
 * in metadata_props["onnx_tl.frozen"], honoured by grad/train. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "onnxtl_surgery.h"
#include "src/json.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl freeze MODEL -o OUT [--all-but-head] [--until TENSOR_OR_NODE] [--params GLOB[,GLOB...]]\n"
    "                      [--unfreeze GLOB[,GLOB...]]\n"
    "       onnx-tl freeze MODEL --list [--json] [options above: show the result without writing]\n"
    "\n"
    "Mark parameters frozen (not trained) or trainable; marks add to the ones already stored.\n"
    "  --all-but-head    freeze every parameter except the classifier head's\n"
    "  --until X         freeze every parameter used to compute tensor X (or node X's outputs,\n"
    "                    the node's own parameters included)\n"
    "  --params GLOBS    freeze the parameters whose initializer names match (fnmatch patterns)\n"
    "  --unfreeze GLOBS  make matching parameters trainable, applied last ('*': all)\n"
    "  --list            table of parameters: name, shape, elements, state, block (0 = the head;\n"
    "                    train --unfreeze-every / --layer-lr-decay work block by block)\n";

static const cli_opt opts[] = {
    {"o", 1, 0},      {"output", 1, 0}, {"all-but-head", 0, 0}, {"until", 1, 0}, {"params", 1, 0},
    {"unfreeze", 1, 0}, {"list", 0, 0}, {"json", 0, 0},        {NULL, 0, 0},
};

static void shape_str(const otl_tensor *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static otl_status list_params(const otl_model *m, int as_json, otl_error *err)
{
    otl_param_blocks *b;
    if (otl_param_blocks_get(m, &b, err))
        return err->code;
    const otl_graph *g = m->graph;
    int64_t total = 0, trainable = 0, frozen = 0;
    for (int i = 0; i < b->n_params; i++) {
        const otl_tensor *t = otl_graph_find_init(g, b->params[i]);
        total += t->numel;
        if (otl_model_is_frozen(m, t->name))
            frozen += t->numel;
        else
            trainable += t->numel;
    }
    if (as_json) {
        otl_json j;
        otl_json_init(&j, stdout);
        otl_json_obj(&j);
        otl_json_key(&j, "params");
        otl_json_arr(&j);
        for (int i = 0; i < b->n_params; i++) {
            const otl_tensor *t = otl_graph_find_init(g, b->params[i]);
            otl_json_obj(&j);
            otl_json_key(&j, "name");
            otl_json_str(&j, t->name);
            otl_json_key(&j, "shape");
            otl_json_arr(&j);
            for (int k = 0; k < t->rank; k++)
                otl_json_int(&j, t->dims[k]);
            otl_json_arr_end(&j);
            otl_json_key(&j, "elements");
            otl_json_int(&j, t->numel);
            otl_json_key(&j, "frozen");
            otl_json_bool(&j, otl_model_is_frozen(m, t->name));
            otl_json_key(&j, "block");
            otl_json_int(&j, b->block[i]);
            otl_json_key(&j, "block_name");
            otl_json_str(&j, b->block_names[b->block[i]]);
            otl_json_obj_end(&j);
        }
        otl_json_arr_end(&j);
        otl_json_key(&j, "blocks");
        otl_json_arr(&j);
        for (int i = 0; i < b->n_blocks; i++)
            otl_json_str(&j, b->block_names[i]);
        otl_json_arr_end(&j);
        otl_json_key(&j, "blocks_by_names");
        otl_json_bool(&j, b->by_names);
        otl_json_key(&j, "params_total");
        otl_json_int(&j, total);
        otl_json_key(&j, "params_trainable");
        otl_json_int(&j, trainable);
        otl_json_key(&j, "params_frozen");
        otl_json_int(&j, frozen);
        otl_json_obj_end(&j);
    } else {
        int w = 4;
        for (int i = 0; i < b->n_params; i++)
            if ((int)strlen(b->params[i]) > w)
                w = (int)strlen(b->params[i]);
        if (w > 60)
            w = 60;
        printf("%-*s  %-20s %12s  %-9s  %s\n", w, "name", "shape", "elements", "state", "block");
        for (int i = 0; i < b->n_params; i++) {
            const otl_tensor *t = otl_graph_find_init(g, b->params[i]);
            char sh[128];
            shape_str(t, sh, sizeof sh);
            printf("%-*s  %-20s %12lld  %-9s  %d %s\n", w, t->name, sh, (long long)t->numel,
                   otl_model_is_frozen(m, t->name) ? "frozen" : "trainable", b->block[i], b->block_names[b->block[i]]);
        }
        printf("%d parameters in %d blocks (%s): %lld elements, %lld trainable, %lld frozen\n", b->n_params,
               b->n_blocks, b->by_names ? "by name" : "by node", (long long)total, (long long)trainable,
               (long long)frozen);
    }
    otl_param_blocks_free(b);
    return OTL_OK;
}

int cmd_freeze(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse_model(argc, argv, opts, usage, "freeze", &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const char *model = a.pos[0];
    if (cli_get(&a, "o") && cli_get(&a, "output"))
        return cli_usage_error(usage, "freeze: give -o or --output, not both");
    const char *out = cli_get(&a, "o") ? cli_get(&a, "o") : cli_get(&a, "output");
    otl_freeze_opts fo = {0};
    fo.all_but_head = cli_flag(&a, "all-but-head");
    fo.until = cli_get(&a, "until");
    fo.params = cli_get(&a, "params");
    fo.unfreeze = cli_get(&a, "unfreeze");
    int list = cli_flag(&a, "list"), as_json = cli_flag(&a, "json");
    int any = fo.all_but_head || fo.until || fo.params || fo.unfreeze;
    if (as_json && !list)
        return cli_usage_error(usage, "freeze: --json goes with --list");
    if (!list && !any)
        return cli_usage_error(usage, "freeze: give at least one of --all-but-head, --until, --params, --unfreeze "
                                      "(or --list)");
    if (!list && (!out || !*out))
        return cli_usage_error(usage, "freeze: -o OUT is required");
    if (list && !any && out)
        return cli_usage_error(usage, "freeze: -o with --list needs an option that changes the marks");
    if (out && (!*out || strcmp(out, model) == 0 || otl_same_file(out, model)))
        return cli_usage_error(usage, "freeze: -o must differ from the input model '%s'", model);
    if ((fo.until && !*fo.until) || (fo.params && !*fo.params) || (fo.unfreeze && !*fo.unfreeze))
        return cli_usage_error(usage, "freeze: empty --until/--params/--unfreeze value");

    otl_error err = {0};
    otl_model *m = NULL;
    int status = EXIT_OK;
    if (otl_model_load(&m, model, NULL, &err))
        goto fail;
    if (any && otl_freeze(m, &fo, &err))
        goto fail;
    if (out && otl_model_save(m, out, NULL, &err))
        goto fail;
    if (list && (list_params(m, as_json, &err) || cli_flush_stdout(&err)))
        goto fail;
    goto done;
fail:
    status = cli_fail(&err);
done:
    otl_model_free(m);
    return status;
}
