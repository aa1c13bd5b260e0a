#include <stdlib.h>

#include "check.h"
#include "fm/dist.h"
#include "fm/rng.h"

/* log p by the direct formula, in double: log(1/K sum_k N(x; mu_k, s^2 I)). */
static double logpdf_direct(const fm_dist *d, const double *x)
{
    double s2 = (double)d->std * d->std, sum = 0;
    for (int k = 0; k < d->nmodes; k++) {
        double r2 = 0;
        for (int j = 0; j < d->dim; j++) {
            double e = x[j] - d->means[k * d->dim + j];
            r2 += e * e;
        }
        sum += exp(-0.5 * r2 / s2) / pow(2 * M_PI * s2, 0.5 * d->dim);
    }
    return log(sum / d->nmodes);
}

static void check_moments(const fm_dist *d, int n)
{
    const int D = d->dim;
    float *x = malloc(sizeof(float) * (size_t)n * D);
    fm_dist_sample(x, d, 3, 1, 0, FM_STREAM_Z, n);
    /* Analytic: mean = average of means; cov = std^2 I + covariance of the means. */
    double mean[8] = {0}, cov[8][8] = {{0}}, emean[8] = {0}, ecov[8][8] = {{0}};
    for (int k = 0; k < d->nmodes; k++)
        for (int a = 0; a < D; a++) mean[a] += d->means[k * D + a] / d->nmodes;
    for (int k = 0; k < d->nmodes; k++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                cov[a][b] += (d->means[k * D + a] - mean[a]) * (d->means[k * D + b] - mean[b]) / d->nmodes;
    for (int a = 0; a < D; a++) cov[a][a] += (double)d->std * d->std;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < D; a++) emean[a] += x[i * D + a] / (double)n;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                ecov[a][b] += (x[i * D + a] - emean[a]) * (x[i * D + b] - emean[b]) / (double)n;
    for (int a = 0; a < D; a++) {
        /* Five standard errors of a mean and of a (co)variance estimate. */
        CHECK_NEAR(emean[a], mean[a], 5 * sqrt(cov[a][a] / n));
        for (int b = 0; b < D; b++) {
            double se = sqrt((cov[a][a] * cov[b][b] + cov[a][b] * cov[a][b]) / n);
            /* A mixture's 4th moments exceed a Gaussian's; allow 3x the Gaussian standard error. */
            CHECK_NEAR(ecov[a][b], cov[a][b], 15 * se);
        }
    }
    free(x);
}

int main(void)
{
    fm_dist *ring = fm_dist_gmm_ring(11, 10.0f, 1.0f, 0.0f);
    CHECK_NEAR(ring->means[0], 10.0, 1e-6);
    CHECK_NEAR(ring->means[2 * 3 + 1], 10.0 * sin(2 * M_PI * 3 / 11), 1e-5);
    check_moments(ring, 200000);

    fm_dist *shifted = fm_dist_gmm_ring(5, 4.0f, 0.5f, 3.0f);
    check_moments(shifted, 200000);
    fm_dist *rnd = fm_dist_gmm_random(3, 7, 5.0f, 0.7f, 11);
    for (int k = 0; k < 7 * 3; k++) CHECK(fabsf(rnd->means[k]) <= 5.0f, "mean %g outside the box", rnd->means[k]);
    check_moments(rnd, 200000);
    fm_dist *g = fm_dist_gaussian(4, 2.0f);
    check_moments(g, 200000);

    /* The mode choice is uniform: every one of 11 modes gets its 1/11 share within 5 SE. */
    {
        enum { N = 110000 };
        float *x = malloc(sizeof(float) * N * 2);
        int count[11] = {0};
        fm_dist_sample(x, ring, 9, 0, 0, FM_STREAM_Z, N);
        for (int i = 0; i < N; i++) {
            int best = 0;
            double bd = 1e30;
            for (int k = 0; k < 11; k++) {
                double dx = x[2 * i] - ring->means[2 * k], dy = x[2 * i + 1] - ring->means[2 * k + 1];
                if (dx * dx + dy * dy < bd) { bd = dx * dx + dy * dy; best = k; }
            }
            count[best]++;
        }
        for (int k = 0; k < 11; k++) CHECK(abs(count[k] - N / 11) < 5 * sqrt(N / 11.0), "mode %d count %d", k, count[k]);
        free(x);
    }

    /* The 2-D density integrates to 1 (midpoint rule on [-20, 20]^2, step 0.05). */
    double integral = 0, h = 0.05;
    for (double u = -20 + h / 2; u < 20; u += h)
        for (double v = -20 + h / 2; v < 20; v += h) {
            float x[2] = {(float)u, (float)v};
            integral += exp(fm_dist_logpdf(ring, x)) * h * h;
        }
    CHECK_NEAR(integral, 1.0, 1e-4);

    /* Agrees with the direct formula near and far from the modes (where exp is still > 0). */
    const double pts[][2] = {{0, 0}, {10, 0}, {3, -4}, {25, 25}, {-30, 5}, {0, 36}};
    for (int i = 0; i < 6; i++) {
        float x[2] = {(float)pts[i][0], (float)pts[i][1]};
        double ref = logpdf_direct(ring, pts[i]);
        CHECK(fabs(fm_dist_logpdf(ring, x) - ref) <= 1e-9 * fabs(ref) + 1e-9, "at (%g, %g): %.12g vs %.12g",
              pts[i][0], pts[i][1], fm_dist_logpdf(ring, x), ref);
    }
    /* Where the direct formula underflows to -inf the stable one stays finite and near the nearest mode's term. */
    float far[2] = {1000, 0};
    double lp = fm_dist_logpdf(ring, far);
    double nearest = -0.5 * (990.0 * 990.0) - log(11.0) - log(2 * M_PI);
    CHECK(isfinite(lp), "logpdf far away is %g", lp);
    CHECK(lp >= nearest && lp < nearest + log(11.0) + 1e-9, "far logpdf %.9g, nearest-mode bound %.9g", lp, nearest);

    fm_dist_free(ring); fm_dist_free(shifted); fm_dist_free(rnd); fm_dist_free(g);
    return check_report("test_dist");
}
