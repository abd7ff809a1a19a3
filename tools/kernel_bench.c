/* Kernel measurements behind the choices in docs/PERFORMANCE.md:
 *   - the FMA peak of one core (independent 8-wide FMAs, no loads; x86 with AVX2 + FMA);
 *   - GEMM throughput (GFLOP/s) on the shapes the fixture models run;
 *   - the prepacked-panel GEMM (1x1 convs) on MobileNetV2's, NASNetMobile's and ResNet50's
 *     shapes, the depthwise conv on MobileNetV2's and EfficientNet's, and the one-channel conv
 *     (the MNIST CNNs' first layer), at every
 *     instruction-set level this CPU has (AVX-512, AVX2, portable C), data hot;
 *   - the Dense layer's sparse path against the GEMM, by share of nonzero inputs;
 *   - one and two threads on weights streamed from memory: the machine's read rate and ResNet50
 *     96's last 3x3 convs at batch 1 as a GEMM, each thread its half of the columns.
 * Built and run by tools/kernel_bench.sh against Sources/CKernels. */
#include "bnkit_kernels.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, float lo, float hi) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rand() / (float)RAND_MAX;
    return x;
}

#if defined(__x86_64__) || defined(__i386__)
/* GFLOP/s of 12 independent chains of 8-wide FMAs: what one core's FMA units can do. */
__attribute__((target("avx2,fma"))) static double fma_peak(void) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 x = _mm256_set1_ps(0.9999f), y = _mm256_set1_ps(0.00001f);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        const long n = 20000000;
        double t = now();
        for (long i = 0; i < n; i++) {
            for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
            __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]), "+x"(a[6]), "+x"(a[7]),
                             "+x"(a[8]), "+x"(a[9]), "+x"(a[10]), "+x"(a[11]));
        }
        t = now() - t;
        if (n * 12.0 * 16 / t / 1e9 > best) best = n * 12.0 * 16 / t / 1e9;
    }
    return best;
}
#endif

/* The prepacked-panel GEMM (ReLU6, with the residual where marked) and the depthwise conv (ReLU6),
   hot, best of 20, at the current instruction-set level. */
static void pointwise_and_depthwise(void) {
    /* M, K, N, residual: MobileNetV2 224's 1x1 convs in the 96-row chunks its fused steps run, its
       7x7 and 14x14 ones whole; NASNetMobile 128's; ResNet50's. */
    const int pw[][4] = {{96, 16, 96, 0}, {96, 24, 144, 0}, {96, 32, 192, 0}, {96, 96, 24, 0}, {96, 144, 24, 1}, {96, 192, 32, 1},
                         {196, 64, 384, 0}, {196, 384, 64, 1}, {196, 96, 576, 0}, {49, 160, 960, 0}, {49, 960, 320, 0},
                         {49, 320, 1280, 0}, {256, 264, 44, 0}, {64, 528, 88, 0}, {3136, 64, 256, 1}, {784, 512, 128, 0}};
    double flops = 0, seconds = 0;
    for (size_t s = 0; s < sizeof pw / sizeof pw[0]; s++) {
        const int M = pw[s][0], K = pw[s][1], N = pw[s][2];
        float *A = random_floats((size_t)M * K, -1, 1), *B = random_floats((size_t)K * N, -1, 1), *bias = random_floats(N, -1, 1);
        float *R = pw[s][3] ? random_floats((size_t)M * N, -1, 1) : NULL, *C = malloc(sizeof(float) * M * N);
        float *P = malloc(sizeof(float) * bnk_panels_floats(K, N));
        bnk_pack_panels(K, N, B, N, P);
        const int reps = 5000000 / (M * N * K) + 3;
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            double t = now();
            for (int i = 0; i < reps; i++) bnk_gemm_panels(M, N, K, A, K, P, bias, R, C, N, BNK_ACT_RELU6);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        printf("  1x1 %4d x %4d -> %4d%s  %6.1f GFLOP/s\n", M, K, N, R ? " + residual" : "           ", 2.0 * M * N * K / best / 1e9);
        flops += 2.0 * M * N * K;
        seconds += best;
        free(A); free(B); free(bias); free(R); free(C); free(P);
    }
    printf("  1x1 all shapes: %.1f GFLOP/s\n", flops / seconds / 1e9);
    /* side, channels, kernel, stride ("same" padding; stride 2 on an even side pads below and right):
       MobileNetV2's and EfficientNet's, and ConvNeXt's 7x7; small maps (MnasNet and EfficientNet at
       96, ConvNeXt 224's last stage) run the small-map kernel, marked. */
    const int dw[][4] = {{56, 144, 3, 1}, {28, 192, 3, 1}, {14, 384, 3, 1}, {7, 960, 3, 1}, {112, 96, 3, 2},
                         {56, 144, 3, 2}, {28, 240, 5, 1}, {14, 672, 5, 1}, {7, 1152, 5, 1},
                         {56, 96, 7, 1}, {14, 384, 7, 1}, {6, 480, 5, 1}, {6, 672, 5, 1}, {3, 1152, 3, 1},
                         {7, 768, 7, 1}};
    for (size_t s = 0; s < sizeof dw / sizeof dw[0]; s++) {
        const int h = dw[s][0], c = dw[s][1], k = dw[s][2], st = dw[s][3];
        const int oh = st == 2 ? h / 2 : h, pad = st == 2 ? 0 : k / 2;
        float *x = random_floats((size_t)h * h * c, -1, 1), *w = random_floats((size_t)k * k * c, -1, 1);
        float *b = random_floats(c, -1, 1), *y = malloc(sizeof(float) * oh * oh * c);
        const double macs = (double)oh * oh * c * k * k;
        const int reps = (int)(2e7 / macs) + 3;
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            double t = now();
            for (int i = 0; i < reps; i++) bnk_depthwise_conv2d(x, h, h, c, 1, k, k, st, st, 1, 1, pad, pad, oh, oh, w, b, y, BNK_ACT_RELU6);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        const int small = strcmp(bnk_depthwise_isa(), "generic") != 0 && bnk_depthwise_small_map(h, h, c, k, k, st, st, 1, 1, pad, pad, oh, oh);
        printf("  depthwise %3dx%3dx%-4d %dx%d stride %d  %6.1f GFLOP/s%s\n", h, h, c, k, k, st, 2 * macs / best / 1e9,
               small ? "  (small-map kernel)" : "");
        free(x); free(w); free(b); free(y);
    }
    /* The one-channel conv (+ ReLU, fused 2x2 max pooling): the MNIST CNNs' first layer; every
       input row nonzero (no blank rows skipped). Only at AVX-512 and AVX2 (else im2col + GEMM). */
    const int c1[][3] = {{28, 16, 1}, {28, 32, 1}, {28, 16, 0}};
    for (size_t s = 0; s < sizeof c1 / sizeof c1[0] && bnk_conv2d_single_channel_available(BNK_ACT_RELU); s++) {
        const int h = c1[s][0], n = c1[s][1], pool = c1[s][2];
        float *x = random_floats((size_t)h * h, 0.1f, 1), *w = random_floats((size_t)9 * n, -1, 1), *b = random_floats(n, -1, 1);
        float *y = malloc(sizeof(float) * h * h * n);
        const double macs = (double)h * h * n * 9;
        const int reps = (int)(2e7 / macs) + 3;
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            double t = now();
            for (int i = 0; i < reps; i++) bnk_conv2d_single_channel(x, h, h, 3, 3, 1, 1, 1, 1, 1, 1, h, h, w, b, n, BNK_ACT_RELU, pool, y);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        printf("  one-channel conv %dx%d 3x3 -> %d + ReLU%s  %6.1f GFLOP/s\n", h, h, n, pool ? " + 2x2 max pool" : "              ",
               2 * macs / best / 1e9);
        free(x); free(w); free(b); free(y);
    }
    /* Grouped 3x3 convs ("same"), ResNeXt50 32x4d's four stages at 224 (groups of 4, 8, 16, 32
       outputs) and RegNetY-400MF's groups of 8, the version bnk_grouped_isa names. */
    const int gc[][4] = {{56, 128, 32, 1}, {28, 256, 32, 1}, {14, 512, 32, 1}, {7, 1024, 32, 1}, {56, 256, 32, 2}, {14, 208, 26, 1}};
    for (size_t s = 0; s < sizeof gc / sizeof gc[0]; s++) {
        const int h = gc[s][0], c = gc[s][1], groups = gc[s][2], st = gc[s][3], cpg = c / groups;
        const int oh = st == 2 ? h / 2 : h;
        float *x = random_floats((size_t)h * h * c, -1, 1), *w = random_floats((size_t)9 * cpg * c, -1, 1), *b = random_floats(c, -1, 1);
        float *packed = malloc(sizeof(float) * bnk_grouped_packed_size(groups, 9, cpg, cpg));
        float *scratch = malloc(sizeof(float) * bnk_grouped_scratch(c, 3, 3, st, st, 1, 1, oh, oh));
        float *y = malloc(sizeof(float) * oh * oh * c);
        bnk_grouped_pack(w, b, groups, 9, cpg, cpg, packed);
        const double macs = (double)oh * oh * c * 9 * cpg;
        const int reps = (int)(2e7 / macs) + 3;
        double best = 1e9;
        for (int r = 0; r < 20; r++) {
            double t = now();
            for (int i = 0; i < reps; i++)
                bnk_grouped_conv2d(x, 1, h, h, c, groups, 3, 3, st, st, 1, 1, st == 2 ? 0 : 1, st == 2 ? 0 : 1, oh, oh, packed, cpg,
                                   BNK_ACT_RELU, y, scratch);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        printf("  grouped 3x3 %3dx%3dx%-4d %2d groups of %2d stride %d (%s)  %6.1f GFLOP/s\n", h, h, c, groups, cpg, st,
               bnk_grouped_isa(cpg), 2 * macs / best / 1e9);
        free(x); free(w); free(b); free(packed); free(scratch); free(y);
    }
}

/* 1x1 convs at batch 1 on small maps (ResNet50 and ResNeXt50 at 96: 3x3 and 6x6 maps; Xception
   160's middle flow, 10x10; MobileNet 224's 14x14): weights of 1 to 8 MiB cycled through copies
   of 96 MiB in all, so each call reads its weights from memory, as a network too large for L3
   does. Mean of 48 calls. */
static void streamed_weights(void) {
    const int shapes[][3] = {{9, 1024, 2048}, {9, 2048, 1024}, {9, 2048, 512}, {36, 1024, 1024}, {49, 512, 2048},
                             {100, 728, 728}, {196, 512, 512}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        const size_t floats = bnk_panels_floats(K, N);
        const int copies = (int)(((size_t)96 << 20) / (floats * sizeof(float)));
        float *A = random_floats((size_t)M * K, -1, 1), *B = random_floats((size_t)K * N, -1, 1), *bias = random_floats(N, -1, 1);
        float *C = malloc(sizeof(float) * M * N), **P = malloc(sizeof(float *) * copies);
        for (int c = 0; c < copies; c++) {
            P[c] = malloc(sizeof(float) * floats);
            bnk_pack_panels(K, N, B, N, P[c]);
        }
        for (int c = 0; c < copies; c++) bnk_gemm_panels(M, N, K, A, K, P[c], bias, NULL, C, N, BNK_ACT_RELU);
        double t = now();
        for (int r = 0; r < 48; r++) bnk_gemm_panels(M, N, K, A, K, P[r % copies], bias, NULL, C, N, BNK_ACT_RELU);
        t = (now() - t) / 48;
        printf("  1x1 %2d x %4d -> %4d, weights from memory  %7.1f us  %5.1f GB/s of weights  %5.1f GFLOP/s\n", M, K, N, t * 1e6,
               floats * sizeof(float) / t / 1e9, 2.0 * M * N * K / t / 1e9);
        for (int c = 0; c < copies; c++) free(P[c]);
        free(P); free(A); free(B); free(bias); free(C);
    }
}

/* One and two threads on weights streamed from memory. Every image at batch 1 reads all of a
   large network's weights from memory (ResNet50: 100 MB), so where a step's weights outrun its
   compute, two threads can go no faster than two cores read memory. Measured here: the read
   rate of 256 MiB (each thread its half), and 9 x 4608 -> 512 (ResNet50 96's last 3x3 convs,
   9.4 MB of panels, as the indirect conv runs them), 9 x 1024 -> 2048 and 9 x 2048 -> 512 (its
   last stage's 1x1 convs) with each thread its half of the columns
   (bnk_gemm_panels_part), cycled through 128 MiB of copies in huge pages where Linux gives them,
   as the runtime's panels are (FloatMemory). Medians of 5. */
typedef struct {
    const float *data;
    size_t floats;
    float sum;
    int M, K, N, n0, width, calls, copies;
    const float *A, *bias;
    float *C;
    float *const *P;
} stream_job;

static float *huge_floats(size_t floats) {
    const size_t page = (size_t)2 << 20, bytes = (floats * sizeof(float) + page - 1) / page * page;
    void *p = NULL;
    if (posix_memalign(&p, page, bytes) != 0) return NULL;
#ifdef __linux__
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void *read_share(void *arg) {
    stream_job *j = arg;
    float s[16] = {0};
    for (size_t i = 0; i + 16 <= j->floats; i += 16)
        for (int l = 0; l < 16; l++) s[l] += j->data[i + l];
    for (int l = 0; l < 16; l++) j->sum += s[l];
    return NULL;
}

static void *gemm_share(void *arg) {
    stream_job *j = arg;
    for (int c = 0; c < j->calls; c++)
        bnk_gemm_panels_part(j->M, j->width, j->K, j->A, j->K, j->P[c % j->copies] + (size_t)j->n0 * j->K, j->bias + j->n0,
                             NULL, j->C + j->n0, j->N, BNK_ACT_RELU, j->N, NULL);
    return NULL;
}

/* Seconds for `threads` threads to run `body` over their jobs at once. */
static double on_threads(int threads, stream_job *jobs, void *(*body)(void *)) {
    pthread_t t[2];
    double start = now();
    for (int w = 1; w < threads; w++) pthread_create(&t[w], NULL, body, &jobs[w]);
    body(&jobs[0]);
    for (int w = 1; w < threads; w++) pthread_join(t[w], NULL);
    return now() - start;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* M x K -> N (a last-stage conv at batch 1) with each of one and two threads its share of the
   columns, the panels cycled through 128 MiB of copies (weights from memory). */
static void streamed_gemm(const int M, const int K, const int N) {
    const size_t panel_floats = bnk_panels_floats(K, N);
    const int copies = (int)(((size_t)128 << 20) / (panel_floats * sizeof(float)));
    float *A = random_floats((size_t)M * K, -1, 1), *B = random_floats((size_t)K * N, -1, 1), *bias = random_floats(N, -1, 1);
    float *C = malloc(sizeof(float) * M * N), **P = malloc(sizeof(float *) * copies);
    int made = 0;
    while (made < copies && (P[made] = huge_floats(panel_floats)) != NULL) bnk_pack_panels(K, N, B, N, P[made++]);
    double seconds[3] = {0};
    for (int threads = 1; threads <= 2 && made > 1; threads++) {
        double runs[5];
        for (int r = 0; r < 5; r++) {
            stream_job jobs[2] = {{0}};
            for (int w = 0; w < threads; w++)
                jobs[w] = (stream_job){.M = M, .K = K, .N = N, .n0 = N / threads * w, .width = N / threads, .calls = 4 * made,
                                       .copies = made, .A = A, .bias = bias, .C = C, .P = P};
            runs[r] = on_threads(threads, jobs, gemm_share) / (4 * made);
        }
        qsort(runs, 5, sizeof *runs, by_value);
        seconds[threads] = runs[2];
    }
    if (made > 1)
        printf("  %d x %d -> %d, weights from memory: one thread %.1f us (%.1f GB/s), two %.1f us (%.1f GB/s): %.2fx\n", M, K, N,
               seconds[1] * 1e6, panel_floats * sizeof(float) / seconds[1] / 1e9, seconds[2] * 1e6,
               panel_floats * sizeof(float) / seconds[2] / 1e9, seconds[1] / seconds[2]);
    for (int c = 0; c < made; c++) free(P[c]);
    free(P); free(A); free(B); free(bias); free(C);
}

static void two_threads_streaming(void) {
    const size_t floats = (size_t)64 << 20;
    float *data = huge_floats(floats);
    if (!data) return;
    for (size_t i = 0; i < floats; i++) data[i] = (float)(i & 1023);
    double rate[3] = {0};
    for (int threads = 1; threads <= 2; threads++) {
        double runs[5];
        for (int r = 0; r < 5; r++) {
            stream_job jobs[2] = {{0}};
            for (int w = 0; w < threads; w++) jobs[w] = (stream_job){.data = data + floats / threads * w, .floats = floats / threads};
            runs[r] = floats * sizeof(float) / on_threads(threads, jobs, read_share) / 1e9;
            if (jobs[0].sum < 0) printf("?");
        }
        qsort(runs, 5, sizeof *runs, by_value);
        rate[threads] = runs[2];
    }
    free(data);
    printf("  memory read, 256 MiB: one thread %.1f GB/s, two %.1f GB/s (%.2fx)\n", rate[1], rate[2], rate[2] / rate[1]);

    streamed_gemm(9, 4608, 512);
    streamed_gemm(9, 1024, 2048);
    streamed_gemm(9, 2048, 512);
}

int main(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("FMA peak, one core (12 chains of 8-wide FMAs), best of 5: %.1f GFLOP/s\n", fma_peak());
#endif
    for (int level = 2; level >= 0; level--) {
        bnk_limit_isa(level);
        const char *isa = bnk_gemm_isa();
        if ((level == 2 && strcmp(isa, "avx512") != 0) || (level == 1 && strcmp(isa, "avx2") != 0)) continue;
        printf("Pointwise, depthwise and grouped convs (%s), ReLU6 (grouped: ReLU), hot, best of 20:\n", isa);
        pointwise_and_depthwise();
        printf("Weights streamed from memory (%s):\n", isa);
        streamed_weights();
        printf("One and two threads on weights streamed from memory (%s), medians of 5:\n", isa);
        two_threads_streaming();
    }
    bnk_limit_isa(2);
    printf("GEMM (%s), best of 5:\n", bnk_gemm_isa());
    const int shapes[][4] = {
        /* M, N, K, what */
        {980, 32, 144, 0}, {49, 32, 144, 1}, {784, 64, 288, 2}, {196, 128, 576, 3}, {36, 64, 32, 4}, {12, 128, 64, 5},
    };
    const char *what[] = {"small CNN conv2, 20 images", "small CNN conv2, 1 image", "bigger CNN conv2 (im2col)",
                          "bigger CNN conv3 (im2col)", "Winograd block, conv2", "Winograd block, conv3"};
    for (int s = 0; s < 6; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = random_floats((size_t)M * K, 0, 1), *B = random_floats((size_t)K * N, -1, 1), *C = malloc(sizeof(float) * M * N);
        int reps = 200000000 / (M * N * K) + 10;
        double best = 1e9;
        for (int r = 0; r < 5; r++) {
            double t = now();
            for (int i = 0; i < reps; i++) bnk_gemm(M, N, K, A, K, B, NULL, C, N, BNK_ACT_RELU);
            t = (now() - t) / reps;
            if (t < best) best = t;
        }
        printf("  M %4d  N %3d  K %3d  %6.1f GFLOP/s  (%s)\n", M, N, K, 2.0 * M * N * K / best / 1e9, what[shapes[s][3]]);
        free(A); free(B); free(C);
    }

    printf("Dense 784 -> 50, 256 rows, sigmoid: GEMM vs sparse path by share of nonzero inputs (random positions), best of 50:\n");
    const int M = 256, K = 784, N = 50;
    float *A = malloc(sizeof(float) * M * K), *B = random_floats((size_t)K * N, -1, 1), *C = malloc(sizeof(float) * M * N);
    for (int d = 1; d <= 9; d++) {
        for (int i = 0; i < M * K; i++) A[i] = rand() % 10 < d ? (float)rand() / (float)RAND_MAX : 0.0f;
        double best[2] = {1e9, 1e9};
        for (int r = 0; r < 50; r++) {
            for (int v = 0; v < 2; v++) {
                double t = now();
                if (v) bnk_dense_sparse(M, N, K, A, K, B, NULL, C, N, BNK_ACT_SIGMOID);
                else bnk_gemm(M, N, K, A, K, B, NULL, C, N, BNK_ACT_SIGMOID);
                t = now() - t;
                if (t < best[v]) best[v] = t;
            }
        }
        printf("  %d0%% nonzero: GEMM %6.1f us, sparse %6.1f us, sparse is %.2fx\n", d, best[0] * 1e6, best[1] * 1e6, best[0] / best[1]);
    }
    return 0;
}
