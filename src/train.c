#include "fm/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fm/ckpt.h"
#include "fm/comm.h"
#include "fm/dist.h"
#include "fm/error.h"
#include "fm/mlp.h"
#include "fm/optim.h"
#include "fm/path.h"
#include "fm/rng.h"
#include "fm/samples.h"
#include "fm/stop.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(char *out, size_t cap, double s)
{
    long t = (long)(s + 0.5);
    snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* Error known to every rank alike: rank 0 says it once, all end together. */
static int fail_all(const char *msg)
{
    if (fm_comm_rank() == 0) {
        fprintf(stderr, "fmtrain: error: %s\n", msg);
        fflush(stderr);
    }
    return 1;
}

/* The run's state, identical on every rank but for the shard. */
typedef struct {
    fm_mlp mlp;
    float *params, *grad, *m, *v; /* [nparams] each; grad has two more slots: loss, stop flag */
    long step;                    /* steps done */
    fm_history hist;              /* rank 0 */
    double time0;                 /* training seconds of earlier runs (resume) */
} run_state;

/* Rank 0 reads the checkpoint and checks it against cfg; the others learn the outcome. */
static int resume_from(run_state *s, const fm_config *cfg, const char *path, char *err, int cap)
{
    int ok = 1;
    fm_ckpt c = {0};
    if (fm_comm_rank() == 0) {
        char diff[1024];
        if (fm_ckpt_read(&c, path, err, cap)) {
            ok = 0;
        } else if (fm_config_diff(diff, sizeof diff, &c.cfg, cfg, 1) > 0) {
            fm_errorf(err, cap, "cannot resume %s: the config changes %s; these keys must stay as the checkpoint "
                      "has them (start a new run with another -o instead)", path, diff);
            ok = 0;
        }
    }
    if (!fm_comm_all_ok(ok)) {
        fm_ckpt_free(&c);
        return -1;
    }
    const size_t n = s->mlp.nparams;
    long step = c.step;
    if (fm_comm_rank() == 0) {
        memcpy(s->params, c.params, sizeof(float) * n);
        memcpy(s->m, c.m, sizeof(float) * n);
        memcpy(s->v, c.v, sizeof(float) * n);
        fm_history_free(&s->hist);
        s->hist = c.hist;
        memset(&c.hist, 0, sizeof c.hist);
        s->time0 = s->hist.n ? s->hist.time[s->hist.n - 1] : 0.0;
        char changed[1024];
        fm_config_diff(changed, sizeof changed, &c.cfg, cfg, 0);
        printf("resuming %s at step %ld%s%s\n", path, step, *changed ? "; changed: " : "", changed);
    }
    fm_comm_bcast(&step, sizeof step);
    fm_comm_bcast(s->params, sizeof(float) * n);
    fm_comm_bcast(s->m, sizeof(float) * n);
    fm_comm_bcast(s->v, sizeof(float) * n);
    s->step = step;
    fm_ckpt_free(&c);
    return 0;
}

/* Rank 0: checkpoint.h5, and a numbered copy when train.keep_checkpoints asks for them (the
 * last K, plus the final one). */
static int checkpoint(const run_state *s, const fm_config *cfg, const char *config_text, const fm_dist *target,
                      const char *path, char *err, int cap)
{
    if (fm_ckpt_write(path, config_text, target, &s->mlp, s->params, s->m, s->v, s->step, &s->hist, err, cap))
        return -1;
    if (cfg->keep_checkpoints == 0) return 0;
    const int keep = (int)cfg->keep_checkpoints + (s->step == cfg->steps ? 1 : 0);
    return fm_ckpt_keep(cfg->dir, s->step, keep, err, cap);
}

static fm_dist *target_of(const fm_config *cfg)
{
    if (strcmp(cfg->target, "gmm_ring") == 0)
        return fm_dist_gmm_ring((int)cfg->modes, (float)cfg->radius, (float)cfg->std, (float)cfg->x_offset);
    if (strcmp(cfg->target, "gmm_random") == 0)
        return fm_dist_gmm_random((int)cfg->dim, (int)cfg->modes, (float)cfg->scale, (float)cfg->std,
                                  (uint64_t)cfg->mean_seed);
    return fm_dist_gaussian((int)cfg->dim, (float)cfg->std);
}

int fm_train_run(const fm_config *cfg, const char *outdir)
{
    const int rank = fm_comm_rank(), P = fm_comm_size();
    const int D = (int)cfg->dim;
    const long B = cfg->batch;
    char err[1536], ckpt_path[FM_PATH_MAX + 32], samples_path[FM_PATH_MAX + 32];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.h5", outdir);
    snprintf(samples_path, sizeof samples_path, "%s/samples.h5", outdir);
    char *config_text = fm_config_dump(cfg);

    run_state s = {0};
    if (fm_ckpt_model_of(&s.mlp, cfg, err, sizeof err)) return fail_all(err);
    const size_t n = s.mlp.nparams;
    s.params = fm_malloc(sizeof(float) * n);
    s.grad = fm_malloc(sizeof(float) * (n + 2));
    s.m = fm_calloc(sizeof(float) * n);
    s.v = fm_calloc(sizeof(float) * n);

    /* Resume or start: decided on rank 0 (which owns the run directory), told to all. */
    int exists = rank == 0 && access(ckpt_path, F_OK) == 0;
    fm_comm_bcast(&exists, sizeof exists);
    int status = 0;
    if (strcmp(cfg->resume, "always") == 0 && !exists) {
        fm_errorf(err, sizeof err, "--resume: %s does not exist: nothing to resume (drop --resume to start a new run)", ckpt_path);
        status = fail_all(err);
    } else if (strcmp(cfg->resume, "never") == 0 && exists) {
        fm_errorf(err, sizeof err, "%s exists and train.resume = never: choose another -o, or resume it with --resume", ckpt_path);
        status = fail_all(err);
    } else if (exists) {
        if (resume_from(&s, cfg, ckpt_path, err, sizeof err)) status = 1;
        if (status && rank == 0) fprintf(stderr, "fmtrain: error: %s\n", err);
    } else {
        if (rank == 0) fm_mlp_init(s.params, &s.mlp, (uint64_t)cfg->seed);
        fm_comm_bcast(s.params, sizeof(float) * n);
    }
    if (status) goto done;

    if (rank == 0) {
        fm_history_reserve(&s.hist, s.hist.n + 100 + (size_t)(cfg->steps / cfg->history_every) + (size_t)(cfg->steps / cfg->log_every));
        printf("fmtrain %s: %d rank%s, batch %ld (%ld to %ld per rank), %zu parameters, steps %ld to %ld\n", FM_VERSION_STRING,
               P, P > 1 ? "s" : "", B, B / P, (B + P - 1) / P, n, s.step, cfg->steps);
        printf("---- effective config ----\n%s--------------------------\n", config_text);
        fflush(stdout);
    }

    /* This rank's shard of every global batch: samples [i0, i1). */
    const long i0 = B * rank / P, i1 = B * (rank + 1) / P, nloc = i1 - i0;
    fm_dist *target = target_of(cfg), *source = fm_dist_gaussian(D, (float)cfg->source_std);
    const fm_path path = {(fm_schedule)fm_path_parse(cfg->schedule), cfg->eps, cfg->sigma_min};
    const fm_adam adam = {cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->clip,
                          (fm_lr_schedule)fm_optim_schedule_parse(cfg->lr_schedule), cfg->warmup};
    const float scale = 1.0f / (float)((double)B * D);
    float *t = fm_malloc(sizeof(float) * (nloc + 1));
    float *x0 = fm_malloc(sizeof(float) * (nloc + 1) * D), *z = fm_malloc(sizeof(float) * (nloc + 1) * D);
    float *xt = fm_malloc(sizeof(float) * (nloc + 1) * D), *u = fm_malloc(sizeof(float) * (nloc + 1) * D);
    float *dout = fm_malloc(sizeof(float) * (nloc + 1) * D);
    fm_mlp_work *work = fm_mlp_work_new(&s.mlp, (int)(nloc > 0 ? nloc : 1));

    double t_start = now(), t_log = t_start;
    long step_log = s.step;
    int stop_signal = 0;
    while (s.step < cfg->steps) {
        const long step = s.step + 1; /* the step being taken; its draws use counter `step` */
        memset(s.grad, 0, sizeof(float) * (n + 2));
        if (nloc > 0) {
            for (long i = 0; i < nloc; i++) fm_rng_uniform(t + i, (uint64_t)cfg->seed, (uint32_t)step, (uint32_t)(i0 + i), FM_STREAM_T, 1);
            fm_dist_sample(x0, source, (uint64_t)cfg->seed, (uint32_t)step, (uint32_t)i0, FM_STREAM_X0, (int)nloc);
            fm_dist_sample(z, target, (uint64_t)cfg->seed, (uint32_t)step, (uint32_t)i0, FM_STREAM_Z, (int)nloc);
            fm_path_sample(xt, u, &path, t, x0, z, (int)nloc, D);
            const float *out = fm_mlp_forward(work, &s.mlp, s.params, xt, t, (int)nloc);
            s.grad[n] = (float)(scale * fm_mlp_loss(dout, out, u, (int)nloc, D, scale));
            fm_mlp_backward(s.grad, work, &s.mlp, s.params, dout, (int)nloc);
        }
        if (rank == 0 && fm_fault("nan_at_step", step)) s.grad[0] = NAN; /* test-only */
        /* Every rank's stop request travels with the gradient: all stop at the same step. */
        s.grad[n + 1] = fm_stop_requested() ? 1.0f : 0.0f;
        fm_comm_allreduce_sum(s.grad, n + 2);
        const float loss = s.grad[n];
        const double gnorm = fm_optim_clip(s.grad, n, adam.clip);
        if (!isfinite(loss) || !isfinite(gnorm)) {
            fm_errorf(err, sizeof err, "non-finite %s at step %ld; stopped without writing it: %s keeps step %ld "
                      "(try a lower optim.lr or optim.clip > 0)", isfinite(loss) ? "gradient" : "loss", step,
                      ckpt_path, s.step);
            status = fail_all(err);
            break;
        }
        const double lr = fm_optim_lr(&adam, step, cfg->steps);
        fm_adam_step(s.params, s.m, s.v, s.grad, n, &adam, step, lr);
        s.step = step;
        if (s.grad[n + 1] > 0.0f) stop_signal = fm_stop_requested() ? fm_stop_requested() : -1;

        if (rank == 0) {
            const double elapsed = now() - t_start;
            if (step <= 100 || step % cfg->history_every == 0 || step % cfg->log_every == 0 || step == cfg->steps || stop_signal)
                fm_history_push(&s.hist, step, loss, (float)lr, (float)gnorm, s.time0 + elapsed);
            if (step % cfg->log_every == 0 || step == cfg->steps) {
                const double tn = now(), rate = (double)(step - step_log) / (tn - t_log > 0 ? tn - t_log : 1e-9);
                char el[32], left[32];
                format_duration(el, sizeof el, elapsed);
                format_duration(left, sizeof left, (double)(cfg->steps - step) / rate);
                printf("step %*ld/%ld  loss %10.4f  lr %.2e  |g| %9.3g  %9.0f samples/s  %.2f ms/step  elapsed %s  left %s\n",
                       (int)snprintf(NULL, 0, "%ld", cfg->steps), step, cfg->steps, loss, lr, gnorm, rate * (double)B,
                       1e3 / rate, el, left);
                fflush(stdout);
                t_log = tn;
                step_log = step;
            }
        }
        if ((cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) || step == cfg->steps || stop_signal) {
            int ok = rank != 0 || checkpoint(&s, cfg, config_text, target, ckpt_path, err, sizeof err) == 0;
            if (!ok) fprintf(stderr, "fmtrain: error: %s\n", err);
            if (!fm_comm_all_ok(ok)) {
                status = 1;
                break;
            }
        }
        if (stop_signal) {
            if (rank == 0) {
                printf("stopped by a signal at step %ld of %ld; %s holds it: run the same command to resume "
                       "(exit status %d)\n", step, cfg->steps, ckpt_path, FM_EXIT_STOPPED);
                fflush(stdout);
            }
            status = FM_EXIT_STOPPED;
            break;
        }
    }
    fm_mlp_work_free(work);
    free(t); free(x0); free(z); free(xt); free(u); free(dout);
    fm_dist_free(target);
    fm_dist_free(source);

    if (status == 0 && rank == 0) {
        printf("trained to step %ld in %.2f s; checkpoint %s\n", s.step, now() - t_start, ckpt_path);
        fflush(stdout);
    }
    if (status == 0 && cfg->sample_n > 0) {
        int ok = fm_samples_run(samples_path, cfg, config_text, &s.mlp, s.params, s.step, err, sizeof err) == 0;
        if (!ok && rank == 0) fprintf(stderr, "fmtrain: error: %s\n", err);
        if (!ok) status = 1;
    }
done:
    free(config_text);
    free(s.params); free(s.grad); free(s.m); free(s.v);
    fm_history_free(&s.hist);
    return status;
}
