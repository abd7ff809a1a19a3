/* Kernel measurements behind the choices in docs/PERFORMANCE.md:
 *   - GEMM throughput (GFLOP/s) on the shapes the fixture models run;
 *   - the Dense layer's sparse path against the GEMM, by share of nonzero inputs.
 * Built and run by tools/kernel_bench.sh against Sources/CKernels. */
#include "bnkit_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

int main(void) {
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
