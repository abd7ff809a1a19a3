/* Depthwise convolution, NHWC, one image: kernel (kh, kw, c, m), output channel ch*m + j.
   One body, compiled for AVX-512, AVX2+FMA and baseline (the compiler vectorizes the channel
   loops); chosen per call under the instruction-set cap, so tests run every version here.
   Channels are taken in blocks of 64 accumulated in registers over all taps, so each output
   value is stored once. Taps outside the image add nothing (zero padding). */
#include "isa.h"
#include "bnkit_kernels.h"

#define BLOCK 64

static inline __attribute__((always_inline))
void depthwise_body(const float *restrict x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                    int pad_top, int pad_left, int oh, int ow, const float *restrict kernel, const float *restrict bias,
                    float *restrict y) {
    const int oc = c * m;
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            float *restrict out = y + ((size_t)oy * ow + ox) * oc;
            const int iy0 = oy * sy - pad_top, ix0 = ox * sx - pad_left;
            if (m == 1) {
                for (int c0 = 0; c0 < c; c0 += BLOCK) {
                    const int n = c - c0 < BLOCK ? c - c0 : BLOCK;
                    float acc[BLOCK];
                    if (n == BLOCK) {
                        for (int j = 0; j < BLOCK; j++) acc[j] = bias ? bias[c0 + j] : 0.0f;
                        for (int ky = 0; ky < kh; ky++) {
                            const int iy = iy0 + ky * dy;
                            if (iy < 0 || iy >= h) continue;
                            for (int kx = 0; kx < kw; kx++) {
                                const int ix = ix0 + kx * dx;
                                if (ix < 0 || ix >= w) continue;
                                const float *restrict in = x + ((size_t)iy * w + ix) * c + c0;
                                const float *restrict wt = kernel + (size_t)(ky * kw + kx) * c + c0;
                                for (int j = 0; j < BLOCK; j++) acc[j] += in[j] * wt[j];
                            }
                        }
                        for (int j = 0; j < BLOCK; j++) out[c0 + j] = acc[j];
                    } else {
                        for (int j = 0; j < n; j++) acc[j] = bias ? bias[c0 + j] : 0.0f;
                        for (int ky = 0; ky < kh; ky++) {
                            const int iy = iy0 + ky * dy;
                            if (iy < 0 || iy >= h) continue;
                            for (int kx = 0; kx < kw; kx++) {
                                const int ix = ix0 + kx * dx;
                                if (ix < 0 || ix >= w) continue;
                                const float *restrict in = x + ((size_t)iy * w + ix) * c + c0;
                                const float *restrict wt = kernel + (size_t)(ky * kw + kx) * c + c0;
                                for (int j = 0; j < n; j++) acc[j] += in[j] * wt[j];
                            }
                        }
                        for (int j = 0; j < n; j++) out[c0 + j] = acc[j];
                    }
                }
                continue;
            }
            /* A depth multiplier: each input channel feeds m consecutive outputs. */
            for (int o = 0; o < oc; o++) out[o] = bias ? bias[o] : 0.0f;
            for (int ky = 0; ky < kh; ky++) {
                const int iy = iy0 + ky * dy;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < kw; kx++) {
                    const int ix = ix0 + kx * dx;
                    if (ix < 0 || ix >= w) continue;
                    const float *restrict in = x + ((size_t)iy * w + ix) * c;
                    const float *restrict wt = kernel + (size_t)(ky * kw + kx) * oc;
                    for (int ch = 0; ch < c; ch++) {
                        const float v = in[ch];
                        for (int j = 0; j < m; j++) out[ch * m + j] += v * wt[ch * m + j];
                    }
                }
            }
        }
    }
}

static void depthwise_generic(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                              int pt, int pl, int oh, int ow, const float *k, const float *b, float *y) {
    depthwise_body(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, k, b, y);
}

#if BNK_X86
__attribute__((target("avx2,fma")))
static void depthwise_avx2(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                           int pt, int pl, int oh, int ow, const float *k, const float *b, float *y) {
    depthwise_body(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, k, b, y);
}

__attribute__((target("avx512f")))
static void depthwise_avx512(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                             int pt, int pl, int oh, int ow, const float *k, const float *b, float *y) {
    depthwise_body(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, k, b, y);
}
#endif

void bnk_depthwise_conv2d(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                          int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, float *y) {
#if BNK_X86
    if (bnk_use_avx512()) { depthwise_avx512(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y); return; }
    if (bnk_use_avx2()) { depthwise_avx2(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y); return; }
#endif
    depthwise_generic(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y);
}

const char *bnk_depthwise_isa(void) {
#if BNK_X86
    if (bnk_use_avx512()) return "avx512";
    if (bnk_use_avx2()) return "avx2";
#endif
    return "generic";
}
