/* Convolution as an "indirect" GEMM: no patch matrix.
 *
 * With no horizontal dilation, one kernel row of an output pixel's window is
 * kw * c consecutive floats of the (zero-bordered) input. The GEMM's A row for
 * a pixel is then kh such runs, and the microkernel reads them through a table
 * of pointers instead of from a copied patch matrix (im2col writes and rereads
 * kh * kw * c floats per output pixel). The microkernels are the GEMM's: AVX-512
 * 12 rows x 32 columns, AVX2+FMA 6 rows x 16 columns, B packed into contiguous
 * panels, accumulating in the same order (k increasing, from the bias), so the
 * results equal im2col + GEMM bit for bit at each instruction-set level.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#include <stdlib.h>
#include <string.h>

#if BNK_X86
#include <immintrin.h>

/* C[m] = act(bias + sum over segments s, k < len of rows[m * segs + s][k] * B[s * len + k]) for m < M. */
__attribute__((target("avx512f")))
static void gemm_indirect_avx512(int M, int N, int segs, int len, const float *const *rows, const float *B, int ldb,
                                 const float *panels, const float *bias, const float *R, float *C, int ldc, int act) {
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    const size_t K = (size_t)segs * len;
    float *pk = !panels && M > 12 ? bnk_panel(K * 32) : NULL;
    for (int n0 = 0; n0 < N; n0 += 32) {
        const int width = N - n0 < 32 ? N - n0 : 32;
        const __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
        const __mmask16 mask1 = width <= 16 ? 0 : (width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1));
        const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
        const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(mask1, bias + n0 + 16) : _mm512_setzero_ps();
        /* B's columns from the prepacked panels (two per block), or this block copied into one
           contiguous panel (see gemm.c) when several row blocks read it, or read in place. */
        const float *bp = B + n0;
        int bs = ldb;
        ptrdiff_t hoff = 16;
        if (panels) {
            bp = panels + (size_t)(n0 / 16) * K * 16;
            bs = 16;
            hoff = (ptrdiff_t)(K * 16);
        } else if (pk) {
            const float *src = B + n0;
            for (size_t k = 0; k < K; k++, src += ldb) {
                _mm512_store_ps(pk + k * 32, _mm512_maskz_loadu_ps(mask0, src));
                _mm512_store_ps(pk + k * 32 + 16, _mm512_maskz_loadu_ps(mask1, src + 16));
            }
            bp = pk;
            bs = 32;
        }
        int m = 0;
        for (; m + 12 <= M; m += 12) {
            __m512 lo[12], hi[12];
            for (int r = 0; r < 12; r++) { lo[r] = bias0; hi[r] = bias1; }
            const float *b = bp;
            for (int s = 0; s < segs; s++) {
                const float *const *p = rows + (size_t)m * segs + s;
                const float *a0 = p[0 * segs], *a1 = p[1 * segs], *a2 = p[2 * segs], *a3 = p[3 * segs], *a4 = p[4 * segs],
                            *a5 = p[5 * segs], *a6 = p[6 * segs], *a7 = p[7 * segs], *a8 = p[8 * segs], *a9 = p[9 * segs],
                            *a10 = p[10 * segs], *a11 = p[11 * segs];
                for (int k = 0; k < len; k++, b += bs) {
                    const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b), b1 = _mm512_maskz_loadu_ps(mask1, b + hoff);
                    __m512 x;
#define ROW(r, a) x = _mm512_set1_ps(a[k]); lo[r] = _mm512_fmadd_ps(x, b0, lo[r]); hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
                    ROW(0, a0) ROW(1, a1) ROW(2, a2) ROW(3, a3) ROW(4, a4) ROW(5, a5)
                    ROW(6, a6) ROW(7, a7) ROW(8, a8) ROW(9, a9) ROW(10, a10) ROW(11, a11)
#undef ROW
                }
            }
            for (int r = 0; r < 12; r++) {
                float *c = C + (size_t)(m + r) * ldc + n0;
                if (R) {
                    lo[r] = _mm512_add_ps(lo[r], _mm512_maskz_loadu_ps(mask0, R + (size_t)(m + r) * ldc + n0));
                    hi[r] = _mm512_add_ps(hi[r], _mm512_maskz_loadu_ps(mask1, R + (size_t)(m + r) * ldc + n0 + 16));
                }
                _mm512_mask_storeu_ps(c, mask0, bnk_act512(lo[r], elementwise));
                if (mask1) _mm512_mask_storeu_ps(c + 16, mask1, bnk_act512(hi[r], elementwise));
            }
        }
        for (; m < M; m++) {
            __m512 lo = bias0, hi = bias1;
            const float *b = bp;
            for (int s = 0; s < segs; s++) {
                const float *a = rows[(size_t)m * segs + s];
                for (int k = 0; k < len; k++, b += bs) {
                    const __m512 x = _mm512_set1_ps(a[k]);
                    lo = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(mask0, b), lo);
                    hi = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(mask1, b + hoff), hi);
                }
            }
            float *c = C + (size_t)m * ldc + n0;
            if (R) {
                lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(mask0, R + (size_t)m * ldc + n0));
                hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(mask1, R + (size_t)m * ldc + n0 + 16));
            }
            _mm512_mask_storeu_ps(c, mask0, bnk_act512(lo, elementwise));
            if (mask1) _mm512_mask_storeu_ps(c + 16, mask1, bnk_act512(hi, elementwise));
        }
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

/* The AVX2 GEMM's microkernel (6 rows x 16 columns, see gemm.c) over the same pointer table:
   B always from a 16-wide packed panel, stores of a narrower last block masked. */
__attribute__((target("avx2,fma")))
static void gemm_indirect_avx2(int M, int N, int segs, int len, const float *const *rows, const float *B, int ldb,
                               const float *panels, const float *bias, const float *R, float *C, int ldc, int act) {
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    const int K = segs * len;
    float *pk = panels ? NULL : bnk_panel((size_t)K * 16);
    if (!panels && !pk) return;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    for (int n0 = 0; n0 < N; n0 += 16) {
        const int width = N - n0 < 16 ? N - n0 : 16;
        const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
        const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width - 8), lanes);
        const float *panel = panels ? panels + (size_t)(n0 / 16) * K * 16 : pk;
        if (!panels) {
            const float *src = B + n0;
            for (int k = 0; k < K; k++, src += ldb) {
                _mm256_store_ps(pk + (size_t)k * 16, _mm256_maskload_ps(src, mask0));
                _mm256_store_ps(pk + (size_t)k * 16 + 8, _mm256_maskload_ps(src + 8, mask1));
            }
        }
        const __m256 bias0 = bias ? _mm256_maskload_ps(bias + n0, mask0) : zero;
        const __m256 bias1 = bias ? _mm256_maskload_ps(bias + n0 + 8, mask1) : zero;
#define ACT(v) (elementwise == BNK_ACT_RELU ? _mm256_max_ps(v, zero) \
                : elementwise == BNK_ACT_RELU6 ? _mm256_min_ps(_mm256_max_ps(v, zero), six) : (v))
#define STORE(r) { float *c = C + (size_t)(m + (r)) * ldc + n0; \
            if (R) { const float *q = R + (size_t)(m + (r)) * ldc + n0; \
                     lo[r] = _mm256_add_ps(lo[r], _mm256_maskload_ps(q, mask0)); \
                     hi[r] = _mm256_add_ps(hi[r], _mm256_maskload_ps(q + 8, mask1)); } \
            if (width == 16) { _mm256_storeu_ps(c, ACT(lo[r])); _mm256_storeu_ps(c + 8, ACT(hi[r])); } \
            else { _mm256_maskstore_ps(c, mask0, ACT(lo[r])); _mm256_maskstore_ps(c + 8, mask1, ACT(hi[r])); } }
        int m = 0;
        for (; m + 6 <= M; m += 6) {
            __m256 lo[6], hi[6];
            for (int r = 0; r < 6; r++) { lo[r] = bias0; hi[r] = bias1; }
            const float *b = panel;
            for (int s = 0; s < segs; s++) {
                const float *const *p = rows + (size_t)m * segs + s;
                const float *a0 = p[0], *a1 = p[segs], *a2 = p[2 * segs], *a3 = p[3 * segs], *a4 = p[4 * segs], *a5 = p[5 * segs];
                for (int k = 0; k < len; k++, b += 16) {
                    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
                    __m256 x;
#define ROW(r, a) x = _mm256_broadcast_ss(a + k); lo[r] = _mm256_fmadd_ps(x, b0, lo[r]); hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
                    ROW(0, a0) ROW(1, a1) ROW(2, a2) ROW(3, a3) ROW(4, a4) ROW(5, a5)
#undef ROW
                }
            }
            STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
        }
        for (; m < M; m++) {
            __m256 lo[1] = {bias0}, hi[1] = {bias1};
            const float *b = panel;
            for (int s = 0; s < segs; s++) {
                const float *a = rows[(size_t)m * segs + s];
                for (int k = 0; k < len; k++, b += 16) {
                    const __m256 x = _mm256_broadcast_ss(a + k);
                    lo[0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(b), lo[0]);
                    hi[0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 8), hi[0]);
                }
            }
            STORE(0)
        }
#undef STORE
#undef ACT
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}
#endif

/* Floats of zero-bordered input per image, and the images done per GEMM. */
static void plan(int c, int kh, int kw, int sy, int sx, int dy, int oh, int ow, int *ph, int *pw, int *group, int batch) {
    *ph = (oh - 1) * sy + (kh - 1) * dy + 1;
    *pw = (ow - 1) * sx + kw;
    const size_t per_image = (size_t)*ph * *pw * c;
    int g = (int)(65536 / (per_image ? per_image : 1));   /* up to 256 KiB of bordered input */
    if (g < 1) g = 1;
    if (g > batch) g = batch;
    *group = g;
}

size_t bnk_conv2d_indirect_scratch(int batch, int c, int kh, int kw, int sy, int sx, int dy, int oh, int ow) {
    int ph, pw, group;
    plan(c, kh, kw, sy, sx, dy, oh, ow, &ph, &pw, &group, batch > 0 ? batch : 1);
    return (size_t)group * ph * pw * c;
}

int bnk_conv2d_indirect(const float *input, int batch, int h, int w, int c, int kh, int kw, int sy, int sx, int dy,
                        int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n, int act,
                        float *out, float *scratch) {
    return bnk_conv2d_indirect_columns(input, batch, h, w, c, kh, kw, sy, sx, dy, pad_top, pad_left, oh, ow, kernel, NULL, bias, NULL,
                                       n, 0, n, act, out, scratch);
}

int bnk_conv2d_indirect_columns(const float *input, int batch, int h, int w, int c, int kh, int kw, int sy, int sx, int dy,
                                int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *panels,
                                const float *bias, const float *residual, int n, int n0, int cols, int act, float *out,
                                float *scratch) {
#if BNK_X86
    const int avx512 = bnk_use_avx512();
    if ((!avx512 && !bnk_use_avx2()) || batch <= 0) return 0;
    if (!avx512 && !panels && !bnk_panel((size_t)kh * kw * c * 16)) return 0;
    int ph, pw, group;
    plan(c, kh, kw, sy, sx, dy, oh, ow, &ph, &pw, &group, batch);
    const size_t per_image = (size_t)ph * pw * c, pixels = (size_t)oh * ow;
    const int inside = pad_top == 0 && pad_left == 0 && ph <= h && pw <= w;
    const float **rows = malloc(sizeof(float *) * (size_t)group * pixels * kh);
    if (!rows) return 0;
    for (int first = 0; first < batch; first += group) {
        const int count = batch - first < group ? batch - first : group;
        for (int i = 0; i < count; i++) {
            const float *image = input + (size_t)(first + i) * h * w * c;
            const float **table = rows + (size_t)i * pixels * kh;
            if (inside) {
                /* Every window inside the image (no padding: a strided 1x1, a valid conv): the rows point into it. */
                for (int oy = 0; oy < oh; oy++)
                    for (int ox = 0; ox < ow; ox++)
                        for (int ky = 0; ky < kh; ky++)
                            table[((size_t)oy * ow + ox) * kh + ky] = image + ((size_t)(oy * sy + ky * dy) * w + (size_t)ox * sx) * c;
                continue;
            }
            /* The image inside a zero border: row y, column x of the window grid is image (y - pad_top, x - pad_left). */
            float *bordered = scratch + (size_t)i * per_image;
            memset(bordered, 0, per_image * sizeof(float));
            for (int y = 0; y < ph; y++) {
                const int iy = y - pad_top;
                if (iy < 0 || iy >= h) continue;
                int x0 = pad_left, from = 0, cols = w;
                if (x0 + cols > pw) cols = pw - x0;
                if (cols > 0) memcpy(bordered + ((size_t)y * pw + x0) * c, image + ((size_t)iy * w + from) * c, (size_t)cols * c * sizeof(float));
            }
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ky = 0; ky < kh; ky++)
                        table[((size_t)oy * ow + ox) * kh + ky] = bordered + ((size_t)(oy * sy + ky * dy) * pw + (size_t)ox * sx) * c;
        }
        const float *b = panels ? NULL : kernel + n0, *bias0 = bias ? bias + n0 : NULL;
        const float *p = panels ? panels + (size_t)(n0 / 16) * kh * kw * c * 16 : NULL;
        float *c0 = out + (size_t)first * pixels * n + n0;
        const float *r0 = residual ? residual + (size_t)first * pixels * n + n0 : NULL;
        if (avx512) gemm_indirect_avx512((int)(count * pixels), cols, kh, kw * c, rows, b, n, p, bias0, r0, c0, n, act);
        else gemm_indirect_avx2((int)(count * pixels), cols, kh, kw * c, rows, b, n, p, bias0, r0, c0, n, act);
    }
    free(rows);
    return 1;
#else
    (void)input; (void)batch; (void)h; (void)w; (void)c; (void)kh; (void)kw; (void)sy; (void)sx; (void)dy; (void)pad_top;
    (void)pad_left; (void)oh; (void)ow; (void)kernel; (void)panels; (void)bias; (void)residual; (void)n; (void)n0; (void)cols; (void)act; (void)out; (void)scratch;
    return 0;
#endif
}
