/* libdeflate: fast whole-buffer gzip decompression (Debian libdeflate-dev). */
#include <libdeflate.h>
