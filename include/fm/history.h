/* The loss history: one row per recorded step. Rank 0 keeps it, every checkpoint carries all of
 * it, and OUTDIR/history.tsv shows it live. */
#ifndef FM_HISTORY_H
#define FM_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t n, cap;
    int64_t *step;   /* [cap] */
    float *loss;     /* [cap] */
    float *lr;       /* [cap] */
    float *grad_norm; /* [cap] */
    double *time;    /* [cap] seconds of training since the run began, summed over resumes */
    float *val_loss; /* [cap] the loss on the held-out rows (train.eval_every), NaN where not evaluated */
} fm_history;

/* Room for cap rows (push then never allocates below it). */
void fm_history_reserve(fm_history *h, size_t cap);
void fm_history_push(fm_history *h, int64_t step, float loss, float lr, float grad_norm, double time, float val_loss);
void fm_history_free(fm_history *h);

#endif
