#include "fm/dataset_io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fm/error.h"
#include "fm/file.h"
#include "fm/h5io.h"

#define MAX_DIM (1 << 24) /* numbers per row: a 2048 x 2048 RGBA image */

static int probe_x(fm_dataset *v, size_t *bytes, fm_h5 f, const char *name, const char *path, char *err, int cap)
{
    int rank;
    uint64_t d[8];
    char kind;
    size_t size;
    if (fm_h5_shape(f, name, &rank, d) || fm_h5_type(f, name, &kind, &size)) {
        fm_errorf(err, cap, "%s: no dataset /x: a dataset file holds its rows in /x [N, D] or [N, C, H, W] "
                  "(analysis/fm_data.py writes them)", path);
        return -1;
    }
    if (rank != 2 && rank != 4) {
        fm_errorf(err, cap, "%s: %s has %d dimensions: allowed: [N, D] (vectors) or [N, C, H, W] (images)", path, name,
                  rank);
        return -1;
    }
    v->n = d[0];
    v->rank = rank - 1;
    uint64_t dim = 1;
    for (int k = 1; k < rank; k++) dim *= (v->shape[k - 1] = d[k]);
    if (v->n < 1 || dim < 1 || dim > MAX_DIM) {
        fm_errorf(err, cap, "%s: %s holds %llu rows of %llu numbers: allowed: at least 1 row of 1 to %d numbers",
                  path, name, (unsigned long long)v->n, (unsigned long long)dim, MAX_DIM);
        return -1;
    }
    v->dim = (int)dim;
    if (kind == 'u' && size == 1) v->type = FM_DTYPE_U8;
    else if (kind == 'f' && size == 4) v->type = FM_DTYPE_F32;
    else if (kind == 'f' && size == 8) v->type = FM_DTYPE_F64;
    else {
        fm_errorf(err, cap, "%s: %s holds %s%zu elements: allowed: uint8, float32, float64", path, name,
                  kind == 'f' ? "float" : kind == 'u' ? "uint" : kind == 'i' ? "int" : "non-numeric ", 8 * size);
        return -1;
    }
    double range[2];
    if (fm_h5_attr_read_f64v(f, name, "value_range", range, 2) == 0) {
        v->lo = range[0];
        v->hi = range[1];
    } else {
        v->lo = v->type == FM_DTYPE_U8 ? 0.0 : -1.0;
        v->hi = v->type == FM_DTYPE_U8 ? 255.0 : 1.0;
    }
    if (!isfinite(v->lo) || !isfinite(v->hi) || !(v->lo < v->hi)) {
        fm_errorf(err, cap, "%s: %s attribute value_range = [%g, %g]: allowed: two finite numbers lo < hi", path,
                  name, v->lo, v->hi);
        return -1;
    }
    *bytes = (size_t)v->n * (size_t)dim * fm_dtype_size(v->type);
    return 0;
}

static int probe_y(const fm_dataset *v, size_t *bytes, fm_h5 f, const char *name, const char *path, char *err,
                   int cap)
{
    int rank;
    uint64_t d[8];
    char kind;
    size_t size;
    if (fm_h5_shape(f, name, &rank, d)) return 0; /* no labels */
    if (fm_h5_type(f, name, &kind, &size) || rank != 1 || d[0] != v->n || (kind != 'i' && kind != 'u')) {
        fm_errorf(err, cap, "%s: %s must be %llu integer labels (one per row)", path, name, (unsigned long long)v->n);
        return -1;
    }
    *bytes = sizeof(int32_t) * (size_t)v->n;
    return 0;
}

/* The held-out split, when there is one: rows like /x's. */
static int probe_test(fm_dataset_file *df, fm_h5 f, const char *path, char *err, int cap)
{
    int rank;
    uint64_t d[8];
    if (fm_h5_shape(f, "/x_test", &rank, d)) return 0;
    if (probe_x(&df->test, &df->xt_bytes, f, "/x_test", path, err, cap) ||
        probe_y(&df->test, &df->yt_bytes, f, "/y_test", path, err, cap))
        return -1;
    if (df->test.dim != df->view.dim || df->test.type != df->view.type || (df->yt_bytes > 0) != (df->y_bytes > 0)) {
        fm_errorf(err, cap, "%s: /x_test (and /y_test) must hold rows like /x (and /y): %d %s numbers against %d %s",
                  path, df->test.dim, fm_dtype_name(df->test.type), df->view.dim, fm_dtype_name(df->view.type));
        return -1;
    }
    return 0;
}

int fm_dataset_file_probe(fm_dataset_file *df, const char *path, char *err, int cap)
{
    memset(df, 0, sizeof *df);
    fm_h5 f = fm_h5_open_fm(path, "dataset", err, cap);
    if (f < 0) return -1;
    int rc = probe_x(&df->view, &df->x_bytes, f, "/x", path, err, cap) ||
             probe_y(&df->view, &df->y_bytes, f, "/y", path, err, cap) || probe_test(df, f, path, err, cap) ? -1 : 0;
    fm_h5_discard(f);
    const double need = (double)(df->x_bytes + df->y_bytes + df->xt_bytes + df->yt_bytes), have = fm_file_node_memory();
    if (rc == 0 && have > 0 && need > 0.8 * have) {
        fm_errorf(err, cap, "%s: the dataset needs %.1f MB in memory (once per node); this node has %.1f MB: "
                  "allowed: at most 80%% of it", path, need / 1e6, have / 1e6);
        rc = -1;
    }
    return rc;
}

/* The first row holding a NaN or an infinity, or -1. */
static long long first_nonfinite(const void *x, const fm_dataset *v)
{
    const size_t n = (size_t)v->n * (size_t)v->dim;
    for (size_t k = 0; k < n; k++) {
        const double e = v->type == FM_DTYPE_F32 ? ((const float *)x)[k] : ((const double *)x)[k];
        if (!isfinite(e)) return (long long)(k / (size_t)v->dim);
    }
    return -1;
}

/* One split: its rows into x, its labels into y (when it has them), checked; classes set. */
static int read_split(void *x, int32_t *y, fm_dataset *v, int labels, fm_h5 f, const char *xname, const char *yname,
                      const char *path, char *err, int cap)
{
    const uint64_t count = v->n * (uint64_t)v->dim;
    int rc = v->type == FM_DTYPE_U8 ? fm_h5_read_u8(f, xname, x, count)
           : v->type == FM_DTYPE_F32 ? fm_h5_read_f32(f, xname, x, count) : fm_h5_read_f64(f, xname, x, count);
    if (rc == 0 && labels) rc = fm_h5_read_i32(f, yname, y, v->n);
    if (rc) {
        fm_errorf(err, cap, "%s: reading %s or %s failed (HDF5 error): the file is truncated or corrupt", path, xname,
                  yname);
        return -1;
    }
    const long long bad = v->type == FM_DTYPE_U8 ? -1 : first_nonfinite(x, v);
    if (bad >= 0) {
        fm_errorf(err, cap, "%s: row %lld of %s holds a NaN or an infinity: allowed: finite numbers", path, bad, xname);
        return -1;
    }
    v->classes = 0;
    for (uint64_t i = 0; labels && i < v->n; i++) {
        if (y[i] < 0) {
            fm_errorf(err, cap, "%s: label %d of row %llu in %s: allowed: 0 .. K-1", path, (int)y[i],
                      (unsigned long long)i, yname);
            return -1;
        }
        if (y[i] + 1 > v->classes) v->classes = y[i] + 1;
    }
    return 0;
}

int fm_dataset_file_read(void *x, int32_t *y, void *xt, int32_t *yt, fm_dataset_file *df, const char *path, char *err,
                         int cap)
{
    fm_h5 f = fm_h5_open_fm(path, "dataset", err, cap);
    if (f < 0) return -1;
    int rc = read_split(x, y, &df->view, df->y_bytes > 0, f, "/x", "/y", path, err, cap);
    if (rc == 0 && df->xt_bytes) rc = read_split(xt, yt, &df->test, df->yt_bytes > 0, f, "/x_test", "/y_test", path, err, cap);
    fm_h5_discard(f);
    if (rc) return -1;
    fm_dataset *v = &df->view;
    v->fingerprint = fm_dataset_hash(x, df->x_bytes, 0);
    if (df->y_bytes) v->fingerprint = fm_dataset_hash(y, df->y_bytes, v->fingerprint);
    df->test.fingerprint = v->fingerprint;
    if (df->test.classes > v->classes) v->classes = df->test.classes;
    df->test.classes = v->classes;
    return 0;
}
