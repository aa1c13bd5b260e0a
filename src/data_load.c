#include "fm/data_load.h"

#include <stdio.h>
#include <string.h>

#include "fm/dataset_io.h"
#include "fm/error.h"

int fm_data_load(fm_data *d, const char *path, char *err, int cap)
{
    memset(d, 0, sizeof *d);
    /* Rank 0 checks the file; everyone learns its shape (or its failure). */
    fm_dataset_file df;
    int ok = fm_comm_rank() != 0 || fm_dataset_file_probe(&df, path, err, cap) == 0;
    if (!fm_comm_all_ok(ok)) return -1;
    fm_comm_bcast(&df, sizeof df);
    /* One allocation per node: the rows, the labels, the held-out rows and labels (each 8-byte aligned). */
    const size_t pad[4] = {(df.x_bytes + 7) / 8 * 8, (df.y_bytes + 7) / 8 * 8, (df.xt_bytes + 7) / 8 * 8,
                           (df.yt_bytes + 7) / 8 * 8};
    d->bytes = pad[0] + pad[1] + pad[2] + pad[3];
    d->mem = fm_comm_shared_new(d->bytes);
    char *base = fm_comm_shared_base(d->mem);
    int32_t *y = df.y_bytes ? (int32_t *)(base + pad[0]) : NULL;
    char *xt = base + pad[0] + pad[1];
    int32_t *yt = df.yt_bytes ? (int32_t *)(xt + pad[2]) : NULL;
    ok = !fm_comm_shared_leader(d->mem) || fm_dataset_file_read(base, y, xt, yt, &df, path, err, cap) == 0;
    if (!ok && fm_comm_rank() != 0) fm_error_print(err); /* a leader on another node: say it there */
    if (!fm_comm_all_ok(ok)) {
        if (ok && fm_comm_rank() == 0) fm_errorf(err, cap, "reading %s failed on another node (its error above)", path);
        fm_data_free(d);
        return -1;
    }
    /* What the leaders found (classes, fingerprint): the same on every node; rank 0's for all. */
    fm_comm_bcast(&df.view, sizeof df.view);
    fm_comm_bcast(&df.test, sizeof df.test);
    fm_comm_shared_sync(d->mem);
    d->data = df.view;
    d->data.x = base;
    d->data.y = y;
    d->test = df.test;
    d->test.x = xt;
    d->test.y = yt;
    return 0;
}

/* This process's proportional set size in MB, or -1 where /proc does not say. */
static double pss_mb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return -1.0;
    char line[256];
    double kb = -1.0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Pss: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1.0 : kb / 1024.0;
}

double fm_data_node_pss_mb(const fm_data *d)
{
    const double mine = pss_mb();
    return fm_comm_shared_sum(d->mem, mine < 0 ? -1e30 : mine); /* negative: some rank cannot tell */
}

void fm_data_free(fm_data *d)
{
    fm_comm_shared_free(d->mem);
    memset(d, 0, sizeof *d);
}
