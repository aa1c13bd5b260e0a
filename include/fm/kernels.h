/* The MLP's loops that are not matrix products: activations and their derivatives, the thin
 * first layer (few inputs: D coordinates and t) and bias sums. At the seed's sizes they cost as
 * much as the products. Branch-free loops over a fast exp
 * (Cody-Waite reduction, degree-6 polynomial: relative error < 3e-7, about 2 ulp) that the compiler
 * vectorises; on x86-64 each kernel is also built for AVX2+FMA and picked at run time, so the
 * binary still runs on every node. NaN in gives NaN out (non-finite detection relies on it). */
#ifndef FM_KERNELS_H
#define FM_KERNELS_H

#include <stddef.h>

#include "fm/mlp.h"

/* pre[n, out] += b; then, when hidden (act >= 0), post = act(pre) and aux keeps what the
 * backward needs (the sigmoid for SiLU). act < 0: the output layer, bias only. */
void fm_kern_bias_act(float *pre /* [n, out] */, float *post /* [n, out] */, float *aux /* [n, out] */,
                      const float *b /* [out] */, int n, int out, int act);

/* g *= act'(pre), from pre, post and aux of the forward. */
void fm_kern_act_backward(float *g /* [n] */, const float *pre /* [n] */, const float *post /* [n] */,
                          const float *aux /* [n] */, size_t n, fm_act act);

/* exp(x) as the kernels compute it (for tests). */
float fm_kern_exp(float x);

/* A layer with at most FM_THIN_INPUT inputs is a poor fit for sgemm's blocking; row by row over
 * a transposed weight it is `in` vectorised axpys per sample. */
#define FM_THIN_INPUT 8

/* y[n, out] = a[n, in] W[out, in]^T + b, for in <= FM_THIN_INPUT, then the activation as in
 * fm_kern_bias_act, row by row while the row is in L1. wt: [in, out] scratch. */
void fm_kern_thin_forward(float *y /* [n, out] */, float *post /* [n, out] */, float *aux /* [n, out] */,
                          float *wt /* [in, out] */, const float *a /* [n, in] */, const float *W /* [out, in] */,
                          const float *b /* [out] */, int n, int in, int out, int act);

/* dW[out, in] += g[n, out]^T a[n, in] and db[out] += column sums of g, in one pass over g,
 * for in <= FM_THIN_INPUT. acc: [in, out] scratch. */
void fm_kern_thin_weight_grad(float *dW /* [out, in] */, float *db /* [out] */, float *acc /* [in, out] */,
                              const float *g /* [n, out] */, const float *a /* [n, in] */, int n, int in, int out);

/* db[out] += sum over rows of g[n, out]. */
void fm_kern_colsum_add(float *db /* [out] */, const float *g /* [n, out] */, int n, int out);

#endif
