#include "fm/h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"
#include "fm/file.h"
#include "fm/version.h"

static void quiet(void)
{
    static int done = 0;
    if (!done) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = 1;
}

fm_h5 fm_h5_create(const char *path)
{
    quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    /* The 1.8 file format: its object headers (the attributes: the config, the step) carry
     * checksums too. Every HDF5 since 1.8 reads it. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f < 0 ? -1 : f;
}

fm_h5 fm_h5_create_memory(void)
{
    quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    H5Pset_fapl_core(fapl, 1 << 20, 0); /* grow by 1 MiB, no backing file */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18); /* as fm_h5_create */
    hid_t f = H5Fcreate("fm-memory-image.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f < 0 ? -1 : f;
}

/* Bob Jenkins' lookup3 hash (hashlittle), the checksum of HDF5's metadata. */
#define ROT32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
static uint32_t lookup3(const uint8_t *k, size_t len)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)len;
    for (; len > 12; len -= 12, k += 12) {
        a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT32(c, 4), c += b;
        b -= a, b ^= ROT32(a, 6), a += c;
        c -= b, c ^= ROT32(b, 8), b += a;
        a -= c, a ^= ROT32(c, 16), c += b;
        b -= a, b ^= ROT32(a, 19), a += c;
        c -= b, c ^= ROT32(b, 4), b += a;
    }
    if (len == 0) return c;
    uint8_t tail[12] = {0};
    memcpy(tail, k, len);
    a += tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
    b += tail[4] | (uint32_t)tail[5] << 8 | (uint32_t)tail[6] << 16 | (uint32_t)tail[7] << 24;
    c += tail[8] | (uint32_t)tail[9] << 8 | (uint32_t)tail[10] << 16 | (uint32_t)tail[11] << 24;
    c ^= b, c -= ROT32(b, 14);
    a ^= c, a -= ROT32(c, 11);
    b ^= a, b -= ROT32(a, 25);
    c ^= b, c -= ROT32(b, 16);
    a ^= c, a -= ROT32(c, 4);
    b ^= a, b -= ROT32(a, 14);
    c ^= b, c -= ROT32(b, 24);
    return c;
}

/* HDF5 1.10's H5Fget_file_image clears the "open for writing" flags of a version 2 or 3
 * superblock in the image without recomputing its checksum: every such image would be refused
 * as corrupt. The checksum of the image's own bytes is written back (its last 4 bytes). */
static void fix_superblock(uint8_t *image, size_t size)
{
    if (size < 12 || (image[8] != 2 && image[8] != 3)) return;
    const size_t n = 12 + 4 * (size_t)image[9]; /* fixed part and four addresses */
    if (size < n + 4) return;
    const uint32_t h = lookup3(image, n);
    for (int i = 0; i < 4; i++) image[n + (size_t)i] = (uint8_t)(h >> (8 * i));
}

int fm_h5_save(fm_h5 f, const char *path)
{
    char *image = NULL;
    ssize_t size = -1;
    if (H5Fflush(f, H5F_SCOPE_LOCAL) >= 0) size = H5Fget_file_image(f, NULL, 0);
    if (size > 0 && (image = malloc((size_t)size)) && H5Fget_file_image(f, image, (size_t)size) != size) size = -1;
    H5Fclose(f);
    if (size <= 0 || !image) {
        free(image);
        errno = 0;
        return -1;
    }
    fix_superblock((uint8_t *)image, (size_t)size);
    int rc = -1, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t done = 0;
        while (done < size) {
            ssize_t w = write(fd, image + done, (size_t)(size - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            done += w;
        }
        rc = (done == size && fsync(fd) == 0) ? 0 : -1;
        int e = errno;
        if (close(fd) && rc == 0) rc = -1;
        else errno = e;
    }
    free(image);
    return rc;
}

/* Opens read-only a path its caller checked is a regular file; -1 when it is not HDF5. */
static fm_h5 open_file(const char *path)
{
    quiet();
    if (H5Fis_hdf5(path) <= 0) return -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    return f < 0 ? -1 : f;
}

void fm_h5_discard(fm_h5 f)
{
    if (f >= 0) H5Fclose(f);
}

uint64_t fm_h5_file_size(fm_h5 f)
{
    hsize_t n = 0;
    return H5Fget_filesize(f, &n) < 0 ? 0 : (uint64_t)n;
}

int fm_h5_close(fm_h5 f)
{
    int rc = H5Fflush(f, H5F_SCOPE_LOCAL) < 0 ? -1 : 0;
    if (H5Fclose(f) < 0) rc = -1;
    return rc;
}

static hid_t make_space(int rank, const uint64_t *dims)
{
    if (rank == 0) return H5Screate(H5S_SCALAR);
    hsize_t d[8];
    for (int i = 0; i < rank; i++) d[i] = dims[i];
    return H5Screate_simple(rank, d, NULL);
}

static uint64_t count_of(int rank, const uint64_t *dims)
{
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

/* Every array dataset is chunked with HDF5's Fletcher32 filter, so that a flipped bit in its data
 * fails the read (HDF5 checks every chunk it reads): chunks of whole rows, about 1 MiB (a row of
 * over 2 GiB, beyond HDF5's chunk limit, stays contiguous and unchecked). Scalars have no filter. */
static hid_t create_ds(fm_h5 f, const char *name, hid_t filetype, hid_t space)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t chunk[8];
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank > 0 && rank <= 8 && H5Sget_simple_extent_dims(space, chunk, NULL) == rank) {
        hsize_t row = H5Tget_size(filetype);
        for (int i = 0; i < rank; i++) {
            if (chunk[i] == 0) chunk[i] = 1;
            if (i > 0) row *= chunk[i];
        }
        const hsize_t rows = ((hsize_t)1 << 20) / row;
        chunk[0] = rows < 1 ? 1 : rows < chunk[0] ? rows : chunk[0];
        if (row <= ((hsize_t)1 << 31) && (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0)) {
            H5Pclose(dcpl);
            H5Pclose(lcpl);
            return -1;
        }
    }
    hid_t ds = H5Dcreate2(f, name, filetype, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    return ds;
}

static int write_ds(fm_h5 f, const char *name, hid_t memtype, hid_t filetype, const void *data, int rank,
                    const uint64_t *dims)
{
    hid_t space = make_space(rank, dims);
    if (space < 0) return -1;
    hid_t ds = create_ds(f, name, filetype, space);
    int rc = ds < 0 ? -1 : 0;
    if (rc == 0 && count_of(rank, dims) > 0 && H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = -1;
    if (ds >= 0 && H5Dclose(ds) < 0) rc = -1;
    H5Sclose(space);
    return rc;
}

int fm_h5_write_f32(fm_h5 f, const char *name, const float *data, int rank, const uint64_t *dims)
{
    return write_ds(f, name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, data, rank, dims);
}

int fm_h5_write_f64(fm_h5 f, const char *name, const double *data, int rank, const uint64_t *dims)
{
    return write_ds(f, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, data, rank, dims);
}

int fm_h5_write_i64(fm_h5 f, const char *name, const int64_t *data, int rank, const uint64_t *dims)
{
    return write_ds(f, name, H5T_NATIVE_INT64, H5T_STD_I64LE, data, rank, dims);
}

int fm_h5_write_i32(fm_h5 f, const char *name, const int32_t *data, int rank, const uint64_t *dims)
{
    return write_ds(f, name, H5T_NATIVE_INT32, H5T_STD_I32LE, data, rank, dims);
}

static int write_attr(fm_h5 f, const char *obj, const char *name, hid_t type, hid_t memtype, const void *value)
{
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0) return -1;
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, memtype, value) < 0) ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Oclose(o);
    return rc;
}

static hid_t vlen_utf8(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int fm_h5_attr_str(fm_h5 f, const char *obj, const char *name, const char *value)
{
    hid_t t = vlen_utf8();
    int rc = write_attr(f, obj, name, t, t, &value);
    H5Tclose(t);
    return rc;
}

static int read_attr_vec(fm_h5 f, const char *obj, const char *name, hid_t memtype, int floats_ok, void *value,
                         int lo, int hi);

static int attr_vec(fm_h5 f, const char *obj, const char *name, hid_t filetype, hid_t memtype, const void *value, int n)
{
    const hsize_t d[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, d, NULL);
    hid_t a = H5Acreate_by_name(f, obj, name, filetype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, memtype, value) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int fm_h5_attr_i64v(fm_h5 f, const char *obj, const char *name, const int64_t *value, int n)
{
    return attr_vec(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, value, n);
}

int fm_h5_attr_f64v(fm_h5 f, const char *obj, const char *name, const double *value, int n)
{
    return attr_vec(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, value, n);
}

int fm_h5_attr_read_i64v(fm_h5 f, const char *obj, const char *name, int64_t *value, int cap)
{
    return read_attr_vec(f, obj, name, H5T_NATIVE_INT64, 0, value, 1, cap);
}

int fm_h5_attr_f64(fm_h5 f, const char *obj, const char *name, double value)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &value) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int fm_h5_attr_i64(fm_h5 f, const char *obj, const char *name, int64_t value)
{
    return write_attr(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

static hid_t open_attr(fm_h5 f, const char *obj, const char *name)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return -1;
    return H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
}

/* A numeric attribute of lo..hi numbers read as memtype (integers only unless floats_ok): the
 * count, or -1 when it is missing, of another kind or of another length. */
static int read_attr_vec(fm_h5 f, const char *obj, const char *name, hid_t memtype, int floats_ok, void *value,
                         int lo, int hi)
{
    hid_t a = open_attr(f, obj, name);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    const H5T_class_t c = H5Tget_class(ft);
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    const int rc = (c == H5T_INTEGER || (floats_ok && c == H5T_FLOAT)) && n >= lo && n <= hi &&
                   H5Aread(a, memtype, value) >= 0 ? (int)n : -1;
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int fm_h5_attr_read_str(fm_h5 f, const char *obj, const char *name, char **value)
{
    *value = NULL;
    hid_t a = open_attr(f, obj, name);
    if (a < 0) return -1;
    int rc = -1;
    hid_t ft = H5Aget_type(a);
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t t = vlen_utf8();
            char *s = NULL;
            if (H5Aread(a, t, &s) >= 0 && s) {
                *value = strdup(s);
                H5free_memory(s);
                rc = *value ? 0 : -1;
            }
            H5Tclose(t);
        } else {
            size_t n = H5Tget_size(ft);
            char *s = calloc(n + 1, 1);
            if (s && H5Aread(a, ft, s) >= 0) {
                *value = s;
                rc = 0;
            } else {
                free(s);
            }
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int fm_h5_attr_read_i64(fm_h5 f, const char *obj, const char *name, int64_t *value)
{
    return read_attr_vec(f, obj, name, H5T_NATIVE_INT64, 0, value, 1, 1) < 0 ? -1 : 0;
}

/* H5Dopen on a path whose groups may be missing: check each link along the way first. */
static hid_t open_ds(fm_h5 f, const char *name)
{
    char buf[512];
    if (strlen(name) >= sizeof buf) return -1;
    strcpy(buf, name);
    for (char *p = buf + 1; ; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return -1;
            *p = c;
            if (c == '\0') break;
        }
    }
    if (H5Oexists_by_name(f, name, H5P_DEFAULT) <= 0) return -1;
    H5O_info_t info;
    if (H5Oget_info_by_name(f, name, &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET) return -1;
    return H5Dopen2(f, name, H5P_DEFAULT);
}

int fm_h5_shape(fm_h5 f, const char *name, int *rank, uint64_t dims[8])
{
    hid_t ds = open_ds(f, name);
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t d[8];
    int rc = -1;
    if (r >= 0 && r <= 8 && H5Sget_simple_extent_dims(sp, d, NULL) >= 0) {
        *rank = r;
        for (int i = 0; i < r; i++) dims[i] = d[i];
        rc = 0;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

static int g_checksum_failed = 0;

static herr_t find_checksum(unsigned n, const H5E_error2_t *e, void *found)
{
    (void)n;
    if (e->desc && strstr(e->desc, "checksum")) *(int *)found = 1;
    return 0;
}

/* After a failed HDF5 call: 1 when its error stack names a checksum (Fletcher32 on data, or the
 * metadata's), else 0. */
static int stack_has_checksum(void)
{
    int found = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_checksum, &found);
    return found;
}

int fm_h5_checksum_failed(void) { return g_checksum_failed; }

static int read_ds(fm_h5 f, const char *name, hid_t memtype, H5T_class_t want, void *out, uint64_t n)
{
    g_checksum_failed = 0;
    int rank;
    uint64_t dims[8];
    if (fm_h5_shape(f, name, &rank, dims) < 0 || count_of(rank, dims) != n) return -1;
    hid_t ds = open_ds(f, name);
    hid_t ft = H5Dget_type(ds);
    int rc = (H5Tget_class(ft) == want && (n == 0 || H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0))
                 ? 0 : -1;
    if (rc) g_checksum_failed = stack_has_checksum();
    H5Tclose(ft);
    H5Dclose(ds);
    return rc;
}

int fm_h5_read_f32(fm_h5 f, const char *name, float *out, uint64_t n)
{
    return read_ds(f, name, H5T_NATIVE_FLOAT, H5T_FLOAT, out, n);
}

int fm_h5_read_f64(fm_h5 f, const char *name, double *out, uint64_t n)
{
    return read_ds(f, name, H5T_NATIVE_DOUBLE, H5T_FLOAT, out, n);
}

int fm_h5_read_i64(fm_h5 f, const char *name, int64_t *out, uint64_t n)
{
    return read_ds(f, name, H5T_NATIVE_INT64, H5T_INTEGER, out, n);
}

int fm_h5_read_i32(fm_h5 f, const char *name, int32_t *out, uint64_t n)
{
    return read_ds(f, name, H5T_NATIVE_INT32, H5T_INTEGER, out, n);
}

int fm_h5_read_u8(fm_h5 f, const char *name, uint8_t *out, uint64_t n)
{
    return read_ds(f, name, H5T_NATIVE_UINT8, H5T_INTEGER, out, n);
}

int fm_h5_type(fm_h5 f, const char *name, char *kind, size_t *size)
{
    hid_t ds = open_ds(f, name);
    if (ds < 0) return -1;
    hid_t ft = H5Dget_type(ds);
    const H5T_class_t c = H5Tget_class(ft);
    *size = H5Tget_size(ft);
    *kind = c == H5T_FLOAT ? 'f' : c == H5T_INTEGER ? (H5Tget_sign(ft) == H5T_SGN_NONE ? 'u' : 'i') : '?';
    H5Tclose(ft);
    H5Dclose(ds);
    return 0;
}

int fm_h5_attr_read_f64v(fm_h5 f, const char *obj, const char *name, double *value, int n)
{
    return read_attr_vec(f, obj, name, H5T_NATIVE_DOUBLE, 1, value, n, n) < 0 ? -1 : 0;
}

static herr_t list_one(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    FILE *out = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) return 0;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    hsize_t d[8];
    int r = H5Sget_simple_extent_ndims(sp);
    if (r > 8) r = 8;
    H5Sget_simple_extent_dims(sp, d, NULL);
    char kind[16];
    const H5T_class_t c = H5Tget_class(ft);
    if (c == H5T_FLOAT || c == H5T_INTEGER)
        snprintf(kind, sizeof kind, "%s%zu", c == H5T_FLOAT ? "float" : H5Tget_sign(ft) == H5T_SGN_NONE ? "uint" : "int",
                 8 * H5Tget_size(ft));
    else
        snprintf(kind, sizeof kind, "other");
    fprintf(out, "  /%-28s %-8s [", name, kind);
    for (int i = 0; i < r; i++) fprintf(out, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    fprintf(out, "]\n");
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(ds);
    return 0;
}

typedef struct {
    int datasets, checked, failed;
    const char *group; /* the visited group: names are relative to it */
    char first_bad[256];
} verify_state;

/* One dataset read whole (in its own type); whether it has a Fletcher32 checksum and passes. */
static herr_t verify_one(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    verify_state *v = data;
    H5O_info_t oi;
    const int listed = H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) >= 0;
    if (listed && oi.type != H5O_TYPE_DATASET) return 0;
    hid_t ds = listed ? H5Dopen2(g, name, H5P_DEFAULT) : -1;
    if (ds < 0) { /* an object whose header does not read back */
        v->datasets++;
        if (v->failed++ == 0) snprintf(v->first_bad, sizeof v->first_bad, "%s/%s", v->group, name);
        return 0;
    }
    hid_t dcpl = H5Dget_create_plist(ds), ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    int has = 0;
    for (int i = 0, nf = H5Pget_nfilters(dcpl); i < nf; i++) {
        unsigned flags, conf;
        size_t nel = 0;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nel, NULL, 0, NULL, &conf) == H5Z_FILTER_FLETCHER32) has = 1;
    }
    const hssize_t n = H5Sget_simple_extent_npoints(sp);
    const size_t size = mt >= 0 ? H5Tget_size(mt) : 0;
    void *buf = n > 0 && size > 0 ? malloc((size_t)n * size) : NULL;
    const int ok = n <= 0 || (buf && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    v->datasets++;
    v->checked += has;
    if (!ok && v->failed++ == 0) snprintf(v->first_bad, sizeof v->first_bad, "%s/%s", v->group, name);
    if (mt >= 0) H5Tclose(mt);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Pclose(dcpl);
    H5Dclose(ds);
    return 0;
}

int fm_h5_verify(fm_h5 f, const char *group, int *datasets, int *checked, char *first_bad, size_t cap)
{
    verify_state v = {0, 0, 0, strcmp(group, "/") == 0 ? "" : group, ""};
    int rc = 0;
    if (strcmp(group, "/") == 0 || H5Lexists(f, group, H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
        rc = g < 0 || H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, verify_one, &v) < 0 ? -1 : v.failed;
        if (g >= 0) H5Gclose(g);
    }
    *datasets = v.datasets;
    *checked = v.checked;
    snprintf(first_bad, cap, "%s", v.first_bad);
    return rc;
}

int fm_h5_list(fm_h5 f, FILE *out)
{
    return H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, list_one, out) < 0 ? -1 : 0;
}

/* netCDF's mark of a dimension that has no coordinate values (netCDF-C and h5netcdf read it). */
#define NETCDF_DIM_ONLY "This is a netCDF dimension but not a netCDF variable."

int fm_h5_dim(fm_h5 f, const char *name, uint64_t n)
{
    const uint64_t d[1] = {n};
    hid_t space = make_space(1, d);
    hid_t ds = space < 0 ? -1 : create_ds(f, name, H5T_IEEE_F32LE, space);
    int rc = ds >= 0 && H5DSset_scale(ds, NETCDF_DIM_ONLY) >= 0 ? 0 : -1;
    if (ds >= 0 && H5Dclose(ds) < 0) rc = -1;
    if (space >= 0) H5Sclose(space);
    return rc;
}

int fm_h5_scale(fm_h5 f, const char *name)
{
    hid_t ds = open_ds(f, name);
    if (ds < 0) return -1;
    const char *base = strrchr(name, '/');
    int rc = H5DSset_scale(ds, base ? base + 1 : name) < 0 ? -1 : 0;
    return H5Dclose(ds) < 0 ? -1 : rc;
}

int fm_h5_attach(fm_h5 f, const char *name, const char *const *dims, int n)
{
    hid_t ds = open_ds(f, name);
    if (ds < 0) return -1;
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        hid_t scale = open_ds(f, dims[k]);
        rc = scale >= 0 && H5DSattach_scale(ds, scale, (unsigned)k) >= 0 ? 0 : -1;
        if (scale >= 0) H5Dclose(scale);
    }
    return H5Dclose(ds) < 0 ? -1 : rc;
}

int fm_h5_stamp(fm_h5 f, const char *format)
{
    return fm_h5_attr_str(f, "/", "fm_format", format) || fm_h5_attr_i64(f, "/", "fm_version", FM_FORMAT_VERSION) ||
           fm_h5_attr_str(f, "/", "fm_git", fm_version_git()) ||
           fm_h5_attr_str(f, "/", "fm_release", fm_version_release()) ? -1 : 0;
}

/* Opens path and checks it is an fm file of a format this build reads; returns the handle. */
fm_h5 fm_h5_open_fm(const char *path, const char *want, char *err, int cap)
{
    if (fm_file_check_regular(path, want ? want : "file", err, cap)) return -1;
    fm_h5 f = open_file(path);
    if (f < 0) {
        fm_errorf(err, cap, "%s is not an HDF5 file (or is truncated): expected an fm %s", path, want ? want : "file");
        return -1;
    }
    char *format = NULL;
    int64_t version = 0;
    if (fm_h5_attr_read_str(f, "/", "fm_format", &format) || fm_h5_attr_read_i64(f, "/", "fm_version", &version)) {
        fm_errorf(err, cap, "%s is an HDF5 file but not fm's (no fm_format/fm_version attributes): expected an fm %s",
                  path, want);
    } else if (want && strcmp(format, want) != 0) {
        fm_errorf(err, cap, "%s is an fm %s file: expected an fm %s", path, format, want);
    } else if (version > FM_FORMAT_VERSION || version < 1) {
        fm_errorf(err, cap, "%s has fm format version %lld; this fmtrain reads versions 1 to %d: use a newer fmtrain",
                  path, (long long)version, FM_FORMAT_VERSION);
    } else {
        free(format);
        return f;
    }
    free(format);
    fm_h5_discard(f);
    return -1;
}

int fm_h5_write_row_shape(fm_h5 f, const fm_row_shape *r)
{
    if (r->rank <= 0) return 0;
    int64_t shape[FM_DATASET_RANK];
    for (int k = 0; k < r->rank; k++) shape[k] = (int64_t)r->shape[k];
    const double range[2] = {r->lo, r->hi};
    return fm_h5_attr_i64v(f, "/", "data_shape", shape, r->rank) || fm_h5_attr_f64v(f, "/", "value_range", range, 2)
               ? -1 : 0;
}

void fm_h5_read_row_shape(fm_h5 f, fm_row_shape *r)
{
    int64_t shape[FM_DATASET_RANK];
    double range[2];
    const int n = fm_h5_attr_read_i64v(f, "/", "data_shape", shape, FM_DATASET_RANK);
    memset(r, 0, sizeof *r);
    if (n < 1 || fm_h5_attr_read_f64v(f, "/", "value_range", range, 2)) return;
    r->rank = n;
    for (int k = 0; k < n; k++) r->shape[k] = (uint64_t)shape[k];
    r->lo = range[0];
    r->hi = range[1];
}
