#ifndef BNKIT_IMAGE_H
#define BNKIT_IMAGE_H
#include <stddef.h>
#include <stdint.h>

/* A decoded image: height x width x channels (1: gray, 3: RGB), rows top to bottom; 8-bit
   samples, or 16-bit (native-endian uint16_t) when depth is 16. */
typedef struct {
    int width, height, channels, depth;
    uint8_t *pixels;   /* in the scratch it was decoded into */
} bnk_image;

/* Memory kept from one decode to the next: a photo's pixels are tens of megabytes, which
   malloc would map afresh (and the kernel clear page by page) for every image. */
typedef struct {
    uint8_t *data;
    size_t capacity;
} bnk_scratch;

/* Decode a PNG or JPEG file (format by signature) into scratch (grown as needed, never
   shrunk; out->pixels points into it and stays valid until the next decode into it), the way
   Pillow opens it and converts it
   with .convert("RGB") (want_channels 3) or .convert("L") (want_channels 1): palette
   expanded, 16-bit samples reduced to their high byte, alpha dropped (not composited),
   gray replicated to RGB, RGB to gray as L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16.
   16-bit grayscale PNG: Pillow opens it as "I;16"; to RGB its values are clipped to 255, and
   with want_channels 1 they are kept 16-bit (depth 16), as keras.utils.load_img keeps them.
   JPEG: libjpeg's defaults (ISLOW IDCT, fancy upsampling), as Pillow decodes.
   Images over max_pixels are refused from their header, before any pixel is decoded.
   Returns 0 on success; otherwise fills message (one line) and returns non-zero.
   libpng/libjpeg errors are caught here (setjmp), never reaching the caller's frames. */
int bnk_image_decode(const char *path, int want_channels, size_t max_pixels, bnk_scratch *scratch, bnk_image *out, char *message, size_t message_size);
void bnk_scratch_free(bnk_scratch *scratch);

#endif
