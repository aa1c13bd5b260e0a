/* The draws' arithmetic (Philox4x32-10 and the transforms to uniforms and normals), shared by
 * the per-index functions of src/rng.c and the vectorised rows of src/rng_rows.c, which is
 * compiled once per instruction set. Both are compiled without FMA contraction, so every build
 * draws the same bits. Private to those two files. */
#ifndef FM_RNG_DRAW_H
#define FM_RNG_DRAW_H

#include <stdint.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Ten rounds on one counter, in place. */
static inline void philox10(uint32_t c[4], uint32_t k0, uint32_t k1)
{
#pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
        const uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
        c[0] = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        c[1] = (uint32_t)p1;
        c[2] = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[3] = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* Block b of a draw: the counter is (b, index, step, stream), the key the 64-bit seed. */
static inline void draw_block(uint32_t out[4], uint64_t seed, uint32_t step, uint32_t index, uint32_t stream,
                              uint32_t block)
{
    out[0] = block; out[1] = index; out[2] = step; out[3] = stream;
    philox10(out, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* The transforms below use only +, -, *, sqrt and bit operations, and rng.c is compiled without
 * FMA contraction: a draw is the same bits in the scalar and every vector build, so every node of
 * a cluster draws the same batch. */

static inline float uniform24(uint32_t r) { return (float)(r >> 8) * 0x1p-24f; }

/* log x for x in (0, 1]: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = f - f^2/2 + f^3 P(f)
 * with f = m - 1 (the Cephes polynomial), e ln2 in two parts. Relative error about 1e-7. */
static inline float log_unit(float x)
{
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)((bits >> 23) - 127);
    bits = (bits & 0x007fffff) | 0x3f800000;
    float m;
    memcpy(&m, &bits, sizeof m);
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e = big ? e + 1.0f : e;
    const float f = m - 1.0f, z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    const float y = p * f * z - 2.12194440e-4f * e - 0.5f * z;
    return (f + y) + 0.693359375f * e;
}

/* cos and sin of 2 pi u for u in [0, 1): the nearest quarter turn q/4 is taken off exactly
 * (u has 24 bits), the rest |phi| <= pi/4 by Taylor polynomials (error < 1e-8), then rotated. */
static inline void cossin_2pi(float *c, float *s, float u)
{
    const float q = (4.0f * u + 12582912.0f) - 12582912.0f; /* round to nearest, no libm */
    const float phi = 6.28318530717958648f * (u - 0.25f * q), p2 = phi * phi;
    const float sp = phi + phi * p2 * (-1.0f / 6 + p2 * (1.0f / 120 + p2 * (-1.0f / 5040 + p2 * (1.0f / 362880))));
    const float cp = 1.0f + p2 * (-0.5f + p2 * (1.0f / 24 + p2 * (-1.0f / 720 + p2 * (1.0f / 40320 + p2 * (-1.0f / 3628800)))));
    const int quarter = (int)q & 3; /* theta = phi + quarter pi/2 */
    const float cc = quarter & 1 ? sp : cp, ss = quarter & 1 ? cp : sp;
    *c = quarter == 1 || quarter == 2 ? -cc : cc;
    *s = quarter >= 2 ? -ss : ss;
}

/* Box-Muller: two normals from two words. u1 in (0, 1] from all 32 bits, so the radius is finite
 * (at most 6.8). */
static inline void box_muller(float *z0, float *z1, uint32_t a, uint32_t b)
{
    const float u1 = (float)a * 0x1p-32f + 0x1p-33f;
    float l = -2.0f * log_unit(u1);
    l = l > 0.0f ? l : 0.0f;
    const float rad = __builtin_sqrtf(l);
    float c, s;
    cossin_2pi(&c, &s, uniform24(b));
    *z0 = rad * c;
    *z1 = rad * s;
}

#endif
