#include "fm/rng.h"

#include <string.h>

#include "fm/kern_ops.h"
#include "fm/rng_draw.h"

void fm_rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    memcpy(out, ctr, 4 * sizeof(uint32_t));
    philox10(out, key[0], key[1]);
}

void fm_rng_uniform(float *out, uint64_t seed, uint32_t step, uint32_t index, uint32_t stream, int n)
{
    uint32_t r[4];
    for (int j = 0; j < n; j++) {
        if (j % 4 == 0) draw_block(r, seed, step, index, stream, (uint32_t)(j / 4));
        out[j] = uniform24(r[j % 4]);
    }
}

void fm_rng_normal(float *out, uint64_t seed, uint32_t step, uint32_t index, uint32_t stream, int n)
{
    uint32_t r[4];
    float z[4];
    for (int j = 0; j < n; j++) {
        if (j % 4 == 0) {
            draw_block(r, seed, step, index, stream, (uint32_t)(j / 4));
            box_muller(&z[0], &z[1], r[0], r[1]);
            box_muller(&z[2], &z[3], r[2], r[3]);
        }
        out[j] = z[j % 4];
    }
}

void fm_rng_uniform_rows(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n)
{
    fm_isa_rng()->uniform_rows(out, seed, step, index0, stream, n);
}

void fm_rng_normal_rows(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n, int D)
{
    if (D > 4) { /* more than one block a row: row by row */
        for (int i = 0; i < n; i++) fm_rng_normal(out + (size_t)i * D, seed, step, index0 + (uint32_t)i, stream, D);
        return;
    }
    fm_isa_rng()->normal_rows(out, seed, step, index0, stream, n, D);
}
