#include "fm/ode.h"

#include <stdlib.h>
#include <string.h>

#include "fm/error.h"
#include "fm/fpmode.h"

fm_ode_work *fm_ode_work_new(const fm_model *m, int cap)
{
    fm_ode_work *w = fm_calloc(sizeof *w);
    const size_t len = (size_t)cap * m->dim;
    w->cap = cap;
    w->dim = m->dim;
    w->model = fm_model_work_new(m, cap, 0);
    w->y_none = fm_malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < cap; i++) w->y_none[i] = m->classes;
    w->xs = fm_malloc(sizeof(float) * len);
    w->acc = fm_malloc(sizeof(float) * len);
    w->vu = fm_malloc(sizeof(float) * len);
    w->v = fm_malloc(sizeof(float) * len);
    return w;
}

void fm_ode_work_free(fm_ode_work *w)
{
    if (!w) return;
    fm_model_work_free(w->model);
    free(w->y_none);
    free(w->xs);
    free(w->acc);
    free(w->vu);
    free(w->v);
    free(w);
}

const float *fm_ode_velocity(fm_ode_work *w, const float *params, const float *x, double t, const int *y,
                             float guidance, int n)
{
    const int classes = w->model->model->classes;
    fm_model_in in = {x, NULL, (float)t, classes > 0 ? y : NULL, n};
    if (!in.y || guidance == 1.0f) return fm_model_forward(w->model, params, &in);
    in.y = w->y_none;
    const float *vu = fm_model_forward(w->model, params, &in);
    if (guidance == 0.0f) return vu;
    const size_t len = (size_t)n * w->dim;
    memcpy(w->vu, vu, sizeof(float) * len);
    in.y = y;
    const float *vy = fm_model_forward(w->model, params, &in);
    for (size_t k = 0; k < len; k++) w->v[k] = w->vu[k] + guidance * (vy[k] - w->vu[k]);
    return w->v;
}

/* What a solver step integrates: n rows of the guided field. */
typedef struct {
    fm_ode_work *w;
    const float *params;
    const int *y;
    float guidance;
    int n;
    size_t len; /* n * dim */
} field;

static const float *velocity(const field *f, const float *x, double t)
{
    return fm_ode_velocity(f->w, f->params, x, t, f->y, f->guidance, f->n);
}

/* y = x + h * v over len entries. */
static void axpy(float *y, const float *x, const float *v, float h, size_t len)
{
    for (size_t i = 0; i < len; i++) y[i] = x[i] + h * v[i];
}

static void euler_step(const field *f, float *x, double t, double h)
{
    axpy(x, x, velocity(f, x, t), (float)h, f->len);
}

static void midpoint_step(const field *f, float *x, double t, double h)
{
    float *xs = f->w->xs;
    axpy(xs, x, velocity(f, x, t), 0.5f * (float)h, f->len);
    axpy(x, x, velocity(f, xs, t + 0.5 * h), (float)h, f->len);
}

static void rk4_step(const field *f, float *x, double t, double h)
{
    /* acc = k1 + 2 k2 + 2 k3 + k4; every stage from x. */
    float *xs = f->w->xs, *acc = f->w->acc;
    const float hf = (float)h;
    const float *v = velocity(f, x, t);
    memcpy(acc, v, sizeof(float) * f->len);
    axpy(xs, x, v, 0.5f * hf, f->len);
    v = velocity(f, xs, t + 0.5 * h);
    axpy(acc, acc, v, 2.0f, f->len);
    axpy(xs, x, v, 0.5f * hf, f->len);
    v = velocity(f, xs, t + 0.5 * h);
    axpy(acc, acc, v, 2.0f, f->len);
    axpy(xs, x, v, hf, f->len);
    v = velocity(f, xs, t + h);
    axpy(acc, acc, v, 1.0f, f->len);
    axpy(x, x, acc, hf / 6.0f, f->len);
}

/* Adding a solver: its step function and one row here. */
static const struct {
    const char *name;
    int evals;
    void (*step)(const field *f, float *x, double t, double h);
} solvers[] = {
    {"euler", 1, euler_step},
    {"midpoint", 2, midpoint_step},
    {"rk4", 4, rk4_step},
};
#define NSOLVERS ((int)(sizeof solvers / sizeof solvers[0]))

const char *fm_ode_solver_name(int i) { return i >= 0 && i < NSOLVERS ? solvers[i].name : NULL; }

int fm_ode_evals(int solver)
{
    FM_CHECK(solver >= 0 && solver < NSOLVERS, "unknown ODE solver %d", solver);
    return solvers[solver].evals;
}

static void record(float *traj, const float *x, int m, long steps, long k, int dim)
{
    for (int j = 0; j < m; j++)
        memcpy(traj + ((size_t)j * (steps + 1) + k) * dim, x + (size_t)j * dim, sizeof(float) * dim);
}

void fm_ode_integrate(float *x, float *traj, fm_ode_work *w, const float *params, const int *y, float guidance,
                      int n, int m, long steps, int solver)
{
    FM_CHECK(n <= w->cap && m <= n, "ODE batch %d (record %d) exceeds its buffers (%d)", n, m, w->cap);
    FM_CHECK(solver >= 0 && solver < NSOLVERS, "unknown ODE solver %d", solver);
    FM_CHECK(fm_fpmode_ok(), "the floating-point mode of this thread does not flush subnormals (call fm_fpmode_set)");
    const field f = {w, params, y, guidance, n, (size_t)n * w->dim};
    const double h = 1.0 / (double)steps;
    if (traj) record(traj, x, m, steps, 0, w->dim);
    fm_model_prepare(w->model, params);
    for (long k = 0; k < steps; k++) {
        solvers[solver].step(&f, x, (double)k * h, h);
        if (traj) record(traj, x, m, steps, k + 1, w->dim);
    }
}
