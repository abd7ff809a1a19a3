/* GEMM with fused bias and activation: the hot loop of Dense and Conv2D.
 *
 * Register-blocked microkernels: AVX-512 computes 12 rows x 32 columns (24 zmm
 * accumulators; 4-row and 1-row blocks for the last rows), AVX2+FMA 6 rows x 16
 * columns (12 ymm accumulators; 2-row and 1-row blocks). The Keras kernel layout
 * (K, N) is row-major; when enough rows share it, each block of B's columns is first
 * copied into a contiguous panel (K x 32 or K x 16 floats, zero past the last column),
 * so the microkernel streams one buffer instead of rows `ldb` floats apart (a
 * power-of-two row stride maps every row to the same few L1 sets). Every output is
 * still summed from the bias, k increasing, so packing changes no result. The
 * implementation is chosen at run time from the CPU's features under the cap.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#if BNK_X86
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- sigmoid */

void bnk_sigmoid(float *x, size_t n) { bnk_activate(x, x, n, BNK_ACT_SIGMOID); }

static inline float activate1(float v, int act) {
    switch (act) {
    case BNK_ACT_RELU: return v > 0 ? v : 0;
    case BNK_ACT_RELU6: return v < 0 ? 0 : (v > 6 ? 6 : v);
    default: return v;
    }
}

static void gemm_reference(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                           const float *bias, float *C, int ldc, int act) {
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        for (int n = 0; n < N; n++) c[n] = bias ? bias[n] : 0.0f;
        const float *a = A + (size_t)m * lda;
        for (int k = 0; k < K; k++) {
            float av = a[k];
            const float *b = B + (size_t)k * ldb;
            for (int n = 0; n < N; n++) c[n] += av * b[n];
        }
        if (act == BNK_ACT_SIGMOID) bnk_sigmoid(c, (size_t)N);
        else if (act != BNK_ACT_LINEAR)
            for (int n = 0; n < N; n++) c[n] = activate1(c[n], act);
    }
}

void bnk_gemm_reference(int M, int N, int K, const float *A, int lda, const float *B,
                        const float *bias, float *C, int ldc, int act) {
    gemm_reference(M, N, K, A, lda, B, N, bias, C, ldc, act);
}

static _Thread_local float *panel_buffer;
static _Thread_local size_t panel_capacity;

float *bnk_panel(size_t floats) {
    if (floats <= panel_capacity) return panel_buffer;
    free(panel_buffer);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    panel_buffer = aligned_alloc(64, bytes ? bytes : 64);
    panel_capacity = panel_buffer ? floats : 0;
    return panel_buffer;
}

#if BNK_X86
/* ---------------------------------------------------------------- AVX-512 */

#define A_ROWS4 const float *a0 = A + (size_t)m * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda
#define A_ROWS12 A_ROWS4; \
    const float *a4 = a3 + lda, *a5 = a4 + lda, *a6 = a5 + lda, *a7 = a6 + lda, *a8 = a7 + lda, *a9 = a8 + lda, \
                *a10 = a9 + lda, *a11 = a10 + lda

/* Columns n0..n0+width (width <= 16): one zmm per row; bp: B's columns (row stride bs). */
__attribute__((target("avx512f")))
static void gemm_avx512_narrow(int M, int n0, int width, int K, const float *A, int lda, const float *bp, int bs,
                               const float *bias, const float *R, float *C, int ldc, int elementwise) {
    __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
#define ST(r, v) _mm512_mask_storeu_ps(c + (size_t)(r) * ldc, mask0, bnk_act512(rr ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask0, rr + (size_t)(r) * ldc)) : v, elementwise));
#define FMA1(a, acc) acc = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), b0, acc);
    int m = 0;
    for (; m + 12 <= M; m += 12) {
        __m512 c0 = bias0, c1 = bias0, c2 = bias0, c3 = bias0, c4 = bias0, c5 = bias0, c6 = bias0, c7 = bias0, c8 = bias0,
               c9 = bias0, c10 = bias0, c11 = bias0;
        A_ROWS12;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
            FMA1(a0, c0) FMA1(a1, c1) FMA1(a2, c2) FMA1(a3, c3) FMA1(a4, c4) FMA1(a5, c5)
            FMA1(a6, c6) FMA1(a7, c7) FMA1(a8, c8) FMA1(a9, c9) FMA1(a10, c10) FMA1(a11, c11)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        ST(0, c0) ST(1, c1) ST(2, c2) ST(3, c3) ST(4, c4) ST(5, c5) ST(6, c6) ST(7, c7) ST(8, c8) ST(9, c9) ST(10, c10) ST(11, c11)
    }
    for (; m + 4 <= M; m += 4) {
        __m512 c0 = bias0, c1 = bias0, c2 = bias0, c3 = bias0;
        A_ROWS4;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
            FMA1(a0, c0) FMA1(a1, c1) FMA1(a2, c2) FMA1(a3, c3)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        ST(0, c0) ST(1, c1) ST(2, c2) ST(3, c3)
    }
    for (; m < M; m++) {
        __m512 c0 = bias0;
        const float *a0 = A + (size_t)m * lda;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
            FMA1(a0, c0)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        ST(0, c0)
    }
#undef ST
#undef FMA1
}

/* Columns n0..<n0+width (width <= 32) of C: B's columns n0..n0+15 read from b_lo, n0+16.. from
   b_hi, both with row stride bs (a row-major B, a per-call panel, or two prepacked panels). */
__attribute__((target("avx512f")))
static void gemm_avx512_block(int M, int n0, int width, int K, const float *A, int lda, const float *b_lo, const float *b_hi,
                              int bs, const float *bias, const float *R, float *C, int ldc, int elementwise) {
    if (width <= 16) {
        gemm_avx512_narrow(M, n0, width, K, A, lda, b_lo, bs, bias, R, C, ldc, elementwise);
        return;
    }
    const __mmask16 mask0 = 0xFFFF;
    const __mmask16 mask1 = width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1);
    const ptrdiff_t hoff = b_hi - b_lo;
    const float *bp = b_lo;
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
    __m512 bias1 = bias ? _mm512_maskz_loadu_ps(mask1, bias + n0 + 16) : _mm512_setzero_ps();
#define STORE_ROW(r, lo, hi) \
        if (rr) { lo = _mm512_add_ps(lo, _mm512_loadu_ps(rr + (size_t)(r) * ldc)); \
                  hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(mask1, rr + (size_t)(r) * ldc + 16)); } \
        _mm512_mask_storeu_ps(c + (size_t)(r) * ldc, mask0, bnk_act512(lo, elementwise)); \
        _mm512_mask_storeu_ps(c + (size_t)(r) * ldc + 16, mask1, bnk_act512(hi, elementwise));
#define FMA_ROW(a, lo, hi) x = _mm512_set1_ps(a[k]); lo = _mm512_fmadd_ps(x, b0, lo); hi = _mm512_fmadd_ps(x, b1, hi);
    int m = 0;
    for (; m + 12 <= M; m += 12) {
        __m512 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1,
               c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1, c60 = bias0, c61 = bias1, c70 = bias0, c71 = bias1,
               c80 = bias0, c81 = bias1, c90 = bias0, c91 = bias1, c100 = bias0, c101 = bias1, c110 = bias0, c111 = bias1;
        A_ROWS12;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_loadu_ps(b);
            __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + hoff);
            __m512 x;
            FMA_ROW(a0, c00, c01) FMA_ROW(a1, c10, c11) FMA_ROW(a2, c20, c21) FMA_ROW(a3, c30, c31)
            FMA_ROW(a4, c40, c41) FMA_ROW(a5, c50, c51) FMA_ROW(a6, c60, c61) FMA_ROW(a7, c70, c71)
            FMA_ROW(a8, c80, c81) FMA_ROW(a9, c90, c91) FMA_ROW(a10, c100, c101) FMA_ROW(a11, c110, c111)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21) STORE_ROW(3, c30, c31)
        STORE_ROW(4, c40, c41) STORE_ROW(5, c50, c51) STORE_ROW(6, c60, c61) STORE_ROW(7, c70, c71)
        STORE_ROW(8, c80, c81) STORE_ROW(9, c90, c91) STORE_ROW(10, c100, c101) STORE_ROW(11, c110, c111)
    }
    for (; m + 4 <= M; m += 4) {
        __m512 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
        A_ROWS4;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_loadu_ps(b);
            __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + hoff);
            __m512 x;
            FMA_ROW(a0, c00, c01) FMA_ROW(a1, c10, c11) FMA_ROW(a2, c20, c21) FMA_ROW(a3, c30, c31)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21) STORE_ROW(3, c30, c31)
    }
    for (; m < M; m++) {
        __m512 c00 = bias0, c01 = bias1;
        const float *a0 = A + (size_t)m * lda;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m512 b0 = _mm512_loadu_ps(b);
            __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + hoff);
            __m512 x;
            FMA_ROW(a0, c00, c01)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01)
    }
#undef STORE_ROW
#undef FMA_ROW
}

__attribute__((target("avx512f")))
static void gemm_avx512(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        const float *bias, float *C, int ldc, int act) {
    int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    /* Pack when more than one row block reads the panel. */
    float *pk = M > 12 ? bnk_panel((size_t)K * 32) : NULL;
    for (int n0 = 0; n0 < N; n0 += 32) {
        int width = N - n0 < 32 ? N - n0 : 32;
        __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
        __mmask16 mask1 = width <= 16 ? 0 : (width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1));
        if (pk) {
            int stride = width <= 16 ? 16 : 32;
            const float *src = B + n0;
            for (int k = 0; k < K; k++, src += ldb) {
                _mm512_store_ps(pk + (size_t)k * stride, _mm512_maskz_loadu_ps(mask0, src));
                if (stride == 32) _mm512_store_ps(pk + (size_t)k * stride + 16, _mm512_maskz_loadu_ps(mask1, src + 16));
            }
            gemm_avx512_block(M, n0, width, K, A, lda, pk, pk + 16, stride, bias, NULL, C, ldc, elementwise);
        } else {
            /* Few rows: B read in place (the narrow kernel masks its loads; a wide block has 16 full columns). */
            gemm_avx512_block(M, n0, width, K, A, lda, B + n0, B + n0 + 16, ldb, bias, NULL, C, ldc, elementwise);
        }
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

/* ---------------------------------------------------------------- AVX2 */

__attribute__((target("avx2,fma")))
static inline __m256 act256(__m256 v, int act) {
    if (act == BNK_ACT_RELU) return _mm256_max_ps(v, _mm256_setzero_ps());
    if (act == BNK_ACT_RELU6) return _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(6.0f));
    return v;
}

/* 6 rows x 16 columns: 12 ymm accumulators, enough independent FMAs to cover their latency
   on two FMA ports. Columns n0..<n0+width (width <= 16) of C, B's 16 columns read from bp with
   row stride bs: readable 16 floats wide (a full block of a row-major B, or a panel zero past
   the last column), so only the stores of a narrower last block are masked. */
__attribute__((target("avx2,fma")))
static void gemm_avx2_block(int M, int n0, int width, int K, const float *A, int lda, const float *bp, int bs,
                            const float *bias, const float *R, float *C, int ldc, int elementwise) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
    __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width - 8), lanes);
    __m256 bias0 = bias ? _mm256_maskload_ps(bias + n0, mask0) : _mm256_setzero_ps();
    __m256 bias1 = bias ? _mm256_maskload_ps(bias + n0 + 8, mask1) : _mm256_setzero_ps();
#define STORE_ROW(r, lo, hi) \
    if (rr) { lo = _mm256_add_ps(lo, _mm256_maskload_ps(rr + (size_t)(r) * ldc, mask0)); \
              hi = _mm256_add_ps(hi, _mm256_maskload_ps(rr + (size_t)(r) * ldc + 8, mask1)); } \
    if (width == 16) { _mm256_storeu_ps(c + (size_t)(r) * ldc, act256(lo, elementwise)); \
                       _mm256_storeu_ps(c + (size_t)(r) * ldc + 8, act256(hi, elementwise)); } \
    else { _mm256_maskstore_ps(c + (size_t)(r) * ldc, mask0, act256(lo, elementwise)); \
           _mm256_maskstore_ps(c + (size_t)(r) * ldc + 8, mask1, act256(hi, elementwise)); }
#define FMA_ROW(a, lo, hi) x = _mm256_broadcast_ss(a + k); lo = _mm256_fmadd_ps(x, b0, lo); hi = _mm256_fmadd_ps(x, b1, hi);
    int m = 0;
    for (; m + 6 <= M; m += 6) {
        __m256 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1,
               c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1;
        A_ROWS4;
        const float *a4 = a3 + lda, *a5 = a4 + lda;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
            FMA_ROW(a0, c00, c01) FMA_ROW(a1, c10, c11) FMA_ROW(a2, c20, c21)
            FMA_ROW(a3, c30, c31) FMA_ROW(a4, c40, c41) FMA_ROW(a5, c50, c51)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21)
        STORE_ROW(3, c30, c31) STORE_ROW(4, c40, c41) STORE_ROW(5, c50, c51)
    }
    for (; m + 2 <= M; m += 2) {
        __m256 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1;
        const float *a0 = A + (size_t)m * lda, *a1 = a0 + lda;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
            FMA_ROW(a0, c00, c01) FMA_ROW(a1, c10, c11)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11)
    }
    for (; m < M; m++) {
        __m256 c00 = bias0, c01 = bias1;
        const float *a0 = A + (size_t)m * lda;
        const float *b = bp;
        for (int k = 0; k < K; k++, b += bs) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
            FMA_ROW(a0, c00, c01)
        }
        float *c = C + (size_t)m * ldc + n0;
        const float *rr = R ? R + (size_t)m * ldc + n0 : NULL;
        STORE_ROW(0, c00, c01)
    }
#undef STORE_ROW
#undef FMA_ROW
}

/* B packed per call into a 16-wide panel (zero past the last column) except a full block read
   by few rows, which is read in place. */
__attribute__((target("avx2,fma")))
static void gemm_avx2(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc, int act) {
    int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    float *pk = bnk_panel((size_t)K * 16);
    if (!pk) { gemm_reference(M, N, K, A, lda, B, ldb, bias, C, ldc, act); return; }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int n0 = 0; n0 < N; n0 += 16) {
        int width = N - n0 < 16 ? N - n0 : 16;
        if (width < 16 || M >= 12) {
            __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
            __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width - 8), lanes);
            const float *src = B + n0;
            for (int k = 0; k < K; k++, src += ldb) {
                _mm256_store_ps(pk + (size_t)k * 16, _mm256_maskload_ps(src, mask0));
                _mm256_store_ps(pk + (size_t)k * 16 + 8, _mm256_maskload_ps(src + 8, mask1));
            }
            gemm_avx2_block(M, n0, width, K, A, lda, pk, 16, bias, NULL, C, ldc, elementwise);
        } else {
            gemm_avx2_block(M, n0, width, K, A, lda, B + n0, ldb, bias, NULL, C, ldc, elementwise);
        }
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

#endif /* BNK_X86 */

/* ---------------------------------------------------------------- dispatch */

static int isa_limit = 2;

#if BNK_X86
/* What the CPU has, read once (the kernels ask per call). BNKIT_MAX_ISA=avx2 or generic in the
   environment caps it from the start (to measure or check the AVX2 or portable paths of the
   command-line tools on an AVX-512 machine); bnk_limit_isa changes the cap later. */
static int cpu_avx512 = -1, cpu_avx2 = -1;

static void read_cpu(void) {
    __builtin_cpu_init();
    cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cpu_avx512 = __builtin_cpu_supports("avx512f");
    const char *cap = getenv("BNKIT_MAX_ISA");
    if (cap && strcmp(cap, "avx2") == 0 && isa_limit > 1) isa_limit = 1;
    if (cap && strcmp(cap, "generic") == 0) isa_limit = 0;
}
#endif

int bnk_use_avx512(void) {
#if BNK_X86
    if (cpu_avx512 < 0) read_cpu();
    return isa_limit >= 2 && cpu_avx512;
#else
    return 0;
#endif
}

int bnk_use_avx2(void) {
#if BNK_X86
    if (cpu_avx2 < 0) read_cpu();
    return isa_limit >= 1 && cpu_avx2;
#else
    return 0;
#endif
}

const char *bnk_isa_name(void) {
    return bnk_use_avx512() ? "avx512" : bnk_use_avx2() ? "avx2" : "generic";
}

typedef void (*gemm_fn)(int, int, int, const float *, int, const float *, int, const float *, float *, int, int);
static gemm_fn chosen = 0;
static const char *chosen_name = "generic";

static void choose(void) {
#if BNK_X86
    if (bnk_use_avx512()) { chosen = gemm_avx512; chosen_name = "avx512"; return; }
    if (bnk_use_avx2()) { chosen = gemm_avx2; chosen_name = "avx2"; return; }
#endif
    chosen = gemm_reference; chosen_name = "generic";
}

void bnk_limit_isa(int level) {
    isa_limit = level;
    choose();
}

void bnk_gemm(int M, int N, int K, const float *A, int lda, const float *B,
              const float *bias, float *C, int ldc, int act) {
    bnk_gemm_strided(M, N, K, A, lda, B, N, bias, C, ldc, act);
}

void bnk_gemm_strided(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc, int act) {
    if (!chosen) choose();
    if (M <= 0 || N <= 0) return;
    chosen(M, N, K, A, lda, B, ldb, bias, C, ldc, act);
}

const char *bnk_gemm_isa(void) {
    if (!chosen) choose();
    return chosen_name;
}

/* ---------------------------------------------------------------- prepacked B */

size_t bnk_panels_floats(int K, int N) {
    return K > 0 && N > 0 ? (size_t)(N + BNK_PANEL - 1) / BNK_PANEL * BNK_PANEL * (size_t)K : 0;
}

void bnk_pack_panels(int K, int N, const float *B, int ldb, float *panels) {
    for (int n0 = 0; n0 < N; n0 += BNK_PANEL) {
        const int width = N - n0 < BNK_PANEL ? N - n0 : BNK_PANEL;
        float *p = panels + (size_t)(n0 / BNK_PANEL) * K * BNK_PANEL;
        for (int k = 0; k < K; k++, p += BNK_PANEL) {
            const float *src = B + (size_t)k * ldb + n0;
            int j = 0;
            for (; j < width; j++) p[j] = src[j];
            for (; j < BNK_PANEL; j++) p[j] = 0.0f;
        }
    }
}

/* The portable kernel over panels: per row, the panel's 16 sums from the bias, k increasing. */
static void gemm_panels_generic(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                                const float *R, float *C, int ldc, int act) {
    for (int n0 = 0; n0 < N; n0 += BNK_PANEL) {
        const int width = N - n0 < BNK_PANEL ? N - n0 : BNK_PANEL;
        const float *p = panels + (size_t)(n0 / BNK_PANEL) * K * BNK_PANEL;
        for (int m = 0; m < M; m++) {
            float acc[BNK_PANEL];
            for (int j = 0; j < BNK_PANEL; j++) acc[j] = bias && j < width ? bias[n0 + j] : 0.0f;
            const float *a = A + (size_t)m * lda;
            for (int k = 0; k < K; k++) {
                const float av = a[k], *b = p + (size_t)k * BNK_PANEL;
                for (int j = 0; j < BNK_PANEL; j++) acc[j] += av * b[j];
            }
            float *c = C + (size_t)m * ldc + n0;
            if (R) for (int j = 0; j < width; j++) acc[j] += R[(size_t)m * ldc + n0 + j];
            for (int j = 0; j < width; j++) c[j] = activate1(acc[j], act);
        }
    }
}

/* One chunk of rows, every column block; `elementwise` is linear, ReLU or ReLU6 (a sigmoid comes after). */
static void gemm_panels_rows(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias, const float *R,
                             float *C, int ldc, int elementwise) {
    const size_t panel = (size_t)K * BNK_PANEL;
#if BNK_X86
    if (bnk_use_avx512()) {
        for (int n0 = 0; n0 < N; n0 += 32) {
            const int width = N - n0 < 32 ? N - n0 : 32;
            const float *p = panels + (size_t)(n0 / BNK_PANEL) * panel;
            gemm_avx512_block(M, n0, width, K, A, lda, p, width > 16 ? p + panel : p, BNK_PANEL, bias, R, C, ldc, elementwise);
        }
        return;
    }
    if (bnk_use_avx2()) {
        for (int n0 = 0; n0 < N; n0 += BNK_PANEL) {
            const int width = N - n0 < BNK_PANEL ? N - n0 : BNK_PANEL;
            gemm_avx2_block(M, n0, width, K, A, lda, panels + (size_t)(n0 / BNK_PANEL) * panel, BNK_PANEL, bias, R, C, ldc, elementwise);
        }
        return;
    }
#endif
    gemm_panels_generic(M, N, K, A, lda, panels, bias, R, C, ldc, elementwise);
}

/* Loop order by the size of B: when all its panels fit comfortably in L2 (up to 128 KiB), rows
   go in chunks of 96 with every column block done per chunk, so each chunk of A is read from
   L1 and each row of C written once, in order (a pointwise conv with few inputs and many pixels
   is bound by its output otherwise); a larger B goes column block by column block over all
   rows, so each block's panels stay in cache. */
void bnk_gemm_panels(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias, const float *residual,
                     float *C, int ldc, int act) {
    if (M <= 0 || N <= 0) return;
    const int chunk = bnk_panels_floats(K, N) <= 32768 ? 96 : M;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        const int rows = M - m0 < chunk ? M - m0 : chunk;
        gemm_panels_rows(rows, N, K, A + (size_t)m0 * lda, lda, panels, bias, residual ? residual + (size_t)m0 * ldc : NULL,
                         C + (size_t)m0 * ldc, ldc,
                         act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act);
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}
