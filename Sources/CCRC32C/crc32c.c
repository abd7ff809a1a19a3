/* CRC-32C for the .bin checksums: hardware where the CPU has it, tables elsewhere. */
#include "bnkit_crc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

static uint32_t table[8][256];
static int table_ready = 0;

static void make_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++) table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xFF];
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t bnk_crc32c_portable(uint32_t crc, const void *data, size_t n) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) make_table();
    const unsigned char *p = data;
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo); hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^ table[4][lo >> 24]
            ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^ table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
static int has_hardware(void) { return __builtin_cpu_supports("sse4.2"); }
#define HARDWARE crc32c_sse42
#define HARDWARE_NAME "sse4.2"
#elif defined(__aarch64__)
__attribute__((target("+crc")))
static uint32_t crc32c_armv8(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_aarch64_crc32cb(c, *p++); n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_aarch64_crc32cx(c, v);
        p += 8;
        n -= 8;
    }
    while (n--) c = __builtin_aarch64_crc32cb(c, *p++);
    return ~c;
}
static int has_hardware(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#define HARDWARE crc32c_armv8
#define HARDWARE_NAME "armv8-crc"
#endif

uint32_t bnk_crc32c(uint32_t crc, const void *data, size_t n) {
#ifdef HARDWARE
    static int hardware = -1;
    if (hardware < 0) hardware = has_hardware();
    if (hardware) return HARDWARE(crc, data, n);
#endif
    return bnk_crc32c_portable(crc, data, n);
}

const char *bnk_crc32c_implementation(void) {
#ifdef HARDWARE
    if (has_hardware()) return HARDWARE_NAME;
#endif
    return "portable";
}
