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

/* Static post-training INT8 quantization in QDQ form, on a model otl_export_clean has cleaned.
 * For every Conv, Gemm and MatMul (standard domain): each activation input gets a
 * QuantizeLinear -> DequantizeLinear pair (uint8, per tensor, asymmetric: scale and zero point
 * from the min/max over the calibration data, range widened to include 0), shared by all readers
 * of the tensor; each float initializer weight (Conv W, Gemm B, MatMul's second input of rank 2)
 * is stored as int8 with symmetric scales (zero point 0, range -127..127) per output channel
 * (Conv axis 0, Gemm axis 0 with transB else 1, MatMul axis 1) and read through a
 * DequantizeLinear. Per-channel needs opset 13; at opsets 10-12 weights are quantized per tensor.
 * Biases stay float. Calibration runs the model (inference session) over the first
 * calib_samples items of calib (an image folder or .npz: otl_dataset_*). */
typedef struct otl_quant_opts {
    const char *calib;      /* calibration data set */
    int64_t calib_samples;  /* 0: every item */
    int batch;              /* 0: 16 */
    int threads;            /* 0: all cores */
    const char *exclude;    /* comma-separated fnmatch globs on node names kept in float (each must
                               match a Conv/Gemm/MatMul node); NULL: none */
} otl_quant_opts;

typedef struct otl_quant_info {
    int n_nodes;            /* Conv/Gemm/MatMul nodes quantized */
    int n_activations;      /* tensors given a QuantizeLinear/DequantizeLinear pair */
    int n_weights;          /* weights stored as int8 */
    int per_channel;        /* 1: weights per output channel; 0: per tensor (opset < 13) */
    int64_t samples;        /* calibration samples used */
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
    int64_t params_before, params_after; /* float initializer elements before and after (folding included) */
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
