#include "fm/dist.h"

#include <math.h>
#include <stdlib.h>

#include "fm/error.h"
#include "fm/rng.h"

/* The mode choice draws from its own sub-stream so it never reuses the normals' counters. */
#define MODE_SUBSTREAM 0x100u

static fm_dist *dist_alloc(int dim, int nmodes, float std)
{
    FM_CHECK(dim > 0 && nmodes > 0 && std > 0, "bad distribution: dim %d, modes %d, std %g",
             dim, nmodes, std);
    fm_dist *d = fm_calloc(sizeof *d);
    d->dim = dim;
    d->nmodes = nmodes;
    d->std = std;
    d->means = fm_calloc(sizeof(float) * (size_t)dim * nmodes);
    return d;
}

fm_dist *fm_dist_gaussian(int dim, float std) { return dist_alloc(dim, 1, std); }

fm_dist *fm_dist_gmm_ring(int modes, float radius, float std, float x_offset)
{
    fm_dist *d = dist_alloc(2, modes, std);
    for (int k = 0; k < modes; k++) {
        double a = 2.0 * M_PI * k / modes;
        d->means[2 * k] = (float)(radius * cos(a) + x_offset);
        d->means[2 * k + 1] = (float)(radius * sin(a));
    }
    return d;
}

fm_dist *fm_dist_gmm_random(int dim, int modes, float scale, float std, uint64_t seed)
{
    fm_dist *d = dist_alloc(dim, modes, std);
    for (int k = 0; k < modes; k++) {
        float *mu = d->means + (size_t)k * dim;
        fm_rng_uniform(mu, seed, 0, (uint32_t)k, FM_STREAM_MEANS, dim);
        for (int j = 0; j < dim; j++) mu[j] = scale * (2.0f * mu[j] - 1.0f);
    }
    return d;
}

void fm_dist_free(fm_dist *d)
{
    if (!d) return;
    free(d->means);
    free(d);
}

void fm_dist_sample(float *x, const fm_dist *d, uint64_t seed, uint32_t step, uint32_t index0,
                    uint32_t stream, int n)
{
    const int D = d->dim;
    fm_rng_normal_rows(x, seed, step, index0, stream, n, D);
    for (int i0 = 0; i0 < n; i0 += 64) { /* the modes, 64 samples at a time */
        const int m = n - i0 < 64 ? n - i0 : 64;
        float u[64];
        if (d->nmodes > 1) fm_rng_uniform_rows(u, seed, step, index0 + (uint32_t)i0, stream | MODE_SUBSTREAM, m);
        for (int i = 0; i < m; i++) {
            int k = d->nmodes > 1 ? (int)(u[i] * (float)d->nmodes) : 0;
            if (k >= d->nmodes) k = d->nmodes - 1;
            const float *mu = d->means + (size_t)k * D;
            float *xi = x + (size_t)(i0 + i) * D;
            for (int j = 0; j < D; j++) xi[j] = mu[j] + d->std * xi[j];
        }
    }
}

double fm_dist_logpdf(const fm_dist *d, const float *x)
{
    const int D = d->dim;
    const double s2 = (double)d->std * d->std;
    double best = -INFINITY, sum = 0.0;
    /* One pass of streaming log-sum-exp: rescale the running sum when a larger term appears. */
    for (int k = 0; k < d->nmodes; k++) {
        const float *mu = d->means + (size_t)k * D;
        double r2 = 0.0;
        for (int j = 0; j < D; j++) {
            double e = (double)x[j] - mu[j];
            r2 += e * e;
        }
        double e = -0.5 * r2 / s2;
        if (e > best) {
            sum = sum * exp(best - e) + 1.0;
            best = e;
        } else {
            sum += exp(e - best);
        }
    }
    return best + log(sum) - log((double)d->nmodes) - 0.5 * D * log(2.0 * M_PI * s2);
}
