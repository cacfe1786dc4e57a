/* onnxtl_export.h - clean inference export (`onnx-tl export`). Implemented in graph/export.c
 * (clean-up) and graph/quantize.c (static INT8 quantization).
 *
 * otl_export_clean rewrites a model in place for deployment:
 *   - metadata_props onnx_tl.frozen and onnx_tl.head (training-only) removed; onnx_tl.labels,
 *     onnx_tl.preprocess, onnx_tl.provenance and every other key kept;
 *   - Dropout removed (its consumers read its input; a Dropout whose output is a graph output
 *     or is read inside a subgraph becomes an Identity, so output names never change);
 *   - BatchNormalization: training_mode dropped and the optional running-statistic outputs
 *     removed (an error when something reads them); with fold_bn, a BN that is the only reader
 *     of a Conv's or Gemm's output (and whose parameters are float initializers) is folded into
 *     that node's weight and bias;
 *   - nodes no graph output needs and initializers nothing reads removed (with their IR < 4
 *     graph-input entries), and value_info of names that no longer exist.
 * Graph input/output names, opsets and the rest of the model are kept. On failure the model
 * may be partly modified: work on a clone. */
#ifndef ONNXTL_EXPORT_H
#define ONNXTL_EXPORT_H

#include <stdio.h>

#include "onnxtl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otl_export_opts {
    int fold_bn;            /* fold BatchNormalization into the preceding Conv/Gemm */
} otl_export_opts;

typedef struct otl_export_info {
    int n_meta_removed;     /* metadata keys removed */
    int n_dropout_removed;  /* Dropout nodes removed or turned into Identity */
    int n_bn_folded;        /* BatchNormalization nodes folded away */
    int n_bn_kept;          /* BatchNormalization nodes left as inference BN */
    int n_nodes_removed;    /* dead nodes removed */
    int n_inits_removed;    /* unused initializers removed */
} otl_export_info;

otl_status otl_export_clean(otl_model *m, const otl_export_opts *o, otl_export_info *info, otl_error *err);

/* Static post-training INT8 quantization in QDQ form (graph/quantize.c), on a model
 * otl_export_clean has cleaned, placed the way ONNX Runtime's quantizer (QDQ format) places it so
 * that ORT's QDQ selectors fuse the groups into integer kernels (QLinearConv, QGemm,
 * QLinearMatMul/MatMulIntegerToFloat, QLinearAdd, QLinearConcat, QLinearGlobalAveragePool, ...):
 *   - Conv, Gemm, MatMul (standard domain, not excluded): every float activation input and the
 *     output get a QuantizeLinear -> DequantizeLinear pair (uint8, per tensor, asymmetric, range
 *     widened to include 0), except the output of a Gemm/MatMul that is a graph output (ORT fuses
 *     it with a float output); the weight (Conv W, Gemm B, MatMul's rank-2 second input) is int8,
 *     symmetric (zero point 0, -127..127), per output channel (Conv axis 0, Gemm axis 0 with transB
 *     else 1, MatMul axis 1; per tensor below opset 13); a 1-D float bias becomes int32 with scale
 *     x_scale * w_scale and zero point 0 (Gemm: only with beta 1, written explicitly);
 *   - a Relu (or a Clip whose range the quantized range lies in) that is the only reader of such an
 *     output is folded away: the output's range is the activation's (zero point 0 for Relu);
 *   - Add, Concat, GlobalAveragePool, AveragePool with float activation inputs: inputs and output
 *     quantized (own calibrated output range);
 *   - MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze whose data input is quantized and
 *     whose output reaches a quantized node: the output gets a pair with the input's scale and zero
 *     point (ORT drops both pairs); an excluded node thus reads float data unless its input is the
 *     output of a quantized node;
 *   - a quantized tensor shared by several readers has one pair that every reader reads; a
 *     quantized graph output keeps its name (it becomes the DequantizeLinear output).
 * Calibration runs the float model (inference session exposing the tensors) over calib (image
 * folder or .npz), or over a seeded random subset of calib_samples items, and derives each range
 * by calib_method: MINMAX (min/max), PERCENTILE (ORT's: a 2048-bin histogram over [-t, t] grown by
 * doubling, (100 - percentile) / 2 % cut on each side, clipped to min/max), ENTROPY (the
 * symmetric threshold minimizing the KL divergence between the histogram and its 128-level
 * quantization, as ORT/TensorRT, clipped to min/max). */
enum { OTL_CALIB_MINMAX = 0, OTL_CALIB_PERCENTILE = 1, OTL_CALIB_ENTROPY = 2 };

typedef struct otl_quant_opts {
    const char *calib;      /* calibration data set */
    int64_t calib_samples;  /* 0: every item (in order); else a seeded random subset of that many */
    uint64_t seed;          /* subset draw */
    int calib_method;       /* OTL_CALIB_* */
    double percentile;      /* PERCENTILE: 0 means 99.999 */
    int batch;              /* 0: 16 */
    int threads;            /* 0: all cores */
    const char *exclude;    /* comma-separated fnmatch globs on node names kept in float (spaces
                               around a glob ignored; each must match a node the pass quantizes:
                               Conv/Gemm/MatMul/Add/Concat/GlobalAveragePool/AveragePool); NULL: none */
    int report;             /* fill info->report: per tensor scale, zero point and SQNR (one more
                               pass over at most 256 calibration samples) */
    int conv_min_k;         /* a Conv reading a graph input, of group 1, whose reduction size
                               C_in * kh * kw is below this stays float (ONNX Runtime's QLinearConv
                               is slower than its float Conv there); 0: OTL_QUANT_CONV_MIN_K;
                               negative: every Conv is quantized */
} otl_quant_opts;

#define OTL_QUANT_CONV_MIN_K 16

enum { OTL_QT_ACTIVATION = 0, OTL_QT_WEIGHT = 1, OTL_QT_BIAS = 2 };

typedef struct otl_quant_tensor {
    char *name;             /* float tensor (activation) or initializer (weight, bias) */
    int kind;               /* OTL_QT_* */
    char *node;             /* activation: producing node ("" for a graph input); else the reader */
    char *shared_with;      /* activation reusing that tensor's scale/zero point, else NULL */
    int64_t n_scales;       /* 1: per tensor; else per channel */
    float *scale;           /* (n_scales) */
    int64_t zero_point;     /* activations: uint8 zero point; weights and biases: 0 */
    double lo, hi;          /* activations: calibrated range (before widening to include 0) */
    double sqnr_db;         /* 10 log10(sum x^2 / sum (x - x~)^2); INFINITY when exact, NAN unmeasured */
    double rel_err;         /* sqrt(sum (x - x~)^2 / sum x^2) */
} otl_quant_tensor;

typedef struct otl_quant_report {
    char *model, *calib;
    int calib_method;
    double percentile;
    int64_t calib_samples;  /* used */
    uint64_t seed;
    int subset;             /* 1: seeded random subset; 0: every item */
    int per_channel;
    int sqnr_model;         /* 1: activations of the quantized model run by onnx-tl against the float
                               model's; 0: the float model's values quantized alone (onnx-tl could
                               not run the QDQ model) */
    int64_t sqnr_samples;
    int n;
    otl_quant_tensor *t;    /* (n): activations, then weights and biases */
    int n_float;
    char **float_node;      /* (n_float) Conv/Gemm/MatMul nodes kept in float, and why: */
    const char **float_why; /* "exclude" (named by --exclude) or "conv_min_k" (a small first Conv) */
} otl_quant_report;

void otl_quant_report_free(otl_quant_report *r);
/* The report as one JSON object: to a file (written atomically) or to an open stream; and as a
 * short table. */
otl_status otl_quant_report_write_json(const otl_quant_report *r, const char *path, otl_error *err);
void otl_quant_report_json(const otl_quant_report *r, FILE *fp);
void otl_quant_report_print(const otl_quant_report *r, FILE *fp);

typedef struct otl_quant_info {
    int n_nodes;            /* nodes quantized (Conv/Gemm/MatMul and the other kinds above) */
    int n_activations;      /* tensors given a QuantizeLinear/DequantizeLinear pair */
    int n_weights;          /* weights stored as int8 */
    int n_biases;           /* biases stored as int32 */
    int n_folded;           /* Relu/Clip nodes folded into the preceding node's output range */
    int per_channel;        /* 1: weights per output channel; 0: per tensor (opset < 13) */
    int64_t samples;        /* calibration samples used */
    otl_quant_report *report; /* with opts.report: owned by the caller (otl_quant_report_free) */
} otl_quant_info;

otl_status otl_export_quantize(otl_model *m, const otl_quant_opts *q, otl_quant_info *info, otl_error *err);

/* Pruning (graph/prune.c), on a model otl_export_clean has cleaned with fold_bn 0 (so that
 * magnitudes are those of the Conv weights before BatchNormalization, as in PyTorch); ends with
 * otl_export_clean(fold_bn) itself.
 *   channels > 0: per Conv layer (group 1, not excluded), round(channels * C) of its C output
 *     channels with the smallest L1 norm of the weight (at least one kept) are removed, with the
 *     matching entries of its bias, of the BatchNormalization that follows, of depthwise Convs
 *     (group reduced) and the input channels of the next Conv or the input rows of a Gemm/MatMul
 *     after Flatten. Channels pass through element-wise ops with f(0) = 0 (Relu, Clip, ...) and
 *     pooling. A Conv whose output reaches anything else (Add, Concat, Mul, a graph output, ...)
 *     keeps its channels (reported on msg). The result equals the input with those channels'
 *     weights, bias and BatchNormalization scale/shift set to zero.
 *   sparsity > 0 (after channel pruning): global unstructured magnitude pruning as
 *     torch.nn.utils.prune.global_unstructured(L1Unstructured): the round(sparsity * N) weights of
 *     smallest |w| over every Conv/Gemm/MatMul weight initializer (N elements; biases,
 *     BatchNormalization and weights of excluded nodes untouched; ties in node order) become 0.
 *     The pruned tensors are listed in metadata onnx_tl.pruned (one name per line): `train` keeps
 *     their zeros at zero (otl_prune_masks_get, otl_trainer_set_mask); otl_export_clean drops
 *     the key (the zeros stay). */
typedef struct otl_prune_opts {
    double sparsity;        /* [0, 1): fraction of weights set to zero (0: none) */
    double channels;        /* [0, 1): fraction of output channels removed per Conv (0: none) */
    const char *exclude;    /* comma-separated globs on node names left alone (each must match a
                               Conv/Gemm/MatMul node); NULL: none */
    int fold_bn;            /* the final otl_export_clean folds BatchNormalization */
    int channel_multiple;   /* > 1: channels kept per pruned Conv rounded to the nearest multiple of it (at
                               least one multiple; layers of fewer than twice as many channels: exact) */
    FILE *msg;              /* per-layer notes (Convs kept whole and why); NULL: none */
} otl_prune_opts;

typedef struct otl_prune_info {
    int n_tensors;          /* weight tensors pruned (unstructured) */
    int64_t n_weights;      /* their elements */
    float threshold;        /* |w| below it went (ties at it in node order) */
    int64_t n_masked, n_zero; /* elements of the tensors in onnx_tl.pruned (after folding) and zeros */
    int n_convs;            /* Conv layers considered for channel pruning */
    int n_convs_pruned;     /* of those, layers that lost channels */
    int n_convs_skipped;    /* layers kept whole */
    int64_t channels_before, channels_removed; /* output channels of the pruned layers */
    int64_t params_before, params_after; /* float initializer elements before and after (BN not yet folded) */
} otl_prune_info;

otl_status otl_export_prune(otl_model *m, const otl_prune_opts *o, otl_prune_info *info, otl_error *err);

/* The zero masks of a pruned model: for every initializer listed in onnx_tl.pruned, where it is
 * exactly 0. *out is NULL when the model has no such key. Free with otl_prune_masks_free. */
typedef struct otl_prune_masks {
    int n;
    char **names;           /* (n) */
    int64_t *numel;         /* (n) */
    uint8_t **zero;         /* (n) numel[i] flags: 1 where the weight stays 0 */
} otl_prune_masks;

otl_status otl_prune_masks_get(const otl_model *m, otl_prune_masks **out, otl_error *err);
void otl_prune_masks_free(otl_prune_masks *pm);

/* Dynamic INT8 quantization (`export --quantize int8-dynamic`, graph/quantize_dynamic.c), as ONNX
 * Runtime's quantize_dynamic, for MatMul/Gemm-heavy (transformer) models; no calibration data.
 * Every MatMul(X, W) and Gemm(X, W[, C]) (transA 0) whose W is a float (K, N) initializer ((N, K)
 * with transB) and C absent or a float initializer becomes DynamicQuantizeLinear(X) (one per
 * activation, shared by its readers) -> MatMulInteger(X uint8, W int8, X's zero point) -> Cast ->
 * Mul by X's scale times W's scales (symmetric, zero point 0, range -127..127, per output column
 * or per tensor; Gemm's alpha folded in) -> Add C (times beta) for a Gemm, under the node's
 * output name. Other nodes (Conv included) stay float. Needs opset 11. On a model cleaned by
 * otl_export_clean; on failure the model may be partly modified: work on a clone. */
typedef struct otl_quant_dynamic_opts {
    int per_tensor;         /* one scale per weight instead of one per output column */
    const char *exclude;    /* comma-separated fnmatch globs on node names kept in float (each must
                               match a node the pass would quantize); NULL: none */
} otl_quant_dynamic_opts;

typedef struct otl_quant_dynamic_info {
    int n_nodes;            /* MatMul/Gemm nodes quantized */
    int n_activations;      /* DynamicQuantizeLinear nodes added */
    int n_weights;          /* int8 weights written (a weight shared by two nodes counts twice) */
    int per_channel;
} otl_quant_dynamic_info;

otl_status otl_export_quantize_dynamic(otl_model *m, const otl_quant_dynamic_opts *o, otl_quant_dynamic_info *info,
                                       otl_error *err);

#ifdef __cplusplus
}
#endif
#endif
