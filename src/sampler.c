#include "fm/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "fm/error.h"

fm_sampler_work *fm_sampler_work_new(const fm_mlp *m, int cap)
{
    fm_sampler_work *w = fm_calloc(sizeof *w);
    w->cap = cap;
    w->dim = m->dims[m->nlayers];
    w->mlp = fm_mlp_work_new(m, cap);
    w->xs = fm_malloc(sizeof(float) * (size_t)cap * w->dim);
    w->acc = fm_malloc(sizeof(float) * (size_t)cap * w->dim);
    return w;
}

void fm_sampler_work_free(fm_sampler_work *w)
{
    if (!w) return;
    fm_mlp_work_free(w->mlp);
    free(w->xs);
    free(w->acc);
    free(w);
}

int fm_sampler_evals(fm_solver s) { return s == FM_SOLVER_RK4 ? 4 : s == FM_SOLVER_MIDPOINT ? 2 : 1; }

static const float *velocity(fm_sampler_work *w, const fm_mlp *mlp, const float *params,
                             const float *x, double t, int n)
{
    return fm_mlp_forward_at(w->mlp, mlp, params, x, (float)t, n);
}

/* y = x + h * v over n*dim entries. */
static void axpy(float *y, const float *x, const float *v, float h, size_t len)
{
    for (size_t i = 0; i < len; i++) y[i] = x[i] + h * v[i];
}

static void record(float *traj, const float *x, int m, long steps, long k, int dim)
{
    for (int j = 0; j < m; j++)
        memcpy(traj + ((size_t)j * (steps + 1) + k) * dim, x + (size_t)j * dim, sizeof(float) * dim);
}

void fm_sampler_integrate(float *x, float *traj, fm_sampler_work *w, const fm_mlp *mlp,
                          const float *params, int n, int m, long steps, fm_solver solver)
{
    FM_CHECK(n <= w->cap && m <= n, "sampler batch %d (record %d) exceeds its buffers (%d)", n, m, w->cap);
    const int dim = w->dim;
    const size_t len = (size_t)n * dim;
    const double h = 1.0 / (double)steps;
    const float hf = (float)h;
    if (traj) record(traj, x, m, steps, 0, dim);
    fm_mlp_pack(w->mlp, mlp, params);
    for (long k = 0; k < steps; k++) {
        const double t = (double)k * h;
        const float *v = velocity(w, mlp, params, x, t, n);
        switch (solver) {
        case FM_SOLVER_EULER:
            axpy(x, x, v, hf, len);
            break;
        case FM_SOLVER_MIDPOINT:
            axpy(w->xs, x, v, 0.5f * hf, len);
            v = velocity(w, mlp, params, w->xs, t + 0.5 * h, n);
            axpy(x, x, v, hf, len);
            break;
        case FM_SOLVER_RK4:
            /* acc = k1 + 2 k2 + 2 k3 + k4; stages from x. */
            memcpy(w->acc, v, sizeof(float) * len);
            axpy(w->xs, x, v, 0.5f * hf, len);
            v = velocity(w, mlp, params, w->xs, t + 0.5 * h, n);
            axpy(w->acc, w->acc, v, 2.0f, len);
            axpy(w->xs, x, v, 0.5f * hf, len);
            v = velocity(w, mlp, params, w->xs, t + 0.5 * h, n);
            axpy(w->acc, w->acc, v, 2.0f, len);
            axpy(w->xs, x, v, hf, len);
            v = velocity(w, mlp, params, w->xs, t + h, n);
            axpy(w->acc, w->acc, v, 1.0f, len);
            axpy(x, x, w->acc, hf / 6.0f, len);
            break;
        }
        if (traj) record(traj, x, m, steps, k + 1, dim);
    }
}

static const char *const solver_names[] = {"euler", "midpoint", "rk4"};

int fm_sampler_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, solver_names[i]) == 0) return i;
    return -1;
}
