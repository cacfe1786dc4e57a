/* onnxtl_fit.h - the training loop of `onnx-tl train` as a library: learning-rate schedules
 * (src/schedule.c) and otl_fit (src/fit.c): epochs over a data set, validation, best model,
 * early stopping, gradual unfreezing, discriminative learning rates, JSONL log, checkpoints and
 * bit-identical resume. Conventions of onnxtl.h (otl_status, otl_error naming the file). */
#ifndef ONNXTL_FIT_H
#define ONNXTL_FIT_H

#include <signal.h>
#include <stdio.h>

#include "onnxtl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ schedules (src/schedule.c) */

enum {
    OTL_SCHED_CONSTANT = 0,
    OTL_SCHED_STEP = 1,
    OTL_SCHED_COSINE = 2,
    OTL_SCHED_ONECYCLE = 3,
    OTL_SCHED_PLATEAU = 4
};

typedef struct otl_schedule {
    int kind;                 /* OTL_SCHED_* */
    double base_lr;           /* the --lr (OneCycleLR: max_lr) */
    int64_t warmup;           /* linear warmup steps (not with onecycle, which has its own) */
    int64_t total_steps, steps_per_epoch;
    int step_size;            /* StepLR, in epochs */
    double gamma;             /* StepLR, default 0.1 */
    double min_lr;            /* cosine eta_min; plateau min_lr */
    int plateau_patience;     /* default 10 */
    double plateau_factor;    /* default 0.1 */
    double plateau_threshold; /* relative, default 1e-4 */
    double onecycle_pct;      /* pct_start 0.3 */
    double div_factor, final_div_factor;  /* 25, 1e4 */
    double base_momentum, max_momentum;   /* 0.85, 0.95 */
    /* ReduceLROnPlateau state (saved in checkpoints) */
    double plateau_lr, plateau_best;
    int plateau_bad;
} otl_schedule;

int otl_schedule_parse(const char *name);   /* OTL_SCHED_*, -1 if unknown */
const char *otl_schedule_name(int kind);
/* Defaults of PyTorch's schedulers; total_steps = epochs * steps_per_epoch. */
void otl_schedule_init(otl_schedule *s, int kind, double lr, int64_t total_steps, int64_t steps_per_epoch);
/* Learning rate of global step `step` (0-based; the epoch is step / steps_per_epoch). */
double otl_schedule_lr(const otl_schedule *s, int64_t step);
/* OneCycleLR's cycled momentum (SGD momentum / Adam beta1) at `step`; < 0 for other schedules. */
double otl_schedule_momentum(const otl_schedule *s, int64_t step);
/* End of an epoch with the monitored loss (ReduceLROnPlateau, mode "min"); no-op otherwise. */
void otl_schedule_epoch_end(otl_schedule *s, double metric);

/* ------------------------------------------------------------ the training loop (src/fit.c) */

enum { OTL_FIT_QUIET = 0, OTL_FIT_LINES = 1, OTL_FIT_BAR = 2 };
enum { OTL_CACHE_FP32 = 0, OTL_CACHE_BF16 = 1 }; /* otl_fit_opts.cache_dtype */

typedef struct otl_fit_opts {
    const char *data;           /* ImageFolder directory or .npz */
    const char *val;            /* validation data, or NULL: a stratified val_frac of data */
    const char *out;            /* best model (by validation accuracy), or the last without validation */
    double val_frac;            /* without val: fraction held out (0.15); 0: no validation */
    int epochs;                 /* >= 1 */
    int64_t batch;              /* >= 1; the last partial batch is kept */
    double lr;
    otl_optim_opts optim;
    float label_smoothing;
    double clip_norm;           /* > 0: clip the global gradient norm */
    int schedule;               /* OTL_SCHED_* */
    int64_t warmup;             /* linear warmup steps */
    int step_size;              /* StepLR epochs (0: max(1, epochs / 3)) */
    double gamma;               /* StepLR (0.1) */
    double min_lr;              /* cosine eta_min, plateau floor */
    int plateau_patience;       /* 10 */
    double plateau_factor;      /* 0.1 */
    int early_stop;             /* > 0: stop after this many epochs without a better val accuracy */
    double layer_lr_decay;      /* > 0: lr multiplier F^depth per parameter block */
    int unfreeze_every;         /* > 0: every E epochs the next frozen block (from the head) thaws */
    const char *augment;        /* otl_augment_parse list, or NULL */
    int bn_frozen;
    uint64_t seed;
    int threads;
    int no_shuffle;
    int skip_bad;               /* unreadable images skipped (listed) */
    const char *log;            /* JSONL, one object per epoch */
    const char *checkpoint;     /* directory written after every epoch (and on interrupt) */
    const char *resume;         /* directory to continue from (hyper-parameters from its state) */
    int resume_epochs;          /* > 0: with resume, train up to this many epochs instead of the stored
                                   number (schedules then span the new total: not bit-identical) */
    const char *resume_given;   /* with resume: the hyper-parameters the caller set explicitly, as
                                   comma-separated keys of the checkpoint's state (lr, batch, weight_decay,
                                   bn_frozen, val_frac, ...): each must equal the checkpoint's value, else
                                   an error (NULL: none checked) */
    int no_cache;               /* no frozen-prefix feature cache (src/feature_cache.c) */
    int precision;              /* OTL_PRECISION_* of the training steps (and of the feature cache's
                                   training rows); validation always runs in float32 */
    int64_t cache_mem;          /* feature cache bound in bytes; 0: 2 GiB; < 0: half the available memory */
    int cache_dtype;            /* OTL_CACHE_FP32 (default) or OTL_CACHE_BF16: cached rows in bfloat16 (half
                                   the memory; features rounded to 8 significant bits) */
    const char *cache_dir;      /* also keep the feature cache in a file there, reused by later runs with the same
                                   frozen prefix, data, preprocessing, split, seed and threads */
    const char *preprocess;     /* preprocessing JSON applied over the model's (as swap-head --preprocess)
                                   and stored in OUT; not with resume (the checkpoint's model has it) */
    const char *preprocess_what; /* its source in messages (a file name) */
    int progress;               /* OTL_FIT_* on msg */
    FILE *msg;                  /* progress and notes (stderr); NULL: none */
    volatile sig_atomic_t *interrupt; /* set asynchronously (SIGINT): stop after the current step */
} otl_fit_opts;

/* Defaults of `onnx-tl train`. */
void otl_fit_opts_init(otl_fit_opts *o);

typedef struct otl_fit_result {
    int epochs_done;            /* epochs completed (including those before a resume) */
    int best_epoch;             /* 1-based epoch of OUT's weights, 0 when none written */
    double best_val_acc;        /* NAN without validation */
    double train_loss, train_acc, val_loss, val_acc; /* of the last completed epoch */
    int stopped_early;
    int interrupted;            /* the run stopped on *interrupt (an error is returned too) */
} otl_fit_result;

/* Fine-tune the model at `model_path` (see ../shared/CLI.md `train`). Errors name the file, the
 * epoch and step where it applies: a non-finite loss stops the run (OUT keeps the last good
 * model); an interrupt writes a checkpoint (when a directory is given) and returns
 * OTL_ERR_INPUT with r->interrupted set. r may be NULL. */
otl_status otl_fit(const char *model_path, const otl_fit_opts *o, otl_fit_result *r, otl_error *err);

#ifdef __cplusplus
}
#endif
#endif /* ONNXTL_FIT_H */
