#include "fm/optim.h"

#include <math.h>

#include "fm/error.h"

static double constant_lr(const fm_optim *o, double frac) { (void)frac; return o->lr; }
static double cosine_lr(const fm_optim *o, double frac) { return o->lr * 0.5 * (1.0 + cos(M_PI * fmin(frac, 1.0))); }

/* Adding a schedule: its function of the fraction of the post-warmup steps done, and one row. */
static const struct {
    const char *name;
    double (*lr)(const fm_optim *o, double frac);
} schedules[] = {
    {"constant", constant_lr},
    {"cosine", cosine_lr},
};
#define NSCHEDULES ((int)(sizeof schedules / sizeof schedules[0]))

const char *fm_optim_schedule_name(int i) { return i >= 0 && i < NSCHEDULES ? schedules[i].name : 0; }

double fm_optim_lr(const fm_optim *o, long step, long total)
{
    FM_CHECK(o->schedule >= 0 && o->schedule < NSCHEDULES, "unknown learning-rate schedule %d", o->schedule);
    if (o->warmup > 0 && step <= o->warmup) return o->lr * (double)step / (double)o->warmup;
    if (total <= o->warmup) return o->lr;
    return schedules[o->schedule].lr(o, (double)(step - o->warmup) / (double)(total - o->warmup));
}

void fm_optim_adam_step(float *restrict p, float *restrict m, float *restrict v, const float *restrict g, size_t n,
                        const fm_optim *a, long step, double lr)
{
    const float b1 = (float)a->beta1, b2 = (float)a->beta2;
    const float step_size = (float)(lr / (1.0 - pow(a->beta1, (double)step)));
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(a->beta2, (double)step)));
    const float eps = (float)a->eps;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

void fm_optim_ema(float *restrict ema, const float *restrict p, size_t n, double decay)
{
    const float d = (float)decay, e = (float)(1.0 - decay);
    for (size_t i = 0; i < n; i++) ema[i] = d * ema[i] + e * p[i];
}

double fm_optim_norm(const float *g, size_t n)
{
    /* eight partial sums, in a fixed order: vectorised, and the same result on every run */
    double s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += (double)g[i + k] * g[i + k];
    for (; i < n; i++) s[0] += (double)g[i] * g[i];
    return sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
}

double fm_optim_clip(float *g, size_t n, double clip)
{
    const double norm = fm_optim_norm(g, n);
    if (clip > 0.0 && norm > clip) {
        const float s = (float)(clip / norm);
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}
