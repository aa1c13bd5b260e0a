/* Checkpoints: the HDF5 schema of DESIGN.md section 4, written atomically, read with checks. */
#ifndef FM_CKPT_H
#define FM_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "fm/config.h"
#include "fm/dist.h"
#include "fm/mlp.h"

#define FM_FORMAT_VERSION 1

/* One row per recorded step; rank 0 keeps it and every checkpoint carries all of it. */
typedef struct {
    size_t n, cap;
    int64_t *step;
    float *loss, *lr, *grad_norm;
    double *time; /* seconds of training since the run began, summed over resumes */
} fm_history;

void fm_history_reserve(fm_history *h, size_t cap);
void fm_history_push(fm_history *h, int64_t step, float loss, float lr, float grad_norm, double time);
void fm_history_free(fm_history *h);

/* Everything a checkpoint holds. */
typedef struct {
    fm_config cfg;
    char *config_text;
    fm_mlp mlp;
    float *params, *m, *v; /* [mlp.nparams] each, one layout */
    long step;
    fm_history hist;
} fm_ckpt;

/* Writes path atomically: a temporary file beside it, flushed and fsync'ed, then renamed over
 * it. On failure path is untouched and err says why. The target's means go in too
 * (/data/target_means with attribute std), so that tools need not regenerate them. */
int fm_ckpt_write(const char *path, const char *config_text, const fm_dist *target, const fm_mlp *m,
                  const float *params,
                  const float *adam_m, const float *adam_v, long step, const fm_history *h, char *err,
                  int cap);

/* Keeps dir/checkpoint.h5 as dir/checkpoint_STEP.h5 too (a hard link: no copy), then deletes
 * all but the newest `keep` numbered checkpoints. */
int fm_ckpt_keep(const char *dir, long step, int keep, char *err, int cap);

/* Reads and checks format, version, config and every shape before trusting the file. */
int fm_ckpt_read(fm_ckpt *c, const char *path, char *err, int cap);
void fm_ckpt_free(fm_ckpt *c);

/* fsync a file, or the directory that holds path (so a rename in it is durable). */
int fm_fsync_path(const char *path);
int fm_fsync_dir_of(const char *path);

/* Prints what an fm file holds: format, version, step, datasets and config. */
int fm_ckpt_info(const char *path, char *err, int cap);

#endif
