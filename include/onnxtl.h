/* onnxtl.h - public API of libonnxtl: transfer learning on ONNX models, in C.
 *
 * The library reads an ONNX model into an in-memory IR that is independent of protobuf
 * (otl_model / otl_graph / otl_node / otl_tensor / otl_value), lets callers inspect and edit
 * it, and writes it back without losing anything it does not understand.
 *
 * Errors: every fallible call takes an `otl_error *` and returns an otl_status. The first
 * error sticks: later failures do not overwrite the message. Messages name the file, and where
 * it applies the node (name and op type) and the tensor. The library never exits or aborts on
 * bad input.
 *
 * Ownership: every object returned by a *_load / *_new call is owned by the caller and released
 * with the matching *_free; *_free(NULL) is a no-op. Strings inside the IR are heap copies owned
 * by the enclosing object.
 */
#ifndef ONNXTL_H
#define ONNXTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTL_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

typedef enum otl_status {
    OTL_OK = 0,
    OTL_ERR_INPUT = 1,       /* bad model, data or file: CLI exit status 1 */
    OTL_ERR_USAGE = 2,       /* bad arguments: CLI exit status 2 */
    OTL_ERR_IO = 3,          /* read/write failure (reported as exit 1) */
    OTL_ERR_NOMEM = 4,       /* allocation failed (reported as exit 1) */
    OTL_ERR_UNSUPPORTED = 5, /* valid ONNX we cannot handle (reported as exit 1) */
    OTL_ERR_INTERNAL = 6     /* our own bug */
} otl_status;

typedef struct otl_error {
    otl_status code;
    char msg[2048];
} otl_error;

/* Record an error unless one is already recorded; returns the (first) code. */
otl_status otl_error_set(otl_error *err, otl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void otl_error_clear(otl_error *err);

/* -------------------------------------------------------------- data types */

/* Same numbering as onnx.TensorProto.DataType. */
typedef enum otl_dtype {
    OTL_DTYPE_UNDEFINED = 0,
    OTL_DTYPE_FLOAT = 1,
    OTL_DTYPE_UINT8 = 2,
    OTL_DTYPE_INT8 = 3,
    OTL_DTYPE_UINT16 = 4,
    OTL_DTYPE_INT16 = 5,
    OTL_DTYPE_INT32 = 6,
    OTL_DTYPE_INT64 = 7,
    OTL_DTYPE_STRING = 8,
    OTL_DTYPE_BOOL = 9,
    OTL_DTYPE_FLOAT16 = 10,
    OTL_DTYPE_DOUBLE = 11,
    OTL_DTYPE_UINT32 = 12,
    OTL_DTYPE_UINT64 = 13,
    OTL_DTYPE_COMPLEX64 = 14,
    OTL_DTYPE_COMPLEX128 = 15,
    OTL_DTYPE_BFLOAT16 = 16,
    OTL_DTYPE_FLOAT8E4M3FN = 17,
    OTL_DTYPE_FLOAT8E4M3FNUZ = 18,
    OTL_DTYPE_FLOAT8E5M2 = 19,
    OTL_DTYPE_FLOAT8E5M2FNUZ = 20,
    OTL_DTYPE_UINT4 = 21,
    OTL_DTYPE_INT4 = 22,
    OTL_DTYPE_COUNT_
} otl_dtype;

const char *otl_dtype_name(int dtype);      /* "float32", "int64", ...; "?" if unknown */
int otl_dtype_is_float(int dtype);          /* float16/32/64, bfloat16, float8 */
/* Bytes per element times 2 (int4 types take half a byte); 0 for string/unknown. */
int otl_dtype_size2(int dtype);
/* Bytes needed for n elements of dtype, or -1 on overflow/unknown dtype. */
int64_t otl_dtype_nbytes(int dtype, int64_t n);

/* ---------------------------------------------------------------- the IR */

typedef struct otl_blob { /* opaque bytes: serialized protobuf we keep but do not model */
    uint8_t *data;
    size_t len;
} otl_blob;

/* Fields our schema does not know (from newer ONNX versions), kept verbatim for round trips. */
typedef struct otl_unknown_field {
    uint32_t tag;
    uint8_t wire_type;
    size_t len;
    uint8_t *data;
} otl_unknown_field;

typedef struct otl_unknown {
    size_t n;
    otl_unknown_field *f;
} otl_unknown;

typedef struct otl_kv {
    char *key;
    char *value;
} otl_kv;

typedef struct otl_opset {
    char *domain; /* "" for ai.onnx */
    int64_t version;
} otl_opset;

typedef struct otl_dim {
    int64_t value; /* >= 0, or -1 when not known as a number */
    char *param;   /* symbolic name (dim_param) or NULL */
    char *denotation;
} otl_dim;

/* A named value's declared type (graph input/output, value_info). */
typedef struct otl_value {
    char *name;
    char *doc;
    int has_type;
    int is_tensor;     /* tensor_type; otherwise `type_blob` holds the TypeProto */
    int dtype;         /* otl_dtype, for tensors */
    int has_shape;
    int rank;
    otl_dim *dims;     /* (rank) */
    char *denotation;  /* TypeProto.denotation */
    otl_blob type_blob;
    otl_unknown unknown;
} otl_value;

typedef struct otl_tensor {
    char *name;
    char *doc;
    int dtype;
    int rank;
    int64_t *dims;     /* (rank) */
    int64_t numel;     /* product of dims */
    void *data;        /* little-endian element data, nbytes long (numeric dtypes) */
    size_t nbytes;
    otl_blob *strs;    /* (numel) for OTL_DTYPE_STRING */
    /* where the data came from: non-NULL when it was stored in an external file */
    char *ext_location;
    int n_ext_extra;   /* external_data entries other than location/offset/length */
    otl_kv *ext_extra;
    int has_segment;
    int64_t seg_begin, seg_end;
    otl_unknown unknown;
} otl_tensor;

typedef struct otl_graph otl_graph;

typedef enum otl_attr_type { /* same numbering as onnx.AttributeProto.AttributeType */
    OTL_ATTR_UNDEFINED = 0,
    OTL_ATTR_FLOAT = 1,
    OTL_ATTR_INT = 2,
    OTL_ATTR_STRING = 3,
    OTL_ATTR_TENSOR = 4,
    OTL_ATTR_GRAPH = 5,
    OTL_ATTR_FLOATS = 6,
    OTL_ATTR_INTS = 7,
    OTL_ATTR_STRINGS = 8,
    OTL_ATTR_TENSORS = 9,
    OTL_ATTR_GRAPHS = 10,
    OTL_ATTR_SPARSE_TENSOR = 11,
    OTL_ATTR_SPARSE_TENSORS = 12,
    OTL_ATTR_TYPE_PROTO = 13,
    OTL_ATTR_TYPE_PROTOS = 14
} otl_attr_type;

typedef struct otl_attr {
    char *name;
    char *doc;
    char *ref_attr_name;
    int type;                 /* otl_attr_type */
    float f;
    int64_t i;
    otl_blob s;
    otl_tensor *t;
    otl_graph *g;
    size_t n_floats;
    float *floats;
    size_t n_ints;
    int64_t *ints;
    size_t n_strings;
    otl_blob *strings;
    size_t n_tensors;
    otl_tensor **tensors;
    size_t n_graphs;
    otl_graph **graphs;
    /* kept opaque: sparse tensors and type protos */
    otl_blob sparse_tensor, tp;
    size_t n_sparse_tensors;
    otl_blob *sparse_tensors;
    size_t n_type_protos;
    otl_blob *type_protos;
    otl_unknown unknown;
} otl_attr;

typedef struct otl_node {
    char *name;
    char *op_type;
    char *domain;             /* "" for ai.onnx */
    char *doc;
    int n_inputs;
    char **inputs;            /* "" marks an omitted optional input */
    int n_outputs;
    char **outputs;
    int n_attrs;
    otl_attr *attrs;
    otl_unknown unknown;
} otl_node;

struct otl_graph {
    char *name;
    char *doc;
    int n_nodes;
    otl_node **nodes;
    int n_inits;
    otl_tensor **inits;
    int n_inputs;
    otl_value **inputs;
    int n_outputs;
    otl_value **outputs;
    int n_value_info;
    otl_value **value_info;
    size_t n_sparse_inits;
    otl_blob *sparse_inits;   /* SparseTensorProto, opaque */
    size_t n_quant_annot;
    otl_blob *quant_annot;    /* TensorAnnotation, opaque */
    otl_unknown unknown;
};

typedef struct otl_model {
    int64_t ir_version;
    int n_opsets;
    otl_opset *opsets;
    char *producer_name;
    char *producer_version;
    char *domain;
    int64_t model_version;
    int has_model_version;
    char *doc;
    otl_graph *graph;
    int n_meta;
    otl_kv *meta;             /* metadata_props */
    size_t n_training_info;
    otl_blob *training_info;  /* TrainingInfoProto, opaque */
    size_t n_functions;
    otl_blob *functions;      /* FunctionProto, opaque */
    otl_unknown unknown;
    /* where it was loaded from (NULL for models built in memory) */
    char *path;
    int had_external_data;
} otl_model;

/* ------------------------------------------------------------ load / save */

typedef struct otl_load_opts {
    int skip_validate;      /* do not run otl_model_validate after parsing */
} otl_load_opts;

/* Load `path`. External data is resolved relative to the model's directory; absolute paths,
 * `..` components and symbolic links leading outside that directory are refused. The model is
 * validated (otl_model_validate) unless opts->skip_validate. opts may be NULL. */
otl_status otl_model_load(otl_model **out, const char *path, const otl_load_opts *opts,
                          otl_error *err);
/* Load from memory. `name` is used in messages; `dir` (may be NULL: external data refused) is
 * the directory external data is resolved against. */
otl_status otl_model_load_buffer(otl_model **out, const void *buf, size_t len, const char *name,
                                 const char *dir, const otl_load_opts *opts, otl_error *err);
void otl_model_free(otl_model *m);

typedef enum otl_external_mode {
    OTL_EXTERNAL_AUTO = 0,  /* external when the source had external data or the model is too
                               large for one protobuf message (2 GiB) */
    OTL_EXTERNAL_NEVER = 1, /* everything embedded (fails beyond 2 GiB) */
    OTL_EXTERNAL_ALWAYS = 2 /* tensors of at least `threshold` bytes go to the data file */
} otl_external_mode;

typedef struct otl_save_opts {
    otl_external_mode external;
    size_t threshold;       /* bytes; 0 means 1024 */
    const char *data_name;  /* data file name next to the model; NULL: "<model file>.data" */
} otl_save_opts;

/* Write the model atomically (temporary files in the target directory, then rename). Refuses
 * to overwrite the file the model was loaded from. opts may be NULL. */
otl_status otl_model_save(const otl_model *m, const char *path, const otl_save_opts *opts,
                          otl_error *err);
/* Serialize to memory (embedded data only). *buf is malloc'd. */
otl_status otl_model_serialize(const otl_model *m, uint8_t **buf, size_t *len, otl_error *err);

/* Parse one serialized TensorProto (e.g. an ONNX backend test's input_0.pb). External data
 * is refused. `name` is used in messages. */
otl_status otl_tensor_parse(otl_tensor **out, const void *buf, size_t len, const char *name,
                            otl_error *err);
otl_status otl_tensor_load_pb(otl_tensor **out, const char *path, otl_error *err);

/* ------------------------------------------------------------ .npy / .npz */

/* Read a NumPy .npy file (little-endian float32/float64/float16/int64/int32/int16/int8/uint8/
 * uint16/uint32/uint64/bool, C order; Fortran order is refused). The tensor is named after
 * `path` unless renamed by the caller. */
otl_status otl_npy_load(otl_tensor **out, const char *path, otl_error *err);
otl_status otl_npy_parse(otl_tensor **out, const void *buf, size_t len, const char *name,
                         otl_error *err);
/* Write a tensor as .npy (atomic write). */
otl_status otl_npy_save(const otl_tensor *t, const char *path, otl_error *err);
/* Read every array of a .npz archive (stored or deflated members). *arrays is malloc'd (free with
 * otl_tensors_free); each tensor is named after its member without ".npy". */
otl_status otl_npz_load(otl_tensor ***arrays, int *n, const char *path, otl_error *err);

/* ------------------------------------------------------------ execution */

typedef struct otl_session otl_session;

typedef struct otl_session_opts {
    int threads;        /* 0: all cores */
    int training;       /* training semantics: Dropout on, BatchNormalization batch statistics */
    int bn_frozen;      /* with training: BatchNormalization keeps using running statistics */
    uint64_t seed;      /* for Dropout and other random ops */
    int no_fuse;        /* inference: keep Conv/BatchNormalization/activations as separate ops
                           (also when the environment sets OTL_NO_FUSE=1) */
    int precision;      /* OTL_PRECISION_*: bf16 runs Conv/ConvTranspose/Gemm/MatMul (and their
                           backward kernels) on bfloat16 inputs with float32 results */
    /* Inputs whose values change from run to run although their shapes do not (a training
       graph's parameters and running statistics): never planned as constants, which small
       float vectors otherwise are (they may be Resize scales), so that a new value does not
       re-plan. The names must outlive the session. */
    int n_varying;
    const char *const *varying;
} otl_session_opts;

/* Compute precision of a session or trainer (mixed precision as torch.autocast(cpu, bfloat16):
 * float32 tensors between ops, float32 parameters and optimizer state; bf16 only inside the
 * convolution and matrix-product primitives). bf16 needs a CPU with AVX512_BF16. */
enum { OTL_PRECISION_FP32 = 0, OTL_PRECISION_BF16 = 1 };
/* "fp32" / "bf16" -> OTL_PRECISION_*, -1 if unknown; and back ("?" if unknown). */
int otl_precision_parse(const char *name);
const char *otl_precision_name(int precision);
/* OTL_OK when this CPU (as oneDNN sees it, ONEDNN_MAX_CPU_ISA included) can run `precision`;
 * else OTL_ERR_UNSUPPORTED naming the precision and the CPU's instruction set. */
otl_status otl_precision_check(int precision, otl_error *err);

/* Prepare to run m (which must outlive the session). Unsupported ops are reported here, naming
 * the node, op type and opset. opts may be NULL. */
otl_status otl_session_new(otl_session **out, const otl_model *m, const otl_session_opts *opts,
                           otl_error *err);
void otl_session_free(otl_session *s);
/* Forward pass. Inputs are matched to graph inputs by tensor name; every graph input that has no
 * initializer must be given (an input that has one may be given to override it). Shapes may
 * differ between calls (the plan is rebuilt when they change). On success *outputs holds one
 * new tensor per graph output, in graph order, named after it: free them and the array with
 * otl_tensors_free. */
otl_status otl_session_run(otl_session *s, const otl_tensor *const *inputs, int n_inputs,
                           otl_tensor ***outputs, int *n_outputs, otl_error *err);
/* The same pass without copies: (*outputs)[i] are the session's own views of the graph outputs
 * (in graph order, named after them), valid until the next run or free of s; the caller frees
 * nothing. Once the plan exists (same input shapes as the last run) a run allocates nothing. */
otl_status otl_session_run_views(otl_session *s, const otl_tensor *const *inputs, int n_inputs,
                                 const otl_tensor *const **outputs, int *n_outputs, otl_error *err);
/* Every later run writes graph output `name` into data (nbytes, which must equal the output's size
 * when it is planned; an error then names the sizes): the kernel that makes the output writes there
 * directly when the output is a tensor of its own, else the run copies it there at its end. The
 * output's view (otl_session_run_views) then points at data. data must stay valid while s runs;
 * binding again replaces the buffer. E.g. a training loop binds each gradient to its slot in the
 * optimizer's flat gradient block. */
otl_status otl_session_bind_output(otl_session *s, const char *name, void *data, size_t nbytes, otl_error *err);

/* Set the number of runs done so far (random ops such as Dropout draw from (seed, run index)):
 * a resumed training run continues the same random streams. */
void otl_session_set_runs(otl_session *s, uint64_t runs);

/* Whether an op is implemented for (domain, op_type) at the given opset ("" = ai.onnx). */
int otl_op_supported(const char *domain, const char *op_type, int64_t opset);

/* What the current plan holds (after a run): activation arena, steps, folded constants. */
typedef struct otl_session_stats {
    size_t arena_bytes;     /* activations and gradients, planned by liveness */
    size_t const_bytes;     /* values computed once at plan time (folded) */
    int n_steps;            /* kernels run per pass */
    int n_folded;           /* nodes evaluated at plan time */
    size_t scratch_bytes;   /* the one oneDNN scratchpad all the session's primitives share */
    long n_scratch_runs;    /* primitive runs that used it */
    long n_library_runs;    /* primitive runs in oneDNN's library scratchpad mode (0: every one shares it) */
} otl_session_stats;
otl_status otl_session_stats_get(const otl_session *s, otl_session_stats *st, otl_error *err);

/* ------------------------------------------------------------ training graphs */

typedef enum otl_loss_kind {
    OTL_LOSS_CE = 0,   /* softmax cross-entropy on logits, int64 class ids */
    OTL_LOSS_MSE = 1,  /* mean squared error, float targets of the output's shape */
    OTL_LOSS_BCE = 2   /* binary cross-entropy on logits, float 0/1 targets (multi-label) */
} otl_loss_kind;

typedef struct otl_grad_spec {
    otl_loss_kind loss;
    float label_smoothing;
    /* parameters to differentiate; NULL: every floating-point initializer that is not frozen
       and not a BatchNormalization running statistic */
    int n_params;
    const char *const *params;
    /* BatchNormalization running statistics: expose each BN's updated running mean/var (its
       outputs 1, 2) as graph outputs, with the running-statistic initializers as graph inputs */
    int bn_stats;
} otl_grad_spec;

/* A model extended with a loss and the gradient of every trainable parameter. Run it with a
 * session in training mode, feeding the data input(s), `target`, and (optionally) the current
 * parameter values under their own names (trainable parameters are graph inputs with their
 * initializer as default). */
typedef struct otl_train_graph {
    otl_model *m;          /* the extended model (owned) */
    char *target;          /* graph input holding the targets */
    char *loss;            /* graph output: scalar float32 loss */
    int n_params;
    char **params;         /* trainable initializer names */
    char **grads;          /* graph outputs: gradient of params[i] */
    int n_stats;           /* with spec->bn_stats: BatchNormalization running statistics */
    char **stats;          /* initializer (and graph input) names */
    char **stat_outs;      /* graph outputs: the updated value of stats[i] after a step */
} otl_train_graph;

/* The first graph output is the prediction. For OTL_LOSS_CE it is taken as logits, or, when a
 * Softmax/LogSoftmax over the last axis produces it, the loss is computed stably from that op's
 * input (Keras-style models). Fails naming the node when a node between a parameter and the
 * loss has no gradient rule. */
otl_status otl_train_graph_build(otl_train_graph **out, const otl_model *m, const otl_grad_spec *spec,
                                 otl_error *err);
void otl_train_graph_free(otl_train_graph *t);

/* ------------------------------------------------------------ optimizers */

typedef enum otl_opt_kind { OTL_OPT_SGD = 0, OTL_OPT_ADAM = 1, OTL_OPT_ADAMW = 2 } otl_opt_kind;

typedef struct otl_optim_opts {
    otl_opt_kind kind;
    float momentum;       /* SGD */
    float dampening;      /* SGD */
    int nesterov;         /* SGD */
    float weight_decay;   /* SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2;   /* Adam/AdamW; 0 means 0.9 / 0.999 */
    float eps;            /* Adam/AdamW; 0 means 1e-8 */
} otl_optim_opts;

/* Parameters, gradients and optimizer state of n float32 tensors in one flat layout (PyTorch
 * torch.optim semantics). Group g of a parameter selects its learning-rate multiplier. */
typedef struct otl_optim {
    otl_optim_opts o;
    int n;
    int64_t *offset, *numel; /* (n) */
    float *lr_mult;          /* (n) per-parameter learning-rate multiplier (discriminative rates) */
    int64_t total;
    float *param, *grad;     /* (total) */
    float *m, *v;            /* (total) momentum buffer / Adam moments, allocated as needed */
    int64_t step;            /* optimizer steps taken */
    int64_t *steps;          /* (n) steps taken by each parameter (PyTorch's per-parameter state:
                                one added later, e.g. by gradual unfreezing, starts from 0) */
} otl_optim;

otl_status otl_optim_new(otl_optim **out, int n, const int64_t *numel, const otl_optim_opts *o,
                         otl_error *err);
void otl_optim_free(otl_optim *opt);
/* Scale all gradients so that their global L2 norm is at most max_norm (as
 * torch.nn.utils.clip_grad_norm_); returns the norm before clipping. */
double otl_optim_clip(otl_optim *opt, double max_norm);
/* One update with base learning rate lr. */
void otl_optim_step(otl_optim *opt, float lr);

/* ------------------------------------------------------------ training steps */

typedef struct otl_trainer otl_trainer;

typedef struct otl_trainer_opts {
    otl_grad_spec grad;       /* loss and trainable parameters */
    otl_optim_opts optim;
    int threads;
    int bn_frozen;            /* BatchNormalization uses running statistics */
    uint64_t seed;
    double clip_norm;         /* > 0: clip the global gradient norm */
    int precision;            /* OTL_PRECISION_* of the training session */
} otl_trainer_opts;

/* A training graph, its session and an optimizer over the model's trainable parameters. */
otl_status otl_trainer_new(otl_trainer **out, const otl_model *m, const otl_trainer_opts *o, otl_error *err);
void otl_trainer_free(otl_trainer *t);
/* One step: forward, backward, (clip), update with learning rate lr. inputs are the model's
 * data inputs by name; target is matched by position (any name). *loss receives the loss
 * before the update. The kernels write the gradients straight into the optimizer's gradient
 * block; once the input shapes repeat, a step allocates nothing. With BatchNormalization in training mode, the running statistics are
 * updated too (PyTorch's momentum and unbiased variance) and fed to the next step. A non-finite
 * loss updates nothing (the caller decides to stop). */
otl_status otl_trainer_step(otl_trainer *t, const otl_tensor *const *inputs, int n_inputs,
                            const otl_tensor *target, float lr, float *loss, otl_error *err);
/* The model's first output (prediction) at the last successful step: a view owned by the
 * trainer's session, valid until the next step or the trainer's free. NULL before the first step
 * and after a failed one. */
const otl_tensor *otl_trainer_prediction(const otl_trainer *t);
/* Steps done so far (a resumed run continues Dropout's random stream where it stopped). */
void otl_trainer_set_runs(otl_trainer *t, uint64_t runs);
/* Copy the current parameter values (and, unless BatchNormalization is frozen, the running
 * statistics) into the initializers of m (a model with the same parameters, e.g. the one the
 * trainer was made from or a clone of it). */
otl_status otl_trainer_write_params(const otl_trainer *t, otl_model *m, otl_error *err);
otl_optim *otl_trainer_optim(otl_trainer *t);
const otl_train_graph *otl_trainer_graph(const otl_trainer *t);
/* Pruning mask: trainable parameter `name` (n elements) stays exactly 0 where zero[k] is set: its
 * gradient there is dropped before clipping and the update, and the value and optimizer state are
 * reset to 0 after every step (so momentum/Adam moments cannot bring it back). A name the trainer
 * does not train is ignored. Values there are zeroed at once. */
otl_status otl_trainer_set_mask(otl_trainer *t, const char *name, const uint8_t *zero, int64_t n, otl_error *err);

/* ------------------------------------------------------------ validation */

/* Structural checks: names present, every node input produced (graph input, initializer, node
 * output, or an outer scope for subgraphs), no value produced twice, no cycle, graph outputs
 * produced, tensor sizes consistent. Errors name the node. */
otl_status otl_model_validate(const otl_model *m, otl_error *err);

/* Topological order of g's nodes: order[k] is an index into g->nodes. Fails on a cycle, naming
 * a node on it. *order is malloc'd. */
otl_status otl_graph_toposort(const otl_graph *g, int **order, const char *file, otl_error *err);

/* ------------------------------------------------------------ IR helpers */

otl_model *otl_model_new(void);
otl_graph *otl_graph_new(void);
void otl_graph_free(otl_graph *g);
otl_node *otl_node_new(const char *name, const char *op_type, const char *domain);
void otl_node_free(otl_node *n);
otl_tensor *otl_tensor_new(const char *name, int dtype, int rank, const int64_t *dims);
void otl_tensor_free(otl_tensor *t);
/* otl_tensor_free of ts[0..n) (NULL entries allowed), then free(ts): session outputs. */
void otl_tensors_free(otl_tensor **ts, int n);
otl_value *otl_value_new(const char *name);
void otl_value_free(otl_value *v);

/* Building and editing graphs. Strings are copied. All return OTL_OK or OTL_ERR_NOMEM. */
otl_status otl_node_set_io(otl_node *n, int n_in, const char *const *in, int n_out,
                           const char *const *out);
/* Append a new zeroed attribute named `name` of `type`; *out points into n->attrs (valid until
 * the next append). */
otl_status otl_node_add_attr(otl_node *n, const char *name, int type, otl_attr **out);
otl_status otl_graph_add_node(otl_graph *g, otl_node *n);          /* takes ownership */
otl_status otl_graph_add_init(otl_graph *g, otl_tensor *t);        /* takes ownership */
otl_status otl_graph_add_input(otl_graph *g, otl_value *v);        /* takes ownership */
otl_status otl_graph_add_output(otl_graph *g, otl_value *v);       /* takes ownership */
/* Declared tensor value with a dtype and (optionally, rank >= 0) a shape; dims < 0 become
 * unknown, and `params` (may be NULL) give symbolic names per axis. */
otl_value *otl_value_new_tensor(const char *name, int dtype, int rank, const int64_t *dims,
                                const char *const *params);
/* Deep copy of the IR (a direct copy, no protobuf round trip: serializes to the bytes of m). */
otl_status otl_model_clone(const otl_model *m, otl_model **out, otl_error *err);

const char *otl_model_meta_get(const otl_model *m, const char *key);
otl_status otl_model_meta_set(otl_model *m, const char *key, const char *value, otl_error *err);
int64_t otl_model_opset(const otl_model *m, const char *domain); /* -1 if not imported */

otl_tensor *otl_graph_find_init(const otl_graph *g, const char *name);
/* The initializer behind `name`, following up to 16 Identity nodes (exporters' Identity
 * initializer aliases); NULL if there is none. */
const otl_tensor *otl_graph_resolve_init(const otl_graph *g, const char *name);
otl_value *otl_graph_find_value(const otl_graph *g, const char *name); /* input/output/value_info */
const otl_attr *otl_node_attr(const otl_node *n, const char *name);
/* Index of the node producing `name`, or -1. */
int otl_graph_producer(const otl_graph *g, const char *name);

/* ------------------------------------------------------------ model summary (info) */

typedef struct otl_head {
    int found;
    int node;                 /* index in graph->nodes of the Gemm/MatMul */
    int bias_node;            /* index of the Add after a MatMul, or -1 */
    const char *input_tensor; /* the tensor the head reads */
    const char *weight;       /* weight initializer name */
    int64_t classes;          /* number of outputs, -1 if unknown */
    int64_t features;         /* number of inputs, -1 if unknown */
    int conv;                 /* otl_find_classifier: node is a 1x1 Conv classifier */
} otl_head;

/* Detect the classifier head: the last Gemm/MatMul (+Add) whose output reaches a graph output
 * through shape-preserving ops only (Softmax, LogSoftmax, Identity, Flatten, Reshape, Squeeze,
 * Dropout, Sigmoid). */
void otl_find_head(const otl_graph *g, otl_head *head);
/* otl_find_head, else a 1x1 Conv classifier (SqueezeNet: Conv -> Relu -> global pooling ->
 * Flatten before an output; head->conv set, no bias node): the head `info` reports and `freeze
 * --all-but-head` keeps trainable, the one `swap-head` replaces. */
void otl_find_classifier(const otl_graph *g, otl_head *head);

/* Frozen marks (stored in metadata_props["onnx_tl.frozen"], one name per line). */
int otl_model_is_frozen(const otl_model *m, const char *init_name);
/* Whether an initializer is a trainable parameter candidate: floating point, and not a
 * BatchNormalization running statistic. */
int otl_graph_init_is_param(const otl_graph *g, const otl_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* ONNXTL_H */
