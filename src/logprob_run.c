#include "fm/logprob_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm/clock.h"
#include "fm/comm.h"
#include "fm/dist.h"
#include "fm/error.h"
#include "fm/field.h"
#include "fm/fpmode.h"
#include "fm/h5io.h"
#include "fm/ode.h"
#include "fm/rng.h"
#include "fm/sample_run.h"
#include "fm/stop.h"
#include "fm/target.h"

int fm_logprob_exact(const fm_config *cfg, int dim)
{
    return strcmp(cfg->divergence, "exact") == 0 || (strcmp(cfg->divergence, "auto") == 0 && dim <= 16);
}

/* This rank's points r0 .. r0+n: rows of data, or draws of the target. */
static void points_of(float *x /* [n, D] */, const fm_config *cfg, const fm_dataset *data, uint64_t r0, uint64_t n)
{
    if (data) {
        uint64_t rows[64];
        for (uint64_t c0 = 0; c0 < n; c0 += 64) {
            const int m = (int)(n - c0 < 64 ? n - c0 : 64);
            for (int i = 0; i < m; i++) rows[i] = r0 + c0 + (uint64_t)i;
            fm_dataset_rows(x + c0 * (uint64_t)data->dim, data, rows, m);
        }
        return;
    }
    fm_target t;
    char err[512];
    if (fm_target_build(&t, cfg, NULL, err, sizeof err)) FM_FATAL("%s", err); /* validated: a bug */
    int *y = fm_malloc(sizeof(int) * (n ? n : 1));
    fm_target_draw(x, y, &t, (uint64_t)cfg->sample_seed, 0, (uint32_t)r0, (int)n);
    free(y);
    fm_target_free(&t);
}

/* Integrates this rank's points back to t = 0: x0, l (= log p_1 - log p_0) and nfe per point. */
static void integrate(float *x0 /* [n, D] */, float *l /* [n] */, int *nfe /* [n] */, const float *x /* [n, D] */,
                      const fm_config *cfg, const fm_model *m, const float *params, uint64_t r0, uint64_t n)
{
    fm_fpmode_set(); /* this thread computes: subnormals flushed (fm/fpmode.h) */
    const int D = m->dim, W = D + 1;
    const int chunk = (int)(cfg->sample_batch < (long)n ? cfg->sample_batch : (long)n);
    if (chunk == 0) return;
    fm_ode_opts o;
    fm_sample_run_opts(&o, cfg);
    fm_field *f = fm_field_new(m, chunk);
    fm_ode_work *w = fm_ode_work_new(chunk, W);
    float *s = fm_malloc(sizeof(float) * (size_t)chunk * W);
    float *probe = fm_logprob_exact(cfg, D) ? NULL : fm_malloc(sizeof(float) * (size_t)chunk * D);
    f->params = params;
    fm_model_prepare(f->model, params);
    const fm_ode_field field = fm_field_logp_ode(f);
    for (uint64_t c0 = 0; c0 < n && !fm_stop_requested(); c0 += (uint64_t)chunk) {
        const int nb = (int)(n - c0 < (uint64_t)chunk ? n - c0 : (uint64_t)chunk);
        for (int i = 0; i < nb; i++) {
            memcpy(s + (size_t)i * W, x + (c0 + (uint64_t)i) * D, sizeof(float) * D);
            s[(size_t)i * W + D] = 0.0f;
        }
        if (probe) { /* Rademacher: one fixed probe per point, from (sample.seed, point) */
            for (int i = 0; i < nb; i++)
                fm_rng_uniform(probe + (size_t)i * D, (uint64_t)cfg->sample_seed, 0, (uint32_t)(r0 + c0 + (uint64_t)i),
                               FM_STREAM_EVAL, D);
            for (size_t k = 0; k < (size_t)nb * D; k++) probe[k] = probe[k] < 0.5f ? -1.0f : 1.0f;
            f->probe = probe;
        }
        if (fm_ode_solve(s, nfe + c0, NULL, w, &field, &o, 1.0, 0.0, nb, 0))
            FM_FATAL("[sample] solver = dopri5 did not reach t = 0 within %d steps of a point: atol = %g, rtol = %g "
                     "are too small for float arithmetic (or the field is not finite)", FM_ODE_MAX_STEPS, cfg->atol,
                     cfg->rtol);
        for (int i = 0; i < nb; i++) {
            memcpy(x0 + (c0 + (uint64_t)i) * D, s + (size_t)i * W, sizeof(float) * D);
            l[c0 + (uint64_t)i] = s[(size_t)i * W + D];
        }
    }
    free(probe);
    free(s);
    fm_ode_work_free(w);
    fm_field_free(f);
}

int fm_logprob_run(const char *path, const fm_config *cfg, const char *config_text, const fm_model *m,
                   const float *params, int ema, const fm_dataset *data, const char *points, long checkpoint_step,
                   char *err, int cap)
{
    const int P = fm_comm_size(), r = fm_comm_rank(), D = m->dim;
    const uint64_t N = data ? data->n : (uint64_t)cfg->sample_n;
    const uint64_t r0 = N * (uint64_t)r / (uint64_t)P, n = N * (uint64_t)(r + 1) / (uint64_t)P - r0;
    const double t0 = fm_now();
    float *x = fm_malloc(sizeof(float) * (n ? n : 1) * D), *x0 = fm_malloc(sizeof(float) * (n ? n : 1) * D);
    float *l = fm_malloc(sizeof(float) * (n ? n : 1)), *logp = fm_malloc(sizeof(float) * (n ? n : 1));
    float *logp0 = fm_malloc(sizeof(float) * (n ? n : 1));
    int *nfe = fm_malloc(sizeof(int) * (n ? n : 1));
    points_of(x, cfg, data, r0, n);
    integrate(x0, l, nfe, x, cfg, m, params, r0, n);
    if (fm_sample_run_stopped(path)) {
        free(x); free(x0); free(l); free(logp); free(logp0); free(nfe);
        return FM_EXIT_STOPPED;
    }
    double sums[3] = {0.0, 0.0, 0.0}, nfe_max = 0.0; /* log p, nfe, non-finite */
    fm_dist *source = fm_dist_gaussian(D, (float)cfg->source_std);
    for (uint64_t i = 0; i < n; i++) {
        logp0[i] = (float)fm_dist_logpdf(source, x0 + i * D);
        logp[i] = logp0[i] + l[i];
        sums[0] += logp[i];
        sums[1] += nfe[i];
        sums[2] += !isfinite(logp[i]);
        nfe_max = fmax(nfe_max, nfe[i]);
    }
    fm_dist_free(source);
    fm_comm_allreduce_sum_f64(sums, 3);
    fm_comm_allreduce_max(&nfe_max, 1);
    const double t1 = fm_now();

    char tmp[FM_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Gathered on rank 0 and written as one in-memory image, like the samples (sample_run.c). */
    const size_t row = sizeof(float) * (size_t)D;
    float *all[4]; /* x, x0, logp, logp0 */
    const float *mine[4] = {x, x0, logp, logp0};
    for (int k = 0; k < 4; k++) all[k] = fm_sample_run_gather(mine[k], n, k < 2 ? row : sizeof(float), N);
    int32_t *nfe_all = fm_sample_run_gather(nfe, n, sizeof(int), N);
    int rc = 0;
    if (fm_comm_rank() == 0) {
        const uint64_t xd[2] = {N, (uint64_t)D};
        static const char *const by_point[] = {"/point", "/dim"}; /* named dimensions */
        fm_ode_opts o;
        const int adaptive = fm_sample_run_opts(&o, cfg);
        fm_h5 f = fm_h5_create_memory();
        rc = f < 0 || fm_h5_stamp(f, "logprob") || fm_h5_attr_str(f, "/", "config", config_text) ||
             fm_h5_attr_str(f, "/", "points", points) || fm_h5_attr_str(f, "/", "solver", cfg->solver) ||
             (adaptive ? fm_h5_attr_f64(f, "/", "atol", cfg->atol) || fm_h5_attr_f64(f, "/", "rtol", cfg->rtol)
                       : fm_h5_attr_i64(f, "/", "steps", cfg->sample_steps)) ||
             fm_h5_attr_str(f, "/", "divergence", fm_logprob_exact(cfg, D) ? "exact" : "hutchinson") ||
             fm_h5_attr_i64(f, "/", "checkpoint_step", checkpoint_step) ||
             fm_h5_attr_str(f, "/", "weights", ema ? "ema" : "raw") ||
             fm_h5_attr_f64(f, "/", "mean_logp", N ? sums[0] / (double)N : 0.0) ||
             fm_h5_attr_f64(f, "/", "nfe_mean", N ? sums[1] / (double)N : 0.0) ||
             fm_h5_attr_i64(f, "/", "nfe_max", (int64_t)nfe_max) || fm_h5_write_f32(f, "/x", all[0], 2, xd) ||
             fm_h5_write_f32(f, "/x0", all[1], 2, xd) || fm_h5_write_f32(f, "/logp", all[2], 1, xd) ||
             fm_h5_write_f32(f, "/logp0", all[3], 1, xd) || fm_h5_write_i32(f, "/nfe", nfe_all, 1, xd) ||
             fm_h5_dim(f, "/point", N) || fm_h5_dim(f, "/dim", (uint64_t)D) || fm_h5_attach(f, "/x", by_point, 2) ||
             fm_h5_attach(f, "/x0", by_point, 2) || fm_h5_attach(f, "/logp", by_point, 1) ||
             fm_h5_attach(f, "/logp0", by_point, 1) || fm_h5_attach(f, "/nfe", by_point, 1) ? -1 : 0;
        if (rc) {
            fm_h5_discard(f);
            errno = 0;
        } else {
            rc = fm_h5_save(f, tmp);
        }
    }
    for (int k = 0; k < 4; k++) free(all[k]);
    free(nfe_all);
    free(x); free(x0); free(l); free(logp); free(logp0); free(nfe);
    if (fm_sample_run_commit(tmp, path, rc, err, cap)) return -1;
    if (r == 0) {
        printf("log-likelihood of %llu points (%s) on %d rank%s: mean log p = %.4f nats (%s divergence, %s, "
               "%.1f evaluations a point, at most %.0f) in %.2f s; wrote %s\n", (unsigned long long)N, points, P,
               P > 1 ? "s" : "", N ? sums[0] / (double)N : 0.0, fm_logprob_exact(cfg, D) ? "exact" : "Hutchinson",
               cfg->solver, N ? sums[1] / (double)N : 0.0, nfe_max, t1 - t0, path);
        if (sums[2] > 0) printf("warning: %.0f points have a log-likelihood that is not finite\n", sums[2]);
        fflush(stdout);
    }
    return 0;
}
