#ifndef BNKIT_CRC32C_H
#define BNKIT_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (0 to start; pass the previous
   result to continue). Uses the CPU's CRC32 instruction (SSE4.2 on x86-64, the CRC
   extension on arm64) where it has one, else slicing-by-8 tables. */
uint32_t bnk_crc32c(uint32_t crc, const void *data, size_t n);
/* The portable table version (for tests). */
uint32_t bnk_crc32c_portable(uint32_t crc, const void *data, size_t n);
/* "sse4.2", "armv8-crc" or "portable": what bnk_crc32c uses on this machine. */
const char *bnk_crc32c_implementation(void);
#endif
