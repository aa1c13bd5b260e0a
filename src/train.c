#include "fm/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fm/clock.h"
#include "fm/comm.h"
#include "fm/error.h"
#include "fm/fpmode.h"
#include "fm/kernels.h"
#include "fm/names.h"
#include "fm/rng.h"
#include "fm/stop.h"

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
    if (tr->overlap) tr->part = fm_malloc(sizeof(float) * (n + FM_NSLOTS));
    if (cfg->deterministic > 0) {
        FM_CHECK(cfg->deterministic % P == 0, "train.deterministic = %ld on %d ranks (not a divisor)", cfg->deterministic, P);
        tr->nshards = (int)(cfg->deterministic / P);
        if (tr->nshards > 1) tr->shard_grad = fm_malloc(sizeof(float) * (size_t)(tr->nshards - 1) * (n + FM_NSLOTS));
        if ((cfg->deterministic & (cfg->deterministic - 1)) == 0) tr->tree_scratch = fm_malloc(sizeof(float) * ((n + FM_NSLOTS + 1) / 2));
        else tr->fixed = fm_malloc(sizeof(int64_t) * (n + FM_NSLOTS));
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
    free(tr->shard_grad); free(tr->tree_scratch); free(tr->fixed); free(tr->part);
    fm_assign_work_free(tr->assign);
    fm_dist_free(tr->source);
    fm_model_work_free(tr->work);
    fm_target_free(&tr->target);
    fm_model_free(&tr->model);
    free(tr);
}

/* Overlap: a finished gradient range starts its all-reduce at once, from the rank's gradient
 * (tr->part, where the last backward wrote) into tr->grad. The range that ends the parameters
 * runs on over the slots, so the loss and the stop request travel with it. */
static void grad_done(void *ctx, size_t lo, size_t hi)
{
    fm_trainer *tr = ctx;
    if (hi == tr->model.nparams) hi += FM_NSLOTS;
    fm_comm_iallreduce_sum(tr->grad + lo, tr->part + lo, hi - lo);
    fm_comm_progress();
}

/* What the all-reduce carries besides gradients, once per rank: the stop request (every rank's
 * travels with the gradient: all stop at the same step), and a test-only fault. The loss slot is
 * each shard's own. */
static void fill_requests(float *grad /* [nparams + FM_NSLOTS] */, size_t n, long step)
{
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
        if (overlap && last) {
            grad[tr->model.nparams + FM_SLOT_LOSS] = (float)(scale * loss);
            fill_requests(grad, tr->model.nparams, step);
        }
        fm_model_backward(grad, tr->work, tr->params, tr->dout, nb, overlap && last ? grad_done : NULL, tr);
        t1 = fm_now(); tm->backward += t1 - *t0; *t0 = t1;
    }
    return loss;
}

/* Shard s of this rank's in deterministic mode: shard 0 in grad itself, the others in shard_grad. */
static float *shard(fm_trainer *tr, int s)
{
    return s ? tr->shard_grad + (size_t)(s - 1) * (tr->model.nparams + FM_NSLOTS) : tr->grad;
}

/* Deterministic mode (train.deterministic = K): this rank's shards, each computed alone into its
 * own buffer, then summed in an order that does not depend on the number of ranks. K a power of
 * two: a balanced tree of float sums over the K shards in shard order, the rank's own subtrees
 * here and the rest by fm_comm_allreduce_sum_tree (P divides K, so P is a power of two too and
 * every rank's shards form a subtree). Any other K: every value in fixed point (int64, scaled by
 * a power of two from the largest value of any shard: one max all-reduce; truncated, so values
 * below 2^-61 of the largest are lost), an integer all-reduce (an integer sum has no order), and
 * back. Either way the gradient is the same bits on any P dividing K. */
static void deterministic_sum(fm_trainer *tr, long step, float scale, fm_step_times *tm, double *t0)
{
    const fm_config *cfg = &tr->cfg;
    const size_t n = tr->model.nparams, len = n + FM_NSLOTS;
    const long K = cfg->deterministic, k0 = K * fm_comm_rank() / fm_comm_size();
    for (int s = 0; s < tr->nshards; s++) {
        const long k = k0 + s, first = cfg->batch * k / K, count = cfg->batch * (k + 1) / K - first;
        float *g = shard(tr, s);
        if (s) memset(g, 0, sizeof(float) * len);
        g[n + FM_SLOT_LOSS] = (float)(scale * run_samples(tr, g, first, count, step, scale, 0, tm, t0));
    }
    fill_requests(tr->grad, n, step);
    if (tr->tree_scratch) {
        for (int w = 1; w < tr->nshards; w *= 2) /* shard s += shard s + w: lower + upper */
            for (int s = 0; s + w < tr->nshards; s += 2 * w)
                fm_kern_add(shard(tr, s), shard(tr, s + w), len);
        fm_comm_allreduce_sum_tree(tr->grad, tr->tree_scratch, len);
        return;
    }
    double m = 0.0;
    for (int s = 0; s < tr->nshards; s++) m = fmax(m, (double)fm_kern_absmax(shard(tr, s), len));
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
    for (int s = 0; s < tr->nshards; s++) fm_kern_fixed_add(tr->fixed, shard(tr, s), up, len);
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
    float *mine = tr->overlap ? tr->part : tr->grad; /* where this rank's gradient is summed */
    memset(mine, 0, sizeof(float) * (n + FM_NSLOTS));
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
    if (tr->nshards) {
        deterministic_sum(tr, step, scale, &tm, &t0);
    } else {
        const double loss = run_samples(tr, mine, tr->i0, tr->nloc, step, scale, overlap, &tm, &t0);
        if (!overlap) {
            slots[FM_SLOT_LOSS] = (float)(scale * loss);
            fill_requests(tr->grad, n, step);
        }
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
