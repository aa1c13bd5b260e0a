/* Training: data-parallel CFM over MPI (DESIGN.md section 2). The trainer takes single steps
 * (the benchmark times them); fm_train_run is the whole run of `fmtrain train`. */
#ifndef FM_TRAIN_H
#define FM_TRAIN_H

#include "fm/config.h"
#include "fm/coupling.h"
#include "fm/dist.h"
#include "fm/model.h"
#include "fm/optim.h"
#include "fm/path.h"
#include "fm/target.h"

/* After its nparams gradients the flat gradient buffer carries what the all-reduce sums with
 * them: the shard's loss, and its stop request (a signal). */
enum { FM_SLOT_LOSS = 0, FM_SLOT_STOP = 1, FM_NSLOTS = 2 };

/* Seconds spent in each part of the steps taken, summed. */
typedef struct {
    double draw, couple, forward, backward, allreduce, optim; /* couple: the OT assignment (in draw too) */
} fm_step_times;

typedef struct {
    float loss;       /* the global batch's loss, before the update */
    double grad_norm; /* global gradient L2 norm before clipping */
    double lr;
    int finite;       /* 0: loss or gradient not finite, the update was not applied */
    int stop;         /* some rank was asked to stop (signal) */
} fm_step_result;

typedef struct {
    fm_config cfg;
    fm_model model;
    fm_path path;
    fm_path_t_dist t_dist;
    fm_optim optim;
    float *params, *m, *v;        /* [nparams] each, one layout */
    float *ema;                   /* [nparams] the weights' moving average (optim.ema > 0), else NULL */
    float *grad;                  /* [nparams + FM_NSLOTS]: the same layout, then the slots */
    long step;                    /* steps done */
    long i0, nloc;                /* this rank's shard of every global batch: [i0, i0 + nloc) */
    fm_dist *source;              /* x0 ~ N(0, source_std^2 I) */
    fm_target target;             /* z (and labels) */
    /* per-microbatch buffers */
    int mb;
    float *t;                     /* [mb] */
    float *x0, *z, *xt, *u, *dout; /* [mb, D] */
    int *y;                       /* [mb] labels, when the target has classes */
    float *drop;                  /* [mb] uniforms of the label dropout */
    fm_model_work *work;
    /* train.coupling = ot: the whole global batch's draws, and the pairing of its rows */
    float *x0_all, *z_all;        /* [batch, D] */
    int *y_all, *perm;            /* [batch] labels; perm[i]: the x0 row paired with z row i */
    fm_assign_work *assign;
    int overlap;                  /* all-reduce each finished gradient range during the backward */
    float *part;                  /* [nparams + FM_NSLOTS] overlap: this rank's gradient, summed into grad */
    /* train.deterministic = K: this rank's K / P shards' gradients, alone (shard 0 in grad), summed
     * in a fixed tree (K a power of two) or in fixed point (any other K) */
    int nshards;
    float *shard_grad;            /* [nshards - 1, nparams + FM_NSLOTS] shards 1, 2, ... */
    float *tree_scratch;          /* [(nparams + FM_NSLOTS + 1) / 2] the tree all-reduce's halves */
    int64_t *fixed;               /* [nparams + FM_NSLOTS] */
    const fm_dataset *test;       /* held-out rows for the validation loss, or NULL */
} fm_trainer;

/* Collective: builds the model, initialises the parameters on rank 0 and broadcasts them. data:
 * the dataset a file target draws from (fm/data_load.h), NULL for the others. */
fm_trainer *fm_trainer_new(const fm_config *cfg, const fm_dataset *data);
/* Collective: one step of the global batch (draws, forward, backward, all-reduce, Adam). */
fm_step_result fm_trainer_step(fm_trainer *tr, fm_step_times *times /* may be NULL */);
void fm_trainer_free(fm_trainer *tr);

/* Collective: the loss on the first train.eval_n held-out rows (tr->test), split over the
 * ranks, with draws of t and x0 fixed for every evaluation (streams VAL_T, VAL_X0; index = row),
 * every label kept: comparable from one evaluation to the next. */
float fm_trainer_eval(fm_trainer *tr);

/* Collective. Trains into outdir (created by the caller), resuming per cfg->resume, then samples
 * when sample.n > 0. Returns the process exit status (0, 1, or FM_EXIT_STOPPED). */
int fm_train_run(const fm_config *cfg, const char *outdir);

#endif
