/* Which instruction sets the kernels may use: what the CPU has, capped by
 * bnk_limit_isa (tests run every code path this machine can run). */
#ifndef BNKIT_ISA_H
#define BNKIT_ISA_H
#include <stddef.h>

#if defined(__x86_64__)
#define BNK_X86 1
#else
#define BNK_X86 0
#endif

/* AArch64: NEON (Advanced SIMD) is part of the base architecture. */
#if defined(__aarch64__)
#define BNK_NEON 1
#else
#define BNK_NEON 0
#endif

#include "bnkit_kernels.h"

/* The sigmoid over rows m < M of C (N values each, rows ldc apart), in one call when the rows are
   contiguous: per-row calls paid a dispatch and a scalar tail each (50 of 50 values a row on the
   seed MLP: 2 of them past the last whole vector). The same values either way. */
static inline void bnk_sigmoid_rows(float *C, int M, int N, int ldc) {
    if (ldc == N) bnk_sigmoid(C, (size_t)M * N);
    else for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

#if BNK_X86
#include <immintrin.h>

/* The activations applied in the kernels' epilogues on 16 lanes: linear, ReLU, ReLU6
   (sigmoid is applied afterwards, over whole rows). */
__attribute__((target("avx512f")))
static inline __m512 bnk_act512(__m512 v, int act) {
    if (act == BNK_ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == BNK_ACT_RELU6) return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    return v;
}

/* The same on 8 lanes (AVX2+FMA). */
__attribute__((target("avx2,fma")))
static inline __m256 bnk_act256(__m256 v, int act) {
    if (act == BNK_ACT_RELU) return _mm256_max_ps(v, _mm256_setzero_ps());
    if (act == BNK_ACT_RELU6) return _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(6.0f));
    return v;
}

/* 8 floats at p of which `left` exist (8 or more: all): a plain load or store for a whole vector,
   masked (`mask`: lanes < left) for a tail only; a masked AVX2 store of a whole vector takes
   several times a plain one on AMD cores. */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 bnk_load8(const float *p, int left, __m256i mask) {
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
__attribute__((target("avx2,fma"), always_inline))
static inline void bnk_store8(float *p, int left, __m256i mask, __m256 v) {
    if (left >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mask, v);
}
#endif

/* One C body compiled three times, for AVX-512, AVX2+FMA and baseline (the compiler vectorizes
   it for each), and NAME##_dispatch, which runs the best one the instruction-set cap allows; so
   the tests exercise every version on one machine (target_clones would pick by CPU alone).
   NAME##_body must be a static always_inline function taking ARGS. */
#if BNK_X86
#define BNK_AVX2_TARGET __attribute__((target("avx2,fma")))
#define BNK_AVX512_TARGET __attribute__((target("avx512f")))
#else
#define BNK_AVX2_TARGET
#define BNK_AVX512_TARGET
#endif
#define BNK_VARIANTS(NAME, PARAMS, ARGS)                                              \
    static void NAME##_generic PARAMS { NAME##_body ARGS; }                            \
    BNK_AVX2_TARGET static void NAME##_avx2 PARAMS { NAME##_body ARGS; }               \
    BNK_AVX512_TARGET static void NAME##_avx512 PARAMS { NAME##_body ARGS; }           \
    static inline void NAME##_dispatch PARAMS {                                        \
        if (BNK_X86 && bnk_use_avx512()) NAME##_avx512 ARGS;                           \
        else if (BNK_X86 && bnk_use_avx2()) NAME##_avx2 ARGS;                          \
        else NAME##_generic ARGS;                                                      \
    }

/* The calling thread's buffer for packed GEMM panels (and the AVX2 sparse Dense's gathered
   positions), at least `floats` long and 64-byte aligned (kept and grown; NULL when memory runs
   out, and then the kernels read B in place). */
float *bnk_panel(size_t floats);

/* Columns per block of the AVX-512 GEMM over M rows and K rows of B: 64 (6-row tiles), but 32
   (one 12-row tile) for 7 to 10 rows when 64 columns of K would be over 1 MiB, more than L2, so
   the weights are read once rather than twice, the second time from L3 (measurements at
   gemm_panels_rows in gemm.c). */
static inline int bnk_avx512_block_columns(int M, size_t K) {
    return M > 6 && M <= 10 && K * 64 * sizeof(float) > (1u << 20) ? 32 : 64;
}

/* Whether the GEMM tiles prefetch each next panel of prepacked weights as they go (the
   `next` of bnk_block_avx2, and of bnk_block_avx512's 6 x 64 tile, a block of four panels): up to 1024 rows over long sums and weights of 256 KiB or more,
   which at batch 1 come from L3 or memory. Without it, the first row block of each panel waits
   on memory for the panel while the rest read it from cache: a stall of about 13/M of the
   panel's time at 15 GB/s and 100 GFLOP/s, partly hidden by the prefetch of B's rows ahead. Up
   to 64 rows at first (about 32 FLOPs a byte of weights); from 64 to 1024 rows (1x1 shapes,
   24 sets of weights in turn from memory, each call also naming the next one's first panel as
   `then`, AMD Zen 3, best of 12 alternating runs): K x N 512 x 512, 728 x 728, 256 x 1024,
   1024 x 256 at 100 rows 1.04-1.05x, 196 rows 1.02-1.03x, 400 rows 1.01-1.02x, 784 1.01-1.02x,
   1600 1.00-1.01x; the same weights hot 0.99-1.01x (the prefetches replace the ones of B's
   rows ahead, in the last row blocks only). Plain calls (no `then`), tools/kernel_bench.sh,
   two runs: 100 x 728 -> 728 1282, 1285 -> 1236, 1174 us; 196 x 512 -> 512 1223, 1218 -> 1158,
   1128 us.
   Xception 160 at batch 1 (10 x 10 maps, 728 -> 728: 100 rows), one thread, profiles of its
   middle flow's blocks, two pairs: 1.03-1.04x and 1.09-1.10x; six alternating runs 19.1 ->
   19.5 img/s; ResNet50 96 batch 16 (144 rows) 82.8 -> 83.6; ResNet50, MobileNetV2,
   EfficientNetB0, DenseNet121 and MobileNet at 224, batch 1, unchanged. Before, with 64 rows
   at most (a call may be one worker's share of a step's columns:
   ResNet50's 512 -> 2048 goes in 8 parts of 512 KiB). bnrun, batch 1, AMD Zen 3, alternating
   runs, medians, one thread (1 MiB at first): ResNeXt50 96 46.0 -> 51.0 img/s, ResNet50 96
   60.5 -> 66.6, ConvNeXt-T 96 39.5 -> 43.2, ResNet50 224 14.6 -> 14.9; MobileNetV2 224,
   RegNetX-400MF 96 (batch 16) and ResNet50 224 at batch 16 unchanged. 1 MiB -> 256 KiB: two
   threads ResNeXt50 96 84.1 -> 87.3, ResNet50 96 110.2 -> 111.1; one thread ResNet50 96
   68.3 -> 70.6, MobileNetV2 224 124.7 -> 123.8. A part of a step's columns (two threads) is
   decided on the whole step's weights (bnk_gemm_panels_part, the indirect conv's n): RegNetX-400MF
   96's 9-row 400 -> 400 1x1 convs go in 6 parts of 100 KiB, which the rule alone left unstreamed;
   9 x 384 -> 384 from memory in 3 parts a worker, medians of 6: 33.8 -> 29.0 us; the network at
   batch 1 on two threads, 8 alternating runs: 778 -> 796 img/s. Earlier forms of the rule, on
   every chunk of up to 64 rows (ResNet50 224 at batch 16) or with a test of the prefetch at every
   k (MobileNetV2), were slower by 3-5%. */
static inline int bnk_stream_panels(int M, int K, int N) {
    return M <= 1024 && K >= 256 && (size_t)K * (size_t)((N + 15) / 16) * 16 >= ((size_t)1 << 16);
}

/* bnk_gemm_panels with the caller's decision `ahead` (bnk_stream_panels over all the weights it
   streams, not this call's alone) and, when streaming, `then`: the panel to prefetch during the
   last one (the first of the caller's next call; NULL for none). A Winograd conv's 16 products
   are one stream of weights: ResNet50 96's 6x6 maps at 256 channels, two threads, 128 columns
   each (128 KiB a product, under the rule alone), weights from memory, AMD Zen 3, medians of 6
   alternating runs: 288 -> 234 us; one thread 378 -> 356. The AVX-512 6 x 64 tile takes `next`
   and `then` too, a block of four panels at a time (bnk_block_avx512). */
void bnk_gemm_panels_streamed(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                              const float *residual, float *C, int ldc, int act, int ahead, const float *then);

#if BNK_X86
/* The GEMM microkernels (microkernels.c). Rows m < M of C's columns n0..n0+width (AVX-512:
   width <= 64, B's columns n0 + 16 j.. read at b_lo + j * (b_hi - b_lo); AVX2: width <= 16, read
   at b, 16 floats readable), each row stride bs:
   C[m][n0 + j] = act(bias[n0 + j] + sum over segments s < segs, k < len of a_m,s[k] * B[s * len + k][j]
                      (+ R[m][n0 + j]))
   where a_m,s = rows[m * segs + s] (the indirect convolution's pointer table), or A + m * lda
   when rows is NULL (then segs is 1). `elementwise`: linear, ReLU or ReLU6. `next` (or NULL):
   the weights the caller reads after these, prefetched by the last row blocks (bnk_stream_panels;
   AVX-512: a block of four panels, by the 6 x 64 tile only; AVX2: one panel). */
void bnk_block_avx512(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                      const float *b_lo, const float *b_hi, int bs, const float *bias, const float *R, float *C, int ldc,
                      int elementwise, const float *next);
/* Columns 0..<width (at most 64) of K rows of a row-major B (rows ldb apart) packed for
   bnk_block_avx512: rows of 16, 32 or 64 floats (as many vectors as the width needs, zero past
   the last column), the vectors 16 floats apart (b_hi = b_lo + 16). Returns the row stride. */
int bnk_pack_block_avx512(const float *B, int ldb, size_t K, int width, float *pk);
/* Columns 0..<width (at most 16) of K rows of a row-major B packed for bnk_block_avx2: rows of 16
   floats, zero past the last column. */
void bnk_pack_block_avx2(const float *B, int ldb, size_t K, int width, float *pk);
void bnk_block_avx2(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                    const float *b, int bs, const float *bias, const float *R, float *C, int ldc, int elementwise,
                    const float *next);
#endif

#if BNK_NEON
/* The GEMM microkernel on arm64 (microkernels_neon.c): bnk_block_avx2's contract (width <= 16,
   16 floats readable at b for each of B's rows, bs floats apart; `next` prefetched into L2). */
void bnk_block_neon(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                    const float *b, int bs, const float *bias, const float *R, float *C, int ldc, int elementwise,
                    const float *next);
/* Columns 0..<width (at most 16) of K rows of a row-major B packed for bnk_block_neon: rows of 16
   floats, zero past the last column. */
void bnk_pack_block_neon(const float *B, int ldb, size_t K, int width, float *pk);
#endif

#if BNK_X86 || BNK_NEON
/* A tile over 16-wide panels (bnk_block_avx2, bnk_block_neon: one contract) and its per-call
   packing of B (bnk_pack_block_avx2, bnk_pack_block_neon), for the drivers the two levels share. */
typedef void (*bnk_block16_fn)(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                               const float *b, int bs, const float *bias, const float *R, float *C, int ldc, int elementwise,
                               const float *next);
typedef void (*bnk_pack16_fn)(const float *B, int ldb, size_t K, int width, float *pk);
#endif

/* 1 on arm64 when the cap allows more than the portable C (level 1 or more): the NEON GEMM tile. */
int bnk_use_neon(void);

/* 2: AVX-512 kernels allowed, 1: AVX2+FMA (arm64: NEON), 0: portable C only. */
int bnk_use_avx512(void);
int bnk_use_avx2(void);
/* The level the cap and the CPU allow: "avx512", "avx2" or "generic" (for the *_isa reports). */
const char *bnk_isa_name(void);

#endif
