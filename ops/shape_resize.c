/* shape_resize.c - Resize (opsets 10-19: nearest, linear and cubic on any number of axes, every
 * coordinate_transformation_mode, nearest_mode, scales or sizes, axes and keep_aspect_ratio_policy
 * of opset 18; not antialias) and the older Upsample (7-9), as separable per-axis tap tables.
 * Differentiable input: X (its gradient, the private onnx_tl.ResizeGrad, scatters the output
 * gradient through the same taps: the adjoint of the forward for every mode); roi, scales and
 * sizes are not differentiable. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "graph/autodiff.h"
#include "ops/shape_copy.h"

enum { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum { CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC,
       CT_TF_HALF_PIXEL_NN, CT_TF_CROP_AND_RESIZE };
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

/* Taps of one axis: output index o reads input indices idx[o*K + t] with weights w[o*K + t]. */
typedef struct rs_axis {
    int K;
    int64_t *idx;   /* (out * K), already multiplied by the input stride */
    double *w;      /* (out * K) */
    uint8_t *outside; /* (out) tf_crop_and_resize: coordinate outside the input, or NULL */
} rs_axis;

typedef struct resize_state {
    int mode, ctm, nearest_mode, exclude_outside;
    double cubic_a, extrapolation;
    int rank;
    size_t esz;
    int gather_only; /* every axis has one tap of weight 1 and nothing is outside */
    rs_axis ax[OTL_MAX_RANK];
} resize_state;

static void resize_release(otl_kctx *k)
{
    resize_state *s = k->state;
    for (int a = 0; a < OTL_MAX_RANK; a++) {
        free(s->ax[a].idx);
        free(s->ax[a].w);
        free(s->ax[a].outside);
    }
}

/* Values of a const float tensor input (any float dtype). */
static otl_status const_floats(otl_kctx *k, int i, double *out, int max, int *n)
{
    *n = 0;
    const otl_rt *v = k->in[i];
    if (!otl_dtype_is_float(v->dtype))
        return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' must be a float tensor, got %s", i, v->name,
                         otl_dtype_name(v->dtype));
    if (!v->is_const)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED,
                         "input %d '%s' must be known before the run (a constant or computed from shapes)", i,
                         v->name);
    if (v->numel > max)
        return otl_kfail(k, OTL_ERR_INPUT, "input %d '%s' has %lld values (at most %d expected)", i, v->name,
                         (long long)v->numel, max);
    for (int64_t j = 0; j < v->numel; j++)
        out[j] = otl_get_f(v->data, v->dtype, j);
    *n = (int)v->numel;
    return OTL_OK;
}

static double cubic_w(double r, double A, int t)
{
    switch (t) {
    case 0: return ((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A;
    case 1: return ((A + 2) * r - (A + 3)) * r * r + 1;
    case 2: return ((A + 2) * (1 - r) - (A + 3)) * (1 - r) * (1 - r) + 1;
    default: return ((A * ((1 - r) + 1) - 5 * A) * ((1 - r) + 1) + 8 * A) * ((1 - r) + 1) - 4 * A;
    }
}

/* Input coordinate of output index x. len_f: the resized length as the spec's formulas use it
 * (scale * input length when scales were given, the output size otherwise). */
static double original_coord(const resize_state *s, double x, double scale, int64_t in, int64_t out, double len_f,
                             double roi_s, double roi_e)
{
    switch (s->ctm) {
    case CT_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
    case CT_HALF_PIXEL_SYM: {
        double adj = (double)out / (scale * (double)in), center = (double)in / 2;
        return center * (1 - adj) + (x + 0.5) / scale - 0.5;
    }
    case CT_PYTORCH_HALF_PIXEL: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CT_ALIGN_CORNERS: return len_f == 1 ? 0.0 : x * (double)(in - 1) / (len_f - 1);
    case CT_ASYMMETRIC: return x / scale;
    case CT_TF_HALF_PIXEL_NN: return (x + 0.5) / scale;
    default: /* tf_crop_and_resize */
        if (len_f == 1)
            return (roi_e - roi_s) * (double)(in - 1) / 2 + roi_s * (double)(in - 1);
        return x * (roi_e - roi_s) * (double)(in - 1) / (len_f - 1) + roi_s * (double)(in - 1);
    }
}

static int64_t clampi(int64_t i, int64_t n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* Fill one axis's taps. */
static otl_status axis_taps(otl_kctx *k, resize_state *s, rs_axis *A, int64_t in, int64_t out, double scale,
                            double len_f, double roi_s, double roi_e, int64_t stride)
{
    int K = s->mode == RS_NEAREST ? 1 : s->mode == RS_LINEAR ? 2 : 4;
    A->K = K;
    size_t n = (size_t)(out ? out : 1) * (size_t)K;
    A->idx = malloc(n * sizeof *A->idx);
    A->w = malloc(n * sizeof *A->w);
    if (s->ctm == CT_TF_CROP_AND_RESIZE)
        A->outside = calloc((size_t)(out ? out : 1), 1);
    if (!A->idx || !A->w || (s->ctm == CT_TF_CROP_AND_RESIZE && !A->outside))
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    int single = 1;
    for (int64_t o = 0; o < out; o++) {
        double x = original_coord(s, (double)o, scale, in, out, len_f, roi_s, roi_e);
        int64_t *ix = A->idx + o * K;
        double *w = A->w + o * K;
        if (A->outside && (x < 0 || x > (double)(in - 1)))
            A->outside[o] = 1;
        /* every tap is clamped to the edge (or excluded) this far out: keep x small */
        if (!(x >= -3))
            x = -3;
        if (x > (double)in + 2)
            x = (double)in + 2;
        double f = floor(x), r = x - f;
        int64_t fi = (int64_t)f;
        if (s->mode == RS_NEAREST) {
            int64_t i;
            switch (s->nearest_mode) {
            case NM_ROUND_PREFER_FLOOR: i = r <= 0.5 ? fi : fi + 1; break;
            case NM_ROUND_PREFER_CEIL: i = r < 0.5 ? fi : fi + 1; break;
            case NM_FLOOR: i = fi; break;
            case NM_CEIL: i = r > 0 ? fi + 1 : fi; break;
            default: i = scale < 1 ? (int64_t)ceil(x) : (int64_t)x; break; /* opset < 11 */
            }
            ix[0] = clampi(i, in) * stride;
            w[0] = 1;
            continue;
        }
        if (r == 0) { /* prefer the left neighbour: ratio 1 */
            fi -= 1;
            r = 1;
        }
        int64_t first = s->mode == RS_LINEAR ? fi : fi - 1;
        double sum = 0;
        int nz = 0;
        for (int t = 0; t < K; t++) {
            int64_t i = first + t;
            w[t] = s->mode == RS_LINEAR ? (t == 0 ? 1 - r : r) : cubic_w(r, s->cubic_a, t);
            if (s->exclude_outside && (i < 0 || i >= in))
                w[t] = 0;
            sum += w[t];
            ix[t] = clampi(i, in) * stride;
            nz += w[t] != 0;
        }
        if (s->exclude_outside && sum != 0)
            for (int t = 0; t < K; t++)
                w[t] /= sum;
        if (nz != 1)
            single = 0;
        else
            for (int t = 0; t < K; t++)
                if (w[t] != 0 && w[t] != 1)
                    single = 0;
    }
    if (K > 1 && single) { /* every output reads exactly one input: compress to one tap */
        for (int64_t o = 0; o < out; o++) {
            int64_t j = 0;
            for (int t = 0; t < K; t++)
                if (A->w[o * K + t] != 0)
                    j = A->idx[o * K + t];
            A->idx[o] = j;
            A->w[o] = 1;
        }
        A->K = 1;
    }
    return OTL_OK;
}

static int parse_enum(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* Shared tail of Resize and Upsample: with per-axis scales (and sizes or not), build the output
 * shape and tap tables. scale_given: the spec's "scales" path (output = floor(in * scale)). */
static otl_status resize_setup(otl_kctx *k, resize_state *s, const double *scales, const int64_t *sizes,
                               const double *roi)
{
    const otl_rt *x = k->in[0];
    int r = x->rank;
    int64_t dims[OTL_MAX_RANK], xs[OTL_MAX_RANK];
    otl_strides_c(r, x->dims, xs);
    double len_f[OTL_MAX_RANK], sc[OTL_MAX_RANK];
    for (int a = 0; a < r; a++) {
        double rs = roi ? roi[a] : 0, re = roi ? roi[a + r] : 1;
        if (sizes) {
            dims[a] = sizes[a];
            sc[a] = scales ? scales[a] : (x->dims[a] ? (double)sizes[a] / (double)x->dims[a] : 1);
            len_f[a] = (double)sizes[a];
        } else {
            sc[a] = scales[a];
            double span = s->ctm == CT_TF_CROP_AND_RESIZE ? re - rs : 1;
            double o = floor((double)x->dims[a] * span * sc[a]);
            if (!(o >= 0 && o < (double)((int64_t)1 << 40)))
                return otl_kfail(k, OTL_ERR_INPUT, "scale %g gives an invalid size for axis %d", sc[a], a);
            dims[a] = (int64_t)o;
            len_f[a] = sc[a] * (double)x->dims[a];
        }
        if (dims[a] < 0)
            return otl_kfail(k, OTL_ERR_INPUT, "output size %lld for axis %d is negative", (long long)dims[a], a);
        if (!(sc[a] > 0) && x->dims[a] > 0)
            return otl_kfail(k, OTL_ERR_INPUT, "scale %g for axis %d must be positive", sc[a], a);
        if (x->dims[a] == 0 && dims[a] > 0)
            return otl_kfail(k, OTL_ERR_INPUT, "cannot resize an empty axis %d to size %lld", a, (long long)dims[a]);
    }
    otl_status st = otl_rt_set(k, k->out[0], x->dtype, r, dims);
    s->gather_only = 1;
    for (int a = 0; !st && a < r; a++) {
        st = axis_taps(k, s, &s->ax[a], x->dims[a], dims[a], sc[a], len_f[a], roi ? roi[a] : 0, roi ? roi[a + r] : 1,
                       xs[a]);
        if (!st && (s->ax[a].K != 1 || s->ax[a].outside))
            s->gather_only = 0;
    }
    return st;
}

static otl_status check_dtype(otl_kctx *k, resize_state *s)
{
    otl_status st = otl_movable(k, 0, &s->esz);
    if (st)
        return st;
    int dt = k->in[0]->dtype;
    if (s->mode != RS_NEAREST && dt != OTL_DTYPE_FLOAT && dt != OTL_DTYPE_DOUBLE && dt != OTL_DTYPE_FLOAT16 &&
        dt != OTL_DTYPE_BFLOAT16)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "%s interpolation of dtype %s is not supported",
                         s->mode == RS_LINEAR ? "linear" : "cubic", otl_dtype_name(dt));
    if (s->ctm == CT_TF_CROP_AND_RESIZE && !otl_dtype_is_float(dt))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "tf_crop_and_resize of dtype %s is not supported", otl_dtype_name(dt));
    if (k->in[0]->rank == 0)
        return otl_kfail(k, OTL_ERR_INPUT, "X must have rank >= 1");
    return OTL_OK;
}

static otl_status new_state(otl_kctx *k, resize_state **out)
{
    resize_state *s = calloc(1, sizeof *s);
    if (!s)
        return otl_kfail(k, OTL_ERR_NOMEM, "out of memory");
    k->state = s;
    s->rank = k->in[0] ? k->in[0]->rank : 0;
    *out = s;
    return OTL_OK;
}

/* ---------------------------------------------------------------- Resize */

static otl_status resize_infer(otl_kctx *k)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                       "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    otl_status st;
    resize_state *s = NULL;
    if ((st = otl_check_in(k, 0, NULL)) || (st = new_state(k, &s)))
        return st;
    const otl_rt *x = k->in[0];
    int r = x->rank;
    const char *mode, *ctm = "asymmetric", *nm = "round_prefer_floor", *karp = "stretch";
    float cubic_a = -0.75f, extrap = 0;
    int64_t excl = 0, antialias = 0;
    if ((st = otl_attr_str(k, "mode", "nearest", &mode)))
        return st;
    if (k->opset >= 11 &&
        ((st = otl_attr_str(k, "coordinate_transformation_mode", "half_pixel", &ctm)) ||
         (st = otl_attr_str(k, "nearest_mode", "round_prefer_floor", &nm)) ||
         (st = otl_attr_float(k, "cubic_coeff_a", -0.75f, &cubic_a)) ||
         (st = otl_attr_int(k, "exclude_outside", 0, &excl)) ||
         (st = otl_attr_float(k, "extrapolation_value", 0.0f, &extrap))))
        return st;
    if (k->opset >= 18 && ((st = otl_attr_int(k, "antialias", 0, &antialias)) ||
                           (st = otl_attr_str(k, "keep_aspect_ratio_policy", "stretch", &karp))))
        return st;
    s->mode = parse_enum(mode, modes, k->opset >= 11 ? 3 : 2);
    s->ctm = parse_enum(ctm, ctms, 7);
    s->nearest_mode = k->opset >= 11 ? parse_enum(nm, nms, 4) : NM_SIMPLE;
    if (s->mode < 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);
    if (s->ctm < 0 || (s->ctm == CT_HALF_PIXEL_SYM && k->opset < 19) || (s->ctm == CT_TF_HALF_PIXEL_NN && k->opset >= 13))
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "coordinate_transformation_mode '%s' is not supported at this opset", ctm);
    if (s->nearest_mode < 0)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "nearest_mode '%s' is not supported", nm);
    if (antialias)
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "antialias=1 is not supported");
    s->cubic_a = cubic_a;
    s->exclude_outside = excl != 0;
    s->extrapolation = extrap;
    if ((st = check_dtype(k, s)))
        return st;

    /* axes (opset 18): scales/sizes/roi refer to these axes only */
    int64_t axes[OTL_MAX_RANK];
    int na = -1;
    if (k->opset >= 18 && (st = otl_attr_ints(k, "axes", axes, OTL_MAX_RANK, &na)))
        return st;
    int amap[OTL_MAX_RANK], nsel = na >= 0 ? na : r;
    int seen[OTL_MAX_RANK] = {0};
    for (int i = 0; i < nsel; i++) {
        int a = i;
        if (na >= 0 && (st = otl_axis(k, axes[i], r, &a)))
            return st;
        if (seen[a])
            return otl_kfail(k, OTL_ERR_INPUT, "axis %d is repeated", a);
        seen[a] = 1;
        amap[i] = a;
    }
    /* inputs: opset 10 (X, scales); 11+ (X, roi, scales, sizes) */
    int i_roi = k->opset >= 11 ? 1 : -1, i_scales = k->opset >= 11 ? 2 : 1, i_sizes = k->opset >= 11 ? 3 : -1;
    double sel_scales[OTL_MAX_RANK], sel_roi[2 * OTL_MAX_RANK];
    int64_t sel_sizes[OTL_MAX_RANK];
    int n_scales = 0, n_sizes = 0, n_roi = 0;
    if (otl_has_in(k, i_scales) && k->in[i_scales]->numel > 0 &&
        (st = const_floats(k, i_scales, sel_scales, OTL_MAX_RANK, &n_scales)))
        return st;
    if (i_sizes >= 0 && otl_has_in(k, i_sizes) && k->in[i_sizes]->numel > 0 &&
        (st = otl_const_ints(k, i_sizes, sel_sizes, OTL_MAX_RANK, &n_sizes)))
        return st;
    if (n_scales && n_sizes)
        return otl_kfail(k, OTL_ERR_INPUT, "only one of 'scales' and 'sizes' may be given");
    if (!n_scales && !n_sizes)
        return otl_kfail(k, OTL_ERR_INPUT, "one of 'scales' and 'sizes' is required");
    if ((n_scales && n_scales != nsel) || (n_sizes && n_sizes != nsel))
        return otl_kfail(k, OTL_ERR_INPUT, "%s has %d values, expected %d", n_scales ? "scales" : "sizes",
                         n_scales ? n_scales : n_sizes, nsel);
    if (s->ctm == CT_TF_CROP_AND_RESIZE) {
        if (!otl_has_in(k, i_roi) || k->in[i_roi]->numel == 0)
            return otl_kfail(k, OTL_ERR_INPUT, "tf_crop_and_resize needs the roi input");
        if ((st = const_floats(k, i_roi, sel_roi, 2 * OTL_MAX_RANK, &n_roi)))
            return st;
        if (n_roi != 2 * nsel)
            return otl_kfail(k, OTL_ERR_INPUT, "roi has %d values, expected %d", n_roi, 2 * nsel);
    }
    /* expand to every axis */
    double scales[OTL_MAX_RANK], roi[2 * OTL_MAX_RANK];
    int64_t sizes[OTL_MAX_RANK];
    for (int a = 0; a < r; a++) {
        scales[a] = 1;
        sizes[a] = x->dims[a];
        roi[a] = 0;
        roi[a + r] = 1;
    }
    for (int i = 0; i < nsel; i++) {
        int a = amap[i];
        if (n_scales)
            scales[a] = sel_scales[i];
        if (n_sizes)
            sizes[a] = sel_sizes[i];
        if (n_roi) {
            roi[a] = sel_roi[i];
            roi[a + r] = sel_roi[i + nsel];
        }
    }
    if (n_sizes && strcmp(karp, "stretch") != 0) {
        int larger = strcmp(karp, "not_smaller") == 0;
        if (!larger && strcmp(karp, "not_larger") != 0)
            return otl_kfail(k, OTL_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported", karp);
        double sc = larger ? 0 : INFINITY;
        for (int i = 0; i < nsel; i++) {
            int a = amap[i];
            double v = x->dims[a] ? (double)sizes[a] / (double)x->dims[a] : 1;
            sc = larger ? (v > sc ? v : sc) : (v < sc ? v : sc);
        }
        for (int i = 0; i < nsel; i++) {
            int a = amap[i];
            scales[a] = sc;
            sizes[a] = (int64_t)round(sc * (double)x->dims[a]);
        }
        return resize_setup(k, s, scales, sizes, n_roi ? roi : NULL);
    }
    return resize_setup(k, s, n_scales ? scales : NULL, n_sizes ? sizes : NULL, n_roi ? roi : NULL);
}

/* ---------------------------------------------------------------- forward */

/* y (out dims) from x through the taps: the nearest/one-tap case moves bytes. */
static void resize_gather(const resize_state *s, char *y, const int64_t *ydims, const char *x, int64_t numel)
{
    int R = s->rank, L = R - 1;
    size_t e = s->esz;
    int64_t n = ydims[L], rows = numel / n;
    int par = numel * (int64_t)e >= ((int64_t)1 << 16);
    #pragma omp parallel for if (par) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t q = row, off = 0;
        for (int a = L - 1; a >= 0; a--) {
            off += s->ax[a].idx[q % ydims[a]];
            q /= ydims[a];
        }
        const int64_t *il = s->ax[L].idx;
        char *yr = y + (size_t)(row * n) * e;
        if (e == 4) {
            for (int64_t o = 0; o < n; o++)
                memcpy(yr + o * 4, x + (size_t)(off + il[o]) * 4, 4);
        } else {
            for (int64_t o = 0; o < n; o++)
                memcpy(yr + (size_t)o * e, x + (size_t)(off + il[o]) * e, e);
        }
    }
}

#define MAX_COMBOS 256

static double load_f(const void *x, int dtype, int64_t i)
{
    return dtype == OTL_DTYPE_FLOAT ? (double)((const float *)x)[i] : otl_get_f(x, dtype, i);
}

/* Weighted sum over the taps of every axis, for float dtypes, one output row (along the last
 * axis) at a time: the tap combinations of the outer axes are expanded once per row. */
static void resize_interp(const resize_state *s, void *y, const int64_t *ydims, const void *x, int dtype,
                          int64_t numel)
{
    int R = s->rank, L = R - 1;
    int64_t n = ydims[L], rows = numel / n;
    int64_t ncomb = 1;
    for (int a = 0; a < L; a++)
        ncomb *= s->ax[a].K;
    const rs_axis *AL = &s->ax[L];
    int KL = AL->K;
    int par = numel >= 4096;
    #pragma omp parallel for if (par) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t o[OTL_MAX_RANK], q = row;
        int outside = 0;
        for (int a = L - 1; a >= 0; a--) {
            o[a] = q % ydims[a];
            q /= ydims[a];
            if (s->ax[a].outside && s->ax[a].outside[o[a]])
                outside = 1;
        }
        double cw[MAX_COMBOS];
        int64_t coff[MAX_COMBOS];
        int nc = 0;
        if (!outside && ncomb <= MAX_COMBOS) {
            /* expand the outer taps: combination c picks tap t_a of each outer axis */
            cw[0] = 1;
            coff[0] = 0;
            nc = 1;
            for (int a = 0; a < L; a++) {
                const rs_axis *A = &s->ax[a];
                int K = A->K;
                for (int c = nc - 1; c >= 0; c--)
                    for (int t = K - 1; t >= 0; t--) {
                        int64_t p = o[a] * K + t;
                        cw[c * K + t] = cw[c] * A->w[p];
                        coff[c * K + t] = coff[c] + A->idx[p];
                    }
                nc *= K;
            }
            int m = 0; /* drop zero weights */
            for (int c = 0; c < nc; c++)
                if (cw[c] != 0) {
                    cw[m] = cw[c];
                    coff[m++] = coff[c];
                }
            nc = m;
        }
        for (int64_t xo = 0; xo < n; xo++) {
            int64_t i = row * n + xo;
            double acc = 0;
            if (outside || (AL->outside && AL->outside[xo])) {
                acc = s->extrapolation;
            } else if (ncomb <= MAX_COMBOS) {
                const int64_t *il = AL->idx + xo * KL;
                const double *wl = AL->w + xo * KL;
                for (int c = 0; c < nc; c++) {
                    double part = 0;
                    for (int t = 0; t < KL; t++)
                        part += wl[t] * load_f(x, dtype, coff[c] + il[t]);
                    acc += cw[c] * part;
                }
            } else {
                /* many outer taps (cubic on 5+ axes): odometer over every axis */
                int t[OTL_MAX_RANK] = {0};
                int64_t oo[OTL_MAX_RANK];
                for (int a = 0; a < L; a++)
                    oo[a] = o[a];
                oo[L] = xo;
                for (;;) {
                    double w = 1;
                    int64_t off = 0;
                    for (int a = 0; a < R; a++) {
                        int64_t p = oo[a] * s->ax[a].K + t[a];
                        w *= s->ax[a].w[p];
                        off += s->ax[a].idx[p];
                    }
                    if (w != 0)
                        acc += w * load_f(x, dtype, off);
                    int a = R - 1;
                    while (a >= 0 && ++t[a] == s->ax[a].K)
                        t[a--] = 0;
                    if (a < 0)
                        break;
                }
            }
            if (dtype == OTL_DTYPE_FLOAT)
                ((float *)y)[i] = (float)acc;
            else
                otl_set_f(y, dtype, i, acc);
        }
    }
}

static otl_status resize_forward(otl_kctx *k)
{
    resize_state *s = k->state;
    otl_rt *y = k->out[0];
    if (y->numel == 0)
        return OTL_OK;
    if (s->gather_only)
        resize_gather(s, y->data, y->dims, k->in[0]->data, y->numel);
    else
        resize_interp(s, y->data, y->dims, k->in[0]->data, y->dtype, y->numel);
    return OTL_OK;
}

/* ResizeGrad(dY, Shape(X), <the forward's inputs after X>) with the forward's attributes, its
 * opset (fwd_opset) and its op type (fwd_op: Resize or Upsample). */
static otl_status resize_grad(otl_gctx *c)
{
    const char *x[1] = {c->node->inputs[0]};
    const char *in[5] = {c->dy[0], otl_gemit1(c, "", "Shape", 1, x, NULL), "", "", ""};
    for (int i = 1; i < 4 && i < c->n_in; i++)
        in[1 + i] = c->node->inputs[i];
    otl_node *n = NULL;
    const char *dx = otl_gemit1(c, OTL_GRAD_DOMAIN, "ResizeGrad", 5, in, &n);
    otl_status st = dx ? otl_gattr_copy(c, n) : OTL_OK;
    if (!st && dx)
        st = otl_gattr_int(c, n, "fwd_opset", c->opset);
    if (!st && dx)
        st = otl_gattr_str(c, n, "fwd_op", c->node->op_type);
    otl_grad_set(c, 0, dx);
    return st;
}

const otl_op otl_op_Resize = {
    .op_type = "Resize", .domain = "", .since = 10, .until = 22,
    .infer = resize_infer, .forward = resize_forward, .release = resize_release,
    .grad_inputs = 1, .grad = resize_grad,
};

/* ---------------------------------------------------------------- Upsample (deprecated at 10) */

static otl_status upsample_infer(otl_kctx *k)
{
    otl_status st;
    resize_state *s = NULL;
    if ((st = otl_check_in(k, 0, NULL)) || (st = new_state(k, &s)))
        return st;
    const char *mode;
    if ((st = otl_attr_str(k, "mode", "nearest", &mode)))
        return st;
    if (strcmp(mode, "nearest") == 0)
        s->mode = RS_NEAREST;
    else if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        s->mode = RS_LINEAR;
    else
        return otl_kfail(k, OTL_ERR_UNSUPPORTED, "mode '%s' is not supported", mode);
    s->ctm = CT_ASYMMETRIC;
    s->nearest_mode = NM_SIMPLE;
    if ((st = check_dtype(k, s)))
        return st;
    int r = k->in[0]->rank, n;
    double scales[OTL_MAX_RANK];
    if (k->opset < 9) {
        float f[OTL_MAX_RANK];
        if ((st = otl_attr_floats(k, "scales", f, OTL_MAX_RANK, &n)))
            return st;
        for (int i = 0; i < n; i++)
            scales[i] = f[i];
    } else {
        if ((st = otl_check_in(k, 1, NULL)) || (st = const_floats(k, 1, scales, OTL_MAX_RANK, &n)))
            return st;
    }
    if (n != r)
        return otl_kfail(k, OTL_ERR_INPUT, "scales has %d values for an input of rank %d", n, r);
    return resize_setup(k, s, scales, NULL, NULL);
}

const otl_op otl_op_Upsample = {
    .op_type = "Upsample", .domain = "", .since = 7, .until = 9,
    .infer = upsample_infer, .forward = resize_forward, .release = resize_release,
    .grad_inputs = 1, .grad = resize_grad,
};

/* ---------------------------------------------------------------- ResizeGrad (onnx_tl) */

static otl_status resize_grad_infer(otl_kctx *k)
{
    static const int grad_types[] = {OTL_DTYPE_FLOAT, OTL_DTYPE_DOUBLE, 0};
    otl_rt x, y;
    const char *op;
    otl_status st;
    if ((st = otl_check_in(k, 0, grad_types)) || (st = otl_attr_str(k, "fwd_op", "Resize", &op)))
        return st;
    int up = strcmp(op, "Upsample") == 0;
    if (!up && strcmp(op, "Resize") != 0)
        return otl_kfail(k, OTL_ERR_INPUT, "fwd_op '%s' is neither Resize nor Upsample", op);
    st = otl_infer_forward(k, up ? upsample_infer : resize_infer, 1, 2, up ? 1 : 3, &x, &y);
    return st ? st : otl_rt_set(k, k->out[0], x.dtype, x.rank, x.dims);
}

/* dx[taps of o] += w * dy[o] for the output rows [r0, r1) along the last axis: the transpose
 * of resize_interp (outputs outside the crop get nothing back). */
static void resize_adjoint_rows(const resize_state *s, void *dx, const void *dy, const int64_t *ydims, int dtype,
                                int64_t r0, int64_t r1)
{
    int R = s->rank, L = R - 1;
    int64_t n = ydims[L];
    const rs_axis *AL = &s->ax[L];
    int KL = AL->K, f32 = dtype == OTL_DTYPE_FLOAT;
    float *xf = dx;
    double *xd = dx;
    for (int64_t row = r0; row < r1; row++) {
        int64_t o[OTL_MAX_RANK], q = row;
        int outside = 0;
        for (int a = L - 1; a >= 0; a--) {
            o[a] = q % ydims[a];
            q /= ydims[a];
            if (s->ax[a].outside && s->ax[a].outside[o[a]])
                outside = 1;
        }
        if (outside)
            continue;
        /* every combination of the outer axes' taps, odometer order */
        int t[OTL_MAX_RANK] = {0};
        for (;;) {
            double cw = 1;
            int64_t coff = 0;
            for (int a = 0; a < L; a++) {
                int64_t p = o[a] * s->ax[a].K + t[a];
                cw *= s->ax[a].w[p];
                coff += s->ax[a].idx[p];
            }
            if (cw != 0) {
                for (int64_t xo = 0; xo < n; xo++) {
                    if (AL->outside && AL->outside[xo])
                        continue;
                    double g = cw * (f32 ? (double)((const float *)dy)[row * n + xo] : ((const double *)dy)[row * n + xo]);
                    const int64_t *il = AL->idx + xo * KL;
                    const double *wl = AL->w + xo * KL;
                    for (int tt = 0; tt < KL; tt++) {
                        if (wl[tt] == 0)
                            continue;
                        if (f32)
                            xf[coff + il[tt]] += (float)(wl[tt] * g);
                        else
                            xd[coff + il[tt]] += wl[tt] * g;
                    }
                }
            }
            int a = L - 1;
            while (a >= 0 && ++t[a] == s->ax[a].K)
                t[a--] = 0;
            if (a < 0)
                break;
        }
    }
}

static otl_status resize_grad_forward(otl_kctx *k)
{
    resize_state *s = k->state;
    const otl_rt *dy = k->in[0];
    otl_rt *dx = k->out[0];
    if (dx->nbytes)
        otl_zero_par(dx->data, dx->nbytes);
    if (dy->numel == 0 || dx->numel == 0)
        return OTL_OK;
    /* Rows of different blocks never meet in dx: blocks are the indices of the leading axes that
     * are not resized (one tap, the identity, nothing outside), e.g. N and C of an image. */
    int L = s->rank - 1;
    int64_t rows = dy->numel / dy->dims[L], blocks = 1;
    for (int a = 0; a < L; a++) {
        const rs_axis *A = &s->ax[a];
        int ident = A->K == 1 && !A->outside && dy->dims[a] == dx->dims[a];
        int64_t stride = 1;
        for (int b = a + 1; b < s->rank; b++)
            stride *= dx->dims[b];
        for (int64_t o = 0; ident && o < dy->dims[a]; o++)
            ident = A->idx[o] == o * stride && A->w[o] == 1;
        if (!ident)
            break;
        blocks *= dy->dims[a];
    }
    int64_t per = rows / blocks;
    int par = dy->numel >= 16384 && blocks > 1 && !omp_in_parallel();
    int nchunks = par ? omp_get_max_threads() * 4 : 1;
    if (nchunks > blocks)
        nchunks = (int)blocks;
    #pragma omp parallel for if (par) schedule(static)
    for (int c = 0; c < nchunks; c++)
        resize_adjoint_rows(s, dx->data, dy->data, dy->dims, dy->dtype, blocks * c / nchunks * per,
                            blocks * (c + 1) / nchunks * per);
    return OTL_OK;
}

const otl_op otl_op_ResizeGrad = {
    .op_type = "ResizeGrad", .domain = OTL_GRAD_DOMAIN, .since = 1, .until = 1,
    .infer = resize_grad_infer, .forward = resize_grad_forward, .release = resize_release,
};
