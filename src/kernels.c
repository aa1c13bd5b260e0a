#include "fm/kernels.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_CLONES
#endif

/* exp(x) for float x: x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial to r^6,
 * 2^n by building the exponent bits. Comparisons are written so that NaN passes through. */
static inline float exp_fast(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Round to nearest by the 1.5*2^23 trick: no libm call, so the loop vectorises. */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float fm_kern_exp(float x) { return exp_fast(x); }

FM_CLONES static void silu_forward(float *post, float *sig, const float *pre, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + exp_fast(-pre[i]));
        sig[i] = s;
        post[i] = pre[i] * s;
    }
}

FM_CLONES static void silu_backward(float *g, const float *pre, const float *sig, size_t n)
{
    /* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) kept by the forward */
    for (size_t i = 0; i < n; i++) g[i] *= sig[i] * (1.0f + pre[i] * (1.0f - sig[i]));
}

FM_CLONES static void tanh_forward(float *post, const float *pre, size_t n)
{
    /* tanh x = 1 - 2 / (exp(2x) + 1): exact at both ends, absolute error ~1e-7 near 0 */
    for (size_t i = 0; i < n; i++) post[i] = 1.0f - 2.0f / (exp_fast(2.0f * pre[i]) + 1.0f);
}

/* One row (or any run) of activations: post = act(pre), aux for the backward. */
static void act_forward(float *post, float *aux, const float *pre, size_t n, fm_act act)
{
    switch (act) {
    case FM_ACT_RELU:
        for (size_t i = 0; i < n; i++) post[i] = pre[i] > 0.0f ? pre[i] : (pre[i] != pre[i] ? pre[i] : 0.0f);
        break;
    case FM_ACT_TANH:
        tanh_forward(post, pre, n);
        break;
    case FM_ACT_SILU:
    default:
        silu_forward(post, aux, pre, n);
        break;
    }
}

FM_CLONES static void add_bias(float *y, const float *b, int out)
{
    for (int j = 0; j < out; j++) y[j] += b[j];
}

void fm_kern_bias_act(float *pre, float *post, float *aux, const float *b, int n, int out, int act)
{
    for (int i = 0; i < n; i++) {
        float *yi = pre + (size_t)i * out;
        add_bias(yi, b, out);
        if (act >= 0) act_forward(post + (size_t)i * out, aux + (size_t)i * out, yi, (size_t)out, (fm_act)act);
    }
}

void fm_kern_act_backward(float *g, const float *pre, const float *post, const float *aux, size_t n, fm_act act)
{
    switch (act) {
    case FM_ACT_RELU:
        for (size_t i = 0; i < n; i++) g[i] = pre[i] > 0.0f ? g[i] : 0.0f;
        break;
    case FM_ACT_TANH:
        for (size_t i = 0; i < n; i++) g[i] *= 1.0f - post[i] * post[i];
        break;
    case FM_ACT_SILU:
    default:
        silu_backward(g, pre, aux, n);
        break;
    }
}

/* One row of the thin layer. Up to 4 inputs (the seed: x, y, t; or x, y in the sampler) in a
 * single pass over the row; more inputs one axpy pass each. */
FM_CLONES static void thin_row(float *restrict yi, const float *restrict ai, const float *restrict wt,
                               const float *restrict b, int in, int out)
{
    const float *w0 = wt, *w1 = wt + out, *w2 = wt + 2 * (size_t)out, *w3 = wt + 3 * (size_t)out;
    switch (in) {
    case 1:
        for (int j = 0; j < out; j++) yi[j] = b[j] + ai[0] * w0[j];
        return;
    case 2:
        for (int j = 0; j < out; j++) yi[j] = b[j] + ai[0] * w0[j] + ai[1] * w1[j];
        return;
    case 3:
        for (int j = 0; j < out; j++) yi[j] = b[j] + ai[0] * w0[j] + ai[1] * w1[j] + ai[2] * w2[j];
        return;
    case 4:
        for (int j = 0; j < out; j++) yi[j] = b[j] + ai[0] * w0[j] + ai[1] * w1[j] + ai[2] * w2[j] + ai[3] * w3[j];
        return;
    default:
        memcpy(yi, b, sizeof(float) * out);
        for (int k = 0; k < in; k++) {
            const float c = ai[k], *wk = wt + (size_t)k * out;
            for (int j = 0; j < out; j++) yi[j] += c * wk[j];
        }
    }
}

void fm_kern_thin_forward(float *y, float *post, float *aux, float *wt, const float *a, const float *W,
                          const float *b, int n, int in, int out, int act)
{
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) wt[(size_t)k * out + j] = W[(size_t)j * in + k];
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * out;
        thin_row(y + o, a + (size_t)i * in, wt, b, in, out);
        if (act >= 0) act_forward(post + o, aux + o, y + o, (size_t)out, (fm_act)act);
    }
}

FM_CLONES void fm_kern_thin_weight_grad(float *restrict dW, float *restrict db, float *restrict acc,
                                        const float *restrict g, const float *restrict a, int n, int in, int out)
{
    memset(acc, 0, sizeof(float) * (size_t)in * out);
    float *a0 = acc, *a1 = acc + out, *a2 = acc + 2 * (size_t)out;
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * out, *ai = a + (size_t)i * in;
        if (in == 3) { /* the seed (x, y, t): one pass over the row for all three and the bias */
            const float c0 = ai[0], c1 = ai[1], c2 = ai[2];
            for (int j = 0; j < out; j++) {
                a0[j] += c0 * gi[j];
                a1[j] += c1 * gi[j];
                a2[j] += c2 * gi[j];
                db[j] += gi[j];
            }
            continue;
        }
        for (int k = 0; k < in; k++) {
            const float c = ai[k];
            float *ak = acc + (size_t)k * out;
            for (int j = 0; j < out; j++) ak[j] += c * gi[j];
        }
        for (int j = 0; j < out; j++) db[j] += gi[j];
    }
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) dW[(size_t)j * in + k] += acc[(size_t)k * out + j];
}

FM_CLONES void fm_kern_colsum_add(float *db, const float *g, int n, int out)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * out;
        for (int j = 0; j < out; j++) db[j] += gi[j];
    }
}
