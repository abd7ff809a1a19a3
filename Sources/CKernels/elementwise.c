/* Element-wise steps of a network: activations (out of place or in place), the residual add
   with its activation, and the per-channel scale of squeeze-and-excitation. Memory-bound loops:
   one body compiled for AVX-512, AVX2+FMA and baseline (the compiler vectorizes it, exp as a
   branch-free polynomial), chosen per call under the instruction-set cap so the tests run
   every version on this machine. */
#include "isa.h"
#include "bnkit_kernels.h"
#include <math.h>

/* exp(x), x clamped to [-86, 87]: x = n ln2 + r, a degree-7 polynomial in Horner form (max rel.
   error ~2e-7), 2^n put in the exponent field. Swish, AMD Zen 4, best of 200 over 32768 values:
   1.20 -> 1.02 cycles a value at AVX-512, 2.21 -> 1.43 at AVX2 (against a rounding instruction,
   a conversion to an integer, an add and a shift for 2^n, and the last terms as r*r*p + r + 1).
   Branch-free so the loops around it vectorize. The clamp keeps every result, and the sigmoid
   and swish built on it, out of the subnormal range: x·sigmoid(x) for x = -1000 is -5e-36, not
   a subnormal that would cost each later instruction touching it a slow microcode assist. */
static inline __attribute__((always_inline)) float exp_poly(float x) {
    x = x < -86.0f ? -86.0f : (x > 87.0f ? 87.0f : x);
    /* n = round(x log2 e) by the magic-number addition: t's low mantissa bits hold n + 127 (t in
       [2^23, 2^24), whose unit in the last place is 1), so n is t minus the magic number and the
       scale 2^n is t's bits shifted into the exponent field (no conversion to an integer). */
    const float magic = 12582912.0f + 127.0f;
    const float t = x * 1.44269504088896341f + magic;
    const float n = t - magic;
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; unsigned i; } scale = { .f = t };
    scale.i <<= 23;
    return p * scale.f;
}

/* GELU, 0.5·x·(1 + erf(x/√2)), through erfc so that the negative side keeps its relative
   accuracy (1 + erf(u) = erfc(−u) loses nothing to cancellation): erfc(z) for z = |x|/√2 ≥ 0 is
   Numerical Recipes' erfcc, t·exp(−z² + P(t)) with t = 1/(1 + z/2) (fractional error < 1.2e-7
   everywhere); 1 + erf(u) is 2 − erfc(z) for x ≥ 0 and erfc(z) below. The exponent −x²/2 + P(t)
   reaches −80, where one float rounding of it (or of z) alone is a relative error of 5e-6 in the
   result: −x²/2 is taken from x with its rounding error (an FMA: exact), exp_poly gets the
   rounded sum and the result is multiplied by 1 + the sum's error. z is clamped at 9 (erfc(9) =
   4e-37) and the negative side beyond it is 0, so no value is subnormal. Branch-free, so the loops
   vectorize; within 4e-7 of erf in double over [−12, 12]. The same error term in double instead
   (exact too) took 4.8 cycles a value at AVX-512 and 9.7 at AVX2 against 3.5 and 5.7 (AMD Zen 4,
   32768 values, best of 300); without it 2.9 and 4.9, but 1.4e-5 off at x = −12. Where there is
   no FMA instruction (x86 below AVX2) fmaf is a library call: slow, but exact. */
static inline __attribute__((always_inline)) float gelu1(float x) {
    const float ax = x < 0.0f ? -x : x;
    float z = ax * 0.70710678118654752f;
    const int far = z > 9.0f;
    z = far ? 9.0f : z;
    const float xc = far ? 12.727922f : ax;  /* 9·√2 */
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float h = -0.5f * xc;
    const float square = h * xc;                          /* −x²/2, rounded */
    const float squareError = __builtin_fmaf(h, xc, -square);
    const float high = square + p;
    const float low = (square - high) + p + squareError;  /* what high lost (exact once |x²/2| ≥ |p|) */
    const float e = t * exp_poly(high) * (1.0f + low);
    const float upper = x < 0.0f ? (far ? 0.0f : e) : 2.0f - e;
    return 0.5f * x * upper;
}

static inline __attribute__((always_inline)) float act1(float v, int act) {
    switch (act) {
    case BNK_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case BNK_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    case BNK_ACT_SIGMOID: return 1.0f / (1.0f + exp_poly(-v));
    case BNK_ACT_SWISH: return v / (1.0f + exp_poly(-v));
    case BNK_ACT_HARD_SWISH: {
        float t = v + 3.0f;
        t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
        return v * (t / 6.0f);
    }
    case BNK_ACT_GELU: return gelu1(v);
    default: return v;
    }
}

/* One loop per activation, so each is a straight vectorizable loop; an in-place call gets a
   loop over one pointer, an out-of-place one restrict pointers (with pointers that may alias,
   the vectorized loop would be skipped at run time for x == y). */
#define ACT_CASES(LOOP)                                                \
    switch (act) {                                                     \
    case BNK_ACT_RELU: LOOP(BNK_ACT_RELU); break;                      \
    case BNK_ACT_RELU6: LOOP(BNK_ACT_RELU6); break;                    \
    case BNK_ACT_SIGMOID: LOOP(BNK_ACT_SIGMOID); break;                \
    case BNK_ACT_SWISH: LOOP(BNK_ACT_SWISH); break;                    \
    case BNK_ACT_HARD_SWISH: LOOP(BNK_ACT_HARD_SWISH); break;          \
    case BNK_ACT_GELU: LOOP(BNK_ACT_GELU); break;                      \
    default: LOOP(BNK_ACT_LINEAR); break;                              \
    }

static inline __attribute__((always_inline)) void activate_inplace(float *restrict d, size_t n, int act) {
#define INPLACE(ACT) for (size_t i = 0; i < n; i++) d[i] = act1(d[i], ACT)
    if (act == BNK_ACT_LINEAR) return;
    ACT_CASES(INPLACE)
#undef INPLACE
}

static inline __attribute__((always_inline)) void activate_body(const float *x, float *y, size_t n, int act) {
    if (x == y) { activate_inplace(y, n, act); return; }
    const float *restrict in = x;
    float *restrict out = y;
#define OUTOFPLACE(ACT) for (size_t i = 0; i < n; i++) out[i] = act1(in[i], ACT)
    ACT_CASES(OUTOFPLACE)
#undef OUTOFPLACE
}

static inline __attribute__((always_inline)) void add_inplace(float *restrict d, const float *restrict b, size_t n, int act) {
#define ADDTO(ACT) for (size_t i = 0; i < n; i++) d[i] = act1(d[i] + b[i], ACT)
    ACT_CASES(ADDTO)
#undef ADDTO
}

static inline __attribute__((always_inline)) void add_body(const float *a, const float *b, float *y, size_t n, int act) {
    if (y == a && y == b) { for (size_t i = 0; i < n; i++) y[i] = act1(y[i] + y[i], act); return; }
    if (y == a) { add_inplace(y, b, n, act); return; }
    if (y == b) { add_inplace(y, a, n, act); return; }
    const float *restrict p = a, *restrict q = b;
    float *restrict out = y;
#define ADD(ACT) for (size_t i = 0; i < n; i++) out[i] = act1(p[i] + q[i], ACT)
    ACT_CASES(ADD)
#undef ADD
}

static inline __attribute__((always_inline)) void scale_body(const float *x, const float *s, float *y, size_t rows, size_t c) {
    for (size_t r = 0; r < rows; r++) {
        const float *restrict in = x + r * c, *restrict scale = s;
        float *restrict out = y + r * c;
        if (x == y) {
            float *restrict d = y + r * c;
            for (size_t j = 0; j < c; j++) d[j] *= scale[j];
        } else {
            for (size_t j = 0; j < c; j++) out[j] = in[j] * scale[j];
        }
    }
}

/* Each of `rows` rows of `c` channels scaled and shifted per channel, then the activation, in one
   pass (a BatchNormalization no conv can absorb, and the ReLU after it: DenseNet's pre-activations).
   The product is rounded before the shift is added (no FMA), as the plain x * s + t: the same
   values at every instruction-set level. */
static inline __attribute__((always_inline)) void affine_body(const float *x, const float *s, const float *t, float *y, size_t rows,
                                                               size_t c, int act) {
#pragma clang fp contract(off)
#define AFFINE(ACT)                                                                              \
    for (size_t r = 0; r < rows; r++) {                                                          \
        const float *restrict scale = s, *restrict shift = t;                                    \
        if (x == y) {                                                                            \
            float *restrict d = y + r * c;                                                       \
            for (size_t j = 0; j < c; j++) d[j] = act1(d[j] * scale[j] + shift[j], ACT);         \
        } else {                                                                                 \
            const float *restrict in = x + r * c;                                                \
            float *restrict out = y + r * c;                                                     \
            for (size_t j = 0; j < c; j++) out[j] = act1(in[j] * scale[j] + shift[j], ACT);     \
        }                                                                                        \
    }
    ACT_CASES(AFFINE)
#undef AFFINE
}

/* Softmax over each of `rows` rows of `c` values, in place: the row's maximum subtracted, exp,
   each divided by the sum (as Keras: exp(x - max) / sum). Differences below -87 give 0 (exp_poly
   would stop at exp(-86); libm's expf gives a subnormal there, under 1.2e-38 either way). The
   sum is taken in vector lanes (reassociated), so it may differ from a sequential sum, and
   between instruction-set levels, in the last bits. Against the Swift loop it replaces (libm's
   expf a value), AMD Zen 3, AVX2, best of 200: 10,000 rows of 10 (the seed MLP's head) 4.77 ->
   2.65 ns a value, 16 rows of 1,000 4.17 -> 0.67. */
static inline __attribute__((always_inline)) void softmax_body(float *x, size_t rows, size_t c) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict d = x + r * c;
        /* The maximum in 16 lanes (vectorized), then across them. */
        float lanes[16], maximum = -INFINITY;
        for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
        size_t j = 0;
        for (; j + 16 <= c; j += 16)
            for (int l = 0; l < 16; l++) lanes[l] = d[j + l] > lanes[l] ? d[j + l] : lanes[l];
        for (; j < c; j++) maximum = d[j] > maximum ? d[j] : maximum;
        for (int l = 0; l < 16; l++) maximum = lanes[l] > maximum ? lanes[l] : maximum;
        /* A NaN anywhere makes the row NaN, as the sequential code did through max(). */
        for (j = 0; j < c; j++) {
            const float v = d[j] - maximum;
            d[j] = v < -87.0f ? 0.0f : exp_poly(v);
        }
        float sum = 0.0f;
        {
#pragma clang fp reassociate(on)
            for (j = 0; j < c; j++) sum += d[j];
        }
        for (j = 0; j < c; j++) d[j] /= sum;
    }
}

/* Layer normalization of each of `rows` rows of n values (y may be x): the mean and variance in
   double, summed in vector lanes (reassociated, so the last bits may differ from a sequential
   sum and between levels), each value normalized, scaled by gamma and shifted by beta (either
   NULL for none) in double and rounded once. Against the Swift loop it replaces (the same
   arithmetic one value at a time), torchvision's convnext_tiny at 96×96, batch 1, one thread,
   AMD Zen 4 (AVX-512): its 23 LayerNorms 1.55 -> 0.33 ms an image. */
static inline __attribute__((always_inline)) void layer_norm_body(const float *x, float *y, size_t rows, size_t n, const float *gamma,
                                                                  const float *beta, double epsilon) {
    for (size_t r = 0; r < rows; r++) {
        const float *s = x + r * n;
        float *d = y + r * n;
        double sum = 0.0, squares = 0.0;
        {
#pragma clang fp reassociate(on)
            for (size_t j = 0; j < n; j++) sum += (double)s[j];
        }
        const double mean = sum / (double)n;
        {
#pragma clang fp reassociate(on)
            for (size_t j = 0; j < n; j++) {
                const double v = (double)s[j] - mean;
                squares += v * v;
            }
        }
        const double inv = 1.0 / sqrt(squares / (double)n + epsilon);
        if (gamma && beta)
            for (size_t j = 0; j < n; j++) d[j] = (float)(((double)s[j] - mean) * inv * (double)gamma[j] + (double)beta[j]);
        else if (gamma)
            for (size_t j = 0; j < n; j++) d[j] = (float)(((double)s[j] - mean) * inv * (double)gamma[j]);
        else if (beta)
            for (size_t j = 0; j < n; j++) d[j] = (float)(((double)s[j] - mean) * inv + (double)beta[j]);
        else
            for (size_t j = 0; j < n; j++) d[j] = (float)(((double)s[j] - mean) * inv);
    }
}

BNK_VARIANTS(activate, (const float *x, float *y, size_t n, int act), (x, y, n, act))
BNK_VARIANTS(softmax, (float *x, size_t rows, size_t c), (x, rows, c))
BNK_VARIANTS(add, (const float *a, const float *b, float *y, size_t n, int act), (a, b, y, n, act))
BNK_VARIANTS(scale, (const float *x, const float *s, float *y, size_t rows, size_t c), (x, s, y, rows, c))
BNK_VARIANTS(affine, (const float *x, const float *s, const float *t, float *y, size_t rows, size_t c, int act), (x, s, t, y, rows, c, act))
BNK_VARIANTS(layer_norm, (const float *x, float *y, size_t rows, size_t n, const float *gamma, const float *beta, double epsilon),
             (x, y, rows, n, gamma, beta, epsilon))

void bnk_activate(const float *x, float *y, size_t n, int act) { activate_dispatch(x, y, n, act); }
void bnk_add(const float *a, const float *b, float *y, size_t n, int act) { add_dispatch(a, b, y, n, act); }
void bnk_scale_channels(const float *x, const float *s, float *y, size_t rows, size_t c) { scale_dispatch(x, s, y, rows, c); }
void bnk_softmax(float *x, size_t rows, size_t c) { softmax_dispatch(x, rows, c); }
void bnk_affine(const float *x, const float *s, const float *t, float *y, size_t rows, size_t c, int act) {
    affine_dispatch(x, s, t, y, rows, c, act);
}

void bnk_layer_norm(const float *x, float *y, size_t rows, size_t n, const float *gamma, const float *beta, double epsilon) {
    layer_norm_dispatch(x, y, rows, n, gamma, beta, epsilon);
}

/* The transpose of rows r0..<r1 (bnk_transpose_rows). x86 (AVX2 and AVX-512 alike): blocks of 8
   rows x 8 columns turned in registers (unpack, shuffle, permute), each column of the block one
   32-byte store; a last block of under 8 columns loaded masked, its columns stored alone. The
   AVX-512 level runs it too: 16-lane versions (gathers, or columns of 16 rows assembled lane by
   lane) were no faster where the transpose streams through memory (50,176 x 21, an LR-ASPP map:
   277-391 us hot against 330-343) and 2-3x slower where it does not (3,136 x 96: 108 against 36
   us; 784 x 1,000: 184-268 against 98), AMD Zen 4. Portable: blocks of 16 rows, one column at a
   time (a 16 x 16 tile loop took 354 us on the LR-ASPP map, this 288). */
static void transpose_rows_portable(const float *s, float *t, int a, int b, int r0, int r1) {
    int i0 = r0;
    for (; i0 + 16 <= r1; i0 += 16) {
        const float *block = s + (size_t)i0 * b;
        for (int j = 0; j < b; j++) {
            float *column = t + (size_t)j * a + i0;
            for (int k = 0; k < 16; k++) column[k] = block[(size_t)k * b + j];
        }
    }
    for (; i0 < r1; i0++)
        for (int j = 0; j < b; j++) t[(size_t)j * a + i0] = s[(size_t)i0 * b + j];
}

#if BNK_X86
__attribute__((target("avx2,fma")))
static void transpose_rows_avx2(const float *s, float *t, int a, int b, int r0, int r1) {
    int i0 = r0;
    for (; i0 + 8 <= r1; i0 += 8) {
        for (int j0 = 0; j0 < b; j0 += 8) {
            const int n = b - j0 < 8 ? b - j0 : 8;
            const float *corner = s + (size_t)i0 * b + j0;
            __m256 r[8];
            if (n == 8) {
                for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(corner + (size_t)k * b);
            } else {
                const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                for (int k = 0; k < 8; k++) r[k] = _mm256_maskload_ps(corner + (size_t)k * b, mask);
            }
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            const __m256 o[8] = {
                _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
            for (int k = 0; k < n; k++) _mm256_storeu_ps(t + (size_t)(j0 + k) * a + i0, o[k]);
        }
    }
    transpose_rows_portable(s, t, a, b, i0, r1);  /* the last rows, under 8: one by one */
}
#endif

void bnk_transpose_rows(const float *source, float *target, int a, int b, int r0, int r1) {
#if BNK_X86
    if (bnk_use_avx2()) { transpose_rows_avx2(source, target, a, b, r0, r1); return; }
#endif
    transpose_rows_portable(source, target, a, b, r0, r1);
}

const char *bnk_elementwise_isa(void) { return bnk_isa_name(); }
