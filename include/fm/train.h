/* The training loop: data-parallel CFM over MPI (DESIGN.md section 2). */
#ifndef FM_TRAIN_H
#define FM_TRAIN_H

#include "fm/config.h"

/* Collective. Trains into outdir (created by the caller), resuming per cfg->resume, then samples
 * when sample.n > 0. Returns the process exit status (0 on success). */
int fm_train_run(const fm_config *cfg, const char *outdir);

#endif
