/* ODE sampling: integrate dx/dt = v(x, t) from t = 0 to 1 on a uniform grid, where v is the
 * model's velocity, guided when the model is conditional (DESIGN.md section 6):
 *     v = u(x, t, K) + w (u(x, t, y) - u(x, t, K)),  K = "no label", w = guidance
 * (w = 1: the plain conditional field; w = 0: the unconditional one).
 * Pure numerics: which trajectories a rank integrates, and where they go, is sample_run's business. */
#ifndef FM_ODE_H
#define FM_ODE_H

#include "fm/model.h"

typedef struct {
    int cap, dim;
    fm_model_work *model;
    int *y_none;     /* [cap] every row "no label" (the model's classes) */
    float *xs, *acc; /* [cap, dim] stage state and accumulator of the multi-stage solvers */
    float *vu, *v;   /* [cap, dim] guidance: the unconditional velocity, the guided one */
} fm_ode_work;

fm_ode_work *fm_ode_work_new(const fm_model *m, int cap);
void fm_ode_work_free(fm_ode_work *w);

/* "euler" "midpoint" "rk4": the list of fm/names.h. */
const char *fm_ode_solver_name(int i);
/* Velocity evaluations per step of a solver (a guided evaluation counts as one). */
int fm_ode_evals(int solver);

/* The velocity at (x, t) of rows with labels y (NULL: no labels), guided by w; [n, dim] in w. */
const float *fm_ode_velocity(fm_ode_work *w, const float *params, const float *x /* [n, dim] */, double t,
                             const int *y /* [n] */, float guidance, int n);

/* Integrates x (n <= cap rows, x0 on entry, x1 on return) with `steps` steps of size 1/steps.
 * When traj is not NULL the first m rows are recorded at all steps + 1 grid times:
 * traj[j, k, :] is row j at t = k/steps. */
void fm_ode_integrate(float *x /* [n, dim] */, float *traj /* [m, steps + 1, dim] */, fm_ode_work *w,
                      const float *params, const int *y /* [n] or NULL */, float guidance, int n, int m,
                      long steps, int solver);

#endif
