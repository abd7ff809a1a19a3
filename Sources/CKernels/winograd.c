/* 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3).
 *
 * Each 2x2 block of outputs (a "tile") comes from a 4x4 block of input:
 *   V = B^T d B (per input channel), M = sum over input channels of U * V
 *   (U = G g G^T, per input and output channel, computed once when the model
 *   is planned), Y = A^T M A.
 * The sum over input channels is 16 GEMMs (one per position of the 4x4
 * block): tiles x Cin times Cin x Cout, 16 multiplications per four outputs
 * instead of 36, so 2.25 times fewer than direct convolution. Tiles from all
 * images of the batch are taken in blocks small enough that V and M stay in
 * cache. Transforms use only additions, subtractions and (for U) halves.
 *
 * With pool != 0 a 2x2 stride-2 max pooling follows: a tile is exactly one
 * pooling window, so the pooled value is written and the conv output never is.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#include <stdlib.h>
#include <string.h>

static int block_tiles(int cin, int cout) {
    /* The most tiles a block holds (the scratch is sized for them; the blocks a call makes are then
       as even as they go, see bnk_conv3x3_winograd_columns). V and M of a block: 16 * tiles *
       (cin + cout) floats, about 512 KiB (the transformed kernel U is streamed once per block, so
       blocks are as large as the caches allow); a multiple of 4, at least 12. A U over 1 MiB does
       not stay in L2 from one block to the next: each block read it from L3, so its blocks hold
       up to 2 MiB of V and M (ResNet50's 14x14x256 convs at batch 1: U 4 MiB, 49 tiles in blocks
       of 16, 16, 16 and 1 read 16 MiB of U a conv; in one block, 4 MiB). */
    const int large = (size_t)16 * cin * cout > 262144;
    int tiles = (large ? 524288 : 131072) / (16 * (cin + cout));
    tiles = tiles / 4 * 4;
    if (tiles < 12) tiles = 12;
    if (tiles > 192) tiles = 192;
    return tiles;
}

size_t bnk_winograd_scratch(int cin, int cout) {
    return (size_t)16 * block_tiles(cin, cout) * (cin + cout) + (size_t)cin;
}

/* V[k][t][c] for the 16 rows of one tile (row pointers, a zero row outside the image). */
static inline __attribute__((always_inline))
void input_transform_body(const float *const *rows, int cin, int tiles, int t, float *V) {
    const float *d0 = rows[0], *d1 = rows[1], *d2 = rows[2], *d3 = rows[3], *d4 = rows[4], *d5 = rows[5], *d6 = rows[6],
                *d7 = rows[7], *d8 = rows[8], *d9 = rows[9], *d10 = rows[10], *d11 = rows[11], *d12 = rows[12],
                *d13 = rows[13], *d14 = rows[14], *d15 = rows[15];
    const size_t stride = (size_t)tiles * cin;
    float *v = V + (size_t)t * cin;
    for (int c = 0; c < cin; c++) {
        /* B^T d: combine rows */
        float t00 = d0[c] - d8[c], t01 = d1[c] - d9[c], t02 = d2[c] - d10[c], t03 = d3[c] - d11[c];
        float t10 = d4[c] + d8[c], t11 = d5[c] + d9[c], t12 = d6[c] + d10[c], t13 = d7[c] + d11[c];
        float t20 = d8[c] - d4[c], t21 = d9[c] - d5[c], t22 = d10[c] - d6[c], t23 = d11[c] - d7[c];
        float t30 = d4[c] - d12[c], t31 = d5[c] - d13[c], t32 = d6[c] - d14[c], t33 = d7[c] - d15[c];
        /* (B^T d) B: combine columns */
        v[0 * stride + c] = t00 - t02; v[1 * stride + c] = t01 + t02; v[2 * stride + c] = t02 - t01; v[3 * stride + c] = t01 - t03;
        v[4 * stride + c] = t10 - t12; v[5 * stride + c] = t11 + t12; v[6 * stride + c] = t12 - t11; v[7 * stride + c] = t11 - t13;
        v[8 * stride + c] = t20 - t22; v[9 * stride + c] = t21 + t22; v[10 * stride + c] = t22 - t21; v[11 * stride + c] = t21 - t23;
        v[12 * stride + c] = t30 - t32; v[13 * stride + c] = t31 + t32; v[14 * stride + c] = t32 - t31; v[15 * stride + c] = t31 - t33;
    }
}

static inline float activate(float v, int act) {
    if (act == BNK_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (act == BNK_ACT_RELU6) return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    return v;
}

/* Y = A^T M A + bias for one tile's `cout` channels (M's rows; output pixels `ldo` floats apart);
   writes the outputs inside the image (or the pooled value). */
static inline __attribute__((always_inline))
void output_transform_body(const float *M, int tiles, int t, int cout, const float *bias, int act,
                           float *out, int ldo, int ow, int y0, int x0, int rows, int cols, int pool) {
    const size_t stride = (size_t)tiles * cout;
    const float *m = M + (size_t)t * cout;
    float *o00 = out + ((size_t)y0 * ow + x0) * ldo;
    float *o01 = o00 + ldo, *o10 = o00 + (size_t)ow * ldo, *o11 = o10 + ldo;
    for (int o = 0; o < cout; o++) {
        float m0 = m[0 * stride + o], m1 = m[1 * stride + o], m2 = m[2 * stride + o], m3 = m[3 * stride + o];
        float m4 = m[4 * stride + o], m5 = m[5 * stride + o], m6 = m[6 * stride + o], m7 = m[7 * stride + o];
        float m8 = m[8 * stride + o], m9 = m[9 * stride + o], m10 = m[10 * stride + o], m11 = m[11 * stride + o];
        float m12 = m[12 * stride + o], m13 = m[13 * stride + o], m14 = m[14 * stride + o], m15 = m[15 * stride + o];
        /* A^T M: rows */
        float r00 = m0 + m4 + m8, r01 = m1 + m5 + m9, r02 = m2 + m6 + m10, r03 = m3 + m7 + m11;
        float r10 = m4 - m8 - m12, r11 = m5 - m9 - m13, r12 = m6 - m10 - m14, r13 = m7 - m11 - m15;
        /* (A^T M) A: columns */
        float b = bias ? bias[o] : 0.0f;
        float y00 = r00 + r01 + r02 + b, y01 = r01 - r02 - r03 + b;
        float y10 = r10 + r11 + r12 + b, y11 = r11 - r12 - r13 + b;
        if (pool) {
            float a = y00 > y01 ? y00 : y01, c = y10 > y11 ? y10 : y11;
            o00[o] = activate(a > c ? a : c, act);
            continue;
        }
        o00[o] = activate(y00, act);
        if (cols > 1) o01[o] = activate(y01, act);
        if (rows > 1) {
            o10[o] = activate(y10, act);
            if (cols > 1) o11[o] = activate(y11, act);
        }
    }
}

BNK_VARIANTS(input_transform, (const float *const *rows, int cin, int tiles, int t, float *V), (rows, cin, tiles, t, V))
BNK_VARIANTS(output_transform, (const float *M, int tiles, int t, int cout, const float *bias, int act, float *out, int ldo, int ow,
                                int y0, int x0, int rows, int cols, int pool),
             (M, tiles, t, cout, bias, act, out, ldo, ow, y0, x0, rows, cols, pool))

#if BNK_X86
#include <immintrin.h>

__attribute__((target("avx512f")))
static void input_transform_avx512_intrinsics(const float *const *rows, int cin, int tiles, int t, float *V) {
    const size_t stride = (size_t)tiles * cin;
    float *v = V + (size_t)t * cin;
    for (int c = 0; c < cin; c += 16) {
        const __mmask16 k = cin - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cin - c)) - 1);
        __m512 d[16];
        for (int i = 0; i < 16; i++) d[i] = _mm512_maskz_loadu_ps(k, rows[i] + c);
        __m512 r[16];
        for (int j = 0; j < 4; j++) {
            r[0 + j] = _mm512_sub_ps(d[0 + j], d[8 + j]);
            r[4 + j] = _mm512_add_ps(d[4 + j], d[8 + j]);
            r[8 + j] = _mm512_sub_ps(d[8 + j], d[4 + j]);
            r[12 + j] = _mm512_sub_ps(d[4 + j], d[12 + j]);
        }
        for (int i = 0; i < 16; i += 4) {
            _mm512_mask_storeu_ps(v + (size_t)(i + 0) * stride + c, k, _mm512_sub_ps(r[i + 0], r[i + 2]));
            _mm512_mask_storeu_ps(v + (size_t)(i + 1) * stride + c, k, _mm512_add_ps(r[i + 1], r[i + 2]));
            _mm512_mask_storeu_ps(v + (size_t)(i + 2) * stride + c, k, _mm512_sub_ps(r[i + 2], r[i + 1]));
            _mm512_mask_storeu_ps(v + (size_t)(i + 3) * stride + c, k, _mm512_sub_ps(r[i + 1], r[i + 3]));
        }
    }
}

__attribute__((target("avx512f")))
static void output_transform_avx512_intrinsics(const float *M, int tiles, int t, int cout, const float *bias, int act,
                                    float *out, int ldo, int ow, int y0, int x0, int rows, int cols, int pool) {
    const size_t stride = (size_t)tiles * cout;
    const float *m = M + (size_t)t * cout;
    float *o00 = out + ((size_t)y0 * ow + x0) * ldo;
    float *o01 = o00 + ldo, *o10 = o00 + (size_t)ow * ldo, *o11 = o10 + ldo;
    for (int o = 0; o < cout; o += 16) {
        const __mmask16 k = cout - o >= 16 ? 0xFFFF : (__mmask16)((1u << (cout - o)) - 1);
        __m512 x[16];
        for (int i = 0; i < 16; i++) x[i] = _mm512_maskz_loadu_ps(k, m + (size_t)i * stride + o);
        __m512 r0[4], r1[4];
        for (int j = 0; j < 4; j++) {
            r0[j] = _mm512_add_ps(_mm512_add_ps(x[0 + j], x[4 + j]), x[8 + j]);
            r1[j] = _mm512_sub_ps(_mm512_sub_ps(x[4 + j], x[8 + j]), x[12 + j]);
        }
        const __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + o) : _mm512_setzero_ps();
        __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r0[0], r0[1]), r0[2]), b);
        __m512 y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r0[1], r0[2]), r0[3]), b);
        __m512 y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r1[0], r1[1]), r1[2]), b);
        __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r1[1], r1[2]), r1[3]), b);
        if (pool) {
            __m512 top = _mm512_max_ps(y00, y01), bottom = _mm512_max_ps(y10, y11);
            _mm512_mask_storeu_ps(o00 + o, k, bnk_act512(_mm512_max_ps(top, bottom), act));
            continue;
        }
        _mm512_mask_storeu_ps(o00 + o, k, bnk_act512(y00, act));
        if (cols > 1) _mm512_mask_storeu_ps(o01 + o, k, bnk_act512(y01, act));
        if (rows > 1) {
            _mm512_mask_storeu_ps(o10 + o, k, bnk_act512(y10, act));
            if (cols > 1) _mm512_mask_storeu_ps(o11 + o, k, bnk_act512(y11, act));
        }
    }
}

/* The same transforms for AVX2 (the compiler leaves the portable body's 16 row pointers scalar). */
#define MASK8(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))

__attribute__((target("avx2,fma")))
static void input_transform_avx2_intrinsics(const float *const *rows, int cin, int tiles, int t, float *V) {
    const size_t stride = (size_t)tiles * cin;
    float *v = V + (size_t)t * cin;
    for (int c = 0; c < cin; c += 8) {
        const int full = cin - c >= 8;
        const __m256i k = MASK8(cin - c);
        __m256 d[16];
        for (int i = 0; i < 16; i++) d[i] = full ? _mm256_loadu_ps(rows[i] + c) : _mm256_maskload_ps(rows[i] + c, k);
        __m256 r[16];
        for (int j = 0; j < 4; j++) {
            r[0 + j] = _mm256_sub_ps(d[0 + j], d[8 + j]);
            r[4 + j] = _mm256_add_ps(d[4 + j], d[8 + j]);
            r[8 + j] = _mm256_sub_ps(d[8 + j], d[4 + j]);
            r[12 + j] = _mm256_sub_ps(d[4 + j], d[12 + j]);
        }
        for (int i = 0; i < 16; i += 4) {
            const __m256 y[4] = {_mm256_sub_ps(r[i + 0], r[i + 2]), _mm256_add_ps(r[i + 1], r[i + 2]),
                                 _mm256_sub_ps(r[i + 2], r[i + 1]), _mm256_sub_ps(r[i + 1], r[i + 3])};
            for (int j = 0; j < 4; j++) {
                float *p = v + (size_t)(i + j) * stride + c;
                if (full) _mm256_storeu_ps(p, y[j]); else _mm256_maskstore_ps(p, k, y[j]);
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static void output_transform_avx2_intrinsics(const float *M, int tiles, int t, int cout, const float *bias, int act,
                                             float *out, int ldo, int ow, int y0, int x0, int rows, int cols, int pool) {
    const size_t stride = (size_t)tiles * cout;
    const float *m = M + (size_t)t * cout;
    float *o00 = out + ((size_t)y0 * ow + x0) * ldo;
    float *o01 = o00 + ldo, *o10 = o00 + (size_t)ow * ldo, *o11 = o10 + ldo;
    for (int o = 0; o < cout; o += 8) {
        const int full = cout - o >= 8;
        const __m256i k = MASK8(cout - o);
#define LD(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k))
#define ST(p, v) do { if (full) _mm256_storeu_ps(p, v); else _mm256_maskstore_ps(p, k, v); } while (0)
        __m256 x[16];
        for (int i = 0; i < 16; i++) x[i] = LD(m + (size_t)i * stride + o);
        __m256 r0[4], r1[4];
        for (int j = 0; j < 4; j++) {
            r0[j] = _mm256_add_ps(_mm256_add_ps(x[0 + j], x[4 + j]), x[8 + j]);
            r1[j] = _mm256_sub_ps(_mm256_sub_ps(x[4 + j], x[8 + j]), x[12 + j]);
        }
        const __m256 b = bias ? LD(bias + o) : _mm256_setzero_ps();
        __m256 y00 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r0[0], r0[1]), r0[2]), b);
        __m256 y01 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r0[1], r0[2]), r0[3]), b);
        __m256 y10 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r1[0], r1[1]), r1[2]), b);
        __m256 y11 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r1[1], r1[2]), r1[3]), b);
        if (pool) {
            ST(o00 + o, bnk_act256(_mm256_max_ps(_mm256_max_ps(y00, y01), _mm256_max_ps(y10, y11)), act));
            continue;
        }
        ST(o00 + o, bnk_act256(y00, act));
        if (cols > 1) ST(o01 + o, bnk_act256(y01, act));
        if (rows > 1) {
            ST(o10 + o, bnk_act256(y10, act));
            if (cols > 1) ST(o11 + o, bnk_act256(y11, act));
        }
#undef LD
#undef ST
    }
}
#endif

typedef void (*input_fn)(const float *const *, int, int, int, float *);
typedef void (*output_fn)(const float *, int, int, int, const float *, int, float *, int, int, int, int, int, int, int);

void bnk_conv3x3_winograd(const float *input, int batch, int h, int w, int cin, int oh, int ow, int pad_top, int pad_left,
                          const float *U, const float *bias, int cout, int act, int pool, float *output, float *scratch) {
    bnk_conv3x3_winograd_columns(input, batch, h, w, cin, oh, ow, pad_top, pad_left, U, bias, cout, 0, cout, act, pool, output,
                                 scratch, NULL);
}

/* Every tile's input transform, then the products and output transforms of columns n0..<n0+cols only:
   a column's sums are those of the whole conv (the same tile blocks, the same GEMM order over cin). */
void bnk_conv3x3_winograd_columns(const float *input, int batch, int h, int w, int cin, int oh, int ow, int pad_top,
                                  int pad_left, const float *U, const float *bias, int cout, int n0, int cols, int act,
                                  int pool, float *output, float *scratch, const float *then) {
    const int tiles_y = pool ? oh / 2 : (oh + 1) / 2, tiles_x = pool ? ow / 2 : (ow + 1) / 2;
    const int per_image = tiles_y * tiles_x;
    const int total = batch * per_image;
    /* The fewest blocks the scratch allows, as even as they go (each block streams all of U: 49
       tiles in blocks of at most 16 go as 13, 12, 12 and 12, not 16, 16, 16 and 1). */
    const int most = block_tiles(cin, cout), blocks = (total + most - 1) / most;
    const int block = blocks > 1 ? (total + blocks - 1) / blocks : total;
    float *V = scratch, *Mt = V + (size_t)16 * block * cin, *zero = Mt + (size_t)16 * block * cout;
    const float *bias_part = bias ? bias + n0 : NULL;
    float *output_part = output + n0;
    memset(zero, 0, (size_t)cin * sizeof(float));
    const int out_h = pool ? oh / 2 : oh, out_w = pool ? ow / 2 : ow;
    input_fn input_transform_chosen = input_transform_dispatch;
    output_fn output_transform_chosen = output_transform_dispatch;
#if BNK_X86
    if (bnk_use_avx512()) {
        input_transform_chosen = input_transform_avx512_intrinsics;
        output_transform_chosen = output_transform_avx512_intrinsics;
    } else if (bnk_use_avx2()) {
        input_transform_chosen = input_transform_avx2_intrinsics;
        output_transform_chosen = output_transform_avx2_intrinsics;
    }
#endif
    for (int first = 0; first < total; first += block) {
        const int count = total - first < block ? total - first : block;
        for (int t = 0; t < count; t++) {
            const int g = first + t, n = g / per_image, ty = (g % per_image) / tiles_x, tx = g % tiles_x;
            const float *image = input + (size_t)n * h * w * cin;
            const float *rows[16];
            for (int i = 0; i < 4; i++) {
                const int iy = 2 * ty - pad_top + i;
                for (int j = 0; j < 4; j++) {
                    const int ix = 2 * tx - pad_left + j;
                    rows[i * 4 + j] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? image + ((size_t)iy * w + ix) * cin : zero;
                }
            }
            input_transform_chosen(rows, cin, block, t, V);
        }
        const size_t per_position = bnk_panels_floats(cin, cout);
        const int stream = bnk_stream_panels(count, cin, 16 * cols);   /* all 16 products' weights */
        /* Each product's last panel prefetches the next product's first; the last product's, the
           first product's again for the next block of tiles, or after the last block `then`. */
        const float *after = first + block < total ? U + (size_t)n0 * cin : then;
        for (int k = 0; k < 16; k++) {
            const float *u = U + (size_t)k * per_position + (size_t)n0 * cin;
            bnk_gemm_panels_streamed(count, cols, cin, V + (size_t)k * block * cin, cin, u, NULL, NULL,
                                     Mt + (size_t)k * block * cols, cols, BNK_ACT_LINEAR, stream, k < 15 ? u + per_position : after);
        }
        for (int t = 0; t < count; t++) {
            const int g = first + t, n = g / per_image, ty = (g % per_image) / tiles_x, tx = g % tiles_x;
            float *image = output_part + (size_t)n * out_h * out_w * cout;
            if (pool)
                output_transform_chosen(Mt, block, t, cols, bias_part, act, image, cout, out_w, ty, tx, 1, 1, 1);
            else
                output_transform_chosen(Mt, block, t, cols, bias_part, act, image, cout, ow, 2 * ty, 2 * tx,
                                        oh - 2 * ty < 2 ? 1 : 2, ow - 2 * tx < 2 ? 1 : 2, 0);
        }
    }
}
