#include "fm/dataset.h"

#include <string.h>

#include "fm/error.h"

static const char *const names[] = {"uint8", "float32", "float64"};
_Static_assert(sizeof names / sizeof names[0] == FM_DTYPE_COUNT, "one name per element type");

const char *fm_dtype_name(int i) { return i >= 0 && i < FM_DTYPE_COUNT ? names[i] : NULL; }

size_t fm_dtype_size(fm_dtype t) { return t == FM_DTYPE_U8 ? 1 : t == FM_DTYPE_F32 ? 4 : 8; }

void fm_dataset_rows(float *out, const fm_dataset *d, const uint64_t *rows, int n)
{
    const int D = d->dim;
    /* v -> 2 (v - lo) / (hi - lo) - 1, as one multiply-add */
    const double a = 2.0 / (d->hi - d->lo), b = -1.0 - a * d->lo;
    const float af = (float)a, bf = (float)b;
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * D;
        const size_t r = (size_t)rows[i] * (size_t)D;
        switch (d->type) {
        case FM_DTYPE_U8: {
            const uint8_t *x = (const uint8_t *)d->x + r;
            for (int j = 0; j < D; j++) o[j] = af * (float)x[j] + bf;
            break;
        }
        case FM_DTYPE_F32: {
            const float *x = (const float *)d->x + r;
            for (int j = 0; j < D; j++) o[j] = af * x[j] + bf;
            break;
        }
        case FM_DTYPE_F64: {
            const double *x = (const double *)d->x + r;
            for (int j = 0; j < D; j++) o[j] = (float)(a * x[j] + b);
            break;
        }
        default:
            FM_FATAL("dataset element type %d is none of uint8, float32, float64", (int)d->type);
        }
    }
}

uint64_t fm_dataset_hash(const void *bytes, size_t len, uint64_t h)
{
    const unsigned char *p = bytes;
    h ^= 0x9E3779B97F4A7C15ull * (len + 1);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    for (; i < len; i++) h = (h ^ p[i]) * 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

void fm_dataset_configure(fm_config *c, const fm_dataset *d)
{
    c->dim = d->dim;
    c->shape.n = d->rank;
    for (int k = 0; k < d->rank; k++) c->shape.v[k] = (int)d->shape[k];
}
