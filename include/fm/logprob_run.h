/* fmtrain logprob: the model's exact log-likelihood of points (DESIGN.md section 7),
 *     log p_1(x) = log p_0(x_0) - int_0^1 div u(x_t, t) dt,
 * along the reverse ODE from x at t = 1 to x_0 at t = 0 (fm/field.h), with the [sample] solver
 * keys (solver, steps, atol, rtol) and sample.divergence. The points are split over the ranks as
 * the sampler splits trajectories (point j on the rank whose share holds it); every rank
 * integrates its own and all write the output file together. */
#ifndef FM_LOGPROB_RUN_H
#define FM_LOGPROB_RUN_H

#include "fm/config.h"
#include "fm/dataset.h"
#include "fm/model.h"

/* 1 when sample.divergence (auto: exact up to dim 16) asks for the exact divergence. */
int fm_logprob_exact(const fm_config *cfg, int dim);

/* Collective. The points: every row of data (its /x, in the model's [-1, 1] space), or with
 * data NULL sample.n draws of the config's target (seed sample.seed, step 0,
 * which no training step uses). Writes path atomically: /x, /logp, /x0, /logp0, /nfe and the
 * attributes that made them. Returns 0, FM_EXIT_STOPPED (a signal: nothing
 * written), or -1 with err. */
int fm_logprob_run(const char *path, const fm_config *cfg, const char *config_text, const fm_model *m,
                   const float *params, int ema, const fm_dataset *data, const char *points, long checkpoint_step,
                   char *err, int cap);

#endif
