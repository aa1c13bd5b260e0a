#include "fm/path.h"

#include <math.h>

#include "fm/error.h"

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
