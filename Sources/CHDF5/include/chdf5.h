/* HDF5 for Swift, loaded on first use.
 *
 * bnkit does not link libhdf5: the library (and the thirty-odd libraries it
 * pulls in, curl and TLS among them) is opened with dlopen the first time an
 * HDF5 file is read or written. Running a native .bin model then neither
 * needs HDF5 installed nor pays for loading it at start-up.
 *
 * bnkit_h5_load returns the table of the HDF5 functions bnkit calls (the
 * names are HDF5's own), or NULL with a message. The getters stand for the
 * HDF5 macros Swift cannot import (several read globals of the library).
 */
#ifndef BNKIT_CHDF5_H
#define BNKIT_CHDF5_H
#include <stddef.h>
#if __has_include(<hdf5/serial/hdf5.h>)
#include <hdf5/serial/hdf5.h>   /* Debian's serial flavour */
#else
#include <hdf5.h>
#endif

#define BNKIT_H5_FUNCTIONS(X) \
    X(H5Aclose) X(H5Acreate2) X(H5Adelete) X(H5Aexists) X(H5Aget_name_by_idx) X(H5Aget_space) X(H5Aget_type) \
    X(H5Aopen) X(H5Aread) X(H5Awrite) \
    X(H5Dclose) X(H5Dcreate2) X(H5Dget_create_plist) X(H5Dget_space) X(H5Dget_type) X(H5Dopen2) X(H5Dread) \
    X(H5Dvlen_reclaim) X(H5Dwrite) \
    X(H5Eclear2) X(H5Eset_auto2) X(H5Ewalk2) \
    X(H5Fclose) X(H5Fcreate) X(H5Fflush) X(H5Fis_hdf5) X(H5Fopen) \
    X(H5Gclose) X(H5Gcreate2) X(H5Gget_info) X(H5Gopen2) \
    X(H5Lcreate_external) X(H5Lcreate_soft) X(H5Ldelete) X(H5Lexists) X(H5Lget_info) X(H5Lget_name_by_idx) \
    X(H5Ocopy) X(H5Oget_info2) X(H5Oget_info_by_name2) \
    X(H5Pclose) X(H5Pcreate) X(H5Pget_external_count) X(H5Pget_filter2) X(H5Pget_layout) X(H5Pget_nfilters) \
    X(H5Pset_chunk) X(H5Pset_create_intermediate_group) X(H5Pset_deflate) X(H5Pset_external) X(H5Pset_fletcher32) \
    X(H5Pset_shuffle) \
    X(H5Sclose) X(H5Screate) X(H5Screate_simple) X(H5Sget_simple_extent_dims) X(H5Sget_simple_extent_ndims) \
    X(H5Sget_simple_extent_npoints) \
    X(H5Tclose) X(H5Tcopy) X(H5Tget_class) X(H5Tget_cset) X(H5Tget_size) X(H5Tis_variable_str) X(H5Tset_cset) \
    X(H5Tset_size) X(H5Tset_strpad) \
    X(H5open) X(H5get_libversion)

#define BNKIT_H5_FIELD(name) __typeof__(name) *_Nonnull name;
typedef struct bnkit_h5_api {
    BNKIT_H5_FUNCTIONS(BNKIT_H5_FIELD)
} bnkit_h5_api;
#undef BNKIT_H5_FIELD

/* Opens libhdf5 (once; later calls return the same table) and checks its version against the
   headers bnkit was built with. On failure returns NULL and writes why into error. */
const bnkit_h5_api *_Nullable bnkit_h5_load(char *_Nonnull error, size_t size);

/* The macros Swift cannot import (valid after a successful bnkit_h5_load). */
hid_t bnkit_H5P_DEFAULT(void);
hid_t bnkit_H5S_ALL(void);
hid_t bnkit_H5P_FILE_ACCESS(void);
hid_t bnkit_H5P_FILE_CREATE(void);
hid_t bnkit_H5P_LINK_CREATE(void);
hid_t bnkit_H5P_DATASET_CREATE(void);
hid_t bnkit_H5T_NATIVE_FLOAT(void);
hid_t bnkit_H5T_NATIVE_DOUBLE(void);
hid_t bnkit_H5T_NATIVE_INT64(void);
hid_t bnkit_H5T_C_S1(void);
hid_t bnkit_H5T_IEEE_F32LE(void);
hid_t bnkit_H5T_STD_I64LE(void);
hid_t bnkit_H5E_DEFAULT(void);
unsigned bnkit_H5F_ACC_RDONLY(void);
unsigned bnkit_H5F_ACC_RDWR(void);
unsigned bnkit_H5F_ACC_TRUNC(void);
unsigned bnkit_H5F_ACC_EXCL(void);
size_t bnkit_H5T_VARIABLE(void);

/* Silence libhdf5's own printing of its error stack; errors reach Swift as values. */
void bnkit_H5_silence_errors(void);
/* The current error stack in buf (512 bytes): the outermost message, then the innermost cause. */
void bnkit_H5_last_error(char *_Nonnull buf);

#endif
