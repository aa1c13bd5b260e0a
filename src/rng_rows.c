/* The draws of many consecutive rows at once (fm_rng_uniform_rows, fm_rng_normal_rows for
 * D <= 4), vectorised over rows and compiled once per instruction set (include/fm/vec.h), without
 * FMA contraction: the same bits as the per-index functions of src/rng.c in every build. */
#include "fm/kern_ops.h"
#include "fm/rng_draw.h"
#include "fm/vec.h"

enum { ROWS = 64 };

/* Block 0 of rows index0 .. index0+n-1 (n <= ROWS), one array per word. */
static void block0_rows(uint32_t *restrict r0, uint32_t *restrict r1, uint32_t *restrict r2, uint32_t *restrict r3,
                        uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t c[4];
        draw_block(c, seed, step, index0 + (uint32_t)i, stream, 0);
        r0[i] = c[0]; r1[i] = c[1]; r2[i] = c[2]; r3[i] = c[3];
    }
}

/* Normals from the block's word pairs (r0, r1) and, when wanted, (r2, r3), one array each. */
static void normals_rows(float *restrict z0, float *restrict z1, float *restrict z2, float *restrict z3,
                                   const uint32_t *restrict r0, const uint32_t *restrict r1,
                                   const uint32_t *restrict r2, const uint32_t *restrict r3, int n, int two_pairs)
{
    for (int i = 0; i < n; i++) box_muller(&z0[i], &z1[i], r0[i], r1[i]);
    if (two_pairs)
        for (int i = 0; i < n; i++) box_muller(&z2[i], &z3[i], r2[i], r3[i]);
}

static void uniform_rows(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n)
{
    uint32_t r[4][ROWS];
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        const int m = n - i0 < ROWS ? n - i0 : ROWS;
        block0_rows(r[0], r[1], r[2], r[3], seed, step, index0 + (uint32_t)i0, stream, m);
        for (int i = 0; i < m; i++) out[i0 + i] = uniform24(r[0][i]);
    }
}

static void normal_rows(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n, int D)
{
    uint32_t r[4][ROWS];
    float z[4][ROWS];
    for (int i0 = 0; i0 < n; i0 += ROWS) {
        const int m = n - i0 < ROWS ? n - i0 : ROWS;
        block0_rows(r[0], r[1], r[2], r[3], seed, step, index0 + (uint32_t)i0, stream, m);
        normals_rows(z[0], z[1], z[2], z[3], r[0], r[1], r[2], r[3], m, D > 2);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < D; j++) out[(size_t)(i0 + i) * D + j] = z[j][i];
    }
}

FM_ISA_TABLE(fm_rng_ops) = {.uniform_rows = uniform_rows, .normal_rows = normal_rows};
