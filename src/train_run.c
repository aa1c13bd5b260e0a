#include "fm/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm/ckpt.h"
#include "fm/clock.h"
#include "fm/comm.h"
#include "fm/data_load.h"
#include "fm/error.h"
#include "fm/file.h"
#include "fm/isa.h"
#include "fm/progress.h"
#include "fm/sample_run.h"
#include "fm/stop.h"
#include "fm/version.h"

/* An error every rank knows alike: rank 0 says it once, all end together. */
static int fail_all(const char *msg)
{
    if (fm_comm_rank() == 0) fm_error_print(msg);
    return 1;
}

/* Rank 0 reads the checkpoint and checks it against cfg; the others learn the outcome. */
static int resume_from(fm_trainer *tr, fm_history *hist, double *time0, const char *path, char *err, int cap)
{
    int ok = 1;
    fm_ckpt c = {0};
    if (fm_comm_rank() == 0) {
        char diff[1024];
        const int read = fm_ckpt_read(&c, path, err, cap);
        /* A checkpoint from before data.shape (its config has none) was trained on these very rows
         * when its fingerprint matches: it takes the run's shape. */
        if (read == 0 && c.cfg.shape.n == 0) c.cfg.shape = tr->cfg.shape;
        char good[FM_PATH_MAX + 32];
        long good_step;
        if (read && fm_ckpt_newest_good(good, sizeof good, &good_step, tr->cfg.dir) == 0) {
            const size_t len = strlen(err);
            const int n = snprintf(err + len, (size_t)cap - len, "; %s (step %ld) reads back whole: copy it over %s "
                                   "to resume from it", good, good_step, path);
            if (n < 0 || (size_t)n >= (size_t)cap - len) err[len] = '\0'; /* no room: the first part alone */
        }
        if (read) {
            ok = 0;
        } else if (c.data_fingerprint != tr->target.fingerprint) {
            fm_errorf(err, cap, "cannot resume %s: it was trained on %s; this run's data is %s (start a new run with "
                      "another -o, or give the data it was trained on)", path, c.data_about ? c.data_about : "other data",
                      tr->target.about);
            ok = 0;
        } else if (fm_config_diff(diff, sizeof diff, &c.cfg, &tr->cfg, 1) > 0) {
            fm_errorf(err, cap, "cannot resume %s: the config changes %s; these keys must stay as the checkpoint "
                      "has them (start a new run with another -o instead)", path, diff);
            ok = 0;
        }
    }
    if (!fm_comm_all_ok(ok)) {
        fm_ckpt_free(&c);
        return -1;
    }
    const size_t n = tr->model.nparams;
    FM_CHECK(fm_comm_rank() != 0 || c.model.nparams == n, "checkpoint of %zu parameters for a model of %zu",
             c.model.nparams, n);
    long step = c.step;
    if (fm_comm_rank() == 0) {
        memcpy(tr->params, c.params, sizeof(float) * n);
        memcpy(tr->m, c.m, sizeof(float) * n);
        memcpy(tr->v, c.v, sizeof(float) * n);
        /* The moving average goes on from the checkpoint's; one without starts from its weights. */
        if (tr->ema) memcpy(tr->ema, c.ema ? c.ema : c.params, sizeof(float) * n);
        fm_history_free(hist);
        *hist = c.hist;
        memset(&c.hist, 0, sizeof c.hist);
        *time0 = hist->n ? hist->time[hist->n - 1] : 0.0;
        char changed[1024];
        fm_config_diff(changed, sizeof changed, &c.cfg, &tr->cfg, 0);
        printf("resuming %s at step %ld%s%s\n", path, step, *changed ? "; changed: " : "", changed);
    }
    fm_comm_bcast(&step, sizeof step);
    fm_comm_bcast(tr->params, sizeof(float) * n);
    fm_comm_bcast(tr->m, sizeof(float) * n);
    fm_comm_bcast(tr->v, sizeof(float) * n);
    if (tr->ema) fm_comm_bcast(tr->ema, sizeof(float) * n);
    fm_model_changed(tr->work);
    tr->step = step;
    fm_ckpt_free(&c);
    return 0;
}

/* Rank 0: checkpoint.h5, and a numbered copy when train.keep_checkpoints asks for them (the
 * last K, plus the final one). */
static int checkpoint(const fm_trainer *tr, const fm_history *hist, const char *config_text, const char *path,
                      char *err, int cap)
{
    const fm_config *cfg = &tr->cfg;
    const fm_ckpt_state s = {config_text, &tr->model, &tr->target, tr->params, tr->m, tr->v, tr->ema, tr->step, hist};
    if (fm_ckpt_write(path, &s, err, cap)) return -1;
    if (cfg->keep_checkpoints == 0) return 0;
    const int keep = (int)cfg->keep_checkpoints + (tr->step == cfg->steps ? 1 : 0);
    return fm_ckpt_keep(cfg->dir, tr->step, keep, err, cap);
}

/* Collective: the dataset of a file target, in memory once per node; the run's data.dim and
 * data.shape are the file's, and its model is checked again with them. 0, or -1 after rank 0 said why. */
static int load_data(fm_data *data, fm_config *cfg)
{
    char err[FM_PATH_MAX + 512];
    if (fm_data_load(data, cfg->data_file, err, sizeof err)) {
        fail_all(err);
        return -1;
    }
    fm_dataset_configure(cfg, &data->data);
    const int K = data->data.classes;
    if (cfg->model_classes > 0 && K == 0)
        fm_errorf(err, sizeof err, "[model] classes = %ld needs labels: %s has no /y", cfg->model_classes,
                  cfg->data_file);
    else if (cfg->model_classes > 0 && K > cfg->model_classes)
        fm_errorf(err, sizeof err, "[model] classes = %ld but %s has labels up to %d: allowed: model.classes >= %d "
                  "(or 0: unconditional)", cfg->model_classes, cfg->data_file, K - 1, K);
    else if (cfg->eval_every > 0 && data->test.n == 0)
        fm_errorf(err, sizeof err, "[train] eval_every = %ld needs held-out rows: %s has no /x_test", cfg->eval_every,
                  cfg->data_file);
    else if (fm_config_validate(cfg, err, sizeof err) == 0)
        *err = '\0';
    if (*err) {
        fm_data_free(data);
        fail_all(err);
        return -1;
    }
    const double pss = fm_data_node_pss_mb(data);
    if (fm_comm_rank() == 0) {
        printf("dataset %s: %llu rows of %d numbers (%s), %.1f MB in memory once per node; PSS of this node's ranks "
               "%.1f MB\n", cfg->data_file, (unsigned long long)data->data.n, data->data.dim,
               fm_dtype_name(data->data.type), (double)data->bytes / 1e6, pss);
        fflush(stdout);
    }
    return 0;
}

int fm_train_run(const fm_config *cfg_in, const char *outdir)
{
    const int rank = fm_comm_rank(), P = fm_comm_size();
    char err[1536], ckpt_path[FM_PATH_MAX + 32], samples_path[FM_PATH_MAX + 32];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.h5", outdir);
    snprintf(samples_path, sizeof samples_path, "%s/samples.h5", outdir);
    fm_config run = *cfg_in;
    const fm_config *cfg = &run;
    fm_data data = {0};
    if (fm_target_needs_data(cfg) && load_data(&data, &run)) return 1;
    char *config_text = fm_config_dump(cfg);
    fm_trainer *tr = fm_trainer_new(cfg, data.mem ? &data.data : NULL);
    tr->test = data.mem && data.test.n ? &data.test : NULL;
    fm_history hist = {0};
    double time0 = 0.0;

    /* Rank 0 owns the run directory: it locks it for the run's life (a second run on it is
     * refused), then decides resume or start; only "no such file" means start. */
    int lock = -1, exists = 0, status = 0;
    if (rank == 0 && (lock = fm_file_lock(outdir, "output directory", err, sizeof err)) >= 0)
        exists = fm_file_exists(ckpt_path, err, sizeof err);
    if (!fm_comm_all_ok(rank != 0 || (lock >= 0 && exists >= 0))) {
        status = fail_all(err);
        goto done;
    }
    fm_comm_bcast(&exists, sizeof exists);
    if (cfg->sample_n > 0 && fm_sample_run_may_write(samples_path, "samples", err, sizeof err)) {
        status = fail_all(err);
        goto done;
    }
    if (strcmp(cfg->resume, "always") == 0 && !exists) {
        fm_errorf(err, sizeof err, "--resume: %s does not exist: nothing to resume (drop --resume to start a new run)", ckpt_path);
        status = fail_all(err);
    } else if (strcmp(cfg->resume, "never") == 0 && exists) {
        fm_errorf(err, sizeof err, "%s exists and train.resume = never: choose another -o, or resume it with --resume", ckpt_path);
        status = fail_all(err);
    } else if (exists && resume_from(tr, &hist, &time0, ckpt_path, err, sizeof err)) {
        status = 1;
        if (rank == 0) fm_error_print(err);
    }
    if (status) goto done;

    if (rank == 0) {
        char shape[256];
        tr->model.ops->describe(shape, sizeof shape, &tr->model);
        /* Room for every row this run records: no allocation inside the step loop. */
        fm_history_reserve(&hist, hist.n + 102 + (size_t)(cfg->steps / cfg->history_every) + (size_t)(cfg->steps / cfg->log_every) +
                                      (cfg->eval_every ? (size_t)(cfg->steps / cfg->eval_every) : 0));
        printf("fmtrain %s (%s, kernels %s): %d rank%s x %ld thread%s, batch %ld (%ld to %ld per rank, microbatch %d, overlap %s), "
               "%s %s, %zu parameters, steps %ld to %ld\n", fm_version_release(), fm_version_git(),
               fm_isa_name(fm_isa_active()), P, P > 1 ? "s" : "",
               cfg->threads, cfg->threads > 1 ? "s" : "", cfg->batch, cfg->batch / P, (cfg->batch + P - 1) / P, tr->mb,
               tr->overlap ? "on" : "off", tr->model.ops->name, shape, tr->model.nparams, tr->step, cfg->steps);
        printf("---- effective config ----\n%s--------------------------\n", config_text);
        fflush(stdout);
    }

    fm_progress prog = {0};
    if (!fm_comm_all_ok(rank != 0 || fm_progress_open(&prog, outdir, &hist, tr->step, cfg->steps, cfg->batch,
                                                      cfg->log_every, cfg->progress, err, sizeof err) == 0)) {
        status = fail_all(err);
        goto done;
    }
    long saved = exists ? tr->step : -1; /* the step checkpoint.h5 holds (-1: none yet) */
    const double t_start = fm_now();
    while (tr->step < cfg->steps) {
        const long step = tr->step + 1;
        const fm_step_result r = fm_trainer_step(tr, NULL);
        if (!r.finite) {
            char kept[FM_PATH_MAX + 64];
            if (saved >= 0) snprintf(kept, sizeof kept, "%s keeps step %ld", ckpt_path, saved);
            else snprintf(kept, sizeof kept, "no checkpoint was written");
            fm_errorf(err, sizeof err, "non-finite %s at step %ld; stopped without writing it: %s (try a lower optim.lr "
                      "or optim.clip > 0)", isfinite(r.loss) ? "gradient" : "loss", step, kept);
            status = fail_all(err);
            break;
        }
        const int evaluated = tr->test && cfg->eval_every > 0 && (step % cfg->eval_every == 0 || step == cfg->steps);
        const float val = evaluated ? fm_trainer_eval(tr) : NAN;
        if (rank == 0) {
            const double elapsed = fm_now() - t_start;
            const int recorded = step <= 100 || step % cfg->history_every == 0 || step % cfg->log_every == 0 ||
                                 step == cfg->steps || r.stop || evaluated;
            if (recorded) fm_history_push(&hist, step, r.loss, (float)r.lr, (float)r.grad_norm, time0 + elapsed, val);
            fm_progress_step(&prog, &hist, step, r.loss, r.lr, r.grad_norm, elapsed);
        }
        if ((cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) || step == cfg->steps || r.stop) {
            int ok = rank != 0 || checkpoint(tr, &hist, config_text, ckpt_path, err, sizeof err) == 0;
            if (!ok) fm_error_print(err);
            if (!fm_comm_all_ok(ok)) {
                status = 1;
                break;
            }
            saved = tr->step;
        }
        if (r.stop) {
            if (rank == 0) {
                printf("stopped by a signal at step %ld of %ld; %s holds it: run the same command to resume "
                       "(exit status %d)\n", step, cfg->steps, ckpt_path, FM_EXIT_STOPPED);
                fflush(stdout);
            }
            status = FM_EXIT_STOPPED;
            break;
        }
    }
    if (rank == 0)
        fm_progress_close(&prog, &hist, status == 0 ? "done" : status == FM_EXIT_STOPPED ? "stopped" : "failed", tr->step);
    if (status == 0 && rank == 0) {
        printf("trained to step %ld in %.2f s; checkpoint %s\n", tr->step, fm_now() - t_start, ckpt_path);
        fflush(stdout);
    }
    if (status == 0 && cfg->sample_n > 0) {
        const int ema = tr->ema && strcmp(cfg->sample_weights, "ema") == 0;
        status = fm_sample_run(samples_path, cfg, config_text, &tr->model, ema ? tr->ema : tr->params, ema,
                               &tr->target.rows, tr->step, err, sizeof err);
        if (status < 0 && rank == 0) fm_error_print(err);
        if (status < 0) status = 1;
    }
done:
    fm_file_unlock(lock);
    free(config_text);
    fm_history_free(&hist);
    fm_trainer_free(tr);
    if (data.mem) fm_data_free(&data);
    return status;
}
