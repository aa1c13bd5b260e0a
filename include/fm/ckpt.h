/* Checkpoints: the HDF5 schema of DESIGN.md section 4, laid out by the model's tensor table,
 * written atomically, read with checks. */
#ifndef FM_CKPT_H
#define FM_CKPT_H

#include "fm/config.h"
#include "fm/history.h"
#include "fm/model.h"
#include "fm/target.h"

/* What a checkpoint holds, read back. */
typedef struct {
    fm_config cfg;
    char *config_text;
    fm_model model;              /* built from the stored config */
    float *params, *m, *v;       /* [model.nparams] each, one layout */
    float *ema;                  /* the same under /ema, or NULL when the file has none */
    long step;
    fm_history hist;
    char *data_about;            /* the root attribute data: what it was trained on (NULL: not said) */
    uint64_t data_fingerprint;   /* data_fingerprint, 0 when the target has none (a mixture) */
    fm_row_shape rows;           /* data_shape and value_range (rank 0: not recorded) */
} fm_ckpt;

/* What a checkpoint is written from (borrowed). */
typedef struct {
    const char *config_text;
    const fm_model *model;
    const fm_target *target;     /* its arrays go under /data, so tools need not regenerate them;
                                  * its about and fingerprint in root attributes data, data_fingerprint */
    const float *params, *m, *v; /* [model->nparams] each */
    const float *ema;            /* the same, written under /ema; NULL: none */
    long step;
    const fm_history *hist;
} fm_ckpt_state;

/* Writes path atomically: a temporary file beside it, flushed and fsync'ed, renamed over path,
 * then the directory fsync'ed. On failure err names the dataset or the call that failed, and
 * path is untouched. */
int fm_ckpt_write(const char *path, const fm_ckpt_state *s, char *err, int cap);

/* Keeps dir/checkpoint.h5 as dir/checkpoint_STEP.h5 too (a hard link: no copy), then deletes
 * all but the newest `keep` numbered checkpoints. */
int fm_ckpt_keep(const char *dir, long step, int keep, char *err, int cap);

/* The newest of dir's numbered checkpoints that reads back whole (every checksum verifies): its
 * path and step, and 0; -1 when none does. */
int fm_ckpt_newest_good(char *path, size_t cap, long *step, const char *dir);

/* Reads and checks format, version, config and every shape before trusting the file. */
int fm_ckpt_read(fm_ckpt *c, const char *path, char *err, int cap);
void fm_ckpt_free(fm_ckpt *c);

/* Prints what an fm file holds: format, version, build, model, step, datasets and config. */
int fm_ckpt_info(const char *path, char *err, int cap);

#endif
