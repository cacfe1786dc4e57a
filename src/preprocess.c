/* preprocess.c - the preprocessing metadata of a model (include/onnxtl_data.h): defaults from the
 * model's image input, a strict parser for the JSON stored in metadata_props["onnx_tl.preprocess"]
 * (or given to swap-head), the canonical JSON text, and the checks against the model's input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxtl_data.h"
#include "graph/graph_edit.h"
#include "src/util.h"

#define PP_KEY "onnx_tl.preprocess"

int otl_preprocess_nchan(const otl_preprocess *pp)
{
    return pp->channels == OTL_CHANNELS_GRAY ? 1 : 3;
}

/* The model's first graph input that has no initializer, or NULL. */
static const otl_value *data_input(const otl_model *m)
{
    const otl_graph *g = m->graph;
    for (int i = 0; g && i < g->n_inputs; i++)
        if (!otl_graph_find_init(g, g->inputs[i]->name))
            return g->inputs[i];
    return NULL;
}

/* Image input facts: layout (by the header's rule) and the known dims (-1 when symbolic). */
static otl_status image_input(const otl_model *m, const otl_value **vout, int *nhwc, int64_t *c, int64_t *h,
                              int64_t *w, otl_error *err)
{
    const otl_value *v = data_input(m);
    if (!v)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: the model has no data input (every input has an initializer)",
                             otl_model_file(m));
    if (!v->has_type || !v->is_tensor || !v->has_shape || v->rank != 4)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: input '%s' is not an image batch (expected a rank-4 tensor, N,C,H,W or N,H,W,C); "
                             "image preprocessing does not apply to it",
                             otl_model_file(m), v->name);
    if (!otl_dtype_is_float(v->dtype))
        return otl_error_set(err, OTL_ERR_INPUT, "%s: input '%s' is %s, image preprocessing needs a float input",
                             otl_model_file(m), v->name, otl_dtype_name(v->dtype));
    int64_t d1 = v->dims[1].value, d3 = v->dims[3].value;
    *nhwc = (d3 == 1 || d3 == 3) && !(d1 == 1 || d1 == 3);
    *c = *nhwc ? d3 : d1;
    *h = *nhwc ? v->dims[1].value : v->dims[2].value;
    *w = *nhwc ? v->dims[2].value : v->dims[3].value;
    *vout = v;
    return OTL_OK;
}

static void set_norm_defaults(otl_preprocess *pp)
{
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    if (otl_preprocess_nchan(pp) == 1) {
        pp->mean[0] = pp->mean[1] = pp->mean[2] = 0.5f;
        pp->std[0] = pp->std[1] = pp->std[2] = 0.5f;
    } else {
        int bgr = pp->channels == OTL_CHANNELS_BGR;
        for (int k = 0; k < 3; k++) {
            pp->mean[k] = imagenet_mean[bgr ? 2 - k : k];
            pp->std[k] = imagenet_std[bgr ? 2 - k : k];
        }
    }
}

static void set_resize_defaults(otl_preprocess *pp)
{
    int big = pp->height >= 224 && pp->width >= 224;
    pp->resize = big ? OTL_RESIZE_SHORTER_SIDE : OTL_RESIZE_STRETCH;
    pp->crop = big ? OTL_CROP_CENTER : OTL_CROP_NONE;
}

otl_status otl_preprocess_default(const otl_model *m, otl_preprocess *pp, otl_error *err)
{
    memset(pp, 0, sizeof *pp);
    const otl_value *v;
    int nhwc;
    int64_t c, h, w;
    if (image_input(m, &v, &nhwc, &c, &h, &w, err))
        return err->code;
    if (c >= 0 && c != 1 && c != 3)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: input '%s' has %lld channels; image preprocessing supports 1 (gray) or 3 (rgb/bgr)",
                             otl_model_file(m), v->name, (long long)c);
    pp->nhwc = nhwc;
    pp->channels = c == 1 ? OTL_CHANNELS_GRAY : OTL_CHANNELS_RGB;
    pp->height = h > 0 ? h : 224;
    pp->width = w > 0 ? w : 224;
    pp->scale = 255.0f;
    set_norm_defaults(pp);
    set_resize_defaults(pp);
    return OTL_OK;
}

/* ---------------------------------------------------------------- strict JSON reading */

typedef struct jp {
    const char *s;   /* text */
    const char *p;   /* position */
    const char *what;
    otl_error *err;
} jp;

static otl_status jp_fail(jp *j, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return otl_error_set(j->err, OTL_ERR_INPUT, "%s: preprocessing JSON: %s (at offset %ld)", j->what, msg,
                         (long)(j->p - j->s));
}

static void jp_ws(jp *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

/* A JSON string into buf (at most cap-1 bytes; longer strings are an error). Escapes other
 * than the simple ones are refused: no key or value we accept needs them. */
static otl_status jp_string(jp *j, char *buf, size_t cap)
{
    jp_ws(j);
    if (*j->p != '"')
        return jp_fail(j, "expected a string%s", NULL);
    j->p++;
    size_t n = 0;
    while (*j->p != '"') {
        char c = *j->p;
        if (!c || (unsigned char)c < 0x20)
            return jp_fail(j, "unterminated string or control character in a string%s", NULL);
        if (c == '\\') {
            j->p++;
            switch (*j->p) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            default: return jp_fail(j, "unsupported escape in a string%s", NULL);
            }
        }
        if (n + 1 >= cap)
            return jp_fail(j, "string too long%s", NULL);
        buf[n++] = c;
        j->p++;
    }
    j->p++;
    buf[n] = 0;
    return OTL_OK;
}

/* A JSON number (strict grammar). */
static otl_status jp_number(jp *j, double *out, int *is_int)
{
    jp_ws(j);
    const char *q = j->p;
    int integral = 1;
    if (*q == '-')
        q++;
    if (*q == '0')
        q++;
    else if (*q >= '1' && *q <= '9')
        while (*q >= '0' && *q <= '9')
            q++;
    else
        return jp_fail(j, "expected a number%s", NULL);
    if (*q == '.') {
        integral = 0;
        q++;
        if (!(*q >= '0' && *q <= '9'))
            return jp_fail(j, "malformed number%s", NULL);
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        integral = 0;
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return jp_fail(j, "malformed number%s", NULL);
        while (*q >= '0' && *q <= '9')
            q++;
    }
    char tmp[64];
    size_t len = (size_t)(q - j->p);
    if (len >= sizeof tmp)
        return jp_fail(j, "number too long%s", NULL);
    memcpy(tmp, j->p, len);
    tmp[len] = 0;
    *out = strtod(tmp, NULL);
    if (!isfinite(*out))
        return jp_fail(j, "number out of range%s", NULL);
    *is_int = integral;
    j->p = q;
    return OTL_OK;
}

/* An array of 1..max numbers; *n receives the count. */
static otl_status jp_numbers(jp *j, const char *key, double *v, int max, int *n, int want_int)
{
    jp_ws(j);
    if (*j->p != '[')
        return jp_fail(j, "\"%s\" must be an array of numbers", key);
    j->p++;
    *n = 0;
    jp_ws(j);
    if (*j->p == ']')
        return jp_fail(j, "\"%s\" must not be empty", key);
    for (;;) {
        int is_int;
        if (*n >= max)
            return jp_fail(j, "\"%s\" has too many values", key);
        if (jp_number(j, &v[*n], &is_int))
            return j->err->code;
        if (want_int && !is_int)
            return jp_fail(j, "\"%s\" must hold integers", key);
        (*n)++;
        jp_ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == ']') {
            j->p++;
            return OTL_OK;
        }
        return jp_fail(j, "expected ',' or ']' in \"%s\"", key);
    }
}

static int pick(const char *s, const char *const *names, const int *values, int *out)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = values[i];
            return 1;
        }
    return 0;
}

otl_status otl_preprocess_parse(const char *json, otl_preprocess *pp, const char *what, otl_error *err)
{
    jp j = {json, json, what ? what : "preprocessing", err};
    otl_preprocess r = *pp;
    int old_nchan = otl_preprocess_nchan(pp);
    int seen[8] = {0};
    static const char *const keys[] = {"size", "resize", "crop", "channels", "scale", "mean", "std", "layout", NULL};
    double mean[4], stdv[4];
    int n_mean = 0, n_std = 0;
    if (!json)
        return jp_fail(&j, "no text%s", NULL);
    jp_ws(&j);
    if (*j.p != '{')
        return jp_fail(&j, "expected a JSON object%s", NULL);
    j.p++;
    jp_ws(&j);
    if (*j.p == '}') {
        j.p++;
        goto end;
    }
    for (;;) {
        char key[64], sval[64];
        if (jp_string(&j, key, sizeof key))
            return err->code;
        int k = -1;
        for (int i = 0; keys[i]; i++)
            if (strcmp(key, keys[i]) == 0)
                k = i;
        if (k < 0)
            return jp_fail(&j, "unknown key \"%s\" (known: size, resize, crop, channels, scale, mean, std, layout)",
                           key);
        if (seen[k])
            return jp_fail(&j, "key \"%s\" given twice", key);
        seen[k] = 1;
        jp_ws(&j);
        if (*j.p != ':')
            return jp_fail(&j, "expected ':' after \"%s\"", key);
        j.p++;
        double v[4];
        int n, is_int;
        switch (k) {
        case 0: /* size */
            if (jp_numbers(&j, key, v, 2, &n, 1))
                return err->code;
            if (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > 65536 || v[1] > 65536)
                return jp_fail(&j, "\"size\" must be [H, W], two positive integers (at most 65536)%s", NULL);
            r.height = (int64_t)v[0];
            r.width = (int64_t)v[1];
            break;
        case 1: { /* resize */
            static const char *const names[] = {"stretch", "shorter-side", NULL};
            static const int values[] = {OTL_RESIZE_STRETCH, OTL_RESIZE_SHORTER_SIDE};
            jp_ws(&j);
            if (*j.p != '"')
                return jp_fail(&j, "\"resize\" must be a string: \"stretch\" or \"shorter-side\"%s", NULL);
            if (jp_string(&j, sval, sizeof sval))
                return err->code;
            if (!pick(sval, names, values, &r.resize))
                return jp_fail(&j, "\"resize\" must be \"stretch\" or \"shorter-side\", got \"%s\"", sval);
            break;
        }
        case 2: { /* crop */
            static const char *const names[] = {"none", "center", NULL};
            static const int values[] = {OTL_CROP_NONE, OTL_CROP_CENTER};
            jp_ws(&j);
            if (*j.p != '"')
                return jp_fail(&j, "\"crop\" must be a string: \"center\" or \"none\"%s", NULL);
            if (jp_string(&j, sval, sizeof sval))
                return err->code;
            if (!pick(sval, names, values, &r.crop))
                return jp_fail(&j, "\"crop\" must be \"center\" or \"none\", got \"%s\"", sval);
            break;
        }
        case 3: { /* channels */
            static const char *const names[] = {"gray", "rgb", "bgr", NULL};
            static const int values[] = {OTL_CHANNELS_GRAY, OTL_CHANNELS_RGB, OTL_CHANNELS_BGR};
            jp_ws(&j);
            if (*j.p != '"')
                return jp_fail(&j, "\"channels\" must be a string: \"gray\", \"rgb\" or \"bgr\"%s", NULL);
            if (jp_string(&j, sval, sizeof sval))
                return err->code;
            if (!pick(sval, names, values, &r.channels))
                return jp_fail(&j, "\"channels\" must be \"gray\", \"rgb\" or \"bgr\", got \"%s\"", sval);
            break;
        }
        case 4: /* scale */
            jp_ws(&j);
            if (*j.p == '"' || *j.p == '[' || *j.p == '{')
                return jp_fail(&j, "\"scale\" must be a number%s", NULL);
            if (jp_number(&j, &v[0], &is_int))
                return err->code;
            if (!(v[0] > 0) || v[0] > 1e30)
                return jp_fail(&j, "\"scale\" must be a positive number%s", NULL);
            r.scale = (float)v[0];
            break;
        case 5: /* mean */
            if (jp_numbers(&j, key, mean, 3, &n_mean, 0))
                return err->code;
            for (int i = 0; i < n_mean; i++)
                if (fabs(mean[i]) > 1e30)
                    return jp_fail(&j, "\"mean\" value out of range%s", NULL);
            break;
        case 6: /* std */
            if (jp_numbers(&j, key, stdv, 3, &n_std, 0))
                return err->code;
            for (int i = 0; i < n_std; i++)
                if (!(stdv[i] > 0) || stdv[i] > 1e30)
                    return jp_fail(&j, "\"std\" values must be positive%s", NULL);
            break;
        case 7: { /* layout */
            static const char *const names[] = {"NCHW", "NHWC", NULL};
            static const int values[] = {0, 1};
            jp_ws(&j);
            if (*j.p != '"')
                return jp_fail(&j, "\"layout\" must be a string: \"NCHW\" or \"NHWC\"%s", NULL);
            if (jp_string(&j, sval, sizeof sval))
                return err->code;
            if (!pick(sval, names, values, &r.nhwc))
                return jp_fail(&j, "\"layout\" must be \"NCHW\" or \"NHWC\", got \"%s\"", sval);
            break;
        }
        }
        jp_ws(&j);
        if (*j.p == ',') {
            j.p++;
            continue;
        }
        if (*j.p == '}') {
            j.p++;
            break;
        }
        return jp_fail(&j, "expected ',' or '}'%s", NULL);
    }
end:
    jp_ws(&j);
    if (*j.p)
        return jp_fail(&j, "trailing text after the JSON object%s", NULL);
    int nchan = otl_preprocess_nchan(&r);
    const char *cname = r.channels == OTL_CHANNELS_GRAY ? "gray" : r.channels == OTL_CHANNELS_BGR ? "bgr" : "rgb";
    if ((n_mean && n_mean != nchan) || (n_std && n_std != nchan)) {
        char msg[160];
        snprintf(msg, sizeof msg, "\"%s\" has %d value(s) but channels \"%s\" has %d", n_mean && n_mean != nchan ?
                 "mean" : "std", n_mean && n_mean != nchan ? n_mean : n_std, cname, nchan);
        return jp_fail(&j, "%s", msg);
    }
    if (nchan != old_nchan) {
        /* a new channel count: mean/std not given take the defaults of the new channels */
        otl_preprocess d = r;
        set_norm_defaults(&d);
        if (!n_mean)
            memcpy(r.mean, d.mean, sizeof r.mean);
        if (!n_std)
            memcpy(r.std, d.std, sizeof r.std);
    } else if (nchan == 3 && r.channels != pp->channels) {
        /* rgb <-> bgr: mean/std not given keep following the same colors */
        float t;
        if (!n_mean)
            t = r.mean[0], r.mean[0] = r.mean[2], r.mean[2] = t;
        if (!n_std)
            t = r.std[0], r.std[0] = r.std[2], r.std[2] = t;
    }
    for (int i = 0; i < n_mean; i++)
        r.mean[i] = (float)mean[i];
    for (int i = 0; i < n_std; i++)
        r.std[i] = (float)stdv[i];
    for (int i = nchan; i < 3; i++) {
        r.mean[i] = r.mean[0];
        r.std[i] = r.std[0];
    }
    *pp = r;
    return OTL_OK;
}

/* ---------------------------------------------------------------- canonical JSON */

/* Shortest %g form that reads back as the same float. */
static void fmt_float(char *buf, size_t cap, float v)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    /* JSON numbers: "1e+02" is fine, "inf"/"nan" cannot occur (values are validated) */
}

char *otl_preprocess_to_json(const otl_preprocess *pp)
{
    char buf[1024], num[32];
    int nchan = otl_preprocess_nchan(pp);
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{\"size\":[%lld,%lld],\"resize\":\"%s\",\"crop\":\"%s\","
                          "\"channels\":\"%s\",\"scale\":",
                          (long long)pp->height, (long long)pp->width,
                          pp->resize == OTL_RESIZE_SHORTER_SIDE ? "shorter-side" : "stretch",
                          pp->crop == OTL_CROP_CENTER ? "center" : "none",
                          pp->channels == OTL_CHANNELS_GRAY ? "gray" : pp->channels == OTL_CHANNELS_BGR ? "bgr" : "rgb");
    fmt_float(num, sizeof num, pp->scale);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s,\"mean\":[", num);
    for (int i = 0; i < nchan; i++) {
        fmt_float(num, sizeof num, pp->mean[i]);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", num);
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "],\"std\":[");
    for (int i = 0; i < nchan; i++) {
        fmt_float(num, sizeof num, pp->std[i]);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", num);
    }
    snprintf(buf + n, sizeof buf - n, "],\"layout\":\"%s\"}", pp->nhwc ? "NHWC" : "NCHW");
    return otl_strdup(buf);
}

/* ---------------------------------------------------------------- against the model */

otl_status otl_preprocess_check(const otl_model *m, const otl_preprocess *pp, const char *what, otl_error *err)
{
    const otl_value *v;
    int nhwc;
    int64_t c, h, w;
    if (image_input(m, &v, &nhwc, &c, &h, &w, err))
        return err->code;
    const otl_dim *d = v->dims;
    int64_t cax = pp->nhwc ? d[3].value : d[1].value;
    int64_t hax = pp->nhwc ? d[1].value : d[2].value;
    int64_t wax = pp->nhwc ? d[2].value : d[3].value;
    int nchan = otl_preprocess_nchan(pp);
    const char *lay = pp->nhwc ? "NHWC" : "NCHW";
    if (cax >= 0 && cax != nchan)
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: preprocessing (layout %s, %d channel%s) contradicts input '%s' of %s: its channel "
                             "axis %d has %lld",
                             what, lay, nchan, nchan == 1 ? "" : "s", v->name, otl_model_file(m), pp->nhwc ? 3 : 1,
                             (long long)cax);
    if ((hax >= 0 && hax != pp->height) || (wax >= 0 && wax != pp->width))
        return otl_error_set(err, OTL_ERR_INPUT,
                             "%s: preprocessing size [%lld, %lld] contradicts input '%s' of %s (%s, H=%lld W=%lld)",
                             what, (long long)pp->height, (long long)pp->width, v->name, otl_model_file(m), lay,
                             (long long)hax, (long long)wax);
    return OTL_OK;
}

otl_status otl_preprocess_get(const otl_model *m, otl_preprocess *pp, otl_error *err)
{
    if (otl_preprocess_default(m, pp, err))
        return err->code;
    const char *stored = otl_model_meta_get(m, PP_KEY);
    if (!stored)
        return OTL_OK;
    char what[1024];
    snprintf(what, sizeof what, "metadata %s of %s", PP_KEY, otl_model_file(m));
    if (otl_preprocess_parse(stored, pp, what, err))
        return err->code;
    return otl_preprocess_check(m, pp, what, err);
}
