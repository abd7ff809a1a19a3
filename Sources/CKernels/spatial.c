/* Spatial helpers for the runtime: im2col, pooling. NHWC, one image at a time. */
#include "bnkit_kernels.h"
#include <float.h>
#include <string.h>

static inline void copy_floats(float *restrict to, const float *restrict from, int n) {
    for (int i = 0; i < n; i++) to[i] = from[i];
}

static inline void zero_floats(float *to, int n) {
    for (int i = 0; i < n; i++) to[i] = 0.0f;
}

void bnk_im2col(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx,
                int pad_top, int pad_left, int oh, int ow, float *out) {
    const int depth = kh * kw * c;
    if (c == 1 && dx == 1 && dy == 1) {
        /* One channel (a grayscale input): gather the window directly. */
        for (int oy = 0; oy < oh; oy++) {
            int iy0 = oy * sy - pad_top;
            for (int ox = 0; ox < ow; ox++) {
                float *row = out + ((size_t)oy * ow + ox) * depth;
                int ix0 = ox * sx - pad_left;
                if (iy0 >= 0 && iy0 + kh <= h && ix0 >= 0 && ix0 + kw <= w) {
                    const float *src = image + (size_t)iy0 * w + ix0;
                    for (int ky = 0; ky < kh; ky++, src += w, row += kw)
                        for (int kx = 0; kx < kw; kx++) row[kx] = src[kx];
                } else {
                    for (int ky = 0; ky < kh; ky++, row += kw) {
                        int iy = iy0 + ky;
                        for (int kx = 0; kx < kw; kx++) {
                            int ix = ix0 + kx;
                            row[kx] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? image[(size_t)iy * w + ix] : 0.0f;
                        }
                    }
                }
            }
        }
        return;
    }
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            float *row = out + ((size_t)oy * ow + ox) * depth;
            for (int ky = 0; ky < kh; ky++) {
                int iy = oy * sy - pad_top + ky * dy;
                float *target = row + (size_t)ky * kw * c;
                if (iy < 0 || iy >= h) { zero_floats(target, kw * c); continue; }
                int ix0 = ox * sx - pad_left;
                if (dx == 1 && ix0 >= 0 && ix0 + kw <= w) {
                    /* the whole kernel row lies inside the image: one contiguous copy */
                    copy_floats(target, image + ((size_t)iy * w + ix0) * c, kw * c);
                    continue;
                }
                for (int kx = 0; kx < kw; kx++) {
                    int ix = ix0 + kx * dx;
                    if (ix < 0 || ix >= w) zero_floats(target + kx * c, c);
                    else copy_floats(target + kx * c, image + ((size_t)iy * w + ix) * c, c);
                }
            }
        }
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void bnk_pool2d(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx,
                int pad_top, int pad_left, int oh, int ow, int is_max, float *out) {
    if (is_max && kh == 2 && kw == 2 && sy == 2 && sx == 2 && pad_top == 0 && pad_left == 0 && 2 * oh <= h && 2 * ow <= w) {
        /* The common 2x2/2 max pool: four rows of channels, element-wise max. */
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                const float *a = image + ((size_t)(2 * oy) * w + 2 * ox) * c, *b = a + c;
                const float *d = a + (size_t)w * c, *e = d + c;
                float *y = out + ((size_t)oy * ow + ox) * c;
                for (int k = 0; k < c; k++) {
                    float m1 = a[k] > b[k] ? a[k] : b[k], m2 = d[k] > e[k] ? d[k] : e[k];
                    y[k] = m1 > m2 ? m1 : m2;
                }
            }
        }
        return;
    }
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            float *y = out + ((size_t)oy * ow + ox) * c;
            for (int k = 0; k < c; k++) y[k] = is_max ? -FLT_MAX * 2 : 0.0f;
            int count = 0;
            for (int ky = 0; ky < kh; ky++) {
                int iy = oy * sy - pad_top + ky;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < kw; kx++) {
                    int ix = ox * sx - pad_left + kx;
                    if (ix < 0 || ix >= w) continue;
                    const float *x = image + ((size_t)iy * w + ix) * c;
                    count++;
                    if (is_max) { for (int k = 0; k < c; k++) y[k] = x[k] > y[k] ? x[k] : y[k]; }
                    else { for (int k = 0; k < c; k++) y[k] += x[k]; }
                }
            }
            if (!is_max) { float n = (float)count; for (int k = 0; k < c; k++) y[k] /= n; }
        }
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void bnk_global_pool(const float *image, int pixels, int c, int is_max, float *out) {
    for (int k = 0; k < c; k++) out[k] = is_max ? -FLT_MAX * 2 : 0.0f;
    for (int p = 0; p < pixels; p++) {
        const float *x = image + (size_t)p * c;
        if (is_max) { for (int k = 0; k < c; k++) out[k] = x[k] > out[k] ? x[k] : out[k]; }
        else { for (int k = 0; k < c; k++) out[k] += x[k]; }
    }
    if (!is_max) { float n = (float)pixels; for (int k = 0; k < c; k++) out[k] /= n; }
}

/* Direct convolution for one input channel (grayscale images): no patch
 * matrix. Eight output pixels at a time, 16 output channels per zmm. */
#include <immintrin.h>
__attribute__((target("avx512f")))
static inline __m512 act_c1(__m512 v, int act) {
    if (act == BNK_ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == BNK_ACT_RELU6) return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    return v;
}

__attribute__((target("avx512f")))
static void conv_c1_avx512(const float *image, int h, int w, int kh, int kw, int sy, int sx, int dy, int dx,
                           int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n,
                           int act, float *out) {
    for (int n0 = 0; n0 < n; n0 += 16) {
        int width = n - n0 < 16 ? n - n0 : 16;
        __mmask16 mask = width == 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
        for (int oy = 0; oy < oh; oy++) {
            for (int ox0 = 0; ox0 < ow; ox0 += 8) {
                int count = ow - ox0 < 8 ? ow - ox0 : 8;
                __m512 acc[8];
                for (int j = 0; j < 8; j++) acc[j] = b;
                int first = ox0 * sx - pad_left, last = (ox0 + 7) * sx - pad_left + (kw - 1) * dx;
                int rows_inside = oy * sy - pad_top >= 0 && oy * sy - pad_top + (kh - 1) * dy < h;
                if (count == 8 && rows_inside && first >= 0 && last < w) {
                    /* interior: no bounds to check */
                    for (int ky = 0; ky < kh; ky++) {
                        const float *line = image + (size_t)(oy * sy - pad_top + ky * dy) * w + first;
                        for (int kx = 0; kx < kw; kx++) {
                            __m512 wv = _mm512_maskz_loadu_ps(mask, kernel + (size_t)(ky * kw + kx) * n + n0);
                            const float *p = line + kx * dx;
                            for (int j = 0; j < 8; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(p[j * sx]), wv, acc[j]);
                        }
                    }
                    for (int j = 0; j < 8; j++)
                        _mm512_mask_storeu_ps(out + ((size_t)oy * ow + ox0 + j) * n + n0, mask, act_c1(acc[j], act));
                    continue;
                }
                for (int ky = 0; ky < kh; ky++) {
                    int iy = oy * sy - pad_top + ky * dy;
                    if (iy < 0 || iy >= h) continue;
                    const float *line = image + (size_t)iy * w;
                    for (int kx = 0; kx < kw; kx++) {
                        __m512 wv = _mm512_maskz_loadu_ps(mask, kernel + (size_t)(ky * kw + kx) * n + n0);
                        for (int j = 0; j < 8; j++) {
                            int ix = (ox0 + j) * sx - pad_left + kx * dx;
                            float v = (j < count && ix >= 0 && ix < w) ? line[ix] : 0.0f;
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(v), wv, acc[j]);
                        }
                    }
                }
                for (int j = 0; j < count; j++)
                    _mm512_mask_storeu_ps(out + ((size_t)oy * ow + ox0 + j) * n + n0, mask, act_c1(acc[j], act));
            }
        }
    }
}

int bnk_conv2d_single_channel(const float *image, int h, int w, int kh, int kw, int sy, int sx, int dy, int dx,
                              int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n,
                              int act, float *out) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || act == BNK_ACT_SIGMOID) return 0;
    conv_c1_avx512(image, h, w, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, n, act, out);
    return 1;
}
