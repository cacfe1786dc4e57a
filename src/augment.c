/* augment.c - on-the-fly training augmentation: parsing of --augment specs, per-sample random
 * draws from (seed, item), and one affine resampling (crop, zoom, rotate, flip) plus
 * brightness/contrast jitter on float images. Contract in include/onnxtl_data.h. */
#include "onnxtl_data.h"
#include "src/hash.h"
#include "src/util.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUG_VALID "valid: hflip, rotate=DEGREES, zoom=F, crop, jitter=F, none"

/* ------------------------------------------------------------ parsing */

static int parse_num(const char *s, double lo, double hi, int lo_open, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v > hi || v < lo || (lo_open && v == lo))
        return -1;
    *out = v;
    return 0;
}

otl_status otl_augment_parse(const char *spec, otl_augment *a, otl_error *err)
{
    memset(a, 0, sizeof *a);
    if (!spec)
        return OTL_OK;
    char *buf = otl_strdup(spec);
    if (!buf)
        return otl_error_set(err, OTL_ERR_NOMEM, "out of memory");
    otl_status st = OTL_OK;
    int n_items = 0, saw_none = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok && !st; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (!*tok)
            continue;
        char *val = strchr(tok, '=');
        if (val) {
            *val++ = 0;
            char *ke = val - 1;
            while (ke > tok && isspace((unsigned char)ke[-1]))
                *--ke = 0;
            while (isspace((unsigned char)*val))
                val++;
        }
        double v = 0;
        if (!strcmp(tok, "none")) {
            saw_none = 1;
            if (val)
                st = otl_error_set(err, OTL_ERR_USAGE, "--augment '%s': 'none' takes no value (" AUG_VALID ")", spec);
            continue;
        }
        n_items++;
        if (!strcmp(tok, "hflip") || !strcmp(tok, "crop")) {
            if (val)
                st = otl_error_set(err, OTL_ERR_USAGE, "--augment '%s': '%s' takes no value (" AUG_VALID ")", spec,
                                   tok);
            else if (tok[0] == 'h')
                a->hflip = 1;
            else
                a->crop = 1;
        } else if (!strcmp(tok, "rotate")) {
            if (!val)
                v = 15;
            else if (parse_num(val, 0, 180, 1, &v))
                st = otl_error_set(err, OTL_ERR_USAGE,
                                   "--augment '%s': rotate=%s: expected degrees in (0, 180] (" AUG_VALID ")", spec,
                                   val);
            a->rotate = (float)v;
        } else if (!strcmp(tok, "zoom")) {
            if (!val)
                v = 0.1;
            else if (parse_num(val, 0, 0.95, 1, &v))
                st = otl_error_set(err, OTL_ERR_USAGE,
                                   "--augment '%s': zoom=%s: expected a fraction in (0, 0.95] (" AUG_VALID ")", spec,
                                   val);
            a->zoom = (float)v;
        } else if (!strcmp(tok, "jitter")) {
            if (!val)
                v = 0.2;
            else if (parse_num(val, 0, 1, 1, &v))
                st = otl_error_set(err, OTL_ERR_USAGE,
                                   "--augment '%s': jitter=%s: expected a fraction in (0, 1] (" AUG_VALID ")", spec,
                                   val);
            a->jitter = (float)v;
        } else
            st = otl_error_set(err, OTL_ERR_USAGE, "--augment '%s': unknown augmentation '%s' (" AUG_VALID ")", spec,
                               tok);
    }
    free(buf);
    if (!st && saw_none && n_items)
        st = otl_error_set(err, OTL_ERR_USAGE,
                           "--augment '%s': 'none' cannot be combined with other augmentations (" AUG_VALID ")", spec);
    if (st) {
        memset(a, 0, sizeof *a);
        return st;
    }
    a->enabled = a->hflip || a->crop || a->rotate > 0 || a->zoom > 0 || a->jitter > 0;
    return OTL_OK;
}

char *otl_augment_to_string(const otl_augment *a)
{
    char b[256];
    size_t k = 0;
    b[0] = 0;
#define AUG_PUT(...) k += (size_t)snprintf(b + k, sizeof b - k, __VA_ARGS__)
    if (a && a->enabled) {
        if (a->hflip)
            AUG_PUT("%shflip", k ? "," : "");
        if (a->rotate > 0)
            AUG_PUT("%srotate=%g", k ? "," : "", a->rotate);
        if (a->zoom > 0)
            AUG_PUT("%szoom=%g", k ? "," : "", a->zoom);
        if (a->crop)
            AUG_PUT("%scrop", k ? "," : "");
        if (a->jitter > 0)
            AUG_PUT("%sjitter=%g", k ? "," : "", a->jitter);
    }
#undef AUG_PUT
    return otl_strdup(k ? b : "none");
}

/* ------------------------------------------------------------ draws */

void otl_augment_sample(const otl_augment *a, uint64_t seed, int64_t item, otl_augment_draw *p)
{
    otl_rng r;
    otl_rng_seed(&r, seed, (uint64_t)item ^ 0xa0761d6478bd642fULL);
    /* always draw every value in the same order: the draw of one transform does not depend on
       which others are enabled */
    double u_flip = otl_rng_uniform(&r), u_rot = otl_rng_uniform(&r), u_zoom = otl_rng_uniform(&r);
    double u_area = otl_rng_uniform(&r), u_ratio = otl_rng_uniform(&r), u_x = otl_rng_uniform(&r),
           u_y = otl_rng_uniform(&r);
    double u_b = otl_rng_uniform(&r), u_c = otl_rng_uniform(&r);
    memset(p, 0, sizeof *p);
    p->scale = 1;
    p->brightness = p->contrast = 1;
    p->crop_area = 1;
    if (!a || !a->enabled)
        return;
    p->flip = a->hflip && u_flip < 0.5;
    if (a->rotate > 0)
        p->angle = (float)((2 * u_rot - 1) * a->rotate);
    if (a->zoom > 0)
        p->scale = (float)(1 + (2 * u_zoom - 1) * a->zoom);
    if (a->crop) {
        p->crop = 1;
        p->crop_area = (float)(0.8 + 0.2 * u_area);
        p->crop_logratio = (float)(log(3.0 / 4.0) + u_ratio * (log(4.0 / 3.0) - log(3.0 / 4.0)));
        p->crop_u = (float)u_x;
        p->crop_v = (float)u_y;
    }
    if (a->jitter > 0) {
        p->brightness = (float)(1 + (2 * u_b - 1) * a->jitter);
        p->contrast = (float)(1 + (2 * u_c - 1) * a->jitter);
    }
}

/* ------------------------------------------------------------ apply */

/* Output pixel (x, y) -> source position in pixel-index space: src = A (x, y) + b. Works on the
   continuous image [0, w] x [0, h] with pixel centres at +0.5, undoing flip, rotation, zoom and
   crop in that order. */
static void inverse_map(const otl_augment_draw *p, int w, int h, double A[2][2], double b[2])
{
    double cw = 1, ch = 1, x0 = 0, y0 = 0;
    if (p->crop) {
        double ratio = exp(p->crop_logratio), area = p->crop_area * (double)w * h;
        double pw = sqrt(area * ratio), ph = sqrt(area / ratio);
        if (pw > w)
            pw = w;
        if (ph > h)
            ph = h;
        cw = pw / w, ch = ph / h;
        x0 = p->crop_u * (w - pw), y0 = p->crop_v * (h - ph);
    }
    double th = p->angle * (M_PI / 180.0), cs = cos(th), sn = sin(th), s = p->scale > 0 ? p->scale : 1;
    double cx = w / 2.0, cy = h / 2.0;
    double pts[3][2] = {{0, 0}, {1, 0}, {0, 1}}, res[3][2];
    for (int k = 0; k < 3; k++) {
        double px = pts[k][0] + 0.5, py = pts[k][1] + 0.5;
        if (p->flip)
            px = w - px;
        double dx = px - cx, dy = py - cy;
        double rx = cs * dx + sn * dy, ry = -sn * dx + cs * dy; /* rotation by -angle */
        rx /= s, ry /= s;
        double qx = cx + rx, qy = cy + ry;
        res[k][0] = x0 + qx * cw - 0.5;
        res[k][1] = y0 + qy * ch - 0.5;
    }
    b[0] = res[0][0], b[1] = res[0][1];
    A[0][0] = res[1][0] - b[0], A[1][0] = res[1][1] - b[1];
    A[0][1] = res[2][0] - b[0], A[1][1] = res[2][1] - b[1];
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

otl_status otl_augment_apply(const otl_augment_draw *p, float *img, int c, int h, int w, int nhwc, float lo, float hi,
                             otl_error *err)
{
    return otl_augment_apply_buf(p, img, c, h, w, nhwc, lo, hi, NULL, err);
}

otl_status otl_augment_apply_buf(const otl_augment_draw *p, float *img, int c, int h, int w, int nhwc, float lo,
                                 float hi, float *scratch, otl_error *err)
{
    size_t np = (size_t)h * w;
    /* strides: element (y, x, ch) at y * sy + x * sx + ch * sc */
    size_t sx = nhwc ? (size_t)c : 1, sy = nhwc ? (size_t)w * c : (size_t)w, sc = nhwc ? 1 : np;
    int geometric = p->crop || p->angle != 0 || (p->scale != 1 && p->scale > 0);
    if (geometric) {
        float *src = scratch ? scratch : malloc(np * c * sizeof *src);
        if (!src)
            return otl_error_set(err, OTL_ERR_NOMEM, "out of memory for augmentation");
        memcpy(src, img, np * c * sizeof *src);
        double A[2][2], b[2];
        inverse_map(p, w, h, A, b);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double fx = A[0][0] * x + A[0][1] * y + b[0], fy = A[1][0] * x + A[1][1] * y + b[1];
                double flx = floor(fx), fly = floor(fy);
                float ax = (float)(fx - flx), ay = (float)(fy - fly);
                /* positions far outside stay far outside: clamp before converting to int */
                if (flx < -2)
                    flx = -2;
                if (flx > w + 1)
                    flx = w + 1;
                if (fly < -2)
                    fly = -2;
                if (fly > h + 1)
                    fly = h + 1;
                int ix = (int)flx, iy = (int)fly;
                int x0 = clampi(ix, 0, w - 1), x1 = clampi(ix + 1, 0, w - 1);
                int y0 = clampi(iy, 0, h - 1), y1 = clampi(iy + 1, 0, h - 1);
                for (int ch = 0; ch < c; ch++) {
                    const float *s = src + ch * sc;
                    float v00 = s[y0 * sy + x0 * sx], v01 = s[y0 * sy + x1 * sx];
                    float v10 = s[y1 * sy + x0 * sx], v11 = s[y1 * sy + x1 * sx];
                    float top = v00 + (v01 - v00) * ax, bot = v10 + (v11 - v10) * ax;
                    img[y * sy + x * sx + ch * sc] = top + (bot - top) * ay;
                }
            }
        if (src != scratch)
            free(src);
    } else if (p->flip) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w / 2; x++)
                for (int ch = 0; ch < c; ch++) {
                    float *l = img + y * sy + x * sx + ch * sc, *r = img + y * sy + (size_t)(w - 1 - x) * sx + ch * sc;
                    float t = *l;
                    *l = *r;
                    *r = t;
                }
    }
    int clamp = lo < hi;
    if (p->brightness != 1) {
        for (size_t i = 0; i < np * c; i++) {
            float v = img[i] * p->brightness;
            img[i] = clamp ? (v < lo ? lo : v > hi ? hi : v) : v;
        }
    }
    if (p->contrast != 1) {
        /* mean of the gray image (torchvision adjust_contrast), or of the only channel */
        double m = 0;
        for (size_t i = 0; i < np; i++) {
            size_t y = i / (size_t)w, x = i % (size_t)w;
            const float *q = img + y * sy + x * sx;
            m += c == 3 ? 0.299 * q[0] + 0.587 * q[sc] + 0.114 * q[2 * sc] : q[0];
        }
        float mf = (float)(m / (double)np), k = p->contrast;
        for (size_t i = 0; i < np * c; i++) {
            float v = (img[i] - mf) * k + mf;
            img[i] = clamp ? (v < lo ? lo : v > hi ? hi : v) : v;
        }
    }
    return OTL_OK;
}
