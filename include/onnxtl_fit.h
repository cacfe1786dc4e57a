/* onnxtl_fit.h - the training loop of `onnx-tl train` as a library: learning-rate schedules
 * (src/schedule.c) and otl_fit (src/fit.c): epochs over a data set, validation, best model,
 * early stopping, gradual unfreezing, discriminative learning rates, JSONL log, checkpoints and
 * bit-identical resume. Conventions of onnxtl.h (otl_status, otl_error naming the file). */
#ifndef ONNXTL_FIT_H
#define ONNXTL_FIT_H

#include <signal.h>

#include "onnxtl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ schedules (src/schedule.c) */

enum { OTL_SCHED_CONSTANT = 0, OTL_SCHED_STEP = 1, OTL_SCHED_COSINE = 2, OTL_SCHED_ONECYCLE = 3, OTL_SCHED_PLATEAU = 4 };

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

#ifdef __cplusplus
}
#endif
#endif /* ONNXTL_FIT_H */
