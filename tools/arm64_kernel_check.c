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
 *   - bnk_conv3x3_winograd against the direct 3x3 conv;
 * and the kernels compiled from one C body per level (vectorized by the compiler): activations,
 * add, channel scale, the affine map, softmax, layer norm, depthwise convs, pooling, the global
 * pool, channel moments and the sparse-input Dense (exact where they promise it).
 * Built by clang, as SwiftPM builds the package (its pragmas, e.g. no FMA contraction in the
 * affine map, are clang's). The values are random with a fixed seed; a failure prints the case
 * and exits non-zero.
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
static void expect(const char *what, int level, float got, double sum, double magnitude, int terms, int act);

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

/* The other kernel families: on arm64 one C body per family (BNK_VARIANTS), vectorized by the
   compiler, at both levels. Exact where the kernels promise it (ReLU, ReLU6, add, the channel
   scale, the affine map's product rounded before its shift, max pooling, the global pool's blocks
   combined); else within the stated error. */
static void exact(const char *what, int level, float got, float want) {
    checked++;
    if (memcmp(&got, &want, sizeof got) != 0 && failures++ < 10)
        fprintf(stderr, "FAIL level %d %s: got %.9g, want %.9g exactly\n", level, what, got, want);
}

static void within(const char *what, int level, double got, double want, double bound) {
    checked++;
    if (!(fabs(got - want) <= bound) && failures++ < 10)
        fprintf(stderr, "FAIL level %d %s: got %.12g, want %.12g (bound %.3g)\n", level, what, got, want, bound);
}

static void check_elementwise(int level) {
    enum { n = 1003 };
    float x[n], y[n], z[n], s[7], t[7];
    for (int i = 0; i < n; i++) x[i] = 12.0f * uniform();
    for (int j = 0; j < 7; j++) { s[j] = 2.0f * uniform(); t[j] = uniform(); }
    const char *names[] = {"linear", "relu", "relu6", "sigmoid", "swish", "hard swish", "gelu"};
    for (int act = 0; act <= BNK_ACT_GELU; act++) {
        bnk_activate(x, y, n, act);
        for (int i = 0; i < n; i++) {
            const double v = x[i], sig = 1.0 / (1.0 + exp(-v));
            double want = v;
            if (act == BNK_ACT_RELU) want = v > 0 ? v : 0;
            if (act == BNK_ACT_RELU6) want = v < 0 ? 0 : v > 6 ? 6 : v;
            if (act == BNK_ACT_SIGMOID) want = sig;
            if (act == BNK_ACT_SWISH) want = v * sig;
            if (act == BNK_ACT_HARD_SWISH) want = v * (v + 3 < 0 ? 0 : v + 3 > 6 ? 6 : v + 3) / 6;
            if (act == BNK_ACT_GELU) want = 0.5 * v * erfc(-v / sqrt(2.0));
            char what[48];
            snprintf(what, sizeof what, "activate %s(%.9g)", names[act], x[i]);
            if (act <= BNK_ACT_RELU6) exact(what, level, y[i], (float)want);
            else within(what, level, y[i], want, 1e-6 * fabs(want) + 1e-30);
        }
    }
    bnk_add(x, x + 1, y, n - 1, BNK_ACT_RELU6);
    for (int i = 0; i + 1 < n; i++) {
        const float sum = x[i] + x[i + 1];
        exact("add relu6", level, y[i], sum < 0 ? 0 : sum > 6 ? 6 : sum);
    }
    /* 143 rows of 7 channels */
    bnk_scale_channels(x, s, y, 143, 7);
    bnk_affine(x, s, t, z, 143, 7, BNK_ACT_LINEAR);
    for (int i = 0; i < 143 * 7; i++) {
        volatile float product = x[i] * s[i % 7];   /* rounded before the shift, as bnk_affine promises */
        exact("scale channels", level, y[i], product);
        exact("affine (product rounded before the shift)", level, z[i], product + t[i % 7]);
    }
    memcpy(y, x, sizeof x);
    bnk_softmax(y, 59, 17);
    for (int r = 0; r < 59; r++) {
        double most = -INFINITY, sum = 0;
        for (int j = 0; j < 17; j++) most = fmax(most, x[r * 17 + j]);
        for (int j = 0; j < 17; j++) sum += exp(x[r * 17 + j] - most);
        for (int j = 0; j < 17; j++) {
            const double want = exp(x[r * 17 + j] - most) / sum;
            /* exp of a float argument: a relative error of up to |x - max| float ulps beside the polynomial's */
            within("softmax", level, y[r * 17 + j], want, (4e-7 + 1.2e-7 * (most - x[r * 17 + j])) * want + 1e-38);
        }
    }
    bnk_layer_norm(x, y, 59, 17, s, NULL, 1e-3);
    for (int r = 0; r < 59; r++) {
        double mean = 0, var = 0;
        for (int j = 0; j < 17; j++) mean += x[r * 17 + j];
        mean /= 17;
        for (int j = 0; j < 17; j++) var += (x[r * 17 + j] - mean) * (x[r * 17 + j] - mean);
        var /= 17;
        for (int j = 0; j < 17; j++) {
            const double want = (x[r * 17 + j] - mean) / sqrt(var + 1e-3) * (j < 7 ? s[j] : 0);
            if (j < 7) within("layer norm", level, y[r * 17 + j], want, 1e-6 * fabs(want) + 1e-6);
        }
    }
}

static void check_spatial(int level) {
    for (int trial = 0; trial < 40; trial++) {
        const int c = 1 + below(24), m = 1 + below(3), kh = 1 + below(5), kw = 1 + below(5), sy = 1 + below(2), sx = 1 + below(2);
        const int dy = 1 + below(2), dx = 1 + below(2), h = (kh - 1) * dy + 1 + below(9), w = (kw - 1) * dx + 1 + below(9);
        const int pt = below(kh), pl = below(kw), act = below(3);
        const int oh = (h + 2 * pt - ((kh - 1) * dy + 1)) / sy + 1, ow = (w + 2 * pl - ((kw - 1) * dx + 1)) / sx + 1;
        float *x = random_floats((size_t)h * w * c), *kernel = random_floats((size_t)kh * kw * c * m), *bias = random_floats((size_t)c * m);
        const int poh = (h + 2 * pt - kh) / sy + 1, pow_ = (w + 2 * pl - kw) / sx + 1;   /* the pooling's (no dilation) */
        const size_t outputs = (size_t)oh * ow * c * m > (size_t)poh * pow_ * c ? (size_t)oh * ow * c * m : (size_t)poh * pow_ * c;
        float *y = random_floats(outputs);
        bnk_depthwise_conv2d(x, h, w, c, m, kh, kw, sy, sx, dy, dx, pt, pl, oh, ow, kernel, bias, y, act);
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c * m; ch++) {
                    double sum = bias[ch], magnitude = fabs(sum);
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++) {
                            const int iy = oy * sy + ky * dy - pt, ix = ox * sx + kx * dx - pl;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            const double term = (double)x[((size_t)iy * w + ix) * c + ch / m] * kernel[((size_t)ky * kw + kx) * c * m + ch];
                            sum += term; magnitude += fabs(term);
                        }
                    char what[96];
                    snprintf(what, sizeof what, "depthwise %dx%dx%d m %d k %dx%d s %d,%d d %d,%d act %d", h, w, c, m, kh, kw, sy, sx, dy, dx, act);
                    expect(what, level, y[((size_t)oy * ow + ox) * c * m + ch], sum, magnitude, kh * kw + 1, act);
                }
        /* max and average pooling (average over the pixels inside the image) */
        for (int is_max = 0; is_max <= 1; is_max++) {
            bnk_pool2d(x, h, w, c, kh, kw, sy, sx, pt, pl, poh, pow_, is_max, y);
            for (int oy = 0; oy < poh; oy++)
                for (int ox = 0; ox < pow_; ox++)
                    for (int ch = 0; ch < c; ch++) {
                        double sum = 0, magnitude = 0; float most = -INFINITY; int inside = 0;
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++) {
                                const int iy = oy * sy + ky - pt, ix = ox * sx + kx - pl;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                const float v = x[((size_t)iy * w + ix) * c + ch];
                                sum += v; magnitude += fabs(v); most = v > most ? v : most; inside++;
                            }
                        const float got = y[((size_t)oy * pow_ + ox) * c + ch];
                        if (is_max) exact("max pooling", level, got, most);
                        else expect("average pooling", level, got, inside ? sum / inside : 0, inside ? magnitude / inside : 0, kh * kw + 1, 0);
                    }
        }
        free(x); free(kernel); free(bias); free(y);
    }
    /* the global pool, whole and by blocks combined (the same values bit for bit) */
    for (int trial = 0; trial < 20; trial++) {
        const int pixels = 1 + below(300), c = 1 + below(40);
        float *x = random_floats((size_t)pixels * c), whole[40], combined[40];
        const int blocks = bnk_global_pool_block_count(pixels);
        float *partial = malloc((size_t)blocks * c * sizeof(float));
        for (int is_max = 0; is_max <= 1; is_max++) {
            bnk_global_pool(x, pixels, c, is_max, whole);
            bnk_global_pool_blocks(x, pixels, c, 0, blocks, is_max, partial);
            bnk_global_pool_combine(partial, pixels, c, is_max, combined);
            for (int ch = 0; ch < c; ch++) {
                double sum = 0, magnitude = 0; float most = -INFINITY;
                for (int p = 0; p < pixels; p++) { const float v = x[(size_t)p * c + ch]; sum += v; magnitude += fabs(v); most = v > most ? v : most; }
                exact("global pool: blocks combined", level, combined[ch], whole[ch]);
                if (is_max) exact("global max pool", level, whole[ch], most);
                else expect("global average pool", level, whole[ch], sum / pixels, magnitude / pixels, pixels + 1, 0);
            }
        }
        free(x); free(partial);
    }
}

static void check_statistics_and_dense(int level) {
    for (int trial = 0; trial < 20; trial++) {
        const size_t rows = 1 + below(200), channels = 1 + below(40);
        float *x = random_floats(rows * channels);
        for (size_t i = 0; i < rows * channels; i++) x[i] += 100.0f;   /* a large mean: the deviations must not cancel */
        double mean[40], m2[40];
        bnk_channel_moments(x, rows, channels, mean, m2);
        for (size_t ch = 0; ch < channels; ch++) {
            double mu = 0, dev = 0;
            for (size_t r = 0; r < rows; r++) mu += x[r * channels + ch];
            mu /= rows;
            for (size_t r = 0; r < rows; r++) dev += (x[r * channels + ch] - mu) * (x[r * channels + ch] - mu);
            within("channel moments: mean", level, mean[ch], mu, 1e-12 * fabs(mu));
            within("channel moments: M2", level, m2[ch], dev, 1e-9 * dev + 1e-12);
        }
        free(x);
    }
    /* Dense over mostly zero inputs (image pixels, ReLU outputs): the sparse path where there is one */
    for (int trial = 0; trial < 30; trial++) {
        const int M = 1 + below(70), N = 1 + below(60), K = 1 + below(800), act = below(4);
        float *A = random_floats((size_t)M * K), *B = random_floats((size_t)K * N), *bias = random_floats((size_t)N);
        float *C = malloc((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++) if (below(10) < 8) A[i] = 0.0f;
        bnk_dense(M, N, K, A, K, B, bias, C, N, act);
        for (int m = 0; m < M; m++)
            for (int j = 0; j < N; j++) {
                double sum = bias[j], magnitude = fabs(sum);
                for (int k = 0; k < K; k++) { const double term = (double)A[(size_t)m * K + k] * B[(size_t)k * N + j]; sum += term; magnitude += fabs(term); }
                expect("dense (sparse inputs)", level, C[(size_t)m * N + j], sum, magnitude, K, act);
            }
        free(A); free(B); free(bias); free(C);
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
        check_elementwise(level);
        check_spatial(level);
        check_statistics_and_dense(level);
        printf("arm64 kernels, %s: %d values checked\n", isa, checked - before);
    }
    if (failures) {
        fprintf(stderr, "arm64 kernel check: %d of %d values wrong\n", failures, checked);
        return 1;
    }
    return 0;
}
