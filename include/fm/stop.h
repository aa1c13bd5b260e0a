/* Stopping cleanly: SIGTERM, SIGINT and SIGUSR1 set a flag that the training loop reads at the
 * next step boundary (every rank's flag travels in the gradient all-reduce), so the run ends
 * with a checkpoint and FM_EXIT_STOPPED. A second SIGINT ends the process at once.
 * Also the test-only fault switch FM_TEST_FAULT=name=step, for the tests of what a crash leaves. */
#ifndef FM_STOP_H
#define FM_STOP_H

/* Exit status of a run stopped by a signal after writing its checkpoint: EX_TEMPFAIL of
 * sysexits.h, "try again later". SLURM requeue scripts test for it. */
#define FM_EXIT_STOPPED 75

void fm_stop_install(void);
/* The signal that asked to stop, or 0. */
int fm_stop_requested(void);

/* 1 when FM_TEST_FAULT is "name=step" for this name and step (never set in production). */
int fm_fault(const char *name, long step);

#endif
