/* Grouped convolution (ResNeXt's 32 groups of 4 to 32 channels, RegNet's groups of 8 or more,
 * ShuffleNet v1): each group's output channels from its own input channels only, NHWC.
 *
 * Direct, vectorized over a group's output channels: for a tile of R output pixels of one row and
 * V vectors of one group's outputs, each input value of the window (one tap, one input channel of
 * the group) is broadcast and multiplied into the V weight vectors, so the accumulators stay in
 * registers over the whole window (taps x channels per group). The weights are packed once per
 * model (bnk_grouped_pack): group by group, tap by tap, input channel by input channel, the
 * group's outputs padded to a multiple of 8, then the biases padded the same way.
 *
 * AVX2+FMA: 8-lane vectors, tiles of 12 x 1, 6 x 2, 4 x 3 or 2 x 4 vectors (up to 12 accumulators
 * of 16 registers); groups of 4 outputs (4k inputs, an even number of groups) two a vector, each
 * group's input values broadcast into its half by an in-lane shuffle, tiles of 8 pixels. AVX-512: 16-lane vectors where a group has a multiple of 16 outputs (up to
 * 24 accumulators of 32 registers); groups of fewer (RegNet's 8, ResNeXt's first stage's 4) run
 * the 8-lane tiles and pairs, since a 16-lane vector would be half empty and a 512-bit FMA costs two
 * 256-bit ones on AMD Zen 4. Baseline: plain loops over the same packing. Every output is
 * summed from its bias, tap by tap and channel by channel, in float32 (FMA on the vector paths).
 *
 * Padding: the image is copied inside a zero border (as the indirect convolution does) unless
 * every window lies inside it.
 */
#include "bnkit_kernels.h"
#include "isa.h"
#include <stdlib.h>
#include <string.h>

static int round8(int n) { return (n + 7) / 8 * 8; }

/* Groups of 4 outputs (ResNeXt 32x4d's first stage) go in pairs: one 8-lane vector holds two
   groups' outputs, lanes 0-3 the even group's, 4-7 the odd one's, and the two groups' input
   values are broadcast into their halves by one in-lane shuffle each (bnk_grouped_conv2d). */
static int paired(int groups, int cpg, int opg) { return opg == 4 && cpg % 4 == 0 && groups % 2 == 0; }

/* Where group g's packed weights (rows 8 floats apart, or round8(opg)) and bias start. */
static size_t weights_at(int g, int taps, int cpg, int opg, int pair) {
    return pair ? (size_t)(g / 2) * taps * cpg * 8 + (size_t)(g % 2) * 4 : (size_t)g * taps * cpg * round8(opg);
}
static size_t bias_at(int g, int opg, int pair) { return pair ? (size_t)(g / 2) * 8 + (size_t)(g % 2) * 4 : (size_t)g * round8(opg); }

size_t bnk_grouped_packed_size(int groups, int taps, int cpg, int opg) {
    /* + 8: the portable loops read whole rows of 8 past a group's last output. */
    if (paired(groups, cpg, opg)) return (size_t)groups / 2 * ((size_t)taps * cpg + 1) * 8 + 8;
    return (size_t)groups * ((size_t)taps * cpg + 1) * round8(opg) + 8;
}

void bnk_grouped_pack(const float *kernel, const float *bias, int groups, int taps, int cpg, int opg, float *packed) {
    const int n = groups * opg, stride = round8(opg), pair = paired(groups, cpg, opg);
    const size_t biases = pair ? (size_t)groups / 2 * taps * cpg * 8 : (size_t)groups * taps * cpg * stride;
    memset(packed, 0, bnk_grouped_packed_size(groups, taps, cpg, opg) * sizeof(float));
    for (int g = 0; g < groups; g++) {
        float *w = packed + weights_at(g, taps, cpg, opg, pair);
        for (int t = 0; t < taps; t++)
            for (int ci = 0; ci < cpg; ci++, w += stride)
                for (int o = 0; o < opg; o++) w[o] = kernel[((size_t)t * cpg + ci) * n + (size_t)g * opg + o];
        if (bias)
            for (int o = 0; o < opg; o++) packed[biases + bias_at(g, opg, pair) + o] = bias[(size_t)g * opg + o];
    }
}

/* The geometry of one call, the input already bordered or in place: row r of the window grid
   starts at x + r * ld (floats), pixels c floats apart. */
typedef struct {
    const float *x;
    size_t ld;
    int c, cpg, opg, stride, groups, kh, kw, sy, sx, dy, dx, oh, ow, act, pair;
    int g0, g1;   /* the groups computed: g0..<g1 (even bounds for pairs) */
    const float *packed, *bias;
    float *y;
} grouped_call;

/* Portable: 4 pixels x 8 outputs at a time, loops of fixed length over the packed rows (which
   the compiler vectorizes, with NEON on arm64); lanes past a group's outputs read padding or the
   next group's weights (the packing keeps 8 floats of slack) and are not stored. */
static void grouped_generic(const grouped_call *p) {
    const int taps = p->kh * p->kw, n = p->groups * p->opg;
    const size_t xs = (size_t)p->sx * p->c;
    for (int oy = 0; oy < p->oh; oy++)
        for (int g = p->g0; g < p->g1; g++) {
            const float *w = p->packed + weights_at(g, taps, p->cpg, p->opg, p->pair);
            const float *bias = p->bias + bias_at(g, p->opg, p->pair);
            for (int o0 = 0; o0 < p->opg; o0 += 8) {
                const int width = p->opg - o0 < 8 ? p->opg - o0 : 8;
                for (int ox0 = 0; ox0 < p->ow; ox0 += 4) {
                    const int pixels = p->ow - ox0 < 4 ? p->ow - ox0 : 4;
                    float acc[4][8];
                    for (int r = 0; r < 4; r++)
                        for (int o = 0; o < 8; o++) acc[r][o] = bias[o0 + o];
                    for (int ky = 0; ky < p->kh; ky++)
                        for (int kx = 0; kx < p->kw; kx++) {
                            const float *in = p->x + (size_t)(oy * p->sy + ky * p->dy) * p->ld + (size_t)(ox0 * p->sx + kx * p->dx) * p->c
                                              + (size_t)g * p->cpg;
                            const float *wt = w + (size_t)(ky * p->kw + kx) * p->cpg * p->stride + o0;
                            for (int ci = 0; ci < p->cpg; ci++) {
                                const float *wr = wt + (size_t)ci * p->stride;
                                for (int r = 0; r < pixels; r++) {
                                    const float xv = in[r * xs + ci];
                                    for (int o = 0; o < 8; o++) acc[r][o] += xv * wr[o];
                                }
                            }
                        }
                    for (int r = 0; r < pixels; r++) {
                        float *out = p->y + ((size_t)oy * p->ow + ox0 + r) * n + (size_t)g * p->opg + o0;
                        for (int o = 0; o < width; o++) {
                            float v = acc[r][o];
                            if (p->act == BNK_ACT_RELU || p->act == BNK_ACT_RELU6) v = v > 0 ? v : 0;
                            if (p->act == BNK_ACT_RELU6) v = v < 6 ? v : 6;
                            out[o] = v;
                        }
                    }
                }
            }
        }
}

#if BNK_X86
#define FOR_R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
/* CALL(r) for the r (1 to 11) pixels a row has left after its whole tiles, r a constant in each
   case so every tile keeps its accumulators in registers. */
#define REST_CASES(rest, CALL)                                                                  \
    switch (rest) {                                                                             \
    case 11: CALL(11); break; case 10: CALL(10); break; case 9: CALL(9); break;                 \
    case 8: CALL(8); break; case 7: CALL(7); break; case 6: CALL(6); break;                     \
    case 5: CALL(5); break; case 4: CALL(4); break; case 3: CALL(3); break;                     \
    case 2: CALL(2); break; case 1: CALL(1); break; default: break;                             \
    }

/* R pixels x V (<= 4) vectors of 8 outputs of one group, from output pixel `first` of a row. */
__attribute__((target("avx2,fma"), always_inline))
static inline void tile8(const int R, const int V, const grouped_call *p, const float *row, const float *w, const float *bias,
                         float *out, int left) {
    const size_t xs = (size_t)p->sx * p->c;
    const __m256 b0 = _mm256_loadu_ps(bias), b1 = V > 1 ? _mm256_loadu_ps(bias + 8) : b0,
                 b2 = V > 2 ? _mm256_loadu_ps(bias + 16) : b0, b3 = V > 3 ? _mm256_loadu_ps(bias + 24) : b0;
#define DECLARE(r) __m256 a##r##_0 = b0, a##r##_1 = b1, a##r##_2 = b2, a##r##_3 = b3;
    FOR_R12(DECLARE)
#undef DECLARE
    for (int ky = 0; ky < p->kh; ky++)
        for (int kx = 0; kx < p->kw; kx++) {
            const float *in = row + (size_t)ky * p->dy * p->ld + (size_t)kx * p->dx * p->c;
            const float *wt = w + (size_t)(ky * p->kw + kx) * p->cpg * p->stride;
            for (int ci = 0; ci < p->cpg; ci++, wt += p->stride) {
                const __m256 w0 = _mm256_loadu_ps(wt), w1 = V > 1 ? _mm256_loadu_ps(wt + 8) : w0,
                             w2 = V > 2 ? _mm256_loadu_ps(wt + 16) : w0, w3 = V > 3 ? _mm256_loadu_ps(wt + 24) : w0;
#define FMA(r) if ((r) < R) { const __m256 v = _mm256_broadcast_ss(in + (r) * xs + ci);        \
                              a##r##_0 = _mm256_fmadd_ps(v, w0, a##r##_0);                     \
                              if (V > 1) a##r##_1 = _mm256_fmadd_ps(v, w1, a##r##_1);          \
                              if (V > 2) a##r##_2 = _mm256_fmadd_ps(v, w2, a##r##_2);          \
                              if (V > 3) a##r##_3 = _mm256_fmadd_ps(v, w3, a##r##_3); }
                FOR_R12(FMA)
#undef FMA
            }
        }
    /* Lanes < left of the last vector exist (the group's outputs past 8 (V - 1)). */
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const size_t n = (size_t)p->groups * p->opg;
#define STORE(r) if ((r) < R) { float *o = out + (r) * n;                                                   \
        if (V == 1) bnk_store8(o, left, mask, bnk_act256(a##r##_0, p->act));                                \
        else _mm256_storeu_ps(o, bnk_act256(a##r##_0, p->act));                                             \
        if (V == 2) bnk_store8(o + 8, left, mask, bnk_act256(a##r##_1, p->act));                            \
        else if (V > 2) _mm256_storeu_ps(o + 8, bnk_act256(a##r##_1, p->act));                              \
        if (V == 3) bnk_store8(o + 16, left, mask, bnk_act256(a##r##_2, p->act));                           \
        else if (V > 3) _mm256_storeu_ps(o + 16, bnk_act256(a##r##_2, p->act));                             \
        if (V == 4) bnk_store8(o + 24, left, mask, bnk_act256(a##r##_3, p->act)); }
    FOR_R12(STORE)
#undef STORE
}

/* One group's vectors v0..v0+V of a whole output row, in tiles of `most` pixels (12 / V). */
__attribute__((target("avx2,fma"), always_inline))
static inline void row8(const int V, const int most, const grouped_call *p, const float *row, const float *w, const float *bias,
                        float *out, int left) {
    const size_t xs = (size_t)p->sx * p->c, n = (size_t)p->groups * p->opg;
    int ox = 0;
    for (; ox + most <= p->ow; ox += most) tile8(most, V, p, row + ox * xs, w, bias, out + ox * n, left);
#define TAIL(r) tile8((r) < most ? (r) : most, V, p, row + ox * xs, w, bias, out + ox * n, left)
    REST_CASES(p->ow - ox, TAIL)
#undef TAIL
}

__attribute__((target("avx2,fma")))
static void grouped_avx2(const grouped_call *p) {
    const int taps = p->kh * p->kw, vectors = p->stride / 8;
    const size_t n = (size_t)p->groups * p->opg;
    for (int oy = 0; oy < p->oh; oy++) {
        const float *row = p->x + (size_t)oy * p->sy * p->ld;
        for (int g = p->g0; g < p->g1; g++) {
            const float *w = p->packed + (size_t)g * taps * p->cpg * p->stride;
            const float *bias = p->bias + (size_t)g * p->stride;
            float *out = p->y + (size_t)oy * p->ow * n + (size_t)g * p->opg;
            for (int v0 = 0; v0 < vectors; v0 += 4) {
                const int V = vectors - v0 < 4 ? vectors - v0 : 4;
                const int left = p->opg - 8 * (v0 + V - 1);
                const float *in = row + (size_t)g * p->cpg;
                switch (V) {
                case 1: row8(1, 12, p, in, w + 8 * v0, bias + 8 * v0, out + 8 * v0, left); break;
                case 2: row8(2, 6, p, in, w + 8 * v0, bias + 8 * v0, out + 8 * v0, left); break;
                case 3: row8(3, 4, p, in, w + 8 * v0, bias + 8 * v0, out + 8 * v0, left); break;
                default: row8(4, 2, p, in, w + 8 * v0, bias + 8 * v0, out + 8 * v0, left); break;
                }
            }
        }
    }
}

/* Pairs of groups of 4 outputs: R (<= 8) pixels of one pair. For each tap and each 4 input
   channels, one load puts the even group's 4 values in lanes 0-3 and the odd group's in 4-7
   (one 8-float load when the groups have 4 inputs), and an in-lane shuffle per channel
   broadcasts each group's value into its half. */
__attribute__((target("avx2,fma"), always_inline))
static inline void tile_pair(const int R, const grouped_call *p, const float *row, const float *w, const float *bias, float *out) {
    const size_t xs = (size_t)p->sx * p->c, n = (size_t)p->groups * p->opg;
    const __m256 b = _mm256_loadu_ps(bias);
#define DECLARE(r) __m256 a##r = b;
    FOR_R12(DECLARE)
#undef DECLARE
    for (int ky = 0; ky < p->kh; ky++)
        for (int kx = 0; kx < p->kw; kx++) {
            const float *in = row + (size_t)ky * p->dy * p->ld + (size_t)kx * p->dx * p->c;
            const float *wt = w + (size_t)(ky * p->kw + kx) * p->cpg * 8;
            for (int ci = 0; ci < p->cpg; ci += 4, wt += 32) {
                const __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8), w2 = _mm256_loadu_ps(wt + 16),
                             w3 = _mm256_loadu_ps(wt + 24);
#define FMA(r) if ((r) < R) { const float *x = in + (r) * xs + ci;                                                      \
                              const __m256 v = p->cpg == 4 ? _mm256_loadu_ps(x)                                          \
                                  : _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(x)), _mm_loadu_ps(x + p->cpg), 1); \
                              a##r = _mm256_fmadd_ps(_mm256_permute_ps(v, 0x00), w0, a##r);                             \
                              a##r = _mm256_fmadd_ps(_mm256_permute_ps(v, 0x55), w1, a##r);                             \
                              a##r = _mm256_fmadd_ps(_mm256_permute_ps(v, 0xAA), w2, a##r);                             \
                              a##r = _mm256_fmadd_ps(_mm256_permute_ps(v, 0xFF), w3, a##r); }
                FOR_R12(FMA)
#undef FMA
            }
        }
#define STORE(r) if ((r) < R) _mm256_storeu_ps(out + (r) * n, bnk_act256(a##r, p->act));
    FOR_R12(STORE)
#undef STORE
}

__attribute__((target("avx2,fma")))
static void grouped_pairs_avx2(const grouped_call *p) {
    const int taps = p->kh * p->kw;
    const size_t xs = (size_t)p->sx * p->c, n = (size_t)p->groups * p->opg;
    for (int oy = 0; oy < p->oh; oy++) {
        const float *row = p->x + (size_t)oy * p->sy * p->ld;
        for (int q = p->g0 / 2; q < p->g1 / 2; q++) {
            const float *w = p->packed + (size_t)q * taps * p->cpg * 8, *bias = p->bias + (size_t)q * 8;
            const float *in = row + (size_t)2 * q * p->cpg;
            float *out = p->y + (size_t)oy * p->ow * n + (size_t)q * 8;
            int ox = 0;
            for (; ox + 8 <= p->ow; ox += 8) tile_pair(8, p, in + ox * xs, w, bias, out + ox * n);
#define TAIL(r) tile_pair((r) < 8 ? (r) : 8, p, in + ox * xs, w, bias, out + ox * n)
            REST_CASES(p->ow - ox, TAIL)
#undef TAIL
        }
    }
}

/* AVX-512: R pixels x V (<= 4) vectors of 16 outputs (the group's outputs a multiple of 16). */
__attribute__((target("avx512f"), always_inline))
static inline void tile16(const int R, const int V, const grouped_call *p, const float *row, const float *w, const float *bias,
                          float *out) {
    const size_t xs = (size_t)p->sx * p->c;
    const __m512 b0 = _mm512_loadu_ps(bias), b1 = V > 1 ? _mm512_loadu_ps(bias + 16) : b0,
                 b2 = V > 2 ? _mm512_loadu_ps(bias + 32) : b0, b3 = V > 3 ? _mm512_loadu_ps(bias + 48) : b0;
#define DECLARE(r) __m512 a##r##_0 = b0, a##r##_1 = b1, a##r##_2 = b2, a##r##_3 = b3;
    FOR_R12(DECLARE)
#undef DECLARE
    for (int ky = 0; ky < p->kh; ky++)
        for (int kx = 0; kx < p->kw; kx++) {
            const float *in = row + (size_t)ky * p->dy * p->ld + (size_t)kx * p->dx * p->c;
            const float *wt = w + (size_t)(ky * p->kw + kx) * p->cpg * p->stride;
            for (int ci = 0; ci < p->cpg; ci++, wt += p->stride) {
                const __m512 w0 = _mm512_loadu_ps(wt), w1 = V > 1 ? _mm512_loadu_ps(wt + 16) : w0,
                             w2 = V > 2 ? _mm512_loadu_ps(wt + 32) : w0, w3 = V > 3 ? _mm512_loadu_ps(wt + 48) : w0;
#define FMA(r) if ((r) < R) { const __m512 v = _mm512_set1_ps(in[(r) * xs + ci]);                \
                              a##r##_0 = _mm512_fmadd_ps(v, w0, a##r##_0);                     \
                              if (V > 1) a##r##_1 = _mm512_fmadd_ps(v, w1, a##r##_1);          \
                              if (V > 2) a##r##_2 = _mm512_fmadd_ps(v, w2, a##r##_2);          \
                              if (V > 3) a##r##_3 = _mm512_fmadd_ps(v, w3, a##r##_3); }
                FOR_R12(FMA)
#undef FMA
            }
        }
    const size_t n = (size_t)p->groups * p->opg;
#define STORE(r) if ((r) < R) { float *o = out + (r) * n;                                   \
        _mm512_storeu_ps(o, bnk_act512(a##r##_0, p->act));                                  \
        if (V > 1) _mm512_storeu_ps(o + 16, bnk_act512(a##r##_1, p->act));                  \
        if (V > 2) _mm512_storeu_ps(o + 32, bnk_act512(a##r##_2, p->act));                  \
        if (V > 3) _mm512_storeu_ps(o + 48, bnk_act512(a##r##_3, p->act)); }
    FOR_R12(STORE)
#undef STORE
}

/* One group's 16-lane vectors v0..v0+V of a whole output row, in tiles of `most` pixels. */
__attribute__((target("avx512f"), always_inline))
static inline void row16(const int V, const int most, const grouped_call *p, const float *row, const float *w, const float *bias,
                         float *out) {
    const size_t xs = (size_t)p->sx * p->c, n = (size_t)p->groups * p->opg;
    int ox = 0;
    for (; ox + most <= p->ow; ox += most) tile16(most, V, p, row + ox * xs, w, bias, out + ox * n);
#define TAIL(r) tile16((r) < most ? (r) : most, V, p, row + ox * xs, w, bias, out + ox * n)
    REST_CASES(p->ow - ox, TAIL)
#undef TAIL
}

__attribute__((target("avx512f")))
static void grouped_avx512(const grouped_call *p) {
    const int taps = p->kh * p->kw, vectors = p->stride / 16;
    const size_t n = (size_t)p->groups * p->opg;
    for (int oy = 0; oy < p->oh; oy++) {
        const float *row = p->x + (size_t)oy * p->sy * p->ld;
        for (int g = p->g0; g < p->g1; g++) {
            const float *w = p->packed + (size_t)g * taps * p->cpg * p->stride;
            const float *bias = p->bias + (size_t)g * p->stride;
            float *out = p->y + (size_t)oy * p->ow * n + (size_t)g * p->opg;
            const float *in = row + (size_t)g * p->cpg;
            for (int v0 = 0; v0 < vectors; v0 += 4) {
                const int V = vectors - v0 < 4 ? vectors - v0 : 4;
                switch (V) {
                case 1: row16(1, 12, p, in, w + 16 * v0, bias + 16 * v0, out + 16 * v0); break;
                case 2: row16(2, 12, p, in, w + 16 * v0, bias + 16 * v0, out + 16 * v0); break;
                case 3: row16(3, 7, p, in, w + 16 * v0, bias + 16 * v0, out + 16 * v0); break;
                default: row16(4, 6, p, in, w + 16 * v0, bias + 16 * v0, out + 16 * v0); break;
                }
            }
        }
    }
}
#endif

/* The bordered input's rows and columns: the window grid. */
static void bordered_size(int kh, int kw, int sy, int sx, int dy, int dx, int oh, int ow, int *ph, int *pw) {
    *ph = (oh - 1) * sy + (kh - 1) * dy + 1;
    *pw = (ow - 1) * sx + (kw - 1) * dx + 1;
}

/* Floats before the pointer table of grouped_gemm: a zero row of c floats, to a whole line. */
static size_t zero_row_floats(int c) { return ((size_t)c + 15) / 16 * 16; }

size_t bnk_grouped_scratch(int c, int kh, int kw, int sy, int sx, int dy, int dx, int oh, int ow) {
    int ph, pw;
    bordered_size(kh, kw, sy, sx, dy, dx, oh, ow, &ph, &pw);
    const size_t bordered = (size_t)ph * pw * c;
    /* or grouped_gemm's zero row and one image's pointer table */
    const size_t table = zero_row_floats(c) + ((size_t)oh * ow * kh * kw * sizeof(float *) + sizeof(float) - 1) / sizeof(float);
    return bordered > table ? bordered : table;
}

#if BNK_X86
/* Whether rows this short go as an indirect GEMM (grouped_gemm) rather than by the row tiles: a
   tile holds one row's pixels, so on a row of fewer than 6 it keeps fewer sums in flight than the
   FMA units take (a 3 x 3 map: three), where the GEMM's tiles take 6 to 12 pixels of any rows.
   torchvision's RegNetX-400MF at 96 x 96, batch 16, one thread, AMD Zen 4 (profiles of 800
   images): its twelve 3 x 3 convs on 3 x 3 x 400 maps (25 groups of 16) 15-16 -> 12 us an image at
   AVX-512 and at AVX2 (1.22-1.35x), the network 1.01-1.02x; on 6 x 6 maps 0.95-1.05x, and on 7 x 7
   (RegNetX-400MF 224's last stage, batch 8, AVX-512, two profiles each) 35.3-35.5 against 36.4-36.6
   ms, so rows of 6 or more keep the row tiles. Groups of a multiple of 16 outputs at AVX-512 (its GEMM tiles), of
   8 at AVX2 (bnk_block_avx2, 16 columns at a time); not the pairs of 4. */
static int grouped_as_gemm(int ow, int opg, int pair) {
    if (pair || ow >= 6) return 0;
    return (bnk_use_avx512() && opg % 16 == 0) || (bnk_use_avx2() && opg % 8 == 0);
}

/* The groups g0..<g1 as an indirect GEMM each (indirect.c's way, the GEMM's microkernels): M =
   every output pixel of a chunk of images, A's rows read through a table of pointers (one per
   pixel and tap, to the group's input channels there, or to a zero row outside the image), B the
   group's packed weights in place (taps x channels rows of round8(opg) floats), from the bias
   and tap by tap, channel by channel: the sums of the row tiles, bit for bit. */
static void grouped_gemm(const grouped_call *p, const float *input, int batch, int h, int w, int pad_top, int pad_left, float *out,
                         float *scratch) {
    const int c = p->c, cpg = p->cpg, opg = p->opg, stride = p->stride, kh = p->kh, kw = p->kw, taps = kh * kw;
    const int n = p->groups * opg, oh = p->oh, ow = p->ow, g0 = p->g0;
    float *zero = scratch;
    memset(zero, 0, (size_t)c * sizeof(float));
    const float **table = (const float **)(scratch + zero_row_floats(c));
    const size_t per_image = (size_t)oh * ow * taps;
    const size_t room = (bnk_grouped_scratch(c, kh, kw, p->sy, p->sx, p->dy, p->dx, oh, ow) - zero_row_floats(c)) * sizeof(float) /
                        sizeof(float *);
    const int chunk = room / per_image < 1 ? 1 : room / per_image > (size_t)batch ? batch : (int)(room / per_image);
    const int avx512 = bnk_use_avx512() && opg % 16 == 0;
    for (int b0 = 0; b0 < batch; b0 += chunk) {
        const int images = batch - b0 < chunk ? batch - b0 : chunk;
        size_t entries = 0;
        for (int b = 0; b < images; b++) {
            const float *image = input + (size_t)(b0 + b) * h * w * c + (size_t)g0 * cpg;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++) {
                            const int iy = oy * p->sy - pad_top + ky * p->dy, ix = ox * p->sx - pad_left + kx * p->dx;
                            table[entries++] = iy >= 0 && iy < h && ix >= 0 && ix < w ? image + ((size_t)iy * w + ix) * c
                                                                                       : zero + (size_t)g0 * cpg;
                        }
        }
        const int M = images * oh * ow;
        float *y = out + (size_t)b0 * oh * ow * n;
        for (int g = g0; g < p->g1; g++) {
            if (g > g0)
                for (size_t i = 0; i < entries; i++) table[i] += cpg;
            const float *wg = p->packed + weights_at(g, taps, cpg, opg, 0), *bias = p->bias + bias_at(g, opg, 0);
            float *yg = y + (size_t)g * opg;
            if (avx512)
                for (int c0 = 0; c0 < opg; c0 += 64)
                    bnk_block_avx512(M, c0, opg - c0 < 64 ? opg - c0 : 64, taps, cpg, NULL, 0, table, wg + c0, wg + c0 + 16, stride,
                                     bias, NULL, yg, n, p->act, NULL);
            else
                for (int c0 = 0; c0 < opg; c0 += 16)
                    bnk_block_avx2(M, c0, opg - c0 < 16 ? opg - c0 : 16, taps, cpg, NULL, 0, table, wg + c0, stride, bias, NULL, yg,
                                   n, p->act, NULL);
        }
    }
}
#endif

void bnk_grouped_conv2d(const float *input, int batch, int h, int w, int c, int groups, int kh, int kw, int sy, int sx, int dy,
                        int dx, int pad_top, int pad_left, int oh, int ow, const float *packed, int opg, int act, float *out,
                        float *scratch) {
    bnk_grouped_conv2d_groups(input, batch, h, w, c, groups, kh, kw, sy, sx, dy, dx, pad_top, pad_left, oh, ow, packed, opg, act,
                              0, groups, out, scratch);
}

void bnk_grouped_conv2d_groups(const float *input, int batch, int h, int w, int c, int groups, int kh, int kw, int sy, int sx,
                               int dy, int dx, int pad_top, int pad_left, int oh, int ow, const float *packed, int opg, int act,
                               int g0, int g1, float *out, float *scratch) {
    const int cpg = c / groups, taps = kh * kw;
    int ph, pw;
    bordered_size(kh, kw, sy, sx, dy, dx, oh, ow, &ph, &pw);
    const int inside = pad_top == 0 && pad_left == 0 && ph <= h && pw <= w;
    grouped_call p = {0};
    p.c = c; p.cpg = cpg; p.opg = opg; p.stride = round8(opg); p.groups = groups;
    p.kh = kh; p.kw = kw; p.sy = sy; p.sx = sx; p.dy = dy; p.dx = dx; p.oh = oh; p.ow = ow; p.act = act;
    p.pair = paired(groups, cpg, opg);
    p.g0 = g0 < 0 ? 0 : g0;
    p.g1 = g1 > groups ? groups : g1;
    if (p.pair) { p.g0 -= p.g0 % 2; p.g1 -= p.g1 % 2; }   /* pairs: bounds down to even ones (still a partition) */
    if (p.g0 >= p.g1) return;
    p.packed = packed;
    p.bias = packed + (p.pair ? (size_t)groups / 2 * taps * cpg * 8 : (size_t)groups * taps * cpg * p.stride);
#if BNK_X86
    if (grouped_as_gemm(ow, opg, p.pair)) {
        grouped_gemm(&p, input, batch, h, w, pad_top, pad_left, out, scratch);
        return;
    }
#endif
    for (int b = 0; b < batch; b++) {
        const float *image = input + (size_t)b * h * w * c;
        if (inside) {
            p.x = image;
            p.ld = (size_t)w * c;
        } else {
            /* Row y, column x of the window grid is image (y - pad_top, x - pad_left). */
            memset(scratch, 0, (size_t)ph * pw * c * sizeof(float));
            for (int y = 0; y < ph; y++) {
                const int iy = y - pad_top;
                if (iy < 0 || iy >= h) continue;
                const int from = pad_left < 0 ? -pad_left : 0, x0 = pad_left > 0 ? pad_left : 0;
                int cols = w - from;
                if (x0 + cols > pw) cols = pw - x0;
                if (cols > 0) memcpy(scratch + ((size_t)y * pw + x0) * c, image + ((size_t)iy * w + from) * c, (size_t)cols * c * sizeof(float));
            }
            p.x = scratch;
            p.ld = (size_t)pw * c;
        }
        p.y = out + (size_t)b * oh * ow * groups * opg;
#if BNK_X86
        if (p.pair && bnk_use_avx2()) { grouped_pairs_avx2(&p); continue; }
        if (bnk_use_avx512() && opg % 16 == 0) { grouped_avx512(&p); continue; }
        if (bnk_use_avx2()) { grouped_avx2(&p); continue; }
#endif
        grouped_generic(&p);
    }
}

const char *bnk_grouped_isa(int opg) {
#if BNK_X86
    if (opg == 4 && bnk_use_avx2()) return "avx2";
    if (bnk_use_avx512() && opg % 16 == 0) return "avx512";
    if (bnk_use_avx2()) return "avx2";
#endif
    (void)opg;
    return "generic";
}
