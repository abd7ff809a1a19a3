/* The C kernels' GEMM paths on arm64, checked where an x86 machine can run them: built for
 * aarch64 and run under qemu-aarch64 by tools/arm64_kernel_check.sh (in the test command).
 * At each level (1: the NEON tile, microkernels_neon.c; 0: the portable C) every product is
 * compared with a double-precision reference, within the bound of float32 sums of K terms:
 *   - bnk_gemm_strided (B packed per call, or read in place): rows 1-40, columns 1-70, sums of
 *     1-300 terms, with and without a bias, linear / ReLU / ReLU6 / sigmoid;
 *   - bnk_gemm_panels and bnk_gemm_panels_part (prepacked weights, a residual, the streamed
 *     weights' prefetches: sums of up to 640 terms, and parts of a wider product);
 *   - bnk_conv2d_indirect_columns over strides, dilations, paddings and column ranges, and equal
 *     bit for bit to im2col + bnk_gemm_panels (the same tile, the same order of sums);
 *   - bnk_conv3x3_winograd against the direct 3x3 conv.
 * The values are random with a fixed seed; a failure prints the case and exits non-zero.
 * Speed is not measured: under emulation it means nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bnkit_kernels.h"

static unsigned long long state = 0x9E3779B97F4A7C15ull;
static unsigned next_random(void) {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (unsigned)(state >> 32);
}
static int below(int n) { return (int)(next_random() % (unsigned)n); }
static float uniform(void) { return (float)(next_random() >> 8) / 8388608.0f * 2.0f - 1.0f; }
static float *random_floats(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = uniform();
    return p;
}

static int failures = 0, checked = 0;

static double activate(double v, int act) {
    if (act == BNK_ACT_RELU) return v > 0 ? v : 0;
    if (act == BNK_ACT_RELU6) return v < 0 ? 0 : v > 6 ? 6 : v;
    if (act == BNK_ACT_SIGMOID) return 1.0 / (1.0 + exp(-v));
    return v;
}

/* got against the exact value `sum` (before the activation) whose terms' magnitudes add to
   `magnitude`, over `terms` float32 additions: |error| <= 2 (terms + 2) u magnitude (u = 2^-24),
   plus the sigmoid's own error (2e-7 relative). */
static void expect(const char *what, int level, float got, double sum, double magnitude, int terms, int act) {
    checked++;
    const double want = activate(sum, act);
    double bound = 2.0 * (terms + 2) * ldexp(1.0, -24) * magnitude + 1e-30;
    if (act == BNK_ACT_SIGMOID) bound = bound / 4 + 4e-7 * fabs(want) + 1e-7;
    if (!(fabs((double)got - want) <= bound)) {
        if (failures++ < 10)
            fprintf(stderr, "FAIL level %d %s: got %.9g, want %.9g (bound %.3g)\n", level, what, got, want, bound);
    }
}

static void check_gemm(int level) {
    for (int trial = 0; trial < 300; trial++) {
        const int M = 1 + below(40), N = 1 + below(70), K = 1 + below(300), ldb = N + below(3), lda = K + below(3);
        const int act = below(4), with_bias = below(4) != 0;
        float *A = random_floats((size_t)M * lda), *B = random_floats((size_t)K * ldb), *bias = random_floats((size_t)N);
        float *C = random_floats((size_t)M * N);
        bnk_gemm_strided(M, N, K, A, lda, B, ldb, with_bias ? bias : NULL, C, N, act);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double sum = with_bias ? bias[n] : 0, magnitude = fabs(sum);
                for (int k = 0; k < K; k++) {
                    const double t = (double)A[(size_t)m * lda + k] * B[(size_t)k * ldb + n];
                    sum += t; magnitude += fabs(t);
                }
                char what[96];
                snprintf(what, sizeof what, "gemm %dx%dx%d act %d m %d n %d", M, K, N, act, m, n);
                expect(what, level, C[(size_t)m * N + n], sum, magnitude, K, act);
            }
        free(A); free(B); free(bias); free(C);
    }
}

static void check_panels(int level) {
    for (int trial = 0; trial < 120; trial++) {
        const int M = 1 + below(trial % 3 == 0 ? 100 : 20), whole = 1 + below(96), K = 1 + below(640);
        const int act = below(3), with_bias = below(3) != 0, with_residual = below(2);
        /* a part: columns n0..<n0+N of the whole product (n0 a multiple of 16) */
        const int n0 = below((whole + 15) / 16) * 16, N = 1 + below(whole - n0);
        float *A = random_floats((size_t)M * K), *B = random_floats((size_t)K * whole), *bias = random_floats((size_t)whole);
        float *C = random_floats((size_t)M * whole), *R = random_floats((size_t)M * whole);
        float *P = malloc(bnk_panels_floats(K, whole) * sizeof(float));
        bnk_pack_panels(K, whole, B, whole, P);
        const float *residual = with_residual ? R + n0 : NULL;
        if (trial % 2)
            bnk_gemm_panels_part(M, N, K, A, K, P + (size_t)n0 * K, with_bias ? bias + n0 : NULL, residual, C + n0, whole, act, whole, P);
        else
            bnk_gemm_panels(M, N, K, A, K, P + (size_t)n0 * K, with_bias ? bias + n0 : NULL, residual, C + n0, whole, act);
        for (int m = 0; m < M; m++)
            for (int n = n0; n < n0 + N; n++) {
                double sum = with_bias ? bias[n] : 0, magnitude = fabs(sum);
                for (int k = 0; k < K; k++) {
                    const double t = (double)A[(size_t)m * K + k] * B[(size_t)k * whole + n];
                    sum += t; magnitude += fabs(t);
                }
                if (with_residual) { sum += R[(size_t)m * whole + n]; magnitude += fabs(R[(size_t)m * whole + n]); }
                char what[112];
                snprintf(what, sizeof what, "panels %dx%dx%d (columns %d+%d of %d) act %d m %d n %d", M, K, N, n0, N, whole, act, m, n);
                expect(what, level, C[(size_t)m * whole + n], sum, magnitude, K + 1, act);
            }
        free(A); free(B); free(bias); free(C); free(R); free(P);
    }
}

/* The direct conv at (image, oy, ox, o): sum and magnitude of the terms (zero padding). */
static void direct(const float *x, int h, int w, int c, int kh, int kw, int sy, int sx, int dy, int pt, int pl,
                   const float *kernel, int n, const float *bias, const float *residual, int oh, int ow, int image, int oy, int ox,
                   int o, double *sum, double *magnitude) {
    double s = bias ? bias[o] : 0, mag = fabs(s);
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++) {
            const int iy = oy * sy + ky * dy - pt, ix = ox * sx + kx - pl;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            for (int ci = 0; ci < c; ci++) {
                const double t = (double)x[(((size_t)image * h + iy) * w + ix) * c + ci] * kernel[(((size_t)ky * kw + kx) * c + ci) * n + o];
                s += t; mag += fabs(t);
            }
        }
    if (residual) {
        const double r = residual[(((size_t)image * oh + oy) * ow + ox) * n + o];
        s += r; mag += fabs(r);
    }
    *sum = s; *magnitude = mag;
}

static void check_indirect(int level) {
    for (int trial = 0; trial < 80; trial++) {
        const int batch = 1 + below(2), c = 1 + below(20), n = 1 + below(40);
        const int kh = 1 + 2 * below(3), kw = 1 + 2 * below(3), sy = 1 + below(2), sx = 1 + below(2), dy = 1 + below(2);
        const int h = kh + below(8), w = kw + below(8);
        const int pt = below(kh), pl = below(kw);
        const int oh = (h + 2 * pt - ((kh - 1) * dy + 1)) / sy + 1, ow = (w + 2 * pl - kw) / sx + 1;
        if (oh < 1 || ow < 1) continue;
        const int act = below(3), with_residual = below(2);
        const int n0 = below((n + 15) / 16) * 16, cols = 1 + below(n - n0);
        const size_t K = (size_t)kh * kw * c;
        float *x = random_floats((size_t)batch * h * w * c), *kernel = random_floats(K * n), *bias = random_floats((size_t)n);
        float *residual = with_residual ? random_floats((size_t)batch * oh * ow * n) : NULL;
        float *out = random_floats((size_t)batch * oh * ow * n), *again = malloc((size_t)batch * oh * ow * n * sizeof(float));
        memcpy(again, out, (size_t)batch * oh * ow * n * sizeof(float));
        float *P = malloc(bnk_panels_floats((int)K, n) * sizeof(float));
        bnk_pack_panels((int)K, n, kernel, n, P);
        float *scratch = malloc((bnk_conv2d_indirect_scratch(batch, c, kh, kw, sy, sx, dy, oh, ow) + 1) * sizeof(float));
        const int ran = bnk_conv2d_indirect_columns(x, batch, h, w, c, kh, kw, sy, sx, dy, pt, pl, oh, ow, kernel, P, bias, residual,
                                                    n, n0, cols, act, out, scratch, NULL);
        if (ran != (level > 0)) {
            if (failures++ < 10) fprintf(stderr, "FAIL level %d: the indirect conv returned %d\n", level, ran);
        } else if (ran) {
            /* im2col of the same windows (zeros outside the image), then the prepacked GEMM */
            const int pixels = batch * oh * ow;
            float *patches = calloc((size_t)pixels * K, sizeof(float));
            for (int p = 0; p < pixels; p++) {
                const int image = p / (oh * ow), oy = p % (oh * ow) / ow, ox = p % ow;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++) {
                        const int iy = oy * sy + ky * dy - pt, ix = ox * sx + kx - pl;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        memcpy(patches + (size_t)p * K + ((size_t)ky * kw + kx) * c, x + (((size_t)image * h + iy) * w + ix) * c,
                               (size_t)c * sizeof(float));
                    }
            }
            bnk_gemm_panels(pixels, cols, (int)K, patches, (int)K, P + (size_t)n0 * K, bias + n0, residual ? residual + n0 : NULL,
                            again + n0, n, act);
            for (int p = 0; p < pixels; p++)
                for (int o = n0; o < n0 + cols; o++) {
                    const size_t at = (size_t)p * n + o;
                    char what[160];
                    snprintf(what, sizeof what, "indirect conv %dx%dx%d k %dx%d s %d,%d d %d pad %d,%d -> %d (columns %d+%d) act %d at %zu",
                             h, w, c, kh, kw, sy, sx, dy, pt, pl, n, n0, cols, act, at);
                    if (memcmp(&out[at], &again[at], sizeof(float)) != 0 && failures++ < 10)
                        fprintf(stderr, "FAIL level %d %s: %.9g, im2col + GEMM %.9g\n", level, what, out[at], again[at]);
                    double sum, magnitude;
                    direct(x, h, w, c, kh, kw, sy, sx, dy, pt, pl, kernel, n, bias, residual, oh, ow, p / (oh * ow), p % (oh * ow) / ow,
                           p % ow, o, &sum, &magnitude);
                    expect(what, level, out[at], sum, magnitude, (int)K + 1, act);
                }
            free(patches);
        }
        free(x); free(kernel); free(bias); free(residual); free(out); free(again); free(P); free(scratch);
    }
}

static void check_winograd(int level) {
    for (int trial = 0; trial < 30; trial++) {
        const int batch = 1 + below(2), cin = 1 + below(40), cout = 1 + below(40), h = 2 + below(9), w = 2 + below(9);
        const int act = below(3);
        float *x = random_floats((size_t)batch * h * w * cin), *kernel = random_floats((size_t)9 * cin * cout);
        float *bias = random_floats((size_t)cout), *out = random_floats((size_t)batch * h * w * cout);
        /* U: for each of the 16 positions, G g G^T of each (ci, co), packed (as Kernels.winogradKernel) */
        static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
        const size_t each = bnk_panels_floats(cin, cout);
        float *U = malloc(16 * each * sizeof(float)), *matrix = malloc((size_t)cin * cout * sizeof(float));
        for (int position = 0; position < 16; position++) {
            const int xi = position / 4, nu = position % 4;
            for (size_t i = 0; i < (size_t)cin * cout; i++) {
                double s = 0;
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++) s += G[xi][a] * (double)kernel[(size_t)(a * 3 + b) * cin * cout + i] * G[nu][b];
                matrix[i] = (float)s;
            }
            bnk_pack_panels(cin, cout, matrix, cout, U + position * each);
        }
        float *scratch = malloc(bnk_winograd_scratch(cin, cout) * sizeof(float));
        bnk_conv3x3_winograd(x, batch, h, w, cin, h, w, 1, 1, U, bias, cout, act, 0, out, scratch);
        for (int image = 0; image < batch; image++)
            for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < w; ox++)
                    for (int o = 0; o < cout; o++) {
                        double sum, magnitude;
                        direct(x, h, w, cin, 3, 3, 1, 1, 1, 1, 1, kernel, cout, bias, NULL, h, w, image, oy, ox, o, &sum, &magnitude);
                        char what[96];
                        snprintf(what, sizeof what, "winograd %dx%dx%d -> %d act %d", h, w, cin, cout, act);
                        /* The transforms add a few roundings of their own (and the 1/2s of G): a looser bound. */
                        expect(what, level, out[(((size_t)image * h + oy) * w + ox) * cout + o], sum, 8 * magnitude, 9 * cin + 16, act);
                    }
        free(x); free(kernel); free(bias); free(out); free(U); free(matrix); free(scratch);
    }
}

int main(void) {
    for (int level = 1; level >= 0; level--) {
        bnk_limit_isa(level);
        const char *isa = bnk_gemm_isa();
        const char *expected = level > 0 ? "neon" : "generic";
        if (strcmp(isa, expected) != 0) {
            fprintf(stderr, "FAIL level %d: the GEMM is %s, not %s\n", level, isa, expected);
            return 1;
        }
        const int before = checked;
        check_gemm(level);
        check_panels(level);
        check_indirect(level);
        check_winograd(level);
        printf("arm64 kernels, %s: %d values checked\n", isa, checked - before);
    }
    if (failures) {
        fprintf(stderr, "arm64 kernel check: %d of %d values wrong\n", failures, checked);
        return 1;
    }
    return 0;
}
