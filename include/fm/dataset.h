/* A dataset in memory (DESIGN.md section 5), as the file holds it: rows of uint8, float32 or
 * float64, labels, and the value range mapped to [-1, 1]. The memory is someone else's (a node's
 * shared copy, src/data_load.c); this is the view the numerics draw rows from. */
#ifndef FM_DATASET_H
#define FM_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "fm/config.h"

#define FM_DATASET_RANK 4

typedef enum { FM_DTYPE_U8 = 0, FM_DTYPE_F32 = 1, FM_DTYPE_F64 = 2, FM_DTYPE_COUNT } fm_dtype;

/* "uint8" "float32" "float64": the list of fm/names.h. */
const char *fm_dtype_name(int i);
size_t fm_dtype_size(fm_dtype t);

/* The shape of one row ([D] or [C, H, W]) and the value range that [-1, 1] stands for: what tools
 * need to turn samples back into images. rank 0: not known (a mixture's vectors). */
typedef struct {
    int rank;
    uint64_t shape[FM_DATASET_RANK];
    double lo, hi;
} fm_row_shape;

typedef struct {
    const void *x;      /* [n, dim] rows, elements of `type` */
    const int32_t *y;   /* [n] labels 0..classes-1, or NULL */
    fm_dtype type;
    uint64_t n;         /* rows */
    int dim;            /* numbers per row: the product of shape */
    int rank;           /* of one row: 1 ([D]) or 3 ([C, H, W]) */
    uint64_t shape[FM_DATASET_RANK];
    double lo, hi;      /* value_range: lo -> -1, hi -> +1 */
    int classes;        /* 1 + the largest label; 0 without labels */
    uint64_t fingerprint; /* fm_dataset_hash of the rows, then of the labels */
} fm_dataset;

/* Rows rows[0..n) converted to [-1, 1] floats: out[i] is row rows[i]. */
void fm_dataset_rows(float *out /* [n, dim] */, const fm_dataset *d, const uint64_t *rows /* [n] */, int n);

/* data.dim and data.shape of a run on d: its rows' size and shape. */
void fm_dataset_configure(fm_config *c, const fm_dataset *d);

/* A 64-bit fingerprint of bytes (not cryptographic: it tells datasets apart). */
uint64_t fm_dataset_hash(const void *bytes, size_t len, uint64_t h);

#endif
