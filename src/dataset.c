/* dataset.c - training data: ImageFolder directories and .npz archives, stratified seeded
 * splits that keep duplicates together, batch assembly (OpenMP over items, optional
 * augmentation) and a one-batch background prefetch. Contract in include/onnxtl_data.h. */
#include "onnxtl_data.h"
#include "src/hash.h"
#include "src/util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define DS_MAX_FILE (1u << 30)         /* 1 GiB per image file */
#define DS_DEFAULT_CACHE (2LL << 30)   /* 2 GiB of decoded images */
#define DS_MAX_CLASSES (1 << 20)

enum { DS_NPZ = 0, DS_FOLDER = 1 };

typedef struct ds_prefetch {
    pthread_t th;        /* one worker for the data set's life, started by the first prefetch */
    int started, quit;
    int job;             /* a batch is being made (under mu; cv signals changes) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active;          /* a batch was requested and not yet waited for */
    int ready;           /* x, y, st hold a prepared batch */
    int64_t *idx, n;
    otl_augment aug;
    int has_aug;
    uint64_t seed;
    uint8_t *x;          /* n * sample_bytes */
    int64_t *y;
    size_t cap_x, cap_y; /* bytes allocated */
    otl_error err;
    otl_status st;
} ds_prefetch;

struct otl_dataset {
    int kind;
    char *path;
    int64_t n;
    int n_classes;
    char **class_names;
    int64_t *labels;
    uint64_t *hashes;
    char hash_hex[65];
    char *skipped;
    size_t skipped_len, skipped_cap;
    int threads, prefetch_threads;
    /* one sample as the model sees it */
    int dtype, rank;
    int64_t dims[OTL_DATASET_MAX_RANK];
    size_t sample_bytes;
    /* .npz */
    otl_tensor *x;
    char **names; /* lazily made "x[i]" */
    pthread_mutex_t names_mu;
    int aug_layout; /* -1: unknown, 0: CHW, 1: HWC (from opts.pp) */
    /* folders */
    char **files;
    otl_preprocess pp;
    int nchan;
    size_t img_bytes;   /* H * W * nchan */
    int64_t n_cached;   /* items [0, n_cached) have a cache slot */
    uint8_t *cache;
    atomic_uchar *cstate; /* per slot: 0 empty, 1 being filled, 2 filled */
    int lazy;
    ds_prefetch pf;
    /* per-thread scratch of batch_impl (an undecoded image, its float copy, augmentation's source),
       grown before a parallel region, so that batches allocate nothing once it is big enough */
    float *scr;
    size_t scr_floats;  /* per thread */
    int scr_threads;
};

/* ------------------------------------------------------------ small helpers */

static int ds_threads(const otl_dataset *d) { return d->threads > 0 ? d->threads : omp_get_max_threads(); }

static int skipped_add(otl_dataset *d, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0)
        return 0;
    size_t len = strlen(line);
    if (!otl_grow((void **)&d->skipped, 1, &d->skipped_cap, d->skipped_len + len + 2))
        return -1;
    memcpy(d->skipped + d->skipped_len, line, len);
    d->skipped_len += len;
    d->skipped[d->skipped_len++] = '\n';
    d->skipped[d->skipped_len] = 0;
    return 0;
}

static void put64(otl_sha256 *s, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    otl_sha256_update(s, b, 8);
}

static void ds_compute_hash(otl_dataset *d)
{
    otl_sha256 s;
    otl_sha256_init(&s);
    otl_sha256_update(&s, "onnx-tl dataset 1", 18);
    put64(&s, (uint64_t)d->kind);
    put64(&s, (uint64_t)d->dtype);
    put64(&s, (uint64_t)d->rank);
    for (int i = 0; i < d->rank; i++)
        put64(&s, (uint64_t)d->dims[i]);
    if (d->kind == DS_FOLDER) {
        char *pj = otl_preprocess_to_json(&d->pp);
        if (pj)
            otl_sha256_update(&s, pj, strlen(pj) + 1);
        free(pj);
    }
    put64(&s, (uint64_t)d->n_classes);
    for (int c = 0; c < d->n_classes; c++)
        otl_sha256_update(&s, d->class_names[c], strlen(d->class_names[c]) + 1);
    put64(&s, (uint64_t)d->n);
    for (int64_t i = 0; i < d->n; i++) {
        put64(&s, (uint64_t)d->labels[i]);
        put64(&s, d->hashes[i]);
    }
    uint8_t dig[32];
    otl_sha256_final(&s, dig);
    otl_sha256_hex(dig, d->hash_hex);
}

static void shape_str(char *buf, size_t cap, int rank, const int64_t *dims)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "(");
    for (int i = 0; i < rank && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, dims[i] < 0 ? "%s?" : "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, rank == 1 ? ",)" : ")");
}

void otl_dataset_opts_init(otl_dataset_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < OTL_DATASET_MAX_RANK; i++)
        o->dims[i] = -1;
}

otl_status otl_dataset_opts_for_model(otl_dataset_opts *o, const otl_model *m, const otl_preprocess *pp,
                                      otl_error *err)
{
    otl_dataset_opts_init(o);
    o->pp = pp;
    const otl_graph *g = m->graph;
    const otl_value *v = NULL;
    for (int i = 0; g && i < g->n_inputs && !v; i++)
        if (!otl_graph_find_init(g, g->inputs[i]->name))
            v = g->inputs[i];
    if (!v)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input (every input has an initializer)",
                             m->path ? m->path : "model");
    if (v->has_type && v->is_tensor)
        o->dtype = v->dtype;
    if (v->has_type && v->is_tensor && v->has_shape && v->rank >= 1 && v->rank - 1 <= OTL_DATASET_MAX_RANK) {
        o->rank = v->rank - 1;
        for (int i = 1; i < v->rank; i++)
            o->dims[i - 1] = v->dims[i].value >= 0 && !v->dims[i].param ? v->dims[i].value : -1;
    }
    return OTL_OK;
}

/* ------------------------------------------------------------ .npz */

static int is_int_dtype(int t)
{
    return t == OTL_DTYPE_INT64 || t == OTL_DTYPE_INT32 || t == OTL_DTYPE_INT16 || t == OTL_DTYPE_INT8 ||
           t == OTL_DTYPE_UINT8 || t == OTL_DTYPE_UINT16 || t == OTL_DTYPE_UINT32 || t == OTL_DTYPE_UINT64;
}

/* Element i of an integer tensor as int64 (uint64 above INT64_MAX -> -1: refused as a class id). */
static int64_t int_at(const otl_tensor *t, int64_t i)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case OTL_DTYPE_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case OTL_DTYPE_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case OTL_DTYPE_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case OTL_DTYPE_INT8: return (int8_t)p[i];
    case OTL_DTYPE_UINT8: return p[i];
    case OTL_DTYPE_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case OTL_DTYPE_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case OTL_DTYPE_UINT64: { uint64_t v; memcpy(&v, p + 8 * i, 8); return v > (uint64_t)INT64_MAX ? -1 : (int64_t)v; }
    default: return -1;
    }
}

static float half_to_float(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) {
        if (m == 0)
            bits = s;
        else { /* subnormal */
            float f = ldexpf((float)m, -24);
            return s ? -f : f;
        }
    } else if (e == 31)
        bits = s | 0x7f800000u | (m << 13);
    else
        bits = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Convert x in place to `to` (float64/float16 -> float32, narrower ints -> int64). */
static otl_status convert_x(otl_tensor *x, int to, const char *path, otl_error *err)
{
    int64_t n = x->numel;
    int64_t nb = otl_dtype_nbytes(to, n);
    void *nd = malloc(nb > 0 ? (size_t)nb : 1);
    if (!nd)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory converting array 'x' to %s", path,
                             otl_dtype_name(to));
    if (to == OTL_DTYPE_FLOAT) {
        float *o = nd;
        if (x->dtype == OTL_DTYPE_DOUBLE)
            for (int64_t i = 0; i < n; i++) {
                double v;
                memcpy(&v, (uint8_t *)x->data + 8 * i, 8);
                o[i] = (float)v;
            }
        else
            for (int64_t i = 0; i < n; i++) {
                uint16_t v;
                memcpy(&v, (uint8_t *)x->data + 2 * i, 2);
                o[i] = half_to_float(v);
            }
    } else {
        int64_t *o = nd;
        for (int64_t i = 0; i < n; i++)
            o[i] = int_at(x, i);
    }
    free(x->data);
    x->data = nd;
    x->nbytes = (size_t)nb;
    x->dtype = to;
    return OTL_OK;
}

static otl_status open_npz(otl_dataset *d, const char *path, const otl_dataset_opts *o, otl_error *err)
{
    otl_tensor **arr = NULL;
    int na = 0;
    otl_status st = otl_npz_load(&arr, &na, path, err);
    if (st)
        return st;
    otl_tensor *x = NULL, *y = NULL;
    for (int i = 0; i < na; i++) {
        if (!strcmp(arr[i]->name, "x"))
            x = arr[i];
        else if (!strcmp(arr[i]->name, "y"))
            y = arr[i];
    }
    if (!x || !y) {
        char found[1024];
        size_t k = 0;
        found[0] = 0;
        for (int i = 0; i < na && k < sizeof found - 1; i++)
            k += (size_t)snprintf(found + k, sizeof found - k, "%s'%s'", i ? ", " : "", arr[i]->name);
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: no array '%s' (a data set .npz holds x (N, ...) and y (N,) int64; found %s)", path,
                           !x ? "x" : "y", na ? found : "no arrays");
        goto done;
    }
    char shp[256];
    if (y->rank != 1) {
        shape_str(shp, sizeof shp, y->rank, y->dims);
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'y' has shape %s, expected (N,) class ids", path, shp);
        goto done;
    }
    if (!is_int_dtype(y->dtype)) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'y' has dtype %s, expected int64 class ids", path,
                           otl_dtype_name(y->dtype));
        goto done;
    }
    if (x->rank < 1) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'x' is a scalar, expected (N, ...) samples", path);
        goto done;
    }
    if (x->dims[0] != y->dims[0]) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: arrays 'x' and 'y' differ in length (%lld vs %lld samples)", path,
                           (long long)x->dims[0], (long long)y->dims[0]);
        goto done;
    }
    if (x->dims[0] == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: no samples (arrays 'x' and 'y' are empty)", path);
        goto done;
    }
    if (x->rank - 1 > OTL_DATASET_MAX_RANK) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'x' has rank %d, at most %d supported", path, x->rank,
                           OTL_DATASET_MAX_RANK + 1);
        goto done;
    }
    if (x->dtype == OTL_DTYPE_STRING || x->dtype == OTL_DTYPE_BOOL || otl_dtype_size2(x->dtype) == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'x' has dtype %s, expected numbers", path,
                           otl_dtype_name(x->dtype));
        goto done;
    }
    if (o->dtype && x->dtype != o->dtype) {
        int ok = (o->dtype == OTL_DTYPE_FLOAT && (x->dtype == OTL_DTYPE_DOUBLE || x->dtype == OTL_DTYPE_FLOAT16)) ||
                 (o->dtype == OTL_DTYPE_INT64 && is_int_dtype(x->dtype) && x->dtype != OTL_DTYPE_UINT64);
        if (!ok) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'x' has dtype %s, the model input expects %s", path,
                               otl_dtype_name(x->dtype), otl_dtype_name(o->dtype));
            goto done;
        }
        if ((st = convert_x(x, o->dtype, path, err)))
            goto done;
    }
    int64_t n = x->dims[0];
    d->rank = x->rank - 1;
    for (int i = 0; i < d->rank; i++)
        d->dims[i] = x->dims[i + 1];
    d->dtype = x->dtype;
    if (o->rank > 0) {
        int bad = o->rank != d->rank;
        for (int i = 0; !bad && i < d->rank; i++)
            bad = o->dims[i] >= 0 && o->dims[i] != d->dims[i];
        if (bad) {
            char want[256];
            shape_str(shp, sizeof shp, d->rank, d->dims);
            shape_str(want, sizeof want, o->rank, o->dims);
            st = otl_error_set(err, OTL_ERR_INPUT,
                               "%s: array 'x' holds samples of shape %s, the model input expects %s", path, shp, want);
            goto done;
        }
    }
    d->sample_bytes = x->nbytes / (size_t)n;
    if (d->dtype == OTL_DTYPE_FLOAT || d->dtype == OTL_DTYPE_DOUBLE) { /* NaN/Inf would train or score as garbage */
        int64_t per = x->numel / n, bad = -1;
        for (int64_t i = 0; i < x->numel && bad < 0; i++)
            if (!isfinite(d->dtype == OTL_DTYPE_FLOAT ? (double)((const float *)x->data)[i]
                                                      : ((const double *)x->data)[i]))
                bad = i;
        if (bad >= 0) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'x': sample %lld holds a NaN or infinite value (element "
                               "%lld)", path, (long long)(bad / per), (long long)(bad % per));
            goto done;
        }
    }
    d->n = n;
    d->labels = malloc((size_t)n * sizeof *d->labels);
    d->hashes = malloc((size_t)n * sizeof *d->hashes);
    if (!d->labels || !d->hashes) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for %lld labels", path, (long long)n);
        goto done;
    }
    int64_t maxy = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = int_at(y, i);
        if (v < 0) {
            st = otl_error_set(err, OTL_ERR_INPUT,
                               "%s: array 'y': y[%lld] is negative or too large; class ids are 0..K-1", path,
                               (long long)i);
            goto done;
        }
        if (v >= DS_MAX_CLASSES) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: array 'y': y[%lld] = %lld, at most %d classes supported", path,
                               (long long)i, (long long)v, DS_MAX_CLASSES);
            goto done;
        }
        d->labels[i] = v;
        if (v > maxy)
            maxy = v;
    }
    d->n_classes = (int)maxy + 1;
    d->class_names = calloc((size_t)d->n_classes, sizeof *d->class_names);
    if (!d->class_names) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int c = 0; c < d->n_classes; c++) {
        char b[24];
        snprintf(b, sizeof b, "%d", c);
        if (!(d->class_names[c] = otl_strdup(b))) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    const uint8_t *xd = x->data;
    size_t sb = d->sample_bytes;
#pragma omp parallel for schedule(static) num_threads(ds_threads(d))
    for (int64_t i = 0; i < n; i++)
        d->hashes[i] = otl_hash64(xd + (size_t)i * sb, sb, 0);
    d->names = calloc((size_t)n, sizeof *d->names);
    if (!d->names) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    d->x = x;
    for (int i = 0; i < na; i++)
        if (arr[i] == x)
            arr[i] = NULL;
done:
    otl_tensors_free(arr, na);
    return st;
}

/* ------------------------------------------------------------ image folders */

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *s)
{
    size_t n = strlen(s);
    return (n > 4 && (!strcasecmp(s + n - 4, ".png") || !strcasecmp(s + n - 4, ".jpg"))) ||
           (n > 5 && !strcasecmp(s + n - 5, ".jpeg"));
}

static char *join_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la && a[la - 1] != '/';
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    if (slash)
        p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Names in dir (not hidden) that are directories (want_dir) or regular image files. */
static otl_status list_dir(const char *dir, int want_dir, strlist *out, otl_error *err)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot read directory: %s", dir, strerror(errno));
    struct dirent *e;
    otl_status st = OTL_OK;
    while ((e = readdir(dh))) {
        if (e->d_name[0] == '.')
            continue;
        if (!want_dir && !is_image_name(e->d_name))
            continue;
        char *full = join_path(dir, e->d_name);
        struct stat sb;
        if (!full) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        int keep = stat(full, &sb) == 0 && (want_dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
        free(full);
        if (!keep)
            continue;
        char *nm = otl_strdup(e->d_name);
        if (!nm || !otl_grow((void **)&out->v, sizeof *out->v, &out->cap, out->n + 1)) {
            free(nm);
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        out->v[out->n++] = nm;
    }
    closedir(dh);
    if (!st && out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, name_cmp);
    return st;
}

typedef struct item_status {
    otl_status st;
    char *msg; /* malloc'd message when st != OK */
} item_status;

static otl_status open_folder(otl_dataset *d, const char *path, const otl_dataset_opts *o, otl_error *err)
{
    if (!o->pp)
        return otl_error_set(err, OTL_ERR_INTERNAL, "%s: an image folder needs the model's preprocessing", path);
    d->pp = *o->pp;
    d->nchan = otl_preprocess_nchan(&d->pp);
    if (d->pp.height <= 0 || d->pp.width <= 0 || d->pp.height > 65536 || d->pp.width > 65536 ||
        (d->nchan != 1 && d->nchan != 3))
        return otl_error_set(err, OTL_ERR_INPUT, "%s: bad preprocessing size %lldx%lld", path,
                             (long long)d->pp.height, (long long)d->pp.width);
    d->img_bytes = (size_t)d->pp.height * (size_t)d->pp.width * (size_t)d->nchan;
    d->dtype = OTL_DTYPE_FLOAT;
    d->rank = 3;
    if (d->pp.nhwc)
        d->dims[0] = d->pp.height, d->dims[1] = d->pp.width, d->dims[2] = d->nchan;
    else
        d->dims[0] = d->nchan, d->dims[1] = d->pp.height, d->dims[2] = d->pp.width;
    d->sample_bytes = d->img_bytes * sizeof(float);

    strlist classes = {0}, files = {0};
    otl_status st = list_dir(path, 1, &classes, err);
    if (st)
        goto done;
    if (classes.n == 0) {
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: no class sub-directories (an image data set is DIR/<class>/*.png|jpg|jpeg)", path);
        goto done;
    }
    if (classes.n > DS_MAX_CLASSES) {
        st = otl_error_set(err, OTL_ERR_INPUT, "%s: %zu class directories, at most %d supported", path, classes.n,
                           DS_MAX_CLASSES);
        goto done;
    }
    size_t cap_items = 0;
    for (size_t c = 0; c < classes.n; c++) {
        if (strpbrk(classes.v[c], "\n\r")) { /* class names are stored one per line (onnx_tl.labels) */
            char shown[256];
            size_t k = 0;
            for (const char *q = classes.v[c]; *q && k + 3 < sizeof shown; q++) {
                if (*q == '\n' || *q == '\r')
                    shown[k++] = '\\', shown[k++] = *q == '\n' ? 'n' : 'r';
                else
                    shown[k++] = *q;
            }
            shown[k] = 0;
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: class directory name '%s' contains a line break", path, shown);
            goto done;
        }
        char *cdir = join_path(path, classes.v[c]);
        if (!cdir) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        strlist names = {0};
        st = list_dir(cdir, 0, &names, err);
        if (!st && names.n == 0)
            st = otl_error_set(err, OTL_ERR_INPUT, "%s: class '%s' has no images (.png, .jpg, .jpeg)", cdir,
                               classes.v[c]);
        for (size_t i = 0; !st && i < names.n; i++) {
            char *full = join_path(cdir, names.v[i]);
            if (!full || !otl_grow((void **)&files.v, sizeof *files.v, &files.cap, files.n + 1) ||
                !otl_grow((void **)&d->labels, sizeof *d->labels, &cap_items, files.n + 1)) {
                free(full);
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            d->labels[files.n] = (int64_t)c;
            files.v[files.n++] = full;
        }
        strlist_free(&names);
        free(cdir);
        if (st)
            goto done;
    }
    int64_t n = (int64_t)files.n;
    d->n_classes = (int)classes.n;
    d->class_names = classes.v;
    classes.v = NULL;
    classes.n = 0;
    d->files = files.v;
    d->n = n;
    files.v = NULL;
    files.n = 0;

    /* Decode every image once: checks them all, fills the cache, hashes the bytes. Lazy: read,
       hash and check the headers only; the cache fills on first use. */
    int64_t budget = o->cache_mem == 0 ? DS_DEFAULT_CACHE : o->cache_mem;
    d->n_cached = budget <= 0 ? 0 : (int64_t)((uint64_t)budget / d->img_bytes);
    if (d->n_cached > n)
        d->n_cached = n;
    if (d->n_cached > 0) {
        d->cache = malloc((size_t)d->n_cached * d->img_bytes);
        if (!d->cache) /* no room after all: work uncached */
            d->n_cached = 0;
    }
    d->hashes = calloc((size_t)n, sizeof *d->hashes);
    d->cstate = calloc((size_t)(d->n_cached ? d->n_cached : 1), sizeof *d->cstate);
    item_status *ist = calloc((size_t)n, sizeof *ist);
    if (!d->hashes || !ist || !d->cstate) {
        free(ist);
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for %lld items", path, (long long)n);
        goto done;
    }
#pragma omp parallel num_threads(ds_threads(d))
    {
        uint8_t *tmp = NULL;
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) {
            otl_error e = {0};
            uint8_t *buf = NULL;
            size_t len = 0;
            otl_status s = otl_read_file(d->files[i], DS_MAX_FILE, &buf, &len, &e);
            if (!s) {
                d->hashes[i] = otl_hash64(buf, len, 0);
                int pw, ph, pc;
                uint8_t *dst = i < d->n_cached ? d->cache + (size_t)i * d->img_bytes : NULL;
                if (!dst && !tmp && !d->lazy)
                    tmp = malloc(d->img_bytes);
                if (!dst)
                    dst = tmp;
                if (d->lazy)
                    s = otl_image_probe(buf, len, d->files[i], &pw, &ph, &pc, &e);
                else if (!dst)
                    s = otl_error_set(&e, OTL_ERR_NOMEM, "%s: out of memory", d->files[i]);
                else
                    s = otl_image_decode_u8(buf, len, d->files[i], &d->pp, dst, &e);
            }
            free(buf);
            if (s) {
                ist[i].st = s;
                ist[i].msg = otl_strdup(e.msg);
            }
        }
        free(tmp);
    }
    /* Report (or skip) failures in item order; survivors keep their order, so the cached ones
       (old index < n_cached) stay a prefix. */
    int64_t w = 0, kept_cached = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ist[i].st && !st) {
            if (!o->skip_bad || ist[i].st == OTL_ERR_NOMEM)
                st = otl_error_set(err, ist[i].st, "%s", ist[i].msg ? ist[i].msg : d->files[i]);
            else if (skipped_add(d, "%s", ist[i].msg ? ist[i].msg : d->files[i]))
                st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        }
        if (ist[i].st) {
            free(d->files[i]);
            d->files[i] = NULL;
        } else {
            if (w != i) {
                d->files[w] = d->files[i];
                d->files[i] = NULL;
                d->labels[w] = d->labels[i];
                d->hashes[w] = d->hashes[i];
                if (i < d->n_cached)
                    memmove(d->cache + (size_t)w * d->img_bytes, d->cache + (size_t)i * d->img_bytes, d->img_bytes);
            }
            kept_cached += i < d->n_cached;
            w++;
        }
        free(ist[i].msg);
    }
    free(ist);
    if (st)
        goto done;
    d->n = w;
    d->n_cached = kept_cached;
    for (int64_t i = 0; i < d->n_cached; i++)
        atomic_init(&d->cstate[i], d->lazy ? 0 : 2);
    /* a class emptied by skip_bad */
    for (int c = 0; c < d->n_classes; c++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < d->n && !cnt; i++)
            cnt += d->labels[i] == c;
        if (!cnt) {
            st = otl_error_set(err, OTL_ERR_INPUT, "%s/%s: class '%s' has no readable images", path,
                               d->class_names[c], d->class_names[c]);
            goto done;
        }
    }
done:
    strlist_free(&classes);
    strlist_free(&files);
    return st;
}

/* ------------------------------------------------------------ open / accessors */

otl_status otl_dataset_open(otl_dataset **out, const char *path, const otl_dataset_opts *o, otl_error *err)
{
    *out = NULL;
    otl_dataset_opts def;
    if (!o) {
        otl_dataset_opts_init(&def);
        o = &def;
    }
    struct stat sb;
    if (stat(path, &sb) != 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot open data set: %s", path, strerror(errno));
    otl_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = otl_strdup(path))) {
        free(d);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
    }
    pthread_mutex_init(&d->names_mu, NULL);
    d->threads = o->threads;
    d->lazy = o->lazy;
    d->prefetch_threads = o->prefetch_threads > 0 ? o->prefetch_threads : 1;
    d->aug_layout = o->pp ? (o->pp->nhwc ? 1 : 0) : -1;
    otl_status st;
    if (S_ISDIR(sb.st_mode)) {
        d->kind = DS_FOLDER;
        st = open_folder(d, path, o, err);
    } else {
        d->kind = DS_NPZ;
        size_t pl = strlen(path);
        if (pl >= 4 && !strcasecmp(path + pl - 4, ".npz"))
            st = open_npz(d, path, o, err);
        else { /* say what a data set is when the file is something else entirely */
            otl_error e = {0};
            st = open_npz(d, path, o, &e);
            if (st == OTL_ERR_INPUT && strstr(e.msg, "not an .npz (ZIP)"))
                otl_error_set(err, st, "%s: not a data set (expected an ImageFolder directory or an .npz archive)",
                              path);
            else if (st)
                otl_error_set(err, st, "%s", e.msg);
        }
    }
    if (st) {
        otl_dataset_free(d);
        return st;
    }
    ds_compute_hash(d);
    *out = d;
    return OTL_OK;
}

static void prefetch_join(otl_dataset *d)
{
    ds_prefetch *p = &d->pf;
    if (p->active) {
        pthread_mutex_lock(&p->mu);
        while (p->job)
            pthread_cond_wait(&p->cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        p->active = 0;
        p->ready = 1;
    }
}

static void prefetch_stop(otl_dataset *d)
{
    ds_prefetch *p = &d->pf;
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    p->started = 0;
}

void otl_dataset_free(otl_dataset *d)
{
    if (!d)
        return;
    prefetch_join(d);
    prefetch_stop(d);
    free(d->pf.idx);
    free(d->pf.x);
    free(d->pf.y);
    free(d->scr);
    for (int c = 0; c < d->n_classes && d->class_names; c++)
        free(d->class_names[c]);
    free(d->class_names);
    if (d->names)
        for (int64_t i = 0; i < d->n; i++)
            free(d->names[i]);
    free(d->names);
    if (d->files)
        for (int64_t i = 0; i < d->n; i++)
            free(d->files[i]);
    free(d->files);
    otl_tensor_free(d->x);
    free(d->labels);
    free(d->hashes);
    free(d->skipped);
    free(d->cache);
    free(d->cstate);
    free(d->path);
    pthread_mutex_destroy(&d->names_mu);
    free(d);
}

int64_t otl_dataset_len(const otl_dataset *d) { return d->n; }
int otl_dataset_n_classes(const otl_dataset *d) { return d->n_classes; }
int otl_dataset_is_images(const otl_dataset *d) { return d->kind == DS_FOLDER; }

const char *otl_dataset_class_name(const otl_dataset *d, int c)
{
    return c >= 0 && c < d->n_classes ? d->class_names[c] : NULL;
}

int64_t otl_dataset_label(const otl_dataset *d, int64_t i) { return i >= 0 && i < d->n ? d->labels[i] : -1; }

const char *otl_dataset_item_name(const otl_dataset *d, int64_t i)
{
    if (i < 0 || i >= d->n)
        return NULL;
    if (d->kind == DS_FOLDER)
        return d->files[i];
    otl_dataset *m = (otl_dataset *)d;
    pthread_mutex_lock(&m->names_mu);
    if (!m->names[i]) {
        char b[40];
        snprintf(b, sizeof b, "x[%lld]", (long long)i);
        m->names[i] = otl_strdup(b);
    }
    const char *r = m->names[i] ? m->names[i] : "x[?]";
    pthread_mutex_unlock(&m->names_mu);
    return r;
}

void otl_dataset_sample(const otl_dataset *d, int *dtype, int *rank, int64_t *dims)
{
    if (dtype)
        *dtype = d->dtype;
    if (rank)
        *rank = d->rank;
    if (dims)
        for (int i = 0; i < d->rank; i++)
            dims[i] = d->dims[i];
}

size_t otl_dataset_sample_bytes(const otl_dataset *d) { return d->sample_bytes; }
const char *otl_dataset_hash(const otl_dataset *d) { return d->hash_hex; }
uint64_t otl_dataset_item_hash(const otl_dataset *d, int64_t i) { return i >= 0 && i < d->n ? d->hashes[i] : 0; }
const char *otl_dataset_skipped(const otl_dataset *d) { return d->skipped ? d->skipped : ""; }

/* ------------------------------------------------------------ split */

typedef struct hash_idx {
    uint64_t h;
    int64_t i;
} hash_idx;

static int hash_idx_cmp(const void *a, const void *b)
{
    const hash_idx *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

otl_status otl_dataset_split(const otl_dataset *d, double frac, uint64_t seed, int64_t **train, int64_t *n_train,
                             int64_t **val, int64_t *n_val, otl_error *err)
{
    *train = *val = NULL;
    *n_train = *n_val = 0;
    if (!(frac >= 0 && frac < 1))
        return otl_error_set(err, OTL_ERR_USAGE, "%s: validation fraction must be in [0, 1), got %g", d->path, frac);
    int64_t n = d->n;
    hash_idx *hi = malloc((size_t)n * sizeof *hi);
    int64_t *group_of = malloc((size_t)n * sizeof *group_of);  /* item -> group */
    int64_t *g_first = malloc((size_t)n * sizeof *g_first);    /* group -> first item */
    int64_t *g_size = calloc((size_t)n, sizeof *g_size);
    int64_t *cls_cnt = calloc((size_t)d->n_classes, sizeof *cls_cnt);
    int64_t *cls_groups = calloc((size_t)d->n_classes + 1, sizeof *cls_groups); /* offsets */
    int64_t *order = malloc((size_t)n * sizeof *order);
    int64_t *tr = malloc((size_t)(n ? n : 1) * sizeof *tr), *va = malloc((size_t)(n ? n : 1) * sizeof *va);
    otl_status st = OTL_OK;
    if (!hi || !group_of || !g_first || !g_size || !cls_cnt || !cls_groups || !order || !tr || !va) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory splitting %lld items", d->path, (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        hi[i].h = d->hashes[i], hi[i].i = i;
    qsort(hi, (size_t)n, sizeof *hi, hash_idx_cmp);
    /* groups of equal hashes; number groups by their first item so the result does not depend on
       hash order */
    for (int64_t k = 0; k < n; k++)
        group_of[k] = -1;
    int64_t ng = 0;
    for (int64_t a = 0; a < n;) {
        int64_t b = a;
        while (b < n && hi[b].h == hi[a].h)
            b++;
        /* hi[a].i is the smallest index of the run (sorted by (h, i)) */
        for (int64_t k = a; k < b; k++)
            group_of[hi[k].i] = hi[a].i; /* provisional id: first item */
        a = b;
    }
    /* renumber groups in item order */
    int64_t *first_to_g = malloc((size_t)n * sizeof *first_to_g);
    if (!first_to_g) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", d->path);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (group_of[i] == i) {
            first_to_g[i] = ng;
            g_first[ng++] = i;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        group_of[i] = first_to_g[group_of[i]];
        g_size[group_of[i]]++;
    }
    free(first_to_g);
    /* groups per class (class of the first item), in group order */
    for (int64_t g = 0; g < ng; g++) {
        cls_cnt[d->labels[g_first[g]]] += g_size[g];
        cls_groups[d->labels[g_first[g]] + 1]++;
    }
    for (int c = 0; c < d->n_classes; c++)
        cls_groups[c + 1] += cls_groups[c];
    {
        int64_t *fill = calloc((size_t)d->n_classes, sizeof *fill);
        if (!fill) {
            st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", d->path);
            goto done;
        }
        for (int64_t g = 0; g < ng; g++) {
            int64_t c = d->labels[g_first[g]];
            order[cls_groups[c] + fill[c]++] = g;
        }
        free(fill);
    }
    char *g_val = calloc((size_t)(ng ? ng : 1), 1);
    if (!g_val) {
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", d->path);
        goto done;
    }
    for (int c = 0; c < d->n_classes; c++) {
        int64_t nc = cls_cnt[c], *gs = order + cls_groups[c], m = cls_groups[c + 1] - cls_groups[c];
        int64_t target = (int64_t)floor(frac * (double)nc + 0.5);
        if (frac > 0 && nc >= 2 && target < 1)
            target = 1;
        if (target >= nc)
            target = nc - 1;
        if (target <= 0 || m == 0)
            continue;
        otl_rng r;
        otl_rng_seed(&r, seed, (uint64_t)c);
        for (int64_t k = m - 1; k > 0; k--) { /* Fisher-Yates */
            int64_t j = (int64_t)otl_rng_below(&r, (uint64_t)k + 1);
            int64_t t = gs[k];
            gs[k] = gs[j];
            gs[j] = t;
        }
        int64_t got = 0;
        for (int64_t k = 0; k < m && got < target; k++)
            if (got + g_size[gs[k]] <= target) {
                g_val[gs[k]] = 1;
                got += g_size[gs[k]];
            }
    }
    for (int64_t i = 0; i < n; i++) {
        if (g_val[group_of[i]])
            va[(*n_val)++] = i;
        else
            tr[(*n_train)++] = i;
    }
    free(g_val);
    *train = tr;
    *val = va;
    tr = va = NULL;
done:
    free(hi);
    free(group_of);
    free(g_first);
    free(g_size);
    free(cls_cnt);
    free(cls_groups);
    free(order);
    free(tr);
    free(va);
    return st;
}

/* ------------------------------------------------------------ batches */

static int aug_active(const otl_augment *a)
{
    return a && a->enabled && (a->hflip || a->rotate != 0 || a->zoom != 0 || a->crop || a->jitter != 0);
}

/* Geometry of an .npz sample for augmentation: 0 and fills c/h/w/nhwc, or -1 when not an image. */
static int npz_image_geom(const otl_dataset *d, int *c, int *h, int *w, int *nhwc)
{
    if (d->dtype != OTL_DTYPE_FLOAT || d->rank != 3)
        return -1;
    int hw = d->aug_layout;
    if (hw < 0)
        hw = (d->dims[2] == 1 || d->dims[2] == 3) && !(d->dims[0] == 1 || d->dims[0] == 3);
    int64_t cc = hw ? d->dims[2] : d->dims[0], hh = hw ? d->dims[0] : d->dims[1], ww = hw ? d->dims[1] : d->dims[2];
    if ((cc != 1 && cc != 3) || hh < 1 || ww < 1 || hh > 65536 || ww > 65536)
        return -1;
    *c = (int)cc, *h = (int)hh, *w = (int)ww, *nhwc = hw;
    return 0;
}

static otl_status batch_impl(otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug, uint64_t seed,
                             void *xout, int64_t *y, int nthreads, otl_error *err)
{
    int use_aug = aug_active(aug);
    int gc = 0, gh = 0, gw = 0, gnhwc = 0;
    for (int64_t k = 0; k < n; k++)
        if (idx[k] < 0 || idx[k] >= d->n)
            return otl_error_set(err, OTL_ERR_INTERNAL, "%s: item index %lld out of range (%lld items)", d->path,
                                 (long long)idx[k], (long long)d->n);
    if (use_aug && d->kind == DS_NPZ && npz_image_geom(d, &gc, &gh, &gw, &gnhwc)) {
        char shp[256];
        shape_str(shp, sizeof shp, d->rank, d->dims);
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: --augment needs image samples (float32 (C, H, W) or (H, W, C), C = 1 or 3); array "
                             "'x' holds %s samples of shape %s",
                             d->path, otl_dtype_name(d->dtype), shp);
    }
    if (y)
        for (int64_t k = 0; k < n; k++)
            y[k] = d->labels[idx[k]];
    uint8_t *xo = xout;
    otl_status st = OTL_OK;
    if (d->kind == DS_NPZ && !use_aug) {
        const uint8_t *xd = d->x->data;
        for (int64_t k = 0; k < n; k++)
            memcpy(xo + (size_t)k * d->sample_bytes, xd + (size_t)idx[k] * d->sample_bytes, d->sample_bytes);
        return OTL_OK;
    }
    /* per thread: [image bytes as floats' room][float image][augmentation source] */
    size_t img_f = d->kind == DS_NPZ ? d->sample_bytes / sizeof(float) + 1 : d->img_bytes;
    size_t per = img_f / sizeof(float) + 1 + 2 * img_f;
    if (per > d->scr_floats || nthreads > d->scr_threads) {
        size_t nt = (size_t)(nthreads > d->scr_threads ? nthreads : d->scr_threads);
        size_t pf = per > d->scr_floats ? per : d->scr_floats;
        float *ns = malloc(nt * pf * sizeof *ns);
        if (!ns)
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a batch", d->path);
        free(d->scr);
        d->scr = ns;
        d->scr_floats = pf;
        d->scr_threads = (int)nt;
    }
#pragma omp parallel num_threads(nthreads)
    {
        float *mine = d->scr + (size_t)omp_get_thread_num() * d->scr_floats;
        uint8_t *tmp = (uint8_t *)mine;
        float *ftmp = mine + img_f / sizeof(float) + 1;
        float *aug_src = ftmp + img_f;
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < n; k++) {
            otl_error e = {0};
            otl_status s = OTL_OK;
            int64_t i = idx[k];
            float *dst = (float *)(xo + (size_t)k * d->sample_bytes);
            otl_augment_draw p;
            if (use_aug)
                otl_augment_sample(aug, seed, i, &p);
            if (d->kind == DS_NPZ) {
                memcpy(dst, (const uint8_t *)d->x->data + (size_t)i * d->sample_bytes, d->sample_bytes);
                s = otl_augment_apply_buf(&p, dst, gc, gh, gw, gnhwc, 0, 0, aug_src, &e);
            } else {
                const uint8_t *img = NULL;
                if (i < d->n_cached) {
                    uint8_t *slot = d->cache + (size_t)i * d->img_bytes;
                    unsigned char cs = atomic_load_explicit(&d->cstate[i], memory_order_acquire), zero = 0;
                    if (cs == 2)
                        img = slot;
                    else if (cs == 0 && atomic_compare_exchange_strong(&d->cstate[i], &zero, 1)) {
                        /* first use (lazy): decode into the slot; a concurrent user of the same
                           item decodes its own copy meanwhile */
                        s = otl_image_load_u8(d->files[i], &d->pp, slot, &e);
                        atomic_store_explicit(&d->cstate[i], s ? 0 : 2, memory_order_release);
                        img = slot;
                    }
                }
                if (!img && !s) {
                    s = otl_image_load_u8(d->files[i], &d->pp, tmp, &e);
                    img = tmp;
                }
                if (!s && !use_aug)
                    otl_image_normalize_u8(img, &d->pp, dst);
                else if (!s) {
                    for (size_t q = 0; q < d->img_bytes; q++)
                        ftmp[q] = img[q];
                    s = otl_augment_apply_buf(&p, ftmp, d->nchan, (int)d->pp.height, (int)d->pp.width, 1, 0.0f,
                                              255.0f, aug_src, &e);
                    if (!s)
                        otl_image_normalize_f32(ftmp, &d->pp, dst);
                }
            }
            if (s) {
#pragma omp critical(otl_dataset_err)
                {
                    if (!st)
                        st = otl_error_set(err, s, "%s", e.msg);
                }
            }
        }
    }
    return st;
}

static int same_aug(const otl_augment *a, int has, const otl_augment *b)
{
    int hb = aug_active(b);
    if (has != hb)
        return 0;
    if (!has)
        return 1;
    return a->hflip == b->hflip && a->rotate == b->rotate && a->zoom == b->zoom && a->crop == b->crop &&
           a->jitter == b->jitter;
}

otl_status otl_dataset_batch(otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug, uint64_t seed,
                             void *x, int64_t *y, otl_error *err)
{
    prefetch_join(d);
    if (d->pf.ready) {
        ds_prefetch *p = &d->pf;
        p->ready = 0;
        int same = p->n == n && p->seed == seed && same_aug(&p->aug, p->has_aug, aug) &&
                   (n == 0 || !memcmp(p->idx, idx, (size_t)n * sizeof *idx));
        if (same) {
            if (p->st)
                return otl_error_set(err, p->st, "%s", p->err.msg);
            memcpy(x, p->x, (size_t)n * d->sample_bytes);
            if (y)
                memcpy(y, p->y, (size_t)n * sizeof *y);
            return OTL_OK;
        }
    }
    return batch_impl(d, idx, n, aug, seed, x, y, ds_threads(d), err);
}

/* The prefetch worker: makes each requested batch, one at a time, until the data set is freed (one
 * thread and one OpenMP team for the whole run instead of new ones per batch). */
static void *prefetch_main(void *arg)
{
    otl_dataset *d = arg;
    ds_prefetch *p = &d->pf;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->job && !p->quit)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit)
            break;
        pthread_mutex_unlock(&p->mu);
        otl_status st = batch_impl(d, p->idx, p->n, p->has_aug ? &p->aug : NULL, p->seed, p->x, p->y,
                                   d->prefetch_threads, &p->err);
        pthread_mutex_lock(&p->mu);
        p->st = st;
        p->job = 0;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

otl_status otl_dataset_prefetch(otl_dataset *d, const int64_t *idx, int64_t n, const otl_augment *aug, uint64_t seed,
                                otl_error *err)
{
    prefetch_join(d);
    ds_prefetch *p = &d->pf;
    size_t need_x = (size_t)n * d->sample_bytes, need_y = (size_t)n * sizeof(int64_t);
    if (need_x > p->cap_x) {
        free(p->x);
        p->cap_x = 0;
        if (!(p->x = malloc(need_x ? need_x : 1)))
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a prefetched batch", d->path);
        p->cap_x = need_x;
    }
    if (need_y > p->cap_y) {
        free(p->y);
        free(p->idx);
        p->cap_y = 0;
        p->idx = malloc(need_y ? need_y : 1);
        p->y = malloc(need_y ? need_y : 1);
        if (!p->idx || !p->y)
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a prefetched batch", d->path);
        p->cap_y = need_y;
    }
    if (n)
        memcpy(p->idx, idx, need_y);
    p->n = n;
    p->seed = seed;
    p->has_aug = aug_active(aug);
    if (p->has_aug)
        p->aug = *aug;
    memset(&p->err, 0, sizeof p->err);
    p->st = OTL_OK;
    p->ready = 0;
    if (!p->started) {
        if (pthread_mutex_init(&p->mu, NULL) != 0)
            return OTL_OK; /* no worker: the batch is simply made when asked for */
        if (pthread_cond_init(&p->cv, NULL) != 0) {
            pthread_mutex_destroy(&p->mu);
            return OTL_OK;
        }
        p->quit = p->job = 0;
        if (pthread_create(&p->th, NULL, prefetch_main, d) != 0) {
            pthread_cond_destroy(&p->cv);
            pthread_mutex_destroy(&p->mu);
            return OTL_OK;
        }
        p->started = 1;
    }
    pthread_mutex_lock(&p->mu);
    p->job = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->active = 1;
    return OTL_OK;
}
