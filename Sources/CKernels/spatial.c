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

__attribute__((target_clones("avx512f", "avx2", "default")))
void bnk_im2col(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx,
                int pad_top, int pad_left, int oh, int ow, float *out) {
    const int depth = kh * kw * c;
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
