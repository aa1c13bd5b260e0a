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
#include "fm/file.h"
#include "fm/error.h"
#include "fm/field.h"
#include "fm/fpmode.h"
#include "fm/h5io.h"
#include "fm/names.h"
#include "fm/ode.h"
#include "fm/rng.h"
#include "fm/stop.h"

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
    double nfe_mean, nfe_max; /* over all ranks' trajectories */
    const fm_row_shape *rows; /* the data's row shape and value range, or NULL */
} meta;

void *fm_sample_run_gather(const void *mine, uint64_t nloc, size_t row, uint64_t total)
{
    void *all = fm_comm_rank() == 0 ? fm_malloc(row * (total ? total : 1)) : NULL;
    fm_comm_gather(all, mine, row * nloc);
    return all;
}

_Static_assert(sizeof(int) == sizeof(int32_t), "the counts and labels are written as int32");

/* Rank 0, after the gathers: the samples file, built in memory and written to tmp with plain
 * POSIX calls like a checkpoint (a full disk is an ordinary write error, never a half-written
 * parallel HDF5 file). 0, or -1 with errno set when the disk said why. */

static int write_file(const char *tmp, const fm_config *cfg, const meta *mt, const float *x, const float *traj,
                      const int32_t *nfe /* [N] */, const int32_t *y /* [N] or NULL */)
{
    const uint64_t N = (uint64_t)cfg->sample_n, T = (uint64_t)cfg->sample_steps + 1, M = recorded(cfg);
    const uint64_t D = (uint64_t)cfg->dim;
    fm_h5 f = fm_h5_create_memory();
    if (f < 0) return -1;
    float *times = fm_malloc(sizeof(float) * T);
    for (uint64_t k = 0; k < T; k++) times[k] = (float)((double)k / (double)cfg->sample_steps);
    fm_ode_opts o;
    const int adaptive = fm_sample_run_opts(&o, cfg);
    const uint64_t sd[2] = {N, D}, td[3] = {M, T, D}, tt[1] = {T};
    int rc = fm_h5_stamp(f, "samples") || fm_h5_attr_str(f, "/", "config", mt->config_text) ||
             fm_h5_attr_str(f, "/", "solver", cfg->solver) || fm_h5_attr_i64(f, "/", "steps", cfg->sample_steps) ||
             fm_h5_attr_i64(f, "/", "checkpoint_step", mt->checkpoint_step) ||
             fm_h5_attr_f64(f, "/", "nfe_mean", mt->nfe_mean) || fm_h5_attr_i64(f, "/", "nfe_max", (int64_t)mt->nfe_max) ||
             (adaptive && (fm_h5_attr_f64(f, "/", "atol", cfg->atol) || fm_h5_attr_f64(f, "/", "rtol", cfg->rtol))) ||
             fm_h5_write_i32(f, "/nfe", nfe, 1, sd) || fm_h5_attr_i64(f, "/", "seed", cfg->sample_seed) ||
             fm_h5_attr_str(f, "/", "weights", mt->ema ? "ema" : "raw") ||
             (mt->rows && fm_h5_write_row_shape(f, mt->rows)) || fm_h5_write_f32(f, "/samples", x, 2, sd) ||
             fm_h5_write_f32(f, "/trajectories", traj, 3, td) || fm_h5_write_f32(f, "/times", times, 1, tt);
    if (rc == 0 && y) rc = fm_h5_attr_f64(f, "/", "guidance", cfg->guidance) || fm_h5_write_i32(f, "/labels", y, 1, sd);
    /* Named dimensions: (sample, dim), (trajectory, times, dim) with /times the time coordinate. */
    static const char *const by_sample[] = {"/sample", "/dim"}, *const by_trajectory[] = {"/trajectory", "/times", "/dim"};
    if (rc == 0)
        rc = fm_h5_dim(f, "/sample", N) || fm_h5_dim(f, "/dim", D) || fm_h5_dim(f, "/trajectory", M) ||
             fm_h5_scale(f, "/times") || fm_h5_attach(f, "/samples", by_sample, 2) ||
             fm_h5_attach(f, "/nfe", by_sample, 1) || (y && fm_h5_attach(f, "/labels", by_sample, 1)) ||
             fm_h5_attach(f, "/trajectories", by_trajectory, 3);
    free(times);
    if (rc) {
        fm_h5_discard(f);
        errno = 0;
        return -1;
    }
    return fm_h5_save(f, tmp);
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
    for (uint64_t c0 = 0; c0 < nloc && !fm_stop_requested(); c0 += (uint64_t)chunk) {
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

int fm_sample_run_stopped(const char *path)
{
    if (fm_comm_all_ok(!fm_stop_requested())) return 0;
    if (fm_comm_rank() == 0) {
        printf("stopped by a signal before %s was written: nothing written; run the same command to start again "
               "(exit status %d)\n", path, FM_EXIT_STOPPED);
        fflush(stdout);
    }
    return 1;
}

int fm_sample_run_may_write(const char *path, const char *format, char *err, int cap)
{
    int ok = 1;
    if (fm_comm_rank() == 0) {
        const int exists = fm_file_exists(path, err, cap);
        char why[FM_PATH_MAX + 256];
        ok = 0;
        if (strlen(path) > FM_PATH_MAX - 8) {
            fm_errorf(err, cap, "the output path is %zu characters long: allowed: at most %d", strlen(path), FM_PATH_MAX - 8);
        } else if (exists == 1) {
            fm_h5 f = fm_h5_open_fm(path, format, why, sizeof why);
            if (f < 0) fm_errorf(err, cap, "%s: fmtrain writes over its own %s files only: choose another -o", why, format);
            fm_h5_discard(f);
            ok = f >= 0;
        } else {
            ok = exists == 0;
        }
    }
    return fm_comm_all_ok(ok) ? 0 : -1;
}

int fm_sample_run_commit(const char *tmp, const char *path, int rc, char *err, int cap)
{
    int e = rc ? errno : 0;
    if (fm_comm_rank() == 0) {
        if (rc == 0 && (rename(tmp, path) || fm_file_fsync_dir_of(path))) {
            rc = -1;
            e = errno;
        }
        if (rc) {
            unlink(tmp);
            fm_errorf(err, cap, "writing %s failed (%s); nothing was replaced", path, e ? strerror(e) : "HDF5 error");
        }
    }
    if (fm_comm_all_ok(rc == 0)) return 0;
    fm_comm_bcast(err, (size_t)cap);
    return -1;
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
    if (fm_sample_run_stopped(path)) {
        free(x);
        free(traj);
        free(nfe);
        free(y);
        return FM_EXIT_STOPPED;
    }

    char tmp[FM_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    double nfe_stat[2] = {0.0, 0.0}; /* sum, max */
    for (uint64_t i = 0; i < nloc; i++) {
        nfe_stat[0] += nfe[i];
        nfe_stat[1] = fmax(nfe_stat[1], nfe[i]);
    }
    fm_comm_allreduce_sum_f64(&nfe_stat[0], 1);
    fm_comm_allreduce_max(&nfe_stat[1], 1);
    const meta mt = {config_text, checkpoint_step, ema, N ? nfe_stat[0] / (double)N : 0.0, nfe_stat[1], rows};
    float *x_all = fm_sample_run_gather(x, nloc, sizeof(float) * D, N);
    float *traj_all = fm_sample_run_gather(traj, mloc, sizeof(float) * T * D, M);
    int *nfe_all = fm_sample_run_gather(nfe, nloc, sizeof(int), N);
    int *y_all = y ? fm_sample_run_gather(y, nloc, sizeof(int), N) : NULL;
    int rc = r == 0 ? write_file(tmp, cfg, &mt, x_all, traj_all, nfe_all, y_all) : 0;
    free(x);
    free(traj);
    free(nfe);
    free(y);
    free(x_all);
    free(traj_all);
    free(nfe_all);
    free(y_all);
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
