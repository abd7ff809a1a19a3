/* Opens libhdf5 with dlopen and resolves what bnkit uses (see chdf5.h). */
#include "chdf5.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static bnkit_h5_api api;
static const bnkit_h5_api *loaded = NULL;
static char failure[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Globals behind the HDF5 macros for predefined types and property list classes. */
static hid_t g_P_FILE_ACCESS, g_P_FILE_CREATE, g_P_LINK_CREATE, g_P_DATASET_CREATE;
static hid_t g_T_NATIVE_FLOAT, g_T_NATIVE_DOUBLE, g_T_NATIVE_INT64, g_T_C_S1, g_T_IEEE_F32LE, g_T_STD_I64LE;

/* The sonames of the HDF5 ABI bnkit is built against: Debian's serial flavour, then the plain
   name other distributions use, then the development links. */
static const char *const candidates[] = {
    "libhdf5_serial.so.103", "libhdf5.so.103", "libhdf5_serial.so", "libhdf5.so",
};

/* The library globals behind those macros, read once the library has started. */
static const struct { const char *symbol; hid_t *value; } globals[] = {
    {"H5P_CLS_FILE_ACCESS_ID_g", &g_P_FILE_ACCESS}, {"H5P_CLS_FILE_CREATE_ID_g", &g_P_FILE_CREATE},
    {"H5P_CLS_LINK_CREATE_ID_g", &g_P_LINK_CREATE}, {"H5P_CLS_DATASET_CREATE_ID_g", &g_P_DATASET_CREATE},
    {"H5T_NATIVE_FLOAT_g", &g_T_NATIVE_FLOAT}, {"H5T_NATIVE_DOUBLE_g", &g_T_NATIVE_DOUBLE},
    {"H5T_NATIVE_INT64_g", &g_T_NATIVE_INT64}, {"H5T_C_S1_g", &g_T_C_S1},
    {"H5T_IEEE_F32LE_g", &g_T_IEEE_F32LE}, {"H5T_STD_I64LE_g", &g_T_STD_I64LE},
};

static void load(void) {
    void *library = NULL;
    char tried[400] = "";
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !library; i++) {
        library = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (!library) {
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", candidates[i]);
        }
    }
    if (!library) {
        snprintf(failure, sizeof failure, "the HDF5 library is not installed (tried %s; on Debian: apt install libhdf5-103-1)", tried);
        return;
    }
#define BNKIT_H5_RESOLVE(name) \
    api.name = (__typeof__(name) *)dlsym(library, #name); \
    if (!api.name) { snprintf(failure, sizeof failure, "libhdf5 has no function " #name); return; }
    BNKIT_H5_FUNCTIONS(BNKIT_H5_RESOLVE)
#undef BNKIT_H5_RESOLVE
    unsigned major = 0, minor = 0, release = 0;
    if (api.H5open() < 0 || api.H5get_libversion(&major, &minor, &release) < 0) {
        snprintf(failure, sizeof failure, "libhdf5 could not start");
        return;
    }
    if (major != H5_VERS_MAJOR || minor != H5_VERS_MINOR) {
        snprintf(failure, sizeof failure, "found HDF5 %u.%u.%u, but bnkit was built for HDF5 %d.%d", major, minor, release,
                 H5_VERS_MAJOR, H5_VERS_MINOR);
        return;
    }
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) {
        const hid_t *global = (const hid_t *)dlsym(library, globals[i].symbol);
        if (!global) { snprintf(failure, sizeof failure, "libhdf5 has no symbol %s", globals[i].symbol); return; }
        *globals[i].value = *global;
    }
    loaded = &api;
}

const bnkit_h5_api *bnkit_h5_load(char *error, size_t size) {
    pthread_once(&once, load);
    if (!loaded && size > 0) snprintf(error, size, "%s", failure);
    return loaded;
}

hid_t bnkit_H5P_DEFAULT(void) { return H5P_DEFAULT; }
hid_t bnkit_H5S_ALL(void) { return H5S_ALL; }
hid_t bnkit_H5P_FILE_ACCESS(void) { return g_P_FILE_ACCESS; }
hid_t bnkit_H5P_FILE_CREATE(void) { return g_P_FILE_CREATE; }
hid_t bnkit_H5P_LINK_CREATE(void) { return g_P_LINK_CREATE; }
hid_t bnkit_H5P_DATASET_CREATE(void) { return g_P_DATASET_CREATE; }
hid_t bnkit_H5T_NATIVE_FLOAT(void) { return g_T_NATIVE_FLOAT; }
hid_t bnkit_H5T_NATIVE_DOUBLE(void) { return g_T_NATIVE_DOUBLE; }
hid_t bnkit_H5T_NATIVE_INT64(void) { return g_T_NATIVE_INT64; }
hid_t bnkit_H5T_C_S1(void) { return g_T_C_S1; }
hid_t bnkit_H5T_IEEE_F32LE(void) { return g_T_IEEE_F32LE; }
hid_t bnkit_H5T_STD_I64LE(void) { return g_T_STD_I64LE; }
hid_t bnkit_H5E_DEFAULT(void) { return H5E_DEFAULT; }
/* The H5F_ACC_* macros call H5check_version and H5open (linked symbols); their values are fixed. */
unsigned bnkit_H5F_ACC_RDONLY(void) { return 0x0000u; }
unsigned bnkit_H5F_ACC_RDWR(void) { return 0x0001u; }
unsigned bnkit_H5F_ACC_TRUNC(void) { return 0x0002u; }
unsigned bnkit_H5F_ACC_EXCL(void) { return 0x0004u; }
size_t bnkit_H5T_VARIABLE(void) { return H5T_VARIABLE; }

void bnkit_H5_silence_errors(void) { api.H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct { char outer[256]; char inner[256]; } error_text;

static herr_t error_walker(unsigned n, const H5E_error2_t *err, void *data) {
    error_text *text = (error_text *)data;
    if (err && err->desc) {
        /* H5E_WALK_UPWARD: frame 0 is the innermost cause, the last one the API call. */
        if (n == 0) snprintf(text->inner, sizeof text->inner, "%s", err->desc);
        snprintf(text->outer, sizeof text->outer, "%s", err->desc);
    }
    return 0;
}

void bnkit_H5_last_error(char *buf) {
    error_text text;
    text.outer[0] = 0;
    text.inner[0] = 0;
    api.H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, error_walker, &text);
    if (text.inner[0] && strcmp(text.inner, text.outer) != 0) snprintf(buf, 512, "%s (%s)", text.outer, text.inner);
    else snprintf(buf, 512, "%s", text.outer);
}
