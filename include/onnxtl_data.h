/* onnxtl_data.h - preprocessing, images, data sets, augmentation, metrics.
 *
 * Shared contract between src/preprocess.c, src/image.c, src/dataset.c, src/augment.c and
 * src/metrics.c and their users (train, eval, predict, export --calib). Functions follow
 * onnxtl.h's conventions: otl_status return, errors recorded in otl_error naming the file.
 * Extend freely; do not change the meaning of what is here without updating every user. */
#ifndef ONNXTL_DATA_H
#define ONNXTL_DATA_H

#include "onnxtl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ preprocessing (src/preprocess.c)
 * Stored as JSON in metadata_props["onnx_tl.preprocess"] (../shared/CLI.md):
 * {"size": [H, W], "resize": "stretch"|"shorter-side", "crop": "center"|"none",
 *  "channels": "gray"|"rgb"|"bgr", "scale": 255, "mean": [..], "std": [..], "layout": "NCHW"|"NHWC"}
 * pixel -> (pixel / scale - mean[c]) / std[c]. */

enum { OTL_RESIZE_STRETCH = 0, OTL_RESIZE_SHORTER_SIDE = 1 };
enum { OTL_CROP_NONE = 0, OTL_CROP_CENTER = 1 };
enum { OTL_CHANNELS_GRAY = 1, OTL_CHANNELS_RGB = 3, OTL_CHANNELS_BGR = 4 };

typedef struct otl_preprocess {
    int64_t height, width;
    int resize;            /* OTL_RESIZE_* */
    int crop;              /* OTL_CROP_* */
    int channels;          /* OTL_CHANNELS_*; the channel count is 1 for gray, 3 otherwise */
    float scale;           /* > 0 */
    float mean[3], std[3]; /* first 1 or 3 used; std > 0 */
    int nhwc;              /* 0: NCHW, 1: NHWC */
} otl_preprocess;

/* Number of image channels (1 or 3). */
int otl_preprocess_nchan(const otl_preprocess *pp);
/* Defaults from the model's first non-initializer input (rank 4, NCHW unless the last axis
 * is 1 or 3 and axis 1 is not): size, channel count, layout; ImageNet mean/std for 3 channels,
 * mean 0.5 / std 0.5 for 1 channel (torchvision Normalize((0.5,), (0.5,)) convention), scale 255,
 * resize "shorter-side" + crop "center" at 224x224 and above, "stretch" + "none" below. */
otl_status otl_preprocess_default(const otl_model *m, otl_preprocess *pp, otl_error *err);
/* Parse JSON text; keys absent from it keep their value in *pp (so parse over the defaults).
 * `what` names the source in errors (file name or "metadata of MODEL"). */
otl_status otl_preprocess_parse(const char *json, otl_preprocess *pp, const char *what, otl_error *err);
/* Canonical JSON text (every key), malloc'd. */
char *otl_preprocess_to_json(const otl_preprocess *pp);
/* What train/eval/predict use: defaults, overridden by the model's stored JSON if any. Fails
 * when the stored preprocessing contradicts the model's input shape. */
otl_status otl_preprocess_get(const otl_model *m, otl_preprocess *pp, otl_error *err);
/* Whether pp fits the model's data input: rank-4 float input, pp's channel count on the channel
 * axis of pp's layout, size equal to the fixed H, W (symbolic axes accept anything). `what`
 * names pp's source in errors. */
otl_status otl_preprocess_check(const otl_model *m, const otl_preprocess *pp, const char *what, otl_error *err);

/* ------------------------------------------------------------ images (src/image.c)
 * Decoding: JPEG with libjpeg (the decoder PIL uses: same pixels as PIL), PNG and the other
 * formats stb_image reads with libstb; the format is taken from the file's first bytes, not its
 * name. Channels: gray, gray+alpha, RGB, RGBA, palette in; alpha is dropped (as PIL's
 * convert("RGB")); RGB -> gray with PIL's convert("L") (ITU-R 601-2: (19595 R + 38470 G + 7471 B
 * + 2^15) >> 16); gray -> RGB replicates. Then, as torchvision on PIL images:
 *   resize "stretch", crop "none":         bilinear resize to exactly H x W;
 *   resize "shorter-side", crop "center": Resize(S) + CenterCrop((H, W)) with S = floor(min(H, W)
 *                                          * 256 / 224) (224 -> 256, torchvision's ImageNet eval);
 *                                          for H != W the image is scaled to cover H*256/224 x
 *                                          W*256/224 (same rule, the binding side set exactly);
 *   resize "shorter-side", crop "none":   scaled to cover H x W exactly, then the (minimal)
 *                                          centered crop of the excess;
 *   resize "stretch", crop "center":      stretched to H*256/224 x W*256/224, then CenterCrop.
 * The bilinear resize is PIL's Image.resize(BILINEAR) (antialiased when downscaling, separable,
 * horizontal pass first, 8-bit intermediate, PIL's fixed-point coefficients): pixels equal PIL's.
 * Center crop offsets round((in - out) / 2) half-to-even like torchvision. Normalization:
 * (pixel / scale - mean[c]) / std[c] in float32, written in pp's layout (NCHW/NHWC) and channel
 * order (bgr swaps R and B). Corrupt, truncated, unreadable or unsupported files (CMYK JPEG,
 * zero size) fail with OTL_ERR_INPUT naming the file. Known differences from PIL: 16-bit PNGs
 * keep the high byte of each sample (PIL does so for RGB, but clips 16-bit gray at 255); EXIF
 * orientation is ignored (as PIL and torchvision's ImageFolder do). */

/* Decode, convert, resize/crop and normalize into out (otl_preprocess_nchan(pp) * height * width
 * floats in pp's layout). */
otl_status otl_image_load(const char *path, const otl_preprocess *pp, float *out, otl_error *err);
/* The same up to the normalization: out receives height * width * nchan uint8 pixels, HWC, RGB
 * order (or gray): what the data set caches. `name` names the buffer in errors. */
otl_status otl_image_load_u8(const char *path, const otl_preprocess *pp, uint8_t *out, otl_error *err);
otl_status otl_image_decode_u8(const void *buf, size_t len, const char *name, const otl_preprocess *pp, uint8_t *out,
                               otl_error *err);
/* Raw decode: *pix (malloc'd, free()) receives h * w * c bytes, HWC, c = 1 (gray), 3 (RGB) or as
 * in the file when want_c is 0 (1..4: gray, gray+alpha, RGB, RGBA); want_c 1 or 3 converts. */
otl_status otl_image_decode(const void *buf, size_t len, const char *name, int want_c, uint8_t **pix, int *w, int *h,
                            int *c, otl_error *err);
/* Header only (no pixel decoding): width, height and components of a PNG/JPEG; the checks of
 * otl_image_decode that need no pixels (format, size limits, CMYK). */
otl_status otl_image_probe(const void *buf, size_t len, const char *name, int *w, int *h, int *c, otl_error *err);
/* PIL-exact bilinear resize (Image.resize(BILINEAR), any scale) of HWC uint8, c channels. Returns
 * 0, or -1 when out of memory. */
int otl_image_resize_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh);
/* Normalize HWC pixels (uint8, or float in 0..255) in RGB/gray order into pp's layout/order. */
void otl_image_normalize_u8(const uint8_t *hwc, const otl_preprocess *pp, float *out);
void otl_image_normalize_f32(const float *hwc, const otl_preprocess *pp, float *out);

/* ------------------------------------------------------------ augmentation (src/augment.c)
 * Random transforms applied on the fly to training samples; the draw for a sample depends only
 * on (seed, item index), so a batch is reproducible (train passes a seed derived from its seed
 * and the epoch so that epochs differ). Geometric transforms are composed into one affine map
 * and resampled once, bilinear, centres of pixels aligned; the border is filled with the nearest
 * edge pixel ("edge" / replicate). Order on the image: crop, zoom, rotate, hflip; then jitter.
 *   hflip      horizontal flip with p = 0.5
 *   rotate=D   rotation by a uniform angle in [-D, D] degrees about the centre (D in (0, 180];
 *              "rotate" alone: 15; likewise "zoom" alone: 0.1, "jitter" alone: 0.2)
 *   zoom=Z     scale about the centre, uniform in [1 - Z, 1 + Z] (> 1 magnifies; Z in (0, 0.95])
 *   crop       random resized crop: area 80..100% of the image, aspect ratio log-uniform in
 *              [3/4, 4/3], position uniform, resized back to the full size
 *   jitter=J   brightness factor b and contrast factor k uniform in [1 - J, 1 + J] (J in (0, 1]):
 *              x = x * b, then x = (x - m) * k + m with m the mean over the image (of the gray
 *              value for 3 channels, as torchvision's adjust_contrast); image data is clamped to
 *              0..255 (pixel units, before normalization); .npz data is not clamped.
 * Image folders: applied to the cached target-size image before normalization. .npz: float
 * samples of rank 3, (C, H, W) or (H, W, C) per the preprocessing layout (opts.pp; without one:
 * HWC when the last axis is 1 or 3 and the first is not, CHW otherwise), C = 1 or 3; anything
 * else with an augment request is an OTL_ERR_INPUT error. */

typedef struct otl_augment {
    int enabled;      /* any of the below */
    int hflip;        /* random horizontal flip, p = 0.5 */
    float rotate;     /* max degrees, uniform in [-rotate, rotate] */
    float zoom;       /* scale uniform in [1 - zoom, 1 + zoom] */
    int crop;         /* random-resized-crop style: random crop of 80..100% area, then resize */
    float jitter;     /* brightness/contrast factor uniform in [1 - jitter, 1 + jitter] */
} otl_augment;

/* "hflip,rotate=15,zoom=0.1,crop,jitter=0.2" (empty or "none": disabled). Bad names or values
 * fail with OTL_ERR_USAGE and a message listing the valid names. */
otl_status otl_augment_parse(const char *spec, otl_augment *a, otl_error *err);
/* Canonical text of a (parse round trip), malloc'd; "none" when disabled. */
char *otl_augment_to_string(const otl_augment *a);

/* The random parameters of one sample. */
typedef struct otl_augment_draw {
    int flip;                     /* 0/1 */
    float angle;                  /* degrees; positive turns the content clockwise as displayed */
    float scale;                  /* zoom factor (1: none) */
    int crop;                     /* 0/1 */
    float crop_area, crop_logratio, crop_u, crop_v; /* area fraction, log(w/h), position in [0, 1) */
    float brightness, contrast;   /* 1: none */
} otl_augment_draw;

void otl_augment_sample(const otl_augment *a, uint64_t seed, int64_t item, otl_augment_draw *p);
/* Apply p to img (c channels, h x w, HWC when nhwc else CHW) in place. Values are clamped to
 * [lo, hi] after jitter when lo < hi. Fails only when out of memory. */
otl_status otl_augment_apply(const otl_augment_draw *p, float *img, int c, int h, int w, int nhwc, float lo, float hi,
                             otl_error *err);
/* The same with the caller's scratch memory (c * h * w floats, or NULL to allocate): nothing is
 * allocated then. */
otl_status otl_augment_apply_buf(const otl_augment_draw *p, float *img, int c, int h, int w, int nhwc, float lo,
                                 float hi, float *scratch, otl_error *err);

/* ------------------------------------------------------------ data sets (src/dataset.c)
 * A data set is opened once; reading items afterwards never fails except on I/O or memory
 * errors. Image folders are fully decoded at open (in parallel; opts.lazy defers it to first use):
 * every image is checked, and the decoded, converted, resized uint8 images are cached in memory
 * up to opts.cache_mem bytes (the first items in order), so that epochs do not decode again
 * (images beyond the budget are decoded again per batch). Samples are float32 in the
 * preprocessing's layout (1 or 3, H, W) / (H, W, 1 or 3). Batches: OpenMP over items.
 * .npz: x (N, ...) any numeric dtype, y (N,) int64 (int32/uint8/... integer y accepted and
 * widened), y >= 0; x is kept in memory as stored. */

typedef struct otl_dataset otl_dataset;

#define OTL_DATASET_MAX_RANK 8

typedef struct otl_dataset_opts {
    const otl_preprocess *pp; /* required for image folders; layout hint for .npz augmentation */
    int skip_bad;             /* unreadable images are skipped (listed by otl_dataset_skipped) */
    int64_t cache_mem;        /* bytes of decoded images kept in memory: 0 = 2 GiB, < 0 = none */
    /* .npz validation against the model input (0 / -1: not checked): x's dtype (float64 x is
       converted to float32 and int32 to int64 when those are expected; other mismatches fail),
       rank of one sample, and its dims (-1 = any). */
    int dtype;
    int rank;
    int64_t dims[OTL_DATASET_MAX_RANK];
    int lazy;                 /* image folders: decode on first use instead of at open (open only
                                 reads, hashes and checks the headers; a file corrupt past its
                                 header then fails the batch that first uses it, skip_bad or not) */
    int threads;              /* OpenMP threads for decoding and batches (0: OpenMP's default) */
    int prefetch_threads;     /* OpenMP threads of a background prefetch (0: 1, leaving the cores to
                                 the training step it overlaps with) */
} otl_dataset_opts;

/* opts with every field at its default (pp NULL, dims -1). */
void otl_dataset_opts_init(otl_dataset_opts *o);
/* Defaults plus what train/eval use: pp (may be NULL; kept as a pointer) and the .npz checks
 * (dtype, rank - 1, dims[1..], symbolic axes -1) from the model's first input without an
 * initializer. Fails only when the model has no such input. */
otl_status otl_dataset_opts_for_model(otl_dataset_opts *o, const otl_model *m, const otl_preprocess *pp,
                                      otl_error *err);

/* An ImageFolder directory (DIR/<class>/<image>.png/.jpg/.jpeg, classes = sorted sub-directory names)
 * or a .npz with arrays x (N, ...) and y (N,) int64. Folder rules: class directories are the
 * non-hidden sub-directories (byte order, as Python's sorted()); in each, the non-hidden regular
 * files (symlinks followed) whose name ends in .png/.jpg/.jpeg in any case, sorted; other files
 * and nested directories are ignored. Errors (OTL_ERR_INPUT, naming the path): no class
 * sub-directory, a class without images (named), an unreadable image (named; with skip_bad it
 * is skipped and listed instead, and a class left empty is an error), N = 0. */
otl_status otl_dataset_open(otl_dataset **out, const char *path, const otl_dataset_opts *o, otl_error *err);
void otl_dataset_free(otl_dataset *d);
int64_t otl_dataset_len(const otl_dataset *d);
int otl_dataset_n_classes(const otl_dataset *d);        /* folders: sub-directories; npz: max(y)+1 */
const char *otl_dataset_class_name(const otl_dataset *d, int c); /* npz: "0", "1", ... */
int64_t otl_dataset_label(const otl_dataset *d, int64_t i);
const char *otl_dataset_item_name(const otl_dataset *d, int64_t i); /* file path, or "x[i]" */
int otl_dataset_is_images(const otl_dataset *d);        /* 1: image folder, 0: .npz */
/* Shape and dtype of one sample (without the batch axis); dims holds OTL_DATASET_MAX_RANK. */
void otl_dataset_sample(const otl_dataset *d, int *dtype, int *rank, int64_t *dims);
size_t otl_dataset_sample_bytes(const otl_dataset *d);
/* Content hash of the whole data set, 64 hex digits: SHA-256 over the kind, sample dtype/shape,
 * class names and, per item in order, its label and content hash. For provenance and caches. */
const char *otl_dataset_hash(const otl_dataset *d);
/* Per-item content hash (duplicates detection): 64-bit hash of the file bytes (folders) or of
 * the sample's bytes (.npz). */
uint64_t otl_dataset_item_hash(const otl_dataset *d, int64_t i);
/* Stratified, seeded split: about `frac` of each class to val (round(frac * n_c), at least one
 * when frac > 0 and the class has two items or more, never the whole class); items with equal
 * content hash form one group that lands on one side (the group counts for its first item's
 * class). Every item is in exactly one list; both lists ascending. frac in [0, 1). Index arrays
 * are malloc'd (non-NULL even when empty). */
otl_status otl_dataset_split(const otl_dataset *d, double frac, uint64_t seed, int64_t **train, int64_t *n_train,
                             int64_t **val, int64_t *n_val, otl_error *err);
/* Fill x (n * sample_bytes) and y (n int64) with items idx[0..n); aug may be NULL; the random
 * augmentation of item idx[i] depends only on (seed, idx[i]) so results are reproducible.
 * y may be NULL. An augment request on .npz data that is not a float image fails. */
otl_status otl_dataset_batch(otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug, uint64_t seed,
                             void *x, int64_t *y, otl_error *err);
/* Background preparation of the next batch (issue 7): starts a thread that assembles the batch
 * (idx copied) into an internal buffer and returns at once. The next otl_dataset_batch call
 * with the same idx, n, aug and seed waits for it and copies the result (an error in the thread
 * is reported there); a call with other arguments discards it and works as usual. One prefetch
 * at a time (a new one first waits for the previous); otl_dataset_free waits too. A data set
 * must not be used from two threads at once otherwise. */
otl_status otl_dataset_prefetch(otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug, uint64_t seed,
                                otl_error *err);
/* Items skipped as unreadable with skip_bad (names and reasons, one per line), or "". */
const char *otl_dataset_skipped(const otl_dataset *d);

/* ------------------------------------------------------------ metrics (src/metrics.c)
 * Classification metrics with scikit-learn's definitions (precision_recall_fscore_support,
 * zero_division=0). Classes are indices 0..n_classes-1 (the model's outputs). */

typedef struct otl_metrics {
    int n_classes;
    int64_t total, correct;
    int64_t *confusion;   /* n_classes x n_classes, [true][pred] */
} otl_metrics;

otl_status otl_metrics_init(otl_metrics *mt, int n_classes, otl_error *err);
void otl_metrics_free(otl_metrics *mt);
/* Count one sample; indices outside [0, n_classes) are ignored (our bug, not the input's). */
void otl_metrics_add(otl_metrics *mt, int64_t truth, int64_t pred);
double otl_metrics_accuracy(const otl_metrics *mt);  /* 0 when empty */
/* precision/recall/f1 of class c (0 when undefined, as sklearn zero_division=0); support. */
void otl_metrics_class(const otl_metrics *mt, int c, double *precision, double *recall, double *f1, int64_t *support);
/* Number of samples predicted as class c (column sum of the confusion matrix). */
int64_t otl_metrics_predicted(const otl_metrics *mt, int c);
/* Whether class c occurs among the true or the predicted labels (sklearn's unique_labels). */
int otl_metrics_present(const otl_metrics *mt, int c);
/* Unweighted mean over the present classes, as sklearn's f1_score(y_true, y_pred,
 * average="macro", zero_division=0) without a `labels` argument; 0 when empty. */
double otl_metrics_macro_f1(const otl_metrics *mt);
/* The same for precision and recall (average="macro"), and the support-weighted F1
 * (average="weighted"). */
void otl_metrics_macro(const otl_metrics *mt, double *precision, double *recall, double *f1);
double otl_metrics_weighted_f1(const otl_metrics *mt);

/* How the first output of a classifier relates to class scores (the rule of `grad --loss ce`):
 * logits, or probabilities / log-probabilities when a Softmax / LogSoftmax over the last axis
 * produces it. *logits (may be NULL) receives the tensor holding the logits: the output itself,
 * or the Softmax/LogSoftmax input. */
enum { OTL_SCORES_LOGITS = 0, OTL_SCORES_PROBS = 1, OTL_SCORES_LOGPROBS = 2 };
int otl_scores_kind(const otl_model *m, const char **logits);
/* Probabilities (double, n of them) from one row of scores of the given kind: softmax of
 * logits (max-subtracted), the scores themselves, or exp of log-probabilities. */
void otl_scores_probs(const float *scores, int n, int kind, double *probs);
/* Cross-entropy of one row of logits against class y: logsumexp(z) - z[y], in double. */
double otl_scores_ce(const float *logits, int n, int64_t y);
/* Indices of the k largest values of v[0..n) in decreasing order (ties: lower index first). */
void otl_topk(const double *v, int n, int k, int *idx);

/* Class names stored by swap-head in metadata_props["onnx_tl.labels"] (one per line; a final
 * newline and CR before LF are ignored; the parser of otl_labels_read). *labels (NULL when the
 * model has none: *n = 0) is one malloc'd block of pointers and text: free(*labels) releases it.
 * Fails on an empty name or a name given twice, naming the model file. */
otl_status otl_model_labels(const otl_model *m, char ***labels, int *n, otl_error *err);

/* A classifier's inference session, shared by eval, predict and validation: the model's data
 * input (its first graph input without an initializer), batches of any size (split or padded
 * when the model fixes its batch axis), the first output as scores and, when a Softmax/LogSoftmax
 * over the last axis produces it, that op's input as logits (added as an extra graph output of a
 * private copy of the model). */
typedef struct otl_classifier {
    const otl_model *m;       /* as given (must outlive the classifier) */
    otl_model *run_model;     /* private copy with the logits output, or NULL */
    otl_session *s;
    const char *file;         /* model path for messages */
    const char *input;        /* data input name */
    int dtype;                /* data input dtype */
    int rank;                 /* data input rank (with the batch axis), -1 when unknown */
    int64_t dims[8];          /* declared dims, -1 unknown; dims[0] is the batch axis */
    int64_t fixed_batch;      /* > 0 when dims[0] is a fixed number */
    const char *output;       /* first graph output */
    int kind;                 /* OTL_SCORES_* of the first output */
    const char *logits;       /* tensor holding the logits (== output for OTL_SCORES_LOGITS) */
    int64_t n_classes;        /* from the output's declared shape or the first run; -1 unknown */
    char **labels;            /* stored labels (otl_model_labels) or NULL */
    int n_labels;
} otl_classifier;

otl_status otl_classifier_new(otl_classifier **out, const otl_model *m, int threads, otl_error *err);
void otl_classifier_free(otl_classifier *c);
/* Run n samples x (n * otl_dtype_nbytes(c->dtype, prod(sdims)) bytes, sample dims sdims of rank
 * c->rank - 1, checked against the declared dims). On success *scores and *logits (malloc'd,
 * n * c->n_classes floats each, free()) hold the first output and the logits. Fails when the
 * output is not a float32 (N, C) tensor, C changes between runs, or the stored labels are not C. */
otl_status otl_classifier_run(otl_classifier *c, const void *x, int64_t n, const int64_t *sdims, float **scores,
                              float **logits, otl_error *err);
/* Label of class k: the stored label, or its index in decimal written into buf. */
const char *otl_classifier_label(const otl_classifier *c, int64_t k, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* ONNXTL_DATA_H */
