/* The GEMM microkernels shared by the plain GEMM (gemm.c), the prepacked-panel GEMM and the
 * indirect convolution (indirect.c): one register tile per instruction-set level.
 *
 * AVX-512: up to 6 rows x 64 columns (24 zmm accumulators) for a block of more than 32 columns,
 * 12 x 32 for 17 to 32, 12 x 16 for at most 16. AVX2+FMA: up to 6 rows x 16 columns (12 ymm accumulators),
 * up to 8 x 8 for a block of at most 8 (a 6 x 8 tile against 16 columns: N = 24: 3136 x 24 x 144
 * with a residual, AMD Zen 4, best of 600 alternating, 286 -> 229 us; N = 40: 784 x 40 x 240
 * 166 -> 145 us; eight rows instead of six: see tile256). A call's rows
 * are split into blocks as even as the tile allows (49 rows: 10+10+10+10+9, not 12+12+12+12
 * and a 1-row block whose 2 accumulators leave the FMA units idle for most of each FMA's
 * latency), and the tile is compiled once per row count so every block keeps its
 * accumulators in registers. B's next rows are prefetched into L1 (weights streamed from
 * L2/L3 stalled the first FMA of each k otherwise: perf annotate, ResNet50 at batch 1).
 *
 * Every output is summed from the bias, k increasing, in float32 FMAs, whatever the
 * row blocking: the results do not depend on how the rows are split.
 */
#include "bnkit_kernels.h"
#include "isa.h"

#if BNK_X86
#include <immintrin.h>

/* B rows prefetched ahead of the one being read: 8 rows (512 bytes of a panel, about 100 cycles
   of a 12-row tile) at AVX-512; 32 at AVX2, whose tile spends half as long per row (ResNet50 224
   at batch 1 on one thread, AVX2, alternating runs: 7.4-8.2 img/s with 8 rows, 8.0-9.9 with 32,
   8.6-9.2 with 64; at AVX-512, 16 and 32 rows were no faster than 8). */
#define PREFETCH_ROWS 8
#define PREFETCH_ROWS_AVX2 32
/* The AVX2 tile prefetches (B's rows ahead, and the epilogue's residual and output rows) only
   when its sum runs over at least 64 products: a 6 x 16 tile over 16 inputs is about 100 cycles
   of FMAs, and its 6 to 12 epilogue prefetches and one B prefetch per k took about a tenth of its
   time (MobileNetV2's 1x1 shapes, bnk_gemm_panels with ReLU6, hot, AMD Zen 3, best of 15,
   two runs: 12544 x 16 -> 96 66-67 -> 72-73 GFLOP/s, 784 x 32 -> 192 77 -> 85, 3136 x 24 -> 144
   76 -> 81, all 19 shapes 86.5 -> 89.0; without any prefetch 89.5, but ResNet50's weights,
   K >= 64, are streamed from L3 at batch 1, where the B prefetch pays). */
#define PREFETCH_MIN_K_AVX2 64
/* The next panel (when the caller names one) is prefetched by the last NEXT_PANEL_BLOCKS row
   blocks of this one (all of them when fewer), a share each, spread over their k loops in place
   of the prefetch of B's rows ahead. Weights streamed from memory (batch 1 on small maps: 9 rows
   x 1024 -> 2048, two blocks of 5 and 4 rows) were otherwise read by the first block at memory
   speed, the second computing from L2 with memory idle. Still one prefetch per k, its pointer
   stepped by the tile: a second prefetch, or a branch on one, at every k cost 1-3% on shapes
   that do not stream (3136 x 64 -> 256 hot 1088 -> 1118 us). tools/kernel_bench.sh "weights
   streamed from memory", AMD Zen 3, two runs: 9 x 1024 -> 2048 733, 656 -> 615, 596 us;
   9 x 2048 -> 1024 751, 658 -> 656, 576; 36 x 1024 -> 1024 901, 894 -> 849, 815; the hot 1x1
   shapes 86.6, 92.4 -> 89.4, 90.8 GFLOP/s. */
#define NEXT_PANEL_BLOCKS 4
/* The next panel goes into L2, not L1 (T1, not T0): the whole of it (a panel of K lines at AVX2,
   a block of four at AVX-512) is far more than L1 holds, and, prefetched into L1, it evicted the
   tile's own rows of A and B there before they were read. Weights streamed from memory, one
   thread, AMD Zen 4 (family 25 model 17), best of 5 (us, T0 -> T1): AVX2 9 x 4608 -> 512 783 ->
   477, 9 x 2048 -> 512 361 -> 250, 9 x 512 -> 2048 372 -> 205, 9 x 1024 -> 2048 739 -> 391 (the
   36- and 49-row shapes, which compute longer per byte, within 3%); AVX-512 (the 6 x 64 tile)
   9 x 2048 -> 512 251 -> 196, 9 x 512 -> 2048 299 -> 182, 9 x 1024 -> 2048 596 -> 363. */
#define NEXT_PANEL_HINT _MM_HINT_T1

/* The tiles keep one named accumulator per row and column vector (not arrays: clang kept
   arrays of accumulators on the stack and stored them every k), and rows r >= R compile away. */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define FOR_ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define FOR_ROWS8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

/* The tile's residual and output rows, fetched into cache while the k loop runs: the residual
   of a pointwise conv with few inputs (ResNet50's 64 -> 256 at 56x56) is read from beyond L2,
   and the stores of its 12 rows, a row stride apart, stalled each tile's end otherwise. */
#define EPILOGUE_PREFETCH(ROWS, SECOND)                                                                       \
    {                                                                                                         \
        _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                                \
            if (rr) { __builtin_prefetch(rr + (size_t)r * ldc, 0, 3); if (SECOND) __builtin_prefetch(rr + (size_t)r * ldc + (SECOND), 0, 3); } \
            __builtin_prefetch(c + (size_t)r * ldc, 1, 3); if (SECOND) __builtin_prefetch(c + (size_t)r * ldc + (SECOND), 1, 3); \
        }                                                                                                     \
    }

/* Row r's pointer into segment s: from the table, or A's rows lda apart (a single segment). */
#define ROW_POINTER(r) if ((r) < R) a##r = rows ? rows[(size_t)(r) * segs + s] : A + (size_t)(r) * lda;

/* R rows x 32 columns: lo from b (columns n0..n0+15), hi from b + hoff (masked by mask1). With
   HALF, 24 columns, hi in a 256-bit vector: the same sums (each lane's FMAs in the same order),
   but the last 8 columns cost a 256-bit FMA where a masked 512-bit one costs two on AMD Zen 4
   (its 512-bit operations go through the 256-bit pipes twice): MobileNet-style projections to 24
   channels (576 x 72 -> 24, hot, one thread, AMD Zen 4) 81-82 -> 98-99 GFLOP/s, where AVX2's tiles
   gave 99; with tile512_x4's HALF, 784 x 120 -> 40 96-97 -> 113-115 and 196 x 200 -> 56 98-101 ->
   110-115. torchvision's MnasNet at 224, one thread: 140-146 -> 147-153 img/s at batch 1 (three
   rounds), outputs bit-identical (and MobileNetV2's and MobileNetV3-Large's at 96). */
__attribute__((target("avx512f"), always_inline))
static inline void tile512_wide(const int R, const int HALF, int segs, int len, const float *A, size_t lda,
                                const float *const *rows, const float *b, ptrdiff_t hoff, int bs, __mmask16 mask1, __m512 bias0,
                                __m512 bias1, const float *rr, float *c, int ldc, int elementwise) {
#define DECLARE(r) __m512 lo##r = bias0, hi##r = bias1; __m256 h##r = _mm512_castps512_ps256(bias1); const float *a##r = A;
    FOR_ROWS(DECLARE)
#undef DECLARE
    EPILOGUE_PREFETCH(FOR_ROWS, 16)
    for (int s = 0; s < segs; s++) {
        FOR_ROWS(ROW_POINTER)
        for (int k = 0; k < len; k++, b += bs) {
            const __m512 b0 = _mm512_loadu_ps(b), b1 = HALF ? b0 : _mm512_maskz_loadu_ps(mask1, b + hoff);
            const __m256 bh = HALF ? _mm256_loadu_ps(b + hoff) : _mm256_setzero_ps();
            _mm_prefetch((const char *)(b + PREFETCH_ROWS * bs), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + hoff + PREFETCH_ROWS * bs), _MM_HINT_T0);
#define FMA(r) if ((r) < R) { const __m512 x = _mm512_set1_ps(a##r[k]); lo##r = _mm512_fmadd_ps(x, b0, lo##r); \
                              if (HALF) h##r = _mm256_fmadd_ps(_mm512_castps512_ps256(x), bh, h##r);          \
                              else hi##r = _mm512_fmadd_ps(x, b1, hi##r); }
            FOR_ROWS(FMA)
#undef FMA
        }
    }
#define STORE(r) if ((r) < R) { float *cr = c + (size_t)(r) * ldc;                                              \
        if (rr) { lo##r = _mm512_add_ps(lo##r, _mm512_loadu_ps(rr + (size_t)(r) * ldc));                           \
                  if (HALF) h##r = _mm256_add_ps(h##r, _mm256_loadu_ps(rr + (size_t)(r) * ldc + 16));             \
                  else hi##r = _mm512_add_ps(hi##r, _mm512_maskz_loadu_ps(mask1, rr + (size_t)(r) * ldc + 16)); }  \
        _mm512_storeu_ps(cr, bnk_act512(lo##r, elementwise));                                                   \
        if (HALF) _mm256_storeu_ps(cr + 16, _mm512_castps512_ps256(bnk_act512(_mm512_castps256_ps512(h##r), elementwise))); \
        else _mm512_mask_storeu_ps(cr + 16, mask1, bnk_act512(hi##r, elementwise)); }
    FOR_ROWS(STORE)
#undef STORE
}

/* R rows x up to 16 columns (mask0). */
__attribute__((target("avx512f"), always_inline))
static inline void tile512_narrow(const int R, int segs, int len, const float *A, size_t lda, const float *const *rows,
                                  const float *b, int bs, __mmask16 mask0, __m512 bias0, const float *rr, float *c, int ldc,
                                  int elementwise) {
#define DECLARE(r) __m512 acc##r = bias0; const float *a##r = A;
    FOR_ROWS(DECLARE)
#undef DECLARE
    EPILOGUE_PREFETCH(FOR_ROWS, 0)
    for (int s = 0; s < segs; s++) {
        FOR_ROWS(ROW_POINTER)
        for (int k = 0; k < len; k++, b += bs) {
            const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
            _mm_prefetch((const char *)(b + PREFETCH_ROWS * bs), _MM_HINT_T0);
#define FMA(r) if ((r) < R) acc##r = _mm512_fmadd_ps(_mm512_set1_ps(a##r[k]), b0, acc##r);
            FOR_ROWS(FMA)
#undef FMA
        }
    }
#define STORE(r) if ((r) < R) { __m512 v = acc##r;                                                              \
        if (rr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask0, rr + (size_t)(r) * ldc));                     \
        _mm512_mask_storeu_ps(c + (size_t)(r) * ldc, mask0, bnk_act512(v, elementwise)); }
    FOR_ROWS(STORE)
#undef STORE
}

/* Where a block of rows starting at row m reads and writes: A's rows (or the pointer table's),
   the residual's rows and C's, at column n0. */
typedef struct {
    const float *a;
    const float *const *t;
    const float *rr;
    float *c;
} row_block;

static inline row_block block_at(int m, int n0, int segs, const float *A, int lda, const float *const *rows, const float *R,
                                 float *C, int ldc) {
    row_block b;
    b.a = rows ? NULL : A + (size_t)m * lda;
    b.t = rows ? rows + (size_t)m * segs : NULL;
    b.rr = R ? R + (size_t)m * ldc + n0 : NULL;
    b.c = C + (size_t)m * ldc + n0;
    return b;
}

#define TILE_CASES(CALL)                                                                   \
    switch (R) {                                                                           \
    case 12: CALL(12); break; case 11: CALL(11); break; case 10: CALL(10); break;          \
    case 9: CALL(9); break; case 8: CALL(8); break; case 7: CALL(7); break;                \
    case 6: CALL(6); break; case 5: CALL(5); break; case 4: CALL(4); break;                \
    case 3: CALL(3); break; case 2: CALL(2); break; default: CALL(1); break;               \
    }

/* R <= 6 rows x up to 16 V columns, V = 2, 3 or 4: vector j of B's row at b + j * hoff (the
   first full, the last masked: the second by mask2 at V = 2, else the third and fourth by mask2
   and mask3). Four B loads and six broadcasts per k for 24 FMAs, and
   six row pointers (the 12 x 32 tile's twelve did not fit the general registers: reloaded from
   the stack every k): on AMD Zen 4, whose zmm FMAs take both 256-bit pipes, 3-16% faster than
   12 x 32 on ResNet50's and the MNIST CNNs' shapes (hot, best of 30). */
__attribute__((target("avx512f"), always_inline))
static inline void tile512_x4(const int R, const int V, const int NEXT, const int HALF, int segs, int len, const float *A,
                              size_t lda, const float *const *rows, const float *b, ptrdiff_t hoff, int bs, __mmask16 mask2,
                              __mmask16 mask3, __m512 bias0, __m512 bias1, __m512 bias2, __m512 bias3, const float *rr, float *c,
                              int ldc, int elementwise, const float *pf) {
    /* With HALF the last vector (V - 1) is 8 columns in a 256-bit register (see tile512_wide),
       and vectors 1 .. V - 1 that remain are whole: 24, 40 or 56 columns. */
#define FULL(j) (V > (j) && !(HALF && V == (j) + 1))
    const __m256 biash = _mm512_castps512_ps256(V == 2 ? bias1 : V == 3 ? bias2 : bias3);
#define DECLARE(r) __m512 v0##r = bias0, v1##r = bias1, v2##r = bias2, v3##r = bias3; __m256 h##r = biash; const float *a##r = A;
    FOR_ROWS6(DECLARE)
#undef DECLARE
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {
        _Pragma("GCC unroll 4") for (int j = 0; j < 16 * V; j += 16) {
            if (rr) __builtin_prefetch(rr + (size_t)r * ldc + j, 0, 3);
            __builtin_prefetch(c + (size_t)r * ldc + j, 1, 3);
        }
    }
    for (int s = 0; s < segs; s++) {
        FOR_ROWS6(ROW_POINTER)
        for (int k = 0; k < len; k++, b += bs) {
            const __m512 b0 = _mm512_loadu_ps(b);
            const __m512 b1 = !FULL(1) ? b0 : V > 2 ? _mm512_loadu_ps(b + hoff) : _mm512_maskz_loadu_ps(mask2, b + hoff);
            const __m512 b2 = !FULL(2) ? b1 : V > 3 || HALF ? _mm512_loadu_ps(b + 2 * hoff) : _mm512_maskz_loadu_ps(mask2, b + 2 * hoff);
            const __m512 b3 = !FULL(3) ? b2 : _mm512_maskz_loadu_ps(mask3, b + 3 * hoff);
            const __m256 bh = HALF ? _mm256_loadu_ps(b + (V - 1) * hoff) : _mm256_setzero_ps();
            _mm_prefetch((const char *)(b + PREFETCH_ROWS * bs), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + hoff + PREFETCH_ROWS * bs), _MM_HINT_T0);
            if (V > 2) _mm_prefetch((const char *)(b + 2 * hoff + PREFETCH_ROWS * bs), _MM_HINT_T0);
            if (V > 3) _mm_prefetch((const char *)(b + 3 * hoff + PREFETCH_ROWS * bs), _MM_HINT_T0);
            if (NEXT) {   /* (pf is NULL otherwise: not stepped) */
                _Pragma("GCC unroll 4") for (int i = 0; i < NEXT; i++) _mm_prefetch((const char *)(pf + 16 * i), NEXT_PANEL_HINT);
                pf += 16 * NEXT;
            }
#define FMA(r) if ((r) < R) { const __m512 x = _mm512_set1_ps(a##r[k]);                                        \
                              v0##r = _mm512_fmadd_ps(x, b0, v0##r); if (FULL(1)) v1##r = _mm512_fmadd_ps(x, b1, v1##r);   \
                              if (FULL(2)) v2##r = _mm512_fmadd_ps(x, b2, v2##r); if (FULL(3)) v3##r = _mm512_fmadd_ps(x, b3, v3##r); \
                              if (HALF) h##r = _mm256_fmadd_ps(_mm512_castps512_ps256(x), bh, h##r); }
            FOR_ROWS6(FMA)
#undef FMA
        }
    }
#define STORE(r) if ((r) < R) { float *cr = c + (size_t)(r) * ldc;                                              \
        if (rr) { const float *q = rr + (size_t)(r) * ldc;                                                      \
                  v0##r = _mm512_add_ps(v0##r, _mm512_loadu_ps(q));                                             \
                  if (FULL(1)) v1##r = _mm512_add_ps(v1##r, V > 2 ? _mm512_loadu_ps(q + 16) : _mm512_maskz_loadu_ps(mask2, q + 16)); \
                  if (FULL(2)) v2##r = _mm512_add_ps(v2##r, V > 3 || HALF ? _mm512_loadu_ps(q + 32) : _mm512_maskz_loadu_ps(mask2, q + 32)); \
                  if (FULL(3)) v3##r = _mm512_add_ps(v3##r, _mm512_maskz_loadu_ps(mask3, q + 48));              \
                  if (HALF) h##r = _mm256_add_ps(h##r, _mm256_loadu_ps(q + 16 * (V - 1))); }                    \
        _mm512_storeu_ps(cr, bnk_act512(v0##r, elementwise));                                                   \
        if (FULL(1)) { if (V > 2) _mm512_storeu_ps(cr + 16, bnk_act512(v1##r, elementwise));                    \
                       else _mm512_mask_storeu_ps(cr + 16, mask2, bnk_act512(v1##r, elementwise)); }            \
        if (FULL(2)) { if (V > 3 || HALF) _mm512_storeu_ps(cr + 32, bnk_act512(v2##r, elementwise));            \
                       else _mm512_mask_storeu_ps(cr + 32, mask2, bnk_act512(v2##r, elementwise)); }            \
        if (FULL(3)) _mm512_mask_storeu_ps(cr + 48, mask3, bnk_act512(v3##r, elementwise));                     \
        if (HALF) _mm256_storeu_ps(cr + 16 * (V - 1),                                                           \
                                   _mm512_castps512_ps256(bnk_act512(_mm512_castps256_ps512(h##r), elementwise))); }
    FOR_ROWS6(STORE)
#undef STORE
#undef FULL
}

#define TILE8_CASES(CALL)                                                                  \
    switch (R) {                                                                           \
    case 8: CALL(8); break; case 7: CALL(7); break;                                        \
    case 6: CALL(6); break; case 5: CALL(5); break; case 4: CALL(4); break;                \
    case 3: CALL(3); break; case 2: CALL(2); break; default: CALL(1); break;               \
    }

#define TILE6_CASES(CALL)                                                                  \
    switch (R) {                                                                           \
    case 6: CALL(6); break; case 5: CALL(5); break; case 4: CALL(4); break;                \
    case 3: CALL(3); break; case 2: CALL(2); break; default: CALL(1); break;               \
    }

__attribute__((target("avx512f")))
void bnk_block_avx512(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                      const float *b_lo, const float *b_hi, int bs, const float *bias, const float *R_, float *C, int ldc,
                      int elementwise, const float *next) {
    if (M <= 0 || width <= 0) return;
    const ptrdiff_t hoff = b_hi - b_lo;
    if (width > 32) {
        const __mmask16 mask2 = width >= 48 ? 0xFFFF : (__mmask16)((1u << (width - 32)) - 1);
        const __mmask16 mask3 = width <= 48 ? 0 : width >= 64 ? 0xFFFF : (__mmask16)((1u << (width - 48)) - 1);
        const __m512 bias0 = bias ? _mm512_loadu_ps(bias + n0) : _mm512_setzero_ps();
        const __m512 bias1 = bias ? _mm512_loadu_ps(bias + n0 + 16) : _mm512_setzero_ps();
        const __m512 bias2 = bias ? _mm512_maskz_loadu_ps(mask2, bias + n0 + 32) : _mm512_setzero_ps();
        const __m512 bias3 = bias ? _mm512_maskz_loadu_ps(mask3, bias + n0 + 48) : _mm512_setzero_ps();
        const int blocks = (M + 5) / 6;
        /* The next block of four panels (4 x lines cache lines: `next`, as at AVX2), a share to
           each of the last NEXT_PANEL_BLOCKS row blocks, beside the prefetches of B's rows ahead:
           one line a k when four share it, two when two or three do; none for a single block
           (at most 6 rows, bound by its own weights' reads: ResNet50's 2048 -> 1000 head at
           batch 1 was 2-7% slower with it). ResNet50 224 at batch 1, one thread, Intel Xeon
           (family 6 model 207, AVX-512), four profiled pairs of 192 images: the last stage's
           1x1 convs (49 rows, 512 <-> 2048) 1.04-1.16x, its strided 1024 -> 2048 1.08-1.15x,
           its 3x3 convs (49 rows of 4608, the indirect conv) 1.00-1.09x; the other steps
           within the noise of unchanged ones. */
        const int fetching = !next || blocks < 2 ? 0 : blocks < NEXT_PANEL_BLOCKS ? blocks : NEXT_PANEL_BLOCKS;
        const int half = width == 40 || width == 56;
        const int per_k = fetching >= 4 ? 1 : 2;
        const size_t lines = (size_t)segs * len, share = fetching ? (4 * lines + fetching - 1) / fetching : 0;
        for (int block = 0, m = 0; block < blocks; block++) {
            const int R = M / blocks + (block < M % blocks);
            const row_block o = block_at(m, n0, segs, A, lda, rows, R_, C, ldc);
            const int part = block - (blocks - fetching);
            const float *pf = part >= 0 ? next + (size_t)part * share * 16 : NULL;
#define X4(ROWS) tile512_x4(ROWS, V_, N_, H_, segs, len, o.a, (size_t)lda, o.t, b_lo, hoff, bs, mask2, mask3, bias0, bias1, bias2, \
                            bias3, o.rr, o.c, ldc, elementwise, pf)
            /* 33 to 48 columns: three vectors (a fourth, all masked, would still cost its FMAs). */
#define X4_BLOCKS(V, N) { enum { V_ = (V), N_ = (N), H_ = 0 }; TILE6_CASES(X4) }
#define X4_HALF(V, N) { enum { V_ = (V), N_ = (N), H_ = 1 }; TILE6_CASES(X4) }
            if (half) {   /* 40 or 56 columns: the last 8 in a 256-bit vector */
                if (!pf) { if (mask3) X4_HALF(4, 0) else X4_HALF(3, 0) }
                else if (per_k == 1) { if (mask3) X4_HALF(4, 1) else X4_HALF(3, 1) }
                else { if (mask3) X4_HALF(4, 2) else X4_HALF(3, 2) }
            }
            else if (!pf) { if (mask3) X4_BLOCKS(4, 0) else X4_BLOCKS(3, 0) }
            else if (per_k == 1) { if (mask3) X4_BLOCKS(4, 1) else X4_BLOCKS(3, 1) }
            else { if (mask3) X4_BLOCKS(4, 2) else X4_BLOCKS(3, 2) }
#undef X4_HALF
#undef X4_BLOCKS
#undef X4
            m += R;
        }
        return;
    }
    if (width > 16 && segs * len < 64) {
        /* 17 to 32 columns over a short sum (a 3-channel stem's 27 products): 6-row tiles of two
           vectors (12 sums) instead of 12-row ones (24): a tile's start and end weigh as much
           as its products, and twelve row pointers do not fit the general registers. Hot, Intel
           Xeon (family 6 model 207), best of 30, three alternating runs, GFLOP/s: 12544 x 27 ->
           32 154-158 -> 184-186, 1024 x 27 -> 32 182-189 -> 191-195; over 96 products and more
           the twelve rows were faster (96 x 96 -> 24 168 -> 164, 784 x 192 -> 32 228 -> 221). */
        const __mmask16 mask2 = width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1);
        const __m512 bias0 = bias ? _mm512_loadu_ps(bias + n0) : _mm512_setzero_ps();
        const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(mask2, bias + n0 + 16) : _mm512_setzero_ps();
        const int blocks = (M + 5) / 6;
        for (int block = 0, m = 0; block < blocks; block++) {
            const int R = M / blocks + (block < M % blocks);
            const row_block o = block_at(m, n0, segs, A, lda, rows, R_, C, ldc);
#define X2(ROWS) tile512_x4(ROWS, 2, 0, 0, segs, len, o.a, (size_t)lda, o.t, b_lo, hoff, bs, mask2, 0, bias0, bias1, bias1, bias1, \
                            o.rr, o.c, ldc, elementwise, NULL)
#define X2_HALF(ROWS) tile512_x4(ROWS, 2, 0, 1, segs, len, o.a, (size_t)lda, o.t, b_lo, hoff, bs, mask2, 0, bias0, bias1, bias1, \
                                 bias1, o.rr, o.c, ldc, elementwise, NULL)
            if (width == 24) { TILE6_CASES(X2_HALF) }   /* the last 8 columns in a 256-bit vector */
            else { TILE6_CASES(X2) }
#undef X2
#undef X2_HALF
            m += R;
        }
        return;
    }
    const __mmask16 mask0 = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    const __mmask16 mask1 = width <= 16 ? 0 : width >= 32 ? 0xFFFF : (__mmask16)((1u << (width - 16)) - 1);
    const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(mask0, bias + n0) : _mm512_setzero_ps();
    const __m512 bias1 = bias && mask1 ? _mm512_maskz_loadu_ps(mask1, bias + n0 + 16) : _mm512_setzero_ps();
    const int blocks = (M + 11) / 12;
    for (int block = 0, m = 0; block < blocks; block++) {
        const int R = M / blocks + (block < M % blocks);
        const row_block o = block_at(m, n0, segs, A, lda, rows, R_, C, ldc);
        if (mask1 == 0x00FF) {   /* 24 columns: the last 8 in a 256-bit vector */
#define WIDE24(ROWS) tile512_wide(ROWS, 1, segs, len, o.a, (size_t)lda, o.t, b_lo, hoff, bs, mask1, bias0, bias1, o.rr, o.c, ldc, \
                                  elementwise)
            TILE_CASES(WIDE24)
#undef WIDE24
        } else if (mask1) {
#define WIDE(ROWS) tile512_wide(ROWS, 0, segs, len, o.a, (size_t)lda, o.t, b_lo, hoff, bs, mask1, bias0, bias1, o.rr, o.c, ldc, \
                                elementwise)
            TILE_CASES(WIDE)
#undef WIDE
        } else {
#define NARROW(ROWS) tile512_narrow(ROWS, segs, len, o.a, (size_t)lda, o.t, b_lo, bs, mask0, bias0, o.rr, o.c, ldc, elementwise)
            TILE_CASES(NARROW)
#undef NARROW
        }
        m += R;
    }
}

__attribute__((target("avx512f")))
int bnk_pack_block_avx512(const float *B, int ldb, size_t K, int width, float *pk) {
    const int vectors = (width + 15) / 16, stride = vectors == 1 ? 16 : vectors == 2 ? 32 : 64;
    for (size_t k = 0; k < K; k++, B += ldb)
        for (int j = 0; j < stride / 16; j++) {
            const int left = width - 16 * j;
            const __mmask16 mask = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            _mm512_store_ps(pk + k * stride + 16 * j, _mm512_maskz_loadu_ps(mask, B + 16 * j));
        }
    return stride;
}

/* R <= 6 rows x 16 columns (V = 2) or R <= 8 rows x 8 (V = 1, a block of at most 8 columns: N =
   24 or 40 leaves one, whose second vector would be all FMAs for nothing): B's 8 V columns
   readable at b (a panel, zero past the last column, or a full block of a row-major B); whole
   vectors stored plainly, a narrower one masked (a masked store of a whole vector takes several
   times a plain one on AMD cores). Eight rows at V = 1: eight accumulators cover the FMA's
   latency on two pipes (four cycles), where six left a quarter of them idle. Hot, AMD Zen 3,
   GFLOP/s: 96 x 144 -> 8 71.1 -> 77.1 (16 columns: 99), 96 x 144 -> 24 87.2 -> 90.1,
   3136 x 144 -> 24 83.1 -> 86.3, 96 x 240 -> 40 91.9 -> 95.1; twelve rows 77-80 / 89-91 (within
   the noise of eight).

   TABLE, EPI and RES are constants of each instantiation, so a tile tests nothing per row that
   its call answers once. TABLE: A's rows from the pointer table (`segs` segments a row: the
   indirect convolution), else lda apart in one segment. EPI: the epilogue for 16 whole columns,
   an activation code (BNK_ACT_LINEAR, _RELU or _RELU6), the residual added first when RES (the
   plain GEMM's only: ResNet's and MobileNetV2's last 1x1 conv of a block); else EPI_GENERAL
   (the residual added if any, a narrower block masked, the activation chosen at run time). A
   6 x 16 tile over 16 inputs is about 100 cycles of FMAs, and these tests, made per row for
   every case, took a fifth of it. bnk_gemm_panels with ReLU6, hot, AMD Zen 3, best of 5
   alternating runs: 96 x 16 -> 96 77 -> 91 GFLOP/s (a hand-written tile of the same loop 96),
   96 x 24 -> 144 84 -> 95, 196 x 64 -> 384 92 -> 98, 3136 x 64 -> 256 with a residual 85 -> 90;
   K >= 384 within 1%. */
#define EPI_GENERAL (-1)

__attribute__((target("avx2,fma"), always_inline))
static inline void tile256(const int R, const int V, const int TABLE, const int EPI, const int RES, int segs, int len, const float *A,
                           size_t lda, const float *const *rows, const float *b, int bs, int width, __m256i mask0,
                           __m256i mask1, __m256 bias0, __m256 bias1, const float *rr, float *c, int ldc, int elementwise,
                           const float *pf, int pfs, int pf_l2) {
#define DECLARE(r) __m256 lo##r = bias0, hi##r = bias1; const float *a##r = A;
    FOR_ROWS8(DECLARE)
#undef DECLARE
    /* The prefetches only for a long enough sum (PREFETCH_MIN_K_AVX2): on a short one the tile
       ends before they could land, and they cost issue slots the FMAs need. */
    const int prefetch = (TABLE ? segs * len : len) >= PREFETCH_MIN_K_AVX2;
    if (prefetch) EPILOGUE_PREFETCH(FOR_ROWS6, 8)
    /* What the tile prefetches at each k: B's row PREFETCH_ROWS_AVX2 ahead, or (pf) its share of
       the next panel, pfs floats further each k (one prefetch either way, as in the loop before). */
    const float *q = pf ? pf : b + (size_t)PREFETCH_ROWS_AVX2 * bs;
    const size_t qs = pf ? (size_t)pfs : (size_t)bs;
    /* The k loop, once per hint (the next panel into L2 only when row blocks share it,
       NEXT_PANEL_HINT; B's rows ahead, or the next panel fetched by a single block, into L1), so
       that no k branches on which. A single block (at most 6 rows of 16 columns, 8 of 8:
       ResNet50's 2048 -> 1000 head at batch 1) is bound by its own reads of B, which the panel
       prefetched into L1 serves: 1 x 2048 -> 1000 from memory 322 -> 380 us with it in L2. */
#define K_LOOP256(HINT)                                                                                          \
        for (int k = 0; k < len; k++, b += bs, q += qs) {                                                     \
            const __m256 b0 = _mm256_loadu_ps(b), b1 = V > 1 ? _mm256_loadu_ps(b + 8) : b0;                   \
            if (prefetch) _mm_prefetch((const char *)q, HINT);                                                 \
            FOR_ROWS8(FMA)                                                                                     \
        }
#define FMA(r) if ((r) < R) { const __m256 x = _mm256_broadcast_ss(a##r + k); \
                              lo##r = _mm256_fmadd_ps(x, b0, lo##r); if (V > 1) hi##r = _mm256_fmadd_ps(x, b1, hi##r); }
    for (int s = 0; s < (TABLE ? segs : 1); s++) {
#define ROW_POINTER256(r) if ((r) < R) a##r = TABLE ? rows[(size_t)(r) * segs + s] : A + (size_t)(r) * lda;
        FOR_ROWS8(ROW_POINTER256)
#undef ROW_POINTER256
        if (pf && pf_l2) K_LOOP256(NEXT_PANEL_HINT) else K_LOOP256(_MM_HINT_T0)
    }
#undef FMA
#undef K_LOOP256
    if (EPI != EPI_GENERAL) {
#define STORE(r) if ((r) < R) { float *cr = c + (size_t)(r) * ldc;                                              \
        if (RES) { lo##r = _mm256_add_ps(lo##r, _mm256_loadu_ps(rr + (size_t)(r) * ldc));                       \
                   if (V > 1) hi##r = _mm256_add_ps(hi##r, _mm256_loadu_ps(rr + (size_t)(r) * ldc + 8)); }      \
        _mm256_storeu_ps(cr, bnk_act256(lo##r, EPI));                                                           \
        if (V > 1) _mm256_storeu_ps(cr + 8, bnk_act256(hi##r, EPI)); }
        FOR_ROWS8(STORE)
#undef STORE
        return;
    }
#define STORE(r) if ((r) < R) { float *cr = c + (size_t)(r) * ldc;                                              \
        if (rr) { const float *q = rr + (size_t)(r) * ldc;                                                      \
                  lo##r = _mm256_add_ps(lo##r, bnk_load8(q, width, mask0));                                      \
                  if (V > 1) hi##r = _mm256_add_ps(hi##r, bnk_load8(q + 8, width - 8, mask1)); }                  \
        bnk_store8(cr, width, mask0, bnk_act256(lo##r, elementwise));                                           \
        if (V > 1) bnk_store8(cr + 8, width - 8, mask1, bnk_act256(hi##r, elementwise)); }
    FOR_ROWS8(STORE)
#undef STORE
}

/* One tile call of R rows (the constants V, TABLE, EPI, RES of the enclosing TILE256_BLOCKS). */
#define TILE256_CALL(ROWS) tile256(ROWS, V_, TABLE_, EPI_, RES_, segs, len, o.a, (size_t)lda, o.t, b, bs, width, mask0, mask1, \
                                   bias0, bias1, o.rr, o.c, ldc, elementwise, pf, pfs, fetching >= 2)

/* Every row block of one column block through one instantiation of the tile per row count: up to
   6 rows at V = 2 (TILE6_CASES), 8 at V = 1 (TILE8_CASES). */
#define TILE256_BLOCKS(V, TABLE, EPI, RES)                                                                     \
    {                                                                                                          \
        enum { V_ = (V), TABLE_ = (TABLE), EPI_ = (EPI), RES_ = (RES) };                                       \
        const int most = V_ > 1 ? 6 : 8, blocks = (M + most - 1) / most;                                      \
        const int rows_each = M / blocks, rows_left = M % blocks;                                              \
        const int fetching = !next ? 0 : blocks < NEXT_PANEL_BLOCKS ? blocks : NEXT_PANEL_BLOCKS;                 \
        const int lines = segs * len, share = fetching ? (lines + fetching - 1) / fetching : 0;              \
        for (int block = 0, m = 0; block < blocks; block++) {                                                  \
            const int R = rows_each + (block < rows_left);                                                     \
            const row_block o = block_at(m, n0, segs, A, lda, rows, R_, C, ldc);                               \
            const int part = block - (blocks - fetching);                                                      \
            const int first = part * share, count = lines - first < share ? lines - first : share;            \
            const float *pf = part >= 0 && count > 0 ? next + (size_t)first * 16 : NULL;                      \
            int pfs = 1;                                                                                       \
            while (pfs < 16 && (long long)pfs * lines < 16LL * count) pfs *= 2;                                \
            TILE256_ROWS_##V(TILE256_CALL)                                                                     \
            m += R;                                                                                            \
        }                                                                                                      \
    }
#define TILE256_ROWS_2 TILE6_CASES
#define TILE256_ROWS_1 TILE8_CASES

/* Sixteen whole columns: the activation a constant of the tile, and whether a residual is added. */
#define TILE256_PLAIN(TABLE, RES)                                                                              \
    switch (elementwise) {                                                                                     \
    case BNK_ACT_RELU: TILE256_BLOCKS(2, TABLE, BNK_ACT_RELU, RES) break;                                      \
    case BNK_ACT_RELU6: TILE256_BLOCKS(2, TABLE, BNK_ACT_RELU6, RES) break;                                    \
    default: TILE256_BLOCKS(2, TABLE, BNK_ACT_LINEAR, RES) break;                                              \
    }

__attribute__((target("avx2,fma")))
void bnk_block_avx2(int M, int n0, int width, int segs, int len, const float *A, int lda, const float *const *rows,
                    const float *b, int bs, const float *bias, const float *R_, float *C, int ldc, int elementwise,
                    const float *next) {
    if (M <= 0 || width <= 0) return;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
    const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width - 8), lanes);
    const __m256 bias0 = bias ? _mm256_maskload_ps(bias + n0, mask0) : _mm256_setzero_ps();
    const __m256 bias1 = bias ? _mm256_maskload_ps(bias + n0 + 8, mask1) : _mm256_setzero_ps();
    const int plain = width >= 16 &&
                      (elementwise == BNK_ACT_LINEAR || elementwise == BNK_ACT_RELU || elementwise == BNK_ACT_RELU6);
    if (plain && !R_) {
        if (rows) TILE256_PLAIN(1, 0) else TILE256_PLAIN(0, 0)
    } else if (plain && !rows) {
        TILE256_PLAIN(0, 1)
    } else if (width > 8) {
        if (rows) TILE256_BLOCKS(2, 1, EPI_GENERAL, 0) else TILE256_BLOCKS(2, 0, EPI_GENERAL, 0)
    } else {
        if (rows) TILE256_BLOCKS(1, 1, EPI_GENERAL, 0) else TILE256_BLOCKS(1, 0, EPI_GENERAL, 0)
    }
}
#undef TILE256_PLAIN
#undef TILE256_BLOCKS
#undef TILE256_ROWS_2
#undef TILE256_ROWS_1
#undef TILE256_CALL

__attribute__((target("avx2,fma")))
void bnk_pack_block_avx2(const float *B, int ldb, size_t K, int width, float *pk) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
    const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(width - 8), lanes);
    for (size_t k = 0; k < K; k++, B += ldb) {
        _mm256_store_ps(pk + k * 16, bnk_load8(B, width, mask0));
        _mm256_store_ps(pk + k * 16 + 8, bnk_load8(B + 8, width - 8, mask1));
    }
}

#endif /* BNK_X86 */
