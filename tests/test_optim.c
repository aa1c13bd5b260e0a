#include "check.h"
#include "fm/names.h"
#include "fm/optim.h"

int main(void)
{
    /* Adam by hand, lr 0.01, betas (0.9, 0.999), eps 1e-8, two parameters.
     * Step 1: m = 0.1 g, v = 0.001 g^2, so m_hat = g, sqrt(v_hat) = |g|: p -= lr sign(g)
     *         (less lr*eps/|g|): 1 -> 0.9900000002, -2 -> -1.99000000007.
     * Steps 2 and 3 (g = (-0.25, 0.75), then (2, 0.125)) worked through the same formulas in
     * double precision: p = (0.98733662987, -1.98733662969), then (0.98063015345, -1.98575879382). */
    float p[2] = {1.0f, -2.0f}, m[2] = {0}, v[2] = {0};
    const float g[3][2] = {{0.5f, -1.5f}, {-0.25f, 0.75f}, {2.0f, 0.125f}};
    const double want[3][2] = {{0.9900000002, -1.9900000000666667},
                               {0.9873366298707846, -1.9873366296925254},
                               {0.9806301534529153, -1.9857587938199366}};
    fm_optim a = {0.01, 0.9, 0.999, 1e-8, 0, fm_names_find(fm_optim_schedule_name, "constant"), 0};
    for (int s = 0; s < 3; s++) {
        fm_optim_adam_step(p, m, v, g[s], 2, &a, s + 1, fm_optim_lr(&a, s + 1, 3));
        for (int i = 0; i < 2; i++) CHECK_NEAR(p[i], want[s][i], 2e-7);
    }
    CHECK_NEAR(m[0], 0.9 * (0.9 * 0.05 + 0.1 * -0.25) + 0.1 * 2.0, 1e-7);

    /* Clipping: the norm of (3, 4) is 5; clipped to 1 it becomes (0.6, 0.8); under the limit unchanged. */
    float c[2] = {3, 4};
    CHECK_NEAR(fm_optim_clip(c, 2, 1.0), 5.0, 1e-12);
    CHECK_NEAR(c[0], 0.6, 1e-7);
    CHECK_NEAR(c[1], 0.8, 1e-7);
    CHECK_NEAR(fm_optim_clip(c, 2, 10.0), 1.0, 1e-6);
    CHECK_NEAR(c[0], 0.6, 1e-7);
    float bad[2] = {1, NAN};
    CHECK(isnan(fm_optim_norm(bad, 2)), "a NaN gradient must give a NaN norm");

    /* Schedules: warmup ramps linearly; cosine reaches half at mid-way and 0 at the end. */
    fm_optim w = {1.0, 0.9, 0.999, 1e-8, 0, fm_names_find(fm_optim_schedule_name, "cosine"), 10};
    CHECK_NEAR(fm_optim_lr(&w, 5, 110), 0.5, 1e-12);
    CHECK_NEAR(fm_optim_lr(&w, 10, 110), 1.0, 1e-12);
    CHECK_NEAR(fm_optim_lr(&w, 60, 110), 0.5, 1e-12);
    CHECK_NEAR(fm_optim_lr(&w, 110, 110), 0.0, 1e-12);
    return check_report("test_optim");
}
