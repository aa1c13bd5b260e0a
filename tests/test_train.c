/* Two training steps against a naive reference: the draws of each sample (from fm's per-index
 * generator), x_t and the target velocity in double, the MLP's forward and backward in double
 * loops, Adam in double. The trainer's global gradient at step 1 and at step 2 must equal the
 * reference's from the parameters the trainer had before that step; so a forward that reads
 * weights prepared at step 1 (stale packed narrow layers) fails at step 2. Then a saturated model:
 * no subnormal float anywhere in the trainer's or the sampler's buffers (fm/fpmode.h). One MPI rank. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/comm.h"
#include "fm/dist.h"
#include "fm/field.h"
#include "fm/fpmode.h"
#include "fm/ode.h"
#include "fm/mlp.h"
#include "fm/rng.h"
#include "fm/train.h"

static double silu(double z) { return z / (1.0 + exp(-z)); }
static double dsilu(double z)
{
    const double s = 1.0 / (1.0 + exp(-z));
    return s * (1.0 + z * (1.0 - s));
}

/* The global batch's loss (DESIGN.md: 1/(B D) sum of squared errors) and its gradient at params p. */
static double reference_grad(double *grad /* [nparams] */, const fm_trainer *tr, const float *p, long step)
{
    const fm_mlp *m = tr->model.impl;
    const int D = tr->model.dim, L = m->nlayers;
    const long B = tr->cfg.batch;
    const uint64_t seed = (uint64_t)tr->cfg.seed;
    double *a[FM_MLP_MAX_LAYERS + 1], *z[FM_MLP_MAX_LAYERS], *g = calloc(2048, sizeof(double)),
           *gn = calloc(2048, sizeof(double));
    for (int l = 0; l <= L; l++) a[l] = calloc((size_t)m->dims[l], sizeof(double));
    for (int l = 0; l < L; l++) z[l] = calloc((size_t)m->dims[l + 1], sizeof(double));
    memset(grad, 0, sizeof(double) * m->nparams);
    fm_dist *ring = fm_dist_gmm_ring((int)tr->cfg.modes, (float)tr->cfg.radius, (float)tr->cfg.std, 0.0f);
    double loss = 0.0;
    for (long i = 0; i < B; i++) {
        float t, x0[8], zz[8];
        fm_rng_uniform(&t, seed, (uint32_t)step, (uint32_t)i, FM_STREAM_T, 1);
        fm_rng_normal(x0, seed, (uint32_t)step, (uint32_t)i, FM_STREAM_X0, D);
        fm_dist_sample(zz, ring, seed, (uint32_t)step, (uint32_t)i, FM_STREAM_Z, 1);
        /* the sqrt path: alpha = t, beta = sqrt(1 - t), beta' = -0.5 / (sqrt(1 - t) + eps) */
        const double s = sqrt(1.0 - t), db = -0.5 / (s + tr->cfg.eps);
        double u[8];
        for (int d = 0; d < D; d++) {
            a[0][d] = t * (double)zz[d] + s * x0[d];
            u[d] = zz[d] + db * x0[d];
        }
        a[0][D] = t;
        for (int l = 0; l < L; l++) {
            const float *W = p + m->w_off[l], *b = p + m->b_off[l];
            for (int o = 0; o < m->dims[l + 1]; o++) {
                double acc = b[o];
                for (int k = 0; k < m->dims[l]; k++) acc += (double)W[(size_t)o * m->dims[l] + k] * a[l][k];
                z[l][o] = acc;
                a[l + 1][o] = l < L - 1 ? silu(acc) : acc;
            }
        }
        for (int d = 0; d < D; d++) {
            const double e = a[L][d] - u[d];
            loss += e * e;
            g[d] = 2.0 * e / ((double)B * D);
        }
        for (int l = L - 1; l >= 0; l--) {
            double *dW = grad + m->w_off[l], *dB = grad + m->b_off[l];
            for (int o = 0; o < m->dims[l + 1]; o++) {
                dB[o] += g[o];
                for (int k = 0; k < m->dims[l]; k++) dW[(size_t)o * m->dims[l] + k] += g[o] * a[l][k];
            }
            if (l == 0) break;
            const float *W = p + m->w_off[l];
            for (int k = 0; k < m->dims[l]; k++) {
                double acc = 0.0;
                for (int o = 0; o < m->dims[l + 1]; o++) acc += g[o] * W[(size_t)o * m->dims[l] + k];
                gn[k] = acc * dsilu(z[l - 1][k]);
            }
            memcpy(g, gn, sizeof(double) * (size_t)m->dims[l]);
        }
    }
    for (int l = 0; l <= L; l++) free(a[l]);
    for (int l = 0; l < L; l++) free(z[l]);
    free(g);
    free(gn);
    fm_dist_free(ring);
    return loss / ((double)B * D);
}

static void check_grad(const fm_trainer *tr, const double *ref, long step)
{
    const size_t n = tr->model.nparams;
    double scale = 0.0, err = 0.0;
    for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(ref[k]));
    for (size_t k = 0; k < n; k++) err = fmax(err, fabs(tr->grad[k] - ref[k]));
    CHECK(err <= 2e-5 * scale, "step %ld: gradient differs from the reference by %.3g (largest %.3g)", step, err, scale);
}

static size_t subnormals(const float *a, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += fpclassify(a[i]) == FP_SUBNORMAL;
    return c;
}

/* Every activation, derivative and gradient buffer of an MLP's work for rows rows. */
static size_t work_subnormals(const fm_mlp_work *w, const fm_mlp *m, int rows)
{
    size_t c = 0, maxld = 0;
    for (int l = 0; l < m->nlayers; l++) {
        const size_t len = (size_t)rows * w->ld[l];
        c += subnormals(w->pre[l], len);
        if (w->post[l]) c += subnormals(w->post[l], len) + subnormals(w->aux[l], len);
        if ((size_t)w->ld[l] > maxld) maxld = (size_t)w->ld[l];
    }
    return c + subnormals(w->g0, (size_t)rows * maxld) + subnormals(w->g1, (size_t)rows * maxld);
}

/* A trained model saturates SiLUs: sigmoid(-90) = 8e-40 and the gradients through it fall below
 * FLT_MIN. Layer 1's biases far negative make half its units so. */
static void check_saturated_model(fm_trainer *tr)
{
    CHECK(fm_fpmode_ok(), "fm_trainer_new did not set the floating-point mode of its thread");
    const fm_mlp *m = tr->model.impl;
    for (int o = 0; o < m->dims[2]; o += 2) tr->params[m->b_off[1] + o] = -90.0f - (float)o;
    fm_model_changed(tr->work);
    const fm_step_result r = fm_trainer_step(tr, NULL);
    CHECK(r.finite, "step on the saturated model");
    CHECK(work_subnormals(tr->work->impl, m, tr->mb) == 0 && subnormals(tr->grad, tr->model.nparams) == 0,
          "the trainer's buffers hold %zu subnormals, its gradient %zu", work_subnormals(tr->work->impl, m, tr->mb),
          subnormals(tr->grad, tr->model.nparams));
    enum { N = 64 };
    float x[N * 2];
    fm_rng_normal(x, 3, 0, 0, FM_STREAM_SAMPLE, N * 2);
    fm_field *f = fm_field_new(&tr->model, N);
    fm_ode_work *w = fm_ode_work_new(N, 2);
    f->params = tr->params;
    fm_model_prepare(f->model, tr->params);
    const fm_ode_field vf = fm_field_velocity_ode(f);
    const fm_ode_opts o = {0, 5, 0, 0};
    fm_ode_solve(x, NULL, NULL, w, &vf, &o, 0.0, 1.0, N, 0);
    CHECK(work_subnormals(f->model->impl, m, N) == 0, "the sampler's buffers hold %zu subnormals",
          work_subnormals(f->model->impl, m, N));
    fm_ode_work_free(w);
    fm_field_free(f);
}

int main(int argc, char **argv)
{
    fm_comm_init(&argc, &argv);
    char err[512];
    fm_config c;
    fm_config_defaults(&c);
    /* A thin first layer, an sgemm layer, a narrow (packed) layer, a narrow output; microbatches
     * of 4 over a batch of 10; an lr large enough that step 1 moves every weight. */
    const char *keys[][2] = {{"model.hidden", "24,40,16"}, {"train.batch", "10"}, {"train.microbatch", "4"},
                             {"optim.lr", "0.05"}, {"train.seed", "11"}, {"train.steps", "2"}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        CHECK(fm_config_set(&c, keys[k][0], keys[k][1], err, sizeof err) == 0, "%s", err);
    fm_trainer *tr = fm_trainer_new(&c, NULL);
    const size_t n = tr->model.nparams;
    float *p0 = malloc(sizeof(float) * n), *p1 = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * n);

    memcpy(p0, tr->params, sizeof(float) * n);
    double loss = reference_grad(ref, tr, p0, 1);
    fm_step_result r = fm_trainer_step(tr, NULL);
    CHECK(r.finite && fabs(r.loss - loss) <= 1e-5 * loss, "step 1 loss %.8g vs reference %.8g", r.loss, loss);
    check_grad(tr, ref, 1);
    /* Adam's first step from p0 with the trainer's own gradient, in double: within float rounding
     * of the update (float's 1 - 0.999f is 0.001 to 1.3e-5, so the update's size is lr to 7e-6). */
    double moved = 0.0, ep = 0.0, em = 0.0, ev = 0.0;
    for (size_t k = 0; k < n; k++) {
        const double g = tr->grad[k], m = 0.1 * g, v = 0.001 * g * g;
        const double want = p0[k] - 0.05 / 0.1 * m / (sqrt(v / 0.001) + 1e-8);
        ep = fmax(ep, fabs(tr->params[k] - want) / 0.05);
        em = fmax(em, fabs(tr->m[k] - m) / (1e-30 + fabs(m)));
        ev = fmax(ev, fabs(tr->v[k] - v) / (1e-30 + v));
        moved = fmax(moved, fabs(tr->params[k] - p0[k]));
    }
    CHECK(ep < 2e-5 && em < 1e-6 && ev < 1e-4, "Adam step 1: errors params %.3g lr, m %.3g, v %.3g", ep, em, ev);
    CHECK(moved > 0.04, "step 1 moved the parameters by at most %g", moved);

    memcpy(p1, tr->params, sizeof(float) * n);
    loss = reference_grad(ref, tr, p1, 2);
    r = fm_trainer_step(tr, NULL);
    CHECK(r.finite && fabs(r.loss - loss) <= 1e-5 * loss, "step 2 loss %.8g vs reference %.8g", r.loss, loss);
    check_grad(tr, ref, 2);
    check_saturated_model(tr);

    free(p0);
    free(p1);
    free(ref);
    fm_trainer_free(tr);
    const int status = check_report("test_train");
    fm_comm_exit(status);
}
