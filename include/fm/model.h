/* The vector field u_theta(x, t, y) behind one interface (DESIGN.md section 6), so that the
 * trainer, the checkpoint, the sampler and the benchmark never name a particular model.
 *
 * A model is an ops table (as CoMD's BasePotential or PETSc's Mat ops) and a table of named
 * parameter tensors over one flat buffer (llm.c's layout): gradients, Adam moments and EMA use the
 * same layout, and the checkpoint writes each tensor under its name. Adding a model: its own
 * file with an fm_model_ops, and one line in the registry of src/model.c. */
#ifndef FM_MODEL_H
#define FM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "fm/config.h"
#include "fm/tensor.h"

/* What the vector field is evaluated on: n rows of x with their times and labels. */
typedef struct {
    const float *x;   /* [n, dim] */
    const float *t;   /* [n] one time per row; NULL: every row at t_all (the sampler's case) */
    float t_all;
    const int *y;     /* [n] class labels 0..classes, where `classes` means "no label"; NULL: no label */
    int n;
} fm_model_in;

typedef struct fm_model fm_model;

/* The backward calls it when the gradient range [lo, hi) of the flat buffer is complete (last
 * layers first), so that its all-reduce can overlap the rest of the backward. */
typedef void (*fm_model_grad_done)(void *ctx, size_t lo, size_t hi);

typedef struct {
    const char *name; /* model.type */
    /* Fills impl, dim, classes and the tensor table from the config: 0, or -1 with err. */
    int (*build)(fm_model *m, const fm_config *c, char *err, int cap);
    void (*free_impl)(void *impl);
    /* PyTorch's default initialisation, a pure function of seed. */
    void (*init)(float *params /* [nparams] */, const fm_model *m, uint64_t seed);
    /* FLOPs of one sample's forward and backward. */
    void (*flops)(double *fwd, double *bwd, const fm_model *m);
    /* The shape in one line, e.g. "3-1024-16-2". */
    void (*describe)(char *out, int cap, const fm_model *m);
    /* Activations and scratch for up to cap samples; backward = 0: forwards only (a sampler's:
     * nothing kept for a backward). */
    void *(*work_new)(const fm_model *m, int cap, int backward);
    void (*work_free)(void *work);
    /* Copies what the forward reads of params into its own layouts. */
    void (*prepare)(void *work, const fm_model *m, const float *params);
    /* The output [n, dim], inside work until the next call. */
    const float *(*forward)(void *work, const fm_model *m, const float *params, const fm_model_in *in);
    /* Adds dL/dparams into grad from dL/d(output), after the forward of the same rows. */
    void (*backward)(float *grad /* [nparams] */, void *work, const fm_model *m, const float *params,
                     const float *dout /* [n, dim] */, int n, fm_model_grad_done done, void *ctx);
    /* Optional (NULL: the model has none; fmtrain logprob refuses it): after a forward on the
     * same rows, J dx, the output's Jacobian with respect to x times dx, [n, dim] inside work. */
    const float *(*jvp)(void *work, const fm_model *m, const float *params, const float *dx /* [n, dim] */, int n);
} fm_model_ops;

struct fm_model {
    const fm_model_ops *ops;
    void *impl;         /* the model's own shape (fm_mlp for the MLP) */
    int dim;            /* D: numbers per sample, of x and of the output */
    int classes;        /* K labels; 0 = unconditional */
    size_t nparams;
    int ntensors;
    fm_tensor *tensors; /* [ntensors] in flat-buffer order, covering [0, nparams) */
};

/* "mlp": the list of fm/names.h, from the registry. */
const char *fm_model_type_name(int i);

/* model.time_embed: "raw" (t as one input), "fourier" (DESIGN.md section 6). */
const char *fm_model_time_embed_name(int i);

/* The model the config describes (model.type and its keys): 0, or -1 with one line in err. */
int fm_model_build(fm_model *m, const fm_config *c, char *err, int cap);
void fm_model_free(fm_model *m);

/* For the models' build: appends a tensor at the end of the flat buffer; returns its offset. */
size_t fm_model_add_tensor(fm_model *m, const char *name, int rank, const uint64_t *shape);

/* A model's buffers for up to cap samples, with the check that the forward never reads weights
 * prepared from other parameters: fm_model_changed after every change of params (an optimiser
 * step, a resume), fm_model_prepare before the next forward. */
typedef struct {
    const fm_model *model;
    void *impl;
    int cap, backward;
    uint64_t version, prepared;
} fm_model_work;

fm_model_work *fm_model_work_new(const fm_model *m, int cap, int backward);
void fm_model_work_free(fm_model_work *w);
void fm_model_changed(fm_model_work *w);
void fm_model_prepare(fm_model_work *w, const float *params);
const float *fm_model_forward(fm_model_work *w, const float *params, const fm_model_in *in);
void fm_model_backward(float *grad /* [nparams] */, fm_model_work *w, const float *params,
                       const float *dout /* [n, dim] */, int n, fm_model_grad_done done, void *ctx);
/* The model's jvp op (which it must have). */
const float *fm_model_jvp(fm_model_work *w, const float *params, const float *dx /* [n, dim] */, int n);

#endif
