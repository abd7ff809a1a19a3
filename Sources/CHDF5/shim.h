/* HDF5 for Swift: the public API plus getters for the macros Swift cannot import. */
#include <stdio.h>
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
static inline hid_t bnkit_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline unsigned bnkit_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned bnkit_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned bnkit_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned bnkit_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline size_t bnkit_H5T_VARIABLE(void) { return H5T_VARIABLE; }

/* Silence libhdf5's own printing of its error stack; errors reach Swift as values. */
static inline void bnkit_H5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Copy the innermost message of the current error stack into buf (empty when none). */
static inline herr_t bnkit_h5_error_walker(unsigned n, const H5E_error2_t *err, void *data) {
    char *buf = (char *)data;
    if (n == 0 && err && err->desc) {
        snprintf(buf, 512, "%s (in %s)", err->desc, err->func_name ? err->func_name : "?");
    }
    return 0;
}
static inline void bnkit_H5_last_error(char *buf /* 512 bytes */) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, bnkit_h5_error_walker, buf);
}
