/* What the trainer draws z (and a label, for labelled data) from: a target distribution today,
 * a dataset file next. An ops table and a registry like the models' (fm/model.h): data.target
 * names one; adding one is its own file and one line in the registry of src/target.c. */
#ifndef FM_TARGET_H
#define FM_TARGET_H

#include <stdint.h>

#include "fm/config.h"
#include "fm/dataset.h"
#include "fm/tensor.h"

typedef struct fm_target fm_target;

typedef struct {
    const char *name; /* data.target */
    int needs_data;   /* 1: draws from a dataset in memory (t->data), loaded by the run */
    /* Fills impl, dim, classes and the arrays from the config (and t->data): 0, or -1 with err. */
    int (*build)(fm_target *t, const fm_config *c, char *err, int cap);
    void (*free_impl)(void *impl);
    /* Row i of z (and y[i] when the target has classes; y may be NULL otherwise) is global sample
     * index0 + i of step `step`: a pure function of (seed, step, index0 + i), so every rank
     * draws the same global batch whatever the number of ranks. */
    void (*draw)(float *z /* [n, dim] */, int *y /* [n] */, const fm_target *t, uint64_t seed,
                 uint32_t step, uint32_t index0, int n);
    /* Bytes of memory build will take per rank (a dataset's own rows not counted: the loader
     * checks them once per node), so that the run can refuse what cannot fit before building. */
    uint64_t (*bytes)(const fm_config *c);
} fm_target_ops;

#define FM_TARGET_MAX_ARRAYS 4

struct fm_target {
    const fm_target_ops *ops;
    void *impl;
    const fm_dataset *data; /* the dataset of a target that needs one, else NULL */
    int dim;      /* D */
    int classes;  /* labels 0..classes-1 come with z; 0: none */
    /* What the checkpoint records of it (root attributes data, data_fingerprint), so that a resume
     * on other data is refused; fingerprint 0: nothing to compare (the config says it all). */
    char about[512];
    uint64_t fingerprint;
    fm_row_shape rows;      /* a dataset's row shape and value range (rank 0: none) */
    /* What the checkpoint keeps of it under /data, for tools (a mixture's means and std). */
    int narrays;
    fm_tensor arrays[FM_TARGET_MAX_ARRAYS];
    const float *values; /* the arrays' elements, at their offsets */
};

/* "gmm_ring" "gmm_random" "gaussian": the list of fm/names.h, from the registry. */
const char *fm_target_name(int i);

/* The target the config names, drawing from data when it needs a dataset (NULL otherwise): 0,
 * or -1 with one line in err. */
int fm_target_build(fm_target *t, const fm_config *c, const fm_dataset *data, char *err, int cap);
/* The bytes the config's target will take per rank (its ops' bytes), 0 for an unknown name. */
uint64_t fm_target_bytes(const fm_config *c);
/* 1 when the config's target draws from a dataset file (the run loads it first). */
int fm_target_needs_data(const fm_config *c);
void fm_target_free(fm_target *t);

static inline void fm_target_draw(float *z, int *y, const fm_target *t, uint64_t seed, uint32_t step,
                                  uint32_t index0, int n)
{
    t->ops->draw(z, y, t, seed, step, index0, n);
}

#endif
