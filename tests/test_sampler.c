#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/rng.h"
#include "fm/sampler.h"

int main(void)
{
    fm_mlp m;
    const int hidden[] = {16, 8};
    fm_mlp_shape(&m, 2, hidden, 2, FM_ACT_SILU);
    float *p = malloc(sizeof(float) * m.nparams);

    /* 1. A constant field u = c (all weights zero, output bias c): x1 = x0 + c for every solver,
     *    and the recorded trajectory is the straight line x0 + (k/steps) c. */
    memset(p, 0, sizeof(float) * m.nparams);
    p[m.b_off[2]] = 1.5f;
    p[m.b_off[2] + 1] = -2.0f;
    for (int s = 0; s < 3; s++) {
        enum { N = 5, STEPS = 7 };
        float x[N * 2], x0[N * 2], traj[2 * (STEPS + 1) * 2];
        fm_rng_normal(x0, 1, 0, 0, FM_STREAM_SAMPLE, N * 2);
        memcpy(x, x0, sizeof x);
        fm_sampler_work *w = fm_sampler_work_new(&m, N);
        fm_sampler_integrate(x, traj, w, &m, p, N, 2, STEPS, (fm_solver)s);
        for (int i = 0; i < N; i++) {
            CHECK_NEAR(x[2 * i], x0[2 * i] + 1.5, 1e-5);
            CHECK_NEAR(x[2 * i + 1], x0[2 * i + 1] - 2.0, 1e-5);
        }
        for (int j = 0; j < 2; j++)
            for (int k = 0; k <= STEPS; k++)
                CHECK_NEAR(traj[(j * (STEPS + 1) + k) * 2], x0[2 * j] + 1.5 * k / STEPS, 1e-5);
        fm_sampler_work_free(w);
    }

    /* 2. A field u = t (first coordinate) through a ReLU: hidden unit 0 = relu(t), output 0 = that
     *    unit. Exact x1 = x0 + 1/2; Euler with n steps gives x0 + (n-1)/(2n); midpoint and RK4 are
     *    exact for a linear-in-t field. */
    {
        fm_mlp r;
        const int h1[] = {1};
        fm_mlp_shape(&r, 1, h1, 1, FM_ACT_RELU);
        float q[8] = {0};
        q[r.w_off[0] + 1] = 1.0f; /* weight on t (input is [x, t]) */
        q[r.w_off[1]] = 1.0f;
        fm_sampler_work *w = fm_sampler_work_new(&r, 1);
        for (int s = 0; s < 3; s++) {
            float x = 0.25f;
            fm_sampler_integrate(&x, NULL, w, &r, q, 1, 0, 10, (fm_solver)s);
            double want = s == FM_SOLVER_EULER ? 0.25 + 9.0 / 20.0 : 0.75;
            CHECK_NEAR(x, want, 1e-6);
        }
        fm_sampler_work_free(w);
    }

    /* 3. On a random field the higher-order solvers converge faster: error against RK4 at 512 steps. */
    fm_mlp_init(p, &m, 3);
    {
        enum { N = 64 };
        float x0[N * 2], ref[N * 2], x[N * 2];
        fm_rng_normal(x0, 2, 0, 0, FM_STREAM_SAMPLE, N * 2);
        fm_sampler_work *w = fm_sampler_work_new(&m, N);
        memcpy(ref, x0, sizeof x0);
        fm_sampler_integrate(ref, NULL, w, &m, p, N, 0, 512, FM_SOLVER_RK4);
        double err[3];
        for (int s = 0; s < 3; s++) {
            memcpy(x, x0, sizeof x0);
            fm_sampler_integrate(x, NULL, w, &m, p, N, 0, 16, (fm_solver)s);
            err[s] = 0;
            for (int k = 0; k < N * 2; k++) err[s] = fmax(err[s], fabs(x[k] - ref[k]));
        }
        CHECK(err[0] > 1e-4 && err[1] < err[0] / 4 && err[2] < err[1], "errors euler %g midpoint %g rk4 %g",
              err[0], err[1], err[2]);
        /* Integrating in two batches gives the same as one batch: rows are independent. */
        float a[N * 2];
        memcpy(a, x0, sizeof x0);
        fm_sampler_integrate(a, NULL, w, &m, p, 20, 0, 16, FM_SOLVER_EULER);
        fm_sampler_integrate(a + 40, NULL, w, &m, p, N - 20, 0, 16, FM_SOLVER_EULER);
        memcpy(x, x0, sizeof x0);
        fm_sampler_integrate(x, NULL, w, &m, p, N, 0, 16, FM_SOLVER_EULER);
        for (int k = 0; k < N * 2; k++) CHECK_NEAR(a[k], x[k], 1e-5 * (1 + fabs(x[k])));
        fm_sampler_work_free(w);
    }
    free(p);
    CHECK(fm_sampler_parse("rk4") == FM_SOLVER_RK4 && fm_sampler_parse("rk45") == -1, "parse");
    return check_report("test_sampler");
}
