/* cpuid_cap.so: makes a process see an older x86-64 CPU, so a benchmark can run onnxruntime (which has no
   switch for it), OpenVINO and bnrun at the AVX2 or SSE level on an AVX-512 machine, each choosing its
   kernels by itself as it would on that CPU.

   LD_PRELOAD=cpuid_cap.so BNKIT_CPUID_CAP=avx2|sse4 program ...

   How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, since 4.12; Intel CPUs and KVM guests have it,
   `cpuid_fault` in /proc/cpuinfo). With it on, every CPUID instruction of the process traps (SIGSEGV); the
   handler here runs the real CPUID with faulting briefly off, clears the feature bits above the level and
   steps over the instruction. The setting is per thread and inherited by the threads and children the
   process creates (reset by execve, where the preload sets it again). What the process reads with XGETBV
   is not changed: the libraries ask CPUID first and XGETBV only for what CPUID reports.

   The loader's own CPU reading (glibc's string functions) happens before this library loads; glibc's
   GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,... caps that part (tools/cpu_cap.py sets both).

   The cap is reported, never silently dropped: cpuid_cap_status() returns 1 when faulting is on, 0 when the
   kernel or CPU refused it (then nothing is hidden), -1 when BNKIT_CPUID_CAP names no level. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

enum { CAP_NONE, CAP_AVX2, CAP_SSE4 };
static int level = CAP_NONE;
static int status = -1;
static volatile long trapped;
static struct sigaction previous;

static void mask(unsigned leaf, unsigned sub, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
    if (leaf == 1 && level == CAP_SSE4)
        *c &= ~((1u << 12) | (1u << 28) | (1u << 29)); /* FMA, AVX, F16C */
    if (leaf == 7 && sub == 0) {
        /* AVX512F DQ IFMA PF ER CD BW VL */
        *b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        /* AVX512_VBMI VBMI2 VNNI BITALG VPOPCNTDQ, and the VEX forms of VAES and VPCLMULQDQ an AVX2-era CPU lacks */
        *c &= ~((1u << 1) | (1u << 6) | (1u << 9) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 14));
        /* AVX512_4VNNIW 4FMAPS VP2INTERSECT, AMX_BF16 AVX512_FP16 AMX_TILE AMX_INT8 */
        *d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
        if (level == CAP_SSE4) *b &= ~(1u << 5); /* AVX2 */
    }
    if (leaf == 7 && sub == 1)
        *a &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23)); /* AVX_VNNI AVX512_BF16 AMX_FP16 AVX_IFMA */
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    /* A faulting CPUID is a general-protection fault (SI_KERNEL), never a page fault, so the instruction
       bytes are readable here; anything else goes to the handler that was there before. */
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        sigaction(SIGSEGV, &previous, 0);
        return; /* the instruction runs again and faults to the previous (or default) handler */
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    mask(leaf, sub, &a, &b, &c, &d);
    r[REG_RAX] = a, r[REG_RBX] = b, r[REG_RCX] = c, r[REG_RDX] = d;
    r[REG_RIP] += 2;
    trapped++;
    (void)sig;
}

__attribute__((constructor)) static void start(void) {
    const char *name = getenv("BNKIT_CPUID_CAP");
    if (!name) return;
    if (strcmp(name, "avx2") == 0) level = CAP_AVX2;
    else if (strcmp(name, "sse4") == 0) level = CAP_SSE4;
    else return;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0) status = 1;
    else status = 0, sigaction(SIGSEGV, &previous, 0);
}

/* 1: CPUID is capped in this process; 0: the cap was asked for but CPUID faulting is not available; -1: not asked. */
int cpuid_cap_status(void) { return status; }

/* CPUID as this process sees it now (capped or not), for a check from the caller. */
void cpuid_cap_query(unsigned leaf, unsigned sub, unsigned out[4]) {
    __cpuid_count(leaf, sub, out[0], out[1], out[2], out[3]);
}

/* How many CPUID instructions were answered by the cap so far. */
long cpuid_cap_trapped(void) { return trapped; }
