#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fm/kernels.h"
#include "fm/mlp.h"
#include "fm/path.h"
#include "fm/rng.h"

static double act_d(double x, fm_act a)
{
    switch (a) {
    case FM_ACT_RELU: return x > 0 ? x : 0;
    case FM_ACT_TANH: return tanh(x);
    default: return x / (1 + exp(-x));
    }
}

/* The forward pass as a plain double loop (parameters in double too): the reference for the
 * sgemm path, and the loss whose finite differences check the gradient. */
static void forward_naive(double *out, const fm_mlp *m, const double *p, const float *x, const float *t, int n)
{
    const int dim = m->dims[0] - 1;
    double a[2048], y[2048];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < dim; j++) a[j] = x[i * dim + j];
        a[dim] = t[i];
        for (int l = 0; l < m->nlayers; l++) {
            const int in = m->dims[l], o = m->dims[l + 1];
            for (int r = 0; r < o; r++) {
                double s = p[m->b_off[l] + r];
                for (int c = 0; c < in; c++) s += p[m->w_off[l] + (size_t)r * in + c] * a[c];
                y[r] = l < m->nlayers - 1 ? act_d(s, m->act) : s;
            }
            memcpy(a, y, sizeof(double) * o);
        }
        for (int j = 0; j < dim; j++) out[i * dim + j] = a[j];
    }
}

/* Backprop of sum(dout . output) in double, one sample at a time: the reference for the
 * gradients of shapes too big for finite differences. grad[nparams] is added to. */
static void backward_naive(double *grad, const fm_mlp *m, const double *p, const float *x, const float *t,
                           const float *dout, int n)
{
    enum { W = 2048 };
    const int dim = m->dims[0] - 1, L = m->nlayers;
    static double a[FM_MLP_MAX_LAYERS + 1][W], z[FM_MLP_MAX_LAYERS][W]; /* inputs and pre-activations */
    double g[W], ga[W];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < dim; j++) a[0][j] = x[i * dim + j];
        a[0][dim] = t[i];
        for (int l = 0; l < L; l++)
            for (int r = 0; r < m->dims[l + 1]; r++) {
                double s = p[m->b_off[l] + r];
                for (int c = 0; c < m->dims[l]; c++) s += p[m->w_off[l] + (size_t)r * m->dims[l] + c] * a[l][c];
                z[l][r] = s;
                a[l + 1][r] = l < L - 1 ? act_d(s, m->act) : s;
            }
        for (int j = 0; j < dim; j++) g[j] = dout[i * dim + j];
        for (int l = L - 1; l >= 0; l--) {
            const int in = m->dims[l], out = m->dims[l + 1];
            for (int c = 0; c < in; c++) ga[c] = 0;
            for (int r = 0; r < out; r++) {
                grad[m->b_off[l] + r] += g[r];
                for (int c = 0; c < in; c++) {
                    grad[m->w_off[l] + (size_t)r * in + c] += g[r] * a[l][c];
                    ga[c] += g[r] * p[m->w_off[l] + (size_t)r * in + c];
                }
            }
            if (l == 0) break;
            for (int c = 0; c < in; c++) { /* times act'(z), by a central difference in double */
                const double h = 1e-6;
                g[c] = ga[c] * (act_d(z[l - 1][c] + h, m->act) - act_d(z[l - 1][c] - h, m->act)) / (2 * h);
            }
        }
    }
}

static double *to_double(const float *p, size_t n)
{
    double *d = malloc(sizeof(double) * n);
    for (size_t k = 0; k < n; k++) d[k] = p[k];
    return d;
}

/* DESIGN.md's loss in double: scale * sum ||out - u||^2. */
static double loss_naive(const fm_mlp *m, const double *p, const float *x, const float *t, const float *u,
                         int n, double scale)
{
    const int D = m->dims[m->nlayers];
    double out[64], s = 0;
    forward_naive(out, m, p, x, t, n);
    for (int k = 0; k < n * D; k++) s += (out[k] - u[k]) * (out[k] - u[k]);
    return scale * s;
}

/* Compares grad with central differences of the double-precision loss for every parameter;
 * returns how many differ by more than |g - fd| <= 1e-3 |fd| + 1e-6 (float backward against a
 * double reference). Where the loss has a kink inside [p-h, p+h] (ReLU) the one-sided
 * differences disagree and the parameter is skipped. */
static int gradcheck(const fm_mlp *m, const float *pf, const float *grad, const float *x, const float *t,
                     const float *u, int n, double scale, int *checked)
{
    double *p = to_double(pf, m->nparams);
    int bad = 0;
    *checked = 0;
    for (size_t k = 0; k < m->nparams; k++) {
        const double p0 = p[k], h = 1e-5;
        p[k] = p0 + h;
        double lp = loss_naive(m, p, x, t, u, n, scale);
        p[k] = p0 - h;
        double lm = loss_naive(m, p, x, t, u, n, scale);
        p[k] = p0;
        double l0 = loss_naive(m, p, x, t, u, n, scale);
        double fwd = (lp - l0) / h, bwd = (l0 - lm) / h, fd = (lp - lm) / (2 * h);
        if (fabs(fwd - bwd) > 1e-3 * fabs(fd) + 1e-5) continue;
        (*checked)++;
        if (fabs(grad[k] - fd) > 1e-3 * fabs(fd) + 1e-6) {
            if (bad < 5) fprintf(stderr, "  param %zu: backward %.7g, finite difference %.7g\n", k, grad[k], fd);
            bad++;
        }
    }
    free(p);
    return bad;
}

/* A conditioned MLP (DESIGN.md section 6) in double: rows [x | sqrt2 sin(2 pi w t), sqrt2 cos(2 pi w t) |
 * E[y]], and sum(r . output), whose finite differences check every gradient, the frequencies w
 * and the label table included. */
static double cond_loss_naive(const fm_mlp *m, const double *p, const float *x, const float *t, const int *y,
                              const float *r, int n)
{
    const int D = m->dim, h = m->t_cols / 2;
    double a[64], z[64], s = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) a[j] = x[i * D + j];
        for (int k = 0; k < h; k++) {
            a[D + k] = sqrt(2.0) * sin(2 * M_PI * p[m->te_off + k] * t[i]);
            a[D + h + k] = sqrt(2.0) * cos(2 * M_PI * p[m->te_off + k] * t[i]);
        }
        for (int k = 0; k < m->y_cols; k++) a[D + m->t_cols + k] = p[m->ye_off + (size_t)y[i] * m->y_cols + k];
        for (int l = 0; l < m->nlayers; l++) {
            for (int o = 0; o < m->dims[l + 1]; o++) {
                double v = p[m->b_off[l] + o];
                for (int c = 0; c < m->dims[l]; c++) v += p[m->w_off[l] + (size_t)o * m->dims[l] + c] * a[c];
                z[o] = l < m->nlayers - 1 ? act_d(v, m->act) : v;
            }
            memcpy(a, z, sizeof(double) * m->dims[l + 1]);
        }
        for (int j = 0; j < D; j++) s += r[i * D + j] * a[j];
    }
    return s;
}

static void check_conditioned(void)
{
    fm_mlp m;
    const int hidden[] = {6, 5};
    CHECK(fm_mlp_shape(&m, 2, hidden, 2, FM_ACT_SILU) == 0 && fm_mlp_condition(&m, 1, 4, 3, 3) == 0, "shape");
    CHECK(m.dims[0] == 2 + 4 + 3 && m.te_off == m.layers_end && m.ye_off == m.te_off + 2 &&
          m.nparams == m.ye_off + 4 * 3, "conditioned layout");
    CHECK(fm_mlp_condition(&m, 1, 5, 0, 0) == -1 && fm_mlp_condition(&m, 0, 1, 2, 0) == -1, "odd t_dim, no y_dim");
    fm_mlp_condition(&m, 1, 4, 3, 3);
    enum { N = 5 };
    float *p = malloc(sizeof(float) * m.nparams), *grad = calloc(m.nparams, sizeof(float));
    fm_mlp_init(p, &m, 9);
    float x[N * 2], t[N], r[N * 2];
    const int y[N] = {0, 1, 2, 3, 1}; /* 3: no label */
    fm_rng_normal(x, 1, 0, 0, FM_STREAM_EVAL, N * 2);
    fm_rng_uniform(t, 2, 0, 0, FM_STREAM_EVAL, N);
    fm_rng_normal(r, 3, 0, 0, FM_STREAM_EVAL, N * 2);
    fm_mlp_work *w = fm_mlp_work_new(&m, N);
    fm_mlp_pack(w, &m, p);
    const float *out = fm_mlp_forward_cond(w, &m, p, x, t, 0.0f, y, N);
    double *pd = to_double(p, m.nparams);
    double s = 0;
    for (int k = 0; k < N * 2; k++) s += (double)r[k] * out[k];
    CHECK_NEAR(s, cond_loss_naive(&m, pd, x, t, y, r, N), 1e-4 * (1 + fabs(s)));
    fm_mlp_backward(grad, w, &m, p, r, N, NULL, NULL);
    int bad = 0;
    for (size_t k = 0; k < m.nparams; k++) {
        const double p0 = pd[k], hh = 1e-6;
        pd[k] = p0 + hh;
        const double lp = cond_loss_naive(&m, pd, x, t, y, r, N);
        pd[k] = p0 - hh;
        const double fd = (lp - cond_loss_naive(&m, pd, x, t, y, r, N)) / (2 * hh);
        pd[k] = p0;
        if (fabs(grad[k] - fd) > 1e-3 * fabs(fd) + 1e-5) {
            if (bad < 5) fprintf(stderr, "  conditioned param %zu: backward %.7g, finite difference %.7g\n", k, grad[k], fd);
            bad++;
        }
    }
    CHECK(bad == 0, "conditioned MLP: %d of %zu gradients disagree with finite differences (frequencies at %zu, "
          "label table at %zu)", bad, m.nparams, m.te_off, m.ye_off);
    /* The sampler's call (one t for all, no labels) is the same rows at label 3 ("none"). */
    const int none[N] = {3, 3, 3, 3, 3};
    float ts[N], o1[N * 2];
    for (int i = 0; i < N; i++) ts[i] = 0.25f;
    memcpy(o1, fm_mlp_forward_cond(w, &m, p, x, ts, 0.0f, none, N), sizeof o1);
    const float *o2 = fm_mlp_forward_at(w, &m, p, x, 0.25f, N);
    for (int k = 0; k < N * 2; k++) CHECK_NEAR(o2[k], o1[k], 1e-6);
    fm_mlp_work_free(w);
    free(pd);
    free(p);
    free(grad);
}

/* Everything below, with the narrow and thin kernels blocked for the machine's register file. */
static void check_all(void)
{
    /* 1. Gradients against central finite differences, every parameter, every activation. */
    for (int act = 0; act < 3; act++) {
        fm_mlp m;
        const int hidden[] = {7, 5};
        CHECK(fm_mlp_shape(&m, 2, hidden, 2, (fm_act)act) == 0, "shape");
        const int n = 6, B = 10; /* a shard of 6 samples of a global batch of 10 */
        const float scale = 1.0f / (B * 2);
        float *p = malloc(sizeof(float) * m.nparams), *g = calloc(m.nparams, sizeof(float));
        float x[12], t[6], u[12], dout[12];
        fm_mlp_init(p, &m, 17);
        fm_rng_normal(x, 1, 0, 0, FM_STREAM_X0, 12);
        fm_rng_uniform(t, 1, 0, 0, FM_STREAM_T, 6);
        fm_rng_normal(u, 1, 0, 0, FM_STREAM_Z, 12);
        for (int i = 0; i < 12; i++) u[i] *= 3.0f;
        fm_mlp_work *w = fm_mlp_work_new(&m, n);
        fm_mlp_pack(w, &m, p);
        const float *out = fm_mlp_forward(w, &m, p, x, t, n);
        fm_path_loss(dout, out, u, n, 2, scale);
        fm_mlp_backward(g, w, &m, p, dout, n, NULL, NULL);
        int checked;
        int bad = gradcheck(&m, p, g, x, t, u, n, scale, &checked);
        CHECK(bad == 0, "%s: %d of %zu gradients disagree with finite differences", fm_act_name(act), bad, m.nparams);
        CHECK(checked > (int)m.nparams * 8 / 10, "%s: only %d of %zu parameters checked", fm_act_name(act), checked, m.nparams);
        /* The checker itself catches a wrong gradient: a 1% error in a first-layer weight and a
         * wrong bias in the last layer. */
        size_t k1 = 0;
        while (fabsf(g[k1]) < 1e-3f) k1++;
        g[k1] *= 1.01f;
        g[m.b_off[2]] += 1e-3f;
        CHECK(gradcheck(&m, p, g, x, t, u, n, scale, &checked) == 2, "the gradient check misses a wrong gradient");
        /* Backward accumulates: a second backward on the same batch doubles the gradient. */
        float *g2 = calloc(m.nparams, sizeof(float));
        fm_mlp_backward(g2, w, &m, p, dout, n, NULL, NULL);
        fm_mlp_backward(g2, w, &m, p, dout, n, NULL, NULL);
        float *g1 = calloc(m.nparams, sizeof(float));
        fm_mlp_backward(g1, w, &m, p, dout, n, NULL, NULL);
        for (size_t k = 0; k < m.nparams; k++) CHECK_NEAR(g2[k], 2 * g1[k], 1e-6 * (1 + fabs(g1[k])));
        free(g1); free(g2); free(p); free(g);
        fm_mlp_work_free(w);
    }

    /* 2. Forward and backward against naive double loops: odd shapes, batch 1, deep and wide
     * nets; every path (thin first layer, narrow layers with and without a remainder of 16,
     * sgemm) with padded row strides (widths 64 and 1024). */
    const struct { int dim, nh, hidden[4], n; } cases[] = {
        {2, 2, {1024, 16}, 1}, {2, 2, {1024, 16}, 37}, {3, 1, {1}, 5}, {1, 3, {13, 7, 3}, 129},
        {5, 4, {31, 64, 17, 9}, 33}, {7, 2, {257, 5}, 2}, {9, 1, {4}, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fm_mlp m;
        fm_mlp_shape(&m, cases[c].dim, cases[c].hidden, cases[c].nh, FM_ACT_SILU);
        const int n = cases[c].n, D = cases[c].dim;
        float *p = malloc(sizeof(float) * m.nparams);
        float *x = malloc(sizeof(float) * n * D), *t = malloc(sizeof(float) * n);
        double *ref = malloc(sizeof(double) * n * D);
        fm_mlp_init(p, &m, (uint64_t)c);
        double *pd = to_double(p, m.nparams);
        fm_rng_normal(x, 2, 0, (uint32_t)c, FM_STREAM_X0, n * D);
        fm_rng_uniform(t, 2, 0, (uint32_t)c, FM_STREAM_T, n);
        fm_mlp_work *w = fm_mlp_work_new(&m, n);
        fm_mlp_pack(w, &m, p);
        const float *out = fm_mlp_forward(w, &m, p, x, t, n);
        forward_naive(ref, &m, pd, x, t, n);
        double maxerr = 0;
        for (int k = 0; k < n * D; k++) maxerr = fmax(maxerr, fabs(out[k] - ref[k]) / (1 + fabs(ref[k])));
        CHECK(maxerr < 1e-5, "case %zu: forward differs from the naive loop by %g", c, maxerr);
        float *dout = malloc(sizeof(float) * n * D), *grad = calloc(m.nparams, sizeof(float));
        double *gref = calloc(m.nparams, sizeof(double));
        fm_rng_normal(dout, 3, 0, (uint32_t)c, FM_STREAM_EVAL, n * D);
        fm_mlp_backward(grad, w, &m, p, dout, n, NULL, NULL);
        backward_naive(gref, &m, pd, x, t, dout, n);
        double gerr = 0, gmax = 0;
        for (size_t k = 0; k < m.nparams; k++) {
            gerr = fmax(gerr, fabs(grad[k] - gref[k]));
            gmax = fmax(gmax, fabs(gref[k]));
        }
        CHECK(gerr < 1e-4 * (1 + gmax), "case %zu: backward differs from the naive loop by %g (largest %g)", c, gerr, gmax);
        free(dout); free(grad); free(gref);
        /* One t for all rows (the sampler's path) gives the same as t broadcast. */
        for (int i = 0; i < n; i++) t[i] = t[0];
        forward_naive(ref, &m, pd, x, t, n);
        out = fm_mlp_forward_at(w, &m, p, x, t[0], n);
        maxerr = 0;
        for (int k = 0; k < n * D; k++) maxerr = fmax(maxerr, fabs(out[k] - ref[k]) / (1 + fabs(ref[k])));
        CHECK(maxerr < 1e-5, "case %zu: forward_at differs from the naive loop by %g", c, maxerr);
        fm_mlp_work_free(w);
        free(p); free(pd); free(x); free(t); free(ref);
    }

    /* 3. PyTorch init bounds: every weight and bias of layer l within 1/sqrt(fan_in), spread over it. */
    {
        fm_mlp m;
        const int hidden[] = {1024, 16};
        fm_mlp_shape(&m, 2, hidden, 2, FM_ACT_SILU);
        CHECK(m.nparams == 3 * 1024 + 1024 + 1024 * 16 + 16 + 16 * 2 + 2, "seed model has %zu parameters", m.nparams);
        float *p = malloc(sizeof(float) * m.nparams);
        fm_mlp_init(p, &m, 0);
        for (int l = 0; l < m.nlayers; l++) {
            float bound = 1.0f / sqrtf((float)m.dims[l]), lo = 1, hi = -1;
            for (size_t k = m.w_off[l]; k < m.b_off[l] + m.dims[l + 1]; k++) {
                lo = fminf(lo, p[k] / bound);
                hi = fmaxf(hi, p[k] / bound);
            }
            CHECK(lo >= -1 && hi <= 1 && lo < -0.8f && hi > 0.8f, "layer %d init spans [%g, %g] of its bound", l, lo, hi);
        }
        free(p);
    }
    CHECK(fm_mlp_shape(&(fm_mlp){0}, 2, (int[]){0}, 1, FM_ACT_SILU) == -1, "a zero width is refused");
}

int main(void)
{
    /* Every build of the kernels this machine runs (SSE2, AVX2, AVX-512), each with its own tiles,
     * so an AVX-512 machine tests the AVX2 code too. */
    check_each_isa(check_all);
    check_each_isa(check_conditioned);
    return check_report("test_mlp");
}
