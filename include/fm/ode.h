/* ODE solvers: integrate dx/dt = f(x, t) from t0 to t1 over rows of `width` numbers.
 *
 * Fixed-step solvers (euler, midpoint, heun, rk4) take `steps` steps of (t1 - t0) / steps, every
 * row together. The adaptive one (dopri5: Dormand-Prince 5(4), FSAL, error per row against
 * atol + rtol |x|) gives every row its own step size and time, so a row's path does not depend on
 * which rows share its batch, its rank, or the number of ranks: no collective inside, nobody waits
 * on anyone's step count (DESIGN.md section 7). The field (what f is: the guided model velocity,
 * the log-likelihood's augmented field) is fm/field.h's business. Pure numerics. */
#ifndef FM_ODE_H
#define FM_ODE_H

/* f(x, t) on n rows: row i at time t_row[i] (t_row NULL: every row at t); rows[i] is which of the
 * caller's rows row i is (rows NULL: row i), for fields with data per row (labels, probes). */
typedef struct {
    int width; /* numbers per row */
    /* Returns f [n, width], valid until the next call. */
    const float *(*eval)(void *ctx, const float *x /* [n, width] */, double t, const float *t_row /* [n] */,
                         const int *rows /* [n] */, int n);
    void *ctx;
} fm_ode_field;

typedef struct {
    int solver;        /* index in fm_ode_solver_name */
    long steps;        /* fixed steps: how many; dopri5: the grid the trajectories are recorded on */
    double atol, rtol; /* dopri5 */
} fm_ode_opts;

/* A solver's buffers for up to cap rows of width numbers. */
typedef struct {
    int cap, width;
    float *xs, *acc;   /* [cap, width] stage input, accumulator */
    float *k[7];       /* [cap, width] dopri5's stages, rows in the caller's order */
    float *t_row;      /* [cap] the stage times of the rows in a call */
    double *t, *h;     /* [cap] each row's time and step size */
    int *live, *next;  /* [cap] the rows still stepping; each recorded row's next grid point */
    int *evals;        /* [cap] evaluations per row when the caller does not ask for them */
} fm_ode_work;

fm_ode_work *fm_ode_work_new(int cap, int width);
void fm_ode_work_free(fm_ode_work *w);

/* "euler" "midpoint" "heun" "rk4" "dopri5": the list of fm/names.h. */
const char *fm_ode_solver_name(int i);
/* Field evaluations per step of a fixed-step solver; 0 for an adaptive one. */
int fm_ode_evals(int solver);

/* Integrates x (n <= cap rows: at t0 on entry, at t1 on return). nfe (may be NULL) gets each row's
 * field evaluations. When traj is not NULL the first m rows are recorded at steps + 1 grid times:
 * traj[j, k, :] is row j at t0 + k (t1 - t0) / steps (dopri5: cubic Hermite interpolation between
 * its own steps). Returns 0, or -1 when a dopri5 row needs more than FM_ODE_MAX_STEPS steps
 * (its tolerances are below what float arithmetic can meet). */
#define FM_ODE_MAX_STEPS 100000
int fm_ode_solve(float *x /* [n, width] */, int *nfe /* [n] */, float *traj /* [m, steps + 1, width] */,
                 fm_ode_work *w, const fm_ode_field *f, const fm_ode_opts *o, double t0, double t1, int n, int m);

#endif
