/* The ODE solvers on fields with known solutions, their order of accuracy, and classifier-free
 * guidance (DESIGN.md section 6) on a toy conditional model that implements the model interface
 * here, in one file, as any new model would. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/dist.h"
#include "fm/field.h"
#include "fm/fpmode.h"
#include "fm/mlp.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/rng.h"


/* An MLP behind the model interface, as fmtrain builds it from a config. */
static void mlp_model(fm_model *m, const char *dim, const char *hidden, const char *act)
{
    char err[256];
    fm_config c;
    fm_config_defaults(&c);
    CHECK(fm_config_set(&c, "data.target", "gaussian", err, sizeof err) == 0 &&
          fm_config_set(&c, "data.dim", dim, err, sizeof err) == 0 &&
          fm_config_set(&c, "model.hidden", hidden, err, sizeof err) == 0 &&
          fm_config_set(&c, "model.activation", act, err, sizeof err) == 0 && fm_model_build(m, &c, err, sizeof err) == 0,
          "%s", err);
}

/* ---- a toy conditional model: u(x, t, y) = a x + b[y], one scalar a and a row b[y] per label
 * (row K = no label). Its parameters: a, then b [K + 1, dim]. ---- */
enum { TOY_K = 3, TOY_D = 2 };
typedef struct { float out[64 * TOY_D]; } toy_work;
static int toy_build(fm_model *m, const fm_config *c, char *err, int cap)
{
    (void)c, (void)err, (void)cap;
    m->dim = TOY_D;
    m->classes = TOY_K;
    const uint64_t one[1] = {1}, b[2] = {TOY_K + 1, TOY_D};
    fm_model_add_tensor(m, "a", 1, one);
    fm_model_add_tensor(m, "b", 2, b);
    return 0;
}
static void toy_free(void *impl) { (void)impl; }
static void *toy_work_new(const fm_model *m, int cap, int backward)
{
    (void)m, (void)cap, (void)backward;
    return calloc(1, sizeof(toy_work));
}
static void toy_prepare(void *w, const fm_model *m, const float *params) { (void)w, (void)m, (void)params; }
static const float *toy_forward(void *w, const fm_model *m, const float *params, const fm_model_in *in)
{
    float *out = ((toy_work *)w)->out;
    for (int i = 0; i < in->n; i++) {
        const int y = in->y ? in->y[i] : m->classes;
        for (int d = 0; d < TOY_D; d++) out[i * TOY_D + d] = params[0] * in->x[i * TOY_D + d] + params[1 + y * TOY_D + d];
    }
    return out;
}
static const float *toy_jvp(void *w, const fm_model *m, const float *params, const float *dx, int n)
{
    (void)m;
    float *out = ((toy_work *)w)->out;
    for (int i = 0; i < n * TOY_D; i++) out[i] = params[0] * dx[i];
    return out;
}
static const fm_model_ops toy_ops = {.name = "toy", .build = toy_build, .free_impl = toy_free,
                                     .work_new = toy_work_new, .work_free = free, .prepare = toy_prepare,
                                     .forward = toy_forward, .jvp = toy_jvp};

static int solver(const char *name) { return fm_names_find(fm_ode_solver_name, name); }

static void check_guidance(void)
{
    fm_model m = {.ops = &toy_ops};
    toy_build(&m, NULL, NULL, 0);
    float p[1 + (TOY_K + 1) * TOY_D];
    fm_rng_normal(p, 5, 0, 0, FM_STREAM_EVAL, (int)m.nparams);
    CHECK(m.nparams == sizeof p / sizeof p[0] && m.ntensors == 2 && m.tensors[1].offset == 1, "toy layout");
    fm_field *f = fm_field_new(&m, 8);
    f->params = p;
    fm_model_prepare(f->model, p);
    float x[4 * TOY_D];
    const int y[4] = {0, 1, 2, 1}, rows[3] = {3, 0, 2};
    fm_rng_normal(x, 6, 0, 0, FM_STREAM_EVAL, 4 * TOY_D);
    const float ws[] = {0.0f, 1.0f, 2.5f, -0.5f};
    f->y = y;
    for (int k = 0; k < 4; k++) {
        const float g = ws[k];
        f->guidance = g;
        const float *v = fm_field_velocity(f, x, 0.3, NULL, NULL, 4);
        for (int i = 0; i < 4; i++)
            for (int d = 0; d < TOY_D; d++) {
                const float none = p[1 + TOY_K * TOY_D + d], cond = p[1 + y[i] * TOY_D + d];
                CHECK_NEAR(v[i * TOY_D + d], p[0] * x[i * TOY_D + d] + none + g * (cond - none), 1e-5);
            }
        /* rows pick the labels of the caller's rows: row i of the call is caller's row rows[i] */
        v = fm_field_velocity(f, x, 0.3, NULL, rows, 3);
        for (int i = 0; i < 3; i++) {
            const float none = p[1 + TOY_K * TOY_D], cond = p[1 + y[rows[i]] * TOY_D];
            CHECK_NEAR(v[i * TOY_D], p[0] * x[i * TOY_D] + none + g * (cond - none), 1e-5);
        }
    }
    /* Without labels the field is the unconditional one, whatever the guidance. */
    f->y = NULL;
    f->guidance = 3.0f;
    const float *v = fm_field_velocity(f, x, 0.3, NULL, NULL, 4);
    CHECK_NEAR(v[0], p[0] * x[0] + p[1 + TOY_K * TOY_D], 1e-5);

    /* The log-likelihood of the linear flow u = a x (b zeroed): x1 = e^a x0, so p_1 = N(0, e^{2a} I)
     * and div u = a D: each solver gives log p_1(x) from x's reverse path and log p_0(x0). */
    memset(p + 1, 0, sizeof(float) * (TOY_K + 1) * TOY_D);
    p[0] = 0.7f;
    fm_model_prepare(f->model, p);
    const fm_ode_field lf = fm_field_logp_ode(f);
    CHECK(lf.width == TOY_D + 1, "likelihood width %d", lf.width);
    fm_ode_work *w = fm_ode_work_new(4, lf.width);
    fm_dist *p0 = fm_dist_gaussian(TOY_D, 1.0f), *p1 = fm_dist_gaussian(TOY_D, (float)exp(0.7));
    for (int s = 0; fm_ode_solver_name(s); s++) {
        float z[4 * (TOY_D + 1)];
        for (int i = 0; i < 4; i++) {
            memcpy(z + i * (TOY_D + 1), x + i * TOY_D, sizeof(float) * TOY_D);
            z[i * (TOY_D + 1) + TOY_D] = 0.0f;
        }
        const fm_ode_opts o = {s, 64, 1e-7, 1e-6};
        CHECK(fm_ode_solve(z, NULL, NULL, w, &lf, &o, 1.0, 0.0, 4, 0) == 0, "%s", fm_ode_solver_name(s));
        for (int i = 0; i < 4; i++) {
            const double got = fm_dist_logpdf(p0, z + i * (TOY_D + 1)) + z[i * (TOY_D + 1) + TOY_D];
            const double want = fm_dist_logpdf(p1, x + i * TOY_D);
            CHECK(fabs(got - want) < (s == 0 ? 0.05 : 1e-3), "%s: log p %g, exact %g", fm_ode_solver_name(s), got, want);
        }
    }
    fm_dist_free(p0);
    fm_dist_free(p1);
    fm_ode_work_free(w);
    fm_field_free(f);
    fm_model_free(&m);
}

/* ---- fields with known solutions, straight on the solver interface ---- */

/* dx/dt = cos(30 t) x: x(t) = x(0) exp(sin(30 t) / 30), wiggly enough to take dopri5 many steps. */
static float g_out[64 * 4];
static const float *cos_field(void *ctx, const float *x, double t, const float *t_row, const int *rows, int n)
{
    (void)ctx, (void)rows;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 2; c++) g_out[2 * i + c] = (float)cos(30.0 * (t_row ? (double)t_row[i] : t)) * x[2 * i + c];
    return g_out;
}
static const float *nan_field(void *ctx, const float *x, double t, const float *t_row, const int *rows, int n)
{
    (void)ctx, (void)x, (void)t, (void)t_row, (void)rows;
    for (int i = 0; i < 2 * n; i++) g_out[i] = NAN;
    return g_out;
}

static double cos_solution(double x0, double t) { return x0 * exp(sin(30.0 * t) / 30.0); }

/* The largest error at t = 1 of n rows started at x0. */
static double cos_error(const float *x, const float *x0, int n)
{
    double e = 0.0;
    for (int i = 0; i < 2 * n; i++) e = fmax(e, fabs(x[i] - cos_solution(x0[i], 1.0)));
    return e;
}

static void check_known_solution(void)
{
    enum { N = 16 };
    const fm_ode_field f = {2, cos_field, NULL};
    float x0[2 * N], x[2 * N];
    for (int i = 0; i < 2 * N; i++) x0[i] = 0.5f + 0.1f * (float)i;
    fm_ode_work *w = fm_ode_work_new(N, 2);
    /* Fixed steps: halving the step divides the error by 2^order. */
    const char *names[4] = {"euler", "midpoint", "heun", "rk4"};
    const int order[4] = {1, 2, 2, 4}, coarse[4] = {512, 128, 128, 32}, evals[4] = {1, 2, 2, 4};
    for (int k = 0; k < 4; k++) {
        double err[2];
        for (int h = 0; h < 2; h++) {
            memcpy(x, x0, sizeof x);
            int nfe[N];
            const fm_ode_opts o = {solver(names[k]), coarse[k] << h, 0, 0};
            CHECK(fm_ode_solve(x, nfe, NULL, w, &f, &o, 0.0, 1.0, N, 0) == 0, "%s", names[k]);
            CHECK(nfe[N - 1] == evals[k] * (coarse[k] << h), "%s: %d evaluations", names[k], nfe[N - 1]);
            err[h] = cos_error(x, x0, N);
        }
        const double ratio = err[0] / err[1], want = (double)(1 << order[k]);
        CHECK(ratio > 0.7 * want && ratio < 1.4 * want, "%s: error ratio %g for order %d (errors %g, %g)", names[k], ratio,
              order[k], err[0], err[1]);
        CHECK(fm_ode_evals(solver(names[k])) == evals[k], "%s evals", names[k]);
    }
    /* dopri5: the error follows the tolerance, and a fifth-order method's step grows as tol^(1/5): 10^4 times
     * tighter costs about 10^(4/5) = 6.3 times the evaluations. Its trajectory, recorded on a grid of 10 by cubic
     * Hermite interpolation between its steps (error O(h^4)), follows the solution. */
    const int d5 = solver("dopri5");
    CHECK(fm_ode_evals(d5) == 0, "dopri5 is adaptive");
    double mean_nfe[2];
    const double tols[2] = {1e-2, 1e-6};
    for (int k = 0; k < 2; k++) {
        memcpy(x, x0, sizeof x);
        int nfe[N];
        float traj[2 * 11 * 2];
        const fm_ode_opts o = {d5, 10, tols[k], tols[k]};
        CHECK(fm_ode_solve(x, nfe, traj, w, &f, &o, 0.0, 1.0, N, 2) == 0, "dopri5 tol %g", tols[k]);
        const double err = cos_error(x, x0, N);
        CHECK(err < 20 * tols[k] * 3.0 && err > 0, "dopri5 tol %g: error %g", tols[k], err);
        mean_nfe[k] = 0;
        for (int i = 0; i < N; i++) mean_nfe[k] += nfe[i] / (double)N;
        for (int j = 0; j < 2; j++)
            for (int g = 0; g <= 10; g++)
                for (int c = 0; c < 2; c++) {
                    const double want = cos_solution(x0[2 * j + c], g / 10.0);
                    CHECK(fabs(traj[(j * 11 + g) * 2 + c] - want) < 50 * tols[k] + 1e-3, "dopri5 trajectory row %d, point %d: "
                          "%g vs %g", j, g, traj[(j * 11 + g) * 2 + c], want);
                }
        CHECK(traj[10 * 2] == x[0], "the last grid point is the end point");
    }
    const double growth = mean_nfe[1] / mean_nfe[0];
    CHECK(growth > 3.5 && growth < 12, "dopri5 evaluations %g -> %g for tol 1e-2 -> 1e-6 (x%g, want about 6.3)",
          mean_nfe[0], mean_nfe[1], growth);
    /* Rows step alone: integrating them in two batches, or backwards from t = 1, changes nothing. */
    float a[2 * N];
    memcpy(a, x0, sizeof x0);
    memcpy(x, x0, sizeof x0);
    const fm_ode_opts o = {d5, 10, 1e-5, 1e-5};
    fm_ode_solve(a, NULL, NULL, w, &f, &o, 0.0, 1.0, 5, 0);
    fm_ode_solve(a + 10, NULL, NULL, w, &f, &o, 0.0, 1.0, N - 5, 0);
    fm_ode_solve(x, NULL, NULL, w, &f, &o, 0.0, 1.0, N, 0);
    CHECK(memcmp(a, x, sizeof x) == 0, "dopri5 rows depend on their batch");
    fm_ode_solve(x, NULL, NULL, w, &f, &o, 1.0, 0.0, N, 0);
    for (int i = 0; i < 2 * N; i++) CHECK_NEAR(x[i], x0[i], 1e-4 * (1 + fabs(x0[i])) * 10);
    /* A field that is not finite ends in -1, not in an endless loop. */
    const fm_ode_field bad = {2, nan_field, NULL};
    memcpy(x, x0, sizeof x0);
    CHECK(fm_ode_solve(x, NULL, NULL, w, &bad, &o, 0.0, 1.0, N, 0) == -1, "NaN field");
    fm_ode_work_free(w);
}

static void check_all(void)
{
    fm_fpmode_set(); /* as every thread that computes (fm/fpmode.h); fm_ode_solve checks it */
    fm_model m;
    mlp_model(&m, "2", "16,8", "silu");
    const fm_mlp *mlp = m.impl;
    float *p = malloc(sizeof(float) * m.nparams);
    fm_field *fld = fm_field_new(&m, 64);
    fld->params = p;
    const fm_ode_field vf = fm_field_velocity_ode(fld);
    fm_ode_work *w = fm_ode_work_new(64, 2);

    /* 1. A constant field u = c (all weights zero, output bias c): x1 = x0 + c for every solver,
     *    and the recorded trajectory is the straight line x0 + (k/steps) c. */
    memset(p, 0, sizeof(float) * m.nparams);
    p[mlp->b_off[2]] = 1.5f;
    p[mlp->b_off[2] + 1] = -2.0f;
    fm_model_prepare(fld->model, p);
    for (int s = 0; fm_ode_solver_name(s); s++) {
        enum { N = 5, STEPS = 7 };
        float x[N * 2], x0[N * 2], traj[2 * (STEPS + 1) * 2];
        fm_rng_normal(x0, 1, 0, 0, FM_STREAM_SAMPLE, N * 2);
        memcpy(x, x0, sizeof x);
        const fm_ode_opts o = {s, STEPS, 1e-5, 1e-5};
        fm_ode_solve(x, NULL, traj, w, &vf, &o, 0.0, 1.0, N, 2);
        for (int i = 0; i < N; i++) {
            CHECK_NEAR(x[2 * i], x0[2 * i] + 1.5, 1e-5);
            CHECK_NEAR(x[2 * i + 1], x0[2 * i + 1] - 2.0, 1e-5);
        }
        for (int j = 0; j < 2; j++)
            for (int k = 0; k <= STEPS; k++)
                CHECK_NEAR(traj[(j * (STEPS + 1) + k) * 2], x0[2 * j] + 1.5 * k / STEPS, 1e-5);
    }

    /* 2. A field u = t (first coordinate) through a ReLU: hidden unit 0 = relu(t), output 0 = that
     *    unit. Exact x1 = x0 + 1/2; Euler with n steps gives x0 + (n-1)/(2n); the others are
     *    exact for a linear-in-t field. */
    {
        fm_model r;
        mlp_model(&r, "1", "1", "relu");
        const fm_mlp *rm = r.impl;
        float q[8] = {0};
        q[rm->w_off[0] + 1] = 1.0f; /* weight on t (input is [x, t]) */
        q[rm->w_off[1]] = 1.0f;
        fm_field *rf = fm_field_new(&r, 1);
        rf->params = q;
        fm_model_prepare(rf->model, q);
        const fm_ode_field rv = fm_field_velocity_ode(rf);
        fm_ode_work *rw = fm_ode_work_new(1, 1);
        for (int s = 0; fm_ode_solver_name(s); s++) {
            float x = 0.25f;
            const fm_ode_opts o = {s, 10, 1e-6, 1e-6};
            fm_ode_solve(&x, NULL, NULL, rw, &rv, &o, 0.0, 1.0, 1, 0);
            double want = s == solver("euler") ? 0.25 + 9.0 / 20.0 : 0.75;
            CHECK_NEAR(x, want, 1e-5);
        }
        fm_ode_work_free(rw);
        fm_field_free(rf);
        fm_model_free(&r);
    }

    /* 3. The MLP's divergence: exactly, against central differences of its forward, and
     *    Hutchinson's estimate averaged over many probes against it. */
    m.ops->init(p, &m, 3);
    fm_model_prepare(fld->model, p);
    {
        enum { N = 8 };
        float x[N * 3], x2[N * 2], probe[N * 2];
        fm_rng_normal(x2, 2, 0, 0, FM_STREAM_SAMPLE, N * 2);
        for (int i = 0; i < N; i++) x[3 * i] = x2[2 * i], x[3 * i + 1] = x2[2 * i + 1], x[3 * i + 2] = 0.0f;
        const fm_ode_field lf = fm_field_logp_ode(fld);
        float div[N];
        const float *out = lf.eval(lf.ctx, x, 0.4, NULL, NULL, N);
        for (int i = 0; i < N; i++) div[i] = out[3 * i + 2];
        for (int i = 0; i < N; i++) {
            double fd = 0.0;
            for (int c = 0; c < 2; c++) {
                float xp[2] = {x2[2 * i], x2[2 * i + 1]}, xm[2] = {x2[2 * i], x2[2 * i + 1]};
                xp[c] += 1e-2f;
                xm[c] -= 1e-2f;
                const double vp = fm_field_velocity(fld, xp, 0.4, NULL, NULL, 1)[c];
                const double vm = fm_field_velocity(fld, xm, 0.4, NULL, NULL, 1)[c];
                fd += (vp - vm) / 2e-2;
            }
            CHECK(fabs(div[i] - fd) < 2e-3 * (1 + fabs(fd)), "row %d: divergence %g, differences %g", i, div[i], fd);
        }
        double mean = 0.0;
        enum { PROBES = 4000 };
        for (int k = 0; k < PROBES; k++) {
            fm_rng_uniform(probe, 7, (uint32_t)k, 0, FM_STREAM_EVAL, N * 2);
            for (int j = 0; j < N * 2; j++) probe[j] = probe[j] < 0.5f ? -1.0f : 1.0f;
            fld->probe = probe;
            mean += lf.eval(lf.ctx, x, 0.4, NULL, NULL, N)[2] / PROBES;
        }
        fld->probe = NULL;
        CHECK(fabs(mean - div[0]) < 0.05 * (1 + fabs(div[0])), "Hutchinson mean %g vs exact %g", mean, div[0]);
    }

    /* 4. Rows are independent: two batches give what one gives (fixed steps and dopri5). */
    for (size_t k = 0; k < m.nparams; k++) p[k] *= 2.0f;
    fm_model_changed(fld->model);
    fm_model_prepare(fld->model, p);
    for (int s = 0; fm_ode_solver_name(s); s++) {
        enum { N = 64 };
        float x0[N * 2], x[N * 2], a[N * 2];
        fm_rng_normal(x0, 2, 0, 0, FM_STREAM_SAMPLE, N * 2);
        const fm_ode_opts o = {s, 16, 1e-5, 1e-5};
        memcpy(a, x0, sizeof x0);
        fm_ode_solve(a, NULL, NULL, w, &vf, &o, 0.0, 1.0, 20, 0);
        fm_ode_solve(a + 40, NULL, NULL, w, &vf, &o, 0.0, 1.0, N - 20, 0);
        memcpy(x, x0, sizeof x0);
        fm_ode_solve(x, NULL, NULL, w, &vf, &o, 0.0, 1.0, N, 0);
        for (int k = 0; k < N * 2; k++) CHECK_NEAR(a[k], x[k], 1e-5 * (1 + fabs(x[k])));
    }
    fm_ode_work_free(w);
    fm_field_free(fld);
    free(p);
    fm_model_free(&m);
    CHECK(solver("rk4") == 3 && solver("dopri5") == 4 && solver("rk45") == -1 && fm_ode_solver_name(5) == NULL, "names");
    check_known_solution();
    check_guidance();
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512). */
    check_each_isa(check_all);
    return check_report("test_ode");
}
