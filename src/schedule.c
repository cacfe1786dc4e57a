/* schedule.c - learning-rate schedules of the training loop with PyTorch's semantics and
 * defaults: constant, StepLR (per epoch), CosineAnnealingLR (per step over the whole run),
 * OneCycleLR (per step, cosine, momentum/beta1 cycled), ReduceLROnPlateau (per epoch, mode min on
 * the monitored loss, relative threshold 1e-4); linear warmup multiplies the first steps (as
 * LinearLR(start_factor=1/W, total_iters=W-1) chained with the schedule). */
#include <math.h>
#include <string.h>

#include "onnxtl_fit.h"

static const char *const names[] = {"constant", "step", "cosine", "onecycle", "plateau"};

int otl_schedule_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

const char *otl_schedule_name(int kind)
{
    return kind >= 0 && kind < (int)(sizeof names / sizeof names[0]) ? names[kind] : "?";
}

void otl_schedule_init(otl_schedule *s, int kind, double lr, int64_t total_steps, int64_t steps_per_epoch)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->base_lr = lr;
    s->total_steps = total_steps > 0 ? total_steps : 1;
    s->steps_per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1;
    s->step_size = 1;
    s->gamma = 0.1;
    s->plateau_patience = 10;
    s->plateau_factor = 0.1;
    s->plateau_threshold = 1e-4;
    s->onecycle_pct = 0.3;
    s->div_factor = 25;
    s->final_div_factor = 1e4;
    s->base_momentum = 0.85;
    s->max_momentum = 0.95;
    s->plateau_lr = lr;
    s->plateau_best = INFINITY;
}

static double cos_anneal(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1);
}

/* OneCycleLR's two phases: (phase end step, start, end) for lr (which = 0) or momentum (1). */
static double onecycle(const otl_schedule *s, int64_t step, int which)
{
    double max_lr = s->base_lr, initial = max_lr / s->div_factor, min_lr = initial / s->final_div_factor;
    double end1 = s->onecycle_pct * (double)s->total_steps - 1, end2 = (double)s->total_steps - 1;
    double a0 = which ? s->max_momentum : initial, a1 = which ? s->base_momentum : max_lr;
    double b1 = which ? s->max_momentum : min_lr;
    double t = (double)step;
    if (t <= end1)
        return cos_anneal(a0, a1, t / end1);
    return cos_anneal(a1, b1, (t - end1) / (end2 - end1));
}

double otl_schedule_lr(const otl_schedule *s, int64_t step)
{
    double lr = s->base_lr;
    int64_t epoch = step / s->steps_per_epoch;
    switch (s->kind) {
    case OTL_SCHED_STEP:
        lr = s->base_lr * pow(s->gamma, (double)(epoch / (s->step_size > 0 ? s->step_size : 1)));
        break;
    case OTL_SCHED_COSINE: {
        int64_t t = step < s->total_steps ? step : s->total_steps;
        lr = s->min_lr + (s->base_lr - s->min_lr) * (1 + cos(M_PI * (double)t / (double)s->total_steps)) / 2;
        break;
    }
    case OTL_SCHED_ONECYCLE:
        return onecycle(s, step < s->total_steps ? step : s->total_steps - 1, 0);
    case OTL_SCHED_PLATEAU:
        lr = s->plateau_lr;
        break;
    default:
        break;
    }
    if (s->warmup > 0 && step < s->warmup)
        lr *= (double)(step + 1) / (double)s->warmup;
    return lr;
}

double otl_schedule_momentum(const otl_schedule *s, int64_t step)
{
    if (s->kind != OTL_SCHED_ONECYCLE)
        return -1;
    return onecycle(s, step < s->total_steps ? step : s->total_steps - 1, 1);
}

void otl_schedule_epoch_end(otl_schedule *s, double metric)
{
    if (s->kind != OTL_SCHED_PLATEAU || isnan(metric))
        return;
    if (metric < s->plateau_best * (1.0 - s->plateau_threshold)) {
        s->plateau_best = metric;
        s->plateau_bad = 0;
    } else {
        s->plateau_bad++;
    }
    if (s->plateau_bad > s->plateau_patience) {
        double nl = fmax(s->plateau_lr * s->plateau_factor, s->min_lr);
        if (s->plateau_lr - nl > 1e-8)
            s->plateau_lr = nl;
        s->plateau_bad = 0;
    }
}
