#include "fm/ode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fm/error.h"
#include "fm/fpmode.h"

fm_ode_work *fm_ode_work_new(int cap, int width)
{
    fm_ode_work *w = fm_calloc(sizeof *w);
    const size_t len = (size_t)cap * width;
    w->cap = cap;
    w->width = width;
    w->xs = fm_malloc(sizeof(float) * len);
    w->acc = fm_malloc(sizeof(float) * len);
    for (int s = 0; s < 7; s++) w->k[s] = fm_malloc(sizeof(float) * len);
    w->t_row = fm_malloc(sizeof(float) * (size_t)cap);
    w->t = fm_malloc(sizeof(double) * (size_t)cap);
    w->h = fm_malloc(sizeof(double) * (size_t)cap);
    w->live = fm_malloc(sizeof(int) * (size_t)cap);
    w->next = fm_malloc(sizeof(int) * (size_t)cap);
    w->evals = fm_malloc(sizeof(int) * (size_t)cap);
    return w;
}

void fm_ode_work_free(fm_ode_work *w)
{
    if (!w) return;
    free(w->xs);
    free(w->acc);
    for (int s = 0; s < 7; s++) free(w->k[s]);
    free(w->t_row);
    free(w->t);
    free(w->h);
    free(w->live);
    free(w->next);
    free(w->evals);
    free(w);
}

/* ---- fixed steps: every row at the same t ---- */

typedef struct {
    const fm_ode_field *f;
    fm_ode_work *w;
    int n;
    size_t len; /* n * width */
} stepper;

static const float *eval_all(const stepper *s, const float *x, double t)
{
    return s->f->eval(s->f->ctx, x, t, NULL, NULL, s->n);
}

/* y = x + h * v over len entries. */
static void axpy(float *y, const float *x, const float *v, float h, size_t len)
{
    for (size_t i = 0; i < len; i++) y[i] = x[i] + h * v[i];
}

static void euler_step(const stepper *s, float *x, double t, double h)
{
    axpy(x, x, eval_all(s, x, t), (float)h, s->len);
}

static void midpoint_step(const stepper *s, float *x, double t, double h)
{
    float *xs = s->w->xs;
    axpy(xs, x, eval_all(s, x, t), 0.5f * (float)h, s->len);
    axpy(x, x, eval_all(s, xs, t + 0.5 * h), (float)h, s->len);
}

static void heun_step(const stepper *s, float *x, double t, double h)
{
    /* the trapezoid of Euler's predictor: x + h/2 (k1 + k2), k2 at x + h k1 */
    float *xs = s->w->xs, *acc = s->w->acc;
    const float *v = eval_all(s, x, t);
    memcpy(acc, v, sizeof(float) * s->len);
    axpy(xs, x, v, (float)h, s->len);
    v = eval_all(s, xs, t + h);
    axpy(acc, acc, v, 1.0f, s->len);
    axpy(x, x, acc, 0.5f * (float)h, s->len);
}

static void rk4_step(const stepper *s, float *x, double t, double h)
{
    /* acc = k1 + 2 k2 + 2 k3 + k4; every stage from x. */
    float *xs = s->w->xs, *acc = s->w->acc;
    const float hf = (float)h;
    const float *v = eval_all(s, x, t);
    memcpy(acc, v, sizeof(float) * s->len);
    axpy(xs, x, v, 0.5f * hf, s->len);
    v = eval_all(s, xs, t + 0.5 * h);
    axpy(acc, acc, v, 2.0f, s->len);
    axpy(xs, x, v, 0.5f * hf, s->len);
    v = eval_all(s, xs, t + 0.5 * h);
    axpy(acc, acc, v, 2.0f, s->len);
    axpy(xs, x, v, hf, s->len);
    v = eval_all(s, xs, t + h);
    axpy(acc, acc, v, 1.0f, s->len);
    axpy(x, x, acc, hf / 6.0f, s->len);
}

/* Adding a solver: its step function and one row here (evals 0 and no step: adaptive). */
static const struct {
    const char *name;
    int evals;
    void (*step)(const stepper *s, float *x, double t, double h);
} solvers[] = {
    {"euler", 1, euler_step}, {"midpoint", 2, midpoint_step}, {"heun", 2, heun_step},
    {"rk4", 4, rk4_step},     {"dopri5", 0, NULL},
};
#define NSOLVERS ((int)(sizeof solvers / sizeof solvers[0]))

const char *fm_ode_solver_name(int i) { return i >= 0 && i < NSOLVERS ? solvers[i].name : NULL; }

int fm_ode_evals(int solver)
{
    FM_CHECK(solver >= 0 && solver < NSOLVERS, "unknown ODE solver %d", solver);
    return solvers[solver].evals;
}

static void record(float *traj, const float *x, int m, long steps, long k, int width)
{
    for (int j = 0; j < m; j++)
        memcpy(traj + ((size_t)j * (steps + 1) + k) * width, x + (size_t)j * width, sizeof(float) * width);
}

static void solve_fixed(float *x, float *traj, const stepper *s, int solver, long steps, double t0, double t1, int m)
{
    const double h = (t1 - t0) / (double)steps;
    const int W = s->f->width;
    if (traj) record(traj, x, m, steps, 0, W);
    for (long k = 0; k < steps; k++) {
        solvers[solver].step(s, x, t0 + (double)k * h, h);
        if (traj) record(traj, x, m, steps, k + 1, W);
    }
}

/* ---- Dormand-Prince 5(4): Hairer, Norsett and Wanner, Solving ODEs I, table 5.2 ---- */

static const double DP_C[7] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
static const double DP_A[7][6] = {
    {0},
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
    {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}, /* = the 5th-order weights */
};
/* The 5th-order weights minus the embedded 4th-order ones: the local error estimate. */
static const double DP_E[7] = {71.0 / 57600, 0.0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40};

/* The row's root-mean-square of v / (atol + rtol max(|a|, |b|)). */
static double scaled_rms(const float *v, const float *a, const float *b, int W, double atol, double rtol)
{
    double s = 0.0;
    for (int c = 0; c < W; c++) {
        const double sc = atol + rtol * fmax(fabs((double)a[c]), fabs((double)b[c]));
        const double e = (double)v[c] / sc;
        s += e * e;
    }
    return sqrt(s / W);
}

/* Records row r's grid points in (ta, ta + h] by the cubic Hermite interpolant of its step. */
static void record_dense(float *traj, fm_ode_work *w, int r, const float *ya, const float *fa, const float *yb,
                         const float *fb, double ta, double h, double t0, double t1, long steps)
{
    const int W = w->width;
    const double dir = t1 > t0 ? 1.0 : -1.0;
    while (w->next[r] <= steps) {
        const double tg = t0 + (t1 - t0) * (double)w->next[r] / (double)steps;
        if (dir * (tg - (ta + h)) > 1e-12 * fabs(t1 - t0)) break;
        const double u = fmin(1.0, fmax(0.0, (tg - ta) / h)), u2 = u * u, u3 = u2 * u;
        const double h00 = 2 * u3 - 3 * u2 + 1, h10 = u3 - 2 * u2 + u, h01 = -2 * u3 + 3 * u2, h11 = u3 - u2;
        float *out = traj + ((size_t)r * (steps + 1) + w->next[r]) * W;
        for (int c = 0; c < W; c++)
            out[c] = (float)(h00 * ya[c] + h10 * h * fa[c] + h01 * yb[c] + h11 * h * fb[c]);
        w->next[r]++;
    }
}

static int solve_dopri5(float *x, int *nfe, float *traj, fm_ode_work *w, const fm_ode_field *f, const fm_ode_opts *o,
                        double t0, double t1, int n, int m)
{
    const int W = f->width;
    const double span = t1 - t0, atol = o->atol, rtol = o->rtol;
    float *xs = w->xs;
    /* k1 of every row at t0, and a first step from the sizes of x and f (Hairer's h0 without its
     * trial Euler step). */
    memcpy(w->k[0], f->eval(f->ctx, x, t0, NULL, NULL, n), sizeof(float) * (size_t)n * W);
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * W, *kr = w->k[0] + (size_t)r * W;
        const double d0 = scaled_rms(xr, xr, xr, W, atol, rtol), d1 = scaled_rms(kr, xr, xr, W, atol, rtol);
        const double h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
        w->t[r] = t0;
        w->h[r] = copysign(fmin(h0, fabs(span)), span);
        w->live[r] = r;
        w->next[r] = 1;
        nfe[r] = 1;
    }
    if (traj) record(traj, x, m, o->steps, 0, W);
    int nlive = n;
    while (nlive > 0) {
        for (int a = 0; a < nlive; a++) { /* the last step ends on t1 exactly */
            const int r = w->live[a];
            if ((w->t[r] + w->h[r] - t1) * span > 0) w->h[r] = t1 - w->t[r];
        }
        for (int s = 1; s < 7; s++) {
            for (int a = 0; a < nlive; a++) {
                const int r = w->live[a];
                const double h = w->h[r];
                const float *xr = x + (size_t)r * W;
                float *in = xs + (size_t)a * W;
                for (int c = 0; c < W; c++) {
                    double acc = 0.0;
                    for (int j = 0; j < s; j++) acc += DP_A[s][j] * w->k[j][(size_t)r * W + c];
                    in[c] = (float)(xr[c] + h * acc);
                }
                w->t_row[a] = (float)(w->t[r] + DP_C[s] * h);
            }
            const float *out = f->eval(f->ctx, xs, 0.0, w->t_row, w->live, nlive);
            for (int a = 0; a < nlive; a++)
                memcpy(w->k[s] + (size_t)w->live[a] * W, out + (size_t)a * W, sizeof(float) * W);
        }
        /* xs holds each live row's 5th-order solution (stage 7's input); k[6] its field (FSAL). */
        int kept = 0;
        for (int a = 0; a < nlive; a++) {
            const int r = w->live[a];
            const double h = w->h[r];
            float *xr = x + (size_t)r * W, *y5 = xs + (size_t)a * W, *err = w->acc + (size_t)a * W;
            for (int c = 0; c < W; c++) {
                double e = 0.0;
                for (int j = 0; j < 7; j++) e += DP_E[j] * w->k[j][(size_t)r * W + c];
                err[c] = (float)(h * e);
            }
            const double q = scaled_rms(err, xr, y5, W, atol, rtol);
            nfe[r] += 6;
            double factor;
            int done = 0;
            if (q <= 1.0) {
                if (traj && r < m)
                    record_dense(traj, w, r, xr, w->k[0] + (size_t)r * W, y5, w->k[6] + (size_t)r * W, w->t[r], h, t0,
                                 t1, o->steps);
                memcpy(xr, y5, sizeof(float) * W);
                memcpy(w->k[0] + (size_t)r * W, w->k[6] + (size_t)r * W, sizeof(float) * W);
                done = fabs(t1 - (w->t[r] + h)) <= 1e-12 * fabs(span);
                w->t[r] = done ? t1 : w->t[r] + h;
                factor = q == 0.0 ? 10.0 : fmin(10.0, 0.9 * pow(q, -0.2));
            } else {
                factor = isfinite(q) ? fmax(0.2, 0.9 * pow(q, -0.2)) : 0.2;
            }
            w->h[r] = h * factor;
            if (!done && (nfe[r] > 6 * FM_ODE_MAX_STEPS || fabs(w->h[r]) < 1e-14 * fabs(span))) return -1;
            if (!done) w->live[kept++] = r;
        }
        nlive = kept;
    }
    return 0;
}

int fm_ode_solve(float *x, int *nfe, float *traj, fm_ode_work *w, const fm_ode_field *f, const fm_ode_opts *o,
                 double t0, double t1, int n, int m)
{
    FM_CHECK(n <= w->cap && m <= n && f->width == w->width, "ODE batch %d (record %d, width %d) exceeds its buffers "
             "(%d, width %d)", n, m, f->width, w->cap, w->width);
    FM_CHECK(o->solver >= 0 && o->solver < NSOLVERS, "unknown ODE solver %d", o->solver);
    FM_CHECK(fm_fpmode_ok(), "the floating-point mode of this thread does not flush subnormals (call fm_fpmode_set)");
    if (n == 0) return 0;
    if (!solvers[o->solver].step) return solve_dopri5(x, nfe ? nfe : w->evals, traj, w, f, o, t0, t1, n, m);
    const stepper s = {f, w, n, (size_t)n * f->width};
    solve_fixed(x, traj, &s, o->solver, o->steps, t0, t1, m);
    if (nfe)
        for (int r = 0; r < n; r++) nfe[r] = (int)(o->steps * solvers[o->solver].evals);
    return 0;
}
