#include "fm/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fm/error.h"
#include "fm/simd.h"

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

void fm_kern_blas_threads(int threads) { openblas_set_num_threads(threads); }

/* 1 when the kernels that run have 32 vector registers of 16 floats (AVX-512): the narrow layers
 * then keep 16 vectors of 16 floats in registers. With 16 registers of 8 floats (AVX2) those spill
 * to the stack at every row (measured 20 times slower), so the narrow kernels block by 8 there.
 * -1: not yet known; fm_kern_set_wide overrides it for tests. */
static int wide = -1;

static int wide_registers(void)
{
    if (wide < 0) wide = fm_kern_isa()[0] == 'x' && fm_kern_isa()[8] == '4';
    return wide;
}

void fm_kern_set_wide(int on) { wide = on < 0 ? -1 : on != 0; }

const char *fm_kern_isa(void)
{
#if FM_CLONES_ON
    __builtin_cpu_init(); /* the same test as the resolver of target_clones */
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
#endif
    return "baseline";
}

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

FM_CLONES float fm_kern_absmax(const float *x, size_t n)
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

FM_CLONES void fm_kern_fixed_add(int64_t *acc, const float *g, double up, size_t n)
{
    for (size_t i = 0; i < n; i++) acc[i] += (int64_t)((double)g[i] * up);
}

FM_CLONES void fm_kern_fixed_to_float(float *g, const int64_t *acc, double down, size_t n)
{
    for (size_t i = 0; i < n; i++) g[i] = (float)((double)acc[i] * down);
}

FM_CLONES void fm_kern_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

FM_CLONES void fm_kern_silu(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_fast(-x[i]));
}

FM_CLONES void fm_kern_silu_sums(float *y, double *sum, double *sumsq, const float *x, size_t n)
{
    float a[16] = {0}, b[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            const float v = x[i + k] / (1.0f + exp_fast(-x[i + k]));
            y[i + k] = v;
            a[k] += v;
            b[k] += v * v;
        }
    double s = 0.0, s2 = 0.0;
    for (; i < n; i++) {
        y[i] = x[i] / (1.0f + exp_fast(-x[i]));
        s += y[i], s2 += (double)y[i] * y[i];
    }
    for (int k = 0; k < 16; k++) s += a[k], s2 += b[k];
    *sum = s;
    *sumsq = s2;
}

FM_CLONES void fm_kern_silu_grad(float *out, const float *base, const float *g, const float *x, size_t n)
{
    if (base) {
        for (size_t i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + exp_fast(-x[i]));
            out[i] = base[i] + g[i] * s * (1.0f + x[i] * (1.0f - s));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + exp_fast(-x[i]));
            out[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
        }
    }
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
        silu_forward(post, aux, pre, n);
        break;
    default:
        FM_FATAL("unknown activation %d", (int)act);
    }
}

FM_CLONES static void add_bias(float *y, const float *b, int out)
{
    for (int j = 0; j < out; j++) y[j] += b[j];
}

void fm_kern_bias_act(float *pre, float *post, float *aux, const float *b, int n, int out, int ld, int act)
{
    for (int i = 0; i < n; i++) {
        float *yi = pre + (size_t)i * ld;
        add_bias(yi, b, out);
        if (act >= 0) act_forward(post + (size_t)i * ld, aux + (size_t)i * ld, yi, (size_t)out, (fm_act)act);
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
        silu_backward(g, pre, aux, n);
        break;
    default:
        FM_FATAL("unknown activation %d", (int)act);
    }
}

/* ---- layers with a narrow side: few inputs (thin) or few outputs (narrow) ----
 * sgemm's packing and blocking cost more than the arithmetic here. These loops work on 16-float
 * vectors (GCC vector extensions: one AVX-512 register, two AVX2 ones, four SSE ones on the
 * default clone), with the small side in registers and the wide side streamed once. */

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias)); /* unaligned access */
typedef int32_t i16v __attribute__((vector_size(64)));

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t i8v __attribute__((vector_size(32)));

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE v16 vload(const float *p) { return *(const v16u *)p; }
ALWAYS_INLINE void vstore(float *p, v16 v) { *(v16u *)p = v; }
ALWAYS_INLINE v8 vload8(const float *p) { return *(const v8u *)p; }
ALWAYS_INLINE void vstore8(float *p, v8 v) { *(v8u *)p = v; }

/* g times act'(pre) on 16 columns, from the forward's pre, post and aux at the same place. */
ALWAYS_INLINE v16 act_deriv(v16 g, const float *pre, const float *post, const float *aux, const int act)
{
    if (act == FM_ACT_RELU) return (v16)((i16v)g & (i16v)(vload(pre) > 0.0f));
    if (act == FM_ACT_TANH) { const v16 p = vload(post); return g * (1.0f - p * p); }
    const v16 s = vload(aux);
    return g * s * (1.0f + vload(pre) * (1.0f - s));
}

/* The same on 8 columns. */
ALWAYS_INLINE v8 act_deriv8(v8 g, const float *pre, const float *post, const float *aux, const int act)
{
    if (act == FM_ACT_RELU) return (v8)((i8v)g & (i8v)(vload8(pre) > 0.0f));
    if (act == FM_ACT_TANH) { const v8 p = vload8(post); return g * (1.0f - p * p); }
    const v8 s = vload8(aux);
    return g * s * (1.0f + vload8(pre) * (1.0f - s));
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
                          const float *b, int n, int in, int out, int ld, int act)
{
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) wt[(size_t)k * out + j] = W[(size_t)j * in + k];
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * ld;
        thin_row(y + o, a + (size_t)i * in, wt, b, in, out);
        if (act >= 0) act_forward(post + o, aux + o, y + o, (size_t)out, (fm_act)act);
    }
}

/* Columns [j, j+16) of the thin weight gradient: the in+1 sums over rows stay in registers. */
ALWAYS_INLINE void thin_grad_block(float *dW, float *db, const float *g, const float *a, int n, const int in, int ld, int j)
{
    v16 acc[FM_THIN_INPUT] = {{0}}, bsum = {0};
    for (int i = 0; i < n; i++) {
        const v16 gv = vload(g + (size_t)i * ld + j);
        const float *ai = a + (size_t)i * in;
        bsum += gv;
        for (int k = 0; k < in; k++) acc[k] += ai[k] * gv;
    }
    vstore(db + j, vload(db + j) + bsum);
    for (int c = 0; c < 16; c++)
        for (int k = 0; k < in; k++) dW[(size_t)(j + c) * in + k] += acc[k][c];
}

/* The same on 8 columns, for 16 registers of 8 floats. */
ALWAYS_INLINE void thin_grad_block8(float *dW, float *db, const float *g, const float *a, int n, const int in, int ld, int j)
{
    v8 acc[FM_THIN_INPUT] = {{0}}, bsum = {0};
    for (int i = 0; i < n; i++) {
        const v8 gv = vload8(g + (size_t)i * ld + j);
        const float *ai = a + (size_t)i * in;
        bsum += gv;
        for (int k = 0; k < in; k++) acc[k] += ai[k] * gv;
    }
    vstore8(db + j, vload8(db + j) + bsum);
    for (int c = 0; c < 8; c++)
        for (int k = 0; k < in; k++) dW[(size_t)(j + c) * in + k] += acc[k][c];
}

#define THIN_GRAD_CASE(IN) \
    case IN: \
        if (wide_registers()) for (j = 0; j + 16 <= out; j += 16) thin_grad_block(dW, db, g, a, n, IN, ld, j); \
        else for (j = 0; j + 8 <= out; j += 8) thin_grad_block8(dW, db, g, a, n, IN, ld, j); \
        break;

FM_CLONES void fm_kern_thin_weight_grad(float *restrict dW, float *restrict db, const float *restrict g,
                                        const float *restrict a, int n, int in, int out, int ld)
{
    int j = 0;
    switch (in) { /* each width its own loop, so the sums are registers */
        THIN_GRAD_CASE(1) THIN_GRAD_CASE(2) THIN_GRAD_CASE(3) THIN_GRAD_CASE(4)
        THIN_GRAD_CASE(5) THIN_GRAD_CASE(6) THIN_GRAD_CASE(7) THIN_GRAD_CASE(8)
    }
    for (; j < out; j++) /* the last out % 16 columns */
        for (int i = 0; i < n; i++) {
            const float gij = g[(size_t)i * ld + j];
            db[j] += gij;
            for (int k = 0; k < in; k++) dW[(size_t)j * in + k] += gij * a[(size_t)i * in + k];
        }
}

/* R rows of the narrow forward: y[r, 0..out) = sum_k a[r, k] wt[k, :], one register per row. */
ALWAYS_INLINE void narrow_rows(float *y, const float *a, const float *wt, int K, int lda, int out, const int R)
{
    v16 acc[8] = {{0}};
    for (int k = 0; k < K; k++) {
        const v16 w = vload(wt + (size_t)k * 16);
        for (int r = 0; r < R; r++) acc[r] += a[(size_t)r * lda + k] * w;
    }
    for (int r = 0; r < R; r++) {
        if (out == 16) {
            vstore(y + (size_t)r * out, acc[r]);
        } else {
            float tmp[16];
            vstore(tmp, acc[r]);
            memcpy(y + (size_t)r * out, tmp, sizeof(float) * out);
        }
    }
}

/* The same with 16 registers of 8 floats: each row's 16 outputs in two of them. */
ALWAYS_INLINE void narrow_rows8(float *y, const float *a, const float *wt, int K, int lda, int out, const int R)
{
    v8 lo[4] = {{0}}, hi[4] = {{0}};
    for (int k = 0; k < K; k++) {
        const v8 w0 = vload8(wt + (size_t)k * 16), w1 = vload8(wt + (size_t)k * 16 + 8);
        for (int r = 0; r < R; r++) {
            const float ar = a[(size_t)r * lda + k];
            lo[r] += ar * w0;
            hi[r] += ar * w1;
        }
    }
    for (int r = 0; r < R; r++) {
        float tmp[16];
        vstore8(tmp, lo[r]);
        vstore8(tmp + 8, hi[r]);
        memcpy(y + (size_t)r * out, tmp, sizeof(float) * out);
    }
}

void fm_kern_narrow_pack(float *wt, const float *W, int K, int out)
{
    memset(wt, 0, sizeof(float) * 16 * (size_t)K);
    for (int o = 0; o < out; o++)
        for (int k = 0; k < K; k++) wt[(size_t)k * 16 + o] = W[(size_t)o * K + k];
}

FM_CLONES void fm_kern_narrow_forward(float *restrict y, const float *restrict wt, const float *restrict a, int n,
                                      int K, int lda, int out)
{
    int i = 0;
    if (wide_registers()) { /* 8 rows: 8 registers of outputs, the weight row in a ninth */
        for (; i + 8 <= n; i += 8) narrow_rows(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, 8);
        for (; i < n; i++) narrow_rows(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, 1);
    } else { /* 4 rows of 16 outputs: 8 of AVX2's 16 registers, the weight row in two more */
        for (; i + 4 <= n; i += 4) narrow_rows8(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, 4);
        for (; i < n; i++) narrow_rows8(y + (size_t)i * out, a + (size_t)i * lda, wt, K, lda, out, 1);
    }
}

/* Columns [j, j+16) of the narrow backward, for 16 outputs: dW's 16 column pieces stay in
 * registers over all rows; each row's input gradient is made, scaled by act' and stored once. */
ALWAYS_INLINE void narrow_grad_block(float *dW, float *ga, const float *g, const float *a, const float *W, const float *pre,
                          const float *post, const float *aux, int n, int K, int lda, int j, const int act)
{
    v16 dw[16] = {{0}};
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * 16;
        const size_t o = (size_t)i * lda + j;
        /* The next row is another page, where the hardware does not prefetch: ask for this row's
         * next-but-one block now (measured: 0.52 -> 0.47 ms of the seed's backward). */
        __builtin_prefetch(a + o + 32);
        __builtin_prefetch(pre + o + 32);
        __builtin_prefetch(aux + o + 32);
        const v16 av = vload(a + o);
        v16 s0 = {0}, s1 = {0}; /* two chains of FMAs, not one of 16 */
        for (int k = 0; k < 16; k += 2) {
            dw[k] += gi[k] * av;
            dw[k + 1] += gi[k + 1] * av;
            s0 += gi[k] * vload(W + (size_t)k * K + j);
            s1 += gi[k + 1] * vload(W + (size_t)(k + 1) * K + j);
        }
        vstore(ga + o, act_deriv(s0 + s1, pre + o, post + o, aux + o, act));
    }
    for (int k = 0; k < 16; k++) vstore(dW + (size_t)k * K + j, vload(dW + (size_t)k * K + j) + dw[k]);
}

/* Columns [j, j+8) of the narrow backward with 16 registers of 8 floats: outputs k0 .. k0+7 in
 * each of two passes over the rows (8 registers of dW pieces), the input gradient's first half
 * stored by the first pass, completed, scaled by act' and stored again by the second. */
ALWAYS_INLINE void narrow_grad_block8(float *dW, float *ga, const float *g, const float *a, const float *W,
                                      const float *pre, const float *post, const float *aux, int n, int K, int lda,
                                      int j, const int act)
{
    for (int k0 = 0; k0 < 16; k0 += 8) {
        v8 dw[8] = {{0}};
        for (int i = 0; i < n; i++) {
            const float *gi = g + (size_t)i * 16 + k0;
            const size_t o = (size_t)i * lda + j;
            __builtin_prefetch(a + o + 32);
            const v8 av = vload8(a + o);
            v8 s0 = {0}, s1 = {0};
            for (int k = 0; k < 8; k += 2) {
                dw[k] += gi[k] * av;
                dw[k + 1] += gi[k + 1] * av;
                s0 += gi[k] * vload8(W + (size_t)(k0 + k) * K + j);
                s1 += gi[k + 1] * vload8(W + (size_t)(k0 + k + 1) * K + j);
            }
            if (k0 == 0) vstore8(ga + o, s0 + s1);
            else vstore8(ga + o, act_deriv8(vload8(ga + o) + (s0 + s1), pre + o, post + o, aux + o, act));
        }
        for (int k = 0; k < 8; k++)
            vstore8(dW + (size_t)(k0 + k) * K + j, vload8(dW + (size_t)(k0 + k) * K + j) + dw[k]);
    }
}

#define NARROW_BLOCKS(BLOCK, WIDTH)                                                                    \
    for (; j + (WIDTH) <= K; j += (WIDTH)) {                                                           \
        if (act == FM_ACT_SILU) BLOCK(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_SILU);      \
        else if (act == FM_ACT_TANH) BLOCK(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_TANH); \
        else BLOCK(dW, ga, g, a, W, pre, post, aux, n, K, lda, j, FM_ACT_RELU);                         \
    }

FM_CLONES static void narrow_backward16(float *restrict dW, float *restrict ga, const float *restrict g,
                                        const float *restrict a, const float *restrict W, const float *pre,
                                        const float *post, const float *aux, int n, int K, int lda, int act)
{
    int j = 0;
    if (wide_registers()) NARROW_BLOCKS(narrow_grad_block, 16)
    else NARROW_BLOCKS(narrow_grad_block8, 8)
    for (; j < K; j++) /* the last columns, fewer than a block */
        for (int i = 0; i < n; i++) {
            const size_t o = (size_t)i * lda + j;
            float s = 0.0f;
            for (int k = 0; k < 16; k++) {
                dW[(size_t)k * K + j] += g[(size_t)i * 16 + k] * a[o];
                s += g[(size_t)i * 16 + k] * W[(size_t)k * K + j];
            }
            ga[o] = s;
            fm_kern_act_backward(ga + o, pre + o, post + o, aux + o, 1, (fm_act)act);
        }
}

void fm_kern_narrow_backward(float *dW, float *ga, float *pad, const float *g, const float *a, const float *W,
                             const float *pre, const float *post, const float *aux, int n, int K, int lda,
                             int out, fm_act act)
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

FM_CLONES void fm_kern_colsum_add(float *db, const float *g, int n, int out, int ld)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * ld;
        for (int j = 0; j < out; j++) db[j] += gi[j];
    }
}
