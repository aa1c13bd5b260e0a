/* The MLP vector field u_theta(x, t), the seed's model (model.type = mlp): an MLP on concat(x, t),
 * activations between layers, a linear output of size dim. Its tensors, layer after layer, are
 * layer_K/weight [out, in] (row-major, like PyTorch's nn.Linear) and layer_K/bias [out].
 * fm_mlp_ops puts it behind the model interface; the functions below are its parts, public for
 * the tests. */
#ifndef FM_MLP_H
#define FM_MLP_H

#include <stddef.h>
#include <stdint.h>

#include "fm/act.h"
#include "fm/model.h"

#define FM_MLP_MAX_LAYERS FM_CONFIG_MAX_LIST

extern const fm_model_ops fm_mlp_ops;

typedef struct {
    int nlayers;                       /* linear layers = hidden layers + 1 */
    int dims[FM_MLP_MAX_LAYERS + 1];   /* dims[0] = dim + t_cols + y_cols: the input row, dims[nlayers] = dim */
    fm_act act;
    size_t w_off[FM_MLP_MAX_LAYERS];   /* layer l weight [dims[l+1], dims[l]] in the flat buffer */
    size_t b_off[FM_MLP_MAX_LAYERS];   /* layer l bias [dims[l+1]] */
    /* Conditioning (DESIGN.md section 6): the input row is [x | e(t) | e(y)]. */
    int dim;                           /* D */
    int t_cols;                        /* 1: raw t; t_dim: e(t) = sqrt 2 [sin 2 pi w t, cos 2 pi w t] */
    int classes, y_cols;               /* e(y): row y of ye/weight [classes + 1, y_cols]; classes 0: none */
    size_t layers_end;                 /* the layers' tensors end here; then te/w, ye/weight */
    size_t te_off, ye_off;             /* te/w [1, t_cols / 2] (Fourier only), ye/weight */
    size_t nparams;
} fm_mlp;

/* Activations kept by forward for backward, and backward's scratch; sized for `cap` samples. */
typedef struct {
    int cap;
    float *in;                         /* [cap, dims[0]] */
    int ld[FM_MLP_MAX_LAYERS];         /* row stride of layer l's buffers: dims[l+1], or more (padding) */
    float *pre[FM_MLP_MAX_LAYERS];     /* layer l output before activation [cap, dims[l+1]] ld[l] */
    float *post[FM_MLP_MAX_LAYERS];    /* after activation, hidden layers only */
    float *aux[FM_MLP_MAX_LAYERS];     /* what the activation's derivative needs (SiLU: sigmoid) */
    float *g0, *g1;                    /* [cap, max ld] gradient ping-pong */
    float *wt;                         /* [dims[0], dims[1]] layer 0 weight transposed */
    float *pad;                        /* [32 max dim + 16 cap] narrow layers' scratch */
    float *wt16[FM_MLP_MAX_LAYERS];    /* narrow layer l's weight packed [dims[l], 16], else NULL */
    float *w0x, *b0t, *t_row;          /* fm_mlp_forward_at: [dims[1], dim], [dims[1]], [cap] */
    int *y_row;                        /* [cap] the labels of the rows (classes: none) */
    float *gin;                        /* [cap, t_cols + y_cols] the embeddings' input gradient */
} fm_mlp_work;

/* Fills the shape (raw t, no labels); returns 0, or -1 when the hidden list is empty, too long or
 * not positive. */
int fm_mlp_shape(fm_mlp *m, int dim, const int *hidden, int nhidden, fm_act act);

/* Then the conditioning: a Fourier time embedding of t_dim (even) numbers instead of raw t when
 * fourier, and a label embedding of y_dim numbers for `classes` labels (0: none). 0, or -1. */
int fm_mlp_condition(fm_mlp *m, int fourier, int t_dim, int classes, int y_dim);

/* PyTorch nn.Linear init: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from (seed, layer). */
void fm_mlp_init(float *params /* [nparams] */, const fm_mlp *m, uint64_t seed);

fm_mlp_work *fm_mlp_work_new(const fm_mlp *m, int cap);
void fm_mlp_work_free(fm_mlp_work *w);

/* Copies what the forward reads of params into its own layouts (narrow layers' weights,
 * transposed). Call it whenever params change, before the forward. */
void fm_mlp_pack(fm_mlp_work *w, const fm_mlp *m, const float *params);

/* Forward on n <= cap samples (after fm_mlp_pack on the same params); returns the output
 * [n, dim] (inside w, valid until the next call). */
const float *fm_mlp_forward(fm_mlp_work *w, const fm_mlp *m, const float *params,
                            const float *x /* [n, dim] */, const float *t /* [n] */, int n);

/* The same with labels (y: [n] in 0..classes, classes meaning "no label"; NULL: none) and either
 * a time per row (t) or one for all (t == NULL: t_all). */
const float *fm_mlp_forward_cond(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *x /* [n, dim] */,
                                 const float *t /* [n] */, float t_all, const int *y /* [n] */, int n);

/* The same with one t for every row (the sampler's case): layer 0 folds t into its bias. */
const float *fm_mlp_forward_at(fm_mlp_work *w, const fm_mlp *m, const float *params,
                               const float *x /* [n, dim] */, float t, int n);

/* Backward from dL/d(output); adds dL/dparams into grad (call forward on the same batch first).
 * done (may be NULL) hears of each layer's gradient range as soon as it is complete. */
void fm_mlp_backward(float *grad /* [nparams] */, fm_mlp_work *w, const fm_mlp *m,
                     const float *params, const float *dout /* [n, dim] */, int n,
                     fm_model_grad_done done, void *ctx);

/* After a forward on the same rows: J dx [n, dim], the output's Jacobian with respect to x times
 * dx (inside w, in its backward's scratch). */
const float *fm_mlp_jvp(fm_mlp_work *w, const fm_mlp *m, const float *params, const float *dx /* [n, dim] */, int n);

#endif
