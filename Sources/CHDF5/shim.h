/* HDF5 for Swift: the public API plus getters for the macros Swift cannot import. */
#include <stdio.h>
#include <string.h>
#include <hdf5.h>

static inline hid_t bnkit_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t bnkit_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t bnkit_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t bnkit_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t bnkit_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t bnkit_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t bnkit_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t bnkit_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t bnkit_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t bnkit_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t bnkit_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t bnkit_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t bnkit_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline unsigned bnkit_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned bnkit_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned bnkit_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned bnkit_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline size_t bnkit_H5T_VARIABLE(void) { return H5T_VARIABLE; }

/* Silence libhdf5's own printing of its error stack; errors reach Swift as values. */
static inline void bnkit_H5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Describe the current error stack in buf: the outermost message, then the innermost cause. */
typedef struct { char outer[256]; char inner[256]; } bnkit_h5_error_text;
static inline herr_t bnkit_h5_error_walker(unsigned n, const H5E_error2_t *err, void *data) {
    bnkit_h5_error_text *text = (bnkit_h5_error_text *)data;
    if (err && err->desc) {
        /* H5E_WALK_UPWARD: frame 0 is the innermost cause, the last one the API call. */
        if (n == 0) snprintf(text->inner, sizeof text->inner, "%s", err->desc);
        snprintf(text->outer, sizeof text->outer, "%s", err->desc);
    }
    return 0;
}
static inline void bnkit_H5_last_error(char *buf /* 512 bytes */) {
    bnkit_h5_error_text text;
    text.outer[0] = 0;
    text.inner[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, bnkit_h5_error_walker, &text);
    if (text.inner[0] && strcmp(text.inner, text.outer) != 0) {
        snprintf(buf, 512, "%s (%s)", text.outer, text.inner);
    } else {
        snprintf(buf, 512, "%s", text.outer);
    }
}
