/* How the trainer pairs each source draw x0 with a target draw z (DESIGN.md section 7):
 * independently, or by minibatch optimal transport over the whole global batch. Every draw is a
 * counter function, so each rank draws the global batch, solves the same assignment and keeps
 * its own slice of pairs: the same pairing on any number of ranks, without a message.
 * The assignment is exact (Jonker and Volgenant 1987: column reduction, augmenting row
 * reduction, then shortest augmenting paths, here a dense Dijkstra whose inner loop vectorises).
 * Pure numerics. */
#ifndef FM_COUPLING_H
#define FM_COUPLING_H

#include <stdint.h>

/* "independent" "ot": the list of fm/names.h. */
const char *fm_coupling_name(int i);
enum { FM_COUPLING_INDEPENDENT = 0, FM_COUPLING_OT = 1 };
#define FM_OT_MAX_BATCH 16384 /* its cost matrix: 2 GB of doubles */

typedef struct {
    int cap;
    double *cost;              /* [cap, cap] */
    double *v, *d;             /* [cap] column prices, path lengths */
    double *vw, *dset;         /* [cap] prices during a search, lengths of the settled columns */
    int *row_col, *col_row;    /* [cap] the assignment both ways */
    int *free_rows, *cols, *matches; /* [cap] */
    int64_t *pred;             /* [cap] each column's row on its shortest path (64-bit: blended in vectors) */
} fm_assign_work;

fm_assign_work *fm_assign_work_new(int cap);
void fm_assign_work_free(fm_assign_work *w);

/* The assignment of rows to columns of w->cost ([n, n], row-major, filled by the caller) with
 * the least total cost: col[i] is row i's column. Returns the total. */
double fm_assign_solve(int *col /* [n] */, fm_assign_work *w, int n);

/* The OT pairing of a batch: perm[i] is the x0 row that goes with z row i, minimising
 * sum_i ||x0[perm[i]] - z[i]||^2. Returns that sum. */
double fm_coupling_ot(int *perm /* [n] */, fm_assign_work *w, const float *x0 /* [n, dim] */,
                      const float *z /* [n, dim] */, int n, int dim);

#endif
