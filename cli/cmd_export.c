/* cmd_export.c - `onnx-tl export MODEL -o OUT`: write a clean inference model
 * (otl_export_clean, include/onnxtl_export.h); `--keep` re-serializes the model unchanged.
 * Quantization and pruning come with later versions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "onnxtl_export.h"
#include "src/util.h"

static const char usage[] =
    "usage: onnx-tl export MODEL -o OUT [--fold-bn | --no-fold-bn | --keep] [--external-data] [--embed-data]\n"
    "                      [--quantize int8 --calib DATA [--calib-samples N] [--seed S] [--exclude GLOBS]\n"
    "                                       [--calib-method minmax|percentile|entropy] [--conv-min-k K]\n"
    "                                       [--report FILE.json] [-v]]\n"
    "                      [--quantize int8-dynamic [--exclude GLOBS]]\n"
    "                      [--prune SPARSITY] [--prune-channels FRACTION [--channel-multiple M]] [--exclude GLOBS]\n"
    "                      [--threads N]\n"
    "\n"
    "Write a clean inference model that ONNX Runtime and other ONNX consumers load:\n"
    "training-only metadata (onnx_tl.frozen, onnx_tl.head) and Dropout removed,\n"
    "BatchNormalization in inference form (training_mode and running-statistic outputs\n"
    "dropped) and folded into the preceding Conv/Gemm, unused nodes and initializers removed.\n"
    "Graph input/output names, opsets, labels, preprocessing and provenance are kept.\n"
    "  -o, --output OUT    output file (must differ from MODEL); written atomically\n"
    "  --fold-bn           fold BatchNormalization into the preceding Conv/Gemm (default)\n"
    "  --no-fold-bn        keep BatchNormalization nodes (inference form, trained statistics)\n"
    "  --keep              no clean-up: re-serialize MODEL unchanged in meaning\n"
    "  --quantize int8     static INT8 quantization in QDQ form (QuantizeLinear/DequantizeLinear)\n"
    "                      placed as ONNX Runtime's quantizer does (ORT runs QLinearConv, QGemm,\n"
    "                      QLinearAdd, ...): int8 weights, symmetric, per output channel (per tensor\n"
    "                      below opset 13), int32 biases, uint8 activations per tensor calibrated\n"
    "                      on DATA; Relu folded; MaxPool/Reshape/Flatten/... share their input's\n"
    "                      scale and zero point\n"
    "  --quantize int8-dynamic  dynamic INT8 quantization for MatMul/Gemm-heavy models (as ONNX\n"
    "                      Runtime's quantize_dynamic): int8 weights per output column, activations\n"
    "                      quantized at run time (DynamicQuantizeLinear -> MatMulInteger); no --calib\n"
    "  --calib DATA        calibration data: image folder or .npz (as train/eval)\n"
    "  --calib-samples N   calibrate on a random subset of N items of DATA, drawn with --seed S\n"
    "                      (default 0; the same seed gives the same file); default: every item\n"
    "  --calib-method M    minmax (default): the observed range; percentile: 99.999% of a 2048-bin\n"
    "                      histogram (as ONNX Runtime); entropy: the KL-divergence-optimal range\n"
    "  --conv-min-k K      a Conv reading the model input (group 1) whose C_in * kh * kw is below K\n"
    "                      stays float (default 16: ONNX Runtime's QLinearConv is slower than its\n"
    "                      float Conv on a 3x3 Conv of a 1-channel image); 0 quantizes every Conv\n"
    "  --report FILE.json  per quantized tensor: scale, zero point, calibrated range and SQNR (dB;\n"
    "                      the quantized model against the float one over up to 256 samples)\n"
    "  -v, --verbose       the same report as a table on stderr\n"
    "  --exclude GLOBS     comma-separated globs on node names kept in float (or not pruned)\n"
    "  --prune SPARSITY    global unstructured magnitude pruning (0 < SPARSITY < 1): the fraction\n"
    "                      SPARSITY of all Conv/Gemm/MatMul weights with the smallest |w| become 0\n"
    "                      (biases and BatchNormalization untouched); the pruned tensors are listed\n"
    "                      in metadata onnx_tl.pruned so that `train OUT` keeps their zeros at zero\n"
    "  --prune-channels F  remove the fraction F (0 < F < 1) of output channels with the smallest L1\n"
    "                      norm from every Conv whose output reaches only BatchNormalization,\n"
    "                      activations, pooling and the next Conv/Gemm (others are kept whole)\n"
    "                      with BatchNormalization and every consumer rewired\n"
    "  --channel-multiple M  channels kept per pruned Conv rounded to the nearest multiple of M\n"
    "                      (default 8, which vectorized kernels need to profit; 1: exact fraction)\n"
    "  --external-data     store tensors of 1 KiB or more in OUT.data next to OUT\n"
    "  --embed-data        store every tensor inside OUT (fails beyond 2 GiB)\n"
    "  --threads N         compute threads of the calibration runs (default: all cores)\n"
    "By default external data is kept when MODEL had it, and used when OUT would exceed\n"
    "protobuf's 2 GiB limit.\n";

static const cli_opt opts[] = {
    {"o", 1, 0}, {"output", 1, 0}, {"external-data", 0, 0}, {"embed-data", 0, 0},
    {"fold-bn", 0, 0}, {"no-fold-bn", 0, 0}, {"keep", 0, 0},
    {"quantize", 1, 0}, {"calib", 1, 0}, {"calib-samples", 1, 0}, {"exclude", 1, 0},
    {"calib-method", 1, 0}, {"conv-min-k", 1, 0}, {"seed", 1, 0}, {"report", 1, 0}, {"verbose", 0, 0}, {"v", 0, 0},
    {"threads", 1, 0}, {"prune", 1, 0}, {"prune-channels", 1, 0}, {"channel-multiple", 1, 0}, {NULL, 0, 0},
};

int cmd_export(int argc, char **argv)
{
    cli_args a;
    int rc = cli_parse(argc, argv, opts, usage, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (a.n_pos != 1)
        return cli_usage_error(usage, "export: expected one MODEL argument (see --help)");
    const char *out = cli_get(&a, "o") ? cli_get(&a, "o") : cli_get(&a, "output");
    if (!out || !*out)
        return cli_usage_error(usage, "export: -o OUT is required");
    if (strcmp(out, a.pos[0]) == 0 || otl_same_file(out, a.pos[0]))
        return cli_usage_error(usage, "export: -o must differ from the input model");
    if (cli_flag(&a, "external-data") && cli_flag(&a, "embed-data"))
        return cli_usage_error(usage, "export: --external-data and --embed-data exclude each other");
    if (cli_flag(&a, "fold-bn") && cli_flag(&a, "no-fold-bn"))
        return cli_usage_error(usage, "export: --fold-bn and --no-fold-bn exclude each other");
    if (cli_flag(&a, "keep") && (cli_flag(&a, "fold-bn") || cli_flag(&a, "no-fold-bn")))
        return cli_usage_error(usage, "export: --keep excludes --fold-bn and --no-fold-bn");

    const char *quant = cli_get(&a, "quantize"), *calib = cli_get(&a, "calib"), *ns = cli_get(&a, "calib-samples");
    long long samples = 0;
    int dynamic = quant && strcmp(quant, "int8-dynamic") == 0;
    if (quant && !dynamic && strcmp(quant, "int8") != 0)
        return cli_usage_error(usage, "export: --quantize takes int8 or int8-dynamic (got '%s')", quant);
    if (dynamic && (calib || ns))
        return cli_usage_error(usage, "export: --quantize int8-dynamic takes no --calib or --calib-samples");
    if (quant && !dynamic && (!calib || !*calib))
        return cli_usage_error(usage, "export: --quantize int8 needs --calib DATA");
    const char *ps = cli_get(&a, "prune"), *pc = cli_get(&a, "prune-channels");
    double sparsity = 0, channels = 0;
    for (int k = 0; k < 2; k++) {
        const char *v = k ? pc : ps;
        char *end;
        double x = v ? strtod(v, &end) : 0;
        if (v && (!*v || *end || !(x > 0 && x < 1)))
            return cli_usage_error(usage, "export: %s takes a fraction between 0 and 1, exclusive (got '%s')",
                                   k ? "--prune-channels" : "--prune", v);
        *(k ? &channels : &sparsity) = x;
    }
    int pruning = ps || pc;
    const char *cmul = cli_get(&a, "channel-multiple");
    long multiple = 8;
    if (cmul) {
        char *end;
        multiple = strtol(cmul, &end, 10);
        if (!*cmul || *end || multiple < 1 || multiple > 4096)
            return cli_usage_error(usage, "export: --channel-multiple takes an integer from 1 to 4096 (got '%s')",
                                   cmul);
        if (!pc)
            return cli_usage_error(usage, "export: --channel-multiple goes with --prune-channels");
    }
    if (pruning && quant)
        return cli_usage_error(usage, "export: --prune/--prune-channels and --quantize are separate steps: prune, "
                               "fine-tune with train, then export --quantize");
    if (pruning && cli_flag(&a, "keep"))
        return cli_usage_error(usage, "export: --keep excludes --prune and --prune-channels");
    if (!quant && (calib || ns))
        return cli_usage_error(usage, "export: --calib and --calib-samples go with --quantize int8");
    if (cli_get(&a, "exclude") && !*cli_get(&a, "exclude"))
        return cli_usage_error(usage, "export: --exclude needs at least one glob");
    if (!quant && !pruning && cli_get(&a, "exclude"))
        return cli_usage_error(usage, "export: --exclude goes with --quantize int8, --prune or --prune-channels");
    if (quant && cli_flag(&a, "keep"))
        return cli_usage_error(usage, "export: --keep excludes --quantize");
    if (ns) {
        char *end;
        samples = strtoll(ns, &end, 10);
        if (!*ns || *end || samples < 1)
            return cli_usage_error(usage, "export: --calib-samples takes a positive integer (got '%s')", ns);
    }
    const char *cm = cli_get(&a, "calib-method"), *seed_s = cli_get(&a, "seed"), *report = cli_get(&a, "report");
    int verbose = cli_flag(&a, "verbose") || cli_flag(&a, "v"), method = OTL_CALIB_MINMAX;
    unsigned long long seed = 0;
    const char *mink_s = cli_get(&a, "conv-min-k");
    if ((cm || seed_s || report || verbose || mink_s) && (!quant || dynamic))
        return cli_usage_error(usage, "export: --calib-method, --conv-min-k, --seed, --report and --verbose go with "
                               "--quantize int8");
    long min_k = 0;
    if (mink_s) {
        char *end;
        min_k = strtol(mink_s, &end, 10);
        if (!*mink_s || *end || min_k < 0 || min_k > 1000000)
            return cli_usage_error(usage, "export: --conv-min-k takes an integer from 0 to 1000000 (got '%s')", mink_s);
        if (min_k == 0)
            min_k = -1;
    }
    if (cm && strcmp(cm, "minmax") != 0) {
        if (strcmp(cm, "percentile") == 0)
            method = OTL_CALIB_PERCENTILE;
        else if (strcmp(cm, "entropy") == 0)
            method = OTL_CALIB_ENTROPY;
        else
            return cli_usage_error(usage, "export: --calib-method takes minmax, percentile or entropy (got '%s')", cm);
    }
    if (seed_s) {
        char *end;
        errno = 0;
        seed = strtoull(seed_s, &end, 10);
        if (!*seed_s || *end || *seed_s == '-' || errno)
            return cli_usage_error(usage, "export: --seed must be a non-negative integer, got '%s'", seed_s);
    }
    if (report && (!*report || cli_same_path(report, out) || cli_same_path(report, a.pos[0]) ||
                   cli_same_path(report, calib)))
        return cli_usage_error(usage, "export: --report needs a file other than MODEL, OUT and --calib DATA");
    if (cli_same_path(out, calib))
        return cli_usage_error(usage, "export: -o %s would overwrite the --calib DATA", out);
    int threads = 0;
    rc = cli_threads(&a, usage, &threads);
    if (rc)
        return rc;

    otl_error err = {0};
    otl_model *m = NULL;
    if (otl_model_load(&m, a.pos[0], NULL, &err))
        return cli_fail(&err);
    otl_quant_info qi;
    memset(&qi, 0, sizeof qi);
    if (!cli_flag(&a, "keep")) {
        otl_export_opts eo = {.fold_bn = !cli_flag(&a, "no-fold-bn")};
        otl_quant_opts qo = {.calib = calib, .calib_samples = samples, .threads = threads,
                              .exclude = cli_get(&a, "exclude"), .calib_method = method, .seed = seed,
                              .report = report || verbose, .conv_min_k = (int)min_k};
        otl_quant_dynamic_opts qdo = {.exclude = cli_get(&a, "exclude")};
        otl_prune_opts po = {.sparsity = sparsity, .channels = channels, .exclude = cli_get(&a, "exclude"),
                             .fold_bn = eo.fold_bn, .channel_multiple = (int)multiple, .msg = stderr};
        otl_prune_info pi;
        if (pruning)
            eo.fold_bn = 0; /* magnitudes of the weights before BatchNormalization; folded after pruning */
        if (otl_export_clean(m, &eo, NULL, &err) || (quant && !dynamic && otl_export_quantize(m, &qo, &qi, &err)) ||
            (dynamic && otl_export_quantize_dynamic(m, &qdo, NULL, &err)) ||
            (pruning && otl_export_prune(m, &po, &pi, &err))) {
            otl_model_free(m);
            return cli_fail(&err);
        }
        if (pc)
            fprintf(stderr, "export: removed %lld of %lld output channels from %d of %d Conv layers (%d kept whole); "
                    "parameters %lld -> %lld (%.1f%% fewer)\n",
                    (long long)pi.channels_removed, (long long)pi.channels_before, pi.n_convs_pruned, pi.n_convs,
                    pi.n_convs_skipped, (long long)pi.params_before, (long long)pi.params_after,
                    pi.params_before ? 100.0 * (double)(pi.params_before - pi.params_after) / (double)pi.params_before
                                     : 0.0);
        if (ps)
            fprintf(stderr, "export: pruned %d weight tensors (%lld weights, global |w| threshold %.6g): sparsity "
                    "%.2f%% (%lld zeros; listed in onnx_tl.pruned, which train keeps at zero)\n",
                    pi.n_tensors, (long long)pi.n_masked, (double)pi.threshold,
                    pi.n_masked ? 100.0 * (double)pi.n_zero / (double)pi.n_masked : 0.0, (long long)pi.n_zero);
    }
    otl_save_opts so = {0};
    if (cli_flag(&a, "external-data"))
        so.external = OTL_EXTERNAL_ALWAYS;
    if (cli_flag(&a, "embed-data"))
        so.external = OTL_EXTERNAL_NEVER;
    /* the report's temporary file first: a report that cannot be written fails the command before
       OUT exists; OUT saved, then the report committed */
    otl_atomic_file raf;
    int raf_open = 0;
    otl_status st = OTL_OK;
    if (qi.report && report && !(st = otl_atomic_open(&raf, report, &err)))
        raf_open = 1;
    if (!st)
        st = otl_model_save(m, out, &so, &err);
    otl_model_free(m);
    if (!st && qi.report && verbose)
        otl_quant_report_print(qi.report, stderr);
    if (raf_open && !st) {
        otl_quant_report_json(qi.report, raf.fp);
        st = otl_atomic_commit(&raf, &err);
    } else if (raf_open) {
        otl_atomic_abort(&raf);
    }
    otl_quant_report_free(qi.report);
    if (st)
        return cli_fail(&err);
    return EXIT_OK;
}
