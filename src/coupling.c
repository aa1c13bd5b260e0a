#include "fm/coupling.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "fm/error.h"
#include "fm/kern_ops.h"

static const char *const couplings[] = {"independent", "ot"};

const char *fm_coupling_name(int i) { return i >= 0 && i < 2 ? couplings[i] : NULL; }

fm_assign_work *fm_assign_work_new(int cap)
{
    fm_assign_work *w = fm_calloc(sizeof *w);
    w->cap = cap;
    w->cost = fm_malloc(sizeof(double) * (size_t)cap * (size_t)cap);
    w->v = fm_malloc(sizeof(double) * (size_t)cap);
    w->d = fm_malloc(sizeof(double) * (size_t)cap);
    w->vw = fm_malloc(sizeof(double) * (size_t)cap);
    w->dset = fm_malloc(sizeof(double) * (size_t)cap);
    w->row_col = fm_malloc(sizeof(int) * (size_t)cap);
    w->col_row = fm_malloc(sizeof(int) * (size_t)cap);
    w->free_rows = fm_malloc(sizeof(int) * (size_t)cap);
    w->cols = fm_malloc(sizeof(int) * (size_t)cap);
    w->pred = fm_malloc(sizeof(int64_t) * (size_t)cap);
    w->matches = fm_malloc(sizeof(int) * (size_t)cap);
    return w;
}

void fm_assign_work_free(fm_assign_work *w)
{
    if (!w) return;
    free(w->cost);
    free(w->v);
    free(w->d);
    free(w->vw);
    free(w->dset);
    free(w->row_col);
    free(w->col_row);
    free(w->free_rows);
    free(w->cols);
    free(w->pred);
    free(w->matches);
    free(w);
}

/* Column reduction and reduction transfer: every column's price is its least cost; a row that
 * is the least of exactly one column takes it. Returns how many rows are left free. */
static int initial_assignment(fm_assign_work *w, int n)
{
    const double *c = w->cost;
    for (int i = 0; i < n; i++) {
        w->matches[i] = 0;
        w->row_col[i] = -1;
    }
    for (int j = n - 1; j >= 0; j--) {
        int imin = 0;
        double min = c[j];
        for (int i = 1; i < n; i++)
            if (c[(size_t)i * n + j] < min) {
                min = c[(size_t)i * n + j];
                imin = i;
            }
        w->v[j] = min;
        if (++w->matches[imin] == 1) {
            w->row_col[imin] = j;
            w->col_row[j] = imin;
        } else {
            w->col_row[j] = -1;
        }
    }
    int nfree = 0;
    for (int i = 0; i < n; i++) {
        if (w->matches[i] == 0) {
            w->free_rows[nfree++] = i;
        } else if (w->matches[i] == 1 && n > 1) {
            const int j1 = w->row_col[i];
            double min = DBL_MAX;
            for (int j = 0; j < n; j++)
                if (j != j1 && c[(size_t)i * n + j] - w->v[j] < min) min = c[(size_t)i * n + j] - w->v[j];
            w->v[j1] -= min;
        }
    }
    return nfree;
}

/* Augmenting row reduction, twice: each free row takes its cheapest column (lowering that
 * column's price to its second cheapest), displacing the column's row. An auction without a
 * least bid, it can bounce rows with nearly equal costs for long: each pass stops after 2n row
 * scans and leaves the rest to the augmenting paths. */



static int row_reduction(fm_assign_work *w, int n, int nfree)
{
    const double *c = w->cost;
    for (int pass = 0; pass < 2; pass++) {
        int k = 0, prev = nfree;
        long scans = 0;
        nfree = 0;
        while (k < prev) {
            if (++scans > 2L * n) { /* the rows not yet placed stay free */
                while (k < prev) w->free_rows[nfree++] = w->free_rows[k++];
                break;
            }
            const int i = w->free_rows[k++];
            const double *ci = c + (size_t)i * n;
            double umin = ci[0] - w->v[0], usub = DBL_MAX;
            int j1 = 0, j2 = 0;
            for (int j = 1; j < n; j++) {
                const double h = ci[j] - w->v[j];
                if (h < usub) {
                    if (h >= umin) {
                        usub = h;
                        j2 = j;
                    } else {
                        usub = umin;
                        umin = h;
                        j2 = j1;
                        j1 = j;
                    }
                }
            }
            int i0 = w->col_row[j1];
            if (umin < usub) {
                w->v[j1] -= usub - umin;
            } else if (i0 >= 0) { /* a tie: take the second column instead */
                j1 = j2;
                i0 = w->col_row[j2];
            }
            w->row_col[i] = j1;
            w->col_row[j1] = i;
            if (i0 >= 0) {
                w->row_col[i0] = -1;
                if (umin < usub) w->free_rows[--k] = i0; /* again, at once */
                else w->free_rows[nfree++] = i0;
            }
        }
    }
    return nfree;
}

/* A shortest augmenting path (Dijkstra on reduced costs, one column settled at a time) from free
 * row r to a free column, then the settled columns' prices and the flip along the path. */
static void augment(fm_assign_work *w, int n, int r)
{
    const double *c = w->cost;
    double *d = w->d, *v = w->v, *vw = w->vw, *dset = w->dset;
    int *settled = w->cols;
    int64_t *pred = w->pred;
    const fm_coupling_ops *ops = fm_isa_coupling();
    for (int j = 0; j < n; j++) {
        d[j] = c[(size_t)r * n + j] - v[j];
        vw[j] = v[j];
        pred[j] = r;
    }
    double min = INFINITY;
    int nset = 0, end, j1 = 0;
    for (int j = 0; j < n; j++)
        if (d[j] < min) {
            min = d[j];
            j1 = j;
        }
    for (;;) {
        if (w->col_row[j1] < 0) {
            end = j1;
            break;
        }
        settled[nset++] = j1;
        dset[j1] = d[j1];
        d[j1] = INFINITY;
        vw[j1] = -INFINITY;
        const int i = w->col_row[j1];
        const double h = c[(size_t)i * n + j1] - v[j1] - min;
        min = ops->relax(&j1, d, pred, c + (size_t)i * n, vw, h, i, n);
    }
    for (int k = 0; k < nset; k++) {
        const int j = settled[k];
        v[j] += dset[j] - min;
    }
    for (int i = -1; i != r;) { /* flip the path's assignments back to r */
        i = (int)pred[end];
        w->col_row[end] = i;
        const int j = end;
        end = w->row_col[i];
        w->row_col[i] = j;
    }
}

double fm_assign_solve(int *col, fm_assign_work *w, int n)
{
    FM_CHECK(n >= 1 && n <= w->cap, "assignment of %d rows on buffers of %d", n, w->cap);
    int nfree = row_reduction(w, n, initial_assignment(w, n));
    for (int f = 0; f < nfree; f++) augment(w, n, w->free_rows[f]);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        col[i] = w->row_col[i];
        total += w->cost[(size_t)i * n + col[i]];
    }
    return total;
}

double fm_coupling_ot(int *perm, fm_assign_work *w, const float *x0, const float *z, int n, int dim)
{
    FM_CHECK(n <= w->cap, "OT batch of %d on buffers of %d", n, w->cap);
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * dim;
        double *ci = w->cost + (size_t)i * n;
        for (int j = 0; j < n; j++) {
            const float *xj = x0 + (size_t)j * dim;
            float s = 0.0f;
            for (int c = 0; c < dim; c++) s += (zi[c] - xj[c]) * (zi[c] - xj[c]);
            ci[j] = s;
        }
    }
    return fm_assign_solve(perm, w, n);
}
