/* The kernels: the fast exp against libm, every activation and its derivative
 * against double formulas, NaN in gives NaN out, the thin layer against a naive loop. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/kernels.h"
#include "fm/rng.h"

static double act_d(double x, int act)
{
    if (act == FM_ACT_SILU) return x / (1 + exp(-x));
    if (act == FM_ACT_TANH) return tanh(x);
    return x > 0 ? x : 0;
}

static double dact_d(double x, int act)
{
    if (act == FM_ACT_SILU) { double s = 1 / (1 + exp(-x)); return s * (1 + x * (1 - s)); }
    if (act == FM_ACT_TANH) return 1 - tanh(x) * tanh(x);
    return x > 0 ? 1 : 0;
}

static void check_all(void)
{
    /* exp: relative error < 3e-7 (about 2 ulp) over the whole range used; 0 and overflow clamp to finite. */
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        double rel = fabs(fm_kern_exp(x) - exp((double)x)) / exp((double)x);
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 3e-7, "fast exp: worst relative error %g", worst);
    CHECK(isfinite(fm_kern_exp(1000.0f)) && fm_kern_exp(-1000.0f) >= 0.0f, "exp clamps");
    CHECK(isnan(fm_kern_exp(NAN)), "exp(NaN) must be NaN");

    /* Activations: forward and derivative against double formulas on rows of odd length (vector
     * bodies and remainders), with a NaN planted in each row. */
    enum { ROWS = 3, OUT = 37 };
    float y[ROWS * OUT], post[ROWS * OUT], aux[ROWS * OUT], x[ROWS * OUT], g[ROWS * OUT], b[OUT];
    fm_rng_normal(x, 7, 0, 0, FM_STREAM_EVAL, ROWS * OUT);
    fm_rng_normal(b, 8, 0, 0, FM_STREAM_EVAL, OUT);
    for (int i = 0; i < ROWS * OUT; i++) x[i] *= 6.0f;
    for (int act = 0; act < 3; act++) {
        memcpy(y, x, sizeof y);
        y[5] = NAN;
        fm_kern_bias_act(y, post, aux, b, ROWS, OUT, OUT, act);
        for (int i = 0; i < ROWS * OUT; i++) g[i] = 1.0f;
        fm_kern_act_backward(g, y, post, aux, ROWS * OUT, (fm_act)act);
        double ef = 0, eb = 0;
        for (int i = 0; i < ROWS * OUT; i++) {
            if (i == 5) continue;
            double pre = (double)x[i] + b[i % OUT];
            ef = fmax(ef, fabs(post[i] - act_d(pre, act)) / (1 + fabs(act_d(pre, act))));
            eb = fmax(eb, fabs(g[i] - dact_d(pre, act)));
        }
        CHECK(ef < 1e-6, "activation %d forward error %g", act, ef);
        CHECK(eb < 1e-5, "activation %d derivative error %g", act, eb);
        CHECK(isnan(post[5]), "activation %d turned NaN into %g", act, post[5]);
    }
    /* The output layer (act < 0): bias only. */
    memcpy(y, x, sizeof y);
    fm_kern_bias_act(y, post, aux, b, ROWS, OUT, OUT, -1);
    CHECK(y[OUT + 3] == x[OUT + 3] + b[3], "bias only");

    /* Thin layer (3 inputs) with SiLU against a naive loop. */
    enum { N = 5, IN = 3, W = 41 };
    float a[N * IN], Wt[W * IN], bt[W], yt[N * W], pt[N * W], at[N * W], scratch[IN * W];
    fm_rng_normal(a, 1, 0, 0, FM_STREAM_EVAL, N * IN);
    fm_rng_normal(Wt, 2, 0, 0, FM_STREAM_EVAL, W * IN);
    fm_rng_normal(bt, 3, 0, 0, FM_STREAM_EVAL, W);
    fm_kern_thin_forward(yt, pt, at, scratch, a, Wt, bt, N, IN, W, W, FM_ACT_SILU);
    double et = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < W; j++) {
            double s = bt[j];
            for (int k = 0; k < IN; k++) s += (double)Wt[j * IN + k] * a[i * IN + k];
            et = fmax(et, fabs(pt[i * W + j] - act_d(s, FM_ACT_SILU)) + fabs(yt[i * W + j] - s));
        }
    CHECK(et < 1e-5, "thin forward error %g", et);

    /* Thin weight and bias gradients, every width 1..FM_THIN_INPUT (each its own loop), 41
     * columns (vector blocks and a remainder) at a row stride of 45, against loops. */
    for (int in = 1; in <= FM_THIN_INPUT; in++) {
        enum { LD = W + 4 };
        float g2[N * LD], a2[N * FM_THIN_INPUT], dW[W * FM_THIN_INPUT], db[W];
        fm_rng_normal(g2, 4, 0, 0, FM_STREAM_EVAL, N * LD);
        fm_rng_normal(a2, 5, 0, 0, FM_STREAM_EVAL, N * in);
        for (int k = 0; k < W * in; k++) dW[k] = 0.5f;
        for (int j = 0; j < W; j++) db[j] = -1.0f;
        fm_kern_thin_weight_grad(dW, db, g2, a2, N, in, W, LD);
        double ew = 0, eb = 0;
        for (int j = 0; j < W; j++) {
            double sb = -1.0;
            for (int i = 0; i < N; i++) sb += g2[i * LD + j];
            eb = fmax(eb, fabs(db[j] - sb));
            for (int k = 0; k < in; k++) {
                double sw = 0.5;
                for (int i = 0; i < N; i++) sw += (double)g2[i * LD + j] * a2[i * in + k];
                ew = fmax(ew, fabs(dW[j * in + k] - sw));
            }
        }
        CHECK(ew < 1e-5 && eb < 1e-5, "thin gradients, %d inputs: errors %g %g", in, ew, eb);
    }

    /* Narrow layers (out <= 16) against double loops: 16 outputs (the direct path) and fewer
     * (padded), K with and without a remainder of 16 (or 8), rows in blocks of 8 (or 4) and a
     * remainder, a row stride of K + 3, the input gradient times each activation's derivative. */
    const int outs[] = {16, 5, 1}, Ks[] = {41, 32, 7};
    for (int oi = 0; oi < 3; oi++)
        for (int ki = 0; ki < 3; ki++)
            for (int act = 0; act < 3; act++) {
                enum { NR = 13, KMAX = 41, LMAX = KMAX + 3 };
                const int out = outs[oi], K = Ks[ki], L = K + 3;
                float a3[NR * LMAX], W3[16 * KMAX], y3[NR * 16], g3[NR * 16], dW3[16 * KMAX], ga[NR * LMAX];
                float pre[NR * LMAX], post3[NR * LMAX], aux3[NR * LMAX], zb[KMAX] = {0};
                float pad[32 * KMAX + 16 * NR];
                fm_rng_normal(pre, 11, 0, (uint32_t)ki, FM_STREAM_EVAL, NR * L);
                fm_kern_bias_act(pre, post3, aux3, zb, NR, K, L, act);
                memcpy(a3, post3, sizeof(float) * NR * L);
                fm_rng_normal(W3, 12, 0, (uint32_t)oi, FM_STREAM_EVAL, out * K);
                fm_rng_normal(g3, 13, 0, (uint32_t)oi, FM_STREAM_EVAL, NR * out);
                for (int k = 0; k < out * K; k++) dW3[k] = 0.25f;
                fm_kern_narrow_pack(pad, W3, K, out);
                fm_kern_narrow_forward(y3, pad, a3, NR, K, L, out);
                fm_kern_narrow_backward(dW3, ga, pad, g3, a3, W3, pre, post3, aux3, NR, K, L, out, (fm_act)act);
                double ey = 0, ew = 0, eg = 0;
                for (int i = 0; i < NR; i++)
                    for (int o = 0; o < out; o++) {
                        double s = 0;
                        for (int k = 0; k < K; k++) s += (double)a3[i * L + k] * W3[o * K + k];
                        ey = fmax(ey, fabs(y3[i * out + o] - s));
                    }
                for (int o = 0; o < out; o++)
                    for (int k = 0; k < K; k++) {
                        double s = 0.25;
                        for (int i = 0; i < NR; i++) s += (double)g3[i * out + o] * a3[i * L + k];
                        ew = fmax(ew, fabs(dW3[o * K + k] - s));
                    }
                for (int i = 0; i < NR; i++)
                    for (int k = 0; k < K; k++) {
                        double s = 0;
                        for (int o = 0; o < out; o++) s += (double)g3[i * out + o] * W3[o * K + k];
                        eg = fmax(eg, fabs(ga[i * L + k] - s * dact_d(pre[i * L + k], act)));
                    }
                CHECK(ey < 1e-4 && ew < 1e-4 && eg < 1e-4, "narrow layer out %d, K %d, act %d: errors %g %g %g", out, K,
                      act, ey, ew, eg);
            }
    /* The deterministic mode's fixed point: the largest magnitude (NaN as infinite), and sums that do
     * not depend on their order: shards added in any order give the same bits. */
    {
        enum { N = 1000 };
        static float g[3][N], back[N];
        static int64_t a[N], b[N];
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < N; i++) g[s][i] = (float)((i % 7 - 3) * (s + 1)) * 0.37f / (float)(1 + i);
        g[1][17] = -9.5f;
        CHECK(fm_kern_absmax(g[1], N) == 9.5f && fm_kern_absmax(g[0], 0) == 0.0f, "absmax %g", fm_kern_absmax(g[1], N));
        g[2][N - 1] = NAN;
        CHECK(isinf(fm_kern_absmax(g[2], N)), "NaN counts as infinite");
        g[2][N - 1] = 0.0f;
        const double up = ldexp(1.0, 50), down = ldexp(1.0, -50);
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        for (int s = 0; s < 3; s++) fm_kern_fixed_add(a, g[s], up, N);
        for (int s = 2; s >= 0; s--) fm_kern_fixed_add(b, g[s], up, N);
        CHECK(memcmp(a, b, sizeof a) == 0, "fixed-point sums depend on the order");
        fm_kern_fixed_to_float(back, a, down, N);
        for (int i = 0; i < N; i++) CHECK_NEAR(back[i], (double)g[0][i] + g[1][i] + g[2][i], 1e-6 * (1 + fabs(back[i])));
    }
}

int main(void)
{
    /* Every build this machine runs (SSE2, AVX2, AVX-512): each has its own tiles. */
    check_each_isa(check_all);
    return check_report("test_kernels");
}
