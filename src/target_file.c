#include "fm/target_file.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "fm/epoch.h"
#include "fm/error.h"

typedef struct {
    uint64_t batch; /* B: global sample g = (step - 1) B + index */
} file_target;

static int file_build(fm_target *t, const fm_config *c, char *err, int cap)
{
    const fm_dataset *d = t->data;
    if (c->dim != d->dim) {
        fm_errorf(err, cap, "[data] dim = %ld but %s holds rows of %d numbers (fmtrain sets data.dim from the file)",
                  c->dim, c->data_file, d->dim);
        return -1;
    }
    file_target *f = fm_calloc(sizeof *f);
    f->batch = (uint64_t)c->batch;
    t->impl = f;
    t->dim = d->dim;
    t->classes = d->classes;
    t->fingerprint = d->fingerprint;
    t->rows.rank = d->rank;
    for (int k = 0; k < d->rank; k++) t->rows.shape[k] = d->shape[k];
    t->rows.lo = d->lo;
    t->rows.hi = d->hi;
    int len = snprintf(t->about, sizeof t->about, "file %s: %" PRIu64 " rows of [", c->data_file, d->n);
    for (int k = 0; k < d->rank && len < (int)sizeof t->about; k++)
        len += snprintf(t->about + len, sizeof t->about - (size_t)len, "%s%" PRIu64, k ? ", " : "", d->shape[k]);
    if (len < (int)sizeof t->about)
        snprintf(t->about + len, sizeof t->about - (size_t)len, "] %s in [%g, %g], %d classes, fingerprint %016" PRIx64,
                 fm_dtype_name(d->type), d->lo, d->hi, d->classes, d->fingerprint);
    return 0;
}

static void file_draw(float *z, int *y, const fm_target *t, uint64_t seed, uint32_t step, uint32_t index0, int n)
{
    const file_target *f = t->impl;
    const fm_dataset *d = t->data;
    uint64_t rows[64];
    fm_epoch e = {.n = 0}; /* the keys of the epoch at hand, made again when a batch crosses into the next */
    for (int i0 = 0; i0 < n; i0 += 64) {
        const int m = n - i0 < 64 ? n - i0 : 64;
        for (int i = 0; i < m; i++) {
            const uint64_t g = (uint64_t)(step - 1) * f->batch + index0 + (uint64_t)(i0 + i);
            if (e.n == 0 || e.epoch != g / d->n) fm_epoch_init(&e, d->n, seed, g / d->n);
            rows[i] = fm_epoch_apply(&e, g % d->n);
        }
        fm_dataset_rows(z + (size_t)i0 * d->dim, d, rows, m);
        if (y && d->y)
            for (int i = 0; i < m; i++) y[i0 + i] = d->y[rows[i]];
    }
}

static uint64_t file_bytes(const fm_config *c)
{
    (void)c;
    return 0; /* the rows live in the node's shared copy, checked by the loader */
}

const fm_target_ops fm_target_file_ops = {"file", 1, file_build, free, file_draw, file_bytes};
