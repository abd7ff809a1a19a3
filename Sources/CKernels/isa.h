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

/* 2: AVX-512 kernels allowed, 1: AVX2+FMA, 0: portable C only. */
int bnk_use_avx512(void);
int bnk_use_avx2(void);

#endif
