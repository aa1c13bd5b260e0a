/* A dataset file in memory once per node (DESIGN.md section 5): collective; one rank per node
 * reads the file into an MPI-3 shared window, every rank of the node reads rows in place, in the
 * file's element type (uint8 stays one byte). */
#ifndef FM_DATA_LOAD_H
#define FM_DATA_LOAD_H

#include "fm/comm.h"
#include "fm/dataset.h"

typedef struct {
    fm_dataset data;     /* the view the target draws from */
    fm_dataset test;     /* the held-out split (n = 0: none): the validation loss's rows */
    size_t bytes;        /* of the shared copy */
    fm_comm_shared *mem;
} fm_data;

/* Collective: 0, or -1 on every rank with one line in err (on rank 0 at least). */
int fm_data_load(fm_data *d, const char *path, char *err, int cap);
/* Collective: proportional set size (PSS, /proc/self/smaps_rollup) summed over this node's ranks,
 * in MB: the shared copy counts once however many ranks map it. */
double fm_data_node_pss_mb(const fm_data *d);
void fm_data_free(fm_data *d); /* collective */

#endif
