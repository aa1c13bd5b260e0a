#include <stdint.h>
#include <string.h>

#include "check.h"
#include "fm/rng.h"

static void check_all(void)
{
    /* Known-answer vectors of Random123's kat_vectors for philox4x32 with 10 rounds. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        fm_rng_philox(out, kat[v], kat[v] + 4);
        for (int j = 0; j < 4; j++)
            CHECK(out[j] == kat[v][6 + j], "vector %d word %d: %08x, expected %08x", v, j, out[j], kat[v][6 + j]);
    }

    /* A pure function of (seed, step, index, stream): same inputs, same numbers. */
    float a[9], b[9], c[9];
    fm_rng_normal(a, 42, 7, 123, FM_STREAM_X0, 9);
    fm_rng_normal(b, 42, 7, 123, FM_STREAM_X0, 9);
    CHECK(memcmp(a, b, sizeof a) == 0, "repeat draw differs");
    /* A prefix of a longer draw is the shorter draw. */
    fm_rng_normal(c, 42, 7, 123, FM_STREAM_X0, 5);
    CHECK(memcmp(a, c, 5 * sizeof(float)) == 0, "prefix differs");
    /* Changing any coordinate changes the numbers. */
    fm_rng_normal(c, 42, 7, 123, FM_STREAM_Z, 9);
    CHECK(memcmp(a, c, sizeof a) != 0, "streams X0 and Z agree");
    fm_rng_normal(c, 42, 8, 123, FM_STREAM_X0, 9);
    CHECK(memcmp(a, c, sizeof a) != 0, "steps 7 and 8 agree");
    fm_rng_normal(c, 42, 7, 124, FM_STREAM_X0, 9);
    CHECK(memcmp(a, c, sizeof a) != 0, "indices 123 and 124 agree");
    fm_rng_normal(c, 43, 7, 123, FM_STREAM_X0, 9);
    CHECK(memcmp(a, c, sizeof a) != 0, "seeds 42 and 43 agree");
    fm_rng_normal(c, 42ull | (1ull << 40), 7, 123, FM_STREAM_X0, 9);
    CHECK(memcmp(a, c, sizeof a) != 0, "the seed's high word is ignored");

    /* Uniforms: in [0, 1), mean 1/2, variance 1/12; normals: mean 0, variance 1. */
    enum { N = 1000000 };
    double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
    float umin = 1, umax = 0;
    for (uint32_t i = 0; i < N / 4; i++) {
        float u[4], z[4];
        fm_rng_uniform(u, 5, 0, i, FM_STREAM_T, 4);
        fm_rng_normal(z, 5, 0, i, FM_STREAM_X0, 4);
        for (int j = 0; j < 4; j++) {
            su += u[j]; su2 += (double)u[j] * u[j];
            sn += z[j]; sn2 += (double)z[j] * z[j]; sn4 += (double)z[j] * z[j] * z[j] * z[j];
            if (u[j] < umin) umin = u[j];
            if (u[j] > umax) umax = u[j];
        }
    }
    double mu = su / N, vu = su2 / N - mu * mu;
    double mn = sn / N, vn = sn2 / N - mn * mn;
    CHECK(umin >= 0.0f && umax < 1.0f, "uniform range [%g, %g]", umin, umax);
    /* Five standard errors: sd(u) = 1/sqrt(12); sd(z) = 1; sd(z^2) = sqrt(2). */
    CHECK_NEAR(mu, 0.5, 5 * sqrt(1.0 / 12 / N));
    CHECK_NEAR(vu, 1.0 / 12, 5 * sqrt(1.0 / 180 / N));
    CHECK_NEAR(mn, 0.0, 5 * sqrt(1.0 / N));
    CHECK_NEAR(vn, 1.0, 5 * sqrt(2.0 / N));
    CHECK_NEAR(sn4 / N, 3.0, 5 * sqrt(96.0 / N)); /* kurtosis of a normal: E z^4 = 3, var z^4 = 96 */

    /* The float Box-Muller against the same words and the same float u1 (24 bits of precision:
     * radii below 3.5e-4 round to 0 or 3.5e-4, a probability of 6e-8) through double libm. */
    double worst = 0;
    for (uint32_t i = 0; i < 200000; i++) {
        const uint32_t ctr[4] = {0, i, 3, FM_STREAM_X0}, key[2] = {9, 0};
        uint32_t r[4];
        float z[4];
        fm_rng_philox(r, ctr, key);
        fm_rng_normal(z, 9, 3, i, FM_STREAM_X0, 4);
        for (int h = 0; h < 2; h++) {
            const double u1 = (float)r[2 * h] * 0x1p-32f + 0x1p-33f, u2 = (double)(r[2 * h + 1] >> 8) / 16777216.0;
            const double rad = sqrt(-2.0 * log(u1)), ref[2] = {rad * cos(2 * M_PI * u2), rad * sin(2 * M_PI * u2)};
            for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(z[2 * h + k] - ref[k]) / (1 + fabs(ref[k])));
        }
    }
    CHECK(worst < 5e-7, "float Box-Muller differs from double libm by %g", worst);

    /* Many rows at once: bit for bit the per-index draws, across the 64-row chunks, for every
     * width (more than 4 takes a second block). */
    enum { R = 150, DMAX = 7 };
    static float rows[R * DMAX], one[DMAX];
    int same = 1;
    fm_rng_uniform_rows(rows, 11, 5, 1000, FM_STREAM_T, R);
    for (int i = 0; i < R; i++) {
        fm_rng_uniform(one, 11, 5, 1000 + (uint32_t)i, FM_STREAM_T, 1);
        same &= memcmp(one, rows + i, sizeof(float)) == 0;
    }
    CHECK(same, "uniform rows differ from the per-index draws");
    for (int D = 1; D <= DMAX; D++) {
        same = 1;
        fm_rng_normal_rows(rows, 11, 5, 1000, FM_STREAM_Z, R, D);
        for (int i = 0; i < R; i++) {
            fm_rng_normal(one, 11, 5, 1000 + (uint32_t)i, FM_STREAM_Z, D);
            same &= memcmp(one, rows + (size_t)i * D, sizeof(float) * D) == 0;
        }
        CHECK(same, "normal rows of width %d differ from the per-index draws", D);
    }
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512). */
    check_each_isa(check_all);
    return check_report("test_rng");
}
