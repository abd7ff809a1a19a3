/* Dense layers: the GEMM, or, when most inputs are zero, a row-by-row sum
 * over the nonzero inputs only.
 *
 * Image pixels (an MNIST digit is about 80% blank) and ReLU outputs are
 * mostly zeros, and a zero input adds nothing to any output. The sparse path
 * gathers each row's nonzero inputs, then adds their weight rows in order of
 * increasing k, starting from the bias, with fused multiply-adds: the same
 * operations in the same order as the GEMM of the same instruction set (AVX-512
 * or AVX2+FMA) minus the ones that add exact zeros, so the results are the same
 * (up to the sign of a zero).
 * Which path runs is decided per call from the share of zeros, and per layer
 * shape by measuring both (see bnk_dense).
 */
#include "bnkit_kernels.h"
#include "isa.h"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#if BNK_X86
#include <immintrin.h>

/* Nonzeros in A's M rows (lda apart). */
__attribute__((target("avx512f")))
static size_t count_nonzero(int M, int K, const float *A, size_t lda) {
    size_t count = 0;
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        for (int k = 0; k < K; k += 16) {
            __mmask16 in = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            __mmask16 nz = _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, a + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
            count += (size_t)__builtin_popcount(nz);
        }
    }
    return count;
}

__attribute__((target("avx512f")))
static void sparse_rows(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
                        float *C, int ldc, int act, int *index, float *value) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        int nnz = 0;
        for (int k = 0; k < K; k += 16) {
            __mmask16 in = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(in, a + k);
            __mmask16 nz = _mm512_mask_cmp_ps_mask(in, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            /* compress in registers, then a full store (the buffers have 16 spare slots): a
               compressing store to memory is microcoded and slow on some CPUs (AMD Zen 4). */
            _mm512_storeu_ps(value + nnz, _mm512_maskz_compress_ps(nz, v));
            _mm512_storeu_si512(index + nnz, _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(iota, _mm512_set1_epi32(k))));
            nnz += __builtin_popcount(nz);
        }
        float *c = C + (size_t)m * ldc;
        for (int n0 = 0; n0 < N; n0 += 64) {
            const int width = N - n0 < 64 ? N - n0 : 64;
            __mmask16 k0, k1, k2, k3;
            k0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
            k1 = width >= 32 ? 0xFFFF : width <= 16 ? 0 : (__mmask16)((1u << (width - 16)) - 1);
            k2 = width >= 48 ? 0xFFFF : width <= 32 ? 0 : (__mmask16)((1u << (width - 32)) - 1);
            k3 = width >= 64 ? 0xFFFF : width <= 48 ? 0 : (__mmask16)((1u << (width - 48)) - 1);
            const float *bn = bias ? bias + n0 : NULL;
            __m512 c0 = bn ? _mm512_maskz_loadu_ps(k0, bn) : _mm512_setzero_ps();
            __m512 c1 = bn ? _mm512_maskz_loadu_ps(k1, bn + 16) : _mm512_setzero_ps();
            __m512 c2 = bn ? _mm512_maskz_loadu_ps(k2, bn + 32) : _mm512_setzero_ps();
            __m512 c3 = bn ? _mm512_maskz_loadu_ps(k3, bn + 48) : _mm512_setzero_ps();
            const float *b = B + n0;
            if (width > 48) {
                for (int i = 0; i < nnz; i++) {
                    const float *row = b + (size_t)index[i] * N;
                    __m512 x = _mm512_set1_ps(value[i]);
                    c0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row), c0);
                    c1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16), c1);
                    c2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 32), c2);
                    c3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k3, row + 48), c3);
                }
            } else if (width > 32) {
                for (int i = 0; i < nnz; i++) {
                    const float *row = b + (size_t)index[i] * N;
                    __m512 x = _mm512_set1_ps(value[i]);
                    c0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row), c0);
                    c1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16), c1);
                    c2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k2, row + 32), c2);
                }
            } else if (width > 16) {
                for (int i = 0; i < nnz; i++) {
                    const float *row = b + (size_t)index[i] * N;
                    __m512 x = _mm512_set1_ps(value[i]);
                    c0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(row), c0);
                    c1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k1, row + 16), c1);
                }
            } else {
                for (int i = 0; i < nnz; i++) {
                    const float *row = b + (size_t)index[i] * N;
                    c0 = _mm512_fmadd_ps(_mm512_set1_ps(value[i]), _mm512_maskz_loadu_ps(k0, row), c0);
                }
            }
            int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
            _mm512_mask_storeu_ps(c + n0, k0, bnk_act512(c0, elementwise));
            if (k1) _mm512_mask_storeu_ps(c + n0 + 16, k1, bnk_act512(c1, elementwise));
            if (k2) _mm512_mask_storeu_ps(c + n0 + 32, k2, bnk_act512(c2, elementwise));
            if (k3) _mm512_mask_storeu_ps(c + n0 + 48, k3, bnk_act512(c3, elementwise));
        }
        if (act == BNK_ACT_SIGMOID) bnk_sigmoid(c, (size_t)N);
    }
}
/* Four rows at a time over the inputs that are nonzero in any of them (on MNIST
 * about 38% of the pixels for four digits, against 19% for one, but each weight
 * row loaded then serves four rows: fewer loads than one row at a time). Up to 64
 * columns (V vectors) per pass over the nonzeros: each index and broadcast then
 * serves every column (the seed MLP's 50 columns took two passes at 32). The next
 * group's rows are prefetched a line per nonzero while the sums run (a burst of them
 * at the group's start still left its first touch stalled). */
__attribute__((target("avx512f"), always_inline))
static inline void rows4_columns(const int V, int nnz, const int *index, int N, const float *b, const float *a0, const float *a1,
                                 const float *a2, const float *a3, const __mmask16 *mask, const float *bias, float *c, int ldc,
                                 int elementwise, const char *next, size_t next_bytes) {
    __m512 acc[4][4];
    for (int v = 0; v < V; v++) {
        const __m512 init = bias ? _mm512_maskz_loadu_ps(mask[v], bias + 16 * v) : _mm512_setzero_ps();
        for (int r = 0; r < 4; r++) acc[r][v] = init;
    }
    for (int i = 0; i < nnz; i++) {
        if ((size_t)i * 64 < next_bytes) _mm_prefetch(next + (size_t)i * 64, _MM_HINT_T0);
        const int k = index[i];
        const float *row = b + (size_t)k * N;
        __m512 w[4];
        for (int v = 0; v < V; v++) w[v] = v + 1 < V ? _mm512_loadu_ps(row + 16 * v) : _mm512_maskz_loadu_ps(mask[v], row + 16 * v);
        const __m512 x0 = _mm512_set1_ps(a0[k]), x1 = _mm512_set1_ps(a1[k]), x2 = _mm512_set1_ps(a2[k]), x3 = _mm512_set1_ps(a3[k]);
        for (int v = 0; v < V; v++) {
            acc[0][v] = _mm512_fmadd_ps(x0, w[v], acc[0][v]);
            acc[1][v] = _mm512_fmadd_ps(x1, w[v], acc[1][v]);
            acc[2][v] = _mm512_fmadd_ps(x2, w[v], acc[2][v]);
            acc[3][v] = _mm512_fmadd_ps(x3, w[v], acc[3][v]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < V; v++) _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16 * v, mask[v], bnk_act512(acc[r][v], elementwise));
}

__attribute__((target("avx512f")))
static void sparse_rows4(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
                         float *C, int ldc, int act, int *index) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    for (int m = 0; m + 4 <= M; m += 4) {
        const float *a0 = A + (size_t)m * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        /* The next group of four rows (if any), first to last byte. */
        const int ahead = M - m - 4 < 4 ? M - m - 4 : 4;
        const char *next = ahead > 0 ? (const char *)(a0 + 4 * (size_t)lda) : NULL;
        size_t next_bytes = ahead > 0 ? ((size_t)(ahead - 1) * lda + K) * sizeof(float) : 0;
        int nnz = 0;
        for (int k = 0; k < K; k += 16) {
            __mmask16 in = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            const __m512 z = _mm512_setzero_ps();
            __mmask16 nz = _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, a0 + k), z, _CMP_NEQ_UQ)
                         | _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, a1 + k), z, _CMP_NEQ_UQ)
                         | _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, a2 + k), z, _CMP_NEQ_UQ)
                         | _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, a3 + k), z, _CMP_NEQ_UQ);
            _mm512_storeu_si512(index + nnz, _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(iota, _mm512_set1_epi32(k))));
            nnz += __builtin_popcount(nz);
        }
        float *c = C + (size_t)m * ldc;
        for (int n0 = 0; n0 < N; n0 += 64) {
            const int width = N - n0 < 64 ? N - n0 : 64;
            __mmask16 mask[4];
            for (int v = 0; v < 4; v++) {
                const int lanes = width - 16 * v;
                mask[v] = lanes >= 16 ? 0xFFFF : lanes <= 0 ? 0 : (__mmask16)((1u << lanes) - 1);
            }
            const float *bn = bias ? bias + n0 : NULL;
            switch ((width + 15) / 16) {
            case 4: rows4_columns(4, nnz, index, N, B + n0, a0, a1, a2, a3, mask, bn, c + n0, ldc, elementwise, next, next_bytes); break;
            case 3: rows4_columns(3, nnz, index, N, B + n0, a0, a1, a2, a3, mask, bn, c + n0, ldc, elementwise, next, next_bytes); break;
            case 2: rows4_columns(2, nnz, index, N, B + n0, a0, a1, a2, a3, mask, bn, c + n0, ldc, elementwise, next, next_bytes); break;
            default: rows4_columns(1, nnz, index, N, B + n0, a0, a1, a2, a3, mask, bn, c + n0, ldc, elementwise, next, next_bytes); break;
            }
            next_bytes = 0;  /* fetched during the first block */
        }
        if (act == BNK_ACT_SIGMOID) bnk_sigmoid_rows(c, 4, N, ldc);
    }
}

/* AVX2+FMA: nonzeros counted 8 at a time. */
__attribute__((target("avx2,fma")))
static size_t count_nonzero_avx2(int M, int K, const float *A, size_t lda) {
    size_t count = 0;
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        int k = 0;
        for (; k + 8 <= K; k += 8)
            count += (size_t)__builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(a + k), _mm256_setzero_ps(), _CMP_NEQ_UQ)));
        for (; k < K; k++) count += a[k] != 0.0f;
    }
    return count;
}

/* One row at a time at AVX2 (the AVX-512 path above takes four): a row's own nonzeros only (on
   MNIST about 19% of the pixels, against 38% for the union of four digits), every column of a
   pass (up to 96: 12 accumulators, the weights read as FMA operands) per nonzero, so each index
   and broadcast serves them all. The positions of the row's nonzeros are gathered without
   branches: 8 inputs at a time, the nonzero lanes' positions moved to the front by a permutation
   from a 256-entry table (by the compare mask) and stored whole, the count advanced by the mask's
   popcount (a loop over the set bits mispredicted about once per 8 inputs). Bias first, then
   FMAs in increasing k, as the AVX2 GEMM: its results, bit for bit. */
static unsigned char pack_table[256][8];  /* lanes past the mask's popcount stay 0 (static) */

__attribute__((constructor))
static void fill_pack_table(void) {
    for (int m = 0; m < 256; m++) {
        int n = 0;
        for (int lane = 0; lane < 8; lane++)
            if (m & (1 << lane)) pack_table[m][n++] = (unsigned char)lane;
    }
}

/* The positions of a's K nonzero inputs (8 spare slots at the end). The sums broadcast the values
   from a itself (a copy of them, permuted like the positions, measured 4% slower). */
__attribute__((target("avx2,fma")))
static int gather_nonzero_avx2(int K, const float *a, int *index) {
    const __m256 zero = _mm256_setzero_ps();
    __m256i positions = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    int nnz = 0, k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 v = _mm256_loadu_ps(a + k);
        const int bits = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
        const __m256i order = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)pack_table[bits]));
        _mm256_storeu_si256((__m256i *)(index + nnz), _mm256_permutevar8x32_epi32(positions, order));
        nnz += __builtin_popcount((unsigned)bits);
        positions = _mm256_add_epi32(positions, eight);
    }
    for (; k < K; k++)
        if (a[k] != 0.0f) index[nnz++] = k;
    return nnz;
}

/* One row's columns n0..n0+8V (the last vector `tail` lanes wide, masked by `mask`), summed from
   `from` (the bias, zeros when NULL, or the sums over the inputs before these) into `to`; `from`
   and `to` have `from_tail` and `to_tail` lanes in their last vector (8 in the padded scratch rows,
   which a masked store would slow down: on AMD cores a masked AVX2 store is microcoded, and a load
   of it waits for it). */
__attribute__((target("avx2,fma"), always_inline))
static inline void row_columns_avx2(const int V, int nnz, const int *index, const float *a, int N, const float *b,
                                    int tail, __m256i mask, const float *from, int from_tail, float *to, int to_tail,
                                    int elementwise) {
    __m256 acc[12];
    for (int v = 0; v < V; v++) acc[v] = from ? bnk_load8(from + 8 * v, v + 1 < V ? 8 : from_tail, mask) : _mm256_setzero_ps();
    for (int i = 0; i < nnz; i++) {
        const float *row = b + (size_t)index[i] * N;
        const __m256 x = _mm256_broadcast_ss(a + index[i]);
        for (int v = 0; v + 1 < V; v++) acc[v] = _mm256_fmadd_ps(x, _mm256_loadu_ps(row + 8 * v), acc[v]);
        acc[V - 1] = _mm256_fmadd_ps(x, _mm256_maskload_ps(row + 8 * (V - 1), mask), acc[V - 1]);
    }
    for (int v = 0; v < V; v++) bnk_store8(to + 8 * v, v + 1 < V ? 8 : to_tail, mask, bnk_act256(acc[v], elementwise));
}

__attribute__((target("avx2,fma")))
static void row_avx2(int nnz, const int *index, const float *a, int N, const float *b, const float *from, int from_padded,
                     float *to, int to_padded, int elementwise) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int n0 = 0; n0 < N; n0 += 96) {
        const int width = N - n0 < 96 ? N - n0 : 96;
        const int tail = width - (width - 1) / 8 * 8;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), lanes);
        const float *f = from ? from + n0 : NULL;
        const int ft = from_padded ? 8 : tail, tt = to_padded ? 8 : tail;
        switch ((width + 7) / 8) {
#define CASE(V) case V: row_columns_avx2(V, nnz, index, a, N, b + n0, tail, mask, f, ft, to + n0, tt, elementwise); break;
        CASE(12) CASE(11) CASE(10) CASE(9) CASE(8) CASE(7) CASE(6) CASE(5) CASE(4) CASE(3) CASE(2)
        default: row_columns_avx2(1, nnz, index, a, N, b + n0, tail, mask, f, ft, to + n0, tt, elementwise); break;
#undef CASE
        }
    }
}

/* Batches in blocks of 32 rows, each block over the inputs in parts of about 32 KB of weight rows
   before the next part: a row's nonzeros reach weight rows anywhere in the matrix (the seed MLP's
   is 157 KB). On an AMD Zen 3, MNIST rows, seed MLP's first layer, ns a row at batch 64 / 1024:
   whole rows 805 / 638, parts of 8 KB 671 / 670, 16 KB 665 / 646, 32 KB 586 / 574, 64 KB 581 /
   570 (on an AMD Zen 4 capped at AVX2, best of 7: 24 and 32 KB best). Between parts a
   block's sums wait in a padded scratch as float32: the same values as summed in registers. One
   row (or no scratch) sums all its inputs at once.
   The block's nonzero positions are gathered first, row after row, each row whole and in order
   (its parts' positions one after another, each part's start kept): the reads of the batch are
   sequential, which the CPU's own prefetchers follow. Gathered per part within the parts' loop,
   the reads jumped a part (640 bytes) at a time from row to row and waited on memory even with
   software prefetches a few rows ahead: on an AMD Zen 4 capped at AVX2, 10,000 MNIST rows in
   calls of 64, 15 rounds alternating, median ns a row 661 -> 600 (best 622 -> 575; rows already
   in cache: 456 -> 452). Blocks of 32 rather than 64 rows keep the block's rows (100 KB), whose
   values the sums broadcast, in L2 beside the weights on a 512 KB L2 (AMD Zen 2); the same
   speed here as 64 with the next block prefetched during the sums. */
__attribute__((target("avx2,fma")))
static int sparse_rows_avx2(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
                            float *C, int ldc, int act) {
    const int elementwise = act == BNK_ACT_SIGMOID ? BNK_ACT_LINEAR : act;
    const int padded = (N + 7) / 8 * 8;
    int part = 32768 / (4 * N) / 8 * 8;
    if (part < 64) part = 64;
    if (M == 1 || part > K) part = K;
    const int block = M < 32 ? M : 32, parts = (K + part - 1) / part;
    /* positions (8 spare slots for whole-vector stores), each row's parts' starts, the scratch: in
       the thread's panel buffer (gemm.c; no GEMM runs while these sums do) */
    const size_t positions = (size_t)block * K + 8, starts = (size_t)block * parts + 1;
    const size_t scratch_floats = parts > 1 ? (size_t)block * padded : 0;
    void *memory = bnk_panel(positions + starts + scratch_floats);    /* int and float: 4 bytes each */
    if (!memory) return 0;
    int *index = memory, *start = index + positions;
    float *scratch = parts > 1 ? (float *)(start + starts) : NULL;
    for (int m0 = 0; m0 < M; m0 += block) {
        const int rows = M - m0 < block ? M - m0 : block;
        int total = 0;
        for (int r = 0; r < rows; r++) {
            const float *a = A + (size_t)(m0 + r) * lda;
            for (int p = 0, k0 = 0; p < parts; p++, k0 += part) {
                start[r * parts + p] = total;
                total += gather_nonzero_avx2(K - k0 < part ? K - k0 : part, a + k0, index + total);
            }
        }
        start[rows * parts] = total;
        for (int p = 0, k0 = 0; p < parts; p++, k0 += part) {
            const int first = p == 0, last = p + 1 == parts;
            for (int r = 0; r < rows; r++) {
                const int from = start[r * parts + p], to = start[r * parts + p + 1];
                float *c = C + (size_t)(m0 + r) * ldc, *s = scratch ? scratch + (size_t)r * padded : NULL;
                row_avx2(to - from, index + from, A + (size_t)(m0 + r) * lda + k0, N, B + (size_t)k0 * N,
                         first ? bias : s, !first, last ? c : s, !last, last ? elementwise : BNK_ACT_LINEAR);
            }
        }
        if (act == BNK_ACT_SIGMOID) bnk_sigmoid_rows(C + (size_t)m0 * ldc, rows, N, ldc);    /* the block's rows, in L1/L2 */
    }
    return 1;
}
#endif

int bnk_dense_sparse_available(void) { return bnk_use_avx512() || bnk_use_avx2(); }

void bnk_dense_sparse(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
                      float *C, int ldc, int act) {
#if BNK_X86
    if (bnk_use_avx512() && M > 0 && N > 0) {
        /* One row's nonzero inputs: their indices and values (16 spare slots for full-vector stores). */
        int stack_index[1024];
        float stack_value[1024];
        const int big = K + 16 > 1024;
        int *index = big ? malloc(sizeof(int) * (size_t)(K + 16)) : stack_index;
        float *value = big ? malloc(sizeof(float) * (size_t)(K + 16)) : stack_value;
        const int ok = index && value;
        if (ok) {
            const int blocked = M / 4 * 4;
            sparse_rows4(blocked, N, K, A, lda, B, bias, C, ldc, act, index);
            if (blocked < M)
                sparse_rows(M - blocked, N, K, A + (size_t)blocked * lda, lda, B, bias, C + (size_t)blocked * ldc, ldc, act, index, value);
        }
        if (big) { free(index); free(value); }
        if (ok) return;
    }
    if (bnk_use_avx2() && M > 0 && N > 0 && sparse_rows_avx2(M, N, K, A, lda, B, bias, C, ldc, act)) return;
#endif
    bnk_gemm(M, N, K, A, lda, B, bias, C, ldc, act);
}

#if BNK_X86
/* Which path is faster where both may run depends on the CPU (tools/kernel_bench.sh: the sparse
   path breaks even near 45% nonzero inputs on an AMD Zen 4, near 18% on an Intel Xeon of the
   Sapphire Rapids kind, near 30% at AVX2 on an AMD Zen 3), so it is measured: for each layer
   shape, the first eligible calls run each path in turn and time it per row; the path with the
   faster best trial is used from then on. Both give the same
   values (up to the sign of a zero), so the choice changes only the speed. */
enum { TRIALS = 4, SHAPES = 32 };
static struct { int n, k, isa, runs[2]; double seconds[2]; } tuning[SHAPES];
static pthread_mutex_t tuning_lock = PTHREAD_MUTEX_INITIALIZER;

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The path to run (1 sparse, 0 GEMM) and, while measuring, the entry to report to (else -1). */
static int choose_sparse(int N, int K, int isa, int *entry) {
    pthread_mutex_lock(&tuning_lock);
    int i = 0;
    while (i < SHAPES && tuning[i].n && !(tuning[i].n == N && tuning[i].k == K && tuning[i].isa == isa)) i++;
    int sparse = 1;
    *entry = -1;
    if (i < SHAPES) {
        if (!tuning[i].n) { tuning[i].n = N; tuning[i].k = K; tuning[i].isa = isa; }
        if (tuning[i].runs[0] < TRIALS || tuning[i].runs[1] < TRIALS) {
            sparse = tuning[i].runs[1] <= tuning[i].runs[0];
            *entry = i;
        } else {
            sparse = tuning[i].seconds[1] <= tuning[i].seconds[0];
        }
    }
    pthread_mutex_unlock(&tuning_lock);
    return sparse;
}

static void report(int entry, int sparse, double seconds_per_row) {
    pthread_mutex_lock(&tuning_lock);
    /* The fastest of the trials: a first call's cold caches or a preemption would weigh on a
       mean (at batch 1 one such call outweighed the other trials, and the slower path won). */
    if (!tuning[entry].runs[sparse] || seconds_per_row < tuning[entry].seconds[sparse]) tuning[entry].seconds[sparse] = seconds_per_row;
    tuning[entry].runs[sparse]++;
    pthread_mutex_unlock(&tuning_lock);
}
#endif

void bnk_dense(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
               float *C, int ldc, int act) {
#if BNK_X86
    /* Eligible when at most a third of the inputs are nonzero. */
    const int isa = bnk_use_avx512() ? 2 : bnk_use_avx2() ? 1 : 0;
    /* The share of zeros from the first 8 rows: counting every row read the whole batch from
       memory ahead of the sums, a third of the seed MLP's time at batch 64 on AMD Zen 5. The first
       rows are the ones the sums read first, so the count's reads are not lost; every eighth row
       (the sample before) cost the sums a stall on each: on an AMD Zen 4, 10,000 MNIST rows in
       calls of 64, count and sums, best of 9 per process, 5-6 processes alternating, ns a row at
       AVX-512 458-507 -> 438-462; at AVX2, with the sums before and after gathering a block's
       positions first (above), 602-746 -> 585-603. Either path gives the same values, so a sample that
       misjudges a batch changes only the speed. */
    const int sampled = M < 8 ? M : 8;
    if (K >= 64 && M > 0 && isa
        && (isa == 2 ? count_nonzero(sampled, K, A, (size_t)lda) : count_nonzero_avx2(sampled, K, A, (size_t)lda)) * 3 <= (size_t)sampled * K) {
        int entry;
        const int sparse = choose_sparse(N, K, isa, &entry);
        const double start = entry >= 0 ? seconds_now() : 0;
        if (sparse) bnk_dense_sparse(M, N, K, A, lda, B, bias, C, ldc, act);
        else bnk_gemm(M, N, K, A, lda, B, bias, C, ldc, act);
        if (entry >= 0) report(entry, sparse, (seconds_now() - start) / M);
        return;
    }
#endif
    bnk_gemm(M, N, K, A, lda, B, bias, C, ldc, act);
}
