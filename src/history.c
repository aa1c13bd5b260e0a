#include "fm/history.h"

#include <stdlib.h>
#include <string.h>

#include "fm/error.h"

void fm_history_reserve(fm_history *h, size_t cap)
{
    if (cap <= h->cap) return;
    h->step = realloc(h->step, sizeof(int64_t) * cap);
    h->loss = realloc(h->loss, sizeof(float) * cap);
    h->lr = realloc(h->lr, sizeof(float) * cap);
    h->grad_norm = realloc(h->grad_norm, sizeof(float) * cap);
    h->time = realloc(h->time, sizeof(double) * cap);
    h->val_loss = realloc(h->val_loss, sizeof(float) * cap);
    FM_CHECK(h->step && h->loss && h->lr && h->grad_norm && h->time && h->val_loss, "out of memory for the history");
    h->cap = cap;
}

void fm_history_push(fm_history *h, int64_t step, float loss, float lr, float grad_norm, double time, float val_loss)
{
    if (h->n == h->cap) fm_history_reserve(h, h->cap ? 2 * h->cap : 1024);
    h->step[h->n] = step;
    h->loss[h->n] = loss;
    h->lr[h->n] = lr;
    h->grad_norm[h->n] = grad_norm;
    h->time[h->n] = time;
    h->val_loss[h->n] = val_loss;
    h->n++;
}

void fm_history_free(fm_history *h)
{
    free(h->step); free(h->loss); free(h->lr); free(h->grad_norm); free(h->time); free(h->val_loss);
    memset(h, 0, sizeof *h);
}
