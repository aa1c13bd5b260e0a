#include <string.h>

#include "check.h"
#include "fm/names.h"
#include "fm/path.h"
#include "fm/rng.h"

int main(void)
{
    const double ts[] = {0.01, 0.1, 0.3, 0.5, 0.77, 0.9, 0.99};
    const double z = 1.7, x0 = -0.6;
    for (int s = 0; s < 3; s++) {
        /* eps = 0 so that the sqrt schedule's beta' is the exact derivative. */
        fm_path p = {s, 0.0, 0.05};
        for (int i = 0; i < 7; i++) {
            double t = ts[i], h = 1e-6;
            fm_path_coef a = fm_path_coeffs(&p, t + h), b = fm_path_coeffs(&p, t - h), c = fm_path_coeffs(&p, t);
            double fd = ((a.alpha * z + a.beta * x0) - (b.alpha * z + b.beta * x0)) / (2 * h);
            double u = c.dalpha * z + c.dbeta * x0;
            CHECK(fabs(fd - u) <= 1e-6 * (1 + fabs(u)), "%s at t=%g: fd %.10g vs u %.10g", fm_path_schedule_name(p.schedule), t, fd, u);
            /* The float batch version agrees with the double formula. */
            float tf = (float)t, x0f = (float)x0, zf = (float)z, xt, uf;
            fm_path_sample(&xt, &uf, &p, &tf, &x0f, &zf, 1, 1);
            fm_path_coef cf = fm_path_coeffs(&p, tf);
            CHECK_NEAR(uf, cf.dalpha * zf + cf.dbeta * x0f, 1e-5 * (1 + fabs(u)));
            CHECK_NEAR(xt, cf.alpha * zf + cf.beta * x0f, 1e-6);
        }
        /* Endpoints: x_0 = x0 (alpha 0, beta 1) for every schedule. */
        fm_path_coef c0 = fm_path_coeffs(&p, 0.0);
        CHECK_NEAR(c0.alpha, 0.0, 1e-15);
        CHECK_NEAR(c0.beta, 1.0, 1e-15);
    }
    /* sqrt with eps: finite as t -> 1, bounded by 0.5/eps, and beta' = -0.5/(sqrt(1-t)+eps). */
    fm_path p = {fm_names_find(fm_path_schedule_name, "sqrt"), 1e-4, 0};
    const float t1[] = {0.999999f, 1.0f - 1e-7f, 1.0f};
    for (int i = 0; i < 3; i++) {
        float x0f = 1.0f, zf = 0.0f, xt, u;
        fm_path_sample(&xt, &u, &p, &t1[i], &x0f, &zf, 1, 1);
        CHECK(isfinite(u) && isfinite(xt), "t=%.9g: u %g, xt %g", t1[i], u, xt);
        CHECK(fabs(u) <= 0.5 / 1e-4 + 1e-3, "t=%.9g: |u| = %g exceeds 0.5/eps", t1[i], u);
    }
    fm_path_coef c = fm_path_coeffs(&p, 0.75);
    CHECK_NEAR(c.dbeta, -0.5 / (0.5 + 1e-4), 1e-15);
    /* linear at t = 1 ends at z + sigma_min x0. */
    fm_path lin = {fm_names_find(fm_path_schedule_name, "linear"), 0, 0.1};
    fm_path_coef l1 = fm_path_coeffs(&lin, 1.0);
    CHECK_NEAR(l1.alpha, 1.0, 1e-15);
    CHECK_NEAR(l1.beta, 0.1, 1e-15);
    CHECK(fm_names_find(fm_path_schedule_name, "cosine") == 2 && fm_names_find(fm_path_schedule_name, "Sqrt") == -1,
          "names");
    CHECK(fm_path_schedule_name(3) == NULL && fm_path_schedule_name(-1) == NULL, "the list ends");
    /* The CFM loss: sum of squares, and its gradient 2 scale (out - u). */
    const float out[4] = {1, 2, 3, 4}, tgt[4] = {0, 2, 5, 4};
    float dout[4];
    CHECK_NEAR(fm_path_loss(dout, out, tgt, 2, 2, 0.25f), 5.0, 1e-12);
    CHECK_NEAR(dout[0], 0.5, 1e-7);
    CHECK_NEAR(dout[2], -1.0, 1e-7);

    /* Training times: uniform is the raw uniform stream (the seed's draws, unchanged); logit_normal
     * has logit(t) ~ N(mean, std^2), inside [0, 1), whatever the batch split. */
    {
        enum { N = 20000 };
        static float t[N], u[N], part[N];
        const fm_path_t_dist uni = {fm_names_find(fm_path_t_dist_name, "uniform"), 0, 1};
        fm_path_draw_t(t, &uni, 3, 7, 100, N);
        fm_rng_uniform_rows(u, 3, 7, 100, FM_STREAM_T, N);
        CHECK(memcmp(t, u, sizeof t) == 0, "uniform times are the uniform stream");
        const fm_path_t_dist ln = {fm_names_find(fm_path_t_dist_name, "logit_normal"), 0.5, 0.8};
        fm_path_draw_t(t, &ln, 3, 7, 100, N);
        fm_path_draw_t(part, &ln, 3, 7, 100, 1234);
        fm_path_draw_t(part + 1234, &ln, 3, 7, 100 + 1234, N - 1234);
        CHECK(memcmp(t, part, sizeof t) == 0, "logit-normal times depend on the split");
        double m = 0.0, v = 0.0;
        int inside = 1;
        for (int i = 0; i < N; i++) {
            inside &= t[i] >= 0.0f && t[i] < 1.0f;
            const double l = log(t[i] / (1.0 - t[i]));
            m += l / N;
            v += l * l / N;
        }
        CHECK(inside, "times outside [0, 1)");
        CHECK_NEAR(m, 0.5, 0.03);
        CHECK_NEAR(sqrt(v - m * m), 0.8, 0.03);
        const fm_path_t_dist far = {ln.dist, 9.0, 10.0}; /* sigmoid rounds to 1 in float: kept below it */
        fm_path_draw_t(t, &far, 3, 7, 100, N);
        for (int i = 0; i < N; i++) inside &= t[i] < 1.0f;
        CHECK(inside, "a time of 1");
        CHECK(fm_path_t_dist_name(2) == NULL, "names");
    }
    return check_report("test_path");
}
