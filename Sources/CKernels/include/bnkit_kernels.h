#ifndef BNKIT_KERNELS_H
#define BNKIT_KERNELS_H
#include <stddef.h>
#include <sched.h>
#include <stdint.h>

/* Activations fused into the GEMM epilogue. */
enum {
    BNK_ACT_LINEAR = 0,
    BNK_ACT_RELU = 1,
    BNK_ACT_RELU6 = 2,
    BNK_ACT_SIGMOID = 3,
    /* Only in bnk_activate / bnk_add (the GEMMs take codes 0-3). */
    BNK_ACT_SWISH = 4,
    BNK_ACT_HARD_SWISH = 5,
    /* GELU, exact (erf) form: 0.5·x·(1 + erf(x/√2)), by erfc (max rel. error ~4e-7). */
    BNK_ACT_GELU = 6
};

/* C[m][n] = act(bias[n] + sum_k A[m][k] * B[k][n]) for m < M, n < N.
   A: row stride lda; B: row-major K x N; C: row stride ldc; bias may be NULL.
   Dispatches at run time to AVX-512, AVX2+FMA, NEON (arm64) or portable code. */
void bnk_gemm(int M, int N, int K, const float *A, int lda, const float *B,
              const float *bias, float *C, int ldc, int activation);

/* bnk_gemm with B's rows `ldb` floats apart: columns n0..<n0+N of a wider B (B + n0, bias + n0,
   C + n0), so the columns of one product can be shared between threads. */
void bnk_gemm_strided(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc, int activation);

/* Weights prepacked once (a model's constant B) in panels of BNK_PANEL columns: panel j holds
   columns j*16..j*16+15 as K rows of 16 floats (zero past the last column), panels one after
   another, so the GEMM streams contiguous memory and packs nothing per call. The layout is
   the same at every instruction-set level (AVX-512 reads two panels per 32-column block). */
#define BNK_PANEL 16
size_t bnk_panels_floats(int K, int N);
void bnk_pack_panels(int K, int N, const float *B, int ldb, float *panels);
/* bnk_gemm with B prepacked: columns 0..<N of the panels starting at `panels` (columns n0.. of a
   wider product: panels + n0 / 16 * K * 16, bias + n0, C + n0, with n0 a multiple of 16). A residual
   (M x N, row stride ldc; may be NULL) is added before the activation: C = act(A B + bias + residual),
   the sum a separate Add would give, bit for bit. `activation`: any BNK_ACT code (sigmoid, swish and
   hard-swish applied as bnk_activate would, to each chunk of rows as it is done). */
void bnk_gemm_panels(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias, const float *residual,
                     float *C, int ldc, int activation);
/* bnk_gemm_panels for N columns of a product `whole` columns wide (a thread's part of one step):
   the same sums; whether the tiles prefetch each next panel as they go is decided on the whole
   product's weights, as one call over them all would (isa.h, bnk_stream_panels). `then`: the
   panel the caller goes on to (the first of its next part), prefetched during this part's last
   panel when the tiles stream; NULL for none. Only prefetches depend on it. */
void bnk_gemm_panels_part(int M, int N, int K, const float *A, int lda, const float *panels, const float *bias,
                          const float *residual, float *C, int ldc, int activation, int whole, const float *then);

/* Caps the instruction sets the kernels use: 2 AVX-512 (the default: whatever the CPU has),
   1 AVX2+FMA (arm64: the NEON GEMM tile), 0 portable C. Plans made after the call follow it
   (tests run each level). */
void bnk_limit_isa(int level);

/* The L2 cache of one core in bytes, as the GEMM's row chunks use it (rows_per_chunk in gemm.c):
   read once from the system (sysconf's _SC_LEVEL2_CACHE_SIZE; glibc reads it from CPUID), 1 MiB
   where it cannot be read. bnk_set_l2_bytes overrides it (0: back to the system's), so tests
   run the rules of a CPU with another L2 on any machine. */
size_t bnk_l2_bytes(void);
void bnk_set_l2_bytes(size_t bytes);

/* Which implementation bnk_gemm uses on this machine: "avx512", "avx2", "neon" (arm64) or "generic". */
const char *bnk_gemm_isa(void);

/* y = 1 / (1 + exp(-x)) in place, vectorized (max rel. error about 2e-7). */
void bnk_sigmoid(float *x, size_t n);

/* The portable reference GEMM (for tests). */
void bnk_gemm_reference(int M, int N, int K, const float *A, int lda, const float *B,
                        const float *bias, float *C, int ldc, int activation);



/* Patch matrix for a conv: one row of kh*kw*c values per output pixel (zeros outside the image). */
void bnk_im2col(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx,
                int pad_top, int pad_left, int oh, int ow, float *out);

/* The scatter of a transposed convolution (col2im): `cols` holds, for input rows iy0..<iy1 of an
   image iw pixels wide, each pixel's kh·kw·out products (tap (ky, kx) at (ky·kw + kx)·out); tap
   (ky, kx) of pixel (iy, ix) is added to output pixel (iy·sy + ky − pt, ix·sx + kx − pl) of `y` (ow
   pixels wide, out channels) when that lies inside the image and in output rows o0..<o1. Taps are
   added in order of iy, then ky, ix, kx. */
void bnk_transposed_scatter(const float *cols, int iy0, int iy1, int iw, int kh, int kw, int sy, int sx, int pt, int pl,
                            int out, float *y, int ow, int o0, int o1);

/* Rows r0..<r1 of the a x b matrix `source` written as columns r0..<r1 of its b x a transpose
   `target` (a map's NHWC -> NCHW: a pixels of b channels). Threads share a transpose by rows, each
   writing its own columns. Only copies: the same values at every level. */
void bnk_transpose_rows(const float *source, float *target, int a, int b, int r0, int r1);

/* Max or average pooling of one image; average divides by the pixels inside the image. */
void bnk_pool2d(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx,
                int pad_top, int pad_left, int oh, int ow, int is_max, float *out);

/* Mean or max over all pixels of one image of c channels. */
void bnk_global_pool(const float *image, int pixels, int c, int is_max, float *out);
/* A mean is the blocks' sums added in order from zero, each block's sum BNK_POOL_BLOCK pixels in
   order (the last block the rest), divided by the pixels; a maximum any order's. Threads share a
   pooling by whole blocks: bnk_global_pool_blocks writes blocks first..<first + count of one
   image (all c channels; partial + b * c for block b: their sums, or maxima), and
   bnk_global_pool_combine makes the image's c values from all its blocks', the values of
   bnk_global_pool bit for bit. */
#define BNK_POOL_BLOCK 64
int bnk_global_pool_block_count(int pixels);
void bnk_global_pool_blocks(const float *image, int pixels, int c, int first, int count, int is_max, float *partial);
void bnk_global_pool_combine(const float *partial, int pixels, int c, int is_max, float *out);
/* Direct conv of a one-channel image, kernel (kh*kw, n), then the activation (linear, ReLU or
   ReLU6); with pool != 0, a 2x2 stride-2 max pooling too (output (oh/2, ow/2, n)). Returns 0
   (and does nothing) when this machine has no fast path for it, so the caller falls back. */
int bnk_conv2d_single_channel(const float *image, int h, int w, int kh, int kw, int sy, int sx, int dy, int dx,
                              int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n,
                              int act, int pool, float *out);
/* Direct conv for at most BNK_FEW_OUTPUTS output channels (a segmentation head's 3×3 or 1×1 conv
   to a few classes), where the GEMM's 16-wide column panels would compute mostly nothing: each
   output value a dot product over its window, input channels in vector lanes; kernel (kh, kw, c,
   n) as Keras stores it, plus bias, no activation. One image (h, w, c) -> (oh, ow, n). Returns 0
   (nothing done) when n or c is out of range or memory for the repacked kernel runs out. */
#define BNK_FEW_OUTPUTS 4
int bnk_conv2d_few_outputs(const float *image, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top,
                           int pad_left, int oh, int ow, const float *kernel, const float *bias, int n, float *out);
/* Whether bnk_conv2d_single_channel has a fast path on this machine for this activation. */
int bnk_conv2d_single_channel_available(int act);

/* A Dense layer's product, like bnk_gemm: when most entries of A are zero (image pixels,
   ReLU outputs), sums only the nonzero terms, row by row (see dense.c). */
void bnk_dense(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
               float *C, int ldc, int act);
/* The sparse path itself, whatever the share of zeros (falls back to bnk_gemm where the
   machine has no fast path for it; see bnk_dense_sparse_available). */
void bnk_dense_sparse(int M, int N, int K, const float *A, int lda, const float *B, const float *bias,
                      float *C, int ldc, int act);
int bnk_dense_sparse_available(void);

/* Conv2D (groups 1, no horizontal dilation) of a batch as an indirect GEMM: no patch matrix
   (see indirect.c); then bias and the activation. Returns 0 (and does nothing) where this
   machine has no fast path, so the caller uses im2col + GEMM. scratch holds
   bnk_conv2d_indirect_scratch floats. */
int bnk_conv2d_indirect(const float *input, int batch, int h, int w, int c, int kh, int kw, int sy, int sx, int dy,
                        int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, int n, int act,
                        float *out, float *scratch);
/* Output columns n0..<n0+cols of bnk_conv2d_indirect (kernel and bias still the whole (…, n) ones,
   out rows n floats apart), so threads can share one conv's output channels. With `panels` (the
   kernel as (kh*kw*c, n) prepacked by bnk_pack_panels; n0 a multiple of 16) the kernel is not read. A
   residual (shaped like out; may be NULL) is added before the activation, as in bnk_gemm_panels.
   `then`: as for bnk_gemm_panels_part (panels only; the AVX-512 tiles take none). */
int bnk_conv2d_indirect_columns(const float *input, int batch, int h, int w, int c, int kh, int kw, int sy, int sx, int dy,
                                int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *panels,
                                const float *bias, const float *residual, int n, int n0, int cols, int act, float *out,
                                float *scratch, const float *then);
size_t bnk_conv2d_indirect_scratch(int batch, int c, int kh, int kw, int sy, int sx, int dy, int oh, int ow);

/* 3x3 stride-1 conv of a batch by Winograd F(2x2, 3x3): U is the transformed kernel, for each of the 16
   positions a cin x cout matrix in bnk_pack_panels's layout, bnk_panels_floats(cin, cout) floats each, then bias and the activation (linear, ReLU, ReLU6); with pool != 0 a
   2x2 stride-2 max pooling too (output (oh/2, ow/2, cout)). scratch holds bnk_winograd_scratch floats. */
void bnk_conv3x3_winograd(const float *input, int batch, int h, int w, int cin, int oh, int ow, int pad_top, int pad_left,
                          const float *U, const float *bias, int cout, int act, int pool, float *output, float *scratch);
/* Output channels n0..<n0+cols of bnk_conv3x3_winograd (n0 a multiple of 16; U, bias and output still
   the whole conv's), each exactly as the whole conv computes it, so threads can share one conv's
   channels; every call transforms all of the input. `then` (may be NULL): weights the caller reads
   next, prefetched during the last product's last panel (only prefetches: the sums are the same). */
void bnk_conv3x3_winograd_columns(const float *input, int batch, int h, int w, int cin, int oh, int ow, int pad_top,
                                  int pad_left, const float *U, const float *bias, int cout, int n0, int cols, int act,
                                  int pool, float *output, float *scratch, const float *then);
size_t bnk_winograd_scratch(int cin, int cout);

/* Batch-normalization statistics of a tile of `rows` samples of `channels` values (channels
   fastest): per channel the mean and the sum of squared deviations from it (M2; the
   population variance is M2 / rows), both in double. Overwrites mean[] and m2[]. */
void bnk_channel_moments(const float *x, size_t rows, size_t channels, double *mean, double *m2);
/* Which version bnk_channel_moments runs under the current cap: "avx512", "avx2" or "generic". */
const char *bnk_channel_moments_isa(void);

/* Depthwise convolution of one NHWC image (h, w, c), kernel (kh, kw, c, m), optional bias (c*m),
   into (oh, ow, c*m): output channel ch*m + j; taps outside the image add nothing; then the
   activation `act` (ReLU, ReLU6 as outputs are stored; sigmoid, swish, hard-swish as bnk_activate
   computes them, row by row while the row is in cache). `act` | BNK_DW_RELU_INPUT: each input value
   is read through a ReLU (a standalone ReLU before the conv, fused in; the same values).
   `act` | BNK_DW_PREFETCH: the input is not expected in L2 (the caller's map or batch is larger),
   so the AVX2 row kernels prefetch the rows ahead as the AVX-512 ones always do (the same values). */
enum { BNK_DW_RELU_INPUT = 0x100, BNK_DW_PREFETCH = 0x200 };
void bnk_depthwise_conv2d(const float *x, int h, int w, int c, int m, int kh, int kw, int sy, int sx, int dy, int dx,
                          int pad_top, int pad_left, int oh, int ow, const float *kernel, const float *bias, float *y, int act);
/* Which version bnk_depthwise_conv2d runs under the current cap: "avx512", "avx2" or "generic". */
const char *bnk_depthwise_isa(void);
/* Whether bnk_depthwise_conv2d (depth multiplier 1, at the AVX2 and AVX-512 levels) runs this map in its
   small-map kernel: channel blocks outermost, each block's window grid in an L1 tile (depthwise.c). */
int bnk_depthwise_small_map(int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int dx, int pad_top, int pad_left, int oh,
                            int ow);

/* Grouped convolution, NHWC (grouped.c): c input channels in `groups` groups, groups * opg
   outputs, each group's from its own c / groups inputs. The kernel (kh, kw, c / groups,
   groups * opg, Keras's layout) and bias (or NULL) packed once by bnk_grouped_pack into
   bnk_grouped_packed_size floats. `scratch`: bnk_grouped_scratch floats (one bordered image).
   act: linear, ReLU or ReLU6 (others applied by the caller). */
size_t bnk_grouped_packed_size(int groups, int taps, int cpg, int opg);
void bnk_grouped_pack(const float *kernel, const float *bias, int groups, int taps, int cpg, int opg, float *packed);
size_t bnk_grouped_scratch(int c, int kh, int kw, int sy, int sx, int dy, int dx, int oh, int ow);
void bnk_grouped_conv2d(const float *input, int batch, int h, int w, int c, int groups, int kh, int kw, int sy, int sx, int dy,
                        int dx, int pad_top, int pad_left, int oh, int ow, const float *packed, int opg, int act, float *out,
                        float *scratch);
/* Groups g0..<g1 only of bnk_grouped_conv2d (their output channels written, the others left
   alone), each value the same as the whole call's: threads share a conv on a small map by groups.
   Where groups of 4 outputs go in pairs, the bounds are taken down to even ones (ranges that
   partition the groups still do). */
void bnk_grouped_conv2d_groups(const float *input, int batch, int h, int w, int c, int groups, int kh, int kw, int sy, int sx,
                               int dy, int dx, int pad_top, int pad_left, int oh, int ow, const float *packed, int opg, int act,
                               int g0, int g1, float *out, float *scratch);
/* The version bnk_grouped_conv2d runs for groups of opg outputs under the current cap. */
const char *bnk_grouped_isa(int opg);

/* y = act(x) for n values (x == y allowed): linear (a copy), ReLU, ReLU6, sigmoid, swish
   x·sigmoid(x), hard swish x·(relu6(x + 3) / 6), GELU; exp by a polynomial (max rel. error ~2e-7). */
void bnk_activate(const float *x, float *y, size_t n, int act);
/* y = act(a + b) for n values (y may be a or b). */
void bnk_add(const float *a, const float *b, float *y, size_t n, int act);
/* y[r][j] = x[r][j] * s[j] for rows x c values (y may be x): squeeze-and-excitation's product. */
void bnk_scale_channels(const float *x, const float *s, float *y, size_t rows, size_t c);
/* y[r][j] = act(x[r][j] * s[j] + t[j]) for rows x c values (y may be x), the product rounded
   before the shift is added (no FMA, at every level). */
void bnk_affine(const float *x, const float *s, const float *t, float *y, size_t rows, size_t c, int act);
/* Softmax over each of `rows` rows of `c` values, in place: exp(x - max) / sum, exp by the same
   polynomial (differences below -87 give 0), the sum reassociated in vector lanes. */
void bnk_softmax(float *x, size_t rows, size_t c);
/* Layer normalization over each row of n values (y may be x): (x − mean) / sqrt(var + epsilon)
   · gamma + beta (gamma, beta: n values or NULL), statistics and arithmetic in double. */
void bnk_layer_norm(const float *x, float *y, size_t rows, size_t n, const float *gamma, const float *beta, double epsilon);
/* Which version the element-wise kernels run under the current cap: "avx512", "avx2" or "generic". */
const char *bnk_elementwise_isa(void);

/* Work sharing between threads: a range of part numbers [lo, hi) in one 64-bit word (lo in the
   low 32 bits), taken one part at a time from the front by the thread it was given to and from
   the back by a thread that finished its own. Each returns the part taken, or -1 when the range is
   empty. Only the claim is atomic: the parts' data is published by the pool's join. */
static inline int bnk_take_front(uint64_t *range) {
    uint64_t v = __atomic_load_n(range, __ATOMIC_RELAXED);
    for (;;) {
        const uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
        if (lo >= hi) return -1;
        if (__atomic_compare_exchange_n(range, &v, v + 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return (int)lo;
    }
}
static inline int bnk_take_back(uint64_t *range) {
    uint64_t v = __atomic_load_n(range, __ATOMIC_RELAXED);
    for (;;) {
        const uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
        if (lo >= hi) return -1;
        if (__atomic_compare_exchange_n(range, &v, v - ((uint64_t)1 << 32), 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return (int)(hi - 1);
    }
}

/* A count of finished work shared by the threads of one step: each adds one as it finishes a
   part (publishing what the part wrote), and a thread waits until all `n` are done (then it reads
   every part's output): spinning, and after 4096 spins (about 0.1-0.2 ms) yielding its core at
   each check, so that more threads than cores (the thread it waits for descheduled) do not spin
   away whole time slices. */
static inline void bnk_count_done(uint64_t *count) { __atomic_add_fetch(count, 1, __ATOMIC_RELEASE); }
static inline void bnk_wait_done(const uint64_t *count, uint64_t n) {
    for (unsigned spins = 0; __atomic_load_n(count, __ATOMIC_ACQUIRE) < n; spins++) {
        if (spins >= 4096) { sched_yield(); continue; }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}

/* A spin-wait hint (PAUSE on x86-64, YIELD on arm64). */
static inline void bnk_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
