/* ODE sampling: integrate dx/dt = u_theta(x, t) from t = 0 to 1 on a uniform grid.
 * Pure numerics: which trajectories a rank integrates, and where they are written, is the
 * caller's business (src/sample_cmd.c). */
#ifndef FM_SAMPLER_H
#define FM_SAMPLER_H

#include "fm/mlp.h"

typedef enum { FM_SOLVER_EULER = 0, FM_SOLVER_MIDPOINT = 1, FM_SOLVER_RK4 = 2 } fm_solver;

typedef struct {
    int cap, dim;
    fm_mlp_work *mlp;
    float *xs, *acc;     /* [cap, dim] stage state and RK accumulator */
} fm_sampler_work;

fm_sampler_work *fm_sampler_work_new(const fm_mlp *m, int cap);
void fm_sampler_work_free(fm_sampler_work *w);

/* Model evaluations per step. */
int fm_sampler_evals(fm_solver s);

/* Integrates x (n <= cap rows, x0 on entry, x1 on return) with `steps` steps of size 1/steps.
 * When traj is not NULL the first m rows are recorded at all steps + 1 grid times:
 * traj[j, k, :] is row j at t = k/steps. */
void fm_sampler_integrate(float *x /* [n, dim] */, float *traj /* [m, steps + 1, dim] */,
                          fm_sampler_work *w, const fm_mlp *mlp, const float *params, int n, int m,
                          long steps, fm_solver solver);

int fm_sampler_parse(const char *name);

#endif
