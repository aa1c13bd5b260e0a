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
static double relax(int *arg, double *restrict d, int64_t *restrict pred, const double *restrict ci,
                    const double *restrict vw, double h, int64_t i, int n)
{
    vd minv = (vd){0} + INFINITY;
    const vl iv = (vl){0} + i;
    vl col, argv;
    for (int k = 0; k < FM_VD; k++) col[k] = k;
    argv = col;
    int j = 0;
    for (; j + FM_VD <= n; j += FM_VD) {
        const vd v2 = vd_load(ci + j) - vd_load(vw + j) - h, dj = vd_load(d + j);
        const vl better = v2 < dj;
        const vd nd = (vd)(((vl)v2 & better) | ((vl)dj & ~better));
        vd_store(d + j, nd);
        vl_store(pred + j, (iv & better) | (vl_load(pred + j) & ~better));
        const vl less = nd < minv; /* strictly: each lane keeps its first least column */
        minv = (vd)(((vl)nd & less) | ((vl)minv & ~less));
        argv = (col & less) | (argv & ~less);
        col += FM_VD;
    }
    double min = INFINITY;
    int64_t best = n;
    for (int k = 0; k < FM_VD; k++)
        if (minv[k] < min || (minv[k] == min && argv[k] < best)) {
            min = minv[k];
            best = argv[k];
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
