/* The kernels' entry points (include/fm/kernels.h): each calls the active build's table
 * (src/isa.c); what does not depend on the instruction set is here. */
#include <cblas.h>
#include <string.h>

#include "fm/kern_ops.h"
#include "fm/kernels.h"

float fm_kern_exp(float x) { return fm_isa_kern()->exp(x); }

void fm_kern_blas_threads(int threads) { openblas_set_num_threads(threads); }

void fm_kern_bias_act(float *pre, float *post, float *aux, const float *b, int n, int out, int ld, int act)
{
    fm_isa_kern()->bias_act(pre, post, aux, b, n, out, ld, act);
}

void fm_kern_act_backward(float *g, const float *pre, const float *post, const float *aux, size_t n, fm_act act)
{
    fm_isa_kern()->act_backward(g, pre, post, aux, n, act);
}

void fm_kern_silu(float *y, const float *x, size_t n) { fm_isa_kern()->silu(y, x, n); }

void fm_kern_silu_sums(float *y, double *sum, double *sumsq, const float *x, size_t n)
{
    fm_isa_kern()->silu_sums(y, sum, sumsq, x, n);
}

void fm_kern_silu_grad(float *out, const float *base, const float *g, const float *x, size_t n)
{
    fm_isa_kern()->silu_grad(out, base, g, x, n);
}

float fm_kern_absmax(const float *x, size_t n) { return fm_isa_kern()->absmax(x, n); }

void fm_kern_fixed_add(int64_t *acc, const float *g, double up, size_t n) { fm_isa_kern()->fixed_add(acc, g, up, n); }

void fm_kern_fixed_to_float(float *g, const int64_t *acc, double down, size_t n)
{
    fm_isa_kern()->fixed_to_float(g, acc, down, n);
}

void fm_kern_add(float *y, const float *x, size_t n) { fm_isa_kern()->add(y, x, n); }

void fm_kern_thin_forward(float *y, float *post, float *aux, float *wt, const float *a, const float *W,
                          const float *b, int n, int in, int out, int ld, int act)
{
    fm_isa_kern()->thin_forward(y, post, aux, wt, a, W, b, n, in, out, ld, act);
}

void fm_kern_thin_weight_grad(float *dW, float *db, const float *g, const float *a, int n, int in, int out, int ld)
{
    fm_isa_kern()->thin_weight_grad(dW, db, g, a, n, in, out, ld);
}

void fm_kern_narrow_pack(float *wt, const float *W, int K, int out)
{
    memset(wt, 0, sizeof(float) * 16 * (size_t)K);
    for (int o = 0; o < out; o++)
        for (int k = 0; k < K; k++) wt[(size_t)k * 16 + o] = W[(size_t)o * K + k];
}

void fm_kern_narrow_forward(float *y, const float *wt, const float *a, int n, int K, int lda, int out)
{
    fm_isa_kern()->narrow_forward(y, wt, a, n, K, lda, out);
}

void fm_kern_narrow_backward(float *dW, float *ga, float *pad, const float *g, const float *a, const float *W,
                             const float *pre, const float *post, const float *aux, int n, int K, int lda, int out,
                             fm_act act)
{
    fm_isa_kern()->narrow_backward(dW, ga, pad, g, a, W, pre, post, aux, n, K, lda, out, act);
}

void fm_kern_colsum_add(float *db, const float *g, int n, int out, int ld)
{
    fm_isa_kern()->colsum_add(db, g, n, out, ld);
}
