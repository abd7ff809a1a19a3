/* PNG and JPEG decoding through the system libraries, with their errors contained:
   both libraries report errors by longjmp, which must never cross Swift frames, so
   every call into them is made from here. */
#include "bnkit_image.h"
#include <png.h>
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(char *message, size_t size, const char *format, ...) {
    if (!message || !size) return;
    va_list args;
    va_start(args, format);
    vsnprintf(message, size, format, args);
    va_end(args);
    for (char *c = message; *c; c++) if (*c == '\n' || *c == '\r') *c = ' ';
}

void bnk_scratch_free(bnk_scratch *scratch) {
    if (scratch) { free(scratch->data); scratch->data = NULL; scratch->capacity = 0; }
}

/* At least `bytes` of scratch, its contents not kept; NULL when out of memory. */
static uint8_t *reserve(bnk_scratch *scratch, size_t bytes) {
    if (scratch->capacity < bytes) {
        free(scratch->data);
        scratch->data = malloc(bytes);
        scratch->capacity = scratch->data ? bytes : 0;
    }
    return scratch->data;
}

/* RGB rows to gray in place (Pillow's "L" conversion, ITU-R 601-2 luma, rounded). */
static void rgb_to_gray(uint8_t *pixels, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = pixels + 3 * i;
        pixels[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
    }
}

/* ---- PNG ---- */

typedef struct { jmp_buf jump; char *message; size_t size; } png_failure;

static void png_error_handler(png_structp png, png_const_charp text) {
    png_failure *failure = png_get_error_ptr(png);
    /* libpng's stdio reader says "Read Error" when fread comes up short: the file ends early. */
    if (strcmp(text, "Read Error") == 0) say(failure->message, failure->size, "the file ends before the image does (truncated)");
    else say(failure->message, failure->size, "%s", text);
    longjmp(failure->jump, 1);
}
static void png_warning_handler(png_structp png, png_const_charp text) { (void)png; (void)text; }

static int decode_png(FILE *file, int want, size_t max_pixels, bnk_scratch *scratch, bnk_image *out, char *message, size_t size) {
    png_failure failure = { .message = message, .size = size };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_error_handler, png_warning_handler);
    if (!png) { say(message, size, "out of memory"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        say(message, size, "out of memory");
        return 1;
    }
    uint8_t *pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(failure.jump)) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_user_limits(png, 1u << 20, 1u << 20);
    png_set_chunk_malloc_max(png, 64u << 20);
    /* A damaged ancillary chunk is an error, not a warning (Pillow refuses a bad CRC in any
       chunk it reads). */
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    png_init_io(png, file);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if ((size_t)width * height > max_pixels) {
        say(message, size, "%ux%u pixels, over the %zu-pixel limit", width, height, max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    int gray = (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA);
    /* 16-bit color: the high byte of each sample (Pillow's RGB;16B unpacking). 16-bit gray:
       Pillow opens it as "I;16" and clips to 255 when converting to L or RGB; kept 16-bit here
       and clipped below. */
    int gray16 = gray && depth == 16;
    if (depth == 16 && !gray16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);  /* dropped, not composited */
    if (gray && want == 3 && !gray16) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != (gray16 ? 16 : 8) || (channels != 1 && channels != 3)) {
        say(message, size, "unsupported PNG layout (%d channels of %d bits after conversion)", channels, png_get_bit_depth(png, info));
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    size_t stride = (size_t)width * channels * (gray16 ? 2 : 1);
    pixels = reserve(scratch, stride * height * (gray16 && want == 3 ? 2 : 1) + 1);
    rows = malloc(sizeof(png_bytep) * (height + 1));
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + y * stride;
    png_read_image(png, rows);
    free(rows);
    rows = NULL;
    /* Every row is decoded. What follows the image data (the last IDAT's CRC, IEND, chunks
       after it) may be damaged or missing: Pillow, which stops after the image data, accepts
       that, and so does this (an error there comes back to this setjmp and is ignored). */
    if (!setjmp(failure.jump)) png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    if (message && size) message[0] = 0;
    size_t count = (size_t)width * height;
    out->depth = 8;
    if (gray16 && want == 1) {
        uint16_t *wide = (uint16_t *)pixels;
        for (size_t i = 0; i < count; i++) wide[i] = (uint16_t)(((unsigned)pixels[2 * i] << 8) | pixels[2 * i + 1]);
        out->width = (int)width; out->height = (int)height; out->channels = 1; out->depth = 16; out->pixels = pixels;
        return 0;
    }
    if (gray16) {
        for (size_t i = 0; i < count; i++) {
            unsigned v = ((unsigned)pixels[2 * i] << 8) | pixels[2 * i + 1];
            pixels[i] = v > 255 ? 255 : (uint8_t)v;
        }
        if (want == 3) {
            for (size_t i = count; i-- > 0;) { uint8_t v = pixels[i]; pixels[3 * i] = v; pixels[3 * i + 1] = v; pixels[3 * i + 2] = v; }
            channels = 3;
        }
    }
    if (channels == 3 && want == 1) { rgb_to_gray(pixels, count); channels = 1; }
    out->width = (int)width; out->height = (int)height; out->channels = channels; out->pixels = pixels;
    return 0;
}

/* ---- JPEG ---- */

typedef struct { struct jpeg_error_mgr base; jmp_buf jump; char *message; size_t size; } jpeg_failure;

static void jpeg_error_exit(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    say(failure->message, failure->size, "%s", text);
    longjmp(failure->jump, 1);
}
/* Warnings (corrupt data the decoder works around) are ignored, as Pillow ignores them, but
   for one: the file ending before the image does. libjpeg then pads the data with an end
   marker and goes on; Pillow refuses such a file ("image file is truncated"), so this does. */
static void jpeg_warning(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_failure *failure = (jpeg_failure *)cinfo->err;
        say(failure->message, failure->size, "the file ends before the image does (truncated)");
        longjmp(failure->jump, 1);
    }
}

/* Progressive JPEGs are decoded scan by scan, each scan a pass over the whole image: scans are
   cheap to repeat in a file and costly to decode (a 2000 x 2000 JPEG with its last scan repeated
   200 times took Pillow 3.3 s against 0.12 s). libjpeg-turbo's advice for untrusted input is to
   cap them (djpeg -maxscans, TurboJPEG's TJPARAM_SCANLIMIT). Encoders write about 10. */
enum { max_jpeg_scans = 500 };
static void jpeg_scan_limit(j_common_ptr cinfo) {
    j_decompress_ptr decompress = (j_decompress_ptr)cinfo;
    if (decompress->input_scan_number > max_jpeg_scans) {
        jpeg_failure *failure = (jpeg_failure *)cinfo->err;
        say(failure->message, failure->size, "over %d progressive scans (a hostile or damaged file)", max_jpeg_scans);
        longjmp(failure->jump, 1);
    }
}

static int decode_jpeg(FILE *file, int want, size_t max_pixels, bnk_scratch *scratch, bnk_image *out, char *message, size_t size) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure = { .message = message, .size = size };
    cinfo.err = jpeg_std_error(&failure.base);
    failure.base.error_exit = jpeg_error_exit;
    failure.base.emit_message = jpeg_warning;
    struct jpeg_progress_mgr progress = { .progress_monitor = jpeg_scan_limit };
    uint8_t *pixels = NULL;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    cinfo.mem->max_memory_to_use = 256L << 20;
    jpeg_stdio_src(&cinfo, file);
    jpeg_read_header(&cinfo, TRUE);
    if ((size_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        say(message, size, "%ux%u pixels, over the %zu-pixel limit", cinfo.image_width, cinfo.image_height, max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        say(message, size, "CMYK JPEG images are not supported (convert to RGB first)");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    /* Pillow decodes color JPEGs to RGB and gray ones to L, then converts. */
    cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int channels = cinfo.output_components;
    size_t stride = (size_t)cinfo.output_width * channels;
    int replicate = (channels == 1 && want == 3);
    pixels = reserve(scratch, stride * cinfo.output_height * (replicate ? 3 : 1) + 1);
    if (!pixels) { say(message, size, "out of memory"); jpeg_destroy_decompress(&cinfo); return 1; }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    size_t count = (size_t)cinfo.output_width * cinfo.output_height;
    out->width = (int)cinfo.output_width; out->height = (int)cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    if (replicate) {
        for (size_t i = count; i-- > 0;) { uint8_t v = pixels[i]; pixels[3 * i] = v; pixels[3 * i + 1] = v; pixels[3 * i + 2] = v; }
        channels = 3;
    } else if (channels == 3 && want == 1) {
        rgb_to_gray(pixels, count);
        channels = 1;
    }
    out->channels = channels; out->depth = 8; out->pixels = pixels;
    return 0;
}

int bnk_image_decode(const char *path, int want, size_t max_pixels, bnk_scratch *scratch, bnk_image *out, char *message, size_t size) {
    memset(out, 0, sizeof *out);
    if (want != 1 && want != 3) { say(message, size, "the model needs %d channels; images give 1 or 3", want); return 1; }
    FILE *file = fopen(path, "rb");
    if (!file) { say(message, size, "cannot open the file"); return 1; }
    unsigned char signature[8] = {0};
    size_t got = fread(signature, 1, 8, file);
    rewind(file);
    int status;
    if (got == 8 && png_sig_cmp(signature, 0, 8) == 0) status = decode_png(file, want, max_pixels, scratch, out, message, size);
    else if (got >= 3 && signature[0] == 0xFF && signature[1] == 0xD8 && signature[2] == 0xFF) status = decode_jpeg(file, want, max_pixels, scratch, out, message, size);
    else { say(message, size, "not a PNG or JPEG image"); status = 1; }
    fclose(file);
    return status;
}
