/* Convolution as an "indirect" GEMM: no patch matrix.
 *
 * With no horizontal dilation, one kernel row of an output pixel's window is
 * kw * c consecutive floats of the (zero-bordered) input. The GEMM's A row for
 * a pixel is then kh such runs, and the microkernel reads them through a table
 * of pointers instead of from a copied patch matrix (im2col writes and rereads
 * kh * kw * c floats per output pixel). The microkernels are the GEMM's
 * (microkernels.c), B packed into contiguous panels, accumulating in the same order (k increasing, from the bias), so the
 * results equal im2col + GEMM bit for bit at each instruction-set level.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#include <stdlib.h>
#include <string.h>

#if BNK_X86
#include <immintrin.h>

/* C[m] = act(bias + sum over segments s, k < len of rows[m * segs + s][k] * B[s * len + k]) for m < M:
   the GEMM's microkernels over the pointer table, B's columns from the prepacked panels, or each
   block of them packed per call into a contiguous panel (see gemm.c) when several row blocks read
   it, or (AVX-512, few rows) read in place. */
__attribute__((target("avx512f")))
static void gemm_indirect_avx512(int M, int N, int segs, int len, const float *const *rows, const float *B, int ldb,
                                 const float *panels, const float *bias, const float *R, float *C, int ldc, int act, int whole,
                                 const float *then) {
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    const size_t K = (size_t)segs * len;
    const int ahead = panels && bnk_stream_panels(M, (int)K, whole);   /* the conv's weights: a call may be a part of them */
    float *pk = !panels && M > 12 ? bnk_panel(K * 64) : NULL;
    const int step = bnk_avx512_block_columns(M, K);
    for (int n0 = 0; n0 < N; n0 += step) {
        const int width = N - n0 < step ? N - n0 : step;
        const float *bp = B + n0;
        int bs = ldb;
        ptrdiff_t hoff = 16;
        if (panels) {
            bp = panels + (size_t)(n0 / 16) * K * 16;
            bs = 16;
            hoff = (ptrdiff_t)(K * 16);
        } else if (pk) {
            bs = bnk_pack_block_avx512(B + n0, ldb, K, width, pk);
            bp = pk;
        }
        bnk_block_avx512(M, n0, width, segs, len, NULL, 0, rows, bp, bp + hoff, bs, bias, R, C, ldc, elementwise,
                         !ahead ? NULL : n0 + step < N ? bp + (size_t)(step / 16) * K * 16 : then);
    }
    if (act == BNK_ACT_SIGMOID)
        bnk_sigmoid_rows(C, M, N, ldc);
}

#endif

#if BNK_X86 || BNK_NEON
/* AVX2 and NEON (tiles of one panel, `block`): B always from a 16-wide packed panel (prepacked, or
   per call by `pack`). */
static void gemm_indirect_block16(bnk_block16_fn block, bnk_pack16_fn pack, int M, int N, int segs, int len,
                                  const float *const *rows, const float *B, int ldb, const float *panels, const float *bias,
                                  const float *R, float *C, int ldc, int act, int whole, const float *then) {
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    const int K = segs * len;
    float *pk = panels ? NULL : bnk_panel((size_t)K * 16);
    if (!panels && !pk) return;
    const int ahead = panels && bnk_stream_panels(M, K, whole);   /* the conv's weights: a call may be a part of them */
    for (int n0 = 0; n0 < N; n0 += 16) {
        const int width = N - n0 < 16 ? N - n0 : 16;
        const float *panel = panels ? panels + (size_t)(n0 / 16) * K * 16 : pk;
        if (!panels) pack(B + n0, ldb, (size_t)K, width, pk);
        block(M, n0, width, segs, len, NULL, 0, rows, panel, 16, bias, R, C, ldc, elementwise,
              !ahead ? NULL : n0 + 16 < N ? panel + (size_t)K * 16 : then);
    }
    if (act == BNK_ACT_SIGMOID)
        bnk_sigmoid_rows(C, M, N, ldc);
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
                                       n, 0, n, act, out, scratch, NULL);
}

int bnk_conv2d_indirect_columns(const float *input, int batch, int h, int w, int c, int kh, int kw, int sy, int sx, int dy,
                                int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *panels,
                                const float *bias, const float *residual, int n, int n0, int cols, int act, float *out,
                                float *scratch, const float *then) {
#if BNK_X86 || BNK_NEON
    const int avx512 = bnk_use_avx512(), avx2 = bnk_use_avx2(), neon = bnk_use_neon();
    if ((!avx512 && !avx2 && !neon) || batch <= 0) return 0;
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
            /* A window row reaching into the border: its kw pixels copied to their place in the grid
               (zeros outside the image); the others read the image. When such rows are few (a stem
               "same"-padded on the bottom and right only: 224 x 224 x 3, stride 2, 670 of 37632),
               only they are copied, not the whole grid (a memset and a copy of 600 KB an image:
               MobileNetV2's stem, Intel Xeon (family 6 model 207), hot, 167 -> 130 us). */
            /* Output columns lo..<hi have every window row inside the image horizontally. */
            int lo = (pad_left + sx - 1) / sx, hi = w - kw + pad_left < 0 ? 0 : (w - kw + pad_left) / sx + 1;
            if (lo > ow) lo = ow;
            if (hi > ow) hi = ow;
            if (hi < lo) hi = lo;
            size_t edge = 0;
            for (int oy = 0; oy < oh; oy++)
                for (int ky = 0; ky < kh; ky++) {
                    const int iy = oy * sy + ky * dy - pad_top;
                    edge += iy < 0 || iy >= h ? (size_t)ow : (size_t)(ow - (hi - lo));
                }
            if (2 * edge * kw < (size_t)ph * pw) {
                for (int oy = 0; oy < oh; oy++)
                    for (int ky = 0; ky < kh; ky++) {
                        const int y = oy * sy + ky * dy, iy = y - pad_top;
                        const float **entry = table + (size_t)oy * ow * kh + ky;
                        const int inside = iy >= 0 && iy < h;
                        if (inside) {
                            const float *p = image + ((size_t)iy * w + (size_t)(lo * sx - pad_left)) * c;
                            for (int ox = lo; ox < hi; ox++, p += (size_t)sx * c) entry[(size_t)ox * kh] = p;
                        }
                        for (int ox = 0; ox < ow; ox++) {
                            if (inside && ox == lo && hi > lo) { ox = hi - 1; continue; }   /* the run above */
                            const int x = ox * sx, ix = x - pad_left;
                            float *run = bordered + ((size_t)y * pw + x) * c;
                            for (int j = 0; j < kw; j++) {
                                if (inside && ix + j >= 0 && ix + j < w)
                                    memcpy(run + (size_t)j * c, image + ((size_t)iy * w + ix + j) * c, (size_t)c * sizeof(float));
                                else
                                    memset(run + (size_t)j * c, 0, (size_t)c * sizeof(float));
                            }
                            entry[(size_t)ox * kh] = run;
                        }
                    }
                continue;
            }
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
        const float *after = first + count >= batch ? then : NULL;
#if BNK_X86
        if (avx512) gemm_indirect_avx512((int)(count * pixels), cols, kh, kw * c, rows, b, n, p, bias0, r0, c0, n, act, n, after);
        else gemm_indirect_block16(bnk_block_avx2, bnk_pack_block_avx2, (int)(count * pixels), cols, kh, kw * c, rows, b, n, p,
                                   bias0, r0, c0, n, act, n, after);
#else
        gemm_indirect_block16(bnk_block_neon, bnk_pack_block_neon, (int)(count * pixels), cols, kh, kw * c, rows, b, n, p, bias0,
                              r0, c0, n, act, n, after);
#endif
    }
    free(rows);
    return 1;
#else
    (void)input; (void)batch; (void)h; (void)w; (void)c; (void)kh; (void)kw; (void)sy; (void)sx; (void)dy; (void)pad_top;
    (void)pad_left; (void)oh; (void)ow; (void)kernel; (void)panels; (void)bias; (void)residual; (void)n; (void)n0; (void)cols; (void)act; (void)out; (void)scratch; (void)then;
    return 0;
#endif
}
