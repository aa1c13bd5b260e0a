/* The entry points of the kernel files built once per instruction set (include/fm/vec.h), one
 * table per file and build; src/isa.c hands out the active build's. Callers use the fm_kern_*,
 * fm_conv_direct* and fm_assign_* functions, which go through these tables. */
#ifndef FM_KERN_OPS_H
#define FM_KERN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "fm/act.h"
#include "fm/conv.h"

/* src/kernels.c: as documented in include/fm/kernels.h. */
typedef struct {
    float (*exp)(float x);
    void (*bias_act)(float *pre, float *post, float *aux, const float *b, int n, int out, int ld, int act);
    void (*act_backward)(float *g, const float *pre, const float *post, const float *aux, size_t n, fm_act act);
    void (*silu)(float *y, const float *x, size_t n);
    void (*silu_sums)(float *y, double *sum, double *sumsq, const float *x, size_t n);
    void (*silu_grad)(float *out, const float *base, const float *g, const float *x, size_t n);
    float (*absmax)(const float *x, size_t n);
    void (*fixed_add)(int64_t *acc, const float *g, double up, size_t n);
    void (*fixed_to_float)(float *g, const int64_t *acc, double down, size_t n);
    void (*add)(float *y, const float *x, size_t n);
    void (*thin_forward)(float *y, float *post, float *aux, float *wt, const float *a, const float *W, const float *b,
                         int n, int in, int out, int ld, int act);
    void (*thin_weight_grad)(float *dW, float *db, const float *g, const float *a, int n, int in, int out, int ld);
    void (*narrow_forward)(float *y, const float *wt, const float *a, int n, int K, int lda, int out);
    void (*narrow_backward)(float *dW, float *ga, float *pad, const float *g, const float *a, const float *W,
                            const float *pre, const float *post, const float *aux, int n, int K, int lda, int out,
                            fm_act act);
    void (*colsum_add)(float *db, const float *g, int n, int out, int ld);
} fm_kern_ops;

/* src/conv_direct.c: as documented in include/fm/conv.h. */
typedef struct {
    void (*forward)(float *y, float *xpad, const fm_conv *c, const float *x, const float *wp, const float *b, int n,
                    int transposed);
    void (*few)(float *y, float *xpad, const fm_conv *c, const float *x, const float *W, const float *b, int n);
    void (*wgrad)(float *dW, float *db, float *dyt, float *xpad, const fm_conv *c, const float *x, const float *dy,
                  int n);
} fm_conv_direct_ops;

/* src/coupling_kern.c: one Dijkstra step of the assignment (src/coupling.c). Relaxes the
 * unsettled columns through row i (offset h): d[j] = min(d[j], c[j] - vw[j] - h), pred[j] = i
 * where it improved; returns the least d and in *arg its first column. Settled columns have
 * vw = -inf and d = +inf. Every build returns the same (comparisons, one subtraction order). */
typedef struct {
    double (*relax)(int *arg, double *d /* [n] */, int64_t *pred /* [n] */, const double *ci /* [n] */,
                    const double *vw /* [n] */, double h, int64_t i, int n);
} fm_coupling_ops;

/* src/rng_rows.c: fm_rng_uniform_rows, and fm_rng_normal_rows for D <= 4 (include/fm/rng.h). */
typedef struct {
    void (*uniform_rows)(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n);
    void (*normal_rows)(float *out, uint64_t seed, uint32_t step, uint32_t index0, uint32_t stream, int n, int D);
} fm_rng_ops;

const fm_kern_ops *fm_isa_kern(void);
const fm_conv_direct_ops *fm_isa_conv(void);
const fm_coupling_ops *fm_isa_coupling(void);
const fm_rng_ops *fm_isa_rng(void);

#endif
