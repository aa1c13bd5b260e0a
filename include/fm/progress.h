/* What rank 0 shows while training runs: on a terminal one line rewritten in place, in a batch
 * log plain lines every train.log_every steps; and OUTDIR/history.tsv, the loss history as a
 * flushed text file that tools can follow while the run goes on (fm_analyze.py follow). */
#ifndef FM_PROGRESS_H
#define FM_PROGRESS_H

#include <stdio.h>

#include "fm/history.h"

typedef struct {
    FILE *tsv;
    size_t written;              /* rows of the history in the file (the rest wait for the next flush) */
    long good;                   /* the file's length after them */
    int warned;                  /* a failed write was said */
    int tty;
    long total, batch, log_every;
    long step_log;               /* step of the last rate measurement */
    double t_log, t_draw, t_flush;
    double rate;                 /* steps per second over the last interval */
} fm_progress;

/* Rank 0. Writes OUTDIR/history.tsv anew from hist (what the checkpoint holds: a resumed run
 * drops rows the crashed run recorded after it) and keeps it open for appending.
 * style: "line" (one line redrawn), "plain" (a line every log_every steps), "auto". */
int fm_progress_open(fm_progress *p, const char *outdir, const fm_history *hist, long step, long total,
                     long batch, long log_every, const char *style, char *err, int cap);

/* After each step: the terminal line or the log line; about once a second the rows recorded
 * since the last flush go to history.tsv. A failed write (a full disk) is said once and
 * undone (the file cut back to its last whole row); the rows are written at the next flush. */
void fm_progress_step(fm_progress *p, const fm_history *hist, long step, float loss, double lr,
                      double grad_norm, double elapsed);

/* Ends the file with "# end: WHY step N" (done, stopped, failed) so followers know, and closes. */
void fm_progress_close(fm_progress *p, const fm_history *hist, const char *why, long step);

/* `fmtrain info` of a history.tsv: rows, last row, how it ended. */
int fm_progress_info(const char *path, char *err, int cap);

#endif
