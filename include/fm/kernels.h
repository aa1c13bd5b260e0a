/* The MLP's loops that sgemm does not serve well: activations and their derivatives, the thin
 * first layer (few inputs: D coordinates and t), narrow layers (at most 16 outputs: the seed's
 * bottleneck and the output layer), bias sums. At the seed's sizes they are most of the step.
 * Branch-free loops over a fast exp (Cody-Waite reduction, degree-6 polynomial: relative error
 * < 3e-7, about 2 ulp) and vectors of the build's width (include/fm/vec.h); on x86-64 each
 * kernel is built for SSE2, AVX2+FMA and AVX-512 and one build is picked at run time
 * (include/fm/isa.h), so the binary still runs on every node. NaN in gives NaN out (non-finite
 * detection relies on it). */
#ifndef FM_KERNELS_H
#define FM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "fm/act.h"

/* Matrices [n, m] below are row-major with a row stride ld >= m where one is given (the MLP pads
 * wide rows: a stride of a multiple of 4 KB would put a column's every row in one cache set). */

/* pre[n, out] += b; then, when hidden (act >= 0), post = act(pre) and aux keeps what the
 * backward needs (the sigmoid for SiLU). act < 0: the output layer, bias only. */
void fm_kern_bias_act(float *pre /* [n, out] ld */, float *post /* [n, out] ld */, float *aux /* [n, out] ld */,
                      const float *b /* [out] */, int n, int out, int ld, int act);

/* g *= act'(pre), from pre, post and aux of the forward. */
void fm_kern_act_backward(float *g /* [n] */, const float *pre /* [n] */, const float *post /* [n] */,
                          const float *aux /* [n] */, size_t n, fm_act act);

/* y = silu(x) = x sigmoid(x), with nothing kept for the backward (the U-Net's activations). */
void fm_kern_silu(float *y /* [n] */, const float *x /* [n] */, size_t n);

/* The same, and the sum and the sum of squares of y (for the normalisation that follows). */
void fm_kern_silu_sums(float *y /* [n] */, double *sum, double *sumsq, const float *x /* [n] */, size_t n);

/* out = base + g silu'(x) (base NULL: 0), the sigmoid made again from x; out may be g. */
void fm_kern_silu_grad(float *out /* [n] */, const float *base /* [n] */, const float *g /* [n] */,
                       const float *x /* [n] */, size_t n);

/* The deterministic mode's fixed point (train.deterministic): the largest |x[i]| (NaN counts as
 * infinite), acc[i] += trunc(g[i] * up) in int64, and g[i] = acc[i] * down in float. The same
 * bits from every build of the kernels (truncation and comparisons only). */
float fm_kern_absmax(const float *x /* [n] */, size_t n);
void fm_kern_fixed_add(int64_t *acc /* [n] */, const float *g /* [n] */, double up, size_t n);
void fm_kern_fixed_to_float(float *g /* [n] */, const int64_t *acc /* [n] */, double down, size_t n);
/* y[i] += x[i]: the deterministic mode's tree of shard sums (one rounding an element, any build). */
void fm_kern_add(float *y /* [n] */, const float *x /* [n] */, size_t n);

/* Threads of the BLAS behind the wide layers' products (one per rank by default: the MPI
 * convention). */
void fm_kern_blas_threads(int threads);

/* exp(x) as the kernels compute it (for tests). */
float fm_kern_exp(float x);

/* A layer with at most FM_THIN_INPUT inputs is a poor fit for sgemm's blocking; row by row over
 * a transposed weight it is `in` vectorised axpys per sample. */
#define FM_THIN_INPUT 8

/* y[n, out] = a[n, in] W[out, in]^T + b, for in <= FM_THIN_INPUT, then the activation as in
 * fm_kern_bias_act, row by row while the row is in L1. wt: [in, out] scratch. */
void fm_kern_thin_forward(float *y /* [n, out] ld */, float *post /* [n, out] ld */, float *aux /* [n, out] ld */,
                          float *wt /* [in, out] */, const float *a /* [n, in] */, const float *W /* [out, in] */,
                          const float *b /* [out] */, int n, int in, int out, int ld, int act);

/* dW[out, in] += g[n, out]^T a[n, in] and db[out] += column sums of g, in one pass over g,
 * for in <= FM_THIN_INPUT. */
void fm_kern_thin_weight_grad(float *dW /* [out, in] */, float *db /* [out] */, const float *g /* [n, out] ld */,
                              const float *a /* [n, in] */, int n, int in, int out, int ld);

/* A layer with at most FM_NARROW_OUTPUT outputs (a bottleneck, or the output layer): one
 * register of outputs per row, no packing of the wide input. */
#define FM_NARROW_OUTPUT 16

/* wt[K, 16] = W[out, K]^T, zero-padded to 16 columns: the narrow forward's layout. */
void fm_kern_narrow_pack(float *wt /* [K, 16] */, const float *W /* [out, K] */, int K, int out);

/* y[n, out] = a[n, K] W[out, K]^T for out <= FM_NARROW_OUTPUT, W as fm_kern_narrow_pack left it
 * (bias and activation: then fm_kern_bias_act). */
void fm_kern_narrow_forward(float *y /* [n, out] */, const float *wt /* [K, 16] */,
                            const float *a /* [n, K] lda */, int n, int K, int lda, int out);

/* The backward of such a layer whose input a = act(pre) came from a hidden layer, in one pass
 * over a: dW[out, K] += g^T a, and ga[n, K] = (g W) * act'(pre), from that layer's pre, post,
 * aux. pad: [32 K + 16 n] scratch, used when out < 16. */
void fm_kern_narrow_backward(float *dW /* [out, K] */, float *ga /* [n, K] lda */, float *pad,
                             const float *g /* [n, out] */, const float *a /* [n, K] lda */,
                             const float *W /* [out, K] */, const float *pre /* [n, K] lda */,
                             const float *post /* [n, K] lda */, const float *aux /* [n, K] lda */, int n, int K,
                             int lda, int out, fm_act act);

/* db[out] += sum over rows of g[n, out]. */
void fm_kern_colsum_add(float *db /* [out] */, const float *g /* [n, out] ld */, int n, int out, int ld);

#endif
