/* Which instruction sets the kernels may use: what the CPU has, capped by
 * bnk_limit_isa (tests run every code path this machine can run). */
#ifndef BNKIT_ISA_H
#define BNKIT_ISA_H

#if defined(__x86_64__)
#define BNK_X86 1
/* Compiled for AVX-512, AVX2 and baseline; the loader picks one. */
#define BNK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BNK_X86 0
#define BNK_CLONES
#endif

#if BNK_X86
#include <immintrin.h>
#include "bnkit_kernels.h"

/* The activations applied in the kernels' epilogues on 16 lanes: linear, ReLU, ReLU6
   (sigmoid is applied afterwards, over whole rows). */
__attribute__((target("avx512f")))
static inline __m512 bnk_act512(__m512 v, int act) {
    if (act == BNK_ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == BNK_ACT_RELU6) return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    return v;
}
#endif

/* 2: AVX-512 kernels allowed, 1: AVX2+FMA, 0: portable C only. */
int bnk_use_avx512(void);
int bnk_use_avx2(void);

#endif
