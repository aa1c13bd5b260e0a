/* A thin layer over HDF5: the only file that includes hdf5.h. Checkpoints, samples and `info`
 * build their schemas on these calls. Every call returns 0 (or a handle >= 0) on success and -1
 * on failure; HDF5's own error stack printing is silenced, the callers name what failed. */
#ifndef FM_H5IO_H
#define FM_H5IO_H

#include <stdint.h>
#include <stdio.h>

#include "fm/dataset.h"

typedef int64_t fm_h5; /* hid_t */

/* Creates (truncates) a file (tests and tools; fmtrain's own files are built in memory). */
fm_h5 fm_h5_create(const char *path);
/* A file built in memory only; fm_h5_save writes it out. */
fm_h5 fm_h5_create_memory(void);
/* Closes an in-memory file and writes its image to path with plain POSIX calls, then fsync:
 * a full disk is an ordinary write error (errno set), never a half-closed HDF5 file. */
int fm_h5_save(fm_h5 f, const char *path);
/* The file's size in bytes (what a size read from the file may be checked against). */
uint64_t fm_h5_file_size(fm_h5 f);
/* Flushes to the OS and closes. */
int fm_h5_close(fm_h5 f);
/* Closes a file only read from, or abandoned after an error: nothing written to it is kept, so
 * its close has nothing to report. */
void fm_h5_discard(fm_h5 f);

/* Datasets of shape dims[0..rank) (rank 0: a scalar); intermediate groups are created. */
int fm_h5_write_f32(fm_h5 f, const char *name, const float *data, int rank, const uint64_t *dims);
int fm_h5_write_f64(fm_h5 f, const char *name, const double *data, int rank, const uint64_t *dims);
int fm_h5_write_i64(fm_h5 f, const char *name, const int64_t *data, int rank, const uint64_t *dims);
int fm_h5_write_i32(fm_h5 f, const char *name, const int32_t *data, int rank, const uint64_t *dims);

/* Named dimensions (HDF5 dimension scales, as netCDF-4 stores them: xarray, h5netcdf and netCDF
 * tools see the names instead of phony_dim_N). fm_h5_dim: a dimension of length n with no
 * values (a dataset `name` that holds none); fm_h5_scale: the existing 1-D dataset `name` becomes
 * the coordinate of a dimension named after it; fm_h5_attach: dimension k of dataset `name` is
 * dims[k], for k < n. */
int fm_h5_dim(fm_h5 f, const char *name, uint64_t n);
int fm_h5_scale(fm_h5 f, const char *name);
int fm_h5_attach(fm_h5 f, const char *name, const char *const *dims, int n);

/* Attributes on the object at path obj ("/" for the root). Strings are UTF-8, variable length. */
int fm_h5_attr_str(fm_h5 f, const char *obj, const char *name, const char *value);
int fm_h5_attr_i64(fm_h5 f, const char *obj, const char *name, int64_t value);
int fm_h5_attr_f64(fm_h5 f, const char *obj, const char *name, double value);
/* Attributes of n numbers. */
int fm_h5_attr_i64v(fm_h5 f, const char *obj, const char *name, const int64_t *value, int n);
int fm_h5_attr_f64v(fm_h5 f, const char *obj, const char *name, const double *value, int n);
/* Reads an integer attribute of 1 to cap numbers: their count, or -1. */
int fm_h5_attr_read_i64v(fm_h5 f, const char *obj, const char *name, int64_t *value, int cap);
/* The root attributes of every fm file: fm_format (format), fm_version (FM_FORMAT_VERSION),
 * fm_git (the build's git describe) and fm_release. */
int fm_h5_stamp(fm_h5 f, const char *format);
/* The root attributes data_shape and value_range of a dataset's rows (nothing when rank is 0);
 * reading leaves rank 0 when they are absent or malformed. */
int fm_h5_write_row_shape(fm_h5 f, const fm_row_shape *r);
void fm_h5_read_row_shape(fm_h5 f, fm_row_shape *r);
/* Opens an fm file read-only after checking fm_format (== want unless want is NULL) and a
 * version this build reads; -1 with one line in err naming what is wrong. */
fm_h5 fm_h5_open_fm(const char *path, const char *want, char *err, int cap);
/* Reads; -1 when missing or of another kind. The string is malloc'd. */
int fm_h5_attr_read_str(fm_h5 f, const char *obj, const char *name, char **value);
int fm_h5_attr_read_i64(fm_h5 f, const char *obj, const char *name, int64_t *value);

/* Shape of a dataset: rank and dims (up to 8); -1 when there is no such dataset. */
int fm_h5_shape(fm_h5 f, const char *name, int *rank, uint64_t dims[8]);
/* Reads a whole dataset of exactly n elements, converting to the type asked for. */
int fm_h5_read_f32(fm_h5 f, const char *name, float *out, uint64_t n);
int fm_h5_read_f64(fm_h5 f, const char *name, double *out, uint64_t n);
int fm_h5_read_i64(fm_h5 f, const char *name, int64_t *out, uint64_t n);
int fm_h5_read_i32(fm_h5 f, const char *name, int32_t *out, uint64_t n);
int fm_h5_read_u8(fm_h5 f, const char *name, uint8_t *out, uint64_t n);
/* A dataset's element kind ('f' float, 'i' signed or 'u' unsigned integer, '?' other) and size. */
int fm_h5_type(fm_h5 f, const char *name, char *kind, size_t *size);
/* An attribute of exactly n numbers, read as doubles. */
int fm_h5_attr_read_f64v(fm_h5 f, const char *obj, const char *name, double *value, int n);

/* Lists every dataset with its shape and type, one per line. */
int fm_h5_list(fm_h5 f, FILE *out);
/* Reads every dataset under group ("/": the whole file; a missing group holds none) whole: how
 * many failed (a checksum mismatch or another read error), the first one's path in first_bad;
 * datasets counted, and of those how many carry a Fletcher32 checksum (files of fmtrain before
 * checksums have none). -1 when the group cannot be walked. */
int fm_h5_verify(fm_h5 f, const char *group, int *datasets, int *checked, char *first_bad, size_t cap);
/* 1 when the last failed fm_h5_read_* failed on a checksum (the data is not what was written). */
int fm_h5_checksum_failed(void);

#endif
