/* model_io.c - ONNX files <-> IR: parse with protobuf-c (bounded memory and nesting), resolve
 * external data safely, convert to the IR, and write models back atomically, with external
 * data when asked or when the model would exceed protobuf's 2 GiB limit.
 * Protobuf structs never leave this file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"
#include "onnxtl.h"
#include "src/util.h"

#define MAX_NESTING 64                     /* sub-message depth (graphs inside graphs ...) */
#define MAX_FILE_BYTES ((size_t)1 << 31)   /* protobuf's own limit */
#define PROTO_LIMIT (((size_t)1 << 31) - ((size_t)64 << 20)) /* embed up to ~1.94 GiB */
#define MAX_NUMEL ((int64_t)1 << 40)       /* refuse larger declared tensors outright */

/* ================================================================ allocation */

/* A protobuf-c allocator with a budget, so that a small hostile file cannot make the parser
 * allocate without bound (empty repeated messages amplify ~50x). */
typedef struct budget {
    size_t used, limit;
    int exceeded;
} budget;

static void *budget_alloc(void *data, size_t size)
{
    budget *b = data;
    if (size > b->limit - b->used || size > SIZE_MAX - 16) {
        b->exceeded = 1;
        return NULL;
    }
    size_t *p = malloc(size + 16);
    if (!p) {
        b->exceeded = 1;
        return NULL;
    }
    p[0] = size;
    b->used += size;
    return (char *)p + 16;
}

static void budget_free(void *data, void *ptr)
{
    if (!ptr)
        return;
    budget *b = data;
    size_t *p = (size_t *)((char *)ptr - 16);
    b->used -= p[0];
    free(p);
}

/* A bump arena for the temporary protobuf structs built while saving. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[];
} arena_chunk;

typedef struct arena {
    arena_chunk *head;
    int failed;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        arena_chunk *c = malloc(sizeof *c + cap);
        if (!c) {
            a->failed = 1;
            return NULL;
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += size;
    memset(p, 0, size);
    return p;
}

static void arena_release(arena *a)
{
    while (a->head) {
        arena_chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

static void *pa_alloc(void *data, size_t size) { return arena_alloc(data, size); }
static void pa_free(void *data, void *ptr) { (void)data; (void)ptr; }

/* ================================================================ wire pre-scan */

/* Walk the wire format with the generated descriptors before protobuf-c unpacks it: rejects
 * truncated data with a precise offset and bounds the nesting depth (protobuf-c recurses
 * without a limit, so a deeply nested file would otherwise overflow the stack). */
typedef struct scan_ctx {
    const uint8_t *base;
    const char *file;
    otl_error *err;
} scan_ctx;

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return 0;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static otl_status scan_message(scan_ctx *sc, const uint8_t *p, const uint8_t *end,
                               const ProtobufCMessageDescriptor *d, int depth)
{
    if (depth > MAX_NESTING)
        return otl_error_set(sc->err, OTL_ERR_INPUT,
                             "%s: messages nested more than %d deep (at byte %zu); refusing",
                             sc->file, MAX_NESTING, (size_t)(p - sc->base));
    while (p < end) {
        size_t at = (size_t)(p - sc->base);
        uint64_t key;
        if (!read_varint(&p, end, &key))
            return otl_error_set(sc->err, OTL_ERR_INPUT,
                                 "%s: not a valid ONNX model: truncated or corrupt protobuf at byte %zu",
                                 sc->file, at);
        uint32_t field = (uint32_t)(key >> 3);
        int wt = (int)(key & 7);
        if (field == 0 || key >> 3 > 0x1fffffff)
            return otl_error_set(sc->err, OTL_ERR_INPUT,
                                 "%s: not a valid ONNX model: bad field tag at byte %zu", sc->file, at);
        const ProtobufCFieldDescriptor *fd = d ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
        uint64_t v;
        switch (wt) {
        case 0:
            if (!read_varint(&p, end, &v))
                goto truncated;
            break;
        case 1:
            if (end - p < 8)
                goto truncated;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                goto truncated;
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                goto truncated;
            const uint8_t *sub = p;
            p += v;
            if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
                otl_status st = scan_message(sc, sub, p, fd->descriptor, depth + 1);
                if (st)
                    return st;
            }
            break;
        }
        default:
            return otl_error_set(sc->err, OTL_ERR_INPUT,
                                 "%s: not a valid ONNX model: unsupported wire type %d at byte %zu",
                                 sc->file, wt, at);
        }
        if (fd) { /* the wire type must fit the declared field type */
            int ok;
            switch (fd->type) {
            case PROTOBUF_C_TYPE_STRING:
            case PROTOBUF_C_TYPE_BYTES:
            case PROTOBUF_C_TYPE_MESSAGE:
                ok = wt == 2;
                break;
            case PROTOBUF_C_TYPE_FLOAT:
            case PROTOBUF_C_TYPE_FIXED32:
            case PROTOBUF_C_TYPE_SFIXED32:
                ok = wt == 5 || (wt == 2 && fd->label == PROTOBUF_C_LABEL_REPEATED);
                break;
            case PROTOBUF_C_TYPE_DOUBLE:
            case PROTOBUF_C_TYPE_FIXED64:
            case PROTOBUF_C_TYPE_SFIXED64:
                ok = wt == 1 || (wt == 2 && fd->label == PROTOBUF_C_LABEL_REPEATED);
                break;
            default:
                ok = wt == 0 || (wt == 2 && fd->label == PROTOBUF_C_LABEL_REPEATED);
            }
            if (!ok)
                return otl_error_set(sc->err, OTL_ERR_INPUT,
                                     "%s: not a valid ONNX model: field '%s' of %s has wrong wire type %d at byte %zu",
                                     sc->file, fd->name, d->name, wt, at);
        }
        continue;
    truncated:
        return otl_error_set(sc->err, OTL_ERR_INPUT,
                             "%s: not a valid ONNX model: truncated or corrupt protobuf at byte %zu",
                             sc->file, at);
    }
    return OTL_OK;
}

/* ================================================================ proto -> IR */

typedef struct load_ctx {
    const char *file;  /* for messages */
    const char *dir;   /* directory for external data, or NULL */
    char *realdir;     /* realpath(dir) */
    otl_error *err;
    int had_external;
} load_ctx;

static otl_status nomem(load_ctx *lc)
{
    return otl_error_set(lc->err, OTL_ERR_NOMEM, "%s: out of memory", lc->file);
}

static int dup_str(char **dst, const char *src)
{
    if (!src) {
        *dst = NULL;
        return 1;
    }
    *dst = otl_strdup(src);
    return *dst != NULL;
}

static int copy_unknown(otl_unknown *u, const ProtobufCMessage *msg)
{
    u->n = 0;
    u->f = NULL;
    if (!msg->n_unknown_fields)
        return 1;
    u->f = calloc(msg->n_unknown_fields, sizeof *u->f);
    if (!u->f)
        return 0;
    u->n = msg->n_unknown_fields;
    for (size_t i = 0; i < u->n; i++) {
        const ProtobufCMessageUnknownField *s = &msg->unknown_fields[i];
        u->f[i].tag = s->tag;
        u->f[i].wire_type = (uint8_t)s->wire_type;
        u->f[i].len = s->len;
        if (s->len && !(u->f[i].data = otl_memdup(s->data, s->len)))
            return 0;
    }
    return 1;
}

/* Serialize a sub-message we keep opaque. */
static int pack_blob(otl_blob *b, const ProtobufCMessage *msg)
{
    b->len = protobuf_c_message_get_packed_size(msg);
    b->data = malloc(b->len ? b->len : 1);
    if (!b->data)
        return 0;
    protobuf_c_message_pack(msg, b->data);
    return 1;
}

static int pack_blobs(otl_blob **out, size_t *n_out, void **msgs, size_t n)
{
    *out = NULL;
    *n_out = 0;
    if (!n)
        return 1;
    *out = calloc(n, sizeof **out);
    if (!*out)
        return 0;
    *n_out = n;
    for (size_t i = 0; i < n; i++)
        if (!pack_blob(&(*out)[i], msgs[i]))
            return 0;
    return 1;
}

/* Whether a relative external-data location is acceptable on its face. */
static int location_is_safe(const char *loc)
{
    if (!loc || !*loc || loc[0] == '/' || strchr(loc, '\\'))
        return 0;
    const char *p = loc;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

static otl_status read_external(load_ctx *lc, otl_tensor *t, const Onnx__TensorProto *tp,
                                int64_t want)
{
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        const char *k = kv->key ? kv->key : "", *v = kv->value ? kv->value : "";
        if (strcmp(k, "location") == 0) {
            loc = v;
        } else if (strcmp(k, "offset") == 0 || strcmp(k, "length") == 0) {
            char *e;
            errno = 0;
            long long x = strtoll(v, &e, 10);
            if (!*v || *e || errno || x < 0)
                return otl_error_set(lc->err, OTL_ERR_INPUT,
                                     "%s: tensor '%s': bad external data %s '%s'", lc->file, t->name, k, v);
            if (k[0] == 'o')
                offset = x;
            else
                length = x;
        } else {
            otl_kv *nk = realloc(t->ext_extra, (size_t)(t->n_ext_extra + 1) * sizeof *nk);
            if (!nk)
                return nomem(lc);
            t->ext_extra = nk;
            nk[t->n_ext_extra].key = otl_strdup(k);
            nk[t->n_ext_extra].value = otl_strdup(v);
            t->n_ext_extra++;
            if (!nk[t->n_ext_extra - 1].key || !nk[t->n_ext_extra - 1].value)
                return nomem(lc);
        }
    }
    if (!loc)
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data without a location", lc->file, t->name);
    if (!location_is_safe(loc))
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data location '%s' is outside the model directory (absolute paths and '..' are refused)",
                             lc->file, t->name, loc);
    if (!lc->dir)
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data '%s' cannot be resolved for a model read from memory",
                             lc->file, t->name, loc);
    if (length >= 0 && length != want)
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data length %lld does not match its %lld elements of %s (%lld bytes)",
                             lc->file, t->name, (long long)length, (long long)t->numel,
                             otl_dtype_name(t->dtype), (long long)want);
    if (!lc->realdir) {
        lc->realdir = realpath(lc->dir, NULL);
        if (!lc->realdir)
            return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: cannot resolve model directory '%s': %s",
                                 lc->file, lc->dir, strerror(errno));
    }
    size_t plen = strlen(lc->dir) + strlen(loc) + 2;
    char *joined = malloc(plen);
    if (!joined)
        return nomem(lc);
    snprintf(joined, plen, "%s/%s", lc->dir, loc);
    char *real = realpath(joined, NULL);
    free(joined);
    if (!real)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: tensor '%s': external data file '%s': %s",
                             lc->file, t->name, loc, strerror(errno));
    size_t rd = strlen(lc->realdir);
    int inside = strncmp(real, lc->realdir, rd) == 0 &&
                 (real[rd] == '/' || (rd == 1 && lc->realdir[0] == '/'));
    if (!inside) {
        free(real);
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data location '%s' leads outside the model directory (through a link)",
                             lc->file, t->name, loc);
    }
    int fd = open(real, O_RDONLY | O_NONBLOCK);
    free(real);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data file '%s' is not a readable regular file",
                             lc->file, t->name, loc);
    }
    if (offset > st.st_size || want > st.st_size - offset) {
        close(fd);
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': external data '%s' offset %lld + %lld bytes runs past the end of the file (%lld bytes)",
                             lc->file, t->name, loc, (long long)offset, (long long)want,
                             (long long)st.st_size);
    }
    t->data = malloc(want ? (size_t)want : 1);
    if (!t->data) {
        close(fd);
        return nomem(lc);
    }
    t->nbytes = (size_t)want;
    size_t got = 0;
    while (got < (size_t)want) {
        ssize_t r = pread(fd, (char *)t->data + got, (size_t)want - got, offset + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return otl_error_set(lc->err, OTL_ERR_IO, "%s: tensor '%s': reading external data '%s' failed",
                                 lc->file, t->name, loc);
        }
        got += (size_t)r;
    }
    close(fd);
    if (!(t->ext_location = otl_strdup(loc)))
        return nomem(lc);
    lc->had_external = 1;
    return OTL_OK;
}

static otl_status tensor_from_proto(load_ctx *lc, otl_tensor **out, const Onnx__TensorProto *tp,
                                    const char *where)
{
    *out = NULL;
    otl_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return nomem(lc);
    *out = t;
    if (!dup_str(&t->name, tp->name ? tp->name : "") || !dup_str(&t->doc, tp->doc_string) ||
        !copy_unknown(&t->unknown, &tp->base))
        return nomem(lc);
    const char *tn = *t->name ? t->name : where;
    t->dtype = tp->has_data_type ? tp->data_type : 0;
    if (t->dtype <= 0 || t->dtype >= OTL_DTYPE_COUNT_)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: tensor '%s': unknown data type %d",
                             lc->file, tn, t->dtype);
    if (tp->n_dims > 64)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: tensor '%s': rank %zu is too large",
                             lc->file, tn, tp->n_dims);
    t->rank = (int)tp->n_dims;
    t->numel = 1;
    if (t->rank && !(t->dims = otl_memdup(tp->dims, tp->n_dims * sizeof(int64_t))))
        return nomem(lc);
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0)
            return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: tensor '%s': negative dimension %lld",
                                 lc->file, tn, (long long)t->dims[i]);
        if (t->dims[i] > 0 && t->numel > MAX_NUMEL / t->dims[i])
            return otl_error_set(lc->err, OTL_ERR_INPUT,
                                 "%s: tensor '%s': declares more than 2^40 elements; refusing",
                                 lc->file, tn);
        t->numel *= t->dims[i];
    }
    if (tp->segment) {
        t->has_segment = 1;
        t->seg_begin = tp->segment->begin;
        t->seg_end = tp->segment->end;
    }
    if (t->dtype == OTL_DTYPE_STRING) {
        if ((int64_t)tp->n_string_data != t->numel)
            return otl_error_set(lc->err, OTL_ERR_INPUT,
                                 "%s: tensor '%s': declares %lld strings but holds %zu",
                                 lc->file, tn, (long long)t->numel, tp->n_string_data);
        if (t->numel && !(t->strs = calloc((size_t)t->numel, sizeof *t->strs)))
            return nomem(lc);
        for (int64_t i = 0; i < t->numel; i++) {
            const ProtobufCBinaryData *s = &tp->string_data[i];
            t->strs[i].len = s->len;
            t->strs[i].data = malloc(s->len + 1);
            if (!t->strs[i].data)
                return nomem(lc);
            if (s->len)
                memcpy(t->strs[i].data, s->data, s->len);
        }
        return OTL_OK;
    }
    int64_t want = otl_dtype_nbytes(t->dtype, t->numel);
    if (want < 0)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: tensor '%s': size overflow", lc->file, tn);
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return read_external(lc, t, tp, want);

    /* embedded: raw_data, or the typed field that matches the dtype */
    size_t have = 0, per = 0;
    const void *src = NULL;
    int kind = 0; /* 1 raw, 2 float, 3 int32, 4 int64, 5 double, 6 uint64 */
    if (tp->has_raw_data) {
        kind = 1, src = tp->raw_data.data, have = tp->raw_data.len, per = 1;
    } else {
        switch (t->dtype) {
        case OTL_DTYPE_FLOAT:
        case OTL_DTYPE_COMPLEX64:
            kind = 2, src = tp->float_data, have = tp->n_float_data, per = 4;
            break;
        case OTL_DTYPE_INT64:
            kind = 4, src = tp->int64_data, have = tp->n_int64_data, per = 8;
            break;
        case OTL_DTYPE_DOUBLE:
        case OTL_DTYPE_COMPLEX128:
            kind = 5, src = tp->double_data, have = tp->n_double_data, per = 8;
            break;
        case OTL_DTYPE_UINT32:
        case OTL_DTYPE_UINT64:
            kind = 6, src = tp->uint64_data, have = tp->n_uint64_data, per = 8;
            break;
        default:
            kind = 3, src = tp->int32_data, have = tp->n_int32_data, per = 4;
        }
    }
    /* number of stored items the dtype needs */
    int64_t items;
    switch (kind) {
    case 1: items = want; break;
    case 2: items = t->dtype == OTL_DTYPE_COMPLEX64 ? 2 * t->numel : t->numel; break;
    case 5: items = t->dtype == OTL_DTYPE_COMPLEX128 ? 2 * t->numel : t->numel; break;
    case 3:
        items = (t->dtype == OTL_DTYPE_INT4 || t->dtype == OTL_DTYPE_UINT4) ? (t->numel + 1) / 2 : t->numel;
        break;
    default: items = t->numel;
    }
    if ((int64_t)have != items) {
        char dims[256] = "";
        size_t o = 0;
        for (int i = 0; i < t->rank && o < sizeof dims - 24; i++)
            o += (size_t)snprintf(dims + o, sizeof dims - o, "%s%lld", i ? "x" : "", (long long)t->dims[i]);
        return otl_error_set(lc->err, OTL_ERR_INPUT,
                             "%s: tensor '%s': declared shape [%s] (%lld elements of %s) does not match its data (%zu %s)",
                             lc->file, tn, dims, (long long)t->numel, otl_dtype_name(t->dtype), have,
                             kind == 1 ? "bytes" : "values");
    }
    (void)per;
    t->nbytes = (size_t)want;
    t->data = malloc(want ? (size_t)want : 1);
    if (!t->data)
        return nomem(lc);
    uint8_t *dst = t->data;
    switch (kind) {
    case 1:
    case 2:
    case 4:
    case 5:
        if (want)
            memcpy(dst, src, (size_t)want);
        break;
    case 6:
        if (t->dtype == OTL_DTYPE_UINT64) {
            memcpy(dst, src, (size_t)want);
        } else {
            const uint64_t *s = src;
            for (int64_t i = 0; i < t->numel; i++) {
                uint32_t v = (uint32_t)s[i];
                memcpy(dst + 4 * i, &v, 4);
            }
        }
        break;
    case 3: { /* int32_data holds each element widened to 32 bits */
        const int32_t *s = src;
        int s2 = otl_dtype_size2(t->dtype);
        for (int64_t i = 0; i < items; i++) {
            if (s2 <= 2) {
                dst[i] = (uint8_t)s[i];
            } else if (s2 == 4) {
                uint16_t v = (uint16_t)s[i];
                memcpy(dst + 2 * i, &v, 2);
            } else {
                memcpy(dst + 4 * i, &s[i], 4);
            }
        }
        break;
    }
    }
    return OTL_OK;
}

static otl_status graph_from_proto(load_ctx *lc, otl_graph **out, const Onnx__GraphProto *gp);

static otl_status value_from_proto(load_ctx *lc, otl_value **out, const Onnx__ValueInfoProto *vp)
{
    otl_value *v = calloc(1, sizeof *v);
    *out = v;
    if (!v)
        return nomem(lc);
    if (!dup_str(&v->name, vp->name ? vp->name : "") || !dup_str(&v->doc, vp->doc_string) ||
        !copy_unknown(&v->unknown, &vp->base))
        return nomem(lc);
    const Onnx__TypeProto *tp = vp->type;
    if (!tp)
        return OTL_OK;
    v->has_type = 1;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || tp->base.n_unknown_fields ||
        tp->tensor_type->base.n_unknown_fields ||
        (tp->tensor_type->shape && tp->tensor_type->shape->base.n_unknown_fields)) {
        return pack_blob(&v->type_blob, &tp->base) ? OTL_OK : nomem(lc);
    }
    v->is_tensor = 1;
    if (!dup_str(&v->denotation, tp->denotation))
        return nomem(lc);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->dtype = tt->has_elem_type ? tt->elem_type : 0;
    if (tt->shape) {
        v->has_shape = 1;
        if (tt->shape->n_dim > 64)
            return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: value '%s': rank %zu is too large",
                                 lc->file, v->name, tt->shape->n_dim);
        v->rank = (int)tt->shape->n_dim;
        if (v->rank && !(v->dims = calloc((size_t)v->rank, sizeof *v->dims)))
            return nomem(lc);
        for (int i = 0; i < v->rank; i++) {
            const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
            v->dims[i].value = -1;
            if (!dup_str(&v->dims[i].denotation, d->denotation))
                return nomem(lc);
            if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
                if (d->dim_value < 0)
                    return otl_error_set(lc->err, OTL_ERR_INPUT,
                                         "%s: value '%s': dimension %d is negative (%lld)",
                                         lc->file, v->name, i, (long long)d->dim_value);
                v->dims[i].value = d->dim_value;
            } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
                if (!dup_str(&v->dims[i].param, d->dim_param ? d->dim_param : ""))
                    return nomem(lc);
            }
        }
    }
    return OTL_OK;
}

static otl_status attr_from_proto(load_ctx *lc, otl_attr *a, const Onnx__AttributeProto *ap,
                                  const otl_node *n)
{
    if (!dup_str(&a->name, ap->name ? ap->name : "") || !dup_str(&a->doc, ap->doc_string) ||
        !dup_str(&a->ref_attr_name, ap->ref_attr_name) || !copy_unknown(&a->unknown, &ap->base))
        return nomem(lc);
    a->type = ap->has_type ? (int)ap->type : 0;
    a->f = ap->f;
    a->i = ap->i;
    if (ap->has_s) {
        a->s.len = ap->s.len;
        a->s.data = malloc(ap->s.len + 1);
        if (!a->s.data)
            return nomem(lc);
        if (ap->s.len)
            memcpy(a->s.data, ap->s.data, ap->s.len);
        a->s.data[ap->s.len] = 0; /* convenient for string attributes */
    }
    otl_status st;
    char where[256];
    snprintf(where, sizeof where, "attribute %s of node %s", a->name, n->name);
    if (ap->t && (st = tensor_from_proto(lc, &a->t, ap->t, where)))
        return st;
    if (ap->g && (st = graph_from_proto(lc, &a->g, ap->g)))
        return st;
    if (ap->n_floats && !(a->floats = otl_memdup(ap->floats, ap->n_floats * sizeof(float))))
        return nomem(lc);
    a->n_floats = ap->n_floats;
    if (ap->n_ints && !(a->ints = otl_memdup(ap->ints, ap->n_ints * sizeof(int64_t))))
        return nomem(lc);
    a->n_ints = ap->n_ints;
    if (ap->n_strings) {
        if (!(a->strings = calloc(ap->n_strings, sizeof *a->strings)))
            return nomem(lc);
        a->n_strings = ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i].len = ap->strings[i].len;
            if (!(a->strings[i].data = malloc(ap->strings[i].len + 1)))
                return nomem(lc);
            if (ap->strings[i].len)
                memcpy(a->strings[i].data, ap->strings[i].data, ap->strings[i].len);
            a->strings[i].data[ap->strings[i].len] = 0;
        }
    }
    if (ap->n_tensors) {
        if (!(a->tensors = calloc(ap->n_tensors, sizeof *a->tensors)))
            return nomem(lc);
        a->n_tensors = ap->n_tensors;
        for (size_t i = 0; i < ap->n_tensors; i++)
            if ((st = tensor_from_proto(lc, &a->tensors[i], ap->tensors[i], where)))
                return st;
    }
    if (ap->n_graphs) {
        if (!(a->graphs = calloc(ap->n_graphs, sizeof *a->graphs)))
            return nomem(lc);
        a->n_graphs = ap->n_graphs;
        for (size_t i = 0; i < ap->n_graphs; i++)
            if ((st = graph_from_proto(lc, &a->graphs[i], ap->graphs[i])))
                return st;
    }
    if (ap->sparse_tensor && !pack_blob(&a->sparse_tensor, &ap->sparse_tensor->base))
        return nomem(lc);
    if (ap->tp && !pack_blob(&a->tp, &ap->tp->base))
        return nomem(lc);
    if (!pack_blobs(&a->sparse_tensors, &a->n_sparse_tensors, (void **)ap->sparse_tensors,
                    ap->n_sparse_tensors) ||
        !pack_blobs(&a->type_protos, &a->n_type_protos, (void **)ap->type_protos, ap->n_type_protos))
        return nomem(lc);
    return OTL_OK;
}

static otl_status strings_copy(load_ctx *lc, char ***dst, int *n, char **src, size_t ns)
{
    *dst = NULL;
    *n = 0;
    if (!ns)
        return OTL_OK;
    if (ns > INT_MAX || !(*dst = calloc(ns, sizeof **dst)))
        return nomem(lc);
    *n = (int)ns;
    for (size_t i = 0; i < ns; i++)
        if (!((*dst)[i] = otl_strdup(src[i] ? src[i] : "")))
            return nomem(lc);
    return OTL_OK;
}

static otl_status node_from_proto(load_ctx *lc, otl_node **out, const Onnx__NodeProto *np)
{
    otl_node *n = calloc(1, sizeof *n);
    *out = n;
    if (!n)
        return nomem(lc);
    if (!np->op_type || !*np->op_type) /* fail fast: do not build a huge IR of empty nodes */
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: node '%s' has no op_type", lc->file,
                             np->name ? np->name : "");
    if (!dup_str(&n->name, np->name ? np->name : "") || !dup_str(&n->op_type, np->op_type ? np->op_type : "") ||
        !dup_str(&n->domain, np->domain ? np->domain : "") || !dup_str(&n->doc, np->doc_string) ||
        !copy_unknown(&n->unknown, &np->base))
        return nomem(lc);
    otl_status st;
    if ((st = strings_copy(lc, &n->inputs, &n->n_inputs, np->input, np->n_input)) ||
        (st = strings_copy(lc, &n->outputs, &n->n_outputs, np->output, np->n_output)))
        return st;
    if (np->n_attribute) {
        if (np->n_attribute > INT_MAX || !(n->attrs = calloc(np->n_attribute, sizeof *n->attrs)))
            return nomem(lc);
        n->n_attrs = (int)np->n_attribute;
        for (size_t i = 0; i < np->n_attribute; i++)
            if ((st = attr_from_proto(lc, &n->attrs[i], np->attribute[i], n)))
                return st;
    }
    return OTL_OK;
}

static otl_status graph_from_proto(load_ctx *lc, otl_graph **out, const Onnx__GraphProto *gp)
{
    otl_graph *g = calloc(1, sizeof *g);
    *out = g;
    if (!g)
        return nomem(lc);
    if (!dup_str(&g->name, gp->name) || !dup_str(&g->doc, gp->doc_string) ||
        !copy_unknown(&g->unknown, &gp->base))
        return nomem(lc);
    otl_status st;
    if (gp->n_node > INT_MAX || gp->n_initializer > INT_MAX || gp->n_input > INT_MAX ||
        gp->n_output > INT_MAX || gp->n_value_info > INT_MAX)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: graph too large", lc->file);
#define COPY_ARRAY(dstn, dst, srcn, src, fn)                            \
    do {                                                                \
        if (srcn) {                                                     \
            if (!(dst = calloc(srcn, sizeof *dst)))                     \
                return nomem(lc);                                       \
            for (size_t i_ = 0; i_ < srcn; i_++) {                      \
                dstn = (int)i_ + 1;                                     \
                if ((st = fn(lc, &dst[i_], src[i_])))                   \
                    return st;                                          \
            }                                                           \
        }                                                               \
    } while (0)
    COPY_ARRAY(g->n_nodes, g->nodes, gp->n_node, gp->node, node_from_proto);
    for (size_t i = 0; i < gp->n_initializer; i++) {
        if (i == 0 && !(g->inits = calloc(gp->n_initializer, sizeof *g->inits)))
            return nomem(lc);
        g->n_inits = (int)i + 1;
        if ((st = tensor_from_proto(lc, &g->inits[i], gp->initializer[i], "(initializer)")))
            return st;
    }
    COPY_ARRAY(g->n_inputs, g->inputs, gp->n_input, gp->input, value_from_proto);
    COPY_ARRAY(g->n_outputs, g->outputs, gp->n_output, gp->output, value_from_proto);
    COPY_ARRAY(g->n_value_info, g->value_info, gp->n_value_info, gp->value_info, value_from_proto);
#undef COPY_ARRAY
    if (!pack_blobs(&g->sparse_inits, &g->n_sparse_inits, (void **)gp->sparse_initializer,
                    gp->n_sparse_initializer) ||
        !pack_blobs(&g->quant_annot, &g->n_quant_annot, (void **)gp->quantization_annotation,
                    gp->n_quantization_annotation))
        return nomem(lc);
    return OTL_OK;
}

static otl_status model_from_proto(load_ctx *lc, otl_model *m, const Onnx__ModelProto *mp)
{
    if (!mp->graph)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: not a valid ONNX model: it has no graph",
                             lc->file);
    m->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    m->model_version = mp->model_version;
    m->has_model_version = mp->has_model_version;
    if (!dup_str(&m->producer_name, mp->producer_name) ||
        !dup_str(&m->producer_version, mp->producer_version) || !dup_str(&m->domain, mp->domain) ||
        !dup_str(&m->doc, mp->doc_string) || !copy_unknown(&m->unknown, &mp->base))
        return nomem(lc);
    if (mp->n_opset_import > 4096)
        return otl_error_set(lc->err, OTL_ERR_INPUT, "%s: too many opset imports", lc->file);
    if (mp->n_opset_import) {
        if (!(m->opsets = calloc(mp->n_opset_import, sizeof *m->opsets)))
            return nomem(lc);
        for (size_t i = 0; i < mp->n_opset_import; i++) {
            m->n_opsets = (int)i + 1;
            const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
            if (!dup_str(&m->opsets[i].domain, o->domain ? o->domain : ""))
                return nomem(lc);
            m->opsets[i].version = o->version;
        }
    }
    if (mp->n_metadata_props > INT_MAX)
        return nomem(lc);
    if (mp->n_metadata_props) {
        if (!(m->meta = calloc(mp->n_metadata_props, sizeof *m->meta)))
            return nomem(lc);
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            m->n_meta = (int)i + 1;
            const Onnx__StringStringEntryProto *kv = mp->metadata_props[i];
            if (!dup_str(&m->meta[i].key, kv->key ? kv->key : "") ||
                !dup_str(&m->meta[i].value, kv->value ? kv->value : ""))
                return nomem(lc);
        }
    }
    if (!pack_blobs(&m->training_info, &m->n_training_info, (void **)mp->training_info,
                    mp->n_training_info) ||
        !pack_blobs(&m->functions, &m->n_functions, (void **)mp->functions, mp->n_functions))
        return nomem(lc);
    return graph_from_proto(lc, &m->graph, mp->graph);
}

otl_status otl_model_load_buffer(otl_model **out, const void *buf, size_t len, const char *name,
                                 const char *dir, const otl_load_opts *opts, otl_error *err)
{
    *out = NULL;
    const char *file = name ? name : "(memory)";
    if (len == 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a valid ONNX model: the file is empty", file);
    if (len > MAX_FILE_BYTES)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: file larger than protobuf's 2 GiB limit", file);
    scan_ctx sc = {buf, file, err};
    otl_status st = scan_message(&sc, buf, (const uint8_t *)buf + len,
                                 &onnx__model_proto__descriptor, 0);
    if (st)
        return st;
    budget b = {0, (size_t)32 * len + ((size_t)64 << 20), 0};
    if (b.limit < len) /* overflow */
        b.limit = SIZE_MAX / 2;
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&alloc, len, buf);
    if (!mp) {
        if (b.exceeded)
            return otl_error_set(err, OTL_ERR_INPUT,
                                 "%s: not a valid ONNX model: parsing would need more than %zu MiB",
                                 file, b.limit >> 20);
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: not a valid ONNX model: protobuf parse error (corrupt or truncated file)",
                             file);
    }
    otl_model *m = otl_model_new();
    if (!m) {
        onnx__model_proto__free_unpacked(mp, &alloc);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    }
    load_ctx lc = {file, dir, NULL, err, 0};
    st = model_from_proto(&lc, m, mp);
    onnx__model_proto__free_unpacked(mp, &alloc);
    free(lc.realdir);
    m->had_external_data = lc.had_external;
    if (!st && name && !(m->path = otl_strdup(name)))
        st = otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", file);
    if (!st && !(opts && opts->skip_validate))
        st = otl_model_validate(m, err);
    if (st) {
        otl_model_free(m);
        return st;
    }
    *out = m;
    return OTL_OK;
}

otl_status otl_model_load(otl_model **out, const char *path, const otl_load_opts *opts,
                          otl_error *err)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    otl_status st = otl_read_file(path, MAX_FILE_BYTES, &buf, &len, err);
    if (st)
        return st;
    char *dir = otl_dirname(path);
    if (!dir) {
        free(buf);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
    }
    st = otl_model_load_buffer(out, buf, len, path, dir, opts, err);
    free(buf);
    free(dir);
    return st;
}

otl_status otl_tensor_parse(otl_tensor **out, const void *buf, size_t len, const char *name,
                            otl_error *err)
{
    *out = NULL;
    const char *file = name ? name : "(tensor)";
    scan_ctx sc = {buf, file, err};
    otl_status st = scan_message(&sc, buf, (const uint8_t *)buf + len,
                                 &onnx__tensor_proto__descriptor, 0);
    if (st)
        return st;
    budget b = {0, (size_t)64 * len + ((size_t)64 << 20), 0};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(&alloc, len, buf);
    if (!tp)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a valid TensorProto (corrupt or truncated)",
                             file);
    load_ctx lc = {file, NULL, NULL, err, 0};
    otl_tensor *t = NULL;
    st = tensor_from_proto(&lc, &t, tp, file);
    onnx__tensor_proto__free_unpacked(tp, &alloc);
    if (st) {
        otl_tensor_free(t);
        return st;
    }
    *out = t;
    return OTL_OK;
}

otl_status otl_tensor_load_pb(otl_tensor **out, const char *path, otl_error *err)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    otl_status st = otl_read_file(path, MAX_FILE_BYTES, &buf, &len, err);
    if (st)
        return st;
    st = otl_tensor_parse(out, buf, len, path, err);
    free(buf);
    return st;
}

/* ================================================================ IR -> proto */

typedef struct save_ctx {
    arena ar;
    ProtobufCAllocator pa;   /* unpacks opaque blobs into the arena */
    otl_error *err;
    const char *file;
    /* external data */
    int ext_mode;            /* 0 none, 1 tensors that were external, 2 by threshold */
    size_t threshold;
    FILE *data_fp;
    const char *data_name;   /* location written into the model */
    uint64_t data_off;
} save_ctx;

#define NEW(sc, T, init) ((T *)new_msg(sc, sizeof(T), (void (*)(void *))init))
static void *new_msg(save_ctx *sc, size_t size, void (*init)(void *))
{
    void *p = arena_alloc(&sc->ar, size);
    if (p)
        init(p);
    return p;
}

static void *arr(save_ctx *sc, size_t n, size_t size)
{
    return n ? arena_alloc(&sc->ar, n * size) : NULL;
}

static void set_unknown(save_ctx *sc, ProtobufCMessage *msg, const otl_unknown *u)
{
    if (!u->n)
        return;
    ProtobufCMessageUnknownField *f = arr(sc, u->n, sizeof *f);
    if (!f)
        return;
    for (size_t i = 0; i < u->n; i++) {
        f[i].tag = u->f[i].tag;
        f[i].wire_type = (ProtobufCWireType)u->f[i].wire_type;
        f[i].len = u->f[i].len;
        f[i].data = u->f[i].data;
    }
    msg->n_unknown_fields = (unsigned)u->n;
    msg->unknown_fields = f;
}

static void *unblob(save_ctx *sc, const otl_blob *b, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &sc->pa, b->len, b->data);
    if (!m)
        sc->ar.failed = 1;
    return m;
}

static void **unblobs(save_ctx *sc, const otl_blob *b, size_t n, const ProtobufCMessageDescriptor *d)
{
    void **v = arr(sc, n, sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = unblob(sc, &b[i], d);
    return v;
}

static int write_external(save_ctx *sc, const otl_tensor *t, Onnx__TensorProto *tp)
{
    static const uint8_t zeros[64];
    size_t pad = (size_t)((64 - sc->data_off % 64) % 64);
    if (pad && fwrite(zeros, 1, pad, sc->data_fp) != pad)
        return 0;
    sc->data_off += pad;
    if (t->nbytes && fwrite(t->data, 1, t->nbytes, sc->data_fp) != t->nbytes)
        return 0;
    size_t n = 3 + (size_t)t->n_ext_extra;
    Onnx__StringStringEntryProto **kv = arr(sc, n, sizeof *kv);
    char *num = arena_alloc(&sc->ar, 64);
    if (!kv || !num)
        return 0;
    snprintf(num, 32, "%llu", (unsigned long long)sc->data_off);
    snprintf(num + 32, 32, "%zu", t->nbytes);
    const char *keys[3] = {"location", "offset", "length"};
    const char *vals[3] = {sc->data_name, num, num + 32};
    for (size_t i = 0; i < n; i++) {
        kv[i] = NEW(sc, Onnx__StringStringEntryProto, onnx__string_string_entry_proto__init);
        if (!kv[i])
            return 0;
        kv[i]->key = (char *)(i < 3 ? keys[i] : t->ext_extra[i - 3].key);
        kv[i]->value = (char *)(i < 3 ? vals[i] : t->ext_extra[i - 3].value);
    }
    tp->n_external_data = n;
    tp->external_data = kv;
    tp->has_data_location = 1;
    tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    sc->data_off += t->nbytes;
    return 1;
}

/* protobuf-c output buffer that writes to a stdio stream (large appends, the tensor bytes, pass stdio's
 * buffer by themselves); failed keeps the first errno */
typedef struct file_sink {
    ProtobufCBuffer base;
    FILE *fp;
    int failed;
} file_sink;

static void file_sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    file_sink *fs = (file_sink *)b;
    if (!fs->failed && len && fwrite(data, 1, len, fs->fp) != len)
        fs->failed = errno ? errno : EIO;
}

static Onnx__TensorProto *tensor_to_proto(save_ctx *sc, const otl_tensor *t, int allow_external)
{
    Onnx__TensorProto *tp = NEW(sc, Onnx__TensorProto, onnx__tensor_proto__init);
    if (!tp)
        return NULL;
    tp->name = t->name;
    tp->doc_string = t->doc;
    tp->has_data_type = 1;
    tp->data_type = t->dtype;
    tp->n_dims = (size_t)t->rank;
    tp->dims = t->dims;
    set_unknown(sc, &tp->base, &t->unknown);
    if (t->has_segment) {
        tp->segment = NEW(sc, Onnx__TensorProto__Segment, onnx__tensor_proto__segment__init);
        if (!tp->segment)
            return NULL;
        tp->segment->has_begin = tp->segment->has_end = 1;
        tp->segment->begin = t->seg_begin;
        tp->segment->end = t->seg_end;
    }
    if (t->dtype == OTL_DTYPE_STRING) {
        tp->n_string_data = (size_t)t->numel;
        tp->string_data = arr(sc, tp->n_string_data, sizeof *tp->string_data);
        for (size_t i = 0; tp->string_data && i < tp->n_string_data; i++) {
            tp->string_data[i].len = t->strs[i].len;
            tp->string_data[i].data = t->strs[i].data;
        }
        return tp;
    }
    int ext = allow_external &&
              ((sc->ext_mode == 1 && t->ext_location) ||
               (sc->ext_mode == 2 && t->nbytes >= sc->threshold));
    if (ext) {
        if (!write_external(sc, t, tp)) {
            sc->ar.failed = 2;
            return NULL;
        }
        return tp;
    }
    tp->has_raw_data = 1;
    tp->raw_data.len = t->nbytes;
    tp->raw_data.data = t->data;
    return tp;
}

static Onnx__GraphProto *graph_to_proto(save_ctx *sc, const otl_graph *g, int top);

static Onnx__TensorShapeProto *shape_to_proto(save_ctx *sc, const otl_value *v)
{
    Onnx__TensorShapeProto *sp = NEW(sc, Onnx__TensorShapeProto, onnx__tensor_shape_proto__init);
    if (!sp)
        return NULL;
    sp->n_dim = (size_t)v->rank;
    sp->dim = arr(sc, sp->n_dim, sizeof *sp->dim);
    for (int i = 0; sp->dim && i < v->rank; i++) {
        Onnx__TensorShapeProto__Dimension *d =
            NEW(sc, Onnx__TensorShapeProto__Dimension, onnx__tensor_shape_proto__dimension__init);
        if (!d)
            return NULL;
        d->denotation = v->dims[i].denotation;
        if (v->dims[i].param) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = v->dims[i].param;
        } else if (v->dims[i].value >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = v->dims[i].value;
        }
        sp->dim[i] = d;
    }
    return sp;
}

static Onnx__ValueInfoProto *value_to_proto(save_ctx *sc, const otl_value *v)
{
    Onnx__ValueInfoProto *vp = NEW(sc, Onnx__ValueInfoProto, onnx__value_info_proto__init);
    if (!vp)
        return NULL;
    vp->name = v->name;
    vp->doc_string = v->doc;
    set_unknown(sc, &vp->base, &v->unknown);
    if (!v->has_type)
        return vp;
    if (!v->is_tensor) {
        vp->type = unblob(sc, &v->type_blob, &onnx__type_proto__descriptor);
        return vp;
    }
    Onnx__TypeProto *tp = NEW(sc, Onnx__TypeProto, onnx__type_proto__init);
    Onnx__TypeProto__Tensor *tt = NEW(sc, Onnx__TypeProto__Tensor, onnx__type_proto__tensor__init);
    if (!tp || !tt)
        return NULL;
    tp->denotation = v->denotation;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    if (v->dtype) {
        tt->has_elem_type = 1;
        tt->elem_type = v->dtype;
    }
    if (v->has_shape)
        tt->shape = shape_to_proto(sc, v);
    vp->type = tp;
    return vp;
}

static Onnx__AttributeProto *attr_to_proto(save_ctx *sc, const otl_attr *a)
{
    Onnx__AttributeProto *ap = NEW(sc, Onnx__AttributeProto, onnx__attribute_proto__init);
    if (!ap)
        return NULL;
    ap->name = a->name;
    ap->doc_string = a->doc;
    ap->ref_attr_name = a->ref_attr_name;
    set_unknown(sc, &ap->base, &a->unknown);
    if (a->type) {
        ap->has_type = 1;
        ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    }
    if (a->type == OTL_ATTR_FLOAT || a->f != 0.0f) {
        ap->has_f = 1;
        ap->f = a->f;
    }
    if (a->type == OTL_ATTR_INT || a->i != 0) {
        ap->has_i = 1;
        ap->i = a->i;
    }
    if (a->type == OTL_ATTR_STRING || a->s.data) {
        ap->has_s = 1;
        ap->s.len = a->s.len;
        ap->s.data = a->s.data;
    }
    if (a->t)
        ap->t = tensor_to_proto(sc, a->t, 0);
    if (a->g)
        ap->g = graph_to_proto(sc, a->g, 0);
    ap->n_floats = a->n_floats;
    ap->floats = a->floats;
    ap->n_ints = a->n_ints;
    ap->ints = a->ints;
    ap->n_strings = a->n_strings;
    ap->strings = arr(sc, a->n_strings, sizeof *ap->strings);
    for (size_t i = 0; ap->strings && i < a->n_strings; i++) {
        ap->strings[i].len = a->strings[i].len;
        ap->strings[i].data = a->strings[i].data;
    }
    ap->n_tensors = a->n_tensors;
    ap->tensors = arr(sc, a->n_tensors, sizeof *ap->tensors);
    for (size_t i = 0; ap->tensors && i < a->n_tensors; i++)
        ap->tensors[i] = tensor_to_proto(sc, a->tensors[i], 0);
    ap->n_graphs = a->n_graphs;
    ap->graphs = arr(sc, a->n_graphs, sizeof *ap->graphs);
    for (size_t i = 0; ap->graphs && i < a->n_graphs; i++)
        ap->graphs[i] = graph_to_proto(sc, a->graphs[i], 0);
    if (a->sparse_tensor.data)
        ap->sparse_tensor = unblob(sc, &a->sparse_tensor, &onnx__sparse_tensor_proto__descriptor);
    if (a->tp.data)
        ap->tp = unblob(sc, &a->tp, &onnx__type_proto__descriptor);
    ap->n_sparse_tensors = a->n_sparse_tensors;
    ap->sparse_tensors = (Onnx__SparseTensorProto **)unblobs(sc, a->sparse_tensors, a->n_sparse_tensors,
                                                             &onnx__sparse_tensor_proto__descriptor);
    ap->n_type_protos = a->n_type_protos;
    ap->type_protos = (Onnx__TypeProto **)unblobs(sc, a->type_protos, a->n_type_protos,
                                                  &onnx__type_proto__descriptor);
    return ap;
}

static Onnx__NodeProto *node_to_proto(save_ctx *sc, const otl_node *n)
{
    Onnx__NodeProto *np = NEW(sc, Onnx__NodeProto, onnx__node_proto__init);
    if (!np)
        return NULL;
    np->name = n->name;
    np->op_type = n->op_type;
    np->domain = n->domain;
    np->doc_string = n->doc;
    np->n_input = (size_t)n->n_inputs;
    np->input = n->inputs;
    np->n_output = (size_t)n->n_outputs;
    np->output = n->outputs;
    set_unknown(sc, &np->base, &n->unknown);
    np->n_attribute = (size_t)n->n_attrs;
    np->attribute = arr(sc, np->n_attribute, sizeof *np->attribute);
    for (int i = 0; np->attribute && i < n->n_attrs; i++)
        np->attribute[i] = attr_to_proto(sc, &n->attrs[i]);
    return np;
}

static Onnx__GraphProto *graph_to_proto(save_ctx *sc, const otl_graph *g, int top)
{
    Onnx__GraphProto *gp = NEW(sc, Onnx__GraphProto, onnx__graph_proto__init);
    if (!gp)
        return NULL;
    gp->name = g->name;
    gp->doc_string = g->doc;
    set_unknown(sc, &gp->base, &g->unknown);
    gp->n_node = (size_t)g->n_nodes;
    gp->node = arr(sc, gp->n_node, sizeof *gp->node);
    for (int i = 0; gp->node && i < g->n_nodes; i++)
        gp->node[i] = node_to_proto(sc, g->nodes[i]);
    gp->n_initializer = (size_t)g->n_inits;
    gp->initializer = arr(sc, gp->n_initializer, sizeof *gp->initializer);
    for (int i = 0; gp->initializer && i < g->n_inits; i++)
        gp->initializer[i] = tensor_to_proto(sc, g->inits[i], top);
    gp->n_input = (size_t)g->n_inputs;
    gp->input = arr(sc, gp->n_input, sizeof *gp->input);
    for (int i = 0; gp->input && i < g->n_inputs; i++)
        gp->input[i] = value_to_proto(sc, g->inputs[i]);
    gp->n_output = (size_t)g->n_outputs;
    gp->output = arr(sc, gp->n_output, sizeof *gp->output);
    for (int i = 0; gp->output && i < g->n_outputs; i++)
        gp->output[i] = value_to_proto(sc, g->outputs[i]);
    gp->n_value_info = (size_t)g->n_value_info;
    gp->value_info = arr(sc, gp->n_value_info, sizeof *gp->value_info);
    for (int i = 0; gp->value_info && i < g->n_value_info; i++)
        gp->value_info[i] = value_to_proto(sc, g->value_info[i]);
    gp->n_sparse_initializer = g->n_sparse_inits;
    gp->sparse_initializer = (Onnx__SparseTensorProto **)unblobs(
        sc, g->sparse_inits, g->n_sparse_inits, &onnx__sparse_tensor_proto__descriptor);
    gp->n_quantization_annotation = g->n_quant_annot;
    gp->quantization_annotation = (Onnx__TensorAnnotation **)unblobs(
        sc, g->quant_annot, g->n_quant_annot, &onnx__tensor_annotation__descriptor);
    return gp;
}

static Onnx__ModelProto *model_to_proto(save_ctx *sc, const otl_model *m)
{
    Onnx__ModelProto *mp = NEW(sc, Onnx__ModelProto, onnx__model_proto__init);
    if (!mp)
        return NULL;
    mp->has_ir_version = m->ir_version != 0;
    mp->ir_version = m->ir_version;
    mp->producer_name = m->producer_name;
    mp->producer_version = m->producer_version;
    mp->domain = m->domain;
    mp->has_model_version = m->has_model_version;
    mp->model_version = m->model_version;
    mp->doc_string = m->doc;
    set_unknown(sc, &mp->base, &m->unknown);
    mp->n_opset_import = (size_t)m->n_opsets;
    mp->opset_import = arr(sc, mp->n_opset_import, sizeof *mp->opset_import);
    for (int i = 0; mp->opset_import && i < m->n_opsets; i++) {
        Onnx__OperatorSetIdProto *o = NEW(sc, Onnx__OperatorSetIdProto, onnx__operator_set_id_proto__init);
        if (!o)
            return NULL;
        o->domain = m->opsets[i].domain;
        o->has_version = 1;
        o->version = m->opsets[i].version;
        mp->opset_import[i] = o;
    }
    mp->n_metadata_props = (size_t)m->n_meta;
    mp->metadata_props = arr(sc, mp->n_metadata_props, sizeof *mp->metadata_props);
    for (int i = 0; mp->metadata_props && i < m->n_meta; i++) {
        Onnx__StringStringEntryProto *kv =
            NEW(sc, Onnx__StringStringEntryProto, onnx__string_string_entry_proto__init);
        if (!kv)
            return NULL;
        kv->key = m->meta[i].key;
        kv->value = m->meta[i].value;
        mp->metadata_props[i] = kv;
    }
    mp->n_training_info = m->n_training_info;
    mp->training_info = (Onnx__TrainingInfoProto **)unblobs(sc, m->training_info, m->n_training_info,
                                                            &onnx__training_info_proto__descriptor);
    mp->n_functions = m->n_functions;
    mp->functions = (Onnx__FunctionProto **)unblobs(sc, m->functions, m->n_functions,
                                                    &onnx__function_proto__descriptor);
    mp->graph = m->graph ? graph_to_proto(sc, m->graph, 1) : NULL;
    return mp;
}

static void save_ctx_init(save_ctx *sc, const char *file, otl_error *err)
{
    memset(sc, 0, sizeof *sc);
    sc->pa.alloc = pa_alloc;
    sc->pa.free = pa_free;
    sc->pa.allocator_data = &sc->ar;
    sc->err = err;
    sc->file = file;
}

otl_status otl_model_serialize(const otl_model *m, uint8_t **buf, size_t *len, otl_error *err)
{
    *buf = NULL;
    *len = 0;
    save_ctx sc;
    save_ctx_init(&sc, "(memory)", err);
    Onnx__ModelProto *mp = model_to_proto(&sc, m);
    if (!mp || sc.ar.failed) {
        arena_release(&sc.ar);
        return otl_error_set(err, OTL_ERR_NOMEM, "serializing model: out of memory");
    }
    size_t n = onnx__model_proto__get_packed_size(mp);
    if (n > MAX_FILE_BYTES) {
        arena_release(&sc.ar);
        return otl_error_set(err, OTL_ERR_INPUT,
                             "serializing model: %zu bytes exceed protobuf's 2 GiB limit; save with external data",
                             n);
    }
    *buf = malloc(n ? n : 1);
    if (!*buf) {
        arena_release(&sc.ar);
        return otl_error_set(err, OTL_ERR_NOMEM, "serializing model: out of memory");
    }
    *len = onnx__model_proto__pack(mp, *buf);
    arena_release(&sc.ar);
    return OTL_OK;
}

static size_t total_init_bytes(const otl_graph *g)
{
    size_t s = 0;
    for (int i = 0; i < g->n_inits; i++)
        s += g->inits[i]->nbytes;
    return s;
}

otl_status otl_model_save(const otl_model *m, const char *path, const otl_save_opts *opts,
                          otl_error *err)
{
    if (!m->graph)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: model has no graph", path);
    if (m->path && otl_same_file(m->path, path))
        return otl_error_set(err, OTL_ERR_USAGE,
                             "%s: refusing to overwrite the input model; choose another output path", path);
    otl_save_opts o = {0};
    if (opts)
        o = *opts;
    save_ctx sc;
    save_ctx_init(&sc, path, err);
    sc.threshold = o.threshold ? o.threshold : 1024;
    if (o.external == OTL_EXTERNAL_ALWAYS)
        sc.ext_mode = 2;
    else if (o.external == OTL_EXTERNAL_AUTO) {
        if (total_init_bytes(m->graph) > PROTO_LIMIT)
            sc.ext_mode = 2;
        else if (m->had_external_data)
            sc.ext_mode = 1;
    }

    otl_status st = OTL_OK;
    otl_atomic_file data_af = {0}, model_af = {0};
    char *data_path = NULL, *data_name = NULL;
    if (sc.ext_mode) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (o.data_name) {
            if (!location_is_safe(o.data_name) || strchr(o.data_name, '/'))
                return otl_error_set(err, OTL_ERR_USAGE, "%s: bad external data file name '%s'",
                                     path, o.data_name);
            data_name = otl_strdup(o.data_name);
        } else {
            data_name = malloc(strlen(base) + 6);
            if (data_name)
                sprintf(data_name, "%s.data", base);
        }
        char *dir = otl_dirname(path);
        data_path = dir && data_name ? malloc(strlen(dir) + strlen(data_name) + 2) : NULL;
        if (data_path)
            sprintf(data_path, "%s/%s", dir, data_name);
        free(dir);
        if (!data_path) {
            free(data_name);
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
        }
        /* never overwrite the data file the model itself was read from */
        if (m->path) {
            char *srcdir = otl_dirname(m->path);
            for (int i = 0; srcdir && i < m->graph->n_inits && !st; i++) {
                const char *loc = m->graph->inits[i]->ext_location;
                if (!loc)
                    continue;
                char *p = malloc(strlen(srcdir) + strlen(loc) + 2);
                if (p) {
                    sprintf(p, "%s/%s", srcdir, loc);
                    if (otl_same_file(p, data_path))
                        st = otl_error_set(err, OTL_ERR_USAGE,
                                           "%s: external data file '%s' would overwrite the input's data; choose another output name",
                                           path, data_path);
                    free(p);
                }
            }
            free(srcdir);
        }
        if (!st)
            st = otl_atomic_open(&data_af, data_path, err);
        if (st) {
            free(data_path);
            free(data_name);
            return st;
        }
        sc.data_fp = data_af.fp;
        sc.data_name = data_name;
    }

    Onnx__ModelProto *mp = model_to_proto(&sc, m);
    if (!mp || sc.ar.failed) {
        st = sc.ar.failed == 2 ? otl_error_set(err, OTL_ERR_IO, "%s: writing external data failed: %s",
                                               data_path, strerror(errno))
                               : otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory while serializing", path);
        goto fail;
    }
    size_t n = onnx__model_proto__get_packed_size(mp);
    if (n > MAX_FILE_BYTES) {
        st = otl_error_set(err, OTL_ERR_INPUT,
                           "%s: the model needs %zu bytes, over protobuf's 2 GiB limit; use external data",
                           path, n);
        goto fail;
    }
    /* streamed: tensor bytes go from the model's own buffers to the file, no packed copy of the model */
    if ((st = otl_atomic_open(&model_af, path, err)) == OTL_OK) {
        file_sink fs = {{file_sink_append}, model_af.fp, 0};
        if (protobuf_c_message_pack_to_buffer(&mp->base, &fs.base) != n || fs.failed) {
            st = otl_error_set(err, OTL_ERR_IO, "%s: write failed: %s", path, strerror(fs.failed ? fs.failed : EIO));
            otl_atomic_abort(&model_af);
        }
    }
    arena_release(&sc.ar);
    /* commit the data file first: a model never points at data that is not there */
    int data_committed = 0;
    if (!st && sc.ext_mode) {
        if ((st = otl_atomic_commit(&data_af, err)))
            otl_atomic_abort(&model_af);
        else
            data_committed = 1;
    }
    if (!st)
        st = otl_atomic_commit(&model_af, err);
    if (st && data_committed) {
        /* the data file was committed but the model was not: do not leave a stray file */
        unlink(data_path);
    }
    if (sc.ext_mode && data_af.tmp)
        otl_atomic_abort(&data_af);
    free(data_path);
    free(data_name);
    return st;
fail:
    arena_release(&sc.ar);
    if (sc.ext_mode)
        otl_atomic_abort(&data_af);
    free(data_path);
    free(data_name);
    return st;
}
