#include "fm/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void fm_rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* Block b of a draw: the counter is (b, index, step, stream), the key the 64-bit seed. */
static void draw_block(uint32_t out[4], uint64_t seed, uint32_t step, uint32_t index,
                       uint32_t stream, uint32_t block)
{
    const uint32_t ctr[4] = {block, index, step, stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    fm_rng_philox(out, ctr, key);
}

void fm_rng_uniform(float *out, uint64_t seed, uint32_t step, uint32_t index, uint32_t stream,
                    int n)
{
    uint32_t r[4];
    for (int j = 0; j < n; j++) {
        if (j % 4 == 0) draw_block(r, seed, step, index, stream, (uint32_t)(j / 4));
        out[j] = (float)(r[j % 4] >> 8) * (1.0f / 16777216.0f);
    }
}

void fm_rng_normal(float *out, uint64_t seed, uint32_t step, uint32_t index, uint32_t stream,
                   int n)
{
    const double two_pi = 6.283185307179586476925;
    const double inv32 = 1.0 / 4294967296.0;
    uint32_t r[4];
    double z[4];
    for (int j = 0; j < n; j++) {
        if (j % 4 == 0) {
            draw_block(r, seed, step, index, stream, (uint32_t)(j / 4));
            for (int h = 0; h < 2 && j + 2 * h < n; h++) { /* only the pairs still needed */
                double u1 = ((double)r[2 * h] + 0.5) * inv32; /* in (0,1): log is finite */
                double u2 = (double)r[2 * h + 1] * inv32;
                double rad = sqrt(-2.0 * log(u1));
                z[2 * h] = rad * cos(two_pi * u2);
                z[2 * h + 1] = rad * sin(two_pi * u2);
            }
        }
        out[j] = (float)z[j % 4];
    }
}
