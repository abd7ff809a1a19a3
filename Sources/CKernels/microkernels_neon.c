/* The GEMM microkernel for arm64 (NEON / Advanced SIMD, which every AArch64 CPU has): the
 * contract of bnk_block_avx2 (isa.h) on 128-bit vectors. Each tile keeps up to 6 rows x 16
 * columns of C in registers (24 of the 32 vector registers: four per row), reads one row of a
 * 16-wide panel per k (four loads) and multiplies it by each row's value of A (an FMA by a
 * scalar, `fmla v.4s, v.4s, v.s[0]`), so each value of B serves six rows and each value of A
 * sixteen columns. Every sum starts from the bias and runs k increasing, as on x86, so a model
 * gives the same values whichever way its columns or rows are split.
 *
 * Only compiled for AArch64. Checked against a double reference under emulation
 * (tools/arm64_kernel_check.sh, qemu-aarch64 in the test command); its speed has not been
 * measured on an arm64 machine (docs/PERFORMANCE.md).
 */
#include "bnkit_kernels.h"
#include "isa.h"

#if BNK_NEON
#include <arm_neon.h>

/* B's rows prefetched ahead of the one being read (as PREFETCH_ROWS_AVX2: the same 6 x 16 tile
   shape, whose k step is as short). */
#define PREFETCH_ROWS_NEON 32
/* The next panel (`next`) is prefetched by the last NEXT_PANEL_BLOCKS_NEON row blocks, a share
   each, spread over their k loops in place of the prefetch of B's rows ahead, into L2 (PLDL2KEEP:
   a whole panel is more than L1 holds), as the AVX2 tile does. */
#define NEXT_PANEL_BLOCKS_NEON 4

static inline float32x4_t act_neon(float32x4_t v, int act) {
    if (act == BNK_ACT_RELU) return vmaxq_f32(v, vdupq_n_f32(0.0f));
    if (act == BNK_ACT_RELU6) return vminq_f32(vmaxq_f32(v, vdupq_n_f32(0.0f)), vdupq_n_f32(6.0f));
    return v;
}

static inline float act_scalar(float v, int act) {
    if (act == BNK_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (act == BNK_ACT_RELU6) return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    return v;
}

#define FOR_ROWS6_NEON(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* R <= 6 rows of one 16-column block: C[r][j] = act(bias[j] + sums (+ rr[r][j])) for j < width.
   TABLE: A's rows from the pointer table (segs segments a row), else lda apart in one segment.
   One named accumulator per row and vector (an array of them may be kept in memory). */
static inline __attribute__((always_inline))
void tile_neon(const int R, const int TABLE, int segs, int len, const float *A, size_t lda, const float *const *rows,
               const float *b, int bs, int width, const float *bias16, const float *rr, float *c, int ldc, int act,
               const float *pf, int pfs, int pf_l2) {
    const float32x4_t bias0 = vld1q_f32(bias16), bias1 = vld1q_f32(bias16 + 4), bias2 = vld1q_f32(bias16 + 8),
                      bias3 = vld1q_f32(bias16 + 12);
#define DECLARE(r) float32x4_t v0##r = bias0, v1##r = bias1, v2##r = bias2, v3##r = bias3; const float *a##r = A;
    FOR_ROWS6_NEON(DECLARE)
#undef DECLARE
    const int prefetch = (TABLE ? segs * len : len) >= 64;
    const float *q = pf ? pf : b + (size_t)PREFETCH_ROWS_NEON * bs;
    const size_t qs = pf ? (size_t)pfs : (size_t)bs;
#define FMA(r) if ((r) < R) { const float x = a##r[k];                                                    \
                              v0##r = vfmaq_n_f32(v0##r, b0, x); v1##r = vfmaq_n_f32(v1##r, b1, x);   \
                              v2##r = vfmaq_n_f32(v2##r, b2, x); v3##r = vfmaq_n_f32(v3##r, b3, x); }
#define K_LOOP_NEON(LOCALITY)                                                                              \
        for (int k = 0; k < len; k++, b += bs, q += qs) {                                               \
            const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8),           \
                              b3 = vld1q_f32(b + 12);                                                    \
            if (prefetch) __builtin_prefetch(q, 0, LOCALITY);                                            \
            FOR_ROWS6_NEON(FMA)                                                                          \
        }
    for (int s = 0; s < (TABLE ? segs : 1); s++) {
#define ROW_POINTER(r) if ((r) < R) a##r = TABLE ? rows[(size_t)(r) * segs + s] : A + (size_t)(r) * lda;
        FOR_ROWS6_NEON(ROW_POINTER)
#undef ROW_POINTER
        if (pf && pf_l2) K_LOOP_NEON(2) else K_LOOP_NEON(3)
    }
#undef K_LOOP_NEON
#undef FMA
#define STORE(r) if ((r) < R) {                                                                            \
        float *cr = c + (size_t)(r) * ldc;                                                                 \
        const float *res = rr ? rr + (size_t)(r) * ldc : NULL;                                             \
        if (width >= 16) {                                                                                 \
            if (res) { v0##r = vaddq_f32(v0##r, vld1q_f32(res)); v1##r = vaddq_f32(v1##r, vld1q_f32(res + 4)); \
                       v2##r = vaddq_f32(v2##r, vld1q_f32(res + 8)); v3##r = vaddq_f32(v3##r, vld1q_f32(res + 12)); } \
            vst1q_f32(cr, act_neon(v0##r, act)); vst1q_f32(cr + 4, act_neon(v1##r, act));                 \
            vst1q_f32(cr + 8, act_neon(v2##r, act)); vst1q_f32(cr + 12, act_neon(v3##r, act));            \
        } else {                                                                                           \
            float t[16];                                                                                   \
            vst1q_f32(t, v0##r); vst1q_f32(t + 4, v1##r); vst1q_f32(t + 8, v2##r); vst1q_f32(t + 12, v3##r); \
            for (int j = 0; j < width; j++) cr[j] = act_scalar(res ? t[j] + res[j] : t[j], act);         \
        } }
    FOR_ROWS6_NEON(STORE)
#undef STORE
}

#define TILE_NEON_CASES(TABLE)                                                                             \
    switch (R) {                                                                                           \
    case 6: tile_neon(6, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    case 5: tile_neon(5, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    case 4: tile_neon(4, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    case 3: tile_neon(3, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    case 2: tile_neon(2, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    default: tile_neon(1, TABLE, segs, len, a, (size_t)lda, t, b, bs, width, bias16, rr, c, ldc, elementwise, pf, pfs, l2); break; \
    }

void bnk_block_neon(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                    const float *b, int bs, const float *bias, const float *R_, float *C, int ldc, int elementwise,
                    const float *next) {
    if (M <= 0 || width <= 0) return;
    if (width > 16) width = 16;
    float bias16[16] = {0};
    if (bias)
        for (int j = 0; j < width; j++) bias16[j] = bias[n0 + j];
    /* The rows split evenly into blocks of at most six. */
    const int blocks = (M + 5) / 6, rows_each = M / blocks, rows_left = M % blocks;
    const int fetching = !next ? 0 : blocks < NEXT_PANEL_BLOCKS_NEON ? blocks : NEXT_PANEL_BLOCKS_NEON;
    const int lines = segs * len, share = fetching ? (lines + fetching - 1) / fetching : 0;
    const int l2 = fetching >= 2;
    for (int block = 0, m = 0; block < blocks; block++) {
        const int R = rows_each + (block < rows_left);
        const float *a = rows ? NULL : A + (size_t)m * lda;
        const float *const *t = rows ? rows + (size_t)m * segs : NULL;
        const float *rr = R_ ? R_ + (size_t)m * ldc + n0 : NULL;
        float *c = C + (size_t)m * ldc + n0;
        /* This block's share of the next panel's lines, one prefetch a k (pfs floats apart). */
        const int part = block - (blocks - fetching);
        const int first = part * share, count = lines - first < share ? lines - first : share;
        const float *pf = part >= 0 && count > 0 ? next + (size_t)first * 16 : NULL;
        int pfs = 1;
        while (pfs < 16 && (long long)pfs * lines < 16LL * count) pfs *= 2;
        if (rows) { TILE_NEON_CASES(1) } else { TILE_NEON_CASES(0) }
        m += R;
    }
}
#undef TILE_NEON_CASES

/* One panel of bnk_pack_panels's layout (16 columns, zero past `width`). */
void bnk_pack_block_neon(const float *B, int ldb, size_t K, int width, float *pk) {
    bnk_pack_panels((int)K, width, B, ldb, pk);
}

#else
/* (Nothing for other architectures: an empty translation unit is not valid ISO C.) */
typedef int bnk_microkernels_neon_unused;
#endif
