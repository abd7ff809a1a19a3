/* Depthwise convolution, NHWC, one image: kernel (kh, kw, c, m), output channel ch*m + j.
   One body, compiled for AVX-512, AVX2+FMA and baseline (the compiler vectorizes the channel
   loops); chosen per call under the instruction-set cap, so tests run every version here.
   Channels are taken in blocks of 64 accumulated in registers over all taps, so each output
   value is stored once. Taps outside the image add nothing (zero padding). */
#include "isa.h"
#include <stdlib.h>
#include <string.h>
#include "bnkit_kernels.h"
#include <math.h>

#define BLOCK 64

/* The activations applied as outputs are stored: ReLU and ReLU6 (others come after). */
static inline __attribute__((always_inline)) float act1(float v, int act) {
    if (act == BNK_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (act == BNK_ACT_RELU6) return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    return v;
}

/* An input value as the kernel reads it: with `rin`, through a ReLU (a standalone ReLU before the
   conv, fused in: the value the ReLU would have stored, NaN and -0 to +0 included). */
static inline __attribute__((always_inline)) float in1(float v, const int rin) {
    return rin ? (v > 0.0f ? v : 0.0f) : v;
}

static inline __attribute__((always_inline))
void depthwise_body(const float *restrict x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                    int pad_top, int pad_left, int oh, int ow, const float *restrict kernel, const float *restrict bias,
                    float *restrict y, int act, const int rin) {
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
                                for (int j = 0; j < BLOCK; j++) acc[j] += in1(in[j], rin) * wt[j];
                            }
                        }
                        for (int j = 0; j < BLOCK; j++) out[c0 + j] = act1(acc[j], act);
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
                                for (int j = 0; j < n; j++) acc[j] += in1(in[j], rin) * wt[j];
                            }
                        }
                        for (int j = 0; j < n; j++) out[c0 + j] = act1(acc[j], act);
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
                        const float v = in1(in[ch], rin);
                        for (int j = 0; j < m; j++) out[ch * m + j] += v * wt[ch * m + j];
                    }
                }
            }
            if (act != BNK_ACT_LINEAR) for (int o = 0; o < oc; o++) out[o] = act1(out[o], act);
        }
    }
}

/* Each version: `act` may carry BNK_DW_RELU_INPUT; the body is specialized for it. */
#define DW_VERSION(NAME, TARGET)                                                                                           \
TARGET static void NAME(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx, int pt,  \
                        int pl, int oh, int ow, const float *k, const float *b, float *y, int act) {                       \
    if (act & BNK_DW_RELU_INPUT)                                                                                          \
        depthwise_body(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, k, b, y, act & ~BNK_DW_RELU_INPUT, 1);      \
    else                                                                                                                  \
        depthwise_body(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, k, b, y, act, 0);                           \
}
DW_VERSION(depthwise_generic, )

#if BNK_X86
/* The interior of a row for a depth multiplier of 1: output pixels ox_lo..<ox_hi, whose windows
   lie inside the image horizontally (the rows outside it are skipped, adding nothing), four at a
   time, all channels of the four in turn, so each weight vector loaded serves four outputs. Sums
   from the bias over the taps in order, with FMAs, like the body above; ReLU/ReLU6 at the store. */
#define DW_INTERIOR(NAME, TARGET, VEC, W, LOAD, LOADU, STORE, STOREU, SETZERO, SET1, MIN, MAX, FMA, MASK_T, MASK_OF, NVMAX)         \
/* PIX (4 or 1) pixels from ox, channels c0..: full, W channels read and written without a mask (a masked AVX2 load or \
   store of a whole vector took several times a plain one's time on AMD Zen 4: below). */                             \
/* An input vector as the kernel reads it (through a fused ReLU with `rin`: max(v, 0) is 0 for NaN \
   and -0, as the standalone ReLU). */                                                                                   \
TARGET static inline __attribute__((always_inline)) VEC NAME##_in(VEC v, const int rin) { return rin ? MAX(v, SETZERO()) : v; } \
TARGET static inline __attribute__((always_inline)) void NAME##_pixels(const int PIX, const int full, const float *x, int h,  \
        int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top, int pad_left, int oy, int ox,           \
        const float *kernel, const float *bias, float *y, int ow, int act, int c0, MASK_T mask, const int rin) {           \
    /* ReLU / ReLU6 as a clamp at the store. */                                                                          \
    const VEC lower = SETZERO();                                                                                          \
    const VEC upper = SET1(act == BNK_ACT_RELU6 ? 6.0f : INFINITY);                                                        \
    const VEC b = bias ? (full ? LOADU(bias + c0) : LOAD(bias + c0, mask)) : SETZERO();                                   \
    const size_t step = (size_t)sx * c;                                                                                   \
    VEC a0 = b, a1 = b, a2 = b, a3 = b;                                                                                   \
    for (int ky = 0; ky < kh; ky++) {                                                                                     \
        const int iy = oy * sy - pad_top + ky * dy;                                                                       \
        if (iy < 0 || iy >= h) continue;                                                                                  \
        const float *in = x + (size_t)iy * w * c + c0 + (size_t)(ox * sx - pad_left) * c;                                 \
        const float *wk = kernel + (size_t)ky * kw * c + c0;                                                              \
        for (int kx = 0; kx < kw; kx++, in += (size_t)dx * c, wk += c) {                                                  \
            const VEC wt = full ? LOADU(wk) : LOAD(wk, mask);                                                             \
            a0 = FMA(NAME##_in(full ? LOADU(in) : LOAD(in, mask), rin), wt, a0);                                                      \
            if (PIX > 1) {                                                                                                \
                a1 = FMA(NAME##_in(full ? LOADU(in + step) : LOAD(in + step, mask), rin), wt, a1);                                    \
                a2 = FMA(NAME##_in(full ? LOADU(in + 2 * step) : LOAD(in + 2 * step, mask), rin), wt, a2);                            \
                a3 = FMA(NAME##_in(full ? LOADU(in + 3 * step) : LOAD(in + 3 * step, mask), rin), wt, a3);                            \
            }                                                                                                             \
        }                                                                                                                 \
    }                                                                                                                     \
    float *out = y + ((size_t)oy * ow + ox) * c + c0;                                                                     \
    const VEC r[4] = {a0, a1, a2, a3};                                                                                    \
    for (int j = 0; j < PIX; j++) {                                                                                       \
        const VEC v = act == BNK_ACT_LINEAR ? r[j] : MIN(MAX(r[j], lower), upper);                                        \
        if (full) STOREU(out + (size_t)j * c, v); else STORE(out + (size_t)j * c, mask, v);                               \
    }                                                                                                                     \
}                                                                                                                         \
TARGET static inline __attribute__((always_inline)) void NAME##_row(const int rin, const float *x, int h, int w, int c, int cn, int kh,  \
        int kw, int sy, int sx, int dy, int dx, int pad_top,                                                             \
                        int pad_left, int oy, int ox_lo, int ox_hi, const float *kernel, const float *bias, float *y, int ow,  \
                        int act) {                                                                                         \
    int ox = ox_lo;                                                                                                       \
    /* Four pixels at a time, all their channels (the input rows read channel after channel). */                          \
    for (; ox + 4 <= ox_hi; ox += 4)                                                                                      \
        for (int c0 = 0; c0 < cn; c0 += W) {                                                                               \
            if (cn - c0 >= W) NAME##_pixels(4, 1, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox, kernel, bias, y, \
                                           ow, act, c0, MASK_OF(W), rin);                                                      \
            else NAME##_pixels(4, 0, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox, kernel, bias, y, ow, act, \
                               c0, MASK_OF(cn - c0), rin);                                                                      \
        }                                                                                                                 \
    for (; ox < ox_hi; ox++)                                                                                              \
        for (int c0 = 0; c0 < cn; c0 += W) {                                                                               \
            if (cn - c0 >= W) NAME##_pixels(1, 1, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox, kernel, bias, y, \
                                           ow, act, c0, MASK_OF(W), rin);                                                      \
            else NAME##_pixels(1, 0, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox, kernel, bias, y, ow, act, \
                               c0, MASK_OF(cn - c0), rin);                                                                      \
        }                                                                                                                 \
}                                                                                                                         \
TARGET static void NAME(const float *x, int h, int w, int c, int cn, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top,     \
                        int pad_left, int oy, int ox_lo, int ox_hi, const float *kernel, const float *bias, float *y, int ow,  \
                        int act) {                                                                                         \
    if (act & BNK_DW_RELU_INPUT)                                                                                          \
        NAME##_row(1, x, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox_lo, ox_hi, kernel, bias, y, ow,         \
                   act & ~BNK_DW_RELU_INPUT);                                                                             \
    else                                                                                                                  \
        NAME##_row(0, x, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox_lo, ox_hi, kernel, bias, y, ow, act);    \
}                                                                                                                         \
/* NV vectors of one pixel's channels from c0 (the last one partial unless `full`) with the taps    \
   inside the image only (border pixels): from the bias, the taps in the body's order (row by row,  \
   column by column), with FMAs, so the body's values; NV independent sums cover the FMA latency. */ \
TARGET static inline __attribute__((always_inline)) void NAME##_clipped_block(const int NV, const int full, const int rin,  \
        const float *x, int w, int c, int kw, int dy, int dx, int iy0, int ix0, int ky_lo, int ky_hi, int kx_lo,           \
        int kx_hi, const float *kernel, const float *bias, float *out, int act, int c0, MASK_T mask) {                    \
    VEC a[NV];                                                                                                            \
    for (int v = 0; v < NV; v++) {                                                                                        \
        const int whole = full || v < NV - 1;                                                                             \
        a[v] = bias ? (whole ? LOADU(bias + c0 + v * W) : LOAD(bias + c0 + v * W, mask)) : SETZERO();                     \
    }                                                                                                                     \
    for (int ky = ky_lo; ky < ky_hi; ky++) {                                                                              \
        const float *in = x + ((size_t)(iy0 + ky * dy) * w + (size_t)(ix0 + kx_lo * dx)) * c + c0;                       \
        const float *wk = kernel + (size_t)(ky * kw + kx_lo) * c + c0;                                                    \
        for (int kx = kx_lo; kx < kx_hi; kx++, in += (size_t)dx * c, wk += c)                                             \
            for (int v = 0; v < NV; v++) {                                                                                \
                const int whole = full || v < NV - 1;                                                                     \
                a[v] = FMA(NAME##_in(whole ? LOADU(in + v * W) : LOAD(in + v * W, mask), rin),                            \
                           whole ? LOADU(wk + v * W) : LOAD(wk + v * W, mask), a[v]);                                     \
            }                                                                                                             \
    }                                                                                                                     \
    for (int v = 0; v < NV; v++) {                                                                                        \
        const int whole = full || v < NV - 1;                                                                             \
        const VEC r = act == BNK_ACT_LINEAR ? a[v] : MIN(MAX(a[v], SETZERO()), SET1(act == BNK_ACT_RELU6 ? 6.0f : INFINITY)); \
        if (whole) STOREU(out + c0 + v * W, r); else STORE(out + c0 + v * W, mask, r);                                   \
    }                                                                                                                     \
}                                                                                                                         \
TARGET static inline __attribute__((always_inline)) void NAME##_clipped_row(const int rin, const float *x, int h, int w,  \
        int c, int cn, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top, int pad_left, int oy, int ox_lo, int ox_hi,    \
        const float *kernel, const float *bias, float *y, int ow, int act) {                                               \
    const int iy0 = oy * sy - pad_top;                                                                                    \
    const int ky_lo = iy0 < 0 ? (-iy0 + dy - 1) / dy : 0;                                                                 \
    int ky_hi = kh;                                                                                                       \
    while (ky_hi > ky_lo && iy0 + (ky_hi - 1) * dy >= h) ky_hi--;                                                         \
    /* NVMAX vectors at a time (enough independent sums for two FMAs a cycle of 4 cycles' latency), \
       then up to 4 whole ones, then the last one to four (the last of them partial unless last_full). */ \
    const int rest = cn % (NVMAX * W), four = NVMAX > 4 && rest > 4 * W, tail = four ? rest - 4 * W : rest;               \
    const int vectors = (tail + W - 1) / W, last_full = tail % W == 0;                                                    \
    const MASK_T mask = MASK_OF(last_full ? W : tail % W);                                                                \
    for (int ox = ox_lo; ox < ox_hi; ox++) {                                                                              \
        const int ix0 = ox * sx - pad_left;                                                                               \
        const int kx_lo = ix0 < 0 ? (-ix0 + dx - 1) / dx : 0;                                                             \
        int kx_hi = kw;                                                                                                   \
        while (kx_hi > kx_lo && ix0 + (kx_hi - 1) * dx >= w) kx_hi--;                                                     \
        float *out = y + ((size_t)oy * ow + ox) * c;                                                                      \
        int c0 = 0;                                                                                                       \
        for (; c0 + NVMAX * W <= cn; c0 += NVMAX * W)                                                                      \
            NAME##_clipped_block(NVMAX, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias,  \
                                 out, act, c0, MASK_OF(W));                                                               \
        if (four) {                                                                                                       \
            NAME##_clipped_block(4, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                 act, c0, MASK_OF(W));                                                                    \
            c0 += 4 * W;                                                                                                  \
        }                                                                                                                 \
        switch (vectors * 2 + last_full) {                                                                                \
        case 2: NAME##_clipped_block(1, 0, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 3: NAME##_clipped_block(1, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 4: NAME##_clipped_block(2, 0, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 5: NAME##_clipped_block(2, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 6: NAME##_clipped_block(3, 0, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 7: NAME##_clipped_block(3, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 8: NAME##_clipped_block(4, 0, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        case 9: NAME##_clipped_block(4, 1, rin, x, w, c, kw, dy, dx, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, kernel, bias, out, \
                                     act, c0, mask); break;                                                               \
        default: break;                                                                                                   \
        }                                                                                                                 \
    }                                                                                                                     \
}                                                                                                                         \
/* Pixels ox_lo..<ox_hi of output row oy, any window (border pixels), one at a time. */                                   \
TARGET static void NAME##_clipped(const float *x, int h, int w, int c, int cn, int kh, int kw, int sy, int sx, int dy, int dx,    \
                                  int pad_top, int pad_left, int oy, int ox_lo, int ox_hi, const float *kernel,            \
                                  const float *bias, float *y, int ow, int act) {                                          \
    if (act & BNK_DW_RELU_INPUT)                                                                                          \
        NAME##_clipped_row(1, x, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox_lo, ox_hi, kernel, bias, y, ow, \
                           act & ~BNK_DW_RELU_INPUT);                                                                     \
    else                                                                                                                  \
        NAME##_clipped_row(0, x, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox_lo, ox_hi, kernel, bias, y, ow, \
                           act);                                                                                          \
}

#define MASK512(n) ((__mmask16)((n) >= 16 ? 0xFFFF : ((1u << (n)) - 1)))
#define LOAD512(p, m) _mm512_maskz_loadu_ps(m, p)
#define STORE512(p, m, v) _mm512_mask_storeu_ps(p, m, v)
DW_INTERIOR(interior_avx512, __attribute__((target("avx512f"))), __m512, 16, LOAD512, _mm512_loadu_ps, STORE512, _mm512_storeu_ps,
            _mm512_setzero_ps,
            _mm512_set1_ps, _mm512_min_ps, _mm512_max_ps, _mm512_fmadd_ps, __mmask16, MASK512, 8)

#define MASK256(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define LOAD256(p, m) _mm256_maskload_ps(p, m)
#define STORE256(p, m, v) _mm256_maskstore_ps(p, m, v)
DW_INTERIOR(interior_avx2, __attribute__((target("avx2,fma"))), __m256, 8, LOAD256, _mm256_loadu_ps, STORE256, _mm256_storeu_ps,
            _mm256_setzero_ps,
            _mm256_set1_ps, _mm256_min_ps, _mm256_max_ps, _mm256_fmadd_ps, __m256i, MASK256, 8)

/* The interior for a fixed kh x kw (3x3, 5x5) and horizontal stride (1, 2), no dilation, on
   output rows whose window lies inside the image: channel blocks outermost, the block's kh*kw
   weight vectors held in registers across the row, PIX output pixels at a time (independent sums
   to cover the FMA latency), every tap unrolled. Each input column of a window row is loaded once
   and serves every pixel whose window holds it ((PIX - 1) * SX + KW loads per window row instead
   of PIX * KW): with one load per FMA the loads, not the FMAs, set the pace on CPUs that load one
   zmm or two ymm a cycle (AMD Zen 4; the numbers at bnk_depthwise_conv2d).
   A pixel's taps still come in order (row by row, column by column within a row), so the sums are
   those of the kernel above, bit for bit.
   PREFETCH: the last window row's loads also fetch the rows the next output row adds and the next
   output row, only when the caller sets BNK_DW_PREFETCH (an input over 1 MiB, from L3: MobileNetV2
   96's standalone depthwise steps at batch 16, AMD Zen 4 capped at AVX2, 0.70-0.85 of their time
   with them, the steps fed from L2 unchanged). At AVX-512 they were always made until measured
   on Intel Xeon (family 6 model 207): hot, every 3x3 shape 10-40% faster without them (28x28x192
   26.5 -> 19.7 us, 48x48x32 12.0 -> 10.6, 112x112x32 from L2/L3 168 -> 139); whole networks, one
   thread, alternating runs, img/s: without any, MobileNetV2 224 batch 1 258 -> 265, but 96 at
   batch 16 1442 -> 1369 (its standalone depthwise steps read from L3); with the flag's rule,
   MobileNetV2 224 batch 1 258 -> 267, 96 at batch 16 1422 -> 1456, 96 at batch 1 1017 -> 1020,
   EfficientNetB0 224 batch 1 143 -> 144. (On AMD Zen 4, AVX-512, dropping them or keeping them
   only for inputs over 1 MiB had changed whole networks by 0.92-1.07x, medians of 6-20
   alternating runs, though the hot harness ran 10-40% faster without.) Without the flag not at
   AVX2 either: there they were 12 to 16 of
   the group's 36 load-port operations beside its 18 loads, and without them, AMD Zen 3, hot
   (MobileNetV2's and EfficientNet's shapes, best of 3 alternating runs) 56x56x144 3x3 40.5 ->
   53.8 GFLOP/s, 28x28x192 34.0 -> 48.0, 112x112x96 stride 2 22.4 -> 27.8, 28x28x240 5x5 37.1 ->
   49.3; whole networks at batch 1, one thread, 4-6 alternating runs: MobileNetV2 224 +2.2%, 96
   +1.8%, EfficientNetB0 224 +2.2%, NASNetMobile 128 (batch 16) +3.1%, MobileNetV3Small 128
   +2.4%, Xception 128 (its maps from L3) +0.7%. */
#define DW_FIXED(NAME, TARGET, VEC, W, LOAD, LOADU, STORE, STOREU, SETZERO, SET1, MIN, MAX, FMA, MASK_T, MASK_OF, KH, KW, SX, \
                 PIX, PREFETCH, FALLBACK)                                                                                 \
/* G output pixels from ox of one channel block (full: W channels, read and written without a      \
   mask), the block's weights wt and bias b in registers. */                                                             \
TARGET static inline __attribute__((always_inline)) void NAME##_group(const int G, const int full, const float *base,     \
        float *out, int c, size_t row, int pad_left, int ox, const VEC *wt, VEC b, MASK_T mask, size_t ahead1,             \
        size_t ahead2, size_t below, int act, const int rin) {                                                            \
    const VEC lower = SETZERO();                                                                                          \
    const VEC upper = SET1(act == BNK_ACT_RELU6 ? 6.0f : INFINITY);                                                        \
    VEC acc[G];                                                                                                           \
    for (int j = 0; j < G; j++) acc[j] = b;                                                                               \
    const float *in = base + (size_t)(ox * SX - pad_left) * c;                                                            \
    for (int ky = 0; ky < KH; ky++) {                                                                                     \
        const float *q = in + ky * row;                                                                                   \
        _Pragma("clang loop unroll(full)")                                                                                \
        for (int i = 0; i < (G - 1) * SX + KW; i++, q += c) {                                                             \
            if (PREFETCH && ky == KH - 1) {                                                                               \
                _mm_prefetch((const char *)(q + ahead1), _MM_HINT_T0);                                                    \
                _mm_prefetch((const char *)(q + ahead2), _MM_HINT_T0);                                                    \
                if (i < G && below) __builtin_prefetch(out + (size_t)(ox + i) * c + below, 1, 3);                        \
            }                                                                                                             \
            VEC v = full ? LOADU(q) : LOAD(q, mask);                                                                      \
            if (rin) v = MAX(v, lower);    /* a fused ReLU before the conv */                                             \
            _Pragma("clang loop unroll(full)")                                                                            \
            for (int j = 0; j < G; j++)                                                                                   \
                if (i - j * SX >= 0 && i - j * SX < KW) acc[j] = FMA(v, wt[ky * KW + i - j * SX], acc[j]);                \
        }                                                                                                                 \
    }                                                                                                                     \
    for (int j = 0; j < G; j++) {                                                                                         \
        const VEC v = act == BNK_ACT_LINEAR ? acc[j] : MIN(MAX(acc[j], lower), upper);                                    \
        if (full) STOREU(out + (size_t)(ox + j) * c, v); else STORE(out + (size_t)(ox + j) * c, mask, v);                 \
    }                                                                                                                     \
}                                                                                                                         \
/* One channel block of the row: PIX pixels at a time, the rest as the row's last PIX, 4 or 2      \
   pixels (some computed twice: the same sums, stored again), so no pixel runs alone with one chain  \
   of dependent FMAs; rows shorter than PIX in groups of 4 or 2 the same way. */                     \
TARGET static inline __attribute__((always_inline)) void NAME##_block(const int full, const float *base, float *out, int c, \
        size_t row, int pad_left, int ox_lo, int ox_hi, const float *kernel, const float *bias, int c0, MASK_T mask,       \
        size_t ahead1, size_t ahead2, size_t below, int act, const int rin) {                                             \
    VEC wt[KH * KW];                                                                                                      \
    for (int t = 0; t < KH * KW; t++) wt[t] = full ? LOADU(kernel + (size_t)t * c + c0) : LOAD(kernel + (size_t)t * c + c0, mask); \
    const VEC b = bias ? (full ? LOADU(bias + c0) : LOAD(bias + c0, mask)) : SETZERO();                                   \
    const int n = ox_hi - ox_lo;                                                                                          \
    if (n >= PIX) {                                                                                                       \
        int ox = ox_lo;                                                                                                   \
        for (; ox + PIX <= ox_hi; ox += PIX)                                                                              \
            NAME##_group(PIX, full, base, out, c, row, pad_left, ox, wt, b, mask, ahead1, ahead2, below, act, rin);       \
        /* The rest (r pixels) as the last PIX, 4 or 2 pixels of the row. */                                            \
        const int r = ox_hi - ox;                                                                                         \
        if (r > PIX / 2)                                                                                                  \
            NAME##_group(PIX, full, base, out, c, row, pad_left, ox_hi - PIX, wt, b, mask, ahead1, ahead2, below, act, rin); \
        else if (r > 2)                                                                                                   \
            NAME##_group(4, full, base, out, c, row, pad_left, ox_hi - 4, wt, b, mask, ahead1, ahead2, below, act, rin);  \
        else if (r > 0)                                                                                                   \
            NAME##_group(2, full, base, out, c, row, pad_left, ox_hi - 2, wt, b, mask, ahead1, ahead2, below, act, rin);  \
    } else if (PIX > 4 && n >= 4) {                                                                                       \
        NAME##_group(4, full, base, out, c, row, pad_left, ox_lo, wt, b, mask, ahead1, ahead2, below, act, rin);          \
        if (n > 4) NAME##_group(4, full, base, out, c, row, pad_left, ox_hi - 4, wt, b, mask, ahead1, ahead2, below, act, rin); \
    } else if (n >= 2) {                                                                                                  \
        NAME##_group(2, full, base, out, c, row, pad_left, ox_lo, wt, b, mask, ahead1, ahead2, below, act, rin);          \
        if (n > 2) NAME##_group(2, full, base, out, c, row, pad_left, ox_hi - 2, wt, b, mask, ahead1, ahead2, below, act, rin); \
    } else if (n == 1) {                                                                                                  \
        NAME##_group(1, full, base, out, c, row, pad_left, ox_lo, wt, b, mask, ahead1, ahead2, below, act, rin);          \
    }                                                                                                                     \
}                                                                                                                         \
TARGET static void NAME(const float *x, int h, int w, int c, int cn, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top,     \
                        int pad_left, int oy, int ox_lo, int ox_hi, const float *kernel, const float *bias, float *y, int ow,  \
                        int act) {                                                                                         \
    const int iy0 = oy * sy - pad_top;                                                                                    \
    if (iy0 < 0 || iy0 + KH > h) {    /* act with its BNK_DW_RELU_INPUT bit */                                           \
        FALLBACK(x, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, ox_lo, ox_hi, kernel, bias, y, ow, act);      \
        return;                                                                                                           \
    }                                                                                                                     \
    const size_t row = (size_t)w * c;                                                                                     \
    /* The rows the next output row adds to the window, fetched while this one runs (PREFETCH: from \
       L3, the row sweeps, a channel block at a time, took 3-4x their time in L2 on AMD Zen 4). */   \
    const size_t ahead1 = iy0 + KH < h ? row : 0, ahead2 = sy > 1 && iy0 + KH + 1 < h ? 2 * row : ahead1;                 \
    /* The next output row, fetched for writing (it exists: its window lies inside the image). */                      \
    const size_t below = iy0 + sy + KH <= h ? (size_t)ow * c : 0;                                                          \
    const int rin = (act & BNK_DW_RELU_INPUT) != 0;                                                                       \
    act &= ~BNK_DW_RELU_INPUT;                                                                                            \
    for (int c0 = 0; c0 < cn; c0 += W) {                                                                                   \
        const float *base = x + (size_t)iy0 * row + c0;                                                                   \
        float *out = y + (size_t)oy * ow * c + c0;                                                                        \
        if (cn - c0 >= W && rin)                                                                                           \
            NAME##_block(1, base, out, c, row, pad_left, ox_lo, ox_hi, kernel, bias, c0, MASK_OF(W), ahead1, ahead2, below, act, \
                         1);                                                                                              \
        else if (cn - c0 >= W)                                                                                             \
            NAME##_block(1, base, out, c, row, pad_left, ox_lo, ox_hi, kernel, bias, c0, MASK_OF(W), ahead1, ahead2, below, act, \
                         0);                                                                                              \
        else                                                                                                              \
            NAME##_block(0, base, out, c, row, pad_left, ox_lo, ox_hi, kernel, bias, c0, MASK_OF(cn - c0), ahead1, ahead2,  \
                         below, act, rin);                                                                                \
    }                                                                                                                     \
}

#define DW_FIXED512(NAME, KH, SX, PIX, PF) DW_FIXED(NAME, __attribute__((target("avx512f"))), __m512, 16, LOAD512, _mm512_loadu_ps, \
    STORE512, _mm512_storeu_ps, \
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_min_ps, _mm512_max_ps, _mm512_fmadd_ps, __mmask16, MASK512, KH, KH, SX, PIX, PF, \
    interior_avx512)
#define DW_FIXED256(NAME, KH, SX, PIX, PF) DW_FIXED(NAME, __attribute__((target("avx2,fma"))), __m256, 8, LOAD256, _mm256_loadu_ps, \
    STORE256, _mm256_storeu_ps, \
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_min_ps, _mm256_max_ps, _mm256_fmadd_ps, __m256i, MASK256, KH, KH, SX, PIX, PF, \
    interior_avx2)
DW_FIXED512(interior3_avx512, 3, 1, 8, 0)
DW_FIXED512(interior3s2_avx512, 3, 2, 8, 0)
DW_FIXED512(interior5_avx512, 5, 1, 4, 0)
DW_FIXED512(interior5s2_avx512, 5, 2, 4, 0)
DW_FIXED512(interior7_avx512, 7, 1, 6, 0)
DW_FIXED512(interior3_avx512_prefetch, 3, 1, 8, 1)
DW_FIXED512(interior3s2_avx512_prefetch, 3, 2, 8, 1)
DW_FIXED512(interior5_avx512_prefetch, 5, 1, 4, 1)
DW_FIXED512(interior5s2_avx512_prefetch, 5, 2, 4, 1)
DW_FIXED512(interior7_avx512_prefetch, 7, 1, 6, 1)
DW_FIXED256(interior3_avx2, 3, 1, 4, 0)
DW_FIXED256(interior3s2_avx2, 3, 2, 4, 0)
DW_FIXED256(interior5_avx2, 5, 1, 4, 0)
DW_FIXED256(interior5s2_avx2, 5, 2, 4, 0)
DW_FIXED256(interior7_avx2, 7, 1, 8, 0)
/* With the prefetches, for inputs the caller does not expect in L2 (BNK_DW_PREFETCH). */
DW_FIXED256(interior3_avx2_prefetch, 3, 1, 4, 1)
DW_FIXED256(interior3s2_avx2_prefetch, 3, 2, 4, 1)
DW_FIXED256(interior5_avx2_prefetch, 5, 1, 4, 1)
DW_FIXED256(interior5s2_avx2_prefetch, 5, 2, 4, 1)

/* Small maps (depth multiplier 1, any window, stride and dilation): most pixels of a 6x6 or 3x3
   map are border pixels, which the row kernels above leave to the clipped one-pixel path (two
   loads an FMA, no weight reused across pixels), and a bordered copy of the whole map costs more
   than the conv. Here channel blocks are outermost: one block of W channels of the window grid
   (input inside its zero border, through the fused input ReLU) is copied into a tile of ph x pw
   vectors that stays in L1, the block's weights into kh*kw vectors beside it, and the outputs are
   computed P pixels at a time in raster order across rows (so a 3x3 map still has P independent
   sums), each tap's weight loaded once for the P pixels. Taps in the border multiply zeros; the
   taps come in the body's order (row by row, column by column), so the sums are those of the
   other paths (a zero product adds +0: only a -0 sum or a non-finite weight could differ). */
#define DW_SMALL(NAME, TARGET, VEC, W, LOAD, LOADU, LOADA, STORE, STOREU, STOREA, SETZERO, SET1, MIN, MAX, FMA, MASK_T, MASK_OF, P) \
TARGET static inline __attribute__((always_inline)) void NAME##_pixels(const int R, const int full, const float *tile,    \
        const int *pixel, const int *tap, int taps, const float *wk, VEC b, float *out, size_t c, int act, MASK_T mask) { \
    VEC a[P];                                                                                                             \
    const float *at[P];                                                                                                   \
    for (int r = 0; r < R; r++) { a[r] = b; at[r] = tile + pixel[r]; }                                                    \
    for (int t = 0; t < taps; t++) {                                                                                      \
        const VEC wt = LOADA(wk + (size_t)t * W);                                                                         \
        const int o = tap[t];                                                                                             \
        for (int r = 0; r < R; r++)                                                                                       \
            a[r] = FMA(LOADA(at[r] + o), wt, a[r]);                                                                       \
    }                                                                                                                     \
    const VEC upper = SET1(act == BNK_ACT_RELU6 ? 6.0f : INFINITY);                                                       \
    for (int r = 0; r < R; r++) {                                                                                         \
        const VEC v = act == BNK_ACT_LINEAR ? a[r] : MIN(MAX(a[r], SETZERO()), upper);                                    \
        if (full) STOREU(out + (size_t)r * c, v); else STORE(out + (size_t)r * c, mask, v);                               \
    }                                                                                                                     \
}                                                                                                                         \
TARGET static inline __attribute__((always_inline)) void NAME##_block(const int full, const float *tile, const int *pixel, \
        int pixels, const int *tap, int taps, const float *wk, VEC b, float *out, size_t c, int act, MASK_T mask) {       \
    int i = 0;                                                                                                            \
    for (; i + P <= pixels; i += P) NAME##_pixels(P, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); \
    switch (pixels - i) {                                                                                                 \
    case 7: if (P > 7) NAME##_pixels(7, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break; \
    case 6: if (P > 6) NAME##_pixels(6, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break; \
    case 5: if (P > 5) NAME##_pixels(5, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break; \
    case 4: if (P > 4) NAME##_pixels(4, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break; \
    case 3: NAME##_pixels(3, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break;          \
    case 2: NAME##_pixels(2, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break;          \
    case 1: NAME##_pixels(1, full, tile, pixel + i, tap, taps, wk, b, out + (size_t)i * c, c, act, mask); break;          \
    default: break;                                                                                                       \
    }                                                                                                                     \
}                                                                                                                         \
/* tile: ph * pw + kh * kw vectors (64-byte aligned, the border zero), pixel: oh * ow, tap: kh * kw. */                   \
TARGET static void NAME(const float *x, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top, \
                        int pad_left, int oh, int ow, const float *kernel, const float *bias, float *y, int act,          \
                        float *tile, int *pixel, int *tap) {                                                              \
    const int rin = (act & BNK_DW_RELU_INPUT) != 0;                                                                       \
    act &= ~BNK_DW_RELU_INPUT;                                                                                            \
    const int ph = (oh - 1) * sy + (kh - 1) * dy + 1, pw = (ow - 1) * sx + (kw - 1) * dx + 1, taps = kh * kw;             \
    float *wk = tile + (size_t)ph * pw * W;                                                                               \
    for (int oy = 0, i = 0; oy < oh; oy++)                                                                                \
        for (int ox = 0; ox < ow; ox++, i++) pixel[i] = (oy * sy * pw + ox * sx) * W;                                     \
    for (int ky = 0, t = 0; ky < kh; ky++)                                                                                \
        for (int kx = 0; kx < kw; kx++, t++) tap[t] = (ky * dy * pw + kx * dx) * W;                                       \
    memset(tile, 0, (size_t)ph * pw * W * sizeof(float));                                                                 \
    /* The input rows and columns inside the tile. */                                                                     \
    const int y0 = pad_top, x0 = pad_left, rows = h < ph - y0 ? h : ph - y0, cols = w < pw - x0 ? w : pw - x0;            \
    for (int c0 = 0; c0 < c; c0 += W) {                                                                                   \
        const int full = c - c0 >= W;                                                                                     \
        const MASK_T mask = MASK_OF(full ? W : c - c0);                                                                   \
        for (int iy = 0; iy < rows; iy++) {                                                                               \
            const float *in = x + (size_t)iy * w * c + c0;                                                                \
            float *t = tile + ((size_t)(iy + y0) * pw + x0) * W;                                                          \
            for (int ix = 0; ix < cols; ix++, in += c, t += W) {                                                          \
                VEC v = full ? LOADU(in) : LOAD(in, mask);                                                                \
                if (rin) v = MAX(v, SETZERO());                                                                           \
                STOREA(t, v);                                                                                             \
            }                                                                                                             \
        }                                                                                                                 \
        for (int t = 0; t < taps; t++)                                                                                    \
            STOREA(wk + (size_t)t * W,                                                                                    \
                full ? LOADU(kernel + (size_t)t * c + c0)                                                                 \
                     : LOAD(kernel + (size_t)t * c + c0, mask));                                                          \
        const VEC b = bias ? (full ? LOADU(bias + c0)                                                                     \
                                   : LOAD(bias + c0, mask)) : SETZERO();                                                  \
        if (full) NAME##_block(1, tile, pixel, oh * ow, tap, taps, wk, b, y + c0, (size_t)c, act, mask);                  \
        else NAME##_block(0, tile, pixel, oh * ow, tap, taps, wk, b, y + c0, (size_t)c, act, mask);                       \
    }                                                                                                                     \
}
DW_SMALL(small_avx512, __attribute__((target("avx512f"))), __m512, 16, LOAD512, _mm512_loadu_ps, _mm512_load_ps, STORE512,
         _mm512_storeu_ps, _mm512_store_ps, _mm512_setzero_ps,
         _mm512_set1_ps, _mm512_min_ps, _mm512_max_ps, _mm512_fmadd_ps, __mmask16, MASK512, 8)
DW_SMALL(small_avx2, __attribute__((target("avx2,fma"))), __m256, 8, LOAD256, _mm256_loadu_ps, _mm256_load_ps, STORE256,
         _mm256_storeu_ps, _mm256_store_ps, _mm256_setzero_ps,
         _mm256_set1_ps, _mm256_min_ps, _mm256_max_ps, _mm256_fmadd_ps, __m256i, MASK256, 8)

/* Depth multiplier 1: the interior of each output row by the vector kernels above, the border
   pixels one at a time with the taps inside the image (`edge`). Each takes `cn` channels from the
   pointers it is given, `c` apart (a pixel's stride). */
typedef void (*interior_fn)(const float *, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, const float *,
                            const float *, float *, int, int);

/* Input bytes a slab of channels may span over the rows one output row reads, and output bytes a
   band of rows may hold when an activation comes after the rows (see depthwise_rows). */
#define SLAB_BYTES (16 * 1024)
#define BAND_BYTES (128 * 1024)
/* Inputs over this size go row by row over all channels (see depthwise_rows). */
#define SLAB_INPUT_BYTES ((size_t)1 << 20)

/* The interior goes channel slab by channel slab over a band of output rows: a slab is as many
   whole 16-channel blocks as keep the input rows one output row reads under SLAB_BYTES (at least
   one block), so the rows each output row adds are read once from L2 and stay in L1 for the rows
   below that read them again. Row by row over all channels, the kh input rows of a 28x28x192 map
   (64 KB) left L1 before the next output row read them again. The border pixels then go row by
   row over all channels (enough independent sums for a pixel's one chain of taps). Without an
   activation after the rows, one band holds every row; with one (sigmoid, swish, hard-swish), a
   band is one row when one slab holds every channel (activated while in L1), else at most
   BAND_BYTES of output, activated once the band is done, while in L2. Every output is summed as
   before: the same values whatever the slabs and bands.
   Only inputs of at most SLAB_INPUT_BYTES (the fused steps' windows, maps that fit L2): a map from
   L3 or memory read a slab at a time, 64 bytes of each pixel, took up to 1.8x its time row by
   row (113x113x96 3x3 stride 2: 309 -> 566 us). Intel Xeon (family 6 model 207, AVX-512), hot,
   3x3, ReLU6, best of 30, two alternating runs, us, row by row -> slabs, AVX-512 / AVX2:
   28x28x192 45 -> 28-30 / 49 -> 39-40; 14x14x576 25 -> 19-23 / 39 -> 31; 14x14x384 16.5 ->
   12.6-15.7 / 25.3 -> 20.1-20.5; 15x15x576 stride 2 10.3 -> 7.7 / 10.8 -> 9.1-9.5; a strip of
   12 rows of 28x192 (the fused step's) 16.2 -> 9.7-10.5 / 16.6-17.3 -> 13.5; 12 rows of 112x32
   and 7 rows of 113x96 stride 2 unchanged (one block a slab either way). Slabs of 8 KB / 16 KB /
   24 KB / 32 KB of rows, AVX-512, 28x28x192: 31.8 / 26.2 / 26.0 / 42.8 us; 14x14x576 19.4 /
   19.8 / 22.9 / 26.6. */
static void depthwise_rows(interior_fn edge, interior_fn interior, const float *x, int h, int w, int c, int kh, int kw, int sy,
                           int sx, int dy, int dx, int pad_top, int pad_left, int oh, int ow, const float *kernel,
                           const float *bias, float *y, int act, int after) {
    /* Interior: ox * sx - pad_left >= 0 and ox * sx - pad_left + (kw - 1) * dx <= w - 1. */
    int lo = (pad_left + sx - 1) / sx;
    int hi = w - 1 - (kw - 1) * dx + pad_left < 0 ? 0 : (w - 1 - (kw - 1) * dx + pad_left) / sx + 1;
    if (lo > ow) lo = ow;
    if (hi > ow) hi = ow;
    if (hi < lo) hi = lo;
    const size_t span = (size_t)((kh - 1) * dy + 1) * (size_t)w * sizeof(float);
    int slab = (int)(SLAB_BYTES / span) / 16 * 16;
    if (slab < 16) slab = 16;
    if (slab > c || (size_t)h * w * c * sizeof(float) > SLAB_INPUT_BYTES) slab = c;
    const size_t row_bytes = (size_t)ow * c * sizeof(float);
    int band = after == BNK_ACT_LINEAR ? oh : slab == c ? 1 : (int)(BAND_BYTES / row_bytes);
    if (band < 1) band = 1;
    for (int oy0 = 0; oy0 < oh; oy0 += band) {
        const int oy1 = oh - oy0 < band ? oh : oy0 + band;
        if (hi > lo)
            for (int s0 = 0; s0 < c; s0 += slab) {
                const int cn = c - s0 < slab ? c - s0 : slab;
                for (int oy = oy0; oy < oy1; oy++)
                    interior(x + s0, h, w, c, cn, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, lo, hi, kernel + s0,
                             bias ? bias + s0 : NULL, y + s0, ow, act);
            }
        for (int oy = oy0; oy < oy1; oy++) {
            if (lo > 0) edge(x, h, w, c, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, 0, lo, kernel, bias, y, ow, act);
            if (hi < ow) edge(x, h, w, c, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oy, hi, ow, kernel, bias, y, ow, act);
        }
        /* Sigmoid, swish, hard-swish over the band just stored. */
        if (after != BNK_ACT_LINEAR)
            bnk_activate(y + (size_t)oy0 * ow * c, y + (size_t)oy0 * ow * c, (size_t)(oy1 - oy0) * ow * c, after);
    }
}

DW_VERSION(depthwise_avx2, __attribute__((target("avx2,fma"))))
DW_VERSION(depthwise_avx512, __attribute__((target("avx512f"))))
#endif

#if BNK_X86
/* The (ph x pw x c) window the output reads, input pixel (iy, ix) at (iy + pad_top, ix + pad_left),
   zero elsewhere, in the calling thread's buffer (kept and grown; NULL when memory runs out). A
   7x7 conv with its 3-pixel border spends much of a map in the clipped per-pixel path (a 14x14
   map has 64 interior pixels of 196), which a copy with the border in place avoids: every pixel
   then runs in the row kernel (maps of 8 pixels and more a side; below, most of each window is
   border, which the clipped path skips). ConvNeXt's maps, stride 1, AMD Zen 4, hot, best of 30,
   two alternating runs, the four-pixel kernel with the clipped border before -> the 7x7 row
   kernel on the bordered copy, us: AVX-512 56x56x96 768-776 -> 401, 28x28x192 406-416 -> 216,
   14x14x384 190-192 -> 137-138, 24x24x96 138 -> 78-79, 12x12x192 75 -> 45-46, 8x8x384 76 -> 54;
   AVX2 840-843 -> 355-356, 447-460 -> 204-205, 203-206 -> 142, 148-149 -> 72, 80 -> 47, 80 -> 46;
   7x7 and smaller maps unchanged. Six pixels a group at AVX-512 (eight: 56x56x96 489-493 us,
   twelve 407), eight at AVX2 (six 411-436, twelve 386-388): Zen 4 runs a 512-bit FMA as two
   256-bit halves, and the 49 weights do not fit the registers at either level. */
static _Thread_local float *border_buffer;
static _Thread_local size_t border_capacity;
/* The calling thread's buffer of at least `floats` floats, 64-byte aligned (NULL when memory runs out). */
static float *thread_buffer(size_t floats) {
    if (floats > border_capacity) {
        free(border_buffer);
        border_buffer = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        border_capacity = border_buffer ? floats : 0;
    }
    return border_buffer;
}
static const float *bordered(const float *x, int h, int w, int c, int pad_top, int pad_left, int ph, int pw) {
    if (!thread_buffer((size_t)ph * pw * c)) return NULL;
    const size_t pixel = (size_t)c * sizeof(float);
    int left = pad_left < pw ? pad_left : pw;
    int copied = pw - left < w ? pw - left : w;
    for (int r = 0; r < ph; r++) {
        float *row = border_buffer + (size_t)r * pw * c;
        const int iy = r - pad_top;
        if (iy < 0 || iy >= h) {
            memset(row, 0, pw * pixel);
            continue;
        }
        memset(row, 0, left * pixel);
        memcpy(row + (size_t)left * c, x + (size_t)iy * w * c, copied * pixel);
        memset(row + (size_t)(left + copied) * c, 0, (pw - left - copied) * pixel);
    }
    return border_buffer;
}
#endif

/* Taps of one axis inside the input, summed over the outputs; with `inside_outputs`, also the
   outputs whose whole window lies inside. */
static long axis_taps(int n, int k, int s, int d, int pad, int outs, int *inside_outputs) {
    long inside_taps = 0;
    int whole = 0;
    for (int o = 0; o < outs; o++) {
        int count = 0;
        for (int t = 0; t < k; t++) {
            const int i = o * s - pad + t * d;
            count += i >= 0 && i < n;
        }
        inside_taps += count;
        whole += count == k;
    }
    if (inside_outputs) *inside_outputs = whole;
    return inside_taps;
}

/* Whether a map runs in the small-map kernel (DW_SMALL): its window grid fits a tile of 400
   vectors (25 KB at AVX-512, in L1), at least half the taps it multiplies lie inside the image
   (a 3x3 map under a 5x5 window: 36%, left to the clipped path), and either under two thirds of
   its columns are the row kernels' (window inside horizontally) with a copy under 0.35 of the
   FMAs, or, for windows over 3x3, the row kernels' kh input rows spill L1 (or two thirds of the
   columns are theirs) and the copy is under 0.15 of the FMAs. AMD Zen 4, hot, best of 40
   alternating, us, row kernels -> small-map kernel, AVX-512 / AVX2, whole maps: 6x6x480 5x5 22.8
   -> 12.0 / 24.0 -> 13.0; 7x7x1152 5x5 83.4 -> 41.6 / 87.0 -> 46.8; 7x7x768 7x7 113.3 -> 49.6 /
   129.1 -> 54.6; 14x14x672 5x5 161.8 -> 98.5 / 143.3 -> 101.6; 14x14x384 7x7 136.7 -> 95.0 /
   138.9 -> 97.1; 3x3x1152 3x3 5.5 -> 4.1 / 5.9 -> 4.8; 12x12x120 5x5 18.6 -> 13.4 / 16.8 ->
   12.9. Strips of rows (the fused pointwise-depthwise steps' calls), two output rows: 14 wide x
   384, 7x7 window 30.7 -> 17.3 / 25.8 -> 18.9; 28 wide x 240 5x5 13.4 -> 11.6 / 11.2 -> 11.7.
   Not taken, forced: 3x3 windows elsewhere (two rows of 56x144 4.4 -> 7.5 / 4.0 -> 6.7; 8x8x512
   19.9 -> 14.7 / 16.3 -> 17.6; 6x6x576 8.1 -> 6.9 / 8.2 -> 7.9, and slower in MnasNet at batch 16),
   5x5 stride 2 on two rows 28 wide 8.0 -> 8.5 / 6.6 -> 8.2, 3x3x1152 5x5 7.8 -> 9.0 / 7.3 ->
   11.5; 24x24x72 3x3 (a 676-vector tile) 14.2 -> 17.7 / 12.9 -> 19.5. */
int bnk_depthwise_small_map(int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top, int pad_left, int oh, int ow) {
    if (pad_top < 0 || pad_left < 0 || oh < 1 || ow < 1) return 0;
    const long ph = (long)(oh - 1) * sy + (long)(kh - 1) * dy + 1, pw = (long)(ow - 1) * sx + (long)(kw - 1) * dx + 1;
    if (ph * pw > 400) return 0;
    int ix;
    const long ty = axis_taps(h, kh, sy, dy, pad_top, oh, NULL), tx = axis_taps(w, kw, sx, dx, pad_left, ow, &ix);
    /* The row kernels' pixels: those whose window lies inside horizontally (a row above or below
       the image only takes their slower four-pixel kernel; the others go one at a time, clipped). */
    const int columns_few = 3 * ix < 2 * ow, columns_some = 3 * ix <= 2 * ow;
    /* Those kernels sweep kh input rows, all channels, per output row: past 32 KB, from L2. */
    const int rows_spill = (long)kh * w * c * (long)sizeof(float) > 32 * 1024;
    /* The tile's copy against the FMAs it feeds (a strip of two rows copies four for 28 outputs). */
    const long taps = (long)oh * ow * kh * kw, copied = ph * pw;
    const int fits = 20 * copied <= 7 * taps, lean = 20 * copied <= 3 * taps;
    /* 3x3 windows only on maps with few such pixels: elsewhere their row kernels (nine weights in
       registers, each input column loaded once for three taps) held their own, strips of rows
       included. */
    return 2 * ty * tx >= taps && ((columns_few && fits) || (kh * kw > 9 && (rows_spill || columns_some) && lean));
}

void bnk_depthwise_conv2d(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                          int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, float *y, int act) {
#if BNK_X86
    const int prefetch = (act & BNK_DW_PREFETCH) != 0;
#endif
    const int rin = act & BNK_DW_RELU_INPUT;
    act &= ~(BNK_DW_RELU_INPUT | BNK_DW_PREFETCH);
    const int after = act == BNK_ACT_SIGMOID || act == BNK_ACT_SWISH || act == BNK_ACT_HARD_SWISH || act == BNK_ACT_GELU ? act : BNK_ACT_LINEAR;
    if (act != BNK_ACT_RELU && act != BNK_ACT_RELU6) act = BNK_ACT_LINEAR;
    act |= rin;    /* each version below takes the flag with the store's activation */
#if BNK_X86
    /* Small maps: the tile kernel (before the 7x7 bordered copy, whose buffer the tile would reuse). */
    if (m == 1 && (bnk_use_avx512() || bnk_use_avx2()) && bnk_depthwise_small_map(h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow)) {
        const int W = bnk_use_avx512() ? 16 : 8;
        const int ph = (oh - 1) * sy + (kh - 1) * dy + 1, pw = (ow - 1) * sx + (kw - 1) * dx + 1;
        const size_t vectors = (size_t)ph * pw + (size_t)kh * kw, ints = (size_t)oh * ow + (size_t)kh * kw;
        float *tile = thread_buffer(vectors * W + ints);
        if (tile) {
            int *pixel = (int *)(tile + vectors * W), *tap = pixel + (size_t)oh * ow;
            if (W == 16) small_avx512(x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y, act, tile, pixel, tap);
            else small_avx2(x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y, act, tile, pixel, tap);
            if (after != BNK_ACT_LINEAR) bnk_activate(y, y, (size_t)oh * ow * c, after);
            return;
        }
    }
    /* 3x3 and 5x5, no dilation: the unrolled row kernels (weights in registers). At stride 1
       they measured 10-25% faster than the four-pixel kernel (Intel Xeon, AVX-512). At stride 2
       they measured 13% slower there in an earlier version, but 1.2-1.8x faster on AMD Zen 5 at
       both levels (EfficientNet's and MobileNetV2's stride-2 shapes, hot: 112x112x96 3x3
       AVX-512 141 -> 77 us, AVX2 151 -> 114 us; 56x56x144 5x5 151 -> 88, 152 -> 129 us), so
       they run at both strides (1 and 2; a wider horizontal stride takes the four-pixel kernel).
       Loading each input column once per window row (see DW_FIXED), AMD Zen 4, hot, best of 300:
       56x56x144 3x3 AVX-512 205-235 -> 134-164 us, AVX2 350-514 -> 299-449 us; 112x112x96 stride 2
       AVX-512 192-209 -> 174-190, AVX2 305-469 -> 271-275; 28x28x192 AVX-512 71-85 -> 49-56.
       Whole channel blocks read and written without a mask (AVX2's vmaskmovps store of a whole
       vector is several times a plain store on AMD cores), same machine, AVX2, best of 300:
       56x56x144 508-533 -> 189-195 us, 112x112x96 stride 2 474-487 -> 293-313, 28x28x192
       178-180 -> 79-103, 12x12x192 21.5-33.8 -> 13.8-18.2 (AVX-512 unchanged). */
    const int fixed = dy == 1 && dx == 1 && kh == kw && (((kh == 3 || kh == 5) && (sx == 1 || sx == 2)) || (kh == 7 && sx == 1)) ? kh : 0;
    if (fixed == 7 && m == 1 && oh > kh && ow > kw && (bnk_use_avx512() || bnk_use_avx2())) {
        const int ph = (oh - 1) * sy + kh, pw = (ow - 1) * sx + kw;
        const float *padded = pad_top > 0 || pad_left > 0 || ph > h || pw > w ? bordered(x, h, w, c, pad_top, pad_left, ph, pw) : x;
        if (padded) {
            x = padded;
            h = ph;
            w = pw;
            pad_top = pad_left = 0;
        }
    }
    if (m == 1 && bnk_use_avx512()) {
        /* [prefetch][3x3, 5x5, 7x7][stride 2] */
        static const interior_fn fixed_avx512[2][3][2] = {
            {{interior3_avx512, interior3s2_avx512}, {interior5_avx512, interior5s2_avx512}, {interior7_avx512, interior7_avx512}},
            {{interior3_avx512_prefetch, interior3s2_avx512_prefetch}, {interior5_avx512_prefetch, interior5s2_avx512_prefetch},
             {interior7_avx512_prefetch, interior7_avx512_prefetch}}};
        const interior_fn interior = fixed ? fixed_avx512[prefetch][fixed / 2 - 1][sx == 2] : interior_avx512;
        depthwise_rows(interior_avx512_clipped, interior, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y,
                       act, after);
        return;
    }
    if (m == 1 && bnk_use_avx2()) {
        /* [prefetch][5x5][stride 2] */
        static const interior_fn fixed_avx2[2][2][2] = {
            {{interior3_avx2, interior3s2_avx2}, {interior5_avx2, interior5s2_avx2}},
            {{interior3_avx2_prefetch, interior3s2_avx2_prefetch}, {interior5_avx2_prefetch, interior5s2_avx2_prefetch}}};
        const interior_fn interior = fixed == 7 ? interior7_avx2 : fixed ? fixed_avx2[prefetch][fixed == 5][sx == 2] : interior_avx2;
        depthwise_rows(interior_avx2_clipped, interior, x, h, w, c, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y,
                       act, after);
        return;
    }
    if (bnk_use_avx512()) depthwise_avx512(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y, act);
    else if (bnk_use_avx2()) depthwise_avx2(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y, act);
    else
#endif
    depthwise_generic(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, kernel, bias, y, act);
    if (after != BNK_ACT_LINEAR) bnk_activate(y, y, (size_t)oh * ow * c * m, after);
}

const char *bnk_depthwise_isa(void) { return bnk_isa_name(); }
