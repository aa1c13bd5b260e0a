/* Dataset files (DESIGN.md section 5), read with checks: /x [N, D] or [N, C, H, W] of uint8,
 * float32 or float64 with the attribute value_range [lo, hi] (default [0, 255] for uint8, [-1, 1]
 * for floats), optional /y [N] integer labels 0..K-1 (attribute classes: their names), root
 * attributes fm_format = "dataset" and fm_version. analysis/fm_data.py writes them. */
#ifndef FM_DATASET_IO_H
#define FM_DATASET_IO_H

#include <stddef.h>

#include "fm/dataset.h"

typedef struct {
    fm_dataset view;        /* everything but x and y */
    fm_dataset test;        /* the held-out split /x_test, /y_test (n = 0: none), likewise */
    size_t x_bytes, y_bytes; /* what reading takes in memory: the rows as stored, int32 labels */
    size_t xt_bytes, yt_bytes;
} fm_dataset_file;

/* Opens path and checks the schema, the shapes, the element type and the value range, and that
 * the node's memory can hold it: 0, or -1 with one line in err naming the file, what is wrong and
 * what is allowed. */
int fm_dataset_file_probe(fm_dataset_file *df, const char *path, char *err, int cap);

/* Reads the rows into x [x_bytes] and the labels into y [n] (when the file has them), and the
 * held-out split into xt, yt likewise, then checks them (finite values, naming the first bad row;
 * labels >= 0) and fills classes and fingerprint. 0, or -1 with err. */
int fm_dataset_file_read(void *x, int32_t *y, void *xt, int32_t *yt, fm_dataset_file *df, const char *path, char *err,
                         int cap);

#endif
