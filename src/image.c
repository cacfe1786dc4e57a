/* image.c - decode PNG/JPEG, convert channels, resize/crop like torchvision on PIL images and
 * normalize. JPEG goes through libjpeg (the decoder PIL uses), everything else through stb_image;
 * the bilinear resize reproduces PIL's Image.resize(BILINEAR) coefficient for coefficient. */
#include "onnxtl_data.h"
#include "src/util.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <stb/stb_image.h>

#define IMG_MAX_PIXELS (1LL << 28)   /* 268 M pixels: refuse bigger images */
#define IMG_MAX_FILE (1u << 30)

/* ------------------------------------------------------------ JPEG (libjpeg) */

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr ci)
{
    jpeg_err *je = (jpeg_err *)ci->err;
    je->pub.format_message(ci, je->msg);
    longjmp(je->jb, 1);
}

static void jpeg_on_message(j_common_ptr ci, int level)
{
    jpeg_err *je = (jpeg_err *)ci->err;
    /* warnings (level -1): "premature end of data" means a truncated file, as PIL reports it */
    if (level < 0 && je->pub.msg_code == JWRN_JPEG_EOF)
        je->truncated = 1;
}

static otl_status decode_jpeg(const uint8_t *buf, size_t len, const char *name, uint8_t **pix, int *w, int *h, int *c,
                              otl_error *err)
{
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    uint8_t *volatile out = NULL;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(out);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot decode JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&ci);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: CMYK JPEG images are not supported (convert to RGB)", name);
    }
    ci.out_color_space = ci.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&ci);
    int ow = (int)ci.output_width, oh = (int)ci.output_height, oc = ci.output_components;
    if (ow <= 0 || oh <= 0 || (int64_t)ow * oh > IMG_MAX_PIXELS || (oc != 1 && oc != 3)) {
        jpeg_destroy_decompress(&ci);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: unsupported JPEG (%dx%d, %d components)", name, ow, oh, oc);
    }
    out = malloc((size_t)ow * oh * oc);
    if (!out) {
        jpeg_destroy_decompress(&ci);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a %dx%d image", name, ow, oh);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = out + (size_t)ci.output_scanline * ow * oc;
        jpeg_read_scanlines(&ci, &row, 1);
        if (je.truncated)
            break;
    }
    if (je.truncated) {
        jpeg_destroy_decompress(&ci);
        free(out);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot decode JPEG: file is truncated", name);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    if (je.truncated) {
        free(out);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot decode JPEG: file is truncated", name);
    }
    *pix = out;
    *w = ow, *h = oh, *c = oc;
    return OTL_OK;
}

/* Header only: size and components. */
static otl_status probe_jpeg(const uint8_t *buf, size_t len, const char *name, int *w, int *h, int *c, otl_error *err)
{
    struct jpeg_decompress_struct ci;
    jpeg_err je;
    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot decode JPEG: %s", name, je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    *w = (int)ci.image_width, *h = (int)ci.image_height, *c = ci.num_components;
    jpeg_destroy_decompress(&ci);
    if (cmyk)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: CMYK JPEG images are not supported (convert to RGB)", name);
    if (*w <= 0 || *h <= 0 || (int64_t)*w * *h > IMG_MAX_PIXELS || (*c != 1 && *c != 3))
        return otl_error_set(err, OTL_ERR_INPUT, "%s: unsupported JPEG (%dx%d, %d components)", name, *w, *h, *c);
    return OTL_OK;
}

/* stb_image refused the header: a file with the PNG signature gets a PNG message (its size when that is
 * what is wrong), anything else "not a PNG or JPEG image". */
static otl_status not_an_image(const uint8_t *b, size_t len, const char *name, otl_error *err)
{
    if (len < 8 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) != 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: not a PNG or JPEG image (%s)", name, stbi_failure_reason());
    if (len >= 24 && memcmp(b + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
        uint32_t h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23];
        if (w == 0 || h == 0 || (int64_t)w * h > IMG_MAX_PIXELS)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: PNG image size %ux%u not supported", name, (unsigned)w,
                                 (unsigned)h);
    }
    return otl_error_set(err, OTL_ERR_INPUT, "%s: corrupt or unsupported PNG image (bad header)", name);
}

otl_status otl_image_probe(const void *buf, size_t len, const char *name, int *w, int *h, int *c, otl_error *err)
{
    const uint8_t *b = buf;
    *w = *h = *c = 0;
    if (len == 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: empty file, not an image", name);
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return probe_jpeg(b, len, name, w, h, c, err);
    if (len > (size_t)0x7fffffff)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: image file too large", name);
    if (!stbi_info_from_memory(b, (int)len, w, h, c))
        return not_an_image(b, len, name, err);
    if (*w <= 0 || *h <= 0 || (int64_t)*w * *h > IMG_MAX_PIXELS)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: image size %dx%d not supported", name, *w, *h);
    return OTL_OK;
}

/* ------------------------------------------------------------ decode + channels */

static inline uint8_t rgb_to_l(const uint8_t *p)
{
    /* PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded */
    return (uint8_t)(((uint32_t)p[0] * 19595 + (uint32_t)p[1] * 38470 + (uint32_t)p[2] * 7471 + 0x8000) >> 16);
}

otl_status otl_image_decode(const void *buf, size_t len, const char *name, int want_c, uint8_t **pix, int *w, int *h,
                            int *c, otl_error *err)
{
    *pix = NULL;
    *w = *h = *c = 0;
    const uint8_t *b = buf;
    uint8_t *raw = NULL;
    int rw = 0, rh = 0, rc = 0;
    if (len == 0)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: empty file, not an image", name);
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
        otl_status st = decode_jpeg(b, len, name, &raw, &rw, &rh, &rc, err);
        if (st)
            return st;
    } else {
        if (len > (size_t)0x7fffffff)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: image file too large", name);
        int iw, ih, ic;
        if (!stbi_info_from_memory(b, (int)len, &iw, &ih, &ic))
            return not_an_image(b, len, name, err);
        if (iw <= 0 || ih <= 0 || (int64_t)iw * ih > IMG_MAX_PIXELS)
            return otl_error_set(err, OTL_ERR_INPUT, "%s: image size %dx%d not supported", name, iw, ih);
        stbi_uc *p = stbi_load_from_memory(b, (int)len, &rw, &rh, &rc, 0);
        if (!p) {
            const char *why = stbi_failure_reason();
            return otl_error_set(err, OTL_ERR_INPUT, "%s: cannot decode image: %s", name,
                                 why ? why : "corrupt or truncated");
        }
        size_t nb = (size_t)rw * rh * rc;
        raw = malloc(nb);
        if (raw)
            memcpy(raw, p, nb);
        stbi_image_free(p);
        if (!raw)
            return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a %dx%d image", name, rw, rh);
    }
    if (want_c == 0 || want_c == rc) {
        *pix = raw;
        *w = rw, *h = rh, *c = rc;
        return OTL_OK;
    }
    size_t np = (size_t)rw * rh;
    uint8_t *o = malloc(np * (size_t)want_c);
    if (!o) {
        free(raw);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory for a %dx%d image", name, rw, rh);
    }
    if (want_c == 1) {
        for (size_t i = 0; i < np; i++)
            o[i] = rc >= 3 ? rgb_to_l(raw + i * rc) : raw[i * rc]; /* alpha dropped */
    } else {
        for (size_t i = 0; i < np; i++) {
            const uint8_t *s = raw + i * rc;
            if (rc >= 3)
                o[3 * i] = s[0], o[3 * i + 1] = s[1], o[3 * i + 2] = s[2];
            else
                o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[0];
        }
    }
    free(raw);
    *pix = o;
    *w = rw, *h = rh, *c = want_c;
    return OTL_OK;
}

/* ------------------------------------------------------------ PIL's bilinear resize */

#define PIL_PRECISION_BITS (32 - 8 - 2)

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc (Resample.c) for the bilinear filter. */
static int pil_coeffs(int in_size, int out_size, int **bounds_out, int32_t **kk_out)
{
    double in0 = 0.0, in1 = (double)in_size;
    double scale = (in1 - in0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = malloc((size_t)out_size * ksize * sizeof *pre);
    int *bounds = malloc((size_t)out_size * 2 * sizeof *bounds);
    int32_t *kk = malloc((size_t)out_size * ksize * sizeof *kk);
    if (!pre || !bounds || !kk) {
        free(pre);
        free(bounds);
        free(kk);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = pre + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double t = (x + xmin - center + 0.5) * ss;
            if (t < 0.0)
                t = -t;
            double wgt = t < 1.0 ? 1.0 - t : 0.0;
            k[x] = wgt;
            ww += wgt;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PIL_PRECISION_BITS))
                           : (int32_t)(0.5 + pre[i] * (1 << PIL_PRECISION_BITS));
    free(pre);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t v)
{
    /* bilinear weights are positive and sum to ~2^22, so 255 * 2^22 + 2^21 fits an int32 */
    if (v <= 0)
        return 0;
    v >>= PIL_PRECISION_BITS;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* One row, horizontally: c channels interleaved. */
static void resample_row(const uint8_t *row, int c, uint8_t *orow, int ow, const int *bd, const int32_t *kk, int ks)
{
    for (int xx = 0; xx < ow; xx++) {
        int xmin = bd[2 * xx], xmax = bd[2 * xx + 1];
        const int32_t *k = kk + (size_t)xx * ks;
        const uint8_t *p = row + (size_t)xmin * c;
        if (c == 3) {
            int32_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++, p += 3) {
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            orow[3 * xx] = clip8(s0), orow[3 * xx + 1] = clip8(s1), orow[3 * xx + 2] = clip8(s2);
        } else {
            for (int ch = 0; ch < c; ch++) {
                int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++)
                    ss += p[(size_t)x * c + ch] * k[x];
                orow[(size_t)xx * c + ch] = clip8(ss);
            }
        }
    }
}

int otl_image_resize_u8(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh)
{
    if (ow == w && oh == h) {
        memcpy(out, in, (size_t)w * h * c);
        return 0;
    }
    const uint8_t *src = in;
    uint8_t *tmp = NULL;
    if (ow != w) { /* horizontal pass (into out directly when there is no vertical one) */
        int *bd;
        int32_t *kk;
        int ks = pil_coeffs(w, ow, &bd, &kk);
        if (ks < 0)
            return -1;
        uint8_t *dst = oh == h ? out : (tmp = malloc((size_t)ow * h * c));
        if (!dst) {
            free(bd);
            free(kk);
            return -1;
        }
        for (int y = 0; y < h; y++)
            resample_row(in + (size_t)y * w * c, c, dst + (size_t)y * ow * c, ow, bd, kk, ks);
        free(bd);
        free(kk);
        if (oh == h)
            return 0;
        src = tmp;
    }
    /* vertical pass over rows of ow * c bytes: accumulate tap by tap across the row */
    size_t rl = (size_t)ow * c;
    int *bd;
    int32_t *kk;
    int ks = pil_coeffs(h, oh, &bd, &kk);
    int32_t *acc = ks < 0 ? NULL : malloc(rl * sizeof *acc);
    if (!acc) {
        if (ks >= 0) {
            free(bd);
            free(kk);
        }
        free(tmp);
        return -1;
    }
    for (int yy = 0; yy < oh; yy++) {
        int ymin = bd[2 * yy], ymax = bd[2 * yy + 1];
        const int32_t *k = kk + (size_t)yy * ks;
        for (size_t q = 0; q < rl; q++)
            acc[q] = 1 << (PIL_PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *r = src + (size_t)(y + ymin) * rl;
            int32_t kv = k[y];
            for (size_t q = 0; q < rl; q++)
                acc[q] += r[q] * kv;
        }
        uint8_t *orow = out + (size_t)yy * rl;
        for (size_t q = 0; q < rl; q++)
            orow[q] = clip8(acc[q]);
    }
    free(acc);
    free(bd);
    free(kk);
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------ resize + crop policy */

/* Size of the intermediate image (rw x rh) before the crop to pp's H x W. */
static void resize_plan(int w, int h, const otl_preprocess *pp, int *rw, int *rh)
{
    int64_t H = pp->height, W = pp->width;
    int64_t Ht = H, Wt = W;
    if (pp->crop == OTL_CROP_CENTER) {
        Ht = H * 256 / 224;
        Wt = W * 256 / 224;
    }
    if (pp->resize != OTL_RESIZE_SHORTER_SIDE) {
        *rw = (int)Wt, *rh = (int)Ht;
        return;
    }
    /* cover Wt x Ht keeping the aspect ratio; for a square target this is torchvision's
       Resize(S): the shorter side becomes S, the longer int(S * long / short) */
    if (Wt * h >= Ht * w) {
        *rw = (int)Wt;
        *rh = (int)((double)(Wt * h) / w);
        if (*rh < Ht)
            *rh = (int)Ht;
    } else {
        *rh = (int)Ht;
        *rw = (int)((double)(Ht * w) / h);
        if (*rw < Wt)
            *rw = (int)Wt;
    }
}

static otl_status to_target(uint8_t *pix, int w, int h, int c, const char *name, const otl_preprocess *pp,
                            uint8_t *out, otl_error *err)
{
    int rw, rh, H = (int)pp->height, W = (int)pp->width;
    resize_plan(w, h, pp, &rw, &rh);
    if (rw == W && rh == H)
        return otl_image_resize_u8(pix, w, h, c, out, W, H)
                   ? otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory resizing", name)
                   : OTL_OK;
    uint8_t *mid = malloc((size_t)rw * rh * c);
    if (!mid || otl_image_resize_u8(pix, w, h, c, mid, rw, rh)) {
        free(mid);
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory resizing", name);
    }
    /* torchvision CenterCrop: int(round((in - out) / 2.0)), round half to even */
    int top = (int)nearbyint((double)(rh - H) / 2.0), left = (int)nearbyint((double)(rw - W) / 2.0);
    for (int y = 0; y < H; y++)
        memcpy(out + (size_t)y * W * c, mid + ((size_t)(y + top) * rw + left) * c, (size_t)W * c);
    free(mid);
    return OTL_OK;
}

otl_status otl_image_decode_u8(const void *buf, size_t len, const char *name, const otl_preprocess *pp, uint8_t *out,
                               otl_error *err)
{
    int nc = otl_preprocess_nchan(pp);
    if (pp->height <= 0 || pp->width <= 0 || pp->height > 65536 || pp->width > 65536)
        return otl_error_set(err, OTL_ERR_INPUT, "%s: bad preprocessing size %lldx%lld", name, (long long)pp->height,
                             (long long)pp->width);
    uint8_t *pix;
    int w, h, c;
    otl_status st = otl_image_decode(buf, len, name, nc, &pix, &w, &h, &c, err);
    if (st)
        return st;
    st = to_target(pix, w, h, c, name, pp, out, err);
    free(pix);
    return st;
}

otl_status otl_image_load_u8(const char *path, const otl_preprocess *pp, uint8_t *out, otl_error *err)
{
    uint8_t *buf;
    size_t len;
    otl_status st = otl_read_file(path, IMG_MAX_FILE, &buf, &len, err);
    if (st)
        return st;
    st = otl_image_decode_u8(buf, len, path, pp, out, err);
    free(buf);
    return st;
}

/* ------------------------------------------------------------ normalization */

#define NORMALIZE_BODY(SRC)                                                                                 \
    int nc = otl_preprocess_nchan(pp);                                                                      \
    size_t np = (size_t)pp->height * (size_t)pp->width;                                                     \
    int bgr = pp->channels == OTL_CHANNELS_BGR && nc == 3;                                                 \
    for (int oc = 0; oc < nc; oc++) {                                                                       \
        int ic = bgr ? 2 - oc : oc;                                                                         \
        float mean = pp->mean[oc], sd = pp->std[oc], scale = pp->scale;                                    \
        if (pp->nhwc)                                                                                       \
            for (size_t i = 0; i < np; i++)                                                                 \
                out[i * nc + oc] = ((float)(SRC)[i * nc + ic] / scale - mean) / sd;                        \
        else                                                                                                \
            for (size_t i = 0; i < np; i++)                                                                 \
                out[oc * np + i] = ((float)(SRC)[i * nc + ic] / scale - mean) / sd;                        \
    }

void otl_image_normalize_u8(const uint8_t *hwc, const otl_preprocess *pp, float *out) { NORMALIZE_BODY(hwc) }
void otl_image_normalize_f32(const float *hwc, const otl_preprocess *pp, float *out) { NORMALIZE_BODY(hwc) }

otl_status otl_image_load(const char *path, const otl_preprocess *pp, float *out, otl_error *err)
{
    size_t n = (size_t)(pp->height > 0 ? pp->height : 0) * (size_t)(pp->width > 0 ? pp->width : 0) *
               (size_t)otl_preprocess_nchan(pp);
    uint8_t *u = malloc(n ? n : 1);
    if (!u)
        return otl_error_set(err, OTL_ERR_NOMEM, "%s: out of memory", path);
    otl_status st = otl_image_load_u8(path, pp, u, err);
    if (!st)
        otl_image_normalize_u8(u, pp, out);
    free(u);
    return st;
}
