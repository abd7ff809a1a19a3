/* GEMM with fused bias and activation: the hot loop of Dense and Conv2D.
 *
 * Register-blocked microkernels (microkernels.c): AVX-512 up to 12 rows x 32 columns
 * (24 zmm accumulators), AVX2+FMA up to 6 rows x 16 columns (12 ymm accumulators), and on
 * arm64 NEON up to 6 rows x 16 columns (24 q accumulators; microkernels_neon.c), the rows split
 * evenly into blocks. The Keras kernel layout
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
#include <unistd.h>

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

/* The portable kernels' tile: acc[r][j] += a[r][k] * b[k][j], k increasing, for four rows of A
   (lda apart) and n <= 8 columns of B (rows bstride apart). The 32 sums stay in registers (8 vectors
   of 4: half of SSE2's 16 registers, a quarter of NEON's 32) and each value of B read serves four
   rows; a whole 8 columns go with a fixed count, which the compiler makes vectors of. */
static inline __attribute__((always_inline)) void sums_4x8(int K, const float *restrict a, int lda, const float *restrict b, size_t bstride,
                                                          int n, float acc[restrict 4][8]) {
    if (n == 8)
        for (int k = 0; k < K; k++, b += bstride)
            for (int r = 0; r < 4; r++) {
                const float av = a[(size_t)r * lda + k];
                for (int j = 0; j < 8; j++) acc[r][j] += av * b[j];
            }
    else
        for (int k = 0; k < K; k++, b += bstride)
            for (int r = 0; r < 4; r++) {
                const float av = a[(size_t)r * lda + k];
                for (int j = 0; j < n; j++) acc[r][j] += av * b[j];
            }
}

/* The portable kernel: the reference's sums (from the bias, k increasing), four rows by eight
   columns at a time (sums_4x8) instead of the reference's row of C read and written at every k;
   the last rows one at a time, eight columns at a time. */
static void gemm_generic(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                         const float *bias, float *C, int ldc, int act) {
    enum { ROWS = 4, COLS = 8 };
    int m = 0;
    for (; m + ROWS <= M; m += ROWS)
        for (int n0 = 0; n0 < N; n0 += COLS) {
            const int n = N - n0 < COLS ? N - n0 : COLS;
            float acc[ROWS][COLS];
            for (int r = 0; r < ROWS; r++)
                for (int j = 0; j < COLS; j++) acc[r][j] = bias && j < n ? bias[n0 + j] : 0.0f;
            sums_4x8(K, A + (size_t)m * lda, lda, B + n0, (size_t)ldb, n, acc);
            for (int r = 0; r < ROWS; r++) {
                float *c = C + (size_t)(m + r) * ldc + n0;
                for (int j = 0; j < n; j++) c[j] = act == BNK_ACT_SIGMOID ? acc[r][j] : activate1(acc[r][j], act);
            }
        }
    for (; m < M; m++)
        for (int n0 = 0; n0 < N; n0 += COLS) {
            const int n = N - n0 < COLS ? N - n0 : COLS;
            float acc[COLS];
            for (int j = 0; j < COLS; j++) acc[j] = bias && j < n ? bias[n0 + j] : 0.0f;
            const float *a = A + (size_t)m * lda;
            for (int k = 0; k < K; k++) {
                const float av = a[k], *b = B + (size_t)k * ldb + n0;
                for (int j = 0; j < n; j++) acc[j] += av * b[j];
            }
            float *c = C + (size_t)m * ldc + n0;
            for (int j = 0; j < n; j++) c[j] = act == BNK_ACT_SIGMOID ? acc[j] : activate1(acc[j], act);
        }
    if (act == BNK_ACT_SIGMOID)
        for (int r = 0; r < M; r++) bnk_sigmoid(C + (size_t)r * ldc, (size_t)N);
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

__attribute__((target("avx512f")))
static void gemm_avx512(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        const float *bias, float *C, int ldc, int act) {
    int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    /* Pack when more than one row block reads the panel. */
    float *pk = M > 12 ? bnk_panel((size_t)K * 64) : NULL;
    for (int n0 = 0; n0 < N; n0 += 64) {
        int width = N - n0 < 64 ? N - n0 : 64;
        if (pk) {
            const int stride = bnk_pack_block_avx512(B + n0, ldb, (size_t)K, width, pk);
            bnk_block_avx512(M, n0, width, 1, K, A, lda, NULL, pk, pk + 16, stride, bias, NULL, C, ldc, elementwise, NULL);
        } else {
            /* Few rows: B read in place (the narrow kernel masks its loads; a wide block has 16 full columns). */
            bnk_block_avx512(M, n0, width, 1, K, A, lda, NULL, B + n0, B + n0 + 16, ldb, bias, NULL, C, ldc, elementwise, NULL);
        }
    }
    if (act == BNK_ACT_SIGMOID)
        bnk_sigmoid_rows(C, M, N, ldc);
}

#endif /* BNK_X86 */

#if BNK_X86 || BNK_NEON
/* The AVX2 and NEON GEMM (tiles of 16 columns): B packed per call into a 16-wide panel (zero past
   the last column) except a full block read by few rows, which is read in place. */
static void gemm_block16(bnk_block16_fn block, bnk_pack16_fn pack, int M, int N, int K, const float *A, int lda,
                         const float *B, int ldb, const float *bias, float *C, int ldc, int act) {
    int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    float *pk = bnk_panel((size_t)K * 16);
    if (!pk) { gemm_reference(M, N, K, A, lda, B, ldb, bias, C, ldc, act); return; }
    for (int n0 = 0; n0 < N; n0 += 16) {
        int width = N - n0 < 16 ? N - n0 : 16;
        if (width < 16 || M >= 12) {
            pack(B + n0, ldb, (size_t)K, width, pk);
            block(M, n0, width, 1, K, A, lda, NULL, pk, 16, bias, NULL, C, ldc, elementwise, NULL);
        } else {
            block(M, n0, width, 1, K, A, lda, NULL, B + n0, ldb, bias, NULL, C, ldc, elementwise, NULL);
        }
    }
    if (act == BNK_ACT_SIGMOID)
        bnk_sigmoid_rows(C, M, N, ldc);
}
#endif

#if BNK_X86
/* ---------------------------------------------------------------- AVX2 */

static void gemm_avx2(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc, int act) {
    gemm_block16(bnk_block_avx2, bnk_pack_block_avx2, M, N, K, A, lda, B, ldb, bias, C, ldc, act);
}
#endif /* BNK_X86 */

#if BNK_NEON
/* ---------------------------------------------------------------- NEON (arm64) */

static void gemm_neon(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc, int act) {
    gemm_block16(bnk_block_neon, bnk_pack_block_neon, M, N, K, A, lda, B, ldb, bias, C, ldc, act);
}
#endif /* BNK_NEON */

/* ---------------------------------------------------------------- dispatch */

static int isa_limit = 2;

/* The environment's cap (BNKIT_MAX_ISA=avx2 or generic) applied to isa_limit, then `flag` set:
   a thread that sees the flag set sees the cap too (workers may ask first, at the same time; each
   reads and applies the same cap). Before, the CPU's features were published first, and a worker
   asking while another applied the cap could run its share of a step at AVX-512 under
   BNKIT_MAX_ISA=generic (RegNetX's grouped convs, split by groups on two threads, came out
   different in 3 runs of 12). */
static void apply_environment_cap(int *flag) {
    const char *cap = getenv("BNKIT_MAX_ISA");
    if (cap && strcmp(cap, "avx2") == 0 && __atomic_load_n(&isa_limit, __ATOMIC_RELAXED) > 1)
        __atomic_store_n(&isa_limit, 1, __ATOMIC_RELAXED);
    if (cap && strcmp(cap, "generic") == 0) __atomic_store_n(&isa_limit, 0, __ATOMIC_RELAXED);
    __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
}

static int limit(void) { return __atomic_load_n(&isa_limit, __ATOMIC_RELAXED); }

#if BNK_X86
/* What the CPU has, read once (the kernels ask per call). BNKIT_MAX_ISA=avx2 or generic in the
   environment caps it from the start (to measure or check the AVX2 or portable paths of the
   command-line tools on an AVX-512 machine); bnk_limit_isa changes the cap later. */
static int cpu_avx512, cpu_avx2, cpu_read;

static void read_cpu(void) {
    __builtin_cpu_init();
    cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cpu_avx512 = __builtin_cpu_supports("avx512f");
    apply_environment_cap(&cpu_read);
}
#endif

#if BNK_NEON
/* arm64: BNKIT_MAX_ISA=generic caps the kernels at the portable C (read once, as on x86). */
static int neon_read;
#endif

int bnk_use_neon(void) {
#if BNK_NEON
    if (!__atomic_load_n(&neon_read, __ATOMIC_ACQUIRE)) apply_environment_cap(&neon_read);
    return limit() >= 1;
#else
    return 0;
#endif
}

int bnk_use_avx512(void) {
#if BNK_X86
    if (!__atomic_load_n(&cpu_read, __ATOMIC_ACQUIRE)) read_cpu();
    return limit() >= 2 && cpu_avx512;
#else
    return 0;
#endif
}

int bnk_use_avx2(void) {
#if BNK_X86
    if (!__atomic_load_n(&cpu_read, __ATOMIC_ACQUIRE)) read_cpu();
    return limit() >= 1 && cpu_avx2;
#else
    return 0;
#endif
}

const char *bnk_isa_name(void) {
    /* (arm64: "generic" for the kernels compiled from one C body, BNK_VARIANTS; only the GEMM,
       bnk_gemm_isa, has a NEON version of its own) */
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
#if BNK_NEON
    if (bnk_use_neon()) { chosen = gemm_neon; chosen_name = "neon"; return; }
#endif
    chosen = gemm_generic; chosen_name = "generic";
}

void bnk_limit_isa(int level) {
    __atomic_store_n(&isa_limit, level, __ATOMIC_RELAXED);
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

/* The portable kernel over panels: each sum from the bias, k increasing. Four rows by half a panel
   (8 columns) at a time (sums_4x8: the panel's zero padding read as whole columns); the last rows
   one at a time over the whole panel. The same sums, in the same order, either way. */
static void gemm_panels_generic(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                                const float *R, float *C, int ldc, int act) {
    enum { ROWS = 4, HALF = BNK_PANEL / 2 };
    for (int n0 = 0; n0 < N; n0 += BNK_PANEL) {
        const int width = N - n0 < BNK_PANEL ? N - n0 : BNK_PANEL;
        const float *p = panels + (size_t)(n0 / BNK_PANEL) * K * BNK_PANEL;
        int m = 0;
        for (; m + ROWS <= M; m += ROWS)
            for (int h = 0; h < width; h += HALF) {
                float acc[ROWS][HALF];
                for (int r = 0; r < ROWS; r++)
                    for (int j = 0; j < HALF; j++) acc[r][j] = bias && h + j < width ? bias[n0 + h + j] : 0.0f;
                sums_4x8(K, A + (size_t)m * lda, lda, p + h, BNK_PANEL, HALF, acc);
                const int n = width - h < HALF ? width - h : HALF;
                for (int r = 0; r < ROWS; r++) {
                    float *c = C + (size_t)(m + r) * ldc + n0 + h;
                    if (R) for (int j = 0; j < n; j++) acc[r][j] += R[(size_t)(m + r) * ldc + n0 + h + j];
                    for (int j = 0; j < n; j++) c[j] = activate1(acc[r][j], act);
                }
            }
        for (; m < M; m++) {
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
                             float *C, int ldc, int elementwise, int ahead, const float *then) {
#if BNK_X86
    const size_t panel = (size_t)K * BNK_PANEL;
    if (bnk_use_avx512()) {
        /* bnk_avx512_block_columns (isa.h): 7 to 10 rows whose 64-column blocks of panels are over
           1 MiB (more than L2) take 32-column blocks of one 12-row tile, which reads the weights
           once; two 6-row tiles read each block twice, the second time from L3. M x 4608 x 512,
           weights from memory, AMD Zen 4, 4 alternating runs: 7 rows 512-620 -> 390-456 us, 8
           506-574 -> 405-483, 9 488-610 -> 438-539, 10 558-652 -> 507-647; but 11 490-547 ->
           537-618 and 12 574-668 -> 594-650 (twelve row pointers no longer fit the general
           registers), 49 rows 2101-2153 -> 2287-2405, and a K of 2048 (the block fits L2) no
           gain. ResNet50 96's last three 3x3 convs at batch 1 (9 rows, by the indirect conv):
           161-171 -> 134-164 ms in profiled runs of 96 images. */
        const int step = bnk_avx512_block_columns(M, (size_t)K);
        for (int n0 = 0; n0 < N; n0 += step) {
            const int width = N - n0 < step ? N - n0 : step;
            const float *p = panels + (size_t)(n0 / BNK_PANEL) * panel;
            bnk_block_avx512(M, n0, width, 1, K, A, lda, NULL, p, width > 16 ? p + panel : p, BNK_PANEL, bias, R, C, ldc, elementwise,
                             !ahead ? NULL : n0 + step < N ? p + (size_t)(step / BNK_PANEL) * panel : then);
        }
        return;
    }
#endif
#if BNK_X86 || BNK_NEON
    /* AVX2 and NEON: tiles of one panel (16 columns) */
    bnk_block16_fn block16 = NULL;
#if BNK_X86
    if (bnk_use_avx2()) block16 = bnk_block_avx2;
#else
    if (bnk_use_neon()) block16 = bnk_block_neon;
#endif
    if (block16) {
        const size_t panel16 = (size_t)K * BNK_PANEL;
        for (int n0 = 0; n0 < N; n0 += BNK_PANEL) {
            const int width = N - n0 < BNK_PANEL ? N - n0 : BNK_PANEL;
            const float *p = panels + (size_t)(n0 / BNK_PANEL) * panel16;
            block16(M, n0, width, 1, K, A, lda, NULL, p, BNK_PANEL, bias, R, C, ldc, elementwise,
                    !ahead ? NULL : n0 + BNK_PANEL < N ? p + panel16 : then);
        }
        return;
    }
#endif
    gemm_panels_generic(M, N, K, A, lda, panels, bias, R, C, ldc, elementwise);
}

static size_t l2_override, l2_read;

size_t bnk_l2_bytes(void) {
    const size_t forced = __atomic_load_n(&l2_override, __ATOMIC_RELAXED);
    if (forced) return forced;
    size_t bytes = __atomic_load_n(&l2_read, __ATOMIC_RELAXED);
    if (!bytes) {
        long value = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        value = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        bytes = value >= (64L << 10) ? (size_t)value : (size_t)1 << 20;
        __atomic_store_n(&l2_read, bytes, __ATOMIC_RELAXED);
    }
    return bytes;
}

void bnk_set_l2_bytes(size_t bytes) { __atomic_store_n(&l2_override, bytes, __ATOMIC_RELAXED); }

/* The largest A a GEMM over large panels takes whole (rows_per_chunk): twice the L2, at most
   2 MiB. 2 MiB was set on the AMD Zen 4 (1 MiB of L2), where it stays. With half that L2 (AMD
   Zen 2 and 3), an A of 1 to 2 MiB, read again from L3 for every 16-column panel, was slower than
   chunks of 256 KiB that stay in L2 while B's panels are read again per chunk: bnk_gemm_panels
   with ReLU, hot, one thread, AMD Zen 3 (family 25 model 1), L2 of 1 MiB and of 512 KiB set by
   bnk_set_l2_bytes alternating in one process, medians of 500 rounds, two runs (GFLOP/s; rounds
   the chunks won): 400 x 728 -> 728 (Xception 160's 20x20 separable convs) 93.6, 91.7 -> 94.5,
   92.9 (62%, 61%); 784 x 512 -> 128 (ResNet50 224's conv3 at batch 1) 94.5, 94.3 -> 95.4, 96.6
   (60%, 64%); 1521 x 256 -> 256 (Xception 160's 39x39 maps) 87.8, 88.8 -> 91.5, 92.6 (72%, 78%);
   392 x 1024 -> 256 90.5, 89.7 -> 91.9, 91.2 (63%, 68%). The portable C (bnk_limit_isa(0)), 100
   rounds, two runs: 400 x 728 -> 728 26.5, 27.2 -> 27.4, 27.6 (57%, 58%); 1521 x 256 -> 256
   26.0, 26.1 -> 26.5, 26.3 (63%, 61%). Under the old rule the whole A also
   varied most with the host's load on L3 (55-97 GFLOP/s over minutes for 400 x 728 -> 728). */
static size_t whole_a_bytes(void) {
    const size_t twice = 2 * bnk_l2_bytes();
    return twice < ((size_t)2 << 20) ? twice : (size_t)2 << 20;
}

/* Rows per chunk (every column block is done for one chunk of rows before the next). When all
   of B's panels fit comfortably in L2 (up to 128 KiB), chunks of 96 rows: each chunk of A is
   read from L1 and each row of C written once, in order (a pointwise conv with few inputs and
   many pixels is bound by its output otherwise). A larger B goes column block by column block
   over all rows, so each block's panels stay in cache, while A fits in twice the L2, at most 2 MiB (whole_a_bytes; batch 1:
   A is read from L2/L3 once per block, and B once). A larger A (a batch of maps: ResNet50's
   12544 x 512 at batch 16, 25 MB) would be streamed from memory once per column block, so it
   goes in chunks of about 256 KiB of A (at least 48 rows, the chunks even), B's panels read
   again per chunk from L2/L3 instead: 12544 x 128 x 512 from beyond L3, AMD Zen 4, AVX2
   33-35 -> 17 ms, AVX-512 17.6-17.9 -> 15.6-16.0 ms (best of 20). */
static int rows_per_chunk(int M, int N, int K) {
    if (bnk_panels_floats(K, N) <= 32768) return 96;
    const size_t a_bytes = (size_t)M * K * sizeof(float);
    if (a_bytes <= whole_a_bytes()) return M;
    int rows = (int)((size_t)256 * 1024 / ((size_t)K * sizeof(float)));
    if (rows < 48) rows = 48;
    if (rows >= M) return M;
    const int chunks = (M + rows - 1) / rows;
    return (M + chunks - 1) / chunks;
}

/* The product chunk by chunk of rows (rows_per_chunk). ReLU and ReLU6 are applied by the microkernel as
   it stores; sigmoid, swish and hard-swish over each chunk of rows just stored, while it is in
   cache (EfficientNet's expansions: a separate pass over a 112x112x96 map read it back from
   memory). */
void bnk_gemm_panels(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias, const float *residual,
                     float *C, int ldc, int act) {
    /* the whole call's rows decide, not a chunk's */
    bnk_gemm_panels_streamed(M, N, K, A, lda, panels, bias, residual, C, ldc, act, bnk_stream_panels(M, K, N), NULL);
}

void bnk_gemm_panels_part(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                          const float *residual, float *C, int ldc, int act, int whole, const float *then) {
    bnk_gemm_panels_streamed(M, N, K, A, lda, panels, bias, residual, C, ldc, act, bnk_stream_panels(M, K, whole), then);
}

void bnk_gemm_panels_streamed(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                              const float *residual, float *C, int ldc, int act, int ahead, const float *then) {
    if (M <= 0 || N <= 0) return;
    const int chunk = rows_per_chunk(M, N, K);
    const int stored = act == BNK_ACT_RELU || act == BNK_ACT_RELU6 ? act : BNK_ACT_LINEAR;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        const int rows = M - m0 < chunk ? M - m0 : chunk;
        float *c = C + (size_t)m0 * ldc;
        gemm_panels_rows(rows, N, K, A + (size_t)m0 * lda, lda, panels, bias, residual ? residual + (size_t)m0 * ldc : NULL,
                         c, ldc, stored, ahead, m0 + rows >= M ? then : NULL);
        if (act == stored) continue;
        if (ldc == N) bnk_activate(c, c, (size_t)rows * N, act);
        else for (int m = 0; m < rows; m++) bnk_activate(c + (size_t)m * ldc, c + (size_t)m * ldc, (size_t)N, act);
    }
}
