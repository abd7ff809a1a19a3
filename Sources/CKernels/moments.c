/* Per-channel mean and sum of squared deviations of a tile, in double: what batch
   normalization's statistics are made of (see bnkit_kernels.h). One body, compiled for
   AVX-512, AVX2+FMA and baseline x86-64 (or the host's baseline elsewhere); chosen per
   call under the instruction-set cap, so tests run every version on one machine. */
#include "isa.h"
#include "bnkit_kernels.h"

/* Two passes over the tile (it is cache-sized): the sums give the mean, then the squared
   deviations from that mean, so no cancellation however large the mean is. */
static inline __attribute__((always_inline))
void moments_body(const float *x, size_t rows, size_t channels, double *mean, double *m2) {
    for (size_t c = 0; c < channels; c++) { mean[c] = 0; m2[c] = 0; }
    if (rows == 0) return;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * channels;
        for (size_t c = 0; c < channels; c++) mean[c] += (double)row[c];
    }
    const double inverse = 1.0 / (double)rows;
    for (size_t c = 0; c < channels; c++) mean[c] *= inverse;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * channels;
        for (size_t c = 0; c < channels; c++) {
            double d = (double)row[c] - mean[c];
            m2[c] += d * d;
        }
    }
}

static void moments_generic(const float *x, size_t rows, size_t channels, double *mean, double *m2) {
    moments_body(x, rows, channels, mean, m2);
}

#if BNK_X86
__attribute__((target("avx2,fma")))
static void moments_avx2(const float *x, size_t rows, size_t channels, double *mean, double *m2) {
    moments_body(x, rows, channels, mean, m2);
}

__attribute__((target("avx512f")))
static void moments_avx512(const float *x, size_t rows, size_t channels, double *mean, double *m2) {
    moments_body(x, rows, channels, mean, m2);
}
#endif

void bnk_channel_moments(const float *x, size_t rows, size_t channels, double *mean, double *m2) {
#if BNK_X86
    if (bnk_use_avx512()) { moments_avx512(x, rows, channels, mean, m2); return; }
    if (bnk_use_avx2()) { moments_avx2(x, rows, channels, mean, m2); return; }
#endif
    moments_generic(x, rows, channels, mean, m2);
}

const char *bnk_channel_moments_isa(void) { return bnk_isa_name(); }
