#include "fm/path.h"

#include <math.h>

#include "fm/error.h"
#include "fm/rng.h"

static void sqrt_path(fm_path_coef *c, const fm_path *p, double t)
{
    const double s = sqrt(fmax(1.0 - t, 0.0));
    *c = (fm_path_coef){t, s, 1.0, -0.5 / (s + p->eps)};
}

static void linear_path(fm_path_coef *c, const fm_path *p, double t)
{
    *c = (fm_path_coef){t, 1.0 - (1.0 - p->sigma_min) * t, 1.0, -(1.0 - p->sigma_min)};
}

static void cosine_path(fm_path_coef *c, const fm_path *p, double t)
{
    (void)p;
    const double a = 0.5 * M_PI * t;
    *c = (fm_path_coef){sin(a), cos(a), 0.5 * M_PI * cos(a), -0.5 * M_PI * sin(a)};
}

/* Adding a schedule: its function and one row here. */
static const struct {
    const char *name;
    void (*coeffs)(fm_path_coef *c, const fm_path *p, double t);
} schedules[] = {
    {"sqrt", sqrt_path},
    {"linear", linear_path},
    {"cosine", cosine_path},
};
#define NSCHEDULES ((int)(sizeof schedules / sizeof schedules[0]))

const char *fm_path_schedule_name(int i) { return i >= 0 && i < NSCHEDULES ? schedules[i].name : 0; }

fm_path_coef fm_path_coeffs(const fm_path *p, double t)
{
    FM_CHECK(p->schedule >= 0 && p->schedule < NSCHEDULES, "unknown path schedule %d", p->schedule);
    fm_path_coef c;
    schedules[p->schedule].coeffs(&c, p, t);
    return c;
}

void fm_path_sample(float *xt, float *u, const fm_path *p, const float *t, const float *x0,
                    const float *z, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        fm_path_coef c = fm_path_coeffs(p, t[i]);
        const float a = (float)c.alpha, b = (float)c.beta;
        const float da = (float)c.dalpha, db = (float)c.dbeta;
        for (int j = 0; j < dim; j++) {
            const int k = i * dim + j;
            xt[k] = a * z[k] + b * x0[k];
            u[k] = da * z[k] + db * x0[k];
        }
    }
}

double fm_path_loss(float *dout, const float *out, const float *u, int n, int dim, float scale)
{
    double sum = 0.0;
    const float two_scale = 2.0f * scale;
    for (size_t k = 0; k < (size_t)n * dim; k++) {
        const float e = out[k] - u[k];
        sum += (double)e * e;
        dout[k] = two_scale * e;
    }
    return sum;
}

static const char *const t_dists[] = {"uniform", "logit_normal"};

const char *fm_path_t_dist_name(int i) { return i >= 0 && i < 2 ? t_dists[i] : NULL; }

void fm_path_draw_t(float *t, const fm_path_t_dist *d, uint64_t seed, uint32_t step, uint32_t index0, int n)
{
    if (d->dist == 0) {
        fm_rng_uniform_rows(t, seed, step, index0, FM_STREAM_T, n);
        return;
    }
    FM_CHECK(d->dist == 1, "unknown time distribution %d", d->dist);
    fm_rng_normal_rows(t, seed, step, index0, FM_STREAM_T, n, 1);
    const float below_one = 0.99999994f; /* the float before 1: t stays in [0, 1) */
    for (int i = 0; i < n; i++) {
        const float s = (float)(1.0 / (1.0 + exp(-(d->mean + d->std * (double)t[i]))));
        t[i] = s < below_one ? s : below_one;
    }
}
