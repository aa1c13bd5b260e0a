#include "fm/sample_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm/clock.h"
#include "fm/comm.h"
#include "fm/dist.h"
#include "fm/durable.h"
#include "fm/error.h"
#include "fm/field.h"
#include "fm/fpmode.h"
#include "fm/h5io.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/rng.h"

/* How many trajectories are recorded in full: sample.trajectories, at most sample.n. */
static uint64_t recorded(const fm_config *cfg)
{
    return (uint64_t)(cfg->trajectories < cfg->sample_n ? cfg->trajectories : cfg->sample_n);
}

/* What a samples file holds besides the rows: the run's text, and what made them. */
typedef struct {
    const char *config_text;
    long checkpoint_step;
    int ema;        /* the weights were the moving average */
    const int *y;   /* [nloc] the trajectories' labels, or NULL */
    const int *nfe; /* [nloc] the trajectories' field evaluations */
    double nfe_mean, nfe_max; /* over all ranks' trajectories */
    const fm_row_shape *rows; /* the data's row shape and value range, or NULL */
} meta;

static int write_file(const char *tmp, const fm_config *cfg, const meta *mt, const float *x, const float *traj,
                      uint64_t r0, uint64_t nloc, uint64_t mloc)
{
    const uint64_t N = (uint64_t)cfg->sample_n, T = (uint64_t)cfg->sample_steps + 1, M = recorded(cfg);
    const uint64_t D = (uint64_t)cfg->dim;
    fm_h5 f = fm_h5_create(tmp, 1);
    if (!fm_comm_all_ok(f >= 0)) {
        if (f >= 0) fm_h5_close(f);
        return -1;
    }
    float *times = fm_malloc(sizeof(float) * T);
    for (uint64_t k = 0; k < T; k++) times[k] = (float)((double)k / (double)cfg->sample_steps);
    const int root = fm_comm_rank() == 0;
    fm_ode_opts o;
    const int adaptive = fm_sample_run_opts(&o, cfg);
    uint64_t sd[2] = {N, D}, td[3] = {M, T, D}, tt[1] = {T};
    /* Attributes and dataset creation are collective: every rank makes the same calls. */
    int rc = fm_h5_stamp(f, "samples") || fm_h5_attr_str(f, "/", "config", mt->config_text) ||
             fm_h5_attr_str(f, "/", "solver", cfg->solver) || fm_h5_attr_i64(f, "/", "steps", cfg->sample_steps) ||
             fm_h5_attr_i64(f, "/", "checkpoint_step", mt->checkpoint_step) ||
             fm_h5_attr_f64(f, "/", "nfe_mean", mt->nfe_mean) || fm_h5_attr_i64(f, "/", "nfe_max", (int64_t)mt->nfe_max) ||
             (adaptive && (fm_h5_attr_f64(f, "/", "atol", cfg->atol) || fm_h5_attr_f64(f, "/", "rtol", cfg->rtol))) ||
             fm_h5_write_i32_rows(f, "/nfe", mt->nfe, 1, sd, r0, nloc) ||
             fm_h5_attr_i64(f, "/", "seed", cfg->sample_seed) ||
             fm_h5_attr_str(f, "/", "weights", mt->ema ? "ema" : "raw") ||
             (mt->rows && fm_h5_write_row_shape(f, mt->rows)) ||
             fm_h5_write_f32_rows(f, "/samples", x, 2, sd, r0, nloc) ||
             fm_h5_write_f32_rows(f, "/trajectories", traj, 3, td, r0 < M ? r0 : M, mloc) ||
             fm_h5_write_f32_rows(f, "/times", times, 1, tt, 0, root ? T : 0) ||
             (mt->y && (fm_h5_attr_f64(f, "/", "guidance", cfg->guidance) ||
                        fm_h5_write_i32_rows(f, "/labels", mt->y, 1, sd, r0, nloc)));
    if (fm_h5_close(f)) rc = -1;
    free(times);
    return fm_comm_all_ok(rc == 0) ? 0 : -1;
}

void fm_sample_run_labels(int *y, const fm_config *cfg, int classes, uint64_t r0, uint64_t nloc)
{
    int list[256];
    const int n = fm_config_class_list(list, 256, cfg->sample_classes);
    FM_CHECK(n >= 0, "[sample] classes = '%s' is not a list of labels", cfg->sample_classes);
    for (uint64_t i = 0; i < nloc; i++) y[i] = n == 0 ? (int)((r0 + i) % (uint64_t)classes) : list[(r0 + i) % (uint64_t)n];
}

int fm_sample_run_opts(fm_ode_opts *o, const fm_config *cfg)
{
    *o = (fm_ode_opts){fm_names_find(fm_ode_solver_name, cfg->solver), cfg->sample_steps, cfg->atol, cfg->rtol};
    FM_CHECK(o->solver >= 0, "[sample] solver = '%s' is not a solver", cfg->solver);
    return fm_ode_evals(o->solver) == 0;
}

void fm_sample_run_integrate(float *x, int *nfe, float *traj, const fm_config *cfg, const fm_model *m,
                             const float *params, const int *y, uint64_t r0, uint64_t nloc, uint64_t mloc)
{
    fm_fpmode_set(); /* this thread computes: subnormals flushed (fm/fpmode.h) */
    const int D = m->dim;
    const uint64_t T = (uint64_t)cfg->sample_steps + 1;
    fm_ode_opts o;
    fm_sample_run_opts(&o, cfg);
    const int chunk = (int)(cfg->sample_batch < (long)nloc ? cfg->sample_batch : (long)nloc);
    if (chunk == 0) return;
    fm_dist *src = fm_dist_gaussian(D, (float)cfg->source_std);
    fm_field *f = fm_field_new(m, chunk);
    fm_ode_work *w = fm_ode_work_new(chunk, D);
    f->params = params;
    f->guidance = (float)cfg->guidance;
    fm_model_prepare(f->model, params);
    const fm_ode_field field = fm_field_velocity_ode(f);
    for (uint64_t c0 = 0; c0 < nloc; c0 += (uint64_t)chunk) {
        const int nb = (int)(nloc - c0 < (uint64_t)chunk ? nloc - c0 : (uint64_t)chunk);
        const int mb = c0 >= mloc ? 0 : (int)(mloc - c0 < (uint64_t)nb ? mloc - c0 : (uint64_t)nb);
        fm_dist_sample(x + c0 * D, src, (uint64_t)cfg->sample_seed, 0, (uint32_t)(r0 + c0), FM_STREAM_SAMPLE, nb);
        f->y = y ? y + c0 : NULL;
        if (fm_ode_solve(x + c0 * D, nfe ? nfe + c0 : NULL, mb ? traj + c0 * T * D : NULL, w, &field, &o, 0.0, 1.0, nb,
                         mb))
            FM_FATAL("[sample] solver = dopri5 did not reach t = 1 within %d steps of a trajectory: atol = %g, rtol = %g "
                     "are too small for float arithmetic (or the field is not finite)", FM_ODE_MAX_STEPS, cfg->atol,
                     cfg->rtol);
    }
    fm_ode_work_free(w);
    fm_field_free(f);
    fm_dist_free(src);
}

int fm_sample_run_commit(const char *tmp, const char *path, int rc, char *err, int cap)
{
    const int r = fm_comm_rank();
    int e = 0;
    if (rc == 0 && r == 0 && (fm_durable_fsync(tmp) || rename(tmp, path) || fm_durable_fsync_dir_of(path))) {
        rc = -1;
        e = errno;
    }
    if (!fm_comm_all_ok(rc == 0)) {
        if (r == 0) unlink(tmp);
        fm_errorf(err, cap, "writing %s failed (%s)", path, e ? strerror(e) : "HDF5 error or another rank failed");
        return -1;
    }
    return 0;
}

int fm_sample_run(const char *path, const fm_config *cfg, const char *config_text, const fm_model *m,
                  const float *params, int ema, const fm_row_shape *rows, long checkpoint_step, char *err, int cap)
{
    const int P = fm_comm_size(), r = fm_comm_rank();
    const uint64_t N = (uint64_t)cfg->sample_n, T = (uint64_t)cfg->sample_steps + 1, M = recorded(cfg);
    const int D = m->dim;
    const uint64_t r0 = N * (uint64_t)r / (uint64_t)P, r1 = N * (uint64_t)(r + 1) / (uint64_t)P;
    const uint64_t nloc = r1 - r0, mloc = r1 <= M ? nloc : (r0 < M ? M - r0 : 0);
    double t0 = fm_now();

    float *x = fm_malloc(sizeof(float) * nloc * D);
    float *traj = fm_malloc(sizeof(float) * mloc * T * D);
    int *nfe = fm_malloc(sizeof(int) * (nloc ? nloc : 1));
    int *y = m->classes > 0 ? fm_malloc(sizeof(int) * (nloc ? nloc : 1)) : NULL;
    if (y) fm_sample_run_labels(y, cfg, m->classes, r0, nloc);
    fm_sample_run_integrate(x, nfe, traj, cfg, m, params, y, r0, nloc, mloc);
    double t1 = fm_now();

    char tmp[FM_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    double nfe_stat[2] = {0.0, 0.0}; /* sum, max */
    for (uint64_t i = 0; i < nloc; i++) {
        nfe_stat[0] += nfe[i];
        nfe_stat[1] = fmax(nfe_stat[1], nfe[i]);
    }
    fm_comm_allreduce_sum_f64(&nfe_stat[0], 1);
    fm_comm_allreduce_max(&nfe_stat[1], 1);
    const meta mt = {config_text, checkpoint_step, ema, y, nfe, N ? nfe_stat[0] / (double)N : 0.0, nfe_stat[1], rows};
    int rc = write_file(tmp, cfg, &mt, x, traj, r0, nloc, mloc);
    free(x);
    free(traj);
    free(nfe);
    free(y);
    if (fm_sample_run_commit(tmp, path, rc, err, cap)) return -1;
    if (r == 0) {
        printf("sampled %llu trajectories with %s, %.1f evaluations each (at most %.0f), on %d rank%s in %.2f s "
               "(%.3g evaluations/s); wrote %s in %.2f s\n", (unsigned long long)N, cfg->solver, mt.nfe_mean,
               nfe_stat[1], P, P > 1 ? "s" : "", t1 - t0, nfe_stat[0] / (t1 - t0 > 0 ? t1 - t0 : 1e-9), path,
               fm_now() - t1);
        fflush(stdout);
    }
    return 0;
}
