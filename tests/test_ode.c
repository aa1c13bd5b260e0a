/* The ODE solvers on fields with known solutions, their order of accuracy, and classifier-free
 * guidance (DESIGN.md section 6) on a toy conditional model that implements the model interface
 * here, in one file, as any new model would. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/fpmode.h"
#include "fm/mlp.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/rng.h"

static int solver(const char *name) { return fm_names_find(fm_ode_solver_name, name); }

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
static const fm_model_ops toy_ops = {.name = "toy", .build = toy_build, .free_impl = toy_free,
                                     .work_new = toy_work_new, .work_free = free, .prepare = toy_prepare,
                                     .forward = toy_forward};

static void check_guidance(void)
{
    fm_model m = {.ops = &toy_ops};
    toy_build(&m, NULL, NULL, 0);
    float p[1 + (TOY_K + 1) * TOY_D];
    fm_rng_normal(p, 5, 0, 0, FM_STREAM_EVAL, (int)m.nparams);
    CHECK(m.nparams == sizeof p / sizeof p[0] && m.ntensors == 2 && m.tensors[1].offset == 1, "toy layout");
    fm_ode_work *w = fm_ode_work_new(&m, 8);
    fm_model_prepare(w->model, p);
    float x[4 * TOY_D];
    const int y[4] = {0, 1, 2, 1};
    fm_rng_normal(x, 6, 0, 0, FM_STREAM_EVAL, 4 * TOY_D);
    const float ws[] = {0.0f, 1.0f, 2.5f, -0.5f};
    for (int k = 0; k < 4; k++) {
        const float g = ws[k];
        const float *v = fm_ode_velocity(w, p, x, 0.3, y, g, 4);
        for (int i = 0; i < 4; i++)
            for (int d = 0; d < TOY_D; d++) {
                const double uu = p[0] * x[i * TOY_D + d] + p[1 + TOY_K * TOY_D + d]; /* no label */
                const double uc = p[0] * x[i * TOY_D + d] + p[1 + y[i] * TOY_D + d];
                /* w = 0: the unconditional velocity; w = 1: the conditional one; else the formula */
                CHECK_NEAR(v[i * TOY_D + d], uu + g * (uc - uu), 1e-5);
            }
    }
    /* No labels: the unconditional velocity, whatever w. */
    const float *v = fm_ode_velocity(w, p, x, 0.3, NULL, 3.0f, 4);
    CHECK_NEAR(v[1], p[0] * x[1] + p[1 + TOY_K * TOY_D + 1], 1e-6);
    /* A guided Euler step from x: x + h v. */
    float x1[4 * TOY_D];
    memcpy(x1, x, sizeof x);
    fm_ode_integrate(x1, NULL, w, p, y, 2.0f, 4, 0, 1, solver("euler"));
    const double uu = p[0] * x[2] + p[1 + TOY_K * TOY_D], uc = p[0] * x[2] + p[1 + y[1] * TOY_D];
    CHECK_NEAR(x1[2], x[2] + uu + 2.0 * (uc - uu), 1e-5);
    fm_ode_work_free(w);
    fm_model_free(&m);
}

int main(void)
{
    fm_fpmode_set(); /* as every thread that computes (fm/fpmode.h); fm_ode_integrate checks it */
    fm_model m;
    mlp_model(&m, "2", "16,8", "silu");
    const fm_mlp *mlp = m.impl;
    float *p = malloc(sizeof(float) * m.nparams);

    /* 1. A constant field u = c (all weights zero, output bias c): x1 = x0 + c for every solver,
     *    and the recorded trajectory is the straight line x0 + (k/steps) c. */
    memset(p, 0, sizeof(float) * m.nparams);
    p[mlp->b_off[2]] = 1.5f;
    p[mlp->b_off[2] + 1] = -2.0f;
    for (int s = 0; fm_ode_solver_name(s); s++) {
        enum { N = 5, STEPS = 7 };
        float x[N * 2], x0[N * 2], traj[2 * (STEPS + 1) * 2];
        fm_rng_normal(x0, 1, 0, 0, FM_STREAM_SAMPLE, N * 2);
        memcpy(x, x0, sizeof x);
        fm_ode_work *w = fm_ode_work_new(&m, N);
        fm_ode_integrate(x, traj, w, p, NULL, 1.0f, N, 2, STEPS, s);
        for (int i = 0; i < N; i++) {
            CHECK_NEAR(x[2 * i], x0[2 * i] + 1.5, 1e-5);
            CHECK_NEAR(x[2 * i + 1], x0[2 * i + 1] - 2.0, 1e-5);
        }
        for (int j = 0; j < 2; j++)
            for (int k = 0; k <= STEPS; k++)
                CHECK_NEAR(traj[(j * (STEPS + 1) + k) * 2], x0[2 * j] + 1.5 * k / STEPS, 1e-5);
        fm_ode_work_free(w);
    }

    /* 2. A field u = t (first coordinate) through a ReLU: hidden unit 0 = relu(t), output 0 = that
     *    unit. Exact x1 = x0 + 1/2; Euler with n steps gives x0 + (n-1)/(2n); midpoint and RK4 are
     *    exact for a linear-in-t field. */
    {
        fm_model r;
        mlp_model(&r, "1", "1", "relu");
        const fm_mlp *rm = r.impl;
        float q[8] = {0};
        q[rm->w_off[0] + 1] = 1.0f; /* weight on t (input is [x, t]) */
        q[rm->w_off[1]] = 1.0f;
        fm_ode_work *w = fm_ode_work_new(&r, 1);
        for (int s = 0; fm_ode_solver_name(s); s++) {
            float x = 0.25f;
            fm_ode_integrate(&x, NULL, w, q, NULL, 1.0f, 1, 0, 10, s);
            double want = s == solver("euler") ? 0.25 + 9.0 / 20.0 : 0.75;
            CHECK_NEAR(x, want, 1e-6);
        }
        fm_ode_work_free(w);
        fm_model_free(&r);
    }

    /* 3. Order of accuracy on a random field: halving the step divides the error by about 2^order
     *    (against RK4 at 1024 steps; RK4 from 2 steps, before float rounding is all that is left). */
    m.ops->init(p, &m, 3);
    for (size_t k = 0; k < m.nparams; k++) p[k] *= 2.0f; /* a field that bends enough to show RK4's order */
    {
        enum { N = 64 };
        float x0[N * 2], ref[N * 2], x[N * 2];
        fm_rng_normal(x0, 2, 0, 0, FM_STREAM_SAMPLE, N * 2);
        fm_ode_work *w = fm_ode_work_new(&m, N);
        memcpy(ref, x0, sizeof x0);
        fm_ode_integrate(ref, NULL, w, p, NULL, 1.0f, N, 0, 1024, solver("rk4"));
        const int order[3] = {1, 2, 4}, coarse[3] = {32, 16, 4};
        for (int s = 0; s < 3; s++) {
            double err[2];
            for (int k = 0; k < 2; k++) {
                memcpy(x, x0, sizeof x0);
                fm_ode_integrate(x, NULL, w, p, NULL, 1.0f, N, 0, coarse[s] << k, s);
                err[k] = 0;
                for (int i = 0; i < N * 2; i++) err[k] = fmax(err[k], fabs(x[i] - ref[i]));
            }
            const double ratio = err[0] / err[1], want = (double)(1 << order[s]);
            CHECK(ratio > 0.7 * want && ratio < 1.4 * want, "%s: error ratio %g for order %d (errors %g, %g)",
                  fm_ode_solver_name(s), ratio, order[s], err[0], err[1]);
            CHECK(fm_ode_evals(s) == (s == 0 ? 1 : s == 1 ? 2 : 4), "%s evals", fm_ode_solver_name(s));
        }
        /* Integrating in two batches gives the same as one batch: rows are independent. */
        float a[N * 2];
        memcpy(a, x0, sizeof x0);
        fm_ode_integrate(a, NULL, w, p, NULL, 1.0f, 20, 0, 16, solver("euler"));
        fm_ode_integrate(a + 40, NULL, w, p, NULL, 1.0f, N - 20, 0, 16, solver("euler"));
        memcpy(x, x0, sizeof x0);
        fm_ode_integrate(x, NULL, w, p, NULL, 1.0f, N, 0, 16, solver("euler"));
        for (int k = 0; k < N * 2; k++) CHECK_NEAR(a[k], x[k], 1e-5 * (1 + fabs(x[k])));
        fm_ode_work_free(w);
    }
    free(p);
    fm_model_free(&m);
    CHECK(solver("rk4") == 2 && solver("rk45") == -1 && fm_ode_solver_name(3) == NULL, "names");
    check_guidance();
    return check_report("test_ode");
}
