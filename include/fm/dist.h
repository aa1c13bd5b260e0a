/* Distributions: the Gaussian source and equal-weight isotropic Gaussian mixtures as targets.
 * A Gaussian is a mixture of one mode, so one type serves both. */
#ifndef FM_DIST_H
#define FM_DIST_H

#include <stdint.h>

typedef struct {
    int dim;
    int nmodes;
    float std;    /* isotropic std of every mode */
    float *means; /* [nmodes, dim] */
} fm_dist;

/* N(0, std^2 I_dim). */
fm_dist *fm_dist_gaussian(int dim, float std);
/* The seed target: `modes` means on a circle of `radius`, a_k = 2 pi k / modes, shifted by
 * x_offset along the first axis. dim = 2. */
fm_dist *fm_dist_gmm_ring(int modes, float radius, float std, float x_offset);
/* Means uniform in [-scale, scale]^dim, drawn from the counter-based generator with `seed`. */
fm_dist *fm_dist_gmm_random(int dim, int modes, float scale, float std, uint64_t seed);
void fm_dist_free(fm_dist *d);

/* Row i of x is sample index0 + i, a pure function of (seed, step, index0 + i, stream). */
void fm_dist_sample(float *x /* [n, dim] */, const fm_dist *d, uint64_t seed, uint32_t step,
                    uint32_t index0, uint32_t stream, int n);

/* log p(x) in double precision with log-sum-exp over the modes: finite far from every mode. */
double fm_dist_logpdf(const fm_dist *d, const float *x /* [dim] */);

#endif
