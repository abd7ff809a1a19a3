/* GEMM with fused bias and activation: the hot loop of Dense and Conv2D.
 *
 * Register-blocked microkernels: AVX-512 computes 12 rows x 32 columns (24
 * zmm accumulators), AVX2+FMA 4 rows x 16 columns (8 ymm accumulators); the
 * column tail uses masks (AVX-512) or a scalar loop. B is read in place (the
 * Keras kernel layout (K, N) is already row-major), A rows are contiguous.
 * The implementation is chosen once at run time from the CPU's features.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#if BNK_X86
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- sigmoid */

/* exp(x) for x in [-87, 88]: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial. */
static inline float fast_exp(float x) {
    if (x < -87.0f) return 0.0f;
    if (x > 88.0f) x = 88.0f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int e = (int)n + 127;
    union { int i; float f; } scale = { .i = e << 23 };
    return p * scale.f;
}

BNK_CLONES
void bnk_sigmoid(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + fast_exp(-x[i]));
}

static inline float activate1(float v, int act) {
    switch (act) {
    case BNK_ACT_RELU: return v > 0 ? v : 0;
    case BNK_ACT_RELU6: return v < 0 ? 0 : (v > 6 ? 6 : v);
    case BNK_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

void bnk_gemm_reference(int M, int N, int K, const float *A, int lda, const float *B,
                        const float *bias, float *C, int ldc, int act) {
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        for (int n = 0; n < N; n++) c[n] = bias ? bias[n] : 0.0f;
        const float *a = A + (size_t)m * lda;
        for (int k = 0; k < K; k++) {
            float av = a[k];
            const float *b = B + (size_t)k * N;
            for (int n = 0; n < N; n++) c[n] += av * b[n];
        }
        if (act != BNK_ACT_LINEAR && act != BNK_ACT_SIGMOID)
            for (int n = 0; n < N; n++) c[n] = activate1(c[n], act);
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

#if BNK_X86
/* ---------------------------------------------------------------- AVX-512 */


/* Column blocks of at most 16: one zmm per row, 12 rows. */
__attribute__((target("avx512f")))
static void gemm_avx512_narrow(int M, int N, int n0, int K, const float *A, int lda, const float *B,
                               const float *bias, float *C, int ldc, int elementwise) {
    int width = N - n0;
    __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
    int m = 0;
    for (; m + 12 <= M; m += 12) {
        __m512 c0 = bias0, c1 = bias0, c2 = bias0, c3 = bias0, c4 = bias0, c5 = bias0, c6 = bias0, c7 = bias0, c8 = bias0, c9 = bias0, c10 = bias0, c11 = bias0;
        const float *a0 = A + (size_t)m * lda;
            const float *a1 = a0 + lda;
            const float *a2 = a1 + lda;
            const float *a3 = a2 + lda;
            const float *a4 = a3 + lda;
            const float *a5 = a4 + lda;
            const float *a6 = a5 + lda;
            const float *a7 = a6 + lda;
            const float *a8 = a7 + lda;
            const float *a9 = a8 + lda;
            const float *a10 = a9 + lda;
            const float *a11 = a10 + lda;
        const float *b = B + n0;
        for (int k = 0; k < K; k++, b += N) {
            __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
            c0 = _mm512_fmadd_ps(_mm512_set1_ps(a0[k]), b0, c0);
                c1 = _mm512_fmadd_ps(_mm512_set1_ps(a1[k]), b0, c1);
                c2 = _mm512_fmadd_ps(_mm512_set1_ps(a2[k]), b0, c2);
                c3 = _mm512_fmadd_ps(_mm512_set1_ps(a3[k]), b0, c3);
                c4 = _mm512_fmadd_ps(_mm512_set1_ps(a4[k]), b0, c4);
                c5 = _mm512_fmadd_ps(_mm512_set1_ps(a5[k]), b0, c5);
                c6 = _mm512_fmadd_ps(_mm512_set1_ps(a6[k]), b0, c6);
                c7 = _mm512_fmadd_ps(_mm512_set1_ps(a7[k]), b0, c7);
                c8 = _mm512_fmadd_ps(_mm512_set1_ps(a8[k]), b0, c8);
                c9 = _mm512_fmadd_ps(_mm512_set1_ps(a9[k]), b0, c9);
                c10 = _mm512_fmadd_ps(_mm512_set1_ps(a10[k]), b0, c10);
                c11 = _mm512_fmadd_ps(_mm512_set1_ps(a11[k]), b0, c11);
        }
        float *c = C + (size_t)m * ldc + n0;
        _mm512_mask_storeu_ps(c + (size_t)0 * ldc, mask0, bnk_act512(c0, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)1 * ldc, mask0, bnk_act512(c1, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)2 * ldc, mask0, bnk_act512(c2, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)3 * ldc, mask0, bnk_act512(c3, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)4 * ldc, mask0, bnk_act512(c4, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)5 * ldc, mask0, bnk_act512(c5, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)6 * ldc, mask0, bnk_act512(c6, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)7 * ldc, mask0, bnk_act512(c7, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)8 * ldc, mask0, bnk_act512(c8, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)9 * ldc, mask0, bnk_act512(c9, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)10 * ldc, mask0, bnk_act512(c10, elementwise));
            _mm512_mask_storeu_ps(c + (size_t)11 * ldc, mask0, bnk_act512(c11, elementwise));
    }
    for (; m < M; m++) {
        __m512 c0 = bias0;
        const float *a = A + (size_t)m * lda;
        const float *b = B + n0;
        for (int k = 0; k < K; k++, b += N) c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), _mm512_maskz_loadu_ps(mask0, b), c0);
        _mm512_mask_storeu_ps(C + (size_t)m * ldc + n0, mask0, bnk_act512(c0, elementwise));
    }
}

#define MR512 12
__attribute__((target("avx512f")))
static void gemm_avx512(int M, int N, int K, const float *A, int lda, const float *B,
                        const float *bias, float *C, int ldc, int act) {
    int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    for (int n0 = 0; n0 < N; n0 += 32) {
        int width = N - n0 < 32 ? N - n0 : 32;
        if (width <= 16) {
            gemm_avx512_narrow(M, N, n0, K, A, lda, B, bias, C, ldc, elementwise);
            continue;
        }
        __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
        __mmask16 mask1 = width <= 16 ? 0 : (width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1));
        __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
        __m512 bias1 = bias ? _mm512_maskz_loadu_ps(mask1, bias + n0 + 16) : _mm512_setzero_ps();
#define STORE_ROW(r, lo, hi) \
            _mm512_mask_storeu_ps(c + (size_t)(r) * ldc, mask0, bnk_act512(lo, elementwise)); \
            _mm512_mask_storeu_ps(c + (size_t)(r) * ldc + 16, mask1, bnk_act512(hi, elementwise));
        int m = 0;
        for (; m + MR512 <= M; m += MR512) {
            __m512 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1, c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1, c60 = bias0, c61 = bias1, c70 = bias0, c71 = bias1, c80 = bias0, c81 = bias1, c90 = bias0, c91 = bias1, c100 = bias0, c101 = bias1, c110 = bias0, c111 = bias1;
            const float *a0 = A + (size_t)m * lda;
            const float *a1 = a0 + lda;
            const float *a2 = a1 + lda;
            const float *a3 = a2 + lda;
            const float *a4 = a3 + lda;
            const float *a5 = a4 + lda;
            const float *a6 = a5 + lda;
            const float *a7 = a6 + lda;
            const float *a8 = a7 + lda;
            const float *a9 = a8 + lda;
            const float *a10 = a9 + lda;
            const float *a11 = a10 + lda;
            const float *b = B + n0;
            for (int k = 0; k < K; k++, b += N) {
                __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
                __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + 16);
                __m512 x;
                x = _mm512_set1_ps(a0[k]); c00 = _mm512_fmadd_ps(x, b0, c00); c01 = _mm512_fmadd_ps(x, b1, c01);
                x = _mm512_set1_ps(a1[k]); c10 = _mm512_fmadd_ps(x, b0, c10); c11 = _mm512_fmadd_ps(x, b1, c11);
                x = _mm512_set1_ps(a2[k]); c20 = _mm512_fmadd_ps(x, b0, c20); c21 = _mm512_fmadd_ps(x, b1, c21);
                x = _mm512_set1_ps(a3[k]); c30 = _mm512_fmadd_ps(x, b0, c30); c31 = _mm512_fmadd_ps(x, b1, c31);
                x = _mm512_set1_ps(a4[k]); c40 = _mm512_fmadd_ps(x, b0, c40); c41 = _mm512_fmadd_ps(x, b1, c41);
                x = _mm512_set1_ps(a5[k]); c50 = _mm512_fmadd_ps(x, b0, c50); c51 = _mm512_fmadd_ps(x, b1, c51);
                x = _mm512_set1_ps(a6[k]); c60 = _mm512_fmadd_ps(x, b0, c60); c61 = _mm512_fmadd_ps(x, b1, c61);
                x = _mm512_set1_ps(a7[k]); c70 = _mm512_fmadd_ps(x, b0, c70); c71 = _mm512_fmadd_ps(x, b1, c71);
                x = _mm512_set1_ps(a8[k]); c80 = _mm512_fmadd_ps(x, b0, c80); c81 = _mm512_fmadd_ps(x, b1, c81);
                x = _mm512_set1_ps(a9[k]); c90 = _mm512_fmadd_ps(x, b0, c90); c91 = _mm512_fmadd_ps(x, b1, c91);
                x = _mm512_set1_ps(a10[k]); c100 = _mm512_fmadd_ps(x, b0, c100); c101 = _mm512_fmadd_ps(x, b1, c101);
                x = _mm512_set1_ps(a11[k]); c110 = _mm512_fmadd_ps(x, b0, c110); c111 = _mm512_fmadd_ps(x, b1, c111);
            }
            float *c = C + (size_t)m * ldc + n0;
            STORE_ROW(0, c00, c01) STORE_ROW(1, c10, c11) STORE_ROW(2, c20, c21) STORE_ROW(3, c30, c31) STORE_ROW(4, c40, c41) STORE_ROW(5, c50, c51) STORE_ROW(6, c60, c61) STORE_ROW(7, c70, c71) STORE_ROW(8, c80, c81) STORE_ROW(9, c90, c91) STORE_ROW(10, c100, c101) STORE_ROW(11, c110, c111)
        }
        for (; m < M; m++) {
            __m512 c0 = bias0, c1 = bias1;
            const float *a = A + (size_t)m * lda;
            const float *b = B + n0;
            for (int k = 0; k < K; k++, b += N) {
                __m512 x = _mm512_set1_ps(a[k]);
                c0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(mask0, b), c0);
                c1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(mask1, b + 16), c1);
            }
            float *c = C + (size_t)m * ldc + n0;
            STORE_ROW(0, c0, c1)
        }
#undef STORE_ROW
    }
    if (act == BNK_ACT_SIGMOID)
        for (int m = 0; m < M; m++) bnk_sigmoid(C + (size_t)m * ldc, (size_t)N);
}

/* ---------------------------------------------------------------- AVX2 */

__attribute__((target("avx2,fma")))
static void gemm_avx2(int M, int N, int K, const float *A, int lda, const float *B,
                      const float *bias, float *C, int ldc, int act) {
    int n0 = 0;
    for (; n0 + 16 <= N; n0 += 16) {
        __m256 bias0 = bias ? _mm256_loadu_ps(bias + n0) : _mm256_setzero_ps();
        __m256 bias1 = bias ? _mm256_loadu_ps(bias + n0 + 8) : _mm256_setzero_ps();
        int m = 0;
        for (; m + 4 <= M; m += 4) {
            __m256 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
            const float *a0 = A + (size_t)m * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            const float *b = B + n0;
            for (int k = 0; k < K; k++, b += N) {
                __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
                x = _mm256_set1_ps(a0[k]); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_set1_ps(a1[k]); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                x = _mm256_set1_ps(a2[k]); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                x = _mm256_set1_ps(a3[k]); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
            }
            float *c = C + (size_t)m * ldc + n0;
            _mm256_storeu_ps(c, c00); _mm256_storeu_ps(c + 8, c01);
            _mm256_storeu_ps(c + ldc, c10); _mm256_storeu_ps(c + ldc + 8, c11);
            _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
            _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
        }
        for (; m < M; m++) {
            __m256 c0 = bias0, c1 = bias1;
            const float *a = A + (size_t)m * lda;
            const float *b = B + n0;
            for (int k = 0; k < K; k++, b += N) {
                __m256 x = _mm256_set1_ps(a[k]);
                c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b), c0);
                c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 8), c1);
            }
            _mm256_storeu_ps(C + (size_t)m * ldc + n0, c0);
            _mm256_storeu_ps(C + (size_t)m * ldc + n0 + 8, c1);
        }
    }
    /* Column tail: the reference loop over the remaining columns. */
    if (n0 < N) {
        int rest = N - n0;
        for (int m = 0; m < M; m++) {
            float *c = C + (size_t)m * ldc + n0;
            for (int n = 0; n < rest; n++) c[n] = bias ? bias[n0 + n] : 0.0f;
            const float *a = A + (size_t)m * lda;
            for (int k = 0; k < K; k++) {
                float av = a[k];
                const float *b = B + (size_t)k * N + n0;
                for (int n = 0; n < rest; n++) c[n] += av * b[n];
            }
        }
    }
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        if (act == BNK_ACT_SIGMOID) bnk_sigmoid(c, (size_t)N);
        else if (act != BNK_ACT_LINEAR) for (int n = 0; n < N; n++) c[n] = activate1(c[n], act);
    }
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

typedef void (*gemm_fn)(int, int, int, const float *, int, const float *, const float *, float *, int, int);
static gemm_fn chosen = 0;
static const char *chosen_name = "generic";

static void choose(void) {
#if BNK_X86
    if (bnk_use_avx512()) { chosen = gemm_avx512; chosen_name = "avx512"; return; }
    if (bnk_use_avx2()) { chosen = gemm_avx2; chosen_name = "avx2"; return; }
#endif
    chosen = bnk_gemm_reference; chosen_name = "generic";
}

void bnk_limit_isa(int level) {
    isa_limit = level;
    choose();
}

void bnk_gemm(int M, int N, int K, const float *A, int lda, const float *B,
              const float *bias, float *C, int ldc, int act) {
    if (!chosen) choose();
    if (M <= 0 || N <= 0) return;
    chosen(M, N, K, A, lda, B, bias, C, ldc, act);
}

const char *bnk_gemm_isa(void) {
    if (!chosen) choose();
    return chosen_name;
}
