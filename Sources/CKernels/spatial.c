/* Spatial helpers for the runtime: im2col, pooling. NHWC, one image at a time. */
#include "bnkit_kernels.h"
#include "isa.h"
#include <float.h>
#include <stdlib.h>
#include <string.h>

/* Copies are short (a few channels to a few window rows): fixed-size blocks
 * copied inline, not a call to memcpy per piece. */
typedef struct { float v[16]; } block16;
typedef struct { float v[4]; } block4;
static inline void copy_floats(float *restrict to, const float *restrict from, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) { block16 t; __builtin_memcpy(&t, from + i, sizeof t); __builtin_memcpy(to + i, &t, sizeof t); }
    for (; i + 4 <= n; i += 4) { block4 t; __builtin_memcpy(&t, from + i, sizeof t); __builtin_memcpy(to + i, &t, sizeof t); }
    for (; i < n; i++) to[i] = from[i];
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

static inline __attribute__((always_inline))
void pool2d_body(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx,
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

/* W channels (a constant: 64 or 16, or the last few, W = 0 for `rest`) of every pixel, each
   channel's value from its own sum or maximum over the pixels in order; with W constant the
   accumulators stay in registers (W / 16 independent chains). Out of memory, as one loop over
   all channels had them, each pixel's adds waited on the store of the pixel before:
   EfficientNetB0 224's squeezes (112 x 112 x 32 and smaller) took 44 of 2352 ms in a profile
   of one thread. Hot, best of 200, Intel Xeon (family 6 model 207), before -> after, us:
   AVX-512 12544 x 32 43.9 -> 38.7, 3136 x 96 26.5 -> 21.1, 3136 x 144 47.8 -> 37.3, 784 x 240
   16.6 -> 13.0, 196 x 480 8.2 -> 6.1, 49 x 1152 5.3 -> 3.5; AVX2 52.4 -> 38.2, 28.4 -> 20.9,
   43.6 -> 38.8, 16.7 -> 13.1, 8.6 -> 6.4, 5.6 -> 3.7; portable 12544 x 32 75.8 -> 43.9. With 32
   channels two chains of adds a pixel bound it.
   A sum is taken block by block (BNK_POOL_BLOCK pixels each, in order), the blocks' sums added in
   order from zero: the order threads splitting the pixels by whole blocks keep
   (bnk_global_pool_blocks, bnk_global_pool_combine), so the values do not depend on the split.
   `mode`: 0 mean, 1 max, 2 the sum. */
static inline __attribute__((always_inline))
void global_pool_channels(const float *image, int pixels, int ld, const int W, int rest, const int mode, float *out) {
    const int width = W ? W : rest;
    float acc[64];
    for (int k = 0; k < width; k++) acc[k] = mode == 1 ? -FLT_MAX * 2 : 0.0f;
    if (mode == 1) {
        for (int p = 0; p < pixels; p++) {
            const float *x = image + (size_t)p * ld;
            for (int k = 0; k < width; k++) acc[k] = x[k] > acc[k] ? x[k] : acc[k];
        }
    } else {
        int p0 = 0;
        if (W != 64) {
            /* At most 16 channels: four blocks at a time, four chains of adds (one was bound by the
               add's latency, a pixel each 4 cycles), each block's sum and the order the same. */
            for (; p0 + 4 * BNK_POOL_BLOCK <= pixels; p0 += 4 * BNK_POOL_BLOCK) {
                float q0[16], q1[16], q2[16], q3[16];
                for (int k = 0; k < width; k++) q0[k] = q1[k] = q2[k] = q3[k] = 0.0f;
                for (int p = p0; p < p0 + BNK_POOL_BLOCK; p++) {
                    const float *x = image + (size_t)p * ld;
                    const size_t block = (size_t)BNK_POOL_BLOCK * ld;
                    for (int k = 0; k < width; k++) {
                        q0[k] += x[k];
                        q1[k] += x[block + k];
                        q2[k] += x[2 * block + k];
                        q3[k] += x[3 * block + k];
                    }
                }
                for (int k = 0; k < width; k++) acc[k] = (((acc[k] + q0[k]) + q1[k]) + q2[k]) + q3[k];
            }
        }
        for (; p0 < pixels; p0 += BNK_POOL_BLOCK) {
            const int p1 = pixels - p0 < BNK_POOL_BLOCK ? pixels : p0 + BNK_POOL_BLOCK;
            float part[64];
            for (int k = 0; k < width; k++) part[k] = 0.0f;
            for (int p = p0; p < p1; p++) {
                const float *x = image + (size_t)p * ld;
                for (int k = 0; k < width; k++) part[k] += x[k];
            }
            for (int k = 0; k < width; k++) acc[k] += part[k];
        }
    }
    const float n = (float)pixels;
    for (int k = 0; k < width; k++) out[k] = mode == 0 ? acc[k] / n : acc[k];
}

/* `count` channels of pixels `ld` floats apart, in blocks of 64 and 16, then the rest. */
static inline __attribute__((always_inline))
void global_pool_body(const float *image, int pixels, int ld, int count, int mode, float *out) {
    int k = 0;
    for (; k + 64 <= count; k += 64)
        if (mode == 1) global_pool_channels(image + k, pixels, ld, 64, 0, 1, out + k);
        else if (mode == 2) global_pool_channels(image + k, pixels, ld, 64, 0, 2, out + k);
        else global_pool_channels(image + k, pixels, ld, 64, 0, 0, out + k);
    for (; k + 16 <= count; k += 16)
        if (mode == 1) global_pool_channels(image + k, pixels, ld, 16, 0, 1, out + k);
        else if (mode == 2) global_pool_channels(image + k, pixels, ld, 16, 0, 2, out + k);
        else global_pool_channels(image + k, pixels, ld, 16, 0, 0, out + k);
    if (k < count) global_pool_channels(image + k, pixels, ld, 0, count - k, mode, out + k);
}

/* Direct convolution for one input channel (grayscale images): no patch
 * matrix. Twelve output pixels at a time (eight for the rest of a row), 16 output channels per
 * zmm (at AVX2 six or four pixels, 16 channels in two ymm). */
#if BNK_X86
#include <immintrin.h>
/* One row of P output pixels (ox0..ox0+P-1, all inside the padded image; P 8, or 12 in whole
 * blocks), 16 output channels (masked), into acc[0..P-1]. Twelve pixels give twelve independent
 * sums, where eight left the FMA pipes waiting on the FMA's latency: on an AMD Zen 4, 28x28 MNIST
 * digits, 3x3 -> 16 + ReLU + 2x2 pooling, 15 rounds alternating, median ns an image: eight pixels
 * at a time 2,451 - 2,488, twelve 1,976 - 2,074. The same sums in the same order either way. */
__attribute__((target("avx512f")))
static inline void conv_c1_row(const int P, const float *padded, int pw, int oy, int ox0, int kh, int kw, int sy, int sx, int dy,
                               int dx, const float *kernel, int n, int n0, __mmask16 mask, __m512 b, __m512 *acc) {
    for (int j = 0; j < P; j++) acc[j] = b;
    /* Input rows that are all zero (the border, and the blank parts of a digit) add nothing:
     * skip them (exactly: b + 0 * w == b for finite weights; NaNs compare unequal and are kept). */
    const int span = (P - 1) * sx + (kw - 1) * dx + 1;
    const __mmask16 spanMask = span >= 16 ? 0xFFFF : (__mmask16)((1u << span) - 1);
    for (int ky = 0; ky < kh; ky++) {
        const float *line = padded + (size_t)(oy * sy + ky * dy) * pw + ox0 * sx;
        if (span <= 16 && !_mm512_mask_cmp_ps_mask(spanMask, _mm512_maskz_loadu_ps(spanMask, line), _mm512_setzero_ps(), _CMP_NEQ_UQ))
            continue;
        for (int kx = 0; kx < kw; kx++) {
            __m512 wv = _mm512_maskz_loadu_ps(mask, kernel + (size_t)(ky * kw + kx) * n + n0);
            const float *p = line + kx * dx;
            for (int j = 0; j < P; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(p[j * sx]), wv, acc[j]);
        }
    }
}

/* The image copied into a zero border wide enough that every block of eight
 * output pixels reads inside it: no bounds checks in the inner loops. */
__attribute__((target("avx512f")))
static void conv_c1_avx512(const float *padded, int pw, int kh, int kw, int sy, int sx, int dy, int dx,
                           int oh, int ow, const float *kernel, const float *bias, int n, int act, int pool, float *out) {
    for (int n0 = 0; n0 < n; n0 += 16) {
        int width = n - n0 < 16 ? n - n0 : 16;
        __mmask16 mask = width == 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
        if (!pool) {
            for (int oy = 0; oy < oh; oy++) {
                int start = 0;
                for (; start + 12 <= ow; start += 12) {
                    __m512 acc[12];
                    conv_c1_row(12, padded, pw, oy, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, acc);
                    for (int j = 0; j < 12; j++)
                        _mm512_mask_storeu_ps(out + ((size_t)oy * ow + start + j) * n + n0, mask, bnk_act512(acc[j], act));
                }
                for (int ox0 = start; ox0 < ow; ox0 += 8) {
                    int count = ow - ox0 < 8 ? ow - ox0 : 8;
                    __m512 acc[8];
                    conv_c1_row(8, padded, pw, oy, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, acc);
                    for (int j = 0; j < count; j++)
                        _mm512_mask_storeu_ps(out + ((size_t)oy * ow + ox0 + j) * n + n0, mask, bnk_act512(acc[j], act));
                }
            }
            continue;
        }
        /* Fused 2x2 stride-2 max pooling: two conv rows, eight columns -> four pooled pixels.
         * The activations here are non-decreasing, so pooling before or after them is the same. */
        int ph = oh / 2, pwo = ow / 2;
        for (int py = 0; py < ph; py++) {
            int start = 0;
            for (; start + 12 <= 2 * pwo; start += 12) {
                __m512 acc[12], top[6];
                conv_c1_row(12, padded, pw, 2 * py, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, acc);
                for (int j = 0; j < 6; j++) top[j] = _mm512_max_ps(acc[2 * j], acc[2 * j + 1]);
                conv_c1_row(12, padded, pw, 2 * py + 1, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, acc);
                for (int j = 0; j < 6; j++)
                    _mm512_mask_storeu_ps(out + ((size_t)py * pwo + start / 2 + j) * n + n0, mask,
                                          bnk_act512(_mm512_max_ps(top[j], _mm512_max_ps(acc[2 * j], acc[2 * j + 1])), act));
            }
            for (int ox0 = start; ox0 < 2 * pwo; ox0 += 8) {
                int count = (2 * pwo - ox0 < 8 ? 2 * pwo - ox0 : 8) / 2;
                __m512 top[8], bottom[8];
                conv_c1_row(8, padded, pw, 2 * py, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, top);
                conv_c1_row(8, padded, pw, 2 * py + 1, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, bottom);
                for (int j = 0; j < count; j++) {
                    __m512 m = _mm512_max_ps(_mm512_max_ps(top[2 * j], top[2 * j + 1]), _mm512_max_ps(bottom[2 * j], bottom[2 * j + 1]));
                    _mm512_mask_storeu_ps(out + ((size_t)py * pwo + ox0 / 2 + j) * n + n0, mask, bnk_act512(m, act));
                }
            }
        }
    }
}

/* Whether the input a block of output pixels reads from one row (span <= 16 values: lanes lo of
 * line, lanes hi of line + 8) is all zero: the row adds nothing (NaNs compare unequal and count). */
__attribute__((target("avx2,fma")))
static inline int blank_span_avx2(const float *line, __m256i lo, __m256i hi) {
    const __m256 z = _mm256_setzero_ps();
    return !(_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(_mm256_maskload_ps(line, lo), z, _CMP_NEQ_UQ), _mm256_castsi256_ps(lo)))
             | _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(_mm256_maskload_ps(line + 8, hi), z, _CMP_NEQ_UQ), _mm256_castsi256_ps(hi))));
}

/* The AVX2+FMA version of the two above: 8 output channels per ymm (masked), eight output pixels
 * at a time, the same sums in the same order (bias, then the taps row by row, zero rows skipped). */
__attribute__((target("avx2,fma")))
static inline void conv_c1_row8_avx2(const float *padded, int pw, int oy, int ox0, int kh, int kw, int sy, int sx, int dy, int dx,
                                     const float *kernel, int n, int n0, __m256i mask, __m256 b, __m256 *acc) {
    for (int j = 0; j < 8; j++) acc[j] = b;
    const int span = 7 * sx + (kw - 1) * dx + 1;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(span), lanes);
    const __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(span - 8), lanes);
    for (int ky = 0; ky < kh; ky++) {
        const float *line = padded + (size_t)(oy * sy + ky * dy) * pw + ox0 * sx;
        if (span <= 16 && blank_span_avx2(line, lo, hi)) continue;
        for (int kx = 0; kx < kw; kx++) {
            const __m256 wv = bnk_load8(kernel + (size_t)(ky * kw + kx) * n + n0, n - n0, mask);
            const float *p = line + kx * dx;
            for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j * sx), wv, acc[j]);
        }
    }
}

/* P output pixels (4, or 6 in whole blocks) x 16 output channels (the second eight masked), into
 * acc[2 j + v] (pixel j, vector v): per tap two weight loads and P broadcasts for 2 P FMAs, where
 * eight pixels x 8 channels take eight broadcasts (and read the input and test its blank rows once
 * per 8 channels). Six pixels give twelve independent sums, enough to keep both FMA pipes busy
 * through the FMA's latency (4-5 cycles), where four pixels' eight were not. The same sums in the
 * same order. */
__attribute__((target("avx2,fma")))
static inline void conv_c1_row_x2_avx2(const int P, const float *padded, int pw, int oy, int ox0, int kh, int kw, int sy, int sx,
                                       int dy, int dx, const float *kernel, int n, int n0, __m256i mask1, __m256 b0, __m256 b1,
                                       __m256 *acc) {
    for (int j = 0; j < P; j++) { acc[2 * j] = b0; acc[2 * j + 1] = b1; }
    const int span = (P - 1) * sx + (kw - 1) * dx + 1;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(span), lanes);
    const __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(span - 8), lanes);
    for (int ky = 0; ky < kh; ky++) {
        const float *line = padded + (size_t)(oy * sy + ky * dy) * pw + ox0 * sx;
        if (span <= 16 && blank_span_avx2(line, lo, hi)) continue;
        for (int kx = 0; kx < kw; kx++) {
            const float *w = kernel + (size_t)(ky * kw + kx) * n + n0;
            const __m256 w0 = _mm256_loadu_ps(w), w1 = bnk_load8(w + 8, n - n0 - 8, mask1);
            const float *p = line + kx * dx;
            for (int j = 0; j < P; j++) {
                const __m256 x = _mm256_broadcast_ss(p + j * sx);
                acc[2 * j] = _mm256_fmadd_ps(x, w0, acc[2 * j]);
                acc[2 * j + 1] = _mm256_fmadd_ps(x, w1, acc[2 * j + 1]);
            }
        }
    }
}

/* Blocks of 16 channels (9 or more left) go six pixels at a time (conv_c1_row_x2_avx2), the rest
 * of a row four at a time; the last 8 or fewer channels eight pixels at a
 * time. With the pooling, a block's first row is pooled across its pairs before the second row's
 * sums (six sums kept, not twelve). On an AMD Zen 4 capped at AVX2, 28x28 MNIST digits, 3x3 ->
 * 16 + ReLU + 2x2 pooling, 15 rounds alternating, median ns an image: four pixels at a time 3,635
 * - 3,785, six 2,759 - 2,779 (six without the blank-row skips 2,861). */
__attribute__((target("avx2,fma")))
static void conv_c1_avx2(const float *padded, int pw, int kh, int kw, int sy, int sx, int dy, int dx,
                         int oh, int ow, const float *kernel, const float *bias, int n, int act, int pool, float *out) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int n0 = 0;
    for (; n - n0 > 8; n0 += 16) {
        const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - n0 - 8), lanes);
        const __m256 b0 = bias ? _mm256_loadu_ps(bias + n0) : _mm256_setzero_ps();
        const __m256 b1 = bias ? _mm256_maskload_ps(bias + n0 + 8, mask1) : _mm256_setzero_ps();
        if (!pool) {
            for (int oy = 0; oy < oh; oy++) {
                int start = 0;
                for (; start + 6 <= ow; start += 6) {
                    __m256 acc[12];
                    conv_c1_row_x2_avx2(6, padded, pw, oy, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, acc);
                    for (int j = 0; j < 6; j++) {
                        float *o = out + ((size_t)oy * ow + start + j) * n + n0;
                        _mm256_storeu_ps(o, bnk_act256(acc[2 * j], act));
                        bnk_store8(o + 8, n - n0 - 8, mask1, bnk_act256(acc[2 * j + 1], act));
                    }
                }
                for (int ox0 = start; ox0 < ow; ox0 += 4) {
                    const int count = ow - ox0 < 4 ? ow - ox0 : 4;
                    __m256 acc[8];
                    conv_c1_row_x2_avx2(4, padded, pw, oy, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, acc);
                    for (int j = 0; j < count; j++) {
                        float *o = out + ((size_t)oy * ow + ox0 + j) * n + n0;
                        _mm256_storeu_ps(o, bnk_act256(acc[2 * j], act));
                        bnk_store8(o + 8, n - n0 - 8, mask1, bnk_act256(acc[2 * j + 1], act));
                    }
                }
            }
            continue;
        }
        const int ph = oh / 2, pwo = ow / 2;
        for (int py = 0; py < ph; py++) {
            int start = 0;
            for (; start + 6 <= 2 * pwo; start += 6) {
                __m256 acc[12], top[6];
                conv_c1_row_x2_avx2(6, padded, pw, 2 * py, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, acc);
                for (int j = 0; j < 3; j++)
                    for (int v = 0; v < 2; v++) top[2 * j + v] = _mm256_max_ps(acc[4 * j + v], acc[4 * j + 2 + v]);
                conv_c1_row_x2_avx2(6, padded, pw, 2 * py + 1, start, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, acc);
                for (int j = 0; j < 3; j++) {
                    float *o = out + ((size_t)py * pwo + start / 2 + j) * n + n0;
                    const __m256 m0 = _mm256_max_ps(top[2 * j], _mm256_max_ps(acc[4 * j], acc[4 * j + 2]));
                    const __m256 m1 = _mm256_max_ps(top[2 * j + 1], _mm256_max_ps(acc[4 * j + 1], acc[4 * j + 3]));
                    _mm256_storeu_ps(o, bnk_act256(m0, act));
                    bnk_store8(o + 8, n - n0 - 8, mask1, bnk_act256(m1, act));
                }
            }
            for (int ox0 = start; ox0 < 2 * pwo; ox0 += 4) {
                const int count = (2 * pwo - ox0 < 4 ? 2 * pwo - ox0 : 4) / 2;
                __m256 top[8], bottom[8];
                conv_c1_row_x2_avx2(4, padded, pw, 2 * py, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, top);
                conv_c1_row_x2_avx2(4, padded, pw, 2 * py + 1, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask1, b0, b1, bottom);
                for (int j = 0; j < count; j++) {
                    float *o = out + ((size_t)py * pwo + ox0 / 2 + j) * n + n0;
                    for (int v = 0; v < 2; v++) {
                        const __m256 m = _mm256_max_ps(_mm256_max_ps(top[4 * j + v], top[4 * j + 2 + v]),
                                                       _mm256_max_ps(bottom[4 * j + v], bottom[4 * j + 2 + v]));
                        if (v == 0) _mm256_storeu_ps(o, bnk_act256(m, act));
                        else bnk_store8(o + 8, n - n0 - 8, mask1, bnk_act256(m, act));
                    }
                }
            }
        }
    }
    for (; n0 < n; n0 += 8) {
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - n0), lanes);
        const __m256 b = bias ? _mm256_maskload_ps(bias + n0, mask) : _mm256_setzero_ps();
        if (!pool) {
            for (int oy = 0; oy < oh; oy++) {
                for (int ox0 = 0; ox0 < ow; ox0 += 8) {
                    int count = ow - ox0 < 8 ? ow - ox0 : 8;
                    __m256 acc[8];
                    conv_c1_row8_avx2(padded, pw, oy, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, acc);
                    for (int j = 0; j < count; j++) bnk_store8(out + ((size_t)oy * ow + ox0 + j) * n + n0, n - n0, mask, bnk_act256(acc[j], act));
                }
            }
            continue;
        }
        int ph = oh / 2, pwo = ow / 2;
        for (int py = 0; py < ph; py++) {
            for (int ox0 = 0; ox0 < 2 * pwo; ox0 += 8) {
                int count = (2 * pwo - ox0 < 8 ? 2 * pwo - ox0 : 8) / 2;
                __m256 top[8], bottom[8];
                conv_c1_row8_avx2(padded, pw, 2 * py, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, top);
                conv_c1_row8_avx2(padded, pw, 2 * py + 1, ox0, kh, kw, sy, sx, dy, dx, kernel, n, n0, mask, b, bottom);
                for (int j = 0; j < count; j++) {
                    __m256 m = _mm256_max_ps(_mm256_max_ps(top[2 * j], top[2 * j + 1]), _mm256_max_ps(bottom[2 * j], bottom[2 * j + 1]));
                    bnk_store8(out + ((size_t)py * pwo + ox0 / 2 + j) * n + n0, n - n0, mask, bnk_act256(m, act));
                }
            }
        }
    }
}

#endif /* BNK_X86 */

int bnk_conv2d_single_channel(const float *image, int h, int w, int kh, int kw, int sy, int sx, int dy, int dx,
                              int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n,
                              int act, int pool, float *out) {
#if BNK_X86
    if (!bnk_conv2d_single_channel_available(act)) return 0;
    int blocks = (ow + 7) / 8;
    int ph = (oh - 1) * sy + (kh - 1) * dy + 1;
    int pw = (blocks * 8 - 1) * sx + (kw - 1) * dx + 1;
    size_t size = (size_t)ph * pw;
    float stack[8192];
    float *padded = size <= 8192 ? stack : (float *)malloc(size * sizeof(float));
    if (!padded) return 0;
    memset(padded, 0, size * sizeof(float));
    for (int y = 0; y < ph; y++) {
        int iy = y - pad_top;
        if (iy < 0 || iy >= h) continue;
        int x0 = pad_left, from = 0, count = w;           /* image column 0 lands at padded column pad_left */
        if (x0 < 0) { from = -x0; count -= from; x0 = 0; } /* negative padding never occurs (TF padding is >= 0) */
        if (x0 + count > pw) count = pw - x0;
        if (count > 0) memcpy(padded + (size_t)y * pw + x0, image + (size_t)iy * w + from, (size_t)count * sizeof(float));
    }
    if (bnk_use_avx512()) conv_c1_avx512(padded, pw, kh, kw, sy, sx, dy, dx, oh, ow, kernel, bias, n, act, pool, out);
    else conv_c1_avx2(padded, pw, kh, kw, sy, sx, dy, dx, oh, ow, kernel, bias, n, act, pool, out);
    if (padded != stack) free(padded);
    return 1;
#else
    return 0;
#endif
}

int bnk_conv2d_single_channel_available(int act) {
    return (bnk_use_avx512() || bnk_use_avx2()) && act != BNK_ACT_SIGMOID;
}

BNK_VARIANTS(pool2d, (const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int pad_top, int pad_left, int oh, int ow,
                      int is_max, float *out),
             (image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, is_max, out))
BNK_VARIANTS(global_pool, (const float *image, int pixels, int ld, int count, int mode, float *out),
             (image, pixels, ld, count, mode, out))

/* bnk_conv2d_few_outputs: each output value a dot product over its window's taps and input
   channels, 16 channels a step in independent lanes (a vector of partial sums an output channel,
   in the compiler's vector types: one zmm at AVX-512, two ymm at AVX2, four xmm at the baseline
   and on NEON), the lanes added pairwise at the end; output pixels two at a time, sharing the
   kernel's loads. `packed`: the kernel as [o][tap][c]. N: the output channels, a constant in each
   instance so the sums stay in registers. */
typedef float bnk_f16 __attribute__((vector_size(64), aligned(4)));
typedef float bnk_f8 __attribute__((vector_size(32), aligned(4)));
typedef float bnk_f4 __attribute__((vector_size(16), aligned(4)));
/* The sums of one tap for output pixels (.., ox) and (.., ox + 1) at once (`two`), or one: each
   16-channel step of the kernel loaded once for both, and twice the independent sums in flight. */
static inline __attribute__((always_inline)) void few_outputs_tap(const float *x0, const float *x1, const float *k, int c,
                                                                 size_t per_output, bnk_f16 *acc0, bnk_f16 *acc1, float *tail0,
                                                                 float *tail1, const int N, const int two) {
    int ch = 0;
    for (; ch + 16 <= c; ch += 16) {
        const bnk_f16 v0 = *(const bnk_f16 *)(x0 + ch);
        const bnk_f16 v1 = two ? *(const bnk_f16 *)(x1 + ch) : v0;
        for (int o = 0; o < N; o++) {
            const bnk_f16 kv = *(const bnk_f16 *)(k + o * per_output + ch);
            acc0[o] += v0 * kv;
            if (two) acc1[o] += v1 * kv;
        }
    }
    for (; ch < c; ch++)
        for (int o = 0; o < N; o++) {
            tail0[o] += x0[ch] * k[o * per_output + ch];
            if (two) tail1[o] += x1[ch] * k[o * per_output + ch];
        }
}

static inline __attribute__((always_inline)) void few_outputs_store(const bnk_f16 *acc, const float *tail, const float *bias, float *y,
                                                                   const int N) {
    for (int o = 0; o < N; o++) {
        const bnk_f8 s8 = __builtin_shufflevector(acc[o], acc[o], 0, 1, 2, 3, 4, 5, 6, 7)
                        + __builtin_shufflevector(acc[o], acc[o], 8, 9, 10, 11, 12, 13, 14, 15);
        const bnk_f4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
        y[o] = (bias ? bias[o] : 0.0f) + (((s4[0] + s4[2]) + (s4[1] + s4[3])) + tail[o]);
    }
}

static inline __attribute__((always_inline)) void conv_few_outputs_n(
    const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pt, int pl, int ow, int row0,
    int row1, const float *packed, const float *bias, float *out, const int N) {
    const size_t per_output = (size_t)kh * kw * c;
    for (int oy = row0; oy < row1; oy++) {
        for (int ox = 0; ox < ow; ox += 2) {
            const int pair = ox + 1 < ow;
            bnk_f16 acc0[4], acc1[4];
            float tail0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tail1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int o = 0; o < N; o++) acc0[o] = acc1[o] = (bnk_f16){0};
            for (int ky = 0; ky < kh; ky++) {
                const int iy = oy * sy - pt + ky * dy;
                if (iy < 0 || iy >= h) continue;
                const float *row = image + (size_t)iy * w * c;
                for (int kx = 0; kx < kw; kx++) {
                    const int ix0 = ox * sx - pl + kx * dx, ix1 = ix0 + sx;
                    const int in0 = ix0 >= 0 && ix0 < w, in1 = pair && ix1 >= 0 && ix1 < w;
                    const float *k = packed + (size_t)(ky * kw + kx) * c;
                    if (in0 && in1) {
                        few_outputs_tap(row + (size_t)ix0 * c, row + (size_t)ix1 * c, k, c, per_output, acc0, acc1, tail0, tail1, N, 1);
                    } else if (in0) {
                        few_outputs_tap(row + (size_t)ix0 * c, 0, k, c, per_output, acc0, acc1, tail0, tail1, N, 0);
                    } else if (in1) {
                        few_outputs_tap(row + (size_t)ix1 * c, 0, k, c, per_output, acc1, acc0, tail1, tail0, N, 0);
                    }
                }
            }
            float *y = out + ((size_t)oy * ow + ox) * N;
            few_outputs_store(acc0, tail0, bias, y, N);
            if (pair) few_outputs_store(acc1, tail1, bias, y + N, N);
        }
    }
}

static inline __attribute__((always_inline)) void conv_few_outputs_body(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx,
                                         int pt, int pl, int ow, int row0, int row1, const float *packed, const float *bias, int n,
                                         float *out) {
    switch (n) {
    case 1: conv_few_outputs_n(image, h, w, c, kh, kw, sy, sx, dy, dx, pt, pl, ow, row0, row1, packed, bias, out, 1); break;
    case 2: conv_few_outputs_n(image, h, w, c, kh, kw, sy, sx, dy, dx, pt, pl, ow, row0, row1, packed, bias, out, 2); break;
    case 3: conv_few_outputs_n(image, h, w, c, kh, kw, sy, sx, dy, dx, pt, pl, ow, row0, row1, packed, bias, out, 3); break;
    default: conv_few_outputs_n(image, h, w, c, kh, kw, sy, sx, dy, dx, pt, pl, ow, row0, row1, packed, bias, out, 4); break;
    }
}
BNK_VARIANTS(conv_few_outputs, (const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pt, int pl,
                                int ow, int row0, int row1, const float *packed, const float *bias, int n, float *out),
             (image, h, w, c, kh, kw, sy, sx, dy, dx, pt, pl, ow, row0, row1, packed, bias, n, out))

int bnk_conv2d_few_outputs(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top,
                           int pad_left, int oh, int ow, const float *kernel, const float *bias, int n, float *out) {
    if (n < 1 || n > BNK_FEW_OUTPUTS || c < 1) return 0;
    const size_t taps = (size_t)kh * kw;
    float *packed = malloc(taps * c * n * sizeof(float));
    if (!packed) return 0;
    for (int o = 0; o < n; o++)
        for (size_t t = 0; t < taps; t++)
            for (int ch = 0; ch < c; ch++) packed[(o * taps + t) * c + ch] = kernel[(t * c + ch) * n + o];
    conv_few_outputs_dispatch(image, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, ow, 0, oh, packed, bias, n, out);
    free(packed);
    return 1;
}

static inline __attribute__((always_inline)) void transposed_scatter_body(const float *cols, int iy0, int iy1, int iw, int kh, int kw, int sy, int sx,
                                           int pt, int pl, int out, float *y, int ow, int o0, int o1) {
    const size_t columns = (size_t)kh * kw * out;
    for (int iy = iy0; iy < iy1; iy++) {
        for (int ky = 0; ky < kh; ky++) {
            const int oy = iy * sy + ky - pt;
            if (oy < o0 || oy >= o1) continue;
            float *row = y + (size_t)oy * ow * out;
            for (int ix = 0; ix < iw; ix++) {
                const float *taps = cols + ((size_t)(iy - iy0) * iw + ix) * columns + (size_t)ky * kw * out;
                for (int kx = 0; kx < kw; kx++) {
                    const int ox = ix * sx + kx - pl;
                    if (ox < 0 || ox >= ow) continue;
                    float *restrict t = row + (size_t)ox * out;
                    const float *restrict v = taps + (size_t)kx * out;
                    for (int o = 0; o < out; o++) t[o] += v[o];
                }
            }
        }
    }
}
BNK_VARIANTS(transposed_scatter, (const float *cols, int iy0, int iy1, int iw, int kh, int kw, int sy, int sx, int pt, int pl,
                                  int out, float *y, int ow, int o0, int o1),
             (cols, iy0, iy1, iw, kh, kw, sy, sx, pt, pl, out, y, ow, o0, o1))

void bnk_transposed_scatter(const float *cols, int iy0, int iy1, int iw, int kh, int kw, int sy, int sx, int pt, int pl,
                            int out, float *y, int ow, int o0, int o1) {
    transposed_scatter_dispatch(cols, iy0, iy1, iw, kh, kw, sy, sx, pt, pl, out, y, ow, o0, o1);
}

#if BNK_X86
/* Pooling with each output value's sum (or maximum) in a register, up to four vectors of channels
   at a time (four independent chains: one chain of nine dependent adds per vector was bound by the
   add's latency), over the taps inside the image in the portable body's order (the same values
   bit for bit; the compiled body kept them in memory and left a channel count such as NASNet's
   44 = 2 x 16 + 12 with a scalar tail at every tap). A tap's max is (x > y ? x : y), as in the
   portable body. `is_max` is a constant in each instantiation. */
#define POOL_OP(acc, v) ((acc) = is_max ? MAX(v, acc) : ADD(acc, v))
#define MAX _mm512_max_ps
#define ADD _mm512_add_ps
static inline __mmask16 pool_mask16(int left) { return left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1); }

__attribute__((target("avx512f"), always_inline))
static inline void pool2d_avx512_body(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int pad_top,
                                      int pad_left, int oh, int ow, const int is_max, float *out) {
    const __m512 start = _mm512_set1_ps(is_max ? -FLT_MAX * 2 : 0.0f);
    for (int oy = 0; oy < oh; oy++) {
        const int y0 = oy * sy - pad_top, ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + kh > h ? h - y0 : kh;
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = ox * sx - pad_left, kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + kw > w ? w - x0 : kw;
            const int count = ky1 > ky0 && kx1 > kx0 ? (ky1 - ky0) * (kx1 - kx0) : 0;
            const __m512 divisor = _mm512_set1_ps((float)count);
            const float *corner = image + ((size_t)y0 * w + x0) * c;
            float *y = out + ((size_t)oy * ow + ox) * c;
            for (int c0 = 0; c0 < c; c0 += 64) {
                const int left = c - c0;
                const __mmask16 k0 = pool_mask16(left), k1 = pool_mask16(left - 16), k2 = pool_mask16(left - 32),
                                k3 = pool_mask16(left - 48);
                __m512 a0 = start, a1 = start, a2 = start, a3 = start;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *row = corner + (size_t)ky * w * c + c0;
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *x = row + (size_t)kx * c;
                        POOL_OP(a0, _mm512_maskz_loadu_ps(k0, x));
                        if (left > 16) POOL_OP(a1, _mm512_maskz_loadu_ps(k1, x + 16));
                        if (left > 32) POOL_OP(a2, _mm512_maskz_loadu_ps(k2, x + 32));
                        if (left > 48) POOL_OP(a3, _mm512_maskz_loadu_ps(k3, x + 48));
                    }
                }
                _mm512_mask_storeu_ps(y + c0, k0, is_max ? a0 : _mm512_div_ps(a0, divisor));
                if (left > 16) _mm512_mask_storeu_ps(y + c0 + 16, k1, is_max ? a1 : _mm512_div_ps(a1, divisor));
                if (left > 32) _mm512_mask_storeu_ps(y + c0 + 32, k2, is_max ? a2 : _mm512_div_ps(a2, divisor));
                if (left > 48) _mm512_mask_storeu_ps(y + c0 + 48, k3, is_max ? a3 : _mm512_div_ps(a3, divisor));
            }
        }
    }
}
#undef MAX
#undef ADD

__attribute__((target("avx512f")))
static void pool2d_avx512_intrinsics(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int pad_top,
                                     int pad_left, int oh, int ow, int is_max, float *out) {
    if (is_max) pool2d_avx512_body(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, 1, out);
    else pool2d_avx512_body(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, 0, out);
}

#define MAX _mm256_max_ps
#define ADD _mm256_add_ps
__attribute__((target("avx2,fma"), always_inline))
static inline void pool2d_avx2_body(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int pad_top,
                                    int pad_left, int oh, int ow, const int is_max, float *out) {
    const __m256 start = _mm256_set1_ps(is_max ? -FLT_MAX * 2 : 0.0f);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int oy = 0; oy < oh; oy++) {
        const int y0 = oy * sy - pad_top, ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + kh > h ? h - y0 : kh;
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = ox * sx - pad_left, kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + kw > w ? w - x0 : kw;
            const int count = ky1 > ky0 && kx1 > kx0 ? (ky1 - ky0) * (kx1 - kx0) : 0;
            const __m256 divisor = _mm256_set1_ps((float)count);
            const float *corner = image + ((size_t)y0 * w + x0) * c;
            float *y = out + ((size_t)oy * ow + ox) * c;
            for (int c0 = 0; c0 < c; c0 += 32) {
                const int left = c - c0;
                /* Lanes of the last, partial vector (plain loads and stores for whole ones). */
                const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left % 8), lanes);
                __m256 a0 = start, a1 = start, a2 = start, a3 = start;
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *row = corner + (size_t)ky * w * c + c0;
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *x = row + (size_t)kx * c;
                        POOL_OP(a0, bnk_load8(x, left, mask));
                        if (left > 8) POOL_OP(a1, bnk_load8(x + 8, left - 8, mask));
                        if (left > 16) POOL_OP(a2, bnk_load8(x + 16, left - 16, mask));
                        if (left > 24) POOL_OP(a3, bnk_load8(x + 24, left - 24, mask));
                    }
                }
                bnk_store8(y + c0, left, mask, is_max ? a0 : _mm256_div_ps(a0, divisor));
                if (left > 8) bnk_store8(y + c0 + 8, left - 8, mask, is_max ? a1 : _mm256_div_ps(a1, divisor));
                if (left > 16) bnk_store8(y + c0 + 16, left - 16, mask, is_max ? a2 : _mm256_div_ps(a2, divisor));
                if (left > 24) bnk_store8(y + c0 + 24, left - 24, mask, is_max ? a3 : _mm256_div_ps(a3, divisor));
            }
        }
    }
}
#undef MAX
#undef ADD
#undef POOL_OP

__attribute__((target("avx2,fma")))
static void pool2d_avx2_intrinsics(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int pad_top,
                                   int pad_left, int oh, int ow, int is_max, float *out) {
    if (is_max) pool2d_avx2_body(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, 1, out);
    else pool2d_avx2_body(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, 0, out);
}
#endif

void bnk_pool2d(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx,
                int pad_top, int pad_left, int oh, int ow, int is_max, float *out) {
#if BNK_X86
    if (bnk_use_avx512()) { pool2d_avx512_intrinsics(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, is_max, out); return; }
    if (bnk_use_avx2()) { pool2d_avx2_intrinsics(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, is_max, out); return; }
#endif
    pool2d_dispatch(image, h, w, c, kh, kw, sy, sx, pad_top, pad_left, oh, ow, is_max, out);
}

void bnk_global_pool(const float *image, int pixels, int c, int is_max, float *out) {
    if (c > 0) global_pool_dispatch(image, pixels, c, c, is_max ? 1 : 0, out);
}

int bnk_global_pool_block_count(int pixels) { return pixels <= 0 ? 0 : (pixels + BNK_POOL_BLOCK - 1) / BNK_POOL_BLOCK; }

void bnk_global_pool_blocks(const float *image, int pixels, int c, int first, int count, int is_max, float *partial) {
    for (int b = first; b < first + count; b++) {
        const int p0 = b * BNK_POOL_BLOCK, n = pixels - p0 < BNK_POOL_BLOCK ? pixels - p0 : BNK_POOL_BLOCK;
        if (n > 0) global_pool_dispatch(image + (size_t)p0 * c, n, c, c, is_max ? 1 : 2, partial + (size_t)b * c);
    }
}

void bnk_global_pool_combine(const float *partial, int pixels, int c, int is_max, float *out) {
    const int blocks = bnk_global_pool_block_count(pixels);
    const float n = (float)pixels;
    for (int k = 0; k < c; k++) {
        float acc = is_max ? -FLT_MAX * 2 : 0.0f;
        for (int b = 0; b < blocks; b++) {
            const float v = partial[(size_t)b * c + k];
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
        out[k] = is_max ? acc : acc / n;
    }
}
