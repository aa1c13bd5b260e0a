/* The assignment's inner loop (include/fm/kern_ops.h, fm_coupling_ops), compiled once per
 * instruction set (include/fm/vec.h): one Dijkstra step over all columns, in vectors of FM_VD
 * doubles and as many 64-bit row indices (AVX-512: 8; AVX2: 4; SSE2 and NEON: 2). */
#include <math.h>

#include "fm/kern_ops.h"
#include "fm/vec.h"

/* Settled columns have price -inf in vw and length +inf in d, so the loop has no branch on them.
 * Blends, not branches; every build computes the same: comparisons and one subtraction order,
 * and each lane keeps its first least column, so the least over lanes then the tail is the
 * first least column whatever the width. */
/* Columns [j, j + FM_VD): relax them, and keep each lane's first least column in (minv, argv). */
FM_INLINE void relax_vec(vd *minv, vl *argv, double *restrict d, int64_t *restrict pred, const double *restrict ci,
                         const double *restrict vw, vd hv, vl iv, vl col, int j)
{
    const vd v2 = vd_load(ci + j) - vd_load(vw + j) - hv, dj = vd_load(d + j);
    const vd nd = vd_min(v2, dj);
    vd_store(d + j, nd);
    vl_store_where(pred + j, v2 < dj, iv);
    const vl less = nd < *minv; /* strictly: each lane keeps its first least column */
    *minv = vd_min(nd, *minv);
    *argv = (col & less) | (*argv & ~less);
}

/* Two pairs of running minima: the compare and blend of one is a chain of 5-6 cycles a vector,
 * longer than the rest of the work on a vector; two chains overlap. */
static double relax(int *arg, double *restrict d, int64_t *restrict pred, const double *restrict ci,
                    const double *restrict vw, double h, int64_t i, int n)
{
    vd minv[2] = {(vd){0} + INFINITY, (vd){0} + INFINITY};
    const vd hv = (vd){0} + h;
    const vl iv = (vl){0} + i;
    vl col, argv[2];
    for (int k = 0; k < FM_VD; k++) col[k] = k;
    argv[0] = argv[1] = col;
    int j = 0;
    for (; j + 2 * FM_VD <= n; j += 2 * FM_VD, col += 2 * FM_VD) {
        relax_vec(&minv[0], &argv[0], d, pred, ci, vw, hv, iv, col, j);
        relax_vec(&minv[1], &argv[1], d, pred, ci, vw, hv, iv, col + FM_VD, j + FM_VD);
    }
    if (j + FM_VD <= n) {
        relax_vec(&minv[0], &argv[0], d, pred, ci, vw, hv, iv, col, j);
        j += FM_VD;
    }
    /* the least over every lane of both, ties to the first column: the first least column */
    double min = INFINITY;
    int64_t best = n;
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < FM_VD; k++)
            if (minv[a][k] < min || (minv[a][k] == min && argv[a][k] < best)) {
                min = minv[a][k];
                best = argv[a][k];
            }
    for (; j < n; j++) {
        const double v2 = ci[j] - vw[j] - h;
        if (v2 < d[j]) {
            d[j] = v2;
            pred[j] = i;
        }
        if (d[j] < min) {
            min = d[j];
            best = j;
        }
    }
    *arg = (int)best;
    return min;
}

FM_ISA_TABLE(fm_coupling_ops) = {.relax = relax};
