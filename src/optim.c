#include "fm/optim.h"

#include <math.h>
#include <string.h>

double fm_optim_lr(const fm_adam *a, long step, long total)
{
    if (a->warmup > 0 && step <= a->warmup) return a->lr * (double)step / (double)a->warmup;
    if (a->schedule == FM_LR_COSINE && total > a->warmup) {
        double frac = (double)(step - a->warmup) / (double)(total - a->warmup);
        return a->lr * 0.5 * (1.0 + cos(M_PI * fmin(frac, 1.0)));
    }
    return a->lr;
}

void fm_adam_step(float *restrict p, float *restrict m, float *restrict v, const float *restrict g, size_t n,
                  const fm_adam *a, long step, double lr)
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

static const char *const sched_names[] = {"constant", "cosine"};

int fm_optim_schedule_parse(const char *name)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, sched_names[i]) == 0) return i;
    return -1;
}
