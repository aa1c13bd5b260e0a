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
#include "fm/fpmode.h"
#include "fm/kernels.h"
#include "fm/names.h"
#include "fm/progress.h"
#include "fm/rng.h"
#include "fm/sample_run.h"
#include "fm/stop.h"
#include "fm/version.h"

fm_trainer *fm_trainer_new(const fm_config *cfg, const fm_dataset *data)
{
    const int rank = fm_comm_rank(), P = fm_comm_size();
    fm_trainer *tr = fm_calloc(sizeof *tr);
    tr->cfg = *cfg;
    fm_fpmode_set(); /* this thread computes: subnormals flushed (fm/fpmode.h) */
    fm_kern_blas_threads((int)cfg->threads);
    char err[512];
    /* The config was validated: a failure here is a bug, not bad input. */
    if (fm_model_build(&tr->model, cfg, err, sizeof err) || fm_target_build(&tr->target, cfg, data, err, sizeof err))
        FM_FATAL("%s", err);
    tr->path = (fm_path){fm_names_find(fm_path_schedule_name, cfg->schedule), cfg->eps, cfg->sigma_min};
    tr->t_dist = (fm_path_t_dist){fm_names_find(fm_path_t_dist_name, cfg->t_dist), cfg->t_mean, cfg->t_std};
    tr->optim = (fm_optim){cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps, cfg->clip,
                           fm_names_find(fm_optim_schedule_name, cfg->lr_schedule), cfg->warmup};
    const size_t n = tr->model.nparams, D = (size_t)tr->model.dim;
    tr->params = fm_malloc(sizeof(float) * n);
    tr->grad = fm_malloc(sizeof(float) * (n + FM_NSLOTS));
    tr->m = fm_calloc(sizeof(float) * n);
    tr->v = fm_calloc(sizeof(float) * n);
    if (rank == 0) tr->model.ops->init(tr->params, &tr->model, (uint64_t)cfg->seed);
    fm_comm_bcast(tr->params, sizeof(float) * n);
    if (cfg->ema > 0) {
        tr->ema = fm_malloc(sizeof(float) * n);
        memcpy(tr->ema, tr->params, sizeof(float) * n);
    }

    tr->i0 = cfg->batch * rank / P;
    tr->nloc = cfg->batch * (rank + 1) / P - tr->i0;
    tr->source = fm_dist_gaussian((int)D, (float)cfg->source_std);
    tr->mb = (int)(cfg->microbatch < tr->nloc ? cfg->microbatch : (tr->nloc > 0 ? tr->nloc : 1));
    const size_t mb = (size_t)tr->mb;
    tr->t = fm_malloc(sizeof(float) * mb);
    tr->x0 = fm_malloc(sizeof(float) * mb * D);
    tr->z = fm_malloc(sizeof(float) * mb * D);
    tr->xt = fm_malloc(sizeof(float) * mb * D);
    tr->u = fm_malloc(sizeof(float) * mb * D);
    tr->dout = fm_malloc(sizeof(float) * mb * D);
    tr->y = fm_malloc(sizeof(int) * mb);
    tr->drop = fm_malloc(sizeof(float) * mb);
    tr->work = fm_model_work_new(&tr->model, tr->mb, 1);
    if (fm_names_find(fm_coupling_name, cfg->coupling) == FM_COUPLING_OT) {
        const size_t B = (size_t)cfg->batch;
        tr->x0_all = fm_malloc(sizeof(float) * B * D);
        tr->z_all = fm_malloc(sizeof(float) * B * D);
        tr->y_all = fm_malloc(sizeof(int) * B);
        tr->perm = fm_malloc(sizeof(int) * B);
        tr->assign = fm_assign_work_new((int)B);
    }
    /* Every rank must make the same collective calls, so overlap needs every shard non-empty. */
    tr->overlap = strcmp(cfg->overlap, "on") == 0 && P > 1 && cfg->batch >= P && cfg->deterministic == 0;
    if (cfg->deterministic > 0) {
        FM_CHECK(cfg->deterministic % P == 0, "train.deterministic = %ld on %d ranks (not a divisor)", cfg->deterministic, P);
        tr->nshards = (int)(cfg->deterministic / P);
        tr->shard_grad = fm_malloc(sizeof(float) * (size_t)tr->nshards * (n + FM_NSLOTS));
        tr->fixed = fm_malloc(sizeof(int64_t) * (n + FM_NSLOTS));
    }
    return tr;
}

void fm_trainer_free(fm_trainer *tr)
{
    if (!tr) return;
    free(tr->params); free(tr->grad); free(tr->m); free(tr->v);
    free(tr->t); free(tr->x0); free(tr->z); free(tr->xt); free(tr->u); free(tr->dout); free(tr->y); free(tr->drop);
    free(tr->ema);
    free(tr->x0_all); free(tr->z_all); free(tr->y_all); free(tr->perm);
    free(tr->shard_grad); free(tr->fixed);
    fm_assign_work_free(tr->assign);
    fm_dist_free(tr->source);
    fm_model_work_free(tr->work);
    fm_target_free(&tr->target);
    fm_model_free(&tr->model);
    free(tr);
}

/* Overlap: a finished gradient range starts its all-reduce at once. The range that ends the
 * parameters runs on over the slots, so the loss and the stop request travel with it. */
static void grad_done(void *ctx, size_t lo, size_t hi)
{
    fm_trainer *tr = ctx;
    if (hi == tr->model.nparams) hi += FM_NSLOTS;
    fm_comm_iallreduce_sum(tr->grad + lo, hi - lo);
    fm_comm_progress();
}

/* What the all-reduce carries besides gradients: the shard's loss, a test-only fault, and the stop
 * request (every rank's travels with the gradient: all stop at the same step). */
static void fill_slots(float *grad /* [nparams + FM_NSLOTS] */, size_t n, double loss, float scale, long step)
{
    grad[n + FM_SLOT_LOSS] = (float)(scale * loss);
    if (fm_comm_rank() == 0 && fm_fault("nan_at_step", step)) grad[0] = NAN; /* test-only */
    grad[n + FM_SLOT_STOP] = fm_stop_requested() ? 1.0f : 0.0f;
}

/* Samples [first, first + count) of the step, in microbatches that keep one pass's activations in
 * cache (each drawn, run and differentiated before the next), their gradient added into grad.
 * Returns their summed squared error. overlap: the slots are filled before the last backward, so
 * that its all-reduces carry them. */
static double run_samples(fm_trainer *tr, float *grad, long first, long count, long step, float scale, int overlap,
                          fm_step_times *tm, double *t0)
{
    const fm_config *cfg = &tr->cfg;
    const int D = tr->model.dim, K = tr->model.classes;
    const uint64_t seed = (uint64_t)cfg->seed;
    double loss = 0.0, t1;
    for (long c0 = 0; c0 < count; c0 += tr->mb) {
        const int nb = (int)(count - c0 < tr->mb ? count - c0 : tr->mb);
        const int last = c0 + nb >= count;
        const uint32_t i0 = (uint32_t)(first + c0);
        fm_path_draw_t(tr->t, &tr->t_dist, seed, (uint32_t)step, i0, nb);
        if (tr->assign) {
            for (int i = 0; i < nb; i++) {
                const size_t zi = i0 + (size_t)i;
                memcpy(tr->z + (size_t)i * D, tr->z_all + zi * D, sizeof(float) * D);
                memcpy(tr->x0 + (size_t)i * D, tr->x0_all + (size_t)tr->perm[zi] * D, sizeof(float) * D);
                tr->y[i] = tr->y_all[zi];
            }
        } else {
            fm_dist_sample(tr->x0, tr->source, seed, (uint32_t)step, i0, FM_STREAM_X0, nb);
            fm_target_draw(tr->z, tr->y, &tr->target, seed, (uint32_t)step, i0, nb);
        }
        if (K > 0) { /* classifier-free guidance: some samples learn the unlabelled field */
            fm_rng_uniform_rows(tr->drop, seed, (uint32_t)step, i0, FM_STREAM_COND, nb);
            for (int i = 0; i < nb; i++)
                if (tr->drop[i] < (float)cfg->cond_drop) tr->y[i] = K;
        }
        fm_path_sample(tr->xt, tr->u, &tr->path, tr->t, tr->x0, tr->z, nb, D);
        t1 = fm_now(); tm->draw += t1 - *t0; *t0 = t1;
        const fm_model_in in = {tr->xt, tr->t, 0.0f, K > 0 ? tr->y : NULL, nb};
        const float *out = fm_model_forward(tr->work, tr->params, &in);
        loss += fm_path_loss(tr->dout, out, tr->u, nb, D, scale);
        t1 = fm_now(); tm->forward += t1 - *t0; *t0 = t1;
        if (overlap && last) fill_slots(grad, tr->model.nparams, loss, scale, step);
        fm_model_backward(grad, tr->work, tr->params, tr->dout, nb, overlap && last ? grad_done : NULL, tr);
        t1 = fm_now(); tm->backward += t1 - *t0; *t0 = t1;
    }
    return loss;
}

/* Deterministic mode (train.deterministic = K): this rank's shards, each computed alone into its
 * own buffer, then summed exactly: every value in fixed point (int64, scaled by a power of two
 * from the largest value of any shard: one max all-reduce; truncated, so values below 2^-61 of
 * the largest are lost), an integer all-reduce, and back. An
 * integer sum does not depend on its order, so the gradient is the same bits on any P dividing K. */
static void deterministic_sum(fm_trainer *tr, long step, float scale, fm_step_times *tm, double *t0)
{
    const fm_config *cfg = &tr->cfg;
    const size_t n = tr->model.nparams, len = n + FM_NSLOTS;
    const long K = cfg->deterministic, k0 = K * fm_comm_rank() / fm_comm_size();
    double m = 0.0;
    for (int s = 0; s < tr->nshards; s++) {
        const long k = k0 + s, first = cfg->batch * k / K, count = cfg->batch * (k + 1) / K - first;
        float *g = tr->shard_grad + (size_t)s * len;
        memset(g, 0, sizeof(float) * len);
        const double loss = run_samples(tr, g, first, count, step, scale, 0, tm, t0);
        fill_slots(g, n, loss, scale, step);
        if (s > 0) g[n + FM_SLOT_STOP] = 0.0f; /* one request per rank */
        m = fmax(m, (double)fm_kern_absmax(g, len));
    }
    fm_comm_allreduce_max(&m, 1);
    if (!isfinite(m)) { /* the step is not applied (fm_trainer_step's finiteness check) */
        for (size_t i = 0; i < len; i++) tr->grad[i] = NAN;
        tr->grad[n + FM_SLOT_STOP] = 0.0f;
        return;
    }
    /* 2^E: K values of at most m sum below 2^62 */
    int e = 0;
    frexp(m, &e); /* m < 2^e */
    int kbits = 0;
    while ((1L << kbits) < K) kbits++;
    const double up = ldexp(1.0, 61 - e - kbits), down = ldexp(1.0, -(61 - e - kbits));
    memset(tr->fixed, 0, sizeof(int64_t) * len);
    for (int s = 0; s < tr->nshards; s++) fm_kern_fixed_add(tr->fixed, tr->shard_grad + (size_t)s * len, up, len);
    fm_comm_allreduce_sum_i64(tr->fixed, len);
    fm_kern_fixed_to_float(tr->grad, tr->fixed, down, len);
}

fm_step_result fm_trainer_step(fm_trainer *tr, fm_step_times *times)
{
    const fm_config *cfg = &tr->cfg;
    const size_t n = tr->model.nparams;
    float *slots = tr->grad + n;
    const int D = tr->model.dim;
    const long step = tr->step + 1; /* the step being taken; its draws use counter `step` */
    const uint64_t seed = (uint64_t)cfg->seed;
    const fm_optim *optim = &tr->optim;
    /* Each shard's gradient is its samples' sum divided by B*D: the all-reduced sum is the
     * global batch's gradient however the batch is split. */
    const float scale = 1.0f / (float)((double)cfg->batch * D);
    fm_step_times tm = {0};
    double t0 = fm_now(), t1;

    FM_CHECK(fm_fpmode_ok(), "the floating-point mode of this thread does not flush subnormals (fm_fpmode_set "
             "runs in fm_trainer_new; something reset it since)");
    memset(tr->grad, 0, sizeof(float) * (n + FM_NSLOTS));
    fm_model_prepare(tr->work, tr->params); /* the params the optimiser changed last step */
    const int overlap = tr->overlap;
    if (tr->assign) { /* every rank draws and pairs the whole global batch, identically */
        const int B = (int)cfg->batch;
        fm_dist_sample(tr->x0_all, tr->source, seed, (uint32_t)step, 0, FM_STREAM_X0, B);
        fm_target_draw(tr->z_all, tr->y_all, &tr->target, seed, (uint32_t)step, 0, B);
        t1 = fm_now();
        tm.draw += t1 - t0;
        t0 = t1;
        fm_coupling_ot(tr->perm, tr->assign, tr->x0_all, tr->z_all, B, D);
        t1 = fm_now();
        tm.couple += t1 - t0;
        tm.draw += t1 - t0;
        t0 = t1;
    }
    if (tr->shard_grad) {
        deterministic_sum(tr, step, scale, &tm, &t0);
    } else {
        const double loss = run_samples(tr, tr->grad, tr->i0, tr->nloc, step, scale, overlap, &tm, &t0);
        if (!overlap) fill_slots(tr->grad, n, loss, scale, step);
        if (overlap) fm_comm_wait();
        else fm_comm_allreduce_sum(tr->grad, n + FM_NSLOTS);
    }
    t1 = fm_now(); tm.allreduce += t1 - t0; t0 = t1; /* deterministic: with the fixed-point conversions */
    fm_step_result r = {slots[FM_SLOT_LOSS], 0.0, fm_optim_lr(optim, step, cfg->steps), 1, slots[FM_SLOT_STOP] > 0.0f};
    r.grad_norm = fm_optim_clip(tr->grad, n, optim->clip);
    r.finite = isfinite(r.loss) && isfinite(r.grad_norm);
    if (r.finite) {
        fm_optim_adam_step(tr->params, tr->m, tr->v, tr->grad, n, optim, step, r.lr);
        if (tr->ema) fm_optim_ema(tr->ema, tr->params, n, cfg->ema);
        fm_model_changed(tr->work);
        tr->step = step;
    }
    tm.optim += fm_now() - t0;
    if (times) {
        times->draw += tm.draw; times->couple += tm.couple; times->forward += tm.forward; times->backward += tm.backward;
        times->allreduce += tm.allreduce; times->optim += tm.optim;
    }
    return r;
}

float fm_trainer_eval(fm_trainer *tr)
{
    const fm_dataset *d = tr->test;
    const int rank = fm_comm_rank(), P = fm_comm_size(), D = tr->model.dim, K = tr->model.classes;
    const uint64_t E = d->n < (uint64_t)tr->cfg.eval_n ? d->n : (uint64_t)tr->cfg.eval_n;
    const uint64_t i0 = E * (uint64_t)rank / (uint64_t)P, i1 = E * (uint64_t)(rank + 1) / (uint64_t)P;
    const uint64_t seed = (uint64_t)tr->cfg.seed;
    uint64_t rows[64];
    double sum = 0.0;
    fm_model_prepare(tr->work, tr->params);
    for (uint64_t c0 = i0; c0 < i1; c0 += (uint64_t)tr->mb) {
        const int nb = (int)(i1 - c0 < (uint64_t)tr->mb ? i1 - c0 : (uint64_t)tr->mb);
        for (int r0 = 0; r0 < nb; r0 += 64) {
            const int m = nb - r0 < 64 ? nb - r0 : 64;
            for (int i = 0; i < m; i++) rows[i] = c0 + (uint64_t)(r0 + i);
            fm_dataset_rows(tr->z + (size_t)r0 * D, d, rows, m);
            for (int i = 0; K > 0 && i < m; i++) tr->y[r0 + i] = d->y ? d->y[rows[i]] : K;
        }
        fm_rng_uniform_rows(tr->t, seed, 0, (uint32_t)c0, FM_STREAM_VAL_T, nb);
        fm_dist_sample(tr->x0, tr->source, seed, 0, (uint32_t)c0, FM_STREAM_VAL_X0, nb);
        fm_path_sample(tr->xt, tr->u, &tr->path, tr->t, tr->x0, tr->z, nb, D);
        const fm_model_in in = {tr->xt, tr->t, 0.0f, K > 0 ? tr->y : NULL, nb};
        sum += fm_path_loss(tr->dout, fm_model_forward(tr->work, tr->params, &in), tr->u, nb, D, 1.0f);
    }
    float loss = (float)(sum / ((double)E * D));
    fm_comm_allreduce_sum(&loss, 1);
    return loss;
}

/* ---- the whole run ---- */

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
               "%s %s, %zu parameters, steps %ld to %ld\n", fm_version_release(), fm_version_git(), fm_kern_isa(), P, P > 1 ? "s" : "",
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
    const double t_start = fm_now();
    while (tr->step < cfg->steps) {
        const long step = tr->step + 1;
        const fm_step_result r = fm_trainer_step(tr, NULL);
        if (!r.finite) {
            fm_errorf(err, sizeof err, "non-finite %s at step %ld; stopped without writing it: %s keeps step %ld "
                      "(try a lower optim.lr or optim.clip > 0)", isfinite(r.loss) ? "gradient" : "loss", step,
                      ckpt_path, tr->step);
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
            fm_progress_step(&prog, &hist, recorded, step, r.loss, r.lr, r.grad_norm, elapsed);
        }
        if ((cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) || step == cfg->steps || r.stop) {
            int ok = rank != 0 || checkpoint(tr, &hist, config_text, ckpt_path, err, sizeof err) == 0;
            if (!ok) fm_error_print(err);
            if (!fm_comm_all_ok(ok)) {
                status = 1;
                break;
            }
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
        fm_progress_close(&prog, status == 0 ? "done" : status == FM_EXIT_STOPPED ? "stopped" : "failed", tr->step);
    if (status == 0 && rank == 0) {
        printf("trained to step %ld in %.2f s; checkpoint %s\n", tr->step, fm_now() - t_start, ckpt_path);
        fflush(stdout);
    }
    if (status == 0 && cfg->sample_n > 0) {
        const int ema = tr->ema && strcmp(cfg->sample_weights, "ema") == 0;
        int ok = fm_sample_run(samples_path, cfg, config_text, &tr->model, ema ? tr->ema : tr->params, ema,
                               &tr->target.rows, tr->step, err, sizeof err) == 0;
        if (!ok && rank == 0) fm_error_print(err);
        if (!ok) status = 1;
    }
done:
    free(config_text);
    fm_history_free(&hist);
    fm_trainer_free(tr);
    if (data.mem) fm_data_free(&data);
    return status;
}
