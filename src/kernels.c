/* The MLP's kernels and the element-wise passes (include/fm/kernels.h), compiled once per
 * instruction set (include/fm/vec.h); src/kernels_api.c calls the active build's table. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fm/error.h"
#include "fm/kern_ops.h"
#include "fm/kernels.h"
#include "fm/vec.h"

/* exp(x) lane by lane: x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial to r^6,
 * 2^n by building the exponent bits. The clamps are blends, so NaN passes through. The loops
 * below call it on whole vectors: GCC's own vectorisation of scalar loops was not to be relied
 * on (it left silu_sums scalar on AVX2, 6.7 ns a value against 0.44 on AVX-512, and made silu
 * divide twice); the tails and fm_kern_exp use lane 0 of the same arithmetic. */
FM_INLINE vf vf_select(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

FM_INLINE vf exp_vec(vf x)
{
    x = vf_select(x < -87.0f, vf_set1(-87.0f), x);
    x = vf_select(x > 88.0f, vf_set1(88.0f), x);
    const vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const vf r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    vf p = vf_set1(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}

static inline float exp_fast(float x) { return exp_vec(vf_set1(x))[0]; }

static void silu_backward(float *g, const float *pre, const float *sig, size_t n)
{
    /* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) kept by the forward */
    for (size_t i = 0; i < n; i++) g[i] *= sig[i] * (1.0f + pre[i] * (1.0f - sig[i]));
}

static float absmax(const float *x, size_t n)
{
    /* The bits of |x| order as |x| does, with NaN above infinity: an integer max. */
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    if (m > 0x7f800000u) return INFINITY;
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

static void fixed_add(int64_t *acc, const float *g, double up, size_t n)
{
    for (size_t i = 0; i < n; i++) acc[i] += (int64_t)((double)g[i] * up);
}

static void fixed_to_float(float *g, const int64_t *acc, double down, size_t n)
{
    for (size_t i = 0; i < n; i++) g[i] = (float)((double)acc[i] * down);
}

static void add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

FM_INLINE vf sigmoid_vec(vf x) { return 1.0f / (1.0f + exp_vec(-x)); }
static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_fast(-x)); }
FM_INLINE vf silu_vec(vf x) { return x / (1.0f + exp_vec(-x)); }
static inline float silu1(float x) { return x / (1.0f + exp_fast(-x)); }

static void silu(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + FM_VW <= n; i += FM_VW) {
        vf_store(y + i, silu_vec(vf_load(x + i)));
    }
    for (; i < n; i++) y[i] = silu1(x[i]);
}

static void silu_sums(float *y, double *sum, double *sumsq, const float *x, size_t n)
{
    vf a = {0}, b = {0};
    size_t i = 0;
    for (; i + FM_VW <= n; i += FM_VW) {
        const vf s = silu_vec(vf_load(x + i));
        vf_store(y + i, s);
        a += s;
        b += s * s;
    }
    double s = 0.0, s2 = 0.0;
    for (; i < n; i++) {
        y[i] = silu1(x[i]);
        s += y[i], s2 += (double)y[i] * y[i];
    }
    for (int k = 0; k < FM_VW; k++) s += a[k], s2 += b[k];
    *sum = s;
    *sumsq = s2;
}

static void silu_grad(float *out, const float *base, const float *g, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + FM_VW <= n; i += FM_VW) {
        const vf v = vf_load(x + i), s = sigmoid_vec(v), d = vf_load(g + i) * s * (1.0f + v * (1.0f - s));
        vf_store(out + i, base ? vf_load(base + i) + d : d);
    }
    for (; i < n; i++) {
        const float s = sigmoid(x[i]), d = g[i] * s * (1.0f + x[i] * (1.0f - s));
        out[i] = base ? base[i] + d : d;
    }
}

static void silu_forward(float *post, float *sig, const float *pre, size_t n)
{
    size_t i = 0;
    for (; i + FM_VW <= n; i += FM_VW) {
        const vf v = vf_load(pre + i), s = sigmoid_vec(v);
        vf_store(sig + i, s);
        vf_store(post + i, v * s);
    }
    for (; i < n; i++) {
        sig[i] = sigmoid(pre[i]);
        post[i] = pre[i] * sig[i];
    }
}

static void tanh_forward(float *post, const float *pre, size_t n)
{
    /* tanh x = 1 - 2 / (exp(2x) + 1): exact at both ends, absolute error ~1e-7 near 0 */
    size_t i = 0;
    for (; i + FM_VW <= n; i += FM_VW) vf_store(post + i, 1.0f - 2.0f / (exp_vec(2.0f * vf_load(pre + i)) + 1.0f));
    for (; i < n; i++) post[i] = 1.0f - 2.0f / (exp_fast(2.0f * pre[i]) + 1.0f);
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
        silu_forward(post, aux, pre, n);
        break;
    default:
        FM_FATAL("unknown activation %d", (int)act);
    }
}

static void add_bias(float *y, const float *b, int out)
{
    for (int j = 0; j < out; j++) y[j] += b[j];
}

static void bias_act(float *pre, float *post, float *aux, const float *b, int n, int out, int ld, int act)
{
    for (int i = 0; i < n; i++) {
        float *yi = pre + (size_t)i * ld;
        add_bias(yi, b, out);
        if (act >= 0) act_forward(post + (size_t)i * ld, aux + (size_t)i * ld, yi, (size_t)out, (fm_act)act);
    }
}

static void act_backward(float *g, const float *pre, const float *post, const float *aux, size_t n, fm_act act)
{
    switch (act) {
    case FM_ACT_RELU:
        for (size_t i = 0; i < n; i++) g[i] = pre[i] > 0.0f ? g[i] : 0.0f;
        break;
    case FM_ACT_TANH:
        for (size_t i = 0; i < n; i++) g[i] *= 1.0f - post[i] * post[i];
        break;
    case FM_ACT_SILU:
        silu_backward(g, pre, aux, n);
        break;
    default:
        FM_FATAL("unknown activation %d", (int)act);
    }
}

/* ---- layers with a narrow side: few inputs (thin) or few outputs (narrow) ----
 * sgemm's packing and blocking cost more than the arithmetic here. These loops work on vectors
 * of FM_VW floats with the small side in registers and the wide side streamed once; the 16
 * outputs of a narrow layer are NV vectors. */

#define NV (16 / FM_VW)

/* g times act'(pre) on FM_VW columns, from the forward's pre, post and aux at the same place. */
FM_INLINE vf act_deriv(vf g, const float *pre, const float *post, const float *aux, const int act)
{
    if (act == FM_ACT_RELU) return (vf)((vi)g & (vi)(vf_load(pre) > 0.0f));
    if (act == FM_ACT_TANH) {
        const vf p = vf_load(post);
        return g * (1.0f - p * p);
    }
    const vf s = vf_load(aux);
    return g * s * (1.0f + vf_load(pre) * (1.0f - s));
}

/* One row of the thin layer. Up to 4 inputs (the seed: x, y, t; or x, y in the sampler) in a
 * single pass over the row; more inputs one axpy pass each. */
static void thin_row(float *restrict yi, const float *restrict ai, const float *restrict wt, const float *restrict b,
                     int in, int out)
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

static void thin_forward(float *y, float *post, float *aux, float *wt, const float *a, const float *W, const float *b,
                         int n, int in, int out, int ld, int act)
{
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) wt[(size_t)k * out + j] = W[(size_t)j * in + k];
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * ld;
        thin_row(y + o, a + (size_t)i * in, wt, b, in, out);
        if (act >= 0) act_forward(post + o, aux + o, y + o, (size_t)out, (fm_act)act);
    }
}

/* Columns [j, j + FM_VW) of the thin weight gradient: the in + 1 sums over rows (at most 9
 * vectors) stay in registers. */
FM_INLINE void thin_grad_block(float *dW, float *db, const float *g, const float *a, int n, const int in, int ld, int j)
{
    vf acc[FM_THIN_INPUT], bsum = {0};
    for (int k = 0; k < in; k++) acc[k] = (vf){0};
    for (int i = 0; i < n; i++) {
        const vf gv = vf_load(g + (size_t)i * ld + j);
        const float *ai = a + (size_t)i * in;
        bsum += gv;
        for (int k = 0; k < in; k++) acc[k] += ai[k] * gv;
    }
    vf_store(db + j, vf_load(db + j) + bsum);
    for (int c = 0; c < FM_VW; c++)
        for (int k = 0; k < in; k++) dW[(size_t)(j + c) * in + k] += acc[k][c];
}

#define THIN_GRAD_CASE(IN)                                                                   \
    case IN:                                                                                 \
        for (j = 0; j + FM_VW <= out; j += FM_VW) thin_grad_block(dW, db, g, a, n, IN, ld, j); \
        break;

static void thin_weight_grad(float *restrict dW, float *restrict db, const float *restrict g, const float *restrict a,
                             int n, int in, int out, int ld)
{
    int j = 0;
    switch (in) { /* each width its own loop, so the sums are registers */
        THIN_GRAD_CASE(1) THIN_GRAD_CASE(2) THIN_GRAD_CASE(3) THIN_GRAD_CASE(4)
        THIN_GRAD_CASE(5) THIN_GRAD_CASE(6) THIN_GRAD_CASE(7) THIN_GRAD_CASE(8)
    }
    for (; j < out; j++) /* the last out % FM_VW columns */
        for (int i = 0; i < n; i++) {
            const float gij = g[(size_t)i * ld + j];
            db[j] += gij;
            for (int k = 0; k < in; k++) dW[(size_t)j * in + k] += gij * a[(size_t)i * in + k];
        }
}

/* Rows a tile of the narrow forward holds: R rows of NV vectors of outputs and the weight row's
 * NV vectors in half the registers at most (AVX-512: 8 rows; AVX2: 4; SSE2: 2; NEON: 4). */
#define NARROW_ROWS (FM_VREGS / 2 / NV < 8 ? FM_VREGS / 2 / NV : 8)

/* R rows of the narrow forward: y[r, 0..out) = sum_k a[r, k] wt[k, :]. */
FM_INLINE void narrow_rows(float *y, const float *a, const float *wt, int K, int lda, int out, const int R)
{
    vf acc[NARROW_ROWS][NV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (vf){0};
    for (int k = 0; k < K; k++) {
        vf w[NV];
        for (int v = 0; v < NV; v++) w[v] = vf_load(wt + (size_t)k * 16 + v * FM_VW);
        for (int r = 0; r < R; r++) {
            const float ar = a[(size_t)r * lda + k];
            for (int v = 0; v < NV; v++) acc[r][v] += ar * w[v];
        }
    }
    for (int r = 0; r < R; r++) {
        if (out == 16) {
            for (int v = 0; v < NV; v++) vf_store(y + (size_t)r * out + v * FM_VW, acc[r][v]);
        } else {
            float tmp[16];
            for (int v = 0; v < NV; v++) vf_store(tmp + v * FM_VW, acc[r][v]);
            memcpy(y + (size_t)r * out, tmp, sizeof(float) * out);
        }
    }
}

static void narrow_forward(float *restrict y, const float *restrict wt, const float *restrict a, int n, int K, int lda,
                           int out)
{
    int i = 0;
    for (; i + NARROW_ROWS <= n; i += NARROW_ROWS)
        narrow_rows(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, NARROW_ROWS);
    for (; i < n; i++) narrow_rows(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, 1);
}

/* Outputs a pass of the narrow backward holds: KG vectors of dW pieces, two partial sums, the
 * input and a weight in registers (AVX-512: all 16 in one pass; 16 registers: 8 in each of two). */
#define NARROW_GROUP (FM_VREGS / 2)

/* Columns [j, j + FM_VW) of the narrow backward, for 16 outputs: the dW pieces of NARROW_GROUP
 * outputs stay in registers over all rows; each row's input gradient is made, scaled by act' and
 * stored by the last pass (earlier passes store their part, the next adds to it). */
FM_INLINE void narrow_grad_block(float *dW, float *ga, const float *g, const float *a, const float *W, const float *pre,
                                 const float *post, const float *aux, int n, int K, int lda, int j, const int act)
{
    for (int k0 = 0; k0 < 16; k0 += NARROW_GROUP) {
        const int last = k0 + NARROW_GROUP == 16;
        vf dw[NARROW_GROUP];
        for (int k = 0; k < NARROW_GROUP; k++) dw[k] = (vf){0};
        for (int i = 0; i < n; i++) {
            const float *gi = g + (size_t)i * 16 + k0;
            const size_t o = (size_t)i * lda + j;
            /* The next row is another page, where the hardware does not prefetch: ask for this
             * row's next-but-one block now (measured: 0.52 -> 0.47 ms of the seed's backward). */
            __builtin_prefetch(a + o + 32);
            if (last) {
                __builtin_prefetch(pre + o + 32);
                __builtin_prefetch(aux + o + 32);
            }
            const vf av = vf_load(a + o);
            vf s0 = {0}, s1 = {0}; /* two chains of FMAs, not one */
            for (int k = 0; k < NARROW_GROUP; k += 2) {
                dw[k] += gi[k] * av;
                dw[k + 1] += gi[k + 1] * av;
                s0 += gi[k] * vf_load(W + (size_t)(k0 + k) * K + j);
                s1 += gi[k + 1] * vf_load(W + (size_t)(k0 + k + 1) * K + j);
            }
            vf s = s0 + s1;
            if (k0 > 0) s = vf_load(ga + o) + s;
            vf_store(ga + o, last ? act_deriv(s, pre + o, post + o, aux + o, act) : s);
        }
        for (int k = 0; k < NARROW_GROUP; k++)
            vf_store(dW + (size_t)(k0 + k) * K + j, vf_load(dW + (size_t)(k0 + k) * K + j) + dw[k]);
    }
}

static void narrow_backward16(float *restrict dW, float *restrict ga, const float *restrict g, const float *restrict a,
                              const float *restrict W, const float *pre, const float *post, const float *aux, int n,
                              int K, int lda, int act)
{
    int j = 0;
    for (; j + FM_VW <= K; j += FM_VW) {
        if (act == FM_ACT_SILU) narrow_grad_block(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_SILU);
        else if (act == FM_ACT_TANH) narrow_grad_block(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_TANH);
        else narrow_grad_block(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_RELU);
    }
    for (; j < K; j++) /* the last columns, fewer than a vector */
        for (int i = 0; i < n; i++) {
            const size_t o = (size_t)i * lda + j;
            float s = 0.0f;
            for (int k = 0; k < 16; k++) {
                dW[(size_t)k * K + j] += g[(size_t)i * 16 + k] * a[o];
                s += g[(size_t)i * 16 + k] * W[(size_t)k * K + j];
            }
            ga[o] = s;
            act_backward(ga + o, pre + o, post + o, aux + o, 1, (fm_act)act);
        }
}

static void narrow_backward(float *dW, float *ga, float *pad, const float *g, const float *a, const float *W,
                            const float *pre, const float *post, const float *aux, int n, int K, int lda, int out,
                            fm_act act)
{
    if (out == 16) {
        narrow_backward16(dW, ga, g, a, W, pre, post, aux, n, K, lda, act);
        return;
    }
    /* Fewer outputs: zero rows make them 16 (the extra products are a fraction of a tiny layer). */
    float *Wp = pad, *dWp = pad + (size_t)16 * K, *gp = pad + (size_t)32 * K;
    memset(pad, 0, sizeof(float) * (size_t)32 * K);
    memcpy(Wp, W, sizeof(float) * (size_t)out * K);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 16; k++) gp[(size_t)i * 16 + k] = k < out ? g[(size_t)i * out + k] : 0.0f;
    narrow_backward16(dWp, ga, gp, a, Wp, pre, post, aux, n, K, lda, act);
    for (size_t k = 0; k < (size_t)out * K; k++) dW[k] += dWp[k];
}

static void colsum_add(float *db, const float *g, int n, int out, int ld)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * ld;
        for (int j = 0; j < out; j++) db[j] += gi[j];
    }
}

FM_ISA_TABLE(fm_kern_ops) = {
    .exp = exp_fast,
    .bias_act = bias_act,
    .act_backward = act_backward,
    .silu = silu,
    .silu_sums = silu_sums,
    .silu_grad = silu_grad,
    .absmax = absmax,
    .fixed_add = fixed_add,
    .fixed_to_float = fixed_to_float,
    .add = add,
    .thin_forward = thin_forward,
    .thin_weight_grad = thin_weight_grad,
    .narrow_forward = narrow_forward,
    .narrow_backward = narrow_backward,
    .colsum_add = colsum_add,
};
