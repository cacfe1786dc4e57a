/* fit.c - the training loop of `onnx-tl train`: epochs of seeded, shuffled batches through the
 * trainer (src/trainer.c), a schedule (src/schedule.c), validation each epoch on an inference
 * session over the current weights, the best model written atomically, early stopping, gradual
 * unfreezing, discriminative learning rates, a JSONL log, checkpoints after every epoch and a
 * resume that continues bit-for-bit (every random draw depends on (seed, epoch, item) or on the
 * global step, and everything else is in the checkpoint).
 *
 * Checkpoint directory: model.<serial>.onnx (current weights, running statistics, frozen marks),
 * optim.<serial>.bin (optimizer state by parameter name) and state.txt ("key value" lines:
 * position, accumulators, best/early-stop/schedule/unfreeze state, split, hyper-parameters;
 * doubles as C hex floats so that they round-trip exactly), written last and atomically: a kill
 * at any moment leaves the previous checkpoint or the new one, never a mix. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "onnxtl.h"
#include "onnxtl_data.h"
#include "onnxtl_export.h"
#include "onnxtl_fit.h"
#include "onnxtl_surgery.h"
#include "src/feature_cache.h"
#include "src/hash.h"
#include "src/json.h"
#include "src/util.h"

#define OPTIM_MAGIC "OTLOPTIM1\n"

void otl_fit_opts_init(otl_fit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->val_frac = 0.15;
    o->epochs = 10;
    o->batch = 32;
    o->lr = 1e-3;
    o->optim.kind = OTL_OPT_ADAMW;
    o->optim.momentum = 0.9f;
    o->optim.weight_decay = 0.01f;
    o->schedule = OTL_SCHED_CONSTANT;
    o->gamma = 0.1;
    o->plateau_patience = 10;
    o->plateau_factor = 0.1;
    o->progress = OTL_FIT_LINES;
}

/* ------------------------------------------------------------ hyper-parameters */

enum { HP_INT, HP_I64, HP_U64, HP_DBL, HP_FLT, HP_STR };

static const struct {
    const char *key;
    int type;
    size_t off;
} hp_table[] = {
    {"epochs", HP_INT, offsetof(otl_fit_opts, epochs)},
    {"batch", HP_I64, offsetof(otl_fit_opts, batch)},
    {"lr", HP_DBL, offsetof(otl_fit_opts, lr)},
    {"optimizer", HP_INT, offsetof(otl_fit_opts, optim.kind)},
    {"momentum", HP_FLT, offsetof(otl_fit_opts, optim.momentum)},
    {"nesterov", HP_INT, offsetof(otl_fit_opts, optim.nesterov)},
    {"weight_decay", HP_FLT, offsetof(otl_fit_opts, optim.weight_decay)},
    {"label_smoothing", HP_FLT, offsetof(otl_fit_opts, label_smoothing)},
    {"clip_norm", HP_DBL, offsetof(otl_fit_opts, clip_norm)},
    {"schedule", HP_INT, offsetof(otl_fit_opts, schedule)},
    {"warmup", HP_I64, offsetof(otl_fit_opts, warmup)},
    {"step_size", HP_INT, offsetof(otl_fit_opts, step_size)},
    {"gamma", HP_DBL, offsetof(otl_fit_opts, gamma)},
    {"min_lr", HP_DBL, offsetof(otl_fit_opts, min_lr)},
    {"plateau_patience", HP_INT, offsetof(otl_fit_opts, plateau_patience)},
    {"plateau_factor", HP_DBL, offsetof(otl_fit_opts, plateau_factor)},
    {"early_stop", HP_INT, offsetof(otl_fit_opts, early_stop)},
    {"layer_lr_decay", HP_DBL, offsetof(otl_fit_opts, layer_lr_decay)},
    {"unfreeze_every", HP_INT, offsetof(otl_fit_opts, unfreeze_every)},
    {"augment", HP_STR, offsetof(otl_fit_opts, augment)},
    {"bn_frozen", HP_INT, offsetof(otl_fit_opts, bn_frozen)},
    {"seed", HP_U64, offsetof(otl_fit_opts, seed)},
    {"no_shuffle", HP_INT, offsetof(otl_fit_opts, no_shuffle)},
    {"val_frac", HP_DBL, offsetof(otl_fit_opts, val_frac)},
    {"precision", HP_INT, offsetof(otl_fit_opts, precision)}, /* optional in checkpoints (fp32) */
    {"cache_dtype", HP_INT, offsetof(otl_fit_opts, cache_dtype)}, /* optional in checkpoints (fp32) */
};
#define N_HP ((int)(sizeof hp_table / sizeof hp_table[0]))

static const char *const opt_names[] = {"sgd", "adam", "adamw"};

/* ------------------------------------------------------------ state */

typedef struct fit {
    otl_fit_opts h;             /* options in effect (hyper-parameters from the checkpoint on resume) */
    char *h_augment;            /* owned copy of h.augment on resume */
    const char *file;           /* base model path */
    otl_model *cur;             /* working model: weights written back at epoch ends */
    otl_trainer *tr;
    otl_dataset *dtrain, *dval; /* dval == dtrain when split */
    int64_t *tr_idx, n_tr, *va_idx, n_va;
    otl_preprocess pp;
    int images;                 /* training data is an image folder */
    otl_augment aug;
    otl_param_blocks *blocks;
    const char *input;          /* model data input */
    int s_dtype, s_rank;
    int64_t s_dims[OTL_DATASET_MAX_RANK];
    size_t s_bytes;
    int64_t n_classes;
    char base_sha[65];
    char *prov_data;            /* the data path the run was started with (from the checkpoint on resume) */
    otl_schedule sched;
    int64_t steps_per_epoch;
    /* position and accumulators (checkpointed) */
    int epoch;                  /* 0-based epoch in progress / next */
    int64_t batch_pos;          /* next batch within the epoch */
    int64_t step;               /* global step */
    double sum_loss;
    int64_t sum_correct, sum_seen;
    double best_acc;
    int best_epoch, bad_epochs, n_unfrozen, serial, out_written;
    double out_metrics[4];
    char *out_path;             /* absolute path OUT (epoch out_written) was written to (checkpointed) */
    int out_now;                /* OUT written by this process (not only before a --resume) */
    otl_model *pend;            /* OUT not written yet (no validation data: written once, at the end) */
    int pend_epoch;
    double pend_metrics[4];
    /* frozen-prefix feature cache (src/feature_cache.c): the trainer runs `cut` on cached rows */
    otl_model *cut;             /* frontier -> outputs, or NULL without a cache */
    char *frontier;
    int f_rank;
    int64_t f_dims[OTL_DATASET_MAX_RANK];
    size_t f_bytes;             /* per sample, as float32 */
    int c_bf16;                 /* rows stored as bfloat16 (--cache-dtype bf16) */
    size_t c_row;               /* bytes per stored row: f_bytes, or f_bytes / 2 in bf16 */
    void *c_tr, *c_va;          /* rows in tr_idx / va_idx order (NULL when streamed from c_fp) */
    FILE *c_fp;                 /* --cache-dir with rows over --cache-mem: rows read from this file */
    int64_t c_off[2];           /* its offsets of the training and the validation rows */
    int c_stream;               /* the rows being computed go to c_af instead of memory */
    otl_atomic_file c_af;
    otl_sha256 c_sha;
    int c_werr;                 /* a write to c_af failed (errno in c_werrno) */
    int c_werrno;
    void *c_tmp;                /* one batch of bf16 rows */
    char *c_path;               /* the cache file (--cache-dir) */
    uint8_t c_key[32];
    int64_t *l_tr, *l_va;       /* their labels */
    int64_t *row_tr;            /* training data index -> row of c_tr */
    double cache_secs;          /* time spent filling the cache, counted in the first epoch run */
    int64_t cur_synced, cut_synced; /* step + 1 at which the trainer's parameters were last written into cur /
                                       cut (0: never): evaluation, OUT and checkpoints share one write */
    /* output */
    FILE *log;
    otl_prune_masks *masks;     /* zeros of the base model's pruned weights (onnx_tl.pruned), or NULL */
    /* the current batch, reused from step to step (grown only when a batch needs more) */
    otl_tensor *bx, *cx, *by;   /* data batch, cache-row batch, their labels */
    size_t bx_cap, cx_cap, by_cap;
} fit;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static otl_status nomem(otl_error *err)
{
    return otl_error_set(err, OTL_ERR_NOMEM, "out of memory during training");
}

/* Write the trainer's parameters (and running statistics) into m (f->cur or f->cut) unless that
 * was done since the last step. */
static otl_status sync_params(fit *f, otl_model *m, otl_error *err)
{
    int64_t *at = m == f->cut ? &f->cut_synced : &f->cur_synced;
    if (*at == f->step + 1)
        return OTL_OK;
    otl_status st = otl_trainer_write_params(f->tr, m, err);
    *at = st ? 0 : f->step + 1;
    return st;
}

static char *path_join(const char *dir, const char *name)
{
    if (!dir || !name)
        return NULL;
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static otl_status file_sha256(const char *path, char hex[65], otl_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    otl_status st = otl_read_file(path, (size_t)1 << 40, &buf, &len, err);
    if (st)
        return st;
    otl_sha256 s;
    uint8_t d[32];
    otl_sha256_init(&s);
    otl_sha256_update(&s, buf, len);
    otl_sha256_final(&s, d);
    otl_sha256_hex(d, hex);
    free(buf);
    return OTL_OK;
}

/* ------------------------------------------------------------ parameters, unfreezing */

/* Learning-rate multipliers F^depth (discriminative fine-tuning). */
static void set_lr_mult(fit *f)
{
    otl_optim *opt = otl_trainer_optim(f->tr);
    const otl_train_graph *tg = otl_trainer_graph(f->tr);
    for (int i = 0; i < tg->n_params; i++) {
        int d = f->blocks ? otl_param_blocks_depth(f->blocks, tg->params[i]) : -1;
        opt->lr_mult[i] = f->h.layer_lr_decay > 0 && d > 0 ? (float)pow(f->h.layer_lr_decay, d) : 1.0f;
    }
}

static otl_status trainer_build(fit *f, otl_error *err)
{
    otl_trainer_opts to = {0};
    to.grad.loss = OTL_LOSS_CE;
    to.grad.label_smoothing = f->h.label_smoothing;
    to.optim = f->h.optim;
    to.threads = f->h.threads;
    to.bn_frozen = f->h.bn_frozen;
    to.seed = f->h.seed;
    to.clip_norm = f->h.clip_norm;
    to.precision = f->h.precision;
    otl_trainer *t = NULL;
    otl_status st = otl_trainer_new(&t, f->cut ? f->cut : f->cur, &to, err);
    if (st)
        return st;
    otl_trainer *old = f->tr;
    f->tr = t;
    set_lr_mult(f);
    otl_trainer_set_runs(t, (uint64_t)f->step);
    otl_optim *no = otl_trainer_optim(t);
    no->step = f->step;
    if (old) { /* keep the optimizer state of parameters already trained */
        otl_optim *oo = otl_trainer_optim(old);
        const otl_train_graph *ng = otl_trainer_graph(t), *og = otl_trainer_graph(old);
        for (int i = 0; i < ng->n_params; i++)
            for (int j = 0; j < og->n_params; j++) {
                if (strcmp(ng->params[i], og->params[j]) != 0 || no->numel[i] != oo->numel[j])
                    continue;
                size_t b = (size_t)no->numel[i] * sizeof(float);
                if (no->m && oo->m)
                    memcpy(no->m + no->offset[i], oo->m + oo->offset[j], b);
                if (no->v && oo->v)
                    memcpy(no->v + no->offset[i], oo->v + oo->offset[j], b);
                no->steps[i] = oo->steps[j];
            }
        otl_trainer_free(old);
    }
    /* pruned weights (export --prune) stay exactly zero */
    for (int i = 0; f->masks && i < f->masks->n; i++)
        if ((st = otl_trainer_set_mask(t, f->masks->names[i], f->masks->zero[i], f->masks->numel[i], err)))
            return st;
    return OTL_OK;
}

/* Thaw the frozen block closest to the head; 0 when nothing was frozen. */
static int unfreeze_next(fit *f, otl_error *err, otl_status *st)
{
    *st = OTL_OK;
    if (!f->blocks)
        return 0;
    int best = -1;
    for (int i = 0; i < f->blocks->n_params; i++)
        if (otl_model_is_frozen(f->cur, f->blocks->params[i]) && (best < 0 || f->blocks->block[i] < best))
            best = f->blocks->block[i];
    if (best < 0)
        return 0;
    const char *list = otl_model_meta_get(f->cur, "onnx_tl.frozen");
    size_t cap = strlen(list) + 2, len = 0;
    char *keep = malloc(cap);
    if (!keep) {
        *st = nomem(err);
        return 0;
    }
    keep[0] = 0;
    int n_thawed = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char name[4096];
        int thaw = 0;
        if (l < sizeof name) {
            memcpy(name, p, l);
            name[l] = 0;
            thaw = otl_param_blocks_depth(f->blocks, name) == best;
        }
        n_thawed += thaw;
        if (!thaw && l) {
            memcpy(keep + len, p, l);
            len += l;
            keep[len++] = '\n';
            keep[len] = 0;
        }
        p += l;
        if (*p == '\n')
            p++;
    }
    if (len)
        keep[--len] = 0;
    *st = otl_model_meta_set(f->cur, "onnx_tl.frozen", len ? keep : NULL, err);
    free(keep);
    if (!*st && f->h.msg)
        fprintf(f->h.msg, "epoch %d: unfreezing block %d '%s' (%d parameter%s)\n", f->epoch + 1, best,
                best < f->blocks->n_blocks ? f->blocks->block_names[best] : "?", n_thawed, n_thawed == 1 ? "" : "s");
    if (!*st && (*st = sync_params(f, f->cur, err)) == OTL_OK)
        *st = trainer_build(f, err);
    return 1;
}

/* ------------------------------------------------------------ data */

/* The reused batch tensor *slot shaped (n, row dims...): its buffer grows only when n rows of
 * row_bytes need more than it holds, so that steps of the same or a smaller batch allocate nothing. */
static otl_status batch_buf(otl_tensor **slot, size_t *cap, const char *name, int dtype, int row_rank,
                            const int64_t *row_dims, int64_t n, size_t row_bytes, otl_error *err)
{
    otl_tensor *t = *slot;
    if (t && (t->rank != row_rank + 1 || t->dtype != dtype || strcmp(t->name, name) != 0)) {
        otl_tensor_free(t); /* another frontier (the cache was rebuilt) */
        t = *slot = NULL;
    }
    if (!t) {
        int64_t dims[OTL_DATASET_MAX_RANK + 1] = {0};
        if (!(t = *slot = otl_tensor_new(name, dtype, row_rank + 1, dims)))
            return nomem(err);
        *cap = 0;
    }
    size_t nbytes = (size_t)n * row_bytes;
    if (nbytes + 1 > *cap) {
        void *d = realloc(t->data, nbytes + 1);
        if (!d)
            return nomem(err);
        t->data = d;
        *cap = nbytes + 1;
    }
    t->dims[0] = n;
    t->numel = n;
    for (int i = 0; i < row_rank; i++) {
        t->dims[i + 1] = row_dims[i];
        t->numel *= row_dims[i];
    }
    t->nbytes = nbytes;
    return OTL_OK;
}

/* Samples idx of d (augmented when aug) into the reused batch tensors: *xt, *yt belong to f and
 * stay valid until the next batch. */
static otl_status batch_tensors(fit *f, otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug,
                                uint64_t seed, otl_tensor **xt, otl_tensor **yt, otl_error *err)
{
    otl_status st = batch_buf(&f->bx, &f->bx_cap, f->input, f->s_dtype, f->s_rank, f->s_dims, n, f->s_bytes, err);
    if (!st)
        st = batch_buf(&f->by, &f->by_cap, "y", OTL_DTYPE_INT64, 0, NULL, n, sizeof(int64_t), err);
    if (!st)
        st = otl_dataset_batch(d, idx, n, aug, seed, f->bx->data, f->by->data, err);
    if (st)
        return st;
    *xt = f->bx;
    *yt = f->by;
    return OTL_OK;
}

static int64_t argmax_row(const float *v, int64_t n)
{
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

/* ------------------------------------------------------------ frozen-prefix feature cache */

/* float32 -> bfloat16, round to nearest even (NaN stays NaN) */
static void to_bf16(uint16_t *d, const float *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &s[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u)
            d[i] = (uint16_t)((u >> 16) | 0x40);
        else
            d[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    }
}

static void from_bf16(float *d, const uint16_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)s[i] << 16;
        memcpy(&d[i], &u, 4);
    }
}

/* Rows [r0, r0 + n) of a cache as float32 into dst. */
static void cache_rows(const fit *f, const void *rows, int64_t r0, int64_t n, float *dst)
{
    if (f->c_bf16)
        from_bf16(dst, (const uint16_t *)rows + (size_t)r0 * (f->c_row / 2), (size_t)n * (f->c_row / 2));
    else
        memcpy(dst, (const char *)rows + (size_t)r0 * f->c_row, (size_t)n * f->c_row);
}

static void cache_free(fit *f)
{
    otl_model_free(f->cut);
    f->cut = NULL;
    free(f->frontier);
    free(f->c_tr);
    free(f->c_va);
    free(f->l_tr);
    free(f->l_va);
    free(f->row_tr);
    free(f->c_tmp);
    free(f->c_path);
    f->c_tmp = NULL;
    f->c_path = NULL;
    if (f->c_fp)
        fclose(f->c_fp);
    f->c_fp = NULL;
    if (f->c_af.fp)
        otl_atomic_abort(&f->c_af);
    memset(&f->c_af, 0, sizeof f->c_af);
    f->c_stream = 0;
    f->frontier = NULL;
    f->c_tr = f->c_va = NULL;
    f->l_tr = f->l_va = f->row_tr = NULL;
}

static int64_t cache_limit(const fit *f)
{
    if (f->h.cache_mem > 0)
        return f->h.cache_mem;
    if (f->h.cache_mem == 0)
        return (int64_t)2 << 30;
    long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (int64_t)pages * psz / 2 : (int64_t)2 << 30;
}

#define FC_MAGIC "OTLFC01\n"
enum { FC_HDR = 4 + OTL_DATASET_MAX_RANK };

/* Append to the streamed cache file (and its checksum). */
static void stream_put(fit *f, const void *p, size_t n)
{
    otl_sha256_update(&f->c_sha, p, n);
    if (!f->c_werr && n && fwrite(p, 1, n, f->c_af.fp) != n) {
        f->c_werr = 1;
        f->c_werrno = errno;
    }
}

static otl_status stream_open(fit *f, otl_error *err)
{
    otl_status st = otl_atomic_open(&f->c_af, f->c_path, err);
    if (st)
        return st;
    otl_sha256_init(&f->c_sha);
    int64_t hdr[FC_HDR] = {f->n_tr, f->n_va, f->c_bf16, f->f_rank};
    for (int i = 0; i < f->f_rank; i++)
        hdr[4 + i] = f->f_dims[i];
    stream_put(f, FC_MAGIC, 8);
    stream_put(f, f->c_key, 32);
    stream_put(f, hdr, sizeof hdr);
    f->c_off[0] = 8 + 32 + (int64_t)sizeof hdr;
    f->c_off[1] = f->c_off[0] + f->n_tr * (int64_t)(f->c_row + sizeof(int64_t));
    return OTL_OK;
}

/* Rows [r0, r0 + n) of the training (va 0) or validation (va 1) cache as float32 into dst. */
static otl_status cache_get(fit *f, int va, int64_t r0, int64_t n, float *dst, otl_error *err)
{
    if (!f->c_fp) {
        cache_rows(f, va ? f->c_va : f->c_tr, r0, n, dst);
        return OTL_OK;
    }
    size_t len = (size_t)n * f->c_row;
    void *buf = f->c_bf16 ? f->c_tmp : dst;
    if (fseeko(f->c_fp, (off_t)(f->c_off[va] + r0 * (int64_t)f->c_row), SEEK_SET) != 0 ||
        fread(buf, 1, len, f->c_fp) != len)
        return otl_error_set(err, OTL_ERR_IO, "%s: reading the feature cache failed", f->c_path);
    if (f->c_bf16)
        from_bf16(dst, buf, len / 2);
    return OTL_OK;
}

/* Run the prefix over n_idx samples of d into rows (allocated at the first batch, once the
 * feature shape is known: *over set when the cache would exceed the bound). */
static otl_status cache_fill(fit *f, otl_session *s, otl_dataset *d, const int64_t *idx, int64_t n_idx, void **rows,
                             int64_t **labels, int *over, otl_error *err)
{
    otl_status st = OTL_OK;
    for (int64_t b = 0; b < n_idx && !st && !*over; b += f->h.batch) {
        int64_t n = n_idx - b < f->h.batch ? n_idx - b : f->h.batch;
        otl_tensor *x = NULL, *y = NULL, **outs = NULL;
        int n_out = 0;
        if ((st = batch_tensors(f, d, idx + b, n, NULL, 0, &x, &y, err)))
            break;
        if (b + n < n_idx) {
            int64_t nn = n_idx - b - n < f->h.batch ? n_idx - b - n : f->h.batch;
            st = otl_dataset_prefetch(d, idx + b + n, nn, NULL, 0, err);
        }
        const otl_tensor *in[1] = {x};
        if (!st)
            st = otl_session_run(s, in, 1, &outs, &n_out, err);
        const otl_tensor *t = !st && n_out >= 1 ? outs[0] : NULL;
        if (!st && (!t || t->dtype != OTL_DTYPE_FLOAT || t->rank < 1 || t->rank > OTL_DATASET_MAX_RANK + 1 ||
                    t->dims[0] != n))
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: tensor '%s' is not a float32 tensor with the batch axis first",
                               f->file, f->frontier);
        if (!st && f->f_rank < 0) { /* the first batch: the feature shape and the memory bound */
            f->f_rank = t->rank - 1;
            memcpy(f->f_dims, t->dims + 1, (size_t)f->f_rank * sizeof *f->f_dims);
            f->f_bytes = t->nbytes / (size_t)n;
            f->c_row = f->c_bf16 ? f->f_bytes / 2 : f->f_bytes;
            double total = (double)f->c_row * (double)(f->n_tr + f->n_va);
            if (total > (double)cache_limit(f) && f->c_path) { /* --cache-dir: streamed through the file */
                f->c_stream = 1;
                if (!(f->c_tmp = malloc((size_t)f->h.batch * f->c_row + 1)))
                    st = nomem(err);
                if (!st)
                    st = stream_open(f, err);
            } else if (total > (double)cache_limit(f)) {
                *over = 1;
                if (f->h.msg)
                    fprintf(f->h.msg, "note: no feature cache: '%s' of %lld samples needs %.0f bytes, more than "
                            "--cache-mem (%lld bytes)\n", f->frontier, (long long)(f->n_tr + f->n_va), total,
                            (long long)cache_limit(f));
            }
        }
        if (!st && !*over && t->nbytes != (size_t)n * f->f_bytes)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: tensor '%s' changes shape between batches", f->file,
                               f->frontier);
        if (!st && !*over && !*labels) {
            *rows = f->c_stream ? NULL : malloc((size_t)n_idx * f->c_row + 1);
            *labels = malloc((size_t)n_idx * sizeof **labels + 1);
            if ((!f->c_stream && !*rows) || !*labels)
                st = nomem(err);
        }
        if (!st && !*over && f->c_stream) {
            if (f->c_bf16)
                to_bf16(f->c_tmp, t->data, t->nbytes / sizeof(float));
            stream_put(f, f->c_bf16 ? f->c_tmp : t->data, (size_t)n * f->c_row);
            memcpy(*labels + b, y->data, (size_t)n * sizeof **labels);
        } else if (!st && !*over) {
            if (f->c_bf16)
                to_bf16((uint16_t *)*rows + (size_t)b * (f->c_row / 2), t->data, t->nbytes / sizeof(float));
            else
                memcpy((char *)*rows + (size_t)b * f->c_row, t->data, t->nbytes);
            memcpy(*labels + b, y->data, (size_t)n * sizeof **labels);
        }
        for (int i = 0; i < n_out; i++)
            otl_tensor_free(outs[i]);
        free(outs);
    }
    return st;
}

/* ---- the feature cache as a file (--cache-dir): DIR/<key>.otlfc, key = SHA-256 of everything the
 * rows depend on (the frozen prefix's graph and weights, the frontier, the data sets' content
 * hashes, preprocessing, split, seed, threads, row dtype). Layout: magic, key, header (n_tr, n_va,
 * dtype, rank, dims[8]), training rows, their labels, validation rows, their labels, SHA-256 of
 * all that. A file that fails any check is rebuilt (with a note), never trusted. */

static otl_status cache_file_path(fit *f, const otl_model *prefix, char **path, uint8_t key[32], otl_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    otl_status st = otl_model_serialize(prefix, &buf, &len, err);
    if (st)
        return st;
    otl_sha256 h;
    otl_sha256_init(&h);
    /* names hashed whole (with their NULs), the numbers as one line; the training rows depend on
       --precision (bf16 convolutions in the frozen prefix) */
    char line[128];
    snprintf(line, sizeof line, "onnx-tl feature cache 1\n%d\n%llu\n%d\n%s\n", f->c_bf16,
             (unsigned long long)f->h.seed, f->h.threads, otl_precision_name(f->h.precision));
    otl_sha256_update(&h, line, strlen(line) + 1);
    otl_sha256_update(&h, f->input, strlen(f->input) + 1);
    otl_sha256_update(&h, f->frontier, strlen(f->frontier) + 1);
    otl_sha256_update(&h, buf, len);
    free(buf);
    otl_sha256_update(&h, otl_dataset_hash(f->dtrain), 64);
    otl_sha256_update(&h, otl_dataset_hash(f->dval), 64);
    if (f->images) {
        char *pj = otl_preprocess_to_json(&f->pp);
        if (!pj)
            return nomem(err);
        otl_sha256_update(&h, pj, strlen(pj) + 1);
        free(pj);
    }
    int64_t n[2] = {f->n_tr, f->n_va};
    otl_sha256_update(&h, n, sizeof n);
    otl_sha256_update(&h, f->tr_idx, (size_t)f->n_tr * sizeof *f->tr_idx);
    otl_sha256_update(&h, f->va_idx, (size_t)f->n_va * sizeof *f->va_idx);
    otl_sha256_final(&h, key);
    char hex[65], name[80];
    otl_sha256_hex(key, hex);
    snprintf(name, sizeof name, "%.40s.otlfc", hex);
    return (*path = path_join(f->h.cache_dir, name)) ? OTL_OK : nomem(err);
}

static int fc_read(FILE *fp, otl_sha256 *h, void *p, size_t n)
{
    if (n && fread(p, 1, n, fp) != n)
        return 0;
    otl_sha256_update(h, p, n);
    return 1;
}

/* Load the rows from `path` when it holds a valid cache for key; *loaded = 1 then. A missing
 * file is silent, a bad one gets a note (*why). *over: the rows exceed --cache-mem. */
static otl_status cache_file_load(fit *f, const char *path, const uint8_t key[32], int *loaded, int *over, char *why,
                                  size_t nwhy, otl_error *err)
{
    *loaded = 0;
    why[0] = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return OTL_OK;
    otl_sha256 h;
    otl_sha256_init(&h);
    char magic[8];
    uint8_t k[32], sum[32], want[32];
    int64_t hdr[FC_HDR];
    struct stat sb;
    const char *bad = NULL;
    if (fstat(fileno(fp), &sb) != 0 || !fc_read(fp, &h, magic, 8) || memcmp(magic, FC_MAGIC, 8) != 0)
        bad = "not an onnx-tl feature cache";
    else if (!fc_read(fp, &h, k, 32) || memcmp(k, key, 32) != 0 || !fc_read(fp, &h, hdr, sizeof hdr))
        bad = "its key does not match its name";
    else if (hdr[0] != f->n_tr || hdr[1] != f->n_va || hdr[2] != f->c_bf16 || hdr[3] < 0 ||
             hdr[3] > OTL_DATASET_MAX_RANK)
        bad = "header does not match the run";
    size_t per = 0;
    if (!bad) {
        int64_t numel = 1;
        for (int i = 0; i < hdr[3] && !bad; i++) {
            if (hdr[4 + i] <= 0 || hdr[4 + i] > ((int64_t)1 << 40) / numel)
                bad = "header does not match the run";
            else
                numel *= hdr[4 + i];
        }
        per = (size_t)numel * (f->c_bf16 ? 2 : 4);
        double body = (double)per * (double)(f->n_tr + f->n_va) + 8.0 * (double)(f->n_tr + f->n_va);
        if (!bad && (double)sb.st_size != 8 + 32 + (double)sizeof hdr + body + 32)
            bad = "truncated or padded (size differs from its header)";
    }
    if (!bad) {
        f->f_rank = (int)hdr[3];
        for (int i = 0; i < f->f_rank; i++)
            f->f_dims[i] = hdr[4 + i];
        f->c_row = per;
        f->f_bytes = f->c_bf16 ? per * 2 : per;
        double total = (double)per * (double)(f->n_tr + f->n_va);
        int stream = total > (double)cache_limit(f); /* over --cache-mem: read from the file by batch */
        if (!stream) {
            f->c_tr = malloc((size_t)f->n_tr * per + 1);
            f->c_va = malloc((size_t)f->n_va * per + 1);
        }
        f->l_tr = malloc((size_t)f->n_tr * sizeof *f->l_tr + 1);
        f->l_va = malloc((size_t)f->n_va * sizeof *f->l_va + 1);
        f->c_tmp = malloc((size_t)f->h.batch * per + 1);
        if ((!stream && (!f->c_tr || !f->c_va)) || !f->l_tr || !f->l_va || !f->c_tmp) {
            fclose(fp);
            return nomem(err);
        }
        f->c_off[0] = 8 + 32 + (int64_t)sizeof hdr;
        f->c_off[1] = f->c_off[0] + f->n_tr * (int64_t)(per + sizeof(int64_t));
        /* the rows of a streamed cache are checked chunk by chunk and not kept */
        int ok = 1;
        for (int part = 0; part < 2 && ok; part++) {
            int64_t nr = part ? f->n_va : f->n_tr;
            if (!stream)
                ok = fc_read(fp, &h, part ? f->c_va : f->c_tr, (size_t)nr * per);
            for (int64_t r = 0; stream && ok && r < nr; r += f->h.batch)
                ok = fc_read(fp, &h, f->c_tmp, (size_t)(nr - r < f->h.batch ? nr - r : f->h.batch) * per);
            ok = ok && fc_read(fp, &h, part ? f->l_va : f->l_tr, (size_t)nr * sizeof *f->l_tr);
        }
        if (!ok || fread(sum, 1, 32, fp) != 32)
            bad = "truncated";
        if (stream && !bad) {
            f->c_fp = fp;
            fp = NULL;
        }
        otl_sha256_final(&h, want);
        if (!bad && memcmp(sum, want, 32) != 0)
            bad = "checksum mismatch";
        for (int64_t i = 0; !bad && i < f->n_tr + f->n_va; i++) {
            int64_t y = i < f->n_tr ? f->l_tr[i] : f->l_va[i - f->n_tr];
            if (y < 0 || (f->n_classes > 0 && y >= f->n_classes))
                bad = "label out of range";
        }
    }
    if (fp)
        fclose(fp);
    if (bad) {
        if (f->c_fp)
            fclose(f->c_fp);
        f->c_fp = NULL;
        free(f->c_tr);
        free(f->c_va);
        free(f->l_tr);
        free(f->l_va);
        free(f->c_tmp);
        f->c_tmp = NULL;
        f->c_tr = f->c_va = NULL;
        f->l_tr = f->l_va = NULL;
        f->f_rank = -1;
        snprintf(why, nwhy, "%s", bad);
        return OTL_OK;
    }
    *loaded = 1;
    return OTL_OK;
}

static otl_status cache_file_save(fit *f, const char *path, const uint8_t key[32], otl_error *err)
{
    otl_atomic_file af = {0};
    otl_status st = otl_atomic_open(&af, path, err);
    if (st)
        return st;
    int64_t hdr[FC_HDR] = {f->n_tr, f->n_va, f->c_bf16, f->f_rank};
    for (int i = 0; i < f->f_rank; i++)
        hdr[4 + i] = f->f_dims[i];
    const void *part[7] = {FC_MAGIC, key, hdr, f->c_tr, f->l_tr, f->c_va, f->l_va};
    size_t size[7] = {8, 32, sizeof hdr, (size_t)f->n_tr * f->c_row, (size_t)f->n_tr * sizeof *f->l_tr,
                      (size_t)f->n_va * f->c_row, (size_t)f->n_va * sizeof *f->l_va};
    otl_sha256 h;
    otl_sha256_init(&h);
    int ok = 1;
    for (int i = 0; i < 7 && ok; i++) {
        ok = !size[i] || fwrite(part[i], 1, size[i], af.fp) == size[i];
        otl_sha256_update(&h, part[i], size[i]);
    }
    uint8_t sum[32];
    otl_sha256_final(&h, sum);
    if (!ok || fwrite(sum, 1, 32, af.fp) != 32) {
        otl_atomic_abort(&af);
        return otl_error_set(err, OTL_ERR_IO, "%s: writing the feature cache failed: %s", path, strerror(errno));
    }
    return otl_atomic_commit(&af, err);
}

/* Decide whether the cache applies and fill it: training rows with a training-mode session over
 * the prefix (the kernels the full training graph runs), validation rows with an inference
 * session (those of evaluate() without a cache). Then the trainer is rebuilt on the cut model. */
static otl_status cache_setup(fit *f, otl_error *err)
{
    if (f->h.no_cache)
        return OTL_OK;
    f->c_bf16 = f->h.cache_dtype == OTL_CACHE_BF16;
    struct stat sb;
    if (f->h.cache_dir && mkdir(f->h.cache_dir, 0777) != 0 &&
        (errno != EEXIST || stat(f->h.cache_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return otl_error_set(err, OTL_ERR_IO, "%s: cannot create the feature cache directory: %s", f->h.cache_dir,
                             errno == EEXIST ? "not a directory" : strerror(errno));
    char why[768];
    why[0] = 0;
    const otl_value *iv = otl_graph_find_value(f->cur->graph, f->input);
    if (f->aug.enabled)
        snprintf(why, sizeof why, "--augment changes the data every epoch");
    else if (f->h.unfreeze_every > 0)
        snprintf(why, sizeof why, "--unfreeze-every moves the start of the trainable part");
    else if (iv && iv->has_shape && iv->rank >= 1 && iv->dims[0].value > 0)
        snprintf(why, sizeof why, "input '%s' has a fixed batch axis", f->input);
    otl_model *prefix = NULL;
    otl_status st = OTL_OK;
    if (!why[0] && (st = otl_fcache_plan(f->cur, f->input, otl_trainer_graph(f->tr), f->h.bn_frozen, &prefix,
                                         &f->cut, &f->frontier, why, sizeof why, err)))
        return st;
    if (!f->cut) {
        /* only worth a note when something is frozen (feature extraction expected a cache) */
        int frozen = 0;
        const otl_graph *g = f->cur->graph;
        for (int i = 0; i < g->n_inits && !frozen; i++)
            frozen = otl_graph_init_is_param(g, g->inits[i]) && otl_model_is_frozen(f->cur, g->inits[i]->name);
        if (f->h.msg && frozen)
            fprintf(f->h.msg, "note: no feature cache: %s\n", why);
        return OTL_OK;
    }
    double t0 = now_s();
    otl_session *s_tr = NULL, *s_va = NULL;
    otl_session_opts so_tr = {.threads = f->h.threads, .training = 1, .bn_frozen = 1, .seed = f->h.seed,
                              .precision = f->h.precision}; /* the rows the trainer would compute */
    otl_session_opts so_va = {.threads = f->h.threads};
    int over = 0, loaded = 0;
    f->f_rank = -1;
    char *cpath = NULL, bad[128] = "";
    uint8_t *key = f->c_key;
    if (f->h.cache_dir && !(st = cache_file_path(f, prefix, &f->c_path, key, err)))
        st = cache_file_load(f, f->c_path, key, &loaded, &over, bad, sizeof bad, err);
    cpath = f->c_path;
    if (!st && bad[0] && f->h.msg)
        fprintf(f->h.msg, "note: feature cache file %s: %s; rebuilding it\n", cpath, bad);
    if (!st && !loaded && !over)
        st = otl_session_new(&s_tr, prefix, &so_tr, err);
    if (!st && !loaded && !over)
        st = otl_session_new(&s_va, prefix, &so_va, err);
    if (!st && !loaded && !over)
        st = cache_fill(f, s_tr, f->dtrain, f->tr_idx, f->n_tr, &f->c_tr, &f->l_tr, &over, err);
    if (!st && f->c_stream)
        stream_put(f, f->l_tr, (size_t)f->n_tr * sizeof *f->l_tr);
    if (!st && !loaded && !over)
        st = cache_fill(f, s_va, f->dval, f->va_idx, f->n_va, &f->c_va, &f->l_va, &over, err);
    if (!st && f->c_stream) { /* the streamed file: checksum, commit, then read back by batch */
        uint8_t sum[32];
        stream_put(f, f->l_va, (size_t)f->n_va * sizeof *f->l_va);
        otl_sha256_final(&f->c_sha, sum);
        stream_put(f, sum, 32);
        if (f->c_werr) {
            otl_atomic_abort(&f->c_af);
            st = otl_error_set(err, OTL_ERR_IO, "%s: writing the feature cache failed: %s", cpath,
                               strerror(f->c_werrno));
        } else {
            st = otl_atomic_commit(&f->c_af, err);
        }
        memset(&f->c_af, 0, sizeof f->c_af);
        if (!st && !(f->c_fp = fopen(cpath, "rb")))
            st = otl_error_set(err, OTL_ERR_IO, "%s: cannot read the feature cache back: %s", cpath, strerror(errno));
    }
    otl_session_free(s_tr);
    otl_session_free(s_va);
    otl_model_free(prefix);
    int saved = 0;
    if (!st && !loaded && !over && cpath && !f->c_stream) {
        otl_error e2 = {0};
        if (f->n_va == 0 && !f->c_va && !(f->c_va = malloc(1)))
            st = nomem(err);
        if (!st && f->n_va == 0 && !f->l_va && !(f->l_va = malloc(1)))
            st = nomem(err);
        if (!st && !(saved = cache_file_save(f, cpath, key, &e2) == OTL_OK) && f->h.msg)
            fprintf(f->h.msg, "note: the feature cache stays in memory only: %s\n", e2.msg);
    }
    if (!st && !over) {
        int64_t nd = otl_dataset_len(f->dtrain);
        if (!(f->row_tr = malloc(((size_t)nd + 1) * sizeof *f->row_tr)))
            st = nomem(err);
        for (int64_t i = 0; !st && i < nd; i++)
            f->row_tr[i] = -1;
        for (int64_t i = 0; !st && i < f->n_tr; i++)
            f->row_tr[f->tr_idx[i]] = i;
    }
    if (!st && !over) { /* the cut model's input: the feature shape, a dynamic batch axis */
        otl_graph *cg = f->cut->graph;
        int64_t dims[OTL_DATASET_MAX_RANK + 1];
        dims[0] = -1;
        memcpy(dims + 1, f->f_dims, (size_t)f->f_rank * sizeof *dims);
        for (int i = 0; !st && i < cg->n_inputs; i++)
            if (strcmp(cg->inputs[i]->name, f->frontier) == 0) {
                otl_value *v = otl_value_new_tensor(f->frontier, OTL_DTYPE_FLOAT, f->f_rank + 1, dims, NULL);
                if (!v) {
                    st = nomem(err);
                    break;
                }
                otl_value_free(cg->inputs[i]);
                cg->inputs[i] = v;
            }
    }
    if (!st && !over)
        st = trainer_build(f, err);
    if (st || over) {
        cache_free(f);
        return st;
    }
    f->cache_secs = now_s() - t0;
    if (f->h.msg) {
        int64_t per = (int64_t)(f->f_bytes / sizeof(float));
        int n_nodes = 0;
        for (int i = 0; i < f->cut->graph->n_nodes; i++) /* without the Constant placeholders */
            n_nodes += strncmp(f->cut->graph->nodes[i]->name, "otl_cache_pad_", 14) != 0;
        fprintf(f->h.msg, "note: feature cache: '%s' (%lld floats per sample) of %lld samples, %.1f MB %s, %s "
                "in %.1fs (counted in the first epoch)%s%s; the epochs train the %d node%s after it (--no-cache: the "
                "whole model)\n", f->frontier,
                (long long)per, (long long)(f->n_tr + f->n_va),
                (double)f->c_row * (double)(f->n_tr + f->n_va) / 1048576.0, f->c_bf16 ? "bf16" : "fp32",
                loaded ? "read from the cache file" : "computed", now_s() - t0,
                f->c_fp ? ", more than --cache-mem: streamed from the file " : saved || loaded ? ", file " : "",
                saved || loaded || f->c_fp ? cpath : "", n_nodes, n_nodes == 1 ? "" : "s");
    }
    return OTL_OK;
}

/* A training batch from the cache: rows of the samples idx (training data indices). */
static otl_status cache_batch(fit *f, const int64_t *idx, int64_t n, otl_tensor **xt, otl_tensor **yt, otl_error *err)
{
    otl_status st = batch_buf(&f->cx, &f->cx_cap, f->frontier, OTL_DTYPE_FLOAT, f->f_rank, f->f_dims, n, f->f_bytes,
                              err);
    if (!st)
        st = batch_buf(&f->by, &f->by_cap, "y", OTL_DTYPE_INT64, 0, NULL, n, sizeof(int64_t), err);
    for (int64_t i = 0; !st && i < n; i++) {
        int64_t r = f->row_tr[idx[i]];
        st = cache_get(f, 0, r, 1, (float *)((char *)f->cx->data + (size_t)i * f->f_bytes), err);
        ((int64_t *)f->by->data)[i] = f->l_tr[r];
    }
    if (st)
        return st;
    *xt = f->cx;
    *yt = f->by;
    return OTL_OK;
}

/* Validation: an inference session over the current weights (BatchNormalization with the
 * running statistics). */
static otl_status evaluate(fit *f, double *loss, double *acc, otl_error *err)
{
    otl_status st = sync_params(f, f->cut ? f->cut : f->cur, err);
    otl_classifier *c = NULL;
    if (st || (st = otl_classifier_new(&c, f->cut ? f->cut : f->cur, f->h.threads, err)))
        return st;
    double sl = 0;
    int64_t correct = 0;
    float *rows = NULL; /* a batch of bf16 or streamed cache rows as float32 */
    for (int64_t b = 0; !st && b < f->n_va; b += f->h.batch) {
        int64_t n = f->n_va - b < f->h.batch ? f->n_va - b : f->h.batch;
        otl_tensor *x = NULL, *y = NULL;
        float *scores = NULL, *logits = NULL;
        if (!f->cut)
            st = batch_tensors(f, f->dval, f->va_idx + b, n, NULL, 0, &x, &y, err);
        if (!st && f->cut && (f->c_bf16 || f->c_fp) && !rows && !(rows = malloc((size_t)f->h.batch * f->f_bytes + 1)))
            st = nomem(err);
        if (!st && rows)
            st = cache_get(f, 1, b, n, rows, err);
        if (!st && f->cut)
            st = otl_classifier_run(c, rows ? (const void *)rows : (const char *)f->c_va + (size_t)b * f->c_row, n,
                                    f->f_dims, &scores, &logits, err);
        else if (!st)
            st = otl_classifier_run(c, x->data, n, f->s_dims, &scores, &logits, err);
        if (!st) {
            int64_t C = c->n_classes;
            const int64_t *yy = f->cut ? f->l_va + b : y->data;
            for (int64_t i = 0; i < n; i++) {
                if (yy[i] >= C) {
                    st = otl_error_set(err, OTL_ERR_INPUT, "%s: label %lld of %s is out of range for %lld classes",
                                       f->h.val ? f->h.val : f->h.data, (long long)yy[i],
                                       otl_dataset_item_name(f->dval, f->va_idx[b + i]), (long long)C);
                    break;
                }
                sl += otl_scores_ce(logits + i * C, (int)C, yy[i]);
                correct += argmax_row(scores + i * C, C) == yy[i];
            }
        }
        free(scores);
        free(logits);
    }
    otl_classifier_free(c);
    free(rows);
    *loss = f->n_va ? sl / (double)f->n_va : NAN;
    *acc = f->n_va ? (double)correct / (double)f->n_va : NAN;
    return st;
}

/* ------------------------------------------------------------ output model */

static void json_hparams(fit *f, otl_json *j)
{
    otl_json_obj(j);
    for (int i = 0; i < N_HP; i++) {
        const char *p = (const char *)&f->h + hp_table[i].off;
        otl_json_key(j, hp_table[i].key);
        if (strcmp(hp_table[i].key, "optimizer") == 0) {
            int k = *(const int *)p;
            otl_json_str(j, k >= 0 && k < 3 ? opt_names[k] : "?");
            continue;
        }
        if (strcmp(hp_table[i].key, "schedule") == 0) {
            otl_json_str(j, otl_schedule_name(*(const int *)p));
            continue;
        }
        if (strcmp(hp_table[i].key, "precision") == 0) {
            otl_json_str(j, otl_precision_name(*(const int *)p));
            continue;
        }
        if (strcmp(hp_table[i].key, "cache_dtype") == 0) {
            otl_json_str(j, *(const int *)p == OTL_CACHE_BF16 ? "bf16" : "fp32");
            continue;
        }
        switch (hp_table[i].type) {
        case HP_INT: otl_json_int(j, *(const int *)p); break;
        case HP_I64: otl_json_int(j, *(const int64_t *)p); break;
        case HP_U64: otl_json_int(j, (int64_t) * (const uint64_t *)p); break;
        case HP_DBL: otl_json_num(j, *(const double *)p); break;
        case HP_FLT: { /* the float's shortest decimal (0.9, not 0.899999976) */
            char buf[32];
            snprintf(buf, sizeof buf, "%.7g", (double)*(const float *)p);
            otl_json_num(j, strtod(buf, NULL));
            break;
        }
        default: otl_json_str(j, *(const char *const *)p); break;
        }
    }
    otl_json_obj_end(j);
}

/* Provenance: base model hash, hyper-parameters, data hashes, metrics of the saved epoch. No
 * clock time: the same run gives the same bytes. */
static char *provenance(fit *f, int epoch, const double *mtr)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    if (!fp)
        return NULL;
    otl_json j;
    otl_json_init(&j, fp);
    otl_json_obj(&j);
    otl_json_key(&j, "onnx_tl_version");
    otl_json_str(&j, OTL_VERSION);
    otl_json_key(&j, "base_model_sha256");
    otl_json_str(&j, f->base_sha);
    otl_json_key(&j, "data");
    otl_json_str(&j, f->prov_data ? f->prov_data : f->h.data); /* as the run was started */
    otl_json_key(&j, "data_sha256");
    otl_json_str(&j, otl_dataset_hash(f->dtrain));
    otl_json_key(&j, "val_data_sha256");
    if (f->h.val)
        otl_json_str(&j, otl_dataset_hash(f->dval));
    else
        otl_json_null(&j);
    otl_json_key(&j, "train_samples");
    otl_json_int(&j, f->n_tr);
    otl_json_key(&j, "val_samples");
    otl_json_int(&j, f->n_va);
    otl_json_key(&j, "hyperparameters");
    json_hparams(f, &j);
    otl_json_key(&j, "epoch");
    otl_json_int(&j, epoch);
    otl_json_key(&j, "metrics");
    otl_json_obj(&j);
    static const char *const keys[] = {"train_loss", "train_acc", "val_loss", "val_acc"};
    for (int i = 0; i < 4; i++) {
        otl_json_key(&j, keys[i]);
        otl_json_num(&j, mtr[i]);
    }
    otl_json_obj_end(&j);
    otl_json_key(&j, "best_val_acc");
    otl_json_num(&j, f->n_va ? f->best_acc : NAN);
    otl_json_obj_end(&j);
    fclose(fp);
    if (len && text[len - 1] == '\n')
        text[len - 1] = 0;
    return text;
}

/* OUT is an inference model: drop BatchNormalization's training outputs (running and saved
 * statistics, 1..4) when nothing reads them (also not inside a subgraph). ONNX Runtime runs a
 * BatchNormalization that has them in training mode (batch statistics) before opset 14. */
static void drop_bn_training_outputs(otl_model *m)
{
    otl_graph *g = m->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        otl_node *n = g->nodes[i];
        if (strcmp(n->op_type, "BatchNormalization") != 0 || *n->domain || n->n_outputs < 2)
            continue;
        int used = 0;
        for (int k = 1; k < n->n_outputs && !used; k++) /* read by a node, an If/Loop body or an output */
            used = *n->outputs[k] && otl_fcache_reads(g, n->outputs[k]);
        if (used)
            continue;
        for (int k = 1; k < n->n_outputs; k++) {
            for (int j = 0; j < g->n_value_info; j++)
                if (*n->outputs[k] && strcmp(g->value_info[j]->name, n->outputs[k]) == 0) {
                    otl_value_free(g->value_info[j]);
                    g->value_info[j--] = g->value_info[--g->n_value_info];
                }
            free(n->outputs[k]);
        }
        n->n_outputs = 1;
    }
}

/* OUT is made (a snapshot of the model) after every epoch that should be kept and written by
 * flush_out: at once when the epoch beat the best validation accuracy, otherwise (no validation data:
 * OUT is the last model) only after the last epoch, or when training stops early (interrupt,
 * divergence, an error): rewriting a whole model after every epoch cost more than the epochs
 * themselves when they train from the feature cache. */
static otl_status flush_out(fit *f, otl_error *err)
{
    if (!f->pend)
        return OTL_OK;
    otl_status st = otl_model_save(f->pend, f->h.out, NULL, err);
    if (!st) {
        char *rp = realpath(f->h.out, NULL);
        free(f->out_path);
        f->out_path = rp;
        f->out_now = 1;
        f->out_written = f->pend_epoch;
        memcpy(f->out_metrics, f->pend_metrics, sizeof f->out_metrics);
    }
    otl_model_free(f->pend);
    f->pend = NULL;
    return st;
}

/* A resumed run in which no epoch beat the checkpoint's best (or with no epoch left): OUT is the
 * model written before the interruption, to the path in the checkpoint. Copied (with any external
 * data) when this run's OUT is another file. */
static otl_status out_from_before_resume(fit *f, otl_error *err)
{
    const char *ck = f->h.checkpoint ? f->h.checkpoint : "the checkpoint";
    if (!f->out_path)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: the best model (epoch %d) was written before the resume, and the checkpoint does "
                             "not say where (made by an older onnx-tl): %s was not written",
                             ck, f->out_written, f->h.out);
    if (access(f->out_path, R_OK) != 0)
        return otl_error_set(err, OTL_ERR_IO,
                             "%s: the best model (epoch %d) was written to %s before the resume and is not there "
                             "any more: %s was not written", ck, f->out_written, f->out_path, f->h.out);
    if (otl_same_file(f->out_path, f->h.out))
        return OTL_OK;
    otl_model *m = NULL;
    otl_status st = otl_model_load(&m, f->out_path, NULL, err);
    if (!st)
        st = otl_model_save(m, f->h.out, NULL, err);
    otl_model_free(m);
    if (!st && f->h.msg && f->h.progress != OTL_FIT_QUIET)
        fprintf(f->h.msg, "no epoch after the resume beat epoch %d: copied its model from %s\n", f->out_written,
                f->out_path);
    return st;
}

static otl_status make_out(fit *f, int epoch, const double *mtr, otl_error *err)
{
    otl_model *m = NULL;
    otl_status st = sync_params(f, f->cur, err);
    if (st || (st = otl_model_clone(f->cur, &m, err)))
        return st;
    drop_bn_training_outputs(m);
    char *prov = provenance(f, epoch, mtr);
    if (!prov)
        st = nomem(err);
    if (!st)
        st = otl_model_meta_set(m, "onnx_tl.provenance", prov, err);
    free(prov);
    if (!st && f->images && !otl_model_meta_get(m, "onnx_tl.preprocess")) {
        char *pj = otl_preprocess_to_json(&f->pp);
        st = pj ? otl_model_meta_set(m, "onnx_tl.preprocess", pj, err) : nomem(err);
        free(pj);
    }
    if (st) {
        otl_model_free(m);
        return st;
    }
    otl_model_free(f->pend);
    f->pend = m;
    f->pend_epoch = epoch;
    memcpy(f->pend_metrics, mtr, sizeof f->pend_metrics);
    return OTL_OK;
}

/* ------------------------------------------------------------ checkpoints */

static void put_dbl(FILE *fp, const char *k, double v) { fprintf(fp, "%s %a\n", k, v); }

/* Whether name is a checkpoint file of serial other than keep: model.N.onnx[.data], optim.N.bin, or a
 * temporary file of the atomic writes (.model.*, .optim.*, .state.txt.*). */
static int ckpt_stale(const char *name, int keep)
{
    if (!strncmp(name, ".model.", 7) || !strncmp(name, ".optim.", 7) || !strncmp(name, ".state.txt.", 11))
        return strstr(name, ".tmp") != NULL;
    const char *rest = !strncmp(name, "model.", 6) ? name + 6 : !strncmp(name, "optim.", 6) ? name + 6 : NULL;
    if (!rest || *rest < '0' || *rest > '9')
        return 0;
    char *end;
    long n = strtol(rest, &end, 10);
    int known = name[0] == 'm' ? !strcmp(end, ".onnx") || !strcmp(end, ".onnx.data") : !strcmp(end, ".bin");
    return known && n != keep;
}

/* Whether path names a file the checkpoints in dir replace or remove (state.txt, model.N.onnx, ...). */
static int ckpt_owns(const char *dir, const char *path)
{
    char *d = otl_dirname(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int owned = d && (strcmp(d, dir) == 0 || otl_same_file(d, dir)) &&
                (strcmp(base, "state.txt") == 0 || ckpt_stale(base, -1));
    free(d);
    return owned;
}

static void ckpt_sweep(const char *dir, int keep)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (ckpt_stale(e->d_name, keep)) {
            char *p = path_join(dir, e->d_name);
            if (p)
                unlink(p);
            free(p);
        }
    closedir(dp);
}

static otl_status ckpt_write(fit *f, otl_error *err)
{
    const char *dir = f->h.checkpoint;
    if (!dir)
        return OTL_OK;
    otl_status st = sync_params(f, f->cur, err);
    if (st)
        return st;
    int serial = f->serial + 1;
    char name[64], oname[64];
    snprintf(name, sizeof name, "model.%d.onnx", serial);
    snprintf(oname, sizeof oname, "optim.%d.bin", serial);
    char *mpath = path_join(dir, name), *opath = path_join(dir, oname), *spath = path_join(dir, "state.txt");
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = NULL;
    if (!mpath || !opath || !spath) {
        st = nomem(err);
        goto done;
    }
    if ((st = otl_model_save(f->cur, mpath, NULL, err)))
        goto done;
    /* optimizer state by parameter name */
    otl_optim *o = otl_trainer_optim(f->tr);
    const otl_train_graph *tg = otl_trainer_graph(f->tr);
    if (!(fp = open_memstream(&buf, &len))) {
        st = nomem(err);
        goto done;
    }
    fputs(OPTIM_MAGIC, fp);
    int64_t hdr[3] = {o->n, o->step, (o->m ? 1 : 0) | (o->v ? 2 : 0)};
    fwrite(hdr, sizeof hdr, 1, fp);
    for (int i = 0; i < o->n; i++) {
        int64_t nl = (int64_t)strlen(tg->params[i]), rec[3] = {nl, o->numel[i], o->steps[i]};
        fwrite(rec, sizeof rec, 1, fp);
        fwrite(tg->params[i], 1, (size_t)nl, fp);
        if (o->m)
            fwrite(o->m + o->offset[i], sizeof(float), (size_t)o->numel[i], fp);
        if (o->v)
            fwrite(o->v + o->offset[i], sizeof(float), (size_t)o->numel[i], fp);
    }
    fclose(fp);
    fp = NULL;
    if ((st = otl_write_file_atomic(opath, buf, len, err)))
        goto done;
    free(buf);
    buf = NULL;
    /* the state, last */
    if (!(fp = open_memstream(&buf, &len))) {
        st = nomem(err);
        goto done;
    }
    fprintf(fp, "onnx_tl_checkpoint 1\nserial %d\nmodel %s\noptim %s\n", serial, name, oname);
    fprintf(fp, "base_sha256 %s\ndata_sha256 %s\n", f->base_sha, otl_dataset_hash(f->dtrain));
    if (!strchr(f->prov_data ? f->prov_data : f->h.data, '\n'))
        fprintf(fp, "data_path %s\n", f->prov_data ? f->prov_data : f->h.data);
    if (f->h.val)
        fprintf(fp, "val_sha256 %s\n", otl_dataset_hash(f->dval));
    fprintf(fp, "epoch %d\nbatch_pos %lld\nstep %lld\nsum_correct %lld\nsum_seen %lld\n", f->epoch,
            (long long)f->batch_pos, (long long)f->step, (long long)f->sum_correct, (long long)f->sum_seen);
    put_dbl(fp, "sum_loss", f->sum_loss);
    put_dbl(fp, "best_acc", f->best_acc);
    fprintf(fp, "best_epoch %d\nbad_epochs %d\nn_unfrozen %d\nout_written %d\n", f->best_epoch, f->bad_epochs,
            f->n_unfrozen, f->out_written);
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "out_metric%d", i);
        put_dbl(fp, k, f->out_metrics[i]);
    }
    if (f->out_path && !strchr(f->out_path, '\n'))
        fprintf(fp, "out_path %s\n", f->out_path);
    put_dbl(fp, "plateau_lr", f->sched.plateau_lr);
    put_dbl(fp, "plateau_best", f->sched.plateau_best);
    fprintf(fp, "plateau_bad %d\n", f->sched.plateau_bad);
    for (int i = 0; i < N_HP; i++) {
        const char *p = (const char *)&f->h + hp_table[i].off;
        fprintf(fp, "hp.%s ", hp_table[i].key);
        switch (hp_table[i].type) {
        case HP_INT: fprintf(fp, "%d\n", *(const int *)p); break;
        case HP_I64: fprintf(fp, "%lld\n", (long long)*(const int64_t *)p); break;
        case HP_U64: fprintf(fp, "%llu\n", (unsigned long long)*(const uint64_t *)p); break;
        case HP_DBL: fprintf(fp, "%a\n", *(const double *)p); break;
        case HP_FLT: fprintf(fp, "%a\n", (double)*(const float *)p); break;
        default: fprintf(fp, "%s\n", *(const char *const *)p ? *(const char *const *)p : ""); break;
        }
    }
    fprintf(fp, "split_train %lld", (long long)f->n_tr);
    for (int64_t i = 0; i < f->n_tr; i++)
        fprintf(fp, " %lld", (long long)f->tr_idx[i]);
    fprintf(fp, "\nsplit_val %lld", (long long)f->n_va);
    for (int64_t i = 0; i < f->n_va; i++)
        fprintf(fp, " %lld", (long long)f->va_idx[i]);
    fputs("\nend\n", fp);
    fclose(fp);
    fp = NULL;
    if ((st = otl_write_file_atomic(spath, buf, len, err)))
        goto done;
    /* every other checkpoint file: the previous checkpoint's, and those a killed run left (a
       checkpoint it wrote no state for, half-written temporary files) */
    ckpt_sweep(dir, serial);
    f->serial = serial;
done:
    if (fp)
        fclose(fp);
    free(buf);
    free(mpath);
    free(opath);
    free(spath);
    return st;
}

typedef struct kv_list {
    int n;
    char **k, **v;
    char *text;
} kv_list;

static const char *kv_get(const kv_list *l, const char *k)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->k[i], k) == 0)
            return l->v[i];
    return NULL;
}

static otl_status kv_read(kv_list *l, const char *path, otl_error *err)
{
    memset(l, 0, sizeof *l);
    size_t len;
    otl_status st = otl_read_file(path, (size_t)1 << 32, (uint8_t **)&l->text, &len, err);
    if (st)
        return st;
    int cap = 0;
    for (size_t i = 0; i < len; i++)
        cap += l->text[i] == '\n';
    l->k = calloc((size_t)cap + 1, sizeof *l->k);
    l->v = calloc((size_t)cap + 1, sizeof *l->v);
    if (!l->k || !l->v)
        return nomem(err);
    for (char *p = l->text; *p;) {
        char *e = strchr(p, '\n');
        if (!e)
            break;
        *e = 0;
        char *sp = strchr(p, ' ');
        if (sp) {
            *sp = 0;
            l->k[l->n] = p;
            l->v[l->n++] = sp + 1;
        } else if (l->n < cap) {
            l->k[l->n] = p;
            l->v[l->n++] = e;
        }
        p = e + 1;
    }
    if (!kv_get(l, "onnx_tl_checkpoint") || !kv_get(l, "end"))
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a complete onnx-tl checkpoint state", path);
    return OTL_OK;
}

static void kv_free(kv_list *l)
{
    free(l->k);
    free(l->v);
    free(l->text);
}

static int kv_ll(const kv_list *l, const char *k, long long *v)
{
    const char *s = kv_get(l, k);
    char *e;
    if (!s || !*s)
        return 0;
    *v = strtoll(s, &e, 10);
    return *e == 0;
}

static int kv_dbl(const kv_list *l, const char *k, double *v)
{
    const char *s = kv_get(l, k);
    char *e;
    if (!s || !*s)
        return 0;
    *v = strtod(s, &e);
    return *e == 0;
}

static otl_status parse_split(const kv_list *l, const char *key, int64_t **idx, int64_t *n, int64_t limit,
                              const char *path, otl_error *err)
{
    const char *s = kv_get(l, key);
    char *e;
    long long cnt = s ? strtoll(s, &e, 10) : -1;
    if (!s || cnt < 0 || cnt > limit)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: bad '%s' line", path, key);
    free(*idx);
    *idx = malloc(((size_t)cnt + 1) * sizeof **idx);
    if (!*idx)
        return nomem(err);
    for (long long i = 0; i < cnt; i++) {
        const char *p = e;
        long long v = strtoll(p, &e, 10);
        if (e == p || v < 0 || v >= limit)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: bad index in '%s'", path, key);
        (*idx)[i] = v;
    }
    *n = cnt;
    return OTL_OK;
}

/* A hyper-parameter the caller gave explicitly on resume (o->resume_given) must be the checkpoint's:
 * the run continues with the checkpoint's values, so a different one would be silently dropped. */
static otl_status check_given_hp(const otl_fit_opts *user, const otl_fit_opts *ck, const char *spath, otl_error *err)
{
    for (int i = 0; i < N_HP; i++) {
        const char *key = hp_table[i].key;
        if (strcmp(key, "epochs") == 0 || !otl_list_has(user->resume_given, ',', key))
            continue;
        /* the option of `onnx-tl train` that sets it */
        char flag[40];
        snprintf(flag, sizeof flag, "%s",
                 strcmp(key, "bn_frozen") == 0 ? "bn" : strcmp(key, "val_frac") == 0 ? "val-split" : key);
        for (char *c = flag; *c; c++)
            *c = *c == '_' ? '-' : *c;
        const char *a = (const char *)user + hp_table[i].off, *b = (const char *)ck + hp_table[i].off;
        double va = 0, vb = 0;
        int same;
        switch (hp_table[i].type) {
        case HP_INT: va = *(const int *)a, vb = *(const int *)b; same = va == vb; break;
        case HP_I64: va = (double)*(const int64_t *)a, vb = (double)*(const int64_t *)b;
            same = *(const int64_t *)a == *(const int64_t *)b; break;
        case HP_U64: va = (double)*(const uint64_t *)a, vb = (double)*(const uint64_t *)b;
            same = *(const uint64_t *)a == *(const uint64_t *)b; break;
        case HP_DBL: va = *(const double *)a, vb = *(const double *)b; same = va == vb; break;
        case HP_FLT: va = *(const float *)a, vb = *(const float *)b; same = va == vb; break;
        default: {
            const char *sa = *(const char *const *)a, *sb = *(const char *const *)b;
            same = strcmp(sa ? sa : "", sb ? sb : "") == 0;
            if (!same)
                return otl_error_set(err, OTL_ERR_INPUT, "%s: --%s '%s' differs from the checkpoint's '%s' (%s): "
                                     "--resume continues with the checkpoint's hyper-parameters; only --epochs may "
                                     "change", spath, flag, sa ? sa : "", sb ? sb : "", key);
            continue;
        }
        }
        if (!same)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: --%s differs from the checkpoint (%s %.9g, given %.9g): "
                                 "--resume continues with the checkpoint's hyper-parameters; only --epochs may change",
                                 spath, flag, key, vb, va);
    }
    return OTL_OK;
}

/* Hyper-parameters and state from DIR/state.txt; the model file name in *model (malloc'd). */
static otl_status ckpt_read_state(fit *f, const char *dir, kv_list *l, char **model, otl_error *err)
{
    char *spath = path_join(dir, "state.txt");
    if (!spath)
        return nomem(err);
    otl_status st = kv_read(l, spath, err);
    if (st) {
        free(spath);
        return st;
    }
    otl_fit_opts user = f->h; /* the caller's values, before the checkpoint's replace them */
    for (int i = 0; i < N_HP && !st; i++) {
        char key[64];
        snprintf(key, sizeof key, "hp.%s", hp_table[i].key);
        char *p = (char *)&f->h + hp_table[i].off;
        const char *s = kv_get(l, key);
        long long iv;
        double dv;
        if (!s && strcmp(hp_table[i].key, "precision") == 0) { /* checkpoints from before bf16: fp32 */
            *(int *)p = OTL_PRECISION_FP32;
            continue;
        }
        if (!s && strcmp(hp_table[i].key, "cache_dtype") == 0) { /* checkpoints from before --cache-dtype */
            *(int *)p = OTL_CACHE_FP32;
            continue;
        }
        if (!s) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: missing '%s'", spath, key);
            break;
        }
        switch (hp_table[i].type) {
        case HP_INT:
            if (kv_ll(l, key, &iv))
                *(int *)p = (int)iv;
            else
                st = OTL_ERR_INPUT;
            break;
        case HP_I64:
            if (kv_ll(l, key, &iv))
                *(int64_t *)p = iv;
            else
                st = OTL_ERR_INPUT;
            break;
        case HP_U64:
            *(uint64_t *)p = strtoull(s, NULL, 10);
            break;
        case HP_DBL:
            if (kv_dbl(l, key, &dv))
                *(double *)p = dv;
            else
                st = OTL_ERR_INPUT;
            break;
        case HP_FLT:
            if (kv_dbl(l, key, &dv))
                *(float *)p = (float)dv;
            else
                st = OTL_ERR_INPUT;
            break;
        default:
            free(f->h_augment);
            f->h_augment = *s ? otl_strdup(s) : NULL;
            *(const char **)p = f->h_augment;
            break;
        }
        if (st)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: bad value of '%s'", spath, key);
    }
    if (!st && user.resume_given)
        st = check_given_hp(&user, &f->h, spath, err);
    long long v[10];
    double d[7];
    if (!st && !(kv_ll(l, "serial", &v[0]) && kv_ll(l, "epoch", &v[1]) && kv_ll(l, "batch_pos", &v[2]) &&
                 kv_ll(l, "step", &v[3]) && kv_ll(l, "sum_correct", &v[4]) && kv_ll(l, "sum_seen", &v[5]) &&
                 kv_ll(l, "best_epoch", &v[6]) && kv_ll(l, "bad_epochs", &v[7]) && kv_ll(l, "n_unfrozen", &v[8]) &&
                 kv_ll(l, "out_written", &v[9]) && kv_dbl(l, "sum_loss", &d[0]) && kv_dbl(l, "best_acc", &d[1]) &&
                 kv_dbl(l, "plateau_lr", &d[2]) && kv_dbl(l, "plateau_best", &d[3]) &&
                 kv_get(l, "plateau_bad") && kv_get(l, "model") && kv_get(l, "optim") && kv_get(l, "base_sha256")))
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: incomplete checkpoint state", spath);
    if (!st && (v[0] < 0 || v[0] > 1000000000 || v[1] < 0 || v[1] > 1000000000 || v[2] < 0 || v[3] < 0 || v[4] < 0 ||
                v[5] < 0 || v[6] < 0 || v[7] < 0 || v[8] < 0 || v[8] > 1000000000 ||
                f->h.cache_dtype < OTL_CACHE_FP32 || f->h.cache_dtype > OTL_CACHE_BF16 ||
                f->h.optim.kind < OTL_OPT_SGD || f->h.optim.kind > OTL_OPT_ADAMW || f->h.schedule < OTL_SCHED_CONSTANT ||
                f->h.schedule > OTL_SCHED_PLATEAU || f->h.epochs < 1 || f->h.batch < 1 || !(f->h.lr > 0) ||
                !isfinite(f->h.lr) || !(f->h.val_frac >= 0 && f->h.val_frac < 1) ||
                strchr(kv_get(l, "model"), '/') || strchr(kv_get(l, "optim"), '/')))
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: checkpoint state out of range (corrupt?)", spath);
    otl_augment aug;
    otl_error e2 = {0};
    if (!st && f->h.augment && otl_augment_parse(f->h.augment, &aug, &e2))
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: bad value of 'hp.augment': %s", spath, e2.msg);
    if (!st) {
        f->serial = (int)v[0];
        f->epoch = (int)v[1];
        f->batch_pos = v[2];
        f->step = v[3];
        f->sum_correct = v[4];
        f->sum_seen = v[5];
        f->best_epoch = (int)v[6];
        f->bad_epochs = (int)v[7];
        f->n_unfrozen = (int)v[8];
        f->out_written = (int)v[9];
        f->sum_loss = d[0];
        f->best_acc = d[1];
        for (int i = 0; i < 4; i++) {
            char k[32];
            snprintf(k, sizeof k, "out_metric%d", i);
            if (!kv_dbl(l, k, &f->out_metrics[i]))
                f->out_metrics[i] = NAN;
        }
        snprintf(f->base_sha, sizeof f->base_sha, "%s", kv_get(l, "base_sha256"));
        if (kv_get(l, "data_path") && !(f->prov_data = otl_strdup(kv_get(l, "data_path"))))
            st = nomem(err);
        if (!st && kv_get(l, "out_path") && !(f->out_path = otl_strdup(kv_get(l, "out_path"))))
            st = nomem(err);
        *model = path_join(dir, kv_get(l, "model"));
        if (!st && !*model)
            st = nomem(err);
    }
    free(spath);
    return st;
}

static otl_status ckpt_read_optim(fit *f, const char *dir, const kv_list *l, otl_error *err)
{
    char *opath = path_join(dir, kv_get(l, "optim"));
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!opath)
        return nomem(err);
    otl_status st = otl_read_file(opath, (size_t)1 << 40, &buf, &len, err);
    otl_optim *o = otl_trainer_optim(f->tr);
    const otl_train_graph *tg = otl_trainer_graph(f->tr);
    size_t pos = strlen(OPTIM_MAGIC);
    int64_t hdr[3];
    if (!st && (len < pos + sizeof hdr || memcmp(buf, OPTIM_MAGIC, pos) != 0))
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: not an onnx-tl optimizer state", opath);
    if (!st) {
        memcpy(hdr, buf + pos, sizeof hdr);
        pos += sizeof hdr;
        int has_m = (hdr[2] & 1) != 0, has_v = (hdr[2] & 2) != 0;
        if (has_m != (o->m != NULL) || has_v != (o->v != NULL) || hdr[0] != o->n)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: optimizer state does not match the optimizer", opath);
        o->step = hdr[1];
        for (int64_t r = 0; !st && r < hdr[0]; r++) {
            int64_t rec[3];
            if (len - pos < sizeof rec) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: truncated", opath);
                break;
            }
            memcpy(rec, buf + pos, sizeof rec);
            pos += sizeof rec;
            size_t need = (size_t)rec[0] + (size_t)(has_m + has_v) * (size_t)rec[1] * sizeof(float);
            if (rec[0] < 0 || rec[1] < 0 || rec[0] > (int64_t)len || rec[1] > (int64_t)len || len - pos < need) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: truncated", opath);
                break;
            }
            int i = -1;
            for (int k = 0; k < tg->n_params && i < 0; k++)
                if (strlen(tg->params[k]) == (size_t)rec[0] && memcmp(tg->params[k], buf + pos, (size_t)rec[0]) == 0)
                    i = k;
            pos += (size_t)rec[0];
            if (i < 0 || o->numel[i] != rec[1]) {
                st = otl_error_set(err, OTL_ERR_INPUT, "%s: parameter %lld does not match the model", opath,
                                   (long long)r);
                break;
            }
            o->steps[i] = rec[2];
            size_t b = (size_t)rec[1] * sizeof(float);
            if (has_m) {
                memcpy(o->m + o->offset[i], buf + pos, b);
                pos += b;
            }
            if (has_v) {
                memcpy(o->v + o->offset[i], buf + pos, b);
                pos += b;
            }
        }
    }
    free(buf);
    free(opath);
    return st;
}

/* ------------------------------------------------------------ set-up */

static otl_status open_data(fit *f, otl_error *err)
{
    const otl_graph *g = f->cur->graph;
    const otl_value *in = NULL;
    for (int i = 0; i < g->n_inputs && !in; i++)
        if (!otl_graph_find_init(g, g->inputs[i]->name))
            in = g->inputs[i];
    if (!in)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input", f->file);
    f->input = in->name;
    otl_dataset_opts dopts;
    otl_dataset_opts_init(&dopts);
    dopts.skip_bad = f->h.skip_bad;
    dopts.threads = f->h.threads;
    otl_error pe = {0};
    int have_pp = otl_preprocess_get(f->cur, &f->pp, &pe) == OTL_OK;
    dopts.pp = have_pp ? &f->pp : NULL;
    if (in->has_type && in->is_tensor) {
        dopts.dtype = in->dtype;
        if (in->has_shape && in->rank >= 1 && in->rank - 1 <= OTL_DATASET_MAX_RANK) {
            dopts.rank = in->rank - 1;
            for (int i = 1; i < in->rank; i++)
                dopts.dims[i - 1] = in->dims[i].value > 0 ? in->dims[i].value : -1;
        }
    }
    struct stat sb;
    int is_dir = stat(f->h.data, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_dir && !have_pp) { /* image folders need the preprocessing */
        *err = pe;
        return pe.code ? pe.code : OTL_ERR_INPUT;
    }
    otl_status st = otl_dataset_open(&f->dtrain, f->h.data, &dopts, err);
    if (st)
        return st;
    f->images = otl_dataset_is_images(f->dtrain);
    if (f->h.val && (st = otl_dataset_open(&f->dval, f->h.val, &dopts, err)))
        return st;
    if (!f->h.val)
        f->dval = f->dtrain;
    int rank;
    otl_dataset_sample(f->dtrain, &f->s_dtype, &rank, f->s_dims);
    f->s_rank = rank;
    f->s_bytes = otl_dataset_sample_bytes(f->dtrain);
    if (f->dval != f->dtrain) {
        int dt, r;
        int64_t dims[OTL_DATASET_MAX_RANK];
        otl_dataset_sample(f->dval, &dt, &r, dims);
        if (dt != f->s_dtype || r != rank || memcmp(dims, f->s_dims, (size_t)r * sizeof *dims) != 0)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: samples differ in type or shape from those of %s", f->h.val,
                                 f->h.data);
    }
    const char *skipped = otl_dataset_skipped(f->dtrain);
    if (*skipped && f->h.msg)
        fprintf(f->h.msg, "onnx-tl: skipped unreadable items of %s:\n%s", f->h.data, skipped);
    if (f->dval != f->dtrain && *(skipped = otl_dataset_skipped(f->dval)) && f->h.msg)
        fprintf(f->h.msg, "onnx-tl: skipped unreadable items of %s:\n%s", f->h.val, skipped);
    return OTL_OK;
}

/* Class count and names: data vs the model's output size and stored labels. */
static otl_status check_classes(fit *f, otl_error *err)
{
    const otl_graph *g = f->cur->graph;
    otl_head h;
    otl_find_classifier(g, &h);
    int64_t C = h.found ? h.classes : -1;
    const otl_value *ov = g->outputs[0];
    if (C <= 0 && ov->has_shape && ov->rank == 2 && ov->dims[1].value > 0)
        C = ov->dims[1].value;
    if (ov->has_type && ov->has_shape && ov->rank != 2)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: output '%s' has rank %d; train needs class scores of shape (N, classes) (add a "
                             "classifier with swap-head --classes N [--at TENSOR])",
                             f->file, ov->name, ov->rank);
    f->n_classes = C;
    int nd = otl_dataset_n_classes(f->dtrain);
    const char *what = f->h.data;
    if (C > 0 && (f->images ? nd != C : nd > C))
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: the data has %d classes but the model %s outputs %lld (use swap-head --classes %d)",
                             what, nd, f->file, (long long)C, nd);
    if (f->dval != f->dtrain) {
        int nv = otl_dataset_n_classes(f->dval);
        int bad = f->images ? nv != nd : (C > 0 && nv > C);
        for (int c = 0; !bad && f->images && c < nd; c++)
            bad = strcmp(otl_dataset_class_name(f->dval, c), otl_dataset_class_name(f->dtrain, c)) != 0;
        if (bad)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: the validation classes differ from those of %s", f->h.val,
                                 f->h.data);
    }
    char **labels = NULL;
    int n_labels = 0;
    otl_status st = otl_model_labels(f->cur, &labels, &n_labels, err);
    if (st)
        return st;
    if (f->images && n_labels > 0) {
        int bad = n_labels != nd;
        for (int c = 0; !bad && c < nd; c++)
            bad = strcmp(labels[c], otl_dataset_class_name(f->dtrain, c)) != 0;
        if (bad) {
            char a[256] = "", b[256] = "";
            for (int c = 0; c < nd && strlen(a) < 200; c++)
                snprintf(a + strlen(a), sizeof a - strlen(a), "%s%s", c ? ", " : "",
                         otl_dataset_class_name(f->dtrain, c));
            for (int c = 0; c < n_labels && strlen(b) < 200; c++)
                snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", c ? ", " : "", labels[c]);
            free(labels);
            return otl_error_set(err, OTL_ERR_INPUT,
                                 "%s: class directories (%s) differ from the labels stored in %s (%s)", what, a,
                                 f->file, b);
        }
    }
    free(labels);
    if (f->images && n_labels == 0) { /* store the class names */
        size_t len = 1;
        for (int c = 0; c < nd; c++)
            len += strlen(otl_dataset_class_name(f->dtrain, c)) + 1;
        char *t = malloc(len);
        if (!t)
            return nomem(err);
        t[0] = 0;
        for (int c = 0; c < nd; c++) {
            strcat(t, otl_dataset_class_name(f->dtrain, c));
            if (c + 1 < nd)
                strcat(t, "\n");
        }
        st = otl_model_meta_set(f->cur, "onnx_tl.labels", t, err);
        free(t);
    }
    return st;
}

static otl_status open_log(fit *f, int resumed, otl_error *err)
{
    if (!f->h.log)
        return OTL_OK;
    if (resumed) { /* keep the lines of the epochs the checkpoint holds */
        uint8_t *buf = NULL;
        size_t len = 0;
        otl_error e2 = {0};
        if (otl_read_file(f->h.log, (size_t)1 << 30, &buf, &len, &e2) == OTL_OK) {
            size_t keep = 0;
            int lines = 0;
            while (keep < len && lines < f->epoch) {
                uint8_t *nl = memchr(buf + keep, '\n', len - keep);
                if (!nl)
                    break;
                keep = (size_t)(nl - buf) + 1;
                lines++;
            }
            otl_status st = otl_write_file_atomic(f->h.log, buf, keep, err);
            free(buf);
            if (st)
                return st;
        }
    }
    f->log = fopen(f->h.log, resumed ? "a" : "w");
    if (!f->log)
        return otl_error_set(err, OTL_ERR_IO, "%s: cannot open the log for writing", f->h.log);
    return OTL_OK;
}

static void log_epoch(fit *f, int epoch, double lr, const double *mtr, double secs, double ips)
{
    if (!f->log)
        return;
    otl_json j;
    otl_json_init(&j, f->log);
    otl_json_obj(&j);
    otl_json_key(&j, "epoch");
    otl_json_int(&j, epoch);
    otl_json_key(&j, "lr");
    otl_json_num(&j, lr);
    static const char *const keys[] = {"train_loss", "train_acc", "val_loss", "val_acc"};
    for (int i = 0; i < 4; i++) {
        otl_json_key(&j, keys[i]);
        otl_json_num(&j, mtr[i]);
    }
    otl_json_key(&j, "seconds");
    otl_json_num(&j, secs);
    otl_json_key(&j, "images_per_s");
    otl_json_num(&j, ips);
    otl_json_obj_end(&j); /* ends the line */
    fflush(f->log);
}

static void progress_bar(fit *f, int64_t done, int64_t total, double loss)
{
    if (!f->h.msg || f->h.progress != OTL_FIT_BAR)
        return;
    char bar[31];
    int w = total ? (int)(30 * done / total) : 30;
    for (int i = 0; i < 30; i++)
        bar[i] = i < w ? '=' : (i == w ? '>' : ' ');
    bar[30] = 0;
    fprintf(f->h.msg, "\repoch %d/%d [%s] %lld/%lld loss %.4f ", f->epoch + 1, f->h.epochs, bar, (long long)done,
            (long long)total, loss);
    fflush(f->h.msg);
}

/* ------------------------------------------------------------ the loop */

static void shuffle(int64_t *perm, int64_t n, uint64_t seed, int epoch)
{
    otl_rng r;
    otl_rng_seed(&r, seed, 0x5eed0000u + (uint64_t)epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)otl_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static otl_status run_epochs(fit *f, otl_fit_result *r, otl_error *err)
{
    int64_t *perm = malloc(((size_t)f->n_tr + 1) * sizeof *perm);
    if (!perm)
        return nomem(err);
    otl_status st = OTL_OK;
    for (; f->epoch < f->h.epochs && !st; f->epoch++) {
        double t0 = now_s() - f->cache_secs; /* the epoch that needed the cache pays for it */
        f->cache_secs = 0;
        if (f->batch_pos == 0) {
            f->sum_loss = 0;
            f->sum_correct = f->sum_seen = 0;
            if (f->h.unfreeze_every > 0 && f->epoch > 0 && f->epoch % f->h.unfreeze_every == 0) {
                if (unfreeze_next(f, err, &st))
                    f->n_unfrozen++;
                if (st)
                    break;
            }
        }
        memcpy(perm, f->tr_idx, (size_t)f->n_tr * sizeof *perm);
        if (!f->h.no_shuffle)
            shuffle(perm, f->n_tr, f->h.seed, f->epoch);
        uint64_t aug_seed = f->h.seed * 0x9E3779B97F4A7C15ull + (uint64_t)f->epoch + 1;
        int64_t seen0 = f->sum_seen;
        double lr = 0;
        for (; f->batch_pos < f->steps_per_epoch; f->batch_pos++) {
            int64_t b0 = f->batch_pos * f->h.batch;
            int64_t n = f->n_tr - b0 < f->h.batch ? f->n_tr - b0 : f->h.batch;
            otl_tensor *x = NULL, *y = NULL;
            const otl_augment *aug = f->aug.enabled ? &f->aug : NULL;
            if (f->cut)
                st = cache_batch(f, perm + b0, n, &x, &y, err);
            else
                st = batch_tensors(f, f->dtrain, perm + b0, n, aug, aug_seed, &x, &y, err);
            if (st)
                break;
            if (!f->cut && f->batch_pos + 1 < f->steps_per_epoch) { /* the next batch is assembled during this step */
                int64_t nb0 = b0 + f->h.batch;
                int64_t nn = f->n_tr - nb0 < f->h.batch ? f->n_tr - nb0 : f->h.batch;
                if ((st = otl_dataset_prefetch(f->dtrain, perm + nb0, nn, aug, aug_seed, err)))
                    break;
            }
            lr = otl_schedule_lr(&f->sched, f->step);
            double mom = otl_schedule_momentum(&f->sched, f->step);
            otl_optim *opt = otl_trainer_optim(f->tr);
            if (mom >= 0 && opt->o.kind == OTL_OPT_SGD && opt->o.momentum > 0)
                opt->o.momentum = (float)mom;
            else if (mom >= 0 && opt->o.kind != OTL_OPT_SGD)
                opt->o.beta1 = (float)mom;
            float loss = 0;
            const otl_tensor *in[1] = {x};
            st = otl_trainer_step(f->tr, in, 1, y, (float)lr, &loss, err);
            if (!st && !isfinite(loss)) {
                char kept[256];
                otl_error e2 = {0};
                if (flush_out(f, &e2) && f->h.msg) /* the last good epoch's model, before reporting it kept */
                    fprintf(f->h.msg, "onnx-tl: %s\n", e2.msg);
                if (f->out_written)
                    snprintf(kept, sizeof kept, "%s keeps the model of epoch %d", f->h.out, f->out_written);
                else
                    snprintf(kept, sizeof kept, "no model was written to %s", f->h.out);
                st = otl_error_set(err, OTL_ERR_INPUT,
                                   "%s: non-finite loss (%s) at epoch %d, step %lld (batch %lld of %lld, lr %g): "
                                   "training diverged; %s",
                                   f->file, isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf", f->epoch + 1,
                                   (long long)f->step + 1,
                                   (long long)f->batch_pos + 1, (long long)f->steps_per_epoch, lr, kept);
            }
            if (!st) {
                const otl_tensor *pred = otl_trainer_prediction(f->tr);
                const int64_t *yy = y->data;
                if (pred && pred->rank == 2 && pred->dtype == OTL_DTYPE_FLOAT && pred->dims[0] == n) {
                    int64_t C = pred->dims[1];
                    for (int64_t i = 0; i < n; i++)
                        f->sum_correct += argmax_row((const float *)pred->data + i * C, C) == yy[i];
                }
                f->sum_loss += (double)loss * (double)n;
                f->sum_seen += n;
                f->step++;
            }
            if (st)
                break;
            progress_bar(f, f->batch_pos + 1, f->steps_per_epoch, f->sum_loss / (double)f->sum_seen);
            if (f->h.interrupt && *f->h.interrupt) {
                f->batch_pos++;
                if (f->h.msg && f->h.progress == OTL_FIT_BAR)
                    fputc('\n', f->h.msg);
                r->interrupted = 1;
                st = flush_out(f, err);
                if (!st)
                    st = ckpt_write(f, err);
                if (!st && f->h.checkpoint)
                    st = otl_error_set(err, OTL_ERR_INPUT,
                                       "interrupted at epoch %d, step %lld: checkpoint written to %s (continue with "
                                       "--resume %s)",
                                       f->epoch + 1, (long long)f->step, f->h.checkpoint, f->h.checkpoint);
                else if (!st)
                    st = otl_error_set(err, OTL_ERR_INPUT,
                                       "interrupted at epoch %d, step %lld (no --checkpoint: progress not saved)%s%s",
                                       f->epoch + 1, (long long)f->step,
                                       f->out_written ? "; best model so far in " : "", f->out_written ? f->h.out : "");
                break;
            }
        }
        if (st)
            break;
        if (f->h.msg && f->h.progress == OTL_FIT_BAR)
            fputs("\r\033[K", f->h.msg); /* the summary line replaces the bar */
        lr = otl_schedule_lr(&f->sched, f->step > 0 ? f->step - 1 : 0); /* the epoch's last step (also after a
                                                                           resume at the end of an epoch) */
        double mtr[4] = {f->sum_seen ? f->sum_loss / (double)f->sum_seen : NAN,
                         f->sum_seen ? (double)f->sum_correct / (double)f->sum_seen : NAN, NAN, NAN};
        double secs = now_s() - t0;
        double ips = secs > 0 ? (double)(f->sum_seen - seen0) / secs : 0;
        if (f->n_va && (st = evaluate(f, &mtr[2], &mtr[3], err)))
            break;
        otl_schedule_epoch_end(&f->sched, f->n_va ? mtr[2] : mtr[0]);
        int improved = 0;
        if (f->n_va) {
            if (f->best_epoch == 0 || mtr[3] > f->best_acc) {
                f->best_acc = mtr[3];
                f->best_epoch = f->epoch + 1;
                f->bad_epochs = 0;
                improved = 1;
            } else {
                f->bad_epochs++;
            }
        }
        if ((!f->n_va || improved) && (st = make_out(f, f->epoch + 1, mtr, err)))
            break;
        if ((improved || f->epoch + 1 >= f->h.epochs) && (st = flush_out(f, err)))
            break;
        secs = now_s() - t0;
        if (f->h.msg && f->h.progress != OTL_FIT_QUIET) {
            fprintf(f->h.msg, "epoch %d/%d  lr %.3g  train_loss %.4f  train_acc %.4f", f->epoch + 1, f->h.epochs, lr,
                    mtr[0], mtr[1]);
            if (f->n_va)
                fprintf(f->h.msg, "  val_loss %.4f  val_acc %.4f%s", mtr[2], mtr[3], improved ? "  *" : "");
            fprintf(f->h.msg, "  %.1fs  %.0f img/s\n", secs, ips);
        }
        memcpy(&r->train_loss, mtr, sizeof mtr); /* train_loss, train_acc, val_loss, val_acc in order */
        r->epochs_done = f->epoch + 1;
        int stop = f->n_va && f->h.early_stop > 0 && f->bad_epochs >= f->h.early_stop;
        f->batch_pos = 0;
        /* the log line before the checkpoint: a run killed between the two resumes with the log cut
           back to the checkpoint's epochs, never with a line missing */
        log_epoch(f, f->epoch + 1, lr, mtr, secs, ips);
        f->epoch++;
        st = ckpt_write(f, err);
        f->epoch--;
        if (!st && stop) {
            r->stopped_early = 1;
            if (f->h.msg && f->h.progress != OTL_FIT_QUIET)
                fprintf(f->h.msg, "early stop: no better validation accuracy for %d epochs (best %.4f at epoch %d)\n",
                        f->bad_epochs, f->best_acc, f->best_epoch);
            f->epoch++;
            break;
        }
    }
    free(perm);
    if (!st && f->out_written && !f->out_now)
        st = out_from_before_resume(f, err);
    otl_error e2 = {0};
    if (st && f->pend && flush_out(f, &e2) && f->h.msg) /* stopped by an error: keep the last epoch's model */
        fprintf(f->h.msg, "onnx-tl: %s\n", e2.msg);
    if (!st)
        st = flush_out(f, err);
    return st;
}

otl_status otl_fit(const char *model_path, const otl_fit_opts *o, otl_fit_result *res, otl_error *err)
{
    otl_fit_result rdummy;
    otl_fit_result *r = res ? res : &rdummy;
    memset(r, 0, sizeof *r);
    r->best_val_acc = r->train_loss = r->train_acc = r->val_loss = r->val_acc = NAN;
    fit f;
    memset(&f, 0, sizeof f);
    f.h = *o;
    f.file = model_path;
    kv_list kv;
    memset(&kv, 0, sizeof kv);
    char *ck_model = NULL;
    otl_status st = OTL_OK;
    if (o->resume) {
        if ((st = ckpt_read_state(&f, o->resume, &kv, &ck_model, err)))
            goto done;
        /* the run's own outputs and environment come from this invocation */
        f.h.data = o->data;
        f.h.val = o->val;
        f.h.out = o->out;
        f.h.log = o->log;
        f.h.checkpoint = o->checkpoint ? o->checkpoint : o->resume;
        if (o->resume_epochs > 0 && o->resume_epochs != f.h.epochs) {
            if (o->msg)
                fprintf(o->msg, "note: --epochs %d instead of the checkpoint's %d (schedules span the new total)\n",
                        o->resume_epochs, f.h.epochs);
            f.h.epochs = o->resume_epochs;
        }
        char sha[65];
        if ((st = file_sha256(model_path, sha, err)))
            goto done;
        if (strcmp(sha, f.base_sha) != 0) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: not the model the checkpoint in %s was started from",
                               model_path, o->resume);
            goto done;
        }
        st = otl_model_load(&f.cur, ck_model, NULL, err);
    } else {
        if (!(st = file_sha256(model_path, f.base_sha, err)))
            st = otl_model_load(&f.cur, model_path, NULL, err);
    }
    if (!st && o->preprocess) {
        /* over the model's preprocessing (stored or defaulted from its input), kept in the working
           model's metadata: the data pipeline, the feature cache's key, checkpoints and OUT use it */
        otl_preprocess pp;
        const char *what = o->preprocess_what ? o->preprocess_what : "preprocessing";
        if (o->resume)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: preprocessing cannot change on resume (the checkpoint's "
                               "model has its own)", what);
        else if (!(st = otl_preprocess_get(f.cur, &pp, err)) && !(st = otl_preprocess_parse(o->preprocess, &pp, what, err))) {
            char *pj = otl_preprocess_to_json(&pp);
            st = pj ? otl_model_meta_set(f.cur, "onnx_tl.preprocess", pj, err) : nomem(err);
            free(pj);
        }
    }
    if (!st && otl_model_meta_get(f.cur, "onnx_tl.pruned")) {
        /* the masks are the zeros of the base model (on resume too: a weight that training brought to
           exactly 0 is no pruned weight) */
        otl_model *base = NULL;
        if (!o->resume || !(st = otl_model_load(&base, model_path, NULL, err)))
            st = otl_prune_masks_get(base ? base : f.cur, &f.masks, err);
        otl_model_free(base);
        if (!st && f.masks && o->msg && o->progress != OTL_FIT_QUIET)
            fprintf(o->msg, "note: %d pruned weight tensor%s (onnx_tl.pruned): their zeros stay zero\n", f.masks->n,
                    f.masks->n == 1 ? "" : "s");
    }
    if (st)
        goto done;
    if (f.h.epochs < 1 || f.h.batch < 1 || !(f.h.lr > 0) || !(f.h.val_frac >= 0 && f.h.val_frac < 1)) {
        st = otl_error_set(err, OTL_ERR_USAGE, "train: epochs and batch must be >= 1, lr > 0, val fraction in [0, 1)");
        goto done;
    }
    if (f.h.augment && (st = otl_augment_parse(f.h.augment, &f.aug, err)))
        goto done;
    if ((st = otl_precision_check(f.h.precision, err))) /* before the data are decoded */
        goto done;
    if ((st = open_data(&f, err)) || (st = check_classes(&f, err)))
        goto done;
    if (o->resume) {
        const char *ds = kv_get(&kv, "data_sha256"), *vs = kv_get(&kv, "val_sha256");
        if (!ds || strcmp(ds, otl_dataset_hash(f.dtrain)) != 0 ||
            (f.h.val && (!vs || strcmp(vs, otl_dataset_hash(f.dval)) != 0)) || (!f.h.val && vs)) {
            st = otl_error_set(err, OTL_ERR_INPUT,
                               "%s: the data (%s%s%s) differ from those the checkpoint was made with", o->resume,
                               f.h.data, f.h.val ? ", " : "", f.h.val ? f.h.val : "");
            goto done;
        }
        int64_t n = otl_dataset_len(f.dtrain);
        if ((st = parse_split(&kv, "split_train", &f.tr_idx, &f.n_tr, n, o->resume, err)) ||
            (st = parse_split(&kv, "split_val", &f.va_idx, &f.n_va, f.h.val ? otl_dataset_len(f.dval) : n, o->resume,
                              err)))
            goto done;
    } else if (f.h.val) {
        f.n_tr = otl_dataset_len(f.dtrain);
        f.n_va = otl_dataset_len(f.dval);
        f.tr_idx = malloc(((size_t)f.n_tr + 1) * sizeof *f.tr_idx);
        f.va_idx = malloc(((size_t)f.n_va + 1) * sizeof *f.va_idx);
        if (!f.tr_idx || !f.va_idx) {
            st = nomem(err);
            goto done;
        }
        for (int64_t i = 0; i < f.n_tr; i++)
            f.tr_idx[i] = i;
        for (int64_t i = 0; i < f.n_va; i++)
            f.va_idx[i] = i;
    } else {
        st = otl_dataset_split(f.dtrain, f.h.val_frac, f.h.seed, &f.tr_idx, &f.n_tr, &f.va_idx, &f.n_va, err);
        if (st)
            goto done;
    }
    if (f.n_tr == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no training samples left after the validation split", f.h.data);
        goto done;
    }
    const otl_value *iv = otl_graph_find_value(f.cur->graph, f.input);
    int64_t fixed = iv && iv->has_shape && iv->rank >= 1 ? iv->dims[0].value : -1;
    if (fixed > 0 && (f.h.batch != fixed || f.n_tr % fixed != 0)) {
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: input '%s' has a fixed batch axis of %lld: training needs a dynamic batch axis "
                           "(re-export with dynamic_axes), or --batch %lld and a training set of a multiple of %lld "
                           "samples (%lld here)",
                           f.file, f.input, (long long)fixed, (long long)fixed, (long long)fixed, (long long)f.n_tr);
        goto done;
    }
    if (f.h.unfreeze_every > 0 || f.h.layer_lr_decay > 0) {
        if ((st = otl_param_blocks_get(f.cur, &f.blocks, err)))
            goto done;
    }
    if ((st = trainer_build(&f, err)) || (st = cache_setup(&f, err)))
        goto done;
    if (o->resume && (st = ckpt_read_optim(&f, o->resume, &kv, err)))
        goto done;
    f.steps_per_epoch = (f.n_tr + f.h.batch - 1) / f.h.batch;
    otl_schedule_init(&f.sched, f.h.schedule, f.h.lr, (int64_t)f.h.epochs * f.steps_per_epoch, f.steps_per_epoch);
    f.sched.warmup = f.h.schedule == OTL_SCHED_ONECYCLE ? 0 : f.h.warmup;
    f.sched.step_size = f.h.step_size > 0 ? f.h.step_size : (f.h.epochs / 3 > 1 ? f.h.epochs / 3 : 1);
    f.sched.gamma = f.h.gamma;
    f.sched.min_lr = f.h.min_lr;
    f.sched.plateau_patience = f.h.plateau_patience;
    f.sched.plateau_factor = f.h.plateau_factor;
    if (o->resume) {
        long long pb = 0;
        kv_dbl(&kv, "plateau_lr", &f.sched.plateau_lr);
        kv_dbl(&kv, "plateau_best", &f.sched.plateau_best);
        kv_ll(&kv, "plateau_bad", &pb);
        f.sched.plateau_bad = (int)pb;
    }
    /* fail before training when an output cannot be written */
    char *od = otl_dirname(f.h.out);
    int writable = od && access(od, W_OK) == 0;
    free(od);
    struct stat ost;
    if (stat(f.h.out, &ost) == 0 && S_ISDIR(ost.st_mode)) {
        st = otl_error_set(err, OTL_ERR_IO, "%s: the output model path is a directory", f.h.out);
        goto done;
    }
    if (!writable) {
        st = otl_error_set(err, OTL_ERR_IO, "%s: cannot write the output model there (directory missing or not "
                           "writable)", f.h.out);
        goto done;
    }
    int made_ckpt = 0; /* created here: removed again when the run fails before training */
    if (f.h.checkpoint && !o->resume) {
        if (mkdir(f.h.checkpoint, 0777) == 0)
            made_ckpt = 1;
        else if (errno != EEXIST) {
            st = otl_error_set(err, OTL_ERR_IO, "%s: cannot create the checkpoint directory: %s", f.h.checkpoint,
                               strerror(errno));
            goto done;
        }
        if (stat(f.h.checkpoint, &ost) != 0 || !S_ISDIR(ost.st_mode) || access(f.h.checkpoint, W_OK) != 0) {
            st = otl_error_set(err, OTL_ERR_IO, "%s: --checkpoint needs a writable directory",
                               f.h.checkpoint);
            goto done;
        }
        /* an older checkpoint there: continue its numbering so that its files are replaced */
        char *sp = path_join(f.h.checkpoint, "state.txt");
        kv_list old = {0};
        otl_error e2 = {0};
        long long serial;
        if (sp && kv_read(&old, sp, &e2) == OTL_OK && kv_ll(&old, "serial", &serial) && serial > 0 &&
            serial < INT32_MAX)
            f.serial = (int)serial;
        kv_free(&old);
        free(sp);
    }
    if (f.h.checkpoint && (ckpt_owns(f.h.checkpoint, f.h.out) || (f.h.log && ckpt_owns(f.h.checkpoint, f.h.log)))) {
        st = otl_error_set(err, OTL_ERR_USAGE, "%s: a checkpoint file name in %s (checkpoints replace or remove it); "
                           "choose another %s", ckpt_owns(f.h.checkpoint, f.h.out) ? f.h.out : f.h.log,
                           f.h.checkpoint, ckpt_owns(f.h.checkpoint, f.h.out) ? "-o" : "--log");
    }
    if (st || (st = open_log(&f, o->resume != NULL, err))) {
        if (made_ckpt)
            rmdir(f.h.checkpoint);
        goto done;
    }
    if (f.h.msg && f.h.progress != OTL_FIT_QUIET) {
        if (o->resume)
            fprintf(f.h.msg, "resuming from %s at epoch %d, step %lld (hyper-parameters from the checkpoint)\n",
                    o->resume, f.epoch + 1, (long long)f.step);
        fprintf(f.h.msg,
                "training %s: %lld training / %lld validation samples, %lld classes, %d trainable tensors, %s, "
                "lr %g (%s), batch %lld, %d epochs%s\n",
                f.file, (long long)f.n_tr, (long long)f.n_va, (long long)f.n_classes, otl_trainer_graph(f.tr)->n_params,
                opt_names[f.h.optim.kind], f.h.lr, otl_schedule_name(f.h.schedule), (long long)f.h.batch, f.h.epochs,
                f.h.precision == OTL_PRECISION_BF16 ? ", bf16 mixed precision" : "");
    }
    if (f.h.msg && f.h.early_stop > 0 && f.n_va == 0)
        fprintf(f.h.msg, "note: --early-stop needs validation data; it is ignored\n");
    st = run_epochs(&f, r, err);
    r->best_epoch = f.n_va ? f.best_epoch : f.out_written;
    r->best_val_acc = f.n_va && f.best_epoch ? f.best_acc : NAN;
    if (!st && f.h.msg && f.h.progress != OTL_FIT_QUIET) {
        if (f.n_va)
            fprintf(f.h.msg, "wrote %s: epoch %d, validation accuracy %.4f\n", f.h.out, f.best_epoch, f.best_acc);
        else
            fprintf(f.h.msg, "wrote %s: epoch %d (no validation data)\n", f.h.out, f.out_written);
    }
done:
    if (f.log)
        fclose(f.log);
    kv_free(&kv);
    free(ck_model);
    otl_param_blocks_free(f.blocks);
    otl_trainer_free(f.tr);
    cache_free(&f);
    otl_tensor_free(f.bx);
    otl_tensor_free(f.cx);
    otl_tensor_free(f.by);
    if (f.dval != f.dtrain)
        otl_dataset_free(f.dval);
    otl_dataset_free(f.dtrain);
    free(f.tr_idx);
    free(f.va_idx);
    free(f.h_augment);
    free(f.prov_data);
    otl_model_free(f.cur);
    otl_model_free(f.pend);
    free(f.out_path);
    otl_prune_masks_free(f.masks);
    return st;
}
