/* Which kernel provider: bnkit's own kernels against XNNPACK (Debian libxnnpack-dev) on the
 * layers that dominate ResNet50, MobileNetV2 and EfficientNetB0 at 224x224, one image, one
 * thread, NHWC float32 (both libraries' layout), the same shapes, best of 5 timed runs each,
 * alternating. bnkit runs the path its planner takes for the layer (Winograd, indirect GEMM,
 * GEMM, depthwise); its instruction set follows BNKIT_MAX_ISA, XNNPACK picks its own.
 * Built and run by tools/provider_bench.sh; results in docs/PERFORMANCE.md. */
#include "bnkit_kernels.h"
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xnnpack.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, float scale) {
    float *x = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) x[i] = scale * ((float)rand() / (float)RAND_MAX - 0.5f);
    return x;
}

enum path { WINOGRAD, INDIRECT, POINTWISE, DEPTHWISE };

struct layer {
    const char *name;
    int h, w, cin, cout, k, stride, pad;
    enum path path;
};

int main(void) {
    const struct layer layers[] = {
        {"ResNet50 stem 7x7/2, 3->64", 224, 224, 3, 64, 7, 2, 3, INDIRECT},
        {"ResNet50 3x3, 56x56x64", 56, 56, 64, 64, 3, 1, 1, WINOGRAD},
        {"ResNet50 3x3, 28x28x128", 28, 28, 128, 128, 3, 1, 1, WINOGRAD},
        {"ResNet50 3x3, 14x14x256", 14, 14, 256, 256, 3, 1, 1, WINOGRAD},
        {"ResNet50 3x3, 7x7x512", 7, 7, 512, 512, 3, 1, 1, INDIRECT},
        {"ResNet50 1x1, 56x56, 64->256", 56, 56, 64, 256, 1, 1, 0, POINTWISE},
        {"ResNet50 1x1, 14x14, 1024->256", 14, 14, 1024, 256, 1, 1, 0, POINTWISE},
        {"ResNet50 1x1, 7x7, 512->2048", 7, 7, 512, 2048, 1, 1, 0, POINTWISE},
        {"MobileNetV2 1x1, 56x56, 24->144", 56, 56, 24, 144, 1, 1, 0, POINTWISE},
        {"MobileNetV2 1x1, 14x14, 384->64", 14, 14, 384, 64, 1, 1, 0, POINTWISE},
        {"MobileNetV2 dw 3x3, 112x112x96 /2", 112, 112, 96, 96, 3, 2, 1, DEPTHWISE},
        {"MobileNetV2 dw 3x3, 56x56x144", 56, 56, 144, 144, 3, 1, 1, DEPTHWISE},
        {"MobileNetV2 dw 3x3, 14x14x576", 14, 14, 576, 576, 3, 1, 1, DEPTHWISE},
        {"EfficientNetB0 dw 5x5, 28x28x240", 28, 28, 240, 240, 5, 1, 2, DEPTHWISE},
    };
    if (xnn_initialize(NULL) != xnn_status_success) { fprintf(stderr, "XNNPACK failed to initialize\n"); return 1; }
    printf("bnkit kernels (gemm %s, depthwise %s) against XNNPACK, one image, one thread, best of 5 (ms):\n\n",
           bnk_gemm_isa(), bnk_depthwise_isa());
    printf("| layer | bnkit path | bnkit ms | XNNPACK ms | bnkit / XNNPACK speed |\n|---|---|---|---|---|\n");
    const char *paths[] = {"Winograd F(2x2,3x3)", "indirect GEMM", "GEMM", "depthwise"};
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        const struct layer *l = &layers[i];
        const int depthwise = l->path == DEPTHWISE;
        const int oh = (l->h + 2 * l->pad - l->k) / l->stride + 1, ow = (l->w + 2 * l->pad - l->k) / l->stride + 1;
        const size_t weights = depthwise ? (size_t)l->k * l->k * l->cin : (size_t)l->k * l->k * l->cin * l->cout;
        float *x = random_floats((size_t)l->h * l->w * l->cin, 2.0f), *kernel = random_floats(weights, 0.1f);
        float *transformed = random_floats((size_t)16 * l->cin * l->cout, 0.1f), *bias = random_floats(l->cout, 0.1f);
        float *y = random_floats((size_t)oh * ow * l->cout, 1.0f), *y2 = random_floats((size_t)oh * ow * l->cout, 1.0f);
        size_t scratch_size = l->path == WINOGRAD ? bnk_winograd_scratch(l->cin, l->cout)
                              : bnk_conv2d_indirect_scratch(1, l->cin, l->k, l->k, l->stride, l->stride, 1, oh, ow);
        float *scratch = random_floats(scratch_size + 16, 1.0f);
        xnn_operator_t op = NULL;
        enum xnn_status status = xnn_create_convolution2d_nhwc_f32(
            l->pad, l->pad, l->pad, l->pad, l->k, l->k, l->stride, l->stride, 1, 1, depthwise ? l->cin : 1,
            depthwise ? 1 : l->cin, depthwise ? 1 : l->cout, l->cin, l->cout, kernel, bias, 0.0f, 1e30f, 0, &op);
        if (status == xnn_status_success) status = xnn_setup_convolution2d_nhwc_f32(op, 1, l->h, l->w, x, y2, NULL);
        if (status != xnn_status_success) { fprintf(stderr, "%s: XNNPACK status %d\n", l->name, status); return 1; }
        double best[2] = {1e9, 1e9};
        const int reps = 20;
        for (int round = 0; round < 6; round++) {
            for (int which = 0; which < 2; which++) {
                double t = now();
                for (int r = 0; r < reps; r++) {
                    if (which == 1) { xnn_run_operator(op, NULL); continue; }
                    switch (l->path) {
                    case WINOGRAD:
                        bnk_conv3x3_winograd(x, 1, l->h, l->w, l->cin, oh, ow, l->pad, l->pad, transformed, bias, l->cout, BNK_ACT_RELU, 0, y, scratch);
                        break;
                    case INDIRECT:
                        bnk_conv2d_indirect(x, 1, l->h, l->w, l->cin, l->k, l->k, l->stride, l->stride, 1, l->pad, l->pad, oh, ow, kernel, bias,
                                            l->cout, BNK_ACT_RELU, y, scratch);
                        break;
                    case POINTWISE:
                        bnk_gemm(l->h * l->w, l->cout, l->cin, x, l->cin, kernel, bias, y, l->cout, BNK_ACT_RELU);
                        break;
                    case DEPTHWISE:
                        bnk_depthwise_conv2d(x, l->h, l->w, l->cin, 1, l->k, l->k, l->stride, l->stride, 1, 1, l->pad, l->pad, oh, ow, kernel,
                                             bias, y, BNK_ACT_RELU);
                        break;
                    }
                }
                t = (now() - t) / reps;
                if (round > 0 && t < best[which]) best[which] = t;   /* round 0 warms up */
            }
        }
        printf("| %s | %s | %.3f | %.3f | %.2fx |\n", l->name, paths[l->path], best[0] * 1e3, best[1] * 1e3, best[1] / best[0]);
        fflush(stdout);
        xnn_delete_operator(op);
        free(x); free(kernel); free(transformed); free(bias); free(y); free(y2); free(scratch);
    }
    return 0;
}
