/* The parallel sampler run: trajectory j (of n) belongs to the rank whose share
 * [floor(rN/P), floor((r+1)N/P)) holds it, its x0 drawn from (sample.seed, j); every rank
 * integrates its own, rank 0 gathers the rows and writes OUTDIR/samples.h5 as one in-memory
 * image (DESIGN.md section 2 allows either; a collective parallel HDF5 write deadlocked inside
 * HDF5 when the disk filled on one rank), so the file is the same for any number of ranks. */
#ifndef FM_SAMPLE_RUN_H
#define FM_SAMPLE_RUN_H

#include "fm/config.h"
#include "fm/dataset.h"
#include "fm/h5io.h"
#include "fm/model.h"
#include "fm/ode.h"

/* The solver options of the [sample] keys; returns 1 for an adaptive solver. */
int fm_sample_run_opts(fm_ode_opts *o, const fm_config *cfg);

/* This rank's share of the integration, no I/O: rows r0 .. r0+nloc of the n trajectories
 * (x0 of row j from (sample.seed, j)) integrated to x, with each one's field evaluations in nfe
 * (may be NULL); the first mloc also recorded in traj. In chunks of sample.batch rows, each
 * integrated to t = 1 while it is in cache. */
void fm_sample_run_integrate(float *x /* [nloc, dim] */, int *nfe /* [nloc] */, float *traj /* [mloc, steps + 1, dim] */,
                             const fm_config *cfg, const fm_model *m, const float *params,
                             const int *y /* [nloc] labels, or NULL */, uint64_t r0, uint64_t nloc, uint64_t mloc);

/* The labels of trajectories r0 .. r0+nloc per sample.classes (all: j mod classes). */
void fm_sample_run_labels(int *y /* [nloc] */, const fm_config *cfg, int classes, uint64_t r0, uint64_t nloc);

/* Collective, after the integration (which stops early on a signal, fm/stop.h): 1 when a rank
 * was asked to stop, said once on rank 0 (nothing is written to path); else 0. */
int fm_sample_run_stopped(const char *path);

/* Collective: 0 when path may be written as an fm `format` ("samples", "logprob") file (it does
 * not exist, or is one, and its temporary name fits); else -1 on every rank with err. A failed
 * check names what is there (a checkpoint given as -o is never replaced by samples). */
int fm_sample_run_may_write(const char *path, const char *format, char *err, int cap);

/* Collective, after rank 0 wrote tmp (rc: its 0, or -1 with errno set when the disk said why;
 * other ranks pass 0): rank 0 renames tmp onto path and syncs the directory; on failure tmp is
 * removed, path left as it was, and every rank returns -1 with err. */
int fm_sample_run_commit(const char *tmp, const char *path, int rc, char *err, int cap);

/* Collective: every rank's nloc rows of `row` bytes, gathered on rank 0 in rank order into a new
 * buffer of total rows (NULL on the other ranks): the samples' and log-likelihoods' writers. */
void *fm_sample_run_gather(const void *mine, uint64_t nloc, size_t row, uint64_t total);

/* Collective. Writes path atomically (temporary file, then rename by rank 0); a conditional
 * model's trajectories get labels (sample.classes), guided by sample.guidance, and /labels.
 * ema: params are the moving average (recorded as the attribute weights); rows (may be NULL):
 * the data's row shape and value range, recorded as data_shape and value_range. Returns 0,
 * FM_EXIT_STOPPED (a signal: nothing written), or -1 with err. */
int fm_sample_run(const char *path, const fm_config *cfg, const char *config_text, const fm_model *m,
                  const float *params, int ema, const fm_row_shape *rows, long checkpoint_step, char *err, int cap);

#endif
